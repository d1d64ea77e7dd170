//! Hourly weather forecast files.
//!
//! Format (CSV, header line, `#` comments): `time` first, then any of
//!
//! | column | unit | range |
//! |---|---|---|
//! | `ghi_w_m2` | global horizontal irradiance, W/m² | 0..1500 |
//! | `cloud_cover_pct` | total cloud cover, % | 0..100 |
//! | `temp_air_c` | air temperature at 2 m, °C | -60..60 |
//! | `wind_speed_m_s` | wind speed at 10 m, m/s | 0..75 |
//!
//! One of `ghi_w_m2` and `cloud_cover_pct` is required (with both, GHI is used). `time` is
//! RFC 3339 with an offset; values are instantaneous at that time and interpolated linearly in
//! between (GHI through its clear-sky index). Rows are one hour apart, in order.
//!
//! Errors name the file, line and column: an unknown column (a unit the reader does not take
//! is named as such), a value out of range or not a number, a duplicate or unordered time,
//! rows not one hour apart, a gap longer than [`MAX_REPAIRED_GAP_HOURS`]. Repairs, each
//! reported in [`Weather::notes`]: a gap of up to three hours is filled by linear
//! interpolation; times written in another offset than the park's zone are read as the
//! instants they name.

use std::collections::HashMap;

use chrono::{DateTime, Duration, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use pedf_core::config::{suggest_public, Diagnostic, SourceMap};
use pedf_core::csvtext::{rows, text_of, InputFile, Located};

/// Longest run of missing hours filled by interpolation; a longer gap is an error.
pub const MAX_REPAIRED_GAP_HOURS: i64 = 3;

const COLUMNS: [&str; 4] = [
    "ghi_w_m2",
    "cloud_cover_pct",
    "temp_air_c",
    "wind_speed_m_s",
];

/// What the other units of a quantity look like, to say so when a file uses one.
const OTHER_UNITS: [(&str, &str, &str); 8] = [
    ("temp_air_k", "temp_air_c", "kelvin: subtract 273.15"),
    ("temp_air_f", "temp_air_c", "Fahrenheit: (F - 32) / 1.8"),
    ("ghi_kw_m2", "ghi_w_m2", "kW/m²: multiply by 1000"),
    (
        "ghi_wh_m2",
        "ghi_w_m2",
        "an energy: give the hour's mean power in W/m²",
    ),
    (
        "cloud_cover_okta",
        "cloud_cover_pct",
        "oktas: multiply by 12.5",
    ),
    (
        "cloud_cover_fraction",
        "cloud_cover_pct",
        "a fraction: multiply by 100",
    ),
    ("wind_speed_km_h", "wind_speed_m_s", "km/h: divide by 3.6"),
    (
        "wind_speed_kn",
        "wind_speed_m_s",
        "knots: multiply by 0.5144",
    ),
];

/// One hour of weather.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeatherRow {
    /// The hour's start.
    pub time: DateTime<Utc>,
    /// Global horizontal irradiance, W/m², if given.
    pub ghi_w_m2: Option<f64>,
    /// Cloud cover as a fraction 0..1.
    pub cloud_fraction: Option<f64>,
    /// Air temperature, °C, if given.
    pub temp_air_c: Option<f64>,
    /// Wind speed at 10 m, m/s, if given.
    pub wind_speed_m_s: Option<f64>,
}

/// A weather forecast, hourly, checked and (where documented) repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct Weather {
    /// File name as given.
    pub name: String,
    /// The hours, in order.
    pub rows: Vec<WeatherRow>,
    /// Every repair made, for the forecast's output.
    pub notes: Vec<String>,
}

impl Weather {
    /// Whether the file gives GHI (else cloud cover).
    pub fn has_ghi(&self) -> bool {
        self.rows.first().is_some_and(|r| r.ghi_w_m2.is_some())
    }

    /// The rows around `t` and the fraction of the way from the first to the second, or `None`
    /// outside the file.
    pub fn bracket(&self, t: DateTime<Utc>) -> Option<(usize, f64)> {
        let first = self.rows.first()?.time;
        let last = self.rows.last()?.time;
        if t < first || t > last {
            return None;
        }
        let hours = (t - first).num_milliseconds() as f64 / 3.6e6;
        let i = (hours.floor() as usize).min(self.rows.len().saturating_sub(2));
        Some((i, hours - i as f64))
    }

