//! `pedf certificate issue` and `pedf certificate verify`.

use std::path::{Path, PathBuf};

use chrono::Utc;
use pedf_carbon::certificate::{
    check_signature_value, header, num, parse_green_certificates, parse_meter_intervals,
    parse_trust_list, write_atomic, Certificate, CertificateIssuer, Check, GreenCertificates,
    IssuePeriod, Issued, MeterInterval, Verification,
};

use pedf_runtime::services::certificate_renderings;

use crate::carbon_cmd::{prepare, PeriodSetup};
use crate::UserError;

/// What `pedf certificate issue` was asked for.
pub struct IssueArgs {
    pub park: PathBuf,
    pub records: PathBuf,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A calendar month of the park's zone instead of from/to.
    pub month: Option<String>,
    pub green_certificates: Option<PathBuf>,
    /// The billing meters' interval energies (CSV meter,start,import_kwh,export_kwh).
    pub meter_intervals: Option<PathBuf>,
    pub factors: PathBuf,
    pub covered_mwh: f64,
    pub baseline: String,
    pub out_dir: PathBuf,
    pub key: PathBuf,
    pub ledger: Option<PathBuf>,
    /// The least share of the period's intervals recorded.
    pub min_coverage: f64,
}

fn read_text(path: &Path) -> Result<String, UserError> {
    std::fs::read_to_string(path)
        .map_err(|e| UserError(format!("{}: cannot read: {e}", path.display())))
}

pub fn issue(args: IssueArgs) -> Result<(), UserError> {
    if !(0.0..=1.0).contains(&args.min_coverage) {
        return Err(UserError(format!(
            "--min-coverage {}: give a share from 0 to 1, e.g. 0.9",
            args.min_coverage
        )));
    }
    let (from, to) = match (&args.month, &args.from, &args.to) {
        (Some(m), _, _) => {
            let park = crate::plan_cmd::load_park_file(&args.park)?;
            let (from, to) = park
                .clock
                .local_month(m)
                .map_err(|e| UserError(format!("--month {e}")))?;
            (park.clock.format(from), park.clock.format(to))
        }
        (None, Some(f), Some(t)) => (f.clone(), t.clone()),
        _ => {
            return Err(UserError(
                "give the period with --from and --to, or --month YYYY-MM".into(),
            ))
        }
    };
    let green = match &args.green_certificates {
        Some(p) => {
            parse_green_certificates(&p.display().to_string(), &read_text(p)?).map_err(UserError)?
        }
        None => Vec::new(),
    };
    let meter_intervals = match &args.meter_intervals {
        Some(p) => {
            parse_meter_intervals(&p.display().to_string(), &read_text(p)?).map_err(UserError)?
        }
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
            min_coverage: args.min_coverage,
        },
        green,
        meter_intervals,
        Utc::now(),
    )?;
    let cert = &i.cert;
    for r in &i.recovered {
        eprintln!("note: an earlier issue was interrupted: {r}");
    }
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
    /// The least share of the period's intervals recorded.
    pub min_coverage: f64,
}

/// Issues a certificate for a prepared period at `issued_at` (the caller's clock: the EMS's
/// for the API) through pedf-carbon's issuer, with this application's HTML and PDF.
pub fn issue_prepared(
    setup: PeriodSetup,
    records_name: &str,
    files: IssueFiles,
    green_certificates: Vec<GreenCertificates>,
    meter_intervals: Vec<MeterInterval>,
    issued_at: chrono::DateTime<Utc>,
) -> Result<Issued, UserError> {
    let issuer = CertificateIssuer {
        out_dir: files.out_dir,
        key: files.key,
        ledger: files.ledger,
        min_coverage: files.min_coverage,
    };
    let period = IssuePeriod::of(&setup, green_certificates).billing(meter_intervals);
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
    /// The billing meters' interval energies the certificate states.
    pub meter_intervals: Option<PathBuf>,
    pub ledger: Option<PathBuf>,
    pub public_key: Option<String>,
    /// A trust list: the issuer keys (hex) accepted, one per line, `#` comments.
    pub trusted_keys: Option<PathBuf>,
}

pub fn verify(args: VerifyArgs) -> Result<(), UserError> {
    let name = args.file.display().to_string();
    let v = Verification::read(&name, &read_text(&args.file)?).map_err(UserError)?;
    // The keys trusted here: --public-key and the trust list.
    let mut trusted: Vec<String> = args
        .public_key
        .iter()
        .map(|k| k.trim().to_string())
        .collect();
    if let Some(t) = &args.trusted_keys {
        trusted
            .extend(parse_trust_list(&t.display().to_string(), &read_text(t)?).map_err(UserError)?);
    }
    let head = &v.header;
    println!(
        "{name}: {} is a version-{} certificate (format pedf-certificate/{}, signed over {})",
        head.serial,
        head.version,
        head.version,
        v.canonical_form()
    );
    let mut problems = Vec::new();
    let mut note = |whose: &str, check: Check| match check {
        Check::Confirmed(what) => println!("{whose}: {what}"),
        Check::Problems(ps) => problems.extend(ps),
    };
    note(&name, v.signature(&trusted));
    if let Some(d) = &args.data {
        let dname = d.display().to_string();
        let clock = v.clock().map_err(UserError)?;
        let records = crate::carbon_cmd::read_records_file(d, &clock)?;
        let meters = match &args.meter_intervals {
            Some(p) => Some(
                parse_meter_intervals(&p.display().to_string(), &read_text(p)?)
                    .map_err(UserError)?,
            ),
            None => None,
        };
        note(&dname, v.data(&dname, &records, meters.as_deref()));
    } else if args.meter_intervals.is_some() {
        return Err(UserError(
            "--meter-intervals is checked with the records: give --data FILE too".into(),
        ));
    }
    if let Some(l) = &args.ledger {
        let lname = l.display().to_string();
        note(&lname, v.ledger(&lname, &read_text(l)?));
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
