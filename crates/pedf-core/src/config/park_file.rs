//! The park file (TOML): its sections, and how it becomes a [`Park`].
//!
//! The reference park, `config/qingzhou-pedf.toml`, documents every key with a comment.
//!
//! Reading never stops early. A field that cannot be read gets a diagnostic and a placeholder;
//! the meaning checks of [`crate::validate`] then run on the whole park, and any problem that
//! depends on an unreadable field is dropped (it would only repeat that field's diagnostic).
//! The park is handed out only when there was no error.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use toml::de::{DeTable, DeValue};

use super::reader::{describe, expect, Reader, Table};
use super::{decode_utf8, Loaded};
use crate::assets::{
    Battery, BatteryWear, Coupling, DcBus, EvCharger, ExportRules, FixedLoad, Flexibility,
    FlexibleLoad, GridConnection, GridConverter, Meter, MeterPoint, PvArray,
};
use crate::park::{
    BaselineFactor, CarbonControl, CarbonSettings, GridFactor, Location, Park, SourceStatus,
};
use crate::tariff::{DemandBasis, DemandCharge, PeriodKind, Tariff, TouSeason, TouWindow};
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
    let syntax_ok = syntax_errors.is_empty();
    for e in syntax_errors {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().replace('\n', "; ");
        r.error(
            &span,
            format!("TOML syntax: {message}"),
            "strings need quotes, tables [brackets], one key = value per line (https://toml.io)"
                .into(),
        );
    }
    let park = read_park(&mut r, doc.span(), doc.get_ref(), syntax_ok);
    let mut diagnostics = r.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Loaded {
        value: if has_errors { None } else { Some(park) },
        diagnostics,
    }
}

const EFFICIENCY: &str = "an efficiency, a fraction in (0, 1]";

fn read_park(r: &mut Reader, span: std::ops::Range<usize>, doc: &DeTable, syntax_ok: bool) -> Park {
    // After a syntax error, missing sections are likely its consequence: do not report them.
    let required = syntax_ok;
    let mut root = Table::new(String::new(), span.start..span.start, doc);

    let head = read_head(r, &mut root, required);
    let dc_bus = read_dc_bus(r, &mut root, required);
    let grid = read_grid(r, &mut root, required);
    let converter = read_converter(r, &mut root, required);
    let pv = read_list(r, &mut root, "pv", "a PV array", read_pv);
    let batteries = read_list(r, &mut root, "battery", "a battery", read_battery);
    let fixed_loads = read_list(
        r,
        &mut root,
        "fixed_load",
        "a fixed DC load",
        read_fixed_load,
    );
    let flexible_loads = read_list(
        r,
        &mut root,
        "flexible_load",
        "a flexible DC load",
        read_flexible_load,
    );
    let groups = read_list(
        r,
        &mut root,
        "ev_charger",
        "a group of EV chargers",
        read_ev_group,
    );
    let meters = read_list(r, &mut root, "meter", "a meter", read_meter);
    let tariff = read_tariff(r, &mut root, required);
    let carbon = read_carbon(r, &mut root, required);
    r.finish(root);
    if !syntax_ok {
        // Whatever the recovery dropped is unknown: checks across sections would mislead.
        for s in PARK_SECTIONS {
            r.fail(s);
        }
    }

    // Section checks and links see one charger per file entry, so a charger group that is
    // too big is reported once, at its entry ...
    let mut park = Park {
        id: head.id,
        name: head.name,
        name_zh: head.name_zh,
        owner: head.owner,
        location: head.location,
        clock: head.clock,
        dc_bus,
        grid,
        converter,
        pv,
        batteries,
        fixed_loads,
        flexible_loads,
        ev_chargers: groups.iter().map(|g| g.template.clone()).collect(),
        meters,
        tariff,
        carbon,
    };
    let mut problems = Problems::default();
    validate::validate_sections(&park, &mut problems);
    validate::check_links(&park, &mut problems);
    // ... and unique ids see every charger after expansion.
    let mut chargers = Vec::new();
    for (k, g) in groups.iter().enumerate() {
        for c in g.expand() {
            r.alias_spans(
                &format!("ev_charger[{k}]"),
                &format!("ev_charger[{}]", chargers.len()),
            );
            chargers.push(c);
        }
    }
    park.ev_chargers = chargers;
    validate::check_unique_ids(&park, &mut problems);
    for p in problems.0 {
        r.problem(p);
    }
    park
}

struct Head {
    id: String,
    name: String,
    name_zh: Option<String>,
    owner: Option<String>,
    location: Location,
    clock: ParkClock,
}

