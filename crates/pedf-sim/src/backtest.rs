//! Backtests (`pedf simulate`): the same simulated period run under each strategy.
//!
//! * `none`: no battery control (the battery stays idle), chargers give cars what they ask,
//!   deferrable loads run flat over their window, nothing is shed.
//! * `rule`: the rule-based plan each day and again every re-plan period and at each car's
//!   arrival from the measured state, followed by the real-time controller.
//! * `optimized`: the MILP day-ahead plan each day and intraday re-plans every
//!   `replan_every_min` and at each car's arrival from the measured state (SoC, cars present
//!   with what they still need, the deferrable energy delivered, the month's peak and Scope 2
//!   so far), on forecasts, never on the actual data; a solver failure falls back to the
//!   rules, counted in the report.
//!
//! Each interval the physics (`physics.rs`) turns the controller's setpoints (pedf-control,
//! the same code as `pedf run`) into flows; the grid meter is the balance. The flows become
//! interval records, accounted by pedf-carbon as a real period would be, and billed with the
//! park's tariff month by month (energy at time-of-use prices, the basic charge on each
//! month's peak as the tariff bills it, prorated only when the period covers part of a
//! month, export revenue), plus battery wear and the value of shed load.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use pedf_carbon::account::{Accountant, Options as CarbonOptions};
use pedf_carbon::records::IntervalRecord;
use pedf_control::{
    control, ev_must_kw, BatteryNow, ChargerNow, Limits, Mode, PlanTarget, Snapshot,
};
use pedf_core::assets::Flexibility;
use pedf_core::grid_request::{baseline, delivery, Baseline, GridRequest, RequestKind};
use pedf_core::plan::Plan;
use pedf_core::records::WithoutEms;
use pedf_dispatch::{
    plan_optimized, plan_rule_based, CurrentState, GridCap, PlanOptions, TerminalSoc,
};
use serde::Serialize;

use crate::physics::{BatteryModel, Car, Converter, DeferrableModel};
use crate::scenario::Scenario;
use crate::world::{Session, World};

/// A strategy of a backtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// No EMS: PV first, the rest from the grid; cars charge on arrival.
    None,
    /// The rule-based plan, followed by the controller.
    Rule,
    /// The optimiser's plan (day-ahead and re-planned), followed by the controller.
    Optimized,
}

impl StrategyKind {
    /// The strategy's name in reports and arguments (none, rule, optimized).
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::None => "none",
            StrategyKind::Rule => "rule",
            StrategyKind::Optimized => "optimized",
        }
    }
}

/// Energy over the period, kWh.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnergyTotals {
    /// PV the arrays could give, kWh.
    pub pv_available_kwh: f64,
    /// PV used (available less curtailed), kWh.
    pub pv_used_kwh: f64,
    /// PV curtailed, kWh.
    pub pv_curtailed_kwh: f64,
    /// Grid import, kWh.
    pub grid_import_kwh: f64,
    /// Grid export, kWh.
    pub grid_export_kwh: f64,
    /// Battery charge, kWh.
    pub battery_charge_kwh: f64,
    /// Battery discharge, kWh.
    pub battery_discharge_kwh: f64,
    /// Loads served, kWh.
    pub load_kwh: f64,
    /// Curtailable load shed, kWh.
    pub load_shed_kwh: f64,
    /// EV charging, kWh.
    pub ev_kwh: f64,
    /// Converter losses, kWh.
    pub converter_losses_kwh: f64,
    /// Battery losses, kWh.
    pub battery_losses_kwh: f64,
    /// Stored energy at the end less at the start, kWh.
    pub battery_stored_change_kwh: f64,
    /// (PV used + import) - (loads + EV + export + converter and battery losses + stored
    /// change), from the period's totals and the battery's state: should be 0.
    pub balance_residual_kwh: f64,
    /// The residual as a share of the energy supplied.
    pub balance_residual_share: f64,
}

/// Money over the period, CNY.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CostTotals {
    /// Import at time-of-use prices, CNY.
    pub energy_cost_cny: f64,
    /// Demand charges of the months, CNY.
    pub demand_charge_cny: f64,
    /// Export revenue, CNY.
    pub export_revenue_cny: f64,
    /// Battery wear at the park's cost per kWh discharged, CNY.
    pub degradation_cny: f64,
    /// Shed curtailable load at its value of lost load, CNY.
    pub load_shed_cny: f64,
    /// energy + demand + degradation + load shed - export revenue.
    pub net_cny: f64,
}

/// Carbon over the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CarbonTotals {
    /// Grid import x the annual grid factor (Scope 2, location-based).
    pub location_kg: f64,
    /// Net delivered PV (delivered on site or to the grid meter, less the park's auxiliary
    /// import and PV lost in storage: ACM0002's EG) x the grid factor; it depends on the
    /// strategy (a battery's round-trip losses on PV are not delivered).
    pub avoided_pv_kg: f64,
    /// Share of consumption served by PV, directly or through the battery.
    pub self_sufficiency: f64,
    /// Share of PV used in the park.
    pub self_consumption: f64,
    /// Hourly carbon-free-energy score of consumption.
    pub cfe_score: f64,
    /// The annual grid factor used, kg CO2/kWh.
    pub grid_factor_kg_per_kwh: f64,
}

