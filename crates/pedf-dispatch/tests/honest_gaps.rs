//! The gap a plan reports (issue 26): its bound is a lower bound on the optimum of the plan's
//! problem, labelled with where it comes from, the gap is the plan's against it, and more
//! search never reports a worse bound, with a node limit (HiGHS alone) or a time limit (a
//! split on how many intervals import, then HiGHS over its parts).

mod common;

use pedf_dispatch::{plan_optimized, CurrentState, PlanOptions};

/// A charging hub of 100 chargers and 150 sessions, searched with more and more nodes (the
/// node limit stops it at the same point on every machine; the time limit is out of the way),
/// then to its proven optimum. Measured on this project's machine: 1 node leaves a gap of
/// 3.2e-4 and 30 nodes 3.1e-4, both after a second round with the minimum powers strict;
/// the optimum is proven at 100 nodes.
#[test]
fn a_plans_bound_holds_for_its_problem_and_more_search_never_weakens_it() {
    let (park, inputs) = common::charging_hub(100);
    assert_eq!(inputs.sessions.len(), 150);
    let opts = |nodes: Option<u32>| PlanOptions {
        mip_gap: 1e-9,
        time_limit_s: 600.0,
        max_nodes: nodes,
        ..PlanOptions::default()
    };
    let state = CurrentState::default();
    let optimum = plan_optimized(&park, &inputs, &opts(None), &state).unwrap();
    let best = optimum.objective_cny;
    let proven = optimum.solver.bound_cny.expect("a bound");
    assert!(
        optimum.solver.mip_gap.unwrap() <= 1e-9,
        "{:?}",
        optimum.solver
    );
    let mut last = f64::NEG_INFINITY;
    for nodes in [1, 3, 10, 30] {
        let plan = plan_optimized(&park, &inputs, &opts(Some(nodes)), &state).unwrap();
        let s = &plan.solver;
        let bound = s.bound_cny.expect("a bound");
        assert!(
            [
                "HiGHS branch and bound",
                "linear relaxation",
                "linear relaxation over the narrowed peak range"
            ]
            .contains(&s.bound_from.as_deref().unwrap_or("")),
            "{s:?}"
        );
        // A lower bound: no plan of the problem costs less, the optimum included.
        assert!(
            bound <= best + 1e-9 * best,
            "{nodes} nodes: bound {bound} above the optimum {best}"
        );
        assert!(
            plan.objective_cny >= proven - 1e-9 * best,
            "{nodes} nodes: a plan below the proven bound"
        );
        // The gap is the plan's against that bound.
        let gap = (plan.objective_cny - bound) / plan.objective_cny;
        assert!(
            (s.mip_gap.unwrap() - gap.max(0.0)).abs() < 1e-12,
            "{s:?} against {gap}"
        );
        // More nodes: a bound at least as good.
        assert!(
            bound >= last,
            "{nodes} nodes: bound {bound} below {last} with fewer"
        );
        last = bound;
    }
    assert!(last > f64::NEG_INFINITY);
    // Without a node limit the planner splits on how many intervals import before HiGHS
    // searches the parts; cut short at any point, the bound it reports is still one of the
    // problem's (the least over the parts), and the gap the plan's against it.
    let mut checked = 0;
    for limit in [0.3, 1.0, 3.0] {
        let o = PlanOptions {
            time_limit_s: limit,
            ..opts(None)
        };
        let plan = plan_optimized(&park, &inputs, &o, &state).unwrap();
        let s = &plan.solver;
        let Some(bound) = s.bound_cny else {
            continue;
        };
        assert!(
            bound <= best + 1e-9 * best,
            "limit {limit} s: bound {bound} above the optimum {best} ({s:?})"
        );
        let gap = (plan.objective_cny - bound) / plan.objective_cny;
        assert!(
            (s.mip_gap.unwrap() - gap.max(0.0)).abs() < 1e-12,
            "{s:?} against {gap}"
        );
        checked += 1;
    }
    // At 3 s at least the relaxation's bound is known.
    assert!(checked >= 1, "no time-limited plan reported a bound");
    assert_eq!(
        optimum.solver.bound_from.as_deref(),
        Some("the least over a split on how many intervals import")
    );
}
