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
use pedf_core::grid_request::{Baseline, BaselineRule, GridRequest, RequestKind};
use pedf_core::live::Flows;
use pedf_iec104::{Command, Outstation};
use pedf_store::{Store, TakenGridRequest};
use tokio::sync::mpsc;

use super::{Cycle, Decision, Measured, RunIo};

/// The grid requests the EMS took that are not over (or whose delivery is not said yet), with
/// the baselines of those that need one, and those waiting for the re-plan that checks them.
#[derive(Default)]
pub(crate) struct Requests {
    taken: Vec<TakenGridRequest>,
    baselines: BTreeMap<String, Baseline>,
    /// Requests said to be in force (their window started).
    started: BTreeSet<String>,
    /// Requests checked against the clock, the limits and the baseline, waiting for a re-plan
    /// with them as constraints to say how much of them the park can hold.
    pending: Vec<Pending>,
    /// The pending requests the running re-plan has as constraints.
    on_trial: Vec<String>,
    /// Requests from the run file's `grid_requests` file not taken yet (given to the EMS at
    /// its first cycle, as the API's are).
    file: Vec<GridRequest>,
    /// How baselines are made (the run file's `[baseline]`).
    rule: BaselineRule,
    /// The shortfall against the grid's caps last said of each day's plan, kWh.
    shortfalls: BTreeMap<chrono::NaiveDate, f64>,
}

/// A grid request waiting for its re-plan: what the first checks hold of it and say, its
/// baseline, and where its answer goes.
pub(crate) struct Pending {
    taken: TakenGridRequest,
    baseline: Option<Baseline>,
    reply: pedf_server::GridRequestReply,
}

/// The least share of what a request asks off the plan the park takes it for: below it the
/// request is refused (nothing changes). ILLUSTRATIVE [U]: demand-response rules commonly pay
/// nothing for a response well below what was declared; the share the provincial rules use
/// must be checked before it is relied on.
pub(crate) const LEAST_SHARE: f64 = 0.5;

/// Import over a cap (or export short of a floor) the re-plan may leave and still be said to
/// hold it, kW (solver rounding).
const HOLD_TOLERANCE_KW: f64 = 0.5;

/// What a re-plan with a request as a constraint says of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Held in every interval; the note.
    Full(String),
    /// Held in part: what is held (kW) and the note saying how much.
    Part(f64, String),
    /// Refused: why.
    Refuse(String),
}

/// The verdict on a request on the import or an export floor `taken` (held as the first checks
/// hold it, with its `baseline` for a reduction) from the net import (import less export) the
/// re-plan with it as a constraint plans (`trial`, by interval start) against the plan before
/// it (`before`; the baseline where there is none): in full where the re-plan keeps every cap
/// (or floor) of the window the plan covers; in part where it keeps at least `LEAST_SHARE` of
/// what the request asks off the plan before (or when there is nothing to measure the share
/// against), saying how much; refused below that. A floor of X kW is a ceiling of -X kW on
/// the net import.
pub(crate) fn verdict(
    taken: &TakenGridRequest,
    baseline: Option<&Baseline>,
    trial: &BTreeMap<DateTime<Utc>, f64>,
    before: Option<&BTreeMap<DateTime<Utc>, f64>>,
    clock: &pedf_core::time::ParkClock,
) -> Verdict {
    let r = &taken.request;
    let h = clock.interval.hours().0;
    let mut one = BTreeMap::new();
    if let Some(b) = baseline {
        one.insert(r.id.clone(), b.clone());
    }
    // Each interval of the window the re-plan covers: its ceiling on the net import, the
    // re-plan's net import and the reference's. A floor counts export only, as its delivery
    // is measured (an import lowered is no export delivered).
    let floor = matches!(r.kind, RequestKind::ExportAtLeast(_));
    let side = |kw: f64| if floor { kw.min(0.0) } else { kw };
    let rows: Vec<(f64, f64, Option<f64>)> = r
        .intervals(clock)
        .into_iter()
        .filter_map(|t| {
            let cap = caps_at(std::iter::once((r, taken.held_kw)), &one, t).net_ceiling()?;
            let trial_kw = side(*trial.get(&t)?);
            let reference = before.and_then(|b| b.get(&t).copied()).or_else(|| {
                baseline.and_then(|b| b.intervals.iter().find(|x| x.0 == t).map(|x| x.1 - x.2))
            });
            Some((cap, trial_kw, reference.map(side)))
        })
        .collect();
    let worst = rows
        .iter()
        .map(|(cap, trial_kw, _)| trial_kw - cap)
        .fold(0.0, f64::max);
    if worst <= HOLD_TOLERANCE_KW {
        return Verdict::Full(if rows.is_empty() {
            taken.note.clone()
        } else {
            format!("{}; the re-plan holds it in every interval", taken.note)
        });
    }
    // What it asks off the reference, and what the re-plan takes off.
    let measured = rows.iter().any(|x| x.2.is_some());
    let (asked, off) = rows.iter().fold((0.0, 0.0), |(a, o), (cap, trial_kw, b)| {
        let b = b.unwrap_or(*trial_kw);
        (
            a + (b - cap).max(0.0) * h,
            o + (b - trial_kw.max(*cap)).max(0.0) * h,
        )
    });
    let share = if asked > 1e-9 { off / asked } else { 1.0 };
    let over = if floor {
        format!(
            "the re-plan with it as a constraint still exports up to {worst:.1} kW short of it (the PV surplus the export rules let reach the grid, with the batteries and the loads that can wait)"
        )
    } else {
        format!(
            "the re-plan with it as a constraint still imports up to {worst:.1} kW above it (what PV, the batteries and the loads that can wait cannot cover)"
        )
    };
    let measure = if measured {
        format!(
            "{:.0} % of what it asks off the plan: {off:.1} of {asked:.1} kWh",
            share * 100.0
        )
    } else {
        "no plan before it to measure the share against".to_string()
    };
    if measured && share < LEAST_SHARE {
        return Verdict::Refuse(format!(
            "the park can hold only {measure}, less than the {:.0} % it takes a request for; {over}",
            LEAST_SHARE * 100.0
        ));
    }
    let (held, what) = match r.kind {
        RequestKind::CapImport(c) => (c + worst, "import at most"),
        RequestKind::ExportAtLeast(_) => ((taken.held_kw - worst).max(0.0), "export at least"),
        _ => ((taken.held_kw - worst).max(0.0), "import lower by"),
    };
    Verdict::Part(
        held,
        format!("accepted in part: {what} {held:.1} kW ({measure}); {over}"),
    )
}

