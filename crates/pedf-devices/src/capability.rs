//! What devices can do, independent of vendor and protocol: capabilities, their fields and
//! setpoints, and readings with time and quality.
//!
//! Sign convention at this boundary (PRODUCT.md): grid meter +import/−export, battery
//! +discharge/−charge, PV +production, loads and chargers +consumption, converter +AC→DC
//! (importing onto the bus)/−DC→AC. A device that counts the other way is inverted by its
//! template (`invert = true`), never downstream.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// A grid or sub-meter (power and kWh counters).
    Meter,
    /// A PV inverter (power, energy, power limit).
    PvInverter,
    /// A battery with its BMS (SoC, power, limits).
    Battery,
    /// An EV charger (power, state, session energy).
    EvCharger,
    /// A controllable DC load.
    DcLoad,
    /// The AC/DC converter to the grid.
    Converter,
}

/// A measured quantity, in pedf's unit (kW, kWh, %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// kW, in the sign convention of the capability.
    PowerKw,
    /// kWh counters of a meter.
    ImportKwh,
    /// Export counter of a meter, kWh.
    ExportKwh,
    /// kWh produced (PV) or delivered (charger session total, load).
    EnergyKwh,
    /// % state of charge.
    SocPct,
    /// kW the battery accepts / gives right now (BMS limits).
    MaxChargeKw,
    /// kW the battery gives right now (BMS limit).
    MaxDischargeKw,
    /// % of nameplate the PV inverter is limited to.
    PowerLimitPct,
    /// Charger state code (0 idle, 1 connected, 2 charging, 3 fault).
    ChargerState,
    /// kWh of the charger's current session.
    SessionKwh,
    /// Converter power on each side, kW.
    DcPowerKw,
    /// Converter power on the AC side, kW.
    AcPowerKw,
    /// A billing meter's import register of the sharp tariff period (尖, its tariff 1), kWh.
    ImportKwhSharp,
    /// ... of the peak period (峰, tariff 2), kWh.
    ImportKwhPeak,
    /// ... of the flat period (平, tariff 3), kWh.
    ImportKwhFlat,
    /// ... of the valley period (谷, tariff 4), kWh.
    ImportKwhValley,
    /// Phase voltage (phase A), V.
    VoltageV,
    /// Phase current (phase A), A.
    CurrentA,
    /// The billing period's maximum demand (import), kW, as the meter measured it.
    MaxDemandKw,
}

impl Field {
    /// The unit the field is stored in.
    pub fn unit(self) -> &'static str {
        match self {
            Field::PowerKw
            | Field::MaxChargeKw
            | Field::MaxDischargeKw
            | Field::DcPowerKw
            | Field::AcPowerKw
            | Field::MaxDemandKw => "kW",
            Field::ImportKwh
            | Field::ExportKwh
            | Field::EnergyKwh
            | Field::SessionKwh
            | Field::ImportKwhSharp
            | Field::ImportKwhPeak
            | Field::ImportKwhFlat
            | Field::ImportKwhValley => "kWh",
            Field::VoltageV => "V",
            Field::CurrentA => "A",
            Field::SocPct | Field::PowerLimitPct => "%",
            Field::ChargerState => "",
        }
    }

    /// The field's name in device files, samples and the API (e.g. `power_kw`).
    pub fn name(self) -> &'static str {
        match self {
            Field::PowerKw => "power_kw",
            Field::ImportKwh => "import_kwh",
            Field::ExportKwh => "export_kwh",
            Field::EnergyKwh => "energy_kwh",
            Field::SocPct => "soc_pct",
            Field::MaxChargeKw => "max_charge_kw",
            Field::MaxDischargeKw => "max_discharge_kw",
            Field::PowerLimitPct => "power_limit_pct",
            Field::ChargerState => "charger_state",
            Field::SessionKwh => "session_kwh",
            Field::DcPowerKw => "dc_power_kw",
            Field::AcPowerKw => "ac_power_kw",
            Field::ImportKwhSharp => "import_kwh_sharp",
            Field::ImportKwhPeak => "import_kwh_peak",
            Field::ImportKwhFlat => "import_kwh_flat",
            Field::ImportKwhValley => "import_kwh_valley",
            Field::VoltageV => "voltage_v",
            Field::CurrentA => "current_a",
            Field::MaxDemandKw => "max_demand_kw",
        }
    }
}

