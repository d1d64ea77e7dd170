//! `pedf certificate issue` and `pedf certificate verify`.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Utc};
use pedf_carbon::certificate::{
    append_line, build, check_signature, compare_with_data, load_or_create_key, next_entry,
    overlapping, read_ledger, render_html, write_atomic, Certificate, FactorUsed, IssueInput,
    ParkIdentity,
};
use pedf_carbon::records::read_records;
use pedf_core::csvtext::InputFile;
use pedf_core::time::{parse_time_zone, IntervalLength, ParkClock};

use crate::carbon_cmd::{prepare, PeriodSetup};
use crate::{print_diagnostics, UserError};

/// What `pedf certificate issue` was asked for.
pub struct IssueArgs {
    pub park: PathBuf,
    pub records: PathBuf,
    pub from: String,
    pub to: String,
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

pub fn issue(args: IssueArgs) -> Result<(), UserError> {
    let setup = prepare(
        &args.park,
        &args.records,
        &args.from,
        &args.to,
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
        (&args.from, &args.to),
        &args.out_dir,
        &args.key,
        args.ledger.as_deref(),
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
        "  certified reductions {} t CO2e (ER {} t, rounded down)",
        cert.figures.certified_reductions_t, cert.figures.emission_reductions_t
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

/// A certificate just issued, with where its files are.
pub struct Issued {
    pub cert: Certificate,
    pub json_path: PathBuf,
    pub html_path: PathBuf,
    pub pdf_path: PathBuf,
    /// Why there is no PDF, if there is none.
    pub pdf_error: Option<String>,
    pub ledger_path: PathBuf,
    pub ledger_seq: u64,
    pub key_created: bool,
}

/// Issues a certificate for a prepared period: refused when the period overlaps one in the
/// ledger; the ledger entry is appended before the files are written (atomically).
pub fn issue_prepared(
    setup: PeriodSetup,
    records_name: &str,
    (from_text, to_text): (&str, &str),
    out_dir: &Path,
    key_path: &Path,
    ledger: Option<&Path>,
) -> Result<Issued, UserError> {
    let PeriodSetup {
        park,
        from,
        to,
        choice,
        records,
        options,
    } = setup;
    let year = park.clock.local(from).year();
    if !records.iter().any(|r| r.start >= from && r.start < to) {
        return Err(UserError(format!(
            "{records_name}: no record inside {from_text} – {to_text}: nothing to certify"
        )));
    }
    std::fs::create_dir_all(out_dir)
        .map_err(|e| UserError(format!("--out-dir {}: {e}", out_dir.display())))?;
    let ledger_path = ledger
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("ledger.jsonl"));
    let ledger = if ledger_path.exists() {
        read_ledger(
            &read_text(&ledger_path)?,
            &ledger_path.display().to_string(),
        )
        .map_err(UserError)?
    } else {
        Vec::new()
    };
    if let Some(e) = overlapping(&ledger, &park.id, from, to) {
        return Err(UserError(format!(
            "the period overlaps certificate {} ({} – {}) in {}: refused, a period is certified once",
            e.serial,
            e.from,
            e.to,
            ledger_path.display()
        )));
    }
    let (key, key_created) = load_or_create_key(key_path).map_err(UserError)?;
    let identity = ParkIdentity {
        id: park.id.clone(),
        name: park.name.clone(),
        name_zh: park.name_zh.clone(),
        owner: park.owner.clone(),
        latitude_deg: park.location.latitude_deg,
        longitude_deg: park.location.longitude_deg,
        pv_kwp: park.pv_peak_power().0,
        battery_kwh: park.batteries.iter().map(|b| b.capacity.0).sum(),
        time_zone: park.clock.tz.name().to_string(),
        interval_minutes: park.clock.interval.minutes(),
    };
    let factors = vec![
        FactorUsed {
            role: "location".into(),
            value_kg_per_kwh: choice.location.value,
            description: choice.location.describe(),
        },
        FactorUsed {
            role: "residual".into(),
            value_kg_per_kwh: choice.residual.value,
            description: choice.residual.describe(),
        },
        FactorUsed {
            role: "baseline".into(),
            value_kg_per_kwh: choice.baseline,
            description: choice.baseline_text.clone(),
        },
    ];
    let serial = format!(
        "{}-{}-{:06}",
        park.id.to_uppercase(),
        year,
        ledger.len() + 1
    );
    let mut cert = build(
        &records,
        IssueInput {
            serial,
            issued_at: Utc::now(),
            park: identity,
            from,
            to,
            options: &options,
            factors,
        },
    );
    cert.sign(&key);
    // The ledger entry first: a crash after it leaves the period reserved and no certificate
    // file, never a certificate outside the ledger; the files appear whole or not at all.
    let entry = next_entry(&ledger, &cert);
    append_line(
        &ledger_path,
        &serde_json::to_string(&entry).unwrap_or_default(),
    )
    .map_err(|e| {
        UserError(format!(
            "{}: cannot append to the ledger: {e}; no certificate was issued",
            ledger_path.display()
        ))
    })?;
    let json_path = out_dir.join(format!("{}.json", cert.serial));
    let html_path = out_dir.join(format!("{}.html", cert.serial));
    let pdf_path = out_dir.join(format!("{}.pdf", cert.serial));
    let pdf = render_pdf(&cert);
    write_atomic(
        &json_path,
        format!("{}\n", cert.canonical_json()).as_bytes(),
    )
    .map_err(|e| UserError(format!("{}: {e}", json_path.display())))?;
    write_atomic(&html_path, render_html(&cert).as_bytes())
        .map_err(|e| UserError(format!("{}: {e}", html_path.display())))?;
    let pdf_error = match pdf {
        Ok(bytes) => {
            write_atomic(&pdf_path, &bytes)
                .map_err(|e| UserError(format!("{}: {e}", pdf_path.display())))?;
            None
        }
        Err(why) => Some(why),
    };
    Ok(Issued {
        cert,
        json_path,
        html_path,
        pdf_path,
        pdf_error,
        ledger_path,
        ledger_seq: entry.seq,
        key_created,
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
    let cert: Certificate = serde_json::from_str(&text)
        .map_err(|e| UserError(format!("{name}: not a pedf certificate: {e}")))?;
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
    let fingerprint = pedf_carbon::certificate::key_fingerprint(&cert.issuer.public_key);
    match check_signature(&cert, None) {
        Err(e) => problems.push(format!("signature: {e}")),
        Ok(()) if trusted.is_empty() => problems.push(format!(
            "signature: consistent with the key the certificate names ({}, fingerprint {fingerprint}), but no trusted key was given: anyone can change a copy and re-sign it with their own key; give the issuer's published key with --public-key HEX or --trusted-keys FILE",
            cert.issuer.public_key
        )),
        Ok(()) if trusted
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&cert.issuer.public_key)) =>
        {
            println!(
                "{name}: {} signature valid, by the trusted key {} (ed25519, fingerprint {fingerprint})",
                cert.serial, cert.issuer.public_key
            )
        }
        Ok(()) => problems.push(format!(
            "signature: signed by key {} (fingerprint {fingerprint}), which is not a trusted key ({})",
            cert.issuer.public_key,
            trusted.join(", ")
        )),
    }
    if let Some(d) = &args.data {
        let tz = parse_time_zone(&cert.park.time_zone).ok_or_else(|| {
            UserError(format!(
                "{name}: park.time_zone `{}` is not an IANA zone",
                cert.park.time_zone
            ))
        })?;
        let interval = IntervalLength::from_minutes(i64::from(cert.park.interval_minutes))
            .ok_or_else(|| {
                UserError(format!(
                    "{name}: park.interval_minutes {} is not 5, 15, 30 or 60",
                    cert.park.interval_minutes
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
        match compare_with_data(&cert, &records, clock) {
            Ok(diffs) if diffs.is_empty() => println!(
                "{dname}: every figure recomputed from the {} records matches; Merkle root matches",
                cert.records.count
            ),
            Ok(diffs) => problems.extend(diffs.into_iter().map(|d| format!("data: {d}"))),
            Err(e) => problems.push(format!("data: {e}")),
        }
    }
    if let Some(l) = &args.ledger {
        let lname = l.display().to_string();
        match read_ledger(&read_text(l)?, &lname) {
            Ok(entries) => match entries.iter().find(|e| e.serial == cert.serial) {
                Some(e)
                    if e.certificate_sha256
                        == pedf_carbon::merkle::sha256_hex(cert.canonical_json().as_bytes()) =>
                {
                    println!(
                        "{lname}: entry {} of {}, hash chain intact, certificate hash matches",
                        e.seq,
                        entries.len()
                    )
                }
                Some(e) => problems.push(format!(
                    "ledger: entry {} for {} records another certificate content (hash differs)",
                    e.seq, cert.serial
                )),
                None => problems.push(format!("ledger: {} is not in {lname}", cert.serial)),
            },
            Err(e) => problems.push(format!("ledger: {e}")),
        }
    }
    if problems.is_empty() {
        println!("{name}: verified");
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

/// Fonts with Chinese glyphs, in order of preference (Debian: fonts-droid-fallback, which
/// scripts/setup installs; fonts-wqy-microhei; fonts-noto-cjk).
const CJK_FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// The bilingual PDF rendering of a certificate (A4, the rows of the HTML).
pub fn render_pdf(cert: &Certificate) -> Result<Vec<u8>, String> {
    use pedf_report::pdf::{Item, TextPdf, A4};
    let cjk = CJK_FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no font with Chinese glyphs found (Debian package fonts-droid-fallback; scripts/setup installs it)")?;
    let latin = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVu Sans (fonts-dejavu-core): {e}"))?;
    let mut doc = TextPdf::new(&[&latin, &cjk]).map_err(|e| e.to_string())?;
    let (left, label_w, right) = (50.0, 170.0, A4.0 - 50.0);
    let value_x = left + label_w;
    let mut y = A4.1 - 60.0;
    doc.push(Item::Text {
        x: left,
        y,
        size: 20.0,
        text: "碳减排证书".into(),
    });
    y -= 22.0;
    doc.push(Item::Text {
        x: left,
        y,
        size: 13.0,
        text: "Carbon-reduction certificate".into(),
    });
    y -= 18.0;
    doc.push(Item::Line {
        x1: left,
        y1: y,
        x2: right,
        y2: y,
    });
    y -= 16.0;
    for (zh, en, value) in pedf_carbon::certificate::rows(cert) {
        let lines = doc.wrap(&value, 9.0, right - value_x);
        let height = (lines.len().max(2) as f64) * 11.5 + 6.0;
        if y - height < 50.0 {
            doc.new_page();
            y = A4.1 - 60.0;
        }
        doc.push(Item::Text {
            x: left,
            y,
            size: 9.0,
            text: zh,
        });
        doc.push(Item::Text {
            x: left,
            y: y - 11.0,
            size: 7.5,
            text: en,
        });
        for (i, l) in lines.iter().enumerate() {
            doc.push(Item::Text {
                x: value_x,
                y: y - 11.5 * i as f64,
                size: 9.0,
                text: l.clone(),
            });
        }
        y -= height;
        doc.push(Item::Line {
            x1: left,
            y1: y + 9.0,
            x2: right,
            y2: y + 9.0,
        });
    }
    y -= 10.0;
    // The verify block's three lines stay above the bottom margin.
    if y - 22.0 < 40.0 {
        doc.new_page();
        y = A4.1 - 60.0;
    }
    doc.push(Item::Text {
        x: left,
        y,
        size: 8.0,
        text: format!(
            "核验 Verify: pedf certificate verify {}.json --data RECORDS.csv \\",
            cert.serial
        ),
    });
    y -= 11.0;
    doc.push(Item::Text {
        x: left,
        y,
        size: 8.0,
        text: format!("  --public-key {}", cert.issuer.public_key),
    });
    y -= 11.0;
    doc.push(Item::Text {
        x: left,
        y,
        size: 8.0,
        text: format!(
            "签发密钥指纹 Issuer key fingerprint {} (compare with the issuer's published key)",
            pedf_carbon::certificate::key_fingerprint(&cert.issuer.public_key)
        ),
    });
    doc.render(&format!(
        "碳减排证书 Carbon-reduction certificate {}",
        cert.serial
    ))
    .map_err(|e| e.to_string())
}
