//! Plans the runtime's tests store: the reference day's rule-based plan from the example day
//! inputs (a real plan as `pedf plan` writes it), for a test to change.

use pedf_core::plan::Plan;
use pedf_core::Park;

/// The rule-based plan of `day` (a day the example inputs cover: 2026-06-18 to 06-24).
pub fn example_rule_plan(park: &Park, root: &str, day: chrono::NaiveDate) -> Plan {
    let inputs = pedf_core::inputs::load_day_inputs_from_dir(
        park,
        std::path::Path::new(&format!("{root}/simulations/qingzhou-pedf/day-inputs")),
        day,
    )
    .unwrap();
    pedf_dispatch::plan_rule_based(
        park,
        &inputs,
        &pedf_dispatch::PlanOptions::default(),
        &pedf_dispatch::CurrentState::default(),
    )
    .unwrap()
}
