//! A simulated OCPP charge point with one connector, speaking 1.6J or 2.0.1 (for `pedf demo`
//! and tests): it connects to a central system (`ws://host:port/path/IDENTITY`, subprotocol
//! `ocpp1.6` or `ocpp2.0.1`, HTTP Basic), boots, starts a transaction when a car is plugged in and stops it when the car
//! leaves, sends meter values (the energy register and the power) every period, and takes
//! charging profiles: the limit of the highest stack level (a transaction's profile over the
//! defaults) is what the car may draw, answered back as the composite schedule. Written here
//! from the OCPP 1.6 and 2.0.1 specifications, apart from pedf's central system (2.0.1: one
//! EVSE with one connector, its transaction started, updated with the meter values and
//! ended by TransactionEvent, its id its own); it reconnects when the
//! connection drops and carries its transaction over. It takes the central system's remote
//! stop (the car stays plugged in and draws nothing until it leaves), remote start (for a car
//! plugged in) and changes of availability (out of service after the running transaction:
//! the car draws nothing until it is back in service).
//!
//! The same handles as the MQTT charger ([`crate::mqtt::SimMqttDevice`]): the demo's physics
//! reads the limit in `command_kw`, sets the car's draw in `power_kw` and the car's presence
//! in `present`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Volts phase to neutral the simulated charger converts amperes with.
const VOLTS: f64 = 230.0;

/// The OCPP version a simulated charger speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOcppVersion {
    /// OCPP 1.6J.
    V16,
    /// OCPP 2.0.1.
    V201,
}

/// A running simulated OCPP charge point.
pub struct SimOcppCharger {
    /// The car's draw now, kW (set by the physics).
    pub power_kw: Arc<Mutex<f64>>,
    /// The limit of the charging profiles in force, kW (`None` before any profile).
    pub command_kw: Arc<Mutex<Option<f64>>>,
    /// A car is plugged in.
    pub present: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimOcppCharger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Car {
    version: SimOcppVersion,
    power_kw: Arc<Mutex<f64>>,
    command_kw: Arc<Mutex<Option<f64>>>,
    present: Arc<AtomicBool>,
    /// (purpose, stack level) -> (limit kW, transaction).
    profiles: BTreeMap<(String, u64), (f64, Option<String>)>,
    /// The running transaction (1.6: the central system's number, as text).
    tx: Option<String>,
    /// 2.0.1: the TransactionEvents' sequence number.
    seq: u64,
    wh: f64,
    next_id: u64,
    /// In service (ChangeAvailability Operative).
    available: bool,
    /// Out of service once the running transaction ends.
    unavailable_after_tx: bool,
    /// The running transaction is to end (RemoteStopTransaction).
    stop_asked: bool,
    /// The car's transaction was ended remotely: none starts again until it leaves.
    stopped: bool,
    /// The id tag of a remote start.
    start_tag: Option<String>,
    /// A status to send.
    status_due: Option<&'static str>,
}

impl SimOcppCharger {
    /// Starts the charge point: `url` is the central system's base (`ws://127.0.0.1:9000/ocpp`),
    /// meter values every `period` of real time, energy counted at `speed` times real time.
    pub fn start(
        url: &str,
        identity: &str,
        password: &str,
        period: Duration,
        speed: f64,
    ) -> SimOcppCharger {
        SimOcppCharger::start_speaking(SimOcppVersion::V16, url, identity, password, period, speed)
    }

