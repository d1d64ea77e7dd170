//! The grid's link (`[iec104]`): the park as an IEC 60870-5-104 station. Each cycle the
//! station is given the park's values (what the master reads on interrogation and sees change
//! spontaneously), and the master's setpoints are taken: an import or export limit at the
//! grid connection, checked against the park's own limits, held by the controller from the
//! same cycle on (the park's limits lowered to it), said in an event with who set it.
//!
//! A limit the grid set holds until the master changes it (a setpoint equal to the park's own
//! limit releases it), across a restart of the EMS too (kept in the store; said at the start);
//! the master sees the limits in force (points `import_limit_kw` and `export_limit_kw`, and the
//! `grid_limit_active` single point).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Offset, Utc};
use pedf_control::Limits;
use pedf_core::grid_request::{
    baseline, delivery, Baseline, BaselineRule, GridRequest, RequestKind,
};
use pedf_core::live::Flows;
use pedf_iec104::{Command, Outstation};
use pedf_store::{Store, TakenGridRequest};
use tokio::sync::mpsc;

use super::{Cycle, Decision, Measured, RunIo};

/// The grid requests the EMS took that are not over (or whose delivery is not said yet), with
/// the baselines of those that need one.
pub(crate) struct Requests {
    taken: Vec<TakenGridRequest>,
    baselines: BTreeMap<String, Baseline>,
    /// Requests said to be in force (their window started).
    started: BTreeSet<String>,
}

/// Days of records a baseline may look back over (the rule's, and one for the window).
fn look_back(rule: &BaselineRule) -> chrono::Duration {
    chrono::Duration::days(rule.look_back_days + 1)
}

/// The park's records for `r`'s baseline and the days of other requests (excluded from it).
fn baseline_of(r: &GridRequest, store: &Store, park: &pedf_core::Park) -> Result<Baseline, String> {
    let rule = BaselineRule::default();
    let from = r.start - look_back(&rule);
    let records: Vec<_> = store
        .stored_records(from, r.end)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| s.record)
        .collect();
    let excluded: BTreeSet<chrono::NaiveDate> = store
        .grid_requests(from, r.start)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|o| o.request.id != r.id)
        .map(|o| park.clock.local(o.request.start).date_naive())
        .collect();
    baseline(r, &records, &park.clock, &rule, &excluded)
}

impl Requests {
    /// The requests in the store not over at `now` (a restart takes them up again).
    pub(crate) fn load(
        store: &Store,
        park: &pedf_core::Park,
        now: DateTime<Utc>,
    ) -> Result<Requests, String> {
        let taken = store
            .grid_requests(now, now + chrono::Duration::days(3650))
            .map_err(|e| e.to_string())?;
        let mut baselines = BTreeMap::new();
        for t in &taken {
            if matches!(t.request.kind, RequestKind::ReduceImport(_)) {
                if let Ok(b) = baseline_of(&t.request, store, park) {
                    baselines.insert(t.request.id.clone(), b);
                }
            }
        }
        Ok(Requests {
            taken,
            baselines,
            started: BTreeSet::new(),
        })
    }

    /// The import and export caps the requests in force at `now` ask, kW.
    fn caps(&self, now: DateTime<Utc>, clock: &pedf_core::time::ParkClock) -> GridCaps {
        let mut caps = GridCaps::default();
        let lower = |slot: &mut Option<f64>, kw: f64| {
            *slot = Some(slot.map_or(kw, |c: f64| c.min(kw)));
        };
        let interval = clock.interval_start(now);
        for t in self
            .taken
            .iter()
            .filter(|t| t.request.start <= now && now < t.request.end)
        {
            match t.request.kind {
                RequestKind::CapImport(c) => lower(&mut caps.import_kw, c),
                RequestKind::CapExport(c) => lower(&mut caps.export_kw, c),
                RequestKind::ReduceImport(_) => {
                    let b = self.baselines.get(&t.request.id).and_then(|b| {
                        b.intervals
                            .iter()
                            .find(|(s, _, _)| *s == interval)
                            .map(|x| x.1)
                    });
                    if let Some(b) = b {
                        lower(&mut caps.import_kw, (b - t.held_kw).max(0.0));
                    }
                }
                RequestKind::ExportAtLeast(_) => {}
            }
        }
        caps
    }
}

