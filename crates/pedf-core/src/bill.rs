//! The park's electricity bill from its interval records, as the grid company computes it
//! (DOMAIN.md, "The bill as the grid company computes it"): energy at the time-of-use price of
//! each interval, export at the export price, and the month's basic charge of the two-part
//! tariff on the month's highest demand-window average import; the battery's wear at its
//! cost per kWh discharged besides (not a grid charge, a cost of the park's own).
//!
//! One row per local day with the day's energy by flow and its terms, and per billing month
//! (local calendar month) the demand charge on the month's peak so far. The terms add up:
//! `total = energy - export + demand + wear` for a month, each day's `energy - export + wear`
//! summing to the month's.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

use crate::records::IntervalRecord;
use crate::Park;

/// One local day of the bill.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayBill {
    /// The local date, YYYY-MM-DD.
    pub day: String,
    /// Intervals with a record.
    pub intervals: usize,
    /// PV energy at the bus, kWh.
    pub pv_kwh: f64,
    /// Grid import at the AC meter, kWh.
    pub import_kwh: f64,
    /// Grid export at the AC meter, kWh.
    pub export_kwh: f64,
    /// Battery charge at the bus, kWh.
    pub battery_charge_kwh: f64,
    /// Battery discharge at the bus, kWh.
    pub battery_discharge_kwh: f64,
    /// Loads, kWh.
    pub load_kwh: f64,
    /// EV chargers, kWh.
    pub ev_kwh: f64,
    /// Import by time-of-use period (`valley`, `flat`, `peak`, ...): (kWh, CNY).
    pub import_by_period: BTreeMap<String, (f64, f64)>,
    /// Import at its time-of-use prices, CNY.
    pub energy_cny: f64,
    /// Export at the export price, CNY.
    pub export_cny: f64,
    /// The battery's wear (its cost per kWh discharged), CNY.
    pub wear_cny: f64,
    /// The day's highest demand-window average import, kW.
    pub peak_import_kw: f64,
}

/// One billing month (local calendar month) of the bill, over the days recorded in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonthBill {
    /// YYYY-MM.
    pub month: String,
    /// Days of the month with a record.
    pub days: usize,
    /// Import at its time-of-use prices, CNY.
    pub energy_cny: f64,
    /// Export revenue, CNY.
    pub export_cny: f64,
    /// The month's highest demand-window average import so far, kW (recorded days only).
    pub peak_import_kw: f64,
    /// The monthly basic charge on that peak (or the contract, or the transformer), CNY.
    pub demand_cny: f64,
    /// The battery's wear, CNY.
    pub wear_cny: f64,
    /// `energy - export + demand + wear`, CNY.
    pub total_cny: f64,
}

/// The bill of a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bill {
    /// Each local day with a record, in order.
    pub days: Vec<DayBill>,
    /// Each month a day belongs to, in order.
    pub months: Vec<MonthBill>,
    /// Intervals whose time-of-use price the tariff does not give (counted at 0 CNY: say so).
    pub unpriced_intervals: usize,
}

/// The battery's wear per kWh discharged: each battery's cost where the record splits the
/// discharge by battery, else the capacity-weighted mean of the park's batteries.
fn wear_cny(park: &Park, r: &IntervalRecord) -> f64 {
    let cost_of = |id: &str| {
        park.batteries
            .iter()
            .find(|b| b.id == id)
            .map_or(0.0, |b| b.degradation_cost.0)
    };
    if !r.batteries.is_empty() {
        return r.batteries.iter().map(|(id, _, d)| d * cost_of(id)).sum();
    }
    let capacity: f64 = park.batteries.iter().map(|b| b.capacity.0).sum();
    if capacity <= 0.0 {
        return 0.0;
    }
    let mean = park
        .batteries
        .iter()
        .map(|b| b.capacity.0 * b.degradation_cost.0)
        .sum::<f64>()
        / capacity;
    r.battery_discharge_kwh * mean
}

