//! `pedf plan`: reads the park and a folder of day inputs, plans, and writes the plan as a
//! summary table, JSON, CSV and a plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pedf_core::plan::Plan;
use pedf_core::Park;
use pedf_dispatch::{plan_optimized, plan_rule_based, CurrentState, PlanOptions};

use crate::{print_diagnostics, UserError};

/// What `pedf plan` was asked for.
pub struct PlanArgs {
    pub park: PathBuf,
    pub inputs: PathBuf,
    pub date: String,
    pub format: Option<String>,
    pub out: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub strategy: String,
    pub options: PlanOptions,
    pub records_out: Option<PathBuf>,
    /// Local days in the horizon.
    pub days: u32,
    /// The billing month's peak import so far, kW.
    pub month_peak_kw: f64,
    /// Interval records measured so far (the month and year before the plan).
    pub records: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, UserError> {
    std::fs::read(path).map_err(|e| UserError(format!("{}: cannot read: {e}", path.display())))
}

/// Loads the park file, printing its diagnostics; an invalid park is a user error.
pub fn load_park_file(path: &Path) -> Result<Park, UserError> {
    let name = path.display().to_string();
    let bytes = read(path)?;
    let loaded = pedf_core::config::load_park(&name, &bytes);
    print_diagnostics(&loaded.diagnostics);
    loaded.value.ok_or_else(|| {
        UserError(format!(
            "{name}: the park file has errors (see above); `pedf check {name}` lists them"
        ))
    })
}

pub fn run(args: PlanArgs) -> Result<(), UserError> {
    let date =
        pedf_core::time::parse_date(&args.date).map_err(|e| UserError(format!("--date: {e}")))?;
    let park = load_park_file(&args.park)?;
    let inputs = load_inputs(&park, &args.inputs, date, args.days)?;
    let mut state = CurrentState {
        month_peak_import_kw: args.month_peak_kw,
        ..CurrentState::default()
    };
    if let Some(path) = &args.records {
        let name = path.display().to_string();
        let records = crate::carbon_cmd::read_records_file(path, &park.clock)
            .map_err(|e| UserError(format!("--records: {}", e.0)))?;
        let start = inputs.starts[0];
        let so_far = pedf_core::records::PeriodSoFar::of(
            &records,
            &park.clock,
            start,
            park.carbon.grid_factor.value.0,
            park.converter.efficiency_ac_to_dc,
        );
        if records.iter().any(|r| r.start >= start) {
            eprintln!(
                "note: --records {name}: records from the plan's start on ({}) are not counted as the month so far",
                park.clock.format(start)
            );
        }
        state.count_so_far(&so_far);
    }
    let opts = &args.options;
    let started = std::time::Instant::now();
    let plan = match args.strategy.as_str() {
        "rule" => plan_rule_based(&park, &inputs, opts, &state),
        _ => plan_optimized(&park, &inputs, opts, &state),
    }
    .map_err(|e| UserError(format!("planning failed: {e}")))?;
    let baseline = if plan.strategy == pedf_core::plan::Strategy::Optimized {
        plan_rule_based(&park, &inputs, opts, &state).ok()
    } else {
        None
    };
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "planned");
    if let Some(p) = &args.records_out {
        let records = pedf_carbon::records::records_from_plan(&plan, park.clock.interval.hours().0);
        let mut text = format!(
            "# Interval energy records of the plan {} {} (simulated, not measured)\n",
            park.id, date
        );
        text.push_str(&pedf_carbon::records::write_records(&records, &park.clock));
        std::fs::write(p, text)
            .map_err(|e| UserError(format!("--records-out: cannot write {}: {e}", p.display())))?;
    }

    match args.format.as_deref() {
        Some(fmt) => {
            let text = match fmt {
                "json" => to_json(&plan)?,
                "csv" => to_csv(&plan),
                _ => summary(&park, date, &plan, baseline.as_ref()),
            };
            match &args.out {
                Some(p) => write(p, &text)?,
                None => print!("{text}"),
            }
            if let Some(plot) = &args.plot {
                pedf_report::plot_plan(&plan, &park, plot)
                    .map_err(|e| UserError(format!("{}: {e}", plot.display())))?;
            }
        }
        None => {
            print!("{}", summary(&park, date, &plan, baseline.as_ref()));
            std::fs::create_dir_all(&args.out_dir).map_err(|e| {
                UserError(format!("{}: cannot create: {e}", args.out_dir.display()))
            })?;
            let stem = args.out_dir.join(format!("plan-{date}"));
            let json = stem.with_extension("json");
            let csv = stem.with_extension("csv");
            let svg = args
                .plot
                .clone()
                .unwrap_or_else(|| stem.with_extension("svg"));
            write(&json, &to_json(&plan)?)?;
            write(&csv, &to_csv(&plan))?;
            pedf_report::plot_plan(&plan, &park, &svg)
                .map_err(|e| UserError(format!("{}: {e}", svg.display())))?;
            println!(
                "wrote {}, {}, {}",
                json.display(),
                csv.display(),
                svg.display()
            );
        }
    }
    Ok(())
}

