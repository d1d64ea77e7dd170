//! Load forecast from the park's own history: a profile per day type (workday, weekend,
//! holiday) built from the most recent days of that type, recent days weighing more.
//!
//! For a forecast day of type T, the candidate days are the days of type T before the first
//! forecast day, within `lookback_days`, most recent first, at most `max_days` of them; day k
//! (0 = most recent) has weight `decay^k`. Each interval's forecast is the weighted mean of the
//! candidates' values at the same local time of day (days missing that interval are skipped).
//! When no day of type T is in the history, holidays fall back to weekends, weekends to
//! workdays and the other way round, and the forecast's notes say so.
//!
//! History file: the planner's `loads.csv` format over any past period (`start,<load id>...`,
//! one column per fixed load and curtailable flexible load, kW), except that intervals may be
//! missing and an empty cell is a missing value.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use pedf_core::assets::Flexibility;
use pedf_core::config::{suggest_public, Diagnostic, SourceMap};
use pedf_core::csvtext::{rows, text_of, InputFile, Located};
use pedf_core::park::Park;
use pedf_core::time::ParkClock;

use crate::calendar::{Calendar, DayType};
use crate::metrics::{error_metrics, ErrorMetrics};

/// Columns a load history (and the planner's loads.csv) has for a park.
pub fn load_columns(park: &Park) -> Vec<String> {
    park.fixed_loads
        .iter()
        .map(|l| l.id.clone())
        .chain(
            park.flexible_loads
                .iter()
                .filter(|l| matches!(l.flexibility, Flexibility::Curtailable { .. }))
                .map(|l| l.id.clone()),
        )
        .collect()
}

/// Past demand per load: interval start → kW, per column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadHistory {
    /// The load ids, in the file's column order.
    pub columns: Vec<String>,
    /// Interval start → kW per column (`None`: missing).
    pub values: BTreeMap<DateTime<Utc>, Vec<Option<f64>>>,
}

/// Reads a load history for `park`.
pub fn read_load_history(file: InputFile, park: &Park) -> Result<LoadHistory, Vec<Diagnostic>> {
    let allowed = load_columns(park);
    let allowed_ref: Vec<&str> = allowed.iter().map(String::as_str).collect();
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
            &format!("first line: start,{}", allowed.join(",")),
        );
        return Err(out);
    };
    let mut columns = Vec::new();
    for (i, (off, name)) in header.fields.iter().enumerate() {
        if i == 0 {
            if *name != "start" {
                loc.error(
                    *off,
                    format!("first column is `{name}`, not `start`"),
                    "the first column holds the interval start",
                );
            }
            continue;
        }
        if !allowed_ref.contains(name) {
            let near = suggest_public(name, &allowed_ref)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            loc.error(
                *off,
                format!("`{name}` is not a fixed or curtailable load of the park"),
                &format!("{near}columns: {}", allowed.join(", ")),
            );
        } else if columns.iter().any(|c| c == name) {
            loc.error(
                *off,
                format!("column `{name}` appears twice"),
                "each column once",
            );
        }
        columns.push(name.to_string());
    }
    let clock = &park.clock;
    let mut values = BTreeMap::new();
    let mut first_line: HashMap<DateTime<Utc>, usize> = HashMap::new();
    for row in body {
        if row.fields.len() != header.fields.len() {
            loc.error(
                row.line_offset,
                format!(
                    "{} fields, the header has {}",
                    row.fields.len(),
                    header.fields.len()
                ),
                "one value (or an empty cell) per column",
            );
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let Some(t) = loc.interval_start(row.fields[0], clock) else {
            continue;
        };
        if let Some(&l) = first_line.get(&t) {
            let (line, _) = loc.map.locate(l);
            loc.error(
                toff,
                format!("duplicate row for {ttext} (first at line {line})"),
                "one row per interval",
            );
            continue;
        }
        first_line.insert(t, row.line_offset);
        let mut vals = Vec::with_capacity(columns.len());
        for (i, (off, v)) in row.fields.iter().enumerate().skip(1) {
            if v.is_empty() {
                vals.push(None);
                continue;
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => vals.push(Some(x)),
                _ => {
                    loc.error(
                        *off,
                        format!("{}: `{v}` is not a number >= 0", header.fields[i].1),
                        "kW, or an empty cell for a missing value",
                    );
                    vals.push(None);
                }
            }
        }
        values.insert(t, vals);
    }
    if values.is_empty() && loc.out.is_empty() {
        loc.error(
            header.line_offset,
            "the file has no rows".into(),
            "one row per past interval",
        );
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(LoadHistory { columns, values })
}

/// Settings of the profile method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadModel {
    /// At most this many days of the same type are averaged.
    pub max_days: usize,
    /// Weight ratio between a day and the next more recent one of its type.
    pub decay: f64,
    /// Days further back than this are not used.
    pub lookback_days: i64,
}

impl Default for LoadModel {
    fn default() -> Self {
        LoadModel {
            max_days: 6,
            decay: 0.8,
            lookback_days: 56,
        }
    }
}

/// A load forecast: kW per load per interval.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadForecast {
    /// Interval starts, on the park's clock.
    pub starts: Vec<DateTime<Utc>>,
    /// The load ids.
    pub columns: Vec<String>,
    /// `values[c][i]`: column c, interval i.
    pub values: Vec<Vec<f64>>,
    /// How the forecast was made, and what it had to fill in.
    pub notes: Vec<String>,
}

/// Why a load forecast cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadForecastError {
    /// No usable day of the history has data for a load at a time of day.
    #[error("the history has no data for load `{column}` at {time} local on any usable day before {day}")]
    NoData {
        /// The load id.
        column: String,
        /// The local time of day.
        time: String,
        /// The day forecast.
        day: NaiveDate,
    },
    /// A load of the park has no column in the history.
    #[error("load `{0}` of the park is not in the history")]
    MissingColumn(String),
}

