//! OCPP 2.0.1 messages: what a charging station sends (read strictly, as the official JSON
//! schemas of OCPP 2.0.1 define them: every object closed to fields it does not name but
//! `customData`) and the CSMS's requests to it.
//!
//! Names follow the specification's (OCPP 2.0.1 part 2, chapter 1 messages and chapter 2
//! datatypes). Where 2.0.1 differs from 1.6 for pedf: a station has EVSEs, each with its
//! connectors, and the EVSE is what charges a car and takes a limit (a park device is an
//! EVSE); a transaction is started, updated and ended by the station's TransactionEvent, its
//! id the station's own (a string); a connector's status says only whether it is occupied,
//! the transaction's charging state whether the car is charging; sampled values are numbers
//! with a unit and a power-of-ten multiplier; the configuration is components' variables.

use serde::Deserialize;
use serde_json::{json, Value};

use super::v16::{self, ChargePointStatus, Reading, Text};

/// Any object's vendor extension (`CustomDataType`): taken and left alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomData {
    /// The vendor it extends for.
    pub vendor_id: Text<255>,
}

/// BootNotificationRequest's station (`ChargingStationType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ChargingStation {
    pub custom_data: Option<CustomData>,
    pub serial_number: Option<Text<25>>,
    pub model: Text<20>,
    pub modem: Option<Modem>,
    pub vendor_name: Text<50>,
    pub firmware_version: Option<Text<50>>,
}

/// A station's modem (`ModemType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Modem {
    pub custom_data: Option<CustomData>,
    pub iccid: Option<Text<20>>,
    pub imsi: Option<Text<20>>,
}

/// Why a station booted (`BootReasonEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum BootReason {
    ApplicationReset,
    FirmwareUpdate,
    LocalReset,
    PowerUp,
    RemoteReset,
    ScheduledReset,
    Triggered,
    Unknown,
    Watchdog,
}

/// BootNotificationRequest (B01).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BootNotification {
    pub custom_data: Option<CustomData>,
    pub charging_station: ChargingStation,
    pub reason: BootReason,
}

/// HeartbeatRequest: empty but for `customData`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Heartbeat {
    pub custom_data: Option<CustomData>,
}

/// A connector's status (`ConnectorStatusEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum ConnectorStatus {
    Available,
    Occupied,
    Reserved,
    Unavailable,
    Faulted,
}

/// StatusNotificationRequest (G01).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StatusNotification {
    pub custom_data: Option<CustomData>,
    pub timestamp: String,
    pub connector_status: ConnectorStatus,
    pub evse_id: u32,
    pub connector_id: u32,
}

/// How an id token was presented (`IdTokenEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum IdTokenKind {
    Central,
    #[serde(rename = "eMAID")]
    EMaid,
    ISO14443,
    ISO15693,
    KeyCode,
    Local,
    MacAddress,
    NoAuthorization,
}

/// One more id of a token (`AdditionalInfoType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AdditionalInfo {
    pub custom_data: Option<CustomData>,
    pub additional_id_token: Text<36>,
    #[serde(rename = "type")]
    pub kind: Text<50>,
}

/// An id token (`IdTokenType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct IdToken {
    pub custom_data: Option<CustomData>,
    pub additional_info: Option<Vec<AdditionalInfo>>,
    pub id_token: Text<36>,
    #[serde(rename = "type")]
    pub kind: IdTokenKind,
}

/// AuthorizeRequest (C01); the ISO 15118 certificate fields are taken, not checked (pedf
/// authorises against its local list).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Authorize {
    pub custom_data: Option<CustomData>,
    pub id_token: IdToken,
    pub certificate: Option<Text<5500>>,
    pub iso15118_certificate_hash_data: Option<Vec<Value>>,
}

/// What a TransactionEvent says happened (`TransactionEventEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum EventType {
    Started,
    Updated,
    Ended,
}

