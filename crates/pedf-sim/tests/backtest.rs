//! Backtests on the reference scenario: deterministic for a seed, the energy balance closes,
//! the physics keeps the park's limits, and the strategies behave as an operator expects.

use std::path::Path;

use pedf_sim::backtest::{run, StrategyKind};
use pedf_sim::scenario::Scenario;
use pedf_sim::world::World;

fn scenario() -> Scenario {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulations/qingzhou-pedf");
    Scenario::load(&dir).unwrap_or_else(|ds| panic!("{ds:?}"))
}

fn check_physics(s: &Scenario, r: &pedf_sim::backtest::StrategyResult) {
    let e = &r.energy;
    assert!(
        e.balance_residual_share < 1e-4,
        "{:?}: {}",
        r.strategy,
        e.balance_residual_kwh
    );
    assert!(e.pv_used_kwh <= e.pv_available_kwh + 1e-6);
    assert!(
        r.peak_import_kw <= s.park.grid.import_limit.0 + 1e-6,
        "{:?}",
        r.strategy
    );
    assert!(r
        .grid_kw
        .iter()
        .all(|g| -g <= s.park.grid.export_limit.0 + 1e-6));
    let lo = 100.0 * s.park.batteries[0].soc_min - 1e-6;
    let hi = 100.0 * s.park.batteries[0].soc_max + 1e-6;
    assert!(
        r.soc_pct.iter().all(|x| (lo..=hi).contains(x)),
        "{:?}",
        r.strategy
    );
    assert_eq!(r.alarm_intervals, 0, "{:?}", r.strategy);
    // Every kWh the deferrable load needs is delivered (its comfort limit).
    assert!(
        r.deferrable_unmet_kwh < 1e-6,
        "{:?}: {}",
        r.strategy,
        r.deferrable_unmet_kwh
    );
}

fn summer(s: &mut Scenario) {
    // Summer days: PV surplus, export rules and the midday deep valley all matter.
    s.start = chrono::NaiveDate::from_ymd_opt(2026, 6, 20).unwrap();
}

#[test]
fn same_seed_same_result_and_the_balance_closes() {
    let mut s = scenario();
    summer(&mut s);
    let kinds = [StrategyKind::None, StrategyKind::Rule];
    let a = run(&s, 2, &kinds, &mut |_, _| {}).unwrap();
    let b = run(&s, 2, &kinds, &mut |_, _| {}).unwrap();
    let strip = |bt: &pedf_sim::backtest::Backtest| {
        let mut v = serde_json::to_value(bt).unwrap();
        for r in v["results"].as_array_mut().unwrap() {
            // Timings differ between runs; everything else must not.
            r.as_object_mut().unwrap().remove("wall_seconds");
            r["solver"].as_object_mut().unwrap().remove("solve_seconds");
        }
        v
    };
    assert_eq!(strip(&a), strip(&b));
    for r in &a.results {
        check_physics(&s, r);
    }
    assert_eq!(
        a.results[0].energy.battery_discharge_kwh, 0.0,
        "none leaves the battery idle"
    );
    assert!(
        a.results[1].energy.battery_discharge_kwh > 100.0,
        "the rules use the battery"
    );
}

#[test]
fn the_optimiser_keeps_the_limits_and_beats_no_control() {
    let mut s = scenario();
    summer(&mut s);
    let kinds = [StrategyKind::None, StrategyKind::Optimized];
    let a = run(&s, 1, &kinds, &mut |_, _| {}).unwrap();
    for r in &a.results {
        check_physics(&s, r);
    }
    let (none, opt) = (&a.results[0], &a.results[1]);
    assert!(
        opt.energy.battery_discharge_kwh > 100.0,
        "the optimiser uses the battery"
    );
    assert!(
        opt.solver.plans >= 24,
        "a day-ahead plan and hourly re-plans: {}",
        opt.solver.plans
    );
    assert!(
        opt.cost.net_cny < none.cost.net_cny,
        "optimized {} CNY is not cheaper than no control {} CNY",
        opt.cost.net_cny,
        none.cost.net_cny
    );
    // Reproducible when no solve stopped at its time limit (the node limit is deterministic;
    // a time-limited solve may end at another incumbent on a busier machine).
    let b = run(&s, 1, &kinds, &mut |_, _| {}).unwrap();
    if opt.solver.time_limited == 0 && b.results[1].solver.time_limited == 0 {
        assert_eq!(opt.cost.net_cny, b.results[1].cost.net_cny);
        assert_eq!(opt.grid_kw, b.results[1].grid_kw);
    }
}

