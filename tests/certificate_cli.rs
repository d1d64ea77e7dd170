//! Certificates end to end: issue, verify, and every kind of tampering named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pedf_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedf"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("pedf runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pedf-cert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn park() -> String {
    format!("{ROOT}/config/qingzhou-pedf.toml")
}
fn records() -> String {
    format!("{ROOT}/simulations/qingzhou-pedf/records/2026-06-21.csv")
}
fn factors() -> String {
    format!("{ROOT}/config/emission-factors/china-grid.toml")
}

fn issue(dir: &Path, from: &str, to: &str) -> Output {
    let (p, r, f) = (park(), records(), factors());
    pedf_in(
        dir,
        &[
            "certificate",
            "issue",
            "--park",
            &p,
            "--records",
            &r,
            "--factors",
            &f,
            "--from",
            from,
            "--to",
            to,
        ],
    )
}

const MORNING: (&str, &str) = ("2026-06-21T00:00:00+08:00", "2026-06-21T12:00:00+08:00");
const AFTERNOON: (&str, &str) = ("2026-06-21T12:00:00+08:00", "2026-06-22T00:00:00+08:00");
const CERT1: &str = "certificates/QINGZHOU-PEDF-2026-000001.json";

/// The issuer's public key (hex), as the issuer publishes it: from its own key file.
fn issuer_key(dir: &Path) -> String {
    let (key, _) =
        pedf_carbon::certificate::load_or_create_key(&dir.join(".pedf/issuer.key")).unwrap();
    key.verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verifies with the issuer's published key.
fn verify(dir: &Path, cert: &str, data: Option<&str>, ledger: bool) -> Output {
    let key = issuer_key(dir);
    let mut args = vec!["certificate", "verify", cert, "--public-key", &key];
    if let Some(d) = data {
        args.extend(["--data", d]);
    }
    if ledger {
        args.extend(["--ledger", "certificates/ledger.jsonl"]);
    }
    pedf_in(dir, &args)
}

#[test]
fn issue_verify_and_refuse_double_counting() {
    let dir = scratch("ok");
    let out = issue(&dir, MORNING.0, MORNING.1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("issued QINGZHOU-PEDF-2026-000001"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("new issuer key created at .pedf/issuer.key (mode 0600)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join(".pedf/issuer.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let html =
        std::fs::read_to_string(dir.join("certificates/QINGZHOU-PEDF-2026-000001.html")).unwrap();
    assert!(
        html.contains("碳减排自我声明")
            && html.contains("Self-declared carbon-reduction statement")
            && html.contains("声明减排量")
            && !html.contains("核证减排量"),
        "a statement the park makes itself, not CCER wording"
    );
    assert!(html.contains("[C] 已在公开来源核实 confirmed in a published source"));
    assert!(
        !html.contains(">-0 ") && !html.contains(" -0 "),
        "no -0: {html}"
    );
    let pdf = std::fs::read(dir.join("certificates/QINGZHOU-PEDF-2026-000001.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-1.7") && pdf.ends_with(b"%%EOF\n"));
    // The fonts are subset: a few tens of kB, not the 4 MB Chinese font (was 2.5 MB a PDF).
    assert!(pdf.len() < 300_000, "{} bytes", pdf.len());
    let pdf_text = String::from_utf8_lossy(&pdf);
    assert!(
        pdf_text.contains("/ToUnicode") && pdf_text.contains("/CIDFontType2"),
        "fonts embedded with a Unicode map"
    );
    let json = std::fs::read_to_string(dir.join(CERT1)).unwrap();
    assert!(json.contains(
        "\"claim_status\":\"Self-declared, verifiable statement of the park; not a CCER credit"
    ));
    let r = records();
    let out = verify(&dir, CERT1, Some(&r), true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout)
            .contains("every figure recomputed from the 48 records matches; Merkle root matches"),
        "{}",
        text(&out.stdout)
    );
    // The afternoon is another period: issued as number 2. The whole day overlaps both.
    assert_eq!(issue(&dir, AFTERNOON.0, AFTERNOON.1).status.code(), Some(0));
    let out = issue(
        &dir,
        "2026-06-21T06:00:00+08:00",
        "2026-06-21T18:00:00+08:00",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the period overlaps certificate QINGZHOU-PEDF-2026-000001"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tampering_is_named() {
    let dir = scratch("tamper");
    assert_eq!(issue(&dir, MORNING.0, MORNING.1).status.code(), Some(0));
    assert_eq!(issue(&dir, AFTERNOON.0, AFTERNOON.1).status.code(), Some(0));
    let cert_path = dir.join(CERT1);
    let original = std::fs::read_to_string(&cert_path).unwrap();
    let r = records();

    // A figure changed: the signature fails, and the data names the figure.
    let forged = original.replace("\"stated_reductions_t\":", "\"stated_reductions_t\":1");
    assert_ne!(forged, original);
    std::fs::write(&cert_path, &forged).unwrap();
    let out = verify(&dir, CERT1, Some(&r), false);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("signature: signature does not match"), "{err}");
    assert!(
        err.contains("data: figures.stated_reductions_t: the certificate says 1"),
        "{err}"
    );

    // The signature changed.
    let sig_at = original.find("\"signature\":\"").unwrap() + 13;
    let mut bad_sig = original.clone().into_bytes();
    bad_sig[sig_at] = if bad_sig[sig_at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&cert_path, &bad_sig).unwrap();
    let out = verify(&dir, CERT1, None, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("signature: signature does not match"));

    // A data record changed: the signature holds, the data does not.
    std::fs::write(&cert_path, &original).unwrap();
    let data = std::fs::read_to_string(&r).unwrap();
    let line = data
        .lines()
        .find(|l| l.starts_with("2026-06-21T10:00:00+08:00"))
        .unwrap();
    let mut fields: Vec<String> = line.split(',').map(String::from).collect();
    fields[1] = format!("{:.6}", fields[1].parse::<f64>().unwrap() + 1.0);
    let changed = data.replace(line, &fields.join(","));
    let changed_path = dir.join("changed.csv");
    std::fs::write(&changed_path, changed).unwrap();
    let out = verify(&dir, CERT1, Some(changed_path.to_str().unwrap()), false);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("signature valid"));
    assert!(
        err.contains("data: records.merkle_root: the certificate says"),
        "{err}"
    );
    assert!(
        err.contains("data: monitored.pv_generated_dc_bus_mwh"),
        "{err}"
    );

    // The ledger reordered, then an entry edited.
    let ledger_path = dir.join("certificates/ledger.jsonl");
    let ledger = std::fs::read_to_string(&ledger_path).unwrap();
    let lines: Vec<&str> = ledger.lines().collect();
    std::fs::write(&ledger_path, format!("{}\n{}\n", lines[1], lines[0])).unwrap();
    let out = verify(&dir, CERT1, None, true);
    assert!(
        text(&out.stderr)
            .contains("entry 2 where 1 was expected: entries were removed or reordered"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        &ledger_path,
        ledger.replacen("2026-06-21T12:00:00+08:00", "2026-06-21T11:00:00+08:00", 1),
    )
    .unwrap();
    let out = verify(&dir, CERT1, None, true);
    assert!(
        text(&out.stderr).contains("was changed after it was written"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_issue_leaves_no_certificate_and_keys_must_be_private() {
    let dir = scratch("crash");
    // A ledger that cannot be written (its folder is a file): the issue stops before any
    // certificate file exists (even root cannot write there).
    std::fs::create_dir_all(dir.join("certificates")).unwrap();
    std::fs::write(dir.join("certificates/blocked"), "").unwrap();
    let (p, r, f) = (park(), records(), factors());
    let out = pedf_in(
        &dir,
        &[
            "certificate",
            "issue",
            "--park",
            &p,
            "--records",
            &r,
            "--factors",
            &f,
            "--from",
            MORNING.0,
            "--to",
            MORNING.1,
            "--ledger",
            "certificates/blocked/ledger.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot append to the ledger"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("no certificate was issued"),
        "{}",
        text(&out.stderr)
    );
    let files: Vec<String> = std::fs::read_dir(dir.join("certificates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["blocked"], "no certificate file, no temporary file");
    assert!(
        !dir.join(".pedf/issuer.key").exists(),
        "the ledger is checked before a key is made"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        pedf_carbon::certificate::load_or_create_key(&dir.join(".pedf/issuer.key")).unwrap();
        std::fs::set_permissions(
            dir.join(".pedf/issuer.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let out = issue(&dir, MORNING.0, MORNING.1);
        assert!(
            text(&out.stderr)
                .contains("the key file is readable by others (mode 644); chmod 600 it"),
            "{}",
            text(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A forgery: the morning's certificate with its reductions raised, re-signed by another
/// issuer's key. It names the forger's key, so its signature is consistent, and it fails
/// `verify` in every form: without a trusted key, with the issuer's key, and with a trust list
/// holding only the issuer's key. The genuine one passes with that key and also fails without
/// one.
#[test]
fn a_forgery_signed_by_another_key_does_not_verify() {
    let dir = scratch("forged");
    assert_eq!(issue(&dir, MORNING.0, MORNING.1).status.code(), Some(0));
    let genuine = std::fs::read_to_string(dir.join(CERT1)).unwrap();
    let mut cert: pedf_carbon::certificate::Certificate = serde_json::from_str(&genuine).unwrap();
    cert.figures.stated_reductions_t += 1000.0;
    let (forger, _) =
        pedf_carbon::certificate::load_or_create_key(&dir.join("forger.key")).unwrap();
    cert.sign(&forger);
    std::fs::write(
        dir.join("forged.json"),
        serde_json::to_string(&cert).unwrap(),
    )
    .unwrap();
    let issuer = issuer_key(&dir);
    std::fs::write(
        dir.join("trusted.txt"),
        format!("# the park's issuer\n{issuer}\n"),
    )
    .unwrap();
    for extra in [
        vec![],
        vec!["--public-key", issuer.as_str()],
        vec!["--trusted-keys", "trusted.txt"],
    ] {
        let mut args = vec!["certificate", "verify", "forged.json"];
        args.extend(extra.iter().copied());
        let out = pedf_in(&dir, &args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        assert!(!stdout.contains("verified"), "{args:?}: {stdout}");
        let why = if extra.is_empty() {
            "no trusted key was given"
        } else {
            "which is not a trusted key"
        };
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    let out = pedf_in(
        &dir,
        &[
            "certificate",
            "verify",
            CERT1,
            "--trusted-keys",
            "trusted.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("by the trusted key"),
        "{}",
        text(&out.stdout)
    );
    let out = pedf_in(&dir, &["certificate", "verify", CERT1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no trusted key was given"));
    // The printed certificate carries the exact command with the key and its fingerprint.
    let html =
        std::fs::read_to_string(dir.join("certificates/QINGZHOU-PEDF-2026-000001.html")).unwrap();
    assert!(html.contains(&format!("--public-key {issuer}")), "{html}");
    assert!(html.contains(&pedf_carbon::certificate::key_fingerprint(&issuer)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A certificate of format 1 (pedf's own canonical JSON, methodology 1.0), issued before
/// format 2: it still verifies with its issuer's key and ledger, says it is version 1, and its
/// records are checked by the Merkle root; a changed figure fails.
#[test]
fn version_1_certificates_still_verify_and_say_so() {
    let dir = scratch("v1");
    let v1 = format!("{ROOT}/tests/data/certificates/v1");
    let key = std::fs::read_to_string(format!("{v1}/issuer.pub")).unwrap();
    let cert = format!("{v1}/QINGZHOU-PEDF-2026-000001.json");
    let ledger = format!("{v1}/ledger.jsonl");
    let r = records();
    let out = pedf_in(
        &dir,
        &[
            "certificate",
            "verify",
            &cert,
            "--public-key",
            key.trim(),
            "--data",
            &r,
            "--ledger",
            &ledger,
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("is a version-1 certificate (format pedf-certificate/1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the records' Merkle root matches"),
        "{stdout}"
    );
    assert!(stdout.contains("hash chain intact, certificate hash matches"));
    assert!(stdout.contains("verified (version 1)"), "{stdout}");
    let original = std::fs::read_to_string(&cert).unwrap();
    let changed = original.replace(
        "\"certified_reductions_t\":7.0",
        "\"certified_reductions_t\":70.0",
    );
    assert_ne!(changed, original);
    std::fs::write(dir.join("changed.json"), changed).unwrap();
    let out = pedf_in(
        &dir,
        &[
            "certificate",
            "verify",
            "changed.json",
            "--public-key",
            key.trim(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("signature does not match"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PV plant of `loss` converter loss that delivers 72,668 MWh in 2025 at the grid meter,
/// hourly records (sun 08:00-17:00, nothing else on the bus).
fn pv_plant_year(dir: &Path, loss: f64) -> PathBuf {
    use std::fmt::Write as _;
    let hours_of_sun = 9;
    let export = 72_668_000.0 / f64::from(365 * hours_of_sun);
    let mut csv = String::from("start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh\n");
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    for d in 0..365 {
        let day = start + chrono::Duration::days(d);
        for h in 0..24u32 {
            let sun = (8..8 + hours_of_sun).contains(&h);
            let (pv, ex) = if sun {
                (export / (1.0 - loss), export)
            } else {
                (0.0, 0.0)
            };
            let _ = writeln!(
                csv,
                "{day}T{h:02}:00:00+08:00,{pv:.6},0.000000,{ex:.6},0.000000,0.000000,0.000000,0.000000"
            );
        }
    }
    let path = dir.join(format!("plant-{loss}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

/// `pedf certificate issue` for the PV plant's records, with `extra` arguments.
fn issue_plant(dir: &Path, records: &Path, extra: &[&str]) -> Output {
    let (park, f) = (format!("{ROOT}/tests/data/valid/pv-plant.toml"), factors());
    let mut args = vec![
        "certificate",
        "issue",
        "--park",
        &park,
        "--factors",
        &f,
        "--records",
        records.to_str().unwrap(),
    ];
    args.extend(extra);
    pedf_in(dir, &args)
}

/// Issue 19's case: the plant through a converter losing 3 % (and the same plant without
/// losses), with the project's own combined margin of 0.8784 t/MWh from its design document,
/// is credited floor(72,668 x 0.8784) = 63,831 t: net delivered electricity at the grid meter,
/// not the gross PV at the bus (which would give 65,806 t). Issued for the year, and for a
/// calendar month with green certificates subtracted.
#[test]
fn a_pv_plant_is_credited_on_what_it_delivers_at_the_grid_meter() {
    let dir = scratch("plant");
    for (i, loss) in [0.03, 0.0].into_iter().enumerate() {
        let records = pv_plant_year(&dir, loss);
        let out_dir = format!("out-{i}");
        let out = issue_plant(
            &dir,
            &records,
            &[
                "--from",
                "2025-01-01T00:00:00+08:00",
                "--to",
                "2026-01-01T00:00:00+08:00",
                "--out-dir",
                &out_dir,
            ],
        );
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            stdout.contains("reductions stated 63831 t CO2e"),
            "loss {loss}: {stdout}"
        );
        let json =
            std::fs::read_to_string(dir.join(format!("{out_dir}/PV-PLANT-2025-000001.json")))
                .unwrap();
        let cert: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(cert["figures"]["stated_reductions_t"], 63831);
        let m = &cert["monitored"];
        assert!((m["pv_delivered_grid_meter_mwh"].as_f64().unwrap() - 72_668.0).abs() < 1e-3);
        assert!(
            (m["pv_generated_dc_bus_mwh"].as_f64().unwrap() - 72_668.0 / (1.0 - loss)).abs() < 1e-2
        );
        let baseline = cert["factors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"] == "baseline")
            .unwrap();
        assert_eq!(baseline["value_kg_per_kwh"], 0.8784);
        assert!(
            baseline["description"]
                .as_str()
                .unwrap()
                .contains("project-specific combined-margin [C] (PDD of the plant"),
            "{baseline}"
        );
        assert!(
            json.contains("\"meters\":[\"m-export\"]"),
            "the grid meter named: {json}"
        );
    }
    // June, a calendar month, with 1,000 green certificates sold: they come off the claim.
    std::fs::write(
        dir.join("gec.csv"),
        "# green certificates of the plant\nmonth,mwh,status,reference\n2025-06,1000,sold,GEC-2025-06-0001\n",
    )
    .unwrap();
    let records = pv_plant_year(&dir, 0.03);
    let out = issue_plant(
        &dir,
        &records,
        &[
            "--month",
            "2025-06",
            "--green-certificates",
            "gec.csv",
            "--out-dir",
            "june",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cert: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("june/PV-PLANT-2025-000001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cert["period"]["from"], "2025-06-01T00:00:00+08:00");
    assert_eq!(cert["period"]["to"], "2025-07-01T00:00:00+08:00");
    let june = 72_668.0 * 30.0 / 365.0;
    let m = &cert["monitored"];
    assert!((m["net_delivered_mwh"].as_f64().unwrap() - june).abs() < 1e-3);
    assert_eq!(m["green_certificate_mwh"], 1000);
    let stated = ((june - 1000.0) * 0.8784).floor();
    assert_eq!(
        cert["figures"]["stated_reductions_t"].as_f64(),
        Some(stated)
    );
    assert_eq!(cert["green_certificates"][0]["status"], "sold");
    // A bad green-certificate file is named by line.
    std::fs::write(
        dir.join("bad.csv"),
        "month,mwh,status,reference\n2025-13,10,sold,x\n",
    )
    .unwrap();
    let out = issue_plant(
        &dir,
        &records,
        &["--month", "2025-07", "--green-certificates", "bad.csv"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.csv:2: month `2025-13` is not YYYY-MM"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pedf certificate render` writes the HTML and PDF of a signed certificate again, refuses a
/// changed one, and names a version-1 certificate as such.
#[test]
fn a_certificate_is_rendered_again_and_a_changed_one_is_not() {
    let dir = scratch("render");
    assert_eq!(issue(&dir, MORNING.0, MORNING.1).status.code(), Some(0));
    let out = pedf_in(
        &dir,
        &["certificate", "render", CERT1, "--out-dir", "copies"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pdf = std::fs::read(dir.join("copies/QINGZHOU-PEDF-2026-000001.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-1.7") && pdf.len() < 300_000);
    assert_eq!(
        std::fs::read_to_string(dir.join("copies/QINGZHOU-PEDF-2026-000001.html")).unwrap(),
        std::fs::read_to_string(dir.join("certificates/QINGZHOU-PEDF-2026-000001.html")).unwrap(),
        "the same HTML as at issue"
    );
    let json = std::fs::read_to_string(dir.join(CERT1)).unwrap();
    std::fs::write(
        dir.join("changed.json"),
        json.replacen("\"stated_reductions_t\":", "\"stated_reductions_t\":5", 1),
    )
    .unwrap();
    let out = pedf_in(&dir, &["certificate", "render", "changed.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("signature does not match")
            && text(&out.stderr).contains("a changed certificate is not rendered"),
        "{}",
        text(&out.stderr)
    );
    let v1 = format!("{ROOT}/tests/data/certificates/v1/QINGZHOU-PEDF-2026-000001.json");
    let out = pedf_in(&dir, &["certificate", "render", &v1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("a version-1 certificate"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The grid company's billing meter on a certificate: issued with `--meter-intervals` (the
/// meter's interval energies from its counters), the certificate names the meter and states
/// its import and export beside the records'; `verify --data --meter-intervals` recomputes
/// them; a certificate that states them does not verify without the meter's file, nor with a
/// changed one; a malformed meter file is refused at issue with its line.
#[test]
fn a_certificate_on_the_billing_meter_is_checked_against_the_meters_intervals() {
    let dir = scratch("billing");
    // The meter's intervals: the records' grid import plus 0.4 % (the utility's meter sees
    // the converter's losses the records' figure does not), every interval of the morning.
    let mut meter = String::from(
        "# the grid company's meter, from its counters\nmeter,start,import_kwh,export_kwh\n",
    );
    for line in std::fs::read_to_string(records()).unwrap().lines() {
        let f: Vec<&str> = line.split(',').collect();
        if !f[0].starts_with("2026-06-21T") || f[0] >= MORNING.1 {
            continue;
        }
        let import: f64 = f[2].parse().unwrap();
        meter.push_str(&format!("grid,{},{:.6},{}\n", f[0], import * 1.004, f[3]));
    }
    std::fs::write(dir.join("meter.csv"), &meter).unwrap();
    let (p, r, f) = (park(), records(), factors());
    let issue_with = |m: &str| {
        pedf_in(
            &dir,
            &[
                "certificate",
                "issue",
                "--park",
                &p,
                "--records",
                &r,
                "--factors",
                &f,
                "--from",
                MORNING.0,
                "--to",
                MORNING.1,
                "--meter-intervals",
                m,
            ],
        )
    };
    std::fs::write(
        dir.join("bad.csv"),
        "meter,start,import_kwh,export_kwh\ngrid,2026-06-21T00:00:00+08:00,lots,0\n",
    )
    .unwrap();
    let out = issue_with("bad.csv");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.csv:2: import_kwh: `lots` is not an energy"),
        "{}",
        text(&out.stderr)
    );
    let out = issue_with("meter.csv");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cert: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(CERT1)).unwrap()).unwrap();
    let b = &cert["billing_meter"];
    assert_eq!(b["meters"], serde_json::json!(["grid"]), "{b}");
    assert_eq!(b["intervals_counted"], 48, "{b}");
    let share = b["import_difference_share"].as_f64().unwrap();
    assert!((share + 0.004 / 1.004).abs() < 1e-5, "{b}");
    let key = issuer_key(&dir);
    let check = |more: &[&str]| {
        let mut args = vec![
            "certificate",
            "verify",
            CERT1,
            "--public-key",
            &key,
            "--data",
            &r,
        ];
        args.extend(more);
        pedf_in(&dir, &args)
    };
    let out = check(&["--meter-intervals", "meter.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "the billing meter's figures (grid, 48 intervals) recomputed from its intervals match"
        ),
        "{}",
        text(&out.stdout)
    );
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no meter intervals were given to check them"),
        "{}",
        text(&out.stderr)
    );
    // The first interval's import with a leading 1: 105.7 kWh becomes 1105.7.
    let changed = meter.replacen(
        "grid,2026-06-21T00:00:00+08:00,",
        "grid,2026-06-21T00:00:00+08:00,1",
        1,
    );
    assert_ne!(changed, meter);
    std::fs::write(dir.join("changed.csv"), changed).unwrap();
    let out = check(&["--meter-intervals", "changed.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("billing_meter.import_mwh: the certificate says")
            && said.contains("billing_meter.intervals_sha256"),
        "{said}"
    );
    let out = pedf_in(
        &dir,
        &[
            "certificate",
            "verify",
            CERT1,
            "--public-key",
            &key,
            "--meter-intervals",
            "meter.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("give --data FILE too"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
