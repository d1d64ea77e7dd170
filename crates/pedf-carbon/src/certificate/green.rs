//! Green certificates (绿证) declared for the park's PV, read from the operator's file: the
//! MWh they cover are not claimed again as reductions (DOMAIN.md, green certificates).

use super::GreenCertificates;

/// Reads a green-certificate file (`name` names it in errors): CSV `month,mwh,status,reference` (`#` comments), one line
/// per month; every problem names its line.
pub fn parse_green_certificates(name: &str, text: &str) -> Result<Vec<GreenCertificates>, String> {
    const STATUSES: [&str; 4] = ["issued", "held", "sold", "cancelled"];
    // Excel's "CSV UTF-8" starts the file with a byte-order mark: not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<GreenCertificates> = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: String| format!("{name}:{}: {what}", i + 1);
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if !header {
            if cols != ["month", "mwh", "status", "reference"] {
                return Err(at(format!(
                    "the header is `{line}`; it must be `month,mwh,status,reference`"
                )));
            }
            header = true;
            continue;
        }
        if cols.len() != 4 {
            return Err(at(format!(
                "{} fields where 4 (month,mwh,status,reference) are expected",
                cols.len()
            )));
        }
        let valid_month = chrono::NaiveDate::parse_from_str(&format!("{}-01", cols[0]), "%Y-%m-%d")
            .is_ok()
            && cols[0].len() == 7;
        if !valid_month {
            return Err(at(format!("month `{}` is not YYYY-MM", cols[0])));
        }
        let mwh: f64 = cols[1]
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| {
                at(format!(
                    "mwh `{}` is not a number of MWh >= 0 (1 certificate = 1 MWh)",
                    cols[1]
                ))
            })?;
        if !STATUSES.contains(&cols[2]) {
            return Err(at(format!(
                "status `{}` is not one of {}",
                cols[2],
                STATUSES.join(", ")
            )));
        }
        if out.iter().any(|g| g.month == cols[0]) {
            return Err(at(format!(
                "month {} is listed twice; give one line per month with its total",
                cols[0]
            )));
        }
        out.push(GreenCertificates {
            month: cols[0].to_string(),
            mwh,
            status: cols[2].to_string(),
            reference: cols[3].to_string(),
        });
    }
    if !header {
        return Err(format!(
            "{name}: empty; it needs the header `month,mwh,status,reference`"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_green_certificate_file_reads_with_a_byte_order_mark_and_names_bad_lines() {
        let ok = "\u{feff}month,mwh,status,reference\n2026-06,12.5,held,GEC-1 # June\n";
        let g = parse_green_certificates("gec.csv", ok).unwrap();
        assert_eq!((g[0].month.as_str(), g[0].mwh), ("2026-06", 12.5));
        let twice = "month,mwh,status,reference\n2026-06,1,held,a\n2026-06,2,held,b\n";
        assert_eq!(
            parse_green_certificates("gec.csv", twice),
            Err(
                "gec.csv:3: month 2026-06 is listed twice; give one line per month with its total"
                    .into()
            )
        );
        let bad = "month,mwh,status,reference\n2026-06,-1,held,a\n";
        assert!(parse_green_certificates("gec.csv", bad)
            .unwrap_err()
            .starts_with("gec.csv:2: mwh `-1`"));
    }
}
