//! What an EMS publishes and takes while it runs, shared by the runtime that makes it, the
//! server that shows it and the simulator: the operating mode, the live state of each cycle
//! ([`Live`]), an operator's order on an EV session, and a raw measurement ([`Sample`]).
//!
//! Power values follow the park sign convention at the point where an asset meets the DC bus:
//! grid +import/-export (AC meter), battery +discharge/-charge, PV, loads and EV positive.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Operating modes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Following the active plan (self-consumption without one).
    Automatic,
    /// Operator setpoints (clamped, grid limits still enforced).
    Manual {
        /// The battery setpoint, +discharge / -charge, kW.
        battery_kw: f64,
    },
    /// Every device at its safe value.
    Safe,
}

/// An operator's word on the session on a charger (`PUT /api/v1/chargers/{id}/session`):
/// what it asks for and when it leaves, replacing the park file's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// The charger: its device id or the park's charger id.
    pub charger: String,
    /// The energy the car asks for in this session, kWh (`None`: unchanged).
    pub energy_kwh: Option<f64>,
    /// When the car leaves (`None`: unchanged).
    pub departure: Option<DateTime<Utc>>,
    /// Who asked (the token's label and role) and why, for the audit.
    pub by: String,
    /// The operator's reason.
    pub reason: String,
}

/// What an operator may ask of a charger that allows it (an OCPP charger): end the running
/// transaction, start one, take the connector out of service or back into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargerAction {
    /// End the running transaction (OCPP RemoteStopTransaction).
    Stop,
    /// Start a transaction for an id tag (OCPP RemoteStartTransaction).
    Start,
    /// Take the connector out of service (OCPP ChangeAvailability Inoperative; after the
    /// running transaction when one runs).
    Disable,
    /// Take it back into service.
    Enable,
}

impl ChargerAction {
    /// Every action, in the order the console shows them.
    pub const ALL: [ChargerAction; 4] = [
        ChargerAction::Stop,
        ChargerAction::Start,
        ChargerAction::Disable,
        ChargerAction::Enable,
    ];

    /// Its name in the API (`stop`, `start`, `disable`, `enable`).
    pub fn name(self) -> &'static str {
        match self {
            ChargerAction::Stop => "stop",
            ChargerAction::Start => "start",
            ChargerAction::Disable => "disable",
            ChargerAction::Enable => "enable",
        }
    }
}

/// An operator's command to a charger (`POST /api/v1/chargers/{id}/command`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerCommand {
    /// The charger's device id.
    pub charger: String,
    /// What to do.
    pub action: ChargerAction,
    /// The id tag a started transaction is for (`start`).
    pub id_tag: Option<String>,
    /// Who asked (the token's label and role), for the audit.
    pub by: String,
    /// The operator's reason.
    pub reason: String,
}

/// One raw value of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The device id.
    pub device: String,
    /// The field read (e.g. `power_kw`).
    pub field: String,
    /// When it was read, on the EMS clock.
    pub at: DateTime<Utc>,
    /// The value, in the field's unit.
    pub value: f64,
    /// 0 good, 1 stale, 2 bad.
    pub quality: u8,
}

/// The operating mode as shown and set through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeView {
    /// `automatic`, `manual` or `safe`.
    pub mode: String,
    /// The operator's battery setpoint in manual mode (+discharge/-charge), kW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_kw: Option<f64>,
}

impl From<&Mode> for ModeView {
    fn from(m: &Mode) -> Self {
        match m {
            Mode::Automatic => ModeView {
                mode: "automatic".into(),
                battery_kw: None,
            },
            Mode::Manual { battery_kw } => ModeView {
                mode: "manual".into(),
                battery_kw: Some(*battery_kw),
            },
            Mode::Safe => ModeView {
                mode: "safe".into(),
                battery_kw: None,
            },
        }
    }
}

