//! Devices as data: register-map templates (`config/devices/templates/*.toml`) and the device
//! list of a park (`config/devices/*.toml`).
//!
//! Template: `[template]` (name, capability, word order, whether SunSpec sentinels apply),
//! `[[point]]` per field (table, address, type, word order, scale or scale-factor register,
//! unit, invert), and an optional `[setpoint]` (register, type, scale, range, read-back
//! register). Device list: `[[connection]]` (Modbus TCP address or RTU serial port) and
//! `[[device]]` (id, capability, connection, unit id, template or `sunspec = true`, polling,
//! staleness, ramp rate, safe value). Errors name the file, line and column or the field path.

use std::collections::{BTreeMap, BTreeSet};

use pedf_core::config::SourceMap;
use serde::Deserialize;

use crate::capability::{Capability, Field, Setpoint};
use crate::codec::{RegType, WordOrder};

/// A template or device-list problem, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
    /// What is wrong, and what would be valid.
    pub message: String,
}

/// The Modbus table a point lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Holding registers (function 3).
    #[default]
    Holding,
    /// Input registers (function 4).
    Input,
}

/// Units a template may give; values are converted to the field's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unit {
    /// Watts.
    W,
    /// Kilowatts.
    #[serde(rename = "kW")]
    KW,
    /// Watt-hours.
    Wh,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KWh,
    /// Percent.
    #[serde(rename = "%")]
    Percent,
    /// No unit (a state code).
    #[serde(rename = "")]
    None,
}

impl Unit {
    /// Factor from this unit to the field's unit, or `None` if they do not match.
    pub fn factor_to(self, field: Field) -> Option<f64> {
        match (self, field.unit()) {
            (Unit::W, "kW") | (Unit::Wh, "kWh") => Some(1e-3),
            (Unit::KW, "kW") | (Unit::KWh, "kWh") | (Unit::Percent, "%") | (Unit::None, "") => {
                Some(1.0)
            }
            _ => None,
        }
    }
}

/// The `[template]` table: what a device model is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateHead {
    /// The model's name.
    pub name: String,
    /// What kind of device it is.
    pub capability: Capability,
    /// The word order of multi-register values (unless a point says otherwise).
    #[serde(default)]
    pub word_order: WordOrder,
    /// Treat SunSpec "not implemented" values (0xFFFF, 0x8000, ...) as missing.
    #[serde(default)]
    pub sentinels: bool,
    /// Where the data sheet is, for whoever checks the map.
    #[serde(default)]
    pub source: Option<String>,
}

/// One field read from registers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// The field read.
    pub field: Field,
    /// The register table.
    #[serde(default)]
    pub table: Table,
    /// The first register's address.
    pub address: u16,
    /// The register type.
    #[serde(rename = "type")]
    pub ty: RegType,
    /// The word order, if not the template's.
    #[serde(default)]
    pub word_order: Option<WordOrder>,
    /// Multiplier from the raw register value to `unit`.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Address of an int16 SunSpec scale factor (10^sf) in the same table.
    #[serde(default)]
    pub scale_register: Option<u16>,
    /// The unit the scaled value is in.
    pub unit: Unit,
    /// The device counts the other way round from pedf's sign convention.
    #[serde(default)]
    pub invert: bool,
}

/// The register a setpoint is written to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointMap {
    /// Which setpoint it is.
    pub kind: Setpoint,
    /// The register's address (holding).
    pub address: u16,
    /// The register type.
    #[serde(rename = "type")]
    pub ty: RegType,
    /// The word order, if not the template's.
    #[serde(default)]
    pub word_order: Option<WordOrder>,
    /// Register value x scale = value in `unit`.
    #[serde(default)]
    pub scale: Option<f64>,
    /// The unit of `scale` x register.
    pub unit: Unit,
    /// The device's range, in pedf's unit and sign.
    pub min: f64,
    /// The highest value, in pedf's unit and sign.
    pub max: f64,
    /// The device counts the other way round from pedf's sign convention.
    #[serde(default)]
    pub invert: bool,
    /// Where the device reports the setpoint it took (default: the same register).
    #[serde(default)]
    pub readback_address: Option<u16>,
}

