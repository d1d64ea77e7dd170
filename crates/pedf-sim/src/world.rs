//! The simulated world of a scenario over a period, per park interval: what actually happens
//! (PV available, loads, EV arrivals) and what the planner is told the day before (forecasts),
//! plus the tariff and the grid's carbon signal. Deterministic for the scenario's seed.
//!
//! PV: pedf-forecast's PV model (solar position, Ineichen-Perez clear sky, Hay-Davies plane of
//! array, Sandia cell temperature, PVWatts DC with temperature derating, converter curve) run
//! on the generated actual weather gives the physics, run on the forecast weather gives the
//! planner's forecast. Loads: the scenario's hourly profiles (interpolated between hour
//! midpoints, HVAC scaled by the month) with AR(1) noise; the forecast is the profile with one
//! relative error per load and day. EVs: each group's Poisson count per day, uniform arrival,
//! dwell and energy; a car takes a free charger (ten minutes' turnover) or is turned away; the
//! planner's day-ahead forecast is the groups' expected sessions, spread over their ranges.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc, Weekday};
use pedf_core::inputs::{DayInputs, EvSession};
use pedf_forecast::pv::{forecast_pv, PvModel};

use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::weather;

/// An EV session as it happens (or as forecast): pedf-forecast's session type.
pub use pedf_forecast::ev::Session;

/// The period's series.
pub struct World {
    /// The first day.
    pub first_day: NaiveDate,
    /// Days in the period.
    pub days: u32,
    /// Interval starts.
    pub starts: Vec<DateTime<Utc>>,
    /// Intervals per day.
    pub per_day: usize,
    /// Interval length, h.
    pub dt_h: f64,
    /// PV available per array per interval, kW.
    pub pv_actual: BTreeMap<String, Vec<f64>>,
    /// PV forecast per array per interval, kW.
    pub pv_forecast: BTreeMap<String, Vec<f64>>,
    /// Actual demand per load per interval, kW.
    pub load_actual: BTreeMap<String, Vec<f64>>,
    /// Forecast demand per load per interval, kW.
    pub load_forecast: BTreeMap<String, Vec<f64>>,
    /// The EV sessions that happen.
    pub sessions: Vec<Session>,
    /// Cars that found every charger busy.
    pub turned_away: usize,
    /// Expected sessions per day (the planner's day-ahead EV forecast).
    pub sessions_forecast: Vec<Vec<Session>>,
    /// Import price per interval, CNY/kWh.
    pub import_price: Vec<f64>,
    /// Export price per interval, CNY/kWh.
    pub export_price: Vec<f64>,
    /// The planner's carbon signal (annual factor x hourly shape), kg/kWh.
    pub intensity: Vec<f64>,
    /// The annual grid factor used for accounting, kg/kWh.
    pub grid_factor: f64,
}

fn weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Profile value at local time `hours` (0..24) of a day kind: linear between hour midpoints,
/// wrapping around midnight within the day kind.
fn profile_at(p: &[f64; 24], hours: f64) -> f64 {
    let x = hours - 0.5;
    let i = x.floor();
    let f = x - i;
    let a = p[(i as i64).rem_euclid(24) as usize];
    let b = p[((i as i64) + 1).rem_euclid(24) as usize];
    a + (b - a) * f
}

