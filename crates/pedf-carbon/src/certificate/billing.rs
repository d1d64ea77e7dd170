//! The grid company's billing meter beside the records: what its energy counters gave for the
//! period's intervals (DL/T 645 forward and reverse active energy, read at the interval
//! boundaries and differenced, `crate::counters`), set against the records' grid import and
//! export over the same intervals. An auditor reconciles a statement's grid figures with the
//! meter the utility bills from; the certificate names that meter, states both and the
//! difference, and a digest of the meter's intervals that the verifier checks against the
//! file it is given. The figures stay on the records (the bus balance needs every flow of one
//! instant); the meter is the check on them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use pedf_core::time::ParkClock;
use serde::{Deserialize, Serialize};

use crate::merkle::sha256_hex;
use crate::records::IntervalRecord;

/// One interval at one billing meter, from its energy counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterInterval {
    /// The meter (the park file's device id).
    pub meter: String,
    /// The interval's start.
    pub start: DateTime<Utc>,
    /// Import (forward active energy), kWh.
    pub import_kwh: f64,
    /// Export (reverse active energy), kWh; `None` where the meter has no reverse counter.
    pub export_kwh: Option<f64>,
}

/// The header of a meter-interval file.
pub const METER_INTERVALS_HEADER: &str = "meter,start,import_kwh,export_kwh";

impl MeterInterval {
    /// The interval as the digest and the file have it: `meter,start,import,export` with the
    /// start in RFC 3339 at the park's offset and each energy with exactly 6 decimals (export
    /// empty where the meter has no reverse counter).
    pub fn canonical_line(&self, clock: &ParkClock) -> String {
        format!(
            "{},{},{:.6},{}",
            self.meter,
            clock.format(self.start),
            self.import_kwh,
            self.export_kwh.map_or(String::new(), |e| format!("{e:.6}"))
        )
    }
}

/// The meter intervals as a file: the header, then one canonical line each, in time order.
pub fn write_meter_intervals(list: &[MeterInterval], clock: &ParkClock) -> String {
    let mut s = format!("{METER_INTERVALS_HEADER}\n");
    for m in sorted(list) {
        s.push_str(&m.canonical_line(clock));
        s.push('\n');
    }
    s
}

/// Reads a meter-interval file (`name` names it in errors): the header, then `meter,start,
/// import_kwh,export_kwh` lines (`#` comments and blank lines skipped); each mistake names
/// its line and what would be valid.
pub fn parse_meter_intervals(name: &str, text: &str) -> Result<Vec<MeterInterval>, String> {
    let mut out = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header {
            if line != METER_INTERVALS_HEADER {
                return Err(format!(
                    "{at}: the header must be `{METER_INTERVALS_HEADER}`, not `{line}`"
                ));
            }
            header = true;
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            return Err(format!(
                "{at}: {} fields; a line is meter,start,import_kwh,export_kwh (export empty where the meter has no reverse counter)",
                f.len()
            ));
        }
        if f[0].is_empty() {
            return Err(format!("{at}: meter: empty; the meter's device id"));
        }
        let start = pedf_core::time::parse_rfc3339(f[1]).map_err(|e| {
            format!(
                "{at}: start: `{}` is not an RFC 3339 time with offset ({e})",
                f[1]
            )
        })?;
        let kwh = |field: &str, v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{at}: {field}: `{v}` is not an energy (kWh, 0 or more)"))
        };
        out.push(MeterInterval {
            meter: f[0].to_string(),
            start,
            import_kwh: kwh("import_kwh", f[2])?,
            export_kwh: if f[3].is_empty() {
                None
            } else {
                Some(kwh("export_kwh", f[3])?)
            },
        });
    }
    if !header {
        return Err(format!(
            "{name}: no header `{METER_INTERVALS_HEADER}`: not a meter-interval file"
        ));
    }
    Ok(out)
}

fn sorted(list: &[MeterInterval]) -> Vec<&MeterInterval> {
    let mut v: Vec<&MeterInterval> = list.iter().collect();
    v.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.meter.cmp(&b.meter)));
    v
}

