//! Grid requests (需求响应, the park as a resource the grid calls on): a window, what the grid
//! asks of the park's power at its connection in it, a price; the baseline the park's
//! delivery is measured against; what it delivered, interval by interval, and the
//! settlement line.
//!
//! The baseline is a day-matching average (the family of customer baseline methods reviewed
//! in Energies 2022, 15(14), 5259, doi:10.3390/en15145259: the same interval of the last
//! like days, averaged): by default the last 5 like days (working days for a working day,
//! weekend days for a weekend day) before the request's day, each with every interval of the
//! window recorded and none under a grid request of its own. ILLUSTRATIVE [U]: the number of
//! days and the like-day rule are this module's defaults, configurable; the provincial
//! demand-response rules in force (Shandong's) say which the settlement uses and must be
//! checked before a settlement is relied on.
//!
//! Delivery is counted per interval of the window against the baseline, at most what was
//! asked (over-delivery is not paid): an import cap asks the baseline's import above the cap;
//! an import reduction asks its kW; an export cap asks the baseline's export above the cap;
//! an export floor asks the export the baseline lacks below it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Diagnostic, Severity, SourceMap};
use crate::records::IntervalRecord;
use crate::time::ParkClock;

/// What the grid asks of the park's power at its connection in the window, kW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestKind {
    /// Import at most this much.
    CapImport(f64),
    /// Import this much less than the baseline.
    ReduceImport(f64),
    /// Export at most this much.
    CapExport(f64),
    /// Export at least this much.
    ExportAtLeast(f64),
}

impl RequestKind {
    /// The kind's name in files and the API.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::CapImport(_) => "cap_import",
            RequestKind::ReduceImport(_) => "reduce_import",
            RequestKind::CapExport(_) => "cap_export",
            RequestKind::ExportAtLeast(_) => "export_at_least",
        }
    }

    /// Its kW.
    pub fn kw(self) -> f64 {
        match self {
            RequestKind::CapImport(x)
            | RequestKind::ReduceImport(x)
            | RequestKind::CapExport(x)
            | RequestKind::ExportAtLeast(x) => x,
        }
    }

    /// The kind of `name` with `kw`, or what names there are.
    pub fn of(name: &str, kw: f64) -> Result<RequestKind, String> {
        if !(kw.is_finite() && kw >= 0.0) {
            return Err(format!("kw {kw}: give a number of kW, 0 or more"));
        }
        Ok(match name {
            "cap_import" => RequestKind::CapImport(kw),
            "reduce_import" => RequestKind::ReduceImport(kw),
            "cap_export" => RequestKind::CapExport(kw),
            "export_at_least" => RequestKind::ExportAtLeast(kw),
            other => {
                return Err(format!(
                "kind `{other}` is not a grid request's; kinds: cap_import, reduce_import, cap_export, export_at_least"
            ))
            }
        })
    }
}

/// A grid request as given to an API (the park's `POST /api/v1/grid-requests`, the fleet hub's
/// `POST /api/v1/requests`), JSON; unknown members refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenRequest {
    /// Its id (default: made from the time it was given).
    #[serde(default)]
    pub id: Option<String>,
    /// Its kind's name ([`RequestKind::name`]).
    pub kind: String,
    /// Its kW.
    pub kw: f64,
    /// The window's start, RFC 3339 (on the park's intervals).
    pub start: String,
    /// Its end.
    pub end: String,
    /// What a delivered kWh is paid, CNY/kWh.
    #[serde(default)]
    pub price_cny_per_kwh: Option<f64>,
}

/// Whether `id` can be a grid request's id: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A grid request.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRequest {
    /// Its id (the requester's, or given when it is taken).
    pub id: String,
    /// The window: from (an interval start).
    pub start: DateTime<Utc>,
    /// To (an interval start, after `start`).
    pub end: DateTime<Utc>,
    /// What it asks.
    pub kind: RequestKind,
    /// What a delivered kWh is paid, CNY/kWh (none: no price).
    pub price_cny_per_kwh: Option<f64>,
    /// Who asked (`api:<token label>`, `iec104:<master>`, a file).
    pub source: String,
}

