//! The mixed-integer model, built straight on HiGHS.
//!
//! Formulation choices that keep it fast without loosening the answer:
//! * Import/export exclusivity gets a binary only in intervals where importing costs less than
//!   exporting pays after both converter losses (`p_imp < p_exp * eta_in * eta_out`): anywhere
//!   else a solution with both can be netted to a cheaper one, so the LP never wants it.
//! * Battery charge/discharge exclusivity gets a binary only where the effective import price is
//!   negative (the only case burning energy in the battery pays); elsewhere the wear cost makes
//!   simultaneous use strictly worse.
//! * Each import/export binary interval is written as the convex hull of its two directions
//!   (Balas disaggregation): every bus column splits into an importing and an exporting share,
//!   the exporting share balances on its own against the demand scaled by `1 - y`, and exports
//!   come from that share's PV. The relaxation can still time-share an interval, but no longer
//!   sells all the PV while importing for the loads. Only the MILP uses it; the LP dive keeps
//!   the smaller big-M model (its LPs are three times faster and it runs 8760 times a year).
//!   The EV sessions' columns split as one sum (their summed charging and its exporting
//!   share, within the sum of their maximum powers): still exact at whole directions (an
//!   importing interval's share is zero, an exporting one's the whole sum), a little looser
//!   in between than a share per session, and two rows per interval instead of three rows
//!   and a column per session. Measured on the generated hub of 1000 chargers (issue 26,
//!   `examples/hub_plan.rs`): 4017 rows instead of 26925; the hull LP's bound over the
//!   narrowed peak range comes within the 5-s limit (594,806.8 CNY, 2.9e-4 below the best
//!   plan known), where before it never did and the plan's gap was 3.6-3.7e-3 against the
//!   big-M relaxation; now 2.9-3.4e-4 on seeds 0-3. The reference day proves 1e-6 in 1.35 s
//!   instead of 1.61 s.
//! * The peak-import column is bounded by `Problem::peak_lo`/`peak_hi`, which the planner
//!   narrows before the search (`peak_range`: the lowest and highest peak of relaxation plans
//!   no dearer than the starting plan, by Newton steps on the relaxation's cost as a function
//!   of the peak). The upper end caps every interval's import; the lower end gives
//!   `imp <= peak - peak_lo * (1 - y)`.
//! * "Off or at least min power" (EV sessions, deferrable loads) are semi-continuous columns,
//!   which HiGHS branches on directly, with their own bounds as the tightest big-M, but only for
//!   the sessions and loads marked `strict`: the planner's search relaxes them all first and
//!   makes strict only those a solution runs below their minimum (see `search` in lib.rs).
//! * Bounds carry the limits (export capped by the interval's PV when export is PV-only), and
//!   the converter's one-direction nature is the valid inequality `imp + exp <= rating`.
//! * Every requirement is soft with a penalty, so the model is never infeasible; the plan lists
//!   each shortfall instead. A grid request's import cap too (`CurrentState::grid_caps`): one
//!   column and one row for each interval it covers, import above the cap at twice the unmet
//!   penalty (before a car's or a deferrable load's requirement, after the fixed load); an
//!   export floor likewise (`export - import + short >= floor`, the short at the same price).
//!
//! Measured on the reference day (2026-06-21): the plain relaxation with the binaries as
//! continuous columns bounds the optimum (2015.18 CNY) at 1902; with the hull 1987; with the
//! narrowed peak range 2011 (2013.3 had the range been narrowed with the optimum's cost).
//! HiGHS then proves the optimum to 1e-6 in about 1.3 s of a 1.6-1.9-s plan (RINS and RENS
//! off), where before it ended 60 s at a 1.6e-3 gap. What is left is near-symmetry: in the
//! midday deep valley an importing interval imports at the peak, so the relaxation wants a
//! fractional number of importing intervals (5.13 on this day) and the intervals that could
//! take the whole ones differ only by cents: with every other direction as in the optimum,
//! 203 of the 4096 patterns of the twelve deep-valley intervals cost within 0.1 CNY (5e-5) of
//! it, 9 within 0.01, against a root relaxation 1.9 CNY below, so any search on LP bounds has
//! to tell those patterns apart nearly one by one. Measured alternatives: our own depth-first
//! branch and bound on the hull LP (warm re-solves, 1.5 ms a node, of which 0.45 ms is
//! HiGHS's fixed cost of a run) proved it in 2099 nodes and 3.3 s, best-first 2039 nodes and
//! 4.4 s; splitting the search in two at the root on one binary left each half 1.2-1.8 s; whole
//! plans with HiGHS's random seeds 0-9 took 1.9-4.1 s (the default, 0: 2.2 s in that series).
//! (An earlier hull attempt, before the tighter import bounds and the lazy minimum powers,
//! slowed the branch and bound; with the semi-continuous columns of 25 sessions in the model
//! HiGHS spends most of its time in sub-MIP heuristics.)
//!
//! That near-symmetry is settled by counting (issue 26): each run of consecutive binary
//! intervals has a column equal to how many of them import (`Var::ImportCount`), and
//! `count_split` branches on it before the search. The relaxation's optimum typically has one
//! fractional binary whose run counts, say, 8.45 importing intervals; "at most 8" and "at
//! least 9" each cost the relaxation about what rounding costs the plans, wherever the
//! fraction sits, so two LPs do what HiGHS needed thousands of nodes for (it does not branch
//! on the count itself: its presolve substitutes the column out). Measured (release, this
//! machine): the reference day proves 1e-6 in 0.29 s instead of 1.35 s; the day at 5 minutes
//! 7.6e-8 in 1.9 s instead of 1.2e-4 at the 5-s limit; the 1000-charger hub 8.9e-5 within
//! the 5-s limit, where HiGHS alone took 145 s to prove 1e-4.

use std::collections::BTreeMap;
use std::time::Instant;

use highs::{Col, HighsModelStatus, Integrality, RowProblem, Sense};

use crate::problem::Problem;
use crate::schedule::Schedule;
use crate::{DispatchError, PlanOptions};

#[derive(Clone, Copy)]
enum Var {
    Imp(usize),
    Exp(usize),
    Pv(usize),
    Ch(usize, usize),
    Dis(usize, usize),
    Soc(usize, usize),
    Defer(usize, usize),
    Shed(usize, usize),
    Ev(usize, usize),
    Unserved(usize),
    DeferShort(usize, usize),
    EvShort(usize),
    TermShort(usize),
    Peak,
    /// Location-based Scope 2 above the horizon's allowance (carbon dual control), kg.
    CarbonOver,
    /// Import above the grid's cap in interval `t` (a grid request), kW.
    GridOver(usize),
    /// Net export short of the grid's floor in interval `t` (a grid request), kW.
    GridUnder(usize),
    /// A column fixed at 1 whose cost is the objective's constant: the demand charge is paid
    /// on the peak above `Problem::existing_peak` only, so the model's objective equals the
    /// plan's (`schedule::evaluate`) and bounds compare with it directly.
    One,
    GridDir(usize),
    BatDir(usize, usize),
    /// The exporting share of the column at index `total` in interval `t` (convex-hull
    /// disaggregation of an import/export binary).
    Part {
        total: usize,
        t: usize,
    },
    /// The exporting share of the EV sessions' summed charging in interval `t`.
    EvPart(usize),
    /// How many of the binary intervals `from..to` import.
    ImportCount(usize, usize),
}