/// What a re-plan with a request as a constraint costs against the plan before it, over the
/// intervals both cover: the energy bill (import at its price less export at its price), the
/// month's demand charge (the higher peak above what is free, at the monthly rate), and the
/// curtailable load shed more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HoldingCost {
    energy_cny: f64,
    demand_cny: f64,
    shed_kwh: f64,
}

impl HoldingCost {
    /// As the answer says it.
    fn said(&self) -> String {
        // Never a -0.0 where a person reads it.
        let z = |x: f64| if x.abs() < 0.05 { 0.0 } else { x };
        format!(
            "holding it changes the plan's bill by {:+.1} CNY against the plan before (energy {:+.1}, demand charge {:+.1}){}",
            z(self.energy_cny + self.demand_cny),
            z(self.energy_cny),
            z(self.demand_cny),
            if self.shed_kwh.abs() > 0.05 {
                format!(" and sheds {:+.1} kWh of curtailable load", self.shed_kwh)
            } else {
                String::new()
            }
        )
    }
}

/// [`HoldingCost`] of `trial` against `before` (none when they share no interval).
pub(crate) fn holding_cost(
    trial: &pedf_core::plan::Plan,
    before: &pedf_core::plan::Plan,
    park: &pedf_core::Park,
) -> Option<HoldingCost> {
    let h = park.clock.interval.hours().0;
    let old: BTreeMap<DateTime<Utc>, &pedf_core::plan::PlanInterval> = before
        .intervals
        .iter()
        .map(|i| (i.start.with_timezone(&Utc), i))
        .collect();
    let (mut energy, mut shed, mut peak_new, mut peak_old) = (0.0, 0.0, 0.0f64, 0.0f64);
    let mut shared = false;
    for i in &trial.intervals {
        let Some(o) = old.get(&i.start.with_timezone(&Utc)) else {
            continue;
        };
        shared = true;
        energy += ((i.grid_import_kw - o.grid_import_kw) * i.import_price_cny_per_kwh
            - (i.grid_export_kw - o.grid_export_kw) * i.export_price_cny_per_kwh)
            * h;
        shed += (i.load_shed_kw - o.load_shed_kw) * h;
        peak_new = peak_new.max(i.grid_import_kw);
        peak_old = peak_old.max(o.grid_import_kw);
    }
    if !shared {
        return None;
    }
    let free = trial.demand_free_up_to_kw;
    let demand = park.tariff.demand.marginal_rate() * (peak_new.max(free) - peak_old.max(free));
    Some(HoldingCost {
        energy_cny: energy,
        demand_cny: demand,
        shed_kwh: shed,
    })
}

/// Refuses `r`: said in a warning and answered with why (nothing of it is kept).
fn refuse(
    writer: &super::writer::StoreWriter,
    now: DateTime<Utc>,
    r: &GridRequest,
    reply: pedf_server::GridRequestReply,
    why: String,
) {
    writer.event(
        now,
        "warning",
        "grid",
        format!("grid request {} from {}: refused, {why}", r.id, r.source),
    );
    let _ = reply.send(Err(why));
}

/// The caps `items` (requests and what is held of each: a cap's kW, a reduction's kW below
/// its baseline) ask at interval `at`.
fn caps_at<'a>(
    items: impl Iterator<Item = (&'a GridRequest, f64)>,
    baselines: &BTreeMap<String, Baseline>,
    at: DateTime<Utc>,
) -> GridCaps {
    let mut caps = GridCaps::default();
    let lower = |slot: &mut Option<f64>, kw: f64| {
        *slot = Some(slot.map_or(kw, |c: f64| c.min(kw)));
    };
    for (r, held) in items.filter(|(r, _)| r.start <= at && at < r.end) {
        match r.kind {
            // A cap held in part holds what was accepted.
            RequestKind::CapImport(_) => lower(&mut caps.import_kw, held),
            RequestKind::CapExport(_) => lower(&mut caps.export_kw, held),
            RequestKind::ReduceImport(_) => {
                let b = baselines
                    .get(&r.id)
                    .and_then(|b| b.intervals.iter().find(|(s, _, _)| *s == at).map(|x| x.1));
                if let Some(b) = b {
                    lower(&mut caps.import_kw, (b - held).max(0.0));
                }
            }
            RequestKind::ExportAtLeast(_) => {
                caps.export_floor_kw = Some(caps.export_floor_kw.map_or(held, |f| f.max(held)));
            }
        }
    }
    caps
}

/// The park's baseline for `r` from the records kept under `rule` (other requests' days left
/// out).
fn baseline_of(
    r: &GridRequest,
    store: &Store,
    park: &pedf_core::Park,
    rule: &BaselineRule,
) -> Result<Baseline, String> {
    store.grid_request_baseline(r, &park.clock, rule)
}

impl Requests {
    /// The requests in the store not over at `now` (a restart takes them up again).
    pub(crate) fn load(
        store: &Store,
        park: &pedf_core::Park,
        now: DateTime<Utc>,
        rule: BaselineRule,
    ) -> Result<Requests, String> {
        let taken = store
            .grid_requests(now, now + chrono::Duration::days(3650))
            .map_err(|e| e.to_string())?;
        let mut baselines = BTreeMap::new();
        for t in &taken {
            if matches!(t.request.kind, RequestKind::ReduceImport(_)) {
                if let Ok(b) = baseline_of(&t.request, store, park, &rule) {
                    baselines.insert(t.request.id.clone(), b);
                }
            }
        }
        Ok(Requests {
            taken,
            baselines,
            started: BTreeSet::new(),
            pending: Vec::new(),
            on_trial: Vec::new(),
            file: Vec::new(),
            rule,
            shortfalls: BTreeMap::new(),
        })
    }

