//! Time in pedf: UTC inside, the park's IANA zone at the edges, fixed interval lengths.
//!
//! Intervals are aligned to the park's *local* clock (a 15-minute interval starts at :00, :15,
//! :30 or :45 local time) and are labelled by their start, as PRODUCT.md requires.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::fmt;

use crate::units::Hours;

/// The interval lengths pedf plans and accounts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IntervalLength {
    /// 5 minutes.
    Min5,
    /// 15 minutes, the default (the settlement interval of Chinese smart meters).
    #[default]
    Min15,
    /// 30 minutes.
    Min30,
    /// 60 minutes.
    Min60,
}

impl IntervalLength {
    /// Every supported length, for messages that list what is valid.
    pub const ALL: [IntervalLength; 4] = [Self::Min5, Self::Min15, Self::Min30, Self::Min60];

    /// The length for a number of minutes, if it is one of 5, 15, 30, 60.
    pub fn from_minutes(minutes: i64) -> Option<Self> {
        match minutes {
            5 => Some(Self::Min5),
            15 => Some(Self::Min15),
            30 => Some(Self::Min30),
            60 => Some(Self::Min60),
            _ => None,
        }
    }

    /// The length in minutes.
    pub fn minutes(self) -> u32 {
        match self {
            Self::Min5 => 5,
            Self::Min15 => 15,
            Self::Min30 => 30,
            Self::Min60 => 60,
        }
    }

    /// The length in hours, to turn kW into kWh.
    pub fn hours(self) -> Hours {
        Hours(f64::from(self.minutes()) / 60.0)
    }

    /// The length as a chrono duration.
    pub fn duration(self) -> Duration {
        Duration::minutes(i64::from(self.minutes()))
    }

    /// How many intervals make a 24-hour day.
    pub fn per_day(self) -> usize {
        (24 * 60 / self.minutes()) as usize
    }
}

impl fmt::Display for IntervalLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} min", self.minutes())
    }
}

/// A wall-clock time of day in whole minutes, `00:00` to `24:00` inclusive (24:00 ends a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);
    /// Midnight at the end of the day.
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(24 * 60);

    /// A time from minutes since midnight, if within `0..=1440`.
    pub fn from_minutes(minutes: u32) -> Option<Self> {
        (minutes <= 24 * 60).then_some(TimeOfDay(minutes as u16))
    }

    /// Parses `HH:MM` (24-hour clock, `24:00` allowed for the end of the day).
    pub fn parse(text: &str) -> Option<Self> {
        let (h, m) = text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let h: u32 = h.parse().ok()?;
        let m: u32 = m.parse().ok()?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        Self::from_minutes(h * 60 + m)
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u32 {
        u32::from(self.0)
    }

    /// The time of day of a local clock reading.
    pub fn of(time: NaiveTime) -> Self {
        TimeOfDay((time.hour() * 60 + time.minute()) as u16)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A park's clock: its time zone and interval length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkClock {
    /// The park's IANA time zone (the reference park: Asia/Shanghai).
    pub tz: Tz,
    /// The planning and accounting interval.
    pub interval: IntervalLength,
}

impl ParkClock {
    /// A clock for a zone and an interval length.
    pub fn new(tz: Tz, interval: IntervalLength) -> Self {
        Self { tz, interval }
    }

    /// The instant in the park's zone, for display and tariff look-ups.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.tz)
    }

    /// The UTC instant of local midnight starting `date` (the first instant of that day
    /// where a DST jump skips midnight).
    pub fn start_of_local_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let mut probe = date.and_time(NaiveTime::MIN);
        // Zones may skip up to a few hours at a transition; walk forward until a time exists.
        for _ in 0..24 * 4 {
            if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                return t.with_timezone(&Utc);
            }
            probe += Duration::minutes(15);
        }
        // No zone skips a whole day; treat the date as UTC as a last resort.
        Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
    }

    /// Start instants (UTC) of every interval of a local day, in order. Normally
    /// `interval.per_day()` of them; one hour fewer or more on DST transition days.
    pub fn intervals_of_local_day(&self, date: NaiveDate) -> Vec<DateTime<Utc>> {
        let start = self.start_of_local_day(date);
        let end = match date.succ_opt() {
            Some(next) => self.start_of_local_day(next),
            None => start + Duration::days(1),
        };
        let step = self.interval.duration();
        let mut out = Vec::with_capacity(self.interval.per_day() + 4);
        let mut t = start;
        while t < end {
            out.push(t);
            t += step;
        }
        out
    }

    /// The start of the interval that contains `t`, aligned to the local clock.
    pub fn interval_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let local = self.local(t);
        let minute_of_day = local.hour() * 60 + local.minute();
        let into = minute_of_day % self.interval.minutes();
        t - Duration::minutes(i64::from(into))
            - Duration::seconds(i64::from(local.second()))
            - Duration::nanoseconds(i64::from(local.nanosecond()))
    }

    /// The local calendar month `YYYY-MM` as the UTC instants of its first local midnight and
    /// the next month's; an error says what a month looks like.
    pub fn local_month(&self, month: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| month.len() == 7)
            .ok_or_else(|| format!("`{month}` is not a calendar month YYYY-MM, e.g. 2026-06"))?;
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .ok_or_else(|| format!("`{month}` is out of range"))?;
        Ok((
            self.start_of_local_day(first),
            self.start_of_local_day(next),
        ))
    }

    /// RFC 3339 text with the park's offset, the format at every boundary.
    pub fn format(&self, t: DateTime<Utc>) -> String {
        self.local(t).to_rfc3339_opts(SecondsFormat::Secs, false)
    }
}

