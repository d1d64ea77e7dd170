//! The park: where it is, its clock, its assets, its tariff and its carbon settings.

use std::fmt;

use chrono::{DateTime, Datelike, Utc};

use crate::assets::{
    Battery, DcBus, EvCharger, FixedLoad, Flexibility, FlexibleLoad, GridConnection, GridConverter,
    Meter, PvArray,
};
use crate::tariff::Tariff;
use crate::time::ParkClock;
use crate::units::{KgCo2PerKwh, Kw, Kwh, Kwp};

/// Geographic position, used for solar geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude in degrees north (negative south).
    pub latitude_deg: f64,
    /// Longitude in degrees east (negative west).
    pub longitude_deg: f64,
    /// Altitude above sea level in metres.
    pub altitude_m: f64,
}

/// How far a published figure has been checked (DOMAIN.md tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// [C] confirmed in a published source.
    Confirmed,
    /// [S] seen only in secondary sources.
    Secondary,
    /// [U] unconfirmed.
    Unverified,
}

impl SourceStatus {
    /// The park-file word.
    pub fn key(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Secondary => "secondary",
            Self::Unverified => "unverified",
        }
    }
    /// The short tag used in DOMAIN.md and data files.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Confirmed => "[C]",
            Self::Secondary => "[S]",
            Self::Unverified => "[U]",
        }
    }
    /// The status for a park-file word.
    pub fn from_key(key: &str) -> Option<Self> {
        [Self::Confirmed, Self::Secondary, Self::Unverified]
            .into_iter()
            .find(|s| s.key() == key)
    }
}

/// The grid emission factor the park reports against, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct GridFactor {
    /// Factor value.
    pub value: KgCo2PerKwh,
    /// Grid region (e.g. "north-china").
    pub region: String,
    /// Variant (e.g. "regional-average", "national-excl-market-non-fossil").
    pub variant: String,
    /// Data year the factor describes.
    pub data_year: i32,
    /// Publisher and document.
    pub source: String,
    /// How sure we are of the figure.
    pub status: SourceStatus,
}

/// Carbon settings of the park.
#[derive(Debug, Clone, PartialEq)]
pub struct CarbonSettings {
    /// The annual average grid factor for location-based accounting.
    pub grid_factor: GridFactor,
    /// Internal carbon price the optimiser may weigh emissions with, CNY per t CO2.
    pub carbon_price_cny_per_t: f64,
    /// Carbon dual control (能碳双控): limits on the park's Scope 2 the planner keeps.
    pub control: CarbonControl,
    /// A project-specific baseline factor for avoided emissions (`[carbon.baseline]`), e.g.
    /// the EF_grid,CM of a registered project design document; without it the combined
    /// margin of the factor table is used.
    pub baseline: Option<BaselineFactor>,
}

/// A project-specific baseline emission factor and the document it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineFactor {
    /// kg CO2/kWh (= t/MWh).
    pub value: KgCo2PerKwh,
    /// What the figure is, e.g. "combined-margin".
    pub variant: String,
    /// The document and where in it, e.g. "PDD ... section B.6.3, EF_grid,CM,y".
    pub source: String,
    /// How sure the figure is.
    pub status: SourceStatus,
}

/// Limits on the park's location-based Scope 2 (grid import x the annual grid factor, the figure
/// the carbon report and the backtest give) that every plan keeps, as a constraint with a
/// priced overrun so a plan always exists.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CarbonControl {
    /// Never plan more Scope 2 than the park would emit without the EMS over the same
    /// horizon (battery idle, cars charged on arrival, deferrable loads flat, nothing shed):
    /// arbitrage that trades carbon for money is refused.
    pub no_more_than_without_ems: bool,
    /// Scope 2 budget per calendar month (local), t CO2. Each plan gets what is left of it,
    /// shared over the rest of the month by time.
    pub monthly_budget_t: Option<f64>,
    /// Scope 2 budget per calendar year (local), t CO2, shared the same way over the rest of
    /// the year.
    pub annual_budget_t: Option<f64>,
    /// Scope 2 intensity target, kg CO2 per kWh consumed on site (loads and EV at the bus),
    /// kept over each calendar month: the month's Scope 2 no more than the target times its
    /// consumption.
    pub intensity_kg_per_kwh: Option<f64>,
}

/// Which calendar period a budget covers (local time of the park).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    /// The calendar month.
    Month,
    /// The calendar year.
    Year,
}