    /// The requests of the run file's `grid_requests` file, but those the store has (taken
    /// before a restart): given to the EMS at its first cycle.
    pub(crate) fn give_from_file(
        &mut self,
        list: Vec<GridRequest>,
        store: &Store,
    ) -> Result<(), String> {
        let all = DateTime::<Utc>::MIN_UTC;
        let known: BTreeSet<String> = store
            .grid_requests(all, DateTime::<Utc>::MAX_UTC)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|t| t.request.id)
            .collect();
        self.file = list
            .into_iter()
            .filter(|r| !known.contains(&r.id))
            .collect();
        Ok(())
    }

    /// The import and export caps the requests in force at `now` ask, kW.
    fn caps(&self, now: DateTime<Utc>, clock: &pedf_core::time::ParkClock) -> GridCaps {
        caps_at(
            self.taken.iter().map(|t| (&t.request, t.held_kw)),
            &self.baselines,
            clock.interval_start(now),
        )
    }

    /// What a re-plan from `now` must keep at the connection, per interval to the end of the
    /// next local day: the requests held and those waiting (at what they ask), under the
    /// limits the grid's master set (`master`, until it releases them). The waiting requests
    /// are on trial in that re-plan.
    pub(crate) fn plan_caps(
        &mut self,
        now: DateTime<Utc>,
        clock: &pedf_core::time::ParkClock,
        master: GridCaps,
    ) -> BTreeMap<DateTime<Utc>, pedf_dispatch::GridCap> {
        self.on_trial = self
            .pending
            .iter()
            .map(|p| p.taken.request.id.clone())
            .collect();
        let mut baselines = self.baselines.clone();
        for p in &self.pending {
            if let Some(b) = &p.baseline {
                baselines.insert(p.taken.request.id.clone(), b.clone());
            }
        }
        let today = clock.local(now).date_naive();
        let end = today
            .succ_opt()
            .and_then(|d| d.succ_opt())
            .map_or(now, |d| clock.start_of_local_day(d));
        let step = clock.interval.duration();
        let mut out = BTreeMap::new();
        let mut at = clock.interval_start(now);
        while at < end {
            let c = caps_at(
                self.taken
                    .iter()
                    .chain(self.pending.iter().map(|p| &p.taken))
                    .map(|t| (&t.request, t.held_kw)),
                &baselines,
                at,
            );
            let m = master.at(at);
            let both = GridCaps {
                import_kw: c.import_kw,
                export_kw: c.export_kw,
                export_floor_kw: c.export_floor_kw,
                ..m
            };
            let lower = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            let mut cap = both.planned();
            cap.import_kw = lower(cap.import_kw, m.import_kw);
            cap.export_kw = lower(cap.export_kw, m.export_kw);
            if cap != pedf_dispatch::GridCap::default() {
                out.insert(at, cap);
            }
            at += step;
        }
        out
    }

    /// Whether a plan's shortfall against the grid's caps on `day` (`kwh`; none: the plan
    /// holds them) is news: `Some(true)` when it first appears or moves by more than a tenth
    /// (and 5 kWh) from what was said last, `Some(false)` when it is gone, `None` otherwise
    /// (a re-plan under the same limits says nothing again).
    pub(crate) fn shortfall_news(
        &mut self,
        day: chrono::NaiveDate,
        kwh: Option<f64>,
    ) -> Option<bool> {
        match (self.shortfalls.get(&day).copied(), kwh) {
            (None, None) => None,
            (Some(_), None) => {
                self.shortfalls.remove(&day);
                Some(false)
            }
            (Some(said), Some(k)) if (k - said).abs() <= (0.1 * said).max(5.0) => None,
            (_, Some(k)) => {
                self.shortfalls.insert(day, k);
                Some(true)
            }
        }
    }

    /// Whether requests wait for a re-plan.
    pub(crate) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Decides the requests on trial (`all`: every waiting one) from the re-plan that had them
    /// as constraints (`trial`, or why there is none) against the plan before it (`before`):
    /// held in full where the re-plan keeps every cap of the window, in part (saying how much)
    /// where it keeps at least `LEAST_SHARE` of what the request asks off the plan before,
    /// refused with why below that. Returns whether the re-plan may become the active plan
    /// (every request on it held in full).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        &mut self,
        all: bool,
        trial: Result<&pedf_core::plan::Plan, &str>,
        before: Option<&pedf_core::plan::Plan>,
        now: DateTime<Utc>,
        park: &pedf_core::Park,
        store: &mut Store,
        writer: &super::writer::StoreWriter,
    ) -> bool {
        let ids = if all {
            self.pending
                .iter()
                .map(|p| p.taken.request.id.clone())
                .collect()
        } else {
            std::mem::take(&mut self.on_trial)
        };
        let mut full = true;
        // Net import (import less export) by interval: a floor is a ceiling below zero.
        let imports = |p: &pedf_core::plan::Plan| -> BTreeMap<DateTime<Utc>, f64> {
            p.intervals
                .iter()
                .map(|i| {
                    (
                        i.start.with_timezone(&Utc),
                        i.grid_import_kw - i.grid_export_kw,
                    )
                })
                .collect()
        };
        let before_plan = before;
        let before = before.map(imports);
        // What holding the requests on trial costs against the plan before, said with each
        // answer (the operator weighs it against what the request pays).
        let together = ids.len();
        let cost = match (trial, before_plan) {
            (Ok(t), Some(b)) => holding_cost(t, b, park).map(|c| {
                if together > 1 {
                    format!(
                        "with the {together} requests checked together, {}",
                        c.said()
                    )
                } else {
                    c.said()
                }
            }),
            _ => None,
        };
        for id in ids {
            let Some(k) = self.pending.iter().position(|p| p.taken.request.id == id) else {
                continue;
            };
            let Pending {
                mut taken,
                baseline,
                reply,
            } = self.pending.remove(k);
            let r = taken.request.clone();
            let plan = match trial {
                Err(why) => {
                    taken.note = format!("{} (not checked against a plan: {why})", taken.note);
                    let _ = reply.send(self.hold(taken, baseline, now, park, store, writer));
                    continue;
                }
                Ok(p) => imports(p),
            };
            match verdict(
                &taken,
                baseline.as_ref(),
                &plan,
                before.as_ref(),
                &park.clock,
            ) {
                Verdict::Full(note) => {
                    taken.note = note;
                }
                Verdict::Part(held, note) => {
                    full = false;
                    taken.held_kw = held;
                    taken.note = note;
                }
                Verdict::Refuse(why) => {
                    full = false;
                    refuse(writer, now, &r, reply, why);
                    continue;
                }
            }
            if let Some(c) = &cost {
                taken.note = format!(
                    "{}; {c}{}",
                    taken.note,
                    r.price_cny_per_kwh
                        .map(|p| format!(
                            "; it pays {p:.2} CNY/kWh on what is delivered against its baseline"
                        ))
                        .unwrap_or_default()
                );
            }
            let _ = reply.send(self.hold(taken, baseline, now, park, store, writer));
        }
        full
    }

    /// Measures the limit the grid's master held on side `k` from `e.since` to `now` as a
    /// grid request over its whole intervals (stored; its delivery said once its last
    /// interval is recorded), or says it held none.
    fn measure_later(
        &mut self,
        k: usize,
        e: &Episode,
        now: DateTime<Utc>,
        park: &pedf_core::Park,
        store: &mut Store,
        writer: &super::writer::StoreWriter,
    ) {
        let Some(taken) = measured_window(k, e, now, &park.clock) else {
            writer.event(
                now,
                "info",
                "grid",
                format!(
                    "the {} of {:.1} kW the grid's master set at {} held no whole interval: its delivery is not measured",
                    WHAT[k],
                    e.kw,
                    park.clock.format(e.since)
                ),
            );
            return;
        };
        if let Err(why) = self.hold(taken, None, now, park, store, writer) {
            writer.event(
                now,
                "warning",
                "grid",
                format!(
                    "the {} the grid's master set at {} is not measured: {why}",
                    WHAT[k],
                    park.clock.format(e.since)
                ),
            );
        }
    }

    /// Holds `taken` from now (stored, in force in its window, said), or says why not.
    fn hold(
        &mut self,
        taken: TakenGridRequest,
        baseline: Option<Baseline>,
        now: DateTime<Utc>,
        park: &pedf_core::Park,
        store: &mut Store,
        writer: &super::writer::StoreWriter,
    ) -> Result<(f64, String), String> {
        store
            .put_grid_request(&taken)
            .map_err(|e| format!("the store did not take it: {e}"))?;
        let r = &taken.request;
        if let Some(b) = baseline {
            self.baselines.insert(r.id.clone(), b);
        }
        writer.event(
            now,
            "info",
            "grid",
            format!(
                "grid request {} from {} ({} {} kW, {} to {}): {}",
                r.id,
                r.source,
                r.kind.name(),
                r.kind.kw(),
                park.clock.format(r.start),
                park.clock.format(r.end),
                taken.note
            ),
        );
        let answer = (taken.held_kw, taken.note.clone());
        self.taken.retain(|t| t.request.id != r.id);
        self.started.remove(&r.id);
        self.taken.push(taken);
        Ok(answer)
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
    rule: &BaselineRule,
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
            let b = baseline_of(r, store, park, rule)?;
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
        RequestKind::ExportAtLeast(x) => {
            if !limits.allow_export {
                return Err("the park's connection agreement allows no export".into());
            }
            if x > limits.export_kw {
                return Err(format!(
                    "{x:.1} kW is above the park's export limit of {:.1} kW",
                    limits.export_kw
                ));
            }
            let from = if limits.export_only_from_pv {
                "from the PV surplus (only PV may be exported: the battery covers the loads, flexible loads and chargers wait)"
            } else {
                "from the PV surplus and the battery (flexible loads and chargers wait)"
            };
            Ok((
                x,
                format!("accepted: export at least {x:.1} kW, held by the controller in the window {from}"),
                None,
            ))
        }
    }
}