impl GridRequest {
    /// What is wrong with the request against the park's clock, if anything: a window on
    /// interval starts, `end` after `start`, a price of 0 or more.
    pub fn check(&self, clock: &ParkClock) -> Result<(), String> {
        if self.end <= self.start {
            return Err(format!(
                "grid request `{}`: its window ends ({}) before it starts ({})",
                self.id,
                clock.format(self.end),
                clock.format(self.start)
            ));
        }
        for (what, t) in [("start", self.start), ("end", self.end)] {
            if clock.interval_start(t) != t {
                return Err(format!(
                    "grid request `{}`: {what} {} is not on the park's {}-minute intervals",
                    self.id,
                    clock.format(t),
                    clock.interval.minutes()
                ));
            }
        }
        if let Some(p) = self.price_cny_per_kwh {
            if !(p.is_finite() && p >= 0.0) {
                return Err(format!(
                    "grid request `{}`: price {p} CNY/kWh must be 0 or more",
                    self.id
                ));
            }
        }
        Ok(())
    }

    /// The interval starts of its window.
    pub fn intervals(&self, clock: &ParkClock) -> Vec<DateTime<Utc>> {
        let step = chrono::Duration::minutes(i64::from(clock.interval.minutes()));
        let mut out = Vec::new();
        let mut t = self.start;
        while t < self.end {
            out.push(t);
            t += step;
        }
        out
    }
}

/// One `[[grid_request]]` table as written (in a scenario or a file of requests), each value
/// with its place in the file for the errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEntry {
    id: Spanned<String>,
    kind: Spanned<String>,
    kw: Spanned<f64>,
    /// RFC 3339, on the park's intervals.
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    price_cny_per_kwh: Option<f64>,
}

/// The grid requests of `list`, each checked: its kind and kW (an export floor is not held
/// yet), RFC 3339 times on the park's intervals (`clock`, when known), an id given once. Each
/// mistake goes to `error` with its place in the file, what is wrong and what would be valid;
/// `source` says where the requests come from.
pub fn read_entries(
    list: &[RequestEntry],
    clock: Option<&ParkClock>,
    source: &str,
    error: &mut dyn FnMut(Range<usize>, String, &str),
) -> Vec<GridRequest> {
    let mut out: Vec<GridRequest> = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let key = |k: &str| format!("grid_request[{i}].{k}");
        let kind = match RequestKind::of(r.kind.get_ref(), *r.kw.get_ref()) {
            Ok(k) => Some(k),
            Err(e) => {
                let span = if e.starts_with("kw") {
                    r.kw.span()
                } else {
                    r.kind.span()
                };
                error(
                    span,
                    format!("{}: {e}", key("kind")),
                    "cap_import, reduce_import, cap_export or export_at_least with kw 0 or more",
                );
                None
            }
        };
        let mut time = |v: &Spanned<String>, k: &str| match crate::time::parse_rfc3339(v.get_ref())
        {
            Ok(t) => Some(t),
            Err(_) => {
                error(
                    v.span(),
                    format!("{}: `{}` is not an RFC 3339 time", key(k), v.get_ref()),
                    "e.g. 2026-07-15T14:00:00+08:00, on the park's intervals",
                );
                None
            }
        };
        let (start, end) = (time(&r.start, "start"), time(&r.end, "end"));
        if out.iter().any(|g| g.id == *r.id.get_ref()) {
            error(
                r.id.span(),
                format!("{}: `{}` is given twice", key("id"), r.id.get_ref()),
                "each request its own id",
            );
        }
        if let (Some(kind), Some(start), Some(end)) = (kind, start, end) {
            let g = GridRequest {
                id: r.id.get_ref().clone(),
                start,
                end,
                kind,
                price_cny_per_kwh: r.price_cny_per_kwh,
                source: source.to_string(),
            };
            if let Some(c) = clock {
                if let Err(e) = g.check(c) {
                    error(
                        r.start.span(),
                        format!("{}: {e}", key("start")),
                        "a window on the park's intervals, its end after its start",
                    );
                    continue;
                }
            }
            out.push(g);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsFile {
    grid_request: Vec<RequestEntry>,
}

/// Reads a file of grid requests (`[[grid_request]]` tables: id, kind, kw, start, end and
/// optionally price_cny_per_kwh) for a park on `clock`, each from `source`; every mistake
/// located (file, line, column, what would be valid).
pub fn load_file(
    path: &Path,
    clock: &ParkClock,
    source: &str,
) -> Result<Vec<GridRequest>, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let located = |map: &SourceMap, span: Range<usize>, message: String, hint: &str| {
        let (line, column) = map.locate_span(&span);
        Diagnostic {
            severity: Severity::Error,
            file: name.clone(),
            line,
            column,
            message,
            hint: Some(hint.to_string()),
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            severity: Severity::Error,
            file: name.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
            hint: Some("a TOML file of [[grid_request]] tables".into()),
        }]
    })?;
    let map = SourceMap::new(&text);
    let f: RequestsFile = toml::from_str(&text).map_err(|e| {
        vec![located(
            &map,
            e.span().unwrap_or(0..0),
            e.message().trim().to_string(),
            "[[grid_request]] tables with id, kind, kw, start, end and optionally price_cny_per_kwh",
        )]
    })?;
    let mut out = Vec::new();
    let list = read_entries(
        &f.grid_request,
        Some(clock),
        source,
        &mut |span, m, hint| out.push(located(&map, span, m, hint)),
    );
    if out.is_empty() {
        Ok(list)
    } else {
        Err(out)
    }
}

