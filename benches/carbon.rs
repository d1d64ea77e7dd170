//! Carbon accounting benchmark (issue 5): one year of 1-minute energy records from 50 meters
//! (26.3 M records) aggregated into the park's 15-minute intervals and accounted by the
//! streaming `Accountant`: time and peak memory. The records are generated on the fly (a
//! balanced synthetic park: 10 PV meters, 4 battery meters, 30 load meters, 5 EV meters, one
//! grid meter), so the figure is the accounting's, not a CSV parser's.
//!
//! Run: `cargo bench --bench carbon` (about 1 minute).

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use pedf_carbon::account::{Accountant, Options, Totals};
use pedf_carbon::records::IntervalRecord;
use pedf_core::time::{IntervalLength, ParkClock};

const METERS: usize = 50;

fn options() -> Options {
    Options {
        grid_factor: 0.6361,
        hourly_factors: Default::default(),
        baseline_factor: 0.6361,
        residual_factor: 0.6096,
        covered_mwh: 0.0,
        grid_cfe_share: 0.0,
        batteries: vec![pedf_carbon::account::BatteryParams {
            id: "bess-1".into(),
            round_trip_efficiency: 0.9,
            initial_kwh: 1000.0,
        }],
        clock: ParkClock::new(
            chrono_tz::Asia::Shanghai,
            IntervalLength::from_minutes(15).unwrap(),
        ),
    }
}

/// Energy of meter `m` in minute `k` (kWh): a deterministic, balanced park.
fn minute(k: usize) -> [f64; METERS] {
    let day = (k % 1440) as f64 / 1440.0;
    let sun = (std::f64::consts::PI * (day - 0.25) / 0.5).sin().max(0.0);
    let pv = 2000.0 * sun / 60.0; // kWh per minute at the bus
    let load = (400.0 + 300.0 * sun) / 60.0;
    let ev = if (0.33..0.75).contains(&day) {
        200.0 / 60.0
    } else {
        0.0
    };
    let surplus = pv - load - ev;
    let (charge, discharge) = if surplus > 0.0 {
        (surplus.min(500.0 / 60.0), 0.0)
    } else {
        (0.0, (-surplus).min(300.0 / 60.0))
    };
    let net = load + ev + charge - pv - discharge; // >0: import needed
    let (import, export) = if net > 0.0 {
        (net / 0.97, 0.0)
    } else {
        (0.0, -net * 0.97)
    };
    let mut m = [0.0; METERS];
    m[..10].fill(pv / 10.0);
    m[10] = charge / 2.0;
    m[11] = charge / 2.0;
    m[12] = discharge / 2.0;
    m[13] = discharge / 2.0;
    m[14..44].fill(load / 30.0);
    m[44..49].fill(ev / 5.0);
    m[49] = import - export; // one bidirectional grid meter: + import / - export
    m
}

/// Streams `minutes` of 50-meter records through the accountant.
fn run(minutes: usize) -> (Totals, usize) {
    let o = options();
    let start = Utc.with_ymd_and_hms(2025, 12, 31, 16, 0, 0).unwrap();
    let mut acc = Accountant::new(o);
    let mut rec = IntervalRecord {
        start,
        ..Default::default()
    };
    let mut records = 0usize;
    for k in 0..minutes {
        let m = minute(k);
        records += METERS;
        for (i, e) in m.iter().enumerate() {
            match i {
                0..=9 => rec.pv_kwh += e,
                10 | 11 => rec.battery_charge_kwh += e,
                12 | 13 => rec.battery_discharge_kwh += e,
                14..=43 => rec.load_kwh += e,
                44..=48 => rec.ev_kwh += e,
                _ if *e >= 0.0 => rec.grid_import_kwh += e,
                _ => rec.grid_export_kwh -= e,
            }
        }
        if (k + 1) % 15 == 0 {
            black_box(acc.push(&rec, false));
            rec = IntervalRecord {
                start: rec.start + Duration::minutes(15),
                ..Default::default()
            };
        }
    }
    (acc.totals(), records)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let (totals, records) = run(365 * 1440);
    println!(
        "a year of 1-minute records, {METERS} meters: {records} records in {:.2} s, peak RSS {:.1} MB; PV {:.0} MWh, import {:.0} MWh, location-based {:.0} t",
        t.elapsed().as_secs_f64(),
        peak_rss_mb(),
        totals.pv_kwh / 1000.0,
        totals.grid_import_kwh / 1000.0,
        totals.location_kg / 1000.0
    );
    let mut g = c.benchmark_group("carbon");
    g.sample_size(10);
    g.bench_function("30 days of 1-minute records, 50 meters", |b| {
        b.iter(|| black_box(run(30 * 1440)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