    /// The same, speaking `version`.
    pub fn start_speaking(
        version: SimOcppVersion,
        url: &str,
        identity: &str,
        password: &str,
        period: Duration,
        speed: f64,
    ) -> SimOcppCharger {
        let car = Car {
            version,
            power_kw: Arc::new(Mutex::new(0.0)),
            command_kw: Arc::new(Mutex::new(None)),
            present: Arc::new(AtomicBool::new(false)),
            profiles: BTreeMap::new(),
            tx: None,
            seq: 0,
            wh: 0.0,
            next_id: 0,
            available: true,
            unavailable_after_tx: false,
            stop_asked: false,
            stopped: false,
            start_tag: None,
            status_due: None,
        };
        let (power_kw, command_kw, present) = (
            car.power_kw.clone(),
            car.command_kw.clone(),
            car.present.clone(),
        );
        let (url, identity, password) = (
            format!("{}/{identity}", url.trim_end_matches('/')),
            identity.to_string(),
            password.to_string(),
        );
        let task = tokio::spawn(async move {
            let mut car = car;
            loop {
                if let Some(mut ws) = connect(&url, &identity, &password, version).await {
                    let _ = car.session(&mut ws, period, speed).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        SimOcppCharger {
            power_kw,
            command_kw,
            present,
            task,
        }
    }
}

async fn connect(url: &str, identity: &str, password: &str, version: SimOcppVersion) -> Option<Ws> {
    use base64::Engine;
    let mut req = url.into_client_request().ok()?;
    let h = req.headers_mut();
    let sub = match version {
        SimOcppVersion::V16 => "ocpp1.6",
        SimOcppVersion::V201 => "ocpp2.0.1",
    };
    h.insert("Sec-WebSocket-Protocol", sub.parse().ok()?);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{identity}:{password}"));
    h.insert("Authorization", format!("Basic {basic}").parse().ok()?);
    tokio_tungstenite::connect_async(req)
        .await
        .ok()
        .map(|c| c.0)
}

fn now() -> String {
    // The charger's own clock: the wall clock (the central system keeps the park's time).
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Car {
    /// Out of service or stopped remotely: the car draws nothing.
    fn held(&self) -> bool {
        !self.available || self.stopped
    }

    /// The limit the car takes now, for the physics.
    fn command(&self) -> Option<()> {
        *self.command_kw.lock().ok()? = if self.held() {
            Some(0.0)
        } else {
            self.limit_kw()
        };
        Some(())
    }

    /// The limit in force: a transaction's profile for this transaction over the defaults,
    /// the highest stack level of each.
    fn limit_kw(&self) -> Option<f64> {
        let best = |purpose: &str| {
            self.profiles
                .iter()
                .filter(|((p, _), (_, tx))| {
                    p == purpose && (purpose != "TxProfile" || *tx == self.tx)
                })
                .max_by_key(|((_, level), _)| *level)
                .map(|(_, (kw, _))| *kw)
        };
        best("TxProfile").or_else(|| best("TxDefaultProfile"))
    }

    async fn session(&mut self, ws: &mut Ws, period: Duration, speed: f64) -> Option<()> {
        let boot = match self.version {
            SimOcppVersion::V16 => {
                json!({"chargePointVendor": "pedf-sim", "chargePointModel": "DC 60"})
            }
            SimOcppVersion::V201 => {
                json!({"chargingStation": {"vendorName": "pedf-sim", "model": "DC 60"}, "reason": "PowerUp"})
            }
        };
        let boot = self.call(ws, "BootNotification", boot).await?;
        if boot.get("status").and_then(Value::as_str) != Some("Accepted") {
            return None;
        }
        let status = if self.tx.is_some() {
            "Charging"
        } else {
            "Available"
        };
        self.status(ws, status).await?;
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                m = ws.next() => {
                    let text = match m {
                        Some(Ok(Message::Text(t))) => t.to_string(),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                        Some(Ok(_)) => continue,
                    };
                    self.answer(ws, &text).await?;
                    continue;
                }
            }
            let kw = *self.power_kw.lock().ok()?;
            self.wh += kw * 1000.0 * period.as_secs_f64() * speed / 3600.0;
            if let Some(s) = self.status_due.take() {
                self.status(ws, s).await?;
            }
            let here = self.present.load(Ordering::Relaxed);
            if !here {
                self.stopped = false;
            }
            let held = self.held();
            self.command()?;
            match (here, self.tx.clone()) {
                (true, None) if !held => {
                    self.status(ws, "Preparing").await?;
                    let tag = self.start_tag.take();
                    self.start(ws, tag).await?;
                    self.status(ws, "Charging").await?;
                }
                (true, None) => {}
                (_, Some(tx)) if !here || self.stop_asked => {
                    self.stop(ws, &tx, here).await?;
                    self.tx = None;
                    self.stop_asked = false;
                    self.stopped = here;
                    self.profiles.retain(|(p, _), _| p != "TxProfile");
                    if self.unavailable_after_tx {
                        self.unavailable_after_tx = false;
                        self.available = false;
                    }
                    self.command()?;
                    let status = match (self.available, here) {
                        (false, _) => "Unavailable",
                        (true, true) => "Finishing",
                        (true, false) => "Available",
                    };
                    self.status(ws, status).await?;
                }
                (_, Some(tx)) => self.meter(ws, &tx, kw).await?,
                (false, None) => {}
            }
        }
    }

    /// Sends a connector status in 1.6's terms (2.0.1: whether the connector is occupied;
    /// whether the car charges goes with its transaction).
    async fn status(&mut self, ws: &mut Ws, status: &str) -> Option<()> {
        let payload = match self.version {
            SimOcppVersion::V16 => {
                json!({"connectorId": 1, "errorCode": "NoError", "status": status, "timestamp": now()})
            }
            SimOcppVersion::V201 => {
                let st = match status {
                    "Available" | "Unavailable" | "Faulted" | "Reserved" => status,
                    _ => "Occupied",
                };
                json!({"timestamp": now(), "connectorStatus": st, "evseId": 1, "connectorId": 1})
            }
        };
        self.call(ws, "StatusNotification", payload)
            .await
            .map(|_| ())
    }

    /// The register and the power as sampled values of `version`.
    fn sampled(&self, kw: f64, context: &str) -> Value {
        match self.version {
            SimOcppVersion::V16 => json!([
                {"value": format!("{}", self.wh.round() as i64), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": context},
                {"value": format!("{:.1}", kw * 1000.0), "measurand": "Power.Active.Import", "unit": "W", "context": context}]),
            SimOcppVersion::V201 => json!([
                {"value": self.wh.round(), "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}, "context": context},
                {"value": (kw * 10_000.0).round() / 10.0, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}, "context": context}]),
        }
    }

    /// 2.0.1: a TransactionEvent of the running transaction.
    fn event(&mut self, kind: &str, trigger: &str, info: Value, kw: f64, context: &str) -> Value {
        self.seq += 1;
        json!({"eventType": kind, "timestamp": now(), "triggerReason": trigger, "seqNo": self.seq,
            "transactionInfo": info,
            "meterValue": [{"timestamp": now(), "sampledValue": self.sampled(kw, context)}]})
    }

    /// Starts a transaction for a car plugged in (a remote start's tag, else the car's own).
    async fn start(&mut self, ws: &mut Ws, remote: Option<String>) -> Option<()> {
        let tag = remote.clone().unwrap_or_else(|| "DEMO-CAR".into());
        match self.version {
            SimOcppVersion::V16 => {
                let r = self
                    .call(ws, "StartTransaction", json!({"connectorId": 1, "idTag": tag, "meterStart": self.wh.round() as i64, "timestamp": now()}))
                    .await?;
                self.tx = r
                    .get("transactionId")
                    .and_then(Value::as_i64)
                    .map(|t| t.to_string());
            }
            SimOcppVersion::V201 => {
                // Its own id: unique across its restarts (the wall clock) and transactions.
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let id = format!("sim-{secs}-{}", self.seq + 1);
                let (trigger, kind) = if remote.is_some() {
                    ("RemoteStart", "Central")
                } else {
                    ("Authorized", "Local")
                };
                let mut e = self.event(
                    "Started",
                    trigger,
                    json!({"transactionId": id, "chargingState": "Charging"}),
                    0.0,
                    "Transaction.Begin",
                );
                e["evse"] = json!({"id": 1, "connectorId": 1});
                e["idToken"] = json!({"idToken": tag, "type": kind});
                self.call(ws, "TransactionEvent", e).await?;
                self.tx = Some(id);
            }
        }
        Some(())
    }

    /// Ends the running transaction: stopped remotely with the car still `here`, or the car
    /// gone.
    async fn stop(&mut self, ws: &mut Ws, tx: &str, here: bool) -> Option<()> {
        let reason = if here { "Remote" } else { "EVDisconnected" };
        match self.version {
            SimOcppVersion::V16 => {
                self.call(ws, "StopTransaction", json!({"transactionId": tx.parse::<i64>().ok()?, "meterStop": self.wh.round() as i64, "timestamp": now(), "reason": reason}))
                    .await?;
            }
            SimOcppVersion::V201 => {
                let (trigger, state) = if here {
                    ("RemoteStop", "EVConnected")
                } else {
                    ("EVDeparted", "Idle")
                };
                let e = self.event(
                    "Ended",
                    trigger,
                    json!({"transactionId": tx, "chargingState": state, "stoppedReason": reason}),
                    0.0,
                    "Transaction.End",
                );
                self.call(ws, "TransactionEvent", e).await?;
            }
        }
        Some(())
    }

    /// The running transaction's meter values.
    async fn meter(&mut self, ws: &mut Ws, tx: &str, kw: f64) -> Option<()> {
        match self.version {
            SimOcppVersion::V16 => {
                let values = self.sampled(kw, "Sample.Periodic");
                self.call(ws, "MeterValues", json!({"connectorId": 1, "transactionId": tx.parse::<i64>().ok()?, "meterValue": [{"timestamp": now(), "sampledValue": values}]}))
                    .await?;
            }
            SimOcppVersion::V201 => {
                let state = if kw > 0.0 {
                    "Charging"
                } else {
                    "SuspendedEVSE"
                };
                let e = self.event(
                    "Updated",
                    "MeterValuePeriodic",
                    json!({"transactionId": tx, "chargingState": state}),
                    kw,
                    "Sample.Periodic",
                );
                self.call(ws, "TransactionEvent", e).await?;
            }
        }
        Some(())
    }

    /// Sends a call and waits for its result, answering the central system's calls meanwhile.
    async fn call(&mut self, ws: &mut Ws, action: &str, payload: Value) -> Option<Value> {
        self.next_id += 1;
        let id = format!("cp-{}", self.next_id);
        ws.send(Message::text(json!([2, id, action, payload]).to_string()))
            .await
            .ok()?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .ok()??
                .ok()?;
            let Message::Text(t) = m else {
                if matches!(m, Message::Close(_)) {
                    return None;
                }
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).ok()?;
            match v.get(0).and_then(Value::as_u64) {
                Some(3) if v.get(1).and_then(Value::as_str) == Some(id.as_str()) => {
                    return v.get(2).cloned();
                }
                Some(4) if v.get(1).and_then(Value::as_str) == Some(id.as_str()) => return None,
                Some(2) => self.answer(ws, t.as_str()).await?,
                _ => {}
            }
        }
    }

    /// Answers one call of the central system.
    async fn answer(&mut self, ws: &mut Ws, text: &str) -> Option<()> {
        let v: Value = serde_json::from_str(text).ok()?;
        if v.get(0).and_then(Value::as_u64) != Some(2) {
            return Some(());
        }
        let id = v.get(1).cloned().unwrap_or(Value::Null);
        let action = v.get(2).and_then(Value::as_str).unwrap_or_default();
        let p = v.get(3).cloned().unwrap_or(Value::Null);
        let result = match action {
            "SetChargingProfile" => {
                let (prof, schedule) = match self.version {
                    SimOcppVersion::V16 => {
                        let prof = &p["csChargingProfiles"];
                        (prof, &prof["chargingSchedule"])
                    }
                    SimOcppVersion::V201 => {
                        let prof = &p["chargingProfile"];
                        (prof, &prof["chargingSchedule"][0])
                    }
                };
                let period = &schedule["chargingSchedulePeriod"][0];
                let limit = period["limit"].as_f64().unwrap_or(0.0);
                let kw = match schedule["chargingRateUnit"].as_str() {
                    Some("A") => {
                        limit * VOLTS * period["numberPhases"].as_f64().unwrap_or(3.0) / 1000.0
                    }
                    _ => limit / 1000.0,
                };
                let key = (
                    prof["chargingProfilePurpose"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    prof["stackLevel"].as_u64().unwrap_or(0),
                );
                let tx = match &prof["transactionId"] {
                    Value::String(t) => Some(t.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                self.profiles.insert(key, (kw, tx));
                *self.command_kw.lock().ok()? = self.limit_kw();
                json!({"status": "Accepted"})
            }
            "GetCompositeSchedule" => match (self.limit_kw(), self.version) {
                (Some(kw), SimOcppVersion::V16) => {
                    json!({"status": "Accepted", "connectorId": 1, "scheduleStart": now(), "chargingSchedule": {
                    "duration": p["duration"], "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": (kw * 10_000.0).floor() / 10.0}]}})
                }
                (Some(kw), SimOcppVersion::V201) => {
                    json!({"status": "Accepted", "schedule": {"evseId": 1, "duration": p["duration"],
                    "scheduleStart": now(), "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": (kw * 10_000.0).floor() / 10.0}]}})
                }
                (None, _) => json!({"status": "Rejected"}),
            },
            "SetVariables" => {
                // Taken as asked (the simulated station samples at the demo's own period).
                let results: Vec<Value> = p["setVariableData"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| json!({"attributeStatus": "Accepted", "component": d["component"], "variable": d["variable"]}))
                    .collect();
                json!({ "setVariableResult": results })
            }
            "ClearChargingProfile" => {
                // By purpose (the criteria's in 2.0.1); without one, all.
                let purpose = p["chargingProfilePurpose"]
                    .as_str()
                    .or(p["chargingProfileCriteria"]["chargingProfilePurpose"].as_str());
                let before = self.profiles.len();
                self.profiles
                    .retain(|(pu, _), _| purpose.is_some_and(|want| want != pu));
                *self.command_kw.lock().ok()? = self.limit_kw();
                let status = if self.profiles.len() < before {
                    "Accepted"
                } else {
                    "Unknown"
                };
                json!({ "status": status })
            }
            "RemoteStopTransaction" | "RequestStopTransaction" => {
                let asked = match &p["transactionId"] {
                    Value::String(t) => Some(t.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                if self.tx.is_some() && asked == self.tx {
                    self.stop_asked = true;
                    json!({"status": "Accepted"})
                } else {
                    json!({"status": "Rejected"})
                }
            }
            "RemoteStartTransaction" | "RequestStartTransaction" => {
                let here = self.present.load(Ordering::Relaxed);
                if self.tx.is_none() && self.available && here {
                    self.start_tag = p["idTag"]
                        .as_str()
                        .or(p["idToken"]["idToken"].as_str())
                        .map(str::to_string);
                    self.stopped = false;
                    json!({"status": "Accepted"})
                } else {
                    json!({"status": "Rejected"})
                }
            }
            "ChangeAvailability" => match (
                p["type"].as_str().or(p["operationalStatus"].as_str()),
                self.tx.as_ref(),
            ) {
                (Some("Inoperative"), Some(_)) => {
                    self.unavailable_after_tx = true;
                    json!({"status": "Scheduled"})
                }
                (Some("Inoperative"), None) => {
                    self.available = false;
                    self.status_due = Some("Unavailable");
                    json!({"status": "Accepted"})
                }
                (Some("Operative"), _) => {
                    self.available = true;
                    self.unavailable_after_tx = false;
                    if self.tx.is_none() {
                        self.status_due = Some("Available");
                    }
                    json!({"status": "Accepted"})
                }
                _ => json!({"status": "Rejected"}),
            },
            _ => {
                let e = json!([
                    4,
                    id,
                    "NotImplemented",
                    format!("{action} is not simulated"),
                    {}
                ]);
                return ws.send(Message::text(e.to_string())).await.ok();
            }
        };
        ws.send(Message::text(json!([3, id, result]).to_string()))
            .await
            .ok()
    }
}
