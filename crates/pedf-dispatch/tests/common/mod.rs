//! Small parks and inputs for dispatch tests, built from text so each case reads like a park file.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use pedf_core::inputs::{DayInputs, EvSession};
use pedf_core::Park;

/// Knobs of a test park (60-minute intervals, lossless unless set).
pub struct Spec {
    pub pv_kwp: f64,
    pub battery_kwh: f64,
    pub battery_kw: f64,
    pub charge_kw: Option<f64>,
    pub eff: f64,
    pub conv_eff: f64,
    pub soc_min: f64,
    pub soc_max: f64,
    pub initial_soc: f64,
    pub degradation: f64,
    pub import_limit: f64,
    pub export_limit: f64,
    pub allow_export: bool,
    pub no_simultaneous: bool,
    pub pv_only: bool,
    pub demand_charge: f64,
    pub carbon_price: f64,
    pub ev: Option<(usize, f64, f64)>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            pv_kwp: 0.0,
            battery_kwh: 0.0,
            battery_kw: 0.0,
            charge_kw: None,
            eff: 1.0,
            conv_eff: 1.0,
            soc_min: 0.0,
            soc_max: 1.0,
            initial_soc: 0.0,
            degradation: 0.0,
            import_limit: 1000.0,
            export_limit: 1000.0,
            allow_export: true,
            no_simultaneous: true,
            pv_only: true,
            demand_charge: 0.0,
            carbon_price: 0.0,
            ev: None,
        }
    }
}

pub fn park(s: &Spec) -> Park {
    let mut text = format!(
        r#"
[park]
id = "t"
name = "test"
latitude_deg = 36.7
longitude_deg = 118.47
timezone = "Asia/Shanghai"
interval_minutes = 60
[dc_bus]
nominal_voltage_v = 750
[grid]
feeder_voltage_kv = 10
import_limit_kw = {imp}
export_limit_kw = {exp}
allow_export = {allow}
no_simultaneous_import_export = {nosim}
export_only_from_pv = {pvonly}
[converter]
id = "pcs"
rating_kw = 1000
efficiency_ac_to_dc = {ce}
efficiency_dc_to_ac = {ce}
[[fixed_load]]
id = "load"
base_kw = 0
peak_kw = 1000
[tariff]
name = "t"
source = "test"
export_price_cny_per_kwh = 0
demand_charge_cny_per_kw_month = {dc}
[tariff.prices_cny_per_kwh]
flat = 0.5
[[tariff.season]]
name = "all"
months = [1,2,3,4,5,6,7,8,9,10,11,12]
periods = [{{ start = "00:00", end = "24:00", kind = "flat" }}]
[carbon]
grid_factor_kg_per_kwh = 0.5
grid_region = "north-china"
factor_variant = "regional-average"
factor_data_year = 2023
factor_source = "test"
factor_status = "confirmed"
carbon_price_cny_per_t = {cp}
"#,
        imp = s.import_limit,
        exp = s.export_limit,
        allow = s.allow_export,
        nosim = s.no_simultaneous,
        pvonly = s.pv_only,
        ce = s.conv_eff,
        dc = s.demand_charge,
        cp = s.carbon_price,
    );
    if s.pv_kwp > 0.0 {
        text += &format!(
            "[[pv]]\nid = \"pv\"\npeak_power_kwp = {}\ntilt_deg = 20\nazimuth_deg = 180\nconverter_rating_kw = {}\n",
            s.pv_kwp, s.pv_kwp
        );
    }
    if s.battery_kwh > 0.0 {
        text += &format!(
            "[[battery]]\nid = \"b\"\ncapacity_kwh = {}\nmax_charge_kw = {}\nmax_discharge_kw = {}\ncharge_efficiency = {}\ndischarge_efficiency = {}\nsoc_min = {}\nsoc_max = {}\ninitial_soc = {}\ndegradation_cost_cny_per_kwh = {}\n",
            s.battery_kwh,
            s.charge_kw.unwrap_or(s.battery_kw),
            s.battery_kw,
            s.eff,
            s.eff,
            s.soc_min,
            s.soc_max,
            s.initial_soc,
            s.degradation
        );
    }
    if let Some((count, min, max)) = s.ev {
        text += &format!(
            "[[ev_charger]]\nid = \"ev\"\ncount = {count}\nmin_kw = {min}\nmax_kw = {max}\n"
        );
    }
    let loaded = pedf_core::config::load_park("test.toml", text.as_bytes());
    let msgs: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    loaded
        .value
        .unwrap_or_else(|| panic!("test park invalid:\n{}", msgs.join("\n")))
}