/// Reports a value that has the right type but is not acceptable, at the value.
fn reject(r: &mut Reader, t: &Table, key: &str, message: String, hint: &str) {
    let span = t.table.get(key).map(|v| v.span()).unwrap_or(t.span.clone());
    r.error(&span, message, hint.into());
    r.fail(format!("{}.{key}", t.path));
}

fn read_head(r: &mut Reader, root: &mut Table, required: bool) -> Head {
    let placeholder = Head {
        id: String::new(),
        name: String::new(),
        name_zh: None,
        owner: None,
        location: Location {
            latitude_deg: 0.0,
            longitude_deg: 0.0,
            altitude_m: 0.0,
        },
        clock: ParkClock::new(Tz::UTC, IntervalLength::Min15),
    };
    let Some(mut t) = r.table(
        root,
        "park",
        required,
        expect(
            "identity, location and clock of the park",
            "id, name, latitude_deg, longitude_deg, timezone",
        ),
    ) else {
        return placeholder;
    };
    let id = r.string(
        &mut t,
        "id",
        expect(
            "a short id of lowercase letters, digits and -",
            "\"qingzhou-pedf\"",
        ),
    );
    let name = r.string(
        &mut t,
        "name",
        expect("a display name", "\"Qingzhou PEDF park\""),
    );
    let name_zh = r.string_opt(
        &mut t,
        "name_zh",
        expect("a display name in Chinese", "\"青州光储直柔园区\""),
    );
    let owner = r.string_opt(
        &mut t,
        "owner",
        expect("the owner or operator", "\"Qingzhou Park Energy Co.\""),
    );
    let lat = r.number(
        &mut t,
        "latitude_deg",
        expect("a latitude in degrees north", "36.70"),
    );
    let lon = r.number(
        &mut t,
        "longitude_deg",
        expect("a longitude in degrees east", "118.47"),
    );
    let alt = r.number_or(
        &mut t,
        "altitude_m",
        0.0,
        expect("an altitude in metres", "60"),
    );
    let tz_name = r.string(
        &mut t,
        "timezone",
        expect("an IANA time zone", "\"Asia/Shanghai\""),
    );
    let minutes = r.integer_or(
        &mut t,
        "interval_minutes",
        15,
        expect("an interval length in minutes: 5, 15, 30 or 60", "15"),
    );

    let tz = tz_name.and_then(|name| {
        let tz = parse_time_zone(&name);
        if tz.is_none() {
            reject(r, &t, "timezone", format!("park.timezone: \"{name}\" is not an IANA time zone"),
                "use a name from the tz database, e.g. \"Asia/Shanghai\" (not \"CST\" or \"UTC+8\")");
        }
        tz
    });
    let interval = minutes.and_then(|m| {
        let i = IntervalLength::from_minutes(m);
        if i.is_none() {
            reject(
                r,
                &t,
                "interval_minutes",
                format!("park.interval_minutes: {m} is not a supported interval length"),
                "valid: 5, 15, 30, 60",
            );
        }
        i
    });
    if let Some(id) = &id {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            reject(
                r,
                &t,
                "id",
                format!("park.id: \"{id}\" is not a valid id"),
                "1-64 characters of a-z, 0-9 and -, e.g. \"qingzhou-pedf\"",
            );
        }
    }
    r.finish(t);
    Head {
        id: id.unwrap_or_default(),
        name: name.unwrap_or_default(),
        name_zh: name_zh.flatten(),
        owner: owner.flatten(),
        location: Location {
            latitude_deg: lat.unwrap_or(0.0),
            longitude_deg: lon.unwrap_or(0.0),
            altitude_m: alt.unwrap_or(0.0),
        },
        clock: ParkClock::new(tz.unwrap_or(Tz::UTC), interval.unwrap_or_default()),
    }
}

fn read_dc_bus(r: &mut Reader, root: &mut Table, required: bool) -> DcBus {
    let Some(mut t) = r.table(
        root,
        "dc_bus",
        required,
        expect("the DC bus", "nominal_voltage_v = 750"),
    ) else {
        return DcBus {
            nominal_voltage_v: 0.0,
        };
    };
    let v = r.number(
        &mut t,
        "nominal_voltage_v",
        expect("the nominal bus voltage in V", "750"),
    );
    r.finish(t);
    DcBus {
        nominal_voltage_v: v.unwrap_or(0.0),
    }
}

