//! OCPP 1.6 JSON messages: what a charge point sends (read strictly, as the official schemas
//! of OCPP 1.6 define them: unknown fields, wrong types and values outside an enumeration are
//! refused with the CALLERROR they call for) and the central system's requests to it.
//!
//! Names follow the specification's (OCPP 1.6 edition 2, sections 4 to 6); only the fields
//! pedf uses are given types, the rest are read and kept out of the way.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rpc::CallError;

/// Reads `payload` as the message of `action`, classifying what is wrong with it.
pub fn read<T: for<'de> Deserialize<'de>>(action: &str, payload: &Value) -> Result<T, CallError> {
    T::deserialize(payload).map_err(|e| CallError::of_payload(action, &e))
}

/// A text of at most `N` characters (the schemas' `maxLength`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text<const N: usize>(pub String);

impl<'de, const N: usize> Deserialize<'de> for Text<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.chars().count() > N {
            return Err(serde::de::Error::invalid_type(
                serde::de::Unexpected::Str(&s),
                &format!("a string of at most {N} characters").as_str(),
            ));
        }
        Ok(Text(s))
    }
}

/// BootNotification.req (section 6.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BootNotification {
    pub charge_point_vendor: Text<20>,
    pub charge_point_model: Text<20>,
    pub charge_point_serial_number: Option<Text<25>>,
    pub charge_box_serial_number: Option<Text<25>>,
    pub firmware_version: Option<Text<50>>,
    pub iccid: Option<Text<20>>,
    pub imsi: Option<Text<20>>,
    pub meter_type: Option<Text<25>>,
    pub meter_serial_number: Option<Text<25>>,
}

/// Heartbeat.req: empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {}

/// A connector's status (section 7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum ChargePointStatus {
    Available,
    Preparing,
    Charging,
    SuspendedEVSE,
    SuspendedEV,
    Finishing,
    Reserved,
    Unavailable,
    Faulted,
}

impl ChargePointStatus {
    /// pedf's charger state code: 0 free, 1 a car connected (not charging), 2 charging,
    /// 3 fault or out of service.
    pub fn state_code(self) -> f64 {
        match self {
            ChargePointStatus::Available | ChargePointStatus::Reserved => 0.0,
            ChargePointStatus::Preparing
            | ChargePointStatus::SuspendedEVSE
            | ChargePointStatus::SuspendedEV
            | ChargePointStatus::Finishing => 1.0,
            ChargePointStatus::Charging => 2.0,
            ChargePointStatus::Unavailable | ChargePointStatus::Faulted => 3.0,
        }
    }
}

/// A charge point's error code (section 7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum ChargePointErrorCode {
    ConnectorLockFailure,
    EVCommunicationError,
    GroundFailure,
    HighTemperature,
    InternalError,
    LocalListConflict,
    NoError,
    OtherError,
    OverCurrentFailure,
    PowerMeterFailure,
    PowerSwitchFailure,
    ReaderFailure,
    ResetFailure,
    UnderVoltage,
    OverVoltage,
    WeakSignal,
}

/// StatusNotification.req (section 6.48).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StatusNotification {
    pub connector_id: u32,
    pub error_code: ChargePointErrorCode,
    pub info: Option<Text<50>>,
    pub status: ChargePointStatus,
    pub timestamp: Option<String>,
    pub vendor_id: Option<Text<255>>,
    pub vendor_error_code: Option<Text<50>>,
}

/// Authorize.req (section 6.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Authorize {
    pub id_tag: Text<20>,
}

/// StartTransaction.req (section 6.46).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StartTransaction {
    pub connector_id: u32,
    pub id_tag: Text<20>,
    /// The energy register at the start, Wh.
    pub meter_start: i64,
    pub reservation_id: Option<i64>,
    pub timestamp: String,
}

