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
    // Each command with its own line (run's once sat under demo, run had none).
    let line = |cmd: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("run").contains("The EMS against devices"), "{help}");
    assert!(
        line("demo").contains("The reference park simulated"),
        "{help}"
    );
    let out = pedf(&["run", "--help"]);
    assert!(text(&out.stdout).contains("pedf run --config config/run-qingzhou.toml"));
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

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pedf-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const PLAN: [&str; 7] = [
    "plan",
    "--park",
    "config/qingzhou-pedf.toml",
    "--inputs",
    "simulations/qingzhou-pedf/day-inputs",
    "--date",
    "2026-06-21",
];

#[test]
fn plan_prints_the_summary_and_writes_json_csv_and_plot() {
    let dir = scratch("plan");
    let mut args = PLAN.to_vec();
    let d = dir.to_string_lossy().to_string();
    args.extend(["--out-dir", &d, "--time-limit", "3"]);
    let out = pedf(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for needle in [
        "plan qingzhou-pedf 2026-06-21: 96 x 15 min",
        "objective",
        "vs rule-based",
        "hour  price",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let json = std::fs::read_to_string(dir.join("plan-2026-06-21.json")).expect("json written");
    for field in [
        "\"objective_cny\"",
        "\"energy_cost_cny\"",
        "\"export_revenue_cny\"",
        "\"carbon_kg\"",
        "\"solver\"",
        "\"mip_gap\"",
        "\"seconds\"",
        "\"intervals\"",
        "\"start\"",
        "\"grid_import_kw\"",
        "\"grid_export_kw\"",
        "\"pv_available_kw\"",
        "\"pv_used_kw\"",
        "\"battery_charge_kw\"",
        "\"battery_discharge_kw\"",
        "\"battery_soc_kwh\"",
        "\"fixed_load_kw\"",
        "\"flexible_load_kw\"",
        "\"ev_kw\"",
        "\"ev_chargers\"",
    ] {
        assert!(json.contains(field), "JSON lacks {field}");
    }
    assert!(json.contains("\"start\": \"2026-06-21T00:00:00+08:00\""));
    let csv = std::fs::read_to_string(dir.join("plan-2026-06-21.csv")).expect("csv written");
    assert_eq!(csv.lines().count(), 97);
    let svg = std::fs::read_to_string(dir.join("plan-2026-06-21.svg")).expect("svg written");
    assert!(svg.starts_with("<svg") && svg.contains("PV used"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_json_to_stdout_and_png_plot() {
    let dir = scratch("png");
    let png = dir.join("plan.png").to_string_lossy().to_string();
    let mut args = PLAN.to_vec();
    args.extend(["--format", "json", "--plot", &png, "--strategy", "rule"]);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(json.trim_start().starts_with('{') && json.contains("\"strategy\": \"rule\""));
    let bytes = std::fs::read(&png).expect("png written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The month's peak so far: importing up to it is free, the plan says what it assumed, and a
/// two-day horizon plans both days.
#[test]
fn plan_takes_the_months_peak_and_several_days() {
    let mut args = PLAN.to_vec();
    args.extend([
        "--format",
        "json",
        "--month-peak",
        "900",
        "--days",
        "2",
        "--time-limit",
        "3",
    ]);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(plan["intervals"].as_array().map(Vec::len), Some(192));
    assert_eq!(plan["month_peak_before_kw"].as_f64(), Some(900.0));
    assert_eq!(plan["demand_free_up_to_kw"].as_f64(), Some(900.0));
    // No import above the month's peak is needed on these days: no demand charge.
    let peak = plan["peak_import_kw"].as_f64().unwrap();
    assert!(peak <= 900.0 + 1e-6, "{peak}");
    assert!(plan["demand_charge_cny"].as_f64().unwrap().abs() < 1e-6);
    let mut args = PLAN.to_vec();
    args.extend(["--format", "table", "--month-peak", "-5"]);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`-5` is not a power in kW"),
        "{}",
        text(&out.stderr)
    );
}

/// The month and year so far from measured records: the month's peak (1000 kW: 250 kWh in a
/// quarter hour on 20 June) is free, the Scope 2 budgets say what is used and left (June's
/// 250 kWh x 0.6361 = 159 kg; the year adds May's 400 kWh: 413 kg), and a record from the plan's
/// own day is not counted.
#[test]
fn plan_takes_the_month_so_far_from_records() {
    let dir = scratch("records");
    let park_text = std::fs::read_to_string("config/qingzhou-pedf.toml")
        .unwrap()
        .replace(
            "# monthly_budget_t = 180",
            "monthly_budget_t = 180\nannual_budget_t = 2100",
        );
    let park = dir.join("park.toml");
    std::fs::write(&park, park_text).unwrap();
    let records = dir.join("records.csv");
    std::fs::write(
        &records,
        "start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh\n\
         2026-05-31T12:00:00+08:00,0,400,0,0,0,380,0\n\
         2026-06-20T10:00:00+08:00,50,250,0,0,0,290,0\n\
         2026-06-21T10:00:00+08:00,0,375,0,0,0,360,0\n",
    )
    .unwrap();
    let park = park.to_string_lossy().to_string();
    let records = records.to_string_lossy().to_string();
    let out = pedf(&[
        "plan",
        "--park",
        &park,
        "--inputs",
        "simulations/qingzhou-pedf/day-inputs",
        "--date",
        "2026-06-21",
        "--format",
        "table",
        "--records",
        &records,
        "--time-limit",
        "3",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("free up to 1000 kW: month peak so far 1000 kW"),
        "{stdout}"
    );
    assert!(
        stdout.contains("month Scope 2 budget 180.0 t: 0.2 t used, 179.8 t left, on track"),
        "{stdout}"
    );
    assert!(
        stdout.contains("year Scope 2 budget 2100.0 t: 0.4 t used, 2099.6 t left, on track"),
        "{stdout}"
    );
    assert!(
        stderr.contains("records from the plan's start on"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A battery's wear cost derived from its economics: 600 CNY/kWh over 6000 cycles at 85 %
/// depth is 600 / (6000 x 0.85) = 0.118 CNY per kWh discharged, and `pedf check` says how.
#[test]
fn check_derives_the_battery_wear_cost_from_its_economics() {
    let dir = scratch("wear");
    let park_text = std::fs::read_to_string("config/qingzhou-pedf.toml")
        .unwrap()
        .replace(
            "degradation_cost_cny_per_kwh = 0.10",
            "replacement_cost_cny_per_kwh = 600\ncycle_life = 6000\ncycle_depth = 0.85",
        );
    let park = dir.join("park.toml");
    std::fs::write(&park, park_text).unwrap();
    let out = pedf(&["check", &park.to_string_lossy()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("wear 0.118 CNY/kWh discharged = 600 CNY/kWh / (6000 cycles x 0.85 depth)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_argument_errors_name_the_argument() {
    let mut args = PLAN.to_vec();
    args[6] = "21/06/2026";
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--date: `21/06/2026` is not a date"),
        "{}",
        text(&out.stderr)
    );
    let mut args = PLAN.to_vec();
    args[6] = "2026-07-01";
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "day-inputs/pv.csv:675:1: error: 96 of 96 intervals of the horizon are missing"
        ),
        "{}",
        text(&out.stderr)
    );
    let mut args = PLAN.to_vec();
    args[4] = "no/such/folder";
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--inputs: no/such/folder is not a folder"));
    let mut args = PLAN.to_vec();
    args.extend(["--format", "json", "--plot", "plan.gif"]);
    let out = pedf(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("plan.gif: the plot file must end in .svg or .png"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_validates_device_lists_and_templates() {
    let out = pedf(&[
        "check",
        "config/devices/qingzhou-pedf.toml",
        "config/devices/templates/pedf-sim-meter.toml",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("config/devices/qingzhou-pedf.toml: device list is valid (5 devices on 2 connections, 3 templates)"), "{stdout}");
    assert!(
        stdout.contains("template `pedf-sim grid meter (register map)` (meter) is valid"),
        "{stdout}"
    );
    let dir = scratch("devcheck");
    let bad = dir.join("bad-template.toml");
    std::fs::write(&bad, "[template]\nname = \"x\"\ncapability = \"meter\"\n\n[[point]]\nfield = \"power_kw\"\naddress = 1\ntype = \"u17\"\nunit = \"kW\"\n").unwrap();
    let out = pedf(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad-template.toml:8:8: error: unknown variant `u17`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tokens from the command line: made (printed once), listed without the token, revoked
/// (refused from then on), and a revoked or unknown id named.
#[test]
fn tokens_are_made_listed_and_revoked_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("pedf-cli-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let run = dir.join("run.toml");
    std::fs::write(
        &run,
        format!("park = \"{root}/config/qingzhou-pedf.toml\"\ndevices = \"{root}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n"),
    )
    .unwrap();
    let run = run.to_str().unwrap();
    let out = pedf(&[
        "token",
        "create",
        "--config",
        run,
        "--role",
        "viewer",
        "--label",
        "wall screen",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    assert!(token.starts_with("pedf_") && token.len() == 69, "{token}");
    let out = pedf(&["token", "list", "--config", run]);
    let list = text(&out.stdout);
    assert!(
        list.contains("viewer") && list.contains("wall screen") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&token), "the token itself is never listed");
    let out = pedf(&["token", "revoke", "--config", run, "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&pedf(&["token", "list", "--config", run]).stdout);
    assert!(list.contains("revoked"), "{list}");
    let out = pedf(&["token", "revoke", "--config", run, "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no token #1 that is not revoked already"));
    let _ = std::fs::remove_dir_all(&dir);
}
