//! The run configuration (`pedf run --config FILE`): park, devices, store, cycle, and the
//! optional server, InfluxDB sink and re-planning tables, read with located errors and paths
//! made relative to the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The run configuration (TOML); paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The park file.
    pub park: PathBuf,
    /// The device file (Modbus and MQTT devices and their assets).
    pub devices: PathBuf,
    /// The EMS store (SQLite): samples, records, plans, alarms, audit.
    pub store: PathBuf,
    /// The control cycle's period, ms of the EMS's time (default 1000): at `pedf demo
    /// --speed 60` a 1000 ms cycle is a simulated second, 1/60 s of real time.
    #[serde(default = "default_cycle_ms")]
    pub cycle_ms: u64,
    /// Days of samples kept in the store (records and plans are kept).
    #[serde(default = "default_retention_days")]
    pub retention_days: i64,
    /// Days of events, audit entries and 1-minute aggregates kept (default 400: a year and
    /// its audit); interval records, plans and tokens are kept.
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: i64,
    /// The MQTT client id the EMS connects with.
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
    /// The OCPP central system for the device list's chargers on an `ocpp` connection; none:
    /// no OCPP charger.
    #[serde(default)]
    pub ocpp: Option<OcppRun>,
    /// The park as an IEC 60870-5-104 station for the dispatch or distribution master; none:
    /// no 104 link.
    #[serde(default)]
    pub iec104: Option<Iec104Run>,
    /// A file of grid requests (`[[grid_request]]` tables: id, kind, kw, start, end,
    /// price_cny_per_kwh, as `pedf simulate --requests` reads), given to the EMS at its start
    /// like requests through the API (those it took before are not given again); none: none.
    #[serde(default)]
    pub grid_requests: Option<PathBuf>,
    /// How a grid request's baseline is made (`[baseline]`: `days`, like days averaged,
    /// default 5; `look_back_days`, how far back they are looked for, default 45).
    #[serde(default)]
    pub baseline: pedf_core::grid_request::BaselineRule,
    /// The park as an edge node of a fleet: its closed interval records and events into the
    /// hub's NATS JetStream, its live state to NATS (`[fleet]`); none: no fleet.
    #[serde(default)]
    pub fleet: Option<crate::fleet::FleetConfig>,
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
    /// The PEM private key of `tls_cert`.
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
    /// The least share of a period's intervals that must be recorded for a certificate
    /// (default 0.9).
    #[serde(default = "default_min_coverage")]
    pub certificate_min_coverage: f64,
    /// Set when the park's devices are simulated (`pedf demo` writes it): what they are.
    /// Certificates issued from this EMS then say "simulated data" on their face.
    #[serde(default)]
    pub simulated: Option<String>,
}

/// The `[ocpp]` table: where the central system listens and the chargers it takes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcppRun {
    /// Address to listen on (loopback: plain WebSocket with HTTP Basic, OCPP security
    /// profile 1), e.g. `127.0.0.1:9000`; chargers connect to `ws://ADDRESS/ocpp/IDENTITY`.
    pub listen: String,
    /// Id tags accepted (the local authorisation list).
    #[serde(default)]
    pub id_tags: Vec<String>,
    /// Whether an id tag not in the list is accepted (default: refused, `Invalid`).
    #[serde(default)]
    pub accept_unknown_tags: bool,
    /// The heartbeat interval given at boot, s (default 60).
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u32,
    /// How long a call to a charger waits for its answer, ms of real time (default 10000).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// How long one of the EMS's limits holds before the charger's safe default applies
    /// again, s (default 120).
    #[serde(default = "default_limit_hold_s")]
    pub limit_hold_s: u32,
    /// The meter value interval set at each charger's boot (`MeterValueSampleInterval`), s;
    /// absent: each charger's own.
    #[serde(default)]
    pub meter_interval_s: Option<u32>,
    /// The PEM certificate (chain) of TLS, OCPP security profile 2 (`wss://`, Basic
    /// authentication inside TLS): then `listen` may be off loopback. Relative to the run file.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The chargers allowed.
    #[serde(default, rename = "charger")]
    pub chargers: Vec<OcppChargerRun>,
}

