//! Emission factor tables (`config/emission-factors/*.toml`): each value with region, variant,
//! data year, publisher, source and status ([C] confirmed, [S] secondary, [U] unverified).

use pedf_core::Park;
use serde::Deserialize;

/// How sure a published figure is (DOMAIN.md tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// [C]: from the publisher's own document.
    Confirmed,
    /// [S]: quoted by a secondary source.
    Secondary,
    /// [U]: not verified against a source.
    Unverified,
}

impl Status {
    /// The tag DOMAIN.md and the certificates print: [C], [S] or [U].
    pub fn tag(self) -> &'static str {
        match self {
            Status::Confirmed => "[C]",
            Status::Secondary => "[S]",
            Status::Unverified => "[U]",
        }
    }
}

/// One published factor, kg CO2/kWh.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    /// The grid region (e.g. national, north China).
    pub region: String,
    /// The kind of factor (average, OM, BM, CM, residual, ...).
    pub variant: String,
    /// The year the data are of.
    pub data_year: i32,
    /// The factor, kg CO2/kWh.
    pub value: f64,
    /// Who published it.
    pub publisher: String,
    /// The document it comes from.
    pub source: String,
    /// How sure it is.
    pub status: Status,
}

impl Factor {
    /// "0.6361 kg/kWh, north-china regional-average 2023 [C] (source)".
    pub fn describe(&self) -> String {
        format!(
            "{} kg/kWh, {} {} {} {} ({})",
            self.value,
            self.region,
            self.variant,
            self.data_year,
            self.status.tag(),
            self.source
        )
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactorFile {
    #[serde(rename = "factor")]
    factors: Vec<Factor>,
}

/// A factor table problem, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactorError {
    /// A mistake in a factor file, located.
    #[error("{file}:{line}:{column}: {message}")]
    File {
        /// The file.
        file: String,
        /// The line, from 1.
        line: usize,
        /// The column, from 1.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// No factor of a variant for a region and year.
    #[error("no {variant} factor for {region} published for {year} or any year before it; add it to config/emission-factors/ (with its source) or give an hourly series")]
    Missing {
        /// The region.
        region: String,
        /// The variant.
        variant: String,
        /// The year asked for.
        year: i32,
    },
}

/// All factors known.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FactorTable {
    /// Every factor of the table's files.
    pub factors: Vec<Factor>,
}

impl FactorTable {
    /// Parses a factor file and checks every entry.
    pub fn parse(file: &str, text: &str) -> Result<FactorTable, Vec<FactorError>> {
        let map = pedf_core::config::SourceMap::new(text);
        let at = |offset: usize, message: String| {
            let (line, column) = map.locate(offset);
            FactorError::File {
                file: file.into(),
                line,
                column,
                message,
            }
        };
        let parsed: FactorFile = toml::from_str(text).map_err(|e| {
            vec![at(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_string(),
            )]
        })?;
        let mut errors = Vec::new();
        let offsets: Vec<usize> = text.match_indices("[[factor]]").map(|(i, _)| i).collect();
        for (i, f) in parsed.factors.iter().enumerate() {
            let off = offsets.get(i).copied().unwrap_or(0);
            if !(f.value.is_finite() && f.value > 0.0 && f.value <= 2.0) {
                errors.push(at(
                    off,
                    format!("factor[{i}]: value {} is outside 0..2 kg/kWh", f.value),
                ));
            }
            if !(1990..=2100).contains(&f.data_year) {
                errors.push(at(
                    off,
                    format!(
                        "factor[{i}]: data_year {} is not a plausible year",
                        f.data_year
                    ),
                ));
            }
            if f.source.trim().is_empty() || f.publisher.trim().is_empty() {
                errors.push(at(
                    off,
                    format!("factor[{i}]: every factor needs its publisher and source"),
                ));
            }
            if parsed.factors[..i].iter().any(|g| {
                g.region == f.region && g.variant == f.variant && g.data_year == f.data_year
            }) {
                errors.push(at(
                    off,
                    format!(
                        "factor[{i}]: {} {} {} is listed twice",
                        f.region, f.variant, f.data_year
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(FactorTable {
                factors: parsed.factors,
            })
        } else {
            Err(errors)
        }
    }

    /// The factor of exactly that year.
    pub fn get(&self, region: &str, variant: &str, year: i32) -> Option<&Factor> {
        self.factors
            .iter()
            .find(|f| f.region == region && f.variant == variant && f.data_year == year)
    }

    /// The most recent factor published for `year` or before (factors are published with a
    /// lag of two to three years; using the latest available is the common practice, and the
    /// data year is always stated with the figure).
    pub fn latest_for(
        &self,
        region: &str,
        variant: &str,
        year: i32,
    ) -> Result<&Factor, FactorError> {
        self.factors
            .iter()
            .filter(|f| f.region == region && f.variant == variant && f.data_year <= year)
            .max_by_key(|f| f.data_year)
            .ok_or_else(|| FactorError::Missing {
                region: region.into(),
                variant: variant.into(),
                year,
            })
    }
}

impl FactorTable {
    /// The operating and build margins of the most recent publication year at or before `year`
    /// that has both (tool 07: OM and BM of one edition, never mixed vintages).
    pub fn margins_for(&self, region: &str, year: i32) -> Result<(&Factor, &Factor), FactorError> {
        self.factors
            .iter()
            .filter(|om| {
                om.region == region && om.variant == "operating-margin" && om.data_year <= year
            })
            .filter_map(|om| {
                self.get(region, "build-margin", om.data_year)
                    .map(|bm| (om, bm))
            })
            .max_by_key(|(om, _)| om.data_year)
            .ok_or_else(|| FactorError::Missing {
                region: region.into(),
                variant: "operating-margin and build-margin (of one year)".into(),
                year,
            })
    }
}

/// Combined margin of the CDM tool 07: `w_om·OM + (1 - w_om)·BM`; w_om = 0.75 for wind and
/// solar.
pub fn combined_margin(operating_margin: f64, build_margin: f64, w_om: f64) -> f64 {
    w_om * operating_margin + (1.0 - w_om) * build_margin
}

/// The factor table pedf ships (`config/emission-factors/china-grid.toml`), for what runs
/// without a table of its own (the EMS's live figures).
pub const SHIPPED: &str = include_str!("../../../config/emission-factors/china-grid.toml");

impl FactorTable {
    /// [`SHIPPED`], parsed once (it is checked by the tests, so it parses).
    pub fn shipped() -> &'static FactorTable {
        static TABLE: std::sync::OnceLock<FactorTable> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            FactorTable::parse("config/emission-factors/china-grid.toml", SHIPPED)
                .unwrap_or_default()
        })
    }
}

/// The factors a park's period uses, with what was chosen and why.
pub struct FactorChoice {
    /// Location-based Scope 2: the grid average.
    pub location: Factor,
    /// Market-based Scope 2, uncovered import: the residual mix.
    pub residual: Factor,
    /// Avoided emissions: the baseline factor.
    pub baseline: f64,
    /// The baseline's provenance, as the certificate prints it.
    pub baseline_text: String,
    /// How the factors were chosen (fallbacks, editions), for the report.
    pub notes: Vec<String>,
}

/// Picks the location, residual and baseline factors for a park and period year. `baseline`:
/// `auto` (the park's `[carbon.baseline]` if it has one, else the combined margin of the
/// table), `project` (the park's, required), `combined-margin` (the table's, OM and BM of one
/// publication year), `grid-average` (the location factor: not what ACM0002 uses, named so).
pub fn choose(
    park: &Park,
    table: &FactorTable,
    year: i32,
    baseline: &str,
) -> Result<FactorChoice, String> {
    let gf = &park.carbon.grid_factor;
    let location = table
        .latest_for(&gf.region, &gf.variant, year)
        .map_err(|e| e.to_string())?
        .clone();
    let mut notes = Vec::new();
    if (location.value - gf.value.0).abs() > 1e-9 {
        notes.push(format!(
            "the park file's factor {} differs from the table's {} for {} {}: the table's is used",
            gf.value.0, location.value, gf.region, location.data_year
        ));
    }
    if location.data_year < year {
        notes.push(format!(
            "no factor published for {year} yet: data year {} is used",
            location.data_year
        ));
    }
    let residual = table
        .latest_for("national", "residual", year)
        .map_err(|e| e.to_string())?
        .clone();
    let project = park.carbon.baseline.as_ref();
    let kind = match (baseline, project) {
        ("auto", Some(_)) => "project",
        ("auto", None) => "combined-margin",
        ("project", None) => {
            return Err(
                "--baseline project: the park file has no [carbon.baseline] (factor_kg_per_kwh, variant, source, status)".into(),
            )
        }
        (other, _) => other,
    };
    let (baseline, baseline_text) = match kind {
        "project" => {
            let b = project.expect("checked above");
            (
                b.value.0,
                format!(
                    "{} kg/kWh, project-specific {} {} ({}), from the park file's [carbon.baseline]",
                    b.value.0,
                    b.variant,
                    b.status.tag(),
                    b.source
                ),
            )
        }
        "combined-margin" => {
            let (om, bm) = table
                .margins_for(&gf.region, year)
                .map_err(|e| e.to_string())?;
            let cm = combined_margin(om.value, bm.value, 0.75);
            (
                cm,
                format!(
                    "{cm:.6} kg/kWh, {} combined margin (CDM tool 07, solar) = 0.75 x OM {} + 0.25 x BM {}, both of the {} edition; OM {} ({}), BM {} ({})",
                    gf.region,
                    om.value,
                    bm.value,
                    om.data_year,
                    om.status.tag(),
                    om.source,
                    bm.status.tag(),
                    bm.source
                ),
            )
        }
        _ => (
            location.value,
            format!(
                "grid average {} (chosen with --baseline grid-average; ACM0002 / AMS-I.D use the combined margin)",
                location.describe()
            ),
        ),
    };
    Ok(FactorChoice {
        location,
        residual,
        baseline,
        baseline_text,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = include_str!("../../../config/emission-factors/china-grid.toml");

    #[test]
    fn the_shipped_table_parses_and_answers() {
        let t = FactorTable::parse("china-grid.toml", TABLE).unwrap();
        assert_eq!(
            FactorTable::shipped(),
            &t,
            "the shipped table is the file, whole"
        );
        let f = t
            .latest_for("north-china", "regional-average", 2026)
            .unwrap();
        assert_eq!(
            (f.value, f.data_year, f.status),
            (0.6361, 2023, Status::Confirmed)
        );
        assert_eq!(
            t.latest_for("national", "average", 2022).unwrap().value,
            0.5366
        );
        let e = t
            .latest_for("north-china", "regional-average", 2020)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no regional-average factor for north-china published for 2020"),
            "{e}"
        );
        let cm = combined_margin(
            t.get("north-china", "operating-margin", 2019)
                .unwrap()
                .value,
            t.get("north-china", "build-margin", 2019).unwrap().value,
            0.75,
        );
        assert!((cm - (0.75 * 0.9419 + 0.25 * 0.48)).abs() < 1e-12);
        // OM and BM of one edition: 2019, not the 2016 OM with the 2019 BM.
        let (om, bm) = t.margins_for("north-china", 2026).unwrap();
        assert_eq!((om.data_year, bm.data_year, om.value), (2019, 2019, 0.9419));
        assert!(t.margins_for("north-china", 2018).is_err());
    }

    #[test]
    fn bad_entries_are_located() {
        let text = "[[factor]]\nregion = \"x\"\nvariant = \"average\"\ndata_year = 2023\nvalue = 6.3\npublisher = \"p\"\nsource = \"s\"\nstatus = \"confirmed\"\n\n[[factor]]\nregion = \"x\"\nvariant = \"average\"\ndata_year = 2023\nvalue = 0.6\npublisher = \"p\"\nsource = \"\"\nstatus = \"sure\"\n";
        let e = FactorTable::parse("f.toml", text).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with("f.toml:17:10: unknown variant `sure`"),
            "{}",
            e[0]
        );
        let e =
            FactorTable::parse("f.toml", &text.replace("\"sure\"", "\"confirmed\"")).unwrap_err();
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "f.toml:1:1: factor[0]: value 6.3 is outside 0..2 kg/kWh",
                "f.toml:10:1: factor[1]: every factor needs its publisher and source",
                "f.toml:10:1: factor[1]: x average 2023 is listed twice",
            ]
        );
    }
}