impl BudgetPeriod {
    /// The period's name as users read it.
    pub fn name(self) -> &'static str {
        match self {
            BudgetPeriod::Month => "month",
            BudgetPeriod::Year => "year",
        }
    }

    /// The local period holding `t`: its start and end, UTC.
    pub fn bounds(self, clock: &ParkClock, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let d = clock.local(t).date_naive();
        let first = match self {
            BudgetPeriod::Month => d.with_day(1),
            BudgetPeriod::Year => d.with_day(1).and_then(|x| x.with_month(1)),
        }
        .unwrap_or(d);
        let months = match self {
            BudgetPeriod::Month => 1,
            BudgetPeriod::Year => 12,
        };
        let next = first
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(first);
        (
            clock.start_of_local_day(first),
            clock.start_of_local_day(next),
        )
    }
}

/// Where the park stands against a Scope 2 budget: used, left, and whether it is on track
/// (used no more than the budget times the share of the period gone, a straight line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStatus {
    /// The period.
    pub period: BudgetPeriod,
    /// The budget, kg CO2.
    pub budget_kg: f64,
    /// Scope 2 so far in the period, kg CO2.
    pub used_kg: f64,
    /// What is left, kg CO2 (0 once spent).
    pub left_kg: f64,
    /// The budget times the share of the period gone, kg CO2: the straight-line pace.
    pub pace_kg: f64,
    /// Hours left in the period.
    pub hours_left: f64,
}

impl BudgetStatus {
    /// The status at `now` of a budget of `budget_t` t over `period`, `used_kg` so far.
    pub fn at(
        period: BudgetPeriod,
        clock: &ParkClock,
        budget_t: f64,
        used_kg: f64,
        now: DateTime<Utc>,
    ) -> BudgetStatus {
        let (start, end) = period.bounds(clock, now);
        let all = (end - start).num_seconds().max(1) as f64;
        let gone = ((now - start).num_seconds() as f64 / all).clamp(0.0, 1.0);
        let budget_kg = budget_t * 1000.0;
        BudgetStatus {
            period,
            budget_kg,
            used_kg,
            left_kg: (budget_kg - used_kg).max(0.0),
            pace_kg: budget_kg * gone,
            hours_left: ((end - now).num_seconds() as f64 / 3600.0).max(0.0),
        }
    }

    /// Used no more than the straight-line pace.
    pub fn on_track(&self) -> bool {
        self.used_kg <= self.pace_kg + 1e-9
    }

    /// The part of what is left that a horizon of `horizon_h` hours may use: what is left
    /// shared over the rest of the period by time.
    pub fn share_kg(&self, horizon_h: f64) -> f64 {
        self.left_kg * (horizon_h / self.hours_left.max(horizon_h).max(1e-9)).min(1.0)
    }

    /// One line for users: budget, used, left, on track or how far ahead of the pace.
    pub fn describe(&self) -> String {
        let pace = if self.on_track() {
            "on track".to_string()
        } else {
            format!(
                "{:.1} t above the straight-line pace of {:.1} t",
                (self.used_kg - self.pace_kg) / 1000.0,
                self.pace_kg / 1000.0
            )
        };
        format!(
            "{} Scope 2 budget {:.1} t: {:.1} t used, {:.1} t left, {pace}",
            self.period.name(),
            self.budget_kg / 1000.0,
            self.used_kg / 1000.0,
            self.left_kg / 1000.0
        )
    }
}

/// A whole PEDF park as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Park {
    /// Short machine id (lowercase, digits, `-`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Display name in Chinese, if given.
    pub name_zh: Option<String>,
    /// Owner or operator, as certificates name it.
    pub owner: Option<String>,
    /// Where the park is.
    pub location: Location,
    /// Time zone and interval length.
    pub clock: ParkClock,
    /// The DC bus.
    pub dc_bus: DcBus,
    /// The grid connection and its rules.
    pub grid: GridConnection,
    /// The AC/DC converter to the grid.
    pub converter: GridConverter,
    /// PV arrays.
    pub pv: Vec<PvArray>,
    /// Batteries.
    pub batteries: Vec<Battery>,
    /// Fixed DC loads.
    pub fixed_loads: Vec<FixedLoad>,
    /// Flexible DC loads.
    pub flexible_loads: Vec<FlexibleLoad>,
    /// EV chargers, one entry per charging point.
    pub ev_chargers: Vec<EvCharger>,
    /// Meters.
    pub meters: Vec<Meter>,
    /// The tariff.
    pub tariff: Tariff,
    /// Carbon settings.
    pub carbon: CarbonSettings,
}