/// Power on each link of the park, kW. A value is `None` (JSON `null`, "unknown" on the
/// dashboard) when a device it is measured by has no good reading now: never a 0 kW that
/// was not measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Flows {
    /// PV delivered to the bus (after curtailment).
    pub pv_kw: Option<f64>,
    /// PV the arrays could give now.
    pub pv_available_kw: Option<f64>,
    /// Battery, +discharge/-charge.
    pub battery_kw: Option<f64>,
    /// The batteries' state of charge, % (capacity-weighted; `None`: none answers).
    pub soc_pct: Option<f64>,
    /// Fixed and flexible DC loads.
    pub load_kw: Option<f64>,
    /// EV chargers together.
    pub ev_kw: Option<f64>,
    /// Converter, DC side: +from the grid onto the bus / -from the bus to the grid.
    pub converter_dc_kw: Option<f64>,
    /// Grid at the AC meter, +import/-export.
    pub grid_kw: Option<f64>,
    /// The grid value is measured (false: computed from the bus balance, or unknown).
    pub grid_measured: bool,
}

impl Flows {
    /// Every flow the bus balance has (PV, battery, loads, EV, grid), when all are known.
    pub fn known(&self) -> Option<[f64; 5]> {
        Some([
            self.pv_kw?,
            self.battery_kw?,
            self.load_kw?,
            self.ev_kw?,
            self.grid_kw?,
        ])
    }
}

/// One charger now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChargerLive {
    /// The charger device id.
    pub id: String,
    /// What it draws now, kW (`None`: it has no good reading).
    pub kw: Option<f64>,
    /// The setpoint written this cycle.
    pub setpoint_kw: Option<f64>,
    /// The car on it, when its sessions are tracked.
    pub session: Option<SessionLive>,
    /// What an operator may ask of it ([`ChargerCommand`]; none: its protocol takes no
    /// commands but the EMS's setpoints).
    pub actions: Vec<ChargerAction>,
}

/// A car on a charger as the EMS tracks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionLive {
    /// When the car arrived.
    pub arrival: DateTime<Utc>,
    /// When it is expected to leave (the park's default stay, or the operator's word).
    pub departure: DateTime<Utc>,
    /// The energy the session asks for, kWh.
    pub requested_kwh: f64,
    /// The energy it has had so far, kWh.
    pub delivered_kwh: f64,
    /// Of what it has had today (the closed intervals and the running one since its arrival or
    /// the local midnight), the carbon-free share: PV directly or through the batteries' PV
    /// share, by the carbon accounting's proportional rule, 0..1 (`None`: nothing yet).
    pub green_share: Option<f64>,
}

/// One device's communication state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceLive {
    /// The device id.
    pub id: String,
    /// What it is (`battery`, `pv-inverter`, ...).
    pub capability: String,
    /// `good`, `stale`, `bad` or `none` (never answered).
    pub quality: String,
    /// The last good reading.
    pub last_ok: Option<DateTime<Utc>>,
    /// The last communication error, if the last exchange failed.
    pub error: Option<String>,
}

/// The tariff now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TariffNow {
    /// Period key (`valley`, `flat`, `peak`, ...), if the tariff covers this time.
    pub period: Option<String>,
    /// The period in Chinese (峰, 平, 谷, ...).
    pub period_zh: Option<String>,
    /// The import price now, CNY/kWh.
    pub import_cny_per_kwh: Option<f64>,
}

