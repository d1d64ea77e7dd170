//! End-to-end tests of the `pedf` binary: exit codes, messages and output as a user sees them.

use std::process::{Command, Output};

fn pedf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedf"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("pedf runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_of_the_reference_park_prints_a_summary_and_succeeds() {
    let out = pedf(&["check", "config/qingzhou-pedf.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("config/qingzhou-pedf.toml: park is valid"));
    for needle in [
        "park qingzhou-pedf",
        "Asia/Shanghai",
        "2000 kWp",
        "2000 kWh",
        "1500 kW",
        "20 charger(s), up to 60 kW each",
        "deep_valley",
        "11:00-14:00 deep_valley",
        "0.6361",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    // One screen: the summary fits in a terminal.
    assert!(stdout.lines().count() <= 30, "{stdout}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn check_of_a_broken_copy_lists_every_problem_with_line_and_column() {
    let out = pedf(&["check", "tests/data/broken/qingzhou-broken.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let located: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tests/data/broken/qingzhou-broken.toml:"))
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(located.len(), 10, "{stderr}");
    assert_eq!(stderr.matches("    hint: ").count(), 10, "{stderr}");
    assert!(stderr.contains("10 error(s), 0 warning(s)"));
    assert!(out.stdout.is_empty());
}

#[test]
fn check_reports_all_files_and_fails_if_any_is_broken() {
    let out = pedf(&[
        "check",
        "-q",
        "config/qingzhou-pedf.toml",
        "tests/data/broken/empty.toml",
        "tests/data/valid/minimal.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("config/qingzhou-pedf.toml: park is valid"));
    assert!(stdout.contains("tests/data/valid/minimal.toml: park is valid"));
    assert!(!stdout.contains("location"), "-q prints no summary");
    assert!(text(&out.stderr)
        .contains("tests/data/broken/empty.toml:1:1: error: missing section [park]"));
}

#[test]
fn a_missing_file_or_a_directory_is_a_user_error_naming_it() {
    let out = pedf(&["check", "no/such/park.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no/such/park.toml: error: cannot read"));
    let out = pedf(&["check", "config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("config: error: cannot read: is a directory"));
}

#[test]
fn help_lists_commands_with_examples() {
    let out = pedf(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("check"), "{help}");
    assert!(help.contains("Example"), "{help}");
    let out = pedf(&["check", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("pedf check config/qingzhou-pedf.toml"));
}

#[test]
fn bad_arguments_exit_1_without_a_backtrace() {
    for args in [
        &["check"][..],
        &["frobnicate"][..],
        &["check", "--bogus", "x"][..],
        &[][..],
    ] {
        let out = pedf(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    }
}

#[test]
fn verbose_logging_goes_to_stderr() {
    let out = pedf(&["-v", "check", "-q", "tests/data/valid/minimal.toml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("checking"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("checking"));
}

#[test]
fn a_non_utf8_file_is_located() {
    let out = pedf(&["check", "tests/data/broken/non-utf8.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("non-utf8.toml:4:17: error: the file is not UTF-8 text"));
}

#[test]
fn warnings_are_shown_but_do_not_fail_the_check() {
    let out = pedf(&["check", "-q", "tests/data/valid/warnings.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: carbon.factor_status: grid factor 0.641 is secondary [S]: it will be shown as an unverified factor"), "{stderr}");
    assert!(stderr.contains("warning: grid.export_limit_kw"), "{stderr}");
    assert!(text(&out.stdout).contains("park is valid (2 warning(s))"));
}
