//! `pedf simulate`: backtests of a scenario under the strategies, with a report and plots.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::Datelike;
use pedf_report::sim::{plot_comparison, plot_week, StrategySeries};
use pedf_sim::backtest::{self, Backtest, StrategyKind};
use pedf_sim::scenario::Scenario;

use crate::UserError;

pub struct SimulateArgs {
    pub scenario: PathBuf,
    pub days: u32,
    pub strategy: String,
    pub out_dir: PathBuf,
    pub seed: Option<u64>,
    pub requests: Option<PathBuf>,
    pub progress: bool,
}

pub fn run(a: SimulateArgs) -> Result<(), UserError> {
    let mut s = Scenario::load(&a.scenario).map_err(|ds| {
        crate::print_diagnostics(&ds);
        UserError(format!(
            "{}: {} error(s) in the scenario; nothing was simulated",
            a.scenario.display(),
            ds.len()
        ))
    })?;
    if let Some(seed) = a.seed {
        s.seed = seed;
    }
    if let Some(file) = &a.requests {
        let more = pedf_sim::scenario::load_requests(file, &s.park).map_err(|ds| {
            crate::print_diagnostics(&ds);
            UserError(format!(
                "{}: {} error(s) in the grid requests; nothing was simulated",
                file.display(),
                ds.len()
            ))
        })?;
        for r in more {
            if s.grid_requests.iter().any(|g| g.id == r.id) {
                return Err(UserError(format!(
                    "{}: grid request `{}` is also in the scenario; give each request its own id",
                    file.display(),
                    r.id
                )));
            }
            s.grid_requests.push(r);
        }
    }
    if a.days == 0 || a.days > 3660 {
        return Err(UserError(format!("--days {}: give 1..3660 days", a.days)));
    }
    // Requests outside the period are said, not silently left out.
    let from = s.park.clock.start_of_local_day(s.start);
    let to = s
        .start
        .checked_add_days(chrono::Days::new(u64::from(a.days)))
        .map_or(from, |d| s.park.clock.start_of_local_day(d));
    for r in s
        .grid_requests
        .iter()
        .filter(|r| r.end <= from || r.start >= to)
    {
        eprintln!(
            "pedf simulate: grid request `{}` ({} to {}) is outside the simulated period ({} to {}): not simulated",
            r.id,
            s.park.clock.format(r.start),
            s.park.clock.format(r.end),
            s.park.clock.format(from),
            s.park.clock.format(to)
        );
    }
    let strategies = match a.strategy.as_str() {
        "none" => vec![StrategyKind::None],
        "rule" => vec![StrategyKind::Rule],
        "optimized" => vec![StrategyKind::Optimized],
        _ => vec![
            StrategyKind::None,
            StrategyKind::Rule,
            StrategyKind::Optimized,
        ],
    };
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| UserError(format!("--out-dir {}: {e}", a.out_dir.display())))?;
    let bar = if a.progress {
        let b = indicatif::ProgressBar::new(u64::from(a.days) * strategies.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} days · {elapsed} (ETA {eta})",
            )
            .map_err(|e| UserError(e.to_string()))?
            .progress_chars("=> "),
        );
        b.set_message(format!("{} {}", s.park.id, a.strategy));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let bt = backtest::run(&s, a.days, &strategies, &mut |done, _| {
        bar.set_position(done)
    })
    .map_err(UserError)?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let text = summary(&bt, elapsed) + &carbon_control_summary(&bt, &s.park.carbon.control);
    print!("{text}");
    let out = |name: &str| a.out_dir.join(name);
    let write = |name: &str, body: &[u8]| {
        std::fs::write(out(name), body)
            .map_err(|e| UserError(format!("{}: {e}", out(name).display())))
    };
    write("report.txt", text.as_bytes())?;
    let json = serde_json::to_string_pretty(&bt).map_err(|e| UserError(e.to_string()))?;
    write("report.json", json.as_bytes())?;
    write("monthly.csv", monthly_csv(&bt).as_bytes())?;
    crate::load_plot_font()?;
    let series = plot_series(&bt);
    let title = format!(
        "{}: {} days from {}, seed {}",
        bt.park, bt.days, bt.first_day, bt.seed
    );
    plot_comparison(&title, &series.0, &out("comparison.svg"))
        .map_err(|e| UserError(format!("comparison.svg: {e}")))?;
    plot_comparison(&title, &series.0, &out("comparison.png"))
        .map_err(|e| UserError(format!("comparison.png: {e}")))?;
    let wtitle = format!("{}: week from {}", bt.park, series.1);
    plot_week(&wtitle, bt.interval_minutes, &series.0, &out("week.svg"))
        .map_err(|e| UserError(format!("week.svg: {e}")))?;
    plot_week(&wtitle, bt.interval_minutes, &series.0, &out("week.png"))
        .map_err(|e| UserError(format!("week.png: {e}")))?;
    println!(
        "wrote {}: report.txt, report.json, monthly.csv, comparison.svg/.png, week.svg/.png",
        a.out_dir.display()
    );
    // Written first, so a fault can be looked into.
    match bt.balance_fault() {
        Some(fault) => Err(UserError(fault)),
        None => Ok(()),
    }
}