/// The station and the limits its master set.
pub(crate) struct GridLink {
    station: Outstation,
    commands: mpsc::Receiver<Command>,
    caps: GridCaps,
    /// The limits in force as the grid's requests to be measured (import, export, power
    /// target): each from when it was set to when it is released or changed.
    episodes: [Option<Episode>; 3],
    /// How long the limits the master sets next hold, minutes (0: until released).
    minutes: f64,
    /// What is to be said at the first cycle (limits held after a restart).
    said: Vec<String>,
}

/// The most the park may export at its connection by its own limits and rules, kW.
fn export_room(l: &Limits) -> f64 {
    if l.allow_export {
        l.export_kw
    } else {
        0.0
    }
}

/// The longest a limit may be set for, minutes (a day; longer is a standing limit, set
/// without a duration and released by the master).
const MAX_LIMIT_MINUTES: f64 = 1440.0;

/// A limit the master set, from when it holds: measured, once it ends, as a grid request over
/// the whole intervals it held (its delivery against the baseline, or the plan active when it
/// was set).
#[derive(Debug, Clone, PartialEq)]
struct Episode {
    kw: f64,
    since: DateTime<Utc>,
    by: String,
    plan: Option<i64>,
}

/// What the master set in slot `k`: the import limit, the export limit, the power target.
const WHAT: [&str; 3] = ["import limit", "export limit", "power target"];
/// Slot `k`'s name in a measured request's id.
const IDS: [&str; 3] = ["import", "export", "target"];
/// Slot `k`'s setpoint (and store row).
const POINTS: [&str; 3] = ["import_limit_kw", "export_limit_kw", "power_target_kw"];

/// The grid request a limit held from `e.since` to `now` on side `k` is measured as: the whole
/// intervals it held (none when it held no whole interval).
fn measured_window(
    k: usize,
    e: &Episode,
    now: DateTime<Utc>,
    clock: &pedf_core::time::ParkClock,
) -> Option<TakenGridRequest> {
    let first = clock.interval_start(e.since);
    let start = if first == e.since {
        first
    } else {
        first + clock.interval.duration()
    };
    let end = clock.interval_start(now);
    if end <= start {
        return None;
    }
    // A power target holds the import at most at it, or the export at least at it.
    let kind = match k {
        0 => RequestKind::CapImport(e.kw),
        1 => RequestKind::CapExport(e.kw),
        _ if e.kw >= 0.0 => RequestKind::CapImport(e.kw),
        _ => RequestKind::ExportAtLeast(-e.kw),
    };
    let held_kw = kind.kw();
    Some(TakenGridRequest {
        request: GridRequest {
            id: format!(
                "iec104-{}-{}",
                IDS[k],
                clock.local(start).format("%Y%m%d-%H%M")
            ),
            start,
            end,
            kind,
            price_cny_per_kwh: None,
            source: format!("IEC 104 master {}", e.by),
        },
        taken: e.since,
        held_kw,
        note: format!(
            "the {} of {:.1} kW the grid's master set at {} and released or changed at {}, measured over its whole intervals",
            WHAT[k],
            e.kw,
            clock.format(e.since),
            clock.format(now)
        ),
        reference_plan: e.plan,
    })
}

/// Limits the grid set at the connection, kW (`None`: the park's own), and until when each
/// holds (`None`: until released).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GridCaps {
    import_kw: Option<f64>,
    export_kw: Option<f64>,
    /// Export at least this much (a grid request's floor).
    export_floor_kw: Option<f64>,
    /// The power at the connection the master asks (+import, -export): import at most it,
    /// or export at least and at most it.
    target_kw: Option<f64>,
    until: [Option<DateTime<Utc>>; 3],
}

