//! A period made ready for accounting or certifying: the park, the period, the factors chosen
//! for its year, the records, and the accounting options of the park. One procedure for the
//! CLI (`pedf carbon report`, `pedf certificate issue`) and the running EMS's API; it reads no
//! file and prints nothing: its callers read, name their own arguments and report.

use chrono::{DateTime, Datelike, Utc};
use pedf_core::message::Message;
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

/// The longest period accounted or certified at once: a year (366 days: a leap year). A
/// longer one is accounted year by year; the bound keeps one request's memory and time to
/// what a year of the park's intervals takes (a year of 5-minute intervals is about 105,000).
pub const MAX_PERIOD_DAYS: i64 = 366;

/// Checks that `[from, to)` is a period: it ends after it starts, and is at most
/// [`MAX_PERIOD_DAYS`] long. Callers check before they read a period's records.
pub fn check_span(park: &Park, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), Message> {
    let (f, t) = (
        park.clock.local(from).to_rfc3339(),
        park.clock.local(to).to_rfc3339(),
    );
    if to <= from {
        return Err(Message::new(
            format!("the period ends ({t}) before it starts ({f})"),
            format!("期间的结束（{t}）早于其开始（{f}）"),
        ));
    }
    if to - from > chrono::Duration::days(MAX_PERIOD_DAYS) {
        let days = (to - from).num_days();
        return Err(Message::new(
            format!("the period {f} to {t} is {days} days long; at most {MAX_PERIOD_DAYS} days (a year) are accounted at once: give a year or less and account longer spans year by year"),
            format!("期间 {f} 至 {t} 长 {days} 天；一次最多核算 {MAX_PERIOD_DAYS} 天（一年）：请给一年以内的期间，更长的期间逐年核算"),
        ));
    }
    Ok(())
}

/// Sets up `[from, to)`: factors from `table` for the local year the period starts in, chosen
/// by `baseline` (see [`choose`]), and `covered_mwh` of energy attribute certificates. An
/// error says what is wrong with the period ([`check_span`]), the baseline or the coverage.
pub fn setup(
    park: Park,
    records: Vec<IntervalRecord>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    table: &FactorTable,
    baseline: &str,
    covered_mwh: f64,
) -> Result<PeriodSetup, String> {
    check_span(&park, from, to).map_err(|m| m.en)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use pedf_core::time::parse_rfc3339;

    #[test]
    fn a_period_longer_than_a_year_is_refused_naming_the_limit() {
        let park = pedf_core::config::load_park(
            "qingzhou-pedf.toml",
            include_bytes!("../../../config/qingzhou-pedf.toml"),
        )
        .value
        .unwrap();
        let t = |s: &str| parse_rfc3339(s).unwrap();
        // A leap year is accounted whole.
        assert_eq!(
            check_span(
                &park,
                t("2028-01-01T00:00:00+08:00"),
                t("2029-01-01T00:00:00+08:00")
            ),
            Ok(())
        );
        let e = check_span(
            &park,
            t("2021-01-01T00:00:00+08:00"),
            t("9999-12-31T00:00:00+08:00"),
        )
        .unwrap_err();
        assert!(e.en.contains("at most 366 days"), "{e}");
        assert!(e.zh.contains("最多核算 366 天"), "{}", e.zh);
        let e = check_span(
            &park,
            t("2026-06-02T00:00:00+08:00"),
            t("2026-06-01T00:00:00+08:00"),
        )
        .unwrap_err();
        assert!(e.en.contains("before it starts"), "{e}");
    }
}
