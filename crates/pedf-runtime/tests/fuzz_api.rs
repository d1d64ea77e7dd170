//! The API fuzzed from its own OpenAPI document by schemathesis (an implementation we did not
//! write, pinned in the outside peers' venv that scripts/setup makes), against the EMS as
//! `pedf run` starts it (server, planning, carbon, certificates) on the simulated park: no
//! answer is a server error, and every error answer is JSON. Bounded: a few cases per
//! operation with a fixed seed; the live stream (it never ends) is left out.

use std::sync::{Arc, Mutex};

use pedf_sim_devices::park::SimPark;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_fuzzed_from_its_openapi_gives_no_server_error_and_only_json_errors() {
    let cli = std::path::Path::new(ROOT).join(".venv-peers/bin/schemathesis");
    assert!(
        cli.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        cli.display()
    );
    let dir = std::env::temp_dir().join(format!("pedf-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _sim = SimPark::start(
        &dir,
        &std::path::PathBuf::from(format!("{ROOT}/config/devices/templates")),
        300.0,
        60.0,
        100.0,
    )
    .await
    .expect("simulated park");
    std::fs::write(
        dir.join("run.toml"),
        format!(
            "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"var/pedf.sqlite\"\ncycle_ms = 200\n\n[server]\nlisten = \"127.0.0.1:0\"\nemission_factors = \"{ROOT}/config/emission-factors/china-grid.toml\"\nplan_inputs = \"{ROOT}/simulations/qingzhou-pedf/day-inputs\"\n"
        ),
    )
    .unwrap();
    let mut cfg = pedf_runtime::run::RunConfig::load(&dir.join("run.toml")).unwrap();
    // The EMS on the day of the example inputs, whatever day the test runs.
    use chrono::TimeZone;
    cfg.time = pedf_core::time::TimeSource::scaled(
        chrono::Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap(),
        1.0,
    );
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(pedf_runtime::ems::run_and_serve(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        {
            let said = said.clone();
            move |line| said.lock().unwrap().push(line)
        },
    ));
    // The address and the admin token, as `pedf run` prints them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (base, token) = loop {
        let lines = said.lock().unwrap().clone();
        let base = lines.iter().find_map(|l| {
            l.strip_prefix("dashboard and API at ")
                .map(|u| u.trim_end_matches('/').to_string())
        });
        let token = lines
            .iter()
            .find_map(|l| l.rsplit(": ").next().filter(|t| t.starts_with("pedf_")))
            .map(str::to_string);
        if let (Some(b), Some(t)) = (base, token) {
            break (b, t);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the EMS never served: {lines:?}"
        );
        tokio::task::yield_now().await;
    };
    let url = format!("{base}/api/v1/openapi.json");
    let auth = format!("Authorization: Bearer {token}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(cli)
            .args(["run", &url, "-H", &auth])
            .args([
                "--checks",
                "not_a_server_error,errors_are_json,response_schema_conformance",
            ])
            .args(["--exclude-path", "/api/v1/stream"])
            .args([
                "--max-examples",
                "8",
                "--seed",
                "20261205",
                "--workers",
                "1",
            ])
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", format!("{ROOT}/tests/peers"))
            .env("NO_COLOR", "1")
            .current_dir(std::env::temp_dir())
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = stop_tx.send(());
    let _ = run.await;
    let _ = std::fs::remove_dir_all(&dir);
    // The run's summary (cases, checks) on the test's output (`--nocapture`).
    for line in text
        .lines()
        .filter(|l| l.contains("passed") || l.contains("cases") || l.contains("Test cases"))
    {
        eprintln!("schemathesis: {line}");
    }
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
}