fn plot_series(bt: &Backtest) -> (Vec<StrategySeries>, String) {
    let per_day = (24 * 60 / bt.interval_minutes) as usize;
    let n = bt.starts.len();
    // A summer week when the period has one (1 July onwards), else the first week.
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap_or(chrono_tz::UTC);
    let from = bt
        .starts
        .iter()
        .position(|t| {
            let l = t.with_timezone(&tz);
            l.month() == 7 && l.day() == 1
        })
        .filter(|&i| i + 7 * per_day <= n)
        .unwrap_or(0);
    let to = (from + 7 * per_day).min(n);
    let label = bt
        .starts
        .get(from)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let series = bt
        .results
        .iter()
        .map(|r| StrategySeries {
            name: r.strategy.name().to_string(),
            monthly: r
                .monthly
                .iter()
                .map(|m| (m.month.clone(), m.net_cny, m.location_kg / 1000.0))
                .collect(),
            week_grid_kw: r.grid_kw[from..to].to_vec(),
            week_soc_pct: r.soc_pct[from..to].to_vec(),
        })
        .collect();
    (series, label)
}

fn monthly_csv(bt: &Backtest) -> String {
    let mut s = String::from(
        "strategy,month,import_kwh,export_kwh,energy_cny,demand_cny,export_cny,wear_cny,lost_load_cny,net_cny,location_kg,location_without_ems_kg,consumption_kwh,peak_import_kw\n",
    );
    for r in &bt.results {
        for m in &r.monthly {
            let _ = writeln!(
                s,
                "{},{},{:.3},{:.3},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{:.3},{:.3},{:.3},{:.3}",
                r.strategy.name(),
                m.month,
                m.import_kwh,
                m.export_kwh,
                m.energy_cny,
                m.demand_cny,
                m.export_cny,
                m.wear_cny,
                m.lost_load_cny,
                m.net_cny,
                m.location_kg,
                m.location_without_ems_kg,
                m.consumption_kwh,
                m.peak_import_kw
            );
        }
    }
    s
}

/// The months in which `r` did worse than `base` on a bill term or on Scope 2, one line each
/// ("2026-07: demand +1,520 CNY, net +310 CNY"); none: an empty list.
fn worse_months(r: &backtest::StrategyResult, base: &backtest::StrategyResult) -> Vec<String> {
    let mut out = Vec::new();
    for m in &r.monthly {
        let Some(b) = base.monthly.iter().find(|b| b.month == m.month) else {
            continue;
        };
        // Terms where more is worse; export revenue is worse when lower.
        let terms = [
            ("energy", m.energy_cny - b.energy_cny, "CNY"),
            ("demand", m.demand_cny - b.demand_cny, "CNY"),
            ("export", b.export_cny - m.export_cny, "CNY less"),
            ("lost load", m.lost_load_cny - b.lost_load_cny, "CNY"),
            ("net", m.net_cny - b.net_cny, "CNY"),
            ("Scope 2", (m.location_kg - b.location_kg) / 1000.0, "t"),
        ];
        let worse: Vec<String> = terms
            .iter()
            .filter(|(_, d, unit)| *d > if *unit == "t" { 0.05 } else { 0.5 })
            .map(|(name, d, unit)| {
                if *unit == "t" {
                    format!("{name} +{d:.1} t")
                } else {
                    format!("{name} +{d:.0} {unit}")
                }
            })
            .collect();
        if !worse.is_empty() {
            out.push(format!("{}: {}", m.month, worse.join(", ")));
        }
    }
    out
}