struct Builder {
    pb: RowProblem,
    vars: Vec<Var>,
    binaries: usize,
    rows: usize,
}

impl Builder {
    fn col(&mut self, v: Var, cost: f64, lo: f64, hi: f64) -> Col {
        self.vars.push(v);
        self.pb.add_column(cost, lo..=hi)
    }
    fn col_kind(&mut self, v: Var, cost: f64, lo: f64, hi: f64, kind: Integrality) -> Col {
        self.vars.push(v);
        if kind != Integrality::Continuous {
            self.binaries += 1;
        }
        self.pb
            .add_column_with_integrality_kind(cost, lo..=hi, kind)
    }
    fn row_eq(&mut self, rhs: f64, terms: &[(Col, f64)]) {
        self.rows += 1;
        self.pb.add_row(rhs..=rhs, terms);
    }
    fn row_le(&mut self, rhs: f64, terms: &[(Col, f64)]) {
        self.rows += 1;
        self.pb.add_row(..=rhs, terms);
    }
    fn row_ge(&mut self, rhs: f64, terms: &[(Col, f64)]) {
        self.rows += 1;
        self.pb.add_row(rhs.., terms);
    }
}

/// A bound from HiGHS's branch and bound (its `mip_dual_bound`; an LP's optimum).
pub(crate) const BOUND_HIGHS: &str = "HiGHS branch and bound";
/// A bound from the linear relaxation (the LP dive's first LP).
pub(crate) const BOUND_RELAXATION: &str = "linear relaxation";
/// A bound from the linear relaxation over the peak range of the plans no dearer than a plan
/// found.
pub(crate) const BOUND_PEAK_RANGE: &str = "linear relaxation over the narrowed peak range";

/// A bound that is the least of the bounds of the parts of a split on how many intervals of
/// each run import (`count_split`): each part's relaxation, or HiGHS's within the part.
pub(crate) const BOUND_COUNT_SPLIT: &str = "the least over a split on how many intervals import";

/// The size of the search's first model (every minimum power relaxed): columns, rows and
/// integer or semi-continuous columns.
pub(crate) fn size(
    p: &mut Problem,
    opts: &PlanOptions,
) -> Result<(usize, usize, usize), DispatchError> {
    let strict: (Vec<bool>, Vec<bool>) = (
        p.sessions.iter().map(|x| x.strict).collect(),
        p.deferrable.iter().map(|x| x.strict).collect(),
    );
    p.sessions.iter_mut().for_each(|x| x.strict = false);
    p.deferrable.iter_mut().for_each(|x| x.strict = false);
    let built = build(p, opts, false, true);
    for (x, v) in p.sessions.iter_mut().zip(strict.0) {
        x.strict = v;
    }
    for (x, v) in p.deferrable.iter_mut().zip(strict.1) {
        x.strict = v;
    }
    let b = built?;
    Ok((b.columns, b.rows, b.binaries))
}

/// Result of a MILP solve.
pub(crate) struct MilpResult {
    pub schedule: Schedule,
    pub status: String,
    pub mip_gap: f64,
    pub objective: f64,
    /// The best lower bound on the optimum known (HiGHS's, or one known before it that is
    /// higher; -inf when there is none).
    pub dual_bound: f64,
    /// Where `dual_bound` comes from (`BOUND_*`).
    pub bound_from: &'static str,
    pub build_seconds: f64,
    pub solve_seconds: f64,
    pub columns: usize,
    pub rows: usize,
    pub binaries: usize,
}

/// Whether interval `t` gets an import/export binary: only where importing costs less than
/// exporting pays after both conversions (elsewhere netting both flows is always cheaper).
pub(crate) fn grid_binary(p: &Problem, t: usize) -> bool {
    p.no_simultaneous
        && p.exp_cap[t] > 0.0
        && p.imp_cap > 0.0
        && p.import_cost(t) < p.exp_price[t] * p.eta_in * p.eta_out + 1e-9
}

/// The model handed to HiGHS, with the columns the LP dive changes.
struct Built {
    model: highs::Model,
    vars: Vec<Var>,
    peak: Col,
    imp: Vec<Col>,
    exp: Vec<Col>,
    ev: Vec<Vec<Option<Col>>>,
    defer: Vec<Vec<Option<Col>>>,
    /// Per run of consecutive binary intervals: its first interval, the column counting its
    /// importing intervals and the run's length.
    counts: Vec<(usize, Col, f64)>,
    columns: usize,
    rows: usize,
    binaries: usize,
}

