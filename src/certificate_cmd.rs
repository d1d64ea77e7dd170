//! `pedf certificate issue` and `pedf certificate verify`.

use std::path::{Path, PathBuf};

use chrono::Utc;
use pedf_carbon::certificate::{
    check_signature_value, compare_with_data, header, num, read_ledger, v1_records_match,
    write_atomic, Certificate, CertificateIssuer, GreenCertificates, IssuePeriod, Issued,
};
use pedf_carbon::records::read_records;
use pedf_core::csvtext::InputFile;
use pedf_core::time::{parse_time_zone, IntervalLength, ParkClock};

use pedf_runtime::services::certificate_renderings;

use crate::carbon_cmd::{prepare, PeriodSetup};
use crate::{print_diagnostics, UserError};

/// What `pedf certificate issue` was asked for.
pub struct IssueArgs {
    pub park: PathBuf,
    pub records: PathBuf,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A calendar month of the park's zone instead of from/to.
    pub month: Option<String>,
    pub green_certificates: Option<PathBuf>,
    pub factors: PathBuf,
    pub covered_mwh: f64,
    pub baseline: String,
    pub out_dir: PathBuf,
    pub key: PathBuf,
    pub ledger: Option<PathBuf>,
}

fn read_text(path: &Path) -> Result<String, UserError> {
    std::fs::read_to_string(path)
        .map_err(|e| UserError(format!("{}: cannot read: {e}", path.display())))
}

/// The local calendar month `YYYY-MM` of a park as an RFC 3339 period.
pub fn month_period(clock: &ParkClock, month: &str) -> Result<(String, String), UserError> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| month.len() == 7)
        .ok_or_else(|| {
            UserError(format!(
                "--month `{month}` is not a calendar month YYYY-MM, e.g. 2026-06"
            ))
        })?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| UserError(format!("--month `{month}` is out of range")))?;
    Ok((
        clock.format(clock.start_of_local_day(first)),
        clock.format(clock.start_of_local_day(next)),
    ))
}

/// Reads a green-certificate file: CSV `month,mwh,status,reference` (`#` comments), one line
/// per month; every problem names its line.
pub fn read_green_certificates(path: &Path) -> Result<Vec<GreenCertificates>, UserError> {
    const STATUSES: [&str; 4] = ["issued", "held", "sold", "cancelled"];
    let name = path.display().to_string();
    let text = read_text(path)?;
    let mut out: Vec<GreenCertificates> = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: String| UserError(format!("{name}:{}: {what}", i + 1));
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
        return Err(UserError(format!(
            "{name}: empty; it needs the header `month,mwh,status,reference`"
        )));
    }
    Ok(out)
}

pub fn issue(args: IssueArgs) -> Result<(), UserError> {
    let (from, to) = match (&args.month, &args.from, &args.to) {
        (Some(m), _, _) => {
            let park = crate::plan_cmd::load_park_file(&args.park)?;
            month_period(&park.clock, m)?
        }
        (None, Some(f), Some(t)) => (f.clone(), t.clone()),
        _ => {
            return Err(UserError(
                "give the period with --from and --to, or --month YYYY-MM".into(),
            ))
        }
    };
    let green = match &args.green_certificates {
        Some(p) => read_green_certificates(p)?,
        None => Vec::new(),
    };
    let setup = prepare(
        &args.park,
        &args.records,
        &from,
        &to,
        &args.factors,
        &args.baseline,
        args.covered_mwh,
    )?;
    for n in &setup.choice.notes {
        eprintln!("note: {n}");
    }
    let i = issue_prepared(
        setup,
        &args.records.display().to_string(),
        IssueFiles {
            out_dir: &args.out_dir,
            key: &args.key,
            ledger: args.ledger.as_deref(),
        },
        green,
        Utc::now(),
    )?;
    let cert = &i.cert;
    if i.key_created {
        eprintln!(
            "note: new issuer key created at {} (mode 0600); keep it safe and back it up",
            args.key.display()
        );
    }
    if let Some(why) = &i.pdf_error {
        eprintln!("warning: no PDF rendering: {why} (the JSON is the certificate; HTML written)");
    }
    println!(
        "issued {} for {} – {}",
        cert.serial, cert.period.from, cert.period.to
    );
    println!(
        "  reductions stated {} t CO2e (ER {} t, rounded down) on {} MWh delivered net{}",
        num(cert.figures.stated_reductions_t),
        num(cert.figures.emission_reductions_t),
        num(cert.monitored.net_delivered_mwh),
        if cert.monitored.green_certificate_mwh > 0.0 {
            format!(
                ", less {} MWh with green certificates",
                num(cert.monitored.green_certificate_mwh)
            )
        } else {
            String::new()
        }
    );
    println!(
        "  Scope 2: {} t location-based, {} t market-based",
        cert.figures.scope2_location_based_t, cert.figures.scope2_market_based_t
    );
    println!(
        "  data: {} of {} intervals recorded",
        cert.data_quality.intervals_recorded, cert.data_quality.intervals_expected
    );
    println!(
        "  {}\n  {}\n  {}\n  ledger entry {} in {}",
        i.json_path.display(),
        i.html_path.display(),
        i.pdf_path.display(),
        i.ledger_seq,
        i.ledger_path.display()
    );
    println!("  issuer public key {}", cert.issuer.public_key);
    Ok(())
}