/// Inputs over the first `n` hours of 2026-06-21.
pub struct Day {
    pub pv: Vec<f64>,
    pub load: Vec<f64>,
    pub import_price: Vec<f64>,
    pub export_price: Vec<f64>,
    pub ci: Vec<f64>,
    /// (charger index from 0, first interval, end interval, kWh)
    pub sessions: Vec<(usize, usize, usize, f64)>,
}

pub fn inputs(park: &Park, d: &Day) -> DayInputs {
    let n = d.load.len();
    let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let starts: Vec<_> = park.clock.intervals_of_local_day(day)[..n].to_vec();
    let step = park.clock.interval.duration();
    let mut pv_kw = BTreeMap::new();
    if !park.pv.is_empty() {
        pv_kw.insert("pv".to_string(), d.pv.clone());
    }
    let mut load_kw = BTreeMap::new();
    load_kw.insert("load".to_string(), d.load.clone());
    let sessions = d
        .sessions
        .iter()
        .enumerate()
        .map(|(k, &(c, first, end, kwh))| EvSession {
            id: format!("s{k}"),
            charger: park.ev_chargers[c].id.clone(),
            arrival: starts[first],
            departure: starts[first] + step * (end - first) as i32,
            energy_kwh: kwh,
            first,
            end,
        })
        .collect();
    DayInputs {
        starts,
        pv_kw,
        load_kw,
        sessions,
        carbon_intensity: if d.ci.is_empty() {
            vec![0.5; n]
        } else {
            d.ci.clone()
        },
        carbon_source: "test".into(),
        import_price: d.import_price.clone(),
        export_price: if d.export_price.is_empty() {
            vec![0.0; n]
        } else {
            d.export_price.clone()
        },
        price_source: "test".into(),
        notes: Vec::new(),
    }
}

/// A charging hub of `n` chargers: the reference park (config/qingzhou-pedf.toml) with its
/// grid connection, PV, battery, loads and their day of 21 June 2026 scaled by n / 20 (its
/// own 20 chargers), and 1.5 EV sessions per charger drawn from a fixed seed (arrivals 06:00
/// to 20:00, stays of 1 to 8 hours, 5 to 30 kWh each within what the stay allows at half the
/// charger's 60 kW). The shape of the outside checks of issue 26.
pub fn charging_hub(n: usize) -> (Park, DayInputs) {
    charging_hub_seeded(n, 0)
}