/// Why a transaction stopped (section 7.32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum Reason {
    EmergencyStop,
    EVDisconnected,
    HardReset,
    Local,
    Other,
    PowerLoss,
    Reboot,
    Remote,
    SoftReset,
    UnlockCommand,
    DeAuthorized,
}

/// StopTransaction.req (section 6.50).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StopTransaction {
    pub id_tag: Option<Text<20>>,
    /// The energy register at the stop, Wh.
    pub meter_stop: i64,
    pub timestamp: String,
    pub transaction_id: i64,
    pub reason: Option<Reason>,
    pub transaction_data: Option<Vec<MeterValue>>,
}

/// What a sampled value measures (section 7.31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
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
    #[default]
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
    #[serde(rename = "Energy.Reactive.Export.Interval")]
    EnergyReactiveExportInterval,
    #[serde(rename = "Energy.Reactive.Import.Interval")]
    EnergyReactiveImportInterval,
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
    #[serde(rename = "RPM")]
    Rpm,
    #[serde(rename = "SoC")]
    SoC,
    #[serde(rename = "Temperature")]
    Temperature,
    #[serde(rename = "Voltage")]
    Voltage,
}

/// A sampled value's unit (section 7.45; `Celcius` as the schema spells it, too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum UnitOfMeasure {
    Wh,
    #[serde(rename = "kWh")]
    KWh,
    #[serde(rename = "varh")]
    Varh,
    #[serde(rename = "kvarh")]
    KVarh,
    W,
    #[serde(rename = "kW")]
    KW,
    VA,
    #[serde(rename = "kVA")]
    KVA,
    #[serde(rename = "var")]
    Var,
    #[serde(rename = "kvar")]
    KVar,
    A,
    V,
    K,
    Celcius,
    Celsius,
    Fahrenheit,
    Percent,
}

/// One sampled value (section 7.43).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SampledValue {
    pub value: String,
    pub context: Option<Context>,
    pub format: Option<ValueFormat>,
    pub measurand: Option<Measurand>,
    pub phase: Option<Phase>,
    pub location: Option<Location>,
    pub unit: Option<UnitOfMeasure>,
}

/// Why a value was sampled (section 7.30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum Context {
    #[serde(rename = "Interruption.Begin")]
    InterruptionBegin,
    #[serde(rename = "Interruption.End")]
    InterruptionEnd,
    #[serde(rename = "Sample.Clock")]
    SampleClock,
    #[serde(rename = "Sample.Periodic")]
    SamplePeriodic,
    #[serde(rename = "Transaction.Begin")]
    TransactionBegin,
    #[serde(rename = "Transaction.End")]
    TransactionEnd,
    Trigger,
    Other,
}

/// A sampled value's format (section 7.46).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum ValueFormat {
    Raw,
    SignedData,
}

/// The phase a value was measured on (section 7.34).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum Phase {
    L1,
    L2,
    L3,
    N,
    #[serde(rename = "L1-N")]
    L1N,
    #[serde(rename = "L2-N")]
    L2N,
    #[serde(rename = "L3-N")]
    L3N,
    #[serde(rename = "L1-L2")]
    L1L2,
    #[serde(rename = "L2-L3")]
    L2L3,
    #[serde(rename = "L3-L1")]
    L3L1,
}

/// Where a value was measured (section 7.29).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
pub enum Location {
    Cable,
    EV,
    Inlet,
    Outlet,
    Body,
}

/// Values sampled at one time (section 7.33).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MeterValue {
    pub timestamp: String,
    pub sampled_value: Vec<SampledValue>,
}

/// MeterValues.req (section 6.34).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MeterValues {
    pub connector_id: u32,
    pub transaction_id: Option<i64>,
    pub meter_value: Vec<MeterValue>,
}

/// DataTransfer.req (section 6.17).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DataTransfer {
    pub vendor_id: Text<255>,
    pub message_id: Option<Text<50>>,
    pub data: Option<String>,
}

