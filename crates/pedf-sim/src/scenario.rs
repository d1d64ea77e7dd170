//! Scenario folders (`simulations/NAME/scenario.toml`): what the simulator needs beyond the
//! park file: the climate that drives the seeded weather, load profiles, EV statistics, the
//! grid's hourly carbon shape, forecast errors and the optimised strategy's settings.
//!
//! Everything is checked before a simulation starts; every problem is a located diagnostic
//! (file:line:column, what is wrong, what would be valid) and none stops the check early, so a
//! half-run simulation never happens because of bad input.

use pedf_core::grid_request::{read_entries, GridRequest, RequestEntry};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pedf_core::assets::Flexibility;
use pedf_core::config::{Diagnostic, Severity, SourceMap};
use pedf_core::csvtext;
use pedf_core::Park;
use serde::Deserialize;
use toml::Spanned;

/// One calendar month's climate (drives the weather generator and the HVAC demand).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonthClimate {
    /// Mean monthly sunshine hours.
    pub sunshine_h: f64,
    /// Mean daily maximum and minimum air temperature, °C.
    pub high_c: f64,
    /// Mean daily minimum air temperature, °C.
    pub low_c: f64,
    /// HVAC demand relative to the profile (1 = the profile as given).
    pub hvac_factor: f64,
}

/// A group of EV users (commuters, visitors, overnight), each drawn per day.
#[derive(Debug, Clone, PartialEq)]
pub struct EvGroup {
    /// The group's name.
    pub name: String,
    /// Mean sessions per weekday and per weekend day (Poisson).
    pub weekday_per_day: f64,
    /// Mean sessions per weekend day.
    pub weekend_per_day: f64,
    /// Uniform ranges: arrival hour (local), dwell hours, energy wanted kWh.
    pub arrival_h: (f64, f64),
    /// Dwell, hours (uniform range).
    pub dwell_h: (f64, f64),
    /// Energy wanted, kWh (uniform range).
    pub energy_kwh: (f64, f64),
}

/// Load profiles: per load id, 24 hourly means (kW) for weekdays and for weekends.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfiles {
    /// Weekday profiles by load id.
    pub weekday: BTreeMap<String, [f64; 24]>,
    /// Weekend profiles by load id.
    pub weekend: BTreeMap<String, [f64; 24]>,
}