/// The comparison table.
/// Each strategy against the park's carbon dual control (`[carbon.control]`): Scope 2 against
/// the monthly and annual budgets and the intensity target, month by month; empty when the
/// park sets none.
pub fn carbon_control_summary(bt: &Backtest, c: &pedf_core::park::CarbonControl) -> String {
    let mut s = String::new();
    if c.monthly_budget_t.is_none()
        && c.annual_budget_t.is_none()
        && c.intensity_kg_per_kwh.is_none()
    {
        return s;
    }
    let _ = writeln!(s, "\ncarbon dual control ([carbon.control]):");
    for r in &bt.results {
        let mut parts = Vec::new();
        if let Some(b) = c.monthly_budget_t {
            let over: Vec<String> = r
                .monthly
                .iter()
                .filter(|m| m.location_kg > b * 1000.0 + 1e-6)
                .map(|m| format!("{} {:+.1} t", m.month, m.location_kg / 1000.0 - b))
                .collect();
            parts.push(if over.is_empty() {
                format!("every month within {b:.1} t")
            } else {
                format!("months over {b:.1} t: {}", over.join(", "))
            });
        }
        if let Some(b) = c.annual_budget_t {
            let total = r.carbon.location_kg / 1000.0;
            parts.push(format!(
                "{total:.1} t against the annual {b:.1} t ({})",
                if total <= b + 1e-9 {
                    format!("{:.1} t left", b - total)
                } else {
                    format!("{:.1} t over", total - b)
                }
            ));
        }
        if let Some(t) = c.intensity_kg_per_kwh {
            let above: Vec<String> = r
                .monthly
                .iter()
                .filter(|m| m.consumption_kwh > 0.0 && m.location_kg > t * m.consumption_kwh + 1e-6)
                .map(|m| format!("{} {:.3}", m.month, m.location_kg / m.consumption_kwh))
                .collect();
            parts.push(if above.is_empty() {
                format!("every month at or under {t:.3} kg/kWh")
            } else {
                format!("months above {t:.3} kg/kWh: {}", above.join(", "))
            });
        }
        let _ = writeln!(s, "  {:<10} {}", r.strategy.name(), parts.join("; "));
    }
    s
}