impl GridCaps {
    /// The limits that still hold at the start of the interval from `t` (those ending after
    /// it: an interval a limit ends in is planned under it).
    pub(crate) fn at(&self, t: DateTime<Utc>) -> GridCaps {
        let holds = |k: usize| self.until[k].is_none_or(|u| u > t);
        GridCaps {
            import_kw: self.import_kw.filter(|_| holds(0)),
            export_kw: self.export_kw.filter(|_| holds(1)),
            export_floor_kw: self.export_floor_kw,
            target_kw: self.target_kw.filter(|_| holds(2)),
            until: self.until,
        }
    }

    /// The park's limits with the grid's over them (the lower of each).
    pub(crate) fn apply(&self, l: &Limits) -> Limits {
        let mut out = l.clone();
        if let Some(c) = self.import_kw {
            out.import_kw = out.import_kw.min(c);
        }
        if let Some(c) = self.export_kw {
            out.export_kw = out.export_kw.min(c);
        }
        if let Some(f) = self.export_floor_kw {
            out.export_floor_kw = out.export_floor_kw.max(f);
        }
        if let Some(p) = self.target_kw {
            if p >= 0.0 {
                out.import_kw = out.import_kw.min(p);
            } else {
                out.export_kw = out.export_kw.min(-p);
                out.export_floor_kw = out.export_floor_kw.max(-p);
            }
        }
        out
    }

    fn active(&self) -> bool {
        self.import_kw.is_some()
            || self.export_kw.is_some()
            || self.export_floor_kw.is_some()
            || self.target_kw.is_some()
    }

    /// What a plan must keep of these in one interval.
    fn planned(&self) -> pedf_dispatch::GridCap {
        let lower = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let higher = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        let t = self.target_kw;
        pedf_dispatch::GridCap {
            import_kw: lower(self.import_kw, t.filter(|p| *p >= 0.0)),
            export_kw: lower(self.export_kw, t.filter(|p| *p < 0.0).map(|p| -p)),
            export_at_least_kw: higher(self.export_floor_kw, t.filter(|p| *p < 0.0).map(|p| -p)),
        }
    }

    /// The most the park may import net (import less export) under these: the import cap,
    /// or less than nothing where an export floor holds.
    fn net_ceiling(&self) -> Option<f64> {
        match (self.import_kw, self.export_floor_kw) {
            (Some(c), Some(f)) => Some(c.min(-f)),
            (c, f) => c.or(f.map(|f| -f)),
        }
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
        let mut episodes: [Option<Episode>; 3] = [None, None, None];
        let mut said = Vec::new();
        // The duration the master set, and since when: a limit set after it holds that long.
        let duration = kept
            .iter()
            .find(|l| l.name == "limit_minutes")
            .map(|l| (l.kw, l.at));
        let now = time.now();
        for pedf_store::GridLimit { name, kw, by, at } in kept {
            let (slot, own_kw, k) = match name.as_str() {
                "import_limit_kw" => (&mut caps.import_kw, own.import_kw, 0),
                "export_limit_kw" => (&mut caps.export_kw, own.export_kw, 1),
                "power_target_kw" => (&mut caps.target_kw, own.import_kw, 2),
                _ => continue,
            };
            // The least a setpoint of this slot may be: 0, or for a power target the park's
            // export (none where it may not export).
            let least = if k == 2 { -export_room(&own) } else { 0.0 };
            let until = duration
                .filter(|(m, since)| *m > 0.0 && since <= at)
                .map(|(m, _)| *at + chrono::Duration::seconds((m * 60.0).round() as i64));
            if until.is_some_and(|u| u <= now) {
                said.push(format!(
                    "the {} of {kw:.1} kW the grid (IEC 104 master {by}) set at {} ended while the EMS was stopped: the park's own applies",
                    name.trim_end_matches("_kw").replace('_', " "),
                    park.clock.format(*at)
                ));
                continue;
            }
            if kw.is_finite() && *kw >= least && *kw < own_kw {
                *slot = Some(*kw);
                caps.until[k] = until;
                // Measured when it ends; against the baseline (the plan before it is not
                // known after a restart).
                episodes[k] = Some(Episode {
                    kw: *kw,
                    since: *at,
                    by: by.clone(),
                    plan: None,
                });
                said.push(format!(
                    "the {} of {kw:.1} kW the grid (IEC 104 master {by}) set at {} holds after the restart",
                    WHAT[k],
                    park.clock.format(*at)
                ));
            }
        }
        Ok(GridLink {
            station,
            commands,
            caps,
            episodes,
            minutes: duration.map_or(0.0, |d| d.0),
            said,
        })
    }

