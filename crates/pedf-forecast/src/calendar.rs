//! Day types for load and EV forecasts: workdays, weekends and public holidays, with the
//! make-up workdays (调休) that move a weekend day into the working week.
//!
//! Holiday file (CSV, `#` comments): `date,kind,name`: `date` is YYYY-MM-DD, `kind` is
//! `holiday` (a day off, even on a weekday) or `workday` (a working day, even on a weekend),
//! `name` is free text. China's dates are set each year by the State Council's notice on
//! public holiday arrangements (国务院办公厅关于部分节假日安排的通知); pedf ships no dates, the
//! park supplies the year's file.

use std::collections::{BTreeMap, HashSet};

use chrono::{Datelike, NaiveDate, Weekday};
use pedf_core::config::{Diagnostic, SourceMap};
use pedf_core::csvtext::{rows, text_of, InputFile, Located};

/// The kinds of day with different load and charging patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DayType {
    /// Monday to Friday, or a working weekend day the calendar names.
    Workday,
    /// Saturday or Sunday that is not a working day.
    Weekend,
    /// A public holiday the calendar names.
    Holiday,
}

impl std::fmt::Display for DayType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DayType::Workday => "workday",
            DayType::Weekend => "weekend",
            DayType::Holiday => "holiday",
        })
    }
}

/// Public holidays and make-up workdays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calendar {
    overrides: BTreeMap<NaiveDate, DayType>,
}

impl Calendar {
    /// The type of a local day.
    pub fn day_type(&self, date: NaiveDate) -> DayType {
        if let Some(&t) = self.overrides.get(&date) {
            return t;
        }
        match date.weekday() {
            Weekday::Sat | Weekday::Sun => DayType::Weekend,
            _ => DayType::Workday,
        }
    }

    /// Whether any holiday or make-up day is known.
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }
}

/// Reads a holiday file.
pub fn read_calendar(file: InputFile) -> Result<Calendar, Vec<Diagnostic>> {
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
            "first line: date,kind,name",
        );
        return Err(out);
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.1).collect();
    if names != ["date", "kind", "name"] {
        loc.error(
            header.line_offset,
            format!("header is `{}`", names.join(",")),
            "the header is date,kind,name",
        );
        return Err(out);
    }
    let mut overrides = BTreeMap::new();
    let mut seen = HashSet::new();
    for row in body {
        if row.fields.len() != 3 {
            loc.error(
                row.line_offset,
                format!("{} fields, the header has 3", row.fields.len()),
                "date,kind,name",
            );
            continue;
        }
        let (doff, d) = row.fields[0];
        let Ok(date) = NaiveDate::parse_from_str(d, "%Y-%m-%d") else {
            loc.error(
                doff,
                format!("`{d}` is not a date"),
                "YYYY-MM-DD, e.g. 2026-10-01",
            );
            continue;
        };
        if !seen.insert(date) {
            loc.error(doff, format!("{date} is listed twice"), "one row per date");
            continue;
        }
        let (koff, k) = row.fields[1];
        let kind = match k {
            "holiday" => DayType::Holiday,
            "workday" => DayType::Workday,
            _ => {
                loc.error(
                    koff,
                    format!("kind `{k}` is not `holiday` or `workday`"),
                    "holiday: a day off; workday: a make-up working day (调休)",
                );
                continue;
            }
        };
        overrides.insert(date, kind);
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Calendar { overrides })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekends_holidays_and_make_up_workdays() {
        let text =
            "date,kind,name\n2026-10-01,holiday,National Day\n2026-10-10,workday,make-up day\n";
        let c = read_calendar(InputFile {
            name: "holidays.csv",
            bytes: text.as_bytes(),
        })
        .unwrap();
        let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert_eq!(c.day_type(d(10, 1)), DayType::Holiday); // a Thursday
        assert_eq!(c.day_type(d(10, 10)), DayType::Workday); // a Saturday
        assert_eq!(c.day_type(d(10, 11)), DayType::Weekend);
        assert_eq!(c.day_type(d(10, 12)), DayType::Workday);
        let bad = "date,kind,name\n2026-13-01,holiday,x\n2026-10-01,off,x\n";
        let e = read_calendar(InputFile {
            name: "h.csv",
            bytes: bad.as_bytes(),
        })
        .unwrap_err();
        let msgs: Vec<String> = e
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "2:1: `2026-13-01` is not a date",
                "3:12: kind `off` is not `holiday` or `workday`"
            ]
        );
    }
}
