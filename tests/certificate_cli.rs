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
        html.contains("碳减排证书")
            && html.contains("Carbon-reduction certificate")
            && html.contains("核证减排量")
    );
    let pdf = std::fs::read(dir.join("certificates/QINGZHOU-PEDF-2026-000001.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-1.7") && pdf.ends_with(b"%%EOF\n"));
    let pdf_text = String::from_utf8_lossy(&pdf);
    assert!(
        pdf_text.contains("/ToUnicode") && pdf_text.contains("/CIDFontType2"),
        "fonts embedded with a Unicode map"
    );
    let json = std::fs::read_to_string(dir.join(CERT1)).unwrap();
    assert!(
        json.contains("\"claim_status\":\"The park's own verifiable statement; not a CCER credit")
    );
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
    let forged = original.replace(
        "\"certified_reductions_t\":",
        "\"certified_reductions_t\":1",
    );
    assert_ne!(forged, original);
    std::fs::write(&cert_path, &forged).unwrap();
    let out = verify(&dir, CERT1, Some(&r), false);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("signature: signature does not match"), "{err}");
    assert!(
        err.contains("data: figures.certified_reductions_t: the certificate says 1"),
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
    assert!(err.contains("data: monitored.pv_generated_mwh"), "{err}");

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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
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
    cert.figures.certified_reductions_t += 1000.0;
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
