//! Interval energy records: what the accounting consumes, one row per interval of the park's
//! clock. Measured data (meters, the runtime's store) and plans both become records.
//!
//! CSV format (`#` comments, header line):
//! `start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh`
//!
//! * `pv_kwh`: PV energy delivered to the DC bus; `load_kwh`, `ev_kwh`: consumption from the
//!   bus; `battery_*`: bus side of the battery; `grid_*`: AC side of the grid converter.
//! * The balance closes through the converter: losses = supply - demand at the bus must be >= 0
//!   (within 0.1 % of the interval's throughput plus 0.001 kWh); a record where more leaves the
//!   bus than enters is an error, never "fixed".
//! * Interval starts on the park's clock, strictly increasing; missing intervals are allowed
//!   and become gaps (see `account`), duplicates are errors.
//! * Optional further columns `ev:<charger id>` give each charger's share of `ev_kwh` (they
//!   must add up to it); with them, `account::session_green_shares` gives each EV session's
//!   green share.
//! * Optional pairs `charge:<battery id>`, `discharge:<battery id>` give each battery's flows
//!   (adding up to the totals); with them, each battery keeps its own carbon store.

use crate::config::{Diagnostic, SourceMap};
use crate::csvtext::{rows, text_of, InputFile, Located};
use crate::plan::Plan;
use crate::time::ParkClock;
use chrono::{DateTime, Utc};

/// One interval's energies, kWh, all >= 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IntervalRecord {
    /// Interval start.
    pub start: DateTime<Utc>,
    /// PV energy delivered to the DC bus.
    pub pv_kwh: f64,
    /// Grid import at the AC meter.
    pub grid_import_kwh: f64,
    /// Grid export at the AC meter.
    pub grid_export_kwh: f64,
    /// Energy into the battery (bus side).
    pub battery_charge_kwh: f64,
    /// Energy out of the battery (bus side).
    pub battery_discharge_kwh: f64,
    /// Fixed and flexible DC loads.
    pub load_kwh: f64,
    /// EV chargers, all together.
    pub ev_kwh: f64,
    /// Per charger (sorted by id, non-zero only): its part of `ev_kwh`.
    pub ev_chargers: Vec<(String, f64)>,
    /// Per battery (sorted by id, those that moved): (id, charge, discharge), kWh at the bus,
    /// adding up to the totals; empty when the records give only the totals.
    pub batteries: Vec<(String, f64, f64)>,
}

/// The park run without the EMS alongside the real one, interval by interval: the
/// counterfactual of carbon dual control (`[carbon.control] no_more_than_without_ems`). Without
/// the EMS the battery stays idle, nothing is shed, deferrable loads run flat and each car
/// charges at its charger's full power from its arrival until it has what it asked for (or
/// leaves). Estimating the same from the EMS's own records would count cars and deferrable
/// loads when the EMS moved them (into the night, away from the sun), which overstates what
/// the park would have imported without it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WithoutEms {
    /// Per charger: (energy still to charge, kWh; the charger's full power, kW).
    cars: std::collections::BTreeMap<String, (f64, f64)>,
    /// Per charger: what the car there has been given without the EMS so far, kWh.
    charged: std::collections::BTreeMap<String, f64>,
    /// Energy counted for cars that, as it turned out, took less: taken off the next interval.
    credit_kwh: f64,
}

impl WithoutEms {
    /// Nothing on the chargers yet.
    pub fn new() -> WithoutEms {
        WithoutEms::default()
    }

    /// A car arrives on a charger asking for `energy_kwh` (a car already there is replaced).
    pub fn arrive(&mut self, charger: &str, energy_kwh: f64, max_kw: f64) {
        self.cars
            .insert(charger.to_string(), (energy_kwh.max(0.0), max_kw.max(0.0)));
        self.charged.insert(charger.to_string(), 0.0);
    }

    /// The car on a charger leaves (what it had not got stays uncharged). `delivered_kwh`:
    /// what it really took, when known; a car that took less than it was given here (it
    /// asked less than the default it was counted with) is taken back off the next interval
    /// as if all of the difference had been imported, so the counterfactual never overstates
    /// the park without the EMS.
    pub fn depart(&mut self, charger: &str, delivered_kwh: Option<f64>) {
        self.cars.remove(charger);
        let charged = self.charged.remove(charger).unwrap_or(0.0);
        if let Some(d) = delivered_kwh {
            self.credit_kwh += (charged - d.max(0.0)).max(0.0);
        }
    }

