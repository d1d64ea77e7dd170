//! Device-layer benchmarks (issue 4):
//! - 100 simulated Modbus TCP devices of 60 registers each, each on its own connection,
//!   polled concurrently: the time of one full cycle, and the CPU time per cycle (client and
//!   simulated servers together, so an upper bound for the EMS side) as a share of one core at
//!   one cycle per second;
//! - MQTT ingest through Mosquitto: 100,000 small JSON messages at QoS 0 decoded into device
//!   states, messages per second.
//!
//! Run: `cargo bench --bench devices` (about 1 minute; needs mosquitto, see scripts/setup).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
#[path = "support/process.rs"]
mod process;
use process::cpu_seconds;

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_devices::capability::Capability;
use pedf_devices::device::ModbusDevice;
use pedf_devices::modbus::{LinkOptions, ModbusLink};
use pedf_devices::mqtt::{MqttDeviceSpec, MqttHub};
use pedf_devices::template::{DeviceConfig, Template};
use pedf_sim::bank::{Bank, SimServer};
use pedf_sim::broker::Mosquitto;
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// Three fields spread over 60 registers (one merged read of 60).
const TEMPLATE: &str = r#"
[template]
name = "bench meter, 60 registers"
capability = "meter"

[[point]]
field = "power_kw"
address = 0
type = "f32"
unit = "kW"

[[point]]
field = "import_kwh"
address = 16
type = "u32"
scale_register = 59
unit = "kWh"

[[point]]
field = "export_kwh"
address = 32
type = "u32"
scale_register = 59
unit = "kWh"

[[point]]
field = "power_kw"
address = 48
type = "f32"
unit = "kW"
"#;

fn config(i: usize) -> DeviceConfig {
    DeviceConfig {
        id: format!("m{i}"),
        capability: Capability::Meter,
        asset: None,
        connection: format!("c{i}"),
        unit_id: 1,
        template: Some("bench".into()),
        sunspec: false,
        poll_ms: 1000,
        stale_after_ms: 5000,
        ramp_per_s: None,
        safe_value: None,
        battery_discharge_sign: None,
        meter_address: None,
        ct_ratio: None,
        pt_ratio: None,
        topic: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The duplicate power_kw point is refused by the template checks; keep three points.
    let text = TEMPLATE
        .rsplit_once("[[point]]\nfield = \"power_kw\"\naddress = 48")
        .map(|(a, _)| a.to_string())
        .unwrap();
    let template = Template::parse("bench.toml", &text).unwrap();
    let (servers, mut devices) = rt.block_on(async {
        let mut servers = Vec::new();
        let mut devices = Vec::new();
        for i in 0..100 {
            let mut bank = Bank::default();
            bank.set(59, &[0]);
            let s = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
            let link = ModbusLink::tcp(s.addr, LinkOptions::default());
            devices.push(ModbusDevice::with_template(
                config(i),
                template.clone(),
                link,
            ));
            servers.push(s);
        }
        (servers, devices)
    });
    let cycle = |devices: &mut Vec<ModbusDevice>| {
        let taken = std::mem::take(devices);
        *devices = rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, mut d) in taken.into_iter().enumerate() {
                set.spawn(async move {
                    d.poll(Utc::now()).await.expect("poll");
                    (i, d)
                });
            }
            let mut out: Vec<(usize, ModbusDevice)> = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
            out.sort_by_key(|(i, _)| *i);
            out.into_iter().map(|(_, d)| d).collect()
        });
    };
    cycle(&mut devices); // connect
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let n = 200;
    for _ in 0..n {
        cycle(&mut devices);
    }
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64() / f64::from(n),
        (cpu_seconds() - cpu0) / f64::from(n),
    );
    println!("100 Modbus devices x 60 registers: {:.2} ms per full cycle, {:.2} ms CPU per cycle ({:.2} % of one core at 1 Hz, servers included)", wall * 1e3, cpu * 1e3, cpu * 100.0);
    let mut g = c.benchmark_group("modbus");
    g.sample_size(30);
    g.bench_function("poll 100 devices x 60 registers, one cycle", |b| {
        b.iter(|| cycle(&mut devices))
    });
    g.finish();
    drop(servers);

    // MQTT ingest.
    let broker = Mosquitto::start().expect("mosquitto (scripts/setup installs it)");
    let template = Template::parse(
        "c.toml",
        "[template]\nname = \"c\"\ncapability = \"ev-charger\"\n\n[mqtt]\nstate_topic = \"{prefix}/state\"\n\n[[mqtt.field]]\nfield = \"power_kw\"\nkey = \"p\"\nunit = \"kW\"\n",
    )
    .unwrap();
    let specs: Vec<MqttDeviceSpec> = (0..20)
        .map(|i| {
            MqttDeviceSpec::from_template(
                &format!("ev-{i}"),
                &template,
                &format!("b/ev-{i}"),
                Duration::from_secs(5),
            )
            .unwrap()
        })
        .collect();
    let rate = rt.block_on(async {
        let hub = MqttHub::start("127.0.0.1", broker.port, "bench-ems", "bench/status", specs);
        while !hub.status().connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut opts = MqttOptions::new("bench-pub", "127.0.0.1", broker.port);
        opts.set_inflight(1000);
        let (client, mut el) = AsyncClient::new(opts, 10_000);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        let total = 100_000u64;
        let topics: Vec<String> = (0..20).map(|i| format!("b/ev-{i}/state")).collect();
        let payloads: Vec<Vec<u8>> = (0..60)
            .map(|p| format!("{{\"p\":{p}}}").into_bytes())
            .collect();
        let t = Instant::now();
        for k in 0..total as usize {
            client
                .publish(
                    topics[k % 20].clone(),
                    QoS::AtMostOnce,
                    false,
                    payloads[k % 60].clone(),
                )
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while hub.status().messages < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = hub.status().messages;
        let rate = got as f64 / t.elapsed().as_secs_f64();
        hub.abort();
        (got, rate)
    });
    println!("MQTT ingest through mosquitto: {} of 100000 messages, {:.0} messages/s decoded into device states", rate.0, rate.1);
    // The same traffic to a bare rumqttc subscriber that only counts: the ceiling here.
    let bare = rt.block_on(async {
        let (sub, mut sub_el) = AsyncClient::new(
            MqttOptions::new("bench-bare", "127.0.0.1", broker.port),
            10_000,
        );
        sub.subscribe("b/+/state", QoS::AtLeastOnce).await.unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c2 = count.clone();
        tokio::spawn(async move {
            while let Ok(ev) = sub_el.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)) = ev {
                    c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut opts = MqttOptions::new("bench-pub2", "127.0.0.1", broker.port);
        opts.set_inflight(1000);
        let (client, mut el) = AsyncClient::new(opts, 10_000);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        let topics: Vec<String> = (0..20).map(|i| format!("b/ev-{i}/state")).collect();
        let payload = b"{\"p\":7}".to_vec();
        let t = Instant::now();
        for k in 0..100_000usize {
            client
                .publish(
                    topics[k % 20].clone(),
                    QoS::AtMostOnce,
                    false,
                    payload.clone(),
                )
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(std::sync::atomic::Ordering::Relaxed) < 100_000
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = count.load(std::sync::atomic::Ordering::Relaxed);
        (got, got as f64 / t.elapsed().as_secs_f64())
    });
    println!(
        "bare rumqttc subscriber, same traffic: {} of 100000 messages, {:.0} messages/s",
        bare.0, bare.1
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