/// Settings of the optimised strategy in a backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizedSettings {
    /// Relative MIP gap the optimiser stops at.
    pub mip_gap: f64,
    /// Time limit of a day-ahead plan, s.
    pub day_ahead_time_limit_s: f64,
    /// How often the optimised strategy re-plans, minutes.
    pub replan_every_min: u32,
    /// Time limit of a re-plan, s.
    pub replan_time_limit_s: f64,
    /// Branch-and-bound node limits: the reproducible stop (the time limits are a safety net
    /// whose hits the report counts, since a time-limited solve may end elsewhere next run).
    pub day_ahead_max_nodes: u32,
    /// Branch-and-bound node limit of a re-plan.
    pub replan_max_nodes: u32,
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario file.
    pub file: PathBuf,
    /// The scenario's name.
    pub name: String,
    /// The park file it runs.
    pub park_file: PathBuf,
    /// The park.
    pub park: Park,
    /// The first day simulated.
    pub start: NaiveDate,
    /// The seed of weather, loads and cars.
    pub seed: u64,
    /// Monthly climate normals, January first.
    pub climate: [MonthClimate; 12],
    /// The loads' hourly profiles.
    pub profiles: LoadProfiles,
    /// Relative AR(1) noise of the actual loads around their profile.
    pub load_noise_sd: f64,
    /// Lag-1 correlation of the load noise.
    pub load_noise_correlation: f64,
    /// The EV user groups.
    pub ev_groups: Vec<EvGroup>,
    /// Multipliers of the park's annual grid factor per local hour (planning signal only).
    pub carbon_hourly_shape: [f64; 24],
    /// Day-ahead forecast errors: cloud (clear-sky index) and load (relative), standard deviations.
    pub cloud_error_sd: f64,
    /// Standard deviation of the relative load forecast error.
    pub load_error_sd: f64,
    /// Settings of the optimised strategy.
    pub optimized: OptimizedSettings,
    /// Grid requests in the period (`[[grid_request]]`): held by the EMS's strategies and
    /// measured against the simulated park's own baseline.
    pub grid_requests: Vec<GridRequest>,
    /// How the requests' baselines are made (`[baseline]`: `days`, `look_back_days`; the run
    /// file's rule, the defaults without one).
    pub baseline: pedf_core::grid_request::BaselineRule,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    scenario: Head,
    loads: Loads,
    #[serde(default)]
    ev: EvFile,
    grid_carbon: GridCarbon,
    forecast: ForecastFile,
    optimized: OptimizedFile,
    /// Grid requests the park is asked to hold in the period (demand response).
    #[serde(default)]
    grid_request: Vec<RequestEntry>,
    /// How the requests' baselines are made.
    #[serde(default)]
    baseline: Option<Spanned<pedf_core::grid_request::BaselineRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    name: String,
    park: Spanned<String>,
    start: Spanned<String>,
    seed: u64,
    climate: Spanned<String>,
    load_profiles: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Loads {
    noise_sd: Spanned<f64>,
    noise_correlation: Spanned<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EvFile {
    #[serde(default)]
    group: Vec<GroupFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    weekday_per_day: Spanned<f64>,
    weekend_per_day: Spanned<f64>,
    arrival_h: Spanned<[f64; 2]>,
    dwell_h: Spanned<[f64; 2]>,
    energy_kwh: Spanned<[f64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridCarbon {
    hourly_shape: Spanned<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastFile {
    cloud_error_sd: Spanned<f64>,
    load_error_sd: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizedFile {
    mip_gap: Spanned<f64>,
    day_ahead_time_limit_s: Spanned<f64>,
    replan_every_min: Spanned<u32>,
    replan_time_limit_s: Spanned<f64>,
    day_ahead_max_nodes: u32,
    replan_max_nodes: u32,
}

struct Diags<'a> {
    file: &'a str,
    map: SourceMap<'a>,
    out: Vec<Diagnostic>,
}

impl Diags<'_> {
    fn error(&mut self, span: Range<usize>, message: String, hint: &str) {
        let (line, column) = self.map.locate_span(&span);
        self.out.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_string(),
            line,
            column,
            message,
            hint: Some(hint.to_string()),
        });
    }
    fn range(&mut self, v: &Spanned<f64>, key: &str, lo: f64, hi: f64, hint: &str) -> f64 {
        let x = *v.get_ref();
        if !(x.is_finite() && x >= lo && x <= hi) {
            self.error(v.span(), format!("{key}: {x} is outside {lo}..{hi}"), hint);
        }
        x
    }
}

/// Reads a file of grid requests (`[[grid_request]]` tables: id, kind, kw, start, end,
/// price_cny_per_kwh) for `park`; every mistake located.
pub fn load_requests(path: &Path, park: &Park) -> Result<Vec<GridRequest>, Vec<Diagnostic>> {
    pedf_core::grid_request::load_file(path, &park.clock, &format!("file {}", path.display()))
}

fn whole_file(name: &str, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: name.to_string(),
        line: 1,
        column: 1,
        message,
        hint: Some(hint.to_string()),
    }
}

/// Whether a file looks like a scenario file (for `pedf check`).
pub fn is_scenario_text(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[scenario]")
}