/// What the EMS holds of a request (kW) and says of it, or why it refuses it: checked against
/// the park's clock and limits, and a reduction against its baseline (taken in part when the
/// baseline imports less than the reduction asks in some interval of the window).
fn judge(
    r: &GridRequest,
    now: DateTime<Utc>,
    park: &pedf_core::Park,
    limits: &Limits,
    store: &Store,
) -> Result<(f64, String, Option<Baseline>), String> {
    r.check(&park.clock)?;
    if r.end <= now {
        return Err(format!(
            "its window ended at {}, before now ({})",
            park.clock.format(r.end),
            park.clock.format(now)
        ));
    }
    match r.kind {
        RequestKind::CapImport(c) => {
            let note = if c >= limits.import_kw {
                format!(
                    "accepted: import at most {c:.1} kW (the park's own limit of {:.1} kW is lower already)",
                    limits.import_kw
                )
            } else {
                format!("accepted: import at most {c:.1} kW, held by the controller in the window")
            };
            Ok((c, note, None))
        }
        RequestKind::CapExport(c) => Ok((
            c,
            format!("accepted: export at most {c:.1} kW, held by the controller in the window"),
            None,
        )),
        RequestKind::ReduceImport(x) => {
            let b = baseline_of(r, store, park)?;
            let lowest = b
                .intervals
                .iter()
                .map(|i| i.1)
                .fold(f64::INFINITY, f64::min);
            let days: Vec<String> = b.days.iter().map(|d| d.to_string()).collect();
            if x <= lowest {
                Ok((
                    x,
                    format!(
                        "accepted: import {x:.1} kW below the baseline (the mean of {}), held by the controller in the window",
                        days.join(", ")
                    ),
                    Some(b),
                ))
            } else {
                Ok((
                    lowest,
                    format!(
                        "accepted in part: {lowest:.1} of {x:.1} kW (the baseline, the mean of {}, imports only {lowest:.1} kW in the window's lowest interval)",
                        days.join(", ")
                    ),
                    Some(b),
                ))
            }
        }
        RequestKind::ExportAtLeast(_) => Err(
            "an export floor is not held yet: the controller holds limits at the connection, not targets"
                .into(),
        ),
    }
}

/// The station and the limits its master set.
pub(crate) struct GridLink {
    station: Outstation,
    commands: mpsc::Receiver<Command>,
    caps: GridCaps,
    /// What is to be said at the first cycle (limits held after a restart).
    said: Vec<String>,
}

/// Limits the grid set at the connection, kW (`None`: the park's own).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GridCaps {
    import_kw: Option<f64>,
    export_kw: Option<f64>,
}

impl GridCaps {
    /// The park's limits with the grid's over them (the lower of each).
    pub(crate) fn apply(&self, l: &Limits) -> Limits {
        let mut out = l.clone();
        if let Some(c) = self.import_kw {
            out.import_kw = out.import_kw.min(c);
        }
        if let Some(c) = self.export_kw {
            out.export_kw = out.export_kw.min(c);
        }
        out
    }

    fn active(&self) -> bool {
        self.import_kw.is_some() || self.export_kw.is_some()
    }
}

impl GridLink {
    /// Starts the station of `cfg` (its time tags in the park's time zone now), holding the
    /// limits the grid set before a restart (`kept`) that are still within the park's own.
    pub(crate) fn start(
        cfg: &crate::config::Iec104Run,
        park: &pedf_core::Park,
        time: pedf_core::time::TimeSource,
        kept: &[pedf_store::GridLimit],
    ) -> Result<GridLink, String> {
        let offset = park.clock.local(time.now()).offset().fix();
        let config = cfg.config(offset)?;
        let (station, commands) = Outstation::start(config, move || time.now())?;
        let own = Limits::of(park);
        let mut caps = GridCaps::default();
        let mut said = Vec::new();
        for pedf_store::GridLimit { name, kw, by, at } in kept {
            let (slot, own_kw) = match name.as_str() {
                "import_limit_kw" => (&mut caps.import_kw, own.import_kw),
                "export_limit_kw" => (&mut caps.export_kw, own.export_kw),
                _ => continue,
            };
            if kw.is_finite() && *kw >= 0.0 && *kw < own_kw {
                *slot = Some(*kw);
                said.push(format!(
                    "the {} of {kw:.1} kW the grid (IEC 104 master {by}) set at {} holds after the restart",
                    name.trim_end_matches("_kw").replace('_', " "),
                    park.clock.format(*at)
                ));
            }
        }
        Ok(GridLink {
            station,
            commands,
            caps,
            said,
        })
    }

    /// Stops listening.
    pub(crate) fn stop(&self) {
        self.station.stop();
    }
}