pub fn summary(bt: &Backtest, elapsed_s: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({}): {} days from {} at {} min, seed {}; simulated in {:.1} s",
        bt.scenario, bt.park, bt.days, bt.first_day, bt.interval_minutes, bt.seed, elapsed_s
    );
    let _ = write!(s, "\n{:<34}", "");
    for r in &bt.results {
        let _ = write!(s, "{:>16}", r.strategy.name());
    }
    s.push('\n');
    type Row<'a> = (&'a str, Box<dyn Fn(&backtest::StrategyResult) -> String>);
    let mwh = |v: f64| format!("{:.1}", v / 1000.0);
    let rows: Vec<Row> = vec![
        ("energy (MWh)", Box::new(|_| String::new())),
        (
            "  PV available",
            Box::new(move |r| mwh(r.energy.pv_available_kwh)),
        ),
        ("  PV used", Box::new(move |r| mwh(r.energy.pv_used_kwh))),
        (
            "  PV curtailed",
            Box::new(move |r| mwh(r.energy.pv_curtailed_kwh)),
        ),
        (
            "  grid import",
            Box::new(move |r| mwh(r.energy.grid_import_kwh)),
        ),
        (
            "  grid export",
            Box::new(move |r| mwh(r.energy.grid_export_kwh)),
        ),
        (
            "  battery charge",
            Box::new(move |r| mwh(r.energy.battery_charge_kwh)),
        ),
        (
            "  battery discharge",
            Box::new(move |r| mwh(r.energy.battery_discharge_kwh)),
        ),
        (
            "  loads (after shedding)",
            Box::new(move |r| mwh(r.energy.load_kwh)),
        ),
        (
            "  load shed",
            Box::new(move |r| mwh(r.energy.load_shed_kwh)),
        ),
        ("  EV charging", Box::new(move |r| mwh(r.energy.ev_kwh))),
        (
            "  converter + battery losses",
            Box::new(move |r| mwh(r.energy.converter_losses_kwh + r.energy.battery_losses_kwh)),
        ),
        (
            "  balance residual (kWh)",
            Box::new(|r| format!("{:.2e}", r.energy.balance_residual_kwh)),
        ),
        ("cost (CNY)", Box::new(|_| String::new())),
        (
            "  energy at TOU prices",
            Box::new(|r| format!("{:.0}", r.cost.energy_cost_cny)),
        ),
        (
            "  demand charge",
            Box::new(|r| format!("{:.0}", r.cost.demand_charge_cny)),
        ),
        (
            "  export revenue",
            Box::new(|r| format!("-{:.0}", r.cost.export_revenue_cny)),
        ),
        (
            "  battery wear",
            Box::new(|r| format!("{:.0}", r.cost.degradation_cny)),
        ),
        (
            "  shed load (VOLL)",
            Box::new(|r| format!("{:.0}", r.cost.load_shed_cny)),
        ),
        ("  net", Box::new(|r| format!("{:.0}", r.cost.net_cny))),
        ("carbon", Box::new(|_| String::new())),
        (
            "  Scope 2 location-based (t)",
            Box::new(|r| format!("{:.1}", r.carbon.location_kg / 1000.0)),
        ),
        (
            "  avoided by PV (t)",
            Box::new(|r| format!("{:.1}", r.carbon.avoided_pv_kg / 1000.0)),
        ),
        (
            "  self-sufficiency",
            Box::new(|r| format!("{:.1} %", 100.0 * r.carbon.self_sufficiency)),
        ),
        (
            "  PV self-consumption",
            Box::new(|r| format!("{:.1} %", 100.0 * r.carbon.self_consumption)),
        ),
        (
            "  hourly CFE score",
            Box::new(|r| format!("{:.1} %", 100.0 * r.carbon.cfe_score)),
        ),
        ("operation", Box::new(|_| String::new())),
        (
            "  peak import (kW)",
            Box::new(|r| format!("{:.0}", r.peak_import_kw)),
        ),
        (
            "  battery cycles (full equiv.)",
            Box::new(|r| format!("{:.0}", r.battery_cycles)),
        ),
        (
            "  EV sessions / unmet",
            Box::new(|r| format!("{}/{}", r.ev.sessions, r.ev.sessions_unmet)),
        ),
        (
            "  EV energy unmet (kWh)",
            Box::new(|r| format!("{:.1}", r.ev.unmet_kwh)),
        ),
        (
            "  EV short of deliverable (sessions / kWh)",
            Box::new(|r| {
                format!(
                    "{}/{:.1}",
                    r.ev.sessions_short_of_deliverable, r.ev.short_of_deliverable_kwh
                )
            }),
        ),
        (
            "  deferrable energy unmet (kWh)",
            Box::new(|r| format!("{:.1}", r.deferrable_unmet_kwh)),
        ),
        (
            "  intervals with a limit alarm",
            Box::new(|r| r.alarm_intervals.to_string()),
        ),
        ("planner", Box::new(|_| String::new())),
        (
            "  plans / fallbacks",
            Box::new(|r| format!("{}/{}", r.solver.plans, r.solver.fallbacks)),
        ),
        (
            "  LP dive only (node limit 0)",
            Box::new(|r| r.solver.lp_dive.to_string()),
        ),
        (
            "  stopped at node / time limit",
            Box::new(|r| format!("{}/{}", r.solver.node_limited, r.solver.time_limited)),
        ),
        (
            "  MIP gap median",
            Box::new(|r| {
                r.solver
                    .median_gap
                    .map_or("-".into(), |g| format!("{g:.1e}"))
            }),
        ),
        (
            "  MIP gap p95 / max",
            Box::new(|r| match (r.solver.p95_gap, r.solver.max_gap) {
                (Some(a), Some(b)) => format!("{a:.1e}/{b:.1e}"),
                _ => "-".into(),
            }),
        ),
        (
            "  plans with an unknown gap",
            Box::new(|r| r.solver.gap_unknown.to_string()),
        ),
        (
            "  solver seconds",
            Box::new(|r| format!("{:.1}", r.solver.solve_seconds)),
        ),
        (
            "  wall seconds",
            Box::new(|r| format!("{:.1}", r.wall_seconds)),
        ),
    ];
    for (label, f) in rows {
        let _ = write!(s, "{label:<34}");
        for r in &bt.results {
            let _ = write!(s, "{:>16}", f(r));
        }
        s.push('\n');
    }
    // Grid requests: what each strategy delivered of each, against its own baseline.
    if let Some(first) = bt.results.first() {
        if !first.grid_requests.is_empty() {
            let _ = writeln!(s, "\ngrid requests (delivered against each strategy's own baseline: the same intervals of its last like days):");
        }
        for (k, req) in first.grid_requests.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {} ({} {} kW, {} to {}):",
                req.id, req.kind, req.kw, req.start, req.end
            );
            for r in &bt.results {
                let Some(x) = r.grid_requests.get(k) else {
                    continue;
                };
                let line = match (x.requested_kwh, x.delivered_kwh, x.share) {
                    (Some(asked), Some(got), Some(share)) => format!(
                        "delivered {got:.1} of {asked:.1} kWh ({:.0} %){}; {:.1} kWh beyond what it allows (short of a floor)",
                        share * 100.0,
                        x.settlement_cny
                            .map(|c| format!(", settlement {c:.0} CNY"))
                            .unwrap_or_default(),
                        x.over_kwh
                    ),
                    _ => format!(
                        "not measured: {}; {:.1} kWh beyond what it allows (short of a floor)",
                        x.why.as_deref().unwrap_or("no baseline"),
                        x.over_kwh
                    ),
                };
                let _ = writeln!(s, "    {:<10} {line}", r.strategy.name());
            }
        }
        // What delivering them cost each strategy: the same period run again without them.
        let paired: Vec<_> = bt
            .results
            .iter()
            .filter_map(|r| r.delivering.as_ref().map(|d| (r.strategy, d)))
            .collect();
        if !paired.is_empty() {
            let _ = writeln!(s, "  cost of delivering (each strategy run again over the same period without the requests):");
        }
        for (k, d) in paired {
            let _ = writeln!(
                s,
                "    {:<10} bill {:.0} CNY with, {:.0} without ({:+.0}, of it demand charge {:+.0}); settlement {:.0}; net {:+.0} CNY; Scope 2 {:+.2} t",
                k.name(),
                d.bill_with_cny,
                d.bill_without_cny,
                d.bill_with_cny - d.bill_without_cny,
                d.demand_change_cny,
                d.settlement_cny,
                d.net_cny,
                d.scope2_change_kg / 1000.0
            );
        }
    }
    if let Some(base) = bt.results.iter().find(|r| r.strategy == StrategyKind::None) {
        for r in bt
            .results
            .iter()
            .filter(|r| r.strategy != StrategyKind::None)
        {
            let scope2_t = (r.carbon.location_kg - base.carbon.location_kg) / 1000.0;
            // Location-based Scope 2 is import times the annual grid factor: only the amount
            // imported moves it, never its timing.
            let why = if scope2_t > 0.05 {
                " (more import: the battery's and converter's losses; at a flat annual factor shifting cannot lower it)"
            } else if scope2_t < -0.05 {
                " (less import: more of the PV used on site)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "\n{} against none: {:.0} CNY saved ({:.1} %); Scope 2 {:+.1} t CO2{why}",
                r.strategy.name(),
                base.cost.net_cny - r.cost.net_cny,
                100.0 * (base.cost.net_cny - r.cost.net_cny) / base.cost.net_cny.abs().max(1e-9),
                scope2_t
            );
            let worse = worse_months(r, base);
            if worse.is_empty() {
                let _ = writeln!(
                    s,
                    "  no month worse than none on any bill term or on Scope 2"
                );
            } else {
                let _ = writeln!(
                    s,
                    "  months worse than none (energy, demand, export, lost load, net, Scope 2):"
                );
                for line in worse {
                    let _ = writeln!(s, "    {line}");
                }
            }
        }
    }
    s
}