impl Scenario {
    /// Reads and checks a scenario: `path` is a scenario folder or its `scenario.toml`.
    pub fn load(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
        let file = if path.is_dir() {
            path.join("scenario.toml")
        } else {
            path.to_path_buf()
        };
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| {
            vec![whole_file(
                &name,
                format!("cannot read: {e}"),
                "give a scenario folder with a scenario.toml, e.g. simulations/qingzhou-pedf",
            )]
        })?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut d = Diags {
            file: &name,
            map: SourceMap::new(&text),
            out: Vec::new(),
        };
        let f: File = match toml::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                d.error(
                    e.span().unwrap_or(0..0),
                    e.message().trim().to_string(),
                    "see simulations/qingzhou-pedf/scenario.toml for every key",
                );
                return Err(d.out);
            }
        };
        let start = match NaiveDate::parse_from_str(f.scenario.start.get_ref(), "%Y-%m-%d") {
            Ok(s) => Some(s),
            Err(_) => {
                d.error(
                    f.scenario.start.span(),
                    format!("start: `{}` is not a date", f.scenario.start.get_ref()),
                    "a local date YYYY-MM-DD, e.g. 2026-01-01",
                );
                None
            }
        };
        let load_noise_sd = d.range(
            &f.loads.noise_sd,
            "loads.noise_sd",
            0.0,
            0.5,
            "a relative standard deviation, e.g. 0.04",
        );
        let load_noise_correlation = d.range(
            &f.loads.noise_correlation,
            "loads.noise_correlation",
            0.0,
            0.999,
            "AR(1) correlation from one interval to the next, 0..0.999",
        );
        let cloud_error_sd = d.range(
            &f.forecast.cloud_error_sd,
            "forecast.cloud_error_sd",
            0.0,
            1.0,
            "standard deviation of the day-ahead clear-sky index error, e.g. 0.15",
        );
        let load_error_sd = d.range(
            &f.forecast.load_error_sd,
            "forecast.load_error_sd",
            0.0,
            0.5,
            "relative standard deviation of the day-ahead load error, e.g. 0.05",
        );
        let o = &f.optimized;
        let optimized = OptimizedSettings {
            day_ahead_max_nodes: o.day_ahead_max_nodes,
            replan_max_nodes: o.replan_max_nodes,
            mip_gap: d.range(
                &o.mip_gap,
                "optimized.mip_gap",
                0.0,
                0.5,
                "a relative MIP gap, e.g. 1e-4",
            ),
            day_ahead_time_limit_s: d.range(
                &o.day_ahead_time_limit_s,
                "optimized.day_ahead_time_limit_s",
                0.001,
                3600.0,
                "seconds, e.g. 5",
            ),
            replan_every_min: *o.replan_every_min.get_ref(),
            replan_time_limit_s: d.range(
                &o.replan_time_limit_s,
                "optimized.replan_time_limit_s",
                0.001,
                3600.0,
                "seconds, e.g. 1",
            ),
        };
        let every = optimized.replan_every_min;
        if every == 0 || every > 1440 || 1440 % every != 0 {
            d.error(
                o.replan_every_min.span(),
                format!("optimized.replan_every_min: {every} does not divide a day"),
                "minutes that divide 1440 and are a multiple of the park's interval, e.g. 60",
            );
        }
        let shape = f.grid_carbon.hourly_shape.get_ref();
        let mut carbon_hourly_shape = [1.0; 24];
        if shape.len() != 24
            || shape
                .iter()
                .any(|x| !(x.is_finite() && *x >= 0.0 && *x <= 5.0))
        {
            d.error(
                f.grid_carbon.hourly_shape.span(),
                format!(
                    "grid_carbon.hourly_shape: {} values; 24 multipliers in 0..5 are needed",
                    shape.len()
                ),
                "one multiplier of the park's annual factor per local hour 0..23",
            );
        } else {
            carbon_hourly_shape.copy_from_slice(shape);
        }
        let mut ev_groups = Vec::new();
        for (i, g) in f.ev.group.iter().enumerate() {
            let key = |k: &str| format!("ev.group[{i}].{k}");
            let wd = d.range(
                &g.weekday_per_day,
                &key("weekday_per_day"),
                0.0,
                1000.0,
                "mean sessions per weekday",
            );
            let we = d.range(
                &g.weekend_per_day,
                &key("weekend_per_day"),
                0.0,
                1000.0,
                "mean sessions per weekend day",
            );
            let mut pair = |v: &Spanned<[f64; 2]>, k: &str, lo: f64, hi: f64, hint: &str| {
                let [a, b] = *v.get_ref();
                if !(a.is_finite() && b.is_finite() && lo <= a && a <= b && b <= hi) {
                    d.error(
                        v.span(),
                        format!(
                            "{}: [{a}, {b}] is not a range within {lo}..{hi} (from <= to)",
                            key(k)
                        ),
                        hint,
                    );
                }
                (a, b)
            };
            let arrival_h = pair(
                &g.arrival_h,
                "arrival_h",
                0.0,
                24.0,
                "local hours [from, to], e.g. [8, 10]",
            );
            let dwell_h = pair(&g.dwell_h, "dwell_h", 0.25, 48.0, "hours parked [from, to]; a session that leaves before it arrives is impossible, e.g. [7.5, 10]");
            let energy_kwh = pair(
                &g.energy_kwh,
                "energy_kwh",
                0.0,
                500.0,
                "kWh wanted [from, to], never negative, e.g. [15, 45]",
            );
            ev_groups.push(EvGroup {
                name: g.name.clone(),
                weekday_per_day: wd,
                weekend_per_day: we,
                arrival_h,
                dwell_h,
                energy_kwh,
            });
        }
        // The park file.
        let park_file = dir.join(f.scenario.park.get_ref());
        let park = match std::fs::read(&park_file) {
            Ok(bytes) => {
                let loaded = pedf_core::config::load_park(&park_file.display().to_string(), &bytes);
                d.out.extend(
                    loaded
                        .diagnostics
                        .iter()
                        .filter(|x| x.severity == Severity::Error)
                        .cloned(),
                );
                loaded.value
            }
            Err(e) => {
                d.error(
                    f.scenario.park.span(),
                    format!("park = {}: cannot read: {e}", park_file.display()),
                    "a park file path relative to scenario.toml",
                );
                None
            }
        };
        if let Some(p) = &park {
            let im = p.clock.interval.minutes();
            if !every.is_multiple_of(im) {
                d.error(
                    o.replan_every_min.span(),
                    format!("optimized.replan_every_min: {every} is not a multiple of the park's {im}-minute interval"),
                    "re-plans start at interval boundaries, e.g. 60",
                );
            }
            if !ev_groups.is_empty() && p.ev_chargers.is_empty() {
                d.error(
                    0..0,
                    "ev.group given but the park has no EV chargers".into(),
                    "remove [[ev.group]] or add chargers to the park",
                );
            }
        }
        let grid_requests = read_entries(
            &f.grid_request,
            park.as_ref().map(|p| &p.clock),
            &format!("scenario {}", f.scenario.name),
            &mut |span, message, hint| d.error(span, message, hint),
        );
        let baseline_rule = f
            .baseline
            .as_ref()
            .map(|b| *b.get_ref())
            .unwrap_or_default();
        if let (Some(b), Err(e)) = (&f.baseline, baseline_rule.check()) {
            d.error(
                b.span(),
                format!("baseline.{e}"),
                "e.g. days = 5, look_back_days = 45 (the defaults)",
            );
        }
        let climate = read_climate(
            &dir.join(f.scenario.climate.get_ref()),
            &mut d,
            &f.scenario.climate,
        );
        let profiles = park.as_ref().and_then(|p| {
            read_profiles(
                &dir.join(f.scenario.load_profiles.get_ref()),
                p,
                &mut d,
                &f.scenario.load_profiles,
            )
        });
        if !d.out.is_empty() {
            return Err(d.out);
        }
        let (Some(park), Some(start), Some(climate), Some(profiles)) =
            (park, start, climate, profiles)
        else {
            return Err(vec![whole_file(
                &name,
                "the scenario could not be read".into(),
                "see the errors above",
            )]);
        };
        Ok(Scenario {
            file,
            name: f.scenario.name,
            park_file,
            park,
            start,
            seed: f.scenario.seed,
            climate,
            profiles,
            load_noise_sd,
            load_noise_correlation,
            ev_groups,
            carbon_hourly_shape,
            cloud_error_sd,
            load_error_sd,
            optimized,
            grid_requests,
            baseline: baseline_rule,
        })
    }

    /// The curtailable and fixed load ids that need a profile.
    pub fn profile_ids(park: &Park) -> Vec<String> {
        let mut ids: Vec<String> = park.fixed_loads.iter().map(|l| l.id.clone()).collect();
        ids.extend(
            park.flexible_loads
                .iter()
                .filter(|l| matches!(l.flexibility, Flexibility::Curtailable { .. }))
                .map(|l| l.id.clone()),
        );
        ids
    }
}

