//! The seeded weather of a scenario: hourly cloudiness and air temperature for the actual
//! year and for the day-ahead forecast of it.
//!
//! Cloud model: the month's mean daily clear-sky index comes from its sunshine hours through
//! the Angström-Prescott relation with FAO-56's default coefficients (`Rs/Ra = 0.25 + 0.50
//! n/N`, clear-sky `Rso/Ra = 0.75`; Allen et al. 1998, FAO Irrigation and Drainage Paper 56,
//! eqs. 35-37), `N` the day length at the park's latitude. Each day draws an AR(1) anomaly
//! around it (persistent weather), each hour an AR(1) variation whose spread is largest on
//! broken-cloud days and vanishes on clear and overcast ones. The index is given to the PV
//! model as cloud cover through Kasten & Czeplak (1980) inverted, so the sky model of
//! pedf-forecast turns it back into irradiance: the physics and the forecaster see the same
//! sun through different clouds. Temperature: the month's mean daily maximum and minimum on a
//! cosine peaking at 15:00 local, plus a daily AR(1) anomaly of 2 °C.
//!
//! The forecast is the actual index plus an hourly AR(1) error of `cloud_error_sd` (and the
//! temperature plus 1 °C noise): a day-ahead numerical weather forecast's skill, roughly.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use pedf_forecast::weather::{Weather, WeatherRow};

use crate::rng::Rng;
use crate::scenario::Scenario;

/// Mean day length (hours) at `lat_deg` on day-of-year `doy` (FAO-56 eqs. 24, 25, 34).
pub fn day_length_h(lat_deg: f64, doy: u32) -> f64 {
    let decl = 0.409 * (std::f64::consts::TAU / 365.0 * f64::from(doy) - 1.39).sin();
    let x = (-lat_deg.to_radians().tan() * decl.tan()).clamp(-1.0, 1.0);
    24.0 / std::f64::consts::PI * x.acos()
}

/// The month's mean daily clear-sky index from its sunshine hours.
pub fn mean_clear_sky_index(s: &Scenario, month: u32, year: i32) -> f64 {
    let c = s.climate[(month - 1) as usize];
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("valid month");
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .expect("valid month");
    let days = (next - first).num_days() as u32;
    let lat = s.park.location.latitude_deg;
    let possible: f64 = (0..days)
        .map(|d| day_length_h(lat, first.ordinal() + d))
        .sum();
    let relative = (c.sunshine_h / possible).clamp(0.0, 1.0);
    ((0.25 + 0.50 * relative) / 0.75).clamp(0.25, 1.0)
}

/// Cloud cover (0..1) that Kasten & Czeplak's `GHI = clear (1 - 0.75 c^3.4)` turns into the
/// clear-sky index `k`.
pub fn cloud_for_index(k: f64) -> f64 {
    ((1.0 - k.clamp(0.25, 1.0)) / 0.75)
        .powf(1.0 / 3.4)
        .clamp(0.0, 1.0)
}

/// Actual and forecast weather, hourly, covering `days` local days from the scenario's start
/// with an hour's margin on both sides.
pub struct YearWeather {
    /// The weather that happens.
    pub actual: Weather,
    /// The weather the forecast sees.
    pub forecast: Weather,
    /// Clear-sky index per hour (actual), for the report.
    pub actual_index: Vec<f64>,
}

/// Generates the weather. Deterministic for the scenario's seed.
pub fn generate(s: &Scenario, first_day: NaiveDate, days: u32) -> YearWeather {
    let clock = &s.park.clock;
    let from = clock.start_of_local_day(first_day) - Duration::hours(2);
    let to =
        clock.start_of_local_day(first_day + Duration::days(i64::from(days))) + Duration::hours(2);
    let hours = (to - from).num_hours() as usize + 1;
    // Independent streams; the day's draws come from the day itself so that a shorter run is
    // the start of a longer one.
    let mut day_rng = Rng::new(s.seed, 11);
    let mut hour_rng = Rng::new(s.seed, 12);
    let mut err_rng = Rng::new(s.seed, 13);
    let mut actual = Vec::with_capacity(hours);
    let mut forecast = Vec::with_capacity(hours);
    let mut index = Vec::with_capacity(hours);
    let (mut day_anom, mut temp_anom, mut hour_anom, mut err) = (0.0, 0.0, 0.0, 0.0);
    let mut current_day: Option<NaiveDate> = None;
    let mut k_day = 0.7;
    let ar_day: f64 = 0.5;
    let ar_hour: f64 = 0.7;
    let ar_err: f64 = 0.8;
    for h in 0..hours {
        let t: DateTime<Utc> = from + Duration::hours(h as i64);
        let local = clock.local(t);
        let date = local.date_naive();
        if current_day != Some(date) {
            current_day = Some(date);
            let mean_k = mean_clear_sky_index(s, date.month(), date.year());
            day_anom = ar_day * day_anom + 0.22 * (1.0 - ar_day * ar_day).sqrt() * day_rng.normal();
            temp_anom = 0.6 * temp_anom + 2.0 * 0.8 * day_rng.normal();
            k_day = (mean_k + day_anom).clamp(0.25, 1.0);
        }
        let spread = 2.4 * (1.0 - k_day) * (k_day - 0.25).max(0.0);
        hour_anom =
            ar_hour * hour_anom + spread * (1.0 - ar_hour * ar_hour).sqrt() * hour_rng.normal();
        let k = (k_day + hour_anom).clamp(0.25, 1.0);
        err = ar_err * err + s.cloud_error_sd * (1.0 - ar_err * ar_err).sqrt() * err_rng.normal();
        let kf = (k + err).clamp(0.25, 1.0);
        let c = s.climate[(date.month() - 1) as usize];
        let hour = f64::from(local.hour());
        let temp = (c.high_c + c.low_c) / 2.0
            + (c.high_c - c.low_c) / 2.0 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos()
            + temp_anom;
        let temp_f = temp + err_rng.normal();
        actual.push(WeatherRow {
            time: t,
            ghi_w_m2: None,
            cloud_fraction: Some(cloud_for_index(k)),
            temp_air_c: Some(temp),
            wind_speed_m_s: Some(2.0),
        });
        forecast.push(WeatherRow {
            time: t,
            ghi_w_m2: None,
            cloud_fraction: Some(cloud_for_index(kf)),
            temp_air_c: Some(temp_f),
            wind_speed_m_s: Some(2.0),
        });
        index.push(k);
    }
    YearWeather {
        actual: Weather {
            name: "simulated weather (actual)".into(),
            rows: actual,
            notes: vec![],
        },
        forecast: Weather {
            name: "simulated weather (day-ahead forecast)".into(),
            rows: forecast,
            notes: vec![],
        },
        actual_index: index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kasten_czeplak_inverse_round_trips() {
        for k in [0.25, 0.4, 0.6, 0.8, 0.95, 1.0] {
            let c = cloud_for_index(k);
            let back = 1.0 - 0.75 * c.powf(3.4);
            assert!((back - k).abs() < 1e-9, "{k} -> {c} -> {back}");
        }
    }

    #[test]
    fn day_length_matches_the_solstices_at_qingzhou() {
        // 36.7 °N, sunrise to sunset of the sun's centre without refraction (as FAO-56):
        // 14.5 h at the June solstice, 9.5 h at the December one.
        let june = day_length_h(36.7, 172);
        let dec = day_length_h(36.7, 355);
        assert!((june - 14.5).abs() < 0.1, "{june}");
        assert!((dec - 9.5).abs() < 0.1, "{dec}");
    }
}
