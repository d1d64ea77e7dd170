//! From meter energy counters to interval energies, without inventing data.
//!
//! A meter reports a cumulative kWh counter. Readings are taken at interval boundaries (the
//! runtime reads meters on the park's clock). The energy of an interval is the difference of
//! the readings at its start and end, when both exist and the counter behaved:
//!
//! * **Roll-over**: the counter wraps at a known maximum (e.g. 999 999.9 kWh); a decrease from
//!   near the maximum to near zero is a wrap, and the energy is `max - before + after`.
//! * **Reset**: any other decrease (meter replaced, memory cleared). The interval's energy is
//!   unknown: it becomes a gap, reported, never estimated here.
//! * **Duplicates**: two readings at the same time with the same value are one reading (noted);
//!   with different values, the time is unusable and both intervals around it become gaps.
//! * A reading off the interval boundaries is an error naming it (interpolating would invent).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_core::time::ParkClock;

/// What was found while converting.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterIssue {
    /// The counter wrapped at its maximum; the interval's energy counts the wrap.
    Rollover {
        /// The boundary where it wrapped.
        at: DateTime<Utc>,
        /// The reading before, kWh.
        before: f64,
        /// The reading after, kWh.
        after: f64,
    },
    /// The counter went down otherwise (meter replaced, memory cleared): the interval is a gap.
    Reset {
        /// The boundary where it went down.
        at: DateTime<Utc>,
        /// The reading before, kWh.
        before: f64,
        /// The reading after, kWh.
        after: f64,
    },
    /// Two readings at one time.
    Duplicate {
        /// The time.
        at: DateTime<Utc>,
        /// Whether both had the same value (one reading; else both intervals around it are gaps).
        same_value: bool,
    },
    /// A reading off the interval boundaries (an error: interpolating would invent data).
    OffBoundary {
        /// The reading's time.
        at: DateTime<Utc>,
    },
    /// No reading at this boundary: the intervals on both sides are gaps.
    Missing {
        /// The boundary without a reading.
        at: DateTime<Utc>,
    },
}

/// Interval energies (start → kWh) and the issues met; intervals with unknown energy are absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CounterIntervals {
    /// Interval start → energy, kWh (intervals with unknown energy are absent).
    pub energy: BTreeMap<DateTime<Utc>, f64>,
    /// What was found, in order.
    pub issues: Vec<CounterIssue>,
}

/// Converts readings `(time, counter kWh)` in time order. `rollover`: the value the counter
/// wraps at, if it does. Intervals from `from` to `to` on `clock`.
pub fn intervals_from_counter(
    readings: &[(DateTime<Utc>, f64)],
    clock: &ParkClock,
    rollover: Option<f64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> CounterIntervals {
    let mut out = CounterIntervals::default();
    let mut at: BTreeMap<DateTime<Utc>, Option<f64>> = BTreeMap::new();
    for &(t, v) in readings {
        if clock.interval_start(t) != t {
            out.issues.push(CounterIssue::OffBoundary { at: t });
            continue;
        }
        match at.get(&t) {
            Some(Some(prev)) if *prev == v => out.issues.push(CounterIssue::Duplicate {
                at: t,
                same_value: true,
            }),
            Some(_) => {
                out.issues.push(CounterIssue::Duplicate {
                    at: t,
                    same_value: false,
                });
                at.insert(t, None);
            }
            None => {
                at.insert(t, Some(v));
            }
        }
    }
    let step = clock.interval.duration();
    let mut t = clock.interval_start(from);
    while t < to {
        let end = t + step;
        match (
            at.get(&t).copied().flatten(),
            at.get(&end).copied().flatten(),
        ) {
            (Some(a), Some(b)) if b >= a => {
                out.energy.insert(t, b - a);
            }
            (Some(a), Some(b)) => match rollover {
                Some(max) if a > 0.9 * max && b < 0.1 * max => {
                    out.issues.push(CounterIssue::Rollover {
                        at: end,
                        before: a,
                        after: b,
                    });
                    out.energy.insert(t, max - a + b);
                }
                _ => out.issues.push(CounterIssue::Reset {
                    at: end,
                    before: a,
                    after: b,
                }),
            },
            (None, _) if !at.contains_key(&t) => out.issues.push(CounterIssue::Missing { at: t }),
            _ => {}
        }
        t = end;
    }
    if !at.contains_key(&t) {
        out.issues.push(CounterIssue::Missing { at: t });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use pedf_core::time::IntervalLength;

    fn clock() -> ParkClock {
        ParkClock::new(
            chrono_tz::Asia::Shanghai,
            IntervalLength::from_minutes(15).unwrap(),
        )
    }

    fn t(k: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap() + Duration::minutes(15 * k)
    }

    #[test]
    fn rollover_reset_duplicates_and_gaps() {
        let readings = vec![
            (t(0), 999_990.0),
            (t(1), 999_998.0),
            (t(2), 3.0), // wraps at 1 000 000: 5 kWh
            (t(2), 3.0), // duplicate, same value
            (t(3), 10.0),
            (t(4), 2.0), // reset: unknown
            (t(5), 6.0),
            (t(6) + Duration::minutes(1), 9.0), // off boundary
            (t(8), 20.0),
            (t(8), 21.0), // conflicting duplicate
            (t(9), 25.0),
        ];
        let c = intervals_from_counter(&readings, &clock(), Some(1_000_000.0), t(0), t(9));
        let e: Vec<(i64, f64)> = c
            .energy
            .iter()
            .map(|(k, v)| ((*k - t(0)).num_minutes() / 15, *v))
            .collect();
        assert_eq!(e, vec![(0, 8.0), (1, 5.0), (2, 7.0), (4, 4.0)]);
        assert!(c.issues.contains(&CounterIssue::Rollover {
            at: t(2),
            before: 999_998.0,
            after: 3.0
        }));
        assert!(c.issues.contains(&CounterIssue::Reset {
            at: t(4),
            before: 10.0,
            after: 2.0
        }));
        assert!(c.issues.contains(&CounterIssue::Duplicate {
            at: t(2),
            same_value: true
        }));
        assert!(c.issues.contains(&CounterIssue::Duplicate {
            at: t(8),
            same_value: false
        }));
        assert!(c.issues.contains(&CounterIssue::OffBoundary {
            at: t(6) + Duration::minutes(1)
        }));
        assert!(c.issues.contains(&CounterIssue::Missing { at: t(6) }));
        // Without a known roll-over value, a wrap is a reset: no energy invented.
        let c = intervals_from_counter(&readings, &clock(), None, t(0), t(3));
        assert!(!c.energy.contains_key(&t(1)));
    }
}