/// One field of an MQTT device's JSON state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonField {
    /// The field read.
    pub field: Field,
    /// Key in the JSON object; a dotted path reaches into nested objects (`meter.power`).
    pub key: String,
    /// The unit the JSON value is in.
    pub unit: Unit,
    /// The device counts the other way round from pedf's sign convention.
    #[serde(default)]
    pub invert: bool,
}

/// The command an MQTT device takes: `{"<key>": value}` on the command topic, QoS 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCommand {
    /// Which setpoint it is.
    pub kind: Setpoint,
    /// The key in the command's JSON object.
    pub key: String,
    /// The unit the device takes.
    pub unit: Unit,
    /// The lowest value, in pedf's unit and sign.
    pub min: f64,
    /// The highest value, in pedf's unit and sign.
    pub max: f64,
}

/// How an MQTT device publishes its state and takes commands. `{prefix}` in a topic is the
/// device's `topic` from the device list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttMap {
    /// The topic the device publishes its state on.
    pub state_topic: String,
    /// The topic it takes setpoints on.
    #[serde(default)]
    pub command_topic: Option<String>,
    /// The fields of the state's JSON.
    #[serde(rename = "field")]
    pub fields: Vec<JsonField>,
    /// How a setpoint is written.
    #[serde(default)]
    pub command: Option<JsonCommand>,
}

/// A device template: a Modbus register map (`[[point]]`, `[setpoint]`) or an MQTT JSON map
/// (`[mqtt]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// What the model is.
    pub template: TemplateHead,
    /// Its Modbus points.
    #[serde(default, rename = "point")]
    pub points: Vec<Point>,
    /// Its Modbus setpoint, if it takes one.
    #[serde(default)]
    pub setpoint: Option<SetpointMap>,
    /// Its MQTT map, for MQTT devices.
    #[serde(default)]
    pub mqtt: Option<MqttMap>,
}

fn locate(file: &str, text: &str, offset: usize, message: String) -> ConfigError {
    let (line, column) = SourceMap::new(text).locate(offset);
    ConfigError {
        file: file.into(),
        line,
        column,
        message,
    }
}

fn from_toml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str::<T>(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        locate(file, text, offset, e.message().trim().to_string())
    })
}

/// Byte offset of the `n`-th `[[name]]` header (for locating meaning errors).
fn nth_table(text: &str, name: &str, n: usize) -> usize {
    let header = format!("[[{name}]]");
    text.match_indices(&header).nth(n).map_or(0, |(i, _)| i)
}