/// Energy and carbon of the local day so far (closed intervals plus the running one).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Today {
    /// PV energy at the bus, kWh.
    pub pv_kwh: f64,
    /// Grid import at the AC meter, kWh.
    pub grid_import_kwh: f64,
    /// Grid export at the AC meter, kWh.
    pub grid_export_kwh: f64,
    /// Fixed and flexible DC loads, kWh.
    pub load_kwh: f64,
    /// EV chargers together, kWh.
    pub ev_kwh: f64,
    /// Energy into the batteries (bus side), kWh.
    pub battery_charge_kwh: f64,
    /// Energy out of the batteries (bus side), kWh.
    pub battery_discharge_kwh: f64,
    /// Location-based Scope 2 (grid import x the grid average of the factor table), kg CO2.
    pub location_kg: f64,
    /// Avoided emissions as a certificate of the day would count them: PV delivered net x the
    /// baseline factor (the park's `[carbon.baseline]`, else the combined margin), kg CO2.
    pub avoided_kg: f64,
    /// Share of consumption served by the park's PV (directly or out of the batteries' PV share).
    pub self_sufficiency: f64,
    /// Share of PV used in the park.
    pub self_consumption: f64,
    /// Hourly carbon-free-energy score of consumption.
    pub cfe_score: f64,
    /// Intervals in the figures (closed ones; the running one counts as one more).
    pub intervals: usize,
    /// Import at its time-of-use prices so far today, CNY ([`crate::bill`]).
    pub energy_cny: f64,
    /// Export revenue so far today, CNY.
    pub export_cny: f64,
    /// The batteries' wear so far today, CNY.
    pub wear_cny: f64,
}

/// The billing month so far (and the year's Scope 2 budget), as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonthLive {
    /// The month's highest interval-average import, kW.
    pub peak_import_kw: f64,
    /// Import up to which the demand charge does not rise (month peak, target, 105 % of a
    /// contract), kW.
    pub demand_free_up_to_kw: f64,
    /// Location-based Scope 2 this month, kg CO2.
    pub scope2_kg: f64,
    /// The same without the EMS, kg CO2.
    pub scope2_without_ems_kg: f64,
    /// Consumption on site this month (loads and EV), kWh.
    pub consumption_kwh: f64,
    /// Scope 2 this calendar year, kg CO2.
    pub year_scope2_kg: f64,
    /// The park's Scope 2 budgets (`[carbon.control]`) and where the park stands.
    pub budgets: Vec<BudgetLive>,
    /// The park's intensity target, kg CO2 per kWh consumed, if any.
    pub intensity_target_kg_per_kwh: Option<f64>,
    /// Whether plans may emit no more than without the EMS.
    pub no_more_than_without_ems: bool,
}

/// One Scope 2 budget now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetLive {
    /// "month" or "year".
    pub period: String,
    /// The budget, kg CO2.
    pub budget_kg: f64,
    /// Scope 2 so far in the period, kg CO2.
    pub used_kg: f64,
    /// What is left, kg CO2.
    pub left_kg: f64,
    /// The budget times the share of the period gone (straight-line pace).
    pub pace_kg: f64,
    /// Used no more than the pace.
    pub on_track: bool,
}

impl From<crate::park::BudgetStatus> for BudgetLive {
    fn from(b: crate::park::BudgetStatus) -> Self {
        BudgetLive {
            period: b.period.name().to_string(),
            budget_kg: b.budget_kg,
            used_kg: b.used_kg,
            left_kg: b.left_kg,
            pace_kg: b.pace_kg,
            on_track: b.on_track(),
        }
    }
}

/// The control cycle's timing since start: how long each cycle's work took and how late each
/// started against its period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleTiming {
    /// Each cycle's work, from its start to its publishing, ms.
    pub work: Histogram,
    /// How late each cycle started against its period, ms.
    pub lag: Histogram,
}

/// Counts of values at or below each bound (cumulative, as Prometheus histograms are), with
/// their number, sum and largest value; ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// The upper bounds of the buckets, ms, ascending.
    pub bounds_ms: Vec<f64>,
    /// Values at or below each bound, in the order of `bounds_ms`.
    pub at_or_below: Vec<u64>,
    /// Values counted.
    pub count: u64,
    /// Their sum, ms.
    pub sum_ms: f64,
    /// The largest, ms.
    pub max_ms: f64,
}

