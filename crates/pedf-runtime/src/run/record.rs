//! Phase 4: samples, alarms and audit into the store and the InfluxDB sink, the flows, the
//! interval's energy record, and intraday re-planning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_core::Park;
use pedf_devices::capability::{Capability, DeviceState, Field, Quality};
use pedf_devices::control::AuditEvent;
use pedf_store::Sample;

use super::writer::{StoreWriter, Write};

use crate::live::{ChargerLive, Flows};
use crate::so_far::SoFar;
use pedf_control::Mode;
use pedf_core::live::ChargerAction;

use super::{Cycle, Decision, Measured};

pub(super) fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Stale => 1,
        Quality::Bad => 2,
    }
}

pub(super) fn samples_of(state: &DeviceState, now: DateTime<Utc>, out: &mut Vec<Sample>) {
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

/// An alarm's text without its figures: the same alarm while its numbers change.
pub(super) fn alarm_key(text: &str) -> String {
    text.chars()
        .filter(|c| !(c.is_ascii_digit() || *c == '.' || *c == '-'))
        .collect()
}

/// Hands the units' audit entries to the store's writer; returns how many were the
/// controller's setpoints taken.
pub(super) fn store_audit(writer: &StoreWriter, audit: Vec<AuditEvent>) -> u64 {
    let taken = audit
        .iter()
        .filter(|a| a.by == "controller" && a.readback.is_some())
        .count() as u64;
    if !audit.is_empty() {
        writer.send(Write::Audit(audit));
    }
    taken
}

/// What a re-plan needs of the grid's requests: those held and waiting, the limits the grid's
/// master set, the plan before it and the store.
pub(super) struct Requesting<'a> {
    requests: &'a mut super::grid::Requests,
    master: super::grid::GridCaps,
    before: Option<&'a pedf_core::plan::Plan>,
    store: &'a mut pedf_store::Store,
}