    /// One interval of `dt_h` hours: `loads_kwh` the loads as they run without the EMS
    /// (deferrable loads flat, nothing shed), `pv_kwh` the PV energy at the bus. Returns the
    /// grid import at the AC meter, kWh (`eta_in` the converter's AC-to-DC efficiency; less
    /// any credit of cars that took less than counted, so it can be below 0), and the cars'
    /// energy in the interval.
    pub fn interval(&mut self, dt_h: f64, loads_kwh: f64, pv_kwh: f64, eta_in: f64) -> (f64, f64) {
        let mut ev = 0.0;
        for (id, (left, max_kw)) in self.cars.iter_mut() {
            let e = left.min(*max_kw * dt_h);
            *left -= e;
            ev += e;
            *self.charged.entry(id.clone()).or_insert(0.0) += e;
        }
        self.cars.retain(|_, (left, _)| *left > 1e-9);
        let eta = eta_in.max(1e-9);
        let credit = std::mem::take(&mut self.credit_kwh);
        ((loads_kwh + ev - pv_kwh).max(0.0) / eta - credit / eta, ev)
    }
}

/// The billing month and the calendar year so far, from interval records: what the planner
/// needs of them (month peak, Scope 2 budgets, intensity target, the option never to emit
/// more than without the EMS).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeriodSoFar {
    /// The month's highest interval-average import, kW.
    pub month_peak_kw: f64,
    /// The month's location-based Scope 2 (import x `factor`), kg.
    pub month_scope2_kg: f64,
    /// The month's Scope 2 without the EMS estimated from the records
    /// ([`IntervalRecord::import_without_ems_kwh`]), kg.
    pub month_scope2_without_ems_kg: f64,
    /// The month's consumption on site (loads and EV), kWh.
    pub month_consumption_kwh: f64,
    /// The calendar year's Scope 2, kg.
    pub year_scope2_kg: f64,
    /// Records counted in the month.
    pub month_records: usize,
}

impl PeriodSoFar {
    /// From the records that start before `before` in its local month (and year).
    pub fn of(
        records: &[IntervalRecord],
        clock: &ParkClock,
        before: DateTime<Utc>,
        factor: f64,
        eta_in: f64,
    ) -> PeriodSoFar {
        use chrono::Datelike;
        let local = clock.local(before).date_naive();
        let month_start = clock.start_of_local_day(local.with_day(1).unwrap_or(local));
        let year_start = clock.start_of_local_day(
            local
                .with_day(1)
                .and_then(|d| d.with_month(1))
                .unwrap_or(local),
        );
        let h = clock.interval.hours().0;
        let mut s = PeriodSoFar::default();
        for r in records.iter().filter(|r| r.start < before) {
            if r.start >= year_start {
                s.year_scope2_kg += r.grid_import_kwh * factor;
            }
            if r.start >= month_start {
                s.month_peak_kw = s.month_peak_kw.max(r.grid_import_kwh / h);
                s.month_scope2_kg += r.grid_import_kwh * factor;
                s.month_scope2_without_ems_kg += r.import_without_ems_kwh(eta_in) * factor;
                s.month_consumption_kwh += r.load_kwh + r.ev_kwh;
                s.month_records += 1;
            }
        }
        s
    }
}

/// The columns of a record file.
pub const COLUMNS: [&str; 8] = [
    "start",
    "pv_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
    "load_kwh",
    "ev_kwh",
];

impl IntervalRecord {
    /// Grid import the interval would have needed without the EMS, estimated from what was
    /// measured: the battery idle, the same loads, cars and PV (`max(0, load + ev - pv)` through
    /// the converter's AC-to-DC efficiency). The counterfactual of carbon dual control.
    pub fn import_without_ems_kwh(&self, eta_in: f64) -> f64 {
        (self.load_kwh + self.ev_kwh - self.pv_kwh).max(0.0) / eta_in.max(1e-9)
    }

    /// Energy entering the bus, with grid import counted at the AC meter.
    pub fn supply(&self) -> f64 {
        self.pv_kwh + self.battery_discharge_kwh + self.grid_import_kwh
    }

