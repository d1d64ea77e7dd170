//! Day inputs of the planner: PV and load forecasts, EV sessions, grid carbon intensity and an
//! optional price override, read from CSV text with a located diagnostic for every problem.
//!
//! Formats (documented for users in `simulations/qingzhou-pedf/day-inputs/README.md`):
//!
//! * `pv.csv`: `start,<pv id>...`: available PV power at the bus per array, kW.
//! * `loads.csv`: `start,<fixed load id>...,<curtailable load id>...`: demand, kW.
//! * `ev-sessions.csv`: `id,charger,arrival,departure,energy_kwh`.
//! * `carbon-intensity.csv` (optional): `start,kg_per_kwh`.
//! * `prices.csv` (optional): `start,import_cny_per_kwh,export_cny_per_kwh`.
//!
//! Times are RFC 3339 with an offset; series rows are interval starts on the park's clock, one
//! interval apart, no gaps or duplicates. Lines starting with `#` are comments. Nothing is
//! repaired silently: anything the planner adapts (a session that runs past the horizon) is
//! written into [`DayInputs::notes`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use crate::assets::Flexibility;
use crate::config::{Diagnostic, SourceMap};
pub use crate::csvtext::InputFile;
use crate::csvtext::{rows, text_of, Located};
use crate::park::Park;
use crate::time::{parse_rfc3339, ParkClock};
use crate::validate::Severity;

/// One EV charging session as planned.
#[derive(Debug, Clone, PartialEq)]
pub struct EvSession {
    /// Session id.
    pub id: String,
    /// Charger id (an expanded id such as `ev-07`).
    pub charger: String,
    /// When the car arrives.
    pub arrival: DateTime<Utc>,
    /// When it leaves.
    pub departure: DateTime<Utc>,
    /// Energy it needs before it leaves, kWh (already prorated to the horizon where noted).
    pub energy_kwh: f64,
    /// First horizon interval it can charge in (fully present).
    pub first: usize,
    /// One past the last horizon interval it can charge in.
    pub end: usize,
}

/// Everything the planner needs for one horizon besides the park.
#[derive(Debug, Clone, PartialEq)]
pub struct DayInputs {
    /// Interval starts of the horizon, UTC.
    pub starts: Vec<DateTime<Utc>>,
    /// Available PV per array id, kW at the bus.
    pub pv_kw: BTreeMap<String, Vec<f64>>,
    /// Demand per fixed-load id and per curtailable flexible-load id, kW.
    pub load_kw: BTreeMap<String, Vec<f64>>,
    /// EV sessions overlapping the horizon.
    pub sessions: Vec<EvSession>,
    /// Grid carbon intensity, kg CO2/kWh.
    pub carbon_intensity: Vec<f64>,
    /// Where the carbon intensity came from.
    pub carbon_source: String,
    /// Import price, CNY/kWh.
    pub import_price: Vec<f64>,
    /// Export price, CNY/kWh.
    pub export_price: Vec<f64>,
    /// Where the prices came from.
    pub price_source: String,
    /// What was adapted, for the plan's notes.
    pub notes: Vec<String>,
}

impl DayInputs {
    /// Number of intervals.
    pub fn len(&self) -> usize {
        self.starts.len()
    }
    /// True for an empty horizon.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
    /// Total available PV per interval.
    pub fn pv_total(&self) -> Vec<f64> {
        sum_columns(&self.pv_kw, self.len())
    }
}

fn sum_columns(cols: &BTreeMap<String, Vec<f64>>, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for v in cols.values() {
        for (o, x) in out.iter_mut().zip(v) {
            *o += x;
        }
    }
    out
}

/// The files of a day-inputs folder; optional ones may be absent.
#[derive(Debug, Clone, Copy)]
pub struct DayFiles<'a> {
    /// `pv.csv`.
    pub pv: InputFile<'a>,
    /// `loads.csv`.
    pub loads: InputFile<'a>,
    /// `ev-sessions.csv`, if present.
    pub sessions: Option<InputFile<'a>>,
    /// `carbon-intensity.csv`, if present.
    pub carbon: Option<InputFile<'a>>,
    /// `prices.csv`, if present.
    pub prices: Option<InputFile<'a>>,
}

