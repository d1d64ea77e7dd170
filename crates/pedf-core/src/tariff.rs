//! Electricity tariffs: time-of-use import prices by named period, seasonal schedules, the
//! export price and the demand (capacity) charge.
//!
//! Shandong's commercial and industrial tariff has five period kinds and, in most months, a
//! midday deep valley (DOMAIN.md); hours and prices come from the park's contract, so they are
//! data in the park file, never code.

use chrono::{Datelike, NaiveDateTime};
use std::collections::BTreeMap;
use std::fmt;

use crate::time::TimeOfDay;
use crate::units::{CnyPerKwMonth, CnyPerKwh};

/// The named time-of-use periods of a Chinese C&I tariff (峰谷分时电价).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodKind {
    /// 尖峰: critical peak.
    CriticalPeak,
    /// 高峰: peak.
    Peak,
    /// 平段: flat (shoulder).
    Flat,
    /// 低谷: valley.
    Valley,
    /// 深谷: deep valley (Shandong's midday PV valley).
    DeepValley,
}

impl PeriodKind {
    /// Every kind, most expensive first.
    pub const ALL: [PeriodKind; 5] = [
        Self::CriticalPeak,
        Self::Peak,
        Self::Flat,
        Self::Valley,
        Self::DeepValley,
    ];

    /// The key used in park files (`critical_peak`, `peak`, `flat`, `valley`, `deep_valley`).
    pub fn key(self) -> &'static str {
        match self {
            Self::CriticalPeak => "critical_peak",
            Self::Peak => "peak",
            Self::Flat => "flat",
            Self::Valley => "valley",
            Self::DeepValley => "deep_valley",
        }
    }

    /// The Chinese name used on bills and in the dashboard.
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::CriticalPeak => "尖峰",
            Self::Peak => "高峰",
            Self::Flat => "平段",
            Self::Valley => "低谷",
            Self::DeepValley => "深谷",
        }
    }

    /// The kind for a park-file key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One stretch of a day, `[start, end)`, with its period kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TouWindow {
    /// Local time the window starts.
    pub start: TimeOfDay,
    /// Local time the window ends (exclusive; `24:00` for the end of the day).
    pub end: TimeOfDay,
    /// Which price applies.
    pub kind: PeriodKind,
}

impl TouWindow {
    /// True when the local time of day falls inside the window.
    pub fn contains(&self, t: TimeOfDay) -> bool {
        self.start <= t && t < self.end
    }
}

/// The daily schedule that applies in some months of the year.
#[derive(Debug, Clone, PartialEq)]
pub struct TouSeason {
    /// A name for people (e.g. "summer").
    pub name: String,
    /// Months (1-12) in which this schedule applies.
    pub months: Vec<u32>,
    /// Windows covering the day exactly once, in order.
    pub windows: Vec<TouWindow>,
}

/// A time-of-use tariff with export price and demand charge.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    /// A name for people.
    pub name: String,
    /// Where the figures come from (contract, notice, or "illustrative").
    pub source: String,
    /// Import price of each period kind used by the schedules.
    pub prices: BTreeMap<PeriodKind, CnyPerKwh>,
    /// Seasonal schedules; every month belongs to exactly one.
    pub seasons: Vec<TouSeason>,
    /// Price paid for exported PV surplus.
    pub export_price: CnyPerKwh,
    /// Demand (capacity) charge per kW of the month's peak import.
    pub demand_charge: CnyPerKwMonth,
}

impl Tariff {
    /// The schedule that applies in a month (1-12).
    pub fn season_for_month(&self, month: u32) -> Option<&TouSeason> {
        self.seasons.iter().find(|s| s.months.contains(&month))
    }

    /// The period kind at a local date and time.
    pub fn period_at(&self, local: NaiveDateTime) -> Option<PeriodKind> {
        let season = self.season_for_month(local.month())?;
        let tod = TimeOfDay::of(local.time());
        season
            .windows
            .iter()
            .find(|w| w.contains(tod))
            .map(|w| w.kind)
    }

    /// The import price at a local date and time.
    pub fn import_price_at(&self, local: NaiveDateTime) -> Option<CnyPerKwh> {
        self.period_at(local)
            .and_then(|k| self.prices.get(&k).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn window(a: &str, b: &str, kind: PeriodKind) -> TouWindow {
        TouWindow {
            start: TimeOfDay::parse(a).unwrap(),
            end: TimeOfDay::parse(b).unwrap(),
            kind,
        }
    }

    #[test]
    fn price_lookup_follows_season_and_window() {
        let tariff = Tariff {
            name: "t".into(),
            source: "test".into(),
            prices: [
                (PeriodKind::Valley, CnyPerKwh(0.32)),
                (PeriodKind::DeepValley, CnyPerKwh(0.20)),
                (PeriodKind::Peak, CnyPerKwh(1.05)),
            ]
            .into_iter()
            .collect(),
            seasons: vec![
                TouSeason {
                    name: "summer".into(),
                    months: vec![6],
                    windows: vec![
                        window("00:00", "11:00", PeriodKind::Valley),
                        window("11:00", "14:00", PeriodKind::DeepValley),
                        window("14:00", "24:00", PeriodKind::Peak),
                    ],
                },
                TouSeason {
                    name: "rest".into(),
                    months: vec![1],
                    windows: vec![window("00:00", "24:00", PeriodKind::Valley)],
                },
            ],
            export_price: CnyPerKwh(0.3949),
            demand_charge: CnyPerKwMonth(0.0),
        };
        let at = |m, h, min| {
            NaiveDate::from_ymd_opt(2026, m, 1)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap()
        };
        assert_eq!(tariff.import_price_at(at(6, 10, 59)), Some(CnyPerKwh(0.32)));
        assert_eq!(tariff.import_price_at(at(6, 11, 0)), Some(CnyPerKwh(0.20)));
        assert_eq!(tariff.import_price_at(at(6, 23, 59)), Some(CnyPerKwh(1.05)));
        assert_eq!(tariff.period_at(at(1, 12, 0)), Some(PeriodKind::Valley));
        assert_eq!(tariff.period_at(at(3, 12, 0)), None);
    }

    #[test]
    fn keys_round_trip() {
        for k in PeriodKind::ALL {
            assert_eq!(PeriodKind::from_key(k.key()), Some(k));
        }
        assert_eq!(PeriodKind::from_key("shoulder"), None);
    }
}
