//! EV chargers over OCPP: pedf as their central system.
//!
//! The chargers connect to the EMS (a WebSocket per charger, its identity the last segment of
//! the URL path, the subprotocol `ocpp1.6` or `ocpp2.0.1`, the charger's first choice of the
//! two; HTTP Basic authentication with the charger's password: security profile 1, taken on
//! loopback only; with TLS, profile 2, on any address). A 2.0.1 station's device is one of its
//! EVSEs (the run file's `connector` is the EVSE id); its messages are answered in
//! `csms201`, its state kept in the same terms as 1.6's (see [`v201`]).
//! The [`OcppHub`] answers what a
//! charger sends (boot, heartbeats, status, authorisation against the run's id tags,
//! transactions, meter values), keeps each connector's state, and makes the EMS's calls one
//! at a time per charger with a timeout. Each connector is a device of the park
//! ([`OcppDevice`]): its state is what the charger last said, in the process image like any
//! device's; a setpoint becomes a charging profile and is read back as the composite schedule
//! the charger reports.
//!
//! At boot each connector gets a safe default (a `TxDefaultProfile` at stack level 0 at the
//! device's safe limit); the EMS's limits sit above it at stack level 1 and hold for
//! `limit_hold_s` only: an EMS gone silent leaves each charger on its safe default, the
//! watchdog of an OCPP device living in the charger itself.
//!
//! Repeated messages are taken once: a StartTransaction repeated (the confirmation lost) gets
//! the transaction it started; a StopTransaction for a transaction already stopped, or sent
//! after an outage for one the EMS never saw, is confirmed and counted once.

pub mod rpc;
pub mod v16;
pub mod v201;

mod csms201;
mod server;
pub use server::liveness;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::time::TimeSource;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::capability::{Capability, DeviceState, Field};
use crate::control::SetpointSink;
use crate::device::DeviceError;
use rpc::Version;
use v16::{ChargePointStatus, RateUnit, Reading};

/// One connector of a charger, as a device of the park.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorEntry {
    /// The connector's number (1 and up).
    pub connector: u32,
    /// The park device it is.
    pub device: String,
}

/// A charger allowed to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerEntry {
    /// Its charge point identity (the last segment of the URL it connects to).
    pub identity: String,
    /// SHA-256 of its password (OCPP's AuthorizationKey), 64 hex digits.
    pub password_sha256: String,
    /// Its connectors and the devices they are.
    pub connectors: Vec<ConnectorEntry>,
    /// The unit its charging profiles are written in.
    pub unit: RateUnit,
    /// The limit of its safe default profile, kW (what it may draw with the EMS silent).
    pub safe_kw: f64,
}

/// The central system's configuration.
#[derive(Debug, Clone)]
pub struct OcppConfig {
    /// Where it listens (loopback: plain WebSocket with Basic authentication).
    pub listen: SocketAddr,
    /// The chargers allowed.
    pub chargers: Vec<ChargerEntry>,
    /// Id tags accepted (the local authorisation list).
    pub id_tags: Vec<String>,
    /// Whether an id tag not in the list is accepted (the park's chargers are its own fleet's:
    /// by default it is refused as `Invalid`).
    pub accept_unknown_tags: bool,
    /// The heartbeat interval given at boot, s.
    pub heartbeat_s: u32,
    /// How long a call to a charger waits for its answer (real time).
    pub call_timeout: Duration,
    /// How long one of the EMS's limits holds before the safe default applies again, s of the
    /// charger's clock.
    pub limit_hold_s: u32,
    /// The meter value interval set at each boot (`MeterValueSampleInterval`), s; `None`:
    /// the charger's own.
    pub meter_interval_s: Option<u32>,
    /// TLS (OCPP security profile 2: TLS with Basic authentication, `wss://`); `None`: plain
    /// WebSocket (profile 1), taken on loopback only.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// One key of a charger's configuration as `GetConfiguration` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    /// The key.
    pub key: String,
    /// Its value (none: the charger does not say).
    pub value: Option<String>,
    /// Whether the charger lets it be changed.
    pub readonly: bool,
}

