//! The assets of a PEDF park, as configured: what each can do, not what it is doing.
//!
//! Every power limit is a non-negative magnitude; the direction of a flow is given by the
//! field name (`max_charge_kw`) or, for live values, by the convention of [`crate::sign`].

use crate::time::TimeOfDay;
use crate::units::{CnyPerKwh, Kw, Kwh, Kwp};

/// A PV array with its DC/DC (MPPT) converter onto the DC bus.
#[derive(Debug, Clone, PartialEq)]
pub struct PvArray {
    /// Unique asset id within the park.
    pub id: String,
    /// Nameplate DC power at standard test conditions.
    pub peak_power: Kwp,
    /// Tilt from horizontal in degrees (0 flat, 90 vertical).
    pub tilt_deg: f64,
    /// Azimuth in degrees clockwise from north (180 = facing south).
    pub azimuth_deg: f64,
    /// System losses before the converter (soiling, wiring, mismatch...), a fraction in [0, 1).
    pub system_losses: f64,
    /// Output rating of the array's converter onto the bus.
    pub converter_rating: Kw,
    /// Efficiency of that converter, in (0, 1].
    pub converter_efficiency: f64,
    /// Power temperature coefficient per °C (typically about -0.0035 for crystalline Si).
    pub temperature_coefficient_per_c: f64,
}

/// A battery energy storage system on the DC bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Battery {
    /// Unique asset id within the park.
    pub id: String,
    /// Usable nameplate energy capacity.
    pub capacity: Kwh,
    /// Largest charging power drawn from the bus.
    pub max_charge: Kw,
    /// Largest discharging power delivered to the bus.
    pub max_discharge: Kw,
    /// Fraction of energy drawn from the bus that is stored, in (0, 1].
    pub charge_efficiency: f64,
    /// Fraction of stored energy that reaches the bus, in (0, 1].
    pub discharge_efficiency: f64,
    /// Lowest allowed state of charge, a fraction of capacity.
    pub soc_min: f64,
    /// Highest allowed state of charge, a fraction of capacity.
    pub soc_max: f64,
    /// State of charge assumed when no measurement is available, a fraction of capacity.
    pub initial_soc: f64,
    /// Wear cost charged per kWh discharged (given, or derived from `wear`).
    pub degradation_cost: CnyPerKwh,
    /// What the wear cost was derived from, when the park file gives the battery's economics
    /// instead of the cost itself.
    pub wear: Option<BatteryWear>,
}

/// A battery's economics that give its wear cost per kWh discharged: replacing the capacity
/// costs `replacement_cost` per kWh, and it lasts `cycle_life` full cycles at `cycle_depth`;
/// each cycle moves `cycle_depth` of the capacity, so the cost is
/// `replacement_cost / (cycle_life x cycle_depth)` per kWh moved (e.g. 600 CNY/kWh over 6000
/// cycles at 85 % depth: 0.118 CNY/kWh).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatteryWear {
    /// CNY per kWh of capacity to replace the battery.
    pub replacement_cost_cny_per_kwh: f64,
    /// Full cycles to end of life (the maker's figure) at `cycle_depth`.
    pub cycle_life: f64,
    /// Depth of discharge of the rated cycles, a fraction in (0, 1].
    pub cycle_depth: f64,
}

impl BatteryWear {
    /// The wear cost per kWh discharged.
    pub fn cost_per_kwh(&self) -> f64 {
        self.replacement_cost_cny_per_kwh / (self.cycle_life * self.cycle_depth).max(1e-9)
    }
}

impl Battery {
    /// Energy between the SoC limits.
    pub fn usable_energy(&self) -> Kwh {
        self.capacity * (self.soc_max - self.soc_min)
    }

    /// Round-trip efficiency, bus to bus.
    pub fn round_trip_efficiency(&self) -> f64 {
        self.charge_efficiency * self.discharge_efficiency
    }
}

/// The common DC bus all assets connect to.
#[derive(Debug, Clone, PartialEq)]
pub struct DcBus {
    /// Nominal bus voltage in volts (e.g. 750 V DC in Chinese PEDF buildings).
    pub nominal_voltage_v: f64,
}

/// The bidirectional AC/DC converter between the DC bus and the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridConverter {
    /// Unique asset id within the park.
    pub id: String,
    /// Rating on the AC side, both directions.
    pub rating: Kw,
    /// Efficiency from grid (AC) to bus (DC), in (0, 1].
    pub efficiency_ac_to_dc: f64,
    /// Efficiency from bus (DC) to grid (AC), in (0, 1].
    pub efficiency_dc_to_ac: f64,
}

impl GridConverter {
    /// The most DC power the converter can put on the bus from the grid. An efficiency above
    /// 1 (invalid, and reported as such by validation) counts as 1, so the figure stays true.
    pub fn max_dc_supply(&self) -> Kw {
        self.rating * self.efficiency_ac_to_dc.clamp(0.0, 1.0)
    }
}

