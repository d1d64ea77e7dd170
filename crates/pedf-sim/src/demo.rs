//! The demonstration park (`pedf demo`): the scenario's park on loopback, driven by the physics
//! in (optionally accelerated) simulated time. PV inverters, the battery and the grid meter are
//! Modbus TCP devices (SunSpec, and the template meter), the EV chargers and DC loads speak
//! MQTT; the EMS reads and commands them exactly as it would real ones.
//!
//! Each tick (200 ms of simulated time, at most [`sample_period`] of real time) the driver reads what
//! the EMS wrote (battery power in SunSpec 124, PV limits in 123, charger commands), runs the
//! physics (PV and loads of the scenario's world interpolated to the instant, battery with its
//! taper, cars that arrive, charge and leave, the deferrable load at the EMS's setpoint or on
//! its flat schedule until it gets one) and
//! writes the measurements back (103/802 power and SoC, the meter's power and counters, charger
//! and load state). The grid meter is the bus balance through the converter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use sunspec::models::{
    model103::Model103, model123::Model123, model124::Model124, model802::Model802,
};
use sunspec::Value;

use crate::bank::{Bank, SimServer};
use crate::mqtt::{SimKind, SimMqttDevice};
use crate::physics::{BatteryModel, Converter, DeferrableModel};
use crate::scenario::Scenario;
use crate::sunspec_image::{self as img, SunSpecImage};
use crate::world::World;

/// Simulated time: `speed` simulated seconds per real second from an origin. The EMS of the
/// demo reads the same source (`RunConfig::time`), so park and EMS agree on the instant.
pub type SimClock = pedf_core::time::TimeSource;

/// Where the demo's devices listen.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The Modbus TCP address of the PV, battery and meter.
    pub modbus: SocketAddr,
    /// The MQTT broker's host.
    pub mqtt_host: String,
    /// The MQTT broker's port.
    pub mqtt_port: u16,
    /// Folder for the device list and its templates.
    pub dir: PathBuf,
    /// Where the sim templates are (config/devices/templates).
    pub templates_dir: PathBuf,
    /// Simulated time (its origin is the instant the demo starts at).
    pub clock: SimClock,
    /// Simulated days built ahead (the world repeats after them).
    pub days: u32,
    /// The simulated instant the demo starts at.
    pub start: DateTime<Utc>,
    /// Where the EMS's OCPP central system listens: the last [`OCPP_CHARGERS`] chargers of the
    /// park speak OCPP to it (the last of them 2.0.1, the others 1.6J).
    pub ocpp: SocketAddr,
    /// A secret the OCPP chargers' passwords are made from (each start's own).
    pub ocpp_secret: String,
    /// Where the grid company's billing meter (DL/T 645-2007 behind a TCP serial gateway)
    /// is read.
    pub meter: SocketAddr,
}

/// The billing meter's address (its nameplate's digits).
pub const BILLING_METER_ADDRESS: &str = "000020260001";
/// The billing meter's current transformer ratio (1000/5 A): its registers are secondary
/// values, the EMS multiplies them back.
pub const BILLING_CT_RATIO: f64 = 200.0;

/// How many of the park's chargers (the last ones) speak OCPP in the demo; the others MQTT.
pub const OCPP_CHARGERS: usize = 2;

/// An OCPP charger of the demo: its identity, password and device (the park's charger id).
#[derive(Debug, Clone, PartialEq)]
pub struct OcppCharger {
    /// Its charge point identity.
    pub identity: String,
    /// Its password.
    pub password: String,
    /// The park charger (and device) it is.
    pub device: String,
    /// Its highest power, kW.
    pub max_kw: f64,
}

/// What the physics did last tick, for the console.
#[derive(Debug, Clone, Default)]
pub struct DemoNow {
    /// The tick's simulated time.
    pub at: Option<DateTime<Utc>>,
    /// PV power, kW.
    pub pv_kw: f64,
    /// Battery power, kW (+discharge).
    pub battery_kw: f64,
    /// Battery state of charge, %.
    pub soc_pct: f64,
    /// Load power, kW.
    pub load_kw: f64,
    /// EV charging power, kW.
    pub ev_kw: f64,
    /// Grid power, kW (+import).
    pub grid_kw: f64,
    /// Cars on chargers.
    pub cars: usize,
}

