//! Safe control end to end over Modbus: clamping to park limits, ramping, read-back, the
//! watchdog's safe state, and the audit trail.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use pedf_core::config::load_park;
use pedf_devices::capability::Capability;
use pedf_devices::control::{default_safe_value, park_limits, Limits, Policy, SafeControl};
use pedf_devices::device::{DeviceError, ModbusDevice};
use pedf_devices::modbus::{LinkOptions, ModbusLink};
use pedf_devices::template::{DeviceConfig, Template};
use pedf_sim_devices::bank::{Bank, SimServer};
use pedf_sim_devices::sunspec_image::{self as img, SunSpecImage};

fn config(id: &str, capability: Capability, sunspec: bool) -> DeviceConfig {
    DeviceConfig {
        id: id.into(),
        capability,
        asset: Some(id.into()),
        connection: "bus".into(),
        unit_id: 1,
        template: (!sunspec).then(|| "t".to_string()),
        sunspec,
        poll_ms: 1000,
        stale_after_ms: 3000,
        ramp_per_s: None,
        safe_value: None,
        battery_discharge_sign: None,
        meter_address: None,
        ct_ratio: None,
        pt_ratio: None,
        topic: None,
    }
}

fn link(addr: std::net::SocketAddr) -> ModbusLink {
    ModbusLink::tcp(
        addr,
        LinkOptions {
            timeout: Duration::from_millis(300),
            retries: 1,
            backoff: Duration::from_millis(10),
        },
    )
}

#[tokio::test]
async fn sunspec_battery_is_clamped_ramped_read_back_and_made_safe() {
    let park = load_park(
        "p.toml",
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/qingzhou-pedf.toml"
        ))
        .unwrap(),
    )
    .value
    .unwrap();
    let battery_id = park.batteries[0].id.clone();
    let mut bank = Bank::default();
    let image = SunSpecImage::new(40000)
        .model(1, &img::common("pedf-sim", "BAT", "B-1"))
        .model(
            802,
            &img::battery(50.0, 0.0, 2, 1_000_000.0, 1_000_000.0, 3),
        )
        .model(124, &img::storage(1_000_000.0, 3))
        .install(&mut bank);
    let storage = image.addr_of(124).unwrap();
    bank.writable.push((storage, 24));
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let mut dev = ModbusDevice::sunspec(
        config(&battery_id, Capability::Battery, true),
        link(sim.addr),
        false,
    );
    let t0 = Utc::now();
    dev.poll(t0).await.unwrap();

    let limits = park_limits(&park, &battery_id, Capability::Battery).unwrap();
    assert_eq!(
        limits,
        Limits {
            min: -1000.0,
            max: 1000.0
        }
    );
    let policy = Policy {
        capability: Capability::Battery,
        limits,
        ramp_per_s: Some(200.0),
        safe_value: default_safe_value(Capability::Battery, limits),
        command_timeout: Duration::from_secs(5),
    };
    let mut ctl = SafeControl::new(&battery_id, policy);
    // The first command has no ramp origin: only the clamp applies.
    let got = ctl
        .command(&mut dev, 1500.0, "controller", "day-ahead plan 12:00", t0)
        .await
        .unwrap();
    assert_eq!(got, 1000.0);
    let regs = sim.with_bank(1, |b| {
        b.holding[usize::from(storage) + 10..usize::from(storage) + 12].to_vec()
    });
    assert_eq!(
        regs,
        vec![1000, (-1000i16) as u16],
        "OutWRte +100.0 %, InWRte -100.0 %"
    );
    // One second later, a charge command moves at most 200 kW.
    let got = ctl
        .command(
            &mut dev,
            -800.0,
            "controller",
            "re-plan",
            t0 + chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(got, 800.0);
    // The controller goes silent: the watchdog holds the battery at 0 kW.
    let t_late = t0 + chrono::Duration::seconds(7);
    assert_eq!(
        ctl.watchdog(&mut dev, true, t_late).await.unwrap().unwrap(),
        0.0
    );
    let regs = sim.with_bank(1, |b| {
        b.holding[usize::from(storage) + 10..usize::from(storage) + 12].to_vec()
    });
    assert_eq!(regs, vec![0, 0]);
    let audit: Vec<(String, f64, Option<f64>)> = ctl
        .audit
        .iter()
        .map(|a| (a.by.clone(), a.requested, a.readback))
        .collect();
    assert_eq!(
        audit,
        [
            ("controller".to_string(), 1500.0, Some(1000.0)),
            ("controller".to_string(), -800.0, Some(800.0)),
            ("watchdog".to_string(), 0.0, Some(0.0))
        ]
    );
}

const CHARGER: &str = r#"
[template]
name = "test DC charger with a separate read-back register"
capability = "ev-charger"

[[point]]
field = "power_kw"
address = 10
type = "u16"
scale = 0.1
unit = "kW"

[setpoint]
kind = "power_kw"
address = 100
type = "u16"
scale = 0.1
unit = "kW"
min = 0
max = 60
readback_address = 101
"#;