/// Where an issue keeps its files: the certificates' folder, the issuer key, the ledger
/// (default: ledger.jsonl in the folder).
pub struct IssueFiles<'a> {
    pub out_dir: &'a Path,
    pub key: &'a Path,
    pub ledger: Option<&'a Path>,
}

/// Issues a certificate for a prepared period at `issued_at` (the caller's clock: the EMS's
/// for the API) through pedf-carbon's issuer, with this application's HTML and PDF.
pub fn issue_prepared(
    setup: PeriodSetup,
    records_name: &str,
    files: IssueFiles,
    green_certificates: Vec<GreenCertificates>,
    issued_at: chrono::DateTime<Utc>,
) -> Result<Issued, UserError> {
    let issuer = CertificateIssuer {
        out_dir: files.out_dir,
        key: files.key,
        ledger: files.ledger,
    };
    let period = IssuePeriod::of(&setup, green_certificates);
    issuer
        .issue(period, issued_at, certificate_renderings)
        .map_err(|e| {
            UserError(match e {
                pedf_carbon::certificate::IssueError::NoRecords(m) => {
                    format!("{records_name}: {m}")
                }
                other => other.to_string(),
            })
        })
}

/// What `pedf certificate verify` was asked for.
pub struct VerifyArgs {
    pub file: PathBuf,
    pub data: Option<PathBuf>,
    pub ledger: Option<PathBuf>,
    pub public_key: Option<String>,
    /// A trust list: the issuer keys (hex) accepted, one per line, `#` comments.
    pub trusted_keys: Option<PathBuf>,
}

pub fn verify(args: VerifyArgs) -> Result<(), UserError> {
    let name = args.file.display().to_string();
    let text = read_text(&args.file)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| UserError(format!("{name}: not JSON: {e}")))?;
    let head =
        header(&value).map_err(|e| UserError(format!("{name}: not a pedf certificate: {e}")))?;
    // Format 2 is read whole (every member known); format 1 is checked on its JSON as signed.
    let cert: Option<Certificate> = match head.version {
        2 => Some(
            serde_json::from_value(value.clone())
                .map_err(|e| UserError(format!("{name}: not a pedf-certificate/2: {e}")))?,
        ),
        _ => None,
    };
    let mut problems = Vec::new();
    // The keys trusted here: --public-key and the trust list. A certificate names its own key,
    // so without a trusted one anybody can re-sign a changed copy: never "verified" then.
    let mut trusted: Vec<String> = args
        .public_key
        .iter()
        .map(|k| k.trim().to_string())
        .collect();
    if let Some(t) = &args.trusted_keys {
        let tname = t.display().to_string();
        for (i, line) in read_text(t)?.lines().enumerate() {
            let k = line.split('#').next().unwrap_or("").trim();
            if k.is_empty() {
                continue;
            }
            if k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(UserError(format!(
                    "{tname}:{}: `{k}` is not an ed25519 public key (64 hex digits)",
                    i + 1
                )));
            }
            trusted.push(k.to_string());
        }
    }
    let key = &head.public_key;
    let fingerprint = pedf_carbon::certificate::key_fingerprint(key);
    let canon = if head.version == 1 {
        "pedf's format-1 canonical JSON"
    } else {
        "RFC 8785 canonical JSON"
    };
    println!(
        "{name}: {} is a version-{} certificate (format pedf-certificate/{}, signed over {canon})",
        head.serial, head.version, head.version
    );
    match check_signature_value(&value) {
        Err(e) => problems.push(format!("signature: {e}")),
        Ok(()) if trusted.is_empty() => problems.push(format!(
            "signature: consistent with the key the certificate names ({key}, fingerprint {fingerprint}), but no trusted key was given: anyone can change a copy and re-sign it with their own key; give the issuer's published key with --public-key HEX or --trusted-keys FILE"
        )),
        Ok(()) if trusted.iter().any(|k| k.eq_ignore_ascii_case(key)) => println!(
            "{name}: signature valid, by the trusted key {key} (ed25519, fingerprint {fingerprint})"
        ),
        Ok(()) => problems.push(format!(
            "signature: signed by key {key} (fingerprint {fingerprint}), which is not a trusted key ({})",
            trusted.join(", ")
        )),
    }
    if let Some(d) = &args.data {
        let park = value.get("park").cloned().unwrap_or_default();
        let zone = park.get("time_zone").and_then(|z| z.as_str()).unwrap_or("");
        let tz = parse_time_zone(zone).ok_or_else(|| {
            UserError(format!(
                "{name}: park.time_zone `{zone}` is not an IANA zone"
            ))
        })?;
        let minutes = park
            .get("interval_minutes")
            .and_then(|m| m.as_i64())
            .unwrap_or(0);
        let interval = IntervalLength::from_minutes(minutes).ok_or_else(|| {
            UserError(format!(
                "{name}: park.interval_minutes {minutes} is not 5, 15, 30 or 60"
            ))
        })?;
        let clock = ParkClock::new(tz, interval);
        let dname = d.display().to_string();
        let bytes =
            std::fs::read(d).map_err(|e| UserError(format!("{dname}: cannot read: {e}")))?;
        let records = read_records(
            InputFile {
                name: &dname,
                bytes: &bytes,
            },
            &clock,
        )
        .map_err(|ds| {
            print_diagnostics(&ds);
            UserError(format!(
                "{dname}: {} error(s) in the records (see above)",
                ds.len()
            ))
        })?;
        match &cert {
            Some(cert) => match compare_with_data(cert, &records, clock) {
                Ok(diffs) if diffs.is_empty() => println!(
                    "{dname}: every figure recomputed from the {} records matches; Merkle root matches",
                    cert.records.count
                ),
                Ok(diffs) => problems.extend(diffs.into_iter().map(|d| format!("data: {d}"))),
                Err(e) => problems.push(format!("data: {e}")),
            },
            None => match v1_records_match(&value, &records, clock) {
                Ok(true) => println!(
                    "{dname}: the records' Merkle root matches; the figures of a version-1 certificate (methodology 1.0, avoided emissions on gross PV at the DC bus) are not recomputed by this version"
                ),
                Ok(false) => problems.push(format!(
                    "data: records.merkle_root: the records in {dname} are not the ones the certificate was issued on"
                )),
                Err(e) => problems.push(format!("data: {e}")),
            },
        }
    }
    if let Some(l) = &args.ledger {
        let lname = l.display().to_string();
        let own = pedf_carbon::certificate::canonical_text(&value)
            .map(|c| pedf_carbon::merkle::sha256_hex(c.as_bytes()));
        match read_ledger(&read_text(l)?, &lname) {
            Ok(entries) => match entries.iter().find(|e| e.serial == head.serial) {
                Some(e) if own.as_deref() == Ok(e.certificate_sha256.as_str()) => println!(
                    "{lname}: entry {} of {}, hash chain intact, certificate hash matches",
                    e.seq,
                    entries.len()
                ),
                Some(e) => problems.push(format!(
                    "ledger: entry {} for {} records another certificate content (hash differs)",
                    e.seq, head.serial
                )),
                None => problems.push(format!("ledger: {} is not in {lname}", head.serial)),
            },
            Err(e) => problems.push(format!("ledger: {e}")),
        }
    }
    if problems.is_empty() {
        println!("{name}: verified (version {})", head.version);
        Ok(())
    } else {
        for p in &problems {
            eprintln!("{name}: {p}");
        }
        Err(UserError(format!(
            "{name}: {} problem(s); the certificate is not verified",
            problems.len()
        )))
    }
}