impl Park {
    /// Total PV nameplate power.
    pub fn pv_peak_power(&self) -> Kwp {
        self.pv.iter().map(|p| p.peak_power).sum()
    }

    /// Total battery capacity.
    pub fn battery_capacity(&self) -> Kwh {
        self.batteries.iter().map(|b| b.capacity).sum()
    }

    /// The most DC power all sources together could put on the bus at once: the converter
    /// from the grid, every battery at full discharge, every PV converter at its rating
    /// (V2G chargers are not counted: a parked car is no firm source).
    pub fn max_bus_supply(&self) -> Kw {
        self.converter.max_dc_supply()
            + self.batteries.iter().map(|b| b.max_discharge).sum()
            + self.pv.iter().map(|p| p.converter_rating).sum()
    }

    /// A one-screen description of the park for `pedf check`.
    pub fn summary(&self) -> ParkSummary<'_> {
        ParkSummary(self)
    }
}

/// Display adapter that prints a park's assets, capacities and tariff periods.
pub struct ParkSummary<'a>(&'a Park);

impl fmt::Display for ParkSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let name = match &p.name_zh {
            Some(zh) => format!("{} ({zh})", p.name),
            None => p.name.clone(),
        };
        writeln!(f, "park {}: {name}", p.id)?;
        writeln!(
            f,
            "  location   {:.4} N, {:.4} E, {} m; zone {}; interval {}",
            p.location.latitude_deg,
            p.location.longitude_deg,
            p.location.altitude_m,
            p.clock.tz.name(),
            p.clock.interval
        )?;
        let pv_conv: Kw = p.pv.iter().map(|a| a.converter_rating).sum();
        writeln!(
            f,
            "  PV         {} array(s), {:.0} peak, converters {:.0}",
            p.pv.len(),
            p.pv_peak_power(),
            pv_conv
        )?;
        for b in &p.batteries {
            writeln!(
                f,
                "  battery    {}: {:.0}, charge {:.0} / discharge {:.0}, SoC {:.0}-{:.0} %, round trip {:.1} %",
                b.id,
                b.capacity,
                b.max_charge,
                b.max_discharge,
                b.soc_min * 100.0,
                b.soc_max * 100.0,
                b.round_trip_efficiency() * 100.0
            )?;
            match b.wear {
                Some(w) => writeln!(
                    f,
                    "             wear {:.3} CNY/kWh discharged = {:.0} CNY/kWh / ({:.0} cycles x {:.2} depth)",
                    b.degradation_cost.0,
                    w.replacement_cost_cny_per_kwh,
                    w.cycle_life,
                    w.cycle_depth
                )?,
                None => writeln!(
                    f,
                    "             wear {:.3} CNY/kWh discharged (given)",
                    b.degradation_cost.0
                )?,
            }
        }
        writeln!(
            f,
            "  DC bus     {} V; converter {} {:.0}, AC->DC {:.1} %, DC->AC {:.1} %",
            p.dc_bus.nominal_voltage_v,
            p.converter.id,
            p.converter.rating,
            p.converter.efficiency_ac_to_dc * 100.0,
            p.converter.efficiency_dc_to_ac * 100.0
        )?;
        let rules = &p.grid.export_rules;
        writeln!(
            f,
            "  grid       {} kV, import <= {:.0}, export <= {:.0}; export {}{}{}{}",
            p.grid.feeder_voltage_kv,
            p.grid.import_limit,
            p.grid.export_limit,
            if rules.allow_export {
                "allowed"
            } else {
                "forbidden"
            },
            if rules.export_only_from_pv {
                ", PV surplus only"
            } else {
                ""
            },
            if rules.no_simultaneous_import_export {
                ", never with import"
            } else {
                ""
            },
            if rules.reverse_flow_margin.0 > 0.0 {
                format!(
                    "; {:.0} kept as import where export is forbidden",
                    rules.reverse_flow_margin
                )
            } else {
                String::new()
            }
        )?;
        let base: Kw = p.fixed_loads.iter().map(|l| l.base).sum();
        let peak: Kw = p.fixed_loads.iter().map(|l| l.peak).sum();
        writeln!(
            f,
            "  fixed load {} load(s), {:.0} base, {:.0} peak",
            p.fixed_loads.len(),
            base,
            peak
        )?;
        for l in &p.flexible_loads {
            let how = match &l.flexibility {
                Flexibility::Deferrable {
                    energy,
                    window_start,
                    window_end,
                } => format!("deferrable {energy:.0} in {window_start}-{window_end}"),
                Flexibility::Curtailable {
                    curtailable_share,
                    value_of_lost_load,
                } => format!(
                    "curtailable {:.0} % at {value_of_lost_load:.2}",
                    curtailable_share * 100.0
                ),
            };
            writeln!(
                f,
                "  flexible   {}: {:.0}-{:.0}, {how}",
                l.id, l.min_power.0, l.max_power
            )?;
        }
        if !p.ev_chargers.is_empty() {
            let total: Kw = p.ev_chargers.iter().map(|c| c.max_power).sum();
            let max = p
                .ev_chargers
                .iter()
                .map(|c| c.max_power)
                .fold(Kw::ZERO, Kw::max);
            let v2g = p.ev_chargers.iter().filter(|c| c.v2g).count();
            writeln!(
                f,
                "  EV         {} charger(s), up to {:.0} each, {:.0} installed, {v2g} with V2G",
                p.ev_chargers.len(),
                max,
                total
            )?;
            let tracked: Vec<&EvCharger> = p
                .ev_chargers
                .iter()
                .filter(|c| c.session_kwh > 0.0)
                .collect();
            if let Some(c) = tracked.first() {
                writeln!(
                    f,
                    "             default session {:.1} kWh in {:.1} h on {} of them (when neither charger nor operator says)",
                    c.session_kwh,
                    c.session_hours,
                    tracked.len()
                )?;
            }
        }
        writeln!(f, "  meters     {}", p.meters.len())?;
        let t = &p.tariff;
        writeln!(
            f,
            "  tariff     {}: export {:.4}, demand charge {:.2} ({}, {}-min window{})",
            t.name,
            t.export_price,
            t.demand.rate,
            t.demand.basis.key(),
            t.demand.window_minutes,
            if t.demand.monthly_target_kw > 0.0 {
                format!(", monthly target {:.0} kW", t.demand.monthly_target_kw)
            } else {
                String::new()
            }
        )?;
        for kind in crate::tariff::PeriodKind::ALL {
            if let Some(price) = t.prices.get(&kind) {
                writeln!(f, "    {:<14} {} {:.4}", kind.key(), kind.name_zh(), price)?;
            }
        }
        for s in &t.seasons {
            let months: Vec<String> = s.months.iter().map(u32::to_string).collect();
            let windows: Vec<String> = s
                .windows
                .iter()
                .map(|w| format!("{}-{} {}", w.start, w.end, w.kind.key()))
                .collect();
            writeln!(f, "    season {} (months {}):", s.name, months.join(","))?;
            writeln!(f, "      {}", windows.join(", "))?;
        }
        let g = &p.carbon.grid_factor;
        let flag = if g.status == SourceStatus::Confirmed {
            ""
        } else {
            " - unverified factor"
        };
        write!(
            f,
            "  carbon     grid factor {:.4} ({}, {}, data year {}) {}{flag}",
            g.value,
            g.region,
            g.variant,
            g.data_year,
            g.status.tag()
        )?;
        let c = &p.carbon.control;
        let mut limits = Vec::new();
        if c.no_more_than_without_ems {
            limits.push("never more Scope 2 than without the EMS".to_string());
        }
        if let Some(b) = c.monthly_budget_t {
            limits.push(format!("{b:.1} t a month"));
        }
        if let Some(b) = c.annual_budget_t {
            limits.push(format!("{b:.1} t a year"));
        }
        if let Some(t) = c.intensity_kg_per_kwh {
            limits.push(format!("{t:.3} kg/kWh consumed each month"));
        }
        if !limits.is_empty() {
            write!(f, "\n             Scope 2 control: {}", limits.join("; "))?;
        }
        match &p.carbon.baseline {
            Some(b) => write!(
                f,
                "\n             avoided emissions baseline {:.4}, project-specific {} {} ({})",
                b.value, b.variant, b.status.tag(), b.source
            )?,
            None => write!(
                f,
                "\n             avoided emissions baseline: the factor table's combined margin of the region (no [carbon.baseline])"
            )?,
        }
        Ok(())
    }
}
