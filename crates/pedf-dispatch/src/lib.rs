//! Dispatch planning for PEDF parks: the day-ahead and rolling mixed-integer optimiser on
//! HiGHS, and the rule-based strategy that is both its baseline and its fallback.
//!
//! Both strategies produce a [`pedf_core::plan::Plan`] through one evaluator, so their costs
//! are computed the same way. The model is described in `milp.rs`; the rules in `rule.rs`.

#![warn(missing_docs)]

mod exchange;
mod milp;
mod problem;
mod rule;
mod schedule;

use std::collections::BTreeMap;
use std::time::Instant;

use pedf_core::inputs::DayInputs;
use pedf_core::plan::{Plan, SolverInfo, Strategy};
use pedf_core::Park;

/// What the battery must hold at the end of the horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TerminalSoc {
    /// At least what it held at the start (default: no borrowing from tomorrow).
    AtLeastInitial,
    /// At least this fraction of capacity.
    AtLeast(f64),
    /// Anything within its window.
    Free,
}

/// Settings of a planning run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Use the mixed-integer options (no simultaneous import/export where it could pay,
    /// chargers and deferrable loads off or at least their minimum power).
    pub mip: bool,
    /// Relative MIP gap at which the solver may stop.
    pub mip_gap: f64,
    /// Solver time limit, seconds; past it the best plan found is used, or the rules.
    pub time_limit_s: f64,
    /// Solver threads (`None`: HiGHS decides).
    pub threads: Option<u32>,
    /// Branch-and-bound node limit (`None`: none). Unlike the time limit it stops at the same
    /// point on every run and machine, so backtests that must be reproducible use it.
    pub max_nodes: Option<u32>,
    /// End-of-horizon battery requirement.
    pub terminal_soc: TerminalSoc,
    /// Penalty per kWh of an unmet EV or deferrable requirement (above any energy price).
    pub unmet_penalty_cny_per_kwh: f64,
    /// Penalty per kWh of demand that cannot be served at all.
    pub unserved_penalty_cny_per_kwh: f64,
    /// How a battery ending below its end-of-horizon target is priced: `false`, at the unmet
    /// penalty (a requirement); `true`, at what refilling that energy costs at the horizon's
    /// cheapest import price through the converter and the battery (rolling plans, whose
    /// horizon ends before the next cheap period: a re-plan at 23:00 would otherwise buy a
    /// new month peak to refill in one hour what the next night refills for free).
    pub terminal_refill_priced: bool,
    /// Start the solver from the rule-based plan.
    pub warm_start: bool,
    /// After the LP dive settles the grid directions, try flipping each import/export-binary
    /// interval (an LP from the last basis each) and keep what lowers the cost: a better
    /// starting plan for a few more LPs.
    pub polish_directions: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            mip: true,
            mip_gap: 1e-4,
            time_limit_s: 5.0,
            threads: None,
            max_nodes: None,
            terminal_soc: TerminalSoc::AtLeastInitial,
            unmet_penalty_cny_per_kwh: 1000.0,
            unserved_penalty_cny_per_kwh: 10000.0,
            terminal_refill_priced: false,
            warm_start: true,
            polish_directions: true,
        }
    }
}

/// The longest solver time limit a plan takes, s (an hour; callers refuse more).
pub const MAX_TIME_LIMIT_S: f64 = 3600.0;

/// What is known now, for re-planning the rest of a day (rolling optimisation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurrentState {
    /// Measured stored energy per battery id, kWh (default: the park's initial SoC).
    pub soc_kwh: BTreeMap<String, f64>,
    /// Energy already delivered to each EV session today, kWh.
    pub ev_delivered_kwh: BTreeMap<String, f64>,
    /// Energy already delivered to each deferrable load today, kWh.
    pub deferrable_delivered_kwh: BTreeMap<String, f64>,
    /// This month's peak import so far, kW (the demand charge is on the month's peak).
    pub month_peak_import_kw: f64,
    /// This month's location-based Scope 2 so far, kg CO2 (a monthly carbon budget gets
    /// what is left of it).
    pub month_scope2_kg: f64,
    /// This month's Scope 2 so far without the EMS (`IntervalRecord::import_without_ems_kwh`
    /// x the annual factor), kg: with `no_more_than_without_ems` a plan's allowance carries
    /// the month's slack or overrun against it.
    pub month_scope2_without_ems_kg: f64,
    /// This calendar year's Scope 2 so far, kg CO2 (an annual budget gets what is left).
    pub year_scope2_kg: f64,
    /// This month's consumption on site so far (loads and EV at the bus), kWh: an intensity
    /// target allows the target times the month's consumption.
    pub month_consumption_kwh: f64,
    /// What the grid asks at the connection (grid requests, the dispatch link's setpoints),
    /// by interval start: an import above its cap is a shortfall priced at twice the unmet
    /// penalty (the grid's request before a car's or a deferrable load's requirement, after
    /// serving the fixed load); an export cap lowers the interval's export limit; an export
    /// floor left unmet is a shortfall at the same price.
    pub grid_caps: BTreeMap<chrono::DateTime<chrono::Utc>, GridCap>,
}

/// Limits the grid asks at the connection in one interval, kW (`None`: the park's own).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GridCap {
    /// Import at most this much.
    pub import_kw: Option<f64>,
    /// Export at most this much.
    pub export_kw: Option<f64>,
    /// Export at least this much (net of import: export less import).
    pub export_at_least_kw: Option<f64>,
}

impl CurrentState {
    /// Takes the month and year so far from the park's records: the month's peak (the higher
    /// of it and the peak already known), its Scope 2 with and without the EMS, its
    /// consumption and the year's Scope 2.
    pub fn count_so_far(&mut self, so_far: &pedf_core::records::PeriodSoFar) {
        self.month_peak_import_kw = self.month_peak_import_kw.max(so_far.month_peak_kw);
        self.month_scope2_kg = so_far.month_scope2_kg;
        self.month_scope2_without_ems_kg = so_far.month_scope2_without_ems_kg;
        self.month_consumption_kwh = so_far.month_consumption_kwh;
        self.year_scope2_kg = so_far.year_scope2_kg;
    }
}

/// Why planning failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    /// The solver could not produce a plan.
    #[error("solver: {0}")]
    Solver(String),
    /// The inputs do not fit the park.
    #[error("inputs: {0}")]
    Inputs(String),
}

fn check_lengths(inputs: &DayInputs) -> Result<(), DispatchError> {
    let n = inputs.len();
    if n == 0 {
        return Err(DispatchError::Inputs("the horizon has no intervals".into()));
    }
    let bad = |v: &Vec<f64>| v.len() != n || v.iter().any(|x| !x.is_finite());
    if inputs.pv_kw.values().any(bad)
        || inputs.load_kw.values().any(bad)
        || bad(&inputs.import_price)
        || bad(&inputs.export_price)
        || bad(&inputs.carbon_intensity)
    {
        return Err(DispatchError::Inputs(format!(
            "every series must have {n} finite values"
        )));
    }
    Ok(())
}

