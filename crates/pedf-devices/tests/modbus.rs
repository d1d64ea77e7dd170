//! The Modbus path end to end over real loopback sockets: SunSpec and template devices served
//! by pedf-sim, and every fault the issue lists.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use pedf_devices::capability::{BatteryView, Capability, Field, MeterView, PvView, Quality};
use pedf_devices::device::{DeviceError, ModbusDevice};
use pedf_devices::modbus::{LinkError, LinkOptions, ModbusLink};
use pedf_devices::sunspec::SunSpecError;
use pedf_devices::template::{DeviceConfig, Table, Template};
use pedf_sim_devices::bank::{Bank, Faults, SimServer};
use pedf_sim_devices::faulty::{self, Misbehaviour};
use pedf_sim_devices::sunspec_image::{self as img, SunSpecImage};

fn config(id: &str, capability: Capability, sunspec: bool) -> DeviceConfig {
    DeviceConfig {
        id: id.into(),
        capability,
        asset: None,
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

fn fast() -> LinkOptions {
    LinkOptions {
        timeout: Duration::from_millis(200),
        retries: 1,
        backoff: Duration::from_millis(10),
    }
}

fn inverter_bank() -> (Bank, SunSpecImage) {
    let mut bank = Bank::default();
    let image = SunSpecImage::new(40000)
        .model(1, &img::common("pedf-sim", "PV-100K", "INV-0001"))
        .model(103, &img::inverter(45_000.0, 1, 123_456_000))
        .model(123, &img::controls(100.0))
        .install(&mut bank);
    let controls = image.addr_of(123).unwrap();
    bank.writable.push((controls, 24));
    (bank, image)
}

#[tokio::test]
async fn sunspec_inverter_is_read_and_limited() {
    let (bank, _) = inverter_bank();
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let link = ModbusLink::tcp(sim.addr, fast());
    let mut dev = ModbusDevice::sunspec(
        config("pv-roof-a", Capability::PvInverter, true),
        link,
        false,
    );
    let now = Utc::now();
    dev.poll(now).await.unwrap();
    let ids: Vec<u16> = dev.models().unwrap().iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 103, 123]);
    assert_eq!(dev.state.pv_power(now).unwrap().value, 45.0);
    assert_eq!(dev.state.pv_energy_kwh(now).unwrap().value, 123_456.0);
    assert_eq!(dev.state.power_limit_pct(now).unwrap().value, 100.0);
    let back = dev.write_setpoint(60.0).await.unwrap();
    assert_eq!(back, 60.0);
    let writes = sim.with_bank(1, |b| b.writes.clone());
    assert_eq!(writes.len(), 2, "limit then enable: {writes:?}");
    assert_eq!(writes[0].1, vec![600]);
    assert_eq!(writes[1].1, vec![1]);
}

#[tokio::test]
async fn sunspec_battery_at_50000_and_meter_at_0_with_sign_conventions() {
    let mut battery = Bank::default();
    SunSpecImage::new(50000)
        .model(1, &img::common("pedf-sim", "BAT-2MWH", "BAT-0001"))
        .model(
            802,
            &img::battery(63.5, -250_000.0, 2, 1_000_000.0, 1_000_000.0, 3),
        )
        .install(&mut battery);
    let mut meter = Bank::default();
    SunSpecImage::new(0)
        .model(1, &img::common("pedf-sim", "M-203", "M-1"))
        .model(203, &img::meter(-120_000.0, 1, 9_000_000, 4_000_000))
        .install(&mut meter);
    let sim = SimServer::start(BTreeMap::from([(1, battery), (2, meter)]))
        .await
        .unwrap();
    let link = ModbusLink::tcp(sim.addr, fast());
    let now = Utc::now();
    // This battery reports charging as negative power: pedf's convention already.
    let mut bat = ModbusDevice::sunspec(
        config("bess", Capability::Battery, true),
        link.clone(),
        false,
    );
    bat.poll(now).await.unwrap();
    assert_eq!(bat.state.soc_pct(now).unwrap().value, 63.5);
    assert_eq!(bat.state.battery_power(now).unwrap().value, -250.0);
    assert_eq!(bat.state.max_charge_kw(now).unwrap().value, 1000.0);
    // The same registers read by a device configured as counting the other way.
    let mut inverted = ModbusDevice::sunspec(
        config("bess", Capability::Battery, true),
        link.clone(),
        true,
    );
    inverted.poll(now).await.unwrap();
    assert_eq!(inverted.state.battery_power(now).unwrap().value, 250.0);
    let mut m = ModbusDevice::sunspec(
        DeviceConfig {
            unit_id: 2,
            ..config("grid", Capability::Meter, true)
        },
        link,
        false,
    );
    m.poll(now).await.unwrap();
    assert_eq!(m.state.grid_power(now).unwrap().value, -120.0);
    assert_eq!(m.state.import_kwh(now).unwrap().value, 9000.0);
    assert_eq!(m.state.export_kwh(now).unwrap().value, 4000.0);
}