impl Template {
    /// Parses and checks a template.
    pub fn parse(file: &str, text: &str) -> Result<Template, Vec<ConfigError>> {
        let t: Template = from_toml(file, text).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let cap = t.template.capability;
        let mut seen = BTreeSet::new();
        for (i, p) in t.points.iter().enumerate() {
            let at = nth_table(text, "point", i);
            let mut err =
                |m: String| errors.push(locate(file, text, at, format!("point[{i}]: {m}")));
            if !cap.fields().contains(&p.field) {
                let valid: Vec<&str> = cap.fields().iter().map(|f| f.name()).collect();
                err(format!(
                    "a {} has no field `{}`; fields: {}",
                    cap.name(),
                    p.field.name(),
                    valid.join(", ")
                ));
            }
            if !seen.insert(p.field) {
                err(format!("field `{}` is mapped twice", p.field.name()));
            }
            if usize::from(p.address) + p.ty.words() > 65536 {
                err(format!(
                    "address {} + {} register(s) runs past 65535",
                    p.address,
                    p.ty.words()
                ));
            }
            if let Some(s) = p.scale {
                if !s.is_finite() || s == 0.0 {
                    err(format!("scale {s} must be a finite non-zero number"));
                }
            }
            if p.scale.is_some() && p.scale_register.is_some() {
                err("give `scale` or `scale_register`, not both".into());
            }
            if p.unit.factor_to(p.field).is_none() {
                err(format!(
                    "unit {:?} does not fit `{}` (in {})",
                    p.unit,
                    p.field.name(),
                    p.field.unit()
                ));
            }
        }
        if let Some(s) = &t.setpoint {
            let at = text.find("[setpoint]").unwrap_or(0);
            let mut err = |m: String| errors.push(locate(file, text, at, format!("setpoint: {m}")));
            match cap.setpoint() {
                Some(kind) if kind == s.kind => {}
                Some(kind) => err(format!(
                    "a {} takes `{kind:?}`, not `{:?}`",
                    cap.name(),
                    s.kind
                )),
                None => err(format!("a {} takes no setpoint", cap.name())),
            }
            if !(s.min.is_finite() && s.max.is_finite() && s.min <= s.max) {
                err(format!("range {}..{} is empty or not finite", s.min, s.max));
            }
            if let Some(sc) = s.scale {
                if !sc.is_finite() || sc == 0.0 {
                    err(format!("scale {sc} must be a finite non-zero number"));
                }
            }
            let field = match s.kind {
                Setpoint::PowerKw => Field::PowerKw,
                Setpoint::PowerLimitPct => Field::PowerLimitPct,
            };
            if s.unit.factor_to(field).is_none() {
                err(format!(
                    "unit {:?} does not fit the setpoint (in {})",
                    s.unit,
                    field.unit()
                ));
            }
        }
        if let Some(m) = &t.mqtt {
            let at = text.find("[mqtt]").unwrap_or(0);
            let mut err = |msg: String| errors.push(locate(file, text, at, format!("mqtt: {msg}")));
            if !t.points.is_empty() || t.setpoint.is_some() {
                err("a template is either a register map or an MQTT map, not both".into());
            }
            for (i, f) in m.fields.iter().enumerate() {
                if !cap.fields().contains(&f.field) {
                    err(format!(
                        "field[{i}]: a {} has no field `{}`",
                        cap.name(),
                        f.field.name()
                    ));
                }
                if f.unit.factor_to(f.field).is_none() {
                    err(format!(
                        "field[{i}]: unit {:?} does not fit `{}` (in {})",
                        f.unit,
                        f.field.name(),
                        f.field.unit()
                    ));
                }
            }
            if let Some(c) = &m.command {
                if cap.setpoint() != Some(c.kind) {
                    err(format!(
                        "command: a {} does not take `{:?}`",
                        cap.name(),
                        c.kind
                    ));
                }
                if m.command_topic.is_none() {
                    err("command: no `command_topic`".into());
                }
                if !(c.min.is_finite() && c.max.is_finite() && c.min <= c.max) {
                    err(format!(
                        "command: range {}..{} is empty or not finite",
                        c.min, c.max
                    ));
                }
            }
        } else if t.points.is_empty() {
            errors.push(locate(
                file,
                text,
                0,
                "the template maps no `[[point]]` and has no `[mqtt]` section".into(),
            ));
        }
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }
}

/// How a connection reaches its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Modbus TCP: `address = "host:port"`.
    Tcp,
    /// Modbus RTU over a serial line: `path`, `baud`.
    Rtu,
    /// An MQTT broker: `address = "host:port"`.
    Mqtt,
    /// Modbus RTU frames through a serial-to-Ethernet gateway: `address = "host:port"`.
    RtuOverTcp,
    /// EV chargers connecting to the EMS over OCPP (the run file's `[ocpp]` says where it
    /// listens and which charger and connector each device is): no address.
    Ocpp,
    /// DL/T 645-2007 meters through a TCP serial gateway: `address = "host:port"`.
    Dlt645Tcp,
    /// DL/T 645-2007 meters on an RS-485 serial line (8E1): `path`, `baud` (2400 the
    /// standard's default).
    Dlt645Serial,
}

impl TransportKind {
    /// Whether its devices are DL/T 645 meters.
    pub fn is_dlt645(self) -> bool {
        matches!(self, TransportKind::Dlt645Tcp | TransportKind::Dlt645Serial)
    }
}

/// One Modbus connection: one request in flight at a time, shared by its devices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The connection's id, as devices name it.
    pub id: String,
    /// TCP, RTU over TCP, RTU on a serial line, or MQTT.
    pub kind: TransportKind,
    /// TCP: `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// RTU: serial device and speed.
    #[serde(default)]
    pub path: Option<String>,
    /// RTU: the baud rate.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts after the first failure, with doubling back-off from `backoff_ms`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first back-off, ms.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_timeout_ms() -> u64 {
    500
}
fn default_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    50
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_stale_ms() -> u64 {
    5000
}

