//! What the runtime publishes each cycle for the server and dashboard ([`Live`]), and the
//! integration of measured power into interval energy records (the carbon ledger's source).
//!
//! Power values follow the park sign convention at the point where an asset meets the DC bus:
//! grid +import/-export (AC meter), battery +discharge/-charge, PV, loads and EV positive.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_carbon::account::{account, Options};
use pedf_carbon::factors::{choose, FactorTable};
use pedf_core::records::IntervalRecord;
use pedf_core::Park;

pub use pedf_core::live::{
    BudgetLive, ChargerLive, DeviceLive, Flows, Live, ModeView, MonthLive, SessionLive, TariffNow,
    Today,
};

/// Integrates power into interval energy records on the park's clock, counting how much of
/// each interval was observed (every flow of the bus balance known).
pub struct Integrator {
    clock: pedf_core::time::ParkClock,
    current: Option<IntervalRecord>,
    chargers: BTreeMap<String, f64>,
    last: Option<DateTime<Utc>>,
    max_gap_ms: i64,
    /// Milliseconds of the running interval observed.
    observed_ms: i64,
}

/// An interval that closed, with the share of it that was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// Its energy record (what was observed of it).
    pub record: IntervalRecord,
    /// The observed share of the interval, 0..1: less than 1 after a silence longer than the
    /// maximum gap, while a flow was unknown (a device not answering), or for the interval
    /// the EMS started or stopped in.
    pub coverage: f64,
}

impl Closed {
    /// The record's source label: `measured` only when the whole interval was observed.
    pub fn source(&self) -> &'static str {
        if self.coverage >= 0.999 {
            "measured"
        } else {
            "measured-partial"
        }
    }
}

impl Integrator {
    /// An integrator for a park, before its first sample.
    pub fn new(park: &Park) -> Self {
        Integrator {
            clock: park.clock,
            current: None,
            chargers: BTreeMap::new(),
            last: None,
            max_gap_ms: 10_000,
            observed_ms: 0,
        }
    }

    /// The longest time between two calls still counted as energy (default 10 s; the
    /// runtime scales it with accelerated time, where one cycle spans `speed` seconds).
    pub fn with_max_gap_ms(mut self, ms: i64) -> Self {
        self.max_gap_ms = ms.max(1);
        self
    }

    /// Adds the power held since the previous call (at most the maximum gap, 10 s by default:
    /// a longer silence is a gap, not energy), split at an interval boundary; flows not all
    /// known are a gap too. Returns an interval that closed.
    pub fn add(
        &mut self,
        now: DateTime<Utc>,
        f: &Flows,
        chargers: &[ChargerLive],
    ) -> Option<Closed> {
        let start = self.clock.interval_start(now);
        let held_ms = self
            .last
            .map(|l| (now - l).num_milliseconds().clamp(0, self.max_gap_ms))
            .unwrap_or(0);
        self.last = Some(now);
        let mut closed = None;
        let mut ms_here = held_ms;
        if self.current.as_ref().is_some_and(|c| c.start != start) {
            // The part before the boundary belongs to the closing interval.
            let before = ((start - (now - chrono::Duration::milliseconds(held_ms)))
                .num_milliseconds())
            .clamp(0, held_ms);
            self.accumulate(before, f, chargers);
            let coverage = self.running_observed();
            closed = self.take().map(|record| Closed { record, coverage });
            ms_here = held_ms - before;
        }
        if self.current.is_none() {
            self.current = Some(IntervalRecord {
                start,
                pv_kwh: 0.0,
                grid_import_kwh: 0.0,
                grid_export_kwh: 0.0,
                battery_charge_kwh: 0.0,
                battery_discharge_kwh: 0.0,
                load_kwh: 0.0,
                ev_kwh: 0.0,
                ev_chargers: Vec::new(),
                // The batteries' totals only: the flows come from the snapshot's battery sum.
                batteries: Vec::new(),
            });
        }
        self.accumulate(ms_here, f, chargers);
        closed
    }

    /// Continues a partial record of the running interval (its checkpoint, or the record
    /// stored at a shutdown) with the share of the interval observed for it (`None`: not
    /// said, counted as none), so a restart inside an interval loses neither its first part
    /// nor what is known of its coverage.
    pub fn resume(&mut self, partial: IntervalRecord, observed: Option<f64>) {
        let length_ms = self.clock.interval.duration().num_milliseconds().max(1);
        self.observed_ms = (observed.unwrap_or(0.0).clamp(0.0, 1.0) * length_ms as f64) as i64;
        self.chargers = partial.ev_chargers.iter().cloned().collect();
        self.current = Some(IntervalRecord {
            ev_chargers: Vec::new(),
            ..partial
        });
    }