/// EV service.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvTotals {
    /// Sessions that came.
    pub sessions: usize,
    /// Sessions that found no free charger.
    pub turned_away: usize,
    /// Energy delivered, kWh.
    pub delivered_kwh: f64,
    /// Energy the cars asked for, kWh.
    pub wanted_kwh: f64,
    /// Asked for and not delivered, kWh.
    pub unmet_kwh: f64,
    /// Sessions that left with less than they asked.
    pub sessions_unmet: usize,
    /// Sessions that left with less than their charger could have given them in their stay
    /// (the lesser of the energy asked and maximum power x whole intervals present), and the
    /// energy they missed: what the EMS, not the charger or the car's stay, left undone.
    pub sessions_short_of_deliverable: usize,
    /// The energy they missed, kWh.
    pub short_of_deliverable_kwh: f64,
}

/// How the planner did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SolverTotals {
    /// Plans made (day-ahead and re-plans).
    pub plans: usize,
    /// Plans where the rule-based fallback stood in for the optimiser.
    pub fallbacks: usize,
    /// Time in the solver, s.
    pub solve_seconds: f64,
    /// Relative gap of the plans: median, 95th percentile and largest (a plan with an
    /// objective near zero can show a large relative gap on a few CNY).
    pub median_gap: Option<f64>,
    /// 95th percentile of the plans' relative gaps.
    pub p95_gap: Option<f64>,
    /// The largest relative gap.
    pub max_gap: Option<f64>,
    /// Plans made by the LP dive without branch and bound (node limit 0), their gap measured
    /// against the linear relaxation.
    pub lp_dive: usize,
    /// Plans that stopped at the time limit before the gap (not reproducible: see the note).
    pub time_limited: usize,
    /// Plans that stopped at the node limit before the gap.
    pub node_limited: usize,
    /// MIP plans that stopped before the solver had a bound (gap unknown).
    pub gap_unknown: usize,
}

/// One month of a strategy: its bill term by term, as the grid company and the park see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthRow {
    /// The local month, YYYY-MM.
    pub month: String,
    /// Grid import, kWh.
    pub import_kwh: f64,
    /// Grid export, kWh.
    pub export_kwh: f64,
    /// Import at time-of-use prices.
    pub energy_cny: f64,
    /// The month's basic charge (`DemandCharge::monthly_charge` of its peak), prorated to the
    /// days simulated when the period covers only part of the month.
    pub demand_cny: f64,
    /// Export revenue, CNY.
    pub export_cny: f64,
    /// Battery wear at the park's cost per kWh discharged.
    pub wear_cny: f64,
    /// Shed curtailable load at its value of lost load.
    pub lost_load_cny: f64,
    /// energy + demand + wear + lost load - export.
    pub net_cny: f64,
    /// Scope 2, location-based: import x the grid factor.
    pub location_kg: f64,
    /// Scope 2 without the EMS: the park run without it alongside (`WithoutEms`), what
    /// carbon dual control compares with.
    pub location_without_ems_kg: f64,
    /// Consumption on site (loads and EV at the bus), kWh: Scope 2 / consumption is the
    /// month's intensity.
    pub consumption_kwh: f64,
    /// The month's highest interval-average import (the demand meter's window when the
    /// interval is 15 minutes).
    pub peak_import_kw: f64,
}

/// The result of one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    /// The strategy.
    pub strategy: StrategyKind,
    /// Energy over the period.
    pub energy: EnergyTotals,
    /// Money over the period.
    pub cost: CostTotals,
    /// Carbon over the period.
    pub carbon: CarbonTotals,
    /// EV service.
    pub ev: EvTotals,
    /// The highest interval-average import, kW.
    pub peak_import_kw: f64,
    /// Discharged energy / usable capacity (equivalent full cycles).
    pub battery_cycles: f64,
    /// Deferrable load energy not delivered by its deadline, kWh.
    pub deferrable_unmet_kwh: f64,
    /// How the planner did.
    pub solver: SolverTotals,
    /// Intervals where the controller could not keep a grid limit.
    pub alarm_intervals: usize,
    /// Each month's bill and carbon.
    pub monthly: Vec<MonthRow>,
    /// Per interval: grid kW (+import) and battery SoC %, for plots.
    #[serde(skip)]
    pub grid_kw: Vec<f64>,
    /// Battery state of charge per interval, % (for plots).
    #[serde(skip)]
    pub soc_pct: Vec<f64>,
    /// Wall-clock time the strategy took, s.
    pub wall_seconds: f64,
    /// The scenario's grid requests in the period and what the strategy delivered of each.
    pub grid_requests: Vec<RequestResult>,
    /// What delivering them cost the strategy: the same period run again without them (none
    /// when the period has no request, and for `none`, which does not respond).
    pub delivering: Option<DeliveringCost>,
}

/// What delivering a scenario's grid requests cost a strategy, against the same strategy over
/// the same period and world without them (a paired run): the bill's change, the settlement
/// and Scope 2's change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveringCost {
    /// The net bill (energy + demand + wear + lost load - export) without the requests, CNY.
    pub bill_without_cny: f64,
    /// The net bill with them, CNY.
    pub bill_with_cny: f64,
    /// The demand charge's part of the change, CNY (a request can move the month's peak).
    pub demand_change_cny: f64,
    /// The settlements of the requests measured (price x delivered), CNY.
    pub settlement_cny: f64,
    /// The bill's change less the settlements: what delivering cost the park, CNY (negative:
    /// it paid).
    pub net_cny: f64,
    /// Scope 2's change, kg CO2 (location-based).
    pub scope2_change_kg: f64,
}

