//! The park file (TOML): its sections, and how it becomes a [`Park`].
//!
//! The reference park, `config/qingzhou-pedf.toml`, documents every key with a comment.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use super::reader::{expect, Reader, Table};
use super::{decode_utf8, Loaded};
use crate::assets::{
    Battery, Coupling, DcBus, EvCharger, ExportRules, FixedLoad, Flexibility, FlexibleLoad,
    GridConnection, GridConverter, Meter, MeterPoint, PvArray,
};
use crate::park::{CarbonSettings, GridFactor, Location, Park, SourceStatus};
use crate::tariff::{PeriodKind, Tariff, TouSeason, TouWindow};
use crate::time::{parse_time_zone, IntervalLength, ParkClock, TimeOfDay};
use crate::units::{CnyPerKwMonth, CnyPerKwh, KgCo2PerKwh, Kw, Kwh, Kwp};
use crate::validate::{self, Problems, Severity};

/// The top-level sections of a park file, in the order the reference file uses.
pub const PARK_SECTIONS: [&str; 12] = [
    "park",
    "dc_bus",
    "grid",
    "converter",
    "pv",
    "battery",
    "fixed_load",
    "flexible_load",
    "ev_charger",
    "meter",
    "tariff",
    "carbon",
];

/// Reads a park file. `file` is the name used in diagnostics; `bytes` its content.
///
/// Every problem is reported, each located; the park is returned only when there is no error.
pub fn load_park(file: &str, bytes: &[u8]) -> Loaded<Park> {
    let text = match decode_utf8(file, bytes) {
        Ok(t) => t,
        Err(d) => {
            return Loaded {
                value: None,
                diagnostics: vec![d],
            }
        }
    };
    let mut r = Reader::new(file, text);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    let syntax_error_count = syntax_errors.len();
    for e in syntax_errors {
        let span = e.span().unwrap_or(0..0);
        r.error(
            &span,
            format!("TOML syntax: {}", e.message().trim_end()),
            "see https://toml.io for the syntax; strings need quotes, tables [brackets]".into(),
        );
    }
    let park = read_park(&mut r, doc.span(), doc.get_ref(), syntax_error_count);
    let mut diagnostics = r.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Loaded {
        value: if has_errors { None } else { park },
        diagnostics,
    }
}

fn apply(r: &mut Reader, problems: Problems) {
    for p in problems.0 {
        r.problem(p);
    }
}

/// Expected-value descriptions reused across sections.
const EFFICIENCY: &str = "an efficiency, a fraction in (0, 1]";

fn read_park(
    r: &mut Reader,
    span: std::ops::Range<usize>,
    doc: &DeTable,
    syntax_errors: usize,
) -> Option<Park> {
    // A partly parsed document still gets read, but missing sections are then probably
    // consequences of the syntax error, so they are not reported twice.
    let mut root = Table::new(String::new(), span.start..span.start, doc);
    let required = syntax_errors == 0;

    let head = read_head(r, &mut root, required);
    let interval = head.as_ref().map(|h| h.1.interval).unwrap_or_default();
    let dc_bus = read_dc_bus(r, &mut root, required);
    let grid = read_grid(r, &mut root, required);
    let converter = read_converter(r, &mut root, required);

    let pv = read_list(r, &mut root, "pv", "a PV array", read_pv);
    let batteries = read_list(r, &mut root, "battery", "a battery", read_battery);
    let fixed_loads = read_list(r, &mut root, "fixed_load", "a fixed DC load", read_fixed_load);
    let flexible_loads = read_list(r, &mut root, "flexible_load", "a flexible DC load", |r, t| {
        read_flexible_load(r, t, interval)
    });
    let charger_groups = read_list(r, &mut root, "ev_charger", "a group of EV chargers", read_ev_group);
    let meters = read_list(r, &mut root, "meter", "a meter", read_meter);
    let tariff = read_tariff(r, &mut root, required, interval);
    let carbon = read_carbon(r, &mut root, required);
    r.finish(root);

    let (id, clock, location, name, name_zh, owner) = head?;
    let park = Park {
        id,
        name,
        name_zh,
        owner,
        location,
        clock,
        dc_bus: dc_bus?,
        grid: grid?,
        converter: converter?,
        pv: pv?,
        batteries: batteries?,
        fixed_loads: fixed_loads?,
        flexible_loads: flexible_loads?,
        ev_chargers: charger_groups
            .as_ref()?
            .iter()
            .map(|g| g.template.clone())
            .collect(),
        meters: meters?,
        tariff: tariff?,
        carbon: carbon?,
    };
    // Checks across sections see one charger per file entry (so a too-big charger group is
    // reported once, at its entry) ...
    let mut problems = Problems::default();
    validate::check_links(&park, &mut problems);
    apply(r, problems);
    // ... and unique ids see every charger after expansion.
    let groups = charger_groups?;
    let mut chargers = Vec::new();
    for (k, g) in groups.iter().enumerate() {
        for c in g.expand() {
            r.alias_spans(&format!("ev_charger[{k}]"), &format!("ev_charger[{}]", chargers.len()));
            chargers.push(c);
        }
    }
    let park = Park {
        ev_chargers: chargers,
        ..park
    };
    let mut problems = Problems::default();
    validate::check_unique_ids(&park, &mut problems);
    apply(r, problems);
    Some(park)
}