/// One `[[ocpp.charger]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcppChargerRun {
    /// Its charge point identity.
    pub identity: String,
    /// SHA-256 of its password, 64 hex digits (`printf %s PASSWORD | sha256sum`).
    pub password_sha256: String,
    /// `W`, or `A` (with `phases` and `voltage`): the unit its charging profiles take.
    #[serde(default = "default_rate_unit")]
    pub unit: String,
    /// Phases its cars charge on (unit A; default 3).
    #[serde(default = "default_phases")]
    pub phases: u8,
    /// Volts phase to neutral (unit A; default 230).
    #[serde(default = "default_voltage")]
    pub voltage: f64,
    /// The limit of its safe default profile, kW: what it may draw with the EMS silent.
    pub safe_kw: f64,
    /// Its connectors: the connector's number and the device (of the device list) it is.
    pub connectors: Vec<OcppConnectorRun>,
}

/// One connector of a `[[ocpp.charger]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcppConnectorRun {
    /// The connector's number (1 and up); for an OCPP 2.0.1 station, the EVSE's id.
    pub connector: u32,
    /// The device id in the device list.
    pub device: String,
}

fn default_heartbeat_s() -> u32 {
    60
}
fn default_call_timeout_ms() -> u64 {
    10_000
}
fn default_limit_hold_s() -> u32 {
    120
}
fn default_rate_unit() -> String {
    "A".into()
}
fn default_phases() -> u8 {
    3
}
fn default_voltage() -> f64 {
    230.0
}

impl OcppRun {
    /// The central system's configuration, each problem naming its key.
    pub fn config(&self) -> Result<pedf_devices::ocpp::OcppConfig, String> {
        use pedf_devices::ocpp::v16::RateUnit;
        use pedf_devices::ocpp::{ChargerEntry, ConnectorEntry, OcppConfig};
        let listen: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "[ocpp] listen = `{}` is not an address:port such as 127.0.0.1:9000",
                self.listen
            )
        })?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(pedf_server::tls_config(cert, key).map_err(|e| format!("[ocpp] TLS: {e}"))?)
            }
            (None, None) => None,
            _ => {
                return Err(
                    "[ocpp] TLS needs both tls_cert and tls_key (PEM files), or neither".into(),
                )
            }
        };
        if !listen.ip().is_loopback() && tls.is_none() {
            return Err(format!("[ocpp] listen = `{}`: plain WebSocket with Basic authentication is taken on loopback only; give tls_cert and tls_key for TLS (security profile 2) to listen on the network", self.listen));
        }
        let mut chargers = Vec::new();
        let mut devices = std::collections::BTreeSet::new();
        for (i, c) in self.chargers.iter().enumerate() {
            let at = format!("[[ocpp.charger]] {} (`{}`)", i + 1, c.identity);
            if c.identity.is_empty() || c.identity.len() > 48 || c.identity.contains('/') {
                return Err(format!(
                    "{at}: identity must be 1 to 48 characters without `/`"
                ));
            }
            if c.password_sha256.len() != 64
                || !c.password_sha256.chars().all(|x| x.is_ascii_hexdigit())
            {
                return Err(format!(
                    "{at}: password_sha256 must be 64 hex digits (printf %s PASSWORD | sha256sum)"
                ));
            }
            let unit = match c.unit.as_str() {
                "W" => RateUnit::W,
                "A" if (1..=3).contains(&c.phases) && c.voltage.is_finite() && c.voltage > 0.0 => {
                    RateUnit::A {
                        phases: c.phases,
                        voltage: c.voltage,
                    }
                }
                "A" => {
                    return Err(format!(
                        "{at}: unit A needs phases 1 to 3 and a voltage above 0"
                    ))
                }
                other => return Err(format!("{at}: unit = `{other}` is not W or A")),
            };
            if !(c.safe_kw.is_finite() && c.safe_kw >= 0.0) {
                return Err(format!("{at}: safe_kw must be a number of kW >= 0"));
            }
            if c.connectors.is_empty() {
                return Err(format!("{at}: give its connectors, e.g. connectors = [{{ connector = 1, device = \"ev-05\" }}]"));
            }
            for k in &c.connectors {
                if k.connector == 0 || !devices.insert(k.device.clone()) {
                    return Err(format!("{at}: connector {} (`{}`): connectors are numbered from 1 and each device is one connector", k.connector, k.device));
                }
            }
            if self.chargers[..i].iter().any(|o| o.identity == c.identity) {
                return Err(format!("{at}: the identity is given twice"));
            }
            chargers.push(ChargerEntry {
                identity: c.identity.clone(),
                password_sha256: c.password_sha256.to_ascii_lowercase(),
                connectors: c
                    .connectors
                    .iter()
                    .map(|k| ConnectorEntry {
                        connector: k.connector,
                        device: k.device.clone(),
                    })
                    .collect(),
                unit,
                safe_kw: c.safe_kw,
            });
        }
        if self.call_timeout_ms == 0
            || self.heartbeat_s == 0
            || self.limit_hold_s == 0
            || self.meter_interval_s == Some(0)
        {
            return Err(
                "[ocpp] call_timeout_ms, heartbeat_s, limit_hold_s and meter_interval_s must be at least 1".into(),
            );
        }
        Ok(OcppConfig {
            listen,
            chargers,
            id_tags: self.id_tags.clone(),
            accept_unknown_tags: self.accept_unknown_tags,
            heartbeat_s: self.heartbeat_s,
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            limit_hold_s: self.limit_hold_s,
            meter_interval_s: self.meter_interval_s,
            tls,
        })
    }
}

