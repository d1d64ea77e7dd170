//! The grid meters' energy counters against the EMS's own records. A meter at the grid
//! connection that reports its forward and reverse active energy counters (the grid company's
//! billing meter over DL/T 645: 正向/反向有功总电能, times its CT and PT ratios) has them taken at
//! every interval boundary: the first reading at or after the boundary, within
//! [`BOUNDARY_TOLERANCE_S`]. The energy between two boundaries, by pedf-carbon's counter logic
//! (a counter that goes down is a gap, never an estimate), is that interval's import and
//! export at the meter: stored (`meter_intervals`) and compared with the interval record the
//! EMS integrated from the power it read, a difference beyond what the reading's lateness and
//! the meters' accuracy allow said in a warning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_carbon::counters::{intervals_from_counter, CounterIssue};
use pedf_core::records::IntervalRecord;
use pedf_core::time::ParkClock;
use pedf_devices::capability::{DeviceState, Field, Quality};
use pedf_store::MeterInterval;

/// How late after a boundary a counter reading may be taken as the boundary's, s of the EMS's
/// time: a meter read less often than this leaves its intervals without a figure (said once).
pub(crate) const BOUNDARY_TOLERANCE_S: i64 = 60;

/// The share of the larger figure two meters of class 0.5S may differ by (each within 0.5 %
/// of the energy, IEC 62053-22).
const ACCURACY_SHARE: f64 = 0.01;

/// One step of device `d`'s energy counters on the primary side, kWh: a DL/T 645 meter counts
/// in hundredths of a kWh of its secondary side (XXXXXX.XX), times its CT and PT ratios; other
/// meters are taken to count whole kWh (their registers' scale is their template's).
pub(crate) fn counter_step_kwh(d: &pedf_devices::template::DeviceConfig) -> f64 {
    if d.meter_address.is_some() {
        0.01 * d.ct_ratio.unwrap_or(1.0) * d.pt_ratio.unwrap_or(1.0)
    } else {
        1.0
    }
}

/// Where device `d`'s energy counters wrap to zero on the primary side, kWh: a DL/T 645-2007
/// energy register holds XXXXXX.XX kWh (4 BCD bytes), so 999 999.99 is followed by 0.00, a
/// wrap at 1 000 000 kWh of its secondary side times its CT and PT ratios; other meters' wrap
/// is not known (a counter that goes down is a gap).
pub(crate) fn counter_wrap_kwh(d: &pedf_devices::template::DeviceConfig) -> Option<f64> {
    d.meter_address
        .is_some()
        .then(|| 1_000_000.0 * d.ct_ratio.unwrap_or(1.0) * d.pt_ratio.unwrap_or(1.0))
}

/// One meter's counters at the boundaries it was read at.
#[derive(Debug, Default)]
struct Track {
    /// One step of its counters on the primary side, kWh.
    resolution_kwh: f64,
    /// Where its counters wrap to zero, kWh (`None`: not known).
    wrap_kwh: Option<f64>,
    /// The time of the last reading taken.
    last_at: Option<DateTime<Utc>>,
    /// Boundary -> (import, export, how late it was read, s); the last two kept.
    at: BTreeMap<DateTime<Utc>, (f64, Option<f64>, f64)>,
}

/// The grid meters with counters, each tracked.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tracks: BTreeMap<String, Track>,
    /// What was last said of each meter's figures (a state is said when it begins, not at
    /// every interval: a meter polled less often than the tolerance, or one with a wrong
    /// ratio, would otherwise say it 96 times a day).
    said: BTreeMap<String, Said>,
}

/// How a meter's last interval went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Said {
    /// A figure that agrees with the EMS's record.
    Agrees,
    /// A figure more apart from the record than allowed.
    Apart,
    /// No figure.
    Gap,
}

/// What a cycle's readings gave: an interval's energy at a meter, or why an interval has none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Taken {
    /// The interval's energy at the meter, and one step of its counters, kWh.
    Interval(MeterInterval, f64),
    /// Why the interval from this start has no figure at the meter.
    Gap(String, DateTime<Utc>, String),
}

