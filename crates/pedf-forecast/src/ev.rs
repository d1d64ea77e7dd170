//! EV demand forecast from past charging sessions.
//!
//! Statistics are kept per kind of day (working days; weekends and holidays together, as car
//! parks of offices see both as "off"): sessions per day, and the sessions themselves
//! (arrival time of day, dwell, energy). The forecast for a day of kind K has `n` sessions,
//! `n` the mean daily count of K rounded; session i takes the arrival at quantile
//! (i + 0.5)/n of K's arrivals, and the median dwell and median energy of the (up to) five
//! past sessions of K that arrived closest to that time, so dwell and energy keep their link
//! with arrival (morning commuters stay all day, afternoon visitors briefly). Energy is capped
//! at what the charger can give in the dwell. Sessions are placed on the park's chargers in
//! arrival order, each on the charger free longest; when none is free the session is left
//! out and the notes say so.
//!
//! Past sessions file: the planner's `ev-sessions.csv` format
//! (`id,charger,arrival,departure,energy_kwh`) over any past period.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use pedf_core::config::{Diagnostic, SourceMap};
use pedf_core::csvtext::{rows, text_of, InputFile, Located};
use pedf_core::park::Park;
use pedf_core::time::{parse_rfc3339, ParkClock};

use crate::calendar::{Calendar, DayType};

/// A past or forecast session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// The charger's park asset id.
    pub charger: String,
    /// When the car plugs in.
    pub arrival: DateTime<Utc>,
    /// When it leaves.
    pub departure: DateTime<Utc>,
    /// The energy it takes, kWh.
    pub energy_kwh: f64,
}

/// Reads past sessions.
pub fn read_sessions(file: InputFile) -> Result<Vec<Session>, Vec<Diagnostic>> {
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
    const HEADER: [&str; 5] = ["id", "charger", "arrival", "departure", "energy_kwh"];
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            "first line: id,charger,arrival,departure,energy_kwh",
        );
        return Err(out);
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if names != HEADER {
        loc.error(
            header.line_offset,
            format!("header is `{}`", names.join(",")),
            "the header is id,charger,arrival,departure,energy_kwh",
        );
        return Err(out);
    }
    let mut ids = HashSet::new();
    let mut sessions = Vec::new();
    for row in body {
        if row.fields.len() != 5 {
            loc.error(
                row.line_offset,
                format!("{} fields, the header has 5", row.fields.len()),
                "id,charger,arrival,departure,energy_kwh",
            );
            continue;
        }
        let f = &row.fields;
        if !ids.insert(f[0].1) {
            loc.error(
                f[0].0,
                format!("session id `{}` appears twice", f[0].1),
                "one row per session",
            );
            continue;
        }
        let mut time = |k: usize| match parse_rfc3339(f[k].1) {
            Ok(t) => Some(t),
            Err(_) => {
                loc.error(
                    f[k].0,
                    format!(
                        "{}: `{}` is not an RFC 3339 time with an offset",
                        HEADER[k], f[k].1
                    ),
                    "e.g. 2026-06-18T08:06:00+08:00",
                );
                None
            }
        };
        let (Some(arrival), Some(departure)) = (time(2), time(3)) else {
            continue;
        };
        if departure <= arrival {
            loc.error(
                f[3].0,
                format!("departure {} is not after arrival {}", f[3].1, f[2].1),
                "a car leaves after it arrives",
            );
            continue;
        }
        let energy = match f[4].1.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => x,
            _ => {
                loc.error(
                    f[4].0,
                    format!("energy_kwh: `{}` is not a number >= 0", f[4].1),
                    "kWh charged in the session, e.g. 23.7",
                );
                continue;
            }
        };
        sessions.push(Session {
            id: f[0].1.into(),
            charger: f[1].1.into(),
            arrival,
            departure,
            energy_kwh: energy,
        });
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(sessions)
}

/// Working days vs days off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvDayKind {
    /// Workdays (commuters charge).
    Working,
    /// Weekends and holidays.
    Off,
}

impl EvDayKind {
    fn of(t: DayType) -> Self {
        if t == DayType::Workday {
            EvDayKind::Working
        } else {
            EvDayKind::Off
        }
    }
}

impl std::fmt::Display for EvDayKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvDayKind::Working => "working day",
            EvDayKind::Off => "day off",
        })
    }
}

/// One past session reduced to what the forecast uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    arrival_min: f64,
    dwell_min: f64,
    energy_kwh: f64,
}

/// Statistics of one kind of day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KindStats {
    /// Days of this kind in the history (from the first to the last session's day).
    pub days: usize,
    /// Sessions on those days.
    pub sessions: usize,
    samples: Vec<Sample>,
}

