//! Meaning checks on a park: limits that contradict each other, windows that cannot be met,
//! tariffs that do not cover the day. Each problem names the field it is about by its path in
//! the park file (`battery[0].soc_min`), so the file reader can point at the line and column.

use std::collections::{BTreeMap, HashMap};

use crate::assets::{
    Battery, EvCharger, FixedLoad, Flexibility, FlexibleLoad, GridConnection, GridConverter,
    MeterPoint, PvArray,
};
use crate::park::{CarbonSettings, Location, Park, SourceStatus};
use crate::tariff::{DemandBasis, Tariff};
use crate::time::{IntervalLength, TimeOfDay};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The park cannot be used as written.
    Error,
    /// Usable, but probably not what was meant, or based on unverified figures.
    Warning,
}

/// One thing wrong with a park, tied to the field it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Path of the field in the park file, e.g. `battery[0].soc_min`.
    pub path: String,
    /// What is wrong, with the values involved.
    pub message: String,
    /// What would be valid.
    pub hint: String,
    /// Other fields (or whole sections) the problem depends on; a reader drops the problem
    /// when one of them could not be read, since the comparison would then be meaningless.
    pub related: Vec<String>,
}

/// Collects problems while checking.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records an error.
    pub fn error(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Error, path, message, hint);
    }
    /// Records a warning.
    pub fn warning(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Warning, path, message, hint);
    }
    fn push(
        &mut self,
        severity: Severity,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.0.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
            related: Vec::new(),
        });
    }
    /// Adds the fields the last recorded problem depends on.
    pub fn involving<S: AsRef<str>>(&mut self, related: &[S]) {
        if let Some(last) = self.0.last_mut() {
            last.related
                .extend(related.iter().map(|s| s.as_ref().to_string()));
        }
    }
    /// True when any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }

    /// An efficiency of a conversion: no converter or battery an engineer would connect loses
    /// more than half of what goes through it, and none gains.
    fn fraction_open_closed(&mut self, path: String, what: &str, value: f64) {
        if !(MIN_EFFICIENCY..=1.0).contains(&value) {
            self.error(
                path,
                format!("{what} {value:?} is outside {MIN_EFFICIENCY}..1"),
                "an efficiency is a fraction: 0.97 means 97 %; converters and batteries lie between 0.5 and 1",
            );
        }
    }
    fn non_negative(&mut self, path: String, what: &str, value: f64, unit: &str) {
        if value < 0.0 {
            self.error(
                path,
                format!("{what} is negative ({value} {unit})"),
                format!("give a magnitude >= 0 {unit}; directions are in the field names"),
            );
        }
    }
    fn positive(&mut self, path: String, what: &str, value: f64, unit: &str) {
        if value <= 0.0 {
            self.error(
                path,
                format!("{what} must be above 0 {unit}, found {value}"),
                format!(
                    "give the nameplate value in {unit}; remove the asset if it does not exist"
                ),
            );
        }
    }
}

/// Checks the whole park: every section, then the checks that span sections.
pub fn validate_park(park: &Park) -> Vec<Problem> {
    let mut p = Problems::default();
    validate_sections(park, &mut p);
    check_unique_ids(park, &mut p);
    check_links(park, &mut p);
    p.0
}

/// Checks each section on its own (ranges, windows, tariff coverage).
pub fn validate_sections(park: &Park, p: &mut Problems) {
    let p = &mut *p;
    validate_location(&park.location, p);
    if park.dc_bus.nominal_voltage_v <= 0.0 {
        p.error(
            "dc_bus.nominal_voltage_v",
            format!(
                "bus voltage must be above 0 V, found {}",
                park.dc_bus.nominal_voltage_v
            ),
            "PEDF buildings in China typically use 750 V or 375 V DC",
        );
    }
    validate_grid(&park.grid, p);
    validate_converter(&park.converter, p);
    for (i, a) in park.pv.iter().enumerate() {
        validate_pv(a, &format!("pv[{i}]"), p);
    }
    for (i, b) in park.batteries.iter().enumerate() {
        validate_battery(b, &format!("battery[{i}]"), p);
    }
    for (i, l) in park.fixed_loads.iter().enumerate() {
        validate_fixed_load(l, &format!("fixed_load[{i}]"), p);
    }
    for (i, l) in park.flexible_loads.iter().enumerate() {
        validate_flexible_load(l, &format!("flexible_load[{i}]"), park.clock.interval, p);
    }
    for (i, c) in park.ev_chargers.iter().enumerate() {
        validate_ev_charger(c, &format!("ev_charger[{i}]"), p);
    }
    validate_tariff(&park.tariff, park.clock.interval, p);
    validate_carbon(&park.carbon, p);
}

