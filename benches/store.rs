//! Store benchmark (issue 6): ingest of device samples into the embedded SQLite store, in
//! batches of 10,000 (one transaction each, as a once-a-second writer of a large park would).
//!
//! Run: `cargo bench --bench store` (about 30 s).

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use pedf_store::{Sample, Store};

fn batch(k: usize, n: usize) -> Vec<Sample> {
    let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
    (0..n)
        .map(|i| Sample {
            device: format!("dev-{:03}", i % 100),
            field: "power_kw".into(),
            at: t0 + Duration::milliseconds((k * n + i) as i64 * 10),
            value: i as f64,
            quality: 0,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pedf-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut st = Store::open(&dir.join("bench.sqlite")).unwrap();
    let batches: Vec<Vec<Sample>> = (0..100).map(|k| batch(k, 10_000)).collect();
    let t = Instant::now();
    for b in &batches {
        st.insert_samples(b).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("ingest: 1,000,000 samples in {secs:.2} s = {:.0} samples/s (batches of 10,000, WAL, synchronous=NORMAL)", 1e6 / secs);
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    let one = batch(1000, 10_000);
    g.bench_function("insert a batch of 10,000 samples", |b| {
        b.iter(|| st.insert_samples(&one).unwrap())
    });
    g.finish();
    drop(st);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
