//! Phases 2 and 3: the active plan's interval, the controller's decision, and each unit's
//! setpoint.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_core::Park;
use pedf_devices::capability::{Capability, Field};
use pedf_devices::unit::Order;
use pedf_store::Store;

use pedf_control::curtail::{CapChange, CurtailableLoad};
use pedf_control::{control, share_battery_power, ChargerNow, LoadNow, Mode, PlanTarget, Snapshot};

use super::{Cycle, Decision, Measured, RunIo};

/// The active plan, read from the store when it changes (not every cycle).
pub(super) struct ActivePlan {
    id: i64,
    label: String,
    plan: Result<pedf_core::plan::Plan, String>,
}

impl ActivePlan {
    /// The plan, when it could be read.
    pub(super) fn plan(&self) -> Option<&pedf_core::plan::Plan> {
        self.plan.as_ref().ok()
    }
}

/// The active plan's interval at `now` (typed: the plan as `pedf plan` writes it, read once
/// per plan), with the plan's label and its shed of curtailable demand, kW. A stored plan this
/// version cannot read is a fault, named, and the controller runs without a plan.
pub(super) fn plan_target(
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

impl Cycle {
    /// Phase 2: sessions and operators' orders, the month's peak guard, the active plan's
    /// interval, curtailable loads' caps, and the controller's setpoints.
    pub(super) fn control(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        io: &mut RunIo,
        faults: &mut Vec<String>,
    ) -> Decision {
        // The park's limits, with any the grid set over them (its link's limits and the
        // grid requests in force).
        self.take_grid_requests(now, io);
        let grid_limits = self.grid_limits(now);
        let Cycle {
            park,
            store,
            writer,
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
            time,
            commands_done,
            ..
        } = self;
        let controlled = &devices.controlled;
        let states = &m.states;
        let (pv, battery, load) = (m.pv, m.battery, m.load);
        Self::take_sessions(
            park, writer, devices, sessions, without, replanner, tracked, now, states, io,
        );
        super::commands::take_commands(devices, *time, commands_done, writer, now, io);
        let chargers: Vec<ChargerNow> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| {
                let max_kw = c.policy.limits.max;
                let drawing = states
                    .get(&c.id)
                    .and_then(|s| s.good(Field::PowerKw, now))
                    .unwrap_or(0.0);
                ChargerNow {
                    id: c.id.clone(),
                    wanted_kw: drawing,
                    // The balance counts what it draws, not a setpoint a car may not take.
                    drawing_kw: Some(drawing),
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
        let chosen = io
            .mode
            .as_ref()
            .map_or(Mode::Automatic, |m| m.borrow().clone());
        // Blind to the grid, the limits cannot be kept: every device at its safe value until
        // the meter answers again, whatever the operator's mode.
        let held_safe = (m.meter_lost && chosen != Mode::Safe).then(|| {
            "the grid meter is not answering: every device held at its safe value".to_string()
        });
        let mode = if held_safe.is_some() {
            Mode::Safe
        } else {
            chosen.clone()
        };
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
        let out = control(&grid_limits, &snapshot, plan.as_ref().map(|p| &p.0), &mode);
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
                    writer.event(
                        now,
                        "info",
                        "control",
                        format!(
                            "{id} capped at {cap_kw:.1} kW: {shed_kw:.1} kW of its demand shed ({})",
                            if *by_guard { "peak guard" } else { "plan" }
                        ),
                    );
                }
                CapChange::Capped { .. } => {}
                CapChange::Lifted { id, .. } => {
                    writer.event(now, "info", "control", format!("{id}: cap lifted"));
                }
            }
            let (id, kw) = change.write();
            cap_writes.insert(id.to_string(), kw);
        }
        Decision {
            mode,
            chosen,
            held_safe,
            plan,
            snapshot,
            out,
            cap_writes,
        }
    }

    /// Phase 3: each unit gets its setpoint, written through its safe control; a device that
    /// does not answer is held in its safe state by its unit's watchdog. Never waits.
    pub(super) fn apply(&self, m: &Measured, d: &Decision) {
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
}