/// Latitude and longitude in range.
pub fn validate_location(l: &Location, p: &mut Problems) {
    if !(-90.0..=90.0).contains(&l.latitude_deg) {
        p.error(
            "park.latitude_deg",
            format!("latitude {} is outside -90..90", l.latitude_deg),
            "degrees north, negative south; the reference park is at 36.70",
        );
    }
    if !(-180.0..=180.0).contains(&l.longitude_deg) {
        p.error(
            "park.longitude_deg",
            format!("longitude {} is outside -180..180", l.longitude_deg),
            "degrees east, negative west; the reference park is at 118.47",
        );
    }
    if !(-500.0..=9000.0).contains(&l.altitude_m) {
        p.error(
            "park.altitude_m",
            format!("altitude {} m is not on Earth's surface", l.altitude_m),
            "metres above sea level, between -500 and 9000",
        );
    }
}

/// Grid limits are magnitudes; export needs a reason to exist.
pub fn validate_grid(g: &GridConnection, p: &mut Problems) {
    p.non_negative(
        "grid.import_limit_kw".into(),
        "import limit",
        g.import_limit.0,
        "kW",
    );
    p.non_negative(
        "grid.export_limit_kw".into(),
        "export limit",
        g.export_limit.0,
        "kW",
    );
    p.non_negative(
        "grid.reverse_flow_margin_kw".into(),
        "reverse-flow margin",
        g.export_rules.reverse_flow_margin.0,
        "kW",
    );
    if g.export_rules.reverse_flow_margin.0 > g.import_limit.0 && g.import_limit.0 >= 0.0 {
        p.error(
            "grid.reverse_flow_margin_kw",
            format!(
                "reverse-flow margin {} kW is above the import limit {} kW: the controller could never keep it",
                g.export_rules.reverse_flow_margin.0, g.import_limit.0
            ),
            "a margin of a few percent of the import limit (the largest step a load takes on its own within a control cycle)",
        );
        p.involving(&["grid.import_limit_kw"]);
    }
    p.positive(
        "grid.feeder_voltage_kv".into(),
        "feeder voltage",
        g.feeder_voltage_kv,
        "kV",
    );
    if !g.export_rules.allow_export && g.export_limit.0 > 0.0 {
        p.warning(
            "grid.export_limit_kw",
            format!(
                "export limit is {} kW but allow_export = false, so no export will happen",
                g.export_limit.0
            ),
            "set export_limit_kw = 0, or allow_export = true if the contract lets surplus PV be sold",
        );
        p.involving(&["grid.allow_export"]);
    }
}

/// Converter rating and efficiencies.
pub fn validate_converter(c: &GridConverter, p: &mut Problems) {
    p.positive(
        "converter.rating_kw".into(),
        "converter rating",
        c.rating.0,
        "kW",
    );
    p.fraction_open_closed(
        "converter.efficiency_ac_to_dc".into(),
        "AC->DC efficiency",
        c.efficiency_ac_to_dc,
    );
    p.fraction_open_closed(
        "converter.efficiency_dc_to_ac".into(),
        "DC->AC efficiency",
        c.efficiency_dc_to_ac,
    );
}

/// One PV array.
pub fn validate_pv(a: &PvArray, path: &str, p: &mut Problems) {
    p.positive(
        format!("{path}.peak_power_kwp"),
        "peak power",
        a.peak_power.0,
        "kWp",
    );
    p.positive(
        format!("{path}.converter_rating_kw"),
        "converter rating",
        a.converter_rating.0,
        "kW",
    );
    p.fraction_open_closed(
        format!("{path}.converter_efficiency"),
        "converter efficiency",
        a.converter_efficiency,
    );
    if !(0.0..=90.0).contains(&a.tilt_deg) {
        p.error(
            format!("{path}.tilt_deg"),
            format!("tilt {} deg is outside 0..90", a.tilt_deg),
            "0 = flat roof, 90 = vertical facade",
        );
    }
    if !(0.0..360.0).contains(&a.azimuth_deg) {
        p.error(
            format!("{path}.azimuth_deg"),
            format!("azimuth {} deg is outside 0..360", a.azimuth_deg),
            "degrees clockwise from north: 90 east, 180 south, 270 west",
        );
    }
    if !(0.0..1.0).contains(&a.system_losses) {
        p.error(
            format!("{path}.system_losses"),
            format!("system losses {} are outside [0, 1)", a.system_losses),
            "a fraction: PVWatts' default 0.14 means 14 %",
        );
    }
    if !(-0.01..=0.0).contains(&a.temperature_coefficient_per_c) {
        p.error(
            format!("{path}.temperature_coefficient_per_c"),
            format!(
                "temperature coefficient {} per degC is implausible",
                a.temperature_coefficient_per_c
            ),
            "a small negative fraction per degC, e.g. -0.0035 for crystalline silicon (-0.35 %/degC)",
        );
    }
    if a.peak_power.0 > 0.0 && a.converter_rating.0 > 0.0 {
        let ratio = a.peak_power.0 / a.converter_rating.0;
        if ratio > 2.0 {
            p.warning(
                format!("{path}.converter_rating_kw"),
                format!("DC/AC ratio {ratio:.2} is high: much of the PV peak will be clipped"),
                "typical ratios are 1.0 to 1.4",
            );
            p.involving(&[format!("{path}.peak_power_kwp")]);
        }
    }
}