/// The billing meter's figures beside the records' (MWh, to 1e-6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingMeter {
    /// The billing meters whose counters gave these figures (device ids, as in `meters`).
    pub meters: Vec<String>,
    /// Intervals of the period every billing meter counted and the records have.
    pub intervals_counted: usize,
    /// Import at the billing meters over those intervals, from their counters, MWh.
    pub import_mwh: f64,
    /// Export at the billing meters over those intervals, MWh (`None`: a meter has no reverse
    /// counter).
    pub export_mwh: Option<f64>,
    /// The records' grid import over the same intervals, MWh.
    pub records_import_mwh: f64,
    /// The records' grid export over the same intervals, MWh.
    pub records_export_mwh: f64,
    /// (records - meter) / meter for import (`None` when the meter counted no import).
    pub import_difference_share: Option<f64>,
    /// SHA-256 (hex) of the period's meter intervals, canonical lines in time then meter
    /// order joined by a line feed.
    pub intervals_sha256: String,
    /// How the figures are made.
    pub rule: String,
}

/// How the billing meter's figures are made, as the certificate states it.
pub const BILLING_RULE: &str = "each billing meter's forward and reverse active energy counters (DL/T 645-2007), read at most 60 s after each interval boundary, differenced per interval (a reset or a missing reading is a gap, never estimated; counters x CT x PT); summed over the intervals every billing meter counted and the records have, beside the records' grid import and export of the same intervals; the statement's figures are the records', the meter is the utility's check on them";