/// A time series file read for the horizon: the value columns on the horizon's intervals.
struct Series {
    columns: BTreeMap<String, Vec<f64>>,
}

#[derive(Clone, Copy)]
struct ValueRule {
    min: f64,
    max: f64,
    what: &'static str,
}

/// Reads a series file, checks header, timestamps and values, and cuts out the horizon.
fn read_series(
    file: InputFile,
    clock: &ParkClock,
    horizon: &[DateTime<Utc>],
    allowed: &[&str],
    required: &[&str],
    rule: ValueRule,
    out: &mut Vec<Diagnostic>,
) -> Option<Series> {
    let text = text_of(file, out)?;
    let before = out.len();
    let mut loc = Located {
        name: file.name,
        map: SourceMap::new(text),
        out,
    };
    let all = rows(text);
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            &format!(
                "the first line names the columns: start,{}",
                required.join(",")
            ),
        );
        return None;
    };
    // Header.
    let mut names: Vec<String> = Vec::new();
    for (i, (off, name)) in header.fields.iter().enumerate() {
        if i == 0 {
            if *name != "start" {
                loc.error(
                    *off,
                    format!("first column is `{name}`, not `start`"),
                    "the first column holds the interval start, RFC 3339 with offset",
                );
            }
            continue;
        }
        if !allowed.contains(name) {
            let near = crate::config::suggest_public(name, allowed)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            loc.error(
                *off,
                format!("unknown column `{name}`"),
                &format!("{near}valid columns: {}", allowed.join(", ")),
            );
        } else if names.iter().any(|n| n == name) {
            loc.error(
                *off,
                format!("column `{name}` appears twice"),
                "each column once",
            );
        }
        names.push(name.to_string());
    }
    for r in required {
        if !names.iter().any(|n| n == r) {
            loc.error(
                header.line_offset,
                format!("no column for `{r}`"),
                &format!("add a `{r}` column (kW for each interval)"),
            );
        }
    }
    // Rows.
    let step = clock.interval.duration();
    let mut by_time: HashMap<DateTime<Utc>, usize> = HashMap::new();
    let mut values: Vec<(DateTime<Utc>, Vec<f64>)> = Vec::new();
    let mut previous: Option<DateTime<Utc>> = None;
    for row in body {
        let complete = row.fields.len() == header.fields.len();
        if !complete {
            loc.error(
                row.line_offset,
                format!(
                    "{} fields, the header has {}",
                    row.fields.len(),
                    header.fields.len()
                ),
                "one value per column, separated by commas",
            );
            // Its time still counts for the order of the rows, so the next row is no "gap".
            if let Ok(t) = parse_rfc3339(row.fields[0].1) {
                previous = Some(t);
                by_time.insert(t, row.line_offset);
            }
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let t = match parse_rfc3339(ttext) {
            Ok(t) => t,
            Err(e) => {
                loc.error(
                    toff,
                    e.to_string(),
                    "interval starts are RFC 3339 with an offset, e.g. 2026-06-21T00:15:00+08:00",
                );
                continue;
            }
        };
        if clock.interval_start(t) != t {
            loc.error(
                toff,
                format!("{ttext} is not the start of a {} interval", clock.interval),
                "rows are interval starts on the park's clock",
            );
        }
        if let Some(&first) = by_time.get(&t) {
            let (l, _) = loc.map.locate(first);
            loc.error(
                toff,
                format!("duplicate row for {ttext} (first at line {l})"),
                "one row per interval",
            );
            continue;
        }
        if let Some(p) = previous {
            if t < p {
                loc.error(
                    toff,
                    format!("{ttext} comes before the row above it"),
                    "rows in time order",
                );
            } else if t != p + step {
                loc.error(toff, format!("gap: expected {}, found {ttext}", clock.format(p + step)), "one row per interval, no gaps; fill a gap with an estimate and say so in a comment");
            }
        }
        by_time.insert(t, row.line_offset);
        previous = Some(t);
        let mut vals = Vec::with_capacity(row.fields.len() - 1);
        for (i, (off, v)) in row.fields.iter().enumerate().skip(1) {
            let col = header.fields[i].1;
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= rule.min && x <= rule.max => vals.push(x),
                Ok(x) if x.is_finite() => {
                    loc.error(
                        *off,
                        format!(
                            "{col}: {x} is outside {}..{} ({})",
                            rule.min, rule.max, rule.what
                        ),
                        &format!("{} between {} and {}", rule.what, rule.min, rule.max),
                    );
                    vals.push(0.0);
                }
                _ => {
                    loc.error(
                        *off,
                        format!("{col}: `{v}` is not a finite number"),
                        &format!("{}, e.g. 120.5", rule.what),
                    );
                    vals.push(0.0);
                }
            }
        }
        values.push((t, vals));
    }
    if out.len() > before {
        return None;
    }
    // Cut out the horizon.
    let index: HashMap<DateTime<Utc>, usize> = values
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i))
        .collect();
    let missing: Vec<&DateTime<Utc>> = horizon.iter().filter(|t| !index.contains_key(t)).collect();
    if !missing.is_empty() {
        let covers = match (values.first(), values.last()) {
            (Some(a), Some(b)) => format!(
                "the file covers {} to {}",
                clock.format(a.0),
                clock.format(b.0)
            ),
            _ => "the file has no rows".into(),
        };
        // Point at where the data stops (or starts), the place the missing rows belong.
        let at = match (values.first(), values.last()) {
            (_, Some(last)) if *missing[0] > last.0 => by_time.get(&last.0).copied().unwrap_or(0),
            (Some(first), _) if *missing[0] < first.0 => {
                by_time.get(&first.0).copied().unwrap_or(0)
            }
            _ => 0,
        };
        let mut loc = Located {
            name: file.name,
            map: SourceMap::new(text),
            out,
        };
        loc.error(
            at,
            format!(
                "{} of {} intervals of the horizon are missing, first {}; {covers}",
                missing.len(),
                horizon.len(),
                clock.format(*missing[0])
            ),
            "give every interval of the planned day (pick a --date inside the data)",
        );
        return None;
    }
    let mut columns = BTreeMap::new();
    for (ci, name) in names.iter().enumerate() {
        let v: Vec<f64> = horizon.iter().map(|t| values[index[t]].1[ci]).collect();
        columns.insert(name.clone(), v);
    }
    Some(Series { columns })
}