/// One battery.
pub fn validate_battery(b: &Battery, path: &str, p: &mut Problems) {
    p.positive(
        format!("{path}.capacity_kwh"),
        "capacity",
        b.capacity.0,
        "kWh",
    );
    p.non_negative(
        format!("{path}.max_charge_kw"),
        "charge power",
        b.max_charge.0,
        "kW",
    );
    p.non_negative(
        format!("{path}.max_discharge_kw"),
        "discharge power",
        b.max_discharge.0,
        "kW",
    );
    p.fraction_open_closed(
        format!("{path}.charge_efficiency"),
        "charge efficiency",
        b.charge_efficiency,
    );
    p.fraction_open_closed(
        format!("{path}.discharge_efficiency"),
        "discharge efficiency",
        b.discharge_efficiency,
    );
    match b.wear {
        None => p.non_negative(
            format!("{path}.degradation_cost_cny_per_kwh"),
            "degradation cost",
            b.degradation_cost.0,
            "CNY/kWh",
        ),
        Some(w) => {
            p.non_negative(
                format!("{path}.replacement_cost_cny_per_kwh"),
                "replacement cost",
                w.replacement_cost_cny_per_kwh,
                "CNY/kWh",
            );
            p.positive(
                format!("{path}.cycle_life"),
                "cycle life",
                w.cycle_life,
                "cycles",
            );
            if !(w.cycle_depth > 0.0 && w.cycle_depth <= 1.0) {
                p.error(
                    format!("{path}.cycle_depth"),
                    format!("cycle depth {} is outside (0, 1]", w.cycle_depth),
                    "the depth of discharge of the maker's rated cycles as a fraction of capacity, e.g. 0.85 for 85 %",
                );
            }
        }
    }
    let soc_hint = "fractions of capacity with 0 <= soc_min < soc_max <= 1, e.g. 0.10 and 0.95";
    for (field, v) in [
        ("soc_min", b.soc_min),
        ("soc_max", b.soc_max),
        ("initial_soc", b.initial_soc),
    ] {
        if !(0.0..=1.0).contains(&v) {
            p.error(
                format!("{path}.{field}"),
                format!("{field} {v} is outside [0, 1]"),
                soc_hint,
            );
        }
    }
    if b.soc_min >= b.soc_max {
        p.error(
            format!("{path}.soc_min"),
            format!(
                "soc_min ({}) must be below soc_max ({})",
                b.soc_min, b.soc_max
            ),
            soc_hint,
        );
        p.involving(&[format!("{path}.soc_max")]);
    } else if b.initial_soc < b.soc_min || b.initial_soc > b.soc_max {
        p.error(
            format!("{path}.initial_soc"),
            format!(
                "initial_soc {} is outside the SoC window {}..{}",
                b.initial_soc, b.soc_min, b.soc_max
            ),
            "start inside the window the battery is allowed to use",
        );
        p.involving(&[format!("{path}.soc_min"), format!("{path}.soc_max")]);
    }
    let rt = b.round_trip_efficiency();
    if rt > 0.0 && rt < 0.6 {
        p.warning(
            format!("{path}.charge_efficiency"),
            format!("round-trip efficiency {:.1} % is unusually low", rt * 100.0),
            "lithium-ion systems are about 85-95 % round trip; check both efficiencies",
        );
        p.involving(&[format!("{path}.discharge_efficiency")]);
    }
    if b.capacity.0 > 0.0 && b.max_discharge.0 / b.capacity.0 > 4.0 {
        p.warning(
            format!("{path}.max_discharge_kw"),
            format!(
                "discharge power is {:.1} C, more than stationary batteries usually allow",
                b.max_discharge.0 / b.capacity.0
            ),
            "stationary storage is typically 0.25 C to 2 C",
        );
        p.involving(&[format!("{path}.capacity_kwh")]);
    }
}

