//! `pedf run`: devices → park state → store → controller → safe setpoints, once per cycle.
//!
//! Every device runs in its own unit (`pedf_devices::unit`): read on its own period into the
//! process image, written through its `SafeControl` (clamp, ramp, read-back, audit), with its
//! own watchdog. The cycle never waits on the network; in phases:
//!
//! 1. **snapshot**: beat the heartbeat, copy the process image;
//! 2. **control**: sessions and orders, the active plan's interval from the store (or none:
//!    self-consumption), the controller;
//! 3. **apply**: hand each unit its setpoint (the latest wins; never waits);
//! 4. **record**: samples, events and the units' audit into the store (one transaction each),
//!    the InfluxDB sink, energy records;
//! 5. **publish**: the park now to the server.
//!
//! A device that stops answering, or a cycle that stalls, puts the devices into their safe
//! state by the units' watchdogs. On shutdown (Ctrl-C, SIGTERM, or the given duration) every
//! controllable device is put into its safe state and the store is flushed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use pedf_core::Park;
use pedf_devices::capability::{Capability, DeviceState, Field, Quality};
use pedf_devices::control::{
    default_safe_value, park_limits, AuditEvent, Limits as SetLimits, Policy, SafeControl,
};
use pedf_devices::device::ModbusDevice;
use pedf_devices::modbus::{Endpoint, LinkOptions, ModbusLink};
use pedf_devices::mqtt::{MqttDeviceSpec, MqttHub};
use pedf_devices::template::{load_device_set, TransportKind};
use pedf_devices::unit::{Heartbeat, Order, ProcessImage, Unit};
use pedf_store::{Sample, Store};
use serde::Deserialize;

use crate::live::{tariff_now, today, ChargerLive, DeviceLive, Flows, Integrator, Live, ModeView};
use pedf_control::{
    control, pool_batteries, share_battery_power, BatteryNow, BatteryUnit, ChargerNow, Limits,
    LoadNow, Mode, PlanTarget, Snapshot,
};
use tokio::sync::watch;

/// The run configuration (TOML); paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub park: PathBuf,
    pub devices: PathBuf,
    pub store: PathBuf,
    #[serde(default = "default_cycle_ms")]
    pub cycle_ms: u64,
    #[serde(default = "default_retention_days")]
    pub retention_days: i64,
    #[serde(default = "default_client_id")]
    pub mqtt_client_id: String,
    /// The watchdog's controller-silence timeout.
    #[serde(default = "default_command_timeout_s")]
    pub command_timeout_s: u64,
    /// The HTTP server (API, live stream, dashboard); none: no server.
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// An InfluxDB v2 sink for every sample, with a store-and-forward buffer; none: no sink.
    #[serde(default)]
    pub influx: Option<pedf_influx::InfluxConfig>,
    /// Intraday re-planning from a forecast folder; none: follow the stored plan only.
    #[serde(default)]
    pub replan: Option<crate::replan::ReplanConfig>,
    /// Where "now" comes from (not in the file): the wall clock, or the accelerated time of
    /// `pedf demo --speed`.
    #[serde(skip)]
    pub time: pedf_core::time::TimeSource,
}

/// The `[server]` table of a run configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// PEM certificate chain and private key: HTTPS when both are given (rustls).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Day-input folder the plan page plans from (`pedf plan --inputs`; a subfolder named
    /// after the day is used when there is one).
    #[serde(default)]
    pub plan_inputs: Option<PathBuf>,
    /// The emission-factor table carbon accounting uses.
    #[serde(default = "default_factors")]
    pub emission_factors: PathBuf,
    /// Where certificates issued from the dashboard go, with their ledger (default:
    /// `certificates/` beside the store).
    #[serde(default)]
    pub certificates_dir: Option<PathBuf>,
    /// The issuer's ed25519 key, made at first use (default: `issuer.key` beside the store).
    #[serde(default)]
    pub issuer_key: Option<PathBuf>,
}

fn default_factors() -> PathBuf {
    PathBuf::from("emission-factors/china-grid.toml")
}

fn default_cycle_ms() -> u64 {
    1000
}
fn default_retention_days() -> i64 {
    7
}
fn default_client_id() -> String {
    "pedf-ems".into()
}
fn default_command_timeout_s() -> u64 {
    10
}

impl RunConfig {
    /// Reads a run configuration; paths become relative to the file's folder.
    pub fn load(path: &Path) -> Result<RunConfig, String> {
        let name = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let mut c: RunConfig = toml::from_str(&text).map_err(|e| {
            let (line, col) =
                pedf_core::config::SourceMap::new(&text).locate(e.span().map_or(0, |s| s.start));
            format!("{name}:{line}:{col}: {}", e.message().trim())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.park, &mut c.devices, &mut c.store] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let Some(r) = &mut c.replan {
            if r.inputs.is_relative() {
                r.inputs = dir.join(&r.inputs);
            }
            if !(r.time_limit_s.is_finite() && r.time_limit_s > 0.0) {
                return Err(format!(
                    "{name}: [replan] time_limit_s must be a positive number of seconds"
                ));
            }
            if !(r.deviation_kw.is_finite() && r.deviation_kw > 0.0) {
                return Err(format!("{name}: [replan] deviation_kw must be above 0"));
            }
        }
        if let Some(i) = &mut c.influx {
            if i.buffer_dir.is_relative() {
                i.buffer_dir = dir.join(&i.buffer_dir);
            }
            if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
                return Err(format!(
                    "{name}: [influx] url = `{}` is not an http:// or https:// URL",
                    i.url
                ));
            }
            if i.batch_lines == 0 {
                return Err(format!("{name}: [influx] batch_lines must be at least 1"));
            }
        }
        if let Some(srv) = &mut c.server {
            let store_dir = c.store.parent().map(Path::to_path_buf).unwrap_or_default();
            srv.certificates_dir
                .get_or_insert_with(|| store_dir.join("certificates"));
            srv.issuer_key
                .get_or_insert_with(|| store_dir.join("issuer.key"));
            for p in [
                Some(&mut srv.emission_factors),
                srv.plan_inputs.as_mut(),
                srv.certificates_dir.as_mut(),
                srv.issuer_key.as_mut(),
                srv.tls_cert.as_mut(),
                srv.tls_key.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
            if srv.tls_cert.is_some() != srv.tls_key.is_some() {
                return Err(format!(
                    "{name}: [server] HTTPS needs both tls_cert and tls_key (PEM files), or neither"
                ));
            }
            if srv.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "{name}: [server] listen = `{}` is not an address:port such as 127.0.0.1:8080",
                    srv.listen
                ));
            }
        }
        if c.cycle_ms == 0 {
            return Err(format!("{name}: cycle_ms must be at least 1"));
        }
        Ok(c)
    }
}