/// The bill of the records that start in `[from, to)`, by local day and month.
pub fn bill(
    park: &Park,
    records: &[IntervalRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Bill {
    let clock = &park.clock;
    let tariff = &park.tariff;
    let window_ms = i64::from(tariff.demand.window_minutes.max(1)) * 60_000;
    let interval_h = clock.interval.hours().0;
    let mut days: BTreeMap<NaiveDate, DayBill> = BTreeMap::new();
    // Import per demand window (its start, ms since the epoch), for the window averages.
    let mut windows: BTreeMap<(NaiveDate, i64), f64> = BTreeMap::new();
    let mut unpriced = 0;
    for r in records.iter().filter(|r| r.start >= from && r.start < to) {
        let local = clock.local(r.start);
        let date = local.date_naive();
        let d = days.entry(date).or_insert_with(|| DayBill {
            day: date.to_string(),
            ..DayBill::default()
        });
        d.intervals += 1;
        d.pv_kwh += r.pv_kwh;
        d.import_kwh += r.grid_import_kwh;
        d.export_kwh += r.grid_export_kwh;
        d.battery_charge_kwh += r.battery_charge_kwh;
        d.battery_discharge_kwh += r.battery_discharge_kwh;
        d.load_kwh += r.load_kwh;
        d.ev_kwh += r.ev_kwh;
        let naive = local.naive_local();
        match (
            tariff.period_at(naive),
            tariff.import_price_at(naive).map(|p| p.0),
        ) {
            (Some(kind), Some(price)) => {
                let cost = r.grid_import_kwh * price;
                let e = d
                    .import_by_period
                    .entry(kind.key().to_string())
                    .or_insert((0.0, 0.0));
                e.0 += r.grid_import_kwh;
                e.1 += cost;
                d.energy_cny += cost;
            }
            _ => unpriced += 1,
        }
        d.export_cny += r.grid_export_kwh * tariff.export_price.0;
        d.wear_cny += wear_cny(park, r);
        let ms = r.start.timestamp_millis();
        *windows
            .entry((date, ms.div_euclid(window_ms) * window_ms))
            .or_default() += r.grid_import_kwh;
    }
    // A window's average: its import over the window (an interval longer than the window:
    // over the interval, the finest the records allow).
    let window_h = (window_ms as f64 / 3.6e6).max(interval_h);
    for ((date, _), kwh) in windows {
        if let Some(d) = days.get_mut(&date) {
            d.peak_import_kw = d.peak_import_kw.max(kwh / window_h);
        }
    }
    let mut months: BTreeMap<(i32, u32), MonthBill> = BTreeMap::new();
    for (date, d) in &days {
        let m = months
            .entry((date.year(), date.month()))
            .or_insert_with(|| MonthBill {
                month: format!("{:04}-{:02}", date.year(), date.month()),
                ..MonthBill::default()
            });
        m.days += 1;
        m.energy_cny += d.energy_cny;
        m.export_cny += d.export_cny;
        m.wear_cny += d.wear_cny;
        m.peak_import_kw = m.peak_import_kw.max(d.peak_import_kw);
    }
    for m in months.values_mut() {
        m.demand_cny = tariff.demand.monthly_charge(m.peak_import_kw);
        m.total_cny = m.energy_cny - m.export_cny + m.demand_cny + m.wear_cny;
    }
    Bill {
        days: days.into_values().collect(),
        months: months.into_values().collect(),
        unpriced_intervals: unpriced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn park() -> Park {
        crate::config::load_park(
            "qingzhou-pedf.toml",
            include_bytes!("../../../config/qingzhou-pedf.toml"),
        )
        .value
        .expect("the reference park")
    }

    fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        chrono::FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 6, day, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Two June days of the reference park's tariff, by hand: valley 0.32, critical peak
    /// 1.25, export 0.3949 CNY/kWh, 38 CNY/kW-month on the month's highest 15-minute import,
    /// wear 0.10 CNY/kWh discharged.
    #[test]
    fn a_hand_computed_bill_of_two_days() {
        let p = park();
        let rec = |start, import: f64, export: f64, discharge: f64| IntervalRecord {
            start,
            grid_import_kwh: import,
            grid_export_kwh: export,
            battery_discharge_kwh: discharge,
            ..IntervalRecord::default()
        };
        let records = vec![
            rec(at(21, 3, 0), 100.0, 0.0, 0.0),   // valley: 32.0
            rec(at(21, 3, 15), 120.0, 0.0, 0.0),  // valley: 38.4; 480 kW
            rec(at(21, 11, 30), 0.0, 50.0, 20.0), // export 19.745; wear 2.0
            rec(at(21, 19, 0), 80.0, 0.0, 0.0),   // critical peak: 100.0
            rec(at(22, 3, 0), 150.0, 0.0, 0.0),   // valley: 48.0; 600 kW
        ];
        let b = bill(&p, &records, at(21, 0, 0), at(23, 0, 0));
        assert_eq!(b.unpriced_intervals, 0);
        assert_eq!(b.days.len(), 2);
        let d = &b.days[0];
        assert_eq!(d.day, "2026-06-21");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(d.energy_cny, 170.4), "{d:?}");
        assert!(close(d.import_by_period["valley"].0, 220.0), "{d:?}");
        assert!(close(d.import_by_period["critical_peak"].1, 100.0), "{d:?}");
        assert!(close(d.export_cny, 19.745), "{d:?}");
        assert!(close(d.wear_cny, 2.0), "{d:?}");
        assert!(close(d.peak_import_kw, 480.0), "{d:?}");
        let m = &b.months[0];
        assert_eq!((m.month.as_str(), m.days), ("2026-06", 2));
        assert!(close(m.peak_import_kw, 600.0), "{m:?}");
        assert!(close(m.demand_cny, 22_800.0), "{m:?}");
        assert!(close(m.total_cny, 218.4 - 19.745 + 22_800.0 + 2.0), "{m:?}");
        // The days' terms add up to the month's.
        let days: f64 = b
            .days
            .iter()
            .map(|d| d.energy_cny - d.export_cny + d.wear_cny)
            .sum();
        assert!(close(days + m.demand_cny, m.total_cny));
    }
}
