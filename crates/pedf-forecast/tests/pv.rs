//! PV forecasts: energy of a clear day against a reference PVWatts computation, and the
//! invariants every forecast keeps.

use chrono::{NaiveDate, Timelike};
use pedf_core::config::load_park;
use pedf_core::csvtext::InputFile;
use pedf_core::park::Park;
use pedf_forecast::irradiance::Transposition;
use pedf_forecast::pv::{forecast_pv, PvModel};
use pedf_forecast::spa::{sun_times, Site, SpaOptions};
use pedf_forecast::weather::read_weather;

/// PVWatts' default fixed open-rack system (tilt 20°, azimuth 180°, 14 % losses, nominal
/// converter efficiency 0.96, DC/AC ratio 1.2, γ = -0.37 %/°C), 4 kWp, at NREL in Golden.
fn golden_park() -> Park {
    let text = r#"
[park]
id = "golden"
name = "PVWatts default system at NREL, Golden CO"
latitude_deg = 39.742476
longitude_deg = -105.1786
altitude_m = 1830.14
timezone = "Etc/GMT+7"
interval_minutes = 15

[dc_bus]
nominal_voltage_v = 750

[grid]
feeder_voltage_kv = 10
import_limit_kw = 100
export_limit_kw = 100

[converter]
id = "pcs"
rating_kw = 100
efficiency_ac_to_dc = 0.97
efficiency_dc_to_ac = 0.97

[[pv]]
id = "pv"
peak_power_kwp = 4
tilt_deg = 20
azimuth_deg = 180
system_losses = 0.14
converter_rating_kw = 3.333333
converter_efficiency = 0.96
temperature_coefficient_per_c = -0.0037

[tariff]
name = "flat"
source = "test"
export_price_cny_per_kwh = 0

[tariff.prices_cny_per_kwh]
flat = 0.65

[[tariff.season]]
name = "all year"
months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
periods = [{ start = "00:00", end = "24:00", kind = "flat" }]

[carbon]
grid_factor_kg_per_kwh = 0.6361
grid_region = "north-china"
factor_variant = "regional-average"
factor_data_year = 2023
factor_source = "MEE & NBS 2023 factors"
factor_status = "confirmed"
"#;
    let loaded = load_park("golden.toml", text.as_bytes());
    assert!(
        loaded
            .diagnostics
            .iter()
            .all(|d| d.severity != pedf_core::validate::Severity::Error),
        "{:?}",
        loaded.diagnostics
    );
    loaded.value.expect("park")
}

fn reference_park() -> Park {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/qingzhou-pedf.toml"
    );
    load_park("qingzhou-pedf.toml", &std::fs::read(path).unwrap())
        .value
        .expect("reference park")
}

fn model(tl: f64, transposition: Transposition) -> PvModel {
    PvModel {
        linke_turbidity: [tl; 12],
        default_air_c: 20.0,
        default_wind_m_s: 1.0,
        transposition,
        ..PvModel::default()
    }
}

/// Reference figures: `scripts/pvlib-reference.py` (pvlib 0.16.1's PVWatts chain: Ineichen
/// clear sky with Linke turbidity 3, physical IAM, SAPM open-rack cell temperature, pvwatts_dc,
/// 14 % losses, inverter.pvwatts) for the same system and day, 1-minute steps:
/// Hay-Davies 27.1225 kWh, isotropic 27.1833 kWh, Perez (PVWatts' own sky model) 27.3384 kWh.
/// We hold ourselves to 1 % of the same-model figure (measured: -0.24 % and -0.26 %) and 3 %
/// of the Perez one.
#[test]
fn clear_day_energy_matches_the_pvwatts_reference() {
    let park = golden_park();
    let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let cases = [
        (Transposition::HayDavies, 27.1225),
        (Transposition::Isotropic, 27.1833),
    ];
    for (transposition, want) in cases {
        let f = forecast_pv(&park, day, 1, None, &model(3.0, transposition)).unwrap();
        let got = f.arrays[0].energy_kwh(0.25);
        let err = (got - want) / want;
        eprintln!(
            "{transposition:?}: {got:.4} kWh vs pvlib {want} kWh ({:+.2} %)",
            err * 100.0
        );
        assert!(
            err.abs() < 0.01,
            "{transposition:?}: {got:.3} kWh vs pvlib {want} kWh ({:+.2} %)",
            err * 100.0
        );
        let perez = 27.3384;
        assert!(
            ((got - perez) / perez).abs() < 0.03,
            "{transposition:?}: {got:.3} vs Perez {perez}"
        );
        assert!(f.arrays[0].kw.iter().all(|&p| p <= 3.333333 + 1e-9));
    }
}