#[test]
fn another_seed_gives_another_world() {
    let mut s = scenario();
    let a = World::build(&s, s.start, 2).unwrap();
    s.seed += 1;
    let b = World::build(&s, s.start, 2).unwrap();
    assert_ne!(a.pv_actual, b.pv_actual);
    assert_ne!(a.sessions, b.sessions);
    // The day-ahead forecast is not the actual (the planner never sees the future).
    assert_ne!(a.pv_actual, a.pv_forecast);
    assert_ne!(a.load_actual, a.load_forecast);
}

#[test]
fn june_pv_and_ev_statistics_are_plausible() {
    let mut s = scenario();
    s.start = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    let w = World::build(&s, s.start, 30).unwrap();
    let kwp: f64 = s.park.pv.iter().map(|a| a.peak_power.0).sum();
    let kwh: f64 = w.pv_actual.values().flat_map(|v| v.iter()).sum::<f64>() * w.dt_h;
    let per_day = kwh / kwp / 30.0;
    // Shandong in June: about 4-5 kWh/kWp a day for a fixed array after losses (the climate's
    // 242 sunshine hours); clear-sky every day would give about 6.
    assert!((3.5..5.5).contains(&per_day), "{per_day:.2} kWh/kWp/day");
    // EV: ~30 sessions on weekdays, ~20 at weekends, fewer when all 20 chargers are busy.
    let n = w.sessions.len() as f64 / 30.0;
    assert!((20.0..32.0).contains(&n), "{n} sessions a day");
    for sess in &w.sessions {
        assert!(sess.departure > sess.arrival && sess.energy_kwh > 0.0);
    }
}

/// A week of June, then a Monday with two grid requests: an evening import cap of 150 kW and,
/// after it, an import 100 kW below the park's baseline. Each is measured against the
/// strategy's own baseline (the same intervals of the five weekdays before). Both EMS
/// strategies hold the cap in every interval; the park without an EMS imports far above it.
/// What delivering cost each EMS strategy comes from the same period run without them.
#[test]
fn a_backtest_holds_the_scenarios_grid_requests_and_measures_them_against_the_baseline() {
    use pedf_core::grid_request::{GridRequest, RequestKind};
    let mut s = scenario();
    s.start = chrono::NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
    let at = |t: &str| pedf_core::time::parse_rfc3339(t).unwrap();
    s.grid_requests = vec![
        GridRequest {
            id: "evening-cap".into(),
            start: at("2026-06-22T18:00:00+08:00"),
            end: at("2026-06-22T20:00:00+08:00"),
            kind: RequestKind::CapImport(150.0),
            price_cny_per_kwh: Some(3.0),
            source: "test".into(),
        },
        GridRequest {
            id: "reduce".into(),
            start: at("2026-06-22T20:00:00+08:00"),
            end: at("2026-06-22T22:00:00+08:00"),
            kind: RequestKind::ReduceImport(100.0),
            price_cny_per_kwh: None,
            source: "test".into(),
        },
    ];
    let kinds = [
        StrategyKind::None,
        StrategyKind::Rule,
        StrategyKind::Optimized,
    ];
    let b = run(&s, 8, &kinds, &mut |_, _| {}).unwrap();
    let (none, rule, optimized) = (&b.results[0], &b.results[1], &b.results[2]);
    for r in &b.results {
        assert_eq!(r.grid_requests.len(), 2, "{:?}", r.grid_requests);
        for x in &r.grid_requests {
            assert!(x.why.is_none(), "{x:?}");
        }
    }
    // The cap: held by both EMS strategies in every interval, paid on what it took off the
    // strategy's own baseline.
    for r in [rule, optimized] {
        let cap = &r.grid_requests[0];
        assert!(cap.share.unwrap() >= 0.95, "{:?}: {cap:?}", r.strategy);
        assert!(cap.over_kwh < 1e-6, "{:?}: {cap:?}", r.strategy);
        assert_eq!(
            cap.settlement_cny,
            Some(3.0 * cap.delivered_kwh.unwrap()),
            "{cap:?}"
        );
    }
    let idle = &none.grid_requests[0];
    assert!(idle.over_kwh > 100.0, "{idle:?}");
    assert!(idle.share.unwrap() < 0.5, "{idle:?}");
    // The reduction after it: 200 kWh asked; the battery, spent on the cap, and the 30 kW
    // the controller keeps in hand against reverse flow leave part of it, but each EMS
    // strategy delivers more of it than the park without one.
    for r in [rule, optimized] {
        let x = &r.grid_requests[1];
        assert!((x.requested_kwh.unwrap() - 200.0).abs() < 1e-6, "{x:?}");
        assert!(
            x.delivered_kwh.unwrap() > none.grid_requests[1].delivered_kwh.unwrap(),
            "{:?}: {x:?} against none's {:?}",
            r.strategy,
            none.grid_requests[1]
        );
    }
    // The balance closes (the controller alarms where a request's cap cannot be held).
    for r in [rule, optimized] {
        assert!(r.energy.balance_residual_share < 1e-4, "{:?}", r.strategy);
    }
    // What delivering cost: each EMS strategy run again without the requests (the park
    // without an EMS does not respond, so it has no paired run); the settlement is the
    // cap's, and the net is the bill's change less it.
    assert_eq!(none.delivering, None);
    for r in [rule, optimized] {
        let d = r.delivering.as_ref().expect("a paired run");
        assert_eq!(d.bill_with_cny, r.cost.net_cny);
        assert!(
            (d.settlement_cny - r.grid_requests[0].settlement_cny.unwrap()).abs() < 1e-9,
            "{d:?}"
        );
        assert!(
            (d.net_cny - (d.bill_with_cny - d.bill_without_cny - d.settlement_cny)).abs() < 1e-9,
            "{d:?}"
        );
        // The run without the requests is another run: its bill differs.
        assert!((d.bill_with_cny - d.bill_without_cny).abs() > 0.01, "{d:?}");
        println!("{:?}: {d:?}", r.strategy);
    }
}