/// Why a day-inputs folder could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderError {
    /// The path is not a folder.
    NotAFolder(String),
    /// A file could not be read.
    Read {
        /// The file.
        file: String,
        /// What the system said.
        why: String,
    },
    /// The files have errors.
    Invalid {
        /// The folder.
        folder: String,
        /// Every problem, located.
        diagnostics: Vec<Diagnostic>,
    },
}

impl std::fmt::Display for FolderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderError::NotAFolder(d) => write!(f, "{d} is not a folder; give the folder holding pv.csv, loads.csv and optionally ev-sessions.csv, carbon-intensity.csv, prices.csv"),
            FolderError::Read { file, why } => write!(f, "{file}: cannot read: {why}"),
            FolderError::Invalid { folder, diagnostics } => {
                write!(f, "{folder}: the day inputs have {} error(s)", diagnostics.len())?;
                for d in diagnostics.iter().take(5) {
                    write!(f, "\n{d}")?;
                }
                Ok(())
            }
        }
    }
}

/// Reads a day-inputs folder (pv.csv, loads.csv, and optionally ev-sessions.csv,
/// carbon-intensity.csv, prices.csv) and checks it against the park for `date`.
pub fn load_day_inputs_from_dir(
    park: &Park,
    dir: &std::path::Path,
    date: NaiveDate,
) -> Result<DayInputs, FolderError> {
    load_days_inputs_from_dir(park, dir, date, 1)
}

