//! Fleet hub benchmark (issue 24): what the hub does with each batch it reads from the
//! stream (500 records of 100 parks taken apart and written into its store in one
//! transaction), and the fleet's flexibility over a day from 1000 parks' plans. The end-to-end
//! figures (1000 parks on a real NATS server, the hub's CPU, memory and state delay) are
//! measured with `pedf fleet simulate` and `pedf fleet serve` (docs/fleet.md, "Sizing").
//!
//! Run: `cargo bench --bench fleet` (about 20 s).

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use pedf_runtime::fleet::hub::{fleet_flexibility, parse};
use pedf_store::fleet::FleetStore;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pedf-fleet-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut st = FleetStore::open(&dir.join("fleet.sqlite")).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
    let zone = chrono_tz::Asia::Shanghai;
    // 500 messages as parks send them: 100 parks, 5 intervals each.
    let batch =
        |k: i64| -> Vec<(String, Vec<u8>)> {
            (0..500)
            .map(|i| {
                let start = t0 + Duration::minutes(15 * (k * 5 + i / 100));
                let body = serde_json::json!({
                    "park": "ignored", "start": start.with_timezone(&zone).to_rfc3339(),
                    "pv_kwh": 50.0, "grid_import_kwh": 10.0, "grid_export_kwh": 0.0,
                    "battery_charge_kwh": 0.0, "battery_discharge_kwh": 5.0, "load_kwh": 64.0,
                    "ev_kwh": 1.0, "ev_chargers": {}, "source": "measured", "observed_share": 1.0,
                });
                (format!("pedf.park-{:04}.records", i % 100), serde_json::to_vec(&body).unwrap())
            })
            .collect()
        };
    let mut g = c.benchmark_group("fleet hub");
    g.sample_size(20);
    let mut k = 0i64;
    g.bench_function("take a batch of 500 records into the fleet store", |b| {
        b.iter(|| {
            k += 1;
            let msgs: Vec<_> = batch(k)
                .iter()
                .map(|(s, body)| parse(s, body).unwrap())
                .collect();
            st.apply(t0, &msgs).unwrap();
        })
    });
    // 1000 parks' plans of a day, 96 intervals each.
    let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 22).unwrap();
    let plans: Vec<(String, String)> = (0..1000)
        .map(|p| {
            let list: Vec<serde_json::Value> = (0..96)
                .map(|i| {
                    let t = zone.with_ymd_and_hms(2026, 6, 22, 0, 0, 0).unwrap()
                        + Duration::minutes(15 * i);
                    serde_json::json!({ "start": t.to_rfc3339(), "down_kw": (p % 7) as f64 * 10.0, "up_kw": i as f64 })
                })
                .collect();
            (format!("park-{p:04}"), serde_json::to_string(&list).unwrap())
        })
        .collect();
    let now = t0 + Duration::days(1);
    g.bench_function("the flexibility of 1000 parks over a day", |b| {
        b.iter(|| fleet_flexibility(&plans, zone, day, now))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