impl Counters {
    /// Tracks `meters` (the grid meters: device id, one step of its counters and where they
    /// wrap to zero, kWh).
    pub(crate) fn new(meters: &[(String, f64, Option<f64>)]) -> Counters {
        Counters {
            tracks: meters
                .iter()
                .map(|(m, step, wrap)| {
                    (
                        m.clone(),
                        Track {
                            resolution_kwh: *step,
                            wrap_kwh: *wrap,
                            ..Track::default()
                        },
                    )
                })
                .collect(),
            said: BTreeMap::new(),
        }
    }

    /// Whether `meter`'s interval going `now` is news: it is when it differs from how the
    /// meter's last interval went (the first interval that agrees is news only after one
    /// that did not). Returns how the last one went when it is.
    pub(crate) fn news(&mut self, meter: &str, now: Said) -> Option<Option<Said>> {
        let before = self.said.insert(meter.to_string(), now);
        match (before, now) {
            (None, Said::Agrees) => None,
            (b, n) if b == Some(n) => None,
            (b, _) => Some(b),
        }
    }

    /// Takes each meter's counters read since the last cycle; returns the intervals whose end
    /// boundary was taken now (or why one has no figure).
    pub(crate) fn observe(
        &mut self,
        states: &BTreeMap<String, DeviceState>,
        clock: &ParkClock,
        now: DateTime<Utc>,
    ) -> Vec<Taken> {
        let mut out = Vec::new();
        for (meter, track) in &mut self.tracks {
            let Some(state) = states.get(meter) else {
                continue;
            };
            let Some(imp) = state
                .reading(Field::ImportKwh, now)
                .filter(|r| r.quality == Quality::Good)
            else {
                continue;
            };
            let export = state
                .reading(Field::ExportKwh, now)
                .filter(|r| r.quality == Quality::Good && r.at == imp.at)
                .map(|r| r.value);
            let t = imp.at;
            if track.last_at.is_some_and(|l| l >= t) {
                continue;
            }
            let boundary = clock.interval_start(t);
            let first_after = track.last_at.is_none_or(|l| l < boundary);
            let first_ever = track.last_at.is_none();
            track.last_at = Some(t);
            if !first_after {
                continue;
            }
            let lag = (t - boundary).num_milliseconds() as f64 / 1000.0;
            if lag > BOUNDARY_TOLERANCE_S as f64 {
                // The first reading of a run far into its interval: no boundary to miss yet.
                if first_ever {
                    continue;
                }
                out.push(Taken::Gap(
                    meter.clone(),
                    boundary - clock.interval.duration(),
                    format!(
                        "its counters were read {lag:.0} s after {}, more than {BOUNDARY_TOLERANCE_S} s",
                        clock.format(boundary)
                    ),
                ));
                track.at.clear();
                continue;
            }
            track.at.insert(boundary, (imp.value, export, lag));
            let start = boundary - clock.interval.duration();
            if let Some(&(imp0, exp0, lag0)) = track.at.get(&start) {
                out.push(interval(
                    meter,
                    clock,
                    start,
                    (imp0, exp0, lag0),
                    (imp.value, export, lag),
                    track.resolution_kwh,
                    track.wrap_kwh,
                ));
            }
            while track.at.len() > 2 {
                track.at.pop_first();
            }
        }
        out
    }
}

/// The interval from `start` at `meter` from its counters at its two boundaries.
fn interval(
    meter: &str,
    clock: &ParkClock,
    start: DateTime<Utc>,
    a: (f64, Option<f64>, f64),
    b: (f64, Option<f64>, f64),
    resolution_kwh: f64,
    wrap_kwh: Option<f64>,
) -> Taken {
    let end = start + clock.interval.duration();
    let energy = |x: f64, y: f64| {
        let c = intervals_from_counter(&[(start, x), (end, y)], clock, wrap_kwh, start, end);
        c.energy
            .get(&start)
            .copied()
            .ok_or_else(|| match c.issues.first() {
                Some(CounterIssue::Reset { before, after, .. }) => format!(
                    "its counter went down from {before} to {after} kWh (replaced or cleared)"
                ),
                Some(other) => format!("{other:?}"),
                None => "no reading".into(),
            })
    };
    let import = energy(a.0, b.0);
    let export = match (a.1, b.1) {
        (Some(x), Some(y)) => energy(x, y).map(Some),
        _ => Ok(None),
    };
    match (import, export) {
        (Ok(import_kwh), Ok(export_kwh)) => Taken::Interval(
            MeterInterval {
                meter: meter.to_string(),
                start,
                import_kwh,
                export_kwh,
                lag_s: a.2 + b.2,
            },
            resolution_kwh,
        ),
        (Err(why), _) | (_, Err(why)) => Taken::Gap(meter.to_string(), start, why),
    }
}

