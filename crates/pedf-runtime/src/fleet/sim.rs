//! `pedf fleet simulate --parks N`: N light simulated parks in one process against a fleet's
//! NATS servers, for the hub's tests and benchmark. Each park is a real edge node: its own
//! store (the outbox), its own publisher with its own NATS connection and user name, exactly
//! as `pedf run` with `[fleet]`. Only its world is cheap: no devices, no controller, no
//! optimiser; its flows come from a few lines of physics on one simulated clock shared by all
//! (PV on a clear-sky arch of its own size, a load with a working-day shape and a seeded
//! wobble, a battery that takes the surplus and covers the deficit within its limits). At each
//! interval's end every park's record is closed in its store; each park makes a plan of its
//! own physics active for the start's day and the next (with their flexibility, its battery
//! idle in them) and raises an alarm now and then.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use pedf_core::live::Live;
use pedf_core::records::IntervalRecord;
use pedf_core::time::{IntervalLength, ParkClock};
use tokio::sync::watch;

use super::FleetConfig;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How many parks.
    pub parks: usize,
    /// Their names: `<prefix>-0001` ...
    pub prefix: String,
    /// The NATS servers (the cluster's nodes separated by commas).
    pub url: String,
    /// The folder of the parks' stores (made if missing).
    pub dir: PathBuf,
    /// The simulated clock's start.
    pub start: DateTime<Utc>,
    /// How much faster than real time it runs.
    pub speed: f64,
    /// Each park's live state, every this many real seconds.
    pub state_every_s: u64,
    /// After the shutdown, how long the publishers may take to send what the parks closed
    /// (each stops as soon as the hub has acknowledged all of it), real seconds.
    pub drain_s: u64,
}

/// What the parks did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimSummary {
    /// Records closed in the parks' stores, all parks.
    pub records: usize,
    /// Events written, all parks.
    pub events: usize,
    /// Plans made active, all parks.
    pub plans: usize,
    /// Parks whose publisher had not sent all of it when the drain ended.
    pub behind: Vec<String>,
}

/// One simulated park's physics.
#[derive(Debug, Clone, Copy)]
struct Physics {
    pv_peak_kw: f64,
    load_base_kw: f64,
    capacity_kwh: f64,
    battery_kw_max: f64,
    soc_kwh: f64,
}

/// One simulated park's world.
struct World {
    name: String,
    store: pedf_store::Store,
    live: watch::Sender<Arc<Live>>,
    phys: Physics,
    /// The open interval's energies.
    open: IntervalRecord,
    today: pedf_core::live::Today,
}