/// An export floor in a backtest: on Monday 22 June, a noon on which the park without an EMS
/// imports (about 590 kW, against some 300 kW of export on its like days), the grid asks at least 300 kW of export from 12:00 to 13:00. Both EMS
/// strategies hold it (the controller has the battery cover the loads so that the PV reaches
/// the grid, the optimised plan plans for it) and are paid on the export above their own
/// baseline; the park without an EMS exports nothing.
#[test]
fn a_backtest_holds_an_export_floor_from_the_pv_with_the_battery_covering_the_loads() {
    use pedf_core::grid_request::{GridRequest, RequestKind};
    let mut s = scenario();
    s.start = chrono::NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
    let at = |t: &str| pedf_core::time::parse_rfc3339(t).unwrap();
    s.grid_requests = vec![GridRequest {
        id: "noon-floor".into(),
        start: at("2026-06-22T12:00:00+08:00"),
        end: at("2026-06-22T13:00:00+08:00"),
        kind: RequestKind::ExportAtLeast(300.0),
        price_cny_per_kwh: Some(1.0),
        source: "test".into(),
    }];
    let kinds = [
        StrategyKind::None,
        StrategyKind::Rule,
        StrategyKind::Optimized,
    ];
    let b = run(&s, 8, &kinds, &mut |_, _| {}).unwrap();
    let floor = |k: usize| &b.results[k].grid_requests[0];
    for k in 0..3 {
        assert!(floor(k).why.is_none(), "{:?}", floor(k));
        println!("{:?}: {:?}", b.results[k].strategy, floor(k));
    }
    for k in [1, 2] {
        let x = floor(k);
        assert!(x.requested_kwh.unwrap() > 50.0, "{x:?}");
        assert!(x.share.unwrap() >= 0.95, "{x:?}");
        assert!(x.over_kwh < 1e-6, "kWh short of the floor: {x:?}");
        assert_eq!(x.settlement_cny, Some(x.delivered_kwh.unwrap()), "{x:?}");
    }
    // The park without an EMS does not respond: it imports at noon.
    assert_eq!(floor(0).delivered_kwh, Some(0.0), "{:?}", floor(0));
    assert!(floor(0).over_kwh > 300.0, "{:?}", floor(0));
}
