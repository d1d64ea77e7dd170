//! `pedf run`: devices → park state → store → controller → safe setpoints, once per cycle.
//!
//! Every device runs in its own unit (`pedf_devices::unit`): read on its own period into the
//! process image, written through its `SafeControl` (clamp, ramp, read-back, audit), with its
//! own watchdog. The cycle never waits on the network; in phases:
//!
//! 1. **snapshot**: beat the heartbeat, copy the process image;
//! 2. **control**: sessions and orders, the active plan's interval from the store (or none:
//!    self-consumption), the controller;
//! 3. **apply**: hand each unit its setpoint (the latest wins; never waits);
//! 4. **record**: samples, events, the units' audit, energy records and re-plans handed to
//!    the store's own writer thread (`writer.rs`, never waited for), samples to the InfluxDB
//!    sink;
//! 5. **publish**: the park now to the server.
//!
//! This file holds the loop, the cycle's state and phase 1; `control.rs` phases 2 and 3,
//! `sessions.rs` the EV sessions and operators' orders taken in phase 2, `record.rs` phase 4
//! with intraday re-planning, `publish.rs` phase 5, `writer.rs` the store's writer. The
//! cycle's own store connection only reads (the active plan); it writes at startup only.
//!
//! A device that stops answering, or a cycle that stalls, puts the devices into their safe
//! state by the units' watchdogs. On shutdown (Ctrl-C, SIGTERM, or the given duration) every
//! controllable device is put into its safe state and the store is flushed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pedf_core::Park;
use pedf_devices::capability::{Capability, DeviceState, Field};
use pedf_devices::template::load_device_set;
use pedf_store::Store;

use crate::devices::Devices;
use crate::live::{Integrator, Live};
use crate::so_far::SoFar;
use pedf_control::curtail::Curtailment;
use pedf_control::{pool_batteries, BatteryNow, BatteryUnit, Limits, Mode, PlanTarget, Snapshot};
use tokio::sync::watch;

pub use crate::config::{RunConfig, ServerConfig};

mod billing;
mod commands;
mod control;
mod grid;
mod load;
mod publish;
mod record;
mod sessions;
mod writer;

use control::ActivePlan;
use record::store_audit;
use sessions::session_defaults;
use writer::Write;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Control cycles run.
    pub cycles: u64,
    /// Samples stored.
    pub samples: u64,
    /// Controller setpoints the devices took, as audited (a change, and an unchanged one every
    /// 15 min).
    pub setpoints: u64,
    /// Alarms the controller raised.
    pub alarms: u64,
    /// Controllable devices that could not be put into their safe state at shutdown (not
    /// answering: their own fail-safe applies).
    pub not_made_safe: Vec<String>,
}

/// The channels between the run loop and the server.
#[derive(Default)]
pub struct RunIo {
    /// Gets the park state after every cycle.
    pub live: Option<watch::Sender<Arc<Live>>>,
    /// The operating mode, set by operators through the server; read every cycle.
    pub mode: Option<watch::Receiver<Mode>>,
    /// Operators' orders on EV sessions (energy, departure), from the server.
    pub orders: Option<tokio::sync::mpsc::Receiver<crate::sessions::Order>>,
    /// Operators' commands to chargers, from the server, with where each outcome goes.
    pub commands: Option<
        tokio::sync::mpsc::Receiver<(pedf_core::live::ChargerCommand, pedf_server::CommandReply)>,
    >,
    /// Grid requests, from the server, with where each answer goes.
    pub grid_requests: Option<
        tokio::sync::mpsc::Receiver<(
            pedf_core::grid_request::GridRequest,
            pedf_server::GridRequestReply,
        )>,
    >,
    /// Caps the store file at this many pages, as a full disk would (tests).
    #[doc(hidden)]
    pub store_max_pages_for_test: Option<i64>,
}