/// A number in [0, 1) from a park's index and a step (a fixed hash: the same run each time).
fn wobble(i: usize, step: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A simulated park's plan of the local day starting at `day_start`: its physics at each
/// interval's middle, the battery left idle (the park's flexibility is then its battery's whole
/// power, within its energy and the connection).
fn day_plan(
    name: &str,
    phys: Physics,
    i: usize,
    clock: &ParkClock,
    day_start: DateTime<Utc>,
) -> pedf_core::plan::Plan {
    use pedf_core::plan::{Plan, PlanInterval, SolverInfo, Strategy};
    let step = clock.interval.duration();
    let mut probe = phys;
    let intervals = clock
        .intervals_of_local_day(clock.local(day_start).date_naive())
        .into_iter()
        .map(|t| {
            let mid = clock.local(t + step / 2);
            let h = f64::from(mid.hour()) + f64::from(mid.minute()) / 60.0;
            let soc = probe.soc_kwh;
            let [pv, load, _, _] = probe.step(i, h, (t + step / 2).timestamp() / 60, 0.0);
            probe.soc_kwh = soc;
            let grid = load - pv;
            PlanInterval {
                start: clock.local(t).fixed_offset(),
                import_price_cny_per_kwh: 0.0,
                export_price_cny_per_kwh: 0.0,
                carbon_intensity_kg_per_kwh: 0.0,
                grid_import_kw: grid.max(0.0),
                grid_export_kw: (-grid).max(0.0),
                pv_available_kw: pv,
                pv_used_kw: pv,
                battery_charge_kw: 0.0,
                battery_discharge_kw: 0.0,
                battery_soc_kwh: soc,
                fixed_load_kw: load,
                flexible_load_kw: 0.0,
                load_shed_kw: 0.0,
                load_unserved_kw: 0.0,
                ev_kw: 0.0,
                ev_chargers: Default::default(),
                batteries_soc_kwh: Default::default(),
                flexible_loads: Default::default(),
            }
        })
        .collect();
    Plan {
        park_id: name.to_string(),
        strategy: Strategy::Rule,
        interval_minutes: clock.interval.minutes(),
        objective_cny: 0.0,
        energy_cost_cny: 0.0,
        export_revenue_cny: 0.0,
        demand_charge_cny: 0.0,
        month_peak_before_kw: 0.0,
        demand_free_up_to_kw: 0.0,
        carbon_cost_cny: 0.0,
        degradation_cost_cny: 0.0,
        load_shed_cost_cny: 0.0,
        penalty_cny: 0.0,
        carbon_kg: 0.0,
        scope2_kg: 0.0,
        scope2_allowance_kg: None,
        scope2_without_ems_kg: 0.0,
        peak_import_kw: 0.0,
        solver: SolverInfo::rule_based("rule", 0.0),
        intervals,
        unmet: Vec::new(),
        notes: vec!["pedf fleet simulate: the park's own physics, battery idle".into()],
    }
}

/// A simulated park's limits: its battery one pool from 10 % to 90 %, a 2 MW connection, no
/// export from the battery, no flexible loads.
fn limits(p: &Physics) -> pedf_core::flexibility::FlexLimits {
    pedf_core::flexibility::FlexLimits {
        charge_kw: p.battery_kw_max,
        discharge_kw: p.battery_kw_max,
        floor_kwh: 0.1 * p.capacity_kwh,
        ceiling_kwh: 0.9 * p.capacity_kwh,
        charge_eff: 1.0,
        discharge_eff: 1.0,
        import_kw: 2000.0,
        battery_export_kw: 0.0,
        loads: Vec::new(),
    }
}

impl Physics {
    /// The flows at `t` (local hour `h`), kW: PV, load, battery (+discharge), grid (+import);
    /// the battery's energy moved over `dt_h`.
    fn step(&mut self, i: usize, h: f64, minute: i64, dt_h: f64) -> [f64; 4] {
        let sun = ((h - 6.0) / 12.0 * std::f64::consts::PI).sin().max(0.0);
        let pv = self.pv_peak_kw * sun * (0.9 + 0.1 * wobble(i, minute / 15));
        let day = if (8.0..18.0).contains(&h) { 1.0 } else { 0.55 };
        let load = self.load_base_kw * day * (0.9 + 0.2 * wobble(i + 7919, minute));
        let (lo, hi) = (0.1 * self.capacity_kwh, 0.9 * self.capacity_kwh);
        let want = load - pv; // >0: discharge to cover, <0: charge the surplus
        let battery = if want > 0.0 {
            want.min(self.battery_kw_max)
                .min(((self.soc_kwh - lo) / dt_h.max(1e-9)).max(0.0))
        } else {
            -(-want)
                .min(self.battery_kw_max)
                .min(((hi - self.soc_kwh) / dt_h.max(1e-9)).max(0.0))
        };
        self.soc_kwh -= battery * dt_h;
        [pv, load, battery, load - pv - battery]
    }
}

/// Runs the parks until `shutdown`; returns what they wrote.
pub async fn run(
    opts: SimOptions,
    shutdown: impl std::future::Future<Output = ()>,
    say: impl Fn(String),
) -> Result<SimSummary, String> {
    if opts.parks == 0 || opts.parks > 100_000 {
        return Err(format!("--parks {}: give 1 to 100000", opts.parks));
    }
    if !(opts.speed.is_finite() && opts.speed > 0.0 && opts.speed <= 100_000.0) {
        return Err(format!(
            "--speed {}: give a number above 0, at most 100000",
            opts.speed
        ));
    }
    super::check_urls(&opts.url)?;
    pedf_store::create_private_dir(&opts.dir)
        .map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let clock = ParkClock::new(
        chrono_tz::Asia::Shanghai,
        IntervalLength::from_minutes(15).expect("15 minutes is an interval length"),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut worlds = Vec::with_capacity(opts.parks);
    let mut publishers = Vec::with_capacity(opts.parks);
    let mut summary = SimSummary::default();
    for i in 0..opts.parks {
        let name = format!("{}-{:04}", opts.prefix, i + 1);
        let path = opts.dir.join(format!("{name}.sqlite"));
        let mut store = pedf_store::Store::open(&path).map_err(|e| e.to_string())?;
        store
            .event(opts.start, "info", "runtime", "simulated park started")
            .map_err(|e| e.to_string())?;
        summary.events += 1;
        let capacity_kwh = 500.0 + 100.0 * (i % 10) as f64;
        let phys = Physics {
            pv_peak_kw: 200.0 + (i * 37 % 800) as f64,
            load_base_kw: 100.0 + (i * 53 % 400) as f64,
            capacity_kwh,
            battery_kw_max: capacity_kwh / 2.0,
            soc_kwh: capacity_kwh / 2.0,
        };
        // The day's plan, and the next day's (made active as a park's last re-plan of a day
        // plans the next).
        let today = clock.local(opts.start).date_naive();
        for day in [today, today.succ_opt().unwrap_or(today)] {
            let plan = day_plan(&name, phys, i, &clock, clock.start_of_local_day(day));
            let json = serde_json::to_string(&plan).map_err(|e| e.to_string())?;
            let id = store
                .put_plan(opts.start, &day.to_string(), "rule", &json)
                .map_err(|e| e.to_string())?;
            store.activate_plan(id).map_err(|e| e.to_string())?;
            summary.plans += 1;
        }
        let (live_tx, live_rx) = watch::channel(Arc::new(Live {
            park_id: name.clone(),
            park_name: name.clone(),
            time_zone: "Asia/Shanghai".into(),
            interval_minutes: 15,
            battery_capacity_kwh: capacity_kwh,
            ..Default::default()
        }));
        let cfg = FleetConfig {
            url: opts.url.clone(),
            park: Some(name.clone()),
            credentials: None,
            nkey_seed: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            state_every_s: opts.state_every_s,
            dashboard: None,
        };
        cfg.check()?;
        let edge = super::Edge {
            clock,
            flex: Some(Arc::new(limits(&phys))),
            requests: None,
            baseline: Default::default(),
        };
        publishers.push(super::start_named(
            cfg,
            name.clone(),
            edge,
            path,
            live_rx,
            stop_rx.clone(),
        ));
        worlds.push(World {
            name,
            store,
            live: live_tx,
            phys,
            open: IntervalRecord {
                start: clock.interval_start(opts.start),
                ..Default::default()
            },
            today: Default::default(),
        });
    }
    say(format!(
        "{} parks ({}-0001 ...) publishing to {} at {}x",
        opts.parks, opts.prefix, opts.url, opts.speed
    ));
    let time = pedf_core::time::TimeSource::scaled(opts.start, opts.speed);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = opts.start;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => break,
        }
        let now = time.now();
        // Whole steps of at most a simulated minute, closing each interval at its end.
        while last < now {
            let end = clock.interval_start(last) + clock.interval.duration();
            let next = (last + chrono::Duration::minutes(1)).min(end).min(now);
            let dt_h = (next - last).num_milliseconds() as f64 / 3.6e6;
            let local = clock.local(last);
            let h = f64::from(local.hour()) + f64::from(local.minute()) / 60.0;
            let minute = last.timestamp() / 60;
            let day = local.date_naive().to_string();
            for (i, w) in worlds.iter_mut().enumerate() {
                if w.live.borrow().local_day != day {
                    w.today = Default::default();
                }
                let [pv, load, battery, grid] = w.phys.step(i, h, minute, dt_h);
                let r = &mut w.open;
                r.pv_kwh += pv * dt_h;
                r.load_kwh += load * dt_h;
                if battery > 0.0 {
                    r.battery_discharge_kwh += battery * dt_h;
                } else {
                    r.battery_charge_kwh -= battery * dt_h;
                }
                if grid > 0.0 {
                    r.grid_import_kwh += grid * dt_h;
                } else {
                    r.grid_export_kwh -= grid * dt_h;
                }
                w.today.pv_kwh += pv * dt_h;
                w.today.grid_import_kwh += grid.max(0.0) * dt_h;
                w.today.grid_export_kwh += (-grid).max(0.0) * dt_h;
                w.today.load_kwh += load * dt_h;
                let mut l = Live::clone(&w.live.borrow());
                l.at = Some(next);
                l.local_day = day.clone();
                l.flows.pv_kw = Some(pv);
                l.flows.load_kw = Some(load);
                l.flows.battery_kw = Some(battery);
                l.flows.soc_pct = Some(w.phys.soc_kwh / w.phys.capacity_kwh * 100.0);
                l.flows.ev_kw = Some(0.0);
                l.flows.grid_kw = Some(grid);
                l.today = w.today.clone();
                w.live.send_replace(Arc::new(l));
            }
            last = next;
            if next == end {
                // The stores' writes on this worker thread (a blocking section the runtime
                // knows of: the publishers go on on the other).
                tokio::task::block_in_place(|| {
                    for (i, w) in worlds.iter_mut().enumerate() {
                        let closed = std::mem::replace(
                            &mut w.open,
                            IntervalRecord {
                                start: end,
                                ..Default::default()
                            },
                        );
                        if let Err(e) = w.store.put_records(&[closed], "measured") {
                            tracing::warn!(target: "pedf::fleet", "{}: {e}", w.name);
                            continue;
                        }
                        summary.records += 1;
                        // One park in fifty raises an alarm in an interval, a different set each time.
                        if wobble(i, end.timestamp()) < 0.02 {
                            let _ = w.store.event(
                                end,
                                "alarm",
                                "device",
                                "simulated: battery not answering",
                            );
                            summary.events += 1;
                        }
                    }
                });
            }
        }
    }
    // What the parks closed is in their stores: the publishers go on until the hub has
    // acknowledged all of it (their cursors at each store's last record, event and plan), for
    // `drain_s` at most.
    let want: Vec<(String, super::Cursor)> = worlds
        .iter()
        .map(|w| {
            let records = w
                .store
                .closed_records_after(None, usize::MAX)
                .ok()
                .and_then(|v| v.last().map(|r| r.record.start));
            let events = w
                .store
                .events_after(0, usize::MAX)
                .ok()
                .and_then(|v| v.last().map(|e| e.id))
                .unwrap_or(0);
            let plans = w
                .store
                .activations_after(0, usize::MAX)
                .ok()
                .and_then(|v| v.last().map(|a| a.0))
                .unwrap_or(0);
            (
                w.name.clone(),
                super::Cursor {
                    records,
                    events,
                    plans,
                    // The simulated parks take no grid requests.
                    deliveries: None,
                },
            )
        })
        .collect();
    drop(worlds);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(opts.drain_s);
    loop {
        let behind: Vec<String> = want
            .iter()
            .filter(|(name, c)| super::load_cursor(&opts.dir.join(format!("{name}.sqlite"))) != *c)
            .map(|(n, _)| n.clone())
            .collect();
        if behind.is_empty() || tokio::time::Instant::now() >= deadline {
            summary.behind = behind;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(true);
    for p in publishers {
        let _ = p.await;
    }
    Ok(summary)
}