/// How long shutdown waits for a device to take its safe state.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub cycles: u64,
    pub samples: u64,
    pub setpoints: u64,
    pub alarms: u64,
    /// Controllable devices that could not be put into their safe state at shutdown (not
    /// answering: their own fail-safe applies).
    pub not_made_safe: Vec<String>,
}

struct Controlled {
    id: String,
    capability: Capability,
    /// The park asset it is (device file `asset`, else its id): the plan's name for it.
    asset: String,
    /// The share of its demand that may be shed, when it is a curtailable flexible load of
    /// the park (its setpoint is then a cap: it draws its demand below it).
    curtailable: Option<f64>,
    /// The deferrable flexible load of the park it serves (device file `asset`), which the
    /// plan schedules.
    deferrable: Option<String>,
    /// Its limits and safe value (its `SafeControl` lives in its unit).
    policy: Policy,
}

fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Stale => 1,
        Quality::Bad => 2,
    }
}

fn samples_of(state: &DeviceState, now: DateTime<Utc>, out: &mut Vec<Sample>) {
    for f in state.capability.fields() {
        if let Some(r) = state.reading(*f, now) {
            out.push(Sample {
                device: state.id.clone(),
                field: f.name().into(),
                at: r.at,
                value: r.value,
                quality: quality_code(r.quality),
            });
        }
    }
}

/// The active plan, read from the store when it changes (not every cycle).
struct ActivePlan {
    id: i64,
    label: String,
    plan: Result<pedf_core::plan::Plan, String>,
}

/// The active plan's interval at `now` (typed: the plan as `pedf plan` writes it, read once
/// per plan), with the plan's label and its shed of curtailable demand, kW. A stored plan this
/// version cannot read is a fault, named, and the controller runs without a plan.
fn plan_target(
    store: &Store,
    park: &Park,
    now: DateTime<Utc>,
    cache: &mut Option<ActivePlan>,
    faults: &mut Vec<String>,
) -> Option<(PlanTarget, String, f64)> {
    let day = park.clock.local(now).date_naive().to_string();
    let (id, strategy, json) = store.active_plan(&day).ok()??;
    if cache.as_ref().is_none_or(|c| c.id != id) {
        *cache = Some(ActivePlan {
            id,
            label: format!("plan #{id} ({strategy})"),
            plan: serde_json::from_str(&json).map_err(|e| e.to_string()),
        });
    }
    let active = cache.as_ref()?;
    let plan = match &active.plan {
        Ok(p) => p,
        Err(e) => {
            faults.push(format!(
                "{} cannot be read ({e}): running without a plan",
                active.label
            ));
            return None;
        }
    };
    let start = park.clock.interval_start(now);
    let interval = plan
        .intervals
        .iter()
        .find(|i| i.start.with_timezone(&Utc) == start)?;
    Some((
        PlanTarget::of(interval),
        active.label.clone(),
        interval.load_shed_kw.max(0.0),
    ))
}

/// Moves the units' audit entries into the store; returns how many were the controller's
/// setpoints taken.
fn store_audit(store: &mut Store, audit: Vec<AuditEvent>) -> u64 {
    let taken = audit
        .iter()
        .filter(|a| a.by == "controller" && a.readback.is_some())
        .count() as u64;
    for a in audit {
        let _ = store.audit(
            a.at,
            &a.device,
            &a.by,
            &a.reason,
            a.requested,
            a.written,
            a.readback,
            &a.outcome,
        );
    }
    taken
}

/// The channels between the run loop and the server.
#[derive(Default)]
pub struct RunIo {
    /// Gets the park state after every cycle.
    pub live: Option<watch::Sender<Arc<Live>>>,
    /// The operating mode, set by operators through the server; read every cycle.
    pub mode: Option<watch::Receiver<Mode>>,
    /// Operators' orders on EV sessions (energy, departure), from the server.
    pub orders: Option<tokio::sync::mpsc::Receiver<crate::sessions::Order>>,
    /// Caps the store file at this many pages, as a full disk would (tests).
    #[doc(hidden)]
    pub store_max_pages_for_test: Option<i64>,
}