/// What set a TransactionEvent off (`TriggerReasonEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum TriggerReason {
    Authorized,
    CablePluggedIn,
    ChargingRateChanged,
    ChargingStateChanged,
    Deauthorized,
    EnergyLimitReached,
    EVCommunicationLost,
    EVConnectTimeout,
    MeterValueClock,
    MeterValuePeriodic,
    TimeLimitReached,
    Trigger,
    UnlockCommand,
    StopAuthorized,
    EVDeparted,
    EVDetected,
    RemoteStop,
    RemoteStart,
    AbnormalCondition,
    SignedDataReceived,
    ResetCommand,
}

/// Whether the car is charging (`ChargingStateEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum ChargingState {
    Charging,
    EVConnected,
    SuspendedEV,
    SuspendedEVSE,
    Idle,
}

impl ChargingState {
    /// The 1.6 status it is (pedf keeps a connector's state in 1.6's terms, which say both
    /// whether a car is there and whether it charges): `Idle` (no car yet, a transaction
    /// authorised) is a connector preparing.
    pub fn status(self) -> ChargePointStatus {
        match self {
            ChargingState::Charging => ChargePointStatus::Charging,
            ChargingState::EVConnected | ChargingState::Idle => ChargePointStatus::Preparing,
            ChargingState::SuspendedEV => ChargePointStatus::SuspendedEV,
            ChargingState::SuspendedEVSE => ChargePointStatus::SuspendedEVSE,
        }
    }
}

/// Why a transaction ended (`ReasonEnumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum StoppedReason {
    DeAuthorized,
    EmergencyStop,
    EnergyLimitReached,
    EVDisconnected,
    GroundFault,
    ImmediateReset,
    Local,
    LocalOutOfCredit,
    MasterPass,
    Other,
    OvercurrentFault,
    PowerLoss,
    PowerQuality,
    Reboot,
    Remote,
    SOCLimitReached,
    StoppedByEV,
    TimeLimitReached,
    Timeout,
}

/// A transaction as a TransactionEvent gives it (`TransactionType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Transaction {
    pub custom_data: Option<CustomData>,
    pub transaction_id: Text<36>,
    pub charging_state: Option<ChargingState>,
    pub time_spent_charging: Option<i64>,
    pub stopped_reason: Option<StoppedReason>,
    pub remote_start_id: Option<i64>,
}

/// An EVSE, and one of its connectors (`EVSEType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Evse {
    pub custom_data: Option<CustomData>,
    pub id: u32,
    pub connector_id: Option<u32>,
}

/// TransactionEventRequest (E01 to E15).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TransactionEvent {
    pub custom_data: Option<CustomData>,
    pub event_type: EventType,
    pub meter_value: Option<Vec<MeterValue>>,
    pub timestamp: String,
    pub trigger_reason: TriggerReason,
    pub seq_no: i64,
    pub offline: Option<bool>,
    pub number_of_phases_used: Option<i64>,
    pub cable_max_current: Option<i64>,
    pub reservation_id: Option<i64>,
    pub transaction_info: Transaction,
    pub evse: Option<Evse>,
    pub id_token: Option<IdToken>,
}