/// As [`load_day_inputs_from_dir`], for `days` local days from `date` (a horizon of several
/// days; every file must cover all of them).
pub fn load_days_inputs_from_dir(
    park: &Park,
    dir: &std::path::Path,
    date: NaiveDate,
    days: u32,
) -> Result<DayInputs, FolderError> {
    if !dir.is_dir() {
        return Err(FolderError::NotAFolder(dir.display().to_string()));
    }
    let read = |f: &str, optional: bool| -> Result<Option<(String, Vec<u8>)>, FolderError> {
        let p = dir.join(f);
        let name = p.display().to_string();
        match std::fs::read(&p) {
            Ok(b) => Ok(Some((name, b))),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FolderError::Read {
                file: name,
                why: e.to_string(),
            }),
        }
    };
    let pv = read("pv.csv", false)?.unwrap_or_default();
    let loads = read("loads.csv", false)?.unwrap_or_default();
    let sessions = read("ev-sessions.csv", true)?;
    let carbon = read("carbon-intensity.csv", true)?;
    let prices = read("prices.csv", true)?;
    fn file(x: &(String, Vec<u8>)) -> InputFile<'_> {
        InputFile {
            name: &x.0,
            bytes: &x.1,
        }
    }
    let files = DayFiles {
        pv: file(&pv),
        loads: file(&loads),
        sessions: sessions.as_ref().map(file),
        carbon: carbon.as_ref().map(file),
        prices: prices.as_ref().map(file),
    };
    let horizon: Vec<DateTime<Utc>> = (0..days.max(1))
        .filter_map(|d| date.checked_add_days(chrono::Days::new(u64::from(d))))
        .flat_map(|d| park.clock.intervals_of_local_day(d))
        .collect();
    load_inputs(park, &horizon, files).map_err(|diagnostics| FolderError::Invalid {
        folder: dir.display().to_string(),
        diagnostics,
    })
}

impl DayInputs {
    /// The inputs from interval `k` of the horizon on (rolling re-planning): series cut, EV
    /// sessions moved to the new indices (those already gone dropped; a session that started
    /// keeps its whole energy, which errs on the side of charging).
    pub fn tail(&self, k: usize) -> DayInputs {
        let k = k.min(self.len());
        let cut = |v: &Vec<f64>| v[k.min(v.len())..].to_vec();
        DayInputs {
            starts: self.starts[k..].to_vec(),
            pv_kw: self
                .pv_kw
                .iter()
                .map(|(a, v)| (a.clone(), cut(v)))
                .collect(),
            load_kw: self
                .load_kw
                .iter()
                .map(|(a, v)| (a.clone(), cut(v)))
                .collect(),
            sessions: self
                .sessions
                .iter()
                .filter(|s| s.end > k)
                .map(|s| EvSession {
                    first: s.first.saturating_sub(k),
                    end: s.end - k,
                    ..s.clone()
                })
                .collect(),
            carbon_intensity: cut(&self.carbon_intensity),
            carbon_source: self.carbon_source.clone(),
            import_price: cut(&self.import_price),
            export_price: cut(&self.export_price),
            price_source: self.price_source.clone(),
            notes: self.notes.clone(),
        }
    }
}

/// Reads and checks a day's input files for `date` (a local day of the park).
///
/// Every problem is reported with file, line and column; the inputs are returned only when
/// there is none.
pub fn load_day_inputs(
    park: &Park,
    date: NaiveDate,
    files: DayFiles,
) -> Result<DayInputs, Vec<Diagnostic>> {
    let horizon = park.clock.intervals_of_local_day(date);
    load_inputs(park, &horizon, files)
}