/// How the baseline is made (the run file's `[baseline]`: `days`, `look_back_days`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineRule {
    /// Like days averaged.
    pub days: usize,
    /// How far back like days are looked for, days.
    pub look_back_days: i64,
}

impl BaselineRule {
    /// Whether the rule can make a baseline: 1 to 30 like days, looked for over at least as
    /// many days and at most 400.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=30).contains(&self.days) {
            return Err(format!(
                "days = {}: give 1 to 30 like days (the rules in use average 3 to 10)",
                self.days
            ));
        }
        if !(self.days as i64..=400).contains(&self.look_back_days) {
            return Err(format!(
                "look_back_days = {}: give {} (days) to 400",
                self.look_back_days, self.days
            ));
        }
        Ok(())
    }
}

impl Default for BaselineRule {
    fn default() -> Self {
        BaselineRule {
            days: 5,
            look_back_days: 45,
        }
    }
}

/// The park's baseline over a request's window: each interval's import and export as the
/// like days had them, kW (mean power over the interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The like days used, newest first.
    pub days: Vec<NaiveDate>,
    /// Per interval of the window: (start, import kW, export kW).
    pub intervals: Vec<(DateTime<Utc>, f64, f64)>,
}

impl Baseline {
    /// The reference `plan` gives over `request`'s window (each interval it covers, its
    /// planned import and export; `days` empty): what a request without a baseline (too few
    /// like days recorded) is measured against, the plan the park followed before it. Not a
    /// settlement basis: the grid settles against a baseline of measured days.
    pub fn of_plan(request: &GridRequest, plan: &crate::plan::Plan, clock: &ParkClock) -> Baseline {
        let planned: BTreeMap<DateTime<Utc>, (f64, f64)> = plan
            .intervals
            .iter()
            .map(|i| {
                (
                    i.start.with_timezone(&Utc),
                    (i.grid_import_kw, i.grid_export_kw),
                )
            })
            .collect();
        Baseline {
            days: Vec::new(),
            intervals: request
                .intervals(clock)
                .into_iter()
                .filter_map(|t| planned.get(&t).map(|(i, e)| (t, *i, *e)))
                .collect(),
        }
    }
}

fn working(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The baseline of `request` from the park's interval `records` under `rule`: the last like
/// days before the request's local day with every interval of the window recorded, none of
/// them a day in `excluded` (days with grid requests of their own). An error says how many
/// like days were found when fewer than the rule's.
pub fn baseline(
    request: &GridRequest,
    records: &[IntervalRecord],
    clock: &ParkClock,
    rule: &BaselineRule,
    excluded: &BTreeSet<NaiveDate>,
) -> Result<Baseline, String> {
    let by_start: BTreeMap<DateTime<Utc>, &IntervalRecord> =
        records.iter().map(|r| (r.start, r)).collect();
    let window = request.intervals(clock);
    let day = clock.local(request.start).date_naive();
    let h = f64::from(clock.interval.minutes()) / 60.0;
    let mut days = Vec::new();
    let mut sums = vec![(0.0, 0.0); window.len()];
    for back in 1..=rule.look_back_days {
        if days.len() >= rule.days {
            break;
        }
        let Some(d) = day.checked_sub_days(chrono::Days::new(back as u64)) else {
            break;
        };
        if working(d) != working(day) || excluded.contains(&d) {
            continue;
        }
        // The same local times on day `d`.
        let shifted: Option<Vec<&IntervalRecord>> = window
            .iter()
            .map(|t| {
                let local = clock.local(*t).naive_local();
                let same = d.and_time(local.time());
                let at = clock
                    .tz
                    .from_local_datetime(&same)
                    .earliest()?
                    .with_timezone(&Utc);
                by_start.get(&at).copied()
            })
            .collect();
        let Some(rs) = shifted else {
            continue;
        };
        for (s, r) in sums.iter_mut().zip(rs) {
            s.0 += r.grid_import_kwh / h;
            s.1 += r.grid_export_kwh / h;
        }
        days.push(d);
    }
    if days.len() < rule.days {
        return Err(format!(
            "grid request `{}`: {} like day{} with the whole window recorded in the last {} days, {} needed for the baseline",
            request.id,
            days.len(),
            if days.len() == 1 { "" } else { "s" },
            rule.look_back_days,
            rule.days
        ));
    }
    let n = days.len() as f64;
    Ok(Baseline {
        days,
        intervals: window
            .into_iter()
            .zip(sums)
            .map(|(t, (i, e))| (t, i / n, e / n))
            .collect(),
    })
}

/// One interval of a request's delivery, kW (mean power over the interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalDelivery {
    /// The interval's start.
    pub start: DateTime<Utc>,
    /// What was asked of the interval.
    pub requested_kw: f64,
    /// What the park delivered of it (at most the request).
    pub delivered_kw: f64,
    /// The baseline's import (+) or export (-) at the connection.
    pub baseline_kw: f64,
    /// The measured import (+) or export (-).
    pub measured_kw: f64,
}