/// Export rules of the grid contract (DOMAIN.md "Export rules"), configurable per park.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRules {
    /// Whether any export is allowed at all.
    pub allow_export: bool,
    /// Forbid importing and exporting in the same interval.
    pub no_simultaneous_import_export: bool,
    /// Exported energy in an interval never exceeds that interval's PV production
    /// (自发自用、余电上网: bought energy and stored energy are not sold back).
    pub export_only_from_pv: bool,
    /// Import the controller keeps in hand wherever these rules forbid export now (no PV to
    /// export, or no export at all): a load that drops on its own between two control cycles
    /// (a car full, a compressor off) then lowers the import instead of reversing the flow
    /// (防逆流 margin). Zero: none, the controller follows the plan's import to 0 kW.
    pub reverse_flow_margin: Kw,
}

/// The park's connection to the utility feeder.
#[derive(Debug, Clone, PartialEq)]
pub struct GridConnection {
    /// Feeder voltage in kV (the reference park: 10 kV).
    pub feeder_voltage_kv: f64,
    /// Largest import at the point of common coupling.
    pub import_limit: Kw,
    /// Largest export at the point of common coupling.
    pub export_limit: Kw,
    /// What may be exported.
    pub export_rules: ExportRules,
}

/// A non-deferrable DC load (offices, labs); its profile comes from forecasts.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedLoad {
    /// Unique asset id within the park.
    pub id: String,
    /// Typical night-time (base) demand.
    pub base: Kw,
    /// Typical daytime peak demand.
    pub peak: Kw,
}

/// How a flexible load may flex.
#[derive(Debug, Clone, PartialEq)]
pub enum Flexibility {
    /// Must receive an energy amount inside a daily window, at any power in range.
    Deferrable {
        /// Energy to deliver each day inside the window.
        energy: Kwh,
        /// Local start of the window.
        window_start: TimeOfDay,
        /// Local end of the window (exclusive).
        window_end: TimeOfDay,
    },
    /// Runs at its nominal power but a share may be shed at a cost.
    Curtailable {
        /// The largest fraction of demand that may be shed, in [0, 1].
        curtailable_share: f64,
        /// Value of lost load: cost of each kWh shed.
        value_of_lost_load: CnyPerKwh,
    },
}

/// A flexible DC load (HVAC, cold storage, water heating).
#[derive(Debug, Clone, PartialEq)]
pub struct FlexibleLoad {
    /// Unique asset id within the park.
    pub id: String,
    /// Lowest power while running.
    pub min_power: Kw,
    /// Highest power.
    pub max_power: Kw,
    /// How it flexes.
    pub flexibility: Flexibility,
}

/// Whether a charger delivers DC directly from the bus or AC through its own inverter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coupling {
    /// DC fast charger fed straight from the DC bus.
    Dc,
    /// AC charger behind an inverter on the bus.
    Ac,
}

impl Coupling {
    /// The park-file word for it.
    pub fn key(self) -> &'static str {
        match self {
            Coupling::Dc => "dc",
            Coupling::Ac => "ac",
        }
    }
}

/// One EV charging point.
#[derive(Debug, Clone, PartialEq)]
pub struct EvCharger {
    /// Unique asset id within the park.
    pub id: String,
    /// DC or AC.
    pub coupling: Coupling,
    /// Lowest power while charging (below it the charger is off).
    pub min_power: Kw,
    /// Highest charging power.
    pub max_power: Kw,
    /// Whether it can discharge the vehicle into the bus (vehicle-to-grid).
    pub v2g: bool,
    /// The energy a session on it asks for when neither the charger nor the operator says,
    /// kWh (`session_kwh`; 0: no default: the car is charged as it takes power and the plan
    /// uses the EV forecast).
    pub session_kwh: f64,
    /// How long such a session stays, hours (`session_hours`; 0 with `session_kwh` 0).
    pub session_hours: f64,
}

/// What a meter measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterPoint {
    /// The grid connection (the utility's billing point).
    Grid,
    /// An asset by id.
    Asset(String),
}

/// An energy meter; the carbon ledger cites meters by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// Unique id within the park.
    pub id: String,
    /// What it measures.
    pub point: MeterPoint,
    /// Accuracy class (e.g. "0.5S"), as on its nameplate.
    pub accuracy_class: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn battery_derived_figures() {
        let b = Battery {
            id: "b".into(),
            capacity: Kwh(2000.0),
            max_charge: Kw(1000.0),
            max_discharge: Kw(1000.0),
            charge_efficiency: 0.95,
            discharge_efficiency: 0.95,
            soc_min: 0.1,
            soc_max: 0.9,
            initial_soc: 0.5,
            degradation_cost: CnyPerKwh(0.05),
            wear: None,
        };
        assert!((b.usable_energy().0 - 1600.0).abs() < 1e-9);
        assert!((b.round_trip_efficiency() - 0.9025).abs() < 1e-12);
    }
}