    fn accumulate(&mut self, ms: i64, f: &Flows, chargers: &[ChargerLive]) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        // A flow not known is not energy: the time is a gap of the record.
        let Some([pv, battery, load, ev, grid]) = f.known() else {
            return;
        };
        let dt_h = ms as f64 / 3.6e6;
        self.observed_ms += ms;
        c.pv_kwh += pv.max(0.0) * dt_h;
        c.grid_import_kwh += grid.max(0.0) * dt_h;
        c.grid_export_kwh += (-grid).max(0.0) * dt_h;
        c.battery_discharge_kwh += battery.max(0.0) * dt_h;
        c.battery_charge_kwh += (-battery).max(0.0) * dt_h;
        c.load_kwh += load.max(0.0) * dt_h;
        c.ev_kwh += ev.max(0.0) * dt_h;
        for ch in chargers {
            *self.chargers.entry(ch.id.clone()).or_default() +=
                ch.kw.unwrap_or(0.0).max(0.0) * dt_h;
        }
    }

    fn take(&mut self) -> Option<IntervalRecord> {
        self.observed_ms = 0;
        let mut r = self.current.take()?;
        r.ev_chargers = std::mem::take(&mut self.chargers)
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .collect();
        Some(r)
    }

    /// The running interval so far.
    pub fn running(&self) -> Option<IntervalRecord> {
        let mut r = self.current.clone()?;
        r.ev_chargers = self
            .chargers
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        Some(r)
    }

    /// The share of the running interval observed so far, 0..1.
    pub fn running_observed(&self) -> f64 {
        let length_ms = self.clock.interval.duration().num_milliseconds().max(1);
        (self.observed_ms as f64 / length_ms as f64).min(1.0)
    }

    /// Closes the running interval (at shutdown): a partial record, with the share of it
    /// observed.
    pub fn finish(&mut self) -> Option<Closed> {
        let coverage = self.running_observed();
        self.take().map(|record| Closed { record, coverage })
    }
}

/// Today's figures from the day's records (closed intervals and the running one), accounted
/// with the park's annual grid factor as both the location and the avoided-emission factor.
pub fn today(park: &Park, records: &[IntervalRecord], now: DateTime<Utc>) -> Today {
    today_and_sessions(park, records, now, &[]).0
}