impl World {
    /// Builds the world for `days` local days from `first_day`.
    pub fn build(s: &Scenario, first_day: NaiveDate, days: u32) -> Result<World, String> {
        let park = &s.park;
        let clock = &park.clock;
        let starts: Vec<DateTime<Utc>> = (0..days)
            .flat_map(|d| clock.intervals_of_local_day(first_day + Duration::days(i64::from(d))))
            .collect();
        let per_day = clock.interval.per_day();
        let dt_h = f64::from(clock.interval.minutes()) / 60.0;
        let w = weather::generate(s, first_day, days);
        let model = PvModel::default();
        let pv_a = forecast_pv(park, first_day, days, Some(&w.actual), &model)
            .map_err(|e| e.to_string())?;
        let pv_f = forecast_pv(park, first_day, days, Some(&w.forecast), &model)
            .map_err(|e| e.to_string())?;
        let pv_actual = pv_a.arrays.into_iter().map(|a| (a.id, a.kw)).collect();
        let pv_forecast = pv_f.arrays.into_iter().map(|a| (a.id, a.kw)).collect();

        // Loads.
        let ids = Scenario::profile_ids(park);
        let hvac_ids: Vec<String> = park
            .flexible_loads
            .iter()
            .filter(|l| {
                matches!(
                    l.flexibility,
                    pedf_core::assets::Flexibility::Curtailable { .. }
                )
            })
            .map(|l| l.id.clone())
            .collect();
        let mut noise_rng = Rng::new(s.seed, 21);
        let mut err_rng = Rng::new(s.seed, 22);
        let mut load_actual: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut load_forecast: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let rho = s.load_noise_correlation;
        for id in &ids {
            let mut a = Vec::with_capacity(starts.len());
            let mut f = Vec::with_capacity(starts.len());
            let mut noise = 0.0;
            let mut day_err = 0.0;
            let mut day: Option<NaiveDate> = None;
            for &t in &starts {
                let local = clock.local(t);
                let date = local.date_naive();
                if day != Some(date) {
                    day = Some(date);
                    day_err = s.load_error_sd * err_rng.normal();
                }
                let prof = if weekend(date) {
                    &s.profiles.weekend[id]
                } else {
                    &s.profiles.weekday[id]
                };
                let hours = f64::from(local.hour()) + f64::from(local.minute()) / 60.0 + dt_h / 2.0;
                let mut base = profile_at(prof, hours);
                if hvac_ids.contains(id) {
                    base *= s.climate[(date.month() - 1) as usize].hvac_factor;
                }
                noise =
                    rho * noise + s.load_noise_sd * (1.0 - rho * rho).sqrt() * noise_rng.normal();
                a.push((base * (1.0 + noise)).max(0.0));
                f.push((base * (1.0 + day_err)).max(0.0));
            }
            load_actual.insert(id.clone(), a);
            load_forecast.insert(id.clone(), f);
        }

        // EV sessions.
        let chargers: Vec<(String, f64)> = park
            .ev_chargers
            .iter()
            .map(|c| (c.id.clone(), c.max_power.0))
            .collect();
        let mut ev_rng = Rng::new(s.seed, 31);
        let mut busy: Vec<DateTime<Utc>> = vec![DateTime::<Utc>::MIN_UTC; chargers.len()];
        let mut sessions = Vec::new();
        let mut turned_away = 0;
        let mut sessions_forecast = Vec::with_capacity(days as usize);
        let turnover = Duration::minutes(10);
        for d in 0..days {
            let date = first_day + Duration::days(i64::from(d));
            let day0 = clock.start_of_local_day(date);
            let we = weekend(date);
            let mut plans = Vec::new();
            let mut expected = Vec::new();
            for g in &s.ev_groups {
                let mean = if we {
                    g.weekend_per_day
                } else {
                    g.weekday_per_day
                };
                let n = ev_rng.poisson(mean);
                let u = |r: &mut Rng, (a, b): (f64, f64)| a + (b - a) * r.uniform();
                for _ in 0..n {
                    let arr = u(&mut ev_rng, g.arrival_h);
                    let dwell = u(&mut ev_rng, g.dwell_h);
                    let e = u(&mut ev_rng, g.energy_kwh);
                    plans.push((arr, dwell, e));
                }
                let m = mean.round() as usize;
                for i in 0..m {
                    let q = (i as f64 + 0.5) / m as f64;
                    // Spread the expected sessions over the ranges, pairing early arrivals with
                    // mid dwell so the forecast is not one block.
                    let q2 = ((i * 7 + 3) % m) as f64 / m as f64 + 0.5 / m as f64;
                    let lerp = |(a, b): (f64, f64), x: f64| a + (b - a) * x;
                    expected.push((
                        lerp(g.arrival_h, q),
                        lerp(g.dwell_h, q2),
                        lerp(g.energy_kwh, 0.5),
                    ));
                }
            }
            plans.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (k, (arr_h, dwell_h, e)) in plans.into_iter().enumerate() {
                let arrival = day0 + Duration::seconds((arr_h * 3600.0).round() as i64);
                let departure = arrival + Duration::seconds((dwell_h * 3600.0).round() as i64);
                let free: Vec<usize> = (0..chargers.len())
                    .filter(|&c| busy[c] <= arrival)
                    .collect();
                if free.is_empty() {
                    turned_away += 1;
                    continue;
                }
                let c = free[(ev_rng.uniform() * free.len() as f64) as usize % free.len()];
                busy[c] = departure + turnover;
                let energy = e.min(chargers[c].1 * dwell_h * 0.8);
                sessions.push(Session {
                    id: format!("s{}-{:02}", date.format("%m%d"), k + 1),
                    charger: chargers[c].0.clone(),
                    arrival,
                    departure,
                    energy_kwh: energy,
                });
            }
            // The forecast: expected sessions on chargers assigned in turn.
            expected.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut fbusy: Vec<DateTime<Utc>> = vec![DateTime::<Utc>::MIN_UTC; chargers.len()];
            let mut list = Vec::new();
            for (k, (arr_h, dwell_h, e)) in expected.into_iter().enumerate() {
                let arrival = day0 + Duration::seconds((arr_h * 3600.0).round() as i64);
                let departure = arrival + Duration::seconds((dwell_h * 3600.0).round() as i64);
                let Some(c) = (0..chargers.len()).find(|&c| fbusy[c] <= arrival) else {
                    continue;
                };
                fbusy[c] = departure + turnover;
                list.push(Session {
                    id: format!("f{}-{:02}", date.format("%m%d"), k + 1),
                    charger: chargers[c].0.clone(),
                    arrival,
                    departure,
                    energy_kwh: e.min(chargers[c].1 * dwell_h * 0.8),
                });
            }
            sessions_forecast.push(list);
        }

        // Prices and carbon signal.
        let mut import_price = Vec::with_capacity(starts.len());
        let mut intensity = Vec::with_capacity(starts.len());
        let factor = park.carbon.grid_factor.value.0;
        for &t in &starts {
            let local = clock.local(t);
            let p = park
                .tariff
                .import_price_at(local.naive_local())
                .ok_or_else(|| format!("the park's tariff has no price for {}", clock.format(t)))?;
            import_price.push(p.0);
            intensity.push(factor * s.carbon_hourly_shape[local.hour() as usize]);
        }
        let export_price = vec![park.tariff.export_price.0; starts.len()];
        Ok(World {
            first_day,
            days,
            starts,
            per_day,
            dt_h,
            pv_actual,
            pv_forecast,
            load_actual,
            load_forecast,
            sessions,
            turned_away,
            sessions_forecast,
            import_price,
            export_price,
            intensity,
            grid_factor: factor,
        })
    }

