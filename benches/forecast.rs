//! Forecast benchmarks (issue 8): a year of 1-minute solar positions for one site (target:
//! under 1 s), the same with the full SPA at every minute for comparison, and a year of
//! 15-minute PV forecasts of the reference park.
//!
//! Run: `cargo bench --bench forecast` (about 2 minutes).

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use pedf_forecast::pv::{forecast_pv, PvModel};
use pedf_forecast::spa::{solar_position, Site, SolarPath, SpaOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SITE: Site = Site {
    latitude_deg: 36.70,
    longitude_deg: 118.47,
    elevation_m: 60.0,
};
const MINUTES_PER_YEAR: i64 = 365 * 24 * 60;

/// Every minute of 2026 through the fast path; returns a checksum so nothing is optimised away.
fn year_of_minutes() -> f64 {
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let to = from + Duration::minutes(MINUTES_PER_YEAR - 1);
    let path = SolarPath::new(SITE, SpaOptions::default(), from, to);
    let mut sum = 0.0;
    for m in 0..MINUTES_PER_YEAR {
        sum += path.at(from + Duration::minutes(m)).zenith_deg;
    }
    sum
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    black_box(year_of_minutes());
    println!(
        "one year of 1-minute solar positions (fast path): {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("solar-position");
    g.sample_size(10);
    g.bench_function("year of 1-minute positions (hourly nodes)", |b| {
        b.iter(|| black_box(year_of_minutes()))
    });
    g.bench_function("one day of 1-minute positions, full SPA each", |b| {
        let from = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
        b.iter(|| {
            let mut sum = 0.0;
            for m in 0..1440 {
                sum += solar_position(from + Duration::minutes(m), &SITE, &SpaOptions::default())
                    .zenith_deg;
            }
            black_box(sum)
        })
    });
    g.finish();

    let text = std::fs::read(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap();
    let park = pedf_core::config::load_park("qingzhou-pedf.toml", &text)
        .value
        .unwrap();
    let mut g = c.benchmark_group("pv-forecast");
    g.sample_size(10);
    g.bench_function("reference park, 365 days at 15 min, clear sky", |b| {
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        b.iter(|| black_box(forecast_pv(&park, first, 365, None, &PvModel::default()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