#[test]
fn forecasts_are_never_negative_and_zero_at_night() {
    let park = reference_park();
    let site = Site {
        latitude_deg: park.location.latitude_deg,
        longitude_deg: park.location.longitude_deg,
        elevation_m: park.location.altitude_m,
    };
    for (m, d) in [(1, 15), (3, 21), (6, 21), (9, 23), (12, 21)] {
        let day = NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        let f = forecast_pv(&park, day, 1, None, &PvModel::default()).unwrap();
        assert_eq!(f.starts.len(), 96);
        let times = sun_times(day, 8.0, &site, &SpaOptions::default());
        let (rise, set) = (times.sunrise.unwrap(), times.sunset.unwrap());
        for a in &f.arrays {
            for (t, &p) in f.starts.iter().zip(&a.kw) {
                assert!(p.is_finite() && p >= 0.0, "{} {t}: {p}", a.id);
                let end = *t + chrono::Duration::minutes(15);
                if end <= rise || *t >= set {
                    assert_eq!(p, 0.0, "{} {t}: {p} kW with the sun down", a.id);
                }
            }
            let peak = a.kw.iter().cloned().fold(0.0, f64::max);
            assert!(peak > 0.0, "{} has no power on {day}", a.id);
        }
    }
}

#[test]
fn the_reference_park_on_the_planning_day() {
    let park = reference_park();
    let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let f = forecast_pv(&park, day, 1, None, &PvModel::default()).unwrap();
    let total = f.total_kw();
    let energy: f64 = total.iter().sum::<f64>() * 0.25;
    // 2000 kWp: a clear June day gives 5 to 8 kWh per kWp at the bus.
    assert!((10_000.0..16_000.0).contains(&energy), "{energy} kWh");
    // Peak near solar noon (12:06 local at 118.47° E): within the 11:30-12:45 intervals.
    let (i, _) = total
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
    let local = park.clock.local(f.starts[i]);
    assert!((11..=12).contains(&local.hour()), "peak at {local}");
    // Never above the converters' ratings.
    for (a, pv) in f.arrays.iter().zip(&park.pv) {
        assert!(a.kw.iter().all(|&p| p <= pv.converter_rating.0 + 1e-9));
    }
}

fn weather(text: &str) -> pedf_forecast::weather::Weather {
    read_weather(
        InputFile {
            name: "weather.csv",
            bytes: text.as_bytes(),
        },
        chrono_tz::Asia::Shanghai,
    )
    .unwrap()
}

fn hourly(from_h: i32, to_h: i32, row: impl Fn(i32) -> String) -> String {
    let mut s = String::from("time,ghi_w_m2,temp_air_c,wind_speed_m_s\n");
    for h in from_h..=to_h {
        let (d, hh) = (21 + h.div_euclid(24), h.rem_euclid(24));
        s.push_str(&format!("2026-06-{d:02}T{hh:02}:00:00+08:00,{}\n", row(h)));
    }
    s
}