/// GetConfiguration.conf (section 6.23): the keys a charger reports, and those it does not
/// know.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GetConfigurationAnswer {
    #[serde(default)]
    pub configuration_key: Vec<KeyValue>,
    #[serde(default)]
    pub unknown_key: Vec<Text<50>>,
}

/// One configuration key of GetConfiguration.conf.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct KeyValue {
    pub key: Text<50>,
    pub readonly: bool,
    pub value: Option<Text<500>>,
}

/// What a charger measured at one time, in pedf's units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// The energy register (imported into the car), kWh.
    pub energy_kwh: Option<f64>,
    /// Active power into the car, kW.
    pub power_kw: Option<f64>,
    /// Current into the car (the sum over the phases given, or the one total), A.
    pub current_a: Option<f64>,
    /// The car's state of charge, %.
    pub soc_pct: Option<f64>,
}

impl Reading {
    /// The readings of one meter value: registers and powers in their units, phase values
    /// of current summed (a value without a phase is the total and wins), values that do not
    /// parse as numbers left out (with the reason).
    pub fn of(m: &MeterValue) -> (Reading, Vec<String>) {
        let mut r = Reading::default();
        let mut problems = Vec::new();
        let mut phase_current = 0.0;
        let mut phases = 0;
        for s in &m.sampled_value {
            if s.format == Some(ValueFormat::SignedData) {
                continue;
            }
            let Ok(v) = s.value.trim().parse::<f64>() else {
                problems.push(format!("`{}` is not a number", s.value));
                continue;
            };
            if !v.is_finite() {
                problems.push(format!("`{}` is not a finite number", s.value));
                continue;
            }
            // Measured at the car (location EV) or the outlet alike; a value at the inlet of
            // a charger with its own consumption would be the charger's, not the car's.
            if s.location == Some(Location::Inlet) {
                continue;
            }
            let unit = s.unit;
            match s.measurand.unwrap_or_default() {
                Measurand::EnergyActiveImportRegister => {
                    r.energy_kwh = Some(match unit {
                        Some(UnitOfMeasure::KWh) => v,
                        _ => v / 1000.0,
                    })
                }
                Measurand::PowerActiveImport if s.phase.is_none() => {
                    r.power_kw = Some(match unit {
                        Some(UnitOfMeasure::KW) => v,
                        _ => v / 1000.0,
                    })
                }
                Measurand::CurrentImport => match s.phase {
                    None => r.current_a = Some(v),
                    Some(Phase::L1 | Phase::L2 | Phase::L3) => {
                        phase_current += v;
                        phases += 1;
                    }
                    Some(_) => {}
                },
                Measurand::SoC => r.soc_pct = Some(v),
                _ => {}
            }
        }
        if r.current_a.is_none() && phases > 0 {
            r.current_a = Some(phase_current);
        }
        (r, problems)
    }
}

/// How a charger takes a limit: in W, or in A on a number of phases (with the voltage pedf
/// converts with).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateUnit {
    /// Watts.
    W,
    /// Amperes per phase on `phases` phases at `voltage` V phase to neutral.
    A {
        /// Phases the car charges on.
        phases: u8,
        /// Volts phase to neutral.
        voltage: f64,
    },
}

impl RateUnit {
    /// A limit in kW in this unit, rounded down to the one decimal the schedule takes (so a
    /// limit is never above what the EMS asked).
    pub fn limit_of_kw(self, kw: f64) -> f64 {
        let v = match self {
            RateUnit::W => kw * 1000.0,
            RateUnit::A { phases, voltage } => kw * 1000.0 / (voltage * f64::from(phases)),
        };
        (v * 10.0).floor() / 10.0
    }

    /// A limit in this unit as kW.
    pub fn kw_of_limit(self, limit: f64) -> f64 {
        match self {
            RateUnit::W => limit / 1000.0,
            RateUnit::A { phases, voltage } => limit * voltage * f64::from(phases) / 1000.0,
        }
    }

