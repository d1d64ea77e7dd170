//! `pedf forecast pv`: the per-interval PV forecast of every array, as the planner's `pv.csv`,
//! JSON or a summary table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pedf_core::csvtext::InputFile;
use pedf_core::Park;
use pedf_forecast::correction::{correct_with_history, read_pv_history};
use pedf_forecast::irradiance::Transposition;
use pedf_forecast::pv::{forecast_pv, PvForecast, PvModel};
use pedf_forecast::pvwatts::Mounting;
use pedf_forecast::weather::read_weather;

use crate::plan_cmd::load_park_file;
use crate::{print_diagnostics, UserError};

/// What `pedf forecast pv` was asked for.
pub struct PvArgs {
    pub park: PathBuf,
    pub date: String,
    pub days: u32,
    pub weather: Option<PathBuf>,
    pub history: Option<PathBuf>,
    pub linke_turbidity: f64,
    pub transposition: String,
    pub mounting: String,
    pub format: Option<String>,
    pub out: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, UserError> {
    std::fs::read(path).map_err(|e| UserError(format!("{}: cannot read: {e}", path.display())))
}

pub fn run(args: PvArgs) -> Result<(), UserError> {
    let date =
        pedf_core::time::parse_date(&args.date).map_err(|e| UserError(format!("--date: {e}")))?;
    if !(1..=366).contains(&args.days) {
        return Err(UserError(format!(
            "--days: {} is outside 1..366",
            args.days
        )));
    }
    if !(args.linke_turbidity.is_finite() && (1.0..=10.0).contains(&args.linke_turbidity)) {
        return Err(UserError(format!(
            "--linke-turbidity: {} is outside 1..10 (2 very clean air, 3-4 rural, 5-7 polluted or humid)",
            args.linke_turbidity
        )));
    }
    let format = match (&args.format, &args.out) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) if p.extension().is_some_and(|e| e == "json") => "json".into(),
        _ => "csv".into(),
    };
    let park = load_park_file(&args.park)?;
    let weather = match &args.weather {
        Some(p) => {
            let name = p.display().to_string();
            let bytes = read(p)?;
            match read_weather(
                InputFile {
                    name: &name,
                    bytes: &bytes,
                },
                park.clock.tz,
            ) {
                Ok(w) => Some(w),
                Err(ds) => {
                    print_diagnostics(&ds);
                    return Err(UserError(format!(
                        "{name}: {} error(s) in the weather file (see above)",
                        ds.len()
                    )));
                }
            }
        }
        None => None,
    };
    let model = PvModel {
        linke_turbidity: [args.linke_turbidity; 12],
        transposition: if args.transposition == "isotropic" {
            Transposition::Isotropic
        } else {
            Transposition::HayDavies
        },
        mounting: if args.mounting == "close-roof" {
            Mounting::CloseRoof
        } else {
            Mounting::OpenRack
        },
        ..PvModel::default()
    };
    let mut forecast = forecast_pv(&park, date, args.days, weather.as_ref(), &model)
        .map_err(|e| UserError(e.to_string()))?;
    if let Some(p) = &args.history {
        apply_history(&park, p, &mut forecast)?;
    }
    for n in &forecast.notes {
        eprintln!("note: {n}");
    }
    let text = match format.as_str() {
        "json" => to_json(&park, date, args.days, &forecast),
        "table" => to_table(&park, &forecast),
        _ => to_csv(&park, &forecast),
    };
    match &args.out {
        Some(p) => {
            std::fs::write(p, text)
                .map_err(|e| UserError(format!("--out: cannot write {}: {e}", p.display())))?;
            let total: f64 = forecast
                .arrays
                .iter()
                .map(|a| a.energy_kwh(park.clock.interval.hours().0))
                .sum();
            eprintln!(
                "wrote {} ({} intervals, {total:.0} kWh in all)",
                p.display(),
                forecast.starts.len()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn apply_history(park: &Park, path: &Path, forecast: &mut PvForecast) -> Result<(), UserError> {
    let name = path.display().to_string();
    let bytes = read(path)?;
    let ids: Vec<&str> = park.pv.iter().map(|a| a.id.as_str()).collect();
    let records = match read_pv_history(
        InputFile {
            name: &name,
            bytes: &bytes,
        },
        &ids,
    ) {
        Ok(r) => r,
        Err(ds) => {
            print_diagnostics(&ds);
            return Err(UserError(format!(
                "{name}: {} error(s) in the PV history (see above)",
                ds.len()
            )));
        }
    };
    correct_with_history(park, &name, &records, forecast);
    Ok(())
}

fn to_csv(park: &Park, f: &PvForecast) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Available PV power at the DC bus per array, kW, interval average."
    );
    let _ = writeln!(s, "# pedf forecast pv, park {}: {}", park.id, f.source);
    for n in &f.notes {
        let _ = writeln!(s, "# note: {n}");
    }
    let ids: Vec<&str> = f.arrays.iter().map(|a| a.id.as_str()).collect();
    let _ = writeln!(s, "start,{}", ids.join(","));
    for (i, t) in f.starts.iter().enumerate() {
        let _ = write!(s, "{}", park.clock.format(*t));
        for a in &f.arrays {
            let _ = write!(s, ",{:.3}", a.kw[i]);
        }
        s.push('\n');
    }
    s
}

fn to_json(park: &Park, date: NaiveDate, days: u32, f: &PvForecast) -> String {
    let hours = park.clock.interval.hours().0;
    let arrays: Vec<serde_json::Value> = f
        .arrays
        .iter()
        .map(|a| {
            serde_json::json!({
                "id": a.id,
                "energy_kwh": round3(a.energy_kwh(hours)),
                "peak_kw": round3(a.kw.iter().cloned().fold(0.0, f64::max)),
            })
        })
        .collect();
    let intervals: Vec<serde_json::Value> = f
        .starts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut o = serde_json::Map::new();
            o.insert("start".into(), park.clock.format(*t).into());
            o.insert(
                "total_kw".into(),
                round3(f.arrays.iter().map(|a| a.kw[i]).sum()).into(),
            );
            for a in &f.arrays {
                o.insert(a.id.clone(), round3(a.kw[i]).into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let doc = serde_json::json!({
        "park": park.id,
        "first_day": date.to_string(),
        "days": days,
        "interval_minutes": park.clock.interval.minutes(),
        "unit": "kW at the DC bus, interval mean",
        "source": f.source,
        "notes": f.notes,
        "arrays": arrays,
        "intervals": intervals,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn to_table(park: &Park, f: &PvForecast) -> String {
    let hours = park.clock.interval.hours().0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "PV forecast for {} ({} intervals): {}",
        park.id,
        f.starts.len(),
        f.source
    );
    let _ = writeln!(
        s,
        "{:<16} {:>12} {:>10} {:>8}  {:<25} {:<25}",
        "array", "energy kWh", "peak kW", "kWh/kWp", "first production", "last production"
    );
    let mut total = 0.0;
    for (a, pv) in f.arrays.iter().zip(&park.pv) {
        let e = a.energy_kwh(hours);
        total += e;
        let peak = a.kw.iter().cloned().fold(0.0, f64::max);
        let first =
            a.kw.iter()
                .position(|&p| p > 0.0)
                .map(|i| park.clock.format(f.starts[i]))
                .unwrap_or_else(|| "-".into());
        let last =
            a.kw.iter()
                .rposition(|&p| p > 0.0)
                .map(|i| park.clock.format(f.starts[i]))
                .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<16} {:>12.1} {:>10.1} {:>8.2}  {:<25} {:<25}",
            a.id,
            e,
            peak,
            e / pv.peak_power.0,
            first,
            last
        );
    }
    let _ = writeln!(s, "{:<16} {:>12.1}", "total", total);
    s
}

/// What `pedf forecast load` and `pedf forecast ev` were asked for.
pub struct HistoryArgs {
    pub park: PathBuf,
    pub history: PathBuf,
    pub holidays: Option<PathBuf>,
    pub date: String,
    pub days: u32,
    pub format: Option<String>,
    pub out: Option<PathBuf>,
}

fn parse_day(date: &str, days: u32) -> Result<NaiveDate, UserError> {
    if !(1..=366).contains(&days) {
        return Err(UserError(format!("--days: {days} is outside 1..366")));
    }
    pedf_core::time::parse_date(date).map_err(|e| UserError(format!("--date: {e}")))
}

/// Reads a file with a located reader, printing its diagnostics.
fn read_with<T>(
    path: &Path,
    what: &str,
    reader: impl FnOnce(InputFile) -> Result<T, Vec<pedf_core::config::Diagnostic>>,
) -> Result<T, UserError> {
    let name = path.display().to_string();
    let bytes = read(path)?;
    reader(InputFile {
        name: &name,
        bytes: &bytes,
    })
    .map_err(|ds| {
        print_diagnostics(&ds);
        UserError(format!(
            "{name}: {} error(s) in the {what} (see above)",
            ds.len()
        ))
    })
}

fn calendar(path: &Option<PathBuf>) -> Result<pedf_forecast::calendar::Calendar, UserError> {
    match path {
        Some(p) => read_with(p, "holiday file", pedf_forecast::calendar::read_calendar),
        None => Ok(Default::default()),
    }
}

fn write_out(out: &Option<PathBuf>, text: &str, what: &str) -> Result<(), UserError> {
    match out {
        Some(p) => {
            std::fs::write(p, text)
                .map_err(|e| UserError(format!("--out: cannot write {}: {e}", p.display())))?;
            eprintln!("wrote {} ({what})", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn wants_json(format: &Option<String>, out: &Option<PathBuf>) -> bool {
    match format {
        Some(f) => f == "json",
        None => out
            .as_ref()
            .is_some_and(|p| p.extension().is_some_and(|e| e == "json")),
    }
}

/// `pedf forecast load`.
pub fn run_load(args: HistoryArgs) -> Result<(), UserError> {
    use pedf_forecast::load::{backtest_loads, forecast_loads, read_load_history, LoadModel};
    let date = parse_day(&args.date, args.days)?;
    let park = load_park_file(&args.park)?;
    let cal = calendar(&args.holidays)?;
    let history = read_with(&args.history, "load history", |f| {
        read_load_history(f, &park)
    })?;
    let model = LoadModel::default();
    let f = forecast_loads(&park, &history, &cal, date, args.days, &model)
        .map_err(|e| UserError(format!("{}: {e}", args.history.display())))?;
    for n in &f.notes {
        eprintln!("note: {n}");
    }
    if let Some((days, m)) = backtest_loads(&park, &history, &cal, 14, &model) {
        eprintln!("note: rolling backtest of the last {days} day(s) of history, park total: {m} (nMAE of mean load)");
    }
    let text = if wants_json(&args.format, &args.out) {
        let intervals: Vec<serde_json::Value> = f
            .starts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut o = serde_json::Map::new();
                o.insert("start".into(), park.clock.format(*t).into());
                for (c, col) in f.columns.iter().enumerate() {
                    o.insert(col.clone(), round3(f.values[c][i]).into());
                }
                serde_json::Value::Object(o)
            })
            .collect();
        let doc = serde_json::json!({"park": park.id, "first_day": date.to_string(), "days": args.days, "unit": "kW, interval mean", "notes": f.notes, "intervals": intervals});
        format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let mut s = String::new();
        let _ = writeln!(s, "# Demand per load, kW, interval mean: pedf forecast load, park {}, profiles by day type", park.id);
        for n in &f.notes {
            let _ = writeln!(s, "# note: {n}");
        }
        let _ = writeln!(s, "start,{}", f.columns.join(","));
        for (i, t) in f.starts.iter().enumerate() {
            let _ = write!(s, "{}", park.clock.format(*t));
            for col in &f.values {
                let _ = write!(s, ",{:.3}", col[i]);
            }
            s.push('\n');
        }
        s
    };
    write_out(&args.out, &text, &format!("{} intervals", f.starts.len()))
}

/// `pedf forecast ev`.
pub fn run_ev(args: HistoryArgs) -> Result<(), UserError> {
    use pedf_forecast::ev::{forecast_ev, learn_ev, read_sessions};
    let date = parse_day(&args.date, args.days)?;
    let park = load_park_file(&args.park)?;
    let cal = calendar(&args.holidays)?;
    let past = read_with(&args.history, "session history", read_sessions)?;
    let stats = learn_ev(&past, &park.clock, &cal);
    for (kind, k) in &stats.kinds {
        if let Some((p10, p50, p90, dwell, energy)) = k.summary() {
            let hm = |m: f64| format!("{:02}:{:02}", (m / 60.0) as u32, (m % 60.0) as u32);
            eprintln!(
                "note: history, {kind}: {:.1} sessions/day over {} day(s); arrivals 10/50/90 % {} {} {}; mean dwell {:.0} min, mean energy {:.1} kWh",
                k.per_day(), k.days, hm(p10), hm(p50), hm(p90), dwell, energy
            );
        }
    }
    let (sessions, notes) = forecast_ev(&park, &stats, &cal, date, args.days);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let text = if wants_json(&args.format, &args.out) {
        let list: Vec<serde_json::Value> = sessions
            .iter()
            .map(|s| serde_json::json!({"id": s.id, "charger": s.charger, "arrival": park.clock.format(s.arrival), "departure": park.clock.format(s.departure), "energy_kwh": s.energy_kwh}))
            .collect();
        let doc = serde_json::json!({"park": park.id, "first_day": date.to_string(), "days": args.days, "notes": notes, "sessions": list});
        format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Expected EV sessions: pedf forecast ev, park {}, from past sessions",
            park.id
        );
        for n in &notes {
            let _ = writeln!(s, "# note: {n}");
        }
        let _ = writeln!(s, "id,charger,arrival,departure,energy_kwh");
        for x in &sessions {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.1}",
                x.id,
                x.charger,
                park.clock.format(x.arrival),
                park.clock.format(x.departure),
                x.energy_kwh
            );
        }
        s
    };
    write_out(&args.out, &text, &format!("{} sessions", sessions.len()))
}