/// Reads and checks input files for an arbitrary horizon (interval starts, UTC).
pub fn load_inputs(
    park: &Park,
    horizon: &[DateTime<Utc>],
    files: DayFiles,
) -> Result<DayInputs, Vec<Diagnostic>> {
    let clock = park.clock;
    let mut diags = Vec::new();
    let mut notes = Vec::new();
    let power = ValueRule {
        min: 0.0,
        max: 1e7,
        what: "power in kW, >= 0",
    };

    let pv_ids: Vec<&str> = park.pv.iter().map(|a| a.id.as_str()).collect();
    let pv = read_series(
        files.pv, &clock, horizon, &pv_ids, &pv_ids, power, &mut diags,
    );

    let mut load_ids: Vec<&str> = park.fixed_loads.iter().map(|l| l.id.as_str()).collect();
    load_ids.extend(
        park.flexible_loads
            .iter()
            .filter(|l| matches!(l.flexibility, Flexibility::Curtailable { .. }))
            .map(|l| l.id.as_str()),
    );
    let loads = read_series(
        files.loads,
        &clock,
        horizon,
        &load_ids,
        &load_ids,
        power,
        &mut diags,
    );

    let carbon = match files.carbon {
        Some(f) => read_series(
            f,
            &clock,
            horizon,
            &["kg_per_kwh"],
            &["kg_per_kwh"],
            ValueRule {
                min: 0.0,
                max: 2.0,
                what: "grid carbon intensity in kg CO2/kWh",
            },
            &mut diags,
        )
        .map(|s| {
            (
                s.columns["kg_per_kwh"].clone(),
                format!("hourly intensity from {}", f.name),
            )
        }),
        None => {
            let g = &park.carbon.grid_factor;
            notes.push(format!(
                "no carbon-intensity.csv: every interval uses the park's annual factor {} kg/kWh ({} {}, {})",
                g.value.0, g.region, g.data_year, g.status.tag()
            ));
            Some((
                vec![g.value.0; horizon.len()],
                format!(
                    "annual factor {} {} {}",
                    g.region,
                    g.data_year,
                    g.status.tag()
                ),
            ))
        }
    };

    let prices = match files.prices {
        Some(f) => read_series(
            f,
            &clock,
            horizon,
            &["import_cny_per_kwh", "export_cny_per_kwh"],
            &["import_cny_per_kwh", "export_cny_per_kwh"],
            ValueRule {
                min: -10.0,
                max: 100.0,
                what: "a price in CNY/kWh",
            },
            &mut diags,
        )
        .map(|s| {
            (
                s.columns["import_cny_per_kwh"].clone(),
                s.columns["export_cny_per_kwh"].clone(),
                format!("price override {}", f.name),
            )
        }),
        None => {
            let mut import = Vec::with_capacity(horizon.len());
            let mut ok = true;
            for t in horizon {
                match park.tariff.import_price_at(clock.local(*t).naive_local()) {
                    Some(p) => import.push(p.0),
                    None => {
                        ok = false;
                        import.push(0.0);
                    }
                }
            }
            if !ok {
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: "tariff".into(),
                    line: 1,
                    column: 1,
                    message: "the park's tariff has no price for some intervals of the horizon"
                        .into(),
                    hint: Some("run `pedf check` on the park file".into()),
                });
            }
            let export = vec![park.tariff.export_price.0; horizon.len()];
            Some((import, export, format!("tariff \"{}\"", park.tariff.name)))
        }
    };

    let sessions = match files.sessions {
        Some(f) => read_sessions(park, f, horizon, &mut notes, &mut diags),
        None => {
            notes.push("no ev-sessions.csv: no EV sessions planned".into());
            Some(Vec::new())
        }
    };

    if !diags.is_empty() {
        diags.sort_by(|a, b| {
            (a.file.as_str(), a.line, a.column).cmp(&(b.file.as_str(), b.line, b.column))
        });
        return Err(diags);
    }
    let (Some(pv), Some(loads), Some((ci, csrc)), Some((imp, exp, psrc)), Some(sessions)) =
        (pv, loads, carbon, prices, sessions)
    else {
        return Err(diags);
    };
    Ok(DayInputs {
        starts: horizon.to_vec(),
        pv_kw: pv.columns,
        load_kw: loads.columns,
        sessions,
        carbon_intensity: ci,
        carbon_source: csrc,
        import_price: imp,
        export_price: exp,
        price_source: psrc,
        notes,
    })
}