fn read_grid(r: &mut Reader, root: &mut Table, required: bool) -> GridConnection {
    let table = r.table(
        root,
        "grid",
        required,
        expect(
            "the grid connection",
            "import_limit_kw, export_limit_kw and the export rules",
        ),
    );
    let Some(mut t) = table else {
        return GridConnection {
            feeder_voltage_kv: 0.0,
            import_limit: Kw::ZERO,
            export_limit: Kw::ZERO,
            export_rules: ExportRules {
                allow_export: false,
                no_simultaneous_import_export: true,
                export_only_from_pv: true,
                reverse_flow_margin: Kw::ZERO,
            },
        };
    };
    let kv = r.number(
        &mut t,
        "feeder_voltage_kv",
        expect("the feeder voltage in kV", "10"),
    );
    let import = r.number(
        &mut t,
        "import_limit_kw",
        expect("the contracted import limit in kW", "1500"),
    );
    let export = r.number(
        &mut t,
        "export_limit_kw",
        expect("the export limit in kW", "1500"),
    );
    let allow = r.boolean_or(
        &mut t,
        "allow_export",
        true,
        expect("true or false", "true"),
    );
    let no_sim = r.boolean_or(
        &mut t,
        "no_simultaneous_import_export",
        true,
        expect("true or false", "true"),
    );
    let pv_only = r.boolean_or(
        &mut t,
        "export_only_from_pv",
        true,
        expect("true or false", "true"),
    );
    let margin = r.number_or(
        &mut t,
        "reverse_flow_margin_kw",
        0.0,
        expect(
            "the import in kW kept wherever export is forbidden, at least 0",
            "60",
        ),
    );
    r.finish(t);
    GridConnection {
        feeder_voltage_kv: kv.unwrap_or(0.0),
        import_limit: Kw(import.unwrap_or(0.0)),
        export_limit: Kw(export.unwrap_or(0.0)),
        export_rules: ExportRules {
            allow_export: allow.unwrap_or(false),
            no_simultaneous_import_export: no_sim.unwrap_or(true),
            export_only_from_pv: pv_only.unwrap_or(true),
            reverse_flow_margin: Kw(margin.unwrap_or(0.0)),
        },
    }
}

fn read_converter(r: &mut Reader, root: &mut Table, required: bool) -> GridConverter {
    let table = r.table(
        root,
        "converter",
        required,
        expect("the AC/DC grid converter", "rating_kw = 1500"),
    );
    let Some(mut t) = table else {
        return GridConverter {
            id: String::new(),
            rating: Kw::ZERO,
            efficiency_ac_to_dc: 1.0,
            efficiency_dc_to_ac: 1.0,
        };
    };
    let id = r.string(&mut t, "id", expect("an asset id", "\"pcs-grid\""));
    let rating = r.number(&mut t, "rating_kw", expect("the AC rating in kW", "1500"));
    let a2d = r.number(&mut t, "efficiency_ac_to_dc", expect(EFFICIENCY, "0.97"));
    let d2a = r.number(&mut t, "efficiency_dc_to_ac", expect(EFFICIENCY, "0.97"));
    r.finish(t);
    GridConverter {
        id: id.unwrap_or_default(),
        rating: Kw(rating.unwrap_or(0.0)),
        efficiency_ac_to_dc: a2d.unwrap_or(1.0),
        efficiency_dc_to_ac: d2a.unwrap_or(1.0),
    }
}

/// Reads every entry of an array of tables.
fn read_list<T>(
    r: &mut Reader,
    root: &mut Table,
    key: &'static str,
    what: &'static str,
    mut each: impl FnMut(&mut Reader, Table) -> T,
) -> Vec<T> {
    let tables = r.tables(root, key, expect(what, "fields"));
    tables.into_iter().map(|t| each(r, t)).collect()
}

fn read_pv(r: &mut Reader, mut t: Table) -> PvArray {
    let id = r.string(&mut t, "id", expect("an asset id", "\"pv-roof-a\""));
    let kwp = r.number(
        &mut t,
        "peak_power_kwp",
        expect("the nameplate DC power in kWp", "1200"),
    );
    let tilt = r.number(
        &mut t,
        "tilt_deg",
        expect("the tilt in degrees from horizontal", "20"),
    );
    let az = r.number(
        &mut t,
        "azimuth_deg",
        expect("the azimuth in degrees clockwise from north", "180"),
    );
    let losses = r.number_or(
        &mut t,
        "system_losses",
        0.14,
        expect("system losses, a fraction in [0, 1)", "0.14"),
    );
    let rating = r.number(
        &mut t,
        "converter_rating_kw",
        expect("the PV converter's output rating in kW", "1100"),
    );
    let eff = r.number_or(
        &mut t,
        "converter_efficiency",
        0.985,
        expect(EFFICIENCY, "0.985"),
    );
    let tc = r.number_or(
        &mut t,
        "temperature_coefficient_per_c",
        -0.0035,
        expect("a power temperature coefficient per degC", "-0.0035"),
    );
    r.finish(t);
    PvArray {
        id: id.unwrap_or_default(),
        peak_power: Kwp(kwp.unwrap_or(0.0)),
        tilt_deg: tilt.unwrap_or(0.0),
        azimuth_deg: az.unwrap_or(180.0),
        system_losses: losses.unwrap_or(0.0),
        converter_rating: Kw(rating.unwrap_or(0.0)),
        converter_efficiency: eff.unwrap_or(1.0),
        temperature_coefficient_per_c: tc.unwrap_or(0.0),
    }
}

