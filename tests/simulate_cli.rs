//! `pedf simulate` and `pedf check` on scenario folders, as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn pedf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedf"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("pedf runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_reference_scenario() {
    let o = pedf(&["check", "simulations/qingzhou-pedf"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("scenario is valid"), "{out}");
}

#[test]
fn check_locates_every_mistake_of_a_broken_scenario() {
    let o = pedf(&["check", "tests/data/broken-scenario"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    for want in [
        "scenario.toml:5:9: error: start: `2026-02-30` is not a date",
        "ev.group[0].dwell_h: [5, -2] is not a range",
        "a session that leaves before it arrives is impossible",
        "ev.group[1].weekday_per_day: -3 is outside",
        "ev.group[1].energy_kwh: [-5, 45]",
        "grid_carbon.hourly_shape: 2 values",
        "optimized.replan_every_min: 7 does not divide a day",
        "climate.csv:13:23: error: months 3 missing",
        "load-profiles.csv:31:11: error: -180 is outside",
        "weekday profile of `office` has 23 of 24 hours (missing 11)",
        "scenario.toml:45:1: error: baseline.days = 40: give 1 to 30 like days",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn simulate_refuses_a_broken_scenario_before_starting() {
    let dir = std::env::temp_dir().join(format!("pedf-sim-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = pedf(&[
        "simulate",
        "tests/data/broken-scenario",
        "--days",
        "1",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("nothing was simulated"), "{err}");
    assert!(!dir.join("report.json").exists(), "no half-run report");
    let o = pedf(&["simulate", "simulations/qingzhou-pedf", "--days", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--days 0"), "{}", text(&o).1);
}

#[test]
fn simulate_writes_the_report_and_plots() {
    let dir = std::env::temp_dir().join(format!("pedf-sim-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = pedf(&[
        "simulate",
        "simulations/qingzhou-pedf",
        "--days",
        "2",
        "--strategy",
        "rule",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("2 days from 2026-01-01"), "{out}");
    assert!(out.contains("balance residual"), "{out}");
    for f in [
        "report.txt",
        "report.json",
        "monthly.csv",
        "comparison.svg",
        "comparison.png",
        "week.svg",
        "week.png",
    ] {
        let p = dir.join(f);
        assert!(
            Path::new(&p)
                .metadata()
                .map(|m| m.len() > 100)
                .unwrap_or(false),
            "{f} missing or empty"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let r = &json["results"][0];
    assert_eq!(r["strategy"], "rule");
    assert!(r["energy"]["balance_residual_share"].as_f64().unwrap() < 1e-4);
    assert!(r["solver"]["plans"].as_u64().unwrap() >= 48);
    let csv = std::fs::read_to_string(dir.join("monthly.csv")).unwrap();
    assert!(
        csv.starts_with("strategy,month,") && csv.contains("rule,2026-01,"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
