//! A bias correction learned from the park's own history of PV forecasts and measurements.
//!
//! For every array and local hour of the day h, the factor is
//! `(measured_h + k) / (forecast_h + k)` over the history, where `k` is `PRIOR_DAYS` days'
//! worth of that hour's mean forecast energy: with little history the factor stays near 1,
//! with a lot it converges to the observed ratio. Factors are bounded to 0.2..1.5. This
//! removes systematic errors a physical model cannot know (a morning shadow, soiling, a wrong
//! turbidity, a derated string) and leaves weather errors alone.
//!
//! History file (CSV, `#` comments): `start,array,forecast_kw,measured_kw`: interval start
//! (RFC 3339 with offset), PV array id, the forecast made for that interval and the mean
//! power measured, kW, both >= 0.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use pedf_core::config::{suggest_public, Diagnostic, SourceMap};
use pedf_core::csvtext::{rows, text_of, InputFile, Located};
use pedf_core::time::{parse_rfc3339, ParkClock};

use crate::metrics::{error_metrics, ErrorMetrics};
use crate::pv::PvForecast;

/// Days of prior belief in a factor of 1.
pub const PRIOR_DAYS: f64 = 2.0;
const FACTOR_RANGE: (f64, f64) = (0.2, 1.5);

/// One interval of one array.
#[derive(Debug, Clone, PartialEq)]
pub struct PvRecord {
    /// Interval start.
    pub start: DateTime<Utc>,
    /// The PV array id.
    pub array: String,
    /// The forecast made for the interval, kW.
    pub forecast_kw: f64,
    /// The mean power measured, kW.
    pub measured_kw: f64,
}

/// Reads a PV history file; `arrays` are the park's array ids.
pub fn read_pv_history(file: InputFile, arrays: &[&str]) -> Result<Vec<PvRecord>, Vec<Diagnostic>> {
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
    const HEADER: [&str; 4] = ["start", "array", "forecast_kw", "measured_kw"];
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            "first line: start,array,forecast_kw,measured_kw",
        );
        return Err(out);
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if names != HEADER {
        loc.error(
            header.line_offset,
            format!("header is `{}`", names.join(",")),
            "the header is start,array,forecast_kw,measured_kw",
        );
        return Err(out);
    }
    let mut records = Vec::new();
    let mut seen: HashSet<(DateTime<Utc>, String)> = HashSet::new();
    for row in body {
        if row.fields.len() != 4 {
            loc.error(
                row.line_offset,
                format!("{} fields, the header has 4", row.fields.len()),
                "start,array,forecast_kw,measured_kw",
            );
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let Ok(start) = parse_rfc3339(ttext) else {
            loc.error(
                toff,
                format!("`{ttext}` is not an RFC 3339 time with an offset"),
                "e.g. 2026-06-20T12:00:00+08:00",
            );
            continue;
        };
        let (aoff, array) = row.fields[1];
        if !arrays.contains(&array) {
            let near = suggest_public(array, arrays)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            loc.error(
                aoff,
                format!("`{array}` is not a PV array of the park"),
                &format!("{near}arrays: {}", arrays.join(", ")),
            );
            continue;
        }
        if !seen.insert((start, array.to_string())) {
            loc.error(
                toff,
                format!("a second row for {array} at {ttext}"),
                "one row per array and interval",
            );
            continue;
        }
        let mut values = [0.0; 2];
        let mut ok = true;
        for (k, (off, v)) in row.fields[2..].iter().enumerate() {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => values[k] = x,
                _ => {
                    loc.error(
                        *off,
                        format!("{}: `{v}` is not a number >= 0", HEADER[k + 2]),
                        "kW, e.g. 312.5",
                    );
                    ok = false;
                }
            }
        }
        if ok {
            records.push(PvRecord {
                start,
                array: array.to_string(),
                forecast_kw: values[0],
                measured_kw: values[1],
            });
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(records)
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct HourSums {
    forecast: f64,
    measured: f64,
    days: usize,
}

/// Factors per array and local hour.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BiasCorrection {
    factors: BTreeMap<String, [f64; 24]>,
    /// Days of history used.
    pub days: usize,
}

impl BiasCorrection {
    /// Learns the factors from `records` (times read on `clock`).
    pub fn learn(records: &[PvRecord], clock: &ParkClock) -> Self {
        let mut sums: BTreeMap<&str, [HourSums; 24]> = BTreeMap::new();
        let mut days_seen: BTreeMap<(&str, usize), BTreeSet<NaiveDate>> = BTreeMap::new();
        let mut all_days = BTreeSet::new();
        for r in records {
            let local = clock.local(r.start);
            let h = local.hour() as usize;
            let s = &mut sums.entry(&r.array).or_default()[h];
            s.forecast += r.forecast_kw;
            s.measured += r.measured_kw;
            days_seen
                .entry((&r.array, h))
                .or_default()
                .insert(local.date_naive());
            all_days.insert(local.date_naive());
        }
        let mut factors = BTreeMap::new();
        for (array, hours) in sums {
            let mut f = [1.0; 24];
            for (h, s) in hours.iter().enumerate() {
                let days = days_seen.get(&(array, h)).map_or(0, BTreeSet::len);
                if days == 0 || s.forecast <= 0.0 {
                    continue;
                }
                let k = PRIOR_DAYS * s.forecast / days as f64;
                f[h] = ((s.measured + k) / (s.forecast + k)).clamp(FACTOR_RANGE.0, FACTOR_RANGE.1);
            }
            factors.insert(array.to_string(), f);
        }
        BiasCorrection {
            factors,
            days: all_days.len(),
        }
    }

    /// The factor for an array at a local hour (1 when nothing was learned).
    pub fn factor(&self, array: &str, hour: u32) -> f64 {
        self.factors
            .get(array)
            .map_or(1.0, |f| f[hour as usize % 24])
    }

    /// Applies the factors to a forecast, keeping each array within `limits` (kW, by array id).
    pub fn apply(
        &self,
        forecast: &mut PvForecast,
        clock: &ParkClock,
        limits: &BTreeMap<String, f64>,
    ) {
        for a in &mut forecast.arrays {
            let cap = limits.get(&a.id).copied().unwrap_or(f64::INFINITY);
            for (p, t) in a.kw.iter_mut().zip(&forecast.starts) {
                *p = (*p * self.factor(&a.id, clock.local(*t).hour())).clamp(0.0, cap);
            }
        }
    }
}

/// Days of history the correction learns from (and is backtested with).
pub const TRAIN_DAYS: usize = 14;

/// Corrects a park's forecast with its PV history (`history` names the file in the notes):
/// factors learned from the last [`TRAIN_DAYS`] days before the forecast, each array kept
/// within its converter rating; the correction's rolling backtest goes to the forecast's
/// notes.
pub fn correct_with_history(
    park: &pedf_core::Park,
    history: &str,
    records: &[PvRecord],
    forecast: &mut PvForecast,
) {
    let first = forecast.starts.first().copied();
    let mut days: Vec<NaiveDate> = records
        .iter()
        .filter(|r| first.is_none_or(|f| r.start < f))
        .map(|r| park.clock.local(r.start).date_naive())
        .collect();
    days.sort();
    days.dedup();
    let keep: BTreeSet<NaiveDate> = days.iter().rev().take(TRAIN_DAYS).copied().collect();
    let recent: Vec<PvRecord> = records
        .iter()
        .filter(|r| keep.contains(&park.clock.local(r.start).date_naive()))
        .cloned()
        .collect();
    let correction = BiasCorrection::learn(&recent, &park.clock);
    let limits: BTreeMap<String, f64> = park
        .pv
        .iter()
        .map(|a| (a.id.clone(), a.converter_rating.0))
        .collect();
    correction.apply(forecast, &park.clock, &limits);
    forecast.notes.push(format!(
        "{history}: bias correction learned from {} day(s) of history before the forecast",
        correction.days
    ));
    let train_days = TRAIN_DAYS.min(days.len().saturating_sub(1)).max(1);
    match backtest_correction(records, &park.clock, train_days, park.pv_peak_power().0) {
        Some(bt) => forecast.notes.push(format!(
            "{history}: rolling backtest over {} day(s): uncorrected {}; corrected {} (nMAE of installed kWp)",
            bt.days, bt.raw, bt.corrected
        )),
        None => forecast
            .notes
            .push(format!("{history}: too little history to backtest the correction")),
    }
}

/// Result of a rolling backtest of the correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorrectionBacktest {
    /// Days scored (each corrected with factors learned from the days before it only).
    pub days: usize,
    /// The uncorrected forecast's errors.
    pub raw: ErrorMetrics,
    /// The corrected forecast's errors.
    pub corrected: ErrorMetrics,
}