/// `charging_hub` with its sessions drawn from seed `seed` (0 is `charging_hub`'s).
pub fn charging_hub_seeded(n: usize, seed: u64) -> (Park, DayInputs) {
    // The workspace's root: two up from this crate, or the root package's own (an example).
    let root = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        env!("CARGO_MANIFEST_DIR"),
    ]
    .into_iter()
    .find(|r| {
        std::path::Path::new(r)
            .join("config/qingzhou-pedf.toml")
            .exists()
    })
    .expect("the workspace's config/qingzhou-pedf.toml");
    let k = n as f64 / 20.0;
    let scaled = [
        "import_limit_kw",
        "export_limit_kw",
        "rating_kw",
        "peak_power_kwp",
        "converter_rating_kw",
        "capacity_kwh",
        "max_charge_kw",
        "max_discharge_kw",
        "base_kw",
        "peak_kw",
        "max_kw",
        "energy_kwh",
    ];
    let text = std::fs::read_to_string(format!("{root}/config/qingzhou-pedf.toml")).unwrap();
    let mut park_text = String::new();
    let mut in_chargers = false;
    // A park file's charger entry holds at most 1000: more go into copies of the entry.
    let mut charger_entry = String::new();
    for line in text.lines() {
        if in_chargers && !line.starts_with('[') && !line.starts_with('#') {
            charger_entry.push_str(line);
            charger_entry.push('\n');
        }
        if line.starts_with('[') {
            in_chargers = line.contains("ev_charger");
        }
        let (key, value) = line.split_once('=').unwrap_or(("", ""));
        let key = key.trim();
        let value: Option<f64> = value.split('#').next().and_then(|v| v.trim().parse().ok());
        match value {
            // A charger's own power stays; every other size is the park's, scaled.
            Some(v) if scaled.contains(&key) && !in_chargers && !line.starts_with('#') => {
                park_text.push_str(&format!("{key} = {}\n", v * k))
            }
            _ if key == "count" && in_chargers => {
                park_text.push_str(&format!("count = {}\n", n.min(1000)))
            }
            _ => {
                park_text.push_str(line);
                park_text.push('\n');
            }
        }
    }
    for (i, first) in (1000..n).step_by(1000).enumerate() {
        park_text.push_str("[[ev_charger]]\n");
        for line in charger_entry.lines() {
            match line.split_once('=').map(|(k, _)| k.trim()) {
                Some("id") => park_text.push_str(&format!("id = \"ev{}\"\n", i + 2)),
                Some("count") => {
                    park_text.push_str(&format!("count = {}\n", (n - first).min(1000)))
                }
                _ => {
                    park_text.push_str(line);
                    park_text.push('\n');
                }
            }
        }
    }
    let park = pedf_core::config::load_park("hub.toml", park_text.as_bytes())
        .value
        .expect("the scaled park is valid");
    let read = |f: &str| {
        std::fs::read(format!("{root}/simulations/qingzhou-pedf/day-inputs/{f}")).unwrap()
    };
    let (pv, loads, ci) = (
        read("pv.csv"),
        read("loads.csv"),
        read("carbon-intensity.csv"),
    );
    let day = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let horizon = park.clock.intervals_of_local_day(day);
    let file = |name, bytes| pedf_core::inputs::InputFile { name, bytes };
    let mut inputs = pedf_core::inputs::load_inputs(
        &park,
        &horizon,
        pedf_core::inputs::DayFiles {
            pv: file("pv.csv", &pv),
            loads: file("loads.csv", &loads),
            sessions: None,
            carbon: Some(file("carbon-intensity.csv", &ci)),
            prices: None,
        },
    )
    .expect("the reference inputs are valid");
    for v in inputs.pv_kw.values_mut().chain(inputs.load_kw.values_mut()) {
        v.iter_mut().for_each(|x| *x *= k);
    }
    // xorshift64 from a non-zero state.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    if seed == 0 {
        seed = 1;
    }
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut free_from = vec![0usize; n];
    while inputs.sessions.len() < n * 3 / 2 {
        let first = 24 + (rand() * 56.0) as usize;
        let len = 4 + (rand() * 28.0) as usize;
        let end = (first + len).min(96);
        let Some(c) = (0..n).find(|&c| free_from[c] <= first) else {
            continue;
        };
        free_from[c] = end;
        let hours = (end - first) as f64 / 4.0;
        inputs.sessions.push(EvSession {
            id: format!("s{}", inputs.sessions.len()),
            charger: park.ev_chargers[c].id.clone(),
            arrival: inputs.starts[first],
            departure: inputs.starts[end - 1] + park.clock.interval.duration(),
            energy_kwh: (5.0 + rand() * 25.0).min(0.5 * 60.0 * hours),
            first,
            end,
        });
    }
    (park, inputs)
}