/// Why a time given by a user could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text is not RFC 3339 with an offset.
    #[error("`{text}` is not an RFC 3339 time with an offset (e.g. 2026-06-21T00:00:00+08:00)")]
    NotRfc3339 {
        /// What was given.
        text: String,
    },
}

/// The years a date given by a user may be in: a park's plans, forecasts and records are of
/// this era (and the calendar arithmetic of a forecast or a plan stays far from chrono's
/// limits).
pub const DATE_YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

/// Parses a calendar date `YYYY-MM-DD` in [`DATE_YEARS`]; the error says what a date is.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| DATE_YEARS.contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| {
            format!(
                "`{text}` is not a date YYYY-MM-DD from {} to {}; e.g. 2026-06-21",
                DATE_YEARS.start(),
                DATE_YEARS.end()
            )
        })
}

/// Parses an RFC 3339 instant with an explicit offset (`Z` or `+08:00`) into UTC.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, TimeError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| TimeError::NotRfc3339 {
            text: text.to_string(),
        })
}

/// Parses an IANA zone name such as `Asia/Shanghai`.
pub fn parse_time_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> ParkClock {
        ParkClock::new(chrono_tz::Asia::Shanghai, IntervalLength::Min15)
    }

    #[test]
    fn a_shanghai_day_has_96_quarter_hours_starting_at_16_utc() {
        let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
        let ivs = shanghai().intervals_of_local_day(day);
        assert_eq!(ivs.len(), 96);
        assert_eq!(ivs[0].to_rfc3339(), "2026-06-20T16:00:00+00:00");
        assert_eq!(shanghai().format(ivs[0]), "2026-06-21T00:00:00+08:00");
        assert_eq!(shanghai().format(ivs[95]), "2026-06-21T23:45:00+08:00");
    }

    #[test]
    fn dst_days_have_one_hour_less_or_more() {
        let berlin = ParkClock::new(chrono_tz::Europe::Berlin, IntervalLength::Min60);
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        assert_eq!(berlin.intervals_of_local_day(spring).len(), 23);
        assert_eq!(berlin.intervals_of_local_day(autumn).len(), 25);
    }

    #[test]
    fn interval_start_floors_on_the_local_clock() {
        // India is UTC+05:30: a 60-min interval must start on the local hour, not the UTC hour.
        let kolkata = ParkClock::new(chrono_tz::Asia::Kolkata, IntervalLength::Min60);
        let t = parse_rfc3339("2026-01-01T10:59:59+05:30").unwrap();
        assert_eq!(
            kolkata.format(kolkata.interval_start(t)),
            "2026-01-01T10:00:00+05:30"
        );
        let t = parse_rfc3339("2026-06-21T12:14:59.9+08:00").unwrap();
        assert_eq!(
            shanghai().format(shanghai().interval_start(t)),
            "2026-06-21T12:00:00+08:00"
        );
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(TimeOfDay::parse("07:30").unwrap().minutes(), 450);
        assert_eq!(TimeOfDay::parse("24:00"), Some(TimeOfDay::END_OF_DAY));
        for bad in ["7:30", "24:01", "12:60", "ab:cd", "", "12:3", "-1:00"] {
            assert_eq!(TimeOfDay::parse(bad), None, "{bad}");
        }
        assert_eq!(TimeOfDay::parse("09:05").unwrap().to_string(), "09:05");
    }

    #[test]
    fn rfc3339_needs_an_offset() {
        assert!(parse_rfc3339("2026-06-21T00:00:00").is_err());
        assert!(parse_rfc3339("2026-06-21T00:00:00Z").is_ok());
        assert!(parse_time_zone("Asia/Shanghai").is_some());
        assert!(parse_time_zone("Asia/Qingzhou").is_none());
    }
}