const TEMPLATE: &str = r#"
[template]
name = "test meter, word-swapped floats in the input table"
capability = "meter"
word_order = "low-first"
sentinels = true

[[point]]
field = "power_kw"
table = "input"
address = 100
type = "f32"
unit = "W"
invert = true

[[point]]
field = "import_kwh"
address = 200
type = "u32"
scale_register = 210
unit = "Wh"

[[point]]
field = "export_kwh"
address = 202
type = "u32"
scale_register = 210
unit = "Wh"
"#;

fn f32_low_first(x: f32) -> [u16; 2] {
    let b = x.to_bits();
    [b as u16, (b >> 16) as u16]
}

#[tokio::test]
async fn template_meter_decodes_word_order_scale_registers_and_garbage() {
    let mut bank = Bank::default();
    bank.input[100..102].copy_from_slice(&f32_low_first(-15_500.0));
    bank.set(200, &[0x86A0, 0x0001]); // 100000 low-first
    bank.set(202, &[5000, 0]);
    bank.set(210, &[1]); // x10
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let t = Template::parse("t.toml", TEMPLATE).unwrap();
    let mut dev = ModbusDevice::with_template(
        config("grid", Capability::Meter, false),
        t,
        ModbusLink::tcp(sim.addr, fast()),
    );
    let now = Utc::now();
    dev.poll(now).await.unwrap();
    assert_eq!(
        dev.state.grid_power(now).unwrap().value,
        15.5,
        "inverted: the device counts export positive"
    );
    assert_eq!(dev.state.import_kwh(now).unwrap().value, 1000.0);
    assert_eq!(dev.state.export_kwh(now).unwrap().value, 50.0);
    // NaN in the power register: that field goes bad, the others stay good.
    sim.with_bank(1, |b| {
        b.input[100..102].copy_from_slice(&f32_low_first(f32::NAN))
    });
    dev.poll(now).await.unwrap();
    let r = dev.state.grid_power(now).unwrap();
    assert_eq!(r.quality, Quality::Bad);
    assert_eq!(
        dev.state.bad_reason(Field::PowerKw),
        Some("power_kw is not implemented by the device")
    );
    assert_eq!(dev.state.import_kwh(now).unwrap().quality, Quality::Good);
    // An infinite float is garbage, not a sentinel.
    sim.with_bank(1, |b| {
        b.input[100..102].copy_from_slice(&f32_low_first(f32::INFINITY))
    });
    dev.poll(now).await.unwrap();
    assert_eq!(
        dev.state.bad_reason(Field::PowerKw),
        Some("power_kw: the value is not a finite number")
    );
}