/// One fixed load.
pub fn validate_fixed_load(l: &FixedLoad, path: &str, p: &mut Problems) {
    p.non_negative(format!("{path}.base_kw"), "base load", l.base.0, "kW");
    p.non_negative(format!("{path}.peak_kw"), "peak load", l.peak.0, "kW");
    if l.base > l.peak {
        p.error(
            format!("{path}.base_kw"),
            format!(
                "base load ({} kW) is above peak load ({} kW)",
                l.base.0, l.peak.0
            ),
            "base_kw is the night-time minimum, peak_kw the daytime maximum",
        );
        p.involving(&[format!("{path}.peak_kw")]);
    }
}

fn aligned(t: TimeOfDay, interval: IntervalLength) -> bool {
    t.minutes().is_multiple_of(interval.minutes())
}

/// One flexible load: its range, and whether its energy fits its window.
pub fn validate_flexible_load(
    l: &FlexibleLoad,
    path: &str,
    interval: IntervalLength,
    p: &mut Problems,
) {
    p.non_negative(
        format!("{path}.min_kw"),
        "minimum power",
        l.min_power.0,
        "kW",
    );
    p.positive(
        format!("{path}.max_kw"),
        "maximum power",
        l.max_power.0,
        "kW",
    );
    if l.min_power > l.max_power {
        p.error(
            format!("{path}.min_kw"),
            format!(
                "min_kw ({}) is above max_kw ({})",
                l.min_power.0, l.max_power.0
            ),
            "min_kw <= max_kw",
        );
        p.involving(&[format!("{path}.max_kw")]);
    }
    match &l.flexibility {
        Flexibility::Deferrable {
            energy,
            window_start,
            window_end,
        } => {
            p.non_negative(
                format!("{path}.energy_kwh"),
                "energy to deliver",
                energy.0,
                "kWh",
            );
            if window_start >= window_end {
                p.error(
                    format!("{path}.window_end"),
                    format!("window ends ({window_end}) at or before it starts ({window_start})"),
                    "a window lies within one day: window_start < window_end, e.g. \"22:00\" to \"24:00\"",
                );
                p.involving(&[format!("{path}.window_start")]);
            } else {
                for (field, t) in [("window_start", window_start), ("window_end", window_end)] {
                    if !aligned(*t, interval) {
                        p.error(
                            format!("{path}.{field}"),
                            format!("{field} {t} does not fall on a {interval} interval boundary"),
                            format!(
                                "use a time whose minutes are a multiple of {}",
                                interval.minutes()
                            ),
                        );
                        p.involving(&["park.interval_minutes"]);
                    }
                }
                let hours = f64::from(window_end.minutes() - window_start.minutes()) / 60.0;
                let most = l.max_power.0 * hours;
                if energy.0 > most + 1e-9 {
                    p.error(
                        format!("{path}.energy_kwh"),
                        format!(
                            "{} kWh cannot be delivered in {window_start}-{window_end}: at most {most} kWh at {} kW",
                            energy.0, l.max_power.0
                        ),
                        "widen the window, raise max_kw, or lower energy_kwh",
                    );
                    p.involving(&[
                        format!("{path}.max_kw"),
                        format!("{path}.window_start"),
                        format!("{path}.window_end"),
                    ]);
                }
                let least = l.min_power.0 * hours;
                if l.min_power.0 > 0.0 && energy.0 + 1e-9 < least && energy.0 > 0.0 {
                    p.warning(
                        format!("{path}.energy_kwh"),
                        format!(
                            "{} kWh is less than running at min_kw for the whole window ({least} kWh); the load will run only part of it",
                            energy.0
                        ),
                        "this is fine if the load may switch off inside its window",
                    );
                    p.involving(&[
                        format!("{path}.min_kw"),
                        format!("{path}.window_start"),
                        format!("{path}.window_end"),
                    ]);
                }
            }
        }
        Flexibility::Curtailable {
            curtailable_share,
            value_of_lost_load,
        } => {
            if !(0.0..=1.0).contains(curtailable_share) {
                p.error(
                    format!("{path}.curtailable_share"),
                    format!("curtailable share {curtailable_share} is outside [0, 1]"),
                    "the fraction of demand that may be shed, e.g. 0.3",
                );
            }
            p.non_negative(
                format!("{path}.value_of_lost_load_cny_per_kwh"),
                "value of lost load",
                value_of_lost_load.0,
                "CNY/kWh",
            );
        }
    }
}