/// What a sampled value measures (`MeasurandEnumType`): 1.6's, without `RPM` and
/// `Temperature`, with net and apparent energies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum Measurand {
    #[serde(rename = "Current.Export")]
    CurrentExport,
    #[serde(rename = "Current.Import")]
    CurrentImport,
    #[serde(rename = "Current.Offered")]
    CurrentOffered,
    #[serde(rename = "Energy.Active.Export.Register")]
    EnergyActiveExportRegister,
    #[serde(rename = "Energy.Active.Import.Register")]
    EnergyActiveImportRegister,
    #[serde(rename = "Energy.Reactive.Export.Register")]
    EnergyReactiveExportRegister,
    #[serde(rename = "Energy.Reactive.Import.Register")]
    EnergyReactiveImportRegister,
    #[serde(rename = "Energy.Active.Export.Interval")]
    EnergyActiveExportInterval,
    #[serde(rename = "Energy.Active.Import.Interval")]
    EnergyActiveImportInterval,
    #[serde(rename = "Energy.Active.Net")]
    EnergyActiveNet,
    #[serde(rename = "Energy.Reactive.Export.Interval")]
    EnergyReactiveExportInterval,
    #[serde(rename = "Energy.Reactive.Import.Interval")]
    EnergyReactiveImportInterval,
    #[serde(rename = "Energy.Reactive.Net")]
    EnergyReactiveNet,
    #[serde(rename = "Energy.Apparent.Net")]
    EnergyApparentNet,
    #[serde(rename = "Energy.Apparent.Import")]
    EnergyApparentImport,
    #[serde(rename = "Energy.Apparent.Export")]
    EnergyApparentExport,
    #[serde(rename = "Frequency")]
    Frequency,
    #[serde(rename = "Power.Active.Export")]
    PowerActiveExport,
    #[serde(rename = "Power.Active.Import")]
    PowerActiveImport,
    #[serde(rename = "Power.Factor")]
    PowerFactor,
    #[serde(rename = "Power.Offered")]
    PowerOffered,
    #[serde(rename = "Power.Reactive.Export")]
    PowerReactiveExport,
    #[serde(rename = "Power.Reactive.Import")]
    PowerReactiveImport,
    #[serde(rename = "SoC")]
    SoC,
    #[serde(rename = "Voltage")]
    Voltage,
}

impl Measurand {
    /// The 1.6 measurand of the same name, where 1.6 has one.
    fn v16(self) -> Option<v16::Measurand> {
        use v16::Measurand as M;
        Some(match self {
            Measurand::CurrentImport => M::CurrentImport,
            Measurand::EnergyActiveImportRegister => M::EnergyActiveImportRegister,
            Measurand::PowerActiveImport => M::PowerActiveImport,
            Measurand::SoC => M::SoC,
            Measurand::Voltage => M::Voltage,
            Measurand::PowerOffered => M::PowerOffered,
            Measurand::CurrentOffered => M::CurrentOffered,
            Measurand::PowerActiveExport => M::PowerActiveExport,
            Measurand::EnergyActiveExportRegister => M::EnergyActiveExportRegister,
            _ => return None,
        })
    }
}

/// A sampled value's unit and power of ten (`UnitOfMeasureType`; the unit `Wh` and the
/// multiplier 0 when not given).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct UnitOfMeasure {
    pub custom_data: Option<CustomData>,
    pub unit: Option<Text<20>>,
    pub multiplier: Option<i32>,
}

/// A value's signature (`SignedMeterValueType`): taken, not checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SignedMeterValue {
    pub custom_data: Option<CustomData>,
    pub signed_meter_data: Text<2500>,
    pub signing_method: Text<50>,
    pub encoding_method: Text<50>,
    pub public_key: Text<2500>,
}

/// One sampled value (`SampledValueType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SampledValue {
    pub custom_data: Option<CustomData>,
    pub value: f64,
    pub context: Option<v16::Context>,
    pub measurand: Option<Measurand>,
    pub phase: Option<v16::Phase>,
    pub location: Option<v16::Location>,
    pub signed_meter_value: Option<SignedMeterValue>,
    pub unit_of_measure: Option<UnitOfMeasure>,
}

/// Values sampled at one time (`MeterValueType`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MeterValue {
    pub custom_data: Option<CustomData>,
    pub sampled_value: Vec<SampledValue>,
    pub timestamp: String,
}