/// The model; with `relaxed`, the exclusivity binaries stay as continuous columns in [0, 1]
/// (the linear relaxation of the MILP, tighter than the plain LP without them); with `hull`,
/// each import/export binary interval is disaggregated into its convex hull (about three
/// times the columns: a much tighter relaxation, slower LPs).
fn build(
    p: &Problem,
    opts: &PlanOptions,
    relaxed: bool,
    hull: bool,
) -> Result<Built, DispatchError> {
    let dt = p.dt;
    let mip = opts.mip;
    let directions = mip || relaxed;
    let kind = if relaxed {
        Integrality::Continuous
    } else {
        Integrality::Integer
    };
    let mut b = Builder {
        pb: RowProblem::default(),
        vars: Vec::new(),
        binaries: 0,
        rows: 0,
    };
    let n = p.n;
    let peak = b.col(Var::Peak, p.demand_rate, p.peak_lo, p.peak_hi);
    if p.demand_rate > 0.0 && p.existing_peak > 0.0 {
        b.col(Var::One, -p.demand_rate * p.existing_peak, 1.0, 1.0);
    }
    let mut imp = Vec::with_capacity(n);
    let mut exp = Vec::with_capacity(n);
    let mut pv = Vec::with_capacity(n);
    let mut unserved = Vec::with_capacity(n);
    for t in 0..n {
        imp.push(b.col(Var::Imp(t), dt * p.import_cost(t), 0.0, p.import_bound(t)));
        exp.push(b.col(Var::Exp(t), -dt * p.exp_price[t], 0.0, p.exp_cap[t]));
        pv.push(b.col(Var::Pv(t), 0.0, 0.0, p.pv[t]));
        let demand = p.fixed[t] + p.curtailable_demand(t);
        unserved.push(b.col(Var::Unserved(t), dt * p.unserved_penalty, 0.0, demand));
    }
    // The grid's import caps (grid requests): import above one is a shortfall at its penalty.
    for (t, imp_t) in imp.iter().enumerate() {
        if let Some(cap) = p.imp_req[t] {
            let over = b.col(Var::GridOver(t), dt * p.grid_penalty, 0.0, f64::INFINITY);
            b.row_le(cap, &[(*imp_t, 1.0), (over, -1.0)]);
        }
        // An export floor: export - import + short >= floor.
        if let Some(floor) = p.exp_req[t] {
            let under = b.col(Var::GridUnder(t), dt * p.grid_penalty, 0.0, f64::INFINITY);
            b.row_le(-floor, &[(*imp_t, 1.0), (exp[t], -1.0), (under, -1.0)]);
        }
    }
    // Carbon dual control: the horizon's Scope 2 (import x the annual factor) within its
    // allowance, each kg above it at the penalty.
    if let Some(allowance) = p.scope2_allowance {
        let over = b.col(Var::CarbonOver, p.penalty, 0.0, f64::INFINITY);
        let mut terms: Vec<(Col, f64)> = imp.iter().map(|c| (*c, p.scope2_factor * dt)).collect();
        terms.push((over, -1.0));
        b.row_le(allowance, &terms);
    }
    // Battery columns.
    let mut ch = vec![Vec::with_capacity(n); p.batteries.len()];
    let mut dis = vec![Vec::with_capacity(n); p.batteries.len()];
    let mut soc = vec![Vec::with_capacity(n); p.batteries.len()];
    for (bi, bat) in p.batteries.iter().enumerate() {
        for t in 0..n {
            ch[bi].push(b.col(Var::Ch(bi, t), 0.0, 0.0, bat.ch_max));
            dis[bi].push(b.col(Var::Dis(bi, t), dt * bat.deg, 0.0, bat.dis_max));
            soc[bi].push(b.col(Var::Soc(bi, t), 0.0, bat.lo, bat.hi));
        }
    }
    // Flexible loads.
    let mut defer: Vec<Vec<Option<Col>>> = Vec::new();
    for (f, d) in p.deferrable.iter().enumerate() {
        let mut cols = Vec::with_capacity(n);
        for t in 0..n {
            if d.allowed[t] && d.max > 0.0 {
                let col = if mip && d.min > 0.0 && d.strict {
                    b.col_kind(
                        Var::Defer(f, t),
                        0.0,
                        d.min,
                        d.max,
                        Integrality::SemiContinuous,
                    )
                } else {
                    b.col(Var::Defer(f, t), 0.0, 0.0, d.max)
                };
                cols.push(Some(col));
            } else {
                cols.push(None);
            }
        }
        defer.push(cols);
    }
    let mut shed = Vec::new();
    for (c, cur) in p.curtailable.iter().enumerate() {
        let cols: Vec<Col> = (0..n)
            .map(|t| {
                b.col(
                    Var::Shed(c, t),
                    dt * cur.voll,
                    0.0,
                    cur.share * cur.demand[t],
                )
            })
            .collect();
        shed.push(cols);
    }
    // EV sessions.
    let mut ev: Vec<Vec<Option<Col>>> = Vec::new();
    for (k, s) in p.sessions.iter().enumerate() {
        let mut cols = vec![None; n];
        for (t, slot) in cols.iter_mut().enumerate().take(s.end).skip(s.first) {
            *slot = Some(if mip && s.min > 0.0 && s.strict {
                b.col_kind(
                    Var::Ev(k, t),
                    0.0,
                    s.min,
                    s.max,
                    Integrality::SemiContinuous,
                )
            } else {
                b.col(Var::Ev(k, t), 0.0, 0.0, s.max)
            });
        }
        ev.push(cols);
    }

    let mut dirs: Vec<(usize, Col)> = Vec::new();
    for t in 0..n {
        // DC bus balance: sources - sinks = fixed + curtailable demand. `local` lists the
        // bus's columns other than the grid's with their coefficient and upper bound.
        let demand = p.fixed[t] + p.curtailable_demand(t);
        let mut local: Vec<(Col, f64, f64)> =
            vec![(pv[t], 1.0, p.pv[t]), (unserved[t], 1.0, demand)];
        for (bi, bat) in p.batteries.iter().enumerate() {
            local.push((dis[bi][t], 1.0, bat.dis_max));
            local.push((ch[bi][t], -1.0, bat.ch_max));
        }
        for (cols, d) in defer.iter().zip(&p.deferrable) {
            if let Some(c) = cols[t] {
                local.push((c, -1.0, d.max));
            }
        }
        for (cols, cur) in shed.iter().zip(&p.curtailable) {
            local.push((cols[t], 1.0, cur.share * cur.demand[t]));
        }
        // The EV sessions' columns, kept apart: the hull below splits their sum, not each.
        let ev_t: Vec<(Col, f64)> = ev
            .iter()
            .zip(&p.sessions)
            .filter_map(|(cols, s)| cols[t].map(|c| (c, s.max)))
            .collect();
        let mut terms: Vec<(Col, f64)> = local.iter().map(|(c, k, _)| (*c, *k)).collect();
        terms.extend(ev_t.iter().map(|(c, _)| (*c, -1.0)));
        terms.push((imp[t], p.eta_in));
        terms.push((exp[t], -1.0 / p.eta_out));
        b.row_eq(demand, &terms);
        // Peak import for the demand charge.
        b.row_le(0.0, &[(imp[t], 1.0), (peak, -1.0)]);
        // The converter carries one direction at a time.
        if p.exp_cap[t] > 0.0 && p.imp_cap > 0.0 {
            b.row_le(p.rating, &[(imp[t], 1.0), (exp[t], 1.0)]);
            if p.pv_only {
                // Export only from this interval's PV (DC side).
                b.row_le(0.0, &[(exp[t], 1.0 / p.eta_out), (pv[t], -1.0)]);
            }
            if directions && grid_binary(p, t) {
                let (lo, hi) = match p.directions[t] {
                    Some(true) => (1.0, 1.0),
                    Some(false) => (0.0, 0.0),
                    None => (0.0, 1.0),
                };
                let y = b.col_kind(Var::GridDir(t), 0.0, lo, hi, kind);
                dirs.push((t, y));
                b.row_le(0.0, &[(imp[t], 1.0), (y, -p.import_bound(t))]);
                b.row_le(p.exp_cap[t], &[(exp[t], 1.0), (y, p.exp_cap[t])]);
                // Exporting, the interval imports nothing while the peak stays at least
                // `peak_lo`: import <= peak - peak_lo * (1 - y). (Not in the dive's model:
                // measured, the optimised year took 61 s instead of 47 s with it, and cost
                // 0.07 % more.)
                if p.peak_lo > 0.0 && hull {
                    b.row_le(-p.peak_lo, &[(imp[t], 1.0), (peak, -1.0), (y, -p.peak_lo)]);
                }
                if hull {
                    // Convex hull of the two directions (Balas): every bus column splits into
                    // an importing and an exporting share, each within its bound scaled by
                    // its direction, and the exporting share balances on its own with the
                    // demand scaled the same way; export comes from the exporting share's PV.
                    let mut part_terms = vec![(exp[t], -1.0 / p.eta_out), (y, demand)];
                    let mut pv_part = None;
                    for (j, &(c, k, ub)) in local.iter().enumerate() {
                        let e = b.col(
                            Var::Part {
                                total: c.index(),
                                t,
                            },
                            0.0,
                            0.0,
                            ub,
                        );
                        if j == 0 {
                            pv_part = Some(e);
                        }
                        part_terms.push((e, k));
                        // Exporting share within ub * (1 - y); importing share within ub * y.
                        b.row_le(ub, &[(e, 1.0), (y, ub)]);
                        b.row_le(0.0, &[(c, 1.0), (e, -1.0), (y, -ub)]);
                        b.row_ge(0.0, &[(c, 1.0), (e, -1.0)]);
                    }
                    // The sessions' charging as one sum, split the same way: two rows over
                    // the sessions instead of three rows and a column for each (see the
                    // module's header).
                    if !ev_t.is_empty() {
                        let ub: f64 = ev_t.iter().map(|x| x.1).sum();
                        let e = b.col(Var::EvPart(t), 0.0, 0.0, ub);
                        part_terms.push((e, -1.0));
                        b.row_le(ub, &[(e, 1.0), (y, ub)]);
                        let mut sum: Vec<(Col, f64)> =
                            ev_t.iter().map(|(c, _)| (*c, 1.0)).collect();
                        sum.push((e, -1.0));
                        b.row_ge(0.0, &sum);
                        sum.push((y, -ub));
                        b.row_le(0.0, &sum);
                    }
                    b.row_eq(demand, &part_terms);
                    if let (true, Some(e)) = (p.pv_only, pv_part) {
                        b.row_le(0.0, &[(exp[t], 1.0 / p.eta_out), (e, -1.0)]);
                    }
                }
            }
        }
        // Battery dynamics and, where it could pay to burn energy, exclusivity.
        for (bi, bat) in p.batteries.iter().enumerate() {
            let mut terms = vec![
                (soc[bi][t], 1.0),
                (ch[bi][t], -bat.ec * dt),
                (dis[bi][t], dt / bat.ed),
            ];
            let rhs = if t == 0 {
                bat.soc0
            } else {
                terms.push((soc[bi][t - 1], -1.0));
                0.0
            };
            b.row_eq(rhs, &terms);
            if directions && p.import_cost(t) < 0.0 && bat.ch_max > 0.0 && bat.dis_max > 0.0 {
                let z = b.col_kind(Var::BatDir(bi, t), 0.0, 0.0, 1.0, kind);
                b.row_le(0.0, &[(ch[bi][t], 1.0), (z, -bat.ch_max)]);
                b.row_le(bat.dis_max, &[(dis[bi][t], 1.0), (z, bat.dis_max)]);
            }
        }
    }
    // How many intervals of each run of consecutive binary intervals import: a column equal
    // to the run's binaries, within `Problem::import_counts` (`count_split` branches on it).
    let mut counts = Vec::new();
    let mut first = 0;
    while first < dirs.len() {
        let mut end = first + 1;
        while end < dirs.len() && dirs[end].0 == dirs[end - 1].0 + 1 {
            end += 1;
        }
        let (start, len) = (dirs[first].0, (end - first) as f64);
        let (lo, hi) = p.import_counts.get(&start).copied().unwrap_or((0.0, len));
        let k = b.col(Var::ImportCount(start, start + end - first), 0.0, lo, hi);
        let mut terms: Vec<(Col, f64)> = dirs[first..end].iter().map(|(_, y)| (*y, 1.0)).collect();
        terms.push((k, -1.0));
        b.row_eq(0.0, &terms);
        counts.push((start, k, len));
        first = end;
    }
    // Requirements, each with its shortfall.
    // Energy requirements: at least the energy asked (or a penalised shortfall) and, where a
    // minimum power makes the exact amount impossible, at most one interval at minimum power
    // more than asked.
    let requirement =
        |b: &mut Builder, short_var: Var, energy: f64, min: f64, cols: Vec<(Col, f64)>| {
            let short = b.col(short_var, p.penalty, 0.0, energy);
            let mut terms = cols.clone();
            terms.push((short, 1.0));
            if min > 0.0 {
                b.row_ge(energy, &terms);
                b.row_le(energy + min * dt, &cols);
            } else {
                b.row_eq(energy, &terms);
            }
        };
    for (f, d) in p.deferrable.iter().enumerate() {
        for (r, req) in d.requirements.iter().enumerate() {
            let cols: Vec<(Col, f64)> = req
                .intervals
                .iter()
                .filter_map(|&t| defer[f][t].map(|c| (c, dt)))
                .collect();
            requirement(&mut b, Var::DeferShort(f, r), req.energy, d.min, cols);
        }
    }
    for (k, s) in p.sessions.iter().enumerate() {
        let cols: Vec<(Col, f64)> = ev[k].iter().flatten().map(|&c| (c, dt)).collect();
        requirement(&mut b, Var::EvShort(k), s.need, s.min, cols);
    }
    for (bi, bat) in p.batteries.iter().enumerate() {
        if let Some(&last) = soc[bi].last() {
            let short = b.col(
                Var::TermShort(bi),
                bat.short_price,
                0.0,
                (bat.target - bat.lo).max(0.0),
            );
            b.row_ge(bat.target, &[(last, 1.0), (short, 1.0)]);
        }
    }

    let columns = b.vars.len();
    let rows = b.rows;
    let binaries = b.binaries;
    let vars = b.vars;
    let mut model =
        b.pb.try_optimise(Sense::Minimise)
            .map_err(|e| DispatchError::Solver(format!("HiGHS rejected the model: {e:?}")))?;
    model.make_quiet();
    let set = |model: &mut highs::Model, k: &str, v: f64| {
        model
            .try_set_option(k, v)
            .map_err(|e| DispatchError::Solver(format!("HiGHS option {k}: {e:?}")))
    };
    set(&mut model, "mip_rel_gap", opts.mip_gap)?;
    set(&mut model, "time_limit", opts.time_limit_s)?;
    if !relaxed {
        // Measured on the reference day (gap 1e-6): HiGHS's RINS and RENS sub-MIPs took more
        // than half of a 3.1-s solve and found nothing the dive's start had not; without them
        // the same proof takes about 2 s.
        for k in ["mip_heuristic_run_rins", "mip_heuristic_run_rens"] {
            model
                .try_set_option(k, false)
                .map_err(|e| DispatchError::Solver(format!("HiGHS option {k}: {e:?}")))?;
        }
    }
    if let Some(threads) = opts.threads {
        model
            .try_set_option("threads", threads as i32)
            .map_err(|e| DispatchError::Solver(format!("HiGHS option threads: {e:?}")))?;
    }
    if let Some(nodes) = opts.max_nodes {
        model
            .try_set_option("mip_max_nodes", nodes as i32)
            .map_err(|e| DispatchError::Solver(format!("HiGHS option mip_max_nodes: {e:?}")))?;
    }
    Ok(Built {
        model,
        vars,
        peak,
        imp,
        exp,
        ev,
        defer,
        counts,
        columns,
        rows,
        binaries,
    })
}

