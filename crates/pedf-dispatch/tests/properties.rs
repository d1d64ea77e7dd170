//! Properties every plan keeps, on random feasible parks: the DC bus balances in every
//! interval, the battery stays in its window and follows its efficiencies, EVs get their
//! energy (or meeting it costs more than its shortfall's penalty), the objective is the sum of
//! its terms, and the rules never beat the optimum.

mod common;

use common::{inputs, park, Day, Spec};
use pedf_core::plan::Plan;
use pedf_dispatch::{plan_optimized, plan_rule_based, CurrentState, PlanOptions};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

#[derive(Debug, Clone)]
struct Case {
    spec_pv: f64,
    battery_kwh: f64,
    battery_kw: f64,
    eff: f64,
    conv_eff: f64,
    soc_min: f64,
    initial: f64,
    demand_charge: f64,
    carbon_price: f64,
    ev_min: f64,
    pv: Vec<f64>,
    load: Vec<f64>,
    import_price: Vec<f64>,
    export_price: Vec<f64>,
    sessions: Vec<(usize, usize, usize, f64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..7).prop_flat_map(|n| {
        (
            (
                0.0..400.0f64,
                0.0..300.0f64,
                0.0..150.0f64,
                0.85..1.0f64,
                0.9..1.0f64,
                0.0..0.3f64,
                0.3..0.7f64,
            ),
            (
                0.0..50.0f64,
                0.0..200.0f64,
                prop_oneof![Just(0.0), 5.0..20.0f64],
            ),
            proptest::collection::vec(0.0..300.0f64, n),
            proptest::collection::vec(0.0..200.0f64, n),
            proptest::collection::vec(0.05..1.5f64, n),
            proptest::collection::vec(0.0..0.5f64, n),
            proptest::collection::vec((0usize..2, 0usize..n, 1usize..=n, 0.0..1.0f64), 0..3),
        )
            .prop_map(move |(a, b, pv, load, ip, ep, raw_sessions)| {
                let (spec_pv, battery_kwh, battery_kw, eff, conv_eff, soc_min, initial) = a;
                let (demand_charge, carbon_price, ev_min) = b;
                // Sessions on distinct chargers (one session per charger), each feasible:
                // at most half of what the charger can give while present.
                let mut sessions = Vec::new();
                let mut used = [false; 2];
                for (c, s, len, frac) in raw_sessions {
                    if used[c] {
                        continue;
                    }
                    used[c] = true;
                    let end = (s + len).min(n);
                    let first = s.min(end - 1);
                    let hours = (end - first) as f64;
                    sessions.push((c, first, end, 1.0 + frac * 0.5 * 60.0 * hours));
                }
                Case {
                    spec_pv,
                    battery_kwh,
                    battery_kw,
                    eff,
                    conv_eff,
                    soc_min,
                    initial: initial.max(soc_min),
                    demand_charge,
                    carbon_price,
                    ev_min,
                    pv: pv.iter().map(|x| x.min(spec_pv)).collect(),
                    load,
                    import_price: ip,
                    export_price: ep,
                    sessions,
                }
            })
    })
}

fn build(c: &Case) -> (pedf_core::Park, pedf_core::inputs::DayInputs) {
    let spec = Spec {
        pv_kwp: c.spec_pv.max(1.0),
        battery_kwh: if c.battery_kwh > 1.0 && c.battery_kw > 1.0 {
            c.battery_kwh
        } else {
            0.0
        },
        battery_kw: c.battery_kw,
        eff: c.eff,
        conv_eff: c.conv_eff,
        soc_min: c.soc_min,
        soc_max: 1.0,
        initial_soc: c.initial,
        demand_charge: c.demand_charge,
        carbon_price: c.carbon_price,
        ev: Some((2, c.ev_min, 60.0)),
        ..Spec::default()
    };
    let p = park(&spec);
    let d = Day {
        pv: c.pv.clone(),
        load: c.load.clone(),
        import_price: c.import_price.clone(),
        export_price: c.export_price.clone(),
        ci: vec![],
        sessions: c.sessions.clone(),
    };
    let i = inputs(&p, &d);
    (p, i)
}