impl DeliveringCost {
    /// The paired run's figures: `with` the requests, `without` them.
    pub fn of(with: &StrategyResult, without: &StrategyResult) -> DeliveringCost {
        let settlement_cny: f64 = with
            .grid_requests
            .iter()
            .filter_map(|r| r.settlement_cny)
            .sum();
        let change = with.cost.net_cny - without.cost.net_cny;
        DeliveringCost {
            bill_without_cny: without.cost.net_cny,
            bill_with_cny: with.cost.net_cny,
            demand_change_cny: with.cost.demand_charge_cny - without.cost.demand_charge_cny,
            settlement_cny,
            net_cny: change - settlement_cny,
            scope2_change_kg: with.carbon.location_kg - without.carbon.location_kg,
        }
    }
}

/// A grid request of the scenario and what a strategy delivered of it, against the simulated
/// park's own baseline (`pedf_core::grid_request::baseline` over the strategy's records: the
/// same intervals of its last like days).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestResult {
    /// The request's id.
    pub id: String,
    /// Its kind (`cap_import`, `reduce_import`, `cap_export`).
    pub kind: String,
    /// Its kW.
    pub kw: f64,
    /// Its window, RFC 3339 in the park's zone.
    pub start: String,
    /// The window's end.
    pub end: String,
    /// What it asked over the window against the baseline, kWh (none without a baseline).
    pub requested_kwh: Option<f64>,
    /// What the park delivered of it, kWh.
    pub delivered_kwh: Option<f64>,
    /// Delivered over requested.
    pub share: Option<f64>,
    /// Price x delivered, CNY.
    pub settlement_cny: Option<f64>,
    /// Import (cap and reduction) or export (export cap) above what the request allows in its
    /// window, or net export short of its floor (export floor), kWh: what the strategy did
    /// not hold.
    pub over_kwh: f64,
    /// Why no delivery is measured, when none is.
    pub why: Option<String>,
}

/// A backtest's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// The scenario's name.
    pub scenario: String,
    /// The park id.
    pub park: String,
    /// The first day simulated, YYYY-MM-DD.
    pub first_day: String,
    /// Days simulated.
    pub days: u32,
    /// The seed of the weather and the world.
    pub seed: u64,
    /// The interval, minutes.
    pub interval_minutes: u32,
    /// Each strategy's result.
    pub results: Vec<StrategyResult>,
    /// Interval starts (for plots).
    #[serde(skip)]
    pub starts: Vec<DateTime<Utc>>,
}

/// The largest share of the supplied energy a period's balance may miss (0.01 %).
pub const BALANCE_TOLERANCE: f64 = 1e-4;

impl Backtest {
    /// The first strategy whose period energy balance misses more than
    /// [`BALANCE_TOLERANCE`], said as a simulator fault; `None` when every balance closes.
    pub fn balance_fault(&self) -> Option<String> {
        self.results.iter().find(|r| r.energy.balance_residual_share > BALANCE_TOLERANCE).map(|r| {
            format!(
                "{}: the period's energy balance misses {:.3} kWh ({:.4} %), above 0.01 %: a simulator fault, please report it",
                r.strategy.name(),
                r.energy.balance_residual_kwh,
                100.0 * r.energy.balance_residual_share
            )
        })
    }
}

/// Runs `strategies` over `days` days from the scenario's start. `progress` is called after
/// every simulated day with (days done, days in all, over all strategies).
pub fn run(
    s: &Scenario,
    days: u32,
    strategies: &[StrategyKind],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Backtest, String> {
    if days == 0 {
        return Err("--days must be at least 1".into());
    }
    let world = World::build(s, s.start, days)?;
    // A strategy that responds to grid requests in the period runs again without them: what
    // delivering them cost it.
    let mut plain = s.clone();
    plain.grid_requests.clear();
    let (from, to) = period(&world, &s.park.clock);
    let any_request = s.grid_requests.iter().any(|r| r.end > from && r.start < to);
    let paired = |k: StrategyKind| k != StrategyKind::None && any_request;
    let runs: u64 = strategies
        .iter()
        .map(|&k| if paired(k) { 2 } else { 1 })
        .sum();
    let total = u64::from(days) * runs;
    let mut done = 0;
    let mut results = Vec::new();
    for &k in strategies {
        let mut r = run_one(s, &world, k, &mut |d| progress(done + d, total))?;
        done += u64::from(days);
        if paired(k) {
            let without = run_one(&plain, &world, k, &mut |d| progress(done + d, total))?;
            done += u64::from(days);
            r.delivering = Some(DeliveringCost::of(&r, &without));
        }
        results.push(r);
    }
    Ok(Backtest {
        scenario: s.name.clone(),
        park: s.park.id.clone(),
        first_day: world.first_day.to_string(),
        days,
        seed: s.seed,
        interval_minutes: s.park.clock.interval.minutes(),
        results,
        starts: world.starts.clone(),
    })
}

/// The period the world covers: its first interval's start, its last one's end.
fn period(w: &World, clock: &pedf_core::time::ParkClock) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = w.starts[0];
    (
        from,
        w.starts
            .last()
            .map_or(from, |t| *t + clock.interval.duration()),
    )
}

struct ActivePlan {
    from: usize,
    plan: Plan,
}

