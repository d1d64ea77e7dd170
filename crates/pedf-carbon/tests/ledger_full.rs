//! A disk that fills in the middle of a ledger append leaves the ledger as it was: the part
//! of the line that was written is taken back, and the next issue reads a valid ledger. The
//! full disk is real: a child process whose file-size limit (RLIMIT_FSIZE) stops the append
//! a hundred bytes in, as the kernel stops a write on a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use pedf_carbon::account::Options;
use pedf_carbon::certificate::{
    read_ledger, Certificate, CertificateIssuer, IssuePeriod, LockedLedger, Rendered,
    DEFAULT_MIN_COVERAGE,
};
use pedf_carbon::factors::{choose, FactorTable};
use pedf_core::records::IntervalRecord;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Issues the reference park's 21 June 2026 (PV at midday) into `dir`.
fn issue_a_day(dir: &Path) -> Certificate {
    let path = format!("{ROOT}/config/qingzhou-pedf.toml");
    let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
        .value
        .unwrap();
    let day = park
        .clock
        .start_of_local_day(chrono::NaiveDate::from_ymd_opt(2026, 6, 21).unwrap());
    let records: Vec<IntervalRecord> = (0..96)
        .map(|k| {
            let sun = (32..64).contains(&k);
            IntervalRecord {
                start: day + chrono::Duration::minutes(15 * k),
                pv_kwh: if sun { 100.0 } else { 0.0 },
                grid_import_kwh: if sun { 0.0 } else { 52.0 },
                load_kwh: 50.0,
                grid_export_kwh: if sun { 47.5 } else { 0.0 },
                ..Default::default()
            }
        })
        .collect();
    let choice = choose(&park, FactorTable::shipped(), 2026, "auto").unwrap();
    let options = Options::for_park(&park, &choice, 0.0);
    let to = day + chrono::Duration::days(1);
    CertificateIssuer {
        out_dir: dir,
        key: &dir.join("issuer.key"),
        ledger: None,
        min_coverage: DEFAULT_MIN_COVERAGE,
    }
    .issue(
        IssuePeriod {
            park: &park,
            records: &records,
            from: day,
            to,
            options: &options,
            choice: &choice,
            green_certificates: Vec::new(),
            simulated: None,
            meter_intervals: Vec::new(),
        },
        to,
        |c| Rendered {
            html: c.serial.clone(),
            pdf: Err("not needed".into()),
        },
    )
    .unwrap()
    .cert
}

/// Run only as the child of `a_full_disk_mid_append_leaves_the_ledger_as_it_was` (ignored
/// otherwise, never counted as a pass): appends an entry with the file size limited to 100
/// bytes past the ledger's end, and reports what the append said.
#[test]
#[ignore = "the child process of a_full_disk_mid_append_leaves_the_ledger_as_it_was"]
fn child_appends_on_a_full_disk() {
    let dir = PathBuf::from(
        std::env::var_os("PEDF_LEDGER_CHILD")
            .expect("run by a_full_disk_mid_append_leaves_the_ledger_as_it_was"),
    );
    let ledger = dir.join("ledger.jsonl");
    let cert: Certificate = serde_json::from_str(
        &std::fs::read_to_string(dir.join("QINGZHOU-PEDF-2026-000001.json")).unwrap(),
    )
    .unwrap();
    let mut held = LockedLedger::open(&ledger).unwrap();
    let size = std::fs::metadata(&ledger).unwrap().len();
    // SAFETY: plain libc calls on this process alone: the file-size limit, and SIGXFSZ
    // ignored so the write fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: size + 100,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    match held.append(&cert) {
        Ok(_) => println!("appended"),
        Err(e) => println!("refused: {e}"),
    }
}

#[test]
fn a_full_disk_mid_append_leaves_the_ledger_as_it_was() {
    let dir = std::env::temp_dir().join(format!("pedf-ledger-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    issue_a_day(&dir);
    let ledger = dir.join("ledger.jsonl");
    let before = std::fs::read_to_string(&ledger).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appends_on_a_full_disk",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PEDF_LEDGER_CHILD", &dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("refused:") && said.contains("cannot append to the ledger"),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The hundred bytes the append wrote are gone: the ledger is what it was, and valid.
    let after = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(after, before);
    assert_eq!(read_ledger(&after, "ledger").unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