/// The SHA-256 of a password, hex: what the run file keeps of a charger's password.
pub fn password_hash(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A call the EMS makes to a charger: its action and payload, and where its answer goes.
struct Outgoing {
    action: &'static str,
    payload: Value,
    reply: Option<oneshot::Sender<Result<Value, String>>>,
}

/// One connection of a charger.
struct Link {
    seq: u64,
    version: Version,
    calls: mpsc::Sender<Outgoing>,
    /// Told when a newer connection of the charger replaces this one, or the hub stops.
    closed: Arc<tokio::sync::Notify>,
}

/// A transaction as the central system knows it, under its charger and id (1.6: the
/// central system's number; 2.0.1: the station's own id).
#[derive(Debug, Clone)]
struct Tx {
    connector: u32,
    id_tag: String,
    meter_start_wh: i64,
    /// Whether `meter_start_wh` is the register at the start (a 2.0.1 transaction may start
    /// without one: its first register is taken as its start).
    start_known: bool,
    started: String,
    last_wh: i64,
    stopped: bool,
}

#[derive(Debug, Clone, Default)]
struct Connector {
    status: Option<ChargePointStatus>,
    status_at: Option<DateTime<Utc>>,
    reading: Reading,
    /// When the newest meter value arrived (the EMS's clock).
    read_at: Option<DateTime<Utc>>,
    /// Its timestamp on the charger's clock (orders late values).
    stamp: Option<DateTime<Utc>>,
    /// Values in a row stamped before `stamp` (a clock that went back, once there are
    /// [`CLOCK_BACK_AFTER`] of them).
    behind: u32,
    tx: Option<String>,
    /// 2.0.1: the connector's own status (occupied or not), which its transaction's charging
    /// state refines into `status`.
    occupied: Option<v201::ConnectorStatus>,
    limit_kw: Option<f64>,
    /// The EMS's last limit taken (kW asked, for which transaction, when): the same limit is
    /// not sent again until half its hold has passed (the controller asks every cycle).
    asked: Option<(f64, Option<String>, tokio::time::Instant)>,
    problem: Option<String>,
}

#[derive(Default)]
struct Charger {
    link: Option<Link>,
    booted: Option<String>,
    last_seen: Option<DateTime<Utc>>,
    connectors: BTreeMap<u32, Connector>,
}

/// A transaction's key: its charger and its id.
type TxKey = (String, String);

struct State {
    chargers: BTreeMap<String, Charger>,
    transactions: BTreeMap<TxKey, Tx>,
    next_tx: i64,
    next_link: u64,
    events: VecDeque<String>,
}

/// Meter values in a row stamped before the one held that mean the charger's clock went back
/// (NTP, the central system's time at boot), not values sent late: from then on its values
/// are taken on the new clock.
pub const CLOCK_BACK_AFTER: u32 = 3;

/// Events kept for the EMS to take (the oldest dropped beyond this).
const MAX_EVENTS: usize = 256;
/// Transactions kept for repeated and late messages (the oldest stopped ones dropped beyond).
const MAX_TRANSACTIONS: usize = 4096;

struct Inner {
    config: OcppConfig,
    time: TimeSource,
    state: Mutex<State>,
}

/// The central system: its listener and every charger's state.
#[derive(Clone)]
pub struct OcppHub {
    inner: Arc<Inner>,
    /// The address it listens on.
    pub addr: SocketAddr,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl OcppHub {
    /// Starts listening (inside a tokio runtime). Without TLS a listen address off loopback
    /// is refused: plain WebSocket with Basic authentication (security profile 1) sends the
    /// password in the clear; with TLS (profile 2) any address is taken.
    pub fn start(config: OcppConfig, time: TimeSource) -> Result<OcppHub, String> {
        if !config.listen.ip().is_loopback() && config.tls.is_none() {
            return Err(format!(
                "OCPP listen {}: plain WebSocket with Basic authentication is taken on loopback only (a charger's password would cross the network in the clear); give [ocpp] tls_cert and tls_key for TLS (security profile 2)",
                config.listen
            ));
        }
        for c in &config.chargers {
            if c.password_sha256.len() != 64
                || !c.password_sha256.chars().all(|ch| ch.is_ascii_hexdigit())
            {
                return Err(format!(
                    "OCPP charger {}: password_sha256 must be 64 hex digits (the SHA-256 of its password)",
                    c.identity
                ));
            }
        }
        let listener = std::net::TcpListener::bind(config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| format!("OCPP listen {}: {e}", config.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("OCPP listen: {e}"))?;
        // Transaction ids from the EMS's clock, so a restart does not hand out an id again.
        let next_tx = (time.now().timestamp() - 1_700_000_000).max(1);
        let chargers = config
            .chargers
            .iter()
            .map(|c| (c.identity.clone(), Charger::default()))
            .collect();
        let inner = Arc::new(Inner {
            config,
            time,
            state: Mutex::new(State {
                chargers,
                transactions: BTreeMap::new(),
                next_tx,
                next_link: 0,
                events: VecDeque::new(),
            }),
        });
        let task = tokio::spawn(server::accept_loop(listener, inner.clone()));
        Ok(OcppHub {
            inner,
            addr,
            task: Arc::new(task),
        })
    }

    /// Whether a charger's connector is this device.
    pub fn has_device(&self, device: &str) -> bool {
        self.inner
            .config
            .chargers
            .iter()
            .any(|c| c.connectors.iter().any(|k| k.device == device))
    }

    /// The device of a connector, if a charger has it.
    pub fn device(&self, device: &str, stale_after: Duration) -> Option<OcppDevice> {
        self.inner.config.chargers.iter().find_map(|c| {
            c.connectors
                .iter()
                .find(|k| k.device == device)
                .map(|k| OcppDevice {
                    hub: self.clone(),
                    identity: c.identity.clone(),
                    connector: k.connector,
                    id: device.to_string(),
                    unit: c.unit,
                    stale_after,
                    period: Duration::from_secs(1),
                })
        })
    }

    /// Whether a charger is connected now.
    pub fn connected(&self, identity: &str) -> bool {
        self.inner
            .lock()
            .chargers
            .get(identity)
            .is_some_and(|c| c.link.is_some())
    }

    /// The OCPP version a charger speaks now (`None`: not connected).
    pub fn version(&self, identity: &str) -> Option<Version> {
        self.inner
            .lock()
            .chargers
            .get(identity)
            .and_then(|c| c.link.as_ref())
            .map(|l| l.version)
    }

    /// The version a connected charger speaks, or why a call cannot be made.
    fn speaks(&self, identity: &str) -> Result<Version, String> {
        self.version(identity)
            .ok_or_else(|| format!("charger {identity} is not connected"))
    }

    /// The events since the last call (connections, refusals, transactions), oldest first.
    pub fn take_events(&self) -> Vec<String> {
        self.inner.lock().events.drain(..).collect()
    }

    /// Makes a call to a charger and waits for its answer (the call's own timeout applies).
    pub async fn call(
        &self,
        identity: &str,
        action: &'static str,
        payload: Value,
    ) -> Result<Value, String> {
        let calls = {
            let st = self.inner.lock();
            let link = st
                .chargers
                .get(identity)
                .and_then(|c| c.link.as_ref())
                .ok_or_else(|| format!("charger {identity} is not connected"))?;
            link.calls.clone()
        };
        let (tx, rx) = oneshot::channel();
        calls
            .send(Outgoing {
                action,
                payload,
                reply: Some(tx),
            })
            .await
            .map_err(|_| format!("charger {identity} disconnected"))?;
        rx.await
            .map_err(|_| format!("charger {identity} disconnected before answering {action}"))?
    }

    /// Reads a charger's configuration (`GetConfiguration`; no keys: all it reports), with
    /// the keys it does not know.
    pub async fn get_configuration(
        &self,
        identity: &str,
        keys: &[&str],
    ) -> Result<(Vec<ConfigKey>, Vec<String>), String> {
        if self.speaks(identity)? == Version::V201 {
            return Err(format!(
                "charger {identity} speaks OCPP 2.0.1: its configuration is components' variables (get_variables)"
            ));
        }
        let payload = if keys.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "key": keys })
        };
        let answer = self.call(identity, "GetConfiguration", payload).await?;
        let a: v16::GetConfigurationAnswer =
            v16::read("GetConfiguration", &answer).map_err(|e| {
                format!(
                    "charger {identity} answered GetConfiguration: {}",
                    e.description
                )
            })?;
        Ok((
            a.configuration_key
                .into_iter()
                .map(|k| ConfigKey {
                    key: k.key.0,
                    value: k.value.map(|v| v.0),
                    readonly: k.readonly,
                })
                .collect(),
            a.unknown_key.into_iter().map(|k| k.0).collect(),
        ))
    }

    /// Changes one key of a charger's configuration (`ChangeConfiguration`); its answer:
    /// `Accepted`, or `RebootRequired` (taken at its next boot). `Rejected` and
    /// `NotSupported` are errors naming the key.
    pub async fn change_configuration(
        &self,
        identity: &str,
        key: &str,
        value: &str,
    ) -> Result<&'static str, String> {
        if self.speaks(identity)? == Version::V201 {
            return Err(format!(
                "charger {identity} speaks OCPP 2.0.1: its configuration is components' variables (set_variable)"
            ));
        }
        let answer = self
            .call(
                identity,
                "ChangeConfiguration",
                serde_json::json!({"key": key, "value": value}),
            )
            .await?;
        match status_of(&answer) {
            Some("Accepted") => Ok("Accepted"),
            Some("RebootRequired") => Ok("RebootRequired"),
            other => Err(format!(
                "charger {identity} answered ChangeConfiguration of {key} with {}",
                other.unwrap_or("no status")
            )),
        }
    }

    /// Reads variables of an OCPP 2.0.1 station (`GetVariables`, their actual values): each
    /// one's value, or why the station did not give it (`UnknownVariable`, ...).
    pub async fn get_variables(
        &self,
        identity: &str,
        names: &[v201::VariableName<'_>],
    ) -> Result<Vec<Result<String, String>>, String> {
        if self.speaks(identity)? != Version::V201 {
            return Err(format!(
                "charger {identity} speaks OCPP 1.6: its configuration is keys (get_configuration)"
            ));
        }
        let answer = self
            .call(identity, "GetVariables", v201::get_variables(names))
            .await?;
        let results = answer
            .get("getVariableResult")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("charger {identity} answered GetVariables without results"))?;
        Ok(names
            .iter()
            .map(|n| {
                let r = results.iter().find(|r| {
                    r["component"]["name"] == n.component && r["variable"]["name"] == n.variable
                });
                match r {
                    None => Err(format!("{}.{}: not in the answer", n.component, n.variable)),
                    Some(r) => match (
                        status_of(r).or(r["attributeStatus"].as_str()),
                        r["attributeValue"].as_str(),
                    ) {
                        (Some("Accepted"), Some(v)) => Ok(v.to_string()),
                        (st, _) => Err(format!(
                            "{}.{}: {}",
                            n.component,
                            n.variable,
                            st.unwrap_or("no status")
                        )),
                    },
                }
            })
            .collect())
    }

    /// Sets one variable of an OCPP 2.0.1 station (`SetVariables`, its actual value); its
    /// answer: `Accepted`, or `RebootRequired`. Anything else is an error naming it.
    pub async fn set_variable(
        &self,
        identity: &str,
        name: &v201::VariableName<'_>,
        value: &str,
    ) -> Result<&'static str, String> {
        if self.speaks(identity)? != Version::V201 {
            return Err(format!(
                "charger {identity} speaks OCPP 1.6: its configuration is keys (change_configuration)"
            ));
        }
        let answer = self
            .call(identity, "SetVariables", v201::set_variables(name, value))
            .await?;
        let status = answer["setVariableResult"][0]["attributeStatus"].as_str();
        match status {
            Some("Accepted") => Ok("Accepted"),
            Some("RebootRequired") => Ok("RebootRequired"),
            other => Err(format!(
                "charger {identity} answered SetVariables of {}.{} with {}",
                name.component,
                name.variable,
                other.unwrap_or("no status")
            )),
        }
    }

    /// Restarts a charger (`Reset`, soft: it ends its transactions first (2.0.1: `OnIdle`);
    /// hard: at once (2.0.1: `Immediate`)).
    pub async fn reset(&self, identity: &str, hard: bool) -> Result<(), String> {
        let kind = match (self.speaks(identity)?, hard) {
            (Version::V16, true) => "Hard",
            (Version::V16, false) => "Soft",
            (Version::V201, true) => "Immediate",
            (Version::V201, false) => "OnIdle",
        };
        let answer = self
            .call(identity, "Reset", serde_json::json!({ "type": kind }))
            .await?;
        accepted(identity, "Reset", &answer)
    }

    /// Asks a charger to send one of its messages now (`TriggerMessage`: `BootNotification`,
    /// `Heartbeat`, `MeterValues`, `StatusNotification`, ...), for a connector or the whole
    /// charger.
    pub async fn trigger(
        &self,
        identity: &str,
        message: &str,
        connector: Option<u32>,
    ) -> Result<(), String> {
        let mut payload = serde_json::json!({ "requestedMessage": message });
        if let Some(k) = connector {
            match self.speaks(identity)? {
                Version::V16 => payload["connectorId"] = k.into(),
                Version::V201 => payload["evse"] = serde_json::json!({ "id": k }),
            }
        }
        let answer = self.call(identity, "TriggerMessage", payload).await?;
        accepted(identity, "TriggerMessage", &answer)
    }

    /// Stops listening and closes every charger's connection.
    pub fn stop(&self) {
        self.task.abort();
        let mut st = self.inner.lock();
        for c in st.chargers.values_mut() {
            if let Some(l) = c.link.take() {
                l.closed.notify_one();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, st: &mut State, what: String) {
        tracing::info!(target: "pedf::ocpp", "{what}");
        if st.events.len() >= MAX_EVENTS {
            st.events.pop_front();
        }
        st.events.push_back(what);
    }

    fn entry(&self, identity: &str) -> Option<&ChargerEntry> {
        self.config.chargers.iter().find(|c| c.identity == identity)
    }
}

/// One connector of an OCPP charger as a device of the park.
pub struct OcppDevice {
    hub: OcppHub,
    identity: String,
    connector: u32,
    id: String,
    unit: RateUnit,
    stale_after: Duration,
    /// How often a unit takes its state from the hub.
    pub(crate) period: Duration,
}

impl OcppDevice {
    /// Its state taken this often by a unit.
    pub fn with_period(mut self, period: Duration) -> OcppDevice {
        self.period = period.max(Duration::from_millis(1));
        self
    }

    /// What the charger last said of this connector: power, the energy register and the
    /// session's energy (kWh), its state (0 free, 1 a car connected, 2 charging, 3 fault), the
    /// car's SoC; not answering while the charger is not connected.
    pub fn state(&self) -> DeviceState {
        let mut s = DeviceState::new(&self.id, Capability::EvCharger, self.stale_after);
        let now = self.hub.inner.time.now();
        let st = self.hub.inner.lock();
        let Some(ch) = st.chargers.get(&self.identity) else {
            return s;
        };
        let k = ch
            .connectors
            .get(&self.connector)
            .cloned()
            .unwrap_or_default();
        // OCPP says what changes when it changes: a status, the register, the session hold
        // while the charger is connected (its connection is its liveness), and age from when
        // it was last heard once it is not. Power while charging is sampled: it ages from its
        // meter value, so a charger that stops sending them goes stale.
        let connected = ch.link.is_some();
        let held = |at: DateTime<Utc>| if connected { now.max(at) } else { at };
        if let (Some(status), Some(at)) = (k.status, k.status_at) {
            s.set(Field::ChargerState, status.state_code(), held(at));
            // A connector that is not charging draws nothing, whatever its last sample said.
            if status != ChargePointStatus::Charging {
                s.set(Field::PowerKw, 0.0, held(at));
            }
        }
        if let Some(at) = k.read_at {
            let charging = k.status.is_none_or(|st| st == ChargePointStatus::Charging);
            if let (Some(p), true) = (k.reading.power_kw, charging) {
                s.set(Field::PowerKw, p.max(0.0), at);
            }
            if let Some(e) = k.reading.energy_kwh {
                s.set(Field::EnergyKwh, e, held(at));
            }
            if let Some(soc) = k.reading.soc_pct {
                s.set(Field::SocPct, soc, held(at));
            }
        }
        let heard = k.read_at.max(k.status_at);
        match k
            .tx
            .and_then(|t| st.transactions.get(&(self.identity.clone(), t)))
        {
            Some(tx) => s.set(
                Field::SessionKwh,
                (tx.last_wh - tx.meter_start_wh).max(0) as f64 / 1000.0,
                held(heard.unwrap_or(now)),
            ),
            None => {
                if let Some(at) = k.status_at {
                    s.set(Field::SessionKwh, 0.0, held(at));
                }
            }
        }
        if let Some(p) = &k.problem {
            s.set_bad(Field::PowerKw, p.clone());
        }
        match (connected, ch.last_seen) {
            (true, Some(_)) => s.poll_ok(now),
            // Never heard from since the EMS started: not read yet (the runtime gives such
            // a device its stale time before it is an alarm), not failed.
            (_, None) => {}
            (false, Some(_)) => s.poll_failed("the charger is not connected"),
        }
        s
    }

    /// The running transaction on this connector (EVSE), if any: its id as the charger
    /// knows it.
    pub fn transaction(&self) -> Option<String> {
        let st = self.hub.inner.lock();
        st.chargers
            .get(&self.identity)
            .and_then(|c| c.connectors.get(&self.connector))
            .and_then(|k| k.tx.clone())
            .filter(|t| {
                st.transactions
                    .get(&(self.identity.clone(), t.clone()))
                    .is_some_and(|tx| !tx.stopped)
            })
    }

    /// Stops the connector's running transaction (1.6 `RemoteStopTransaction`, 2.0.1
    /// `RequestStopTransaction`): the charger ends it and says so. An error when none runs or
    /// the charger refuses.
    pub async fn remote_stop(&self) -> Result<String, String> {
        let tx = self
            .transaction()
            .ok_or_else(|| format!("{}: no transaction is running", self.id))?;
        let (action, payload) = match self.hub.speaks(&self.identity)? {
            Version::V16 => (
                "RemoteStopTransaction",
                serde_json::json!({ "transactionId": tx.parse::<i64>().map_err(|_| format!("{}: transaction {tx} is not a 1.6 id", self.id))? }),
            ),
            Version::V201 => (
                "RequestStopTransaction",
                serde_json::json!({ "transactionId": tx }),
            ),
        };
        let answer = self.hub.call(&self.identity, action, payload).await?;
        accepted(&self.id, action, &answer)?;
        Ok(tx)
    }

    /// Starts a transaction on this connector for `id_tag` (1.6 `RemoteStartTransaction`,
    /// 2.0.1 `RequestStartTransaction` with the tag as a `Central` token): the charger starts
    /// it when a car is connected.
    pub async fn remote_start(&self, id_tag: &str) -> Result<(), String> {
        let (action, payload) = match self.hub.speaks(&self.identity)? {
            Version::V16 => (
                "RemoteStartTransaction",
                serde_json::json!({"connectorId": self.connector, "idTag": id_tag}),
            ),
            Version::V201 => {
                let id = {
                    let mut st = self.hub.inner.lock();
                    st.next_tx += 1;
                    st.next_tx
                };
                (
                    "RequestStartTransaction",
                    serde_json::json!({"evseId": self.connector, "remoteStartId": id,
                        "idToken": {"idToken": id_tag, "type": "Central"}}),
                )
            }
        };
        let answer = self.hub.call(&self.identity, action, payload).await?;
        accepted(&self.id, action, &answer)
    }

    /// Takes the connector into service or out of it (`ChangeAvailability`); the answer:
    /// `Accepted`, or `Scheduled` (once its running transaction ends).
    pub async fn set_available(&self, available: bool) -> Result<&'static str, String> {
        let kind = if available {
            "Operative"
        } else {
            "Inoperative"
        };
        let payload = match self.hub.speaks(&self.identity)? {
            Version::V16 => serde_json::json!({"connectorId": self.connector, "type": kind}),
            Version::V201 => {
                serde_json::json!({"evse": {"id": self.connector}, "operationalStatus": kind})
            }
        };
        let answer = self
            .hub
            .call(&self.identity, "ChangeAvailability", payload)
            .await?;
        match status_of(&answer) {
            Some("Accepted") => Ok("Accepted"),
            Some("Scheduled") => Ok("Scheduled"),
            other => Err(format!(
                "{}: ChangeAvailability ({kind}) answered {}",
                self.id,
                other.unwrap_or("without a status")
            )),
        }
    }

    /// The limit the charger last confirmed for this connector, kW.
    pub fn limit_kw(&self) -> Option<f64> {
        let st = self.hub.inner.lock();
        st.chargers
            .get(&self.identity)
            .and_then(|c| c.connectors.get(&self.connector))
            .and_then(|k| k.limit_kw)
    }

    /// Writes a limit (kW) as a charging profile (the running transaction's `TxProfile`, else
    /// the connector's `TxDefaultProfile`, at stack level 1, held `limit_hold_s`) and reads it
    /// back as the composite schedule the charger reports, in kW.
    pub async fn set_limit(&self, kw: f64) -> Result<f64, String> {
        let hold = self.hub.inner.config.limit_hold_s;
        let tx = {
            let st = self.hub.inner.lock();
            let k = st
                .chargers
                .get(&self.identity)
                .and_then(|c| c.connectors.get(&self.connector));
            let tx = k.and_then(|k| k.tx.clone());
            // The same limit for the same transaction, taken less than half its hold ago:
            // in force, not sent again (a keepalive every half hold, not two calls a cycle).
            let renew = Duration::from_secs(u64::from(hold)) / 2;
            if let Some((asked, for_tx, at)) = k.and_then(|k| k.asked.as_ref()) {
                if *asked == kw && *for_tx == tx && at.elapsed() < renew {
                    return Ok(k.and_then(|k| k.limit_kw).unwrap_or(kw));
                }
            }
            tx
        };
        let version = self.hub.speaks(&self.identity)?;
        let purpose = tx
            .as_deref()
            .map_or(v16::Purpose::TxDefault, v16::Purpose::Tx);
        let limit = self.unit.limit_of_kw(kw.max(0.0));
        let now = ocpp_time(self.hub.inner.time.now());
        let profile = v16::Profile {
            connector: self.connector,
            id: profile_id(self.connector, purpose),
            stack_level: 1,
            purpose,
            unit: self.unit,
            limit,
            start: &now,
            duration_s: Some(hold),
        };
        let payload = match version {
            Version::V16 => v16::set_charging_profile(&profile),
            Version::V201 => v201::set_charging_profile(&profile),
        };
        let answer = self
            .hub
            .call(&self.identity, "SetChargingProfile", payload)
            .await?;
        match answer.get("status").and_then(Value::as_str) {
            Some("Accepted") => {}
            other => {
                return Err(format!(
                    "{}: SetChargingProfile answered {}",
                    self.id,
                    other.unwrap_or("without a status")
                ))
            }
        }
        let ask = match version {
            Version::V16 => {
                serde_json::json!({"connectorId": self.connector, "duration": 60, "chargingRateUnit": self.unit.name()})
            }
            Version::V201 => {
                serde_json::json!({"evseId": self.connector, "duration": 60, "chargingRateUnit": self.unit.name()})
            }
        };
        let answer = self
            .hub
            .call(&self.identity, "GetCompositeSchedule", ask)
            .await?;
        let read = match version {
            Version::V16 => v16::composite_limit(&answer),
            Version::V201 => v201::composite_limit(&answer),
        };
        let (limit, unit) = read.map_err(|e| format!("{}: {e}", self.id))?;
        let unit = match (unit, self.unit) {
            (RateUnit::A { phases, .. }, RateUnit::A { voltage, .. }) => {
                RateUnit::A { phases, voltage }
            }
            (u, _) => u,
        };
        let got = unit.kw_of_limit(limit);
        let mut st = self.hub.inner.lock();
        if let Some(k) = st
            .chargers
            .get_mut(&self.identity)
            .and_then(|c| c.connectors.get_mut(&self.connector))
        {
            k.limit_kw = Some(got);
            // Kept from resending only when the charger confirms what was sent (to its own
            // resolution: 2 %, at least 50 W): a limit another call stood over (a boot's
            // clearing of default profiles between the profile and its read-back) is sent
            // again at the next ask.
            let sent = self.unit.kw_of_limit(limit);
            k.asked = ((got - sent).abs() <= (0.02 * sent.abs()).max(0.05))
                .then(|| (kw, tx, tokio::time::Instant::now()));
        }
        Ok(got)
    }
}