/// One device of the park.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The device id.
    pub id: String,
    /// What kind of device it is.
    pub capability: Capability,
    /// The park asset this device is (a pv id, battery id, charger id, `grid`...).
    #[serde(default)]
    pub asset: Option<String>,
    /// The connection it is reached through.
    pub connection: String,
    /// Its Modbus unit id (default 1).
    #[serde(default = "one")]
    pub unit_id: u8,
    /// Register-map template name (file `templates/<name>.toml`); absent for SunSpec devices.
    #[serde(default)]
    pub template: Option<String>,
    /// Discover and decode SunSpec models instead of a template.
    #[serde(default)]
    pub sunspec: bool,
    /// How often it is read, ms.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// How long a value is good after it was read, ms.
    #[serde(default = "default_stale_ms")]
    pub stale_after_ms: u64,
    /// Largest setpoint change per second, in the setpoint's unit.
    #[serde(default)]
    pub ramp_per_s: Option<f64>,
    /// Value written when the controller stops or the device stops answering (default per
    /// capability: battery 0 kW, charger and load 0 kW, PV 100 %).
    #[serde(default)]
    pub safe_value: Option<f64>,
    /// MQTT devices: the topic prefix that replaces `{prefix}` in the template's topics.
    #[serde(default)]
    pub topic: Option<String>,
    /// For a SunSpec battery: which sign its power uses for discharge ("positive", the default,
    /// or "negative").
    #[serde(default)]
    pub battery_discharge_sign: Option<String>,
    /// A DL/T 645 meter's address: up to 12 decimal digits, as on its nameplate.
    #[serde(default)]
    pub meter_address: Option<String>,
    /// A DL/T 645 meter's current transformer ratio (e.g. 40 for 200/5 A; default 1): its
    /// energy, power and current times this.
    #[serde(default)]
    pub ct_ratio: Option<f64>,
    /// A DL/T 645 meter's voltage transformer ratio (e.g. 100 for 10 kV/100 V; default 1): its
    /// energy, power and voltage times this.
    #[serde(default)]
    pub pt_ratio: Option<f64>,
}

fn one() -> u8 {
    1
}

/// A park's device list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesFile {
    /// The connections (Modbus links, MQTT brokers).
    #[serde(default, rename = "connection")]
    pub connections: Vec<Connection>,
    /// The devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
}

