//! The example device set of the reference park: it loads cleanly, and every device in it is
//! read end to end from pedf-sim (Modbus TCP on loopback, MQTT through a real Mosquitto).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use pedf_devices::capability::{BatteryView, ChargerView, DcLoadView, MeterView, PvView};
use pedf_devices::device::ModbusDevice;
use pedf_devices::modbus::{LinkOptions, ModbusLink};
use pedf_devices::mqtt::{MqttDeviceSpec, MqttHub};
use pedf_devices::template::load_device_set;
use pedf_sim_devices::bank::{Bank, SimServer};
use pedf_sim_devices::broker::Mosquitto;
use pedf_sim_devices::mqtt::{SimKind, SimMqttDevice};
use pedf_sim_devices::sunspec_image::{self as img, SunSpecImage};

const SET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/devices/qingzhou-pedf.toml"
);

#[test]
fn the_example_set_loads() {
    let set = load_device_set(std::path::Path::new(SET)).unwrap();
    assert_eq!(set.devices.devices.len(), 5);
    assert!(set.templates.contains_key("pedf-sim-meter"));
    let kinds: Vec<&str> = set
        .devices
        .devices
        .iter()
        .map(|d| d.capability.name())
        .collect();
    assert_eq!(
        kinds,
        ["pv-inverter", "battery", "meter", "ev-charger", "dc-load"]
    );
}

#[test]
fn a_broken_copy_is_located() {
    let dir = std::env::temp_dir().join(format!("pedf-devset-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    for t in ["pedf-sim-meter", "pedf-sim-dc-charger", "pedf-sim-dc-load"] {
        let from = std::path::Path::new(SET)
            .parent()
            .unwrap()
            .join(format!("templates/{t}.toml"));
        std::fs::copy(from, dir.join(format!("templates/{t}.toml"))).unwrap();
    }
    let text = std::fs::read_to_string(SET)
        .unwrap()
        .replace("topic = \"pedf-sim/hvac\"\n", "")
        .replace(
            "connection = \"sim-modbus\"\nunit_id = 3",
            "connection = \"sim-mqtt\"\nunit_id = 3",
        );
    std::fs::write(dir.join("devices.toml"), text).unwrap();
    let e = load_device_set(&dir.join("devices.toml")).unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
    assert_eq!(
        msgs,
        [
            "device[2] `grid-meter`: a Modbus device on MQTT connection `sim-mqtt`",
            "device[4] `hvac`: an MQTT device needs `topic`"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_device_is_read_from_the_simulator() {
    let set = load_device_set(std::path::Path::new(SET)).unwrap();
    // The simulator: SunSpec inverter (unit 1), SunSpec battery (2), template meter (3).
    let mut pv = Bank::default();
    SunSpecImage::new(40000)
        .model(1, &img::common("pedf-sim", "PV", "1"))
        .model(103, &img::inverter(812_000.0, 2, 5_000_000))
        .model(123, &img::controls(100.0))
        .install(&mut pv);
    let mut bess = Bank::default();
    SunSpecImage::new(40000)
        .model(1, &img::common("pedf-sim", "BESS", "2"))
        .model(
            802,
            &img::battery(55.0, 300_000.0, 2, 1_000_000.0, 1_000_000.0, 3),
        )
        .model(124, &img::storage(1_000_000.0, 3))
        .install(&mut bess);
    let mut meter = Bank::default();
    let p = (-215.5f32).to_bits();
    meter.input[0x2012..0x2014].copy_from_slice(&[(p >> 16) as u16, p as u16]);
    meter.set(0x4000, &[0, 12_345]);
    meter.set(0x4002, &[0, 678]);
    meter.set(0x4004, &[0]);
    let sim = SimServer::start(BTreeMap::from([(1, pv), (2, bess), (3, meter)]))
        .await
        .unwrap();
    let mut broker = Mosquitto::start().expect("mosquitto");
    let link = ModbusLink::tcp(sim.addr, LinkOptions::default());
    let now = Utc::now();
    let mut modbus = Vec::new();
    let mut mqtt = Vec::new();
    for d in &set.devices.devices {
        match (&d.template, d.sunspec) {
            (_, true) => modbus.push(ModbusDevice::sunspec(d.clone(), link.clone(), false)),
            (Some(t), false) if set.templates[t].mqtt.is_none() => modbus.push(
                ModbusDevice::with_template(d.clone(), set.templates[t].clone(), link.clone()),
            ),
            (Some(t), false) => mqtt.push(
                MqttDeviceSpec::from_template(
                    &d.id,
                    &set.templates[t],
                    d.topic.as_deref().unwrap(),
                    Duration::from_millis(d.stale_after_ms),
                )
                .unwrap(),
            ),
            _ => unreachable!(),
        }
    }
    for dev in &mut modbus {
        dev.poll(now)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", dev.config.id));
    }
    assert_eq!(modbus[0].state.pv_power(now).unwrap().value, 812.0);
    assert_eq!(modbus[1].state.soc_pct(now).unwrap().value, 55.0);
    assert_eq!(modbus[1].state.battery_power(now).unwrap().value, 300.0);
    assert_eq!(modbus[2].state.grid_power(now).unwrap().value, -215.5);
    assert_eq!(modbus[2].state.import_kwh(now).unwrap().value, 12_345.0);

    let hub = MqttHub::start(
        "127.0.0.1",
        broker.port,
        "pedf-ems-example",
        "pedf/qingzhou-pedf/status",
        mqtt,
    );
    let _c = SimMqttDevice::start(
        "127.0.0.1",
        broker.port,
        "pedf-sim/ev-01",
        SimKind::Charger { max_kw: 60.0 },
        42.0,
        Duration::from_millis(100),
    );
    let _l = SimMqttDevice::start(
        "127.0.0.1",
        broker.port,
        "pedf-sim/hvac",
        SimKind::DcLoad { max_kw: 200.0 },
        120.0,
        Duration::from_millis(100),
    );
    for _ in 0..200 {
        let t = Utc::now();
        let c = hub
            .state("ev-01")
            .and_then(|s| s.charger_power(t))
            .map(|r| r.value);
        let l = hub
            .state("hvac")
            .and_then(|s| s.load_power(t))
            .map(|r| r.value);
        if c == Some(42.0) && l == Some(120.0) {
            broker.stop();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "MQTT devices not read: {:?} {:?}",
        hub.state("ev-01"),
        hub.state("hvac")
    );
}