/// The `status` of a charger's answer.
fn status_of(answer: &Value) -> Option<&str> {
    answer.get("status").and_then(Value::as_str)
}

/// An answer that must be `Accepted`; otherwise an error naming who and what.
fn accepted(who: &str, action: &str, answer: &Value) -> Result<(), String> {
    match status_of(answer) {
        Some("Accepted") => Ok(()),
        other => Err(format!(
            "{who}: {action} answered {}",
            other.unwrap_or("without a status")
        )),
    }
}

/// A time as OCPP writes it: RFC 3339 in UTC, milliseconds.
pub fn ocpp_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The id of a connector's safe default profile: 10 x the connector (see [`profile_id`]).
fn safe_profile_id(connector: u32) -> i64 {
    10 * i64::from(connector)
}

/// A profile id of its own for each connector and purpose, so no two collide: 10 x the
/// connector + 0 (the safe default), 1 (the EMS's default), 2 (a transaction's).
fn profile_id(connector: u32, purpose: v16::Purpose<'_>) -> i64 {
    safe_profile_id(connector)
        + match purpose {
            v16::Purpose::TxDefault => 1,
            v16::Purpose::Tx(_) => 2,
        }
}

impl SetpointSink for OcppDevice {
    fn write_setpoint(
        &mut self,
        value: f64,
    ) -> impl std::future::Future<Output = Result<f64, DeviceError>> + Send {
        let device = OcppDevice {
            hub: self.hub.clone(),
            identity: self.identity.clone(),
            connector: self.connector,
            id: self.id.clone(),
            unit: self.unit,
            stale_after: self.stale_after,
            period: self.period,
        };
        async move { device.set_limit(value).await.map_err(DeviceError::Ocpp) }
    }
}