/// Where "now" comes from: the wall clock, or simulated time that runs `speed` times faster
/// than real time from an origin (`pedf demo --speed`). Everything of one EMS process (device
/// time stamps, staleness, control cycle, tariff periods, energy intervals, records, "today")
/// reads the same source, so an accelerated demo is consistent end to end. Durations the EMS
/// measures (staleness, poll periods, timeouts) are then in simulated time too; whoever
/// accelerates time scales those settings with it.
#[derive(Debug, Clone, Copy)]
pub struct TimeSource {
    scaled: Option<(std::time::Instant, DateTime<Utc>, f64)>,
}

impl Default for TimeSource {
    fn default() -> Self {
        Self::wall()
    }
}

impl TimeSource {
    /// The wall clock.
    pub fn wall() -> TimeSource {
        TimeSource { scaled: None }
    }

    /// Simulated time starting now at `origin`, `speed` simulated seconds per real second
    /// (a speed that is not a positive number is taken as 1).
    pub fn scaled(origin: DateTime<Utc>, speed: f64) -> TimeSource {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        TimeSource {
            scaled: Some((std::time::Instant::now(), origin, speed)),
        }
    }

    /// The current instant of this source.
    pub fn now(&self) -> DateTime<Utc> {
        match self.scaled {
            None => Utc::now(),
            Some((real0, _, _)) => self.after(real0.elapsed()),
        }
    }

    /// The instant of a scaled source `real` (real time) after it started: its origin plus
    /// `real x speed`; for the wall clock, now.
    pub fn after(&self, real: std::time::Duration) -> DateTime<Utc> {
        match self.scaled {
            None => Utc::now(),
            Some((_, origin, speed)) => {
                origin
                    + Duration::milliseconds((real.as_secs_f64() * speed * 1000.0).round() as i64)
            }
        }
    }

    /// Simulated seconds per real second (1 for the wall clock).
    pub fn speed(&self) -> f64 {
        self.scaled.map_or(1.0, |s| s.2)
    }
}

#[cfg(test)]
mod time_source_tests {
    use super::*;

    #[test]
    fn scaled_time_runs_at_its_speed_from_its_origin() {
        let origin = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
        let t = TimeSource::scaled(origin, 3600.0);
        // 50 ms of real time are 180 s of simulated time.
        assert_eq!(
            t.after(std::time::Duration::from_millis(50)),
            origin + Duration::seconds(180)
        );
        // Now is at or after the origin and never goes back.
        let (a, b) = (t.now(), t.now());
        assert!(origin <= a && a <= b, "{a} {b}");
        assert_eq!(t.speed(), 3600.0);
        assert_eq!(TimeSource::scaled(origin, -2.0).speed(), 1.0);
        assert_eq!(TimeSource::wall().speed(), 1.0);
    }
}