impl Capability {
    /// Fields a device of this kind may report.
    pub fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Capability::Meter => &[
                PowerKw,
                ImportKwh,
                ExportKwh,
                ImportKwhSharp,
                ImportKwhPeak,
                ImportKwhFlat,
                ImportKwhValley,
                VoltageV,
                CurrentA,
                MaxDemandKw,
            ],
            Capability::PvInverter => &[PowerKw, EnergyKwh, PowerLimitPct, DcPowerKw],
            Capability::Battery => &[PowerKw, SocPct, MaxChargeKw, MaxDischargeKw],
            Capability::EvCharger => &[PowerKw, ChargerState, SessionKwh],
            Capability::DcLoad => &[PowerKw, EnergyKwh],
            Capability::Converter => &[DcPowerKw, AcPowerKw],
        }
    }

    /// The setpoint a device of this kind takes, if any.
    pub fn setpoint(self) -> Option<Setpoint> {
        match self {
            Capability::Meter => None,
            Capability::PvInverter => Some(Setpoint::PowerLimitPct),
            Capability::Battery
            | Capability::EvCharger
            | Capability::DcLoad
            | Capability::Converter => Some(Setpoint::PowerKw),
        }
    }

    /// The capability's name in device files and the API (e.g. `pv-inverter`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Meter => "meter",
            Capability::PvInverter => "pv-inverter",
            Capability::Battery => "battery",
            Capability::EvCharger => "ev-charger",
            Capability::DcLoad => "dc-load",
            Capability::Converter => "converter",
        }
    }
}

/// What a controllable device is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setpoint {
    /// kW in the capability's sign convention (battery +discharge, charger/load +consumption).
    PowerKw,
    /// % of nameplate (PV curtailment; 100 = unrestricted).
    PowerLimitPct,
}

/// How far a value can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quality {
    /// Read in the last poll and younger than the stale age.
    Good,
    /// Older than the stale age (the device stopped answering or is polled too slowly).
    Stale,
    /// The device answered but the value is unusable (sentinel, garbage, out of range), or the
    /// last poll failed.
    Bad,
}

/// One value with its time and quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The value, in the field's unit.
    pub value: f64,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Whether it can be used.
    pub quality: Quality,
}

/// The last known state of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    /// The device id.
    pub id: String,
    /// What kind of device it is.
    pub capability: Capability,
    values: BTreeMap<Field, (f64, DateTime<Utc>)>,
    bad: BTreeMap<Field, String>,
    /// When the device last answered a whole poll.
    pub last_ok: Option<DateTime<Utc>>,
    /// Why the last poll failed, if it did.
    pub last_error: Option<String>,
    /// Values older than this are stale.
    pub stale_after: Duration,
}

impl DeviceState {
    /// A device never read yet; its values go stale `stale_after` after they were read.
    pub fn new(id: impl Into<String>, capability: Capability, stale_after: Duration) -> Self {
        DeviceState {
            id: id.into(),
            capability,
            values: BTreeMap::new(),
            bad: BTreeMap::new(),
            last_ok: None,
            last_error: None,
            stale_after,
        }
    }

    /// Records a good value.
    pub fn set(&mut self, field: Field, value: f64, at: DateTime<Utc>) {
        self.values.insert(field, (value, at));
        self.bad.remove(&field);
    }

    /// Records that a field's value was unusable this time.
    pub fn set_bad(&mut self, field: Field, why: impl Into<String>) {
        self.bad.insert(field, why.into());
    }

    /// Why a field is bad, if it is.
    pub fn bad_reason(&self, field: Field) -> Option<&str> {
        self.bad.get(&field).map(String::as_str)
    }

    /// A successful poll.
    pub fn poll_ok(&mut self, at: DateTime<Utc>) {
        self.last_ok = Some(at);
        self.last_error = None;
    }

    /// A failed poll: values keep their time (and turn stale with age).
    pub fn poll_failed(&mut self, why: impl Into<String>) {
        self.last_error = Some(why.into());
    }

    /// The reading of a field at `now`: Bad if its last value was unusable, Stale if older than
    /// the stale age, else Good.
    pub fn reading(&self, field: Field, now: DateTime<Utc>) -> Option<Reading> {
        let (value, at) = *self.values.get(&field)?;
        let age = (now - at).to_std().unwrap_or_default();
        let quality = if self.bad.contains_key(&field) {
            Quality::Bad
        } else if age > self.stale_after {
            Quality::Stale
        } else {
            Quality::Good
        };
        Some(Reading { value, at, quality })
    }

