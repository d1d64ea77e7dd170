//! `pedf demo` as a newcomer runs it: its own MQTT broker, the simulated park on loopback, the
//! EMS and the dashboard; the API shows every device answering and the park's flows balanced;
//! the dashboard in headless Chromium shows the live park (values that move, every device
//! good); it stops cleanly at the end of `--for`. It runs from an empty folder, as an installed
//! binary would: the reference scenario is built in.

#[path = "../crates/pedf-runtime/tests/support/chromium.rs"]
mod chromium;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

use chromium::free_port;

#[cfg(unix)]
#[test]
fn the_demo_runs_the_park_and_serves_the_dashboard() {
    let dir = std::env::temp_dir().join(format!("pedf-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (web, modbus, mqtt, ocpp, meter, iec104) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let elsewhere = dir.join("an-empty-folder");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedf"))
        .current_dir(&elsewhere)
        .args([
            "demo",
            "--for",
            "75",
            "--speed",
            "60",
            "--listen",
            &format!("127.0.0.1:{web}"),
            "--modbus-port",
            &modbus.to_string(),
            "--mqtt-port",
            &mqtt.to_string(),
            "--ocpp-port",
            &ocpp.to_string(),
            "--meter-port",
            &meter.to_string(),
            "--iec104-port",
            &iec104.to_string(),
            // A summer Monday's evening peak, the same on every run: the park imports, PV is
            // setting, the battery discharges.
            "--start",
            "2026-06-22T18:50:00+08:00",
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
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::blocking::Client::new();
    // An API read as JSON (null when the body is not JSON yet).
    let get = |path: &str| -> Value {
        c.get(format!("{b}{path}"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
            .unwrap()
    };
    let page = match c.get(format!("{b}/")).send() {
        Ok(r) => r.text().unwrap(),
        Err(e) => {
            // The demo stopped after saying where its dashboard is: say why.
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the dashboard does not answer ({e}): {seen:?}\n{err}");
        }
    };
    assert!(page.contains("/assets/app.js"));
    // Every device (3 PV inverters, battery, meter, the billing meter over DL/T 645, 20
    // chargers, 2 loads) answers within 15 s,
    // and every flow is known (a charger whose car just started charging has no power reading
    // until its first meter value: the EV flow, and the load derived with it, are unknown
    // for that moment, not 0).
    let deadline = Instant::now() + Duration::from_secs(15);
    let state = loop {
        let v = get("/api/v1/state");
        let devices = v["devices"].as_array().cloned().unwrap_or_default();
        let known = ["pv_kw", "battery_kw", "load_kw", "ev_kw", "converter_dc_kw"]
            .iter()
            .all(|k| v["flows"][k].is_number());
        if devices.len() == 28 && devices.iter().all(|d| d["quality"] == "good") && known {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "devices not all good or flows not known: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // The last two chargers speak OCPP to the EMS's central system: ev-19 1.6J, ev-20 2.0.1.
    let events = get("/api/v1/events?limit=1000").to_string();
    for (cp, version) in [("QZ-EV-19", "ocpp1.6"), ("QZ-EV-20", "ocpp2.0.1")] {
        assert!(
            events.contains(&format!("charger {cp} connected ({version})"))
                && events.contains(&format!("charger {cp} booted: pedf-sim DC 60")),
            "{cp} not connected: {events}"
        );
    }
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
    // The EMS runs on the demo's simulated time: its clock advances about 60 s per second.
    let at = || -> chrono::DateTime<chrono::Utc> {
        get("/api/v1/state")["at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Waited for, not timed: the clock gets 2 simulated minutes ahead (within a generous
    // deadline), and never runs faster than asked (a loaded machine only slows it).
    let (t0, real0) = (at(), Instant::now());
    let mut t1 = t0;
    while (t1 - t0).num_seconds() < 120 {
        assert!(
            real0.elapsed() < Duration::from_secs(60),
            "the EMS clock did not run ahead: {t0} .. {t1}"
        );
        std::thread::sleep(Duration::from_millis(200));
        t1 = at();
    }
    let real = real0.elapsed().as_secs_f64();
    let sim = (t1 - t0).num_milliseconds() as f64 / 1000.0;
    assert!(
        sim <= 60.0 * (real + 1.5),
        "EMS clock advanced {sim} s in {real} s of real time at --speed 60"
    );
    // The grid's master limits the park over IEC 104 for two intervals while the dashboard is
    // looked at; the limit is then measured as a grid request.
    let master = {
        let (b, token) = (b.clone(), token.clone());
        std::thread::spawn(move || grid_master_limits_the_park(iec104, &b, &token))
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dashboard_shows_the_live_park(&b, &token, &dir));
    master.join().expect("the grid's master");
    // The limit the master held, measured over its whole intervals against the plan active
    // when it was set (a fresh demo has no like days for a baseline): delivered at least 95 %
    // of what it asked off that plan.
    let deadline = Instant::now() + Duration::from_secs(30);
    let measured = loop {
        let v = get("/api/v1/grid-requests");
        let r = v["requests"]
            .as_array()
            .and_then(|l| {
                l.iter().find(|r| {
                    r["source"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("IEC 104 master")
                })
            })
            .cloned();
        if let Some(r) = r.filter(|r| {
            let n = r["delivery"]["intervals"].as_array().map_or(0, |i| i.len());
            r["status"] == "over"
                && n > 0
                && n as i64
                    == (r["end"].as_str().map(ts).unwrap() - r["start"].as_str().map(ts).unwrap())
                        .num_minutes()
                        / 15
        }) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the grid's limit not measured as a request: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let d = &measured["delivery"];
    let (asked, delivered) = (
        d["requested_kwh"].as_f64().unwrap(),
        d["delivered_kwh"].as_f64().unwrap(),
    );
    assert!(
        d["reference_plan"].is_i64() && d["settlement_cny"].is_null(),
        "{measured}"
    );
    assert!(
        asked > 10.0,
        "the limit asked little of the park: {measured}"
    );
    assert!(
        delivered >= 0.95 * asked,
        "delivered {delivered:.1} of {asked:.1} kWh: {measured}"
    );
    println!("the grid's IEC 104 limit: {delivered:.1} of {asked:.1} kWh delivered: {measured}");
    // The EMS schedules the deferrable load (cold storage) by the plan: its setpoints are in
    // the audit log, written by the controller.
    let audit = get("/api/v1/audit?limit=1000");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["device"] == "cold-storage"
                && a["by"] == "controller"
                && a["outcome"] == "ok"),
        "no controller setpoint for the cold storage in the audit log: {audit}"
    );
    // Interval records hold simulated energy: a whole 15-min interval of the park's loads
    // (several hundred kW) is well above 50 kWh, where wall-clock integration at 60x would
    // give a sixtieth of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let day = |t: chrono::DateTime<chrono::Utc>| {
            (t + chrono::Duration::hours(8))
                .format("%Y-%m-%d")
                .to_string()
        };
        let mut best = 0.0f64;
        for d in [day(t0), day(at())] {
            let v = get(&format!("/api/v1/records?day={d}"));
            for r in v["records"].as_array().cloned().unwrap_or_default() {
                best = best.max(r["load_kwh"].as_f64().unwrap_or(0.0));
                // Each record says how much of it was observed; a measured one all of it.
                let observed = r["observed_share"].as_f64().expect("observed_share");
                // What the grid meters' counters gave for it (none yet for the interval
                // running when the EMS started).
                assert!(r["grid_meters"].is_array(), "{r}");
                assert!((0.0..=1.0).contains(&observed), "{r}");
                if r["source"] == "measured" {
                    assert!(observed >= 0.999, "{r}");
                }
                // The chargers' parts add up to the EV energy (the record hash covers them).
                let parts: f64 = r["ev_chargers"]
                    .as_object()
                    .expect("ev_chargers")
                    .values()
                    .filter_map(|v| v.as_f64())
                    .sum();
                let ev = r["ev_kwh"].as_f64().unwrap();
                assert!((parts - ev).abs() <= 1e-6 * ev.max(1.0), "{r}");
                // The park's export rules (export only from PV) hold in every interval, to
                // the meter's 0.01 kWh.
                let (export, pv) = (
                    r["grid_export_kwh"].as_f64().unwrap(),
                    r["pv_kwh"].as_f64().unwrap(),
                );
                assert!(export <= pv + 0.01, "export beyond the PV: {r}");
            }
        }
        if best > 50.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no interval record with simulated energy yet (largest load {best} kWh)"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    if !status.success() {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let tail: String = err
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!("the demo ended with {status}: {rest:?}\nits stderr ends:\n{tail}");
    }
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
    // The billing meter (DL/T 645, secondary values behind 1000/5 A transformers, read back
    // times 200) agrees with the EMS's own meter on the park's import, and its four tariff
    // registers add up to its total.
    let st = pedf_store::Store::open(&dir.join("demo.sqlite")).unwrap();
    let (t0, t1) = (
        chrono::DateTime::from_timestamp(946_684_800, 0).unwrap(),
        chrono::DateTime::from_timestamp(4_102_444_800, 0).unwrap(),
    );
    let last = |device: &str, field: &str| {
        st.samples(device, field, t0, t1)
            .unwrap()
            .last()
            .map(|s| (s.at, s.value))
            .unwrap_or_else(|| panic!("no {field} sample of {device}"))
    };
    let (at_billing, billing) = last("grid-billing", "import_kwh");
    let (at_meter, own) = last("grid-meter", "import_kwh");
    // Read at different times (the billing meter every 15 s of the park's time): the import
    // between the two reads at most the connection's limit.
    let apart_h = (at_billing - at_meter).num_milliseconds().abs() as f64 / 3.6e6;
    assert!(
        (billing - own).abs() <= 3.0 + 2000.0 * apart_h,
        "billing meter {billing} kWh at {at_billing}, the EMS's {own} kWh at {at_meter}"
    );
    let tariffs: f64 = ["sharp", "peak", "flat", "valley"]
        .iter()
        .map(|p| last("grid-billing", &format!("import_kwh_{p}")).1)
        .sum();
    assert!(
        (tariffs - billing).abs() <= 8.0,
        "tariff registers {tariffs} kWh, total {billing} kWh"
    );
    // Each whole interval's import at the billing meter, from its counters at the interval's
    // boundaries, is stored beside the EMS's record of it, and the two agree (no warning said
    // they are more apart than the counters' 2 kWh step, the meters' accuracy and the reading's
    // lateness allow); over the intervals both have, the totals agree to 2 %.
    let billed: Vec<_> = st
        .meter_intervals(t0, t1)
        .unwrap()
        .into_iter()
        .filter(|m| m.meter == "grid-billing")
        .collect();
    assert!(billed.len() >= 2, "{billed:?}");
    let records = st.records(t0, t1).unwrap();
    let (mut by_meter, mut by_ems) = (0.0, 0.0);
    for m in &billed {
        let r = records
            .iter()
            .find(|(r, _)| r.start == m.start)
            .unwrap_or_else(|| panic!("no record of {}", m.start));
        by_meter += m.import_kwh;
        by_ems += r.0.grid_import_kwh;
    }
    assert!(
        (by_meter - by_ems).abs() <= 0.02 * by_ems,
        "billing meter {by_meter} kWh, the EMS's records {by_ems} kWh over {} intervals",
        billed.len()
    );
    let events: Vec<String> = st
        .recent_events(100_000)
        .unwrap()
        .into_iter()
        .map(|e| e.3)
        .collect();
    assert!(
        !events.iter().any(|e| e.contains("more apart than")),
        "{:?}",
        events
            .iter()
            .filter(|e| e.contains("more apart than"))
            .collect::<Vec<_>>()
    );
    println!(
        "billing meter: {by_meter:.1} kWh, the EMS's records {by_ems:.1} kWh over {} intervals",
        billed.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The newcomer's view: the dashboard in a browser, logged in with the token the demo printed.
#[cfg(unix)]
async fn dashboard_shows_the_live_park(base: &str, token: &str, dir: &std::path::Path) {
    use chromium::{click, log_in, shot, start_browser, text, wait_js, wait_text};

    let (_driver, c) = start_browser(&dir.join("chromium-profile")).await;
    c.goto(&format!("{base}/")).await.unwrap();
    let (ok, t) = wait_text(&c, "#login h2", 10.0, |t| t == "登录").await;
    assert!(ok, "login form: `{t}`");
    log_in(&c, token).await;
    let kw = |t: &str| t.ends_with(" kW") && t[..t.len() - 3].parse::<f64>().is_ok();
    for id in ["#v-pv", "#v-grid", "#v-load"] {
        let (ok, t) = wait_text(&c, id, 10.0, kw).await;
        assert!(ok, "{id} on the page: `{t}`");
    }
    // At 60 times real time the park moves: the load value changes within seconds.
    let first = text(&c, "#v-load").await;
    let (ok, t) = wait_text(&c, "#v-load", 15.0, |t| kw(t) && t != first).await;
    assert!(ok, "the live load stayed at `{t}`");
    shot(&c, ROOT, "demo-live.png").await;
    // The OCPP chargers take the operator's commands from their card; an MQTT one does not.
    // The demo's OCPP charger ev-20 taken out of service and back (through the API, the run
    // loop and OCPP to the simulated charge point), answered on the page in Chinese.
    click(&c, "#chargers [data-id=ev-01]").await;
    let (ok, v) = wait_js(
        &c,
        "return document.getElementById('charger-actions').hidden",
        5.0,
        |v| v == true,
    )
    .await;
    assert!(ok, "ev-01 (MQTT) shows commands: {v}");
    click(&c, "#chargers [data-id=ev-20]").await;
    let (ok, v) = wait_js(
        &c,
        "return document.getElementById('charger-actions').hidden",
        5.0,
        |v| v == false,
    )
    .await;
    assert!(ok, "ev-20 (OCPP) shows no commands: {v}");
    click(&c, "#charger-actions [data-action=disable]").await;
    let (ok, t) = wait_text(&c, "#msg", 15.0, |t| {
        t.starts_with("ev-20: ") && (t.contains("已停用") || t.contains("已安排"))
    })
    .await;
    assert!(ok, "out of service: `{t}`");
    click(&c, "#charger-actions [data-action=enable]").await;
    let (ok, t) = wait_text(&c, "#msg", 15.0, |t| t == "ev-20: 已启用").await;
    assert!(ok, "back in service: `{t}`");
    click(&c, "[data-page=devices]").await;
    let (ok, t) = wait_text(&c, "#devices", 5.0, |t| {
        ["bess-1", "grid-meter", "pv-carport", "ev-01", "ev-20", "hvac", "cold-storage"]
            .iter()
            .all(|id| t.contains(id))
            // Every device's quality is good ("正常" on the default Chinese page).
            && t.matches("正常").count() + t.matches("good").count() >= 27
    })
    .await;
    assert!(ok, "devices page: `{t}`");
    shot(&c, ROOT, "demo-devices.png").await;
    let _ = c.close().await;
}

/// An RFC 3339 time.
fn ts(t: &str) -> chrono::DateTime<chrono::Utc> {
    t.parse().unwrap()
}

/// The grid's master (the `c104` package's, pinned in the outside peers' venv) on the demo
/// park's IEC 104 station: it interrogates the park, limits whichever way the park's power
/// flows now to half of it (the import while it imports, the export while it exports), sees
/// the park's grid power come within the limit (the simulated park's physics answering the
/// controller) and releases it once the EMS's clock (`base`'s state) is 31 minutes past the
/// interval after it was set (at least one whole interval held, usually two).
#[cfg(unix)]
fn grid_master_limits_the_park(port: u16, base: &str, token: &str) {
    use std::io::Write;
    let python = Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let mut child = Command::new(python)
        // A crash of the C library under it says where (Python's fault handler).
        .args(["-X", "faulthandler"])
        .arg(Path::new(ROOT).join("tests/peers/iec104_master.py"))
        .args(["127.0.0.1", &port.to_string(), "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the c104 master runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    let mut ask = |what: Option<Value>| {
        if let Some(w) = what {
            writeln!(stdin, "{w}").unwrap();
            stdin.flush().unwrap();
        }
        let v: Value = serde_json::from_str(&out.next().unwrap().unwrap()).unwrap();
        said.push(v.clone());
        v
    };
    assert_eq!(ask(None)["ok"], true, "connected");
    assert_eq!(ask(Some(json!({"do": "interrogate"})))["ok"], true);
    let points = ask(Some(json!({"do": "points"})));
    let value = |ioa: u64| {
        points["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["ioa"] == ioa)
            .and_then(|p| p["value"].as_f64())
            .unwrap_or_else(|| panic!("no value at {ioa}: {points}"))
    };
    let grid = value(1001);
    let (import_own, export_own) = (value(1009), value(1010));
    // The side the park's power flows now, limited to half of it (an import limit no lower
    // than 40 kW: the reverse-flow margin keeps 30 kW of import where export is forbidden).
    let (ioa, limit, own, wait) = if grid >= 0.0 {
        let cap = (grid / 2.0).max(40.0);
        (
            3001,
            cap,
            import_own,
            json!({"do": "wait", "ioa": 1001, "below": cap + 10.0, "seconds": 15}),
        )
    } else {
        let cap = (-grid / 2.0).max(0.0);
        (
            3002,
            cap,
            export_own,
            json!({"do": "wait", "ioa": 1001, "above": -cap - 10.0, "seconds": 15}),
        )
    };
    let c = reqwest::blocking::Client::new();
    let at = || -> chrono::DateTime<chrono::Utc> {
        let t = c
            .get(format!("{base}/api/v1/state"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        ts(v["at"].as_str().unwrap())
    };
    let set = |v: f64| json!({"do": "set", "ioa": ioa, "value": v, "sbo": true});
    let before = at();
    assert_eq!(ask(Some(set(limit)))["ok"], true, "{said:?}");
    // The station reports the limit in force (whichever way the power flows, and however
    // little: where the park's power already sits within the limit, this is what is checked).
    let in_force = ask(Some(
        json!({"do": "wait", "ioa": ioa - 3001 + 1009, "near": limit, "within": 0.01, "seconds": 15}),
    ));
    assert_eq!(in_force["ok"], true, "{said:?}");
    let followed = ask(Some(wait));
    assert_eq!(
        followed["ok"], true,
        "the park's grid power {grid} kW did not come within the limit {limit} kW: {said:?}"
    );
    // Held until 31 minutes past the next interval start (waited for on the EMS's clock).
    let q = chrono::Duration::minutes(15);
    let next = chrono::DateTime::from_timestamp(before.timestamp() / 900 * 900, 0).unwrap() + q;
    let deadline = Instant::now() + Duration::from_secs(120);
    while at() < next + chrono::Duration::minutes(31) {
        assert!(Instant::now() < deadline, "the EMS's clock stopped");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(ask(Some(set(own)))["ok"], true, "released: {said:?}");
    let _ = writeln!(stdin, "{}", json!({"do": "quit"}));
    let _ = child.wait();
}
