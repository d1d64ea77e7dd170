//! A period made ready for accounting or certifying: the park, the period, the factors chosen
//! for its year, the records, and the accounting options of the park. One procedure for the
//! CLI (`pedf carbon report`, `pedf certificate issue`) and the running EMS's API; it reads no
//! file and prints nothing: its callers read, name their own arguments and report.

use chrono::{DateTime, Datelike, Utc};
use pedf_core::Park;

use crate::account::Options;
use crate::factors::{choose, FactorChoice, FactorTable};
use crate::records::IntervalRecord;

/// What accounting and certifying a period start from.
pub struct PeriodSetup {
    /// The park.
    pub park: Park,
    /// The start of the period.
    pub from: DateTime<Utc>,
    /// Its end (not included).
    pub to: DateTime<Utc>,
    /// The factors chosen for the period's year.
    pub choice: FactorChoice,
    /// The records (any of them outside the period are left out by the accounting).
    pub records: Vec<IntervalRecord>,
    /// The park's accounting options with the chosen factors.
    pub options: Options,
}

/// Sets up `[from, to)`: factors from `table` for the local year the period starts in, chosen
/// by `baseline` (see [`choose`]), and `covered_mwh` of energy attribute certificates. An
/// error says what is wrong with the period, the baseline or the coverage.
pub fn setup(
    park: Park,
    records: Vec<IntervalRecord>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    table: &FactorTable,
    baseline: &str,
    covered_mwh: f64,
) -> Result<PeriodSetup, String> {
    if to <= from {
        return Err(format!(
            "the period ends ({}) before it starts ({})",
            park.clock.local(to).to_rfc3339(),
            park.clock.local(from).to_rfc3339()
        ));
    }
    if !(covered_mwh.is_finite() && covered_mwh >= 0.0) {
        return Err(format!("covered MWh: {covered_mwh} must be a number >= 0"));
    }
    let year = park.clock.local(from).year();
    let choice = choose(&park, table, year, baseline)?;
    let options = Options::for_park(&park, &choice, covered_mwh);
    Ok(PeriodSetup {
        park,
        from,
        to,
        choice,
        records,
        options,
    })
}