    /// Energy leaving the bus, with export counted at the AC meter.
    pub fn demand(&self) -> f64 {
        self.load_kwh + self.ev_kwh + self.battery_charge_kwh + self.grid_export_kwh
    }

    /// Converter (and other bus) losses that close the balance.
    pub fn losses(&self) -> f64 {
        self.supply() - self.demand()
    }

    /// How far below zero the losses may be before the record is refused.
    pub fn tolerance(&self) -> f64 {
        1e-3 + 1e-3 * self.supply().max(self.demand())
    }

    /// The canonical text of the record, which the Merkle tree of a certificate hashes: the
    /// eight fixed fields as in a file, then `,<charger>=<kWh>` for each charger share, then
    /// `,charge:<battery>=<kWh>` and `,discharge:<battery>=<kWh>` for each battery's non-zero
    /// flows (by id; only when the records split them by battery).
    pub fn canonical_line(&self, clock: &ParkClock) -> String {
        let mut s = self.to_csv(clock);
        for (id, kwh) in &self.ev_chargers {
            s.push_str(&format!(",{id}={}", fmt(*kwh)));
        }
        for (id, charge, discharge) in &self.batteries {
            if *charge > 0.0 {
                s.push_str(&format!(",charge:{id}={}", fmt(*charge)));
            }
            if *discharge > 0.0 {
                s.push_str(&format!(",discharge:{id}={}", fmt(*discharge)));
            }
        }
        s
    }

    /// The eight fixed fields as a CSV row.
    pub fn to_csv(&self, clock: &ParkClock) -> String {
        format!(
            "{},{},{},{},{},{},{},{}",
            clock.format(self.start),
            fmt(self.pv_kwh),
            fmt(self.grid_import_kwh),
            fmt(self.grid_export_kwh),
            fmt(self.battery_charge_kwh),
            fmt(self.battery_discharge_kwh),
            fmt(self.load_kwh),
            fmt(self.ev_kwh)
        )
    }
}

/// Energies are written with 6 decimals (1 mWh), so text and value round-trip.
fn fmt(x: f64) -> String {
    format!("{x:.6}")
}