pub(crate) fn solve(
    p: &Problem,
    opts: &PlanOptions,
    warm: Option<&Schedule>,
) -> Result<MilpResult, DispatchError> {
    let started = Instant::now();
    let Built {
        mut model,
        vars,
        columns,
        rows,
        binaries,
        ..
    } = build(p, opts, false, true)?;
    if let Some(w) = warm {
        let values = start_values(p, w, &vars);
        // An incumbent HiGHS cannot use is ignored by it; that is not an error.
        let _ = model.try_set_solution(Some(&values), None, None, None);
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let solve_start = Instant::now();
    let solved = model
        .try_solve()
        .map_err(|e| DispatchError::Solver(format!("HiGHS failed: {e:?}")))?;
    let solve_seconds = solve_start.elapsed().as_secs_f64();
    let status = match solved.status() {
        HighsModelStatus::Optimal => "optimal",
        HighsModelStatus::ReachedTimeLimit => "time_limit",
        HighsModelStatus::ReachedIterationLimit => "iteration_limit",
        HighsModelStatus::ReachedSolutionLimit if opts.max_nodes.is_some() => "node_limit",
        HighsModelStatus::ReachedSolutionLimit => "solution_limit",
        HighsModelStatus::Infeasible => {
            return Err(DispatchError::Solver(
                "HiGHS reports the model infeasible (a bound contradicts the park's limits)".into(),
            ))
        }
        other => {
            return Err(DispatchError::Solver(format!(
                "HiGHS ended with status {other:?}"
            )))
        }
    };
    if solved.primal_solution_status() != highs::HighsSolutionStatus::Feasible {
        return Err(DispatchError::Solver(format!(
            "HiGHS ended ({status}) without a feasible solution"
        )));
    }
    let gap = solved.mip_gap();
    // No binaries: an LP, solved exactly. A MIP stopped before it has a dual bound (a node
    // limit of 0 can end in the root) has an unknown gap: infinity here, `None` in the plan.
    let mip_gap = if binaries == 0 {
        0.0
    } else if !gap.is_finite() {
        f64::INFINITY
    } else {
        gap.max(0.0)
    };
    let objective = solved.objective_value();
    let dual_bound = if binaries == 0 {
        objective
    } else {
        solved
            .double_info_value(c"mip_dual_bound")
            .unwrap_or(f64::NEG_INFINITY)
    };
    let s = read(p, &vars, &solved);
    Ok(MilpResult {
        schedule: s,
        status: if status == "optimal" && mip_gap > 0.0 {
            "gap_limit".into()
        } else {
            status.into()
        },
        mip_gap,
        objective,
        dual_bound,
        bound_from: BOUND_HIGHS,
        build_seconds,
        solve_seconds,
        columns,
        rows,
        binaries,
    })
}

/// The schedule in a solved model's columns.
fn read(p: &Problem, vars: &[Var], solved: &highs::SolvedModel) -> Schedule {
    let solution = solved.get_solution();
    let x = solution.columns();
    let mut s = Schedule::zeros(p);
    for (i, v) in vars.iter().enumerate() {
        let val = x[i];
        match *v {
            Var::Imp(t) => s.imp[t] = val,
            Var::Exp(t) => s.exp[t] = val,
            Var::Pv(t) => s.pv_used[t] = val,
            Var::Ch(bi, t) => s.ch[bi][t] = val,
            Var::Dis(bi, t) => s.dis[bi][t] = val,
            Var::Soc(bi, t) => s.soc[bi][t] = val,
            Var::Defer(f, t) => s.defer[f][t] = val,
            Var::Shed(c, t) => s.shed[c][t] = val,
            Var::Ev(k, t) => s.ev[k][t] = val,
            Var::Unserved(t) => s.unserved[t] = val,
            _ => {}
        }
    }
    clean(&mut s);
    s
}

/// The linear relaxation (no binaries, no minimum powers) kept in HiGHS between solves, so
/// the LP dive changes a few bounds and re-solves from the last basis instead of building and
/// solving from scratch each round.
pub(crate) struct Relaxation {
    model: Option<highs::Model>,
    vars: Vec<Var>,

    imp: Vec<Col>,
    exp: Vec<Col>,
    ev: Vec<Vec<Option<Col>>>,
    defer: Vec<Vec<Option<Col>>>,
    pub columns: usize,
    pub rows: usize,
}

impl Relaxation {
    pub fn new(p: &Problem, opts: &PlanOptions) -> Result<Relaxation, DispatchError> {
        let lp = PlanOptions {
            mip: false,
            ..opts.clone()
        };
        let mut b = build(p, &lp, true, false)?;
        // Measured: presolve costs more than it saves on these small LPs (28 June days of
        // the reference scenario: 3.1 s without, 4.0 s with).
        b.model
            .try_set_option("presolve", "off")
            .map_err(|e| DispatchError::Solver(format!("HiGHS option presolve: {e:?}")))?;
        Ok(Relaxation {
            model: Some(b.model),
            vars: b.vars,

            imp: b.imp,
            exp: b.exp,
            ev: b.ev,
            defer: b.defer,
            columns: b.columns,
            rows: b.rows,
        })
    }

    /// Solves from the last basis: the schedule and the objective, or why not.
    pub fn solve(&mut self, p: &Problem) -> Result<(Schedule, f64), DispatchError> {
        let model = self
            .model
            .take()
            .ok_or_else(|| DispatchError::Solver("the relaxation was lost".into()))?;
        let solved = model
            .try_solve()
            .map_err(|e| DispatchError::Solver(format!("HiGHS failed: {e:?}")))?;
        let status = solved.status();
        let result = if status == HighsModelStatus::Optimal {
            Ok((read(p, &self.vars, &solved), solved.objective_value()))
        } else {
            Err(DispatchError::Solver(format!(
                "HiGHS ended the relaxation with status {status:?}"
            )))
        };
        self.model = Some(solved.into());
        result
    }

    fn set(&mut self, col: Col, lo: f64, hi: f64) {
        if let Some(m) = self.model.as_mut() {
            m.change_column_bounds(col, lo..=hi);
        }
    }

    /// Gives interval `t` one grid direction: import allowed and export held at zero
    /// (`import`), or the other way round.
    pub fn grid_mode(&mut self, p: &Problem, t: usize, import: bool) {
        if import {
            self.set(self.imp[t], 0.0, p.import_bound(t));
            self.set(self.exp[t], 0.0, 0.0);
        } else {
            self.set(self.imp[t], 0.0, 0.0);
            self.set(self.exp[t], 0.0, p.exp_cap[t]);
        }
    }

    /// Holds session `k` in interval `t` at least at its minimum power (`on`) or at zero.
    pub fn ev_hold(&mut self, p: &Problem, k: usize, t: usize, on: bool) {
        if let Some(c) = self.ev[k][t] {
            let s = &p.sessions[k];
            let (lo, hi) = if on { (s.min, s.max) } else { (0.0, 0.0) };
            self.set(c, lo, hi);
        }
    }

    /// Holds deferrable load `f` in interval `t` at least at its minimum power or at zero.
    pub fn defer_hold(&mut self, p: &Problem, f: usize, t: usize, on: bool) {
        if let Some(c) = self.defer[f][t] {
            let d = &p.deferrable[f];
            let (lo, hi) = if on { (d.min, d.max) } else { (0.0, 0.0) };
            self.set(c, lo, hi);
        }
    }
}

/// Removes solver noise (values within 1e-9 of zero) so plans print cleanly.
fn clean(s: &mut Schedule) {
    let fix = |v: &mut Vec<f64>| {
        for x in v.iter_mut() {
            if x.abs() < 1e-9 {
                *x = 0.0;
            }
        }
    };
    fix(&mut s.imp);
    fix(&mut s.exp);
    fix(&mut s.pv_used);
    fix(&mut s.unserved);
    for group in [&mut s.ch, &mut s.dis, &mut s.defer, &mut s.shed, &mut s.ev] {
        group.iter_mut().for_each(fix);
    }
}

/// The values a schedule gives the model's columns, for warm starts: an exporting share holds
/// its total where the interval exports, nothing where it imports.
fn start_values(p: &Problem, w: &Schedule, vars: &[Var]) -> Vec<f64> {
    let mut values: Vec<f64> = vars.iter().map(|v| value_of(p, w, *v)).collect();
    for (i, v) in vars.iter().enumerate() {
        if let Var::Part { total, t } = *v {
            values[i] = if w.exp[t] > 0.0 { values[total] } else { 0.0 };
        }
    }
    values
}

/// The value a schedule gives a model column, for warm starts.
fn value_of(p: &Problem, s: &Schedule, v: Var) -> f64 {
    match v {
        Var::Imp(t) => s.imp[t],
        Var::Exp(t) => s.exp[t],
        Var::Pv(t) => s.pv_used[t],
        Var::Ch(b, t) => s.ch[b][t],
        Var::Dis(b, t) => s.dis[b][t],
        Var::Soc(b, t) => s.soc[b][t],
        Var::Defer(f, t) => s.defer[f][t],
        Var::Shed(c, t) => s.shed[c][t],
        Var::Ev(k, t) => s.ev[k][t],
        Var::Unserved(t) => s.unserved[t],
        Var::DeferShort(f, r) => s.defer_short(p, f, r),
        Var::EvShort(k) => s.ev_short(p, k),
        Var::TermShort(b) => s.terminal_short(p, b),
        Var::Peak => s.peak(p),
        Var::One => 1.0,
        Var::CarbonOver => s.scope2_over(p),
        Var::GridOver(t) => s.grid_over(p, t),
        Var::GridUnder(t) => s.grid_under(p, t),
        Var::GridDir(t) => {
            if s.exp[t] > 0.0 {
                0.0
            } else {
                1.0
            }
        }
        Var::BatDir(b, t) => {
            if s.dis[b][t] > 0.0 {
                0.0
            } else {
                1.0
            }
        }
        // Set from its total once every total is known (`start_values`).
        Var::Part { .. } => 0.0,
        Var::EvPart(t) if s.exp[t] > 0.0 => s.ev.iter().map(|e| e[t]).sum(),
        Var::EvPart(_) => 0.0,
        Var::ImportCount(from, to) => (from..to)
            .filter(|&t| grid_binary(p, t) && s.exp[t] <= 0.0)
            .count() as f64,
    }
}

/// The range of the horizon's peak import over the relaxation plans that cost at most `ub`,
/// found on the relaxation's value function instead of with a cut-off row: `V(P)`, the
/// cheapest relaxation plan with the peak held at `P`, is convex in `P`, so the range is where
/// `V <= ub`. From each end of the current range, Newton steps on `V` (its slope is the peak
/// column's reduced cost) move inwards and never pass the point where `V` meets `ub`, so every
/// step is a valid end and the search can stop at `deadline`; bisection probes keep it moving
/// where `V` bends sharply. Each evaluation is a re-solve from the last basis after one bound
/// change.
///
/// Also returns the relaxation's optimum over the current range (the minimum of `V`): a lower
/// bound on every plan no dearer than `ub`, hence on the optimum when a plan costing `ub`
/// exists. `None` when that LP failed or disagreed with `ub` (numerical trouble).
pub(crate) fn peak_range(
    p: &Problem,
    opts: &PlanOptions,
    ub: f64,
    deadline: Instant,
) -> Result<PeakRange, DispatchError> {
    let b = hull_relaxation(p, opts, deadline)?;
    let peak = b.peak;
    let mut model = Some(b.model);
    // V(P) and its slope, solving from the last basis.
    let mut value = |fix: Option<f64>| -> Result<(f64, f64, f64), DispatchError> {
        let mut m = model
            .take()
            .ok_or_else(|| DispatchError::Solver("peak range: model lost".into()))?;
        match fix {
            Some(v) => m.change_column_bounds(peak, v..=v),
            None => m.change_column_bounds(peak, p.peak_lo..=p.peak_hi),
        }
        let solved = m
            .try_solve()
            .map_err(|e| DispatchError::Solver(format!("HiGHS failed: {e:?}")))?;
        if solved.status() != HighsModelStatus::Optimal {
            return Err(DispatchError::Solver(format!(
                "peak range: HiGHS ended with {:?}",
                solved.status()
            )));
        }
        let sol = solved.get_solution();
        let out = (
            solved.objective_value(),
            sol.columns()[peak.index()],
            sol.dual_columns()[peak.index()],
        );
        model = Some(solved.into());
        Ok(out)
    };
    let (v_star, p_star, _) = value(None)?;
    let tol = 1e-7 * ub.abs().max(1.0);
    if v_star > ub + tol {
        // The start costs less than the relaxation allows: numerical trouble; keep the range.
        return Ok(PeakRange {
            lo: p.peak_lo,
            hi: p.peak_hi,
            bound: None,
        });
    }
    // Per side: `outer` is a valid end (the current bound, or a point where V > ub), `inner`
    // a point where V <= ub. Where V bends sharply (a steep penalty segment next to a flat
    // one) Newton crawls, so a step that closes less than a tenth of the bracket is followed
    // by a bisection probe. (The caller widens the range by a small slack for the LPs'
    // tolerances.)
    let mut ends = [p.peak_lo, p.peak_hi];
    // An LP that fails or runs out of time ends the search; the ends so far stay valid.
    'sides: for (side, end) in ends.iter_mut().enumerate() {
        let inwards = if side == 0 { 1.0 } else { -1.0 };
        let (mut outer, mut inner) = (*end, p_star);
        let mut known: Option<(f64, f64)> = None;
        for _ in 0..40 {
            if Instant::now() >= deadline || (inner - outer).abs() < 1e-3 {
                break;
            }
            let (v, slope) = match known.take() {
                Some(vs) => vs,
                None => match value(Some(outer)) {
                    Ok((v, _, slope)) => (v, slope),
                    Err(_) => {
                        *end = outer;
                        break 'sides;
                    }
                },
            };
            if v <= ub + tol {
                // At the crossing within the tolerance (or the bound itself is inside).
                break;
            }
            // The reduced cost is a subgradient of V, so outside the range it points
            // outwards; one that does not (numerical trouble) gives no Newton step, only the
            // probe.
            let step = if slope * inwards < 0.0 {
                (v - ub) / slope.abs().max(1e-12)
            } else {
                0.0
            };
            let width = (inner - outer).abs();
            outer += inwards * step.min(width * 0.999);
            if step < 0.1 * width {
                let mid = 0.5 * (outer + inner);
                match value(Some(mid)) {
                    Ok((vm, _, sm)) if vm > ub + tol => {
                        outer = mid;
                        known = Some((vm, sm));
                    }
                    Ok(_) => inner = mid,
                    Err(_) => {
                        *end = outer;
                        break 'sides;
                    }
                }
            }
        }
        *end = outer;
    }
    Ok(PeakRange {
        lo: ends[0],
        hi: ends[1],
        bound: Some(v_star),
    })
}

