//! End-to-end tests of `pedf forecast pv`: its output feeds `pedf plan`; bad input is located.

use std::path::PathBuf;
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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pedf-forecast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const PARK: &str = "config/qingzhou-pedf.toml";

#[test]
fn the_reference_forecast_for_the_planning_day_feeds_pedf_plan() {
    let dir = scratch("plan");
    let pv = dir.join("pv.csv");
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--out",
        pv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("note: no weather given: clear sky"),
        "{}",
        text(&out.stderr)
    );
    let csv = std::fs::read_to_string(&pv).unwrap();
    assert!(
        csv.contains("start,pv-roof-a,pv-roof-b,pv-carport\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().filter(|l| !l.starts_with('#')).count(), 97);
    for f in ["loads.csv", "ev-sessions.csv", "carbon-intensity.csv"] {
        std::fs::copy(
            format!("simulations/qingzhou-pedf/day-inputs/{f}"),
            dir.join(f),
        )
        .unwrap();
    }
    let d = dir.to_str().unwrap();
    let out = pedf(&[
        "plan",
        "--park",
        PARK,
        "--inputs",
        d,
        "--date",
        "2026-06-21",
        "--format",
        "json",
        "--time-limit",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The plan's PV at 12:00 is the forecast's total at 12:00.
    let row = csv
        .lines()
        .find(|l| l.starts_with("2026-06-21T12:00:00+08:00"))
        .unwrap();
    let total: f64 = row
        .split(',')
        .skip(1)
        .map(|v| v.parse::<f64>().unwrap())
        .sum();
    let noon = plan["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["start"] == "2026-06-21T12:00:00+08:00")
        .unwrap();
    assert!(
        (noon["pv_available_kw"].as_f64().unwrap() - total).abs() < 0.01,
        "{noon} vs {total}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_and_table_outputs() {
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--days",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["intervals"].as_array().unwrap().len(), 192);
    assert_eq!(doc["arrays"].as_array().unwrap().len(), 3);
    assert!(doc["arrays"][0]["energy_kwh"].as_f64().unwrap() > 1000.0);
    assert_eq!(doc["intervals"][0]["total_kw"], 0.0);
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-12-21",
        "--format",
        "table",
    ]);
    let table = text(&out.stdout);
    assert!(
        table.contains("pv-roof-a") && table.contains("total"),
        "{table}"
    );
}

#[test]
fn weather_and_history_files_change_the_forecast_and_are_reported() {
    let dir = scratch("weather");
    let mut w = String::from("# hourly forecast\ntime,cloud_cover_pct,temp_air_c\n");
    for h in 0..=24 {
        if h == 10 || h == 11 {
            continue; // a two-hour gap: filled and reported
        }
        let (d, hh) = (21 + h / 24, h % 24);
        w.push_str(&format!(
            "2026-06-{d:02}T{hh:02}:00:00+08:00,{},24\n",
            if h < 12 { 20 } else { 90 }
        ));
    }
    let wp = dir.join("weather.csv");
    std::fs::write(&wp, w).unwrap();
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--weather",
        wp.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("2 missing hour(s) before line 13 filled by linear interpolation"),
        "{stderr}"
    );
    assert!(
        stderr.contains("irradiance from cloud cover (Kasten-Czeplak 1980)"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = |t: &str| {
        doc["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["start"] == t)
            .unwrap()["total_kw"]
            .as_f64()
            .unwrap()
    };
    assert!(
        at("2026-06-21T15:00:00+08:00") < 0.6 * at("2026-06-21T09:00:00+08:00"),
        "overcast afternoon"
    );

    // History: the model over-forecasts by 20 % every day; the correction learns it.
    let mut h = String::from("start,array,forecast_kw,measured_kw\n");
    for day in 1..=20 {
        for hour in 8..17 {
            h.push_str(&format!(
                "2026-06-{day:02}T{hour:02}:00:00+08:00,pv-roof-b,400,320\n"
            ));
        }
    }
    let hp = dir.join("pv-history.csv");
    std::fs::write(&hp, h).unwrap();
    let base = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--format",
        "json",
    ]);
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--history",
        hp.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("bias correction learned from 14 day(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rolling backtest over 6 day(s)"),
        "{stderr}"
    );
    let energy = |o: &Output, i: usize| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["arrays"][i]["energy_kwh"]
            .as_f64()
            .unwrap()
    };
    let ratio = energy(&out, 1) / energy(&base, 1);
    assert!(ratio < 0.9 && ratio > 0.8, "pv-roof-b corrected by {ratio}");
    assert_eq!(
        energy(&out, 0),
        energy(&base, 0),
        "arrays without history are unchanged"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_located_and_exits_1() {
    let dir = scratch("bad");
    let wp = dir.join("weather.csv");
    std::fs::write(
        &wp,
        "time,ghi_w_m2,temp_air_c\n2026-06-21T00:00:00+08:00,0,300\n",
    )
    .unwrap();
    let w = wp.to_str().unwrap();
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--weather",
        w,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("weather.csv:2:29: error: temp_air_c: 300 is outside -60..60"),
        "{stderr}"
    );
    // A valid file that does not cover the day.
    std::fs::write(
        &wp,
        "time,ghi_w_m2\n2026-06-21T00:00:00+08:00,0\n2026-06-21T01:00:00+08:00,0\n",
    )
    .unwrap();
    let out = pedf(&[
        "forecast",
        "pv",
        "--park",
        PARK,
        "--date",
        "2026-06-21",
        "--weather",
        w,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("covers 2026-06-21T00:00:00+08:00 to 2026-06-21T01:00:00+08:00"),
        "{}",
        text(&out.stderr)
    );
    for (args, needle) in [
        (
            vec!["--date", "21/06/2026"],
            "--date: `21/06/2026` is not a date",
        ),
        (
            vec!["--date", "2026-06-21", "--days", "0"],
            "--days: 0 is outside 1..366",
        ),
        (
            vec!["--date", "2026-06-21", "--linke-turbidity", "12"],
            "--linke-turbidity: 12 is outside 1..10",
        ),
    ] {
        let mut a = vec!["forecast", "pv", "--park", PARK];
        a.extend(args);
        let out = pedf(&a);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_day_planned_from_forecasts_alone() {
    // 2026-06-25 lies after the example week: PV from the park file, loads and EV sessions
    // from the week's history, then a plan from those three files only.
    let dir = scratch("alone");
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let week = "simulations/qingzhou-pedf/day-inputs";
    let (pv, loads, ev) = (d("pv.csv"), d("loads.csv"), d("ev-sessions.csv"));
    let runs = [
        vec![
            "forecast",
            "pv",
            "--park",
            PARK,
            "--date",
            "2026-06-25",
            "--out",
            &pv,
        ],
        vec![
            "forecast",
            "load",
            "--park",
            PARK,
            "--date",
            "2026-06-25",
            "--history",
            "simulations/qingzhou-pedf/day-inputs/loads.csv",
            "--out",
            &loads,
        ],
        vec![
            "forecast",
            "ev",
            "--park",
            PARK,
            "--date",
            "2026-06-25",
            "--sessions",
            "simulations/qingzhou-pedf/day-inputs/ev-sessions.csv",
            "--out",
            &ev,
        ],
    ];
    for args in &runs {
        let out = pedf(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let loads = std::fs::read_to_string(dir.join("loads.csv")).unwrap();
    assert!(loads.contains("start,office,lab,hvac\n"), "{loads}");
    let week_loads = std::fs::read_to_string(format!("{week}/loads.csv")).unwrap();
    // Thursday 25 June is forecast from the workdays of the week; at 10:00 the office load is
    // the weighted mean of the week's workday values at 10:00, so within their range.
    let office_at = |csv: &str, t: &str| -> f64 {
        csv.lines()
            .find(|l| l.starts_with(t))
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let f = office_at(&loads, "2026-06-25T10:00:00+08:00");
    let past: Vec<f64> = ["18", "19", "22", "23", "24"]
        .iter()
        .map(|day| office_at(&week_loads, &format!("2026-06-{day}T10:00:00+08:00")))
        .collect();
    let (lo, hi) = past
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(f >= lo - 1e-6 && f <= hi + 1e-6, "{f} outside {lo}..{hi}");
    let sessions = std::fs::read_to_string(dir.join("ev-sessions.csv")).unwrap();
    assert!(
        sessions.lines().filter(|l| l.starts_with("f0625-")).count() > 10,
        "{sessions}"
    );
    let out = pedf(&[
        "plan",
        "--park",
        PARK,
        "--inputs",
        &dir.to_string_lossy(),
        "--date",
        "2026-06-25",
        "--format",
        "json",
        "--time-limit",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["intervals"].as_array().unwrap().len(), 96);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_and_ev_history_errors_exit_1() {
    let dir = scratch("hist");
    let h = dir.join("h.csv");
    std::fs::write(
        &h,
        "start,office,lab,hvac\n2026-06-01T00:00:00+08:00,1,x,3\n",
    )
    .unwrap();
    let out = pedf(&[
        "forecast",
        "load",
        "--park",
        PARK,
        "--date",
        "2026-06-02",
        "--history",
        h.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("h.csv:2:29: error: lab: `x` is not a number >= 0"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&h, "id,charger,arrival,departure\n").unwrap();
    let out = pedf(&[
        "forecast",
        "ev",
        "--park",
        PARK,
        "--date",
        "2026-06-02",
        "--sessions",
        h.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("header is `id,charger,arrival,departure`"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