/// `pedf certificate render`: the HTML and PDF of a signed certificate, again.
pub fn render(file: &Path, out_dir: Option<&Path>) -> Result<(), UserError> {
    let name = file.display().to_string();
    let value: serde_json::Value = serde_json::from_str(&read_text(file)?)
        .map_err(|e| UserError(format!("{name}: not JSON: {e}")))?;
    let head =
        header(&value).map_err(|e| UserError(format!("{name}: not a pedf certificate: {e}")))?;
    if head.version != 2 {
        return Err(UserError(format!(
            "{name}: a version-{} certificate; this version renders format pedf-certificate/2 (version-1 certificates keep the HTML and PDF they were issued with, and still verify)",
            head.version
        )));
    }
    check_signature_value(&value).map_err(|e| {
        UserError(format!(
            "{name}: {e}; a changed certificate is not rendered"
        ))
    })?;
    let cert: Certificate = serde_json::from_value(value)
        .map_err(|e| UserError(format!("{name}: not a pedf-certificate/2: {e}")))?;
    let dir = out_dir
        .map(Path::to_path_buf)
        .or_else(|| file.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    std::fs::create_dir_all(&dir)
        .map_err(|e| UserError(format!("--out-dir {}: {e}", dir.display())))?;
    let rendered = certificate_renderings(&cert);
    let html_path = dir.join(format!("{}.html", cert.serial));
    write_atomic(&html_path, rendered.html.as_bytes())
        .map_err(|e| UserError(format!("{}: {e}", html_path.display())))?;
    println!("{}", html_path.display());
    let pdf = rendered.pdf.map_err(|why| {
        UserError(format!(
            "no PDF rendering: {why} (HTML written to {})",
            html_path.display()
        ))
    })?;
    let pdf_path = dir.join(format!("{}.pdf", cert.serial));
    write_atomic(&pdf_path, &pdf).map_err(|e| UserError(format!("{}: {e}", pdf_path.display())))?;
    println!("{}", pdf_path.display());
    Ok(())
}
