//! Certificates checked with implementations pedf did not write (the venv scripts/setup makes):
//! Python `rfc8785` for the canonical JSON, `cryptography` for the ed25519 signature, `pymerkle`
//! for the RFC 6962 Merkle root, `pypdf` and `fontTools` for the PDF's text and subset fonts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> PathBuf {
    let p = Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        p.display()
    );
    p
}

fn peer(args: &[&str]) -> Output {
    Command::new(python())
        .arg(format!("{ROOT}/tests/peers/check_certificate.py"))
        .args(args)
        .output()
        .expect("the peer runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pedf-peers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn canonical_json_is_byte_for_byte_python_rfc8785() {
    let dir = scratch("jcs");
    let doc = r#"{"numbers":[0,-0.0,12.0,0.6361,1e21,1e20,1e-6,1e-7,-1.5e-7,123.456e30,0.30000000000000004,9007199254740991,5e-324,1.7976931348623157e308,333333333.3333333,63831.5712,-2.5],
        "strings":["x\u0001\n\t\"\\/","碳减排 ✓","\u007f","😀"],
        "😀":1,"\ufb01":2,"b":{"z":null,"y":true,"a":false},"a":[]}"#;
    let path = dir.join("doc.json");
    std::fs::write(&path, doc).unwrap();
    let out = peer(&["jcs", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_str(doc).unwrap();
    let ours = pedf_carbon::jcs::canonicalize(&value).unwrap();
    assert_eq!(ours, text(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_certificate_checks_out_with_outside_implementations_and_a_changed_one_does_not() {
    let dir = scratch("cert");
    let records = format!("{ROOT}/simulations/qingzhou-pedf/records/2026-06-21.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_pedf"))
        .args([
            "certificate",
            "issue",
            "--park",
            &format!("{ROOT}/config/qingzhou-pedf.toml"),
            "--records",
            &records,
            "--factors",
            &format!("{ROOT}/config/emission-factors/china-grid.toml"),
            "--from",
            "2026-06-21T06:00:00+08:00",
            "--to",
            "2026-06-21T18:00:00+08:00",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (key, _) =
        pedf_carbon::certificate::load_or_create_key(&dir.join(".pedf/issuer.key")).unwrap();
    let key: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cert = dir.join("certificates/QINGZHOU-PEDF-2026-000001.json");
    let pdf = dir.join("certificates/QINGZHOU-PEDF-2026-000001.pdf");
    let (c, p) = (cert.to_str().unwrap(), pdf.to_str().unwrap());
    let out = peer(&["certificate", c, &key, &records, p]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    for check in [
        "ok signature over the RFC 8785 bytes",
        "ok RFC 6962 Merkle root of 48 records",
        "ok PDF text of",
        "embedded fonts parse",
    ] {
        assert!(said.contains(check), "{check}: {said}");
    }
    // The same checks fail on a changed figure and on another day's records: the peer is no
    // rubber stamp.
    let json = std::fs::read_to_string(&cert).unwrap();
    let changed = json.replacen(
        "\"scope2_location_based_t\":",
        "\"scope2_location_based_t\":9",
        1,
    );
    assert_ne!(changed, json);
    std::fs::write(&cert, changed).unwrap();
    let out = peer(&["certificate", c, &key, &records]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL signature"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&cert, &json).unwrap();
    let data = std::fs::read_to_string(&records).unwrap();
    let noon = data
        .lines()
        .find(|l| l.starts_with("2026-06-21T12:00:00+08:00"))
        .unwrap();
    let other = dir.join("changed.csv");
    std::fs::write(
        &other,
        data.replace(noon, &noon.replacen(",0.000000", ",0.000001", 1)),
    )
    .unwrap();
    let out = peer(&["certificate", c, &key, other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL RFC 6962 Merkle root"),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