type Head = (String, ParkClock, Location, String, Option<String>, Option<String>);

fn read_head(r: &mut Reader, root: &mut Table, required: bool) -> Option<Head> {
    let mut t = r.table(root, "park", required, expect("identity, location and clock of the park", "id, name, latitude_deg, longitude_deg, timezone"))?;
    let id = r.string(&mut t, "id", expect("a short id of lowercase letters, digits and -", "\"qingzhou-pedf\""));
    let name = r.string(&mut t, "name", expect("a display name", "\"Qingzhou PEDF park\""));
    let name_zh = r.string_opt(&mut t, "name_zh", expect("a display name in Chinese", "\"青州光储直柔园区\""));
    let owner = r.string_opt(&mut t, "owner", expect("the owner or operator", "\"Qingzhou Park Energy Co.\""));
    let lat = r.number(&mut t, "latitude_deg", expect("a latitude in degrees north", "36.70"));
    let lon = r.number(&mut t, "longitude_deg", expect("a longitude in degrees east", "118.47"));
    let alt = r.number_or(&mut t, "altitude_m", 0.0, expect("an altitude in metres", "60"));
    let tz_name = r.string(&mut t, "timezone", expect("an IANA time zone", "\"Asia/Shanghai\""));
    let minutes = r.integer_or(&mut t, "interval_minutes", 15, expect("an interval length in minutes: 5, 15, 30 or 60", "15"));

    let tz = tz_name.and_then(|name| match parse_time_zone(&name) {
        Some(tz) => Some(tz),
        None => {
            let span = t.table.get("timezone").map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("park.timezone: \"{name}\" is not an IANA time zone"),
                "use a name from the tz database, e.g. \"Asia/Shanghai\" (not \"CST\" or \"UTC+8\")".into(),
            );
            None
        }
    });
    let interval = minutes.and_then(|m| match IntervalLength::from_minutes(m) {
        Some(i) => Some(i),
        None => {
            let span = t.table.get("interval_minutes").map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("park.interval_minutes: {m} is not a supported interval length"),
                "valid: 5, 15, 30, 60".into(),
            );
            None
        }
    });
    if let Some(id) = &id {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            let span = t.table.get("id").map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("park.id: \"{id}\" is not a valid id"),
                "1-64 characters of a-z, 0-9 and -, e.g. \"qingzhou-pedf\"".into(),
            );
        }
    }
    r.finish(t);
    let location = Location {
        latitude_deg: lat?,
        longitude_deg: lon?,
        altitude_m: alt?,
    };
    let mut p = Problems::default();
    validate::validate_location(&location, &mut p);
    apply(r, p);
    Some((id?, ParkClock::new(tz?, interval?), location, name?, name_zh?, owner?))
}

fn read_dc_bus(r: &mut Reader, root: &mut Table, required: bool) -> Option<DcBus> {
    let mut t = r.table(root, "dc_bus", required, expect("the DC bus", "nominal_voltage_v = 750"))?;
    let v = r.number(&mut t, "nominal_voltage_v", expect("the nominal bus voltage in V", "750"));
    r.finish(t);
    let bus = DcBus { nominal_voltage_v: v? };
    if bus.nominal_voltage_v <= 0.0 {
        let mut p = Problems::default();
        p.error(
            "dc_bus.nominal_voltage_v",
            format!("bus voltage must be above 0 V, found {}", bus.nominal_voltage_v),
            "PEDF buildings in China typically use 750 V or 375 V DC",
        );
        apply(r, p);
    }
    Some(bus)
}