/// [`today`], and the carbon-free share of each session `(charger, arrival)` of the day's
/// records (the accounting's proportional rule, as a certificate's per-session shares): what
/// each car on a charger has had today from the park's PV (`None`: nothing yet).
pub fn today_and_sessions(
    park: &Park,
    records: &[IntervalRecord],
    now: DateTime<Utc>,
    sessions: &[(String, DateTime<Utc>)],
) -> (Today, Vec<Option<f64>>) {
    let none = || vec![None; sessions.len()];
    let day = park.clock.local(now).date_naive();
    let from = park.clock.start_of_local_day(day);
    let to = park.clock.interval_start(now) + park.clock.interval.duration();
    let f = park.carbon.grid_factor.value.0;
    let recs: Vec<IntervalRecord> = records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .cloned()
        .collect();
    if recs.is_empty() {
        return (Today::default(), none());
    }
    let from = recs[0].start;
    // The factors a certificate of today would use (the shipped table, the park's baseline or
    // the combined margin), so the dashboard's avoided emissions are the certificate's; a park
    // whose region the table lacks is shown at its own grid factor for both.
    let year = chrono::Datelike::year(&park.clock.local(now));
    let mut o = match choose(park, FactorTable::shipped(), year, "auto") {
        Ok(choice) => Options::for_park(park, &choice, 0.0),
        Err(_) => Options {
            grid_factor: f,
            hourly_factors: BTreeMap::new(),
            baseline_factor: f,
            residual_factor: f,
            covered_mwh: 0.0,
            grid_cfe_share: 0.0,
            batteries: Vec::new(),
            clock: park.clock,
        },
    };
    // Each battery's content at the start of the first record is not known here; half is
    // the neutral guess for today's display (certificates use the ledger, not this).
    o.batteries = park
        .batteries
        .iter()
        .map(|b| pedf_carbon::account::BatteryParams {
            id: b.id.clone(),
            round_trip_efficiency: b.round_trip_efficiency(),
            initial_kwh: b.capacity.0 * 0.5,
        })
        .collect();
    let a = account(&recs, from, to, &o);
    let t = &a.totals;
    let shares: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = sessions
        .iter()
        .enumerate()
        .map(|(i, (charger, arrival))| {
            // An arrival inside an interval counts the interval: the charger's energy of it
            // is the session's.
            let start = park.clock.interval_start(*arrival);
            (i.to_string(), charger.clone(), start, to)
        })
        .collect();
    let greens = pedf_carbon::account::session_green_shares(
        &recs,
        &a.intervals,
        &shares,
        park.clock.interval.duration(),
    )
    .into_iter()
    .map(|s| (s.kwh > 1e-9).then(|| s.green_share()))
    .collect();
    // The day's bill so far (the month's demand charge is the month's, shown with its peak).
    let bill = pedf_core::bill::bill(park, &recs, from, to);
    let day = bill.days.first().cloned().unwrap_or_default();
    let today = Today {
        energy_cny: day.energy_cny,
        export_cny: day.export_cny,
        wear_cny: day.wear_cny,
        pv_kwh: t.pv_kwh,
        grid_import_kwh: t.grid_import_kwh,
        grid_export_kwh: t.grid_export_kwh,
        load_kwh: recs.iter().map(|r| r.load_kwh).sum(),
        ev_kwh: recs.iter().map(|r| r.ev_kwh).sum(),
        battery_charge_kwh: t.battery_charge_kwh,
        battery_discharge_kwh: t.battery_discharge_kwh,
        location_kg: t.location_kg,
        avoided_kg: t.avoided_pv_kg,
        self_sufficiency: t.self_sufficiency,
        self_consumption: t.self_consumption,
        cfe_score: t.cfe_score,
        intervals: recs.len(),
    };
    (today, greens)
}