#[tokio::test]
async fn a_setpoint_the_device_does_not_take_is_an_audited_error() {
    let mut bank = Bank::default();
    bank.writable.push((100, 1));
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let t = Template::parse("c.toml", CHARGER).unwrap();
    let mut dev = ModbusDevice::with_template(
        config("ev-01", Capability::EvCharger, false),
        t,
        link(sim.addr),
    );
    let limits = Limits {
        min: 0.0,
        max: 60.0,
    };
    let mut ctl = SafeControl::new(
        "ev-01",
        Policy {
            capability: Capability::EvCharger,
            limits,
            ramp_per_s: None,
            safe_value: 0.0,
            command_timeout: Duration::from_secs(5),
        },
    );
    let r = ctl
        .command(&mut dev, 30.0, "operator:wang", "manual", Utc::now())
        .await;
    assert_eq!(
        r,
        Err(DeviceError::Readback {
            asked: 30.0,
            readback: 0.0
        })
    );
    assert_eq!(ctl.audit[0].outcome, "asked for 30, the device reports 0");
    // Once the device mirrors the register, the same command is taken.
    let copy = sim.with_bank(1, |b| b.holding[100]);
    assert_eq!(copy, 300);
    sim.with_bank(1, |b| b.holding[101] = 300);
    assert_eq!(
        ctl.command(&mut dev, 30.0, "operator:wang", "manual", Utc::now())
            .await
            .unwrap(),
        30.0
    );
}

#[tokio::test]
async fn a_device_that_stops_answering_is_reported_by_the_watchdog() {
    let sim = SimServer::start(BTreeMap::from([(1, Bank::default())]))
        .await
        .unwrap();
    let addr = sim.addr;
    drop(sim);
    let t = Template::parse("c.toml", CHARGER).unwrap();
    let mut dev =
        ModbusDevice::with_template(config("ev-01", Capability::EvCharger, false), t, link(addr));
    let mut ctl = SafeControl::new(
        "ev-01",
        Policy {
            capability: Capability::EvCharger,
            limits: Limits {
                min: 0.0,
                max: 60.0,
            },
            ramp_per_s: None,
            safe_value: 0.0,
            command_timeout: Duration::from_secs(5),
        },
    );
    let r = ctl.watchdog(&mut dev, false, Utc::now()).await.unwrap();
    assert!(r.is_err());
    assert!(!ctl.in_safe_state(), "not safe until the device takes it");
    assert_eq!(ctl.audit[0].by, "watchdog");
    assert_eq!(ctl.audit[0].reason, "device not answering");
}

/// A device in its unit: an order is written through safe control (clamped, audited) without
/// the caller waiting, and when the controller stops beating the heartbeat the unit's own
/// watchdog puts the device into its safe state. The EMS clock runs ten times faster than real
/// time from a fixed instant; every state is waited for with a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_writes_orders_and_goes_safe_when_the_controller_stops() {
    use pedf_devices::unit::{Heartbeat, Order, ProcessImage, Unit};
    let mut bank = Bank::default();
    bank.writable.push((100, 1));
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let t = Template::parse("c.toml", &CHARGER.replace("readback_address = 101\n", "")).unwrap();
    let mut cfg = config("ev-01", Capability::EvCharger, false);
    cfg.poll_ms = 50;
    let time = pedf_core::time::TimeSource::scaled(
        chrono::DateTime::parse_from_rfc3339("2026-06-21T02:00:00Z")
            .unwrap()
            .to_utc(),
        10.0,
    );
    let heartbeat = Heartbeat::new(time.now());
    let ctl = SafeControl::new(
        "ev-01",
        Policy {
            capability: Capability::EvCharger,
            limits: Limits {
                min: 0.0,
                max: 60.0,
            },
            ramp_per_s: None,
            safe_value: 0.0,
            command_timeout: Duration::from_secs(5),
        },
    );
    let image = ProcessImage::default();
    let mut unit = Unit::spawn(
        "ev-01",
        ModbusDevice::with_template(cfg, t, link(sim.addr)),
        Some(ctl),
        image.clone(),
        heartbeat.clone(),
        time,
    );
    unit.order(Order {
        value: 75.0,
        by: "controller".into(),
        reason: "automatic cycle".into(),
    });
    let register = || sim.with_bank(1, |b| b.holding[100]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while register() != 600 {
        heartbeat.beat(time.now());
        assert!(std::time::Instant::now() < deadline, "order never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The unit audits a write once the device has answered it: wait for the entry too.
    let mut audit = unit.take_audit();
    while audit.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never audited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        audit.extend(unit.take_audit());
    }
    assert_eq!(
        (
            audit[0].requested,
            audit[0].written,
            audit[0].outcome.as_str()
        ),
        (75.0, Some(60.0), "ok"),
        "clamped to the charger's 60 kW"
    );
    assert!(image.get("ev-01").is_some_and(|s| s.last_ok.is_some()));
    // The controller stops: no more beats. The unit's watchdog takes the charger to 0 kW.
    while register() != 0 {
        assert!(std::time::Instant::now() < deadline, "watchdog never acted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    audit.extend(unit.take_audit());
    while audit.last().is_none_or(|a| a.by != "watchdog") {
        assert!(
            std::time::Instant::now() < deadline,
            "the watchdog's write never audited: {audit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        audit.extend(unit.take_audit());
    }
    let last = audit.last().unwrap();
    assert_eq!(last.by, "watchdog");
    assert!(last.reason.starts_with("controller silent for"), "{last:?}");
    // Stopping writes the safe value once more and reports it.
    assert_eq!(unit.stop("shutdown").await, Some(Ok(0.0)));
    assert_eq!(unit.take_audit().last().unwrap().reason, "shutdown");
}