/// How far the meter's figure `m` and the EMS's record `r` of one interval may differ, kWh:
/// one step of the meter's counters (`resolution_kwh`: two readings each cut to a step), the
/// meters' accuracy, and the energy of the reading's lateness at the interval's mean power
/// (that much may belong to the neighbouring intervals).
pub(crate) fn tolerance_kwh(
    m: &MeterInterval,
    r: &IntervalRecord,
    clock: &ParkClock,
    resolution_kwh: f64,
) -> f64 {
    let h = clock.interval.hours().0;
    let mean_kw = (r.grid_import_kwh + r.grid_export_kwh).max(m.import_kwh) / h;
    resolution_kwh
        + ACCURACY_SHARE * r.grid_import_kwh.max(m.import_kwh)
        + mean_kw * m.lag_s / 3600.0
}

/// The warning when the meter's figure `m` and the EMS's record `r` differ by more than
/// [`tolerance_kwh`], or none.
pub(crate) fn disagreement(
    m: &MeterInterval,
    r: &IntervalRecord,
    clock: &ParkClock,
    resolution_kwh: f64,
) -> Option<String> {
    let tol = tolerance_kwh(m, r, clock, resolution_kwh);
    let import_off = (m.import_kwh - r.grid_import_kwh).abs();
    let export_off = m.export_kwh.map_or(0.0, |e| (e - r.grid_export_kwh).abs());
    (import_off.max(export_off) > tol).then(|| {
        format!(
            "interval {}: the grid meter {} counted {:.2} kWh import{} and the EMS's record {:.2} kWh import, {:.2} kWh export: more apart than the {tol:.2} kWh its counters' step, the meters' accuracy and a reading {:.0} s late allow",
            clock.format(m.start),
            m.meter,
            m.import_kwh,
            m.export_kwh
                .map(|e| format!(", {e:.2} kWh export,"))
                .unwrap_or_default(),
            r.grid_import_kwh,
            r.grid_export_kwh,
            m.lag_s
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pedf_devices::capability::Capability;

    fn clock() -> ParkClock {
        ParkClock::new(
            chrono_tz::Asia::Shanghai,
            pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A meter read every 20 s: the first reading after each boundary is the boundary's (its
    /// lateness kept), the interval between two boundaries is the counters' difference; a
    /// counter that goes down leaves the interval a gap; a meter read too late after a
    /// boundary gives no figure for the interval before it.
    #[test]
    fn the_counters_at_the_boundaries_give_each_intervals_energy() {
        let clock = clock();
        let mut c = Counters::new(&[("bill".to_string(), 0.01, Some(1_000_000.0))]);
        let mut state = DeviceState::new(
            "bill",
            Capability::Meter,
            std::time::Duration::from_secs(600),
        );
        let mut read = |c: &mut Counters, t: &str, imp: f64, exp: f64| {
            let t = at(t);
            state.set(Field::ImportKwh, imp, t);
            state.set(Field::ExportKwh, exp, t);
            c.observe(&[("bill".to_string(), state.clone())].into(), &clock, t)
        };
        assert_eq!(read(&mut c, "2026-06-22T09:59:50+08:00", 99.0, 5.0), []);
        // 10:00:10 is the first reading after 10:00 (10 s late): the boundary's.
        assert_eq!(read(&mut c, "2026-06-22T10:00:10+08:00", 100.0, 5.0), []);
        assert_eq!(read(&mut c, "2026-06-22T10:07:00+08:00", 150.0, 5.0), []);
        // 10:15:05: the interval 10:00-10:15.
        let got = read(&mut c, "2026-06-22T10:15:05+08:00", 200.5, 5.5);
        assert_eq!(
            got,
            [Taken::Interval(
                MeterInterval {
                    meter: "bill".into(),
                    start: at("2026-06-22T10:00:00+08:00"),
                    import_kwh: 100.5,
                    export_kwh: Some(0.5),
                    lag_s: 15.0,
                },
                0.01
            )]
        );
        // Replaced: the counter starts again from 0.
        let got = read(&mut c, "2026-06-22T10:30:02+08:00", 3.0, 0.0);
        assert!(
            matches!(&got[..], [Taken::Gap(m, s, why)] if m == "bill" && *s == at("2026-06-22T10:15:00+08:00") && why.contains("went down from 200.5 to 3")),
            "{got:?}"
        );
        // Read 2 minutes after 10:45: no figure for 10:30-10:45 (and none from it for 10:45).
        let got = read(&mut c, "2026-06-22T10:47:00+08:00", 50.0, 0.0);
        assert!(
            matches!(&got[..], [Taken::Gap(_, s, why)] if *s == at("2026-06-22T10:30:00+08:00") && why.contains("120 s after")),
            "{got:?}"
        );
        assert_eq!(read(&mut c, "2026-06-22T11:00:01+08:00", 80.0, 0.0), []);
        // A register that wraps (999 999.99 is followed by 0.00): the interval counts across
        // the wrap, 0.50 before it and 0.70 after.
        assert_eq!(
            read(&mut c, "2026-06-22T11:15:01+08:00", 999_999.5, 0.0).len(),
            1
        );
        let got = read(&mut c, "2026-06-22T11:30:01+08:00", 0.7, 0.0);
        assert!(
            matches!(&got[..], [Taken::Interval(m, _)] if m.start == at("2026-06-22T11:15:00+08:00") && (m.import_kwh - 1.2).abs() < 1e-6),
            "{got:?}"
        );
    }

    /// How a meter's intervals go is said when it changes, not at every interval.
    #[test]
    fn a_meters_state_is_said_when_it_changes() {
        let mut c = Counters::new(&[("bill".to_string(), 0.01, None)]);
        let seq = [
            Said::Agrees,
            Said::Agrees,
            Said::Gap,
            Said::Gap,
            Said::Apart,
            Said::Apart,
            Said::Agrees,
            Said::Agrees,
        ];
        let news: Vec<_> = seq.iter().map(|s| c.news("bill", *s)).collect();
        assert_eq!(
            news,
            [
                None,
                None,
                Some(Some(Said::Agrees)),
                None,
                Some(Some(Said::Gap)),
                None,
                Some(Some(Said::Apart)),
                None
            ]
        );
    }

    /// The EMS's record and the meter agree within the meters' accuracy and the reading's
    /// lateness; beyond it a warning says both figures.
    #[test]
    fn a_record_the_meter_disagrees_with_is_said() {
        let clock = clock();
        let m = MeterInterval {
            meter: "bill".into(),
            start: at("2026-06-22T10:00:00+08:00"),
            import_kwh: 100.0,
            export_kwh: Some(0.0),
            lag_s: 20.0,
        };
        let r = |imp: f64| IntervalRecord {
            start: m.start,
            grid_import_kwh: imp,
            ..Default::default()
        };
        // 400 kW for 20 s is 2.2 kWh; 1 % is 1 kWh; a step of 0.05 kWh.
        assert!((tolerance_kwh(&m, &r(98.5), &clock, 0.05) - 3.27).abs() < 0.01);
        assert_eq!(disagreement(&m, &r(98.5), &clock, 0.05), None);
        // A meter behind 1000/5 A transformers counts in steps of 2 kWh.
        assert_eq!(disagreement(&m, &r(96.0), &clock, 2.0), None);
        let said = disagreement(&m, &r(90.0), &clock, 2.0).unwrap();
        assert!(
            said.contains("the grid meter bill counted 100.00 kWh import, 0.00 kWh export, and the EMS's record 90.00 kWh import"),
            "{said}"
        );
    }
}