fn read_battery(r: &mut Reader, mut t: Table) -> Battery {
    let id = r.string(&mut t, "id", expect("an asset id", "\"bess-1\""));
    let cap = r.number(
        &mut t,
        "capacity_kwh",
        expect("the usable capacity in kWh", "2000"),
    );
    let ch = r.number(
        &mut t,
        "max_charge_kw",
        expect("the largest charging power in kW", "1000"),
    );
    let dis = r.number(
        &mut t,
        "max_discharge_kw",
        expect("the largest discharging power in kW", "1000"),
    );
    let ce = r.number(&mut t, "charge_efficiency", expect(EFFICIENCY, "0.96"));
    let de = r.number(&mut t, "discharge_efficiency", expect(EFFICIENCY, "0.96"));
    let smin = r.number(
        &mut t,
        "soc_min",
        expect("the lowest SoC, a fraction of capacity", "0.10"),
    );
    let smax = r.number(
        &mut t,
        "soc_max",
        expect("the highest SoC, a fraction of capacity", "0.95"),
    );
    let init = r.number_or(
        &mut t,
        "initial_soc",
        0.5,
        expect("the SoC assumed without a measurement", "0.5"),
    );
    // The wear cost: given, or derived from the battery's economics (all three keys).
    const WEAR_KEYS: [&str; 3] = ["replacement_cost_cny_per_kwh", "cycle_life", "cycle_depth"];
    let given = t.table.get("degradation_cost_cny_per_kwh").is_some();
    let present: Vec<&str> = WEAR_KEYS
        .iter()
        .copied()
        .filter(|k| t.table.get(*k).is_some())
        .collect();
    let deg = r.number_or(
        &mut t,
        "degradation_cost_cny_per_kwh",
        0.0,
        expect("the wear cost per kWh discharged, CNY/kWh", "0.05"),
    );
    let mut wear = None;
    if !present.is_empty() {
        let price = r.number_or(
            &mut t,
            "replacement_cost_cny_per_kwh",
            f64::NAN,
            expect("the cost of replacing a kWh of capacity, CNY/kWh", "600"),
        );
        let cycles = r.number_or(
            &mut t,
            "cycle_life",
            f64::NAN,
            expect("full cycles to end of life at cycle_depth", "6000"),
        );
        let depth = r.number_or(
            &mut t,
            "cycle_depth",
            f64::NAN,
            expect(
                "the depth of discharge of the rated cycles, a fraction",
                "0.85",
            ),
        );
        let span = t.span.clone();
        if given {
            r.error(
                &span,
                format!(
                    "{}: both degradation_cost_cny_per_kwh and {} are given",
                    t.path,
                    present.join(", ")
                ),
                "give the wear cost per kWh discharged, or the battery's replacement_cost_cny_per_kwh, cycle_life and cycle_depth to derive it, not both".into(),
            );
        } else if present.len() < WEAR_KEYS.len() {
            let missing: Vec<&str> = WEAR_KEYS
                .iter()
                .copied()
                .filter(|k| !present.contains(k))
                .collect();
            r.error(
                &span,
                format!(
                    "{}: the wear cost is derived from replacement_cost_cny_per_kwh, cycle_life and cycle_depth; {} missing",
                    t.path,
                    missing.join(", ")
                ),
                "add the missing keys (e.g. replacement_cost_cny_per_kwh = 600, cycle_life = 6000, cycle_depth = 0.85), or give degradation_cost_cny_per_kwh instead".into(),
            );
        } else if let (Some(p), Some(c), Some(d)) = (price, cycles, depth) {
            wear = Some(BatteryWear {
                replacement_cost_cny_per_kwh: p,
                cycle_life: c,
                cycle_depth: d,
            });
        }
    }
    r.finish(t);
    Battery {
        id: id.unwrap_or_default(),
        capacity: Kwh(cap.unwrap_or(0.0)),
        max_charge: Kw(ch.unwrap_or(0.0)),
        max_discharge: Kw(dis.unwrap_or(0.0)),
        charge_efficiency: ce.unwrap_or(1.0),
        discharge_efficiency: de.unwrap_or(1.0),
        soc_min: smin.unwrap_or(0.0),
        soc_max: smax.unwrap_or(1.0),
        initial_soc: init.unwrap_or(0.5),
        degradation_cost: CnyPerKwh(
            wear.map_or(deg.unwrap_or(0.0), |w: BatteryWear| w.cost_per_kwh()),
        ),
        wear,
    }
}