/// Reads and checks the day inputs of `date` from a folder (`pedf plan --inputs`).
pub fn load_inputs(
    park: &Park,
    dir: &Path,
    date: NaiveDate,
    days: u32,
) -> Result<pedf_core::inputs::DayInputs, UserError> {
    use pedf_core::inputs::FolderError;
    pedf_core::inputs::load_days_inputs_from_dir(park, dir, date, days).map_err(|e| match e {
        FolderError::NotAFolder(_) => UserError(format!("--inputs: {e}")),
        FolderError::Read { .. } => UserError(e.to_string()),
        FolderError::Invalid { diagnostics, .. } => {
            print_diagnostics(&diagnostics);
            UserError(format!(
                "{}: the day inputs have {} error(s) (see above)",
                dir.display(),
                diagnostics.len()
            ))
        }
    })
}

fn write(path: &Path, text: &str) -> Result<(), UserError> {
    std::fs::write(path, text)
        .map_err(|e| UserError(format!("{}: cannot write: {e}", path.display())))
}

fn to_json(plan: &Plan) -> Result<String, UserError> {
    serde_json::to_string_pretty(plan)
        .map(|s| s + "\n")
        .map_err(|e| UserError(format!("cannot encode the plan as JSON: {e}")))
}

/// One row per interval; EV chargers as `ev:<id>` columns.
pub fn to_csv(plan: &Plan) -> String {
    let chargers: Vec<String> = plan
        .intervals
        .first()
        .map(|i| i.ev_chargers.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = String::from("start,import_price_cny_per_kwh,export_price_cny_per_kwh,carbon_intensity_kg_per_kwh,grid_import_kw,grid_export_kw,pv_available_kw,pv_used_kw,battery_charge_kw,battery_discharge_kw,battery_soc_kwh,fixed_load_kw,flexible_load_kw,load_shed_kw,load_unserved_kw,ev_kw");
    for c in &chargers {
        let _ = write!(out, ",ev:{c}");
    }
    out.push('\n');
    for i in &plan.intervals {
        let _ = write!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
            i.start.to_rfc3339(),
            i.import_price_cny_per_kwh,
            i.export_price_cny_per_kwh,
            i.carbon_intensity_kg_per_kwh,
            i.grid_import_kw,
            i.grid_export_kw,
            i.pv_available_kw,
            i.pv_used_kw,
            i.battery_charge_kw,
            i.battery_discharge_kw,
            i.battery_soc_kwh,
            i.fixed_load_kw,
            i.flexible_load_kw,
            i.load_shed_kw,
            i.load_unserved_kw,
            i.ev_kw
        );
        for c in &chargers {
            let _ = write!(out, ",{:.3}", i.ev_chargers.get(c).copied().unwrap_or(0.0));
        }
        out.push('\n');
    }
    out
}