    /// Linear interpolation of one quantity at `t`.
    pub fn interpolate(
        &self,
        t: DateTime<Utc>,
        field: impl Fn(&WeatherRow) -> Option<f64>,
    ) -> Option<f64> {
        let (i, f) = self.bracket(t)?;
        if self.rows.len() == 1 {
            return field(&self.rows[0]);
        }
        let (a, b) = (field(&self.rows[i])?, field(&self.rows[i + 1])?);
        Some(a + (b - a) * f)
    }
}

struct Rule {
    min: f64,
    max: f64,
    hint: &'static str,
}

fn rule(column: &str) -> Rule {
    match column {
        "ghi_w_m2" => Rule {
            min: 0.0,
            max: 1500.0,
            hint: "W/m², 0..1500 (more than the sun gives is likely kW/m² or an energy)",
        },
        "cloud_cover_pct" => Rule {
            min: 0.0,
            max: 100.0,
            hint: "per cent, 0..100",
        },
        "temp_air_c" => Rule {
            min: -60.0,
            max: 60.0,
            hint: "°C, -60..60 (a value near 300 is kelvin, near 90 Fahrenheit)",
        },
        _ => Rule {
            min: 0.0,
            max: 75.0,
            hint: "m/s, 0..75",
        },
    }
}

/// Reads a weather file. `zone` is the park's time zone (for the offset note).
pub fn read_weather(file: InputFile, zone: Tz) -> Result<Weather, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let Some(text) = text_of(file, &mut out) else {
        return Err(out);
    };
    let mut loc = Located {
        name: file.name,
        map: SourceMap::new(text),
        out: &mut out,
    };
    let all = rows(text);
    let Some((header, body)) = all.split_first() else {
        loc.error(
            0,
            "the file has no header line".into(),
            "first line: time,ghi_w_m2,temp_air_c,wind_speed_m_s",
        );
        return Err(out);
    };
    let mut names: Vec<&str> = Vec::new();
    for (i, (off, name)) in header.fields.iter().enumerate() {
        if i == 0 {
            if *name != "time" {
                loc.error(
                    *off,
                    format!("first column is `{name}`, not `time`"),
                    "the first column holds the time, RFC 3339 with offset",
                );
            }
            continue;
        }
        if let Some((_, want, how)) = OTHER_UNITS.iter().find(|(other, _, _)| other == name) {
            loc.error(
                *off,
                format!("column `{name}` is in a unit the reader does not take ({how})"),
                &format!("convert and name the column `{want}`"),
            );
        } else if !COLUMNS.contains(name) {
            let near = suggest_public(name, &COLUMNS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            loc.error(
                *off,
                format!("unknown column `{name}`"),
                &format!("{near}valid columns: {}", COLUMNS.join(", ")),
            );
        } else if names.contains(name) {
            loc.error(
                *off,
                format!("column `{name}` appears twice"),
                "each column once",
            );
        }
        names.push(name);
    }
    if !names.contains(&"ghi_w_m2") && !names.contains(&"cloud_cover_pct") {
        loc.error(
            header.line_offset,
            "neither `ghi_w_m2` nor `cloud_cover_pct` is given".into(),
            "give the irradiance or the cloud cover for each hour",
        );
    }
    let mut notes = Vec::new();
    let mut parsed: Vec<(usize, WeatherRow)> = Vec::new();
    let mut seen: HashMap<DateTime<Utc>, usize> = HashMap::new();
    let mut other_offset: Option<FixedOffset> = None;
    for row in body {
        if row.fields.len() != header.fields.len() {
            loc.error(
                row.line_offset,
                format!(
                    "{} fields, the header has {}",
                    row.fields.len(),
                    header.fields.len()
                ),
                "one value per column, separated by commas",
            );
            continue;
        }
        let (toff, ttext) = row.fields[0];
        let t = match DateTime::parse_from_rfc3339(ttext) {
            Ok(t) => t,
            Err(_) => {
                loc.error(
                    toff,
                    format!("`{ttext}` is not an RFC 3339 time with an offset"),
                    "e.g. 2026-06-21T08:00:00+08:00",
                );
                continue;
            }
        };
        let utc = t.with_timezone(&Utc);
        let zone_offset = zone.offset_from_utc_datetime(&utc.naive_utc()).fix();
        if *t.offset() != zone_offset && other_offset.is_none() {
            other_offset = Some(*t.offset());
            let (line, _) = loc.map.locate(toff);
            notes.push(format!(
                "{}: times from line {line} are written at UTC{} while the park's zone {zone} is at UTC{zone_offset}; they are read as the instants they name",
                file.name,
                t.offset()
            ));
        }
        if let Some(&first) = seen.get(&utc) {
            let (l, _) = loc.map.locate(first);
            loc.error(
                toff,
                format!("duplicate time {ttext} (first at line {l})"),
                "one row per hour",
            );
            continue;
        }
        seen.insert(utc, row.line_offset);
        let mut w = WeatherRow {
            time: utc,
            ghi_w_m2: None,
            cloud_fraction: None,
            temp_air_c: None,
            wind_speed_m_s: None,
        };
        for (i, (off, v)) in row.fields.iter().enumerate().skip(1) {
            let col = header.fields[i].1;
            if !COLUMNS.contains(&col) {
                continue;
            }
            let r = rule(col);
            let x = match v.parse::<f64>() {
                Ok(x) if x.is_finite() && (r.min..=r.max).contains(&x) => x,
                Ok(x) if x.is_finite() => {
                    loc.error(
                        *off,
                        format!("{col}: {x} is outside {}..{}", r.min, r.max),
                        r.hint,
                    );
                    continue;
                }
                _ => {
                    loc.error(*off, format!("{col}: `{v}` is not a finite number"), r.hint);
                    continue;
                }
            };
            match col {
                "ghi_w_m2" => w.ghi_w_m2 = Some(x),
                "cloud_cover_pct" => w.cloud_fraction = Some(x / 100.0),
                "temp_air_c" => w.temp_air_c = Some(x),
                _ => w.wind_speed_m_s = Some(x),
            }
        }
        parsed.push((row.line_offset, w));
    }
    // Order and spacing.
    let hour = Duration::hours(1);
    let mut filled: Vec<WeatherRow> = Vec::with_capacity(parsed.len());
    for (k, (line_offset, w)) in parsed.iter().enumerate() {
        if let Some((_, prev)) = k.checked_sub(1).map(|j| &parsed[j]) {
            let step = w.time - prev.time;
            let (line, _) = loc.map.locate(*line_offset);
            if step <= Duration::zero() {
                loc.error(
                    *line_offset,
                    format!("{} comes before the row above it", w.time),
                    "rows in time order",
                );
                continue;
            }
            if step.num_seconds() % 3600 != 0 {
                loc.error(
                    *line_offset,
                    format!(
                        "{} is {} min after the row above; rows are one hour apart",
                        w.time,
                        step.num_minutes()
                    ),
                    "hourly rows",
                );
                continue;
            }
            let missing = step.num_hours() - 1;
            if missing > MAX_REPAIRED_GAP_HOURS {
                loc.error(*line_offset, format!("gap of {missing} hours before this row (after {})", prev.time), &format!("fill the gap; up to {MAX_REPAIRED_GAP_HOURS} missing hours are interpolated"));
                continue;
            }
            if missing > 0 {
                notes.push(format!("{}: {missing} missing hour(s) before line {line} filled by linear interpolation", file.name));
                for m in 1..=missing {
                    let f = m as f64 / (missing + 1) as f64;
                    let mix = |a: Option<f64>, b: Option<f64>| Some(a? + (b? - a?) * f);
                    filled.push(WeatherRow {
                        time: prev.time + hour * m as i32,
                        ghi_w_m2: mix(prev.ghi_w_m2, w.ghi_w_m2),
                        cloud_fraction: mix(prev.cloud_fraction, w.cloud_fraction),
                        temp_air_c: mix(prev.temp_air_c, w.temp_air_c),
                        wind_speed_m_s: mix(prev.wind_speed_m_s, w.wind_speed_m_s),
                    });
                }
            }
        }
        filled.push(*w);
    }
    if body.is_empty() {
        loc.error(
            header.line_offset,
            "the file has no rows".into(),
            "one row per hour of the forecast",
        );
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Weather {
        name: file.name.to_string(),
        rows: filled,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Weather, Vec<Diagnostic>> {
        read_weather(
            InputFile {
                name: "weather.csv",
                bytes: text.as_bytes(),
            },
            chrono_tz::Asia::Shanghai,
        )
    }

    fn errors(text: &str) -> Vec<String> {
        read(text)
            .unwrap_err()
            .iter()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
            .collect()
    }

    const HEAD: &str = "time,ghi_w_m2,temp_air_c\n";

    #[test]
    fn reads_a_clean_file() {
        let w = read(&format!(
            "{HEAD}2026-06-21T08:00:00+08:00,400,25\n2026-06-21T09:00:00+08:00,600,27\n"
        ))
        .unwrap();
        assert_eq!(w.rows.len(), 2);
        assert!(w.notes.is_empty());
        let mid = w.rows[0].time + Duration::minutes(30);
        assert_eq!(w.interpolate(mid, |r| r.ghi_w_m2), Some(500.0));
        assert_eq!(
            w.interpolate(mid - Duration::hours(1), |r| r.ghi_w_m2),
            None
        );
    }

    #[test]
    fn short_gaps_are_filled_and_reported() {
        let w = read(&format!(
            "{HEAD}2026-06-21T08:00:00+08:00,400,25\n2026-06-21T11:00:00+08:00,700,28\n"
        ))
        .unwrap();
        assert_eq!(w.rows.len(), 4);
        assert_eq!(w.rows[1].ghi_w_m2, Some(500.0));
        assert_eq!(w.notes.len(), 1);
        assert!(
            w.notes[0].contains("2 missing hour(s) before line 3"),
            "{:?}",
            w.notes
        );
    }

    #[test]
    fn long_gaps_duplicates_and_disorder_are_located() {
        let e = errors(&format!(
            "{HEAD}2026-06-21T08:00:00+08:00,400,25\n2026-06-21T13:00:00+08:00,700,28\n"
        ));
        assert_eq!(
            e,
            ["weather.csv:3:1: gap of 4 hours before this row (after 2026-06-21 00:00:00 UTC)"]
        );
        let e = errors(&format!(
            "{HEAD}2026-06-21T08:00:00+08:00,400,25\n2026-06-21T08:00:00+08:00,400,25\n"
        ));
        assert_eq!(
            e,
            ["weather.csv:3:1: duplicate time 2026-06-21T08:00:00+08:00 (first at line 2)"]
        );
        let e = errors(&format!(
            "{HEAD}2026-06-21T09:00:00+08:00,400,25\n2026-06-21T08:00:00+08:00,400,25\n"
        ));
        assert_eq!(
            e,
            ["weather.csv:3:1: 2026-06-21 00:00:00 UTC comes before the row above it"]
        );
        let e = errors(&format!(
            "{HEAD}2026-06-21T08:00:00+08:00,400,25\n2026-06-21T08:30:00+08:00,400,25\n"
        ));
        assert_eq!(e, ["weather.csv:3:1: 2026-06-21 00:30:00 UTC is 30 min after the row above; rows are one hour apart"]);
    }

    #[test]
    fn wrong_units_are_named() {
        let e = errors("time,ghi_w_m2,temp_air_k\n2026-06-21T08:00:00+08:00,400,298\n");
        assert_eq!(e, ["weather.csv:1:15: column `temp_air_k` is in a unit the reader does not take (kelvin: subtract 273.15)"]);
        let e = errors(&format!("{HEAD}2026-06-21T08:00:00+08:00,400,298.1\n"));
        assert_eq!(
            e,
            ["weather.csv:2:31: temp_air_c: 298.1 is outside -60..60"]
        );
        let e = errors("time,ghi_wm2\n2026-06-21T08:00:00+08:00,400\n");
        assert!(e[0].contains("unknown column `ghi_wm2`"), "{e:?}");
        let e = errors("time,temp_air_c\n2026-06-21T08:00:00+08:00,20\n");
        assert_eq!(
            e,
            ["weather.csv:1:1: neither `ghi_w_m2` nor `cloud_cover_pct` is given"]
        );
    }

    #[test]
    fn another_offset_is_read_as_instants_and_noted() {
        let w = read(&format!(
            "{HEAD}2026-06-21T00:00:00Z,400,25\n2026-06-21T01:00:00Z,600,27\n"
        ))
        .unwrap();
        assert_eq!(
            w.rows[0].time,
            Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap()
        );
        assert_eq!(w.notes.len(), 1);
        assert!(
            w.notes[0].contains("UTC+00:00") && w.notes[0].contains("Asia/Shanghai"),
            "{:?}",
            w.notes
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "time\n",
            "time,ghi_w_m2\n,\n",
            "time,ghi_w_m2\nx,NaN\n",
            "\u{feff}time,ghi_w_m2\n",
        ] {
            assert!(read(text).is_err(), "{text:?}");
        }
    }
}