impl Default for Histogram {
    /// Bounds for a control cycle of about a second: 1 ms to 5 s.
    fn default() -> Self {
        let bounds_ms = vec![
            1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
        ];
        Histogram {
            at_or_below: vec![0; bounds_ms.len()],
            bounds_ms,
            count: 0,
            sum_ms: 0.0,
            max_ms: 0.0,
        }
    }
}

impl Histogram {
    /// Counts one value (a value that is not a number is left out).
    pub fn add(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        for (b, n) in self.bounds_ms.iter().zip(&mut self.at_or_below) {
            if ms <= *b {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }
}

/// The park now: one value per cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Live {
    /// The park id.
    pub park_id: String,
    /// The park name.
    pub park_name: String,
    /// The park name in Chinese, if given.
    pub park_name_zh: Option<String>,
    /// The cycle's time on the EMS clock.
    pub at: Option<DateTime<Utc>>,
    /// The park's IANA time zone: every time the dashboard shows is in it, whatever the
    /// viewer's own zone.
    pub time_zone: String,
    /// The park's local day at `at` (YYYY-MM-DD), the EMS's "today".
    pub local_day: String,
    /// The park's interval length, minutes.
    pub interval_minutes: u32,
    /// The cycle number since start.
    pub cycle: u64,
    /// How long the last cycle's work took, ms.
    pub cycle_work_ms: f64,
    /// How late the last cycle started against its period, ms (its jitter).
    pub cycle_lag_ms: f64,
    /// Every cycle's work time and lag since start, as histograms (for /metrics; not on the
    /// live stream).
    #[serde(skip)]
    pub timing: CycleTiming,
    /// The operating mode.
    pub mode: Option<ModeView>,
    /// What the controller follows: `plan #N (strategy)`, or self-consumption without a plan.
    pub strategy: String,
    /// The active plan's grid target for this interval (+import/-export), kW.
    pub plan_grid_kw: Option<f64>,
    /// Power on each link of the park.
    pub flows: Flows,
    /// Each charger now.
    pub chargers: Vec<ChargerLive>,
    /// The tariff now.
    pub tariff: TariffNow,
    /// Usable nameplate capacity of the park's batteries, kWh.
    pub battery_capacity_kwh: f64,
    /// The park's annual grid factor, kg CO2/kWh (park file, with its source).
    pub grid_factor_kg_per_kwh: f64,
    /// The local day so far.
    pub today: Today,
    /// The billing month and year so far against the demand charge and carbon dual control.
    pub month: MonthLive,
    /// Each device's communication state.
    pub devices: Vec<DeviceLive>,
    /// Alarms raised this cycle.
    pub alarms: Vec<String>,
    /// Problems of the runtime itself this cycle (store not writable, ...).
    pub faults: Vec<String>,
    /// The InfluxDB sink's state, when the run has one.
    pub influx: Option<SinkLive>,
}

/// The InfluxDB sink now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkLive {
    /// Whether its last write reached the server.
    pub connected: bool,
    /// Segments waiting in its disk buffer.
    pub buffered_segments: usize,
    /// Bytes waiting in its disk buffer.
    pub buffered_bytes: u64,
    /// Lines the server refused for good (kept aside, never retried).
    pub rejected_lines: u64,
    /// Lines dropped because the buffer was full.
    pub dropped_lines: u64,
    /// The last write error.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn a_histogram_counts_at_or_below_each_bound() {
        let mut h = Histogram::default();
        for ms in [0.4, 3.0, 3.0, 120.0, 9000.0, f64::NAN] {
            h.add(ms);
        }
        assert_eq!(h.count, 5, "NaN left out");
        assert_eq!(h.at_or_below[0], 1, "<= 1 ms");
        assert_eq!(h.at_or_below[2], 3, "<= 5 ms");
        assert_eq!(h.at_or_below[8], 4, "<= 500 ms");
        assert_eq!(
            *h.at_or_below.last().unwrap(),
            4,
            "9 s is above every bound"
        );
        assert_eq!((h.sum_ms, h.max_ms), (9126.4, 9000.0));
    }
}
