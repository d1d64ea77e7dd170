//! The OCPP central system at a charging hub's scale (issue 22): 200 simulated OCPP chargers,
//! half 1.6J and half 2.0.1 (pedf-sim's `ocpp::SimOcppCharger`, written apart from the hub) on
//! loopback, each with a car sending meter values every 10 s; a new limit for every charger
//! set as a charging profile and confirmed by its composite schedule: the time until the last
//! is confirmed. Printed besides: the process's CPU time per round and its resident memory
//! (chargers included, so an upper bound for the central system).
//!
//! Run: `cargo bench --bench ocpp` (about half a minute).

use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;
use process::{cpu_seconds, rss_mib};

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_devices::ocpp::v16::RateUnit;
use pedf_devices::ocpp::{
    password_hash, ChargerEntry, ConnectorEntry, OcppConfig, OcppDevice, OcppHub,
};
use pedf_sim::ocpp::{SimOcppCharger, SimOcppVersion};

const CHARGERS: usize = 200;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let password = "bench-password-0123";
    let config = OcppConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        chargers: (0..CHARGERS)
            .map(|i| ChargerEntry {
                identity: format!("CP-{i:03}"),
                password_sha256: password_hash(password),
                connectors: vec![ConnectorEntry {
                    connector: 1,
                    device: format!("ev-{i:03}"),
                }],
                unit: RateUnit::W,
                safe_kw: 7.0,
            })
            .collect(),
        id_tags: vec!["DEMO-CAR".into()],
        accept_unknown_tags: false,
        heartbeat_s: 60,
        call_timeout: Duration::from_secs(10),
        limit_hold_s: 120,
        meter_interval_s: None,
        tls: None,
    };
    let rss0 = rss_mib();
    let (hub, devices, chargers): (OcppHub, Vec<OcppDevice>, Vec<SimOcppCharger>) =
        rt.block_on(async {
            let hub = OcppHub::start(config, pedf_core::time::TimeSource::wall()).unwrap();
            let url = format!("ws://{}/ocpp", hub.addr);
            let chargers: Vec<SimOcppCharger> = (0..CHARGERS)
                .map(|i| {
                    let version = if i % 2 == 0 {
                        SimOcppVersion::V16
                    } else {
                        SimOcppVersion::V201
                    };
                    let c = SimOcppCharger::start_speaking(
                        version,
                        &url,
                        &format!("CP-{i:03}"),
                        password,
                        Duration::from_secs(10),
                        1.0,
                    );
                    *c.power_kw.lock().unwrap() = 7.0;
                    c.present.store(true, std::sync::atomic::Ordering::Relaxed);
                    c
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            while (0..CHARGERS).any(|i| !hub.connected(&format!("CP-{i:03}"))) {
                assert!(Instant::now() < deadline, "not all chargers connected");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let devices = (0..CHARGERS)
                .map(|i| {
                    hub.device(&format!("ev-{i:03}"), Duration::from_secs(30))
                        .unwrap()
                })
                .collect();
            (hub, devices, chargers)
        });
    let set_all = |kw: f64| {
        rt.block_on(async {
            let all = devices.iter().map(|d| d.set_limit(kw));
            for r in futures_util::future::join_all(all).await {
                let got = r.expect("a limit confirmed");
                assert!((got - kw).abs() < 1e-6, "{got} for {kw}");
            }
        })
    };
    // Every charger booted and in a transaction: its safe default taken after its boot
    // (a limit set between its connection and its boot is cleared with the defaults it held,
    // and sent again at the next ask).
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while chargers
            .iter()
            .any(|c| *c.command_kw.lock().unwrap() != Some(7.0))
        {
            assert!(
                Instant::now() < deadline,
                "not every charger took its safe default"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    set_all(6.0); // every charger in a transaction with a profile of its own
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let rounds: u32 = 20;
    for k in 0..rounds {
        set_all(if k.is_multiple_of(2) { 5.0 } else { 6.0 });
    }
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64() / f64::from(rounds),
        (cpu_seconds() - cpu0) / f64::from(rounds),
    );
    println!(
        "{CHARGERS} OCPP chargers (half 1.6J, half 2.0.1): a new limit for all confirmed in {:.1} ms, {:.1} ms CPU per round; resident memory {:.1} MiB ({:.1} MiB before the hub and chargers)",
        wall * 1e3,
        cpu * 1e3,
        rss_mib(),
        rss0
    );
    let mut g = c.benchmark_group("ocpp");
    g.sample_size(20);
    let mut k = 0u32;
    g.bench_function(
        "200 chargers (1.6J and 2.0.1): a new limit for all, confirmed",
        |b| {
            b.iter(|| {
                k += 1;
                set_all(if k.is_multiple_of(2) { 5.0 } else { 6.0 })
            })
        },
    );
    g.finish();
    hub.stop();
    drop(chargers);
}

criterion_group!(benches, bench);
criterion_main!(benches);