/// One past local day: its values per column by local minute of day.
struct PastDay {
    date: NaiveDate,
    kind: DayType,
    by_minute: HashMap<u32, Vec<Option<f64>>>,
}

fn past_days(history: &LoadHistory, clock: &ParkClock, calendar: &Calendar) -> Vec<PastDay> {
    let mut days: BTreeMap<NaiveDate, PastDay> = BTreeMap::new();
    for (t, vals) in &history.values {
        let local = clock.local(*t);
        let date = local.date_naive();
        let day = days.entry(date).or_insert_with(|| PastDay {
            date,
            kind: calendar.day_type(date),
            by_minute: HashMap::new(),
        });
        day.by_minute
            .insert(local.hour() * 60 + local.minute(), vals.clone());
    }
    days.into_values().collect()
}

fn fallback(kind: DayType) -> [DayType; 3] {
    match kind {
        DayType::Holiday => [DayType::Holiday, DayType::Weekend, DayType::Workday],
        DayType::Weekend => [DayType::Weekend, DayType::Holiday, DayType::Workday],
        DayType::Workday => [DayType::Workday, DayType::Weekend, DayType::Holiday],
    }
}

/// Forecasts every load column of `park` for `days` local days from `first_day`, from the
/// history strictly before `first_day`.
pub fn forecast_loads(
    park: &Park,
    history: &LoadHistory,
    calendar: &Calendar,
    first_day: NaiveDate,
    days: u32,
    model: &LoadModel,
) -> Result<LoadForecast, LoadForecastError> {
    let columns = load_columns(park);
    let index: Vec<usize> = columns
        .iter()
        .map(|c| {
            history
                .columns
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| LoadForecastError::MissingColumn(c.clone()))
        })
        .collect::<Result<_, _>>()?;
    let clock = &park.clock;
    let past: Vec<PastDay> = past_days(history, clock, calendar)
        .into_iter()
        .filter(|d| d.date < first_day && d.date >= first_day - Duration::days(model.lookback_days))
        .collect();
    let mut starts = Vec::new();
    let mut values = vec![Vec::new(); columns.len()];
    let mut notes = Vec::new();
    for k in 0..days {
        let day = first_day + Duration::days(i64::from(k));
        let kind = calendar.day_type(day);
        let (used_kind, candidates) = fallback(kind)
            .into_iter()
            .map(|t| {
                (
                    t,
                    past.iter()
                        .rev()
                        .filter(|d| d.kind == t)
                        .take(model.max_days)
                        .collect::<Vec<_>>(),
                )
            })
            .find(|(_, c)| !c.is_empty())
            .unwrap_or((kind, Vec::new()));
        if used_kind != kind && !candidates.is_empty() {
            notes.push(format!(
                "{day} is a {kind} but the history has no {kind}: the {used_kind} profile is used"
            ));
        }
        for t in clock.intervals_of_local_day(day) {
            let local = clock.local(t);
            let minute = local.hour() * 60 + local.minute();
            for (c, &hi) in index.iter().enumerate() {
                let (mut sum, mut weight) = (0.0, 0.0);
                for (rank, d) in candidates.iter().enumerate() {
                    if let Some(Some(v)) = d.by_minute.get(&minute).map(|vals| vals[hi]) {
                        let w = model.decay.powi(rank as i32);
                        sum += w * v;
                        weight += w;
                    }
                }
                if weight == 0.0 {
                    return Err(LoadForecastError::NoData {
                        column: columns[c].clone(),
                        time: format!("{:02}:{:02}", minute / 60, minute % 60),
                        day,
                    });
                }
                values[c].push(sum / weight);
            }
            starts.push(t);
        }
        if k == 0 || used_kind != kind {
            let dates: Vec<String> = candidates
                .iter()
                .map(|d| d.date.format("%m-%d").to_string())
                .collect();
            notes.push(format!(
                "{day} ({kind}): profile of {} past {used_kind}(s): {}",
                candidates.len(),
                dates.join(" ")
            ));
        }
    }
    Ok(LoadForecast {
        starts,
        columns,
        values,
        notes,
    })
}

/// Rolling backtest: each of the last `days` days of the history is forecast from the data
/// before it and scored on the park's total load. nMAE is relative to the mean actual total.
pub fn backtest_loads(
    park: &Park,
    history: &LoadHistory,
    calendar: &Calendar,
    days: usize,
    model: &LoadModel,
) -> Option<(usize, ErrorMetrics)> {
    let clock = &park.clock;
    let all_days: Vec<NaiveDate> = {
        let mut d: Vec<NaiveDate> = history
            .values
            .keys()
            .map(|t| clock.local(*t).date_naive())
            .collect();
        d.dedup();
        d
    };
    let (mut f, mut a) = (Vec::new(), Vec::new());
    let mut scored = 0;
    for day in all_days.iter().rev().take(days) {
        let Ok(fc) = forecast_loads(park, history, calendar, *day, 1, model) else {
            continue;
        };
        let mut used = false;
        for (i, t) in fc.starts.iter().enumerate() {
            let Some(vals) = history.values.get(t) else {
                continue;
            };
            let actual: Option<f64> = fc
                .columns
                .iter()
                .map(|c| {
                    history
                        .columns
                        .iter()
                        .position(|h| h == c)
                        .and_then(|j| vals[j])
                })
                .sum();
            if let Some(actual) = actual {
                f.push(fc.values.iter().map(|col| col[i]).sum::<f64>());
                a.push(actual);
                used = true;
            }
        }
        scored += usize::from(used);
    }
    if a.is_empty() {
        return None;
    }
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    Some((scored, error_metrics(&f, &a, mean)))
}