/// The running demonstration park.
pub struct DemoPark {
    /// The Modbus server with the park's banks.
    pub modbus: SimServer,
    /// The device file the EMS runs with.
    pub devices_file: PathBuf,
    /// The park's simulated clock (shared with the EMS at --speed).
    pub clock: SimClock,
    /// What the physics did last tick.
    pub now: Arc<Mutex<DemoNow>>,
    /// The chargers that speak OCPP, for the run file's `[ocpp]`.
    pub ocpp_chargers: Vec<OcppCharger>,
    _mqtt: Vec<SimMqttDevice>,
    _ocpp: Vec<pedf_sim_devices::ocpp::SimOcppCharger>,
    /// The grid company's billing meter.
    pub billing: pedf_sim_devices::dlt645::SimDlt645Meter,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for DemoPark {
    fn drop(&mut self) {
        self.driver.abort();
        self.modbus.stop();
    }
}

const BATTERY_UNIT: u8 = 10;
const METER_UNIT: u8 = 20;
const METER_POWER: usize = 0x2012;

struct Addrs {
    pv: Vec<(u8, u16, u16, f64)>, // unit, 103 data, 123 data, rating kW
    bat_802: u16,
    bat_124: u16,
}

impl DemoPark {
    /// Starts the devices and the physics. The MQTT broker must already run.
    pub async fn start(s: &Scenario, o: &DemoOptions) -> Result<DemoPark, String> {
        let park = &s.park;
        let clock = o.clock;
        let first_day = park.clock.local(o.start).date_naive();
        let world = World::build(s, first_day, o.days.max(1))?;
        std::fs::create_dir_all(o.dir.join("templates"))
            .map_err(|e| format!("{}: {e}", o.dir.display()))?;
        for t in ["pedf-sim-meter", "pedf-sim-dc-charger", "pedf-sim-dc-load"] {
            let from = o.templates_dir.join(format!("{t}.toml"));
            std::fs::copy(&from, o.dir.join(format!("templates/{t}.toml")))
                .map_err(|e| format!("{}: {e}", from.display()))?;
        }
        let mut banks = BTreeMap::new();
        let mut addrs = Addrs {
            pv: Vec::new(),
            bat_802: 0,
            bat_124: 0,
        };
        for (k, a) in park.pv.iter().enumerate() {
            let unit = 1 + k as u8;
            let rating = a.converter_rating.0;
            let mut b = Bank::default();
            let image = SunSpecImage::new(40000)
                .model(1, &img::common("pedf-sim", "PV", &a.id))
                .model(120, &img::nameplate(rating * 1000.0, 2))
                .model(103, &img::inverter(0.0, 2, 0))
                .model(123, &img::controls(100.0))
                .install(&mut b);
            let c123 = image.addr_of(123).unwrap_or(0);
            b.writable.push((c123, 24));
            addrs
                .pv
                .push((unit, image.addr_of(103).unwrap_or(0), c123, rating));
            banks.insert(unit, b);
        }
        let bat = BatteryModel::of(park).ok_or("the park has no battery")?;
        let mut b = Bank::default();
        let image = SunSpecImage::new(40000)
            .model(1, &img::common("pedf-sim", "BESS", "demo"))
            .model(
                802,
                &img::battery(
                    bat.soc_pct(),
                    0.0,
                    2,
                    bat.max_charge_kw * 1000.0,
                    bat.max_discharge_kw * 1000.0,
                    3,
                ),
            )
            .model(124, &img::storage(bat.max_charge_kw * 1000.0, 3))
            .install(&mut b);
        addrs.bat_802 = image.addr_of(802).unwrap_or(0);
        addrs.bat_124 = image.addr_of(124).unwrap_or(0);
        b.writable.push((addrs.bat_124, 24));
        banks.insert(BATTERY_UNIT, b);
        banks.insert(METER_UNIT, Bank::default());
        let modbus = SimServer::start_on(o.modbus, banks)
            .await
            .map_err(|e| format!("Modbus server on {}: {e}", o.modbus))?;
        let mut mqtt = Vec::new();
        let mut chargers = Vec::new();
        let ocpp_chargers = ocpp_chargers_of(park, &o.ocpp_secret);
        let mut ocpp = Vec::new();
        for c in &park.ev_chargers {
            if let Some((k, oc)) = ocpp_chargers
                .iter()
                .enumerate()
                .find(|(_, x)| x.device == c.id)
            {
                // The last of them a newer charger: OCPP 2.0.1, the others 1.6J.
                let version = if k + 1 == ocpp_chargers.len() {
                    pedf_sim_devices::ocpp::SimOcppVersion::V201
                } else {
                    pedf_sim_devices::ocpp::SimOcppVersion::V16
                };
                let d = pedf_sim_devices::ocpp::SimOcppCharger::start_speaking(
                    version,
                    &format!("ws://{}/ocpp", o.ocpp),
                    &oc.identity,
                    &oc.password,
                    sample_period(o.clock.speed()),
                    o.clock.speed(),
                );
                chargers.push(handles(c, &d.power_kw, &d.command_kw, &d.present));
                ocpp.push(d);
                continue;
            }
            let d = SimMqttDevice::start_at_speed(
                &o.mqtt_host,
                o.mqtt_port,
                &format!("demo/{}", c.id),
                SimKind::Charger {
                    max_kw: c.max_power.0,
                },
                0.0,
                sample_period(o.clock.speed()),
                o.clock.speed(),
            );
            d.present.store(false, Ordering::Relaxed);
            chargers.push(handles(c, &d.power_kw, &d.command_kw, &d.present));
            mqtt.push(d);
        }
        let mut loads = Vec::new();
        for l in &park.flexible_loads {
            let d = SimMqttDevice::start_at_speed(
                &o.mqtt_host,
                o.mqtt_port,
                &format!("demo/{}", l.id),
                SimKind::DcLoad {
                    max_kw: l.max_power.0,
                },
                0.0,
                sample_period(o.clock.speed()),
                o.clock.speed(),
            );
            loads.push((l.id.clone(), d.power_kw.clone(), d.command_kw.clone()));
            mqtt.push(d);
        }
        let billing =
            pedf_sim_devices::dlt645::SimDlt645Meter::start(o.meter, BILLING_METER_ADDRESS)
                .await
                .map_err(|e| format!("the billing meter's gateway on {}: {e}", o.meter))?;
        let devices_file = o.dir.join("devices.toml");
        std::fs::write(
            &devices_file,
            devices_toml(
                s,
                &modbus.addr.to_string(),
                &o.mqtt_host,
                o.mqtt_port,
                o.clock.speed(),
                &ocpp_chargers,
                &billing.addr.to_string(),
            ),
        )
        .map_err(|e| format!("{}: {e}", devices_file.display()))?;
        let now = Arc::new(Mutex::new(DemoNow::default()));
        let banks = modbus.banks.clone();
        let driver = {
            let now = now.clone();
            let s = s.clone();
            let meter = billing.registers.clone();
            tokio::spawn(async move {
                drive(s, world, clock, banks, addrs, chargers, loads, now, meter).await;
            })
        };
        Ok(DemoPark {
            modbus,
            devices_file,
            clock,
            now,
            ocpp_chargers,
            _mqtt: mqtt,
            _ocpp: ocpp,
            billing,
            driver,
        })
    }
}

/// What the physics drives a charger through, MQTT or OCPP alike.
fn handles(
    c: &pedf_core::assets::EvCharger,
    power: &Arc<Mutex<f64>>,
    command: &Arc<Mutex<Option<f64>>>,
    present: &Arc<std::sync::atomic::AtomicBool>,
) -> ChargerHandles {
    (
        c.id.clone(),
        c.max_power.0,
        power.clone(),
        command.clone(),
        present.clone(),
    )
}

type ChargerHandles = (
    String,
    f64,
    Arc<Mutex<f64>>,
    Arc<Mutex<Option<f64>>>,
    Arc<std::sync::atomic::AtomicBool>,
);

fn words<T: Value>(v: T) -> Vec<u16> {
    v.encode().to_vec()
}

/// A DC load's measured power and the EMS's last command.
type LoadHandles = (String, Arc<Mutex<f64>>, Arc<Mutex<Option<f64>>>);

#[allow(clippy::too_many_arguments)]
async fn drive(
    s: Scenario,
    w: World,
    clock: SimClock,
    banks: crate::bank::Banks,
    addrs: Addrs,
    chargers: Vec<ChargerHandles>,
    loads: Vec<LoadHandles>,
    now_out: Arc<Mutex<DemoNow>>,
    billing: Arc<Mutex<pedf_sim_devices::dlt645::MeterRegisters>>,
) {
    let park = &s.park;
    let mut battery = BatteryModel::of(park).expect("checked at start");
    let mut defer = DeferrableModel::of(park);
    let conv = Converter {
        eta_in: park.converter.efficiency_ac_to_dc,
        eta_out: park.converter.efficiency_dc_to_ac,
    };
    let step_s = w.dt_h * 3600.0;
    let span = w.starts.len() as f64 * step_s;
    let w0 = w.starts[0];
    let fixed_ids: Vec<String> = park.fixed_loads.iter().map(|l| l.id.clone()).collect();
    let curtail_ids: Vec<String> = Scenario::profile_ids(park)
        .into_iter()
        .filter(|id| !fixed_ids.contains(id))
        .collect();
    // Cars on chargers: (session index, energy got).
    let mut cars: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let (mut imp_kwh, mut exp_kwh) = (0.0f64, 0.0f64);
    // The billing meter's demand: the import of each 15-minute block of the local clock,
    // the month's highest (kW, primary side).
    let mut block: Option<(chrono::NaiveDateTime, f64)> = None;
    let mut month_max = (0u32, 0.0f64);
    let mut last = clock.now();
    let mut day = None;
    let mut tick = tokio::time::interval(
        Duration::from_millis(200)
            .div_f64(clock.speed())
            .max(sample_period(clock.speed()).min(Duration::from_millis(200))),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = clock.now();
        let dt_h = ((t - last).num_milliseconds() as f64 / 3.6e6).clamp(0.0, 1.0);
        last = t;
        // Position in the world (it repeats after its last day).
        let secs = ((t - w0).num_milliseconds() as f64 / 1000.0).rem_euclid(span);
        let x = secs / step_s - 0.5;
        let i0 = x.floor().max(0.0) as usize;
        let i1 = (i0 + 1).min(w.starts.len() - 1);
        let f = (x - x.floor()).clamp(0.0, 1.0) * f64::from(u8::from(x >= 0.0));
        let at = |v: &Vec<f64>| v[i0] + (v[i1] - v[i0]) * f;
        let wt = w0 + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let local = park.clock.local(wt);
        if day != Some(local.date_naive()) {
            day = Some(local.date_naive());
            defer.iter_mut().for_each(DeferrableModel::new_day);
        }
        let mut b = banks.lock().expect("bank lock");
        // What the EMS wrote.
        let mut pv = 0.0;
        let mut pv_each = Vec::new();
        for ((unit, _, c123, rating), avail) in addrs.pv.iter().zip(w.pv_actual.values()) {
            let bank = b.entry(*unit).or_default();
            bank.writes.clear();
            let pct =
                f64::from(bank.holding[usize::from(c123 + Model123::W_MAX_LIM_PCT.offset)]) * 0.1;
            let ena = bank.holding[usize::from(c123 + Model123::W_MAX_LIM_ENA.offset)] == 1;
            let cap = if ena {
                pct / 100.0 * rating
            } else {
                f64::INFINITY
            };
            let p = at(avail).min(cap).max(0.0);
            pv += p;
            pv_each.push(p);
        }
        let bank = b.entry(BATTERY_UNIT).or_default();
        bank.writes.clear();
        let mode = bank.holding[usize::from(addrs.bat_124 + Model124::STOR_CTL_MOD.offset)];
        let out_rate = bank.holding[usize::from(addrs.bat_124 + Model124::OUT_W_RTE.offset)] as i16;
        let set_kw = if mode & 3 == 3 {
            f64::from(out_rate) * 0.1 / 100.0 * battery.max_charge_kw
        } else {
            0.0
        };
        let bat_kw = battery.apply(set_kw, dt_h.max(1e-9));
        // Cars.
        let mut ev = 0.0;
        for (id, max, power, command, present) in &chargers {
            let here = w
                .sessions
                .iter()
                .position(|x| x.charger == *id && x.arrival <= wt && wt < x.departure);
            match (here, cars.get(id).map(|c| c.0)) {
                (Some(k), Some(old)) if k == old => {}
                (Some(k), _) => {
                    cars.insert(id.clone(), (k, 0.0));
                    *command.lock().expect("lock") = None;
                }
                (None, _) => {
                    cars.remove(id);
                }
            }
            let p = match cars.get_mut(id) {
                Some((k, got)) => {
                    let left = (w.sessions[*k].energy_kwh - *got).max(0.0);
                    // A car takes its maximum until the EMS says otherwise.
                    let wish = command.lock().expect("lock").unwrap_or(*max);
                    let p = wish
                        .clamp(0.0, *max)
                        .min(if dt_h > 0.0 { left / dt_h } else { *max });
                    *got += p * dt_h;
                    p
                }
                None => 0.0,
            };
            present.store(cars.contains_key(id), Ordering::Relaxed);
            *power.lock().expect("lock") = p;
            ev += p;
        }
        // Loads.
        let mut load: f64 = fixed_ids.iter().map(|id| at(&w.load_actual[id])).sum();
        for (id, power, command) in &loads {
            let command = *command.lock().expect("lock");
            let p = if curtail_ids.contains(id) {
                // A command caps a curtailable load; it draws its demand below the cap.
                at(&w.load_actual[id]).min(command.unwrap_or(f64::INFINITY).max(0.0))
            } else if let Some(d) = defer.iter_mut().find(|d| d.id == *id) {
                // The EMS's setpoint, or the load's own flat schedule until it gets one; the
                // comfort override still delivers the day's energy.
                let wish = command.unwrap_or_else(|| d.flat_kw());
                // The local minute with its fraction: whole minutes held the load's time still
                // for a minute of one-second steps, and its catch-up switched on and off.
                let minute = f64::from(local.hour() * 60 + local.minute())
                    + f64::from(local.second()) / 60.0
                    + f64::from(local.nanosecond()) / 6e10;
                d.run(wish, minute, dt_h.max(1e-9))
            } else {
                0.0
            };
            *power.lock().expect("lock") = p;
            load += p;
        }
        let grid = conv.grid_for(load + ev - pv - bat_kw);
        imp_kwh += grid.max(0.0) * dt_h;
        exp_kwh += (-grid).max(0.0) * dt_h;
        // Measurements back.
        for ((unit, c103, _, _), p) in addrs.pv.iter().zip(&pv_each) {
            let bank = b.entry(*unit).or_default();
            bank.set(c103 + Model103::W.offset, &words((p * 10.0).round() as i16));
        }
        let bank = b.entry(BATTERY_UNIT).or_default();
        bank.set(
            addrs.bat_802 + Model802::SOC.offset,
            &words((battery.soc_pct() * 10.0).round() as u16),
        );
        bank.set(
            addrs.bat_802 + Model802::W.offset,
            &words((bat_kw * 10.0).round() as i16),
        );
        let meter = b.entry(METER_UNIT).or_default();
        let g = (grid as f32).to_bits();
        meter.input[METER_POWER..METER_POWER + 2].copy_from_slice(&[(g >> 16) as u16, g as u16]);
        let (ik, ek) = (imp_kwh.round() as u32, exp_kwh.round() as u32);
        meter.set(
            0x4000,
            &[
                (ik >> 16) as u16,
                ik as u16,
                (ek >> 16) as u16,
                ek as u16,
                0,
            ],
        );
        drop(b);
        // The billing meter: secondary values behind its current transformers; the tariff
        // period's register counts the import (a four-register meter: the deep valley in 谷,
        // an assumption of the simulation).
        let naive = local.naive_local();
        let start = naive
            .date()
            .and_hms_opt(local.hour(), local.minute() / 15 * 15, 0)
            .unwrap_or(naive);
        let kwh = grid.max(0.0) * dt_h;
        block = match block {
            Some((s0, e)) if s0 == start => Some((s0, e + kwh)),
            Some((_, e)) => {
                if month_max.0 != local.month() {
                    month_max = (local.month(), 0.0);
                }
                month_max.1 = month_max.1.max(e * 4.0);
                Some((start, kwh))
            }
            None => Some((start, kwh)),
        };
        if let Ok(mut m) = billing.lock() {
            let k = BILLING_CT_RATIO;
            let register = match park.tariff.period_at(naive) {
                Some(pedf_core::tariff::PeriodKind::CriticalPeak) => 0,
                Some(pedf_core::tariff::PeriodKind::Peak) => 1,
                Some(pedf_core::tariff::PeriodKind::Flat) => 2,
                _ => 3,
            };
            m.tariff_kwh[register] += kwh / k;
            m.import_kwh = imp_kwh / k;
            m.export_kwh = exp_kwh / k;
            m.power_kw = grid / k;
            // Three phases at 230 V, unity power factor.
            m.current_a = grid * 1000.0 / (3.0 * 230.0) / k;
            m.voltage_v = 230.0;
            m.max_demand_kw = month_max.1 / k;
        }
        *now_out.lock().expect("lock") = DemoNow {
            at: Some(t),
            pv_kw: pv,
            battery_kw: bat_kw,
            soc_pct: battery.soc_pct(),
            load_kw: load,
            ev_kw: ev,
            grid_kw: grid,
            cars: cars.len(),
        };
    }
}

/// The demo's OCPP chargers: the park's last [`OCPP_CHARGERS`] chargers, identities
/// `QZ-<id>`, passwords made from `secret`.
pub fn ocpp_chargers_of(park: &pedf_core::Park, secret: &str) -> Vec<OcppCharger> {
    let n = park.ev_chargers.len();
    park.ev_chargers[n.saturating_sub(OCPP_CHARGERS)..]
        .iter()
        .map(|c| OcppCharger {
            identity: format!("QZ-{}", c.id.to_uppercase()),
            password: format!("{secret}-{}", c.id),
            device: c.id.clone(),
            max_kw: c.max_power.0,
        })
        .collect()
}

/// How often the demo's devices are read and publish, in real time: 500 ms of the park's
/// simulated time, at least 15 ms of real time (at `--speed 60` a device is read every 0.9 s
/// of the park's time, near the EMS's 1 s cycle: a controller acting 30 times on one reading,
/// as when devices were read every 500 ms of real time, swung the battery into export).
pub fn sample_period(speed: f64) -> Duration {
    Duration::from_millis(500)
        .div_f64(speed.max(1e-3))
        .clamp(Duration::from_millis(15), Duration::from_millis(500))
}

/// The device list. Poll periods and stale ages are in the EMS's (simulated) time: the
/// [`sample_period`] times `speed`, stale after ten of them (at least 2 s of real time).
fn devices_toml(
    s: &Scenario,
    modbus: &str,
    mqtt_host: &str,
    mqtt_port: u16,
    speed: f64,
    ocpp: &[OcppCharger],
    billing: &str,
) -> String {
    let park = &s.park;
    let poll = (sample_period(speed).as_secs_f64() * 1000.0 * speed)
        .round()
        .max(1.0) as u64;
    // Ten readings, and at least 2 s of real time: a busy machine's hiccup is no outage.
    let stale = (10 * poll).max((2000.0 * speed).round() as u64);
    let mut t = format!(
        "# Written by `pedf demo`: the demonstration park's devices on loopback.\n\n[[connection]]\nid = \"modbus\"\nkind = \"tcp\"\naddress = \"{modbus}\"\ntimeout_ms = 500\n\n[[connection]]\nid = \"mqtt\"\nkind = \"mqtt\"\naddress = \"{mqtt_host}:{mqtt_port}\"\n"
    );
    for (k, a) in park.pv.iter().enumerate() {
        t += &format!(
            "\n[[device]]\nid = \"{id}\"\ncapability = \"pv-inverter\"\nasset = \"{id}\"\nconnection = \"modbus\"\nunit_id = {unit}\nsunspec = true\npoll_ms = {poll}\nstale_after_ms = {stale}\n",
            id = a.id,
            unit = 1 + k
        );
    }
    if let Some(b) = park.batteries.first() {
        t += &format!(
            "\n[[device]]\nid = \"{id}\"\ncapability = \"battery\"\nasset = \"{id}\"\nconnection = \"modbus\"\nunit_id = {BATTERY_UNIT}\nsunspec = true\npoll_ms = {poll}\nstale_after_ms = {stale}\n",
            id = b.id
        );
    }
    t += &format!(
        "\n[[device]]\nid = \"grid-meter\"\ncapability = \"meter\"\nasset = \"grid\"\nconnection = \"modbus\"\nunit_id = {METER_UNIT}\ntemplate = \"pedf-sim-meter\"\npoll_ms = {poll}\nstale_after_ms = {stale}\n"
    );
    // The grid company's billing meter at the same connection, read less often (a bus of
    // meters at 2400 Bd is read in seconds): the grid meter when the EMS's own is lost.
    let meter_poll = poll.max(15_000);
    t += &format!(
        "\n[[connection]]\nid = \"billing\"\nkind = \"dlt645-tcp\"\naddress = \"{billing}\"\ntimeout_ms = 1000\n\n[[device]]\nid = \"grid-billing\"\ncapability = \"meter\"\nasset = \"grid\"\nconnection = \"billing\"\nmeter_address = \"{BILLING_METER_ADDRESS}\"\nct_ratio = {BILLING_CT_RATIO}\npoll_ms = {meter_poll}\nstale_after_ms = {}\n",
        meter_poll * 4
    );
    if !ocpp.is_empty() {
        t += "\n[[connection]]\nid = \"ocpp\"\nkind = \"ocpp\"\n";
    }
    for c in &park.ev_chargers {
        if ocpp.iter().any(|x| x.device == c.id) {
            t += &format!(
                "\n[[device]]\nid = \"{id}\"\ncapability = \"ev-charger\"\nasset = \"{id}\"\nconnection = \"ocpp\"\nstale_after_ms = {stale}\n",
                id = c.id
            );
            continue;
        }
        t += &format!(
            "\n[[device]]\nid = \"{id}\"\ncapability = \"ev-charger\"\nasset = \"{id}\"\nconnection = \"mqtt\"\ntemplate = \"pedf-sim-dc-charger\"\ntopic = \"demo/{id}\"\nstale_after_ms = {stale}\n",
            id = c.id
        );
    }
    for l in &park.flexible_loads {
        t += &format!(
            "\n[[device]]\nid = \"{id}\"\ncapability = \"dc-load\"\nasset = \"{id}\"\nconnection = \"mqtt\"\ntemplate = \"pedf-sim-dc-load\"\ntopic = \"demo/{id}\"\nstale_after_ms = {stale}\n",
            id = l.id
        );
    }
    t
}

/// The templates folder beside a park file's config folder (config/devices/templates).
pub fn default_templates_dir(root: &Path) -> PathBuf {
    root.join("config/devices/templates")
}