fn month_key(t: DateTime<chrono_tz::Tz>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

fn run_one(
    s: &Scenario,
    w: &World,
    kind: StrategyKind,
    progress: &mut dyn FnMut(u64),
) -> Result<StrategyResult, String> {
    let started = Instant::now();
    let park = &s.park;
    let clock = &park.clock;
    let dt = w.dt_h;
    let n = w.starts.len();
    let limits = Limits::of(park);
    let conv = Converter {
        eta_in: park.converter.efficiency_ac_to_dc,
        eta_out: park.converter.efficiency_dc_to_ac,
    };
    let mut battery = if kind == StrategyKind::None {
        None
    } else {
        BatteryModel::of(park)
    };
    // The idle battery of `none` still holds its energy (for the balance): keep the model but
    // never command it.
    let idle_battery = BatteryModel::of(park);
    let stored0 = battery
        .as_ref()
        .or(idle_battery.as_ref())
        .map_or(0.0, |b| b.stored_kwh);
    let mut defer = DeferrableModel::of(park);
    // The same park without the EMS, alongside: the month's Scope 2 without the EMS that carbon
    // dual control holds the plans to (deferrable loads flat, cars charged on arrival).
    let mut without = WithoutEms::new();
    let mut defer_without = DeferrableModel::of(park);
    let curtail: Vec<(String, f64, f64)> = park
        .flexible_loads
        .iter()
        .filter_map(|l| match l.flexibility {
            Flexibility::Curtailable {
                curtailable_share,
                value_of_lost_load,
            } => Some((l.id.clone(), curtailable_share, value_of_lost_load.0)),
            _ => None,
        })
        .collect();
    let fixed_ids: Vec<String> = park.fixed_loads.iter().map(|l| l.id.clone()).collect();
    let chargers: Vec<(String, f64, f64)> = park
        .ev_chargers
        .iter()
        .map(|c| (c.id.clone(), c.min_power.0, c.max_power.0))
        .collect();
    let mut cars: BTreeMap<String, Car> = BTreeMap::new();
    let mut next_session = 0;
    let deg = park.batteries.first().map_or(0.0, |b| b.degradation_cost.0);
    let usable: f64 = park.batteries.iter().map(|b| b.usable_energy().0).sum();
    let demand = park.tariff.demand;

    let carbon_opts = CarbonOptions {
        grid_factor: w.grid_factor,
        hourly_factors: Default::default(),
        baseline_factor: w.grid_factor,
        residual_factor: w.grid_factor,
        covered_mwh: 0.0,
        grid_cfe_share: 0.0,
        // The simulated park runs its batteries as one: one pooled store at the lowest round
        // trip, starting with what they hold (`stored0`, the sum of their initial charges).
        batteries: pedf_carbon::account::BatteryParams::of_park(park),
        clock: *clock,
    };
    let mut accountant = Accountant::new(carbon_opts);
    let mut e = EnergyTotals::default();
    let mut c = CostTotals::default();
    let mut ev = EvTotals {
        turned_away: w.turned_away,
        ..Default::default()
    };
    let mut solver = SolverTotals::default();
    let mut gaps = Vec::new();
    let mut alarms = 0;
    let mut months: BTreeMap<String, MonthRow> = BTreeMap::new();
    let mut month_days: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut grid_series = Vec::with_capacity(n);
    let mut soc_series = Vec::with_capacity(n);
    let mut active: Option<ActivePlan> = None;
    let mut day_start_stored = stored0;
    let mut deferrable_unmet = 0.0;
    let every = (s.optimized.replan_every_min / clock.interval.minutes()).max(1) as usize;
    // Grid requests in the period: each one's baseline made from the strategy's own records
    // when its day starts; the EMS's strategies hold them (the park without an EMS does not).
    let period_end = period(w, clock).1;
    let requests: Vec<&GridRequest> = s
        .grid_requests
        .iter()
        .filter(|r| r.end > w.starts[0] && r.start < period_end)
        .collect();
    let request_days: BTreeSet<NaiveDate> = requests
        .iter()
        .map(|r| clock.local(r.start).date_naive())
        .collect();
    let mut baselines: BTreeMap<String, Result<Baseline, String>> = BTreeMap::new();
    let mut records: Vec<IntervalRecord> =
        Vec::with_capacity(if requests.is_empty() { 0 } else { n });
    let holds = kind != StrategyKind::None;

    for i in 0..n {
        let t = w.starts[i];
        let local = clock.local(t);
        let mkey = month_key(local);
        let step_end = t + clock.interval.duration();
        let day_index = i / w.per_day;
        let new_day = i % w.per_day == 0;
        if new_day {
            for d in &mut defer {
                deferrable_unmet +=
                    (d.energy_kwh - d.delivered_kwh).max(0.0) * f64::from(u8::from(i > 0));
                d.new_day();
            }
            for d in &mut defer_without {
                d.new_day();
            }
            day_start_stored = battery.as_ref().map_or(stored0, |b| b.stored_kwh);
            let date = local.date_naive();
            let first =
                chrono::NaiveDate::from_ymd_opt(date.year(), date.month(), 1).expect("date");
            let next = if date.month() == 12 {
                chrono::NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
            }
            .expect("date");
            let entry = month_days
                .entry(mkey.clone())
                .or_insert((0, (next - first).num_days() as u32));
            entry.0 += 1;
        }
        // Cars leave (what they did not get is unmet) and arrive (present for whole intervals).
        let gone: Vec<String> = cars
            .iter()
            .filter(|(_, car)| w.sessions[car.session].departure < step_end)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let car = cars.remove(&id).expect("present");
            without.depart(&id, Some(car.got_kwh));
            finish_car(&mut ev, &car);
        }
        let mut arrived = false;
        while next_session < w.sessions.len() && w.sessions[next_session].arrival <= t {
            let sess = &w.sessions[next_session];
            // Present for the whole intervals from this one up to the last that ends by the
            // departure; one shorter than what is left of this interval never charges.
            let whole = if sess.departure >= step_end {
                ((sess.departure - step_end).num_seconds()
                    / clock.interval.duration().num_seconds()) as usize
                    + 1
            } else {
                0
            };
            let max_kw = chargers
                .iter()
                .find(|c| c.0 == sess.charger)
                .map_or(0.0, |c| c.2);
            let car = Car {
                session: next_session,
                need_kwh: sess.energy_kwh,
                got_kwh: 0.0,
                last: (i + whole).saturating_sub(1),
                deliverable_kwh: max_kw * whole as f64 * dt,
            };
            if whole > 0 {
                arrived = true;
                without.arrive(&sess.charger, sess.energy_kwh, max_kw);
                cars.insert(sess.charger.clone(), car);
            } else {
                finish_car(&mut ev, &car);
            }
            next_session += 1;
        }

        // A request's baseline once its day starts (from the days before it).
        for r in &requests {
            let day = clock.local(r.start).date_naive();
            if !baselines.contains_key(&r.id) && t >= clock.start_of_local_day(day) {
                let others: BTreeSet<NaiveDate> = request_days
                    .iter()
                    .filter(|d| **d != day)
                    .copied()
                    .collect();
                baselines.insert(
                    r.id.clone(),
                    baseline(r, &records, clock, &s.baseline, &others),
                );
            }
        }
        let caps_at = |at: DateTime<Utc>| request_caps(&requests, &baselines, at);
        // Planning: day-ahead at midnight, a re-plan every `replan_every_min` and when a car
        // arrives (the plan in force knows only the forecast's cars: one that came at another
        // time or charger would get nothing until the next re-plan).
        if kind != StrategyKind::None && (new_day || i % every == 0 || arrived) {
            let day_end = (day_index + 1) * w.per_day;
            let mut list: Vec<(Session, f64)> = cars
                .values()
                .map(|car| {
                    (
                        w.sessions[car.session].clone(),
                        (car.need_kwh - car.got_kwh).max(0.0),
                    )
                })
                .collect();
            let occupied: Vec<&String> = cars.keys().collect();
            for f in &w.sessions_forecast[day_index] {
                if f.arrival >= t
                    && !(occupied.contains(&&f.charger)
                        && f.arrival < t + chrono::Duration::hours(1))
                {
                    list.push((f.clone(), f.energy_kwh));
                }
            }
            let inputs = w.inputs(i, day_end, &list);
            let bat = battery.as_ref();
            let mut soc_kwh = BTreeMap::new();
            if let Some(b) = bat {
                let cap: f64 = park.batteries.iter().map(|x| x.capacity.0).sum();
                for pb in &park.batteries {
                    soc_kwh.insert(pb.id.clone(), b.stored_kwh * pb.capacity.0 / cap);
                }
            }
            let month_peak = months.get(&mkey).map_or(0.0, |m| m.peak_import_kw);
            let state = CurrentState {
                soc_kwh,
                ev_delivered_kwh: BTreeMap::new(),
                deferrable_delivered_kwh: defer
                    .iter()
                    .map(|d| (d.id.clone(), d.delivered_kwh))
                    .collect(),
                month_peak_import_kw: month_peak,
                month_scope2_kg: months.get(&mkey).map_or(0.0, |m| m.location_kg),
                month_scope2_without_ems_kg: months
                    .get(&mkey)
                    .map_or(0.0, |m| m.location_without_ems_kg),
                month_consumption_kwh: months.get(&mkey).map_or(0.0, |m| m.consumption_kwh),
                year_scope2_kg: months
                    .iter()
                    .filter(|(k, _)| k[..4] == mkey[..4])
                    .map(|(_, m)| m.location_kg)
                    .sum(),
                grid_caps: inputs
                    .starts
                    .iter()
                    .map(|t| (*t, caps_at(*t)))
                    .filter(|(_, c)| *c != GridCap::default())
                    .collect(),
            };
            let cap = bat.map_or(1.0, |b| b.capacity_kwh);
            let opts = PlanOptions {
                mip_gap: s.optimized.mip_gap,
                time_limit_s: if new_day {
                    s.optimized.day_ahead_time_limit_s
                } else {
                    s.optimized.replan_time_limit_s
                },
                max_nodes: Some(if new_day {
                    s.optimized.day_ahead_max_nodes
                } else {
                    s.optimized.replan_max_nodes
                }),
                // One thread: the same answer on every machine.
                threads: Some(1),
                // Polishing the grid directions costs an LP per binary interval: for the
                // day-ahead plan, not for the hourly re-plans (measured: 14 June days 5.6 s
                // with every plan polished, against 1.5 s with none).
                polish_directions: new_day,
                // Rolling plans end at midnight: what the battery lacks then is refilled the
                // next night, priced so.
                terminal_refill_priced: true,
                terminal_soc: TerminalSoc::AtLeast(
                    (day_start_stored / cap).min(park.batteries.first().map_or(1.0, |b| b.soc_max)),
                ),
                ..PlanOptions::default()
            };
            let planned = match kind {
                StrategyKind::Rule => plan_rule_based(park, &inputs, &opts, &state),
                _ => plan_optimized(park, &inputs, &opts, &state),
            };
            match planned {
                Ok(plan) => {
                    solver.plans += 1;
                    solver.solve_seconds += plan.solver.seconds + plan.solver.build_seconds;
                    if plan.solver.status == "fallback" {
                        solver.fallbacks += 1;
                    }
                    match plan.solver.status.as_str() {
                        "time_limit" => solver.time_limited += 1,
                        "node_limit" => solver.node_limited += 1,
                        "lp_dive" => solver.lp_dive += 1,
                        _ => {}
                    }
                    match plan.solver.mip_gap {
                        Some(g) => gaps.push(g),
                        None if plan.solver.binaries > 0 => solver.gap_unknown += 1,
                        None => {}
                    }
                    active = Some(ActivePlan { from: i, plan });
                }
                Err(err) => {
                    solver.fallbacks += 1;
                    tracing::warn!(error = %err, "planning failed; the last plan (or none) is followed");
                }
            }
        }
        let plan_iv = active
            .as_ref()
            .and_then(|a| a.plan.intervals.get(i - a.from));

        // The actual interval.
        let pv_avail: f64 = w.pv_actual.values().map(|v| v[i]).sum();
        let fixed: f64 = fixed_ids.iter().map(|id| w.load_actual[id][i]).sum();
        let mut load = fixed;
        let mut shed_kwh_cost = 0.0;
        // What the peak guard may still shed, per curtailable load: (room kW, VOLL).
        let mut shed_room: Vec<(f64, f64)> = Vec::new();
        for (id, share, voll) in &curtail {
            let demand = w.load_actual[id][i];
            // The plan's shed, shared over the curtailable loads by their demand now.
            let wish = plan_iv.map_or(0.0, |p| {
                p.load_shed_kw * demand / total_curtailable(w, &curtail, i).max(1e-9)
            });
            let shed = wish.clamp(0.0, share * demand);
            load += demand - shed;
            e.load_shed_kwh += shed * dt;
            shed_kwh_cost += shed * dt * voll;
            shed_room.push(((share * demand - shed).max(0.0), *voll));
        }
        let local_min = f64::from(local.hour() * 60 + local.minute());
        for d in &mut defer {
            let wish = match plan_iv {
                Some(p) => p.flexible_loads.get(&d.id).copied().unwrap_or(0.0),
                None => d.flat_kw(),
            };
            load += d.run(wish, local_min, dt);
        }
        let charger_now: Vec<ChargerNow> = chargers
            .iter()
            .filter_map(|(id, min, max)| {
                let car = cars.get(id)?;
                let left = ((car.need_kwh - car.got_kwh) / dt).max(0.0);
                if left <= 1e-9 {
                    return None;
                }
                let top = max.min(left);
                let owed = car.need_kwh - car.got_kwh;
                let hours_left = (car.last + 1).saturating_sub(i) as f64 * dt;
                Some(ChargerNow {
                    id: id.clone(),
                    wanted_kw: top,
                    min_kw: min.min(top),
                    max_kw: top,
                    must_kw: ev_must_kw(owed, *max, hours_left, dt),
                    drawing_kw: None,
                })
            })
            .collect();
        let snapshot = Snapshot {
            pv_available_kw: pv_avail,
            load_kw: load,
            chargers: charger_now,
            battery: battery.as_ref().map(|b| {
                let (ch, dis) = b.limits(dt);
                BatteryNow {
                    soc_pct: b.soc_pct(),
                    max_charge_kw: ch,
                    max_discharge_kw: dis,
                }
            }),
            // The backtest applies the plan's deferrable and shed powers itself (above).
            loads: Vec::new(),
            curtailable_kw: shed_room.iter().map(|r| r.0).sum(),
            // The demand window is the interval here (15 min): the guard is the level itself.
            // None before the month has a level (no peak yet, no target).
            import_guard_kw: Some(
                demand.free_up_to(months.get(&mkey).map_or(0.0, |m| m.peak_import_kw)),
            )
            .filter(|level| {
                kind != StrategyKind::None && demand.marginal_rate() > 0.0 && *level > 0.0
            }),
        };
        // The same mapping as the runtime's (the deferrable loads' powers in it are applied
        // above: the snapshot has no commanded loads, so the controller leaves them).
        let target = plan_iv.map(PlanTarget::of);
        // The grid's caps in force lower the controller's limits (the EMS's strategies).
        let mut limits_now = limits.clone();
        if holds {
            let cap = caps_at(t);
            if let Some(c) = cap.import_kw {
                limits_now.import_kw = limits_now.import_kw.min(c);
            }
            if let Some(c) = cap.export_kw {
                limits_now.export_kw = limits_now.export_kw.min(c);
            }
            if let Some(f) = cap.export_at_least_kw {
                limits_now.export_floor_kw = limits_now.export_floor_kw.max(f);
            }
        }
        let sp = control(&limits_now, &snapshot, target.as_ref(), &Mode::Automatic);
        if !sp.alarms.is_empty() {
            alarms += 1;
        }
        // The peak guard's shed, cheapest value of lost load first.
        let mut guard_shed = sp.shed_kw;
        shed_room.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (room, voll) in &shed_room {
            let x = guard_shed.min(*room).max(0.0);
            load -= x;
            e.load_shed_kwh += x * dt;
            shed_kwh_cost += x * dt * voll;
            guard_shed -= x;
        }
        // Physics.
        let bat_kw = match battery.as_mut() {
            Some(b) => b.apply(sp.battery_kw, dt),
            None => 0.0,
        };
        let mut ev_kw = 0.0;
        let mut per_charger = Vec::new();
        for (id, kw) in &sp.chargers {
            if let Some(car) = cars.get_mut(id) {
                let p = kw.clamp(0.0, ((car.need_kwh - car.got_kwh) / dt).max(0.0));
                car.got_kwh += p * dt;
                ev_kw += p;
                if p > 0.0 {
                    per_charger.push((id.clone(), p * dt));
                }
            }
        }
        let pv_used = sp.pv_kw.clamp(0.0, pv_avail);
        let deficit = load + ev_kw - pv_used - bat_kw;
        let grid = conv.grid_for(deficit);
        let (imp, exp) = (grid.max(0.0), (-grid).max(0.0));
        let (ch, dis) = ((-bat_kw).max(0.0), bat_kw.max(0.0));
        e.pv_available_kwh += pv_avail * dt;
        e.pv_used_kwh += pv_used * dt;
        e.grid_import_kwh += imp * dt;
        e.grid_export_kwh += exp * dt;
        e.battery_charge_kwh += ch * dt;
        e.battery_discharge_kwh += dis * dt;
        e.load_kwh += load * dt;
        e.ev_kwh += ev_kw * dt;
        e.converter_losses_kwh += conv.losses(grid) * dt;
        if let Some(b) = &battery {
            e.battery_losses_kwh +=
                ch * dt * (1.0 - b.eta_charge) + dis * dt * (1.0 / b.eta_discharge - 1.0);
        }
        let price = w.import_price[i];
        c.energy_cost_cny += imp * dt * price;
        c.export_revenue_cny += exp * dt * w.export_price[i];
        c.degradation_cny += dis * dt * deg;
        c.load_shed_cny += shed_kwh_cost;
        let m = months.entry(mkey.clone()).or_insert_with(|| MonthRow {
            month: mkey.clone(),
            ..Default::default()
        });
        m.import_kwh += imp * dt;
        m.export_kwh += exp * dt;
        m.energy_cny += imp * dt * price;
        m.export_cny += exp * dt * w.export_price[i];
        m.wear_cny += dis * dt * deg;
        m.lost_load_cny += shed_kwh_cost;
        m.location_kg += imp * dt * w.grid_factor;
        m.consumption_kwh += (load + ev_kw) * dt;
        m.peak_import_kw = m.peak_import_kw.max(imp);
        grid_series.push(grid);
        soc_series.push(
            battery
                .as_ref()
                .or(idle_battery.as_ref())
                .map_or(0.0, |b| b.soc_pct()),
        );
        let record = IntervalRecord {
            start: t,
            pv_kwh: pv_used * dt,
            grid_import_kwh: imp * dt,
            grid_export_kwh: exp * dt,
            battery_charge_kwh: ch * dt,
            battery_discharge_kwh: dis * dt,
            load_kwh: load * dt,
            ev_kwh: ev_kw * dt,
            ev_chargers: per_charger,
            // The simulated batteries run as one.
            batteries: Vec::new(),
        };
        if let Some(m) = months.get_mut(&mkey) {
            // Without the EMS: nothing shed, deferrable loads flat, cars on arrival.
            let flat: f64 = defer_without
                .iter_mut()
                .map(|d| {
                    let kw = d.flat_kw();
                    d.run(kw, local_min, dt)
                })
                .sum();
            let loads = fixed
                + curtail
                    .iter()
                    .map(|(id, _, _)| w.load_actual[id][i])
                    .sum::<f64>()
                + flat;
            let (imp_without, _) = without.interval(dt, loads * dt, pv_avail * dt, conv.eta_in);
            m.location_without_ems_kg += imp_without * w.grid_factor;
        }
        accountant.push(&record, false);
        if !requests.is_empty() {
            records.push(record);
        }
        if (i + 1) % w.per_day == 0 {
            progress(((i + 1) / w.per_day) as u64);
        }
    }
    // The period ends: cars still present and deferrable energy still due are counted.
    for d in &defer {
        deferrable_unmet += (d.energy_kwh - d.delivered_kwh).max(0.0);
    }
    // A car that stays past the end is counted, but not as short: it is not yet late.
    for car in cars.values() {
        ev.sessions += 1;
        ev.wanted_kwh += car.need_kwh;
        ev.delivered_kwh += car.got_kwh;
    }
    // Each month's bill: the basic charge on its peak as the tariff bills it (prorated to the
    // days simulated in a month the period covers only in part).
    for (k, m) in &mut months {
        let (sim, all) = month_days[k];
        m.demand_cny =
            park.tariff.demand.monthly_charge(m.peak_import_kw) * f64::from(sim) / f64::from(all);
        c.demand_charge_cny += m.demand_cny;
        m.net_cny = m.energy_cny + m.demand_cny + m.wear_cny + m.lost_load_cny - m.export_cny;
    }
    c.net_cny = c.energy_cost_cny + c.demand_charge_cny + c.degradation_cny + c.load_shed_cny
        - c.export_revenue_cny;
    e.pv_curtailed_kwh = e.pv_available_kwh - e.pv_used_kwh;
    let stored_end = battery.as_ref().map_or(stored0, |b| b.stored_kwh);
    e.battery_stored_change_kwh = stored_end - stored0;
    let supply = e.pv_used_kwh + e.grid_import_kwh;
    e.balance_residual_kwh = supply
        - (e.load_kwh
            + e.ev_kwh
            + e.grid_export_kwh
            + e.converter_losses_kwh
            + e.battery_losses_kwh
            + e.battery_stored_change_kwh);
    e.balance_residual_share = if supply > 0.0 {
        e.balance_residual_kwh.abs() / supply
    } else {
        0.0
    };
    let grid_requests: Vec<RequestResult> = requests
        .iter()
        .map(|r| request_result(r, baselines.get(&r.id), &records, clock))
        .collect();
    let totals = accountant.totals();
    gaps.sort_by(f64::total_cmp);
    solver.median_gap = gaps.get(gaps.len() / 2).copied();
    solver.p95_gap = gaps.get(gaps.len() * 95 / 100).copied();
    solver.max_gap = gaps.last().copied();
    Ok(StrategyResult {
        strategy: kind,
        peak_import_kw: months
            .values()
            .map(|m| m.peak_import_kw)
            .fold(0.0, f64::max),
        battery_cycles: if usable > 0.0 {
            e.battery_discharge_kwh / usable
        } else {
            0.0
        },
        energy: e,
        cost: c,
        carbon: CarbonTotals {
            location_kg: totals.location_kg,
            avoided_pv_kg: totals.avoided_pv_kg,
            self_sufficiency: totals.self_sufficiency,
            self_consumption: totals.self_consumption,
            cfe_score: totals.cfe_score,
            grid_factor_kg_per_kwh: w.grid_factor,
        },
        ev,
        deferrable_unmet_kwh: deferrable_unmet,
        solver,
        alarm_intervals: alarms,
        monthly: months.into_values().collect(),
        grid_kw: grid_series,
        soc_pct: soc_series,
        wall_seconds: started.elapsed().as_secs_f64(),
        grid_requests,
        delivering: None,
    })
}