    /// Good readings only.
    pub fn good(&self, field: Field, now: DateTime<Utc>) -> Option<f64> {
        self.reading(field, now)
            .filter(|r| r.quality == Quality::Good)
            .map(|r| r.value)
    }
}

/// A grid or sub-meter.
pub trait MeterView {
    /// kW, +import / −export.
    fn grid_power(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Import counter, kWh.
    fn import_kwh(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Export counter, kWh.
    fn export_kwh(&self, now: DateTime<Utc>) -> Option<Reading>;
}

/// A PV inverter or DC/DC PV converter.
pub trait PvView {
    /// kW produced (>= 0).
    fn pv_power(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Energy counter, kWh.
    fn pv_energy_kwh(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Active power limit, % of rated power.
    fn power_limit_pct(&self, now: DateTime<Utc>) -> Option<Reading>;
}

/// A battery with its BMS.
pub trait BatteryView {
    /// State of charge, %.
    fn soc_pct(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// kW, +discharge / −charge.
    fn battery_power(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Charge power the BMS accepts now, kW.
    fn max_charge_kw(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Discharge power the BMS gives now, kW.
    fn max_discharge_kw(&self, now: DateTime<Utc>) -> Option<Reading>;
}

/// An EV charger.
pub trait ChargerView {
    /// Charging power, kW.
    fn charger_power(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Charger state (0 no car, 1 connected, 2 charging, 3 fault).
    fn charger_state(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Energy delivered in the running session, kWh.
    fn session_kwh(&self, now: DateTime<Utc>) -> Option<Reading>;
}

/// A DC load.
pub trait DcLoadView {
    /// Power drawn, kW.
    fn load_power(&self, now: DateTime<Utc>) -> Option<Reading>;
}

/// The AC/DC converter to the grid.
pub trait ConverterView {
    /// Power on the DC side, kW.
    fn dc_power(&self, now: DateTime<Utc>) -> Option<Reading>;
    /// Power on the AC side, kW.
    fn ac_power(&self, now: DateTime<Utc>) -> Option<Reading>;
}

impl MeterView for DeviceState {
    fn grid_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerKw, now)
    }
    fn import_kwh(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::ImportKwh, now)
    }
    fn export_kwh(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::ExportKwh, now)
    }
}

impl PvView for DeviceState {
    fn pv_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerKw, now)
    }
    fn pv_energy_kwh(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::EnergyKwh, now)
    }
    fn power_limit_pct(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerLimitPct, now)
    }
}

impl BatteryView for DeviceState {
    fn soc_pct(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::SocPct, now)
    }
    fn battery_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerKw, now)
    }
    fn max_charge_kw(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::MaxChargeKw, now)
    }
    fn max_discharge_kw(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::MaxDischargeKw, now)
    }
}

impl ChargerView for DeviceState {
    fn charger_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerKw, now)
    }
    fn charger_state(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::ChargerState, now)
    }
    fn session_kwh(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::SessionKwh, now)
    }
}

impl DcLoadView for DeviceState {
    fn load_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::PowerKw, now)
    }
}

impl ConverterView for DeviceState {
    fn dc_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::DcPowerKw, now)
    }
    fn ac_power(&self, now: DateTime<Utc>) -> Option<Reading> {
        self.reading(Field::AcPowerKw, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_follows_age_and_badness() {
        let t0 = DateTime::parse_from_rfc3339("2026-06-21T04:00:00Z")
            .unwrap()
            .to_utc();
        let mut s = DeviceState::new("meter", Capability::Meter, Duration::from_secs(5));
        assert!(s.grid_power(t0).is_none());
        s.set(Field::PowerKw, 120.0, t0);
        assert_eq!(
            s.grid_power(t0 + chrono::Duration::seconds(3))
                .unwrap()
                .quality,
            Quality::Good
        );
        assert_eq!(
            s.grid_power(t0 + chrono::Duration::seconds(6))
                .unwrap()
                .quality,
            Quality::Stale
        );
        s.set_bad(Field::PowerKw, "NaN");
        assert_eq!(s.grid_power(t0).unwrap().quality, Quality::Bad);
        assert_eq!(s.good(Field::PowerKw, t0), None);
        s.set(Field::PowerKw, 100.0, t0);
        assert_eq!(s.good(Field::PowerKw, t0), Some(100.0));
    }
}
