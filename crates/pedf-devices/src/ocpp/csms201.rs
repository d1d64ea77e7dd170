//! What the CSMS answers an OCPP 2.0.1 charging station (the connections, authentication and
//! calls are the same as 1.6's, in `server`).
//!
//! A park device is one of the station's EVSEs (the run file's `connector` is the EVSE id):
//! an EVSE charges one car at a time, whichever of its connectors is plugged, and takes the
//! limit. Its state is kept in 1.6's terms: the connector's status (`Occupied` or not) refined
//! by its transaction's charging state (charging, suspended by the car or the EVSE, a car
//! connected and idle).

use serde_json::{json, Value};

use super::rpc::Version;
use super::rpc::{CallError, ErrorKind};
use super::server::{booted, connector, parse_time, prune, tag_status, take_reading, Sample};
use super::v16::{ChargePointStatus, Reading};
use super::v201::{self, ConnectorStatus, EventType};
use super::{ocpp_time, Inner, Outgoing, Tx};

/// Answers one of a station's calls; also what the CSMS calls right after (the meter value
/// interval and the safe default profiles after a boot).
pub(super) fn handle(
    inner: &Inner,
    identity: &str,
    action: &str,
    payload: &Value,
) -> (Result<Value, CallError>, Vec<Outgoing>) {
    let now = inner.time.now();
    let mut after = Vec::new();
    let read = |p: &Value| -> Result<(), CallError> {
        if p.is_object() {
            Ok(())
        } else {
            Err(CallError::new(
                ErrorKind::TypeConstraint,
                format!("{action}: the payload is not an object"),
            ))
        }
    };
    let answer = (|| -> Result<Value, CallError> {
        let mut st = inner.lock();
        match action {
            "BootNotification" => {
                let b: v201::BootNotification = super::v16::read(action, payload)?;
                let cs = &b.charging_station;
                let what = format!(
                    "charger {identity} booted: {} {}{} ({:?})",
                    cs.vendor_name.0,
                    cs.model.0,
                    cs.firmware_version
                        .as_ref()
                        .map(|f| format!(", firmware {}", f.0))
                        .unwrap_or_default(),
                    b.reason
                );
                if let Some(secs) = inner.config.meter_interval_s {
                    after.push(Outgoing {
                        action: "SetVariables",
                        payload: v201::set_variables(&v201::TX_UPDATED_INTERVAL, &secs.to_string()),
                        reply: None,
                    });
                }
                Ok(booted(inner, &mut st, identity, what, Version::V201, &mut after))
            }
            "Heartbeat" => {
                let _: v201::Heartbeat = super::v16::read(action, payload)?;
                Ok(json!({"currentTime": ocpp_time(now)}))
            }
            "StatusNotification" => {
                let s: v201::StatusNotification = super::v16::read(action, payload)?;
                if s.evse_id > 0 {
                    let k = connector(&mut st, identity, s.evse_id);
                    k.occupied = Some(s.connector_status);
                    let charging_state = k.status.filter(|_| k.tx.is_some()).filter(|st| {
                        matches!(
                            st,
                            ChargePointStatus::Charging
                                | ChargePointStatus::SuspendedEV
                                | ChargePointStatus::SuspendedEVSE
                                | ChargePointStatus::Preparing
                        )
                    });
                    k.status = Some(match s.connector_status {
                        ConnectorStatus::Available => ChargePointStatus::Available,
                        // Occupied: what its transaction last said, else a car plugged in.
                        ConnectorStatus::Occupied => {
                            charging_state.unwrap_or(ChargePointStatus::Preparing)
                        }
                        ConnectorStatus::Reserved => ChargePointStatus::Reserved,
                        ConnectorStatus::Unavailable => ChargePointStatus::Unavailable,
                        ConnectorStatus::Faulted => ChargePointStatus::Faulted,
                    });
                    k.status_at = Some(now);
                    k.problem = (s.connector_status == ConnectorStatus::Faulted)
                        .then(|| format!("faulted (connector {})", s.connector_id));
                }
                if s.connector_status == ConnectorStatus::Faulted {
                    inner.event(
                        &mut st,
                        format!(
                            "charger {identity} EVSE {} connector {} faulted",
                            s.evse_id, s.connector_id
                        ),
                    );
                }
                Ok(json!({}))
            }
            "Authorize" => {
                let a: v201::Authorize = super::v16::read(action, payload)?;
                Ok(json!({"idTokenInfo": {"status": token_status(inner, &a.id_token)}}))
            }
            "TransactionEvent" => {
                let e: v201::TransactionEvent = super::v16::read(action, payload)?;
                let id = e.transaction_info.transaction_id.0.clone();
                let key = (identity.to_string(), id.clone());
                let known = st.transactions.get(&key).cloned();
                let evse = e
                    .evse
                    .as_ref()
                    .map(|v| v.id)
                    .or(known.as_ref().map(|t| t.connector))
                    .unwrap_or(0);
                let latest = e
                    .meter_value
                    .iter()
                    .flatten()
                    .max_by_key(|v| parse_time(&v.timestamp));
                let (reading, problems) = latest.map(|m| m.reading()).unwrap_or_default();
                let register = reading.energy_kwh.map(|k| (k * 1000.0).round() as i64);
                let tag = e.id_token.as_ref().map(|t| t.id_token.0.clone());
                let status = e.id_token.as_ref().map(|t| token_status(inner, t));
                if known.is_none() {
                    // The first event of a transaction: a Started, or (sent after an outage
                    // that lost or reordered it) a later one, taken as its start.
                    st.transactions.insert(
                        key.clone(),
                        Tx {
                            connector: evse,
                            id_tag: tag.clone().unwrap_or_default(),
                            meter_start_wh: register.unwrap_or(0),
                            start_known: register.is_some(),
                            started: e.timestamp.clone(),
                            last_wh: register.unwrap_or(0),
                            stopped: false,
                        },
                    );
                    prune(&mut st);
                    let late = if e.event_type == EventType::Started {
                        String::new()
                    } else {
                        format!(" (first heard of in its {:?} event)", e.event_type)
                    };
                    let by = tag.clone().unwrap_or_else(|| "no id token yet".into());
                    let st_txt = status.map(|s| format!(" ({s})")).unwrap_or_default();
                    inner.event(
                        &mut st,
                        format!("charger {identity} connector {evse}: transaction {id} started by {by}{st_txt}{late}"),
                    );
                } else if let (Some(t), Some(tx)) = (tag.as_ref(), st.transactions.get_mut(&key)) {
                    // Authorised after the car was plugged in: the tag joins the transaction.
                    if tx.id_tag.is_empty() {
                        tx.id_tag = t.clone();
                    }
                }
                let stopped = st.transactions.get(&key).is_some_and(|t| t.stopped);
                if evse > 0 && !stopped {
                    let k = connector(&mut st, identity, evse);
                    if e.event_type != EventType::Ended {
                        k.tx = Some(id.clone());
                    }
                    if let Some(cs) = e.transaction_info.charging_state {
                        // A connector out of service or faulted stays so.
                        if !matches!(
                            k.occupied,
                            Some(ConnectorStatus::Unavailable | ConnectorStatus::Faulted)
                        ) {
                            k.status = Some(cs.status());
                            k.status_at = Some(now);
                        }
                    }
                }
                if latest.is_some() && evse > 0 {
                    let at = Sample {
                        connector: evse,
                        timestamp: latest.map(|m| m.timestamp.as_str()).unwrap_or_default(),
                        tx: Some(id.clone()),
                        now,
                    };
                    take_reading(inner, &mut st, identity, at, reading, problems);
                }
                if e.event_type == EventType::Ended && !stopped {
                    let mut done = None;
                    if let Some(tx) = st.transactions.get_mut(&key) {
                        tx.stopped = true;
                        if let Some(w) = register {
                            tx.last_wh = tx.last_wh.max(w);
                        }
                        done = Some((tx.last_wh - tx.meter_start_wh).max(0) as f64 / 1000.0);
                    }
                    let reason = e
                        .transaction_info
                        .stopped_reason
                        .map_or("Local".to_string(), |r| format!("{r:?}"));
                    inner.event(
                        &mut st,
                        format!(
                            "charger {identity} connector {evse}: transaction {id} stopped ({reason}), {:.3} kWh",
                            done.unwrap_or(0.0)
                        ),
                    );
                    if evse > 0 {
                        let k = connector(&mut st, identity, evse);
                        if k.tx.as_ref() == Some(&id) {
                            k.tx = None;
                        }
                        if k.occupied == Some(ConnectorStatus::Occupied) {
                            k.status = Some(ChargePointStatus::Finishing);
                            k.status_at = Some(now);
                        }
                    }
                }
                Ok(match status {
                    Some(s) => json!({"idTokenInfo": {"status": s}}),
                    None => json!({}),
                })
            }
            "MeterValues" => {
                let m: v201::MeterValues = super::v16::read(action, payload)?;
                let latest = m
                    .meter_value
                    .iter()
                    .max_by_key(|v| parse_time(&v.timestamp));
                // EVSE 0 is the station's own main meter, not a car's.
                if let (Some(v), true) = (latest, m.evse_id > 0) {
                    let (r, problems): (Reading, Vec<String>) = v.reading();
                    let at = Sample {
                        connector: m.evse_id,
                        timestamp: &v.timestamp,
                        tx: None,
                        now,
                    };
                    take_reading(inner, &mut st, identity, at, r, problems);
                }
                Ok(json!({}))
            }
            "NotifyEVChargingNeeds" => {
                read(payload)?;
                let evse = payload["evseId"].as_u64().unwrap_or(0);
                let needs = &payload["chargingNeeds"];
                let wanted = needs["acChargingParameters"]["energyAmount"]
                    .as_f64()
                    .or(needs["dcChargingParameters"]["energyAmount"].as_f64());
                inner.event(
                    &mut st,
                    format!(
                        "charger {identity} EVSE {evse}: the car needs {} by {}",
                        wanted.map_or("an unsaid energy".into(), |w| format!("{:.3} kWh", w / 1000.0)),
                        needs["departureTime"].as_str().unwrap_or("an unsaid time")
                    ),
                );
                // The EMS's limits follow each cycle: a schedule is provided.
                Ok(json!({"status": "Accepted"}))
            }
            "NotifyEVChargingSchedule" => {
                read(payload)?;
                Ok(json!({"status": "Accepted"}))
            }
            "SecurityEventNotification" => {
                read(payload)?;
                let kind = required_text(action, payload, "type")?;
                inner.event(&mut st, format!("charger {identity}: security event {kind}"));
                Ok(json!({}))
            }
            "FirmwareStatusNotification"
            | "LogStatusNotification"
            | "PublishFirmwareStatusNotification" => {
                read(payload)?;
                let status = required_text(action, payload, "status")?;
                inner.event(&mut st, format!("charger {identity}: {action} {status}"));
                Ok(json!({}))
            }
            "NotifyChargingLimit" | "ClearedChargingLimit" => {
                read(payload)?;
                let source = payload["chargingLimit"]["chargingLimitSource"]
                    .as_str()
                    .or(payload["chargingLimitSource"].as_str())
                    .ok_or_else(|| {
                        CallError::new(
                            ErrorKind::ProtocolError,
                            format!("{action}: missing field `chargingLimitSource`"),
                        )
                    })?;
                inner.event(
                    &mut st,
                    format!("charger {identity}: {action} from {source} (a limit the EMS did not set)"),
                );
                Ok(json!({}))
            }
            "NotifyEvent" | "NotifyReport" | "NotifyMonitoringReport" | "ReportChargingProfiles"
            | "NotifyCustomerInformation" | "NotifyDisplayMessages" => {
                read(payload)?;
                Ok(json!({}))
            }
            "DataTransfer" => {
                read(payload)?;
                required_text(action, payload, "vendorId")?;
                Ok(json!({"status": "UnknownVendorId"}))
            }
            "Get15118EVCertificate" | "GetCertificateStatus" | "SignCertificate" => Err(
                CallError::new(
                    ErrorKind::NotSupported,
                    format!("{action}: pedf keeps no certificate authority (ISO 15118 Plug & Charge is not offered)"),
                ),
            ),
            other => Err(CallError::new(
                ErrorKind::NotImplemented,
                format!("{other} is not an OCPP 2.0.1 action a CSMS takes"),
            )),
        }
    })();
    (answer, after)
}

/// A token's status against the local list: unlisted is `Unknown` to 2.0.1 (pedf does not
/// know it), `NoAuthorization` (free charging) is a tag like any, accepted only where
/// unknown tags are.
fn token_status(inner: &Inner, t: &v201::IdToken) -> &'static str {
    match tag_status(inner, &t.id_token.0) {
        "Accepted" => "Accepted",
        _ => "Unknown",
    }
}

fn required_text(action: &str, payload: &Value, field: &str) -> Result<String, CallError> {
    match payload.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(CallError::new(
            ErrorKind::TypeConstraint,
            format!("{action}: `{field}` is not a string"),
        )),
        None => Err(CallError::new(
            ErrorKind::ProtocolError,
            format!("{action}: missing field `{field}`"),
        )),
    }
}
