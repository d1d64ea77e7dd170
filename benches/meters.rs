//! Billing meters over DL/T 645-2007 (issue 23): 50 simulated meters (pedf-sim-devices'
//! `dlt645::SimDlt645Meter`, written apart from the reader), every register pedf reads
//! (`dlt645::ITEMS`, ten a meter) in one read cycle:
//! - all 50 on one bus behind one TCP gateway (one request on the line at a time, as RS-485
//!   carries them): the cycle's time is pedf's and the loopback's share of a real bus's;
//! - each behind its own gateway, polled concurrently.
//!
//! On a real line the bytes dominate: see the closing note of issue 23 for the 2400 Bd and
//! 9600 Bd figures computed from the frame sizes.
//!
//! Run: `cargo bench --bench meters` (about half a minute).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_devices::dlt645::{Address, Dlt645Device, Dlt645Link, Endpoint, ITEMS};
use pedf_sim::dlt645::SimDlt645Meter;

const METERS: usize = 50;

fn digits(i: usize) -> String {
    format!("{:012}", 202_600_000 + i)
}

fn devices(links: &[Arc<Dlt645Link>]) -> Vec<Dlt645Device> {
    (0..METERS)
        .map(|i| {
            Dlt645Device::new(
                &format!("meter-{i:02}"),
                Address::parse(&digits(i)).unwrap(),
                (1.0, 1.0),
                links[i % links.len()].clone(),
                Duration::from_secs(60),
                Duration::from_secs(180),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = chrono::DateTime::from_timestamp(1_782_007_200, 0).unwrap();
    let all: Vec<String> = (0..METERS).map(digits).collect();
    let (_bus, _own, mut on_bus, mut own) = rt.block_on(async {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let bus = SimDlt645Meter::start_bus("127.0.0.1:0".parse().unwrap(), &refs)
            .await
            .unwrap();
        let bus_link = Dlt645Link::new(Endpoint::Tcp(bus.addr), Duration::from_secs(2));
        let mut own = Vec::new();
        let mut own_links = Vec::new();
        for d in &all {
            let m = SimDlt645Meter::start("127.0.0.1:0".parse().unwrap(), d)
                .await
                .unwrap();
            own_links.push(Dlt645Link::new(
                Endpoint::Tcp(m.addr),
                Duration::from_secs(2),
            ));
            own.push(m);
        }
        let on_bus = devices(&[bus_link]);
        let own_devices = devices(&own_links);
        (bus, own, on_bus, own_devices)
    });
    let cycle = |ds: &mut Vec<Dlt645Device>| {
        rt.block_on(async {
            let polls = ds.iter_mut().map(|d| d.poll(now));
            for r in futures_util::future::join_all(polls).await {
                r.expect("a meter read");
            }
        })
    };
    cycle(&mut on_bus);
    cycle(&mut own);
    println!(
        "{METERS} DL/T 645 meters, {} registers each: one read cycle on one bus and on a gateway each (criterion below)",
        ITEMS.len()
    );
    let mut g = c.benchmark_group("dlt645");
    g.sample_size(20);
    g.bench_function("50 meters on one bus: every register, one cycle", |b| {
        b.iter(|| cycle(&mut on_bus))
    });
    g.bench_function(
        "50 meters, a gateway each: every register, one cycle",
        |b| b.iter(|| cycle(&mut own)),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