/// A request's delivery and its settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Per interval of the window that has a record.
    pub intervals: Vec<IntervalDelivery>,
    /// Energy asked over the recorded intervals, kWh.
    pub requested_kwh: f64,
    /// Energy delivered, kWh.
    pub delivered_kwh: f64,
    /// Delivered over requested (1 when nothing was asked).
    pub share: f64,
    /// The settlement: price x delivered, CNY (none without a price).
    pub settlement_cny: Option<f64>,
}

/// What the park delivered of `request` against `baseline`, from its interval `records`.
pub fn delivery(
    request: &GridRequest,
    baseline: &Baseline,
    records: &[IntervalRecord],
    clock: &ParkClock,
) -> Delivery {
    let h = f64::from(clock.interval.minutes()) / 60.0;
    let by_start: BTreeMap<DateTime<Utc>, &IntervalRecord> =
        records.iter().map(|r| (r.start, r)).collect();
    let mut out = Vec::new();
    for (t, b_imp, b_exp) in &baseline.intervals {
        let Some(r) = by_start.get(t) else {
            continue;
        };
        let (imp, exp) = (r.grid_import_kwh / h, r.grid_export_kwh / h);
        let (requested, delivered) = match request.kind {
            RequestKind::CapImport(c) => {
                let asked = (b_imp - c).max(0.0);
                (asked, (b_imp - imp).clamp(0.0, asked))
            }
            RequestKind::ReduceImport(x) => (x, (b_imp - imp).clamp(0.0, x)),
            RequestKind::CapExport(c) => {
                let asked = (b_exp - c).max(0.0);
                (asked, (b_exp - exp).clamp(0.0, asked))
            }
            RequestKind::ExportAtLeast(x) => {
                let asked = (x - b_exp).max(0.0);
                (asked, (exp - b_exp).clamp(0.0, asked))
            }
        };
        out.push(IntervalDelivery {
            start: *t,
            requested_kw: requested,
            delivered_kw: delivered,
            baseline_kw: b_imp - b_exp,
            measured_kw: imp - exp,
        });
    }
    let requested_kwh: f64 = out.iter().map(|i| i.requested_kw * h).sum();
    let delivered_kwh: f64 = out.iter().map(|i| i.delivered_kw * h).sum();
    Delivery {
        share: if requested_kwh > 1e-9 {
            delivered_kwh / requested_kwh
        } else {
            1.0
        },
        settlement_cny: request.price_cny_per_kwh.map(|p| p * delivered_kwh),
        intervals: out,
        requested_kwh,
        delivered_kwh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::IntervalLength;

    fn clock() -> ParkClock {
        ParkClock::new(
            chrono_tz::Asia::Shanghai,
            IntervalLength::from_minutes(15).unwrap(),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        let c = clock();
        c.tz.from_local_datetime(
            &chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap(),
        )
        .unwrap()
        .with_timezone(&Utc)
    }

    fn record(start: DateTime<Utc>, import_kw: f64, export_kw: f64) -> IntervalRecord {
        IntervalRecord {
            start,
            pv_kwh: 0.0,
            grid_import_kwh: import_kw * 0.25,
            grid_export_kwh: export_kw * 0.25,
            battery_charge_kwh: 0.0,
            battery_discharge_kwh: 0.0,
            load_kwh: 0.0,
            ev_kwh: 0.0,
            ev_chargers: Vec::new(),
            batteries: Vec::new(),
        }
    }

    /// Wednesday 1 July 2026, 14:00-15:00 local: a summer afternoon cap.
    fn request(kind: RequestKind) -> GridRequest {
        GridRequest {
            id: "r1".into(),
            start: at("2026-07-01 14:00"),
            end: at("2026-07-01 15:00"),
            kind,
            price_cny_per_kwh: Some(3.0),
            source: "test".into(),
        }
    }

    /// Import `kw(day)` every 14:00-15:00 interval of June 2026 and of 1 July.
    fn june(kw: impl Fn(NaiveDate) -> f64) -> Vec<IntervalRecord> {
        let mut out = Vec::new();
        for d in 1..=31 {
            let day = if d <= 30 {
                NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
            } else {
                NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()
            };
            for m in [0, 15, 30, 45] {
                let t = at(&format!("{day} 14:{m:02}"));
                out.push(record(t, kw(day), 0.0));
            }
        }
        out
    }

    #[test]
    fn the_baseline_is_the_mean_of_the_last_like_days() {
        // Weekdays 400 kW, weekends 100 kW; 29 June (Monday) had a request of its own.
        let records = june(|d| {
            if working(d) {
                400.0 + f64::from(d.day())
            } else {
                100.0
            }
        });
        let excluded: BTreeSet<NaiveDate> = [NaiveDate::from_ymd_opt(2026, 6, 29).unwrap()].into();
        let r = request(RequestKind::CapImport(300.0));
        let b = baseline(&r, &records, &clock(), &BaselineRule::default(), &excluded).unwrap();
        // 30 June (Tue), 26 (Fri), 25, 24, 23: 29 excluded, 27-28 a weekend.
        let want: Vec<NaiveDate> = [30, 26, 25, 24, 23]
            .iter()
            .map(|d| NaiveDate::from_ymd_opt(2026, 6, *d).unwrap())
            .collect();
        assert_eq!(b.days, want);
        let mean = 400.0 + (30.0 + 26.0 + 25.0 + 24.0 + 23.0) / 5.0;
        assert_eq!(b.intervals.len(), 4);
        assert!(b
            .intervals
            .iter()
            .all(|(_, i, e)| (i - mean).abs() < 1e-9 && *e == 0.0));
        // Too few recorded like days: said.
        let e = baseline(
            &r,
            &records[..8],
            &clock(),
            &BaselineRule::default(),
            &excluded,
        )
        .unwrap_err();
        assert!(
            e.contains("2 like days with the whole window recorded"),
            "{e}"
        );
    }

    #[test]
    fn delivery_counts_at_most_what_was_asked_and_settles_it() {
        let records = june(|d| {
            if d == NaiveDate::from_ymd_opt(2026, 7, 1).unwrap() {
                280.0
            } else if working(d) {
                420.0
            } else {
                100.0
            }
        });
        let none = BTreeSet::new();
        // Cap at 300 kW against a 420 kW baseline: 120 kW asked, 120 delivered (280 measured:
        // the 20 kW below the cap are not paid).
        let r = request(RequestKind::CapImport(300.0));
        let b = baseline(&r, &records, &clock(), &BaselineRule::default(), &none).unwrap();
        let d = delivery(&r, &b, &records, &clock());
        assert_eq!(d.intervals.len(), 4);
        assert!((d.requested_kwh - 120.0).abs() < 1e-9, "{d:?}");
        assert!((d.delivered_kwh - 120.0).abs() < 1e-9);
        assert!((d.share - 1.0).abs() < 1e-12);
        assert_eq!(d.settlement_cny, Some(360.0));
        // Reduce by 200 kW: 140 of 200 delivered a quarter hour, 70 %.
        let r = request(RequestKind::ReduceImport(200.0));
        let d = delivery(&r, &b, &records, &clock());
        assert!((d.delivered_kwh - 140.0).abs() < 1e-9);
        assert!((d.share - 0.7).abs() < 1e-9);
        // Export at least 50 kW where the baseline exported nothing and the park imported:
        // nothing delivered.
        let r = request(RequestKind::ExportAtLeast(50.0));
        let d = delivery(&r, &b, &records, &clock());
        assert!((d.requested_kwh - 50.0).abs() < 1e-9);
        assert_eq!(d.delivered_kwh, 0.0);
    }

    #[test]
    fn a_request_off_the_intervals_or_backwards_is_refused() {
        let c = clock();
        let mut r = request(RequestKind::CapImport(300.0));
        assert!(r.check(&c).is_ok());
        r.end = r.start;
        assert!(r.check(&c).unwrap_err().contains("ends"));
        let mut r = request(RequestKind::CapImport(300.0));
        r.start += chrono::Duration::minutes(7);
        assert!(r
            .check(&c)
            .unwrap_err()
            .contains("not on the park's 15-minute intervals"));
        assert!(RequestKind::of("shed", 10.0).is_err());
        assert!(RequestKind::of("cap_import", -1.0).is_err());
    }
}