    /// The schedule's `chargingRateUnit`.
    pub fn name(self) -> &'static str {
        match self {
            RateUnit::W => "W",
            RateUnit::A { .. } => "A",
        }
    }
}

/// Which profile a limit goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose<'a> {
    /// The default of the connector's transactions (stack level 0 holds the safe default set
    /// at boot; the EMS's limits sit above it).
    TxDefault,
    /// The running transaction's own (its id: 1.6's a number the central system gave, 2.0.1's
    /// the station's own text).
    Tx(&'a str),
}

/// One limit as a charging profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile<'a> {
    /// The connector.
    pub connector: u32,
    /// The profile's id (a profile with the same id replaces it).
    pub id: i64,
    /// Its stack level.
    pub stack_level: u32,
    /// What it applies to.
    pub purpose: Purpose<'a>,
    /// The unit of its limit.
    pub unit: RateUnit,
    /// The limit, in `unit`.
    pub limit: f64,
    /// When it starts (RFC 3339).
    pub start: &'a str,
    /// How long it holds, s (`None`: until replaced).
    pub duration_s: Option<u32>,
}

/// SetChargingProfile.req's payload: one limit from `start` for `duration_s` seconds (after
/// which the profile below it, the safe default, applies again), absolute, in `unit`.
pub fn set_charging_profile(p: &Profile<'_>) -> Value {
    let Profile {
        connector,
        id: profile_id,
        stack_level,
        purpose,
        unit,
        limit,
        start,
        duration_s,
    } = *p;
    let mut schedule = json!({
        "chargingRateUnit": unit.name(),
        "startSchedule": start,
        "chargingSchedulePeriod": [period(unit, limit)],
    });
    if let Some(d) = duration_s {
        schedule["duration"] = json!(d);
    }
    let mut profile = json!({
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    });
    match purpose {
        Purpose::TxDefault => profile["chargingProfilePurpose"] = json!("TxDefaultProfile"),
        Purpose::Tx(tx) => {
            profile["chargingProfilePurpose"] = json!("TxProfile");
            // 1.6's transaction ids are the central system's integers.
            profile["transactionId"] = tx.parse::<i64>().map_or_else(|_| json!(tx), |n| json!(n));
        }
    }
    json!({ "connectorId": connector, "csChargingProfiles": profile })
}

/// One schedule period at `limit` from the start (with the number of phases of a limit in A).
pub(crate) fn period(unit: RateUnit, limit: f64) -> Value {
    match unit {
        RateUnit::W => json!({ "startPeriod": 0, "limit": limit }),
        RateUnit::A { phases, .. } => {
            json!({ "startPeriod": 0, "limit": limit, "numberPhases": phases })
        }
    }
}

/// The limit in force now from GetCompositeSchedule.conf's payload, in the schedule's own
/// unit: the period that started last at or before the schedule's start (the first one).
pub fn composite_limit(payload: &Value) -> Result<(f64, RateUnit), String> {
    if payload.get("status").and_then(Value::as_str) != Some("Accepted") {
        return Err(format!("the composite schedule was not given: {payload}"));
    }
    let schedule = payload
        .get("chargingSchedule")
        .ok_or("the composite schedule has no chargingSchedule")?;
    schedule_limit(schedule)
}

