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
//! 4. **record**: samples, events and the units' audit into the store (one transaction each),
//!    the InfluxDB sink, energy records;
//! 5. **publish**: the park now to the server.
//!
//! A device that stops answering, or a cycle that stalls, puts the devices into their safe
//! state by the units' watchdogs. On shutdown (Ctrl-C, SIGTERM, or the given duration) every
//! controllable device is put into its safe state and the store is flushed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::Park;
use pedf_devices::capability::{Capability, DeviceState, Field, Quality};
use pedf_devices::control::AuditEvent;
use pedf_devices::template::load_device_set;
use pedf_devices::unit::Order;
use pedf_store::{Sample, Store};

use crate::devices::Devices;
use crate::live::{tariff_now, today, ChargerLive, DeviceLive, Flows, Integrator, Live, ModeView};
use crate::so_far::SoFar;
use pedf_control::curtail::{CapChange, CurtailableLoad, Curtailment};
use pedf_control::{
    control, pool_batteries, share_battery_power, BatteryNow, BatteryUnit, ChargerNow, Limits,
    LoadNow, Mode, PlanTarget, Snapshot,
};
use tokio::sync::watch;

pub use crate::config::{RunConfig, ServerConfig};

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Control cycles run.
    pub cycles: u64,
    /// Samples stored.
    pub samples: u64,
    /// Setpoints the devices took from the controller.
    pub setpoints: u64,
    /// Alarms the controller raised.
    pub alarms: u64,
    /// Controllable devices that could not be put into their safe state at shutdown (not
    /// answering: their own fail-safe applies).
    pub not_made_safe: Vec<String>,
}

fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Stale => 1,
        Quality::Bad => 2,
    }
}

fn samples_of(state: &DeviceState, now: DateTime<Utc>, out: &mut Vec<Sample>) {
    for f in state.capability.fields() {
        if let Some(r) = state.reading(*f, now) {
            out.push(Sample {
                device: state.id.clone(),
                field: f.name().into(),
                at: r.at,
                value: r.value,
                quality: quality_code(r.quality),
            });
        }
    }
}

/// The active plan, read from the store when it changes (not every cycle).
struct ActivePlan {
    id: i64,
    label: String,
    plan: Result<pedf_core::plan::Plan, String>,
}

/// The active plan's interval at `now` (typed: the plan as `pedf plan` writes it, read once
/// per plan), with the plan's label and its shed of curtailable demand, kW. A stored plan this
/// version cannot read is a fault, named, and the controller runs without a plan.
fn plan_target(
    store: &Store,
    park: &Park,
    now: DateTime<Utc>,
    cache: &mut Option<ActivePlan>,
    faults: &mut Vec<String>,
) -> Option<(PlanTarget, String, f64)> {
    let day = park.clock.local(now).date_naive().to_string();
    let (id, strategy, json) = store.active_plan(&day).ok()??;
    if cache.as_ref().is_none_or(|c| c.id != id) {
        *cache = Some(ActivePlan {
            id,
            label: format!("plan #{id} ({strategy})"),
            plan: serde_json::from_str(&json).map_err(|e| e.to_string()),
        });
    }
    let active = cache.as_ref()?;
    let plan = match &active.plan {
        Ok(p) => p,
        Err(e) => {
            faults.push(format!(
                "{} cannot be read ({e}): running without a plan",
                active.label
            ));
            return None;
        }
    };
    let start = park.clock.interval_start(now);
    let interval = plan
        .intervals
        .iter()
        .find(|i| i.start.with_timezone(&Utc) == start)?;
    Some((
        PlanTarget::of(interval),
        active.label.clone(),
        interval.load_shed_kw.max(0.0),
    ))
}