fn check_plan(park: &pedf_core::Park, plan: &Plan) -> Result<(), TestCaseError> {
    let conv = &park.converter;
    let dt = 1.0;
    for (t, i) in plan.intervals.iter().enumerate() {
        let sources =
            i.pv_used_kw + i.battery_discharge_kw + conv.efficiency_ac_to_dc * i.grid_import_kw;
        let sinks = i.fixed_load_kw
            + i.flexible_load_kw
            + i.ev_kw
            + i.battery_charge_kw
            + i.grid_export_kw / conv.efficiency_dc_to_ac;
        prop_assert!(
            (sources - sinks).abs() < 1e-6,
            "interval {t}: DC balance off by {}",
            sources - sinks
        );
        prop_assert!(i.pv_used_kw <= i.pv_available_kw + 1e-6);
        prop_assert!(i.grid_import_kw >= -1e-9 && i.grid_export_kw >= -1e-9);
        prop_assert!(
            i.grid_export_kw <= conv.efficiency_dc_to_ac * i.pv_used_kw + 1e-6,
            "export beyond PV"
        );
        prop_assert!(
            i.grid_import_kw < 1e-6 || i.grid_export_kw < 1e-6,
            "interval {t}: import {} with export {}",
            i.grid_import_kw,
            i.grid_export_kw
        );
    }
    for b in &park.batteries {
        let mut soc = b.initial_soc * b.capacity.0;
        for i in &plan.intervals {
            soc += b.charge_efficiency * dt * i.battery_charge_kw
                - dt / b.discharge_efficiency * i.battery_discharge_kw;
            prop_assert!(
                (soc - i.battery_soc_kwh).abs() < 1e-5,
                "SoC dynamics: {soc} vs {}",
                i.battery_soc_kwh
            );
            prop_assert!(i.battery_soc_kwh >= b.soc_min * b.capacity.0 - 1e-6);
            prop_assert!(i.battery_soc_kwh <= b.soc_max * b.capacity.0 + 1e-6);
            prop_assert!(
                i.battery_charge_kw <= b.max_charge.0 + 1e-6
                    && i.battery_discharge_kw <= b.max_discharge.0 + 1e-6
            );
        }
    }
    let terms = plan.energy_cost_cny - plan.export_revenue_cny
        + plan.demand_charge_cny
        + plan.carbon_cost_cny
        + plan.degradation_cost_cny
        + plan.load_shed_cost_cny
        + plan.penalty_cny;
    prop_assert!((terms - plan.objective_cny).abs() < 1e-9 * (1.0 + terms.abs()));
    // Recompute the energy cost and carbon from the intervals.
    let cost: f64 = plan
        .intervals
        .iter()
        .map(|i| i.grid_import_kw * i.import_price_cny_per_kwh)
        .sum();
    prop_assert!((cost - plan.energy_cost_cny).abs() < 1e-6);
    let kg: f64 = plan
        .intervals
        .iter()
        .map(|i| i.grid_import_kw * i.carbon_intensity_kg_per_kwh)
        .sum();
    prop_assert!((kg - plan.carbon_kg).abs() < 1e-6);
    Ok(())
}

