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
    /// The monthly basic (capacity) charge of the two-part tariff.
    pub demand: DemandCharge,
}

/// Share of the contracted demand a month may reach before the surcharge applies
/// (发改办价格〔2016〕1583号, [S] in DOMAIN.md).
pub const CONTRACT_TOLERANCE: f64 = 1.05;
/// The multiple of the rate the part above the tolerance is billed at (same source).
pub const CONTRACT_SURCHARGE: f64 = 2.0;

/// How the monthly basic charge of a two-part tariff (两部制) is billed (DOMAIN.md, "The bill").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DemandBasis {
    /// 按实际最大需量: the month's highest window-average import x the rate.
    MaximumDemand,
    /// 按合同最大需量: the contracted kW x the rate, and the part of the month's maximum above
    /// 105 % of the contract at twice the rate.
    ContractedDemand {
        /// The contracted maximum demand, kW.
        contracted_kw: f64,
    },
    /// 按变压器容量: the installed kVA x the rate; the month's peak costs nothing.
    TransformerCapacity {
        /// Installed transformer capacity, kVA.
        kva: f64,
    },
}

impl DemandBasis {
    /// The park-file key of the basis.
    pub fn key(self) -> &'static str {
        match self {
            Self::MaximumDemand => "maximum_demand",
            Self::ContractedDemand { .. } => "contracted_demand",
            Self::TransformerCapacity { .. } => "transformer_capacity",
        }
    }
}

/// The monthly basic charge and what the planner and the peak guard hold the month's peak to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandCharge {
    /// How the charge is billed.
    pub basis: DemandBasis,
    /// CNY per kW-month (per kVA-month for transformer capacity).
    pub rate: CnyPerKwMonth,
    /// The demand meter's averaging window, minutes (15 in China's two-part tariff).
    pub window_minutes: u32,
    /// A monthly peak the operator accepts anyway (e.g. what the park's loads reach every
    /// month): plans and the peak guard raise the month's peak freely up to it. 0: none.
    pub monthly_target_kw: f64,
}

impl Default for DemandCharge {
    fn default() -> Self {
        Self {
            basis: DemandBasis::MaximumDemand,
            rate: CnyPerKwMonth(0.0),
            window_minutes: 15,
            monthly_target_kw: 0.0,
        }
    }
}

impl DemandCharge {
    /// The month's basic charge, CNY, for a month whose highest window-average import was
    /// `peak_kw`: what the grid company bills.
    pub fn monthly_charge(&self, peak_kw: f64) -> f64 {
        let r = self.rate.0;
        let peak = peak_kw.max(0.0);
        match self.basis {
            DemandBasis::MaximumDemand => r * peak,
            DemandBasis::ContractedDemand { contracted_kw } => {
                r * contracted_kw
                    + CONTRACT_SURCHARGE * r * (peak - CONTRACT_TOLERANCE * contracted_kw).max(0.0)
            }
            DemandBasis::TransformerCapacity { kva } => r * kva,
        }
    }

    /// CNY per kW the bill adds for each kW the month's peak rises above
    /// [`free_up_to`](Self::free_up_to).
    pub fn marginal_rate(&self) -> f64 {
        match self.basis {
            DemandBasis::MaximumDemand => self.rate.0,
            DemandBasis::ContractedDemand { .. } => CONTRACT_SURCHARGE * self.rate.0,
            DemandBasis::TransformerCapacity { .. } => 0.0,
        }
    }

    /// The import up to which the month's peak may rise without a plan paying for it, given
    /// the month's peak so far: the peak so far, the operator's monthly target and, under a
    /// contract, 105 % of the contracted demand.
    pub fn free_up_to(&self, month_peak_so_far_kw: f64) -> f64 {
        let contract = match self.basis {
            DemandBasis::ContractedDemand { contracted_kw } => CONTRACT_TOLERANCE * contracted_kw,
            _ => 0.0,
        };
        month_peak_so_far_kw
            .max(self.monthly_target_kw)
            .max(contract)
            .max(0.0)
    }

    /// What a plan pays for a horizon whose peak import is `peak_kw` in a month whose peak so
    /// far is `month_peak_so_far_kw`: the whole monthly rate on the rise above
    /// [`free_up_to`](Self::free_up_to), never a share prorated to the horizon (one window
    /// sets the month's charge).
    pub fn plan_increment(&self, month_peak_so_far_kw: f64, peak_kw: f64) -> f64 {
        self.marginal_rate() * (peak_kw - self.free_up_to(month_peak_so_far_kw)).max(0.0)
    }
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
    fn demand_charges_as_the_bill_computes_them() {
        let rate = CnyPerKwMonth(38.0);
        let max = DemandCharge {
            rate,
            ..DemandCharge::default()
        };
        assert!((max.monthly_charge(800.0) - 30_400.0).abs() < 1e-9);
        // A new peak of 900 after 800 so far costs the whole rate on 100 kW.
        assert!((max.plan_increment(800.0, 900.0) - 3800.0).abs() < 1e-9);
        assert_eq!(max.plan_increment(800.0, 700.0), 0.0);
        // With a target of 1000 kW, nothing up to it.
        let target = DemandCharge {
            monthly_target_kw: 1000.0,
            ..max
        };
        assert_eq!(target.plan_increment(800.0, 950.0), 0.0);
        assert!((target.plan_increment(800.0, 1010.0) - 380.0).abs() < 1e-9);
        // Contracted 1000 kW: 38,000 a month; above 1050 kW twice the rate.
        let contract = DemandCharge {
            basis: DemandBasis::ContractedDemand {
                contracted_kw: 1000.0,
            },
            rate,
            ..DemandCharge::default()
        };
        assert!((contract.monthly_charge(900.0) - 38_000.0).abs() < 1e-9);
        assert!((contract.monthly_charge(1050.0) - 38_000.0).abs() < 1e-9);
        assert!((contract.monthly_charge(1100.0) - (38_000.0 + 2.0 * 38.0 * 50.0)).abs() < 1e-9);
        assert!((contract.plan_increment(0.0, 1100.0) - 3800.0).abs() < 1e-9);
        assert!((contract.plan_increment(1080.0, 1100.0) - 1520.0).abs() < 1e-9);
        // Transformer capacity: the peak is free.
        let kva = DemandCharge {
            basis: DemandBasis::TransformerCapacity { kva: 2000.0 },
            rate: CnyPerKwMonth(25.0),
            ..DemandCharge::default()
        };
        assert!((kva.monthly_charge(1500.0) - 50_000.0).abs() < 1e-9);
        assert_eq!(kva.plan_increment(0.0, 1500.0), 0.0);
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
            demand: DemandCharge::default(),
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