/// Runs until `shutdown` resolves.
pub async fn run(cfg: RunConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary, String> {
    run_with(cfg, RunIo::default(), shutdown).await
}

/// Runs until `shutdown` resolves, publishing the park state and taking the mode through `io`.
pub async fn run_with(
    cfg: RunConfig,
    mut io: RunIo,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, String> {
    let time = cfg.time;
    let pname = cfg.park.display().to_string();
    let bytes = std::fs::read(&cfg.park).map_err(|e| format!("{pname}: cannot read: {e}"))?;
    let park = pedf_core::config::load_park(&pname, &bytes)
        .value
        .ok_or(format!(
            "{pname}: the park file has errors; `pedf check {pname}` lists them"
        ))?;
    let set = load_device_set(&cfg.devices).map_err(|es| {
        es.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if let Some(dir) = cfg.store.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut store = Store::open(&cfg.store).map_err(|e| e.to_string())?;
    if let Some(pages) = io.store_max_pages_for_test {
        store.set_max_pages_for_test(pages);
    }
    let limits = Limits::of(&park);
    let battery_units = BatteryUnit::of(&park);
    let mut replanner = cfg
        .replan
        .clone()
        .map(|r| crate::replan::Replanner::new(r, park.clone()));
    let mut replan_note: Option<String> = None;
    let sink = match &cfg.influx {
        Some(i) => Some(pedf_influx::InfluxSink::start(i.clone()).map_err(|e| e.to_string())?),
        None => None,
    };

    // Devices.
    let mut links: BTreeMap<String, ModbusLink> = BTreeMap::new();
    let mut modbus: Vec<ModbusDevice> = Vec::new();
    let mut mqtt_specs = Vec::new();
    let mut mqtt_addr: Option<String> = None;
    for c in &set.devices.connections {
        let opts = LinkOptions {
            timeout: Duration::from_millis(c.timeout_ms),
            retries: c.retries,
            backoff: Duration::from_millis(c.backoff_ms),
        };
        let endpoint = match c.kind {
            TransportKind::Tcp => c
                .address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .map(Endpoint::Tcp),
            TransportKind::RtuOverTcp => c
                .address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .map(Endpoint::RtuOverTcp),
            TransportKind::Rtu => Some(Endpoint::Serial {
                path: c.path.clone().unwrap_or_default(),
                baud: c.baud.unwrap_or(9600),
            }),
            TransportKind::Mqtt => {
                mqtt_addr = c.address.clone();
                None
            }
        };
        if let Some(e) = endpoint {
            links.insert(c.id.clone(), ModbusLink::new(e, opts));
        }
    }
    for d in &set.devices.devices {
        let template = d.template.as_ref().and_then(|t| set.templates.get(t));
        if let Some(t) = template.filter(|t| t.mqtt.is_some()) {
            let prefix = d.topic.clone().unwrap_or_default();
            if let Some(spec) = MqttDeviceSpec::from_template(
                &d.id,
                t,
                &prefix,
                Duration::from_millis(d.stale_after_ms),
            ) {
                mqtt_specs.push(spec);
            }
            continue;
        }
        let Some(link) = links.get(&d.connection).cloned() else {
            continue;
        };
        let invert = d.battery_discharge_sign.as_deref() == Some("negative");
        modbus.push(match template {
            Some(t) => ModbusDevice::with_template(d.clone(), t.clone(), link),
            None => ModbusDevice::sunspec(d.clone(), link, invert),
        });
    }
    let mqtt_ids: Vec<String> = mqtt_specs.iter().map(|s| s.id.clone()).collect();
    let hub = match (&mqtt_addr, mqtt_specs.is_empty()) {
        (Some(a), false) => {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or(format!("MQTT address `{a}` is not host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("MQTT address `{a}` has no port"))?;
            Some(MqttHub::start_with_time(
                host,
                port,
                &cfg.mqtt_client_id,
                &format!("pedf/{}/status", park.id),
                mqtt_specs,
                time,
            ))
        }
        _ => None,
    };

    // Safe control of every controllable device.
    let mut controlled: Vec<Controlled> = Vec::new();
    for d in &set.devices.devices {
        let Some(_) = d.capability.setpoint() else {
            continue;
        };
        let asset = d.asset.clone().unwrap_or_else(|| d.id.clone());
        let park_l =
            park_limits(&park, &asset, d.capability).unwrap_or(SetLimits { min: 0.0, max: 0.0 });
        let device_l = d
            .template
            .as_ref()
            .and_then(|t| set.templates.get(t))
            .and_then(|t| {
                t.setpoint
                    .as_ref()
                    .map(|s| SetLimits {
                        min: s.min,
                        max: s.max,
                    })
                    .or_else(|| {
                        t.mqtt.as_ref()?.command.as_ref().map(|c| SetLimits {
                            min: c.min,
                            max: c.max,
                        })
                    })
            });
        let lim = device_l
            .and_then(|dl| dl.intersect(park_l))
            .unwrap_or(park_l);
        let policy = Policy {
            capability: d.capability,
            limits: lim,
            ramp_per_s: d.ramp_per_s,
            safe_value: d
                .safe_value
                .unwrap_or_else(|| default_safe_value(d.capability, lim)),
            command_timeout: Duration::from_secs(cfg.command_timeout_s),
        };
        controlled.push(Controlled {
            id: d.id.clone(),
            capability: d.capability,
            asset: asset.clone(),
            curtailable: park
                .flexible_loads
                .iter()
                .filter(|_| d.capability == Capability::DcLoad)
                .find(|l| l.id == asset)
                .and_then(|l| match l.flexibility {
                    pedf_core::assets::Flexibility::Curtailable {
                        curtailable_share, ..
                    } => Some(curtailable_share),
                    _ => None,
                }),
            deferrable: d.asset.clone().filter(|a| {
                d.capability == Capability::DcLoad
                    && park.flexible_loads.iter().any(|l| {
                        l.id == *a
                            && matches!(
                                l.flexibility,
                                pedf_core::assets::Flexibility::Deferrable { .. }
                            )
                    })
            }),
            policy,
        });
    }

    // Every device in its unit: Modbus devices polled on their own period, MQTT devices taken
    // from the hub once a cycle; the controllable ones with their safe control and watchdog.
    let image = ProcessImage::default();
    let heartbeat = Heartbeat::new(time.now());
    let control_of = |id: &str| {
        controlled
            .iter()
            .find(|c| c.id == id)
            .map(|c| SafeControl::new(id, c.policy))
    };
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    for d in modbus {
        let id = d.config.id.clone();
        let unit = Unit::spawn(
            &id,
            d,
            control_of(&id),
            image.clone(),
            heartbeat.clone(),
            time,
        );
        units.insert(id, unit);
    }
    if let Some(h) = &hub {
        for id in &mqtt_ids {
            let device = h
                .device(id)
                .with_period(Duration::from_millis(cfg.cycle_ms).mul_f64(time.speed()));
            let unit = Unit::spawn(
                id,
                device,
                control_of(id),
                image.clone(),
                heartbeat.clone(),
                time,
            );
            units.insert(id.clone(), unit);
        }
    }

    let mut summary = RunSummary::default();
    // Energy records: today's closed intervals (reloaded from the store on a restart) and the
    // running one.
    let mut integrator =
        Integrator::new(&park).with_max_gap_ms((10_000.0 * time.speed()).round() as i64);
    let mut day_records: Vec<pedf_core::records::IntervalRecord> = {
        let now = time.now();
        let from = park
            .clock
            .start_of_local_day(park.clock.local(now).date_naive());
        store
            .records(from, now)
            .map(|v| v.into_iter().map(|(r, _)| r).collect())
            .unwrap_or_default()
    };
    let minute_of = |t: DateTime<Utc>| {
        DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis().div_euclid(60_000) * 60_000)
            .unwrap_or(t)
    };
    // 1-minute aggregates are made as each minute closes (and for the last one at shutdown).
    let mut aggregated_to = minute_of(time.now());
    let running_start = park.clock.interval_start(time.now());
    if let Some(i) = day_records.iter().position(|r| r.start == running_start) {
        integrator.resume(day_records.remove(i));
    }
    // The billing month's peak import so far (kW, interval averages): from the store at start
    // (restart-safe), raised as intervals close, reset when a new month begins. The peak guard
    // and every re-plan use it.
    let interval_h = park.clock.interval.hours().0;
    let month_of = |t: DateTime<Utc>| {
        let d = park.clock.local(t).date_naive();
        d.with_day(1).unwrap_or(d)
    };
    let mut month = month_of(time.now());
    let factor = park.carbon.grid_factor.value.0;
    let eta_in = park.converter.efficiency_ac_to_dc;
    // The month and the year so far from the store's records (restart-safe): the month's peak,
    // Scope 2, consumption and Scope 2 without the EMS (estimated from the records at start,
    // run alongside after), the year's Scope 2.
    let so_far = {
        let (year_start, _) = pedf_core::park::BudgetPeriod::Year.bounds(&park.clock, time.now());
        let (month_start, _) = pedf_core::park::BudgetPeriod::Month.bounds(&park.clock, time.now());
        match store.records(year_start, running_start) {
            Ok(v) => {
                let recs: Vec<_> = v.into_iter().map(|(r, _)| r).collect();
                let mut so_far = pedf_core::records::PeriodSoFar::of(
                    &recs,
                    &park.clock,
                    running_start,
                    factor,
                    eta_in,
                );
                // The counterfactual as it was run alongside, where it was stored; estimated
                // from the record where not (intervals before this version).
                let stored = store
                    .without_ems(month_start, running_start)
                    .unwrap_or_default();
                so_far.month_scope2_without_ems_kg = recs
                    .iter()
                    .filter(|r| r.start >= month_start && r.start < running_start)
                    .map(|r| {
                        stored
                            .get(&r.start)
                            .copied()
                            .unwrap_or_else(|| r.import_without_ems_kwh(eta_in))
                            * factor
                    })
                    .sum();
                so_far
            }
            Err(e) => {
                tracing::warn!(error = %e, "the month's and year's records could not be read; 0 assumed");
                pedf_core::records::PeriodSoFar::default()
            }
        }
    };
    let mut month_peak_kw = so_far.month_peak_kw;
    let mut month_scope2_kg = so_far.month_scope2_kg;
    let mut month_without_ems_kg = so_far.month_scope2_without_ems_kg;
    let mut month_consumption_kwh = so_far.month_consumption_kwh;
    let mut year_scope2_kg = so_far.year_scope2_kg;
    let mut year = pedf_core::park::BudgetPeriod::Year
        .bounds(&park.clock, time.now())
        .0;
    let demand = park.tariff.demand;
    // EV sessions on the chargers that report whether a car is there, and the park without the
    // EMS alongside (cars charged on arrival) for the month's Scope 2 without it.
    let mut sessions = crate::sessions::Sessions::new();
    let mut without = pedf_core::records::WithoutEms::new();
    let session_defaults = |asset: &str| {
        let c = park.ev_chargers.iter().find(|c| c.id == asset);
        crate::sessions::Defaults {
            session_kwh: c.map_or(0.0, |c| c.session_kwh),
            session_hours: c.map_or(0.0, |c| c.session_hours),
            max_kw: c.map_or(0.0, |c| c.max_power.0),
        }
    };
    // Devices whose sessions are tracked (their park charger has a default session).
    let tracked: Vec<String> = controlled
        .iter()
        .filter(|c| c.capability == Capability::EvCharger)
        .filter(|c| session_defaults(&c.asset).session_kwh > 0.0)
        .map(|c| c.id.clone())
        .collect();
    let cycle_h = cfg.cycle_ms as f64 / 3.6e6;
    // Curtailable loads: each one's demand when not held (measured while its cap is above
    // what it draws) and the cap written last (None: unrestricted).
    let mut free_kw: BTreeMap<String, f64> = BTreeMap::new();
    let mut caps: BTreeMap<String, f64> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.cycle_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut active_plan: Option<ActivePlan> = None;
    // The first cycle starts on a full process image: each device read once (answering or
    // not), waiting no longer than the devices' values would take to go stale.
    let first_read_bound = Duration::from_millis(
        set.devices
            .devices
            .iter()
            .map(|d| d.stale_after_ms)
            .max()
            .unwrap_or(0),
    )
    .div_f64(time.speed())
    .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let unit_ids: Vec<String> = units.keys().cloned().collect();
    // A shutdown asked meanwhile is taken (polling it also installs the signal handlers).
    let unread = tokio::select! {
        _ = &mut shutdown => None,
        unread = image.first_reads(&unit_ids, first_read_bound) => Some(unread),
    };
    let stopping = unread.is_none();
    let unread = unread.unwrap_or_default();
    store
        .event(
            time.now(),
            "info",
            "run",
            &format!(
                "pedf run started for {} with {} devices",
                park.id,
                set.devices.devices.len()
            ),
        )
        .map_err(|e| e.to_string())?;
    if !unread.is_empty() {
        let _ = store.event(
            time.now(),
            "warning",
            "devices",
            &format!(
                "not read before the first cycle (control starts without them): {}",
                unread.join(", ")
            ),
        );
    }
    let mut timing = pedf_core::live::CycleTiming::default();
    loop {
        if stopping {
            break;
        }
        let scheduled = tokio::select! {
            _ = &mut shutdown => break,
            at = tick.tick() => at,
        };
        let now = time.now();
        let work_started = std::time::Instant::now();
        let lag_ms = work_started
            .saturating_duration_since(scheduled.into_std())
            .as_secs_f64()
            * 1e3;
        let mut faults: Vec<String> = Vec::new();
        // Snapshot: the controller is alive; the process image as it is now.
        heartbeat.beat(now);
        let states = image.snapshot();
        // Snapshot.
        let good = |cap: Capability, f: Field| -> f64 {
            states
                .values()
                .filter(|s| s.capability == cap)
                .filter_map(|s| s.good(f, now))
                .sum::<f64>()
                + 0.0 // an empty sum is -0.0
        };
        let pv = good(Capability::PvInverter, Field::PowerKw);
        // Each battery that answers with its SoC, by park asset; the controller sees them
        // pooled and their setpoints are its share of the park's.
        let batteries_now: Vec<(String, BatteryNow)> = controlled
            .iter()
            .filter(|c| c.capability == Capability::Battery)
            .filter_map(|c| {
                let s = states.get(&c.id)?;
                let unit = battery_units.iter().find(|u| u.id == c.asset);
                Some((
                    c.asset.clone(),
                    BatteryNow {
                        soc_pct: s.good(Field::SocPct, now)?,
                        max_charge_kw: s
                            .good(Field::MaxChargeKw, now)
                            .or(unit.map(|u| u.max_charge_kw))
                            .unwrap_or(0.0),
                        max_discharge_kw: s
                            .good(Field::MaxDischargeKw, now)
                            .or(unit.map(|u| u.max_discharge_kw))
                            .unwrap_or(0.0),
                    },
                ))
            })
            .collect();
        let battery = pool_batteries(&battery_units, &batteries_now);
        let battery_kw = good(Capability::Battery, Field::PowerKw);
        let ev_now = good(Capability::EvCharger, Field::PowerKw);
        let grid_meter = states
            .values()
            .find(|s| s.capability == Capability::Meter)
            .and_then(|s| s.good(Field::PowerKw, now));
        let load = match grid_meter {
            Some(g) => (pv
                + battery_kw
                + if g >= 0.0 {
                    g * limits.eta_in
                } else {
                    g / limits.eta_out
                }
                - ev_now)
                .max(0.0),
            None => good(Capability::DcLoad, Field::PowerKw),
        };
        // Sessions: arrivals and departures from the chargers' states.
        let readings: Vec<_> = controlled
            .iter()
            .filter(|c| tracked.contains(&c.id))
            .map(|c| {
                let st = states.get(&c.id);
                (
                    c.id.clone(),
                    c.asset.clone(),
                    session_defaults(&c.asset),
                    crate::sessions::Reading {
                        state: st.and_then(|s| s.good(Field::ChargerState, now)),
                        session_kwh: st.and_then(|s| s.good(Field::SessionKwh, now)),
                        power_kw: st.and_then(|s| s.good(Field::PowerKw, now)).unwrap_or(0.0),
                    },
                )
            })
            .collect();
        for change in sessions.update(now, &readings) {
            match change {
                crate::sessions::Change::Arrived(s) => {
                    without.arrive(&s.device, s.requested_kwh, s.max_kw);
                    let _ = store.event(
                        now,
                        "info",
                        "ev",
                        &format!(
                            "car on {}: asks {:.1} kWh by {} (the park's default session)",
                            s.charger,
                            s.requested_kwh,
                            park.clock.format(s.departure)
                        ),
                    );
                    if let Some(rp) = replanner.as_mut() {
                        rp.request(format!("a car arrived on {}", s.charger));
                    }
                }
                crate::sessions::Change::Departed(s) => {
                    without.depart(&s.device, Some(s.delivered_kwh));
                    let short = s.owed_kwh();
                    let severity = if short > 0.01 && now >= s.departure {
                        "warning"
                    } else {
                        "info"
                    };
                    let _ = store.event(
                        now,
                        severity,
                        "ev",
                        &format!(
                            "car left {}: {:.1} of {:.1} kWh in {:.1} h{}",
                            s.charger,
                            s.delivered_kwh,
                            s.requested_kwh,
                            (now - s.arrival).num_seconds() as f64 / 3600.0,
                            if short <= 0.01 {
                                String::new()
                            } else if now >= s.departure {
                                format!(", {short:.1} kWh short")
                            } else {
                                " (before its expected departure)".to_string()
                            }
                        ),
                    );
                }
            }
        }
        // Operators' orders on the sessions (what a car needs, when it leaves).
        while let Some(order) = io.orders.as_mut().and_then(|rx| rx.try_recv().ok()) {
            let outcome = sessions.apply(now, &order);
            let (severity, message, result) = match &outcome {
                Ok(s) => (
                    "info",
                    format!(
                        "session on {} set by {}: {:.1} kWh by {} ({})",
                        s.charger,
                        order.by,
                        s.requested_kwh,
                        park.clock.format(s.departure),
                        order.reason
                    ),
                    "accepted".to_string(),
                ),
                Err(e) => (
                    "warning",
                    format!(
                        "session order for {} by {} refused: {e}",
                        order.charger, order.by
                    ),
                    format!("refused: {e}"),
                ),
            };
            let _ = store.event(now, severity, "ev", &message);
            let _ = store.audit(
                now,
                &order.charger,
                &order.by,
                &format!("session: {}", order.reason),
                order.energy_kwh.unwrap_or(0.0),
                None,
                None,
                &result,
            );
            if outcome.is_ok() {
                if let Some(rp) = replanner.as_mut() {
                    rp.request(format!("the session on {} was changed", order.charger));
                }
            }
        }
        let chargers: Vec<ChargerNow> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| {
                let max_kw = c.policy.limits.max;
                ChargerNow {
                    id: c.id.clone(),
                    wanted_kw: states
                        .get(&c.id)
                        .and_then(|s| s.good(Field::PowerKw, now))
                        .unwrap_or(0.0),
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw,
                    // What the session needs now to finish by its departure.
                    must_kw: sessions.on(&c.id).map_or(0.0, |s| {
                        pedf_control::ev_must_kw(
                            s.owed_kwh(),
                            s.max_kw.min(max_kw),
                            s.hours_left(now),
                            cycle_h,
                        )
                    }),
                }
            })
            .collect();
        // Deferrable loads the plan schedules.
        let loads: Vec<LoadNow> = controlled
            .iter()
            .filter(|c| c.deferrable.is_some())
            .filter_map(|c| {
                Some(LoadNow {
                    id: c.id.clone(),
                    kw: states.get(&c.id)?.good(Field::PowerKw, now)?,
                    min_kw: c.policy.limits.min.max(0.0),
                    max_kw: c.policy.limits.max,
                })
            })
            .collect();
        if month_of(now) != month {
            month = month_of(now);
            month_peak_kw = 0.0;
            month_scope2_kg = 0.0;
            month_without_ems_kg = 0.0;
            month_consumption_kwh = 0.0;
        }
        let this_year = pedf_core::park::BudgetPeriod::Year
            .bounds(&park.clock, now)
            .0;
        if this_year != year {
            year = this_year;
            year_scope2_kg = 0.0;
        }
        // The peak guard: what keeps the running interval's (the demand window's) average import
        // at the level the month's peak so far allows. None before the month has a level (its
        // first intervals, no target): there is no peak yet to protect.
        let level = demand.free_up_to(month_peak_kw);
        let import_guard_kw = (demand.marginal_rate() > 0.0 && level > 0.0).then(|| {
            let running = integrator.running();
            let start = running.as_ref().map_or(now, |r| r.start);
            pedf_control::window_allowance(
                level,
                interval_h * 3600.0,
                (now - start).num_milliseconds() as f64 / 1000.0,
                running.map_or(0.0, |r| r.grid_import_kwh),
            )
        });
        // The plan names loads by asset; the controller by device.
        let plan = plan_target(&store, &park, now, &mut active_plan, &mut faults).map(
            |(mut target, label, shed)| {
                target.ev_kw = controlled
                    .iter()
                    .filter(|c| c.capability == Capability::EvCharger)
                    .filter_map(|c| {
                        let kw = target.ev_kw.iter().find(|(id, _)| *id == c.asset)?.1;
                        Some((c.id.clone(), kw))
                    })
                    .collect();
                target.loads_kw = controlled
                    .iter()
                    .filter_map(|c| {
                        let a = c.deferrable.as_ref()?;
                        let kw = target.loads_kw.iter().find(|(id, _)| id == a)?.1;
                        Some((c.id.clone(), kw))
                    })
                    .collect();
                (target, label, shed)
            },
        );
        let mode = io
            .mode
            .as_ref()
            .map_or(Mode::Automatic, |m| m.borrow().clone());
        // Curtailable loads: their demand when not held, the plan's shed shared over them by
        // demand (never above a load's sheddable share), and the room left for the peak guard.
        // The load the controller sees is the demand without last cycle's caps, less the
        // plan's shed.
        let mut curtailable: Vec<(String, f64, f64, f64)> = Vec::new(); // id, free, share, plan shed
        let mut uncapped_extra = 0.0;
        for c in controlled.iter().filter(|c| c.curtailable.is_some()) {
            let measured = states.get(&c.id).and_then(|s| s.good(Field::PowerKw, now));
            if let Some(m) = measured {
                let free = match caps.get(&c.id) {
                    // Drawing below its cap: that is its demand.
                    Some(cap) if m >= cap - 0.5 => {
                        free_kw.get(&c.id).copied().unwrap_or(m).max(*cap)
                    }
                    _ => m,
                };
                free_kw.insert(c.id.clone(), free);
                uncapped_extra += (free - m).max(0.0);
            }
            if let Some(&free) = free_kw.get(&c.id) {
                curtailable.push((c.id.clone(), free, c.curtailable.unwrap_or(0.0), 0.0));
            }
        }
        let plan_shed = match (&mode, &plan) {
            (Mode::Automatic, Some(p)) => p.2,
            _ => 0.0,
        };
        let total_free: f64 = curtailable.iter().map(|c| c.1).sum();
        for c in &mut curtailable {
            c.3 = (plan_shed * c.1 / total_free.max(1e-9))
                .min(c.2 * c.1)
                .max(0.0);
        }
        let planned_shed: f64 = curtailable.iter().map(|c| c.3).sum();
        let snapshot = Snapshot {
            pv_available_kw: pv,
            load_kw: (load + uncapped_extra - planned_shed).max(0.0),
            chargers,
            battery,
            loads,
            curtailable_kw: curtailable
                .iter()
                .map(|c| c.2 * c.1 - c.3)
                .sum::<f64>()
                .max(0.0),
            import_guard_kw,
        };
        let out = control(&limits, &snapshot, plan.as_ref().map(|p| &p.0), &mode);
        // Each curtailable load's cap: its demand less the plan's shed and its part of the
        // guard's (by the room each has); none (its maximum, unrestricted) when nothing is
        // shed. Written when it changes, and once to lift it.
        let mut guard_left = out.shed_kw;
        let room_total: f64 = curtailable.iter().map(|c| c.2 * c.1 - c.3).sum();
        let mut cap_writes: BTreeMap<String, f64> = BTreeMap::new();
        for (id, free, share, planned) in &curtailable {
            let room = (share * free - planned).max(0.0);
            let g = (out.shed_kw * room / room_total.max(1e-9))
                .min(room)
                .min(guard_left);
            guard_left -= g;
            let shed = planned + g;
            let max = controlled
                .iter()
                .find(|c| c.id == *id)
                .map_or(*free, |c| c.policy.limits.max);
            if shed > 0.01 {
                let cap = (free - shed).max(0.0);
                if caps.get(id).is_none_or(|old| (old - cap).abs() > 0.5) {
                    if !caps.contains_key(id) {
                        let _ = store.event(
                            now,
                            "info",
                            "control",
                            &format!(
                                "{id} capped at {cap:.1} kW: {shed:.1} kW of its demand shed ({})",
                                if g > 0.01 { "peak guard" } else { "plan" }
                            ),
                        );
                    }
                    caps.insert(id.clone(), cap);
                    cap_writes.insert(id.clone(), cap);
                }
            } else if caps.remove(id).is_some() {
                let _ = store.event(now, "info", "control", &format!("{id}: cap lifted"));
                cap_writes.insert(id.clone(), max);
            }
        }
        // Apply: each unit gets its setpoint (written through its safe control; a device that
        // does not answer is held in its safe state by its unit's watchdog).
        let battery_shares = share_battery_power(out.battery_kw, &battery_units, &batteries_now);
        // The audit names the mode the setpoint came from.
        let reason = match &mode {
            Mode::Automatic => "automatic cycle",
            Mode::Manual { .. } => "manual mode (operator's battery setpoint)",
            Mode::Safe => "safe mode",
        };
        for c in &controlled {
            let value = match c.capability {
                Capability::Battery => battery_shares
                    .iter()
                    .find(|(id, _)| *id == c.asset)
                    .map(|(_, kw)| *kw),
                Capability::EvCharger => out
                    .chargers
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw),
                // A scheduled load gets the plan's power; a curtailable one its cap.
                Capability::DcLoad => out
                    .loads
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw)
                    .or_else(|| cap_writes.get(&c.id).copied()),
                Capability::PvInverter => Some(if out.pv_kw + 1e-6 < snapshot.pv_available_kw {
                    100.0 * out.pv_kw / park.pv_peak_power().0.max(1e-9)
                } else {
                    100.0
                }),
                _ => None,
            };
            if let (Some(value), Some(unit)) = (value, units.get(&c.id)) {
                unit.order(Order {
                    value,
                    by: "controller".into(),
                    reason: reason.into(),
                });
            }
        }
        // Store: samples, alarms, audit.
        let mut samples = Vec::new();
        for s in states.values() {
            samples_of(s, now, &mut samples);
        }
        summary.samples += samples.len() as u64;
        if let Err(e) = store.insert_samples(&samples) {
            tracing::error!(error = %e, "samples not stored; control goes on");
            faults.push(format!("samples not stored: {e}"));
        }
        if let Some(k) = &sink {
            if !k.send(samples.clone()) {
                faults.push("InfluxDB sink queue full: this cycle's samples not sent".into());
            }
        }
        for a in &out.alarms {
            summary.alarms += 1;
            let _ = store.event(now, "alarm", "control", a);
        }
        for u in units.values() {
            summary.setpoints += store_audit(&mut store, u.take_audit());
        }
        // The park now: flows from the measurements, energy records, today's figures.
        let converter_dc_kw;
        let grid_kw;
        match grid_meter {
            Some(g) => {
                grid_kw = g;
                converter_dc_kw = if g >= 0.0 {
                    g * limits.eta_in
                } else {
                    g / limits.eta_out
                };
            }
            None => {
                converter_dc_kw = load + ev_now - pv - battery_kw;
                grid_kw = if converter_dc_kw >= 0.0 {
                    converter_dc_kw / limits.eta_in
                } else {
                    converter_dc_kw * limits.eta_out
                };
            }
        }
        let flows = Flows {
            pv_kw: pv,
            pv_available_kw: snapshot.pv_available_kw,
            battery_kw,
            soc_pct: snapshot.battery.as_ref().map(|b| b.soc_pct),
            load_kw: load,
            ev_kw: ev_now,
            converter_dc_kw,
            grid_kw,
            grid_measured: grid_meter.is_some(),
        };
        let chargers_live: Vec<ChargerLive> = controlled
            .iter()
            .filter(|c| c.capability == Capability::EvCharger)
            .map(|c| ChargerLive {
                id: c.id.clone(),
                kw: states
                    .get(&c.id)
                    .and_then(|s| s.good(Field::PowerKw, now))
                    .unwrap_or(0.0),
                setpoint_kw: out
                    .chargers
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, kw)| *kw),
                session: sessions.on(&c.id).map(|s| crate::live::SessionLive {
                    arrival: s.arrival,
                    departure: s.departure,
                    requested_kwh: s.requested_kwh,
                    delivered_kwh: s.delivered_kwh,
                }),
            })
            .collect();
        // Intraday re-planning (automatic mode only), off the control path.
        if let Some(rp) = replanner.as_mut() {
            if let Some(o) = rp.poll() {
                match o.plan {
                    Ok((plan, strategy)) => {
                        let stored = serde_json::to_string(&plan)
                            .map_err(|e| e.to_string())
                            .and_then(|json| {
                                store
                                    .put_plan(now, &o.day.to_string(), &strategy, &json)
                                    .map_err(|e| e.to_string())
                            })
                            .and_then(|id| {
                                store.activate_plan(id).map_err(|e| e.to_string())?;
                                Ok(id)
                            });
                        match stored {
                            Ok(id) => {
                                let severity = if strategy.starts_with("rule, fallback") {
                                    "alarm"
                                } else {
                                    "info"
                                };
                                let _ = store.event(
                                    now,
                                    severity,
                                    "plan",
                                    &format!(
                                        "re-planned ({}): plan #{id} ({strategy}) active",
                                        o.why
                                    ),
                                );
                                replan_note = None;
                            }
                            Err(e) => replan_note = Some(format!("re-plan not stored: {e}")),
                        }
                    }
                    Err(e) => {
                        let _ = store.event(
                            now,
                            "alarm",
                            "plan",
                            &format!("re-plan failed ({}): {e}", o.why),
                        );
                        replan_note = Some(format!("re-plan failed: {e}"));
                    }
                }
            } else if mode == Mode::Automatic {
                let plan_grid = plan
                    .as_ref()
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw);
                if let Some(why) = rp.due(now, grid_kw, plan_grid) {
                    let stored = snapshot
                        .battery
                        .as_ref()
                        .map(|b| b.soc_pct / 100.0 * park.battery_capacity().0);
                    let month = crate::replan::MonthSoFar {
                        peak_kw: month_peak_kw,
                        scope2_kg: month_scope2_kg,
                        scope2_without_ems_kg: month_without_ems_kg,
                        consumption_kwh: month_consumption_kwh,
                        year_scope2_kg,
                    };
                    rp.start(now, stored, month, sessions.open().cloned().collect(), why);
                }
            }
        }
        if let Some(n) = &replan_note {
            faults.push(n.clone());
        }
        if let Some(closed) = integrator.add(now, &flows, &chargers_live) {
            if pedf_core::park::BudgetPeriod::Year
                .bounds(&park.clock, closed.start)
                .0
                == year
            {
                year_scope2_kg += closed.grid_import_kwh * factor;
            }
            if month_of(closed.start) == month {
                month_peak_kw = month_peak_kw.max(closed.grid_import_kwh / interval_h);
                month_scope2_kg += closed.grid_import_kwh * factor;
                month_consumption_kwh += closed.load_kwh + closed.ev_kwh;
                // Without the EMS: the tracked chargers' cars on arrival (alongside), the
                // others' as they charged.
                let untracked_ev: f64 = closed
                    .ev_chargers
                    .iter()
                    .filter(|(id, _)| !tracked.contains(id))
                    .map(|(_, kwh)| kwh)
                    .sum();
                let untracked_ev = if tracked.is_empty() {
                    closed.ev_kwh
                } else {
                    untracked_ev
                };
                let (imp, _) = without.interval(
                    interval_h,
                    closed.load_kwh + untracked_ev,
                    closed.pv_kwh,
                    eta_in,
                );
                month_without_ems_kg += imp * factor;
                if let Err(e) = store.put_without_ems(closed.start, imp) {
                    tracing::error!(error = %e, "the interval's import without the EMS not stored");
                }
            }
            if let Err(e) = store.put_records(std::slice::from_ref(&closed), "measured") {
                tracing::error!(error = %e, "interval record not stored");
                faults.push(format!("interval record not stored: {e}"));
            }
            day_records.push(closed);
        }
        // Publish: the park now, with the cycle's work time and lag (the work is done: the
        // phases above).
        let work_ms = work_started.elapsed().as_secs_f64() * 1e3;
        timing.work.add(work_ms);
        timing.lag.add(lag_ms);
        if let Some(tx) = &io.live {
            let day_start = park
                .clock
                .start_of_local_day(park.clock.local(now).date_naive());
            day_records.retain(|r| r.start >= day_start);
            let mut recs = day_records.clone();
            recs.extend(integrator.running());
            let devices = set
                .devices
                .devices
                .iter()
                .map(|d| {
                    let st = states.get(&d.id);
                    let quality = match st {
                        None => "none",
                        Some(s) if s.last_error.is_some() => "bad",
                        Some(s) => match s.last_ok {
                            None => "none",
                            Some(t) if (now - t).to_std().unwrap_or_default() > s.stale_after => {
                                "stale"
                            }
                            Some(_) => "good",
                        },
                    };
                    DeviceLive {
                        id: d.id.clone(),
                        capability: d.capability.name().to_string(),
                        quality: quality.into(),
                        last_ok: st.and_then(|s| s.last_ok),
                        error: st.and_then(|s| s.last_error.clone()),
                    }
                })
                .collect();
            let control = park.carbon.control;
            let month_live = crate::live::MonthLive {
                peak_import_kw: month_peak_kw,
                demand_free_up_to_kw: demand.free_up_to(month_peak_kw),
                scope2_kg: month_scope2_kg,
                scope2_without_ems_kg: month_without_ems_kg,
                consumption_kwh: month_consumption_kwh,
                year_scope2_kg,
                budgets: [
                    (
                        control.monthly_budget_t,
                        pedf_core::park::BudgetPeriod::Month,
                        month_scope2_kg,
                    ),
                    (
                        control.annual_budget_t,
                        pedf_core::park::BudgetPeriod::Year,
                        year_scope2_kg,
                    ),
                ]
                .into_iter()
                .filter_map(|(b, period, used)| {
                    Some(
                        pedf_core::park::BudgetStatus::at(period, &park.clock, b?, used, now)
                            .into(),
                    )
                })
                .collect(),
                intensity_target_kg_per_kwh: control.intensity_kg_per_kwh,
                no_more_than_without_ems: control.no_more_than_without_ems,
            };
            let live = Live {
                month: month_live,
                park_id: park.id.clone(),
                park_name: park.name.clone(),
                park_name_zh: park.name_zh.clone(),
                at: Some(now),
                cycle: summary.cycles + 1,
                cycle_work_ms: work_ms,
                cycle_lag_ms: lag_ms,
                timing: timing.clone(),
                mode: Some(ModeView::from(&mode)),
                strategy: match &mode {
                    Mode::Safe => "safe state (every device at its safe value)".to_string(),
                    Mode::Manual { .. } => "manual battery setpoint".to_string(),
                    Mode::Automatic => plan.as_ref().map_or_else(
                        || "self-consumption (no active plan)".to_string(),
                        |p| p.1.clone(),
                    ),
                },
                plan_grid_kw: plan
                    .as_ref()
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw),
                flows,
                chargers: chargers_live,
                tariff: tariff_now(&park, now),
                battery_capacity_kwh: park.battery_capacity().0,
                grid_factor_kg_per_kwh: park.carbon.grid_factor.value.0,
                today: today(&park, &recs, now),
                devices,
                alarms: out.alarms.clone(),
                faults,
            };
            tx.send_replace(Arc::new(live));
        }
        let minute = minute_of(now);
        if minute > aggregated_to {
            match store.aggregate_minutes(aggregated_to, minute) {
                Ok(_) => aggregated_to = minute,
                Err(e) => tracing::error!(error = %e, "1-minute aggregates not made"),
            }
        }
        summary.cycles += 1;
        if summary.cycles % 60 == 0 {
            let _ = store.prune_samples(now - chrono::Duration::days(cfg.retention_days));
        }
    }
    // Shutdown: every controllable device to its safe state, then flush.
    let now = time.now();
    let _ = store.aggregate_minutes(aggregated_to, now + chrono::Duration::milliseconds(1));
    if let Some(partial) = integrator.finish() {
        let _ = store.put_records(&[partial], "measured-partial");
    }
    // Every unit stops at once; the controllable ones write their safe value first.
    summary.not_made_safe = controlled
        .iter()
        .filter(|c| !units.contains_key(&c.id))
        .map(|c| c.id.clone())
        .collect();
    let mut stops = tokio::task::JoinSet::new();
    for (id, mut unit) in std::mem::take(&mut units) {
        stops.spawn(async move {
            // A device that does not take its safe state within the bound is left to its own
            // fail-safe (and named), rather than holding up the shutdown for its link timeout.
            let outcome = tokio::time::timeout(SHUTDOWN_BOUND, unit.stop("shutdown"))
                .await
                .unwrap_or_else(|_| {
                    Some(Err(pedf_devices::device::DeviceError::Link(
                        pedf_devices::modbus::LinkError::Timeout(SHUTDOWN_BOUND.as_millis() as u64),
                    )))
                });
            (id, outcome, unit.take_audit())
        });
    }
    let mut stopped = Vec::new();
    while let Some(r) = stops.join_next().await {
        stopped.extend(r.ok());
    }
    stopped.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, outcome, audit) in stopped {
        if matches!(outcome, Some(Err(_))) {
            summary.not_made_safe.push(id);
        }
        summary.setpoints += store_audit(&mut store, audit);
    }
    // In the device list's order.
    summary
        .not_made_safe
        .sort_by_key(|id| controlled.iter().position(|c| c.id == *id));
    let message = if summary.not_made_safe.is_empty() {
        "pedf run stopped; devices in their safe state".to_string()
    } else {
        format!(
            "pedf run stopped; not reached for the safe state: {}",
            summary.not_made_safe.join(", ")
        )
    };
    let _ = store.event(now, "info", "run", &message);
    if let Some(k) = &sink {
        let st = k.stop().await;
        if st.buffered_segments > 0 {
            let _ = store.event(
                now,
                "warning",
                "influx",
                &format!(
                    "InfluxDB: {} buffer segment(s) wait on disk for the next run ({})",
                    st.buffered_segments,
                    st.last_error.unwrap_or_default()
                ),
            );
        }
    }
    if let Some(h) = &hub {
        // Graceful: the safe-state commands queued above go out before the disconnect.
        h.shutdown().await;
    }
    Ok(summary)
}
