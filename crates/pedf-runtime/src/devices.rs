//! The park's devices as the runtime drives them: a unit per device (Modbus and MQTT alike,
//! `pedf_devices::unit`), the process image they fill, the heartbeat their watchdogs watch,
//! and what the controller needs of each controllable one (its park asset, its role, its
//! limits and safe value).

use std::collections::BTreeMap;
use std::time::Duration;

use pedf_core::Park;
use pedf_devices::capability::Capability;
use pedf_devices::control::{
    default_safe_value, park_limits, AuditEvent, Limits as SetLimits, Policy, SafeControl,
};
use pedf_devices::device::{DeviceError, ModbusDevice};
use pedf_devices::modbus::{Endpoint, LinkError, LinkOptions, ModbusLink};
use pedf_devices::mqtt::{MqttDeviceSpec, MqttHub};
use pedf_devices::template::{DeviceSet, TransportKind};
use pedf_devices::unit::{Heartbeat, ProcessImage, Unit};

use crate::config::RunConfig;

/// How long shutdown waits for a device to take its safe state.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// A controllable device as the controller sees it.
pub(crate) struct Controlled {
    pub(crate) id: String,
    pub(crate) capability: Capability,
    /// The park asset it is (device file `asset`, else its id): the plan's name for it.
    pub(crate) asset: String,
    /// The share of its demand that may be shed, when it is a curtailable flexible load of
    /// the park (its setpoint is then a cap: it draws its demand below it).
    pub(crate) curtailable: Option<f64>,
    /// The deferrable flexible load of the park it serves (device file `asset`), which the
    /// plan schedules.
    pub(crate) deferrable: Option<String>,
    /// Its limits and safe value (its `SafeControl` lives in its unit).
    pub(crate) policy: Policy,
}

/// Every device in its unit, and the controllable ones' roles.
pub(crate) struct Devices {
    /// By device id.
    pub(crate) units: BTreeMap<String, Unit>,
    pub(crate) image: ProcessImage,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) hub: Option<MqttHub>,
    /// The OCPP central system, when the device list has chargers on an `ocpp` connection.
    pub(crate) ocpp: Option<pedf_devices::ocpp::OcppHub>,
    /// In the device list's order.
    pub(crate) controlled: Vec<Controlled>,
    /// How long the first cycle waits for every device's first read: the largest staleness
    /// time, in real time, 1-10 s.
    pub(crate) first_read_bound: Duration,
}