fn read_file(path: &Path, d: &mut Diags, from: &Spanned<String>) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                d.out.push(whole_file(
                    &path.display().to_string(),
                    format!("not UTF-8 text at byte {}", e.utf8_error().valid_up_to()),
                    "save the file as UTF-8",
                ));
                None
            }
        },
        Err(e) => {
            d.error(
                from.span(),
                format!("{}: cannot read: {e}", path.display()),
                "a file path relative to scenario.toml",
            );
            None
        }
    }
}

fn number(
    loc: &mut csvtext::Located,
    field: (usize, &str),
    lo: f64,
    hi: f64,
    hint: &str,
) -> Option<f64> {
    match field.1.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= lo && v <= hi => Some(v),
        Ok(v) => {
            loc.error(field.0, format!("{v} is outside {lo}..{hi}"), hint);
            None
        }
        Err(_) => {
            loc.error(field.0, format!("`{}` is not a number", field.1), hint);
            None
        }
    }
}

/// `month,sunshine_h,high_c,low_c,hvac_factor`, twelve rows in month order.
fn read_climate(path: &Path, d: &mut Diags, from: &Spanned<String>) -> Option<[MonthClimate; 12]> {
    let text = read_file(path, d, from)?;
    let name = path.display().to_string();
    let mut out = Vec::new();
    let mut loc = csvtext::Located {
        name: &name,
        map: SourceMap::new(&text),
        out: &mut out,
    };
    let rows = csvtext::rows(&text);
    let header = ["month", "sunshine_h", "high_c", "low_c", "hvac_factor"];
    let Some((head, body)) = rows.split_first() else {
        loc.error(
            0,
            "the file is empty".into(),
            "first line: month,sunshine_h,high_c,low_c,hvac_factor",
        );
        d.out.extend(out);
        return None;
    };
    let names: Vec<&str> = head.fields.iter().map(|f| f.1).collect();
    if names != header {
        loc.error(
            head.line_offset,
            format!("header `{}`", names.join(",")),
            "first line: month,sunshine_h,high_c,low_c,hvac_factor",
        );
        d.out.extend(out);
        return None;
    }
    let mut months = [None; 12];
    for row in body {
        if row.fields.len() != header.len() {
            loc.error(
                row.line_offset,
                format!("{} fields, {} expected", row.fields.len(), header.len()),
                "month,sunshine_h,high_c,low_c,hvac_factor",
            );
            continue;
        }
        let f = &row.fields;
        let Some(m) = number(&mut loc, f[0], 1.0, 12.0, "a month 1..12") else {
            continue;
        };
        if m.fract() != 0.0 {
            loc.error(
                f[0].0,
                format!("month {m} is not a whole number"),
                "a month 1..12",
            );
            continue;
        }
        let sun = number(
            &mut loc,
            f[1],
            0.0,
            744.0,
            "mean sunshine hours of the month, 0..744",
        );
        let high = number(&mut loc, f[2], -60.0, 60.0, "°C");
        let low = number(&mut loc, f[3], -60.0, 60.0, "°C");
        let hvac = number(
            &mut loc,
            f[4],
            0.0,
            5.0,
            "HVAC demand relative to the profile, e.g. 1.0 in July",
        );
        let (Some(sunshine_h), Some(high_c), Some(low_c), Some(hvac_factor)) =
            (sun, high, low, hvac)
        else {
            continue;
        };
        if low_c > high_c {
            loc.error(
                f[3].0,
                format!("low {low_c} °C above high {high_c} °C"),
                "mean daily minimum <= mean daily maximum",
            );
            continue;
        }
        let k = m as usize - 1;
        if months[k].is_some() {
            loc.error(
                f[0].0,
                format!("month {m} appears twice"),
                "one row per month",
            );
        }
        months[k] = Some(MonthClimate {
            sunshine_h,
            high_c,
            low_c,
            hvac_factor,
        });
    }
    let missing: Vec<String> = (0..12)
        .filter(|&k| months[k].is_none())
        .map(|k| (k + 1).to_string())
        .collect();
    if !missing.is_empty() && loc.out.is_empty() {
        loc.error(
            text.len().saturating_sub(1),
            format!("months {} missing", missing.join(", ")),
            "twelve rows, one per month 1..12",
        );
    }
    let ok = out.is_empty();
    d.out.extend(out);
    ok.then(|| months.map(|m| m.expect("checked above")))
}

