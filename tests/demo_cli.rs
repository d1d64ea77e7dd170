//! `pedf demo` as a newcomer runs it: its own MQTT broker, the simulated park on loopback, the
//! EMS and the dashboard; the API shows every device answering and the park's flows balanced;
//! it stops cleanly at the end of `--for`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(unix)]
#[test]
fn the_demo_runs_the_park_and_serves_the_dashboard() {
    let dir = std::env::temp_dir().join(format!("pedf-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (web, modbus, mqtt) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedf"))
        .current_dir(ROOT)
        .args([
            "demo",
            "--for",
            "40",
            "--speed",
            "60",
            "--listen",
            &format!("127.0.0.1:{web}"),
            "--modbus-port",
            &modbus.to_string(),
            "--mqtt-port",
            &mqtt.to_string(),
            "--dir",
            dir.to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let mut url = None;
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        if let Some(t) = l.split("keep it safe): ").nth(1) {
            token = Some(t.trim().to_string());
        }
        if let Some(u) = l.strip_prefix("pedf demo: dashboard and API at ") {
            url = Some(u.trim().trim_end_matches('/').to_string());
            break;
        }
    }
    let (Some(token), Some(b)) = (token, url) else {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("demo did not start: {seen:?}\n{err}");
    };
    assert!(
        seen.iter().any(|l| l.contains("(embedded broker)")),
        "{seen:?}"
    );
    let c = reqwest::blocking::Client::new();
    let page = c.get(format!("{b}/")).send().unwrap().text().unwrap();
    assert!(page.contains("/assets/app.js"));
    // Every device (3 PV inverters, battery, meter, 20 chargers, 2 loads) answers within 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let state = loop {
        let v: Value = c
            .get(format!("{b}/api/v1/state"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
            .unwrap();
        let devices = v["devices"].as_array().cloned().unwrap_or_default();
        if devices.len() == 27 && devices.iter().all(|d| d["quality"] == "good") {
            break v;
        }
        assert!(Instant::now() < deadline, "devices not all good: {v}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let f = &state["flows"];
    assert!(f["grid_measured"].as_bool().unwrap(), "{f}");
    // The bus balances (the runtime derives loads from the meter; check the parts add up).
    let (pv, bat, load, ev, dc) = (
        f["pv_kw"].as_f64().unwrap(),
        f["battery_kw"].as_f64().unwrap(),
        f["load_kw"].as_f64().unwrap(),
        f["ev_kw"].as_f64().unwrap(),
        f["converter_dc_kw"].as_f64().unwrap(),
    );
    assert!((pv + bat + dc - load - ev).abs() < 1.0, "{f}");
    assert!(load > 100.0, "the park's loads are running: {f}");
    let soc = f["soc_pct"].as_f64().unwrap();
    assert!((10.0..=95.0).contains(&soc), "{f}");
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("pedf demo stopped:")),
        "{rest:?}"
    );
    for f in [
        "run.toml",
        "devices.toml",
        "day-inputs/pv.csv",
        "day-inputs/ev-sessions.csv",
        "demo.sqlite",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