fn read_fixed_load(r: &mut Reader, mut t: Table) -> FixedLoad {
    let id = r.string(&mut t, "id", expect("an asset id", "\"office\""));
    let base = r.number(
        &mut t,
        "base_kw",
        expect("the night-time base demand in kW", "180"),
    );
    let peak = r.number(
        &mut t,
        "peak_kw",
        expect("the daytime peak demand in kW", "420"),
    );
    r.finish(t);
    FixedLoad {
        id: id.unwrap_or_default(),
        base: Kw(base.unwrap_or(0.0)),
        peak: Kw(peak.unwrap_or(0.0)),
    }
}

fn time_of_day(
    r: &mut Reader,
    t: &mut Table,
    key: &'static str,
    example: &'static str,
) -> Option<TimeOfDay> {
    let s = r.string(t, key, expect("a local time \"HH:MM\"", example))?;
    let tod = TimeOfDay::parse(&s);
    if tod.is_none() {
        reject(
            r,
            t,
            key,
            format!("{}.{key}: \"{s}\" is not a time of day", t.path),
            "write \"HH:MM\" on the 24-hour clock, \"00:00\" to \"24:00\"",
        );
    }
    tod
}

fn read_flexible_load(r: &mut Reader, mut t: Table) -> FlexibleLoad {
    let id = r.string(&mut t, "id", expect("an asset id", "\"hvac\""));
    let kind = r.choice(
        &mut t,
        "kind",
        &["deferrable", "curtailable"],
        expect("how the load flexes", "\"deferrable\""),
    );
    let min = r.number_or(
        &mut t,
        "min_kw",
        0.0,
        expect("the lowest power while running, kW", "0"),
    );
    let max = r.number(&mut t, "max_kw", expect("the highest power, kW", "250"));
    let flexibility = match kind.as_deref() {
        Some("deferrable") => {
            let energy = r.number(
                &mut t,
                "energy_kwh",
                expect("the energy to deliver each day in the window, kWh", "900"),
            );
            let ws = time_of_day(r, &mut t, "window_start", "\"00:00\"");
            let we = time_of_day(r, &mut t, "window_end", "\"24:00\"");
            Flexibility::Deferrable {
                energy: Kwh(energy.unwrap_or(0.0)),
                window_start: ws.unwrap_or(TimeOfDay::MIDNIGHT),
                window_end: we.unwrap_or(TimeOfDay::END_OF_DAY),
            }
        }
        Some(_) => {
            let share = r.number(
                &mut t,
                "curtailable_share",
                expect("the fraction that may be shed, in [0, 1]", "0.3"),
            );
            let voll = r.number(
                &mut t,
                "value_of_lost_load_cny_per_kwh",
                expect("the cost of each kWh shed, CNY/kWh", "3.0"),
            );
            Flexibility::Curtailable {
                curtailable_share: share.unwrap_or(0.0),
                value_of_lost_load: CnyPerKwh(voll.unwrap_or(0.0)),
            }
        }
        None => {
            // Without a valid kind the kind's own keys cannot be checked; accept them quietly
            // and skip every check of this load's flexibility.
            t.allow(&[
                "energy_kwh",
                "window_start",
                "window_end",
                "curtailable_share",
                "value_of_lost_load_cny_per_kwh",
            ]);
            for k in [
                "energy_kwh",
                "window_start",
                "window_end",
                "curtailable_share",
                "value_of_lost_load_cny_per_kwh",
            ] {
                r.fail(format!("{}.{k}", t.path));
            }
            Flexibility::Curtailable {
                curtailable_share: 0.0,
                value_of_lost_load: CnyPerKwh(0.0),
            }
        }
    };
    r.finish(t);
    FlexibleLoad {
        id: id.unwrap_or_default(),
        min_power: Kw(min.unwrap_or(0.0)),
        max_power: Kw(max.unwrap_or(0.0)),
        flexibility,
    }
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

fn read_ev_group(r: &mut Reader, mut t: Table) -> ChargerGroup {
    let path = t.path.clone();
    let id = r.string(
        &mut t,
        "id",
        expect(
            "an asset id (with count > 1, the prefix of the ids)",
            "\"ev\"",
        ),
    );
    let count = r.integer_or(
        &mut t,
        "count",
        1,
        expect("how many identical chargers, 1 to 1000", "20"),
    );
    let coupling = r.choice_or(
        &mut t,
        "coupling",
        &["dc", "ac"],
        "dc",
        expect("\"dc\" or \"ac\"", "\"dc\""),
    );
    let min = r.number_or(
        &mut t,
        "min_kw",
        0.0,
        expect("the lowest regulated power, kW", "6"),
    );
    let max = r.number(
        &mut t,
        "max_kw",
        expect("the highest charging power, kW", "60"),
    );
    let v2g = r.boolean_or(&mut t, "v2g", false, expect("true or false", "false"));
    let session_kwh = r.number_or(
        &mut t,
        "session_kwh",
        0.0,
        expect(
            "the energy a session asks for when nobody says, kWh (0: no default)",
            "30",
        ),
    );
    let session_hours = r.number_or(
        &mut t,
        "session_hours",
        0.0,
        expect(
            "how long a car stays when nobody says, hours (0: no default)",
            "8",
        ),
    );
    let count = count.and_then(|n| {
        if (1..=1000).contains(&n) {
            Some(n as usize)
        } else {
            reject(
                r,
                &t,
                "count",
                format!("{path}.count: {n} chargers is out of range"),
                "between 1 and 1000; split very large car parks into several entries",
            );
            None
        }
    });
    r.finish(t);
    ChargerGroup {
        template: EvCharger {
            id: id.unwrap_or_default(),
            coupling: if coupling.as_deref() == Some("ac") {
                Coupling::Ac
            } else {
                Coupling::Dc
            },
            min_power: Kw(min.unwrap_or(0.0)),
            max_power: Kw(max.unwrap_or(0.0)),
            v2g: v2g.unwrap_or(false),
            session_kwh: session_kwh.unwrap_or(0.0),
            session_hours: session_hours.unwrap_or(0.0),
        },
        count: count.unwrap_or(1),
    }
}

fn read_meter(r: &mut Reader, mut t: Table) -> Meter {
    let id = r.string(&mut t, "id", expect("a meter id", "\"m-grid\""));
    let measures = r.string(
        &mut t,
        "measures",
        expect("\"grid\" or the id of the asset measured", "\"grid\""),
    );
    let class = r.string_opt(
        &mut t,
        "accuracy_class",
        expect("the accuracy class on the nameplate", "\"0.5S\""),
    );
    r.finish(t);
    let point = match measures.as_deref() {
        Some("grid") | None => MeterPoint::Grid,
        Some(other) => MeterPoint::Asset(other.to_string()),
    };
    Meter {
        id: id.unwrap_or_default(),
        point,
        accuracy_class: class.flatten(),
    }
}

fn read_tariff(r: &mut Reader, root: &mut Table, required: bool) -> Tariff {
    let mut tariff = Tariff {
        name: String::new(),
        source: String::new(),
        prices: BTreeMap::new(),
        seasons: Vec::new(),
        export_price: CnyPerKwh(0.0),
        demand: DemandCharge::default(),
    };
    let Some(mut t) = r.table(
        root,
        "tariff",
        required,
        expect(
            "the electricity tariff",
            "prices, seasons, export price and demand charge",
        ),
    ) else {
        return tariff;
    };
    let name = r.string(
        &mut t,
        "name",
        expect("a name", "\"Shandong C&I time-of-use\""),
    );
    let source = r.string(
        &mut t,
        "source",
        expect("where the figures come from", "\"supply contract 2026\""),
    );
    let export = r.number(
        &mut t,
        "export_price_cny_per_kwh",
        expect("the price paid for exported PV, CNY/kWh", "0.3949"),
    );
    let demand = r.number_or(
        &mut t,
        "demand_charge_cny_per_kw_month",
        0.0,
        expect("the demand charge, CNY per kW of monthly peak", "38"),
    );
    tariff.name = name.unwrap_or_default();
    tariff.source = source.unwrap_or_default();
    tariff.export_price = CnyPerKwh(export.unwrap_or(0.0));
    let basis = r.choice_or(
        &mut t,
        "demand_billing",
        &[
            "maximum_demand",
            "contracted_demand",
            "transformer_capacity",
        ],
        "maximum_demand",
        expect(
            "how the monthly basic charge is billed",
            "\"maximum_demand\"",
        ),
    );
    let basis = match basis.as_deref() {
        Some("contracted_demand") => {
            let kw = r.number(
                &mut t,
                "contracted_demand_kw",
                expect("the contracted maximum demand, kW", "1200"),
            );
            DemandBasis::ContractedDemand {
                contracted_kw: kw.unwrap_or(0.0),
            }
        }
        Some("transformer_capacity") => {
            let kva = r.number(
                &mut t,
                "transformer_capacity_kva",
                expect("the installed transformer capacity, kVA", "2000"),
            );
            DemandBasis::TransformerCapacity {
                kva: kva.unwrap_or(0.0),
            }
        }
        _ => DemandBasis::MaximumDemand,
    };
    let window = r.integer_or(
        &mut t,
        "demand_window_minutes",
        15,
        expect("the demand meter's averaging window, minutes", "15"),
    );
    let target = r.number_or(
        &mut t,
        "demand_target_kw",
        0.0,
        expect(
            "a monthly peak the plan may reach without paying for it, kW",
            "900",
        ),
    );
    tariff.demand = DemandCharge {
        basis,
        rate: CnyPerKwMonth(demand.unwrap_or(0.0)),
        window_minutes: window.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
        monthly_target_kw: target.unwrap_or(0.0),
    };

    if let Some(mut pt) = r.table(
        &mut t,
        "prices_cny_per_kwh",
        true,
        expect("the import price of each period kind", "peak = 1.05"),
    ) {
        for kind in PeriodKind::ALL {
            if pt.table.get(kind.key()).is_some() {
                if let Some(v) = r.number(&mut pt, kind.key(), expect("a price in CNY/kWh", "0.65"))
                {
                    tariff.prices.insert(kind, CnyPerKwh(v));
                }
            } else {
                // Still a valid key, so a typo of it gets a suggestion.
                pt.allow(&[kind.key()]);
            }
        }
        r.finish(pt);
    }

    let kinds: Vec<&str> = PeriodKind::ALL.iter().map(|k| k.key()).collect();
    for mut st in r.tables(
        &mut t,
        "season",
        expect("a seasonal schedule", "name, months, periods"),
    ) {
        let spath = st.path.clone();
        let name = r.string(&mut st, "name", expect("a season name", "\"summer\""));
        let months = r.array(
            &mut st,
            "months",
            expect("a list of months 1-12", "[6, 7, 8]"),
            |r, path, v| {
                // An unreadable month keeps its place (so later indices match the file) as an
                // impossible month whose own checks are skipped.
                match r.as_integer(
                    &path,
                    "months",
                    v,
                    &expect("a month number 1-12", "[6, 7, 8]"),
                ) {
                    Some(m) => Some(u32::try_from(m).unwrap_or(u32::MAX)),
                    None => {
                        r.fail(path);
                        Some(u32::MAX)
                    }
                }
            },
        );
        let windows = r.array(
            &mut st,
            "periods",
            expect(
                "a list of periods",
                "[{ start = \"00:00\", end = \"07:00\", kind = \"valley\" }]",
            ),
            |r, path, v| {
                let DeValue::Table(inner) = v.get_ref() else {
                    r.error(
                        &v.span(),
                        format!(
                            "{path}: expected a period table, found {}",
                            describe(v.get_ref())
                        ),
                        "write { start = \"HH:MM\", end = \"HH:MM\", kind = \"valley\" }".into(),
                    );
                    // Keep its place so later indices match the file; its checks are skipped.
                    r.fail(path);
                    return Some(TouWindow {
                        start: TimeOfDay::MIDNIGHT,
                        end: TimeOfDay::END_OF_DAY,
                        kind: PeriodKind::Flat,
                    });
                };
                let mut wt = Table::new(path, v.span(), inner);
                let start = time_of_day(r, &mut wt, "start", "\"07:00\"");
                let end = time_of_day(r, &mut wt, "end", "\"10:00\"");
                let kind = r.choice(&mut wt, "kind", &kinds, expect("a period kind", "\"flat\""));
                r.finish(wt);
                // A window with a bad kind still counts for coverage of the day; its price
                // check is skipped because the kind is recorded as unreadable.
                Some(TouWindow {
                    start: start.unwrap_or(TimeOfDay::MIDNIGHT),
                    end: end.unwrap_or(TimeOfDay::END_OF_DAY),
                    kind: kind
                        .and_then(|k| PeriodKind::from_key(&k))
                        .unwrap_or(PeriodKind::Flat),
                })
            },
        );
        r.finish(st);
        if months.is_none() || windows.is_none() {
            r.fail(spath);
        }
        tariff.seasons.push(TouSeason {
            name: name.unwrap_or_default(),
            months: months.unwrap_or_default(),
            windows: windows.unwrap_or_default(),
        });
    }
    r.finish(t);
    tariff
}

fn read_carbon(r: &mut Reader, root: &mut Table, required: bool) -> CarbonSettings {
    let mut c = CarbonSettings {
        grid_factor: GridFactor {
            value: KgCo2PerKwh(0.0),
            region: String::new(),
            variant: String::new(),
            data_year: 2023,
            source: String::new(),
            status: SourceStatus::Unverified,
        },
        carbon_price_cny_per_t: 0.0,
        control: CarbonControl::default(),
        baseline: None,
    };
    let Some(mut t) = r.table(
        root,
        "carbon",
        required,
        expect(
            "the grid emission factor and its source",
            "grid_factor_kg_per_kwh = 0.6361",
        ),
    ) else {
        return c;
    };
    let value = r.number(
        &mut t,
        "grid_factor_kg_per_kwh",
        expect("an emission factor in kg CO2/kWh", "0.6361"),
    );
    let region = r.string(
        &mut t,
        "grid_region",
        expect("the grid region", "\"north-china\""),
    );
    let variant = r.string(
        &mut t,
        "factor_variant",
        expect("the factor variant", "\"regional-average\""),
    );
    let year = r.integer(
        &mut t,
        "factor_data_year",
        expect("the year the factor describes", "2023"),
    );
    let source = r.string(
        &mut t,
        "factor_source",
        expect(
            "the publisher and document",
            "\"MEE/NBS 2023 electricity CO2 emission factors\"",
        ),
    );
    let status = r.choice(
        &mut t,
        "factor_status",
        &["confirmed", "secondary", "unverified"],
        expect("how the factor was checked", "\"confirmed\""),
    );
    let price = r.number_or(
        &mut t,
        "carbon_price_cny_per_t",
        0.0,
        expect("an internal carbon price, CNY per t CO2", "80"),
    );
    if let Some(mut ct) = r.table(
        &mut t,
        "control",
        false,
        expect(
            "limits on the park's Scope 2 the planner keeps",
            "no_more_than_without_ems = true",
        ),
    ) {
        let never_more = r.boolean_or(
            &mut ct,
            "no_more_than_without_ems",
            false,
            expect(
                "whether plans may emit more Scope 2 than running without the EMS",
                "true",
            ),
        );
        let optional = |r: &mut Reader,
                        ct: &mut Table,
                        key: &'static str,
                        e: crate::config::reader::Expect| {
            if ct.table.get(key).is_some() {
                r.number(ct, key, e)
            } else {
                ct.allow(&[key]);
                None
            }
        };
        let budget = optional(
            r,
            &mut ct,
            "monthly_budget_t",
            expect("a Scope 2 budget per month, t CO2", "180"),
        );
        let annual = optional(
            r,
            &mut ct,
            "annual_budget_t",
            expect("a Scope 2 budget per calendar year, t CO2", "2100"),
        );
        let intensity = optional(
            r,
            &mut ct,
            "intensity_kg_per_kwh",
            expect(
                "a Scope 2 intensity target, kg CO2 per kWh consumed on site",
                "0.40",
            ),
        );
        r.finish(ct);
        c.control = CarbonControl {
            no_more_than_without_ems: never_more.unwrap_or(false),
            monthly_budget_t: budget,
            annual_budget_t: annual,
            intensity_kg_per_kwh: intensity,
        };
    }
    if let Some(mut bt) = r.table(
        &mut t,
        "baseline",
        false,
        expect(
            "a project-specific baseline factor for avoided emissions and its source",
            "factor_kg_per_kwh = 0.8784",
        ),
    ) {
        let value = r.number(
            &mut bt,
            "factor_kg_per_kwh",
            expect("the baseline factor in kg CO2/kWh (= t/MWh)", "0.8784"),
        );
        let variant = r.string(
            &mut bt,
            "variant",
            expect("what the figure is", "\"combined-margin\""),
        );
        let source = r.string(
            &mut bt,
            "source",
            expect(
                "the document the factor comes from and where in it",
                "\"PDD of the project, section B.6.3, EF_grid,CM,y\"",
            ),
        );
        let status = r.choice(
            &mut bt,
            "status",
            &["confirmed", "secondary", "unverified"],
            expect("how the factor was checked", "\"confirmed\""),
        );
        r.finish(bt);
        c.baseline = Some(BaselineFactor {
            value: KgCo2PerKwh(value.unwrap_or(0.0)),
            variant: variant.unwrap_or_default(),
            source: source.unwrap_or_default(),
            status: status
                .and_then(|s| SourceStatus::from_key(&s))
                .unwrap_or(SourceStatus::Unverified),
        });
    }
    r.finish(t);
    c.grid_factor = GridFactor {
        value: KgCo2PerKwh(value.unwrap_or(0.0)),
        region: region.unwrap_or_default(),
        variant: variant.unwrap_or_default(),
        data_year: year
            .map(|y| i32::try_from(y).unwrap_or(i32::MAX))
            .unwrap_or(2023),
        source: source.unwrap_or_default(),
        status: status
            .and_then(|s| SourceStatus::from_key(&s))
            .unwrap_or(SourceStatus::Confirmed),
    };
    c.carbon_price_cny_per_t = price.unwrap_or(0.0);
    c
}