fn read_grid(r: &mut Reader, root: &mut Table, required: bool) -> Option<GridConnection> {
    let mut t = r.table(root, "grid", required, expect("the grid connection", "import_limit_kw, export_limit_kw and the export rules"))?;
    let kv = r.number(&mut t, "feeder_voltage_kv", expect("the feeder voltage in kV", "10"));
    let import = r.number(&mut t, "import_limit_kw", expect("the contracted import limit in kW", "1500"));
    let export = r.number(&mut t, "export_limit_kw", expect("the export limit in kW", "1500"));
    let allow = r.boolean_or(&mut t, "allow_export", true, expect("true or false", "true"));
    let no_sim = r.boolean_or(&mut t, "no_simultaneous_import_export", true, expect("true or false", "true"));
    let pv_only = r.boolean_or(&mut t, "export_only_from_pv", true, expect("true or false", "true"));
    r.finish(t);
    let g = GridConnection {
        feeder_voltage_kv: kv?,
        import_limit: Kw(import?),
        export_limit: Kw(export?),
        export_rules: ExportRules {
            allow_export: allow?,
            no_simultaneous_import_export: no_sim?,
            export_only_from_pv: pv_only?,
        },
    };
    let mut p = Problems::default();
    validate::validate_grid(&g, &mut p);
    apply(r, p);
    Some(g)
}

fn read_converter(r: &mut Reader, root: &mut Table, required: bool) -> Option<GridConverter> {
    let mut t = r.table(root, "converter", required, expect("the AC/DC grid converter", "rating_kw = 1500"))?;
    let id = r.string(&mut t, "id", expect("an asset id", "\"pcs-grid\""));
    let rating = r.number(&mut t, "rating_kw", expect("the AC rating in kW", "1500"));
    let a2d = r.number(&mut t, "efficiency_ac_to_dc", expect(EFFICIENCY, "0.97"));
    let d2a = r.number(&mut t, "efficiency_dc_to_ac", expect(EFFICIENCY, "0.97"));
    r.finish(t);
    let c = GridConverter {
        id: id?,
        rating: Kw(rating?),
        efficiency_ac_to_dc: a2d?,
        efficiency_dc_to_ac: d2a?,
    };
    let mut p = Problems::default();
    validate::validate_converter(&c, &mut p);
    apply(r, p);
    Some(c)
}