/// Starts a unit per device of `set`: Modbus devices polled on their own period, MQTT devices
/// taken from one hub once a cycle; the controllable ones with their safe control (limits of
/// the device and the park, ramp, safe value, watchdog).
pub(crate) fn start(cfg: &RunConfig, park: &Park, set: &DeviceSet) -> Result<Devices, String> {
    let time = cfg.time;
    // Devices.
    let mut links: BTreeMap<String, ModbusLink> = BTreeMap::new();
    let mut modbus: Vec<ModbusDevice> = Vec::new();
    let mut mqtt_specs = Vec::new();
    let mut mqtt_addr: Option<String> = None;
    // DL/T 645 buses: one request at a time on each, shared by its meters.
    let mut meter_buses: BTreeMap<String, std::sync::Arc<pedf_devices::dlt645::Dlt645Link>> =
        BTreeMap::new();
    let mut meters: Vec<pedf_devices::dlt645::Dlt645Device> = Vec::new();
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
            TransportKind::Ocpp => None,
            TransportKind::Dlt645Tcp | TransportKind::Dlt645Serial => {
                let endpoint = match c.kind {
                    TransportKind::Dlt645Tcp => c
                        .address
                        .as_deref()
                        .and_then(|a| a.parse().ok())
                        .map(pedf_devices::dlt645::Endpoint::Tcp),
                    _ => Some(pedf_devices::dlt645::Endpoint::Serial {
                        path: c.path.clone().unwrap_or_default(),
                        baud: c.baud.unwrap_or(2400),
                    }),
                };
                if let Some(e) = endpoint {
                    meter_buses.insert(
                        c.id.clone(),
                        pedf_devices::dlt645::Dlt645Link::new(e, opts.timeout),
                    );
                }
                None
            }
        };
        if let Some(e) = endpoint {
            links.insert(c.id.clone(), ModbusLink::new(e, opts));
        }
    }
    let ocpp_conns: Vec<&str> = set
        .devices
        .connections
        .iter()
        .filter(|c| c.kind == TransportKind::Ocpp)
        .map(|c| c.id.as_str())
        .collect();
    let mut ocpp_devices: Vec<&pedf_devices::template::DeviceConfig> = Vec::new();
    for d in &set.devices.devices {
        if ocpp_conns.contains(&d.connection.as_str()) {
            ocpp_devices.push(d);
            continue;
        }
        if let Some(bus) = meter_buses.get(&d.connection) {
            let address = d
                .meter_address
                .as_deref()
                .map(pedf_devices::dlt645::Address::parse)
                .transpose()?
                .ok_or_else(|| {
                    format!("device `{}`: a DL/T 645 meter needs `meter_address`", d.id)
                })?;
            meters.push(pedf_devices::dlt645::Dlt645Device::new(
                &d.id,
                address,
                (d.ct_ratio.unwrap_or(1.0), d.pt_ratio.unwrap_or(1.0)),
                bus.clone(),
                Duration::from_millis(d.poll_ms.max(1)),
                Duration::from_millis(d.stale_after_ms),
            ));
            continue;
        }
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

    let ocpp = match (&cfg.ocpp, ocpp_devices.is_empty()) {
        (_, true) => None,
        (None, false) => {
            return Err(format!(
                "device `{}` is on an OCPP connection: the run file needs an [ocpp] table with its charger",
                ocpp_devices[0].id
            ))
        }
        (Some(o), false) => {
            let config = o.config()?;
            let mapped: Vec<&str> = config
                .chargers
                .iter()
                .flat_map(|c| c.connectors.iter().map(|k| k.device.as_str()))
                .collect();
            for d in &ocpp_devices {
                if !mapped.contains(&d.id.as_str()) {
                    return Err(format!(
                        "device `{}` is on an OCPP connection but no [[ocpp.charger]] has it among its connectors",
                        d.id
                    ));
                }
            }
            if let Some(m) = mapped
                .iter()
                .find(|m| !ocpp_devices.iter().any(|d| d.id == **m))
            {
                return Err(format!(
                    "[ocpp] connector device `{m}` is not a device on an OCPP connection of the device list"
                ));
            }
            Some(pedf_devices::ocpp::OcppHub::start(config, time)?)
        }
    };

    // Safe control of every controllable device.
    let mut controlled: Vec<Controlled> = Vec::new();
    for d in &set.devices.devices {
        let Some(_) = d.capability.setpoint() else {
            continue;
        };
        let asset = d.asset.clone().unwrap_or_else(|| d.id.clone());
        let park_l =
            park_limits(park, &asset, d.capability).unwrap_or(SetLimits { min: 0.0, max: 0.0 });
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
    for d in meters {
        let id = d.state().id.clone();
        let unit = Unit::spawn(&id, d, None, image.clone(), heartbeat.clone(), time);
        units.insert(id, unit);
    }
    if let Some(h) = &hub {
        for id in &mqtt_ids {
            let device = h.device(id).with_period(cfg.cycle().1);
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
    if let Some(h) = &ocpp {
        for d in &ocpp_devices {
            let Some(device) = h.device(&d.id, Duration::from_millis(d.stale_after_ms)) else {
                continue;
            };
            let device = device.with_period(cfg.cycle().1);
            let unit = Unit::spawn(
                &d.id,
                device,
                control_of(&d.id),
                image.clone(),
                heartbeat.clone(),
                time,
            );
            units.insert(d.id.clone(), unit);
        }
    }
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
    Ok(Devices {
        units,
        image,
        heartbeat,
        hub,
        ocpp,
        controlled,
        first_read_bound,
    })
}

impl Devices {
    /// The audit of every unit's writes since the last call.
    pub(crate) fn take_audit(&self) -> Vec<AuditEvent> {
        self.units.values().flat_map(Unit::take_audit).collect()
    }

    /// Stops every unit at once, each controllable one writing its safe value first; returns
    /// the controllable devices not made safe (in the device list's order) and the last audit.
    /// A device that does not take its safe state within 5 s is left to its own fail-safe
    /// (and named) rather than holding up the shutdown for its link timeout.
    pub(crate) async fn stop(&mut self) -> (Vec<String>, Vec<AuditEvent>) {
        let mut not_made_safe: Vec<String> = self
            .controlled
            .iter()
            .filter(|c| !self.units.contains_key(&c.id))
            .map(|c| c.id.clone())
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for (id, mut unit) in std::mem::take(&mut self.units) {
            stops.spawn(async move {
                let outcome = tokio::time::timeout(SHUTDOWN_BOUND, unit.stop("shutdown"))
                    .await
                    .unwrap_or_else(|_| {
                        Some(Err(DeviceError::Link(LinkError::Timeout(
                            SHUTDOWN_BOUND.as_millis() as u64,
                        ))))
                    });
                (id, outcome, unit.take_audit())
            });
        }
        let mut audit = Vec::new();
        while let Some(r) = stops.join_next().await {
            if let Ok((id, outcome, a)) = r {
                if matches!(outcome, Some(Err(_))) {
                    not_made_safe.push(id);
                }
                audit.extend(a);
            }
        }
        not_made_safe.sort_by_key(|id| self.controlled.iter().position(|c| c.id == *id));
        audit.sort_by_key(|a| a.at);
        (not_made_safe, audit)
    }
}