impl Cycle {
    /// Takes the grid requests the server passed on (each answered: held, held in part, or
    /// refused with why), says when one comes into force, and says each one's delivery once
    /// its window's last interval is recorded.
    pub(super) fn take_grid_requests(&mut self, now: DateTime<Utc>, io: &mut RunIo) {
        let Cycle {
            requests,
            store,
            writer,
            park,
            limits,
            ..
        } = self;
        while let Some((r, reply)) = io.grid_requests.as_mut().and_then(|rx| rx.try_recv().ok()) {
            let outcome = judge(&r, now, park, limits, store);
            match &outcome {
                Ok((held, note, b)) => {
                    let taken = TakenGridRequest {
                        request: r.clone(),
                        taken: now,
                        held_kw: *held,
                        note: note.clone(),
                    };
                    if let Err(e) = store.put_grid_request(&taken) {
                        let _ = reply.send(Err(format!("the store did not take it: {e}")));
                        continue;
                    }
                    if let Some(b) = b {
                        requests.baselines.insert(r.id.clone(), b.clone());
                    }
                    requests.taken.retain(|t| t.request.id != r.id);
                    requests.started.remove(&r.id);
                    requests.taken.push(taken);
                    writer.event(
                        now,
                        "info",
                        "grid",
                        format!(
                            "grid request {} from {} ({} {} kW, {} to {}): {note}",
                            r.id,
                            r.source,
                            r.kind.name(),
                            r.kind.kw(),
                            park.clock.format(r.start),
                            park.clock.format(r.end)
                        ),
                    );
                }
                Err(why) => writer.event(
                    now,
                    "warning",
                    "grid",
                    format!("grid request {} from {}: refused, {why}", r.id, r.source),
                ),
            }
            let _ = reply.send(outcome.map(|(held, note, _)| (held, note)));
        }
        // In force; over (its delivery said once its last interval is recorded).
        let step = chrono::Duration::minutes(i64::from(park.clock.interval.minutes()));
        let mut done = Vec::new();
        for t in &requests.taken {
            let r = &t.request;
            if r.start <= now && now < r.end && requests.started.insert(r.id.clone()) {
                writer.event(
                    now,
                    "info",
                    "grid",
                    format!(
                        "grid request {} in force until {}",
                        r.id,
                        park.clock.format(r.end)
                    ),
                );
            }
            // The last interval closes at the window's end; its record is stored a cycle or
            // so later.
            if now >= r.end + step / 4 {
                done.push(r.id.clone());
                let said = match requests
                    .baselines
                    .get(&r.id)
                    .cloned()
                    .map_or_else(|| baseline_of(r, store, park), Ok)
                {
                    Err(why) => format!(
                        "grid request {} is over: its delivery cannot be measured ({why})",
                        r.id
                    ),
                    Ok(b) => {
                        let records: Vec<_> = store
                            .stored_records(r.start, r.end)
                            .map(|v| v.into_iter().map(|s| s.record).collect())
                            .unwrap_or_default();
                        let d = delivery(r, &b, &records, &park.clock);
                        format!(
                            "grid request {} is over: {:.1} of {:.1} kWh delivered ({:.0} %) against the baseline{}",
                            r.id,
                            d.delivered_kwh,
                            d.requested_kwh,
                            d.share * 100.0,
                            d.settlement_cny
                                .map(|c| format!(", settlement {c:.2} CNY"))
                                .unwrap_or_default()
                        )
                    }
                };
                writer.event(now, "info", "grid", said);
            }
        }
        requests.taken.retain(|t| !done.contains(&t.request.id));
    }

    /// The controller's limits this cycle: the park's, lowered by the grid's (its link's
    /// master and the grid requests in force); the master's setpoints taken first (each
    /// accepted or refused with why).
    pub(super) fn grid_limits(&mut self, now: DateTime<Utc>) -> Limits {
        let from_requests = self.requests.caps(now, &self.park.clock);
        let Cycle {
            grid,
            limits,
            writer,
            ..
        } = self;
        let Some(g) = grid.as_mut() else {
            return from_requests.apply(limits);
        };
        for e in std::mem::take(&mut g.said) {
            writer.event(now, "warning", "grid", e);
        }
        for e in g.station.take_events() {
            let severity = if e.contains("refused") || e.contains("closed") {
                "warning"
            } else {
                "info"
            };
            writer.event(now, severity, "grid", e);
        }
        while let Ok(c) = g.commands.try_recv() {
            let own = match c.point.as_str() {
                "import_limit_kw" => limits.import_kw,
                _ => limits.export_kw,
            };
            let outcome = if !(c.value.is_finite() && c.value >= 0.0) {
                Err(format!("{} must be 0 kW or more", c.point))
            } else if c.value > own + 1e-6 {
                Err(format!(
                    "{} kW is above the park's own limit of {own:.1} kW (its connection's)",
                    c.value
                ))
            } else {
                let cap = (c.value < own - 1e-6).then_some(c.value);
                match c.point.as_str() {
                    "import_limit_kw" => g.caps.import_kw = cap,
                    _ => g.caps.export_kw = cap,
                }
                writer.send(super::Write::GridLimit {
                    name: c.point.clone(),
                    kw: cap,
                    by: c.master.to_string(),
                    at: now,
                });
                Ok(cap)
            };
            let said = match &outcome {
                Ok(Some(v)) => format!(
                    "the grid (IEC 104 master {}) set the {} to {v:.1} kW: held from this cycle",
                    c.master,
                    c.point.trim_end_matches("_kw").replace('_', " ")
                ),
                Ok(None) => format!(
                    "the grid (IEC 104 master {}) released the {}: the park's own {own:.1} kW applies",
                    c.master,
                    c.point.trim_end_matches("_kw").replace('_', " ")
                ),
                Err(why) => format!(
                    "the grid (IEC 104 master {}) asked {} = {}: refused, {why}",
                    c.master, c.point, c.value
                ),
            };
            writer.event(
                now,
                if outcome.is_ok() { "info" } else { "warning" },
                "grid",
                said,
            );
            let _ = c.reply.send(outcome.map(|_| ()));
        }
        // The master's setpoints are checked against the park's own limits; the limits in
        // force are the lowest of the park's, the master's and the requests'.
        g.caps.apply(&from_requests.apply(limits))
    }