impl Cycle {
    /// Phase 4: samples, alarms and the units' audit to the store's writer, samples to the
    /// InfluxDB sink, the flows, intraday re-planning, the interval's energy record when it closes.
    pub(super) fn record(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        d: &Decision,
        faults: &mut Vec<String>,
    ) -> (Flows, Vec<ChargerLive>) {
        let Cycle {
            park,
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
            lost,
            held_safe,
            sink_seen,
            writer,
            control_alarms,
            requests,
            grid,
            active_plan,
            store,
            counters,
            ..
        } = self;
        let controlled = &devices.controlled;
        let states = &m.states;
        let Decision { snapshot, out, .. } = d;
        // Store: samples, alarms, audit.
        let mut samples = Vec::new();
        for s in states.values() {
            samples_of(s, now, &mut samples);
        }
        summary.samples += samples.len() as u64;
        // To the store through its own writer: a slow or full disk never holds the cycle
        // (its errors and what it had to drop are the cycle's faults).
        writer.send(Write::Samples(samples.clone()));
        writer.faults(faults);
        if let Some(k) = &sink {
            if !k.send(samples.clone()) {
                faults.push("InfluxDB sink queue full: this cycle's samples not sent".into());
            }
            // The sink's trouble, said while it lasts; what it refused or dropped, an event
            // when it grows.
            let st = k.state();
            let why = st.last_error.clone().unwrap_or_default();
            if !st.connected && st.buffered_segments > 0 {
                faults.push(format!(
                    "InfluxDB not reachable: {} segment(s), {:.1} MB, wait in the disk buffer ({why})",
                    st.buffered_segments,
                    st.buffered_bytes as f64 / 1e6
                ));
            }
            if st.rejected_lines > 0 {
                faults.push(format!(
                    "InfluxDB refused {} line(s) for good, kept aside as .rejected ({why})",
                    st.rejected_lines
                ));
            }
            if st.dropped_lines > 0 {
                faults.push(format!(
                    "InfluxDB buffer full: {} line(s) dropped (max_buffer_mb)",
                    st.dropped_lines
                ));
            }
            let seen = (st.rejected_lines, st.dropped_lines);
            if seen != *sink_seen {
                if seen.0 > sink_seen.0 {
                    writer.event(
                        now,
                        "alarm",
                        "influx",
                        format!(
                            "InfluxDB refused {} more line(s) for good ({why}); they are kept aside as .rejected, not retried",
                            seen.0 - sink_seen.0
                        ),
                    );
                }
                if seen.1 > sink_seen.1 {
                    writer.event(
                        now,
                        "alarm",
                        "influx",
                        format!(
                            "InfluxDB buffer full: {} more line(s) dropped, the oldest first",
                            seen.1 - sink_seen.1
                        ),
                    );
                }
                *sink_seen = seen;
            }
        }
        // The controller's alarms: an event when one begins (its figures may change while it
        // lasts) and when it clears; the live state holds it meanwhile.
        let now_raised: BTreeMap<String, String> = out
            .alarms
            .iter()
            .map(|a| (alarm_key(a), a.clone()))
            .collect();
        for (key, a) in &now_raised {
            if !control_alarms.contains_key(key) {
                summary.alarms += 1;
                writer.event(now, "alarm", "control", a.clone());
            }
        }
        for (key, a) in control_alarms.iter() {
            if !now_raised.contains_key(key) {
                writer.event(now, "info", "control", format!("cleared: {a}"));
            }
        }
        *control_alarms = now_raised;
        // Devices that stop or start answering, and the safe state the meter's loss forces:
        // an event when it begins and when it ends (the live alarms hold it meanwhile).
        let lost_now: std::collections::BTreeSet<String> =
            m.lost.iter().map(|(id, _)| id.clone()).collect();
        for (id, why) in &m.lost {
            if !lost.contains(id) {
                writer.event(now, "alarm", "device", why.clone());
            }
        }
        for id in lost.difference(&lost_now) {
            writer.event(now, "info", "device", format!("{id} answering again"));
        }
        *lost = lost_now;
        match (&d.held_safe, *held_safe) {
            (Some(why), false) => {
                writer.event(now, "alarm", "control", why.clone());
            }
            (None, true) => {
                writer.event(
                    now,
                    "info",
                    "control",
                    "the grid meter answers again: the operator's mode applies",
                );
            }
            _ => {}
        }
        *held_safe = d.held_safe.is_some();
        summary.setpoints += store_audit(writer, devices.take_audit());
        // The park now: flows from the measurements (unknown where a device of a flow has no
        // good reading), energy records, today's figures.
        let k = m.known;
        let (grid_kw, converter_dc_kw) = match m.grid_meter {
            Some(g) => (
                Some(g),
                Some(if g >= 0.0 {
                    g * limits.eta_in
                } else {
                    g / limits.eta_out
                }),
            ),
            // No meter answering: the grid from the bus balance, when every part is known.
            None => match (k.load, k.ev, k.pv, k.battery) {
                (Some(l), Some(e), Some(p), Some(b)) => {
                    let dc = l + e - p - b;
                    (
                        Some(if dc >= 0.0 {
                            dc / limits.eta_in
                        } else {
                            dc * limits.eta_out
                        }),
                        Some(dc),
                    )
                }
                _ => (None, None),
            },
        };
        let flows = Flows {
            pv_kw: k.pv,
            pv_available_kw: k.pv.map(|_| snapshot.pv_available_kw),
            battery_kw: k.battery,
            soc_pct: snapshot.battery.as_ref().map(|b| b.soc_pct),
            load_kw: k.load,
            ev_kw: k.ev,
            converter_dc_kw,
            grid_kw,
            grid_measured: m.grid_meter.is_some(),
        };
        let chargers_live: Vec<ChargerLive> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| ChargerLive {
                id: c.id.clone(),
                kw: states.get(&c.id).and_then(|s| s.good(Field::PowerKw, now)),
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
                    // Filled in with the day's accounting when the state is published.
                    green_share: None,
                }),
                // An OCPP charger takes an operator's commands.
                actions: if devices.ocpp.as_ref().is_some_and(|h| h.has_device(&c.id)) {
                    ChargerAction::ALL.to_vec()
                } else {
                    Vec::new()
                },
            })
            .collect();
        Self::replan(
            park,
            writer,
            replanner,
            replan_note,
            so_far,
            sessions,
            now,
            grid_kw,
            d,
            Requesting {
                requests,
                master: grid.as_ref().map(|g| g.caps()).unwrap_or_default(),
                before: active_plan.as_ref().and_then(|a| a.plan()),
                store,
            },
        );
        if let Some(n) = replan_note.as_ref() {
            faults.push(n.clone());
        }
        if let Some(interval) = integrator.add(now, &flows, &chargers_live) {
            let source = interval.source();
            if source != "measured" {
                writer.event(
                    now,
                    "warning",
                    "records",
                    format!(
                        "interval {} closed with {:.0} % of it observed: stored as {source}",
                        park.clock.format(interval.record.start),
                        100.0 * interval.coverage
                    ),
                );
            }
            let (closed, observed) = (interval.record, interval.coverage);
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
                writer.send(Write::WithoutEms {
                    start: closed.start,
                    import_kwh: imp,
                });
                imp
            });
            so_far.add(park, &closed, without_ems_import);
            writer.send(Write::Records {
                records: vec![closed.clone()],
                source: source.into(),
                observed: Some(observed),
                closed: true,
            });
            day_records.push(closed);
        }
        // The grid meters' counters: each interval's energy at them, stored and held against
        // the EMS's record of it.
        // Each is said when it begins (until it changes).
        use super::billing::{Said, Taken};
        for taken in counters.observe(states, &park.clock, now) {
            match taken {
                Taken::Interval(mi, step) => {
                    let apart = day_records
                        .iter()
                        .rev()
                        .find(|r| r.start == mi.start)
                        .and_then(|r| super::billing::disagreement(&mi, r, &park.clock, step));
                    let state = if apart.is_some() {
                        Said::Apart
                    } else {
                        Said::Agrees
                    };
                    match (counters.news(&mi.meter, state), apart) {
                        (Some(_), Some(said)) => writer.event(
                            now,
                            "warning",
                            "records",
                            format!("{said} (said again when they agree)"),
                        ),
                        (Some(_), None) => writer.event(
                            now,
                            "info",
                            "records",
                            format!(
                                "interval {}: the grid meter {}'s counters give a figure again, agreeing with the EMS's record",
                                park.clock.format(mi.start),
                                mi.meter
                            ),
                        ),
                        (None, _) => {}
                    }
                    writer.send(Write::MeterInterval(mi));
                }
                Taken::Gap(meter, start, why) => {
                    if counters.news(&meter, Said::Gap).is_some() {
                        writer.event(
                            now,
                            "warning",
                            "records",
                            format!(
                                "interval {}: no figure from the grid meter {meter}'s counters: {why} (said again when there is one)",
                                park.clock.format(start)
                            ),
                        );
                    }
                }
            }
        }
        (flows, chargers_live)
    }

    /// Intraday re-planning (automatic mode only), off the control path: a finished re-plan
    /// stored and activated (an alarm when it is the fallback), a new one started when due.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replan(
        park: &Park,
        writer: &StoreWriter,
        replanner: &mut Option<crate::replan::Replanner>,
        replan_note: &mut Option<String>,
        so_far: &SoFar,
        sessions: &crate::sessions::Sessions,
        now: DateTime<Utc>,
        grid_kw: Option<f64>,
        d: &Decision,
        g: Requesting,
    ) {
        let Decision {
            mode,
            plan,
            snapshot,
            ..
        } = d;
        // Intraday re-planning (automatic mode only), off the control path.
        if let Some(rp) = replanner.as_mut() {
            // Requests waiting for a re-plan that will not come (not automatic) are decided
            // on the first checks.
            if *mode != Mode::Automatic && !rp.running() && g.requests.waiting() {
                g.requests.decide(
                    true,
                    Err("the EMS is not in automatic mode, so it does not re-plan"),
                    g.before,
                    now,
                    park,
                    &mut *g.store,
                    writer,
                );
            }
            if let Some(mut o) = rp.poll() {
                // Grid requests on trial in it: decided on its plan; unless it holds each in
                // full it is not made active (what is held is planned again at once).
                let full = g.requests.decide(
                    false,
                    o.plan.as_ref().map(|r| &r.plan).map_err(String::as_str),
                    g.before,
                    now,
                    park,
                    &mut *g.store,
                    writer,
                );
                if !full {
                    rp.request_now("grid requests held in part: planned with what is held".into());
                    o.ahead = None;
                }
                // A plan that cannot hold a cap the grid asks says so (a request for a later
                // day is checked when its day is planned).
                let plans = o
                    .plan
                    .as_ref()
                    .ok()
                    .map(|r| (o.day, &r.plan))
                    .into_iter()
                    .chain(
                        o.ahead
                            .as_ref()
                            .and_then(|(d, r)| Some((*d, &r.as_ref().ok()?.plan))),
                    );
                // Said when it is news (not at every re-plan under the same limits).
                for (day, p) in plans.filter(|_| full) {
                    let short: Vec<_> = p
                        .unmet
                        .iter()
                        .filter(|u| u.kind == "grid_request")
                        .collect();
                    let total = (!short.is_empty())
                        .then(|| short.iter().map(|u| u.shortfall_kwh).sum::<f64>());
                    match g.requests.shortfall_news(day, total) {
                        Some(true) => {
                            for u in short {
                                writer.event(
                                    now,
                                    "warning",
                                    "grid",
                                    format!(
                                        "the plan of {day} cannot hold what the grid asks: {:.1} kWh {}",
                                        u.shortfall_kwh, u.reason
                                    ),
                                );
                            }
                        }
                        Some(false) => writer.event(
                            now,
                            "info",
                            "grid",
                            format!("the plan of {day} now holds what the grid asks"),
                        ),
                        None => {}
                    }
                }
                // The next day's plan made ahead (stored first: today's re-plan's event is
                // the one the operator reads last).
                match o.ahead {
                    Some((next, Ok(ahead))) => match serde_json::to_string(&ahead.plan) {
                        Ok(json) => writer.send(Write::Plan {
                            at: now,
                            day: next.to_string(),
                            strategy: ahead.ahead_label(),
                            json,
                            severity: if ahead.fallback.is_some() {
                                "alarm"
                            } else {
                                "info"
                            },
                            why: o.why.clone(),
                            ahead: true,
                        }),
                        Err(e) => writer.event(
                            now,
                            "alarm",
                            "plan",
                            format!("the plan of {next} made ahead not stored: {e}"),
                        ),
                    },
                    Some((next, Err(e))) => writer.event(
                        now,
                        "alarm",
                        "plan",
                        format!(
                            "planning {next} ahead failed ({}): {e}; it starts without a plan (self-consumption) until its first re-plan",
                            o.why
                        ),
                    ),
                    None => {}
                }
                match o.plan {
                    // Superseded: a request on trial in it is held in part or refused.
                    Ok(_) if !full => {}
                    Ok(replanned) => {
                        // Stored, made active and said by the writer (the cycle reads the
                        // active plan back from the store).
                        match serde_json::to_string(&replanned.plan) {
                            Ok(json) => {
                                writer.send(Write::Plan {
                                    at: now,
                                    day: o.day.to_string(),
                                    strategy: replanned.label(),
                                    json,
                                    severity: if replanned.fallback.is_some() {
                                        "alarm"
                                    } else {
                                        "info"
                                    },
                                    why: o.why.clone(),
                                    ahead: false,
                                });
                                *replan_note = None;
                            }
                            Err(e) => *replan_note = Some(format!("re-plan not stored: {e}")),
                        }
                    }
                    Err(e) => {
                        writer.event(
                            now,
                            "alarm",
                            "plan",
                            format!("re-plan failed ({}): {e}", o.why),
                        );
                        *replan_note = Some(format!("re-plan failed: {e}"));
                    }
                }
            } else if *mode == Mode::Automatic {
                // A grid not known is no deviation from the plan (the schedule still runs).
                let plan_grid = plan
                    .as_ref()
                    .filter(|_| grid_kw.is_some())
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw);
                if let Some(why) = rp.due(now, grid_kw.unwrap_or(0.0), plan_grid) {
                    let stored = snapshot
                        .battery
                        .as_ref()
                        .map(|b| b.soc_pct / 100.0 * park.battery_capacity().0);
                    let month = so_far.figures;
                    let caps = g.requests.plan_caps(now, &park.clock, g.master);
                    rp.start(
                        now,
                        stored,
                        month,
                        sessions.open().cloned().collect(),
                        caps,
                        why,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alarm_key;

    /// An alarm whose figures change while it lasts is one alarm (one event when it begins,
    /// one when it clears), not one per cycle.
    #[test]
    fn an_alarm_is_the_same_while_its_figures_change() {
        let a = "import 1512.3 kW above the 1500 kW limit: loads exceed what PV, battery and the limit can supply";
        let b = "import 1530.0 kW above the 1500 kW limit: loads exceed what PV, battery and the limit can supply";
        assert_eq!(alarm_key(a), alarm_key(b));
        assert_ne!(
            alarm_key(a),
            alarm_key("battery setpoint not a number: held at 0 kW")
        );
    }
}
