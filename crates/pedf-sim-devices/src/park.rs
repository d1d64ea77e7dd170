//! A small simulated park on loopback for end-to-end runs: a SunSpec PV inverter and battery
//! and a template grid meter on one Modbus TCP server, an EV charger and a DC load over MQTT
//! through a real Mosquitto, and the device list (`devices.toml`) that points `pedf run` at
//! them. Values are set by the caller (no physics yet: issue 7 drives them from the park
//! model); what the EMS writes lands in the registers and MQTT devices as a real device's would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bank::{Bank, SimServer};
use crate::broker::Mosquitto;
use crate::mqtt::{SimKind, SimMqttDevice};
use crate::sunspec_image::{self as img, SunSpecImage};

/// The PV inverter's Modbus unit id (all devices share one server).
pub const PV_UNIT: u8 = 1;
/// The first battery's Modbus unit id.
pub const BATTERY_UNIT: u8 = 2;
/// The grid meter's Modbus unit id.
pub const METER_UNIT: u8 = 3;

/// The running simulated park.
pub struct SimPark {
    /// The Modbus TCP server with the PV, battery and meter banks.
    pub modbus: SimServer,
    /// The MQTT broker the charger and the load talk through.
    pub broker: Mosquitto,
    /// The EV charger (MQTT).
    pub charger: SimMqttDevice,
    /// The curtailable DC load (MQTT).
    pub load: SimMqttDevice,
    /// Address of SunSpec model 124 (storage controls) in the battery's bank.
    pub storage_addr: u16,
    /// Every battery: (Modbus unit id, device and asset id `bess-N`); the first is
    /// `BATTERY_UNIT` / `bess-1`, further ones from unit 4 on. All share `storage_addr`.
    pub batteries: Vec<(u8, String)>,
    /// Address of SunSpec model 103 (inverter) in the PV bank.
    pub inverter_addr: u16,
    /// The device list written for `pedf run`.
    pub devices_file: PathBuf,
}

/// Where the template meter keeps its grid power (f32, input registers).
const METER_POWER: usize = 0x2012;

impl SimPark {
    /// Starts the park: PV `pv_kw`, battery at `soc_pct`, grid meter `grid_kw`, and writes the
    /// device list (with copies of the templates it needs, from `templates_dir`) into `dir`.
    pub async fn start(
        dir: &Path,
        templates_dir: &Path,
        pv_kw: f64,
        soc_pct: f64,
        grid_kw: f64,
    ) -> Result<SimPark, String> {
        Self::start_with_batteries(dir, templates_dir, pv_kw, &[soc_pct], grid_kw).await
    }