/// One EV charger.
pub fn validate_ev_charger(c: &EvCharger, path: &str, p: &mut Problems) {
    p.non_negative(
        format!("{path}.min_kw"),
        "minimum power",
        c.min_power.0,
        "kW",
    );
    p.positive(
        format!("{path}.max_kw"),
        "maximum power",
        c.max_power.0,
        "kW",
    );
    if c.min_power > c.max_power {
        p.error(
            format!("{path}.min_kw"),
            format!(
                "min_kw ({}) is above max_kw ({})",
                c.min_power.0, c.max_power.0
            ),
            "min_kw is the lowest power the charger can regulate to, below max_kw",
        );
        p.involving(&[format!("{path}.max_kw")]);
    }
    p.non_negative(
        format!("{path}.session_kwh"),
        "default session energy",
        c.session_kwh,
        "kWh",
    );
    p.non_negative(
        format!("{path}.session_hours"),
        "default stay",
        c.session_hours,
        "h",
    );
    if (c.session_kwh > 0.0) != (c.session_hours > 0.0) {
        let (set, unset) = if c.session_kwh > 0.0 {
            ("session_kwh", "session_hours")
        } else {
            ("session_hours", "session_kwh")
        };
        p.error(
            format!("{path}.{set}"),
            format!("{set} is given without {unset}: a default session needs both its energy and its stay"),
            format!("add `{unset}` (e.g. `session_kwh = 30`, `session_hours = 8`) or leave both out"),
        );
    } else if c.session_kwh > c.max_power.0 * c.session_hours + 1e-9 && c.max_power.0 > 0.0 {
        p.error(
            format!("{path}.session_kwh"),
            format!(
                "session_kwh ({}) is more than max_kw x session_hours ({:.1} kWh): no car could get it",
                c.session_kwh,
                c.max_power.0 * c.session_hours
            ),
            "a default session the charger can deliver in its stay",
        );
        p.involving(&[format!("{path}.session_hours"), format!("{path}.max_kw")]);
    }
}

/// The lowest efficiency of a conversion accepted.
pub const MIN_EFFICIENCY: f64 = 0.5;

/// The highest energy price accepted, CNY/kWh: ten times Shandong's critical peak (about
/// 1.25 CNY/kWh, DOMAIN.md); a higher one is a unit mistake (CNY/MWh, fen) or a typo.
pub const MAX_PRICE_CNY_PER_KWH: f64 = 10.0;