#[test]
fn weather_scales_the_forecast_and_must_cover_the_day() {
    let park = reference_park();
    let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let clear = forecast_pv(&park, day, 1, None, &PvModel::default()).unwrap();
    let clear_e: f64 = clear.total_kw().iter().sum();
    // Overcast: a fifth of clear-sky GHI all day (from the clear-sky model itself).
    let overcast = weather(&hourly(-1, 24, |_| "0,22,2".into()));
    let f = forecast_pv(&park, day, 1, Some(&overcast), &PvModel::default()).unwrap();
    assert!(
        f.total_kw().iter().all(|&p| p == 0.0),
        "zero GHI gives zero power"
    );
    let cloudy = weather(&hourly(-1, 24, |h| {
        format!("{},25,1", if (6..=18).contains(&h) { 300 } else { 0 })
    }));
    let f = forecast_pv(&park, day, 1, Some(&cloudy), &PvModel::default()).unwrap();
    let e: f64 = f.total_kw().iter().sum();
    assert!(e > 0.0 && e < 0.6 * clear_e, "{e} vs clear {clear_e}");
    // A file that stops at 20:00 does not cover the day.
    let short = weather(&hourly(-1, 20, |_| "100,25,1".into()));
    let err = forecast_pv(&park, day, 1, Some(&short), &PvModel::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("covers 2026-06-20T23:00:00+08:00 to 2026-06-21T20:00:00+08:00"),
        "{err}"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Random bytes, or a weather file with the right header and rows that are right, out of
    /// range or garbled (so the forecast is reached, not only the header check).
    fn weather_bytes() -> impl Strategy<Value = Vec<u8>> {
        let row = (
            0i64..60,
            -100.0f64..2000.0,
            -90.0f64..90.0,
            -5.0f64..90.0,
            0u8..8,
        );
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..400),
            proptest::collection::vec(row, 0..40).prop_map(|mut rows| {
                // Mostly in time order, so most files get past the order check.
                rows.sort_by_key(|r| r.0);
                rows.dedup_by_key(|r| r.0);
                let base =
                    chrono::DateTime::parse_from_rfc3339("2026-06-20T23:00:00+08:00").unwrap();
                let mut s = String::from("time,ghi_w_m2,temp_air_c,wind_speed_m_s\n");
                for (h, ghi, t, w, kind) in rows {
                    let time = (base + chrono::Duration::hours(h)).to_rfc3339();
                    match kind {
                        0 => s.push_str(&format!("{time},,{t:.1},{w:.1}\n")),
                        1 => s.push_str(&format!("{time},{ghi:.1},x,{w:.1}\n")),
                        _ => s.push_str(&format!("{time},{ghi:.1},{t:.1},{w:.1}\n")),
                    }
                }
                s.into_bytes()
            }),
        ]
    }

    proptest! {
        // A fixed seed: the same cases on every run and machine.
        #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_207), ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the weather reader; a file it accepts gives a forecast
        /// that is finite, non-negative and within the converters' ratings, or a clear error.
        #[test]
        fn weather_reader_and_forecast_never_panic(bytes in weather_bytes()) {
            let park = reference_park();
            match read_weather(InputFile { name: "w.csv", bytes: &bytes }, chrono_tz::Asia::Shanghai) {
                Ok(w) => {
                    // Every local day the file touches forecasts within the ratings, or says
                    // why it cannot.
                    let mut days: Vec<NaiveDate> = w
                        .rows
                        .iter()
                        .map(|r| r.time.with_timezone(&chrono_tz::Asia::Shanghai).date_naive())
                        .collect();
                    days.dedup();
                    for day in days.into_iter().take(2) {
                        match forecast_pv(&park, day, 1, Some(&w), &PvModel::default()) {
                            Ok(f) => {
                                for (a, pv) in f.arrays.iter().zip(&park.pv) {
                                    for &p in &a.kw {
                                        prop_assert!(p.is_finite() && p >= 0.0 && p <= pv.converter_rating.0 + 1e-9);
                                    }
                                }
                            }
                            Err(e) => prop_assert!(!e.to_string().is_empty()),
                        }
                    }
                }
                Err(ds) => {
                    prop_assert!(!ds.is_empty());
                    for d in &ds {
                        prop_assert!(!d.message.is_empty() && d.line >= 1, "{d:?}");
                    }
                }
            }
        }

        #[test]
        fn any_valid_weather_gives_a_bounded_forecast(
            ghi in proptest::collection::vec(0.0f64..1500.0, 26),
            temp in proptest::collection::vec(-60.0f64..60.0, 26),
            wind in proptest::collection::vec(0.0f64..75.0, 26),
        ) {
            let park = reference_park();
            let mut text = String::from("time,ghi_w_m2,temp_air_c,wind_speed_m_s\n");
            for h in 0..26 {
                let t = chrono::DateTime::parse_from_rfc3339("2026-06-20T23:00:00+08:00").unwrap() + chrono::Duration::hours(h as i64);
                text.push_str(&format!("{},{:.1},{:.1},{:.1}\n", t.to_rfc3339(), ghi[h], temp[h], wind[h]));
            }
            let w = weather(&text);
            let f = forecast_pv(&park, NaiveDate::from_ymd_opt(2026, 6, 21).unwrap(), 1, Some(&w), &PvModel::default()).unwrap();
            for (a, pv) in f.arrays.iter().zip(&park.pv) {
                for &p in &a.kw {
                    prop_assert!(p.is_finite() && p >= 0.0 && p <= pv.converter_rating.0 + 1e-9);
                }
            }
        }
    }
}