/// `hour,day,ID...`: hours 0..23 for `weekday` and `weekend` (48 rows), kW per load id.
fn read_profiles(
    path: &Path,
    park: &Park,
    d: &mut Diags,
    from: &Spanned<String>,
) -> Option<LoadProfiles> {
    let text = read_file(path, d, from)?;
    let name = path.display().to_string();
    let mut out = Vec::new();
    let mut loc = csvtext::Located {
        name: &name,
        map: SourceMap::new(&text),
        out: &mut out,
    };
    let rows = csvtext::rows(&text);
    let ids = Scenario::profile_ids(park);
    let hint_head = format!("first line: hour,day,{}", ids.join(","));
    let Some((head, body)) = rows.split_first() else {
        loc.error(0, "the file is empty".into(), &hint_head);
        d.out.extend(out);
        return None;
    };
    let names: Vec<&str> = head.fields.iter().map(|f| f.1).collect();
    if names.len() < 2 || names[0] != "hour" || names[1] != "day" {
        loc.error(
            head.line_offset,
            format!("header `{}`", names.join(",")),
            &hint_head,
        );
        d.out.extend(out);
        return None;
    }
    for id in &ids {
        if !names[2..].contains(&id.as_str()) {
            loc.error(
                head.line_offset,
                format!("no column for the park's load `{id}`"),
                &hint_head,
            );
        }
    }
    for (off, n) in &head.fields[2..] {
        if !ids.iter().any(|i| i == n) {
            loc.error(
                *off,
                format!("`{n}` is not a fixed or curtailable load of the park"),
                &hint_head,
            );
        }
    }
    let mut weekday: BTreeMap<String, [Option<f64>; 24]> = BTreeMap::new();
    let mut weekend: BTreeMap<String, [Option<f64>; 24]> = BTreeMap::new();
    for row in body {
        if row.fields.len() != names.len() {
            loc.error(
                row.line_offset,
                format!("{} fields, {} expected", row.fields.len(), names.len()),
                &hint_head,
            );
            continue;
        }
        let Some(h) = number(
            &mut loc,
            row.fields[0],
            0.0,
            23.0,
            "an hour of the day 0..23: one row per hour, the profile's interval is 60 min",
        ) else {
            continue;
        };
        if h.fract() != 0.0 {
            loc.error(
                row.fields[0].0,
                format!("hour {h} is not whole: profiles are hourly"),
                "hours 0..23",
            );
            continue;
        }
        let table = match row.fields[1].1 {
            "weekday" => &mut weekday,
            "weekend" => &mut weekend,
            other => {
                loc.error(
                    row.fields[1].0,
                    format!("day `{other}`"),
                    "weekday or weekend",
                );
                continue;
            }
        };
        for (k, field) in row.fields.iter().enumerate().skip(2) {
            let Some(v) = number(&mut loc, *field, 0.0, 1e6, "kW, never negative") else {
                continue;
            };
            let slot = &mut table.entry(names[k].to_string()).or_insert([None; 24])[h as usize];
            if slot.is_some() {
                loc.error(
                    row.fields[0].0,
                    format!("hour {h} of `{}` appears twice", row.fields[1].1),
                    "one row per hour and day kind",
                );
            }
            *slot = Some(v);
        }
    }
    let finish =
        |t: BTreeMap<String, [Option<f64>; 24]>, kind: &str, loc: &mut csvtext::Located| {
            let mut m = BTreeMap::new();
            for id in &ids {
                let vals = t.get(id).copied().unwrap_or([None; 24]);
                let missing: Vec<String> = (0..24)
                    .filter(|&h| vals[h].is_none())
                    .map(|h| h.to_string())
                    .collect();
                if !missing.is_empty() {
                    loc.error(
                        text.len().saturating_sub(1),
                        format!(
                            "{kind} profile of `{id}` has {} of 24 hours (missing {})",
                            24 - missing.len(),
                            missing.join(" ")
                        ),
                        "24 rows per day kind, hours 0..23",
                    );
                    continue;
                }
                m.insert(id.clone(), vals.map(|v| v.unwrap_or(0.0)));
            }
            m
        };
    let weekday = finish(weekday, "weekday", &mut loc);
    let weekend = finish(weekend, "weekend", &mut loc);
    let ok = out.is_empty();
    d.out.extend(out);
    ok.then_some(LoadProfiles { weekday, weekend })
}