/// The terminal summary: cost terms, energy, carbon, the comparison with the rules, unmet
/// requirements, notes, and an hourly table.
pub fn summary(park: &Park, date: NaiveDate, plan: &Plan, baseline: Option<&Plan>) -> String {
    let mut s = String::new();
    let dt = f64::from(plan.interval_minutes) / 60.0;
    let sum = |f: &dyn Fn(&pedf_core::plan::PlanInterval) -> f64| {
        plan.intervals.iter().map(f).sum::<f64>() * dt
    };
    let _ = writeln!(
        s,
        "plan {} {date}: {} x {} min, strategy {:?}",
        plan.park_id,
        plan.intervals.len(),
        plan.interval_minutes,
        plan.strategy
    );
    let sv = &plan.solver;
    let gap = match (sv.mip_gap, sv.bound_cny, sv.bound_from.as_deref()) {
        (Some(g), Some(b), Some(from)) => {
            format!(", gap {g:.1e} against a bound of {b:.2} CNY ({from})")
        }
        (Some(g), ..) => format!(", gap {g:.1e}"),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        "solver {} {}{gap}; build {:.3} s, solve {:.3} s; {} columns, {} rows, {} integer/semi-continuous",
        sv.name, sv.status, sv.build_seconds, sv.seconds, sv.columns, sv.rows, sv.binaries
    );
    let _ = writeln!(s, "objective      {:>10.2} CNY", plan.objective_cny);
    let _ = writeln!(s, "  energy cost  {:>10.2}", plan.energy_cost_cny);
    let _ = writeln!(s, "  export       {:>10.2}", -plan.export_revenue_cny);
    let d = &park.tariff.demand;
    let _ = writeln!(
        s,
        "  demand chg   {:>10.2}  (plan peak {:.0} kW; free up to {:.0} kW: month peak so far {:.0} kW{}; {:.2} CNY/kW on the rise, {})",
        plan.demand_charge_cny,
        plan.peak_import_kw,
        plan.demand_free_up_to_kw,
        plan.month_peak_before_kw,
        if d.monthly_target_kw > 0.0 {
            format!(", target {:.0} kW", d.monthly_target_kw)
        } else {
            String::new()
        },
        d.marginal_rate(),
        d.basis.key()
    );
    let _ = writeln!(
        s,
        "  carbon cost  {:>10.2}  ({} CNY/t)",
        plan.carbon_cost_cny, park.carbon.carbon_price_cny_per_t
    );
    let _ = writeln!(s, "  degradation  {:>10.2}", plan.degradation_cost_cny);
    let _ = writeln!(s, "  load shed    {:>10.2}", plan.load_shed_cost_cny);
    let _ = writeln!(s, "  penalties    {:>10.2}", plan.penalty_cny);
    let pv_av = sum(&|i| i.pv_available_kw);
    let pv_used = sum(&|i| i.pv_used_kw);
    let _ = writeln!(
        s,
        "energy: import {:.0} kWh, export {:.0} kWh, PV {:.0} of {:.0} kWh used ({:.0} curtailed), battery +{:.0}/-{:.0} kWh, EV {:.0} kWh",
        sum(&|i| i.grid_import_kw),
        sum(&|i| i.grid_export_kw),
        pv_used,
        pv_av,
        pv_av - pv_used,
        sum(&|i| i.battery_discharge_kw),
        sum(&|i| i.battery_charge_kw),
        sum(&|i| i.ev_kw)
    );
    let limit = plan
        .scope2_allowance_kg
        .map(|a| format!(", allowed {a:.0} kg by [carbon.control]"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "carbon: Scope 2 {:.0} kg CO2 location-based (import x the annual factor {:.4}; without the EMS {:.0} kg{limit}); {:.0} kg at the inputs' hourly intensity",
        plan.scope2_kg,
        park.carbon.grid_factor.value.0,
        plan.scope2_without_ems_kg,
        plan.carbon_kg
    );
    if let Some(b) = baseline {
        let saved = b.objective_cny - plan.objective_cny;
        let pct = if b.objective_cny.abs() > 1e-9 {
            100.0 * saved / b.objective_cny.abs()
        } else {
            0.0
        };
        // Carbon saved on the report's terms: location-based Scope 2 (annual factor), against
        // the rules and against the same horizon without the EMS.
        let _ = writeln!(
            s,
            "vs rule-based: {:.2} CNY, Scope 2 {:.0} kg; the plan saves {saved:.2} CNY ({pct:.1} %) and {:.0} kg CO2; against no EMS {:.0} kg CO2",
            b.objective_cny,
            b.scope2_kg,
            b.scope2_kg - plan.scope2_kg,
            plan.scope2_without_ems_kg - plan.scope2_kg
        );
    }
    if plan.unmet.is_empty() {
        let _ = writeln!(s, "unmet: none");
    } else {
        for u in &plan.unmet {
            let _ = writeln!(
                s,
                "UNMET {} {}: {:.1} kWh short; {}",
                u.kind, u.id, u.shortfall_kwh, u.reason
            );
        }
    }
    for n in &plan.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(
        s,
        "hour  price   PV_kW  load_kW  EV_kW  batt_kW  SoC_kWh  grid_kW"
    );
    let per_hour = (60 / plan.interval_minutes.max(1)) as usize;
    for chunk in plan.intervals.chunks(per_hour.max(1)) {
        let k = chunk.len() as f64;
        let avg = |f: &dyn Fn(&pedf_core::plan::PlanInterval) -> f64| {
            chunk.iter().map(f).sum::<f64>() / k
        };
        let _ = writeln!(
            s,
            "{}  {:>5.2} {:>7.0} {:>8.0} {:>6.0} {:>8.0} {:>8.0} {:>8.0}",
            chunk[0].start.format("%H:%M"),
            avg(&|i| i.import_price_cny_per_kwh),
            avg(&|i| i.pv_used_kw),
            avg(&|i| i.fixed_load_kw + i.flexible_load_kw),
            avg(&|i| i.ev_kw),
            avg(&|i| i.battery_discharge_kw - i.battery_charge_kw),
            chunk[chunk.len() - 1].battery_soc_kwh,
            avg(&|i| i.grid_import_kw - i.grid_export_kw),
        );
    }
    s
}