impl DevicesFile {
    /// Parses and checks a device list; `templates` are the known templates by name.
    pub fn parse(
        file: &str,
        text: &str,
        templates: &BTreeMap<String, Template>,
    ) -> Result<DevicesFile, Vec<ConfigError>> {
        let d: DevicesFile = from_toml(file, text).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let conns: BTreeSet<&str> = d.connections.iter().map(|c| c.id.as_str()).collect();
        let ocpp: BTreeSet<&str> = d
            .connections
            .iter()
            .filter(|c| c.kind == TransportKind::Ocpp)
            .map(|c| c.id.as_str())
            .collect();
        let dlt645: BTreeSet<&str> = d
            .connections
            .iter()
            .filter(|c| c.kind.is_dlt645())
            .map(|c| c.id.as_str())
            .collect();
        let mut ids = BTreeSet::new();
        for (i, c) in d.connections.iter().enumerate() {
            let at = nth_table(text, "connection", i);
            let mut err = |m: String| {
                errors.push(locate(
                    file,
                    text,
                    at,
                    format!("connection[{i}] `{}`: {m}", c.id),
                ))
            };
            if c.timeout_ms == 0 {
                err("timeout_ms must be at least 1".into());
            }
            match c.kind {
                TransportKind::Tcp
                | TransportKind::Mqtt
                | TransportKind::RtuOverTcp
                | TransportKind::Dlt645Tcp => match &c.address {
                    Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => {}
                    Some(a) => err(format!(
                        "address `{a}` is not host:port, e.g. 192.168.1.20:502"
                    )),
                    None => err(
                        "a tcp, mqtt or dlt645-tcp connection needs `address = \"host:port\"`"
                            .into(),
                    ),
                },
                TransportKind::Rtu | TransportKind::Dlt645Serial => {
                    if c.path.is_none() || c.baud.is_none() {
                        err("a serial connection (rtu, dlt645-serial) needs `path` (e.g. /dev/ttyUSB0) and `baud` (e.g. 9600)".into());
                    }
                }
                TransportKind::Ocpp => {
                    if c.address.is_some() {
                        err("an ocpp connection has no `address`: the chargers connect to the EMS, which listens where the run file's [ocpp] `listen` says".into());
                    }
                }
            }
        }
        for (i, dev) in d.devices.iter().enumerate() {
            let at = nth_table(text, "device", i);
            let mut err = |m: String| {
                errors.push(locate(
                    file,
                    text,
                    at,
                    format!("device[{i}] `{}`: {m}", dev.id),
                ))
            };
            if !ids.insert(dev.id.as_str()) {
                err("the id is used twice".into());
            }
            if !conns.contains(dev.connection.as_str()) {
                err(format!(
                    "connection `{}` is not defined; connections: {}",
                    dev.connection,
                    conns.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
            let on_dlt645 = dlt645.contains(dev.connection.as_str());
            if on_dlt645 {
                if dev.capability != Capability::Meter {
                    err(format!(
                        "a DL/T 645 connection carries meters, not a {}",
                        dev.capability.name()
                    ));
                }
                if dev.template.is_some() || dev.sunspec {
                    err("a DL/T 645 meter is read by the standard's registers: no `template` or `sunspec`".into());
                }
                match dev.meter_address.as_deref().map(crate::dlt645::Address::parse) {
                    None => err("a DL/T 645 meter needs `meter_address`, its nameplate's 12 digits (e.g. \"000012345678\")".into()),
                    Some(Err(e)) => err(e),
                    Some(Ok(_)) => {}
                }
            } else if dev.meter_address.is_some()
                || dev.ct_ratio.is_some()
                || dev.pt_ratio.is_some()
            {
                err("`meter_address`, `ct_ratio` and `pt_ratio` are for meters on a dlt645-tcp or dlt645-serial connection".into());
            }
            for (name, r) in [("ct_ratio", dev.ct_ratio), ("pt_ratio", dev.pt_ratio)] {
                if let Some(r) = r {
                    if !(r.is_finite() && r > 0.0) {
                        err(format!(
                            "{name} {r} must be a positive number (1 without a transformer)"
                        ));
                    }
                }
            }
            match (&dev.template, dev.sunspec) {
                // An OCPP charger speaks OCPP, a DL/T 645 meter its own registers: no register
                // map (checked with its connection).
                _ if ocpp.contains(dev.connection.as_str()) || on_dlt645 => {}
                (Some(_), true) => err("give `template` or `sunspec = true`, not both".into()),
                (None, false) => err("give a `template` or `sunspec = true`".into()),
                (Some(t), false) => match templates.get(t) {
                    None => err(format!(
                        "template `{t}` not found; templates: {}",
                        templates.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                    Some(tpl) if tpl.template.capability != dev.capability => err(format!(
                        "template `{t}` is a {}, the device a {}",
                        tpl.template.capability.name(),
                        dev.capability.name()
                    )),
                    _ => {}
                },
                (None, true) => {
                    if !matches!(
                        dev.capability,
                        Capability::Meter | Capability::PvInverter | Capability::Battery
                    ) {
                        err(format!(
                            "SunSpec covers meters, PV inverters and batteries, not a {}",
                            dev.capability.name()
                        ));
                    }
                }
            }
            if dev.poll_ms == 0 || dev.stale_after_ms < dev.poll_ms {
                err(format!(
                    "stale_after_ms {} must be at least poll_ms {} (> 0)",
                    dev.stale_after_ms, dev.poll_ms
                ));
            }
            if let Some(r) = dev.ramp_per_s {
                if !(r.is_finite() && r > 0.0) {
                    err(format!("ramp_per_s {r} must be a positive number"));
                }
            }
            if let Some(s) = &dev.battery_discharge_sign {
                if s != "positive" && s != "negative" {
                    err(format!(
                        "battery_discharge_sign `{s}` is not `positive` or `negative`"
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METER: &str = r#"
[template]
name = "test meter"
capability = "meter"

[[point]]
field = "power_kw"
address = 0
type = "i32"
unit = "W"

[[point]]
field = "import_kwh"
table = "input"
address = 10
type = "u32"
scale = 0.01
unit = "kWh"
"#;

    #[test]
    fn a_good_template_parses() {
        let t = Template::parse("m.toml", METER).unwrap();
        assert_eq!(t.points.len(), 2);
        assert_eq!(t.points[1].table, Table::Input);
    }

    #[test]
    fn template_mistakes_are_located() {
        let e = Template::parse("m.toml", &METER.replace("type = \"i32\"", "type = \"i17\""))
            .unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with("m.toml:9:8: unknown variant `i17`, expected one of"),
            "{}",
            e[0]
        );
        let e = Template::parse(
            "m.toml",
            &METER.replace("field = \"import_kwh\"", "field = \"soc_pct\""),
        )
        .unwrap_err();
        assert_eq!(e[0].to_string(), "m.toml:12:1: point[1]: a meter has no field `soc_pct`; fields: power_kw, import_kwh, export_kwh, import_kwh_sharp, import_kwh_peak, import_kwh_flat, import_kwh_valley, voltage_v, current_a, max_demand_kw");
        let e = Template::parse("m.toml", &METER.replace("unit = \"W\"", "unit = \"kWh\""))
            .unwrap_err();
        assert!(
            e[0].to_string()
                .contains("point[0]: unit KWh does not fit `power_kw` (in kW)"),
            "{}",
            e[0]
        );
        let e =
            Template::parse("m.toml", &METER.replace("address = 10", "adress = 10")).unwrap_err();
        assert!(
            e[0].to_string().contains("unknown field `adress`"),
            "{}",
            e[0]
        );
        let with_sp = format!("{METER}\n[setpoint]\nkind = \"power_kw\"\naddress = 5\ntype = \"i16\"\nunit = \"kW\"\nmin = 0\nmax = 1\n");
        let e = Template::parse("m.toml", &with_sp).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("setpoint: a meter takes no setpoint"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn device_list_mistakes_are_located() {
        let mut templates = BTreeMap::new();
        templates.insert(
            "test-meter".to_string(),
            Template::parse("m.toml", METER).unwrap(),
        );
        let good = "[[connection]]\nid = \"bus\"\nkind = \"tcp\"\naddress = \"127.0.0.1:502\"\n\n[[device]]\nid = \"grid\"\ncapability = \"meter\"\nconnection = \"bus\"\ntemplate = \"test-meter\"\n";
        let d = DevicesFile::parse("d.toml", good, &templates).unwrap();
        assert_eq!(d.devices[0].poll_ms, 1000);
        let bad = good.replace("template = \"test-meter\"", "template = \"nope\"\n\n[[device]]\nid = \"grid\"\ncapability = \"ev-charger\"\nconnection = \"bus2\"\nsunspec = true\n");
        let e = DevicesFile::parse("d.toml", &bad, &templates).unwrap_err();
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "d.toml:6:1: device[0] `grid`: template `nope` not found; templates: test-meter",
                "d.toml:12:1: device[1] `grid`: the id is used twice",
                "d.toml:12:1: device[1] `grid`: connection `bus2` is not defined; connections: bus",
                "d.toml:12:1: device[1] `grid`: SunSpec covers meters, PV inverters and batteries, not a ev-charger",
            ]
        );
    }

    #[test]
    fn dlt645_meters_are_checked_where_they_are_written() {
        let templates = BTreeMap::new();
        let good = "[[connection]]\nid = \"rs485\"\nkind = \"dlt645-tcp\"\naddress = \"127.0.0.1:8899\"\n\n[[device]]\nid = \"billing\"\ncapability = \"meter\"\nconnection = \"rs485\"\nmeter_address = \"000012345678\"\nct_ratio = 40\npoll_ms = 60000\nstale_after_ms = 180000\n";
        let d = DevicesFile::parse("d.toml", good, &templates).unwrap();
        assert_eq!(d.devices[0].ct_ratio, Some(40.0));
        assert_eq!(d.connections[0].kind, TransportKind::Dlt645Tcp);
        let bad = good
            .replace("000012345678", "12345678901234")
            .replace("ct_ratio = 40", "ct_ratio = 0\ntemplate = \"x\"")
            + "\n[[device]]\nid = \"ev\"\ncapability = \"ev-charger\"\nconnection = \"rs485\"\n\n[[connection]]\nid = \"serial\"\nkind = \"dlt645-serial\"\n";
        let e = DevicesFile::parse("d.toml", &bad, &templates).unwrap_err();
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "d.toml:21:1: connection[1] `serial`: a serial connection (rtu, dlt645-serial) needs `path` (e.g. /dev/ttyUSB0) and `baud` (e.g. 9600)",
                "d.toml:6:1: device[0] `billing`: a DL/T 645 meter is read by the standard's registers: no `template` or `sunspec`",
                "d.toml:6:1: device[0] `billing`: meter address `12345678901234`: give the meter's address as up to 12 decimal digits, as on its nameplate (e.g. \"000012345678\")",
                "d.toml:6:1: device[0] `billing`: ct_ratio 0 must be a positive number (1 without a transformer)",
                "d.toml:16:1: device[1] `ev`: a DL/T 645 connection carries meters, not a ev-charger",
                "d.toml:16:1: device[1] `ev`: a DL/T 645 meter needs `meter_address`, its nameplate's 12 digits (e.g. \"000012345678\")",
            ]
        );
    }
}

/// A device list with the templates it uses, read from a file and the `templates/` folder next
/// to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSet {
    /// The templates by name.
    pub templates: BTreeMap<String, Template>,
    /// The device file.
    pub devices: DevicesFile,
}

/// Reads a device list and every template in `templates/` beside it. MQTT devices must name
/// a topic; their connection must be an MQTT one, Modbus devices' a TCP or RTU one.
pub fn load_device_set(path: &std::path::Path) -> Result<DeviceSet, Vec<ConfigError>> {
    let name = path.display().to_string();
    let io = |file: &str, e: std::io::Error| {
        vec![ConfigError {
            file: file.into(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        }]
    };
    let text = std::fs::read_to_string(path).map_err(|e| io(&name, e))?;
    let dir = path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("templates");
    let mut templates = BTreeMap::new();
    let mut errors = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let fname = f.display().to_string();
            let Some(stem) = f.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            match std::fs::read_to_string(&f) {
                Ok(t) => match Template::parse(&fname, &t) {
                    Ok(t) => {
                        templates.insert(stem, t);
                    }
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.extend(io(&fname, e)),
            }
        }
    }
    let devices = match DevicesFile::parse(&name, &text, &templates) {
        Ok(d) => d,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    for (i, d) in devices.devices.iter().enumerate() {
        let at = nth_table(&text, "device", i);
        let Some(conn) = devices.connections.iter().find(|c| c.id == d.connection) else {
            continue;
        };
        let is_mqtt = d
            .template
            .as_ref()
            .and_then(|t| templates.get(t))
            .is_some_and(|t| t.mqtt.is_some());
        let msg = match (is_mqtt, conn.kind) {
            (_, TransportKind::Ocpp)
                if d.template.is_some() || d.sunspec || d.capability != Capability::EvCharger =>
            {
                Some(format!(
                    "a device on OCPP connection `{}` is an ev-charger with no template or sunspec (its charger and connector are in the run file's [ocpp])",
                    conn.id
                ))
            }
            (_, TransportKind::Ocpp) => None,
            (true, TransportKind::Mqtt) if d.topic.is_none() => {
                Some("an MQTT device needs `topic`".to_string())
            }
            (true, TransportKind::Tcp | TransportKind::Rtu | TransportKind::RtuOverTcp) => Some(
                format!("an MQTT template on Modbus connection `{}`", conn.id),
            ),
            (false, TransportKind::Mqtt) => {
                Some(format!("a Modbus device on MQTT connection `{}`", conn.id))
            }
            _ => None,
        };
        if let Some(m) = msg {
            errors.push(locate(
                &name,
                &text,
                at,
                format!("device[{i}] `{}`: {m}", d.id),
            ));
        }
    }
    if errors.is_empty() {
        Ok(DeviceSet { templates, devices })
    } else {
        Err(errors)
    }
}
