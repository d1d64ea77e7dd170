//! `pedf carbon report`: the energy-carbon accounting of a period from interval records.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pedf_carbon::account::{account, Accounting, SessionShare, SINKS, SOURCES};
use pedf_carbon::factors::{FactorChoice, FactorTable};
use pedf_carbon::records::read_records;
use pedf_core::csvtext::InputFile;
use pedf_core::time::parse_rfc3339;
use pedf_core::Park;

use crate::plan_cmd::load_park_file;
use crate::{print_diagnostics, UserError};

/// What `pedf carbon report` was asked for.
pub struct ReportArgs {
    pub park: PathBuf,
    pub records: PathBuf,
    pub from: String,
    pub to: String,
    pub factors: PathBuf,
    pub hourly_factors: Option<PathBuf>,
    pub covered_mwh: f64,
    pub baseline: String,
    pub format: String,
    pub out: Option<PathBuf>,
    pub sessions: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, UserError> {
    std::fs::read(path).map_err(|e| UserError(format!("{}: cannot read: {e}", path.display())))
}

fn time_arg(name: &str, text: &str) -> Result<DateTime<Utc>, UserError> {
    parse_rfc3339(text).map_err(|_| UserError(format!("{name}: `{text}` is not an RFC 3339 time with an offset, e.g. 2026-06-21T00:00:00+08:00")))
}

pub use pedf_carbon::period::PeriodSetup;

/// Reads and checks everything a period's accounting needs; every problem names its file or
/// argument.
pub fn prepare(
    park: &Path,
    records: &Path,
    from: &str,
    to: &str,
    factors: &Path,
    baseline: &str,
    covered_mwh: f64,
) -> Result<PeriodSetup, UserError> {
    let park = load_park_file(park)?;
    let records = read_records_file(records, &park.clock)?;
    prepare_with(park, records, from, to, factors, baseline, covered_mwh)
}

/// Reads an interval-record file, printing its diagnostics; any error is a user error naming
/// the file.
pub fn read_records_file(
    path: &Path,
    clock: &pedf_core::time::ParkClock,
) -> Result<Vec<pedf_carbon::records::IntervalRecord>, UserError> {
    let rname = path.display().to_string();
    let rbytes = read(path)?;
    read_records(
        InputFile {
            name: &rname,
            bytes: &rbytes,
        },
        clock,
    )
    .map_err(|ds| {
        print_diagnostics(&ds);
        UserError(format!(
            "{rname}: {} error(s) in the records (see above)",
            ds.len()
        ))
    })
}

/// As [`prepare`], with the park and its records already read (e.g. from the EMS store).
pub fn prepare_with(
    park: Park,
    records: Vec<pedf_carbon::records::IntervalRecord>,
    from: &str,
    to: &str,
    factors: &Path,
    baseline: &str,
    covered_mwh: f64,
) -> Result<PeriodSetup, UserError> {
    let (from_text, to_text) = (from, to);
    let from = time_arg("--from", from)?;
    let to = time_arg("--to", to)?;
    if to <= from {
        return Err(UserError(format!(
            "--to {to_text} is not after --from {from_text}"
        )));
    }
    if !(covered_mwh.is_finite() && covered_mwh >= 0.0) {
        return Err(UserError(format!(
            "--covered-mwh: {covered_mwh} must be a number >= 0"
        )));
    }
    let fname = factors.display().to_string();
    let table =
        FactorTable::parse(&fname, &String::from_utf8_lossy(&read(factors)?)).map_err(|es| {
            for e in &es {
                eprintln!("{e}");
            }
            UserError(format!(
                "{fname}: {} error(s) in the factor table",
                es.len()
            ))
        })?;
    pedf_carbon::period::setup(park, records, from, to, &table, baseline, covered_mwh)
        .map_err(UserError)
}

pub fn run(args: ReportArgs) -> Result<(), UserError> {
    let PeriodSetup {
        park,
        from,
        to,
        choice,
        records,
        mut options,
    } = prepare(
        &args.park,
        &args.records,
        &args.from,
        &args.to,
        &args.factors,
        &args.baseline,
        args.covered_mwh,
    )?;
    let mut notes = choice.notes.clone();
    if let Some(p) = &args.hourly_factors {
        let name = p.display().to_string();
        let bytes = read(p)?;
        options.hourly_factors = pedf_core::inputs::read_intensity_series(
            InputFile {
                name: &name,
                bytes: &bytes,
            },
            &park.clock,
        )
        .map_err(|ds| {
            print_diagnostics(&ds);
            UserError(format!(
                "{name}: {} error(s) in the hourly factors (see above)",
                ds.len()
            ))
        })?;
        notes.push(format!(
            "{name}: per-interval grid factors (user data, not an official series)"
        ));
    }
    let a = account(&records, from, to, &options);
    let sessions = match &args.sessions {
        Some(p) => {
            let name = p.display().to_string();
            let bytes = read(p)?;
            let list = pedf_forecast::ev::read_sessions(InputFile {
                name: &name,
                bytes: &bytes,
            })
            .map_err(|ds| {
                print_diagnostics(&ds);
                UserError(format!(
                    "{name}: {} error(s) in the sessions (see above)",
                    ds.len()
                ))
            })?;
            if !records.iter().any(|r| !r.ev_chargers.is_empty()) {
                notes.push(format!("{}: the records have no ev:<charger> columns, so sessions cannot be told apart", args.records.display()));
            }
            let list: Vec<_> = list
                .into_iter()
                .filter(|s| s.arrival < to && s.departure > from)
                .map(|s| (s.id, s.charger, s.arrival, s.departure))
                .collect();
            pedf_carbon::account::session_green_shares(
                &records,
                &a.intervals,
                &list,
                park.clock.interval.duration(),
            )
        }
        None => Vec::new(),
    };
    if !a.gaps.is_empty() {
        notes.push(format!(
            "{} of {} intervals have no record and are estimated (no PV claimed; import at the mean of the same time of day); first {}",
            a.gaps.len(),
            a.intervals.len(),
            park.clock.format(a.gaps[0])
        ));
    }
    let overdrawn = a.intervals.iter().filter(|i| i.store_overdrawn).count();
    if overdrawn > 0 {
        notes.push(format!("{overdrawn} interval(s) discharge more than the battery's tracked content: the excess carries the grid factor"));
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    let text = match args.format.as_str() {
        "json" => to_json(&park, &a, &choice, &args, &notes, &sessions),
        "csv" => to_csv(&park, &a),
        _ => to_table(&park, &a, &choice, &args, &sessions),
    };
    match &args.out {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| UserError(format!("--out: cannot write {}: {e}", p.display()))),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn to_table(
    park: &Park,
    a: &Accounting,
    c: &FactorChoice,
    args: &ReportArgs,
    sessions: &[SessionShare],
) -> String {
    let t = &a.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "carbon report {} {} to {} ({} intervals, {} estimated)",
        park.id, args.from, args.to, t.intervals, t.estimated_intervals
    );
    let _ = writeln!(s, "grid factor     {}", c.location.describe());
    let _ = writeln!(s, "residual mix    {}", c.residual.describe());
    let _ = writeln!(s, "PV baseline     {}", c.baseline_text);
    let _ = writeln!(
        s,
        "\nflows, kWh      {:>10} {:>10} {:>10} {:>10} {:>10}",
        SINKS[0], SINKS[1], SINKS[2], SINKS[3], SINKS[4]
    );
    for (i, src) in SOURCES.iter().enumerate() {
        let f = t.flows[i];
        let _ = writeln!(
            s,
            "  from {:<9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            src, f[0], f[1], f[2], f[3], f[4]
        );
    }
    let _ = writeln!(s, "\nPV generated           {:>12.1} kWh", t.pv_kwh);
    let _ = writeln!(
        s,
        "grid import / export   {:>12.1} / {:.1} kWh",
        t.grid_import_kwh, t.grid_export_kwh
    );
    let _ = writeln!(
        s,
        "consumption            {:>12.1} kWh (loads and EV)",
        t.consumption_kwh
    );
    let _ = writeln!(s, "Scope 2 location-based {:>12.1} kg CO2", t.location_kg);
    let _ = writeln!(
        s,
        "Scope 2 market-based   {:>12.1} kg CO2 ({} MWh covered)",
        t.market_kg, args.covered_mwh
    );
    let _ = writeln!(
        s,
        "PV delivered           {:>12.1} kWh net = {:.1} on site + {:.1} at the grid meter - {:.1} auxiliary imports",
        t.pv_onsite_kwh + t.pv_export_kwh - t.aux_import_kwh,
        t.pv_onsite_kwh,
        t.pv_export_kwh,
        t.aux_import_kwh
    );
    let _ = writeln!(
        s,
        "avoided by PV          {:>12.1} kg CO2 ({} t rounded down; net delivered x baseline)",
        t.avoided_pv_kg,
        (t.avoided_pv_kg / 1000.0).floor().max(0.0)
    );
    let _ = writeln!(
        s,
        "battery shifting       {:>12.1} kg CO2 (consequential, apart from the inventory)",
        t.shifting_kg
    );
    let _ = writeln!(
        s,
        "park intensity         {:>12.4} kg CO2/kWh consumed",
        t.park_intensity
    );
    let _ = writeln!(
        s,
        "self-sufficiency       {:>11.1} %",
        t.self_sufficiency * 100.0
    );
    let _ = writeln!(
        s,
        "self-consumption       {:>11.1} %",
        t.self_consumption * 100.0
    );
    let _ = writeln!(
        s,
        "hourly CFE score       {:>11.1} % (grid counted as 0 % carbon-free)",
        t.cfe_score * 100.0
    );
    let _ = writeln!(
        s,
        "EV green share         {:>11.1} %",
        t.ev_green_share * 100.0
    );
    if !sessions.is_empty() {
        let _ = writeln!(s, "\nEV session       charger     kWh   green %   kg CO2");
        for x in sessions {
            let _ = writeln!(
                s,
                "{:<16} {:<8} {:>7.1} {:>9.1} {:>8.2}",
                x.id,
                x.charger,
                x.kwh,
                x.green_share() * 100.0,
                x.kg
            );
        }
    }
    s
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn to_json(
    park: &Park,
    a: &Accounting,
    c: &FactorChoice,
    args: &ReportArgs,
    notes: &[String],
    sessions: &[SessionShare],
) -> String {
    let t = &a.totals;
    let flows: serde_json::Map<String, serde_json::Value> = SOURCES
        .iter()
        .enumerate()
        .map(|(i, src)| {
            (
                src.to_string(),
                SINKS
                    .iter()
                    .enumerate()
                    .map(|(k, snk)| (snk.to_string(), serde_json::json!(r3(t.flows[i][k]))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            )
        })
        .collect();
    let intervals: Vec<serde_json::Value> = a
        .intervals
        .iter()
        .map(|i| {
            serde_json::json!({
                "start": park.clock.format(i.start),
                "grid_factor_kg_per_kwh": i.grid_factor,
                "location_kg": r3(i.location_kg),
                "avoided_pv_kg": r3(i.avoided_pv_kg),
                "loads_kg": r3(i.sink_kg[0]),
                "ev_kg": r3(i.sink_kg[1]),
                "battery_store_kwh": r3(i.battery_store_kwh),
                "battery_store_kg": r3(i.battery_store_kg),
                "estimated": i.estimated,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "park": park.id,
        "from": args.from,
        "to": args.to,
        "factors": {
            "location": {"value": c.location.value, "region": c.location.region, "variant": c.location.variant, "data_year": c.location.data_year, "source": c.location.source, "status": c.location.status.tag()},
            "residual": {"value": c.residual.value, "data_year": c.residual.data_year, "source": c.residual.source, "status": c.residual.status.tag()},
            "pv_baseline": {"value": c.baseline, "how": c.baseline_text},
        },
        "totals": {
            "intervals": t.intervals,
            "estimated_intervals": t.estimated_intervals,
            "pv_kwh": r3(t.pv_kwh),
            "grid_import_kwh": r3(t.grid_import_kwh),
            "grid_export_kwh": r3(t.grid_export_kwh),
            "battery_charge_kwh": r3(t.battery_charge_kwh),
            "battery_discharge_kwh": r3(t.battery_discharge_kwh),
            "consumption_kwh": r3(t.consumption_kwh),
            "losses_kwh": r3(t.losses_kwh),
            "conversion_losses_kwh": r3(t.conversion_losses_kwh),
            "location_based_kg": r3(t.location_kg),
            "market_based_kg": r3(t.market_kg),
            "pv_delivered_on_site_kwh": r3(t.pv_onsite_kwh),
            "pv_delivered_grid_meter_kwh": r3(t.pv_export_kwh),
            "auxiliary_import_kwh": r3(t.aux_import_kwh),
            "pv_storage_losses_kwh": r3(t.pv_storage_losses_kwh),
            "avoided_pv_kg": r3(t.avoided_pv_kg),
            "shifting_kg": r3(t.shifting_kg),
            "park_intensity_kg_per_kwh": t.park_intensity,
            "self_sufficiency": t.self_sufficiency,
            "self_consumption": t.self_consumption,
            "cfe_score": t.cfe_score,
            "ev_green_share": t.ev_green_share,
        },
        "flows_kwh": flows,
        "notes": notes,
        "ev_sessions": sessions.iter().map(|x| serde_json::json!({"id": x.id, "charger": x.charger, "kwh": r3(x.kwh), "green_share": x.green_share(), "kg": r3(x.kg)})).collect::<Vec<_>>(),
        "intervals": intervals,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

fn to_csv(park: &Park, a: &Accounting) -> String {
    let mut s = String::from("start,grid_factor_kg_per_kwh,location_kg,avoided_pv_kg,loads_kg,ev_kg,battery_store_kwh,battery_store_kg,estimated\n");
    for i in &a.intervals {
        let _ = writeln!(
            s,
            "{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
            park.clock.format(i.start),
            i.grid_factor,
            i.location_kg,
            i.avoided_pv_kg,
            i.sink_kg[0],
            i.sink_kg[1],
            i.battery_store_kwh,
            i.battery_store_kg,
            i.estimated
        );
    }
    s
}