/// The hull relaxation (binaries continuous, minimum powers relaxed) set up for warm
/// re-solves until `deadline`: no presolve (it costs more than it saves on these LPs) and no
/// LP past the deadline (one on the week takes up to 0.7 s; HiGHS's time limit counts all
/// the solves of a model, so it is the time from now to the deadline).
fn hull_relaxation(
    p: &Problem,
    opts: &PlanOptions,
    deadline: Instant,
) -> Result<Built, DispatchError> {
    let lp = PlanOptions {
        mip: false,
        ..opts.clone()
    };
    let mut b = build(p, &lp, true, true)?;
    b.model
        .try_set_option("presolve", "off")
        .map_err(|e| DispatchError::Solver(format!("HiGHS option presolve: {e:?}")))?;
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    b.model
        .try_set_option("time_limit", budget.max(1e-3))
        .map_err(|e| DispatchError::Solver(format!("HiGHS option time_limit: {e:?}")))?;
    Ok(b)
}

/// One part of `count_split`'s partition: bounds on the import counts of runs, and a lower
/// bound on every plan within them.
#[derive(Debug, Clone)]
pub(crate) struct CountPart {
    pub counts: BTreeMap<usize, (f64, f64)>,
    /// The relaxation's optimum over the part (its parent's, when the part was not solved).
    pub bound: f64,
    /// Its relaxation costs at least `ub`: it holds no plan cheaper than the one known.
    pub pruned: bool,
}