impl MeterValue {
    /// Its readings in pedf's units (as [`Reading::of`] reads 1.6's): each value scaled by its
    /// multiplier into the unit 1.6 names; a value in a unit pedf does not convert is left out
    /// with the reason.
    pub fn reading(&self) -> (Reading, Vec<String>) {
        let mut problems = Vec::new();
        let sampled = self
            .sampled_value
            .iter()
            .filter_map(|s| {
                let measurand = s.measurand.unwrap_or(Measurand::EnergyActiveImportRegister);
                let m = measurand.v16()?;
                let unit = s
                    .unit_of_measure
                    .as_ref()
                    .and_then(|u| u.unit.as_ref())
                    .map_or("Wh", |u| u.0.as_str());
                let power = s
                    .unit_of_measure
                    .as_ref()
                    .and_then(|u| u.multiplier)
                    .unwrap_or(0);
                let unit = match serde_json::from_value::<v16::UnitOfMeasure>(json!(unit)) {
                    Ok(u) => u,
                    Err(_) => {
                        problems.push(format!(
                            "{measurand:?} in `{unit}`, a unit pedf does not read"
                        ));
                        return None;
                    }
                };
                let value = s.value * 10f64.powi(power.clamp(-30, 30));
                Some(v16::SampledValue {
                    value: value.to_string(),
                    context: s.context,
                    format: None,
                    measurand: Some(m),
                    phase: s.phase,
                    location: s.location,
                    unit: Some(unit),
                })
            })
            .collect();
        let (r, more) = Reading::of(&v16::MeterValue {
            timestamp: self.timestamp.clone(),
            sampled_value: sampled,
        });
        problems.extend(more);
        (r, problems)
    }

    /// The energy register in the values, Wh.
    pub fn register_wh(&self) -> Option<i64> {
        self.reading()
            .0
            .energy_kwh
            .map(|kwh| (kwh * 1000.0).round() as i64)
    }
}

/// MeterValuesRequest (J01).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MeterValues {
    pub custom_data: Option<CustomData>,
    pub evse_id: u32,
    pub meter_value: Vec<MeterValue>,
}

/// A component's variable: what GetVariables and SetVariables name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableName<'a> {
    /// The component (`SampledDataCtrlr`, `OCPPCommCtrlr`, ...).
    pub component: &'a str,
    /// Its variable (`TxUpdatedInterval`, `HeartbeatInterval`, ...).
    pub variable: &'a str,
}

/// SetVariablesRequest's payload: one variable's actual value.
pub fn set_variables(name: &VariableName<'_>, value: &str) -> Value {
    json!({"setVariableData": [{
        "attributeType": "Actual",
        "attributeValue": value,
        "component": {"name": name.component},
        "variable": {"name": name.variable},
    }]})
}

/// GetVariablesRequest's payload: the actual values of `names`.
pub fn get_variables(names: &[VariableName<'_>]) -> Value {
    json!({"getVariableData": names.iter().map(|n| json!({
        "attributeType": "Actual",
        "component": {"name": n.component},
        "variable": {"name": n.variable},
    })).collect::<Vec<_>>()})
}

/// The variable giving how often a station samples a running transaction's meter values
/// (OCPP 2.0.1 part 2 appendix, `SampledDataCtrlr.TxUpdatedInterval`, s).
pub const TX_UPDATED_INTERVAL: VariableName<'static> = VariableName {
    component: "SampledDataCtrlr",
    variable: "TxUpdatedInterval",
};

/// SetChargingProfileRequest's payload: the same limit as 1.6's (see
/// [`v16::set_charging_profile`]) for an EVSE, its one schedule with an id of its own.
pub fn set_charging_profile(p: &v16::Profile<'_>) -> Value {
    let mut schedule = json!({
        "id": p.id,
        "chargingRateUnit": p.unit.name(),
        "startSchedule": p.start,
        "chargingSchedulePeriod": [v16::period(p.unit, p.limit)],
    });
    if let Some(d) = p.duration_s {
        schedule["duration"] = json!(d);
    }
    let mut profile = json!({
        "id": p.id,
        "stackLevel": p.stack_level,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [schedule],
    });
    match p.purpose {
        v16::Purpose::TxDefault => profile["chargingProfilePurpose"] = json!("TxDefaultProfile"),
        v16::Purpose::Tx(tx) => {
            profile["chargingProfilePurpose"] = json!("TxProfile");
            profile["transactionId"] = json!(tx);
        }
    }
    json!({ "evseId": p.connector, "chargingProfile": profile })
}