/// The tariff: prices for every period used, every month in one season, every season's
/// windows covering 00:00-24:00 exactly once on interval boundaries.
pub fn validate_tariff(t: &Tariff, interval: IntervalLength, p: &mut Problems) {
    for (kind, price) in &t.prices {
        if price.0 < 0.0 {
            p.error(
                format!("tariff.prices_cny_per_kwh.{}", kind.key()),
                format!("{} price is negative ({} CNY/kWh)", kind.key(), price.0),
                "time-of-use prices are >= 0 CNY/kWh",
            );
        } else if price.0 > MAX_PRICE_CNY_PER_KWH {
            p.error(
                format!("tariff.prices_cny_per_kwh.{}", kind.key()),
                format!(
                    "{} price {} CNY/kWh is above {MAX_PRICE_CNY_PER_KWH} CNY/kWh",
                    kind.key(),
                    price.0
                ),
                "prices are CNY per kWh (not per MWh, not fen), e.g. 0.65",
            );
        }
    }
    if t.export_price.0 > MAX_PRICE_CNY_PER_KWH {
        p.error(
            "tariff.export_price_cny_per_kwh",
            format!(
                "export price {} CNY/kWh is above {MAX_PRICE_CNY_PER_KWH} CNY/kWh",
                t.export_price.0
            ),
            "prices are CNY per kWh (not per MWh, not fen), e.g. 0.3949",
        );
    }
    p.non_negative(
        "tariff.export_price_cny_per_kwh".into(),
        "export price",
        t.export_price.0,
        "CNY/kWh",
    );
    p.non_negative(
        "tariff.demand_charge_cny_per_kw_month".into(),
        "demand charge",
        t.demand.rate.0,
        "CNY/kW/month",
    );
    p.non_negative(
        "tariff.demand_target_kw".into(),
        "demand target",
        t.demand.monthly_target_kw,
        "kW",
    );
    let (key, what, value, unit) = match t.demand.basis {
        DemandBasis::ContractedDemand { contracted_kw } => (
            "contracted_demand_kw",
            "contracted demand",
            contracted_kw,
            "kW",
        ),
        DemandBasis::TransformerCapacity { kva } => (
            "transformer_capacity_kva",
            "transformer capacity",
            kva,
            "kVA",
        ),
        DemandBasis::MaximumDemand => ("", "", 1.0, ""),
    };
    if value <= 0.0 {
        p.error(
            format!("tariff.{key}"),
            format!(
                "{what} must be above 0 {unit} under demand_billing = \"{}\", found {value}",
                t.demand.basis.key()
            ),
            format!("give the {what} of the supply contract in {unit}"),
        );
    }
    let w = t.demand.window_minutes;
    if w == 0 || w > 60 || 60 % w != 0 {
        p.error(
            "tariff.demand_window_minutes",
            format!("a demand window of {w} minutes does not divide the hour"),
            "the demand meter averages over 15 minutes in China's two-part tariff; give 5, 15, 30 or 60",
        );
    }
    let mut month_owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (si, s) in t.seasons.iter().enumerate() {
        let spath = format!("tariff.season[{si}]");
        if s.months.is_empty() {
            p.error(
                format!("{spath}.months"),
                format!("season \"{}\" has no months", s.name),
                "list the months (1-12) it applies in, or remove the season",
            );
        }
        for (mi, &m) in s.months.iter().enumerate() {
            if !(1..=12).contains(&m) {
                p.error(
                    format!("{spath}.months[{mi}]"),
                    format!("month {m} does not exist"),
                    "months are 1 (January) to 12 (December)",
                );
            } else if let Some(&other) = month_owner.get(&m) {
                p.error(
                    format!("{spath}.months[{mi}]"),
                    format!(
                        "month {m} is already in season \"{}\" (tariff.season[{other}])",
                        t.seasons[other].name
                    ),
                    "each month belongs to exactly one season",
                );
            } else {
                month_owner.insert(m, si);
            }
        }
        // Coverage of the day: sort windows by start, then look for overlaps and gaps.
        let mut order: Vec<usize> = (0..s.windows.len()).collect();
        order.sort_by_key(|&i| (s.windows[i].start, s.windows[i].end));
        let bounds: Vec<String> = (0..s.windows.len())
            .flat_map(|i| {
                [
                    format!("{spath}.periods[{i}].start"),
                    format!("{spath}.periods[{i}].end"),
                ]
            })
            .collect();
        let mut covered_to = TimeOfDay::MIDNIGHT;
        let mut covered_by: Option<usize> = None;
        for &wi in &order {
            let w = &s.windows[wi];
            let wpath = format!("{spath}.periods[{wi}]");
            if w.start >= w.end {
                p.error(
                    format!("{wpath}.end"),
                    format!("period ends ({}) at or before it starts ({})", w.end, w.start),
                    "a period is start < end within one day; split one that crosses midnight into two",
                );
                continue;
            }
            for (field, tod) in [("start", w.start), ("end", w.end)] {
                if !aligned(tod, interval) {
                    p.error(
                        format!("{wpath}.{field}"),
                        format!("{field} {tod} does not fall on a {interval} interval boundary"),
                        format!(
                            "the park plans in {interval} intervals; use minutes that are a multiple of {}",
                            interval.minutes()
                        ),
                    );
                    p.involving(&["park.interval_minutes"]);
                }
            }
            if !t.prices.contains_key(&w.kind) {
                p.error(
                    format!("{wpath}.kind"),
                    format!("period kind {} has no price", w.kind.key()),
                    format!(
                        "add `{} = <CNY/kWh>` under [tariff.prices_cny_per_kwh]",
                        w.kind.key()
                    ),
                );
            }
            if w.start < covered_to {
                let other = covered_by
                    .map(|o| format!(" (periods[{o}])"))
                    .unwrap_or_default();
                p.error(
                    format!("{wpath}.start"),
                    format!(
                        "period {}-{} overlaps the period ending at {covered_to}{other}",
                        w.start, w.end
                    ),
                    "periods of a season must not overlap",
                );
                p.involving(&bounds);
            } else if w.start > covered_to {
                p.error(
                    format!("{wpath}.start"),
                    format!(
                        "no period covers {covered_to}-{} in season \"{}\"",
                        w.start, s.name
                    ),
                    "the periods of a season must cover 00:00-24:00 without gaps",
                );
                p.involving(&bounds);
            }
            if w.end > covered_to {
                covered_to = w.end;
                covered_by = Some(wi);
            }
        }
        if covered_to < TimeOfDay::END_OF_DAY {
            p.error(
                format!("{spath}.periods"),
                format!(
                    "no period covers {covered_to}-24:00 in season \"{}\"",
                    s.name
                ),
                "the periods of a season must cover 00:00-24:00 without gaps",
            );
            p.involving(&bounds);
        }
    }
    let all_months: Vec<String> = (0..t.seasons.len())
        .map(|i| format!("tariff.season[{i}].months"))
        .collect();
    let missing: Vec<String> = (1..=12)
        .filter(|m| !month_owner.contains_key(m))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() && !t.seasons.is_empty() {
        p.error(
            "tariff.season",
            format!("month(s) {} belong to no season", missing.join(", ")),
            "every month 1-12 must be listed in exactly one [[tariff.season]]",
        );
        p.involving(&all_months);
    } else if t.seasons.is_empty() {
        p.error(
            "tariff",
            "the tariff has no [[tariff.season]]",
            "add at least one season with months = [1, ..., 12] and its periods",
        );
        p.involving(&["tariff.season"]);
    }
    let unused: Vec<&str> = t
        .prices
        .keys()
        .filter(|k| {
            !t.seasons
                .iter()
                .any(|s| s.windows.iter().any(|w| w.kind == **k))
        })
        .map(|k| k.key())
        .collect();
    for k in unused {
        p.warning(
            format!("tariff.prices_cny_per_kwh.{k}"),
            format!("price for {k} is never used by any season"),
            "remove it, or use it in a period",
        );
        p.involving(&["tariff.season"]);
    }
}