/// Reads a record file.
pub fn read_records(
    file: InputFile,
    clock: &ParkClock,
) -> Result<Vec<IntervalRecord>, Vec<Diagnostic>> {
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
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            &format!("first line: {}", COLUMNS.join(",")),
        );
        return Err(out);
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if names.len() < COLUMNS.len() || names[..COLUMNS.len()] != COLUMNS {
        loc.error(
            header.line_offset,
            format!("header is `{}`", names.join(",")),
            &format!(
                "the header is {} (then optional ev:<charger> columns)",
                COLUMNS.join(",")
            ),
        );
        return Err(out);
    }
    // Extra columns, in header order: `ev:<charger>`, `charge:<battery>`, `discharge:<battery>`.
    let mut extras: Vec<(Extra, String)> = Vec::new();
    for (off, n) in &header.fields[COLUMNS.len()..] {
        let parsed = [
            ("ev:", Extra::Ev),
            ("charge:", Extra::Charge),
            ("discharge:", Extra::Discharge),
        ]
        .into_iter()
        .find_map(|(p, kind)| n.strip_prefix(p).map(|id| (kind, id.to_string())));
        match parsed {
            Some((kind, id)) if !id.is_empty() && !extras.contains(&(kind, id.clone())) => {
                extras.push((kind, id))
            }
            _ => loc.error(
                *off,
                format!("column `{n}` is not `ev:<charger id>`, `charge:<battery id>` or `discharge:<battery id>`, or is repeated"),
                "extra columns give each charger's kWh (ev:ev-01,...) and each battery's charge and discharge (charge:bess-1,discharge:bess-1,...)",
            ),
        }
    }
    for (kind, id) in &extras {
        let other = match kind {
            Extra::Charge => Extra::Discharge,
            Extra::Discharge => Extra::Charge,
            Extra::Ev => continue,
        };
        if !extras.contains(&(other, id.clone())) {
            loc.error(
                header.line_offset,
                format!(
                    "battery `{id}` has a {} column but no {} column",
                    kind.name(),
                    other.name()
                ),
                "give both charge:<battery> and discharge:<battery> for each battery",
            );
        }
    }
    let chargers: Vec<String> = extras
        .iter()
        .filter(|(k, _)| *k == Extra::Ev)
        .map(|(_, id)| id.clone())
        .collect();
    if !loc.out.is_empty() {
        return Err(out);
    }
    let width = names.len();
    let mut records: Vec<IntervalRecord> = Vec::new();
    for row in body {
        if row.fields.len() != width {
            loc.error(
                row.line_offset,
                format!("{} fields, the header has {width}", row.fields.len()),
                "one value per column",
            );
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let Some(start) = loc.interval_start(row.fields[0], clock) else {
            continue;
        };
        if let Some(last) = records.last() {
            if start == last.start {
                loc.error(
                    toff,
                    format!("duplicate record for {ttext}"),
                    "one record per interval",
                );
                continue;
            }
            if start < last.start {
                loc.error(
                    toff,
                    format!("{ttext} comes before the record above it"),
                    "records in time order",
                );
                continue;
            }
        }
        let mut v = vec![0.0; width - 1];
        let mut ok = true;
        for (k, (off, s)) in row.fields[1..].iter().enumerate() {
            match s.parse::<f64>() {
                Ok(x) if (0.0..1e9).contains(&x) => v[k] = x,
                _ => {
                    loc.error(
                        *off,
                        format!("{}: `{s}` is not an energy >= 0", names[k + 1]),
                        "kWh in the interval, e.g. 12.5",
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let extra_values = || extras.iter().zip(v[7..].iter().copied());
        let mut ev_chargers: Vec<(String, f64)> = extra_values()
            .filter(|((k, _), x)| *k == Extra::Ev && *x > 0.0)
            .map(|((_, id), x)| (id.clone(), x))
            .collect();
        ev_chargers.sort_by(|a, b| a.0.cmp(&b.0));
        let per_charger: f64 = ev_chargers.iter().map(|(_, x)| x).sum();
        if !chargers.is_empty() && (per_charger - v[6]).abs() > 1e-3 + 1e-3 * v[6] {
            loc.error(
                row.line_offset,
                format!(
                    "the ev:<charger> columns add up to {per_charger:.3} kWh, ev_kwh is {:.3}",
                    v[6]
                ),
                "each charger's kWh, adding up to ev_kwh",
            );
            continue;
        }
        let mut batteries: Vec<(String, f64, f64)> = Vec::new();
        for ((kind, id), x) in extra_values() {
            if *kind == Extra::Ev {
                continue;
            }
            let i = match batteries.iter().position(|(b, _, _)| b == id) {
                Some(i) => i,
                None => {
                    batteries.push((id.clone(), 0.0, 0.0));
                    batteries.len() - 1
                }
            };
            match kind {
                Extra::Charge => batteries[i].1 = x,
                _ => batteries[i].2 = x,
            }
        }
        let split = !batteries.is_empty();
        let (charged, discharged) = batteries
            .iter()
            .fold((0.0, 0.0), |(c, d), (_, bc, bd)| (c + bc, d + bd));
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-3 + 1e-3 * b;
        if split && !(near(charged, v[3]) && near(discharged, v[4])) {
            loc.error(
                row.line_offset,
                format!(
                    "the battery columns add up to {charged:.3} kWh charged and {discharged:.3} discharged; battery_charge_kwh is {:.3}, battery_discharge_kwh {:.3}",
                    v[3], v[4]
                ),
                "each battery's charge and discharge, adding up to the totals",
            );
            continue;
        }
        batteries.retain(|(_, c, d)| *c > 0.0 || *d > 0.0);
        batteries.sort_by(|a, b| a.0.cmp(&b.0));
        let r = IntervalRecord {
            start,
            pv_kwh: v[0],
            grid_import_kwh: v[1],
            grid_export_kwh: v[2],
            battery_charge_kwh: v[3],
            battery_discharge_kwh: v[4],
            load_kwh: v[5],
            ev_kwh: v[6],
            ev_chargers,
            batteries,
        };
        if r.losses() < -r.tolerance() {
            loc.error(
                row.line_offset,
                format!("{:.3} kWh leave the bus but only {:.3} kWh enter it", r.demand(), r.supply()),
                "check the meters: PV + discharge + import must cover loads + EV + charge + export (the difference is converter losses)",
            );
            continue;
        }
        records.push(r);
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(records)
}

/// The records a plan implies (its intervals as if they happened): PV used, battery and grid
/// flows, loads and EV, each power times the interval length.
pub fn records_from_plan(plan: &Plan, hours: f64) -> Vec<IntervalRecord> {
    plan.intervals
        .iter()
        .map(|i| IntervalRecord {
            start: i.start.with_timezone(&Utc),
            pv_kwh: i.pv_used_kw * hours,
            grid_import_kwh: i.grid_import_kw * hours,
            grid_export_kwh: i.grid_export_kw * hours,
            battery_charge_kwh: i.battery_charge_kw * hours,
            battery_discharge_kwh: i.battery_discharge_kw * hours,
            load_kwh: (i.fixed_load_kw + i.flexible_load_kw) * hours,
            ev_kwh: i.ev_kw * hours,
            ev_chargers: i
                .ev_chargers
                .iter()
                .filter(|(_, kw)| **kw > 0.0)
                .map(|(id, kw)| (id.clone(), kw * hours))
                .collect(),
            // Plans give the batteries' totals only.
            batteries: Vec::new(),
        })
        .collect()
}

/// An extra column of a record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    Ev,
    Charge,
    Discharge,
}

impl Extra {
    fn name(self) -> &'static str {
        match self {
            Extra::Ev => "ev",
            Extra::Charge => "charge",
            Extra::Discharge => "discharge",
        }
    }
}

/// Writes records as CSV, with an `ev:<charger>` column for every charger that appears.
pub fn write_records(records: &[IntervalRecord], clock: &ParkClock) -> String {
    let mut chargers: Vec<&str> = records
        .iter()
        .flat_map(|r| r.ev_chargers.iter().map(|(id, _)| id.as_str()))
        .collect();
    chargers.sort_unstable();
    chargers.dedup();
    let mut batteries: Vec<&str> = records
        .iter()
        .flat_map(|r| r.batteries.iter().map(|(id, _, _)| id.as_str()))
        .collect();
    batteries.sort_unstable();
    batteries.dedup();
    let mut s = COLUMNS.join(",");
    for c in &chargers {
        s.push_str(&format!(",ev:{c}"));
    }
    for b in &batteries {
        s.push_str(&format!(",charge:{b},discharge:{b}"));
    }
    s.push('\n');
    for r in records {
        s.push_str(&r.to_csv(clock));
        for c in &chargers {
            let kwh = r
                .ev_chargers
                .iter()
                .find(|(id, _)| id == c)
                .map_or(0.0, |(_, k)| *k);
            s.push_str(&format!(",{}", fmt(kwh)));
        }
        for b in &batteries {
            let (c, d) = r
                .batteries
                .iter()
                .find(|(id, _, _)| id == b)
                .map_or((0.0, 0.0), |(_, c, d)| (*c, *d));
            s.push_str(&format!(",{},{}", fmt(c), fmt(d)));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::WithoutEms;

    /// A car asking 50 kWh on a 60 kW charger at 15-minute intervals charges 15, 15, 15 and
    /// 5 kWh from its arrival without the EMS, whatever the EMS did; 100 kW of load against
    /// 40 kW of PV imports (25 - 10 + 15) / 0.97 kWh in the first interval; a car that
    /// leaves having taken less than it was counted with is taken back off the next interval.
    #[test]
    fn cars_charge_on_arrival_at_full_power() {
        let mut w = WithoutEms::new();
        w.arrive("ev-01", 50.0, 60.0);
        let (imp, ev) = w.interval(0.25, 25.0, 10.0, 0.97);
        assert!((ev - 15.0).abs() < 1e-12);
        assert!((imp - 30.0 / 0.97).abs() < 1e-12);
        let evs: Vec<f64> = (0..4).map(|_| w.interval(0.25, 0.0, 0.0, 1.0).1).collect();
        assert_eq!(evs, vec![15.0, 15.0, 5.0, 0.0]);
        // PV above the loads and the car: nothing imported.
        w.arrive("ev-02", 30.0, 60.0);
        assert_eq!(w.interval(0.25, 5.0, 40.0, 0.97).0, 0.0);
        // It leaves having taken 9 of the 15 kWh counted here: 6 kWh come off the next
        // interval's import as if imported.
        w.depart("ev-02", Some(9.0));
        let (imp, ev) = w.interval(0.25, 20.0, 0.0, 1.0);
        assert_eq!(ev, 0.0);
        assert!((imp - 14.0).abs() < 1e-12);
    }
}