    /// Planner inputs for intervals `from..to` of the period (forecast PV and loads, the given
    /// sessions clipped to the horizon with their energy prorated to the time inside it).
    pub fn inputs(&self, from: usize, to: usize, sessions: &[(Session, f64)]) -> DayInputs {
        let cut = |m: &BTreeMap<String, Vec<f64>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v[from..to].to_vec()))
                .collect()
        };
        let starts = self.starts[from..to].to_vec();
        let step = Duration::seconds((self.dt_h * 3600.0).round() as i64);
        let (h0, h1) = (starts[0], starts[starts.len() - 1] + step);
        let mut evs = Vec::new();
        for (s, need) in sessions {
            if s.departure <= h0 || s.arrival >= h1 || *need <= 1e-9 {
                continue;
            }
            let first = starts
                .iter()
                .position(|t| *t >= s.arrival)
                .unwrap_or(starts.len());
            let end = starts
                .iter()
                .rposition(|t| *t + step <= s.departure)
                .map_or(0, |i| i + 1)
                .max(first);
            if end <= first {
                continue;
            }
            let mut need = *need;
            if s.departure > h1 {
                // Only the part of the remaining stay inside the horizon is asked for.
                let from_t = s.arrival.max(h0);
                let stay = (s.departure - from_t).num_seconds() as f64;
                let inside = (h1 - from_t).num_seconds() as f64;
                need *= (inside / stay).clamp(0.0, 1.0);
            }
            evs.push(EvSession {
                id: s.id.clone(),
                charger: s.charger.clone(),
                arrival: s.arrival,
                departure: s.departure,
                energy_kwh: need,
                first,
                end,
            });
        }
        DayInputs {
            starts,
            pv_kw: cut(&self.pv_forecast),
            load_kw: cut(&self.load_forecast),
            sessions: evs,
            carbon_intensity: self.intensity[from..to].to_vec(),
            carbon_source: "scenario: annual factor x hourly shape".into(),
            import_price: self.import_price[from..to].to_vec(),
            export_price: self.export_price[from..to].to_vec(),
            price_source: "park tariff".into(),
            notes: vec![],
        }
    }
}