/// A session already on a charger: arrival, departure, and the byte offset of its row.
type Booked = (DateTime<Utc>, DateTime<Utc>, usize);

fn read_sessions(
    park: &Park,
    file: InputFile,
    horizon: &[DateTime<Utc>],
    notes: &mut Vec<String>,
    out: &mut Vec<Diagnostic>,
) -> Option<Vec<EvSession>> {
    let text = text_of(file, out)?;
    let before = out.len();
    let mut loc = Located {
        name: file.name,
        map: SourceMap::new(text),
        out,
    };
    let all = rows(text);
    const HEADER: [&str; 5] = ["id", "charger", "arrival", "departure", "energy_kwh"];
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            "first line: id,charger,arrival,departure,energy_kwh",
        );
        return None;
    };
    let got: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if got != HEADER {
        loc.error(
            header.line_offset,
            format!("header is `{}`", got.join(",")),
            "the header must be exactly: id,charger,arrival,departure,energy_kwh",
        );
        return None;
    }
    let chargers: HashMap<&str, f64> = park
        .ev_chargers
        .iter()
        .map(|c| (c.id.as_str(), c.max_power.0))
        .collect();
    let charger_ids: Vec<&str> = park.ev_chargers.iter().map(|c| c.id.as_str()).collect();
    let step = park.clock.interval.duration();
    let (h0, h1) = match (horizon.first(), horizon.last()) {
        (Some(a), Some(b)) => (*a, *b + step),
        _ => return Some(Vec::new()),
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut by_charger: HashMap<String, Vec<Booked>> = HashMap::new();
    let mut sessions = Vec::new();
    for row in body {
        if row.fields.len() != 5 {
            loc.error(
                row.line_offset,
                format!("{} fields, expected 5", row.fields.len()),
                "id,charger,arrival,departure,energy_kwh",
            );
            continue;
        }
        let f = &row.fields;
        let id = f[0].1.to_string();
        if id.is_empty() {
            loc.error(f[0].0, "empty session id".into(), "give each session an id");
        } else if let Some(&l) = seen.get(&id) {
            let (line, _) = loc.map.locate(l);
            loc.error(
                f[0].0,
                format!("session id `{id}` repeats (first at line {line})"),
                "session ids are unique",
            );
        }
        seen.insert(id.clone(), row.line_offset);
        let charger = f[1].1;
        let max_kw = match chargers.get(charger) {
            Some(&k) => Some(k),
            None => {
                let near = crate::config::suggest_public(charger, &charger_ids)
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                loc.error(
                    f[1].0,
                    format!("charger `{charger}` is not in the park"),
                    &format!(
                        "{near}chargers are {}..{}",
                        charger_ids.first().unwrap_or(&""),
                        charger_ids.last().unwrap_or(&"")
                    ),
                );
                None
            }
        };
        let arrival = parse_rfc3339(f[2].1)
            .map_err(|e| loc.error(f[2].0, e.to_string(), "RFC 3339 with an offset"))
            .ok();
        let departure = parse_rfc3339(f[3].1)
            .map_err(|e| loc.error(f[3].0, e.to_string(), "RFC 3339 with an offset"))
            .ok();
        let energy = match f[4].1.parse::<f64>() {
            Ok(e) if e.is_finite() && e >= 0.0 => Some(e),
            _ => {
                loc.error(
                    f[4].0,
                    format!("energy_kwh `{}` is not a non-negative number", f[4].1),
                    "the energy the car needs, kWh, e.g. 35",
                );
                None
            }
        };
        let (Some(a), Some(d), Some(e)) = (arrival, departure, energy) else {
            continue;
        };
        if d <= a {
            loc.error(
                f[3].0,
                format!("session leaves ({}) before it arrives ({})", f[3].1, f[2].1),
                "departure must be after arrival",
            );
            continue;
        }
        let dwell_h = (d - a).num_seconds() as f64 / 3600.0;
        if let Some(max_kw) = max_kw {
            if e > max_kw * dwell_h + 1e-9 {
                loc.error(f[4].0, format!("{e} kWh is more than charger {charger} can give in {dwell_h:.2} h at {max_kw} kW ({:.1} kWh)", max_kw * dwell_h), "lower energy_kwh or check the times");
                continue;
            }
            let list = by_charger.entry(charger.to_string()).or_default();
            if let Some(&(_, _, other)) = list.iter().find(|(oa, od, _)| a < *od && *oa < d) {
                let (line, _) = loc.map.locate(other);
                loc.error(
                    f[2].0,
                    format!("charger {charger} already has a session at this time (line {line})"),
                    "one session per charger at a time",
                );
                continue;
            }
            list.push((a, d, row.line_offset));
        }
        if d <= h0 || a >= h1 {
            continue; // another day's session
        }
        // Intervals the car is present for in full.
        let first = horizon
            .iter()
            .position(|t| *t >= a)
            .unwrap_or(horizon.len());
        let end = horizon
            .iter()
            .rposition(|t| *t + step <= d)
            .map(|i| i + 1)
            .unwrap_or(0)
            .max(first);
        let mut need = e;
        if a < h0 || d > h1 {
            let inside = (d.min(h1) - a.max(h0)).num_seconds() as f64 / 3600.0;
            need = e * inside / dwell_h;
            notes.push(format!(
                "session {id} runs past the horizon: {need:.1} of its {e} kWh required inside it (prorated by time present)"
            ));
        }
        sessions.push(EvSession {
            id,
            charger: charger.to_string(),
            arrival: a,
            departure: d,
            energy_kwh: need,
            first,
            end,
        });
    }
    (out.len() == before).then_some(sessions)
}

