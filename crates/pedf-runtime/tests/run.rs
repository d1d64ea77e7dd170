//! `run` end to end against simulated devices: Modbus (SunSpec PV inverter and battery, a
//! template meter) and MQTT (a charger and a DC load through a real Mosquitto). The controller
//! writes setpoints through safe control, the store fills, and shutdown leaves every device in
//! its safe state.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use pedf_runtime::run::{run, RunConfig};
use pedf_sim::bank::{Bank, SimServer};
use pedf_sim::broker::Mosquitto;
use pedf_sim::mqtt::{SimKind, SimMqttDevice};
use pedf_sim::sunspec_image::{self as img, SunSpecImage};
use pedf_store::Store;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_simulated_devices_and_stops_safely() {
    let dir = std::env::temp_dir().join(format!("pedf-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    for t in ["pedf-sim-meter", "pedf-sim-dc-charger", "pedf-sim-dc-load"] {
        std::fs::copy(
            format!("{ROOT}/config/devices/templates/{t}.toml"),
            dir.join(format!("templates/{t}.toml")),
        )
        .unwrap();
    }
    // Simulated park: PV 300 kW, battery at 60 %, grid meter reading 100 kW import.
    let mut pv = Bank::default();
    let pv_img = SunSpecImage::new(40000)
        .model(1, &img::common("sim", "PV", "1"))
        .model(103, &img::inverter(300_000.0, 1, 1_000_000))
        .model(123, &img::controls(100.0))
        .install(&mut pv);
    pv.writable.push((pv_img.addr_of(123).unwrap(), 24));
    let mut bess = Bank::default();
    let b_img = SunSpecImage::new(40000)
        .model(1, &img::common("sim", "BESS", "2"))
        .model(
            802,
            &img::battery(60.0, 0.0, 2, 1_000_000.0, 1_000_000.0, 3),
        )
        .model(124, &img::storage(1_000_000.0, 3))
        .install(&mut bess);
    let storage = b_img.addr_of(124).unwrap();
    bess.writable.push((storage, 24));
    let mut meter = Bank::default();
    let p = 100.0f32.to_bits();
    meter.input[0x2012..0x2014].copy_from_slice(&[(p >> 16) as u16, p as u16]);
    let sim = SimServer::start(BTreeMap::from([(1, pv), (2, bess), (3, meter)]))
        .await
        .unwrap();
    let broker = Mosquitto::start().expect("mosquitto");
    let charger = SimMqttDevice::start(
        "127.0.0.1",
        broker.port,
        "sim/ev-01",
        SimKind::Charger { max_kw: 60.0 },
        30.0,
        Duration::from_millis(100),
    );
    let _load = SimMqttDevice::start(
        "127.0.0.1",
        broker.port,
        "sim/hvac",
        SimKind::DcLoad { max_kw: 200.0 },
        120.0,
        Duration::from_millis(100),
    );

    let devices = format!(
        r#"
[[connection]]
id = "modbus"
kind = "tcp"
address = "{modbus}"
timeout_ms = 300

[[connection]]
id = "mqtt"
kind = "mqtt"
address = "127.0.0.1:{mqtt}"

[[device]]
id = "pv-roof-a"
capability = "pv-inverter"
asset = "pv-roof-a"
connection = "modbus"
unit_id = 1
sunspec = true
poll_ms = 200
stale_after_ms = 2000

[[device]]
id = "bess-1"
capability = "battery"
asset = "bess-1"
connection = "modbus"
unit_id = 2
sunspec = true
poll_ms = 200
stale_after_ms = 2000

[[device]]
id = "grid-meter"
capability = "meter"
asset = "grid"
connection = "modbus"
unit_id = 3
template = "pedf-sim-meter"
poll_ms = 200
stale_after_ms = 2000

[[device]]
id = "ev-01"
capability = "ev-charger"
asset = "ev-01"
connection = "mqtt"
template = "pedf-sim-dc-charger"
topic = "sim/ev-01"
stale_after_ms = 2000

[[device]]
id = "hvac"
capability = "dc-load"
asset = "hvac"
connection = "mqtt"
template = "pedf-sim-dc-load"
topic = "sim/hvac"
stale_after_ms = 2000
"#,
        modbus = sim.addr,
        mqtt = broker.port
    );
    std::fs::write(dir.join("devices.toml"), devices).unwrap();
    std::fs::write(
        dir.join("run.toml"),
        format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n"),
    )
    .unwrap();
    let cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    let summary = run(cfg, tokio::time::sleep(Duration::from_millis(3000)))
        .await
        .unwrap();
    assert!(summary.cycles >= 10, "{summary:?}");
    assert!(summary.samples > 0 && summary.setpoints > 0, "{summary:?}");

    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let t0 = Utc::now() - chrono::Duration::minutes(5);
    let pv_samples = st.samples("pv-roof-a", "power_kw", t0, Utc::now()).unwrap();
    assert!(!pv_samples.is_empty() && pv_samples.iter().all(|s| s.value == 300.0));
    assert!(st.audit_count().unwrap() > 0);
    let events = st
        .events(t0, Utc::now() + chrono::Duration::minutes(1))
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.3.contains("devices in their safe state")),
        "{events:?}"
    );
    // Shutdown left the battery at 0 kW (OutWRte = InWRte = 0) and the charger at its minimum.
    let rates = sim.with_bank(2, |b| {
        b.holding[usize::from(storage) + 10..usize::from(storage) + 12].to_vec()
    });
    assert_eq!(rates, vec![0, 0]);
    let mut ev = f64::NAN;
    for _ in 0..40 {
        ev = *charger.power_kw.lock().unwrap();
        if ev == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ev, 0.0, "charger at its minimum (0 kW for this template)");
    let _ = std::fs::remove_dir_all(&dir);
}