    /// The station's values of this cycle.
    pub(super) fn grid_values(
        &self,
        now: DateTime<Utc>,
        m: &Measured,
        d: &Decision,
        flows: &Flows,
        alarm: bool,
    ) {
        let Some(g) = &self.grid else {
            return;
        };
        let requested = self.requests.caps(now, &self.park.clock);
        let limits = g.caps.apply(&requested.apply(&self.limits));
        let battery = m.battery.as_ref();
        let battery_kw = flows.battery_kw;
        // The battery's headroom: how much more it could charge (the park's import up) or
        // discharge (down) now, from what it does.
        let flex_up = battery
            .zip(battery_kw)
            .map(|(b, p)| (b.max_charge_kw + p).max(0.0));
        let flex_down = battery
            .zip(battery_kw)
            .map(|(b, p)| (b.max_discharge_kw - p).max(0.0));
        g.station.update(
            &[
                ("grid_kw", flows.grid_kw),
                ("pv_kw", flows.pv_kw),
                ("battery_kw", battery_kw),
                ("soc_pct", flows.soc_pct),
                ("load_kw", flows.load_kw),
                ("ev_kw", flows.ev_kw),
                ("flex_up_kw", flex_up),
                ("flex_down_kw", flex_down),
                ("import_limit_kw", Some(limits.import_kw)),
                ("export_limit_kw", Some(limits.export_kw)),
            ],
            &[
                (
                    "safe_state",
                    Some(d.mode == pedf_control::Mode::Safe || d.held_safe.is_some()),
                ),
                ("alarm", Some(alarm)),
                ("automatic", Some(d.chosen == pedf_control::Mode::Automatic)),
                (
                    "grid_limit_active",
                    Some(g.caps.active() || requested.active()),
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(id: &str, kind: RequestKind, held: f64, start: DateTime<Utc>) -> TakenGridRequest {
        TakenGridRequest {
            request: GridRequest {
                id: id.into(),
                start,
                end: start + chrono::Duration::hours(1),
                kind,
                price_cny_per_kwh: None,
                source: "test".into(),
            },
            taken: start,
            held_kw: held,
            note: String::new(),
        }
    }

    #[test]
    fn the_requests_in_force_lower_the_limits_each_interval() {
        let clock = pedf_core::time::ParkClock::new(
            chrono_tz::Asia::Shanghai,
            pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
        );
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-07-01T14:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let q = chrono::Duration::minutes(15);
        // A reduction of 100 kW against a baseline of 300, 250, 180, 90 kW, and from the
        // second hour an import cap of 60 kW and an export cap of 40 kW.
        let reduce = taken("r", RequestKind::ReduceImport(100.0), 100.0, t0);
        let b = Baseline {
            days: Vec::new(),
            intervals: [300.0, 250.0, 180.0, 90.0]
                .iter()
                .enumerate()
                .map(|(k, kw)| (t0 + q * k as i32, *kw, 0.0))
                .collect(),
        };
        let later = t0 + chrono::Duration::hours(1);
        let r = Requests {
            taken: vec![
                reduce,
                taken("c", RequestKind::CapImport(60.0), 60.0, later),
                taken("e", RequestKind::CapExport(40.0), 40.0, later),
            ],
            baselines: [("r".to_string(), b)].into(),
            started: BTreeSet::new(),
        };
        let at = |m: i64| r.caps(t0 + chrono::Duration::minutes(m), &clock);
        assert_eq!(at(-1), GridCaps::default());
        assert_eq!(at(5).import_kw, Some(200.0));
        assert_eq!(at(20).import_kw, Some(150.0));
        // Below the reduction: no import at all.
        assert_eq!(at(50).import_kw, Some(0.0));
        assert_eq!(
            at(61),
            GridCaps {
                import_kw: Some(60.0),
                export_kw: Some(40.0)
            }
        );
        assert_eq!(at(121), GridCaps::default());
    }
}