/// The tariff at `now`.
pub fn tariff_now(park: &Park, now: DateTime<Utc>) -> TariffNow {
    let local = park.clock.local(now).naive_local();
    let period = park.tariff.period_at(local);
    TariffNow {
        period: period.map(|p| p.key().to_string()),
        period_zh: period.map(|p| p.name_zh().to_string()),
        import_cny_per_kwh: park.tariff.import_price_at(local).map(|p| p.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn park() -> Park {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/qingzhou-pedf.toml"
        );
        let bytes = std::fs::read(path).unwrap();
        pedf_core::config::load_park(path, &bytes).value.unwrap()
    }

    #[test]
    fn integration_closes_intervals_with_the_energy_of_the_power_held() {
        let p = park();
        let mut i = Integrator::new(&p);
        let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        let f = Flows {
            pv_kw: Some(600.0),
            grid_kw: Some(-100.0),
            battery_kw: Some(-200.0),
            load_kw: Some(250.0),
            ev_kw: Some(40.0),
            ..Flows::default()
        };
        let ch = vec![ChargerLive {
            id: "ev-01".into(),
            kw: Some(40.0),
            setpoint_kw: None,
            session: None,
            actions: Vec::new(),
        }];
        let mut closed = Vec::new();
        // One second steps over 15 min and a bit.
        for s in 0..=905 {
            if let Some(c) = i.add(t0 + chrono::Duration::seconds(s), &f, &ch) {
                closed.push(c);
            }
        }
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (closed[0].coverage, closed[0].source()),
            (1.0, "measured"),
            "every second observed"
        );
        let r = &closed[0].record;
        assert_eq!(r.start, t0);
        // 900 one-second steps inside the first interval; the power held before a step
        // belongs to the interval it was held in.
        let h = 900.0 / 3600.0;
        assert!((r.pv_kwh - 600.0 * h).abs() < 1e-9, "{}", r.pv_kwh);
        assert!((r.grid_export_kwh - 100.0 * h).abs() < 1e-9);
        assert_eq!(r.grid_import_kwh, 0.0);
        assert!((r.battery_charge_kwh - 200.0 * h).abs() < 1e-9);
        assert!((r.ev_chargers[0].1 - 40.0 * h).abs() < 1e-9);
        // A silence longer than 10 s is not integrated.
        let mut j = Integrator::new(&p);
        j.add(t0, &f, &ch);
        j.add(t0 + chrono::Duration::seconds(300), &f, &ch);
        assert!((j.running().unwrap().pv_kwh - 600.0 * 10.0 / 3600.0).abs() < 1e-9);
    }

    /// A flow not known (a device not answering) is a gap of the record, never energy at 0 kW
    /// nor at its last value; the interval closes as `measured-partial` with its coverage.
    #[test]
    fn unknown_flows_are_a_gap_and_the_interval_says_how_much_was_observed() {
        let p = park();
        let mut i = Integrator::new(&p);
        let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        let known = Flows {
            pv_kw: Some(600.0),
            grid_kw: Some(0.0),
            battery_kw: Some(0.0),
            load_kw: Some(600.0),
            ev_kw: Some(0.0),
            ..Flows::default()
        };
        let blind = Flows {
            pv_kw: None,
            ..known.clone()
        };
        let mut closed = None;
        for s in 0..=900 {
            // The PV inverter does not answer for the middle five minutes.
            let f = if (300..600).contains(&s) {
                &blind
            } else {
                &known
            };
            if let Some(c) = i.add(t0 + chrono::Duration::seconds(s), f, &[]) {
                closed = Some(c);
            }
        }
        let c = closed.expect("the interval closed");
        assert!((c.coverage - 600.0 / 900.0).abs() < 1e-9, "{}", c.coverage);
        assert_eq!(c.source(), "measured-partial");
        assert!((c.record.pv_kwh - 600.0 * 600.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn today_counts_pv_as_avoided_at_the_certificates_factor() {
        let p = park();
        let start = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        let r = IntervalRecord {
            start,
            pv_kwh: 100.0,
            grid_import_kwh: 10.0,
            grid_export_kwh: 0.0,
            battery_charge_kwh: 0.0,
            battery_discharge_kwh: 0.0,
            load_kwh: 105.0,
            ev_kwh: 0.0,
            ev_chargers: vec![],
            batteries: vec![],
        };
        let t = today(&p, &[r], start + chrono::Duration::minutes(5));
        let f = p.carbon.grid_factor.value.0;
        // Avoided at the factor a certificate of the day uses: the shipped table's combined
        // margin for North China (the park file names no project baseline), on the 100 kWh
        // of PV delivered to the loads.
        let choice = choose(&p, FactorTable::shipped(), 2026, "auto").unwrap();
        assert!((choice.baseline - (0.75 * 0.9419 + 0.25 * 0.48)).abs() < 1e-12);
        assert!((t.avoided_kg - 100.0 * choice.baseline).abs() < 1e-9);
        assert!((t.location_kg - 10.0 * f).abs() < 1e-9);
        assert_eq!(t.intervals, 1);
        // Its bill: 10 kWh at 10:00 local, June's valley price 0.32 CNY/kWh.
        assert!((t.energy_cny - 3.2).abs() < 1e-9, "{t:?}");
        assert_eq!((t.export_cny, t.wear_cny), (0.0, 0.0));
        // A record of yesterday does not count.
        let t2 = today(&p, &[], start);
        assert_eq!(t2, Today::default());
    }

    #[test]
    fn a_sessions_green_share_is_what_the_accounting_gives_its_charger() {
        let p = park();
        let start = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        let step = p.clock.interval.duration();
        let rec = |at: DateTime<Utc>, pv: f64, import: f64| IntervalRecord {
            start: at,
            pv_kwh: pv,
            grid_import_kwh: import,
            load_kwh: pv + import - 10.0,
            ev_kwh: 10.0,
            ev_chargers: vec![("ev-01".into(), 10.0)],
            ..Default::default()
        };
        // All PV in the first interval; half PV, half grid in the second.
        let recs = [rec(start, 50.0, 0.0), rec(start + step, 20.0, 20.0)];
        let now = start + step + chrono::Duration::minutes(1);
        let (_, g) = today_and_sessions(
            &p,
            &recs,
            now,
            &[
                ("ev-01".into(), start + chrono::Duration::minutes(2)),
                ("ev-01".into(), start + step),
                ("ev-02".into(), start),
            ],
        );
        // Arrived inside the first interval: both intervals count, 10 + 5 green of 20 kWh.
        assert!((g[0].unwrap() - 0.75).abs() < 1e-9, "{g:?}");
        assert!((g[1].unwrap() - 0.5).abs() < 1e-9, "{g:?}");
        // A charger that delivered nothing has no share yet.
        assert_eq!(g[2], None);
    }
}
