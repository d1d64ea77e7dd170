//! Live stream to 100 concurrent clients.
//!
//! - `fanout_100_clients`: from the runtime publishing a new park state to all 100 SSE
//!   clients holding it (server work only).
//! - `measurement_to_100_clients`: end to end on the simulated park: a meter value changes in
//!   the simulated device, the EMS polls it (200 ms), runs its cycle (200 ms) and all 100
//!   clients see the new value.
//!
//! Afterwards the process's resident memory is printed: EMS runtime, server, simulated park
//! (Modbus server, MQTT devices) and the 100 clients all in this one process, so it is an
//! upper bound of what `pedf run` needs for the reference park.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_runtime::live::Live;
use pedf_server::AppState;
use tokio::sync::watch;

const CLIENTS: usize = 100;

/// Connects `CLIENTS` stream clients; each keeps the last value `extract` finds in an event.
async fn clients(base: &str, token: &str, extract: fn(&str) -> Option<u64>) -> Arc<Vec<AtomicU64>> {
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for i in 0..CLIENTS {
        let mut resp = http
            .get(format!("{base}/api/v1/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    if let Some(v) = extract(&event) {
                        seen[i].store(v, Ordering::Release);
                    }
                }
            }
        });
    }
    seen
}

async fn all_see(seen: &[AtomicU64], v: u64) {
    while seen.iter().any(|s| s.load(Ordering::Acquire) != v) {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn number_after(event: &str, key: &str) -> Option<u64> {
    let i = event.find(key)? + key.len();
    let digits: String = event[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    digits.parse::<f64>().ok().map(|x| x.abs() as u64)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (live_tx, base, token, seen) = rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("pedf-bench-fanout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{}/config/qingzhou-pedf.toml", common::ROOT);
        let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
            .value
            .unwrap();
        let mut store = pedf_store::Store::open(&dir.join("s.sqlite")).unwrap();
        let (token, _) = pedf_server::auth::create_token(
            &mut store,
            "bench",
            pedf_server::Role::Viewer,
            chrono::DateTime::UNIX_EPOCH,
        )
        .unwrap();
        let (live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
        let (mode_tx, _) = watch::channel(pedf_core::live::Mode::Automatic);
        let (_stop_tx, stop_rx) = watch::channel(false);
        std::mem::forget(_stop_tx);
        let state = AppState::new(park, live_rx, mode_tx, store, None, stop_rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(pedf_server::serve(listener, state, stop_rx));
        let seen = clients(&base, &token, |e| number_after(e, "\"cycle\":")).await;
        (live_tx, base, token, seen)
    });
    let _ = (&base, &token);
    // A realistic frame: the reference park's device list and figures.
    let mut frame = Live {
        park_id: "qingzhou-pedf".into(),
        ..Live::default()
    };
    for i in 0..12 {
        frame.devices.push(pedf_runtime::live::DeviceLive {
            id: format!("device-{i}"),
            capability: "meter".into(),
            quality: "good".into(),
            last_ok: Some(chrono::Utc::now()),
            error: None,
        });
    }
    let mut n = 1u64;
    c.bench_function("fanout_100_clients", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let mut l = frame.clone();
            l.cycle = n;
            live_tx.send_replace(Arc::new(l));
            let seen = seen.clone();
            async move { all_see(&seen, n).await }
        })
    });
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ems, seen) = rt.block_on(async {
        let ems = common::Ems::start("bench").await;
        let seen = clients(&ems.base, &ems.viewer, |e| number_after(e, "\"grid_kw\":")).await;
        (ems, seen)
    });
    let mut g = c.benchmark_group("stream");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(20));
    let counter = Arc::new(AtomicU64::new(100));
    let worst_ns = Arc::new(AtomicU64::new(0));
    g.bench_function("measurement_to_100_clients", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let seen = seen.clone();
            let counter = counter.clone();
            let worst_ns = worst_ns.clone();
            let ems = &ems;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let v = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let t = Instant::now();
                    ems.sim.set_grid_kw(v as f64);
                    all_see(&seen, v).await;
                    let d = t.elapsed();
                    worst_ns.fetch_max(d.as_nanos() as u64, Ordering::Relaxed);
                    total += d;
                }
                total
            }
        });
    });
    g.finish();
    let worst = Duration::from_nanos(worst_ns.load(Ordering::Relaxed));
    eprintln!(
        "stream: worst measurement-to-all-clients latency {worst:?}; resident memory of this process (EMS + server + simulated park + {CLIENTS} clients): {:.1} MB",
        rss_mb()
    );
    rt.block_on(async move {
        ems.stop().await;
    });
}

criterion_group!(benches, fanout, end_to_end);
criterion_main!(benches);
