//! End-to-end tests of `pedf carbon report` and `pedf plan --records-out`.

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

const PARK: &str = "config/qingzhou-pedf.toml";
const RECORDS: &str = "simulations/qingzhou-pedf/records/2026-06-21.csv";
const DAY: [&str; 4] = [
    "--from",
    "2026-06-21T00:00:00+08:00",
    "--to",
    "2026-06-22T00:00:00+08:00",
];

#[test]
fn report_of_the_example_day_balances_and_cites_its_factors() {
    let mut args = vec![
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--format",
        "json",
    ];
    args.extend(DAY);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr)
        .contains("note: no factor published for 2026 yet: data year 2023 is used"));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &doc["totals"];
    assert_eq!(t["intervals"], 96);
    assert_eq!(t["estimated_intervals"], 0);
    assert_eq!(doc["factors"]["location"]["value"], 0.6361);
    assert_eq!(doc["factors"]["location"]["status"], "[C]");
    let f = |k: &str| t[k].as_f64().unwrap();
    // Location-based = import x factor; energy balance: PV + discharge + import = consumption
    // + charge + export + losses (losses on the import path included).
    assert!((f("location_based_kg") - f("grid_import_kwh") * 0.6361).abs() < 0.01);
    let supply = f("pv_kwh") + f("battery_discharge_kwh") + f("grid_import_kwh");
    let flows = &doc["flows_kwh"];
    let sum: f64 = ["pv", "battery", "grid"]
        .iter()
        .flat_map(|s| {
            ["loads", "ev", "battery", "export", "losses"].map(|k| flows[s][k].as_f64().unwrap())
        })
        .sum();
    assert!(
        supply >= sum - 0.01 && supply - sum < 0.05 * supply,
        "supply {supply} vs allocated {sum}"
    );
    assert!(f("cfe_score") > 0.0 && f("cfe_score") <= 1.0);
    // The table names what matters.
    let mut args = vec![
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--covered-mwh",
        "2",
        "--baseline",
        "combined-margin",
    ];
    args.extend(DAY);
    let out = pedf(&args);
    let table = text(&out.stdout);
    assert!(
        table.contains("Scope 2 market-based") && table.contains("(2 MWh covered)"),
        "{table}"
    );
    assert!(
        table.contains("combined margin (CDM tool 07, solar) = 0.75 x OM 0.9419 + 0.25 x BM 0.48, both of the 2019 edition; OM [S]"),
        "{table}"
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("pedf-carbon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh\n2026-06-21T12:00:00+08:00,10,0,0,0,0,20,0\n").unwrap();
    let mut args = vec![
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        bad.to_str().unwrap(),
    ];
    args.extend(DAY);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("bad.csv:2:1: error: 20.000 kWh leave the bus but only 10.000 kWh enter it"),
        "{}",
        text(&out.stderr)
    );
    // A period before any published factor.
    let out = pedf(&[
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--from",
        "2019-06-21T00:00:00+08:00",
        "--to",
        "2019-06-22T00:00:00+08:00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "no regional-average factor for north-china published for 2019 or any year before it"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = pedf(&[
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--from",
        "yesterday",
        "--to",
        "2026-06-22T00:00:00+08:00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--from: `yesterday` is not an RFC 3339 time"),
        "{}",
        text(&out.stderr)
    );
    // Eight thousand years: refused with the limit named (it once aborted on memory).
    let out = pedf(&[
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--from",
        "2021-01-01T00:00:00+08:00",
        "--to",
        "9999-12-31T00:00:00+08:00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("at most 366 days (a year) are accounted at once"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_ev_session_gets_its_green_share() {
    let mut args = vec![
        "carbon",
        "report",
        "--park",
        PARK,
        "--records",
        RECORDS,
        "--format",
        "json",
        "--sessions",
        "simulations/qingzhou-pedf/day-inputs/ev-sessions.csv",
    ];
    args.extend(DAY);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = doc["ev_sessions"].as_array().unwrap();
    assert!(sessions.len() > 20);
    let total: f64 = sessions.iter().map(|s| s["kwh"].as_f64().unwrap()).sum();
    let ev = doc["flows_kwh"]["pv"]["ev"].as_f64().unwrap()
        + doc["flows_kwh"]["battery"]["ev"].as_f64().unwrap()
        + doc["flows_kwh"]["grid"]["ev"].as_f64().unwrap();
    assert!(
        (total - ev).abs() < 0.5,
        "sessions {total} kWh vs EV {ev} kWh"
    );
    for s in sessions {
        let g = s["green_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&g), "{s}");
    }
    assert!(
        sessions
            .iter()
            .any(|s| s["green_share"].as_f64().unwrap() > 0.99),
        "a midday session on PV"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s["green_share"].as_f64().unwrap() < 0.01),
        "an evening session on grid"
    );
}