/// Plans both ways for case `c` and checks every property on them.
fn check_case(c: &Case) -> Result<(), TestCaseError> {
    let (park, inputs) = build(c);
    let opts = PlanOptions {
        mip_gap: 1e-7,
        time_limit_s: 20.0,
        ..PlanOptions::default()
    };
    let opt = plan_optimized(&park, &inputs, &opts, &CurrentState::default()).unwrap();
    prop_assert_eq!(opt.solver.name.as_str(), "HiGHS");
    check_plan(&park, &opt)?;
    // Every session gets its energy (at most one minimum-power interval over), or the
    // plan says what it left short, and meeting it would cost more than that penalty.
    for s in &inputs.sessions {
        let got: f64 = opt
            .intervals
            .iter()
            .map(|i| i.ev_chargers.get(&s.charger).copied().unwrap_or(0.0))
            .sum();
        prop_assert!(
            got <= s.energy_kwh + c.ev_min + 1e-5,
            "session {}: {got} of {}",
            s.id,
            s.energy_kwh
        );
        let short: f64 = opt
            .unmet
            .iter()
            .filter(|u| u.id == s.id)
            .map(|u| u.shortfall_kwh)
            .sum();
        prop_assert!(
            (got + short - s.energy_kwh).abs() < 1e-5 || (short == 0.0 && got >= s.energy_kwh),
            "session {}: {got} delivered and {short} reported short of {}",
            s.id,
            s.energy_kwh
        );
        for i in &opt.intervals {
            let p = i.ev_chargers.get(&s.charger).copied().unwrap_or(0.0);
            prop_assert!(
                p < 1e-6 || p >= c.ev_min - 1e-6,
                "EV at {p} kW below its minimum {}",
                c.ev_min
            );
        }
    }
    prop_assert!(
        opt.unmet.iter().all(|u| u.kind == "ev_session"),
        "{:?}",
        opt.unmet
    );
    if !opt.unmet.is_empty() {
        // Every session fits its charger (half of what it can give), so a plan meeting all
        // exists; its cost must be at least the optimum's cost with its shortfall penalty.
        let strict = PlanOptions {
            unmet_penalty_cny_per_kwh: 1e7,
            ..opts.clone()
        };
        let met = plan_optimized(&park, &inputs, &strict, &CurrentState::default()).unwrap();
        prop_assert!(
            met.unmet.is_empty(),
            "a plan meeting every session exists: {:?}",
            met.unmet
        );
        check_plan(&park, &met)?;
        let tol = 1e-6 * (1.0 + met.objective_cny.abs()) + 2e-7 * opt.objective_cny.abs();
        prop_assert!(
            met.objective_cny >= opt.objective_cny - tol,
            "meeting every session costs {} but the plan left {:?} short at {}",
            met.objective_cny,
            opt.unmet,
            opt.objective_cny
        );
    }
    let rule = plan_rule_based(&park, &inputs, &opts, &CurrentState::default()).unwrap();
    check_plan(&park, &rule)?;
    let tol = 1e-6 * (1.0 + opt.objective_cny.abs())
        + opt.solver.mip_gap.unwrap_or(0.0) * opt.objective_cny.abs();
    prop_assert!(
        rule.objective_cny >= opt.objective_cny - tol,
        "rule {} cheaper than optimum {}",
        rule.objective_cny,
        opt.objective_cny
    );
    Ok(())
}

/// A case the random search found: a session 0.434 kWh over what one hour at full power gives,
/// where its second hour is the day's peak (104.1 kW) and the charger's minimum is 16.79 kW.
/// Meeting it raises the peak by 16.79 kW (777 CNY of demand charge), so the optimum leaves
/// 0.434 kWh short (434 CNY of penalty) and says so.
#[test]
fn a_session_is_left_short_when_meeting_it_costs_more_than_its_penalty() {
    let c = Case {
        spec_pv: 0.0,
        battery_kwh: 0.0,
        battery_kw: 0.0,
        eff: 0.95,
        conv_eff: 0.97,
        soc_min: 0.1,
        initial: 0.5,
        demand_charge: 46.27,
        carbon_price: 0.0,
        ev_min: 16.79,
        pv: vec![0.0, 0.0],
        load: vec![0.0, 104.1],
        import_price: vec![0.05, 0.05],
        export_price: vec![0.0, 0.0],
        sessions: vec![(0, 0, 2, 60.434)],
    };
    let (park, inputs) = build(&c);
    let opts = PlanOptions {
        mip_gap: 1e-7,
        time_limit_s: 20.0,
        ..PlanOptions::default()
    };
    let opt = plan_optimized(&park, &inputs, &opts, &CurrentState::default()).unwrap();
    assert_eq!(opt.unmet.len(), 1, "{:?}", opt.unmet);
    assert!(
        (opt.unmet[0].shortfall_kwh - 0.434).abs() < 1e-6,
        "{:?}",
        opt.unmet
    );
    check_case(&c).unwrap();
}

proptest! {
    // A fixed seed: the same 64 cases on every run and machine.
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: RngSeed::Fixed(20_261_207), ..ProptestConfig::default() })]

    #[test]
    fn optimised_and_rule_plans_keep_every_limit(c in case()) {
        check_case(&c)?;
    }
}
