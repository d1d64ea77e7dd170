//! `pedf check` on a run file: pedf-runtime checks it as `pedf run` would start from it.

use pedf_runtime::config::{check_run_file, is_run_file_text};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[test]
fn the_reference_run_file_is_valid() {
    let path = std::path::PathBuf::from(format!("{ROOT}/config/run-qingzhou.toml"));
    assert!(is_run_file_text(&std::fs::read_to_string(&path).unwrap()));
    let check = check_run_file(&path);
    assert!(check.valid, "{:?}", check.messages);
    assert!(
        check.summary.contains("server on 127.0.0.1:8080"),
        "{}",
        check.summary
    );
}

/// Every file and folder the run names is checked, each problem naming its table and key.
#[test]
fn a_run_file_naming_missing_files_says_which() {
    let dir = std::env::temp_dir().join(format!("pedf-run-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n\n[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"no.crt\"\ntls_key = \"no.key\"\nemission_factors = \"{ROOT}/config/emission-factors/china-grid.toml\"\n\n[replan]\ninputs = \"no-such-folder\"\n"
        ),
    )
    .unwrap();
    let check = check_run_file(&path);
    assert!(!check.valid);
    let all = check.messages.join("\n");
    for want in [
        "[server] tls_cert = ",
        "[server] tls_key = ",
        "[replan] inputs = ",
    ] {
        assert!(all.contains(want), "{want} not in:\n{all}");
    }
    // A park file is not a run file.
    assert!(!is_run_file_text(
        &std::fs::read_to_string(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap()
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