/// Reads every entry of an array of tables; `None` if any entry could not be read.
fn read_list<T>(
    r: &mut Reader,
    root: &mut Table,
    key: &'static str,
    what: &'static str,
    mut each: impl FnMut(&mut Reader, Table) -> Option<T>,
) -> Option<Vec<T>> {
    let tables = r.tables(root, key, expect(what, "fields"));
    let mut out = Vec::new();
    let mut ok = true;
    for t in tables {
        match each(r, t) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_pv(r: &mut Reader, mut t: Table) -> Option<PvArray> {
    let path = t.path.clone();
    let id = r.string(&mut t, "id", expect("an asset id", "\"pv-roof-a\""));
    let kwp = r.number(&mut t, "peak_power_kwp", expect("the nameplate DC power in kWp", "1200"));
    let tilt = r.number(&mut t, "tilt_deg", expect("the tilt in degrees from horizontal", "20"));
    let az = r.number(&mut t, "azimuth_deg", expect("the azimuth in degrees clockwise from north", "180"));
    let losses = r.number_or(&mut t, "system_losses", 0.14, expect("system losses, a fraction in [0, 1)", "0.14"));
    let rating = r.number(&mut t, "converter_rating_kw", expect("the PV converter's output rating in kW", "1100"));
    let eff = r.number_or(&mut t, "converter_efficiency", 0.985, expect(EFFICIENCY, "0.985"));
    let tc = r.number_or(&mut t, "temperature_coefficient_per_c", -0.0035, expect("a power temperature coefficient per degC", "-0.0035"));
    r.finish(t);
    let a = PvArray {
        id: id?,
        peak_power: Kwp(kwp?),
        tilt_deg: tilt?,
        azimuth_deg: az?,
        system_losses: losses?,
        converter_rating: Kw(rating?),
        converter_efficiency: eff?,
        temperature_coefficient_per_c: tc?,
    };
    let mut p = Problems::default();
    validate::validate_pv(&a, &path, &mut p);
    apply(r, p);
    Some(a)
}

fn read_battery(r: &mut Reader, mut t: Table) -> Option<Battery> {
    let path = t.path.clone();
    let id = r.string(&mut t, "id", expect("an asset id", "\"bess-1\""));
    let cap = r.number(&mut t, "capacity_kwh", expect("the usable capacity in kWh", "2000"));
    let ch = r.number(&mut t, "max_charge_kw", expect("the largest charging power in kW", "1000"));
    let dis = r.number(&mut t, "max_discharge_kw", expect("the largest discharging power in kW", "1000"));
    let ce = r.number(&mut t, "charge_efficiency", expect(EFFICIENCY, "0.96"));
    let de = r.number(&mut t, "discharge_efficiency", expect(EFFICIENCY, "0.96"));
    let smin = r.number(&mut t, "soc_min", expect("the lowest SoC, a fraction of capacity", "0.10"));
    let smax = r.number(&mut t, "soc_max", expect("the highest SoC, a fraction of capacity", "0.95"));
    let init = r.number_or(&mut t, "initial_soc", 0.5, expect("the SoC assumed without a measurement", "0.5"));
    let deg = r.number_or(&mut t, "degradation_cost_cny_per_kwh", 0.0, expect("the wear cost per kWh discharged, CNY/kWh", "0.05"));
    r.finish(t);
    let b = Battery {
        id: id?,
        capacity: Kwh(cap?),
        max_charge: Kw(ch?),
        max_discharge: Kw(dis?),
        charge_efficiency: ce?,
        discharge_efficiency: de?,
        soc_min: smin?,
        soc_max: smax?,
        initial_soc: init?,
        degradation_cost: CnyPerKwh(deg?),
    };
    let mut p = Problems::default();
    validate::validate_battery(&b, &path, &mut p);
    apply(r, p);
    Some(b)
}

fn read_fixed_load(r: &mut Reader, mut t: Table) -> Option<FixedLoad> {
    let path = t.path.clone();
    let id = r.string(&mut t, "id", expect("an asset id", "\"office\""));
    let base = r.number(&mut t, "base_kw", expect("the night-time base demand in kW", "180"));
    let peak = r.number(&mut t, "peak_kw", expect("the daytime peak demand in kW", "420"));
    r.finish(t);
    let l = FixedLoad {
        id: id?,
        base: Kw(base?),
        peak: Kw(peak?),
    };
    let mut p = Problems::default();
    validate::validate_fixed_load(&l, &path, &mut p);
    apply(r, p);
    Some(l)
}

fn time_of_day(r: &mut Reader, t: &mut Table, key: &'static str, e_example: &'static str) -> Option<TimeOfDay> {
    let s = r.string(t, key, expect("a local time \"HH:MM\"", e_example))?;
    match TimeOfDay::parse(&s) {
        Some(tod) => Some(tod),
        None => {
            let span = t.table.get(key).map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("{}.{key}: \"{s}\" is not a time of day", t.path),
                "write \"HH:MM\" on the 24-hour clock, \"00:00\" to \"24:00\"".into(),
            );
            None
        }
    }
}

fn read_flexible_load(r: &mut Reader, mut t: Table, interval: IntervalLength) -> Option<FlexibleLoad> {
    let path = t.path.clone();
    let id = r.string(&mut t, "id", expect("an asset id", "\"hvac\""));
    let kind = r.choice(&mut t, "kind", &["deferrable", "curtailable"], expect("how the load flexes", "\"deferrable\""));
    let min = r.number_or(&mut t, "min_kw", 0.0, expect("the lowest power while running, kW", "0"));
    let max = r.number(&mut t, "max_kw", expect("the highest power, kW", "250"));
    let flexibility = match kind.as_deref() {
        Some("deferrable") => {
            let energy = r.number(&mut t, "energy_kwh", expect("the energy to deliver each day in the window, kWh", "900"));
            let ws = time_of_day(r, &mut t, "window_start", "\"00:00\"");
            let we = time_of_day(r, &mut t, "window_end", "\"24:00\"");
            Some(Flexibility::Deferrable {
                energy: Kwh(energy?),
                window_start: ws?,
                window_end: we?,
            })
        }
        Some("curtailable") => {
            let share = r.number(&mut t, "curtailable_share", expect("the fraction that may be shed, in [0, 1]", "0.3"));
            let voll = r.number(&mut t, "value_of_lost_load_cny_per_kwh", expect("the cost of each kWh shed, CNY/kWh", "3.0"));
            Some(Flexibility::Curtailable {
                curtailable_share: share?,
                value_of_lost_load: CnyPerKwh(voll?),
            })
        }
        _ => None,
    };
    if kind.is_none() {
        // Without a valid kind the kind-specific keys cannot be checked; accept them quietly.
        t.allow(&["energy_kwh", "window_start", "window_end", "curtailable_share", "value_of_lost_load_cny_per_kwh"]);
    }
    r.finish(t);
    let l = FlexibleLoad {
        id: id?,
        min_power: Kw(min?),
        max_power: Kw(max?),
        flexibility: flexibility?,
    };
    let mut p = Problems::default();
    validate::validate_flexible_load(&l, &path, interval, &mut p);
    apply(r, p);
    Some(l)
}

/// One `[[ev_charger]]` entry: a charger, or `count` identical ones named `<id>-01`...
struct ChargerGroup {
    template: EvCharger,
    count: usize,
}

impl ChargerGroup {
    fn expand(&self) -> Vec<EvCharger> {
        if self.count == 1 {
            return vec![self.template.clone()];
        }
        let width = self.count.to_string().len().max(2);
        (1..=self.count)
            .map(|n| EvCharger {
                id: format!("{}-{n:0width$}", self.template.id),
                ..self.template.clone()
            })
            .collect()
    }
}

fn read_ev_group(r: &mut Reader, mut t: Table) -> Option<ChargerGroup> {
    let path = t.path.clone();
    let id = r.string(&mut t, "id", expect("an asset id (with count > 1, the prefix of the ids)", "\"ev\""));
    let count = r.integer_or(&mut t, "count", 1, expect("how many identical chargers, 1 to 1000", "20"));
    let coupling = r.choice_or(&mut t, "coupling", &["dc", "ac"], "dc", expect("\"dc\" or \"ac\"", "\"dc\""));
    let min = r.number_or(&mut t, "min_kw", 0.0, expect("the lowest regulated power, kW", "6"));
    let max = r.number(&mut t, "max_kw", expect("the highest charging power, kW", "60"));
    let v2g = r.boolean_or(&mut t, "v2g", false, expect("true or false", "false"));
    let count = count.and_then(|n| {
        if (1..=1000).contains(&n) {
            Some(n as usize)
        } else {
            let span = t.table.get("count").map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("{path}.count: {n} chargers is out of range"),
                "between 1 and 1000; split very large car parks into several entries".into(),
            );
            None
        }
    });
    r.finish(t);
    let c = EvCharger {
        id: id?,
        coupling: if coupling? == "ac" { Coupling::Ac } else { Coupling::Dc },
        min_power: Kw(min?),
        max_power: Kw(max?),
        v2g: v2g?,
    };
    let mut p = Problems::default();
    validate::validate_ev_charger(&c, &path, &mut p);
    apply(r, p);
    Some(ChargerGroup {
        template: c,
        count: count?,
    })
}