/// A small branch and bound on how many intervals of each run of consecutive binary intervals
/// import, on the hull relaxation (minimum powers relaxed), best bound first: a part whose
/// relaxation has a fractional count splits into "at most the count rounded down" and "at
/// least rounded up". Returns the partition it ends with (every plan lies in one part).
///
/// Why: in the relaxation an importing interval of a deep valley imports at the peak, so the
/// relaxation wants a fractional number of importing intervals, and the intervals differ by
/// cents: branching on one interval's binary moves the fraction to another, and HiGHS's bound
/// crawls (1000 chargers: 145 s to prove 1e-4, the root 3.2e-4 below the optimum with one
/// fractional binary). The count settles it: on that hub the parts "at most 8" and "at least
/// 9" of the fractional 8.45 bound the optimum at 594,964.6 and 595,047.0 CNY, 6.2e-5 below
/// the best plan known, in two LPs.
///
/// At most `max_lps` LPs and none past `deadline`; a part left unsolved keeps its parent's
/// bound. A part whose bound reaches `ub` (the cost of a plan known) is pruned.
pub(crate) fn count_split(
    p: &Problem,
    opts: &PlanOptions,
    ub: f64,
    deadline: Instant,
    max_lps: usize,
) -> Result<Vec<CountPart>, DispatchError> {
    let root = CountPart {
        counts: p.import_counts.clone(),
        bound: f64::NEG_INFINITY,
        pruned: false,
    };
    if !p.no_simultaneous {
        return Ok(vec![root]);
    }
    let b = hull_relaxation(p, opts, deadline)?;
    let runs = b.counts;
    if runs.is_empty() {
        return Ok(vec![root]);
    }
    let mut model = Some(b.model);
    let mut open = vec![root];
    let mut done = Vec::new();
    let mut lps = 0;
    while !open.is_empty() {
        if lps >= max_lps || Instant::now() >= deadline {
            done.append(&mut open);
            break;
        }
        // Best bound first (ties: the part found first).
        let i = (0..open.len())
            .min_by(|&a, &c| open[a].bound.total_cmp(&open[c].bound))
            .expect("not empty");
        let mut part = open.swap_remove(i);
        let mut m = model
            .take()
            .ok_or_else(|| DispatchError::Solver("count split: model lost".into()))?;
        for &(start, col, len) in &runs {
            let (lo, hi) = part.counts.get(&start).copied().unwrap_or((0.0, len));
            m.change_column_bounds(col, lo..=hi);
        }
        lps += 1;
        let solved = m
            .try_solve()
            .map_err(|e| DispatchError::Solver(format!("HiGHS failed: {e:?}")))?;
        let status = solved.status();
        let found = (status == HighsModelStatus::Optimal).then(|| {
            let x = solved.get_solution().columns().to_vec();
            (solved.objective_value(), x)
        });
        model = Some(solved.into());
        let Some((objective, x)) = found else {
            if status == HighsModelStatus::Infeasible {
                // No plan in this part (its counts contradict held directions).
                continue;
            }
            // Out of time or numerical trouble: the part stays with its parent's bound.
            done.push(part);
            done.append(&mut open);
            break;
        };
        part.bound = part.bound.max(objective);
        if objective >= ub {
            part.pruned = true;
            done.push(part);
            continue;
        }
        // The run whose count is furthest from a whole number.
        let frac = |v: f64| (v - v.floor()).min(v.ceil() - v);
        let branch = runs
            .iter()
            .map(|&(start, col, len)| (start, x[col.index()], len))
            .filter(|&(_, v, _)| frac(v) > 1e-6)
            .max_by(|a, c| frac(a.1).total_cmp(&frac(c.1)));
        let Some((start, v, len)) = branch else {
            done.push(part);
            continue;
        };
        let (lo, hi) = part.counts.get(&start).copied().unwrap_or((0.0, len));
        for bounds in [(lo, v.floor()), (v.ceil(), hi)] {
            let mut counts = part.counts.clone();
            counts.insert(start, bounds);
            open.push(CountPart {
                counts,
                bound: part.bound,
                pruned: false,
            });
        }
    }
    Ok(done)
}