/// Reads a grid carbon-intensity series (`start,kg_per_kwh`, any period, hourly or at the
/// park's interval) into start → kg/kWh. Starts must be in order without duplicates; values in
/// 0..2. Used by the carbon accounting for user-supplied hourly factors.
pub fn read_intensity_series(
    file: InputFile,
    clock: &ParkClock,
) -> Result<BTreeMap<DateTime<Utc>, f64>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let Some(text) = text_of(file, &mut out) else {
        return Err(out);
    };
    let mut loc = Located {
        name: file.name,
        map: SourceMap::new(text),
        out: &mut out,
    };
    let all = rows(text);
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            "first line: start,kg_per_kwh",
        );
        return Err(out);
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if names != ["start", "kg_per_kwh"] {
        loc.error(
            header.line_offset,
            format!("header is `{}`", names.join(",")),
            "the header is start,kg_per_kwh",
        );
        return Err(out);
    }
    let mut series = BTreeMap::new();
    let mut last: Option<DateTime<Utc>> = None;
    for row in body {
        if row.fields.len() != 2 {
            loc.error(
                row.line_offset,
                format!("{} fields, the header has 2", row.fields.len()),
                "start,kg_per_kwh",
            );
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let Some(t) = loc.interval_start(row.fields[0], clock) else {
            continue;
        };
        if last.is_some_and(|l| t <= l) {
            loc.error(
                toff,
                format!("{ttext} is not after the row above it"),
                "rows in time order, one per start",
            );
            continue;
        }
        last = Some(t);
        let (voff, v) = row.fields[1];
        match v.parse::<f64>() {
            Ok(x) if (0.0..=2.0).contains(&x) => {
                series.insert(t, x);
            }
            _ => loc.error(
                voff,
                format!("kg_per_kwh: `{v}` is not a number in 0..2"),
                "kg CO2 per kWh, e.g. 0.6361",
            ),
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(series)
}