/// The limit in force at a schedule's start and its unit (1.6's `chargingSchedule` and
/// 2.0.1's `schedule` alike).
pub(crate) fn schedule_limit(schedule: &Value) -> Result<(f64, RateUnit), String> {
    let unit = match schedule.get("chargingRateUnit").and_then(Value::as_str) {
        Some("W") => RateUnit::W,
        Some("A") => RateUnit::A {
            phases: 3,
            voltage: 230.0,
        },
        other => return Err(format!("chargingRateUnit {other:?} is not W or A")),
    };
    let periods = schedule
        .get("chargingSchedulePeriod")
        .and_then(Value::as_array)
        .ok_or("the composite schedule has no periods")?;
    let now = periods
        .iter()
        .rfind(|p| p.get("startPeriod").and_then(Value::as_i64).unwrap_or(0) <= 0)
        .or(periods.first())
        .ok_or("the composite schedule has no periods")?;
    let limit = now
        .get("limit")
        .and_then(Value::as_f64)
        .ok_or("a period has no limit")?;
    let unit = match (unit, now.get("numberPhases").and_then(Value::as_u64)) {
        (RateUnit::A { voltage, .. }, Some(n)) => RateUnit::A {
            phases: n.clamp(1, 3) as u8,
            voltage,
        },
        (u, _) => u,
    };
    Ok((limit, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_value_is_read_in_pedfs_units() {
        let m: MeterValue = serde_json::from_value(json!({
            "timestamp": "2026-06-21T10:00:00Z",
            "sampledValue": [
                {"value": "12345", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "10.5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "10.5", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                {"value": "55", "measurand": "SoC", "unit": "Percent"},
                {"value": "abc", "measurand": "Voltage"}
            ]
        }))
        .unwrap();
        let (r, problems) = Reading::of(&m);
        assert_eq!(r.energy_kwh, Some(12.345));
        assert_eq!(r.power_kw, Some(7.4));
        assert_eq!(r.current_a, Some(21.0));
        assert_eq!(r.soc_pct, Some(55.0));
        assert_eq!(problems.len(), 1);
        // A register with no measurand is the import register, in Wh.
        let m: MeterValue = serde_json::from_value(json!({
            "timestamp": "2026-06-21T10:00:00Z", "sampledValue": [{"value": "2000"}]
        }))
        .unwrap();
        assert_eq!(Reading::of(&m).0.energy_kwh, Some(2.0));
    }

    #[test]
    fn limits_are_in_the_chargers_unit_and_never_above_the_ems() {
        let a = RateUnit::A {
            phases: 3,
            voltage: 230.0,
        };
        // 11 kW on three phases at 230 V: 15.94 A, written 15.9 A (10.97 kW).
        assert_eq!(a.limit_of_kw(11.0), 15.9);
        assert!(a.kw_of_limit(15.9) <= 11.0);
        assert_eq!(RateUnit::W.limit_of_kw(7.3456), 7345.6);
        let p = set_charging_profile(&Profile {
            connector: 1,
            id: 101,
            stack_level: 1,
            purpose: Purpose::Tx("7"),
            unit: a,
            limit: 15.9,
            start: "2026-06-21T10:00:00Z",
            duration_s: Some(120),
        });
        assert_eq!(p["csChargingProfiles"]["transactionId"], 7);
        assert_eq!(
            p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]
                ["numberPhases"],
            3
        );
        let conf = json!({"status": "Accepted", "connectorId": 1, "scheduleStart": "2026-06-21T10:00:00Z",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 15.9, "numberPhases": 3}, {"startPeriod": 120, "limit": 6.0}]}});
        let (limit, unit) = composite_limit(&conf).unwrap();
        assert_eq!((limit, unit.name()), (15.9, "A"));
        assert!(composite_limit(&json!({"status": "Rejected"})).is_err());
    }

    #[test]
    fn messages_are_read_strictly() {
        let e = read::<StatusNotification>(
            "StatusNotification",
            &json!({"connectorId": 1, "errorCode": "NoError", "status": "Parked"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, super::super::rpc::ErrorKind::PropertyConstraint);
        let e = read::<Authorize>("Authorize", &json!({"idTag": "x".repeat(21)})).unwrap_err();
        assert_eq!(e.kind, super::super::rpc::ErrorKind::TypeConstraint);
        let ok = read::<BootNotification>(
            "BootNotification",
            &json!({"chargePointVendor": "V", "chargePointModel": "M"}),
        );
        assert!(ok.is_ok());
    }
}