fn round6(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// The billing meter's block for `[from, to)`: `None` when no meter interval falls inside.
pub fn billing_meter(
    records: &[IntervalRecord],
    intervals: &[MeterInterval],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    clock: &ParkClock,
) -> Option<BillingMeter> {
    let inside: Vec<MeterInterval> = intervals
        .iter()
        .filter(|m| m.start >= from && m.start < to)
        .cloned()
        .collect();
    if inside.is_empty() {
        return None;
    }
    let meters: BTreeSet<&str> = inside.iter().map(|m| m.meter.as_str()).collect();
    let mut by_start: BTreeMap<DateTime<Utc>, Vec<&MeterInterval>> = BTreeMap::new();
    for m in &inside {
        by_start.entry(m.start).or_default().push(m);
    }
    let recorded: BTreeMap<DateTime<Utc>, &IntervalRecord> = records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .map(|r| (r.start, r))
        .collect();
    let (mut imp, mut exp, mut r_imp, mut r_exp) = (0.0, 0.0, 0.0, 0.0);
    let mut exp_known = true;
    let mut counted = 0;
    for (t, ms) in &by_start {
        let Some(r) = recorded.get(t) else { continue };
        let here: BTreeSet<&str> = ms.iter().map(|m| m.meter.as_str()).collect();
        if here != meters {
            continue;
        }
        counted += 1;
        for m in ms {
            imp += m.import_kwh;
            match m.export_kwh {
                Some(e) => exp += e,
                None => exp_known = false,
            }
        }
        r_imp += r.grid_import_kwh;
        r_exp += r.grid_export_kwh;
    }
    let lines: Vec<String> = sorted(&inside)
        .into_iter()
        .map(|m| m.canonical_line(clock))
        .collect();
    Some(BillingMeter {
        meters: meters.into_iter().map(String::from).collect(),
        intervals_counted: counted,
        import_mwh: round6(imp / 1000.0),
        export_mwh: exp_known.then(|| round6(exp / 1000.0)),
        records_import_mwh: round6(r_imp / 1000.0),
        records_export_mwh: round6(r_exp / 1000.0),
        import_difference_share: (imp > 0.0).then(|| round6((r_imp - imp) / imp)),
        intervals_sha256: sha256_hex(lines.join("\n").as_bytes()),
        rule: BILLING_RULE.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pedf_core::time::IntervalLength;

    fn clock() -> ParkClock {
        ParkClock::new(
            chrono_tz::Asia::Shanghai,
            IntervalLength::from_minutes(15).unwrap(),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        pedf_core::time::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn a_meter_interval_file_round_trips_and_its_mistakes_are_located() {
        let c = clock();
        let list = vec![
            MeterInterval {
                meter: "grid".into(),
                start: at("2026-06-22T19:15:00+08:00"),
                import_kwh: 68.5,
                export_kwh: Some(0.0),
            },
            MeterInterval {
                meter: "grid".into(),
                start: at("2026-06-22T19:00:00+08:00"),
                import_kwh: 69.0,
                export_kwh: None,
            },
        ];
        let text = write_meter_intervals(&list, &c);
        assert_eq!(
            text,
            "meter,start,import_kwh,export_kwh\ngrid,2026-06-22T19:00:00+08:00,69.000000,\ngrid,2026-06-22T19:15:00+08:00,68.500000,0.000000\n"
        );
        let back = parse_meter_intervals("m.csv", &text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].export_kwh, None);
        assert_eq!(
            parse_meter_intervals(
                "m.csv",
                "meter,start,import_kwh,export_kwh\ngrid,2026-06-22T19:00:00+08:00,-1,\n"
            ),
            Err("m.csv:2: import_kwh: `-1` is not an energy (kWh, 0 or more)".into())
        );
        assert!(parse_meter_intervals("m.csv", "start,pv\n")
            .unwrap_err()
            .starts_with("m.csv:1: the header must be"));
        assert!(parse_meter_intervals(
            "m.csv",
            "# the meter\nmeter,start,import_kwh,export_kwh\ngrid,yesterday,1,1\n"
        )
        .unwrap_err()
        .starts_with("m.csv:3: start: `yesterday` is not an RFC 3339 time"));
    }

    #[test]
    fn the_billing_meter_is_summed_over_the_intervals_it_and_the_records_both_have() {
        let c = clock();
        let t0 = at("2026-06-22T19:00:00+08:00");
        let q = chrono::Duration::minutes(15);
        let records: Vec<IntervalRecord> = (0..4)
            .map(|k| IntervalRecord {
                start: t0 + q * k,
                grid_import_kwh: 50.0,
                load_kwh: 50.0,
                ..Default::default()
            })
            .collect();
        // Two meters; the second misses the last interval, which is not counted.
        let mut m = Vec::new();
        for k in 0..4 {
            m.push(MeterInterval {
                meter: "grid-a".into(),
                start: t0 + q * k,
                import_kwh: 30.0,
                export_kwh: Some(0.5),
            });
            if k < 3 {
                m.push(MeterInterval {
                    meter: "grid-b".into(),
                    start: t0 + q * k,
                    import_kwh: 20.5,
                    export_kwh: Some(0.0),
                });
            }
        }
        let b = billing_meter(&records, &m, t0, t0 + q * 4, &c).unwrap();
        assert_eq!(b.meters, ["grid-a", "grid-b"]);
        assert_eq!(b.intervals_counted, 3);
        assert_eq!(b.import_mwh, 0.1515);
        assert_eq!(b.export_mwh, Some(0.0015));
        assert_eq!(b.records_import_mwh, 0.15);
        assert_eq!(b.records_export_mwh, 0.0);
        assert_eq!(b.import_difference_share, Some(-0.009901));
        // The digest changes with any figure of the meter's.
        let mut changed = m.clone();
        changed[0].import_kwh = 30.001;
        let d = billing_meter(&records, &changed, t0, t0 + q * 4, &c).unwrap();
        assert_ne!(d.intervals_sha256, b.intervals_sha256);
        // A meter without a reverse counter: no export figure.
        m[0].export_kwh = None;
        let e = billing_meter(&records, &m, t0, t0 + q * 4, &c).unwrap();
        assert_eq!(e.export_mwh, None);
        // None inside the period: no block.
        assert_eq!(
            billing_meter(&records, &m, t0 + q * 8, t0 + q * 9, &c),
            None
        );
    }
}