#[tokio::test]
async fn a_chain_that_lies_about_lengths_is_refused() {
    let mut bank = Bank::default();
    SunSpecImage::new(40000)
        .model(1, &img::common("liar", "L", "1"))
        .model_with_len(103, 10, &img::inverter(1000.0, 0, 1))
        .install(&mut bank);
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let mut dev = ModbusDevice::sunspec(
        config("pv", Capability::PvInverter, true),
        ModbusLink::tcp(sim.addr, fast()),
        false,
    );
    let e = dev.poll(Utc::now()).await.unwrap_err();
    assert_eq!(
        e,
        DeviceError::SunSpec(SunSpecError::Chain(
            "model 103 at 40070 claims 10 registers; the model has 50".into()
        ))
    );
    assert!(dev
        .state
        .last_error
        .as_deref()
        .unwrap()
        .contains("claims 10 registers"));
    // No marker anywhere.
    let sim2 = SimServer::start(BTreeMap::from([(1, Bank::default())]))
        .await
        .unwrap();
    let mut dev = ModbusDevice::sunspec(
        config("pv", Capability::PvInverter, true),
        ModbusLink::tcp(sim2.addr, fast()),
        false,
    );
    assert_eq!(
        dev.poll(Utc::now()).await.unwrap_err(),
        DeviceError::SunSpec(SunSpecError::NotFound)
    );
}

#[tokio::test]
async fn transport_faults_are_errors_never_panics() {
    let opts = fast();
    let read = |addr| async move {
        ModbusLink::tcp(addr, opts)
            .read(1, Table::Holding, 0, 4)
            .await
    };
    assert!(matches!(
        read(faulty::refused().await.unwrap()).await,
        Err(LinkError::Connect { .. })
    ));
    assert_eq!(
        read(faulty::start(Misbehaviour::Silent).await.unwrap()).await,
        Err(LinkError::Timeout(200))
    );
    assert!(
        matches!(
            read(faulty::start(Misbehaviour::DropAfterRequest).await.unwrap()).await,
            Err(LinkError::Io(_))
        ),
        "dropped mid-request"
    );
    let wrong = read(faulty::start(Misbehaviour::WrongByteCount).await.unwrap()).await;
    assert!(
        matches!(
            wrong,
            Err(LinkError::Io(_) | LinkError::Protocol(_) | LinkError::Timeout(_))
        ),
        "{wrong:?}"
    );
    let short = read(faulty::start(Misbehaviour::ShortAnswer).await.unwrap()).await;
    assert!(matches!(short, Err(LinkError::Protocol(_))), "{short:?}");
}

#[tokio::test]
async fn exceptions_are_final_and_the_link_recovers_after_a_fault() {
    let (bank, _) = inverter_bank();
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let link = ModbusLink::tcp(sim.addr, fast());
    // Reading past the end of the table and writing a read-only register are exceptions.
    assert!(matches!(
        link.read(1, Table::Holding, 65500, 100).await,
        Err(LinkError::Exception(_))
    ));
    assert!(
        matches!(link.write(1, 40000, vec![1]).await, Err(LinkError::Exception(e)) if e.contains("IllegalDataAddress"))
    );
    assert!(
        matches!(
            link.read(9, Table::Holding, 0, 1).await,
            Err(LinkError::Exception(_))
        ),
        "unknown unit id"
    );
    // A device that stops answering: polls fail, values turn stale; then it answers again.
    let mut dev = ModbusDevice::sunspec(
        config("pv", Capability::PvInverter, true),
        link.clone(),
        false,
    );
    let t0 = Utc::now();
    dev.poll(t0).await.unwrap();
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(400)),
        exception: None,
    });
    let t1 = t0 + chrono::Duration::seconds(4);
    assert!(matches!(
        dev.poll(t1).await,
        Err(DeviceError::Link(LinkError::Timeout(200))
            | DeviceError::SunSpec(SunSpecError::Link(LinkError::Timeout(200))))
    ));
    assert_eq!(dev.state.pv_power(t1).unwrap().quality, Quality::Stale);
    sim.set_faults(Faults::default());
    // The late answers drain: polls succeed again (waited for with a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dev.poll(t1).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "polls never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dev.state.pv_power(t1).unwrap().quality, Quality::Good);
    // Exception responses from a device are reported as such.
    sim.set_faults(Faults {
        delay: None,
        exception: Some(tokio_modbus::ExceptionCode::ServerDeviceBusy),
    });
    assert!(
        matches!(link.read(1, Table::Holding, 40000, 2).await, Err(LinkError::Exception(e)) if e.contains("ServerDeviceBusy"))
    );
}