/// The `[iec104]` table: the park as a controlled station.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Iec104Run {
    /// Where the station listens, e.g. `0.0.0.0:2404` (104's port).
    pub listen: String,
    /// The station's common address (1 to 65534).
    pub common_address: u16,
    /// The masters allowed, by IP address; a connection from any other is refused.
    pub masters: Vec<String>,
    /// Unacknowledged frames the station sends before it waits (default 12).
    #[serde(default = "default_k")]
    pub k: u16,
    /// Frames the station receives before it acknowledges (default 8).
    #[serde(default = "default_w")]
    pub w: u16,
    /// Acknowledgement timeout, s (default 15).
    #[serde(default = "default_t1")]
    pub t1_s: f64,
    /// The station's acknowledgement delay, s (default 10; below t1).
    #[serde(default = "default_t2")]
    pub t2_s: f64,
    /// Idle time before the station tests the link, s (default 20).
    #[serde(default = "default_t3")]
    pub t3_s: f64,
    /// Every measured value this often, s (periodic); absent: only on interrogation and on
    /// change.
    #[serde(default)]
    pub cyclic_s: Option<f64>,
    /// How long a selected setpoint waits for its execution, s (default 10).
    #[serde(default = "default_select_timeout")]
    pub select_timeout_s: f64,
    /// The point map (TOML, relative to the run file): `[[measurement]]`, `[[single]]`,
    /// `[[setpoint]]` tables with `name`, `ioa` (and `deadband`, `select_before_operate`).
    pub points: PathBuf,
}

fn default_k() -> u16 {
    12
}
fn default_w() -> u16 {
    8
}
fn default_t1() -> f64 {
    15.0
}
fn default_t2() -> f64 {
    10.0
}
fn default_t3() -> f64 {
    20.0
}
fn default_select_timeout() -> f64 {
    10.0
}