/// What `peak_range` found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeakRange {
    pub lo: f64,
    pub hi: f64,
    /// The relaxation's optimum over the range it started from: a lower bound on the optimum.
    pub bound: Option<f64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{plan_optimized, CurrentState};
    use chrono::NaiveDate;
    use pedf_core::inputs::load_days_inputs_from_dir;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    /// The reference park's 2026-06-21 from the repository's example inputs.
    pub(crate) fn reference_day() -> (pedf_core::Park, pedf_core::inputs::DayInputs) {
        reference_days(21, 1)
    }

    /// The reference park's week 2026-06-18 to 06-24 (the issue-26 week at 15 minutes).
    pub(crate) fn reference_week() -> (pedf_core::Park, pedf_core::inputs::DayInputs) {
        reference_days(18, 7)
    }

    /// The reference park's `days` days from 2026-06-`first`.
    fn reference_days(first: u32, days: u32) -> (pedf_core::Park, pedf_core::inputs::DayInputs) {
        let text = std::fs::read_to_string(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap();
        let park = pedf_core::config::load_park("qingzhou-pedf.toml", text.as_bytes())
            .value
            .unwrap();
        let dir = std::path::PathBuf::from(format!("{ROOT}/simulations/qingzhou-pedf/day-inputs"));
        let first = NaiveDate::from_ymd_opt(2026, 6, first).unwrap();
        let inputs = load_days_inputs_from_dir(&park, &dir, first, days).unwrap();
        (park, inputs)
    }

    /// The options of a plan proven to the gap `gap`, and that plan.
    fn planned_to(
        park: &pedf_core::Park,
        inputs: &pedf_core::inputs::DayInputs,
        gap: f64,
    ) -> (PlanOptions, pedf_core::plan::Plan) {
        let proven = PlanOptions {
            mip_gap: gap,
            time_limit_s: 60.0,
            ..PlanOptions::default()
        };
        let plan = plan_optimized(park, inputs, &proven, &CurrentState::default()).unwrap();
        (proven, plan)
    }

    /// The hull relaxation's cost with the peak held at `peak`.
    fn cost_at_peak(p: &Problem, opts: &PlanOptions, peak: f64) -> f64 {
        let lp = PlanOptions {
            mip: false,
            ..opts.clone()
        };
        let mut b = build(p, &lp, true, true).unwrap();
        b.model.change_column_bounds(b.peak, peak..=peak);
        let solved = b.model.try_solve().unwrap();
        assert_eq!(solved.status(), HighsModelStatus::Optimal);
        solved.objective_value()
    }

    #[test]
    fn peak_range_keeps_every_cheaper_plan_and_is_tight() {
        let (park, inputs) = reference_day();
        let opts = PlanOptions::default();
        let plan = plan_optimized(&park, &inputs, &opts, &CurrentState::default()).unwrap();
        let p = Problem::build(&park, &inputs, &opts, &CurrentState::default());
        let peak = plan
            .intervals
            .iter()
            .map(|i| i.grid_import_kw)
            .fold(0.0, f64::max);
        let ub = plan.objective_cny;
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let PeakRange { lo, hi, bound } = peak_range(&p, &opts, ub, far).unwrap();
        // The hull relaxation over the whole range bounds the optimum from below, within 2 %.
        let bound = bound.unwrap();
        assert!(bound <= ub + 1e-6 && bound > ub * 0.98, "{bound} vs {ub}");
        // The plan itself (cost ub) lies inside, strictly narrower than the import limit.
        assert!(
            lo <= peak + 1e-6 && peak <= hi + 1e-6,
            "{lo} <= {peak} <= {hi}"
        );
        assert!(lo > p.peak_lo + 1.0 && hi < p.peak_hi - 1.0, "[{lo}, {hi}]");
        // Tight: a little outside either end the relaxation already costs more than ub, a
        // little inside no more than ub.
        for (outside, inside) in [(lo - 0.5, lo + 0.5), (hi + 0.5, hi - 0.5)] {
            assert!(cost_at_peak(&p, &opts, outside) > ub, "outside {outside}");
            assert!(
                cost_at_peak(&p, &opts, inside) <= ub + 1e-6,
                "inside {inside}"
            );
        }
        // Stopped by its deadline it fails or hands back ends that are still valid.
        if let Ok(PeakRange {
            lo: lo3, hi: hi3, ..
        }) = peak_range(&p, &opts, ub, Instant::now())
        {
            assert!(lo3 <= lo + 1e-9 && hi3 >= hi - 1e-9, "[{lo3}, {hi3}]");
        }
        // With a dearer bound the range widens; never narrows.
        let PeakRange {
            lo: lo2, hi: hi2, ..
        } = peak_range(&p, &opts, ub + 20.0, far).unwrap();
        assert!(lo2 <= lo + 1e-9 && hi2 >= hi - 1e-9);
    }

    /// The count split partitions the plans: the optimum lies in a part whose bound is at most
    /// its cost, so the least bound of the parts bounds the optimum; and it is far tighter
    /// than the hull relaxation it starts from.
    #[test]
    fn the_count_split_keeps_the_optimum_in_a_part_and_bounds_it() {
        let (park, inputs) = reference_day();
        let state = CurrentState::default();
        let (proven, best) = planned_to(&park, &inputs, 1e-9);
        let optimum = best.objective_cny;
        // As the planner does: the peak range narrowed to the plans no dearer than one known
        // (here a hair dearer than the optimum, so the optimum's part is never pruned).
        let ub = optimum * (1.0 + 1e-6);
        let mut p = Problem::build(&park, &inputs, &proven, &state);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        crate::tighten_peak(&mut p, &proven, ub, far);
        let root = peak_range(&p, &proven, ub, far).unwrap().bound.unwrap();
        let parts = count_split(&p, &proven, ub, far, 16).unwrap();
        assert!(parts.len() >= 2, "{parts:?}");
        // The optimum's runs of binary intervals and how many of each import: at least those
        // with import, at most those without export (an idle interval may count either way).
        let mut runs: Vec<(usize, f64, f64)> = Vec::new();
        for t in (0..p.n).filter(|&t| grid_binary(&p, t)) {
            let iv = &best.intervals[t];
            let (must, may) = (
                f64::from(iv.grid_import_kw > 1e-6),
                f64::from(iv.grid_export_kw <= 1e-6),
            );
            match runs.last_mut() {
                Some((_, lo, hi)) if t > 0 && grid_binary(&p, t - 1) => {
                    *lo += must;
                    *hi += may;
                }
                _ => runs.push((t, must, may)),
            }
        }
        let holding: Vec<&CountPart> = parts
            .iter()
            .filter(|part| {
                runs.iter().all(|&(start, lo, hi)| {
                    let (a, b) = part.counts.get(&start).copied().unwrap_or((0.0, f64::MAX));
                    lo <= b + 1e-9 && a <= hi + 1e-9
                })
            })
            .collect();
        assert!(
            !holding.is_empty(),
            "no part holds the optimum: {runs:?} {parts:?}"
        );
        for part in holding {
            assert!(
                part.bound <= optimum + 1e-6 * optimum,
                "{part:?} above {optimum}"
            );
        }
        let least = parts
            .iter()
            .map(|part| part.bound)
            .fold(f64::INFINITY, f64::min);
        assert!(least <= optimum + 1e-6 * optimum, "{least} above {optimum}");
        // Within 1e-5 of the optimum (measured 9e-8), where the hull relaxation is 1.1e-4 below.
        assert!(
            least > root,
            "{least} not above the hull relaxation's {root}"
        );
        assert!(
            least >= optimum * (1.0 - 1e-5),
            "{least} far below {optimum}"
        );
    }

    /// A search cut short before HiGHS has solved its root still reports an honest, useful
    /// gap: against the relaxation bounds found before the search (the dive's LP, the peak
    /// range's hull LPs), not HiGHS's missing or poor bound of its own.
    #[test]
    fn a_search_cut_short_reports_its_gap_against_the_relaxation() {
        let (park, inputs) = reference_day();
        let state = CurrentState::default();
        // The proven optimum of this day and its plain LP relaxation (no exclusivity binaries,
        // no minimum powers), both computed here.
        let (proven, best) = planned_to(&park, &inputs, 1e-6);
        let optimum = best.objective_cny * (1.0 + 1e-6);
        let lp = PlanOptions {
            mip: false,
            ..proven
        };
        let plain = plan_optimized(&park, &inputs, &lp, &state)
            .unwrap()
            .objective_cny;
        assert!(plain < optimum, "{plain} < {optimum}");
        for limit in [0.001, 0.05] {
            let opts = PlanOptions {
                time_limit_s: limit,
                ..PlanOptions::default()
            };
            let plan = plan_optimized(&park, &inputs, &opts, &state).unwrap();
            // So short that even the relaxation is cut off, no gap is known; otherwise the
            // bound it implies is below the optimum (it is a bound) and at least the plain
            // relaxation's (at 0.05 s HiGHS has not finished its root, and before, such a plan
            // reported a gap of 3.26, a bound below zero).
            let Some(gap) = plan.solver.mip_gap else {
                assert!(limit < 0.01, "limit {limit}: no gap");
                continue;
            };
            let bound = plan.objective_cny * (1.0 - gap);
            assert!(
                (plain - 1e-6 * plain.abs()..=optimum).contains(&bound),
                "limit {limit}: bound {bound} outside [{plain}, {optimum}]"
            );
        }
    }
}
