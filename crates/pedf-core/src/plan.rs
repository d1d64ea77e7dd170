//! A dispatch plan: what every asset should do in every interval, what it costs, what it
//! emits, and what could not be met. Produced by pedf-dispatch (optimiser or rule-based
//! strategy), followed by the controller, shown by the dashboard.
//!
//! Field names follow PRODUCT.md ("Plan JSON"); all powers are interval averages in kW with
//! the sign convention of [`crate::sign`] split into non-negative parts.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// Which strategy made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The MILP optimiser.
    Optimized,
    /// The rule-based strategy (baseline and fallback).
    Rule,
}

/// How the solver ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverInfo {
    /// Solver name, e.g. "HiGHS" or "rule-based".
    pub name: String,
    /// "optimal", "gap_limit", "time_limit", "node_limit", "lp_dive" (node limit 0: the LP
    /// dive's plan, its gap against the linear relaxation), or "rule"/"fallback" for the
    /// rule-based strategy.
    pub status: String,
    /// Relative MIP gap reached (0 for an LP or a proven optimum; `None` for rules).
    pub mip_gap: Option<f64>,
    /// Seconds spent solving (with the optimiser: its LP dive and HiGHS's search).
    pub seconds: f64,
    /// Seconds spent building the model.
    pub build_seconds: f64,
    /// Model size: columns, rows, integer columns.
    pub columns: usize,
    /// Rows of the model.
    pub rows: usize,
    /// Integer (binary) columns of the model.
    pub binaries: usize,
    /// The best lower bound on the optimum of the plan's problem known when it was handed
    /// out, CNY (the plan's objective less this, over the objective, is `mip_gap`); `None`
    /// for rules and where no bound is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_cny: Option<f64>,
    /// Where `bound_cny` comes from: `HiGHS branch and bound`, `linear relaxation` or `linear
    /// relaxation over the narrowed peak range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_from: Option<String>,
}

impl SolverInfo {
    /// The record of a plan made by the rule-based strategy (`status`: "rule" or "fallback").
    pub fn rule_based(status: &str, seconds: f64) -> Self {
        SolverInfo {
            name: "rule-based".into(),
            status: status.into(),
            mip_gap: None,
            seconds,
            build_seconds: 0.0,
            columns: 0,
            rows: 0,
            binaries: 0,
            bound_cny: None,
            bound_from: None,
        }
    }
}

/// One interval of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInterval {
    /// Interval start in the park's local offset.
    pub start: DateTime<FixedOffset>,
    /// Import price in force (CNY/kWh).
    pub import_price_cny_per_kwh: f64,
    /// Export price in force (CNY/kWh).
    pub export_price_cny_per_kwh: f64,
    /// Grid carbon intensity used (kg CO2/kWh).
    pub carbon_intensity_kg_per_kwh: f64,
    /// Import at the grid connection (AC).
    pub grid_import_kw: f64,
    /// Export at the grid connection (AC).
    pub grid_export_kw: f64,
    /// PV power the forecast says is available at the bus.
    pub pv_available_kw: f64,
    /// PV power used (the rest is curtailed).
    pub pv_used_kw: f64,
    /// Battery charging power drawn from the bus, all batteries.
    pub battery_charge_kw: f64,
    /// Battery discharging power delivered to the bus, all batteries.
    pub battery_discharge_kw: f64,
    /// Stored energy at the end of the interval, all batteries.
    pub battery_soc_kwh: f64,
    /// Fixed load served.
    pub fixed_load_kw: f64,
    /// Flexible loads served (deferrable and curtailable together).
    pub flexible_load_kw: f64,
    /// Curtailable demand shed.
    pub load_shed_kw: f64,
    /// Demand that could not be served at all (a hard limit bound).
    pub load_unserved_kw: f64,
    /// EV charging, all chargers.
    pub ev_kw: f64,
    /// EV charging per charger id (chargers with a session in the horizon).
    pub ev_chargers: BTreeMap<String, f64>,
    /// Per-battery state of charge at the end of the interval (kWh).
    pub batteries_soc_kwh: BTreeMap<String, f64>,
    /// Per-flexible-load power (kW).
    pub flexible_loads: BTreeMap<String, f64>,
}

/// A requirement the plan could not meet, with its shortfall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmet {
    /// What kind: "ev_session", "deferrable_load", "fixed_load", "terminal_soc".
    pub kind: String,
    /// Which asset or session.
    pub id: String,
    /// Energy short (kWh).
    pub shortfall_kwh: f64,
    /// Why, for people.
    pub reason: String,
}

/// A whole plan with its cost and carbon terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Park id.
    pub park_id: String,
    /// Which strategy made it.
    pub strategy: Strategy,
    /// Interval length in minutes.
    pub interval_minutes: u32,
    /// Total objective: the sum of the cost terms below, minus export revenue.
    pub objective_cny: f64,
    /// Import energy cost at time-of-use prices.
    pub energy_cost_cny: f64,
    /// Revenue from exported PV.
    pub export_revenue_cny: f64,
    /// What the horizon adds to the month's basic charge: the whole monthly rate on the rise
    /// of the month's peak above `demand_free_up_to_kw` (never a share prorated to the
    /// horizon; under contracted demand the surcharge rate; none under transformer capacity).
    pub demand_charge_cny: f64,
    /// The billing month's peak import before the horizon, kW, as the plan was told it.
    pub month_peak_before_kw: f64,
    /// The import up to which the month's peak rose at no cost in this plan: the month's peak
    /// so far, the park's monthly target, 105 % of a contracted demand (the largest), at most
    /// the import limit.
    pub demand_free_up_to_kw: f64,
    /// Carbon price times import emissions.
    pub carbon_cost_cny: f64,
    /// Battery wear.
    pub degradation_cost_cny: f64,
    /// Value of lost load of shed curtailable demand.
    pub load_shed_cost_cny: f64,
    /// Penalties for unmet requirements (EV energy, deferrable energy, unserved load).
    pub penalty_cny: f64,
    /// Emissions of grid import at the inputs' carbon intensity (kg CO2; the series the
    /// carbon price weighs, hourly where the inputs give an hourly shape).
    pub carbon_kg: f64,
    /// Location-based Scope 2 as the carbon report and the backtests count it: import x the
    /// park's annual grid factor (kg CO2).
    pub scope2_kg: f64,
    /// The Scope 2 the horizon was allowed under `[carbon.control]` (kg; none without limits).
    pub scope2_allowance_kg: Option<f64>,
    /// Scope 2 of the same horizon without the EMS (battery idle, cars charged on arrival,
    /// deferrable loads flat, nothing shed), kg: the counterfactual "carbon saved" compares
    /// with.
    pub scope2_without_ems_kg: f64,
    /// Peak import in the horizon (kW), window averages as the plan's intervals see them.
    pub peak_import_kw: f64,
    /// How the solver ended.
    pub solver: SolverInfo,
    /// Per-interval schedule.
    pub intervals: Vec<PlanInterval>,
    /// Requirements not met, each with its shortfall.
    pub unmet: Vec<Unmet>,
    /// Things the planner did to the inputs that a user should know (never silent).
    pub notes: Vec<String>,
}