fn read_meter(r: &mut Reader, mut t: Table) -> Option<Meter> {
    let id = r.string(&mut t, "id", expect("a meter id", "\"m-grid\""));
    let measures = r.string(&mut t, "measures", expect("\"grid\" or the id of the asset measured", "\"grid\""));
    let class = r.string_opt(&mut t, "accuracy_class", expect("the accuracy class on the nameplate", "\"0.5S\""));
    r.finish(t);
    let point = match measures?.as_str() {
        "grid" => MeterPoint::Grid,
        other => MeterPoint::Asset(other.to_string()),
    };
    Some(Meter {
        id: id?,
        point,
        accuracy_class: class?,
    })
}

fn read_tariff(r: &mut Reader, root: &mut Table, required: bool, interval: IntervalLength) -> Option<Tariff> {
    let mut t = r.table(root, "tariff", required, expect("the electricity tariff", "prices, seasons, export price and demand charge"))?;
    let name = r.string(&mut t, "name", expect("a name", "\"Shandong C&I time-of-use\""));
    let source = r.string(&mut t, "source", expect("where the figures come from", "\"supply contract 2026\""));
    let export = r.number(&mut t, "export_price_cny_per_kwh", expect("the price paid for exported PV, CNY/kWh", "0.3949"));
    let demand = r.number_or(&mut t, "demand_charge_cny_per_kw_month", 0.0, expect("the demand charge, CNY per kW of monthly peak", "38"));

    let prices = match r.table(&mut t, "prices_cny_per_kwh", true, expect("the import price of each period kind", "peak = 1.05")) {
        Some(mut pt) => {
            let mut prices = BTreeMap::new();
            let mut ok = true;
            for kind in PeriodKind::ALL {
                if pt.table.get(kind.key()).is_some() {
                    match r.number(&mut pt, kind.key(), expect("a price in CNY/kWh", "0.65")) {
                        Some(v) => {
                            prices.insert(kind, CnyPerKwh(v));
                        }
                        None => ok = false,
                    }
                } else {
                    // Still a valid key, so a typo of it gets a suggestion.
                    pt.allow(&[kind.key()]);
                }
            }
            r.finish(pt);
            ok.then_some(prices)
        }
        None => None,
    };

    let kinds: Vec<&str> = PeriodKind::ALL.iter().map(|k| k.key()).collect();
    let mut seasons = Some(Vec::new());
    let season_tables = r.tables(&mut t, "season", expect("a seasonal schedule", "name, months, periods"));
    for mut st in season_tables {
        let sname = r.string(&mut st, "name", expect("a season name", "\"summer\""));
        let months = r.array(&mut st, "months", expect("a list of months 1-12", "[6, 7, 8]"), |r, path, v| {
            let m = r.as_integer(&path, "months", v, &expect("a month number 1-12", "[6, 7, 8]"))?;
            Some(u32::try_from(m).unwrap_or(u32::MAX))
        });
        let windows = r.array(&mut st, "periods", expect("a list of periods", "[{ start = \"00:00\", end = \"07:00\", kind = \"valley\" }]"), |r, path, v| {
            let DeValue::Table(inner) = v.get_ref() else {
                r.error(
                    &v.span(),
                    format!("{path}: expected a period table, found {}", super::reader::describe(v.get_ref())),
                    "write { start = \"HH:MM\", end = \"HH:MM\", kind = \"valley\" }".into(),
                );
                return None;
            };
            let mut wt = Table::new(path, v.span(), inner);
            let start = time_of_day(r, &mut wt, "start", "\"07:00\"");
            let end = time_of_day(r, &mut wt, "end", "\"10:00\"");
            let kind = r.choice(&mut wt, "kind", &kinds, expect("a period kind", "\"flat\""));
            r.finish(wt);
            Some(TouWindow {
                start: start?,
                end: end?,
                kind: PeriodKind::from_key(&kind?)?,
            })
        });
        r.finish(st);
        match (sname, months, windows) {
            (Some(name), Some(months), Some(windows)) => {
                if let Some(s) = seasons.as_mut() {
                    s.push(TouSeason { name, months, windows });
                }
            }
            _ => seasons = None,
        }
    }
    r.finish(t);
    let tariff = Tariff {
        name: name?,
        source: source?,
        prices: prices?,
        seasons: seasons?,
        export_price: CnyPerKwh(export?),
        demand_charge: CnyPerKwMonth(demand?),
    };
    let mut p = Problems::default();
    validate::validate_tariff(&tariff, interval, &mut p);
    apply(r, p);
    Some(tariff)
}

