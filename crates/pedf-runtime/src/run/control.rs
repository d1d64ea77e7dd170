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

/// A deferrable load's last setpoint and how long it has drawn more than that.
#[derive(Debug, Clone)]
pub(super) struct LoadOrder {
    /// The last setpoint, kW (NaN before the first).
    told_kw: f64,
    /// Since when, and for how many cycles, it has drawn more than told.
    over_since: Option<DateTime<Utc>>,
    over_cycles: u32,
    /// Whether it was last said to follow.
    said_following: bool,
}

impl Default for LoadOrder {
    fn default() -> Self {
        LoadOrder {
            told_kw: f64::NAN,
            over_since: None,
            over_cycles: 0,
            said_following: true,
        }
    }
}

impl LoadOrder {
    /// How long a load may draw more than told before it is taken as not following, s of the
    /// EMS's time (and at least `GRACE_CYCLES` cycles): longer than a device's answer to a
    /// setpoint takes, polls included.
    pub(super) const GRACE_S: i64 = 60;
    const GRACE_CYCLES: u32 = 10;

    /// Whether the load follows its setpoints, with it drawing `kw` at `now`: it does until it
    /// has drawn more than told (by 2 kW or 5 %) for `GRACE_S` and `GRACE_CYCLES`.
    fn follows(&mut self, kw: f64, now: DateTime<Utc>) -> bool {
        let told = self.told_kw;
        if told.is_finite() && kw > told + (0.05 * told).max(2.0) {
            let since = *self.over_since.get_or_insert(now);
            self.over_cycles += 1;
            !((now - since).num_seconds() >= Self::GRACE_S
                && self.over_cycles >= Self::GRACE_CYCLES)
        } else {
            self.over_since = None;
            self.over_cycles = 0;
            true
        }
    }
}

impl ActivePlan {
    /// The plan, when it could be read.
    pub(super) fn plan(&self) -> Option<&pedf_core::plan::Plan> {
        self.plan.as_ref().ok()
    }

    /// Its id, when the plan could be read (a grid request's delivery may be measured
    /// against it).
    pub(super) fn readable_id(&self) -> Option<i64> {
        self.plan.is_ok().then_some(self.id)
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
            load_orders,
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
                // What the car would draw if let: with a session, the session's highest
                // power (a plan, the peak guard or the limits lower it). Not what it draws
                // now: that is this controller's last setpoint, and a car first seen at
                // 0 kW (not started yet) would be held there for as long as no plan names
                // its charger. A charger whose sessions are not tracked: what it draws.
                let session = sessions.on(&c.id);
                ChargerNow {
                    id: c.id.clone(),
                    wanted_kw: session.map_or(drawing, |s| s.max_kw.min(max_kw)),
                    // The balance counts what it draws, not a setpoint a car may not take.
                    drawing_kw: Some(drawing),
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw,
                    // What the session needs now to finish by its departure.
                    must_kw: session.map_or(0.0, |s| {
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
        // Deferrable loads the plan schedules, each with whether it follows its setpoints.
        let loads: Vec<LoadNow> = controlled
            .iter()
            .filter(|c| c.deferrable.is_some())
            .filter_map(|c| {
                let kw = states.get(&c.id)?.good(Field::PowerKw, now)?;
                let order = load_orders.entry(c.id.clone()).or_default();
                let follows = order.follows(kw, now);
                if follows != order.said_following {
                    order.said_following = follows;
                    writer.event(
                        now,
                        if follows { "info" } else { "warning" },
                        "control",
                        if follows {
                            format!("{} follows its setpoint again", c.id)
                        } else {
                            format!(
                                "{} does not follow its setpoint: told {:.1} kW, it has drawn {kw:.1} kW for {} s; counted at what it draws (the battery covers it)",
                                c.id,
                                order.told_kw,
                                LoadOrder::GRACE_S
                            )
                        },
                    );
                }
                Some(LoadNow {
                    id: c.id.clone(),
                    kw,
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw: c.policy.limits.max,
                    follows,
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
        for (id, kw) in &out.loads {
            load_orders.entry(id.clone()).or_default().told_kw = *kw;
        }
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

#[cfg(test)]
mod tests {
    use super::LoadOrder;

    /// A load drawing more than told is taken as not following only after the grace (time
    /// and cycles both), and follows again as soon as it draws what it is told.
    #[test]
    fn a_load_that_keeps_drawing_more_than_told_is_not_following() {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-06T16:00:00+08:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut o = LoadOrder::default();
        // No setpoint yet: follows.
        assert!(o.follows(30.0, at(0)));
        o.told_kw = 0.0;
        // Over for 60 s but in fewer than 10 cycles; then over 10 cycles within the grace.
        assert!(o.follows(30.0, at(0)));
        assert!(o.follows(30.0, at(61)));
        let mut p = LoadOrder {
            told_kw: 0.0,
            ..LoadOrder::default()
        };
        for k in 0..10 {
            assert!(p.follows(30.0, at(k)), "cycle {k}");
        }
        assert!(!p.follows(30.0, at(60)));
        assert!(!p.follows(145.0, at(120)));
        // Within 2 kW (or 5 %) of its setpoint it follows.
        assert!(p.follows(1.5, at(121)));
        p.told_kw = 100.0;
        assert!(p.follows(104.0, at(122)));
    }
}