/// What the station reports and takes, by name (the point map's `name`s).
pub mod iec104_names {
    /// Measured values: grid power at the connection (+import), PV, battery (+discharge), its
    /// SoC, loads, EV charging, the battery's headroom up (more charging, kW the park could
    /// add to its import now) and down (more discharging, kW it could take off), the grid
    /// limits in force, how long the limits the master sets hold (minutes, 0: until
    /// released), and the power target in force (the park's import limit when none).
    pub const MEASUREMENTS: &[&str] = &[
        "grid_kw",
        "pv_kw",
        "battery_kw",
        "soc_pct",
        "load_kw",
        "ev_kw",
        "flex_up_kw",
        "flex_down_kw",
        "import_limit_kw",
        "export_limit_kw",
        "limit_minutes",
        "power_target_kw",
    ];
    /// Single points: the cycle holds every device safe; an alarm stands; the EMS runs in
    /// automatic mode; a limit the grid set is in force.
    pub const SINGLES: &[&str] = &["safe_state", "alarm", "automatic", "grid_limit_active"];
    /// Setpoints: the import and export limits at the grid connection, kW, how long the
    /// limits the master sets next hold, minutes (0: until released), and the power target
    /// at the connection, kW (+import: import at most it; -export: export at least and at
    /// most it; the park's import limit releases it).
    pub const SETPOINTS: &[&str] = &[
        "import_limit_kw",
        "export_limit_kw",
        "limit_minutes",
        "power_target_kw",
    ];
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsFile {
    #[serde(default)]
    measurement: Vec<PointEntry>,
    #[serde(default)]
    single: Vec<PointEntry>,
    #[serde(default)]
    setpoint: Vec<SetpointEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointEntry {
    name: String,
    ioa: u32,
    #[serde(default)]
    deadband: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetpointEntry {
    name: String,
    ioa: u32,
    #[serde(default)]
    select_before_operate: bool,
}

impl Iec104Run {
    /// The station's configuration (its point map read), each problem naming its key or its
    /// place in the point map.
    pub fn config(&self, utc_offset: chrono::FixedOffset) -> Result<pedf_iec104::Config, String> {
        use pedf_iec104::{PointMap, SetpointPoint, ValuePoint};
        let listen: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "[iec104] listen = `{}` is not an address:port such as 0.0.0.0:2404",
                self.listen
            )
        })?;
        if self.common_address == 0 || self.common_address == 0xFFFF {
            return Err(
                "[iec104] common_address must be 1 to 65534 (0 is unused, 65535 the broadcast)"
                    .into(),
            );
        }
        let masters = self
            .masters
            .iter()
            .map(|m| {
                m.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("[iec104] masters: `{m}` is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if masters.is_empty() {
            return Err("[iec104] masters: give the dispatch or distribution master's address (a station answers only the masters it knows)".into());
        }
        let secs = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 3600.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!(
                    "[iec104] {key} = {v}: give seconds above 0 and at most 3600"
                ))
            }
        };
        let (t1, t2, t3) = (
            secs("t1_s", self.t1_s)?,
            secs("t2_s", self.t2_s)?,
            secs("t3_s", self.t3_s)?,
        );
        let name = self.points.display().to_string();
        let text = std::fs::read_to_string(&self.points)
            .map_err(|e| format!("[iec104] points = {name}: cannot read: {e}"))?;
        let f: PointsFile = toml::from_str(&text).map_err(|e| {
            let (line, col) =
                pedf_core::config::SourceMap::new(&text).locate(e.span().map_or(0, |s| s.start));
            format!("{name}:{line}:{col}: {}", e.message().trim())
        })?;
        let known = |kind: &str, n: &str, valid: &[&str]| {
            if valid.contains(&n) {
                Ok(())
            } else {
                Err(format!(
                    "{name}: [[{kind}]] `{n}` is not one pedf has; {kind}s: {}",
                    valid.join(", ")
                ))
            }
        };
        let mut points = PointMap::default();
        for p in &f.measurement {
            known("measurement", &p.name, iec104_names::MEASUREMENTS)?;
            if !(p.deadband.is_finite() && p.deadband >= 0.0) {
                return Err(format!(
                    "{name}: [[measurement]] `{}`: deadband must be 0 or more",
                    p.name
                ));
            }
            points.measurements.push(ValuePoint {
                name: p.name.clone(),
                ioa: p.ioa,
                deadband: p.deadband,
            });
        }
        for p in &f.single {
            known("single", &p.name, iec104_names::SINGLES)?;
            points.singles.push(ValuePoint {
                name: p.name.clone(),
                ioa: p.ioa,
                deadband: 0.0,
            });
        }
        for p in &f.setpoint {
            known("setpoint", &p.name, iec104_names::SETPOINTS)?;
            points.setpoints.push(SetpointPoint {
                name: p.name.clone(),
                ioa: p.ioa,
                select_before_operate: p.select_before_operate,
            });
        }
        let config = pedf_iec104::Config {
            listen,
            common_address: self.common_address,
            masters,
            k: self.k,
            w: self.w,
            t1,
            t2,
            t3,
            cyclic: self.cyclic_s.map(|c| secs("cyclic_s", c)).transpose()?,
            points,
            utc_offset,
            select_timeout: secs("select_timeout_s", self.select_timeout_s)?,
            command_timeout: Duration::from_secs(5),
        };
        config.check().map_err(|e| format!("[iec104] {e}"))?;
        Ok(config)
    }
}