/// Moves the units' audit entries into the store; returns how many were the controller's
/// setpoints taken.
fn store_audit(store: &mut Store, audit: Vec<AuditEvent>) -> u64 {
    let taken = audit
        .iter()
        .filter(|a| a.by == "controller" && a.readback.is_some())
        .count() as u64;
    for a in audit {
        let _ = store.audit(
            a.at,
            &a.device,
            &a.by,
            &a.reason,
            a.requested,
            a.written,
            a.readback,
            &a.outcome,
        );
    }
    taken
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
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.cycle_ms));
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
    ems.started(time.now(), unread.as_deref().unwrap_or_default())?;
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
struct Cycle {
    park: Park,
    limits: Limits,
    battery_units: Vec<BatteryUnit>,
    store: Store,
    devices: Devices,
    /// Every device of the list, id and capability, for the live state.
    device_list: Vec<(String, Capability)>,
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
    summary: RunSummary,
    timing: pedf_core::live::CycleTiming,
}

/// What the snapshot phase read of the park.
struct Measured {
    states: BTreeMap<String, DeviceState>,
    pv: f64,
    /// Each battery that answers with its SoC, by park asset.
    batteries_now: Vec<(String, BatteryNow)>,
    /// The batteries pooled, as the controller sees them.
    battery: Option<BatteryNow>,
    battery_kw: f64,
    ev_now: f64,
    grid_meter: Option<f64>,
    load: f64,
}

/// What the control phase decided.
struct Decision {
    mode: Mode,
    /// The plan's interval, its label and its shed of curtailable demand, kW.
    plan: Option<(PlanTarget, String, f64)>,
    snapshot: Snapshot,
    out: pedf_control::Setpoints,
    /// Curtailable loads' caps that changed (lifted: their maximum).
    cap_writes: BTreeMap<String, f64>,
}