/// The limit in force now from GetCompositeScheduleResponse's payload (its `schedule`), in
/// the schedule's own unit.
pub fn composite_limit(payload: &Value) -> Result<(f64, v16::RateUnit), String> {
    if payload.get("status").and_then(Value::as_str) != Some("Accepted") {
        return Err(format!("the composite schedule was not given: {payload}"));
    }
    let schedule = payload
        .get("schedule")
        .ok_or("the composite schedule has no schedule")?;
    v16::schedule_limit(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::rpc::ErrorKind;

    #[test]
    fn sampled_values_are_scaled_into_pedfs_units() {
        let m: MeterValue = serde_json::from_value(json!({
            "timestamp": "2026-06-21T10:00:00Z",
            "sampledValue": [
                {"value": 12.345, "measurand": "Energy.Active.Import.Register",
                 "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                {"value": 7400, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
                {"value": 10.5, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {"unit": "A"}},
                {"value": 55, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
                {"value": 3, "measurand": "Energy.Active.Net", "unitOfMeasure": {"unit": "kWh"}},
                {"value": 1, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "hp"}}
            ]
        }))
        .unwrap();
        let (r, problems) = m.reading();
        assert_eq!(r.energy_kwh, Some(12.345));
        assert_eq!(r.power_kw, Some(7.4));
        assert_eq!(r.current_a, Some(10.5));
        assert_eq!(r.soc_pct, Some(55.0));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(m.register_wh(), Some(12_345));
        // No measurand and no unit: the import register in Wh.
        let m: MeterValue = serde_json::from_value(
            json!({"timestamp": "2026-06-21T10:00:00Z", "sampledValue": [{"value": 2000}]}),
        )
        .unwrap();
        assert_eq!(m.reading().0.energy_kwh, Some(2.0));
    }

    #[test]
    fn messages_are_read_strictly_with_custom_data_taken() {
        let read = |action: &str, v: Value| v16::read::<StatusNotification>(action, &v);
        let e = read(
            "StatusNotification",
            json!({"timestamp": "2026-06-21T10:00:00Z", "connectorStatus": "Charging", "evseId": 1, "connectorId": 1}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PropertyConstraint);
        let e = read(
            "StatusNotification",
            json!({"timestamp": "2026-06-21T10:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1, "extra": 1}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format);
        assert!(read(
            "StatusNotification",
            json!({"timestamp": "2026-06-21T10:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1,
                   "customData": {"vendorId": "PeerCo", "anything": [1, 2]}}),
        )
        .is_ok());
        let e = v16::read::<TransactionEvent>(
            "TransactionEvent",
            &json!({"eventType": "Started", "timestamp": "2026-06-21T10:00:00Z", "triggerReason": "Authorized", "seqNo": 0}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProtocolError);
    }

    #[test]
    fn a_limit_is_an_evses_profile_with_its_schedules_id() {
        let p = set_charging_profile(&v16::Profile {
            connector: 2,
            id: 22,
            stack_level: 1,
            purpose: v16::Purpose::Tx("a1b2"),
            unit: v16::RateUnit::W,
            limit: 7000.0,
            start: "2026-06-21T10:00:00.000Z",
            duration_s: Some(120),
        });
        assert_eq!(p["evseId"], 2);
        assert_eq!(p["chargingProfile"]["transactionId"], "a1b2");
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["id"], 22);
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["duration"], 120);
        let conf = json!({"status": "Accepted", "schedule": {"evseId": 2, "duration": 60,
            "scheduleStart": "2026-06-21T10:00:00Z", "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000.0}]}});
        assert_eq!(composite_limit(&conf).unwrap().0, 7000.0);
    }
}