/// The grid factor: plausible, with provenance; unverified figures are flagged.
pub fn validate_carbon(c: &CarbonSettings, p: &mut Problems) {
    let g = &c.grid_factor;
    if !(0.0..=2.0).contains(&g.value.0) {
        p.error(
            "carbon.grid_factor_kg_per_kwh",
            format!("grid factor {} kg CO2/kWh is implausible", g.value.0),
            "grid factors are between 0 and about 1.2 kg CO2/kWh (North China 2023: 0.6361)",
        );
    }
    if g.source.trim().is_empty() {
        p.error(
            "carbon.factor_source",
            "the grid factor has no source",
            "name the publisher and document, e.g. \"MEE/NBS 2023 electricity CO2 factors\"",
        );
    }
    if g.status != SourceStatus::Confirmed {
        p.warning(
            "carbon.factor_status",
            format!(
                "grid factor {} is {} {}: it will be shown as an unverified factor",
                g.value.0,
                g.status.key(),
                g.status.tag()
            ),
            "use a factor confirmed in a published source to report without this flag",
        );
    }
    if !(1990..=2100).contains(&g.data_year) {
        p.error(
            "carbon.factor_data_year",
            format!("data year {} is implausible", g.data_year),
            "the year the factor describes, e.g. 2023",
        );
    }
    if let Some(b) = &c.baseline {
        if !(b.value.0 > 0.0 && b.value.0 <= 2.0) {
            p.error(
                "carbon.baseline.factor_kg_per_kwh",
                format!("baseline factor {} kg CO2/kWh is implausible", b.value.0),
                "a grid baseline factor is above 0 and below about 1.2 t CO2/MWh (a North China combined margin is near 0.8-0.9)",
            );
        }
        if b.source.trim().is_empty() {
            p.error(
                "carbon.baseline.source",
                "the baseline factor has no source",
                "name the document and where in it, e.g. \"PDD of the project, section B.6.3\"",
            );
        }
    }
    p.non_negative(
        "carbon.carbon_price_cny_per_t".into(),
        "carbon price",
        c.carbon_price_cny_per_t,
        "CNY/t",
    );
    for (key, value, what) in [
        (
            "monthly_budget_t",
            c.control.monthly_budget_t,
            "t CO2 per month",
        ),
        (
            "annual_budget_t",
            c.control.annual_budget_t,
            "t CO2 per year",
        ),
        (
            "intensity_kg_per_kwh",
            c.control.intensity_kg_per_kwh,
            "kg CO2 per kWh consumed",
        ),
    ] {
        if let Some(b) = value.filter(|b| *b <= 0.0) {
            p.error(
                format!("carbon.control.{key}"),
                format!("carbon.control.{key} = {b} leaves no import at all"),
                format!("give the park's limit in {what} (> 0), or leave the key out for none"),
            );
        }
    }
}