#[tokio::test]
async fn rtu_framing_over_a_gateway_and_a_missing_serial_port() {
    use pedf_devices::modbus::Endpoint;
    let (bank, _) = inverter_bank();
    let sim = SimServer::start_rtu_over_tcp(BTreeMap::from([(1, bank)]))
        .await
        .unwrap();
    let link = ModbusLink::new(Endpoint::RtuOverTcp(sim.addr), fast());
    let mut dev = ModbusDevice::sunspec(config("pv", Capability::PvInverter, true), link, false);
    let now = Utc::now();
    dev.poll(now).await.unwrap();
    assert_eq!(dev.state.pv_power(now).unwrap().value, 45.0);
    assert_eq!(dev.write_setpoint(75.0).await.unwrap(), 75.0);
    // A serial port that does not exist is a connection error naming it.
    let link = ModbusLink::new(
        Endpoint::Serial {
            path: "/dev/pedf-no-such-port".into(),
            baud: 9600,
        },
        fast(),
    );
    match link.read(1, Table::Holding, 0, 1).await {
        Err(LinkError::Connect { addr, .. }) => {
            assert_eq!(addr, "/dev/pedf-no-such-port at 9600 Bd")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_unit_keeps_the_process_image_fresh_and_flags_an_outage() {
    use pedf_devices::unit::{Heartbeat, ProcessImage, Unit};
    let (bank, _) = inverter_bank();
    let sim = SimServer::start(BTreeMap::from([(1, bank.clone())]))
        .await
        .unwrap();
    let addr = sim.addr;
    let mut cfg = config("pv", Capability::PvInverter, true);
    cfg.poll_ms = 50;
    cfg.stale_after_ms = 300;
    let time = pedf_core::time::TimeSource::wall();
    let image = ProcessImage::default();
    let mut unit = Unit::spawn(
        "pv",
        ModbusDevice::sunspec(cfg, ModbusLink::tcp(addr, fast()), false),
        None,
        image.clone(),
        Heartbeat::new(time.now()),
        time,
    );
    let quality = |image: &ProcessImage| {
        image
            .get("pv")
            .and_then(|s| s.pv_power(time.now()))
            .map(|r| r.quality)
    };
    // Each state is waited for with a deadline, never for a fixed time.
    let until = |want: Quality, what: &'static str| {
        let image = image.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while quality(&image) != Some(want) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: {:?}",
                    quality(&image)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until(Quality::Good, "first values").await;
    drop(sim); // the device goes away
    until(Quality::Stale, "stale after the device went away").await;
    assert!(image.get("pv").unwrap().last_error.is_some());
    // It comes back on the same address: the link reconnects, values are good again.
    let _sim = SimServer::start_on(addr, BTreeMap::from([(1, bank)]))
        .await
        .unwrap();
    until(Quality::Good, "good again after the device came back").await;
    assert!(unit.stop("test over").await.is_none(), "not controllable");
}

#[tokio::test]
async fn der_model_701_mppt_160_and_nameplate_120() {
    let mut bank = Bank::default();
    SunSpecImage::new(40000)
        .model(1, &img::common("pedf-sim", "DER", "D-1"))
        .model(120, &img::nameplate(500_000.0, 1))
        .model(701, &img::der_measure(310_000.0, 1, 7_000_000))
        .model(160, &img::mppt(&[160_000.0, 165_000.0], 1))
        .install(&mut bank);
    let sim = SimServer::start(BTreeMap::from([(1, bank)])).await.unwrap();
    let mut dev = ModbusDevice::sunspec(
        config("pv", Capability::PvInverter, true),
        ModbusLink::tcp(sim.addr, fast()),
        false,
    );
    let now = Utc::now();
    dev.poll(now).await.unwrap();
    assert_eq!(dev.state.pv_power(now).unwrap().value, 310.0);
    assert_eq!(dev.state.pv_energy_kwh(now).unwrap().value, 7000.0);
    assert_eq!(
        dev.state.reading(Field::DcPowerKw, now).unwrap().value,
        325.0
    );
    let m160 = dev.models().unwrap().iter().find(|m| m.id == 160).unwrap();
    assert_eq!(m160.len, 8 + 2 * 20);
    assert_eq!(dev.nameplate_kw(), Some(500.0));
}