/// The caps the `requests` in force at `at` ask at the connection, kW: a reduction is its
/// baseline less its kW (none without a baseline).
fn request_caps(
    requests: &[&GridRequest],
    baselines: &BTreeMap<String, Result<Baseline, String>>,
    at: DateTime<Utc>,
) -> GridCap {
    let mut cap = GridCap::default();
    let lower = |slot: &mut Option<f64>, kw: f64| {
        *slot = Some(slot.map_or(kw, |c: f64| c.min(kw)));
    };
    for r in requests.iter().filter(|r| r.start <= at && at < r.end) {
        match r.kind {
            RequestKind::CapImport(c) => lower(&mut cap.import_kw, c),
            RequestKind::CapExport(c) => lower(&mut cap.export_kw, c),
            RequestKind::ReduceImport(x) => {
                let b = baselines.get(&r.id).and_then(|b| b.as_ref().ok());
                if let Some((_, imp, _)) = b.and_then(|b| b.intervals.iter().find(|i| i.0 == at)) {
                    lower(&mut cap.import_kw, (imp - x).max(0.0));
                }
            }
            RequestKind::ExportAtLeast(x) => {
                cap.export_at_least_kw = Some(cap.export_at_least_kw.map_or(x, |f| f.max(x)));
            }
        }
    }
    cap
}