/// Scores the correction honestly: every day of the history from the `train_days + 1`-th on is
/// corrected with factors learned from the `train_days` days before it, and compared with
/// what was measured. `capacity_kw` normalises the nMAE. `None` with too little history.
pub fn backtest_correction(
    records: &[PvRecord],
    clock: &ParkClock,
    train_days: usize,
    capacity_kw: f64,
) -> Option<CorrectionBacktest> {
    let mut by_day: BTreeMap<NaiveDate, Vec<&PvRecord>> = BTreeMap::new();
    for r in records {
        by_day
            .entry(clock.local(r.start).date_naive())
            .or_default()
            .push(r);
    }
    let days: Vec<NaiveDate> = by_day.keys().copied().collect();
    if days.len() <= train_days || train_days == 0 {
        return None;
    }
    let (mut raw_f, mut cor_f, mut actual) = (Vec::new(), Vec::new(), Vec::new());
    let mut scored = 0;
    for (i, day) in days.iter().enumerate().skip(train_days) {
        let window_start = *day - Duration::days(train_days as i64);
        let train: Vec<PvRecord> = days[..i]
            .iter()
            .filter(|d| **d >= window_start)
            .flat_map(|d| by_day[d].iter().map(|r| (*r).clone()))
            .collect();
        if train.is_empty() {
            continue;
        }
        let c = BiasCorrection::learn(&train, clock);
        for r in &by_day[day] {
            raw_f.push(r.forecast_kw);
            cor_f.push(r.forecast_kw * c.factor(&r.array, clock.local(r.start).hour()));
            actual.push(r.measured_kw);
        }
        scored += 1;
    }
    Some(CorrectionBacktest {
        days: scored,
        raw: error_metrics(&raw_f, &actual, capacity_kw),
        corrected: error_metrics(&cor_f, &actual, capacity_kw),
    })
}