/// Runs until `shutdown` resolves.
pub async fn run(cfg: RunConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary, String> {
    run_with(cfg, RunIo::default(), shutdown).await
}

/// Runs until `shutdown` resolves, publishing the park state and taking the mode through `io`.
pub async fn run_with(
    cfg: RunConfig,
    mut io: RunIo,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, String> {
    let time = cfg.time;
    let mut ems = Cycle::start(&cfg, &io)?;
    // The cycle in the EMS's time: at `pedf demo --speed 60` a simulated second is 1/60 s
    // of real time, so no setpoint runs longer in the simulated park than in a real one.
    let mut tick = tokio::time::interval(cfg.cycle().0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    // The first cycle starts on a full process image: each device read once (answering or
    // not), waiting no longer than the devices' values would take to go stale. A shutdown
    // asked meanwhile is taken (polling it also installs the signal handlers).
    let unit_ids: Vec<String> = ems.devices.units.keys().cloned().collect();
    let bound = ems.devices.first_read_bound;
    let unread = tokio::select! {
        _ = &mut shutdown => None,
        unread = ems.devices.image.first_reads(&unit_ids, bound) => Some(unread),
    };
    ems.started(time.now(), unread.as_deref().unwrap_or_default());
    if unread.is_some() {
        loop {
            let scheduled = tokio::select! {
                _ = &mut shutdown => break,
                at = tick.tick() => at,
            };
            let lag_ms = std::time::Instant::now()
                .saturating_duration_since(scheduled.into_std())
                .as_secs_f64()
                * 1e3;
            ems.step(time.now(), lag_ms, &mut io);
        }
    }
    Ok(ems.shutdown(time.now()).await)
}

/// The running EMS between cycles: the park, the store, the devices, and what one cycle hands
/// the next (energy records, the month so far, sessions, curtailable loads' caps, the active
/// plan, re-planning).
pub(super) struct Cycle {
    park: Park,
    limits: Limits,
    battery_units: Vec<BatteryUnit>,
    store: Store,
    devices: Devices,
    /// Every device of the list, id and capability, for the live state.
    device_list: Vec<(String, Capability)>,
    /// The meters at the grid connection (asset `grid`; without one, every meter), in the
    /// list's order: the first with a good power reading is the grid meter of the cycle (a
    /// billing meter behind the EMS's own stands in when that one is lost).
    grid_meters: Vec<String>,
    /// Each device's stale time (the grace a device not read yet gets from the start).
    stale_after: BTreeMap<String, std::time::Duration>,
    /// The park as an IEC 60870-5-104 station, when the run file has `[iec104]`.
    grid: Option<grid::GridLink>,
    /// Grid requests taken whose window has not ended long enough for their delivery to be
    /// said.
    requests: grid::Requests,
    /// The grid meters' energy counters at the intervals' boundaries.
    counters: billing::Counters,
    sink: Option<pedf_influx::InfluxSink>,
    replanner: Option<crate::replan::Replanner>,
    replan_note: Option<String>,
    active_plan: Option<ActivePlan>,
    /// Power integrated into the running interval's energy record.
    integrator: Integrator,
    /// Today's closed intervals (reloaded from the store on a restart).
    day_records: Vec<pedf_core::records::IntervalRecord>,
    /// 1-minute aggregates are made as each minute closes (and for the last one at shutdown).
    aggregated_to: DateTime<Utc>,
    so_far: SoFar,
    /// EV sessions on the chargers that report whether a car is there.
    sessions: crate::sessions::Sessions,
    /// The park without the EMS alongside (cars charged on arrival), for the month's Scope 2
    /// without it.
    without: pedf_core::records::WithoutEms,
    /// Devices whose sessions are tracked (their park charger has a default session).
    tracked: Vec<String>,
    /// The cycle's length, h.
    cycle_h: f64,
    /// Curtailable loads: each one's demand when not held and the cap written last.
    curtailment: Curtailment,
    retention_days: i64,
    log_retention_days: i64,
    /// Devices not answering at the last cycle (an event when one goes or comes back).
    lost: std::collections::BTreeSet<String>,
    /// The controller's alarms raised and not yet cleared, by their text without figures
    /// (an alarm is an event when it begins and when it clears, not every cycle).
    control_alarms: BTreeMap<String, String>,
    /// Whether the last cycle held the devices safe against the operator's mode.
    held_safe: bool,
    /// The InfluxDB sink's rejected and dropped lines already said in an event.
    sink_seen: (u64, u64),
    /// The store's writer (its own store connection and thread): everything the cycle
    /// stores goes through it.
    writer: writer::StoreWriter,
    /// The interval of the last checkpoint of a run that did not stop cleanly, if the store
    /// had one at start.
    unclean_since: Option<DateTime<Utc>>,
    /// When the run started: a device not read yet is given its stale time from then before
    /// it is an alarm.
    started: DateTime<Utc>,
    /// The load the controller works with, derived from the grid meter (held while a step of
    /// the batteries is being taken).
    load_estimate: load::LoadEstimate,
    /// The EMS's clock.
    time: pedf_core::time::TimeSource,
    /// Operators' commands to chargers carried out, to be audited.
    commands_done: commands::CommandsDone,
    /// Deferrable loads' last setpoints and whether each follows them.
    load_orders: BTreeMap<String, control::LoadOrder>,
    summary: RunSummary,
    timing: pedf_core::live::CycleTiming,
}

/// What the snapshot phase read of the park.
pub(super) struct Measured {
    states: BTreeMap<String, DeviceState>,
    /// PV of the inverters that answer, kW (what the controller works with).
    pv: f64,
    /// Each battery that answers with its SoC, by park asset.
    batteries_now: Vec<(String, BatteryNow)>,
    /// The batteries pooled, as the controller sees them.
    battery: Option<BatteryNow>,
    grid_meter: Option<f64>,
    load: f64,
    /// Each flow as far as it is known: `None` when a device it is measured by has no good
    /// reading (shown as unknown, never as 0 kW).
    known: Known,
    /// Devices without a good reading now, each with why (an alarm while it lasts).
    lost: Vec<(String, String)>,
    /// The park has a grid meter and it has no good reading: the cycle holds every device in
    /// its safe state (the grid limits cannot be kept blind).
    meter_lost: bool,
}

/// The flows the measurements give, `None` where a device of the flow has no good reading.
#[derive(Debug, Clone, Copy)]
struct Known {
    pv: Option<f64>,
    battery: Option<f64>,
    ev: Option<f64>,
    load: Option<f64>,
}

/// A device's communication now: `good`, `stale` (answered before, not within its stale
/// time), `bad` (its last read failed) or `none` (never read).
fn quality_of(st: Option<&DeviceState>, now: DateTime<Utc>) -> &'static str {
    match st {
        None => "none",
        Some(s) if s.last_error.is_some() => "bad",
        Some(s) => match s.last_ok {
            None => "none",
            Some(t) if (now - t).to_std().unwrap_or_default() > s.stale_after => "stale",
            Some(_) => "good",
        },
    }
}

/// What the control phase decided.
pub(super) struct Decision {
    /// The mode the cycle ran in: the operator's, or safe while the grid meter is lost.
    mode: Mode,
    /// The operator's mode (what the dashboard's mode control shows).
    chosen: Mode,
    /// Why the cycle holds every device safe against the operator's mode, if it does.
    held_safe: Option<String>,
    /// The plan's interval, its label and its shed of curtailable demand, kW.
    plan: Option<(PlanTarget, String, f64)>,
    snapshot: Snapshot,
    out: pedf_control::Setpoints,
    /// Curtailable loads' caps that changed (lifted: their maximum).
    cap_writes: BTreeMap<String, f64>,
}

/// The running interval is stored every this many cycles (10 s at the default 1 s cycle).
const CHECKPOINT_CYCLES: u64 = 10;

/// The label of the running interval's checkpoint in the store (replaced when it closes, or
/// by `measured-partial` at a clean stop).
const RUNNING: &str = "running";

/// The meters at the park's grid connection, in the list's order: those whose asset is
/// `grid`; a list with none so named has every meter taken as one (a sub-meter must say its
/// asset for it not to be read as the grid's).
fn grid_meters(devices: &[pedf_devices::template::DeviceConfig]) -> Vec<String> {
    let meters = || devices.iter().filter(|d| d.capability == Capability::Meter);
    let at_grid: Vec<String> = meters()
        .filter(|d| d.asset.as_deref().unwrap_or(&d.id) == "grid")
        .map(|d| d.id.clone())
        .collect();
    if at_grid.is_empty() {
        meters().map(|d| d.id.clone()).collect()
    } else {
        at_grid
    }
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis().div_euclid(60_000) * 60_000)
        .unwrap_or(t)
}

impl Cycle {
    /// Reads the park and device files, opens the store, starts the devices' units, the
    /// InfluxDB sink and re-planning, and takes up today's records and the month so far.
    fn start(cfg: &RunConfig, io: &RunIo) -> Result<Cycle, String> {
        let time = cfg.time;
        let park = cfg.read_park()?;
        let set = load_device_set(&cfg.devices).map_err(|es| {
            es.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if let Some(dir) = cfg.store.parent().filter(|d| !d.as_os_str().is_empty()) {
            pedf_store::create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut store = Store::open(&cfg.store).map_err(|e| e.to_string())?;
        if let Some(pages) = io.store_max_pages_for_test {
            store.set_max_pages_for_test(pages);
        }
        let sink = match &cfg.influx {
            Some(i) => Some(pedf_influx::InfluxSink::start(i.clone()).map_err(|e| e.to_string())?),
            None => None,
        };
        let devices = crate::devices::start(cfg, &park, &set)?;
        // The grid's link, with the limits it set before a restart.
        let kept = store.grid_limits().map_err(|e| e.to_string())?;
        let grid = cfg
            .iec104
            .as_ref()
            .map(|g| grid::GridLink::start(g, &park, time, &kept))
            .transpose()?;
        let mut requests = grid::Requests::load(&store, &park, time.now(), cfg.baseline)?;
        if let Some(f) = &cfg.grid_requests {
            let list = crate::config::grid_requests_of(f, &park).map_err(|ds| ds.join("\n"))?;
            requests.give_from_file(list, &store)?;
        }
        let now = time.now();
        let mut integrator =
            Integrator::new(&park).with_max_gap_ms((10_000.0 * time.speed()).round() as i64);
        let from = park
            .clock
            .start_of_local_day(park.clock.local(now).date_naive());
        let mut day_records = store.stored_records(from, now).unwrap_or_default();
        let running_start = park.clock.interval_start(now);
        // A run that did not stop cleanly left its running interval as a `running`
        // checkpoint: an interval now past is kept as measured-partial (what was observed of
        // it), the one still running is resumed.
        let unclean = store
            .record_starts_labelled(RUNNING)
            .map_err(|e| e.to_string())?;
        for start in unclean.iter().filter(|s| **s != running_start) {
            store
                .relabel_record(*start, "measured-partial")
                .map_err(|e| e.to_string())?;
        }
        if let Some(i) = day_records
            .iter()
            .position(|s| s.record.start == running_start)
        {
            let running = day_records.remove(i);
            integrator.resume(running.record, running.observed);
        }
        let day_records = day_records.into_iter().map(|s| s.record).collect();
        let tracked = devices
            .controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .filter(|c| session_defaults(&park, &c.asset).session_kwh > 0.0)
            .map(|c| c.id.clone())
            .collect();
        Ok(Cycle {
            limits: Limits::of(&park),
            battery_units: BatteryUnit::of(&park),
            replanner: cfg
                .replan
                .clone()
                .map(|r| crate::replan::Replanner::new(r, park.clone())),
            replan_note: None,
            active_plan: None,
            so_far: SoFar::load(&park, &store, now),
            integrator,
            day_records,
            aggregated_to: minute_of(now),
            sessions: crate::sessions::Sessions::new(),
            without: pedf_core::records::WithoutEms::new(),
            tracked,
            cycle_h: cfg.cycle().1.as_secs_f64() / 3600.0,
            curtailment: Curtailment::default(),
            retention_days: cfg.retention_days,
            log_retention_days: cfg.log_retention_days,
            lost: Default::default(),
            control_alarms: BTreeMap::new(),
            held_safe: false,
            sink_seen: (0, 0),
            writer: writer::StoreWriter::start(&cfg.store, io.store_max_pages_for_test)?,
            unclean_since: unclean.last().copied(),
            started: now,
            load_estimate: Default::default(),
            time: cfg.time,
            commands_done: Default::default(),
            load_orders: BTreeMap::new(),
            summary: RunSummary::default(),
            timing: Default::default(),
            device_list: set
                .devices
                .devices
                .iter()
                .map(|d| (d.id.clone(), d.capability))
                .collect(),
            grid_meters: grid_meters(&set.devices.devices),
            counters: billing::Counters::new(
                &grid_meters(&set.devices.devices)
                    .into_iter()
                    .map(|id| {
                        let d = set.devices.devices.iter().find(|d| d.id == id);
                        (
                            id,
                            d.map_or(1.0, billing::counter_step_kwh),
                            d.and_then(billing::counter_wrap_kwh),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            stale_after: set
                .devices
                .devices
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        std::time::Duration::from_millis(d.stale_after_ms),
                    )
                })
                .collect(),
            sink,
            grid,
            requests,
            devices,
            store,
            park,
        })
    }

    /// Says the run started (and which devices were not read before the first cycle).
    fn started(&mut self, now: DateTime<Utc>, unread: &[String]) {
        let w = &self.writer;
        w.event(
            now,
            "info",
            "run",
            format!(
                "pedf run started for {} with {} devices",
                self.park.id,
                self.device_list.len()
            ),
        );
        if let Some(at) = self.unclean_since {
            w.event(
                now,
                "warning",
                "run",
                format!(
                    "the last run did not stop cleanly (killed, crashed or lost power) in the interval from {}: its energy is kept to its last checkpoint (at most {CHECKPOINT_CYCLES} cycles before) and the interval marked measured-partial",
                    self.park.clock.format(at)
                ),
            );
        }
        if !unread.is_empty() {
            w.event(
                now,
                "warning",
                "devices",
                format!(
                    "not read before the first cycle (control starts without them): {}",
                    unread.join(", ")
                ),
            );
        }
    }

    /// One cycle, in phases; none waits on the network.
    fn step(&mut self, now: DateTime<Utc>, lag_ms: f64, io: &mut RunIo) {
        let work_started = std::time::Instant::now();
        let mut faults: Vec<String> = Vec::new();
        let m = self.snapshot(now);
        let d = self.control(now, &m, io, &mut faults);
        self.apply(&m, &d);
        self.load_estimate.decided(d.out.battery_kw, now);
        let (flows, chargers_live) = self.record(now, &m, &d, &mut faults);
        self.grid_values(
            now,
            &m,
            &d,
            &flows,
            !faults.is_empty() || !m.lost.is_empty(),
        );
        let work_ms = work_started.elapsed().as_secs_f64() * 1e3;
        self.timing.work.add(work_ms);
        self.timing.lag.add(lag_ms);
        self.publish(
            now,
            &m,
            &d,
            (flows, chargers_live),
            faults,
            (work_ms, lag_ms),
            io,
        );
        self.housekeeping(now);
    }

    /// Phase 1: the controller is alive (the units' watchdogs see the heartbeat); the process
    /// image as it is now, and what it says of the park.
    fn snapshot(&mut self, now: DateTime<Utc>) -> Measured {
        let Cycle {
            devices,
            battery_units,
            limits,
            device_list,
            grid_meters,
            started,
            stale_after,
            load_estimate,
            ..
        } = self;
        let started = *started;
        let controlled = &devices.controlled;
        devices.heartbeat.beat(now);
        let states = devices.image.snapshot();
        let good = |cap: Capability, f: Field| -> f64 {
            states
                .values()
                .filter(|s| s.capability == cap)
                .filter_map(|s| s.good(f, now))
                .sum::<f64>()
                + 0.0 // an empty sum is -0.0
        };
        let pv = good(Capability::PvInverter, Field::PowerKw);
        // Each battery that answers with its SoC, by park asset; the controller sees them
        // pooled and their setpoints are its share of the park's.
        let batteries_now: Vec<(String, BatteryNow)> = controlled
            .iter()
            .filter(|c| c.capability == Capability::Battery)
            .filter_map(|c| {
                let s = states.get(&c.id)?;
                let unit = battery_units.iter().find(|u| u.id == c.asset);
                Some((
                    c.asset.clone(),
                    BatteryNow {
                        soc_pct: s.good(Field::SocPct, now)?,
                        max_charge_kw: s
                            .good(Field::MaxChargeKw, now)
                            .or(unit.map(|u| u.max_charge_kw))
                            .unwrap_or(0.0),
                        max_discharge_kw: s
                            .good(Field::MaxDischargeKw, now)
                            .or(unit.map(|u| u.max_discharge_kw))
                            .unwrap_or(0.0),
                    },
                ))
            })
            .collect();
        let battery = pool_batteries(battery_units, &batteries_now);
        let battery_kw = good(Capability::Battery, Field::PowerKw);
        // When the batteries were read (the oldest of their good readings).
        let battery_read = states
            .values()
            .filter(|s| s.capability == Capability::Battery)
            .filter_map(|s| s.reading(Field::PowerKw, now))
            .filter(|r| r.quality == pedf_devices::capability::Quality::Good)
            .map(|r| r.at)
            .min();
        let ev_now = good(Capability::EvCharger, Field::PowerKw);
        let meter_reading = grid_meters.iter().find_map(|id| {
            states
                .get(id)?
                .reading(Field::PowerKw, now)
                .filter(|r| r.quality == pedf_devices::capability::Quality::Good)
        });
        let grid_meter = meter_reading.as_ref().map(|r| r.value);
        let to_bus = |g: f64| {
            if g >= 0.0 {
                g * limits.eta_in
            } else {
                g / limits.eta_out
            }
        };
        let derived = grid_meter.map(|g| (pv + battery_kw + to_bus(g) - ev_now).max(0.0));
        let load = load_estimate
            .update(
                derived,
                battery_read.map(|t| (battery_kw, t)),
                meter_reading.map(|r| r.at),
                now,
            )
            .unwrap_or_else(|| good(Capability::DcLoad, Field::PowerKw));
        // What is known: a flow is known when every device it is measured by answers (a park
        // without devices of a kind has 0 kW of it).
        let lost: Vec<(String, String)> = device_list
            .iter()
            .filter_map(|(id, cap)| {
                let st = states.get(id);
                let why = match quality_of(st, now) {
                    "good" => return None,
                    "bad" => format!(
                        "its last read failed ({})",
                        st.and_then(|s| s.last_error.clone()).unwrap_or_default()
                    ),
                    "stale" => format!(
                        "no reading within its {} s stale time (last {})",
                        st.map_or(0, |s| s.stale_after.as_secs()),
                        st.and_then(|s| s.last_ok)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                    // Not read yet: an alarm only once its stale time from the start is
                    // over (MQTT devices answer when they next publish).
                    _ => {
                        let grace = stale_after
                            .get(id)
                            .copied()
                            .unwrap_or(std::time::Duration::from_secs(10));
                        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
                        if now < started + grace {
                            return None;
                        }
                        "never read since the start".to_string()
                    }
                };
                Some((
                    id.clone(),
                    format!("{id} ({}) not answering: {why}", cap.name()),
                ))
            })
            .collect();
        let all_of = |cap: Capability| -> Option<f64> {
            let ids: Vec<&String> = device_list
                .iter()
                .filter(|(_, c)| *c == cap)
                .map(|(id, _)| id)
                .collect();
            ids.iter()
                .map(|id| states.get(*id).and_then(|s| s.good(Field::PowerKw, now)))
                .sum::<Option<f64>>()
                .map(|x| x + 0.0)
        };
        let meter_configured = !grid_meters.is_empty();
        let (kpv, kbattery, kev) = (
            all_of(Capability::PvInverter),
            all_of(Capability::Battery),
            all_of(Capability::EvCharger),
        );
        let kload = if meter_configured {
            match (kpv, kbattery, kev, grid_meter) {
                (Some(p), Some(b), Some(e), Some(g)) => Some((p + b + to_bus(g) - e).max(0.0)),
                _ => None,
            }
        } else {
            all_of(Capability::DcLoad)
        };
        Measured {
            states,
            pv,
            batteries_now,
            battery,
            grid_meter,
            load,
            known: Known {
                pv: kpv,
                battery: kbattery,
                ev: kev,
                load: kload,
            },
            lost,
            meter_lost: meter_configured && grid_meter.is_none(),
        }
    }

    /// 1-minute aggregates as each minute closes; old samples pruned every 60 cycles (all
    /// handed to the store's writer, after the samples they cover).
    fn housekeeping(&mut self, now: DateTime<Utc>) {
        let Cycle {
            writer,
            aggregated_to,
            summary,
            retention_days,
            log_retention_days,
            integrator,
            devices,
            ..
        } = self;
        // What the OCPP central system saw (connections, refusals, transactions): events.
        if let Some(h) = &devices.ocpp {
            for e in h.take_events() {
                let severity = if e.contains("refused")
                    || e.contains("did not answer")
                    || e.contains("faulted")
                {
                    "warning"
                } else {
                    "info"
                };
                writer.event(now, severity, "ocpp", e);
            }
        }
        let minute = minute_of(now);
        if minute > *aggregated_to {
            writer.send(Write::Aggregate {
                from: *aggregated_to,
                to: minute,
            });
            *aggregated_to = minute;
        }
        summary.cycles += 1;
        // The running interval so far, so a kill loses at most this many cycles of it.
        if summary.cycles % CHECKPOINT_CYCLES == 0 {
            if let Some(r) = integrator.running() {
                writer.send(Write::Records {
                    records: vec![r],
                    source: RUNNING.into(),
                    observed: Some(integrator.running_observed()),
                    closed: false,
                });
            }
        }
        if summary.cycles % 60 == 0 {
            writer.send(Write::PruneSamples(
                now - chrono::Duration::days(*retention_days),
            ));
        }
        if summary.cycles % 3600 == 1 {
            writer.send(Write::PruneLog(
                now - chrono::Duration::days(*log_retention_days),
            ));
        }
    }

    /// Shutdown: the last minute's aggregates and the running interval's partial record
    /// stored, every unit stopped (the controllable ones in their safe state), the sink
    /// flushed, the MQTT connection closed.
    async fn shutdown(mut self, now: DateTime<Utc>) -> RunSummary {
        let Cycle {
            integrator,
            aggregated_to,
            devices,
            sink,
            summary,
            writer,
            grid,
            ..
        } = &mut self;
        // Handed to the writer after the samples still queued, so the last minute's
        // aggregates cover them.
        writer.send(Write::Aggregate {
            from: *aggregated_to,
            to: now + chrono::Duration::milliseconds(1),
        });
        if let Some(partial) = integrator.finish() {
            writer.send(Write::Records {
                records: vec![partial.record],
                source: "measured-partial".into(),
                observed: Some(partial.coverage),
                closed: true,
            });
        }
        if let Some(g) = grid {
            g.stop();
        }
        let (not_made_safe, audit) = devices.stop().await;
        summary.not_made_safe = not_made_safe;
        summary.setpoints += store_audit(writer, audit);
        let (severity, message) = if summary.not_made_safe.is_empty() {
            (
                "info",
                "pedf run stopped; devices in their safe state".to_string(),
            )
        } else {
            (
                "warning",
                format!(
                    "pedf run stopped; not reached for the safe state (their own fail-safe applies): {}",
                    summary.not_made_safe.join(", ")
                ),
            )
        };
        writer.event(now, severity, "run", message);
        if let Some(k) = sink {
            let st = k.stop().await;
            if st.buffered_segments > 0 {
                writer.event(
                    now,
                    "warning",
                    "influx",
                    format!(
                        "InfluxDB: {} buffer segment(s) wait on disk for the next run ({})",
                        st.buffered_segments,
                        st.last_error.unwrap_or_default()
                    ),
                );
            }
        }
        if let Some(h) = &devices.hub {
            // Graceful: the broker acknowledges the safe-state commands queued above before
            // the disconnect.
            h.shutdown().await;
        }
        if let Some(h) = &devices.ocpp {
            // Each charger falls back to its safe default profile when the EMS's limit ends.
            h.stop();
        }
        // Everything handed over is written before the run returns.
        writer.finish();
        self.summary
    }
}