impl KindStats {
    /// Mean sessions per day.
    pub fn per_day(&self) -> f64 {
        if self.days == 0 {
            0.0
        } else {
            self.sessions as f64 / self.days as f64
        }
    }

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let pos = q * (sorted.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos - pos.floor());
        let j = (i + 1).min(sorted.len() - 1);
        sorted[i] + (sorted[j] - sorted[i]) * f
    }

    /// Arrival (minutes after local midnight) at quantile q; mean dwell and energy.
    pub fn summary(&self) -> Option<(f64, f64, f64, f64, f64)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut arr: Vec<f64> = self.samples.iter().map(|s| s.arrival_min).collect();
        arr.sort_by(f64::total_cmp);
        let n = self.samples.len() as f64;
        Some((
            Self::quantile(&arr, 0.1),
            Self::quantile(&arr, 0.5),
            Self::quantile(&arr, 0.9),
            self.samples.iter().map(|s| s.dwell_min).sum::<f64>() / n,
            self.samples.iter().map(|s| s.energy_kwh).sum::<f64>() / n,
        ))
    }
}

/// What the history says about charging, by kind of day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvStats {
    /// The statistics of each kind of day seen.
    pub kinds: BTreeMap<EvDayKind, KindStats>,
}

/// Learns the statistics from past sessions.
pub fn learn_ev(sessions: &[Session], clock: &ParkClock, calendar: &Calendar) -> EvStats {
    let mut stats = EvStats::default();
    let days: BTreeSet<NaiveDate> = sessions
        .iter()
        .map(|s| clock.local(s.arrival).date_naive())
        .collect();
    let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
        return stats;
    };
    let mut d = first;
    while d <= last {
        stats
            .kinds
            .entry(EvDayKind::of(calendar.day_type(d)))
            .or_default()
            .days += 1;
        d += Duration::days(1);
    }
    for s in sessions {
        let local = clock.local(s.arrival);
        let kind = EvDayKind::of(calendar.day_type(local.date_naive()));
        let k = stats.kinds.entry(kind).or_default();
        k.sessions += 1;
        k.samples.push(Sample {
            arrival_min: f64::from(local.hour() * 60 + local.minute())
                + f64::from(local.second()) / 60.0,
            dwell_min: (s.departure - s.arrival).num_seconds() as f64 / 60.0,
            energy_kwh: s.energy_kwh,
        });
    }
    stats
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    KindStats::quantile(&v, 0.5)
}

/// The expected sessions of `days` local days from `first_day`.
pub fn forecast_ev(
    park: &Park,
    stats: &EvStats,
    calendar: &Calendar,
    first_day: NaiveDate,
    days: u32,
) -> (Vec<Session>, Vec<String>) {
    let clock = &park.clock;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    // Per charger: when it is free again.
    let mut free: Vec<(String, DateTime<Utc>, f64)> = park
        .ev_chargers
        .iter()
        .map(|c| (c.id.clone(), DateTime::<Utc>::MIN_UTC, c.max_power.0))
        .collect();
    for k in 0..days {
        let day = first_day + Duration::days(i64::from(k));
        let kind = EvDayKind::of(calendar.day_type(day));
        let Some(ks) = stats.kinds.get(&kind).filter(|s| !s.samples.is_empty()) else {
            notes.push(format!(
                "{day} ({kind}): no past sessions on a {kind}: no EV demand forecast"
            ));
            continue;
        };
        let n = ks.per_day().round() as usize;
        let mut arrivals: Vec<f64> = ks.samples.iter().map(|s| s.arrival_min).collect();
        arrivals.sort_by(f64::total_cmp);
        let midnight = clock
            .tz
            .from_local_datetime(&day.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        let Some(midnight) = midnight else { continue };
        let mut dropped = 0;
        for i in 0..n {
            let arrival_min = KindStats::quantile(&arrivals, (i as f64 + 0.5) / n as f64);
            let mut near: Vec<&Sample> = ks.samples.iter().collect();
            near.sort_by(|a, b| {
                (a.arrival_min - arrival_min)
                    .abs()
                    .total_cmp(&(b.arrival_min - arrival_min).abs())
            });
            near.truncate(5);
            let dwell = median(near.iter().map(|s| s.dwell_min).collect());
            let energy = median(near.iter().map(|s| s.energy_kwh).collect());
            let arrival = midnight + Duration::seconds((arrival_min * 60.0).round() as i64);
            let departure = arrival + Duration::seconds((dwell * 60.0).round().max(60.0) as i64);
            // The charger free longest.
            let Some(slot) = free
                .iter_mut()
                .filter(|c| c.1 <= arrival)
                .min_by_key(|c| c.1)
            else {
                dropped += 1;
                continue;
            };
            let cap = slot.2 * dwell / 60.0;
            slot.1 = departure;
            out.push(Session {
                id: format!("f{}-{:02}", day.format("%m%d"), i + 1),
                charger: slot.0.clone(),
                arrival,
                departure,
                energy_kwh: (energy.min(cap) * 10.0).round() / 10.0,
            });
        }
        notes.push(format!(
            "{day} ({kind}): {n} expected session(s) from {} past {kind}(s) with {} session(s)",
            ks.days, ks.sessions
        ));
        if dropped > 0 {
            notes.push(format!(
                "{day}: {dropped} expected session(s) found no free charger and are left out"
            ));
        }
    }
    (out, notes)
}