    /// The limits the master set and has not released.
    pub(crate) fn caps(&self) -> GridCaps {
        self.caps
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
            replanner,
            active_plan,
            ..
        } = self;
        // The rest of today is what a re-plan covers: a request in it waits for one.
        let today_ends = park
            .clock
            .local(now)
            .date_naive()
            .succ_opt()
            .map_or(now, |d| park.clock.start_of_local_day(d));
        // The run file's requests first (their answers are the events), then the API's.
        let mut from_file = std::mem::take(&mut requests.file).into_iter();
        while let Some((r, reply)) = from_file
            .next()
            .map(|r| (r, tokio::sync::oneshot::channel().0))
            .or_else(|| io.grid_requests.as_mut().and_then(|rx| rx.try_recv().ok()))
        {
            match judge(&r, now, park, limits, store, &requests.rule) {
                Ok((held, note, baseline)) => {
                    let taken = TakenGridRequest {
                        request: r.clone(),
                        taken: now,
                        held_kw: held,
                        note,
                        reference_plan: active_plan.as_ref().and_then(|a| a.readable_id()),
                    };
                    // What the re-plan checks: a request on the import, or an export floor.
                    let planned_for = !matches!(r.kind, RequestKind::CapExport(_));
                    match replanner.as_mut() {
                        Some(rp) if planned_for && r.start < today_ends => {
                            rp.request_now(format!("grid request {}", r.id));
                            requests.pending.push(Pending {
                                taken,
                                baseline,
                                reply,
                            });
                        }
                        rp => {
                            let mut taken = taken;
                            if planned_for {
                                taken.note = format!(
                                    "{} ({})",
                                    taken.note,
                                    if rp.is_some() {
                                        "checked against its day's plan when that is made: a shortfall is said then"
                                    } else {
                                        "not checked against a plan: the run file has no [replan]"
                                    }
                                );
                            }
                            let _ = reply
                                .send(requests.hold(taken, baseline, now, park, store, writer));
                        }
                    }
                }
                Err(why) => refuse(writer, now, &r, reply, why),
            }
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
                let said = match store.grid_request_delivery(
                    t,
                    &park.clock,
                    &requests.rule,
                    requests.baselines.get(&r.id),
                ) {
                    Err(why) => format!(
                        "grid request {} is over: its delivery cannot be measured ({why})",
                        r.id
                    ),
                    Ok(m) => {
                        let d = &m.delivery;
                        format!(
                            "grid request {} is over: {:.1} of {:.1} kWh delivered ({:.0} %) {}{}",
                            r.id,
                            d.delivered_kwh,
                            d.requested_kwh,
                            d.share * 100.0,
                            m.against.said(),
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
            replanner,
            requests,
            store,
            park,
            active_plan,
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
        // A limit set for a while ends: the park's own applies again.
        for (k, side) in WHAT.iter().enumerate() {
            if g.caps.until[k].is_none_or(|u| u > now) {
                continue;
            }
            let (slot, own, name) = match k {
                0 => (&mut g.caps.import_kw, limits.import_kw, POINTS[0]),
                1 => (&mut g.caps.export_kw, limits.export_kw, POINTS[1]),
                _ => (&mut g.caps.target_kw, limits.import_kw, POINTS[2]),
            };
            let kw = slot.take();
            g.caps.until[k] = None;
            if let Some(e) = g.episodes[k].take() {
                requests.measure_later(k, &e, now, park, store, writer);
                writer.send(super::Write::GridLimit {
                    name: name.into(),
                    kw: None,
                    by: e.by.clone(),
                    at: now,
                });
                writer.event(
                    now,
                    "info",
                    "grid",
                    format!(
                        "the {side} of {:.1} kW the grid (IEC 104 master {}) set at {} ended: {}",
                        kw.unwrap_or(e.kw),
                        e.by,
                        park.clock.format(e.since),
                        if k == 2 {
                            "the park's own limits apply".to_string()
                        } else {
                            format!("the park's own {own:.1} kW applies")
                        }
                    ),
                );
            }
            if let Some(rp) = replanner.as_mut() {
                rp.request_now(format!("the grid's {side} ended"));
            }
        }
        while let Ok(c) = g.commands.try_recv() {
            if c.point == "limit_minutes" {
                // A short float's digits beyond a thousandth of a minute are its own noise.
                let minutes = (c.value * 1000.0).round() / 1000.0;
                let outcome = if minutes.is_finite() && (0.0..=MAX_LIMIT_MINUTES).contains(&minutes)
                {
                    g.minutes = minutes;
                    writer.send(super::Write::GridLimit {
                        name: c.point.clone(),
                        kw: (minutes > 0.0).then_some(minutes),
                        by: c.master.to_string(),
                        at: now,
                    });
                    Ok(())
                } else {
                    Err(format!(
                        "limit_minutes must be 0 (until released) to {MAX_LIMIT_MINUTES} minutes"
                    ))
                };
                writer.event(
                    now,
                    if outcome.is_ok() { "info" } else { "warning" },
                    "grid",
                    match &outcome {
                        Ok(()) if minutes > 0.0 => format!(
                            "the grid (IEC 104 master {}) set the limits' duration to {minutes} min: a limit it sets from now holds that long",
                            c.master
                        ),
                        Ok(()) => format!(
                            "the grid (IEC 104 master {}) set the limits' duration to 0: a limit it sets from now holds until released",
                            c.master
                        ),
                        Err(why) => format!(
                            "the grid (IEC 104 master {}) asked limit_minutes = {}: refused, {why}",
                            c.master, c.value
                        ),
                    },
                );
                let _ = c.reply.send(outcome);
                continue;
            }
            let k = POINTS.iter().position(|p| *p == c.point).unwrap_or(1);
            // A limit is 0 kW up to the park's own on its side; a power target from the
            // park's export (none where it may not export) to its import limit, which
            // releases it.
            let own = if k == 1 {
                limits.export_kw
            } else {
                limits.import_kw
            };
            let least = if k == 2 { -export_room(limits) } else { 0.0 };
            let outcome = if !c.value.is_finite() {
                Err(format!("{} must be a number of kW", c.point))
            } else if c.value < least - 1e-6 {
                Err(if k == 2 {
                    format!(
                        "{} kW exports more than the park may ({:.1} kW: its export limit and rules)",
                        c.value, -least
                    )
                } else {
                    format!("{} must be 0 kW or more", c.point)
                })
            } else if c.value > own + 1e-6 {
                Err(format!(
                    "{} kW is above the park's own limit of {own:.1} kW (its connection's)",
                    c.value
                ))
            } else {
                let cap = (c.value < own - 1e-6).then_some(c.value);
                match k {
                    0 => g.caps.import_kw = cap,
                    1 => g.caps.export_kw = cap,
                    _ => g.caps.target_kw = cap,
                }
                // The limit that held until now is measured as a request over its whole
                // intervals; the new one is measured from now.
                if let Some(e) = g.episodes[k].take() {
                    requests.measure_later(k, &e, now, park, store, writer);
                }
                g.caps.until[k] = cap
                    .filter(|_| g.minutes > 0.0)
                    .map(|_| now + chrono::Duration::seconds((g.minutes * 60.0).round() as i64));
                g.episodes[k] = cap.map(|kw| Episode {
                    kw,
                    since: now,
                    by: c.master.to_string(),
                    plan: active_plan.as_ref().and_then(|a| a.readable_id()),
                });
                writer.send(super::Write::GridLimit {
                    name: c.point.clone(),
                    kw: cap,
                    by: c.master.to_string(),
                    at: now,
                });
                // The plan is made again under the limit (the controller holds it meanwhile).
                if let Some(rp) = replanner.as_mut() {
                    rp.request_now(format!("the grid's master set the {}", c.point));
                }
                Ok(cap)
            };
            let side = k;
            let said = match &outcome {
                Ok(Some(v)) => format!(
                    "the grid (IEC 104 master {}) set the {} to {v:.1} kW: held from this cycle{}",
                    c.master,
                    c.point.trim_end_matches("_kw").replace('_', " "),
                    g.caps.until[side]
                        .map(|u| format!(" until {}", park.clock.format(u)))
                        .unwrap_or_default()
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
                ("limit_minutes", Some(g.minutes)),
                // The target in force; the park's own import limit when none holds (the
                // value that releases one).
                (
                    "power_target_kw",
                    Some(g.caps.target_kw.unwrap_or(self.limits.import_kw)),
                ),
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

    /// A park's own limits: 1000 kW each way, export only from PV.
    fn own_limits() -> Limits {
        Limits {
            import_kw: 1000.0,
            export_kw: 1000.0,
            allow_export: true,
            export_only_from_pv: true,
            eta_in: 0.97,
            eta_out: 0.97,
            soc_min_pct: 10.0,
            soc_max_pct: 95.0,
            reverse_flow_margin_kw: 0.0,
            battery_charge_kw: 500.0,
            battery_discharge_kw: 500.0,
            export_floor_kw: 0.0,
        }
    }

    /// The park's clock (Shanghai, 15-minute intervals) and the time `t`.
    fn clock_at(t: &str) -> (pedf_core::time::ParkClock, DateTime<Utc>) {
        (
            pedf_core::time::ParkClock::new(
                chrono_tz::Asia::Shanghai,
                pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
            ),
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

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
            reference_plan: None,
        }
    }

    /// A cap of 100 kW for an hour against a plan that imports 260 kW: held in full where the
    /// re-plan keeps it, in part saying how much where it keeps at least half of what was
    /// asked off the plan, refused below that; with nothing to measure against, in part.
    #[test]
    fn a_re_plan_holds_a_request_in_full_in_part_or_not_at_all() {
        let (clock, t0) = clock_at("2026-07-01T19:00:00+08:00");
        let q = chrono::Duration::minutes(15);
        let mut cap = taken("c", RequestKind::CapImport(100.0), 100.0, t0);
        cap.note = "accepted: import at most 100.0 kW".into();
        let series = |kw: [f64; 4]| -> BTreeMap<DateTime<Utc>, f64> {
            kw.iter()
                .enumerate()
                .map(|(k, v)| (t0 + q * k as i32, *v))
                .collect()
        };
        let before = series([260.0; 4]);
        let v = |trial: [f64; 4], before: Option<&BTreeMap<DateTime<Utc>, f64>>| {
            verdict(&cap, None, &series(trial), before, &clock)
        };
        assert_eq!(
            v([100.0, 100.3, 90.0, 100.0], Some(&before)),
            Verdict::Full(
                "accepted: import at most 100.0 kW; the re-plan holds it in every interval".into()
            )
        );
        // 127.5 of 160 kWh taken off: 80 %.
        match v([100.0, 150.0, 180.0, 100.0], Some(&before)) {
            Verdict::Part(held, note) => {
                assert_eq!(held, 180.0);
                assert!(
                    note.starts_with("accepted in part: import at most 180.0 kW (80 % of what it asks off the plan: 127.5 of 160.0 kWh)"),
                    "{note}"
                );
            }
            other => panic!("{other:?}"),
        }
        // 5 of 160 kWh: 3 %.
        match v([250.0, 260.0, 260.0, 250.0], Some(&before)) {
            Verdict::Refuse(why) => assert!(
                why.starts_with("the park can hold only 3 % of what it asks off the plan: 5.0 of 160.0 kWh, less than the 50 %"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        match v([250.0, 260.0, 260.0, 250.0], None) {
            Verdict::Part(held, note) => {
                assert_eq!(held, 260.0);
                assert!(note.contains("no plan before it"), "{note}");
            }
            other => panic!("{other:?}"),
        }
        // A reduction of 100 kW against its baseline (300 kW): the cap is 200 kW; held to
        // 240 kW it is 60 kW of reduction.
        let mut reduce = taken("r", RequestKind::ReduceImport(100.0), 100.0, t0);
        reduce.note = "accepted".into();
        let b = Baseline {
            days: Vec::new(),
            intervals: (0..4).map(|k| (t0 + q * k, 300.0, 0.0)).collect(),
        };
        match verdict(
            &reduce,
            Some(&b),
            &series([200.0, 240.0, 200.0, 200.0]),
            None,
            &clock,
        ) {
            Verdict::Part(held, note) => {
                assert_eq!(held, 60.0);
                assert!(note.contains("import lower by 60.0 kW (90 %"), "{note}");
            }
            other => panic!("{other:?}"),
        }
        // An export floor of 200 kW against a plan exporting 100 kW (net -100 kW): a re-plan
        // exporting 180 kW in its worst interval holds 180 kW, 95 of the 100 kWh asked. A
        // floor is measured on export only: a plan that imports exports nothing.
        let mut floor = taken("f", RequestKind::ExportAtLeast(200.0), 200.0, t0);
        floor.note = "accepted: export at least 200.0 kW".into();
        let before = series([-100.0; 4]);
        match verdict(
            &floor,
            None,
            &series([-200.0, -180.0, -200.0, -200.0]),
            Some(&before),
            &clock,
        ) {
            Verdict::Part(held, note) => {
                assert_eq!(held, 180.0);
                assert!(
                    note.starts_with("accepted in part: export at least 180.0 kW (95 % of what it asks off the plan: 95.0 of 100.0 kWh); the re-plan with it as a constraint still exports up to 20.0 kW short of it"),
                    "{note}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(&floor, None, &series([-200.5; 4]), Some(&before), &clock),
            Verdict::Full(_)
        ));
        // A plan importing 150 kW that a re-plan brings to 0 kW delivers no export: refused.
        match verdict(
            &floor,
            None,
            &series([0.0; 4]),
            Some(&series([150.0; 4])),
            &clock,
        ) {
            Verdict::Refuse(why) => assert!(
                why.starts_with(
                    "the park can hold only 0 % of what it asks off the plan: 0.0 of 200.0 kWh"
                ),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    /// A limit the master held from 10:07 to 10:52 is measured over 10:15-10:45 (its whole
    /// intervals), named by its side and first interval; one set on an interval's start counts
    /// that interval; one that held no whole interval is not measured.
    #[test]
    fn a_limit_the_master_held_is_measured_over_its_whole_intervals() {
        let (clock, t0) = clock_at("2026-07-01T10:07:00+08:00");
        let e = Episode {
            kw: 120.0,
            since: t0,
            by: "127.0.0.1".into(),
            plan: Some(4),
        };
        let m = chrono::Duration::minutes;
        let t = measured_window(0, &e, t0 + m(45), &clock).unwrap();
        assert_eq!(t.request.id, "iec104-import-20260701-1015");
        assert_eq!(t.request.start, t0 + m(8));
        assert_eq!(t.request.end, t0 + m(38));
        assert_eq!(t.request.kind, RequestKind::CapImport(120.0));
        assert_eq!(t.request.source, "IEC 104 master 127.0.0.1");
        assert_eq!((t.taken, t.held_kw, t.reference_plan), (t0, 120.0, Some(4)));
        let on_start = Episode {
            since: t0 - m(7),
            ..e.clone()
        };
        let t = measured_window(1, &on_start, t0 + m(9), &clock).unwrap();
        assert_eq!(t.request.id, "iec104-export-20260701-1000");
        assert_eq!(t.request.kind, RequestKind::CapExport(120.0));
        assert_eq!((t.request.start, t.request.end), (t0 - m(7), t0 + m(8)));
        assert_eq!(measured_window(0, &e, t0 + m(20), &clock), None);
    }

    /// A plan's shortfall against the grid's caps is said when it appears, when it moves by
    /// more than a tenth (and 5 kWh), and when it is gone; not at each re-plan that finds it
    /// again.
    #[test]
    fn a_plans_shortfall_is_said_when_it_is_news() {
        let mut r = Requests::default();
        let d = chrono::NaiveDate::from_ymd_opt(2026, 6, 22).unwrap();
        let next = d.succ_opt().unwrap();
        let seq = [
            (d, None),
            (d, Some(539.0)),
            (d, Some(509.0)),
            (d, Some(581.5)),
            (d, Some(620.0)),
            (next, Some(3.0)),
            (next, Some(7.0)),
            (d, None),
            (d, None),
        ];
        let said: Vec<Option<bool>> = seq
            .iter()
            .map(|(day, k)| r.shortfall_news(*day, *k))
            .collect();
        assert_eq!(
            said,
            [
                None,
                Some(true),
                None,
                None,
                Some(true),
                Some(true),
                None,
                Some(false),
                None
            ]
        );
    }

    /// A limit the master set for 40 minutes is planned under in the intervals it holds in
    /// (the one it ends in too), not after; one set until released to the end of the next day.
    #[test]
    fn a_limit_set_for_a_while_is_planned_under_until_it_ends() {
        let (clock, t0) = clock_at("2026-07-01T14:00:00+08:00");
        let q = chrono::Duration::minutes(15);
        let mut r = Requests::default();
        let master = GridCaps {
            import_kw: Some(100.0),
            export_kw: Some(0.0),
            until: [Some(t0 + chrono::Duration::minutes(40)), None, None],
            ..GridCaps::default()
        };
        let caps = r.plan_caps(t0, &clock, master);
        let import = |k: i32| caps.get(&(t0 + q * k)).and_then(|c| c.import_kw);
        assert_eq!(
            (import(0), import(2), import(3)),
            (Some(100.0), Some(100.0), None)
        );
        // The export limit holds to the end of the next day (34 hours from 14:00).
        assert_eq!(caps.len(), 34 * 4);
        assert!(caps.values().all(|c| c.export_kw == Some(0.0)));
    }

    /// A power target the master sets for half an hour: below zero, the plan exports at least
    /// and at most it (and a request's floor above it holds); above zero, it imports at most
    /// it; the controller's limits likewise; measured, it is a floor or a cap.
    #[test]
    fn a_power_target_is_planned_held_and_measured_as_a_floor_or_a_cap() {
        let (clock, t0) = clock_at("2026-07-01T12:00:00+08:00");
        let q = chrono::Duration::minutes(15);
        let mut r = Requests {
            taken: vec![taken("f", RequestKind::ExportAtLeast(80.0), 80.0, t0 + q)],
            ..Requests::default()
        };
        let master = GridCaps {
            target_kw: Some(-50.0),
            until: [None, None, Some(t0 + chrono::Duration::minutes(30))],
            ..GridCaps::default()
        };
        let caps = r.plan_caps(t0, &clock, master);
        let at = |k: i32| caps.get(&(t0 + q * k)).copied().unwrap_or_default();
        assert_eq!(
            at(0),
            pedf_dispatch::GridCap {
                import_kw: None,
                export_kw: Some(50.0),
                export_at_least_kw: Some(50.0),
            }
        );
        assert_eq!(at(1).export_at_least_kw, Some(80.0));
        assert_eq!(at(2).export_kw, None);
        let own = own_limits();
        let held = master.apply(&own);
        assert_eq!(
            (held.import_kw, held.export_kw, held.export_floor_kw),
            (1000.0, 50.0, 50.0)
        );
        let up = GridCaps {
            target_kw: Some(120.0),
            ..GridCaps::default()
        };
        assert_eq!(up.apply(&own).import_kw, 120.0);
        assert_eq!(up.planned().import_kw, Some(120.0));
        // Measured once it ends: a target below zero is an export floor, above zero a cap.
        let e = |kw: f64| Episode {
            kw,
            since: t0,
            by: "127.0.0.1".into(),
            plan: None,
        };
        let end = t0 + chrono::Duration::minutes(30);
        let floor = measured_window(2, &e(-50.0), end, &clock).unwrap();
        assert_eq!(floor.request.kind, RequestKind::ExportAtLeast(50.0));
        assert_eq!(floor.held_kw, 50.0);
        assert_eq!(floor.request.id, "iec104-target-20260701-1200");
        let cap = measured_window(2, &e(120.0), end, &clock).unwrap();
        assert_eq!(cap.request.kind, RequestKind::CapImport(120.0));
    }

    #[test]
    fn the_requests_in_force_lower_the_limits_each_interval() {
        let (clock, t0) = clock_at("2026-07-01T14:00:00+08:00");
        let q = chrono::Duration::minutes(15);
        // A reduction of 100 kW against a baseline of 300, 250, 180, 90 kW, and from the
        // second hour an import cap of 60 kW, an export cap of 40 kW and export floors of 30
        // and 20 kW (the higher holds).
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
                taken("f", RequestKind::ExportAtLeast(30.0), 30.0, later),
                taken("g", RequestKind::ExportAtLeast(20.0), 20.0, later),
            ],
            baselines: [("r".to_string(), b)].into(),
            ..Requests::default()
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
                export_kw: Some(40.0),
                export_floor_kw: Some(30.0),
                ..GridCaps::default()
            }
        );
        assert_eq!(at(61).net_ceiling(), Some(-30.0));
        let own = own_limits();
        let held = at(61).apply(&own);
        assert_eq!(
            (held.import_kw, held.export_kw, held.export_floor_kw),
            (60.0, 40.0, 30.0)
        );
        assert_eq!(at(121), GridCaps::default());
    }
}