fn session_defaults(park: &Park, asset: &str) -> crate::sessions::Defaults {
    let c = park.ev_chargers.iter().find(|c| c.id == asset);
    crate::sessions::Defaults {
        session_kwh: c.map_or(0.0, |c| c.session_kwh),
        session_hours: c.map_or(0.0, |c| c.session_hours),
        max_kw: c.map_or(0.0, |c| c.max_power.0),
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
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
        let now = time.now();
        let mut integrator =
            Integrator::new(&park).with_max_gap_ms((10_000.0 * time.speed()).round() as i64);
        let from = park
            .clock
            .start_of_local_day(park.clock.local(now).date_naive());
        let mut day_records: Vec<_> = store
            .records(from, now)
            .map(|v| v.into_iter().map(|(r, _)| r).collect())
            .unwrap_or_default();
        let running_start = park.clock.interval_start(now);
        if let Some(i) = day_records.iter().position(|r| r.start == running_start) {
            integrator.resume(day_records.remove(i));
        }
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
            cycle_h: cfg.cycle_ms as f64 / 3.6e6,
            curtailment: Curtailment::default(),
            retention_days: cfg.retention_days,
            summary: RunSummary::default(),
            timing: Default::default(),
            device_list: set
                .devices
                .devices
                .iter()
                .map(|d| (d.id.clone(), d.capability))
                .collect(),
            sink,
            devices,
            store,
            park,
        })
    }

    /// Says the run started (and which devices were not read before the first cycle).
    fn started(&mut self, now: DateTime<Utc>, unread: &[String]) -> Result<(), String> {
        self.store
            .event(
                now,
                "info",
                "run",
                &format!(
                    "pedf run started for {} with {} devices",
                    self.park.id,
                    self.device_list.len()
                ),
            )
            .map_err(|e| e.to_string())?;
        if !unread.is_empty() {
            let _ = self.store.event(
                now,
                "warning",
                "devices",
                &format!(
                    "not read before the first cycle (control starts without them): {}",
                    unread.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// One cycle, in phases; none waits on the network.
    fn step(&mut self, now: DateTime<Utc>, lag_ms: f64, io: &mut RunIo) {
        let work_started = std::time::Instant::now();
        let mut faults: Vec<String> = Vec::new();
        let m = self.snapshot(now);
        let d = self.control(now, &m, io, &mut faults);
        self.apply(&m, &d);
        let (flows, chargers_live) = self.record(now, &m, &d, &mut faults);
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
            ..
        } = self;
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
        let ev_now = good(Capability::EvCharger, Field::PowerKw);
        let grid_meter = states
            .values()
            .find(|s| s.capability == Capability::Meter)
            .and_then(|s| s.good(Field::PowerKw, now));
        let load = match grid_meter {
            Some(g) => (pv
                + battery_kw
                + if g >= 0.0 {
                    g * limits.eta_in
                } else {
                    g / limits.eta_out
                }
                - ev_now)
                .max(0.0),
            None => good(Capability::DcLoad, Field::PowerKw),
        };
        Measured {
            states,
            pv,
            batteries_now,
            battery,
            battery_kw,
            ev_now,
            grid_meter,
            load,
        }
    }

    /// Phase 2: sessions and operators' orders, the month's peak guard, the active plan's
    /// interval, curtailable loads' caps, and the controller's setpoints.
    fn control(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        io: &mut RunIo,
        faults: &mut Vec<String>,
    ) -> Decision {
        let Cycle {
            park,
            store,
            devices,
            sessions,
            without,
            replanner,
            tracked,
            cycle_h,
            so_far,
            integrator,
            active_plan,
            curtailment,
            limits,
            ..
        } = self;
        let controlled = &devices.controlled;
        let states = &m.states;
        let (pv, battery, load) = (m.pv, m.battery, m.load);
        Self::take_sessions(
            park, store, devices, sessions, without, replanner, tracked, now, states, io,
        );
        let chargers: Vec<ChargerNow> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| {
                let max_kw = c.policy.limits.max;
                ChargerNow {
                    id: c.id.clone(),
                    wanted_kw: states
                        .get(&c.id)
                        .and_then(|s| s.good(Field::PowerKw, now))
                        .unwrap_or(0.0),
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw,
                    // What the session needs now to finish by its departure.
                    must_kw: sessions.on(&c.id).map_or(0.0, |s| {
                        pedf_control::ev_must_kw(
                            s.owed_kwh(),
                            s.max_kw.min(max_kw),
                            s.hours_left(now),
                            *cycle_h,
                        )
                    }),
                }
            })
            .collect();
        // Deferrable loads the plan schedules.
        let loads: Vec<LoadNow> = controlled
            .iter()
            .filter(|c| c.deferrable.is_some())
            .filter_map(|c| {
                Some(LoadNow {
                    id: c.id.clone(),
                    kw: states.get(&c.id)?.good(Field::PowerKw, now)?,
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw: c.policy.limits.max,
                })
            })
            .collect();
        so_far.roll(park, now);
        let interval_h = park.clock.interval.hours().0;
        // The peak guard: what keeps the running interval's (the demand window's) average import
        // at the level the month's peak so far allows. None before the month has a level (its
        // first intervals, no target): there is no peak yet to protect.
        let level = park.tariff.demand.free_up_to(so_far.figures.peak_kw);
        let import_guard_kw =
            (park.tariff.demand.marginal_rate() > 0.0 && level > 0.0).then(|| {
                let running = integrator.running();
                let start = running.as_ref().map_or(now, |r| r.start);
                pedf_control::window_allowance(
                    level,
                    interval_h * 3600.0,
                    (now - start).num_milliseconds() as f64 / 1000.0,
                    running.map_or(0.0, |r| r.grid_import_kwh),
                )
            });
        // The plan names loads by asset; the controller by device.
        let plan =
            plan_target(store, park, now, active_plan, faults).map(|(mut target, label, shed)| {
                target.ev_kw = controlled
                    .iter()
                    .filter(|c| c.capability == Capability::EvCharger)
                    .filter_map(|c| {
                        let kw = target.ev_kw.iter().find(|(id, _)| *id == c.asset)?.1;
                        Some((c.id.clone(), kw))
                    })
                    .collect();
                target.loads_kw = controlled
                    .iter()
                    .filter_map(|c| {
                        let a = c.deferrable.as_ref()?;
                        let kw = target.loads_kw.iter().find(|(id, _)| id == a)?.1;
                        Some((c.id.clone(), kw))
                    })
                    .collect();
                (target, label, shed)
            });
        let mode = io
            .mode
            .as_ref()
            .map_or(Mode::Automatic, |m| m.borrow().clone());
        // Curtailable loads: their demand when not held and the plan's shed over them
        // (pedf_control::curtail). The load the controller sees is the demand without last
        // cycle's caps, less the plan's shed.
        let curtailable: Vec<CurtailableLoad> = controlled
            .iter()
            .filter_map(|c| {
                Some(CurtailableLoad {
                    id: c.id.clone(),
                    measured_kw: states.get(&c.id).and_then(|s| s.good(Field::PowerKw, now)),
                    share: c.curtailable?,
                    max_kw: c.policy.limits.max,
                })
            })
            .collect();
        let plan_shed = match (&mode, &plan) {
            (Mode::Automatic, Some(p)) => p.2,
            _ => 0.0,
        };
        let shares = curtailment.share(&curtailable, plan_shed);
        let snapshot = Snapshot {
            pv_available_kw: pv,
            load_kw: (load + shares.held_kw - shares.planned_kw).max(0.0),
            chargers,
            battery,
            loads,
            curtailable_kw: shares.room_kw,
            import_guard_kw,
        };
        let out = control(limits, &snapshot, plan.as_ref().map(|p| &p.0), &mode);
        // Each curtailable load's cap: its demand less the plan's shed and its part of the
        // guard's; written when it changes, and once to lift it.
        let mut cap_writes: BTreeMap<String, f64> = BTreeMap::new();
        for change in curtailment.caps(&shares, out.shed_kw) {
            match &change {
                CapChange::Capped {
                    id,
                    cap_kw,
                    shed_kw,
                    by_guard,
                    first: true,
                } => {
                    let _ = store.event(
                        now,
                        "info",
                        "control",
                        &format!(
                            "{id} capped at {cap_kw:.1} kW: {shed_kw:.1} kW of its demand shed ({})",
                            if *by_guard { "peak guard" } else { "plan" }
                        ),
                    );
                }
                CapChange::Capped { .. } => {}
                CapChange::Lifted { id, .. } => {
                    let _ = store.event(now, "info", "control", &format!("{id}: cap lifted"));
                }
            }
            let (id, kw) = change.write();
            cap_writes.insert(id.to_string(), kw);
        }
        Decision {
            mode,
            plan,
            snapshot,
            out,
            cap_writes,
        }
    }

    /// Phase 3: each unit gets its setpoint, written through its safe control; a device that
    /// does not answer is held in its safe state by its unit's watchdog. Never waits.
    fn apply(&self, m: &Measured, d: &Decision) {
        let Cycle {
            park,
            devices,
            battery_units,
            ..
        } = self;
        let (controlled, units) = (&devices.controlled, &devices.units);
        let Decision {
            mode,
            snapshot,
            out,
            cap_writes,
            ..
        } = d;
        let batteries_now = &m.batteries_now;
        // Apply: each unit gets its setpoint (written through its safe control; a device that
        // does not answer is held in its safe state by its unit's watchdog).
        let battery_shares = share_battery_power(out.battery_kw, battery_units, batteries_now);
        // The audit names the mode the setpoint came from.
        let reason = match &mode {
            Mode::Automatic => "automatic cycle",
            Mode::Manual { .. } => "manual mode (operator's battery setpoint)",
            Mode::Safe => "safe mode",
        };
        for c in controlled {
            let value = match c.capability {
                Capability::Battery => battery_shares
                    .iter()
                    .find(|(id, _)| *id == c.asset)
                    .map(|(_, kw)| *kw),
                Capability::EvCharger => out
                    .chargers
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw),
                // A scheduled load gets the plan's power; a curtailable one its cap.
                Capability::DcLoad => out
                    .loads
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw)
                    .or_else(|| cap_writes.get(&c.id).copied()),
                Capability::PvInverter => Some(if out.pv_kw + 1e-6 < snapshot.pv_available_kw {
                    100.0 * out.pv_kw / park.pv_peak_power().0.max(1e-9)
                } else {
                    100.0
                }),
                _ => None,
            };
            if let (Some(value), Some(unit)) = (value, units.get(&c.id)) {
                unit.order(Order {
                    value,
                    by: "controller".into(),
                    reason: reason.into(),
                });
            }
        }
    }

    /// Phase 4: samples, alarms and the units' audit into the store, samples to the InfluxDB
    /// sink, the flows, intraday re-planning, the interval's energy record when it closes.
    fn record(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        d: &Decision,
        faults: &mut Vec<String>,
    ) -> (Flows, Vec<ChargerLive>) {
        let Cycle {
            park,
            store,
            devices,
            sink,
            summary,
            limits,
            sessions,
            replanner,
            replan_note,
            so_far,
            integrator,
            day_records,
            tracked,
            without,
            ..
        } = self;
        let controlled = &devices.controlled;
        let states = &m.states;
        let (pv, battery_kw, ev_now, grid_meter, load) =
            (m.pv, m.battery_kw, m.ev_now, m.grid_meter, m.load);
        let Decision { snapshot, out, .. } = d;
        // Store: samples, alarms, audit.
        let mut samples = Vec::new();
        for s in states.values() {
            samples_of(s, now, &mut samples);
        }
        summary.samples += samples.len() as u64;
        if let Err(e) = store.insert_samples(&samples) {
            tracing::error!(error = %e, "samples not stored; control goes on");
            faults.push(format!("samples not stored: {e}"));
        }
        if let Some(k) = &sink {
            if !k.send(samples.clone()) {
                faults.push("InfluxDB sink queue full: this cycle's samples not sent".into());
            }
        }
        for a in &out.alarms {
            summary.alarms += 1;
            let _ = store.event(now, "alarm", "control", a);
        }
        summary.setpoints += store_audit(store, devices.take_audit());
        // The park now: flows from the measurements, energy records, today's figures.
        let converter_dc_kw;
        let grid_kw;
        match grid_meter {
            Some(g) => {
                grid_kw = g;
                converter_dc_kw = if g >= 0.0 {
                    g * limits.eta_in
                } else {
                    g / limits.eta_out
                };
            }
            None => {
                converter_dc_kw = load + ev_now - pv - battery_kw;
                grid_kw = if converter_dc_kw >= 0.0 {
                    converter_dc_kw / limits.eta_in
                } else {
                    converter_dc_kw * limits.eta_out
                };
            }
        }
        let flows = Flows {
            pv_kw: pv,
            pv_available_kw: snapshot.pv_available_kw,
            battery_kw,
            soc_pct: snapshot.battery.as_ref().map(|b| b.soc_pct),
            load_kw: load,
            ev_kw: ev_now,
            converter_dc_kw,
            grid_kw,
            grid_measured: grid_meter.is_some(),
        };
        let chargers_live: Vec<ChargerLive> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| ChargerLive {
                id: c.id.clone(),
                kw: states
                    .get(&c.id)
                    .and_then(|s| s.good(Field::PowerKw, now))
                    .unwrap_or(0.0),
                setpoint_kw: out
                    .chargers
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw),
                session: sessions.on(&c.id).map(|s| crate::live::SessionLive {
                    arrival: s.arrival,
                    departure: s.departure,
                    requested_kwh: s.requested_kwh,
                    delivered_kwh: s.delivered_kwh,
                }),
            })
            .collect();
        Self::replan(
            park,
            store,
            replanner,
            replan_note,
            so_far,
            sessions,
            now,
            grid_kw,
            d,
        );
        if let Some(n) = replan_note.as_ref() {
            faults.push(n.clone());
        }
        if let Some(closed) = integrator.add(now, &flows, &chargers_live) {
            // Without the EMS (an interval of the month): the tracked chargers' cars on arrival
            // (alongside), the others' as they charged.
            let without_ems_import = so_far.in_month(park, &closed).then(|| {
                let untracked_ev: f64 = closed
                    .ev_chargers
                    .iter()
                    .filter(|(id, _)| !tracked.contains(id))
                    .map(|(_, kwh)| kwh)
                    .sum();
                let untracked_ev = if tracked.is_empty() {
                    closed.ev_kwh
                } else {
                    untracked_ev
                };
                let (imp, _) = without.interval(
                    park.clock.interval.hours().0,
                    closed.load_kwh + untracked_ev,
                    closed.pv_kwh,
                    park.converter.efficiency_ac_to_dc,
                );
                if let Err(e) = store.put_without_ems(closed.start, imp) {
                    tracing::error!(error = %e, "the interval's import without the EMS not stored");
                }
                imp
            });
            so_far.add(park, &closed, without_ems_import);
            if let Err(e) = store.put_records(std::slice::from_ref(&closed), "measured") {
                tracing::error!(error = %e, "interval record not stored");
                faults.push(format!("interval record not stored: {e}"));
            }
            day_records.push(closed);
        }
        (flows, chargers_live)
    }

    /// Sessions: arrivals and departures from the chargers' states, and operators' orders on
    /// them (what a car needs, when it leaves); each an event, a change a re-plan.
    #[allow(clippy::too_many_arguments)]
    fn take_sessions(
        park: &Park,
        store: &mut Store,
        devices: &Devices,
        sessions: &mut crate::sessions::Sessions,
        without: &mut pedf_core::records::WithoutEms,
        replanner: &mut Option<crate::replan::Replanner>,
        tracked: &[String],
        now: DateTime<Utc>,
        states: &BTreeMap<String, DeviceState>,
        io: &mut RunIo,
    ) {
        let controlled = &devices.controlled;
        let session_defaults = |asset: &str| session_defaults(park, asset);
        // Sessions: arrivals and departures from the chargers' states.
        let readings: Vec<_> = controlled
            .iter()
            .filter(|c| tracked.contains(&c.id))
            .map(|c| {
                let st = states.get(&c.id);
                (
                    c.id.clone(),
                    c.asset.clone(),
                    session_defaults(&c.asset),
                    crate::sessions::Reading {
                        state: st.and_then(|s| s.good(Field::ChargerState, now)),
                        session_kwh: st.and_then(|s| s.good(Field::SessionKwh, now)),
                        power_kw: st.and_then(|s| s.good(Field::PowerKw, now)).unwrap_or(0.0),
                    },
                )
            })
            .collect();
        for change in sessions.update(now, &readings) {
            match change {
                crate::sessions::Change::Arrived(s) => {
                    without.arrive(&s.device, s.requested_kwh, s.max_kw);
                    let _ = store.event(
                        now,
                        "info",
                        "ev",
                        &format!(
                            "car on {}: asks {:.1} kWh by {} (the park's default session)",
                            s.charger,
                            s.requested_kwh,
                            park.clock.format(s.departure)
                        ),
                    );
                    if let Some(rp) = replanner.as_mut() {
                        rp.request(format!("a car arrived on {}", s.charger));
                    }
                }
                crate::sessions::Change::Departed(s) => {
                    without.depart(&s.device, Some(s.delivered_kwh));
                    let short = s.owed_kwh();
                    let severity = if short > 0.01 && now >= s.departure {
                        "warning"
                    } else {
                        "info"
                    };
                    let _ = store.event(
                        now,
                        severity,
                        "ev",
                        &format!(
                            "car left {}: {:.1} of {:.1} kWh in {:.1} h{}",
                            s.charger,
                            s.delivered_kwh,
                            s.requested_kwh,
                            (now - s.arrival).num_seconds() as f64 / 3600.0,
                            if short <= 0.01 {
                                String::new()
                            } else if now >= s.departure {
                                format!(", {short:.1} kWh short")
                            } else {
                                " (before its expected departure)".to_string()
                            }
                        ),
                    );
                }
            }
        }
        // Operators' orders on the sessions (what a car needs, when it leaves).
        while let Some(order) = io.orders.as_mut().and_then(|rx| rx.try_recv().ok()) {
            let outcome = sessions.apply(now, &order);
            let (severity, message, result) = match &outcome {
                Ok(s) => (
                    "info",
                    format!(
                        "session on {} set by {}: {:.1} kWh by {} ({})",
                        s.charger,
                        order.by,
                        s.requested_kwh,
                        park.clock.format(s.departure),
                        order.reason
                    ),
                    "accepted".to_string(),
                ),
                Err(e) => (
                    "warning",
                    format!(
                        "session order for {} by {} refused: {e}",
                        order.charger, order.by
                    ),
                    format!("refused: {e}"),
                ),
            };
            let _ = store.event(now, severity, "ev", &message);
            let _ = store.audit(
                now,
                &order.charger,
                &order.by,
                &format!("session: {}", order.reason),
                order.energy_kwh.unwrap_or(0.0),
                None,
                None,
                &result,
            );
            if outcome.is_ok() {
                if let Some(rp) = replanner.as_mut() {
                    rp.request(format!("the session on {} was changed", order.charger));
                }
            }
        }
    }

    /// Intraday re-planning (automatic mode only), off the control path: a finished re-plan
    /// stored and activated (an alarm when it is the fallback), a new one started when due.
    #[allow(clippy::too_many_arguments)]
    fn replan(
        park: &Park,
        store: &mut Store,
        replanner: &mut Option<crate::replan::Replanner>,
        replan_note: &mut Option<String>,
        so_far: &SoFar,
        sessions: &crate::sessions::Sessions,
        now: DateTime<Utc>,
        grid_kw: f64,
        d: &Decision,
    ) {
        let Decision {
            mode,
            plan,
            snapshot,
            ..
        } = d;
        // Intraday re-planning (automatic mode only), off the control path.
        if let Some(rp) = replanner.as_mut() {
            if let Some(o) = rp.poll() {
                match o.plan {
                    Ok(replanned) => {
                        let strategy = replanned.label();
                        let stored = serde_json::to_string(&replanned.plan)
                            .map_err(|e| e.to_string())
                            .and_then(|json| {
                                store
                                    .put_plan(now, &o.day.to_string(), &strategy, &json)
                                    .map_err(|e| e.to_string())
                            })
                            .and_then(|id| {
                                store.activate_plan(id).map_err(|e| e.to_string())?;
                                Ok(id)
                            });
                        match stored {
                            Ok(id) => {
                                let severity = if replanned.fallback.is_some() {
                                    "alarm"
                                } else {
                                    "info"
                                };
                                let _ = store.event(
                                    now,
                                    severity,
                                    "plan",
                                    &format!(
                                        "re-planned ({}): plan #{id} ({strategy}) active",
                                        o.why
                                    ),
                                );
                                *replan_note = None;
                            }
                            Err(e) => *replan_note = Some(format!("re-plan not stored: {e}")),
                        }
                    }
                    Err(e) => {
                        let _ = store.event(
                            now,
                            "alarm",
                            "plan",
                            &format!("re-plan failed ({}): {e}", o.why),
                        );
                        *replan_note = Some(format!("re-plan failed: {e}"));
                    }
                }
            } else if *mode == Mode::Automatic {
                let plan_grid = plan
                    .as_ref()
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw);
                if let Some(why) = rp.due(now, grid_kw, plan_grid) {
                    let stored = snapshot
                        .battery
                        .as_ref()
                        .map(|b| b.soc_pct / 100.0 * park.battery_capacity().0);
                    let month = so_far.figures;
                    rp.start(now, stored, month, sessions.open().cloned().collect(), why);
                }
            }
        }
    }

    /// Phase 5: the park now, with the cycle's work time and lag, to the server.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        d: &Decision,
        (flows, chargers_live): (Flows, Vec<ChargerLive>),
        faults: Vec<String>,
        (work_ms, lag_ms): (f64, f64),
        io: &RunIo,
    ) {
        let Cycle {
            park,
            day_records,
            integrator,
            device_list,
            so_far,
            summary,
            timing,
            ..
        } = self;
        let states = &m.states;
        let Decision {
            mode, plan, out, ..
        } = d;
        if let Some(tx) = &io.live {
            let day_start = park
                .clock
                .start_of_local_day(park.clock.local(now).date_naive());
            day_records.retain(|r| r.start >= day_start);
            let mut recs = day_records.clone();
            recs.extend(integrator.running());
            let devices = device_list
                .iter()
                .map(|(id, capability)| {
                    let st = states.get(id);
                    let quality = match st {
                        None => "none",
                        Some(s) if s.last_error.is_some() => "bad",
                        Some(s) => match s.last_ok {
                            None => "none",
                            Some(t) if (now - t).to_std().unwrap_or_default() > s.stale_after => {
                                "stale"
                            }
                            Some(_) => "good",
                        },
                    };
                    DeviceLive {
                        id: id.clone(),
                        capability: capability.name().to_string(),
                        quality: quality.into(),
                        last_ok: st.and_then(|s| s.last_ok),
                        error: st.and_then(|s| s.last_error.clone()),
                    }
                })
                .collect();
            let month_live = so_far.live(park, now);
            let live = Live {
                month: month_live,
                park_id: park.id.clone(),
                park_name: park.name.clone(),
                park_name_zh: park.name_zh.clone(),
                at: Some(now),
                cycle: summary.cycles + 1,
                cycle_work_ms: work_ms,
                cycle_lag_ms: lag_ms,
                timing: timing.clone(),
                mode: Some(ModeView::from(mode)),
                strategy: match &mode {
                    Mode::Safe => "safe state (every device at its safe value)".to_string(),
                    Mode::Manual { .. } => "manual battery setpoint".to_string(),
                    Mode::Automatic => plan.as_ref().map_or_else(
                        || "self-consumption (no active plan)".to_string(),
                        |p| p.1.clone(),
                    ),
                },
                plan_grid_kw: plan
                    .as_ref()
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw),
                flows,
                chargers: chargers_live,
                tariff: tariff_now(park, now),
                battery_capacity_kwh: park.battery_capacity().0,
                grid_factor_kg_per_kwh: park.carbon.grid_factor.value.0,
                today: today(park, &recs, now),
                devices,
                alarms: out.alarms.clone(),
                faults,
            };
            tx.send_replace(Arc::new(live));
        }
    }

    /// 1-minute aggregates as each minute closes; old samples pruned every 60 cycles.
    fn housekeeping(&mut self, now: DateTime<Utc>) {
        let Cycle {
            store,
            aggregated_to,
            summary,
            retention_days,
            ..
        } = self;
        let minute = minute_of(now);
        if minute > *aggregated_to {
            match store.aggregate_minutes(*aggregated_to, minute) {
                Ok(_) => *aggregated_to = minute,
                Err(e) => tracing::error!(error = %e, "1-minute aggregates not made"),
            }
        }
        summary.cycles += 1;
        if summary.cycles % 60 == 0 {
            let _ = store.prune_samples(now - chrono::Duration::days(*retention_days));
        }
    }

    /// Shutdown: the last minute's aggregates and the running interval's partial record
    /// stored, every unit stopped (the controllable ones in their safe state), the sink
    /// flushed, the MQTT connection closed.
    async fn shutdown(mut self, now: DateTime<Utc>) -> RunSummary {
        let Cycle {
            store,
            integrator,
            aggregated_to,
            devices,
            sink,
            summary,
            ..
        } = &mut self;
        let _ = store.aggregate_minutes(*aggregated_to, now + chrono::Duration::milliseconds(1));
        if let Some(partial) = integrator.finish() {
            let _ = store.put_records(&[partial], "measured-partial");
        }
        let (not_made_safe, audit) = devices.stop().await;
        summary.not_made_safe = not_made_safe;
        summary.setpoints += store_audit(store, audit);
        let message = if summary.not_made_safe.is_empty() {
            "pedf run stopped; devices in their safe state".to_string()
        } else {
            format!(
                "pedf run stopped; not reached for the safe state: {}",
                summary.not_made_safe.join(", ")
            )
        };
        let _ = store.event(now, "info", "run", &message);
        if let Some(k) = sink {
            let st = k.stop().await;
            if st.buffered_segments > 0 {
                let _ = store.event(
                    now,
                    "warning",
                    "influx",
                    &format!(
                        "InfluxDB: {} buffer segment(s) wait on disk for the next run ({})",
                        st.buffered_segments,
                        st.last_error.unwrap_or_default()
                    ),
                );
            }
        }
        if let Some(h) = &devices.hub {
            // Graceful: the safe-state commands queued above go out before the disconnect.
            h.shutdown().await;
        }
        self.summary
    }
}