/// Every asset and meter has its own id.
pub fn check_unique_ids(park: &Park, p: &mut Problems) {
    let mut seen: HashMap<&str, String> = HashMap::new();
    let mut ids: Vec<(&str, String)> = vec![(park.converter.id.as_str(), "converter.id".into())];
    ids.extend(
        park.pv
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("pv[{i}].id"))),
    );
    ids.extend(
        park.batteries
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("battery[{i}].id"))),
    );
    ids.extend(
        park.fixed_loads
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("fixed_load[{i}].id"))),
    );
    ids.extend(
        park.flexible_loads
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("flexible_load[{i}].id"))),
    );
    ids.extend(
        park.ev_chargers
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("ev_charger[{i}].id"))),
    );
    ids.extend(
        park.meters
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), format!("meter[{i}].id"))),
    );
    for (id, path) in ids {
        if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            p.error(
                path,
                format!("id {id:?} is not usable as an id"),
                "1-64 characters without spaces or control characters, e.g. \"bess-1\"",
            );
            continue;
        }
        if let Some(first) = seen.get(id) {
            p.error(
                path,
                format!("id \"{id}\" is already used by {first}"),
                "every asset and meter needs its own id",
            );
        } else {
            seen.insert(id, path);
        }
    }
}

/// Checks that span sections: chargers the bus can feed, meters that point at assets,
/// export rules that make sense for the assets present.
pub fn check_links(park: &Park, p: &mut Problems) {
    let is_asset = |id: &str| {
        park.converter.id == id
            || park.pv.iter().any(|a| a.id == id)
            || park.batteries.iter().any(|a| a.id == id)
            || park.fixed_loads.iter().any(|a| a.id == id)
            || park.flexible_loads.iter().any(|a| a.id == id)
            || park.ev_chargers.iter().any(|a| a.id == id)
    };
    let id_fields: Vec<String> = std::iter::once("converter.id".to_string())
        .chain((0..park.pv.len()).map(|i| format!("pv[{i}].id")))
        .chain((0..park.batteries.len()).map(|i| format!("battery[{i}].id")))
        .chain((0..park.fixed_loads.len()).map(|i| format!("fixed_load[{i}].id")))
        .chain((0..park.flexible_loads.len()).map(|i| format!("flexible_load[{i}].id")))
        .chain((0..park.ev_chargers.len()).map(|i| format!("ev_charger[{i}].id")))
        .collect();
    for (i, m) in park.meters.iter().enumerate() {
        if let MeterPoint::Asset(a) = &m.point {
            if !is_asset(a) {
                p.error(
                    format!("meter[{i}].measures"),
                    format!(
                        "meter \"{}\" measures \"{a}\", which is no asset of this park",
                        m.id
                    ),
                    "use \"grid\" or the id of a PV array, battery, load, charger or the converter",
                );
                p.involving(&id_fields);
            }
        }
    }
    let from_grid = park.converter.max_dc_supply();
    let supply = park.max_bus_supply();
    let supply_fields: Vec<String> = ["converter.rating_kw", "converter.efficiency_ac_to_dc"]
        .into_iter()
        .map(String::from)
        .chain((0..park.pv.len()).map(|i| format!("pv[{i}].converter_rating_kw")))
        .chain((0..park.batteries.len()).map(|i| format!("battery[{i}].max_discharge_kw")))
        .collect();
    for (i, c) in park.ev_chargers.iter().enumerate() {
        if c.max_power > supply {
            p.error(
                format!("ev_charger[{i}].max_kw"),
                format!(
                    "charger {} ({} kW) is bigger than the bus can ever feed ({:.1} kW from converter, batteries and PV together)",
                    c.id, c.max_power.0, supply.0
                ),
                "lower max_kw to what the charger can actually receive, or add supply",
            );
            p.involving(&supply_fields);
        } else if c.max_power > from_grid {
            p.warning(
                format!("ev_charger[{i}].max_kw"),
                format!(
                    "charger {} ({} kW) exceeds what the converter alone can feed ({:.1} kW): at night with an empty battery it cannot run at full power",
                    c.id, c.max_power.0, from_grid.0
                ),
                "this is fine if the battery or PV is meant to cover it",
            );
            p.involving(&["converter.rating_kw", "converter.efficiency_ac_to_dc"]);
        }
    }
    let rules = &park.grid.export_rules;
    if rules.allow_export && rules.export_only_from_pv && park.pv.is_empty() {
        p.warning(
            "grid.allow_export",
            "export is allowed only from PV, but the park has no PV",
            "set allow_export = false, or add the PV arrays",
        );
        p.involving(&["pv", "grid.export_only_from_pv"]);
    }
    if park.grid.import_limit.0 > 0.0 && park.grid.import_limit > park.converter.rating * 1.5 {
        p.warning(
            "grid.import_limit_kw",
            format!(
                "import limit {} kW is far above the converter rating {} kW; the converter is the real limit",
                park.grid.import_limit.0, park.converter.rating.0
            ),
            "state the contracted limit at the point of common coupling",
        );
        p.involving(&["converter.rating_kw"]);
    }
}