/// What a strategy delivered of `r` against its baseline, from the strategy's `records`.
fn request_result(
    r: &GridRequest,
    b: Option<&Result<Baseline, String>>,
    records: &[IntervalRecord],
    clock: &pedf_core::time::ParkClock,
) -> RequestResult {
    let h = clock.interval.hours().0;
    let in_window: Vec<&IntervalRecord> = records
        .iter()
        .filter(|x| r.start <= x.start && x.start < r.end)
        .collect();
    let mut out = RequestResult {
        id: r.id.clone(),
        kind: r.kind.name().into(),
        kw: r.kind.kw(),
        start: clock.format(r.start),
        end: clock.format(r.end),
        requested_kwh: None,
        delivered_kwh: None,
        share: None,
        settlement_cny: None,
        over_kwh: 0.0,
        why: None,
    };
    match b {
        None => out.why = Some("the period ends before its day".into()),
        Some(Err(why)) => out.why = Some(why.clone()),
        Some(Ok(b)) => {
            let d = delivery(r, b, records, clock);
            out.requested_kwh = Some(d.requested_kwh);
            out.delivered_kwh = Some(d.delivered_kwh);
            out.share = Some(d.share);
            out.settlement_cny = d.settlement_cny;
        }
    }
    // What the window's records did not hold of it.
    let baselines: BTreeMap<String, Result<Baseline, String>> = b
        .map(|b| [(r.id.clone(), b.clone())].into())
        .unwrap_or_default();
    for x in in_window {
        let cap = request_caps(&[r], &baselines, x.start);
        if let Some(c) = cap.import_kw {
            out.over_kwh += (x.grid_import_kwh - c * h).max(0.0);
        }
        if let Some(c) = cap.export_kw {
            out.over_kwh += (x.grid_export_kwh - c * h).max(0.0);
        }
        if let Some(f) = cap.export_at_least_kw {
            out.over_kwh += (f * h - (x.grid_export_kwh - x.grid_import_kwh)).max(0.0);
        }
    }
    out
}

fn total_curtailable(w: &World, curtail: &[(String, f64, f64)], i: usize) -> f64 {
    curtail.iter().map(|(id, _, _)| w.load_actual[id][i]).sum()
}

fn finish_car(ev: &mut EvTotals, car: &Car) {
    ev.sessions += 1;
    ev.wanted_kwh += car.need_kwh;
    ev.delivered_kwh += car.got_kwh;
    let short = car.need_kwh - car.got_kwh;
    if short > 0.01 {
        ev.unmet_kwh += short;
        ev.sessions_unmet += 1;
    }
    // Short of what its charger could have given it in its stay: the EMS's doing.
    let owed = car.need_kwh.min(car.deliverable_kwh) - car.got_kwh;
    if owed > 0.01 {
        ev.short_of_deliverable_kwh += owed;
        ev.sessions_short_of_deliverable += 1;
    }
}