    /// As [`SimPark::start`], with one SunSpec battery per entry of `socs_pct` (`bess-1`,
    /// `bess-2`, ...), each rated 1 MW both ways.
    pub async fn start_with_batteries(
        dir: &Path,
        templates_dir: &Path,
        pv_kw: f64,
        socs_pct: &[f64],
        grid_kw: f64,
    ) -> Result<SimPark, String> {
        std::fs::create_dir_all(dir.join("templates")).map_err(|e| e.to_string())?;
        for t in ["pedf-sim-meter", "pedf-sim-dc-charger", "pedf-sim-dc-load"] {
            std::fs::copy(
                templates_dir.join(format!("{t}.toml")),
                dir.join(format!("templates/{t}.toml")),
            )
            .map_err(|e| format!("{}: {e}", templates_dir.join(t).display()))?;
        }
        let mut pv = Bank::default();
        let pv_img = SunSpecImage::new(40000)
            .model(1, &img::common("pedf-sim", "PV", "1"))
            .model(103, &img::inverter(pv_kw * 1000.0, 1, 1_000_000))
            .model(123, &img::controls(100.0))
            .install(&mut pv);
        pv.writable.push((pv_img.addr_of(123).unwrap_or(0), 24));
        let inverter_addr = pv_img.addr_of(103).unwrap_or(0);
        let mut banks = BTreeMap::new();
        let mut batteries = Vec::new();
        let mut storage_addr = 0;
        for (i, soc_pct) in socs_pct.iter().enumerate() {
            let mut bess = Bank::default();
            let b_img = SunSpecImage::new(40000)
                .model(1, &img::common("pedf-sim", "BESS", &format!("{}", 2 + i)))
                .model(
                    802,
                    &img::battery(*soc_pct, 0.0, 2, 1_000_000.0, 1_000_000.0, 3),
                )
                .model(124, &img::storage(1_000_000.0, 3))
                .install(&mut bess);
            storage_addr = b_img.addr_of(124).unwrap_or(0);
            bess.writable.push((storage_addr, 24));
            let unit = if i == 0 { BATTERY_UNIT } else { 3 + i as u8 };
            banks.insert(unit, bess);
            batteries.push((unit, format!("bess-{}", i + 1)));
        }
        let mut meter = Bank::default();
        let p = (grid_kw as f32).to_bits();
        meter.input[METER_POWER..METER_POWER + 2].copy_from_slice(&[(p >> 16) as u16, p as u16]);
        banks.insert(PV_UNIT, pv);
        banks.insert(METER_UNIT, meter);
        let modbus = SimServer::start(banks)
            .await
            .map_err(|e| format!("simulated Modbus server: {e}"))?;
        let broker = Mosquitto::start()?;
        let charger = SimMqttDevice::start(
            "127.0.0.1",
            broker.port,
            "sim/ev-01",
            SimKind::Charger { max_kw: 60.0 },
            30.0,
            Duration::from_millis(100),
        );
        let load = SimMqttDevice::start(
            "127.0.0.1",
            broker.port,
            "sim/hvac",
            SimKind::DcLoad { max_kw: 200.0 },
            120.0,
            Duration::from_millis(100),
        );
        let devices_file = dir.join("devices.toml");
        std::fs::write(
            &devices_file,
            devices_toml(&modbus.addr.to_string(), broker.port, &batteries),
        )
        .map_err(|e| format!("{}: {e}", devices_file.display()))?;
        Ok(SimPark {
            modbus,
            broker,
            charger,
            load,
            storage_addr,
            batteries,
            inverter_addr,
            devices_file,
        })
    }

    /// Sets the grid meter's power (+import/-export), kW.
    pub fn set_grid_kw(&self, kw: f64) {
        let p = (kw as f32).to_bits();
        self.modbus.with_bank(METER_UNIT, |b| {
            b.input[METER_POWER..METER_POWER + 2].copy_from_slice(&[(p >> 16) as u16, p as u16]);
        });
    }
}

fn devices_toml(modbus: &str, mqtt_port: u16, batteries: &[(u8, String)]) -> String {
    let mut more = String::new();
    for (unit, id) in batteries.iter().skip(1) {
        more.push_str(&format!(
            "\n[[device]]\nid = \"{id}\"\ncapability = \"battery\"\nasset = \"{id}\"\nconnection = \"modbus\"\nunit_id = {unit}\nsunspec = true\npoll_ms = 200\nstale_after_ms = 2000\n"
        ));
    }
    let text = format!(
        r#"# Written by pedf-sim: the simulated park's devices on loopback.
[[connection]]
id = "modbus"
kind = "tcp"
address = "{modbus}"
timeout_ms = 300

[[connection]]
id = "mqtt"
kind = "mqtt"
address = "127.0.0.1:{mqtt_port}"

[[device]]
id = "pv-roof-a"
capability = "pv-inverter"
asset = "pv-roof-a"
connection = "modbus"
unit_id = {PV_UNIT}
sunspec = true
poll_ms = 200
stale_after_ms = 2000

[[device]]
id = "bess-1"
capability = "battery"
asset = "bess-1"
connection = "modbus"
unit_id = {BATTERY_UNIT}
sunspec = true
poll_ms = 200
stale_after_ms = 2000

[[device]]
id = "grid-meter"
capability = "meter"
asset = "grid"
connection = "modbus"
unit_id = {METER_UNIT}
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
"#
    );
    text + &more
}