/// The rule-based plan.
pub fn plan_rule_based(
    park: &Park,
    inputs: &DayInputs,
    opts: &PlanOptions,
    state: &CurrentState,
) -> Result<Plan, DispatchError> {
    check_lengths(inputs)?;
    let started = Instant::now();
    let p = problem::Problem::build(park, inputs, opts, state);
    let s = rule::schedule(&p);
    let info = SolverInfo::rule_based("rule", started.elapsed().as_secs_f64());
    Ok(schedule::evaluate(
        park,
        inputs,
        &p,
        &s,
        Strategy::Rule,
        info,
    ))
}

/// The optimised plan; falls back to the rule-based plan (saying so in its notes) when the
/// solver fails or ends without a solution.
pub fn plan_optimized(
    park: &Park,
    inputs: &DayInputs,
    opts: &PlanOptions,
    state: &CurrentState,
) -> Result<Plan, DispatchError> {
    check_lengths(inputs)?;
    // A time limit past an hour (or not a number) would overflow the deadlines: an hour.
    let bounded;
    let opts =
        if opts.time_limit_s.is_finite() && (0.0..=MAX_TIME_LIMIT_S).contains(&opts.time_limit_s) {
            opts
        } else {
            bounded = PlanOptions {
                time_limit_s: if opts.time_limit_s.is_finite() {
                    opts.time_limit_s.clamp(0.0, MAX_TIME_LIMIT_S)
                } else {
                    MAX_TIME_LIMIT_S
                },
                ..opts.clone()
            };
            &bounded
        };
    let plan_start = Instant::now();
    let mut p = problem::Problem::build(park, inputs, opts, state);
    let rule_schedule = rule::schedule(&p);
    let blank = SolverInfo::rule_based("rule", 0.0);
    let cost = |p: &problem::Problem, s: &schedule::Schedule| {
        schedule::evaluate(park, inputs, p, s, Strategy::Rule, blank.clone()).objective_cny
    };
    // The starting plan: the LP dive's when it is better than the rules'.
    let dive = if opts.mip && (opts.warm_start || opts.max_nodes == Some(0)) {
        lp_dive(&p, opts, opts.polish_directions)
    } else {
        None
    };
    // A node limit of 0 means no branch and bound: the dive's plan is the answer, and its
    // first LP (the relaxation) bounds the optimum, so the gap is known.
    if opts.max_nodes == Some(0) {
        if let Some(d) = dive.as_ref().filter(|d| d.schedule.is_some()) {
            let s = d.schedule.as_ref().expect("filtered");
            let mut info = SolverInfo {
                name: "HiGHS".into(),
                status: "lp_dive".into(),
                mip_gap: None,
                seconds: d.solve_seconds,
                build_seconds: d.build_seconds,
                columns: d.columns,
                rows: d.rows,
                binaries: 0,
                bound_cny: Some(d.bound),
                bound_from: Some(milp::BOUND_RELAXATION.into()),
            };
            let (chosen, note) = if cost(&p, s) <= cost(&p, &rule_schedule) {
                (s, None)
            } else {
                (
                    &rule_schedule,
                    Some("the LP dive's plan cost more than the rule-based plan; the rule-based plan is used"),
                )
            };
            let objective = cost(&p, chosen);
            info.mip_gap = Some(relative_gap(objective, d.bound));
            let mut plan = schedule::evaluate(park, inputs, &p, chosen, Strategy::Optimized, info);
            plan.notes.extend(note.map(String::from));
            plan.notes.push(format!(
                "no branch and bound (node limit 0): the plan of an LP dive in {} rounds; the gap is against the linear relaxation",
                d.rounds
            ));
            return Ok(plan);
        }
    }
    // The dive's time counts as solving time of the plan (its LPs are part of the search).
    let dive_seconds = dive
        .as_ref()
        .map_or(0.0, |d| d.build_seconds + d.solve_seconds);
    // The best lower bound on the optimum known before the search: the relaxation's (the
    // dive's first LP), then the tighter ones of the peak range. HiGHS's own bound replaces
    // it once its root is solved; until then (a search cut short) it keeps the gap honest.
    let mut bound = dive.as_ref().map_or(f64::NEG_INFINITY, |d| d.bound);
    let mut bound_from = milp::BOUND_RELAXATION;
    // Time kept for settling minimum powers after HiGHS: the exchange's MILP (given half of
    // it), then the rounding's LP from scratch and its re-solves, each about twice the dive's
    // first LP (on the week at 15 minutes 0.28 s each).
    let settle_seconds = dive.as_ref().map_or(0.0, |d| {
        (4.0 * d.first_lp_seconds).min(opts.time_limit_s.max(0.0) / 5.0)
    });
    let dive_found = dive.as_ref().is_some_and(|d| d.schedule.is_some());
    let start = match dive.and_then(|d| d.schedule) {
        Some(d) if cost(&p, &d) < cost(&p, &rule_schedule) => d,
        _ => rule_schedule.clone(),
    };
    // Node limit 0 asks for the dive's plan; when the dive found none (its rounds did not
    // settle the minimum powers), HiGHS at the root alone would hand back the rules' plan (in
    // a backtest year, three plans, one of them a new month peak the optimum avoids). A small
    // branch and bound instead, still bounded by nodes so a seed reproduces the year.
    let fallback_nodes = (opts.max_nodes == Some(0) && !dive_found).then_some(DIVE_FAILED_NODES);
    let warm = opts.warm_start.then_some(&start);
    // Narrow the peak's range to the plans no dearer than the start: tighter import bounds
    // for the search.
    let tighten_start = Instant::now();
    if opts.mip && p.demand_rate > 0.0 && p.peak_hi > p.peak_lo {
        let ub = cost(&p, &start);
        // Until three quarters of the time limit (the dive included) at most: a narrower
        // range is worth more to the search than the time it costs (a round is a few LPs;
        // on the week at 15 min the first takes about 1.5 s, later ones 0.3 s).
        let budget = std::time::Duration::from_secs_f64(opts.time_limit_s.max(0.0) * 0.75);
        if let Some(b) = tighten_peak(&mut p, opts, ub, plan_start + budget) {
            if b > bound {
                bound = b;
                bound_from = milp::BOUND_PEAK_RANGE;
            }
        }
    }
    // Split on how many intervals of each run import (no node limit: a backtest's plans stay
    // reproducible): a much better bound where the relaxation wants a fractional count.
    let parts = if opts.mip && opts.max_nodes.is_none() {
        let ub = cost(&p, &start);
        let until =
            plan_start + std::time::Duration::from_secs_f64(opts.time_limit_s.max(0.0) * 0.85);
        milp::count_split(&p, opts, ub, until, COUNT_SPLIT_LPS).ok()
    } else {
        None
    };
    if let Some(b) = parts
        .as_ref()
        .and_then(|parts| parts.iter().map(|part| part.bound).reduce(f64::min))
    {
        if b > bound {
            bound = b;
            bound_from = milp::BOUND_COUNT_SPLIT;
        }
    }
    tracing::debug!(
        parts = parts.as_ref().map_or(0, Vec::len),
        dive_s = dive_seconds,
        peak_range_s = tighten_start.elapsed().as_secs_f64(),
        bound,
        bound_from,
        start = cost(&p, &start),
        "before the search"
    );
    let dive_seconds = dive_seconds + tighten_start.elapsed().as_secs_f64();
    // The time limit covers the whole plan: HiGHS gets what is left since the plan began
    // (building the problem and the rules' plan included: at 1000 chargers they took 0.2 s and
    // the 5-s plans 5.1-5.5 s), at least a tenth.
    let search = PlanOptions {
        time_limit_s: (opts.time_limit_s - plan_start.elapsed().as_secs_f64())
            .max(opts.time_limit_s / 10.0),
        max_nodes: fallback_nodes.or(opts.max_nodes),
        ..opts.clone()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(search.time_limit_s);
    let start_cost = (&start, cost(&p, &start));
    let searched = match parts {
        Some(parts) => search_parts(
            &mut p,
            &search,
            warm,
            start_cost,
            deadline,
            (bound, bound_from),
            settle_seconds,
            parts,
        ),
        None => self::search(
            &mut p,
            &search,
            warm,
            deadline,
            (bound, bound_from),
            settle_seconds,
        ),
    };
    match searched {
        Ok(r) => {
            tracing::info!(status = %r.status, gap = r.mip_gap, build_s = r.build_seconds, solve_s = r.solve_seconds, cols = r.columns, rows = r.rows, binaries = r.binaries, objective = r.objective, "HiGHS finished");
            let info = SolverInfo {
                name: "HiGHS".into(),
                status: r.status,
                mip_gap: r.mip_gap.is_finite().then_some(r.mip_gap),
                seconds: r.solve_seconds + dive_seconds,
                build_seconds: r.build_seconds,
                columns: r.columns,
                rows: r.rows,
                binaries: r.binaries,
                bound_cny: (r.binaries > 0 && r.dual_bound.is_finite()).then_some(r.dual_bound),
                bound_from: (r.binaries > 0 && r.dual_bound.is_finite())
                    .then(|| r.bound_from.to_string()),
            };
            let mut plan = schedule::evaluate(
                park,
                inputs,
                &p,
                &r.schedule,
                Strategy::Optimized,
                info.clone(),
            );
            // Never hand out a plan worse than the start the solver was given.
            if warm.is_some() && cost(&p, &start) < plan.objective_cny - 1e-9 {
                plan = schedule::evaluate(park, inputs, &p, &start, Strategy::Optimized, info);
                plan.notes.push("the solver stopped with a plan worse than its starting plan; the starting plan is used".into());
            }
            if let Some(nodes) = fallback_nodes {
                plan.notes.push(format!(
                    "the LP dive found no plan within its rounds: branch and bound of up to {nodes} nodes instead of none"
                ));
            }
            // The gap of the plan handed out (the search's, or the start it fell back to)
            // against the best lower bound known.
            if r.binaries > 0 && r.dual_bound.is_finite() {
                plan.solver.mip_gap = Some(relative_gap(plan.objective_cny, r.dual_bound));
            }
            Ok(plan)
        }
        Err(e) => {
            tracing::warn!(error = %e, "optimiser failed; using the rule-based plan");
            let mut plan = schedule::evaluate(
                park,
                inputs,
                &p,
                &rule_schedule,
                Strategy::Rule,
                SolverInfo::rule_based("fallback", 0.0),
            );
            plan.notes.push(format!(
                "optimiser failed ({e}); this is the rule-based plan"
            ));
            Ok(plan)
        }
    }
}

/// What the search's rounds have found so far: the best lower bound on the plan's problem,
/// where it comes from, and the best plan settled (with its cost).
///
/// Every round's model is a relaxation of the plan's problem (a minimum power not yet strict
/// is relaxed, never tightened), so every round's bound is one of the problem's and the best
/// of them holds. Taking each round's bound as it came lost an earlier round's better one
/// when a later round was cut short: at 1000 chargers a longer run reported a larger gap
/// (1.8e-4 after 60 s, 4.1e-4 after 240 s, issue 26). With this the bound never gets worse
/// with more rounds, and no round's plan is handed out when an earlier one cost less.
struct Found<S> {
    bound: f64,
    from: &'static str,
    best: Option<(S, f64)>,
}

impl<S> Found<S> {
    /// Takes a round's bound (`from` where it comes from); the best so far and its source.
    fn bound(&mut self, bound: f64, from: &'static str) -> (f64, &'static str) {
        if bound > self.bound || self.bound.is_nan() {
            (self.bound, self.from) = (bound, from);
        }
        (self.bound, self.from)
    }

    /// Takes a round's settled plan, if any; the cheapest so far (an earlier one on a tie).
    fn settled(&mut self, plan: Option<(S, f64)>) -> Option<(S, f64)>
    where
        S: Clone,
    {
        self.best = match (self.best.take(), plan) {
            (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
            (a, b) => a.or(b),
        };
        self.best.clone()
    }
}

/// LPs `count_split` may solve before the search (its deadline stops it sooner on a short
/// limit). The week at 15 minutes has two runs a day (fourteen); its split ends with every
/// count whole after 63 LPs (0.9 s, 32 parts, the least bound 34,893.9 CNY). Cut at 16 it
/// kept 14 parts whose least bound was a fractional one's, 34,893.1, and the 10-s plans cost
/// 34,904.5-34,924.6 CNY (median 34,912.7, gap 5.4e-4, eleven runs) where now
/// 34,902.0-34,906.0 (median 34,903.2, gap 2.6e-4, nineteen runs): the part searched first
/// holds cheaper plans. The hubs and the days end their splits in fewer.
const COUNT_SPLIT_LPS: usize = 128;

/// The search over the parts of a count split (`milp::count_split`), best bound first: each
/// part not pruned is searched with its counts (`search`) while the gap over all parts is
/// above the target and time is left. The bound handed back is the least over every part of
/// the best bound known for it (its relaxation's, or its search's), so it holds for the whole
/// problem; the plan is the cheapest found. `start` is a plan every part's search may start
/// from (`warm`, when given) and its cost: when the bound already proves it within the gap,
/// or every part is pruned (none holds a cheaper plan), it is the answer without a search.
#[allow(clippy::too_many_arguments)]
fn search_parts(
    p: &mut problem::Problem,
    opts: &PlanOptions,
    warm: Option<&schedule::Schedule>,
    (start, start_cost): (&schedule::Schedule, f64),
    deadline: Instant,
    (bound, bound_from): (f64, &'static str),
    settle_seconds: f64,
    mut parts: Vec<milp::CountPart>,
) -> Result<milp::MilpResult, DispatchError> {
    parts.sort_by(|a, b| a.bound.total_cmp(&b.bound));
    let mut bounds: Vec<(f64, &'static str)> = parts
        .iter()
        .map(|part| {
            if part.bound > bound {
                (part.bound, milp::BOUND_COUNT_SPLIT)
            } else {
                (bound, bound_from)
            }
        })
        .collect();
    let least = |bounds: &[(f64, &'static str)]| {
        let (b, from) = bounds
            .iter()
            .copied()
            .reduce(|a, c| if c.0 < a.0 { c } else { a })
            .unwrap_or((bound, bound_from));
        let from = if bounds.len() > 1 {
            milp::BOUND_COUNT_SPLIT
        } else {
            from
        };
        (b, from)
    };
    let began = Instant::now();
    let (b, from) = least(&bounds);
    let gap = relative_gap(start_cost, b);
    if (b.is_finite() && gap <= opts.mip_gap) || parts.iter().all(|part| part.pruned) {
        let (columns, rows, binaries) = milp::size(p, opts)?;
        return Ok(milp::MilpResult {
            schedule: start.clone(),
            status: if gap > opts.mip_gap {
                "time_limit"
            } else if gap > 0.0 {
                "gap_limit"
            } else {
                "optimal"
            }
            .into(),
            mip_gap: if b.is_finite() { gap } else { f64::INFINITY },
            objective: start_cost,
            dual_bound: b,
            bound_from: from,
            build_seconds: 0.0,
            solve_seconds: began.elapsed().as_secs_f64(),
            columns,
            rows,
            binaries,
        });
    }
    let saved = std::mem::take(&mut p.import_counts);
    let mut best: Option<milp::MilpResult> = None;
    let mut failed = None;
    let (mut build_seconds, mut solve_seconds) = (0.0, 0.0);
    for (i, part) in parts.iter().enumerate() {
        if part.pruned {
            continue;
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        if best.is_some() && left < opts.time_limit_s / 10.0 {
            break;
        }
        // Before, the first part took all the time: with 60 s, a first part whose best plan
        // cost 34,909 CNY kept it while another part held plans of 34,904 CNY that the 10-s
        // plans found.
        let unsearched = parts[i..].iter().filter(|part| !part.pruned).count();
        let first = best.is_none() && failed.is_none();
        let share = part_share(left, unsearched, 10.0 * settle_seconds, first);
        let until = deadline.min(Instant::now() + std::time::Duration::from_secs_f64(share));
        let part_opts = PlanOptions {
            time_limit_s: share.min(left),
            ..opts.clone()
        };
        p.import_counts = part.counts.clone();
        let searched = search(p, &part_opts, warm, until, bounds[i], settle_seconds);
        p.import_counts = saved.clone();
        match searched {
            Ok(r) => {
                build_seconds += r.build_seconds;
                solve_seconds += r.solve_seconds;
                if r.dual_bound > bounds[i].0 {
                    bounds[i] = (r.dual_bound, r.bound_from);
                }
                if best.as_ref().is_none_or(|b| r.objective < b.objective) {
                    best = Some(r);
                }
            }
            Err(e) => failed = Some(e),
        }
        let (b, _) = least(&bounds);
        if best
            .as_ref()
            .is_some_and(|r| relative_gap(r.objective, b) <= opts.mip_gap)
        {
            break;
        }
    }
    p.import_counts = saved;
    let Some(mut r) = best else {
        return Err(failed.unwrap_or_else(|| {
            DispatchError::Solver("the count split left no part to search".into())
        }));
    };
    let (b, from) = least(&bounds);
    r.build_seconds = build_seconds;
    r.solve_seconds = solve_seconds;
    if b.is_finite() {
        (r.dual_bound, r.bound_from) = (b, from);
        r.mip_gap = relative_gap(r.objective, b);
        r.status = if r.mip_gap > opts.mip_gap {
            "time_limit"
        } else if r.mip_gap > 0.0 {
            "gap_limit"
        } else {
            "optimal"
        }
        .into();
    }
    Ok(r)
}

/// The seconds the next of `unsearched` parts of a count split gets of the `left`: its equal
/// share, at least `floor` (what a search round and its settling take: ten settlings, on the
/// week at 15 minutes about 5 s, all a 10-s plan has for its search), and twice that for the
/// `first` part searched, the least bound's: where a part is quick to search, the first one
/// often settles the plan alone (200 chargers at 5 s: 1.5 s with all the time, 2.8 s when
/// it had half).
fn part_share(left: f64, unsearched: usize, floor: f64, first: bool) -> f64 {
    let share = (left / unsearched.max(1) as f64).max(floor);
    if first {
        2.0 * share
    } else {
        share
    }
}

/// Rounds the LP dive has to settle the grid directions (each holds at least one interval's).
const DIVE_DIRECTION_ROUNDS: usize = 40;

/// Branch-and-bound nodes allowed, under a node limit of 0, when the LP dive finds no plan.
const DIVE_FAILED_NODES: u32 = 2000;

/// The relative gap of a plan costing `objective` to a lower bound on the optimum, as HiGHS
/// measures its MIP gap: (objective - bound) / |objective|, never below zero.
fn relative_gap(objective: f64, bound: f64) -> f64 {
    ((objective - bound) / objective.abs().max(1e-9)).max(0.0)
}

/// Optimality-based bound tightening of the horizon's peak import: the range the peak can take
/// in the linear relaxation among plans costing at most `ub` (a feasible plan's cost), applied
/// to the problem and repeated while the range shrinks (each round tightens the relaxation,
/// which narrows the next range). No plan cheaper than `ub` is cut off. Returns the best lower
/// bound on the optimum the rounds' relaxations gave (each is the relaxation over a range that
/// holds every plan no dearer than `ub`), if any.
fn tighten_peak(
    p: &mut problem::Problem,
    opts: &PlanOptions,
    ub: f64,
    deadline: Instant,
) -> Option<f64> {
    let mut best: Option<f64> = None;
    for _ in 0..4 {
        if Instant::now() >= deadline {
            return best;
        }
        let Ok(range) = milp::peak_range(p, opts, ub, deadline) else {
            return best;
        };
        best = best.into_iter().chain(range.bound).reduce(f64::max);
        let (lo, hi) = (range.lo, range.hi);
        // A little slack for the LP's tolerances.
        let slack = 1e-6 * p.peak_hi.max(1.0);
        let (lo, hi) = ((lo - slack).max(p.peak_lo), (hi + slack).min(p.peak_hi));
        if lo > hi {
            return best;
        }
        let shrunk = (p.peak_hi - p.peak_lo) - (hi - lo);
        tracing::debug!(lo, hi, shrunk, bound = range.bound, "peak range narrowed");
        p.peak_lo = lo;
        p.peak_hi = hi;
        if shrunk < 0.01 * (hi - lo).max(1.0) {
            return best;
        }
    }
    best
}

/// What the LP dive found.
struct Dive {
    /// The MILP-feasible plan, or `None` when the dive did not settle.
    schedule: Option<schedule::Schedule>,
    /// The linear relaxation's optimum: a lower bound on the MILP's.
    bound: f64,
    /// Building and solving the first LP from scratch, the cost of one settling's first LP.
    first_lp_seconds: f64,
    rounds: usize,
    build_seconds: f64,
    solve_seconds: f64,
    columns: usize,
    rows: usize,
}

/// A MILP-feasible starting plan from linear programs. Solve the relaxation; while some
/// interval both imports and exports (where a binary would forbid it), hold its weaker side at
/// zero and solve again from the last basis. With the grid directions settled, optionally try
/// better ones (`polish_modes`), then round the EV and deferrable-load intervals that run below
/// their minimum power (`round_min_power`) and solve again, until nothing is violated (at most
/// `DIVE_DIRECTION_ROUNDS` rounds to settle the directions). The first solve's objective
/// bounds the MILP's optimum from below. `None` when even the relaxation cannot be solved.
fn lp_dive(p: &problem::Problem, opts: &PlanOptions, polish: bool) -> Option<Dive> {
    let started = Instant::now();
    let mut lp = milp::Relaxation::new(p, opts).ok()?;
    let build_seconds = started.elapsed().as_secs_f64();
    let solve_start = Instant::now();
    let mut dive = Dive {
        schedule: None,
        bound: f64::NEG_INFINITY,
        first_lp_seconds: 0.0,
        rounds: 0,
        build_seconds,
        solve_seconds: 0.0,
        columns: lp.columns,
        rows: lp.rows,
    };
    let mut ev_on: Vec<Vec<bool>> = p.sessions.iter().map(|_| vec![false; p.n]).collect();
    let mut defer_on: Vec<Vec<bool>> = p.deferrable.iter().map(|_| vec![false; p.n]).collect();
    let mut min_power = false;
    // Every round after the directions settle holds at least one more (requirement, interval)
    // pair on or off, or one more interval's direction, for good: the rounding ends within as
    // many rounds as there are pairs and intervals. (It had a cap of 40 rounds with the
    // directions': on the week at 15 minutes it takes 10-44 rounds, and where the polish ended
    // decided whether it settled; when it did not, the search began from the rules' plan, 30 %
    // dearer, and the 10-s plan cost 34,912 CNY at 8.2e-4 instead of 34,902-34,905.)
    let pairs = rounding_pairs(p);
    let mut rounding_rounds = 0;
    for round in 0.. {
        if (!min_power && round >= DIVE_DIRECTION_ROUNDS) || rounding_rounds > pairs + p.n {
            break;
        }
        let Ok((s, objective)) = lp.solve(p) else {
            break;
        };
        if round == 0 {
            dive.bound = objective;
            dive.first_lp_seconds = started.elapsed().as_secs_f64();
        }
        dive.rounds = round + 1;
        let mut changed = false;
        let mut burns = false;
        for t in 0..p.n {
            if milp::grid_binary(p, t) && s.imp[t] > 1e-7 && s.exp[t] > 1e-7 {
                // Keep the side worth more here.
                let export = s.exp[t] * p.exp_price[t] >= s.imp[t] * p.import_cost(t);
                lp.grid_mode(p, t, !export);
                changed = true;
            }
            // Simultaneous charge and discharge only pays at negative prices; leave those
            // intervals to the solver.
            burns |= p.import_cost(t) < 0.0
                && s.ch
                    .iter()
                    .zip(&s.dis)
                    .any(|(c, d)| c[t] > 1e-7 && d[t] > 1e-7);
        }
        if burns {
            break;
        }
        if !changed && !min_power {
            // The grid directions are settled on the relaxation of the minimum powers; now
            // (after trying better directions, when asked) round the minimum powers.
            min_power = true;
            if polish {
                // A quarter of the time limit at most, so the peak range and the search keep
                // the rest. (It was half: measured on the week at 15 minutes, the polish then
                // took all of it, the peak range was never narrowed and the gap was 4.3-7.7e-3;
                // with a quarter 1.9-2.6e-3, and the 200-charger case's proof 4.3 s, not 4.7-5.)
                let budget = std::time::Duration::from_secs_f64(opts.time_limit_s.max(0.0) / 4.0);
                polish_modes(p, &mut lp, &s, objective, started + budget);
                continue;
            }
        }
        if min_power {
            rounding_rounds += 1;
            changed |= hold_min_powers(p, &mut lp, &s, &mut ev_on, &mut defer_on);
        }
        if !changed {
            dive.schedule = Some(s);
            break;
        }
    }
    dive.solve_seconds = solve_start.elapsed().as_secs_f64();
    tracing::debug!(
        rounds = dive.rounds,
        settled = dive.schedule.is_some(),
        seconds = dive.solve_seconds,
        "LP dive ended"
    );
    dive.bound.is_finite().then_some(dive)
}

/// Tries better grid directions for a dive whose directions are settled (`s`, `objective`:
/// the last solve, on the relaxation of the minimum powers): flips one import/export-binary
/// interval at a time (importing to exporting or back), re-solves from the last basis and
/// keeps a flip that lowers the objective, pass after pass until a pass finds nothing (it was
/// three passes at most: the day at 5 minutes kept improving for seven, 2032.39 to 2019.83
/// CNY); none past `deadline`. Leaves every binary interval pinned to its best direction.
///
/// Tried and not kept: swaps of an importing and an exporting interval of the same price band
/// (an import moved without changing how many intervals import). They take the reference
/// day's dive to the optimum (2028.43 to 2015.18 CNY) and the day at 5 minutes to 2015.26, but
/// HiGHS then took longer to prove the reference day (2.05 s instead of 1.63 s a plan at 1e-6,
/// more nodes from the narrower start) and the backtest year, whose plans are the dive's,
/// cost 0.46 % more (2,099,952 against 2,090,360 CNY) and ran 57 s instead of 46.
fn polish_modes(
    p: &problem::Problem,
    lp: &mut milp::Relaxation,
    s: &schedule::Schedule,
    objective: f64,
    deadline: Instant,
) {
    let binary: Vec<usize> = (0..p.n).filter(|&t| milp::grid_binary(p, t)).collect();
    let mut best_obj = objective;
    // Pin every binary interval to the direction the plan uses (idle: import side).
    let mut import: Vec<bool> = vec![true; p.n];
    for &t in &binary {
        import[t] = s.exp[t] <= 1e-7;
        lp.grid_mode(p, t, import[t]);
    }
    loop {
        let mut improved = false;
        for &t in &binary {
            if Instant::now() > deadline {
                return;
            }
            lp.grid_mode(p, t, !import[t]);
            match lp.solve(p) {
                Ok((_, obj)) if obj < best_obj - 1e-9 * best_obj.abs().max(1.0) => {
                    import[t] = !import[t];
                    best_obj = obj;
                    improved = true;
                }
                _ => lp.grid_mode(p, t, import[t]),
            }
        }
        if !improved {
            return;
        }
    }
}

/// Holds the intervals that run below their minimum power on or off (`round_min_power` per
/// session and deferrable requirement); whether anything changed.
fn hold_min_powers(
    p: &problem::Problem,
    lp: &mut milp::Relaxation,
    s: &schedule::Schedule,
    ev_on: &mut [Vec<bool>],
    defer_on: &mut [Vec<bool>],
) -> bool {
    let mut changed = false;
    for (k, sess) in p.sessions.iter().enumerate() {
        let ivs: Vec<usize> = (sess.first..sess.end).collect();
        for (t, on) in round_min_power(&s.ev[k], &ivs, sess.min, sess.need, p.dt, &mut ev_on[k]) {
            lp.ev_hold(p, k, t, on);
            changed = true;
        }
    }
    for (f, d) in p.deferrable.iter().enumerate() {
        for req in &d.requirements {
            for (t, on) in round_min_power(
                &s.defer[f],
                &req.intervals,
                d.min,
                req.energy,
                p.dt,
                &mut defer_on[f],
            ) {
                lp.defer_hold(p, f, t, on);
                changed = true;
            }
        }
    }
    changed
}

/// The plan with `s`'s grid directions whose EV sessions and deferrable loads run off or at
/// least at their minimum power: the linear relaxation with those directions, rounded (as in
/// the dive) until nothing runs below its minimum, and its cost. With `pin`, every interval
/// that `pin` runs off or at least at its minimum is first held so (only `pin`'s sub-minimum
/// intervals are rounded). `None` when it does not settle.
fn settle_min_power(
    p: &problem::Problem,
    opts: &PlanOptions,
    s: &schedule::Schedule,
    pin: Option<&schedule::Schedule>,
) -> Option<(schedule::Schedule, f64)> {
    let mut lp = milp::Relaxation::new(p, opts).ok()?;
    for t in 0..p.n {
        if milp::grid_binary(p, t) {
            lp.grid_mode(p, t, s.exp[t] <= 1e-7);
        }
    }
    let mut ev_on: Vec<Vec<bool>> = p.sessions.iter().map(|_| vec![false; p.n]).collect();
    let mut defer_on: Vec<Vec<bool>> = p.deferrable.iter().map(|_| vec![false; p.n]).collect();
    if let Some(m) = pin {
        let hold = |v: f64, min: f64| {
            if v <= 1e-7 {
                Some(false)
            } else if v >= min - 1e-7 {
                Some(true)
            } else {
                None
            }
        };
        for (k, sess) in p.sessions.iter().enumerate() {
            if sess.min <= 0.0 {
                continue;
            }
            for (t, on_t) in ev_on[k]
                .iter_mut()
                .enumerate()
                .take(sess.end)
                .skip(sess.first)
            {
                if let Some(on) = hold(m.ev[k][t], sess.min) {
                    lp.ev_hold(p, k, t, on);
                    *on_t = on;
                }
            }
        }
        for (f, d) in p.deferrable.iter().enumerate() {
            if d.min <= 0.0 {
                continue;
            }
            for (t, on_t) in defer_on[f].iter_mut().enumerate() {
                if let (true, Some(on)) = (d.allowed[t], hold(m.defer[f][t], d.min)) {
                    lp.defer_hold(p, f, t, on);
                    *on_t = on;
                }
            }
        }
    }
    round_min_powers(p, &mut lp, &mut ev_on, &mut defer_on).map(|(x, objective, _)| (x, objective))
}

/// How many (requirement, interval) pairs `round_min_power` can hold: every round of a
/// rounding holds at least one more of them on or off for good, so a rounding ends within
/// this many rounds.
fn rounding_pairs(p: &problem::Problem) -> usize {
    let sessions: usize = p.sessions.iter().map(|s| s.end - s.first).sum();
    let loads: usize = p
        .deferrable
        .iter()
        .flat_map(|d| &d.requirements)
        .map(|r| r.intervals.len())
        .sum();
    sessions + loads
}

/// Solves `lp` and holds what runs below a minimum power (`hold_min_powers`), again and again,
/// until nothing does: the plan, its cost and the rounds it took. `None` when an LP fails.
/// No cap but `rounding_pairs`: it was 40 rounds, and on the week at 15 minutes some grid
/// directions take 44 (`tests::a_rounding_longer_than_forty_rounds_settles`).
fn round_min_powers(
    p: &problem::Problem,
    lp: &mut milp::Relaxation,
    ev_on: &mut [Vec<bool>],
    defer_on: &mut [Vec<bool>],
) -> Option<(schedule::Schedule, f64, usize)> {
    for round in 1..=rounding_pairs(p) + 1 {
        let (x, objective) = lp.solve(p).ok()?;
        if !hold_min_powers(p, lp, &x, ev_on, defer_on) {
            return Some((x, objective, round));
        }
    }
    None
}

/// A plan with `s`'s grid directions that respects every minimum power: one MILP with those
/// directions fixed and semi-continuous columns for the sessions and loads `s` runs below
/// their minimum (at most `seconds`), then `settle_min_power` pinned to its on/off pattern for
/// whatever else runs below a minimum. Leaves `p` as it found it.
fn settle_with_directions(
    p: &mut problem::Problem,
    opts: &PlanOptions,
    s: &schedule::Schedule,
    seconds: f64,
) -> Option<(schedule::Schedule, f64)> {
    let strict: (Vec<bool>, Vec<bool>) = (
        p.sessions.iter().map(|x| x.strict).collect(),
        p.deferrable.iter().map(|x| x.strict).collect(),
    );
    for t in 0..p.n {
        if milp::grid_binary(p, t) {
            p.directions[t] = Some(s.exp[t] <= 1e-7);
        }
    }
    let (sessions, loads) = below_min_power(p, s);
    for k in sessions {
        p.sessions[k].strict = true;
    }
    for f in loads {
        p.deferrable[f].strict = true;
    }
    let o = PlanOptions {
        time_limit_s: seconds,
        ..opts.clone()
    };
    let solved = milp::solve(p, &o, None);
    p.directions.iter_mut().for_each(|d| *d = None);
    for (x, v) in p.sessions.iter_mut().zip(strict.0) {
        x.strict = v;
    }
    for (x, v) in p.deferrable.iter_mut().zip(strict.1) {
        x.strict = v;
    }
    let m = solved.ok()?.schedule;
    settle_min_power(p, opts, s, Some(&m))
}

/// The sessions and deferrable loads that run somewhere between zero and their minimum power.
fn below_min_power(p: &problem::Problem, s: &schedule::Schedule) -> (Vec<usize>, Vec<usize>) {
    let low = |v: &[f64], min: f64| v.iter().any(|&x| x > 1e-7 && x < min - 1e-7);
    let sessions = (0..p.sessions.len())
        .filter(|&k| low(&s.ev[k], p.sessions[k].min))
        .collect();
    let loads = (0..p.deferrable.len())
        .filter(|&f| low(&s.defer[f], p.deferrable[f].min))
        .collect();
    (sessions, loads)
}

/// The MILP search with minimum powers enforced lazily: first with every "off or at least the
/// minimum" relaxed (its dual bound bounds the full problem too); a solution that runs below
/// some minimum is settled (`exchange::exchange_min_power` held by `settle_min_power`, and
/// `settle_min_power` alone; when both leave the gap above the target also
/// `settle_with_directions`; the cheapest kept) and, if that leaves a gap above the target
/// and time remains, the offending sessions and loads get their semi-continuous columns and
/// the search runs again from the settled plan. The answer always respects every minimum.
///
/// `bound` is a lower bound on the optimum known beforehand (`-inf` if none): the gap is
/// measured against the better of it and HiGHS's (HiGHS stopped before its root LP has a poor
/// one of its own). `settle_seconds` estimates one settling (the exchange's MILP and a few
/// LPs of the relaxation);
/// HiGHS stops that long before `deadline`, so the plan is settled in time, and another round
/// starts only while there is time for it.
fn search(
    p: &mut problem::Problem,
    opts: &PlanOptions,
    start: Option<&schedule::Schedule>,
    deadline: Instant,
    (bound, bound_from): (f64, &'static str),
    settle_seconds: f64,
) -> Result<milp::MilpResult, DispatchError> {
    if !opts.mip {
        return milp::solve(p, opts, start);
    }
    let mut found = Found {
        bound,
        from: bound_from,
        best: None,
    };
    for s in p.sessions.iter_mut() {
        s.strict = false;
    }
    for d in p.deferrable.iter_mut() {
        d.strict = false;
    }
    let mut warm = start.cloned();
    let began = Instant::now();
    let mut built = 0.0;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        // Half the gap for the search with minimum powers relaxed: settling them costs a
        // little, and the settled plan must still be within the gap asked.
        let relaxed = p.sessions.iter().any(|s| !s.strict && s.min > 0.0)
            || p.deferrable.iter().any(|d| !d.strict && d.min > 0.0);
        let o = PlanOptions {
            time_limit_s: (left - settle_seconds).max(opts.time_limit_s / 10.0),
            mip_gap: if relaxed {
                opts.mip_gap / 2.0
            } else {
                opts.mip_gap
            },
            ..opts.clone()
        };
        let mut r = milp::solve(p, &o, warm.as_ref())?;
        built += r.build_seconds;
        r.build_seconds = built;
        let round_bound = r.dual_bound;
        (r.dual_bound, r.bound_from) = found.bound(r.dual_bound, r.bound_from);
        let gap_of = |objective: f64| relative_gap(objective, r.dual_bound);
        let (sessions, loads) = below_min_power(p, &r.schedule);
        if sessions.is_empty() && loads.is_empty() {
            r.solve_seconds = began.elapsed().as_secs_f64() - built;
            if let Some((x, objective)) = found.best.take().filter(|b| b.1 < r.objective) {
                r.schedule = x;
                r.objective = objective;
            }
            if r.binaries > 0 && r.dual_bound.is_finite() {
                r.mip_gap = gap_of(r.objective);
                if r.status == "time_limit" && r.mip_gap <= opts.mip_gap {
                    r.status = "gap_limit".into();
                }
            }
            return Ok(r);
        }
        // First the minimum powers exchanged between sessions and loads inside each interval
        // (`exchange`), then rounded one requirement at a time as the dive does; the cheaper
        // kept. Not under a node limit: the exchange's MILP stops on time, and a backtest's
        // plans must repeat. The small MILP with the directions fixed comes only when both
        // leave the gap above the target (measured on the reference day at 1e-6: the rounding
        // is within it, and the MILP would have cost 0.6 s for a worse plan) and there is time
        // for it and its own settling.
        let settling = Instant::now();
        let exchanged = if opts.max_nodes.is_none() {
            exchange::exchange_min_power(p, &r.schedule, settle_seconds / 2.0, opts.threads)
                .and_then(|m| settle_min_power(p, opts, &r.schedule, Some(&m)))
        } else {
            None
        };
        // The rounding only where the exchange left the gap above the target (it costs
        // 0.1-0.2 s on the week at 15 minutes; the day at 5 minutes goes without it).
        let rounded = if exchanged
            .as_ref()
            .is_some_and(|(_, objective)| gap_of(*objective) <= opts.mip_gap)
        {
            None
        } else {
            settle_min_power(p, opts, &r.schedule, None)
        };
        tracing::debug!(
            exchanged = exchanged.as_ref().map(|x| x.1),
            rounded = rounded.as_ref().map(|x| x.1),
            "minimum powers settled"
        );
        let rounded = exchanged
            .into_iter()
            .chain(rounded)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let settled = if rounded
            .as_ref()
            .is_some_and(|(_, objective)| gap_of(*objective) <= opts.mip_gap)
            || left < 2.0 * settle_seconds
        {
            rounded
        } else {
            rounded
                .into_iter()
                .chain(settle_with_directions(p, opts, &r.schedule, left / 4.0))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        // Another round needs a tenth of the limit for HiGHS and time to settle again.
        let out_of_time = Instant::now()
            + std::time::Duration::from_secs_f64(settle_seconds + opts.time_limit_s / 10.0)
            >= deadline;
        tracing::debug!(
            status = %r.status,
            objective = r.objective,
            dual_bound = r.dual_bound,
            round_bound,
            below_min_sessions = sessions.len(),
            below_min_loads = loads.len(),
            settled = settled.as_ref().map(|s| s.1),
            settle_s = settling.elapsed().as_secs_f64(),
            settle_reserved_s = settle_seconds,
            "search round ended below some minimum power"
        );
        // The best plan settled so far, this round's or an earlier one's.
        let settled = found.settled(settled);
        if let Some((x, objective)) = &settled {
            let gap = gap_of(*objective);
            if gap <= opts.mip_gap || out_of_time {
                r.status = if gap > opts.mip_gap {
                    "time_limit"
                } else if gap > 0.0 {
                    "gap_limit"
                } else {
                    "optimal"
                }
                .into();
                r.solve_seconds = began.elapsed().as_secs_f64() - built;
                r.schedule = x.clone();
                r.objective = *objective;
                r.mip_gap = if r.dual_bound.is_finite() {
                    gap
                } else {
                    f64::INFINITY
                };
                return Ok(r);
            }
        } else if out_of_time {
            // Out of time with nothing settled: the start the search was given, if any.
            let Some(w) = warm else {
                return Err(DispatchError::Solver(
                    "the search ended with minimum powers it could not settle".into(),
                ));
            };
            r.status = "time_limit".into();
            r.solve_seconds = began.elapsed().as_secs_f64() - built;
            r.schedule = w;
            r.mip_gap = f64::INFINITY;
            return Ok(r);
        }
        for k in sessions {
            p.sessions[k].strict = true;
        }
        for f in loads {
            p.deferrable[f].strict = true;
        }
        if let Some((x, _)) = settled {
            warm = Some(x);
        }
    }
}

/// Rounds the intervals of one requirement (an EV session or a deferrable load's window)
/// that run between zero and the minimum power: the largest of them are held on (at least
/// at the minimum) until they carry the energy the sub-minimum intervals carried, the rest
/// are held off. A hold on is skipped (held off instead) when the requirement's upper limit,
/// the energy asked plus one interval at minimum power, could no longer be met, so the next
/// relaxation stays feasible. Returns the holds to apply; `on` records the holds on so far.
fn round_min_power(
    values: &[f64],
    intervals: &[usize],
    min: f64,
    energy: f64,
    dt: f64,
    on: &mut [bool],
) -> Vec<(usize, bool)> {
    if min <= 0.0 {
        return Vec::new();
    }
    let mut low: Vec<usize> = intervals
        .iter()
        .copied()
        .filter(|&t| values[t] > 1e-7 && values[t] < min - 1e-7)
        .collect();
    if low.is_empty() {
        return Vec::new();
    }
    let low_energy: f64 = low.iter().map(|&t| values[t] * dt).sum();
    let wanted = (low_energy / (min * dt) - 1e-9).ceil() as usize;
    low.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut held = intervals.iter().filter(|&&t| on[t]).count();
    let mut holds = Vec::with_capacity(low.len());
    for (j, t) in low.into_iter().enumerate() {
        let fits = (held + 1) as f64 * min * dt <= energy + min * dt + 1e-9;
        if j < wanted && fits {
            on[t] = true;
            held += 1;
            holds.push((t, true));
        } else {
            holds.push((t, false));
        }
    }
    holds
}

/// Re-plans the rest of a horizon from the current state (rolling optimisation): `inputs`
/// covers the remaining intervals, `state` what is measured now.
pub fn replan(
    park: &Park,
    inputs: &DayInputs,
    opts: &PlanOptions,
    state: &CurrentState,
) -> Result<Plan, DispatchError> {
    plan_optimized(park, inputs, opts, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long search shares its time over the count split's parts (the week at 60 s, when its
    /// split stopped at 16 LPs, searched nine of fourteen, and found a plan 11-12 CNY cheaper
    /// than when the first part kept all 50 s); the first part, the least bound's, gets twice
    /// its share.
    #[test]
    fn a_long_search_shares_its_time_over_the_parts() {
        // The week at 60 s (about 50 s for fourteen parts, floor 5.4 s): the first part
        // twice the floor, the later ones the floor.
        assert!((part_share(50.0, 14, 5.4, true) - 10.8).abs() < 1e-9);
        assert!((part_share(39.2, 13, 5.4, false) - 5.4).abs() < 1e-9);
        // At 300 s: every part searched, the first with twice its share.
        assert!((part_share(290.0, 14, 5.4, true) - 290.0 / 7.0).abs() < 1e-9);
        assert!((part_share(260.0, 13, 5.4, false) - 20.0).abs() < 1e-9);
        // Two quick parts (200 chargers at 5 s): the first gets all the time there is.
        assert!((part_share(4.4, 2, 0.6, true) - 4.4).abs() < 1e-9);
        // The week at 10 s: the floor is all the time there is.
        assert!(part_share(5.4, 15, 5.4, true) >= 5.4);
        assert_eq!(part_share(2.0, 15, 5.4, false), 5.4);
        // The last part: all that is left.
        assert_eq!(part_share(7.0, 1, 1.0, false), 7.0);
        // Never less than the equal share or the floor.
        for left in [1.0, 5.0, 50.0, 300.0] {
            for n in 1..20 {
                for first in [true, false] {
                    let s = part_share(left, n, 2.0, first);
                    assert!(s >= left / n as f64 && s >= 2.0, "{left} {n} {s}");
                }
            }
        }
    }

    /// The week at 15 minutes (fourteen runs of binary intervals) ends its count split with
    /// every count whole within `COUNT_SPLIT_LPS`: the same parts as with no cap. Cut at 16
    /// LPs it kept a part with a fractional count, whose bound was the plan's, and its 10-s
    /// plans cost about 9 CNY more (median of eleven runs against nineteen).
    #[test]
    fn the_weeks_count_split_ends_before_its_cap() {
        let (park, inputs) = milp::tests::reference_week();
        let opts = PlanOptions::default();
        let mut p = problem::Problem::build(&park, &inputs, &opts, &CurrentState::default());
        // As the planner has it: the peak range narrowed to plans no dearer than the rules'.
        let rules = rule::schedule(&p);
        let blank = pedf_core::plan::SolverInfo::rule_based("rule", 0.0);
        let ub =
            schedule::evaluate(&park, &inputs, &p, &rules, Strategy::Rule, blank).objective_cny;
        let far = Instant::now() + std::time::Duration::from_secs(600);
        tighten_peak(&mut p, &opts, ub, far);
        let split = |lps| milp::count_split(&p, &opts, ub, far, lps).unwrap();
        let (capped, free) = (split(COUNT_SPLIT_LPS), split(100 * COUNT_SPLIT_LPS));
        let key = |parts: &[milp::CountPart]| {
            let mut k: Vec<String> = parts.iter().map(|x| format!("{:?}", x.counts)).collect();
            k.sort();
            k
        };
        assert_eq!(capped.len(), free.len(), "parts with and without the cap");
        assert_eq!(key(&capped), key(&free));
        let least =
            |parts: &[milp::CountPart]| parts.iter().map(|x| x.bound).fold(f64::INFINITY, f64::min);
        assert!((least(&capped) - least(&free)).abs() < 1e-6);
    }

    /// The minimum powers' rounding ends when nothing runs below a minimum, however many
    /// rounds that takes. With the week's grid directions drawn from a fixed seed it takes 44
    /// (within the old cap of 40 it found no plan; where the dive's polish stopped decided
    /// that, and a dive without a plan started the search from the rules' plan).
    #[test]
    fn a_rounding_longer_than_forty_rounds_settles() {
        let (park, inputs) = milp::tests::reference_week();
        let opts = PlanOptions::default();
        let p = problem::Problem::build(&park, &inputs, &opts, &CurrentState::default());
        let mut lp = milp::Relaxation::new(&p, &opts).unwrap();
        let mut directions = schedule::Schedule::zeros(&p);
        let mut x: u64 = 3u64.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for t in (0..p.n).filter(|&t| milp::grid_binary(&p, t)) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let import = x.is_multiple_of(2);
            lp.grid_mode(&p, t, import);
            directions.exp[t] = if import { 0.0 } else { 1.0 };
        }
        let mut ev_on: Vec<Vec<bool>> = p.sessions.iter().map(|_| vec![false; p.n]).collect();
        let mut defer_on: Vec<Vec<bool>> = p.deferrable.iter().map(|_| vec![false; p.n]).collect();
        let (s, _, rounds) = round_min_powers(&p, &mut lp, &mut ev_on, &mut defer_on).unwrap();
        assert!(rounds > 40, "{rounds} rounds");
        assert_eq!(below_min_power(&p, &s), (vec![], vec![]));
        // The same directions settled as the search settles a plan.
        let (settled, _) = settle_min_power(&p, &opts, &directions, None).unwrap();
        assert_eq!(below_min_power(&p, &settled), (vec![], vec![]));
    }

    /// The defect of issue 26: a later round cut short proved less than an earlier one, and
    /// its bound replaced the earlier's, so a longer run reported a larger gap.
    #[test]
    fn the_search_keeps_the_best_bound_and_plan_of_all_its_rounds() {
        let mut found = Found {
            bound: 100.0,
            from: milp::BOUND_RELAXATION,
            best: None,
        };
        assert_eq!(
            found.bound(110.0, milp::BOUND_HIGHS),
            (110.0, milp::BOUND_HIGHS)
        );
        // A second round stopped early with a weaker bound: the first round's stands.
        assert_eq!(
            found.bound(104.0, milp::BOUND_HIGHS),
            (110.0, milp::BOUND_HIGHS)
        );
        assert_eq!(
            found.bound(f64::NAN, milp::BOUND_HIGHS),
            (110.0, milp::BOUND_HIGHS)
        );
        assert_eq!(found.bound(f64::NEG_INFINITY, milp::BOUND_HIGHS).0, 110.0);
        // The plans settled: the cheapest stays, whichever round found it.
        assert_eq!(
            found.settled(Some(("first", 120.0))),
            Some(("first", 120.0))
        );
        assert_eq!(
            found.settled(Some(("second", 121.0))),
            Some(("first", 120.0))
        );
        assert_eq!(found.settled(None), Some(("first", 120.0)));
        assert_eq!(
            found.settled(Some(("third", 119.0))),
            Some(("third", 119.0))
        );
        // Nothing known before: a round's bound is taken.
        let mut none: Found<()> = Found {
            bound: f64::NEG_INFINITY,
            from: milp::BOUND_RELAXATION,
            best: None,
        };
        assert_eq!(none.bound(5.0, milp::BOUND_HIGHS), (5.0, milp::BOUND_HIGHS));
    }
}