fn read_carbon(r: &mut Reader, root: &mut Table, required: bool) -> Option<CarbonSettings> {
    let mut t = r.table(root, "carbon", required, expect("the grid emission factor and its source", "grid_factor_kg_per_kwh = 0.6361"))?;
    let value = r.number(&mut t, "grid_factor_kg_per_kwh", expect("an emission factor in kg CO2/kWh", "0.6361"));
    let region = r.string(&mut t, "grid_region", expect("the grid region", "\"north-china\""));
    let variant = r.string(&mut t, "factor_variant", expect("the factor variant", "\"regional-average\""));
    let year = r.integer(&mut t, "factor_data_year", expect("the year the factor describes", "2023"));
    let source = r.string(&mut t, "factor_source", expect("the publisher and document", "\"MEE/NBS 2023 electricity CO2 emission factors\""));
    let status = r.choice(&mut t, "factor_status", &["confirmed", "secondary", "unverified"], expect("how the factor was checked", "\"confirmed\""));
    let price = r.number_or(&mut t, "carbon_price_cny_per_t", 0.0, expect("an internal carbon price, CNY per t CO2", "80"));
    r.finish(t);
    let c = CarbonSettings {
        grid_factor: GridFactor {
            value: KgCo2PerKwh(value?),
            region: region?,
            variant: variant?,
            data_year: i32::try_from(year?).unwrap_or(i32::MAX),
            source: source?,
            status: SourceStatus::from_key(&status?)?,
        },
        carbon_price_cny_per_t: price?,
    };
    let mut p = Problems::default();
    validate::validate_carbon(&c, &mut p);
    apply(r, p);
    Some(c)
}