fn default_min_coverage() -> f64 {
    pedf_carbon::certificate::DEFAULT_MIN_COVERAGE
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
fn default_log_retention_days() -> i64 {
    400
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
        for (key, days) in [
            ("retention_days", c.retention_days),
            ("log_retention_days", c.log_retention_days),
        ] {
            if !(1..=36_500).contains(&days) {
                return Err(format!(
                    "{name}: {key} = {days}: give whole days from 1 to 36500 (100 years)"
                ));
            }
        }
        c.baseline
            .check()
            .map_err(|e| format!("{name}: [baseline] {e}"))?;
        if let Some(f) = &c.fleet {
            f.check().map_err(|e| format!("{name}: [fleet] {e}"))?;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.park, &mut c.devices, &mut c.store]
            .into_iter()
            .chain(c.grid_requests.as_mut())
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let Some(f) = &mut c.fleet {
            f.resolve(dir);
        }
        if let Some(r) = &mut c.replan {
            if r.inputs.is_relative() {
                r.inputs = dir.join(&r.inputs);
            }
            let most = pedf_dispatch::MAX_TIME_LIMIT_S;
            if !(r.time_limit_s.is_finite() && r.time_limit_s > 0.0 && r.time_limit_s <= most) {
                return Err(format!(
                    "{name}: [replan] time_limit_s = {}: give a number of seconds above 0 and at most {most} (an hour), e.g. 5",
                    r.time_limit_s
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
            i.resolve_token(dir).map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(srv) = &mut c.server {
            if !(0.0..=1.0).contains(&srv.certificate_min_coverage) {
                return Err(format!(
                    "{name}: [server] certificate_min_coverage = {}: give a share from 0 to 1, e.g. 0.9",
                    srv.certificate_min_coverage
                ));
            }
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
        if let Some(o) = &mut c.ocpp {
            for p in [o.tls_cert.as_mut(), o.tls_key.as_mut()]
                .into_iter()
                .flatten()
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
            o.config().map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(g) = &mut c.iec104 {
            if g.points.is_relative() {
                g.points = dir.join(&g.points);
            }
            // Checked here with any offset; the park's is given at start.
            g.config(chrono::Offset::fix(&chrono::Utc))
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(c)
    }
}

/// The shortest real time between two control cycles: at a speed where `cycle_ms` of the
/// EMS's time would be less, the cycle is this long in real time and longer in the EMS's
/// (100 cycles a second is what this 2-core machine's EMS keeps up with next to the
/// simulated park; `pedf demo --speed 60` runs 60).
pub const MIN_REAL_CYCLE: Duration = Duration::from_millis(10);

impl RunConfig {
    /// The control cycle: how long it is in real time (what the cycle's timer waits) and in
    /// the EMS's time (what the controller integrates over), `cycle_ms` of the EMS's time at
    /// the time source's speed, no shorter than [`MIN_REAL_CYCLE`] of real time.
    pub fn cycle(&self) -> (Duration, Duration) {
        let speed = self.time.speed();
        let real = Duration::from_millis(self.cycle_ms)
            .div_f64(speed)
            .max(MIN_REAL_CYCLE);
        (real, real.mul_f64(speed))
    }

    /// The park file the run names, read and checked (its problems are `pedf check`'s to
    /// list).
    pub fn read_park(&self) -> Result<pedf_core::Park, String> {
        let pname = self.park.display().to_string();
        let bytes = std::fs::read(&self.park).map_err(|e| format!("{pname}: cannot read: {e}"))?;
        pedf_core::config::load_park(&pname, &bytes)
            .value
            .ok_or(format!(
                "{pname}: the park file has errors; `pedf check {pname}` lists them"
            ))
    }
}

/// Whether a TOML text looks like a run file (it sets `devices` and `store`), for `pedf check`
/// telling run files from park files.
pub fn is_run_file_text(text: &str) -> bool {
    let key = |k: &str| {
        text.lines().any(|l| {
            l.trim_start()
                .strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    key("devices") && key("store")
}

/// What `pedf check` found in a run file.
pub struct RunFileCheck {
    /// Whether `pedf run` can start from it.
    pub valid: bool,
    /// Every problem and warning, located in its own file.
    pub messages: Vec<String>,
    /// One line on what it runs, when it is valid.
    pub summary: String,
}

/// The grid requests of the run file's `grid_requests` file `f` for `park`, or every mistake
/// located (file:line:column).
pub(crate) fn grid_requests_of(
    f: &Path,
    park: &pedf_core::Park,
) -> Result<Vec<pedf_core::grid_request::GridRequest>, Vec<String>> {
    pedf_core::grid_request::load_file(f, &park.clock, &format!("file {}", f.display()))
        .map_err(|ds| ds.iter().map(ToString::to_string).collect())
}

/// Checks a run file as `pedf run` would start from it: its keys, the park file and device
/// list it names (each problem located in its own file), and the files and folders its
/// `[server]` and `[replan]` tables name.
pub fn check_run_file(path: &Path) -> RunFileCheck {
    let name = path.display().to_string();
    let cfg = match RunConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            return RunFileCheck {
                valid: false,
                messages: vec![e],
                summary: String::new(),
            }
        }
    };
    let mut valid = true;
    let mut messages = Vec::new();
    // A secret in a file others may read.
    #[cfg(unix)]
    if cfg
        .influx
        .as_ref()
        .is_some_and(|i| !i.token.is_empty() && i.token_env.is_none() && i.token_file.is_none())
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            messages.push(format!(
                "{name}: warning: [influx] token is in a file others may read; chmod 600 it, or give token_env or token_file"
            ));
        }
    }
    let pname = cfg.park.display().to_string();
    match std::fs::read(&cfg.park) {
        Ok(b) => {
            let loaded = pedf_core::config::load_park(&pname, &b);
            messages.extend(loaded.diagnostics.iter().map(ToString::to_string));
            valid &= loaded.value.is_some();
            // The grid requests file, on the park's intervals.
            if let (Some(f), Some(park)) = (&cfg.grid_requests, &loaded.value) {
                if let Err(ds) = grid_requests_of(f, park) {
                    messages.extend(ds);
                    valid = false;
                }
            }
        }
        Err(e) => {
            messages.push(format!("{name}: park = {pname}: cannot read: {e}"));
            valid = false;
        }
    }
    if let Err(errors) = pedf_devices::template::load_device_set(&cfg.devices) {
        messages.extend(errors.iter().map(ToString::to_string));
        valid = false;
    }
    if let Some(srv) = &cfg.server {
        for (what, p) in [
            ("plan_inputs", srv.plan_inputs.as_ref()),
            ("emission_factors", Some(&srv.emission_factors)),
            ("tls_cert", srv.tls_cert.as_ref()),
            ("tls_key", srv.tls_key.as_ref()),
        ] {
            if let Some(p) = p.filter(|p| !p.exists()) {
                messages.push(format!(
                    "{name}: [server] {what} = {}: not found",
                    p.display()
                ));
                valid = false;
            }
        }
    }
    if let Some(r) = cfg.replan.as_ref().filter(|r| !r.inputs.is_dir()) {
        messages.push(format!(
            "{name}: [replan] inputs = {}: not a folder",
            r.inputs.display()
        ));
        valid = false;
    }
    let summary = format!(
        "{name}: run file is valid (park {}, devices {}, store {}{})",
        cfg.park.display(),
        cfg.devices.display(),
        cfg.store.display(),
        cfg.server
            .as_ref()
            .map(|s| format!(", server on {}", s.listen))
            .unwrap_or_default()
    );
    RunFileCheck {
        valid,
        messages,
        summary,
    }
}
