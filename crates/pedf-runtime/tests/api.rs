//! The API against a running EMS on the simulated park: auth and roles, the live stream
//! following a measurement, control actions audited, bad bodies refused with a reason,
//! metrics, the OpenAPI document, a device that fails mid-run.

mod common;
#[path = "support/ports.rs"]
mod ports;

use std::time::{Duration, Instant};

use common::{eventually, Ems};
use pedf_store::Store;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = c.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &str,
    content_type: &str,
) -> (u16, Value) {
    let resp = c
        .request(method, url)
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// No token or a wrong one is refused with a reason; the viewer sees the simulated park; the
/// re-plan that cannot run (no forecast for the EMS's day) is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_the_live_park() {
    let ems = Ems::start("auth-and-the-live-park").await;
    let c = client();
    let b = &ems.base;

    // No token, a wrong token, a token of the wrong shape: 401 with a reason.
    let (s, v) = get(&c, &format!("{b}/api/v1/state"), None).await;
    assert_eq!(s, 401);
    assert!(v["error"].as_str().unwrap().contains("no token"), "{v}");
    let mut wrong = ems.viewer.clone();
    wrong.pop();
    wrong.push(if ems.viewer.ends_with('0') { '1' } else { '0' });
    let (s, v) = get(&c, &format!("{b}/api/v1/state"), Some(&wrong)).await;
    assert_eq!(s, 401);
    assert!(v["error"].as_str().unwrap().contains("not valid"), "{v}");

    // The viewer sees the park: PV 300 kW from the simulated inverter, the grid meter's 100 kW.
    let ok = eventually(5.0, || async {
        let (s, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        s == 200 && v["flows"]["pv_kw"] == json!(300.0) && v["flows"]["grid_kw"] == json!(100.0)
    })
    .await;
    assert!(ok, "live state never showed the simulated values");
    let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(v["mode"]["mode"], "automatic");
    assert!(v["tariff"]["import_cny_per_kwh"].is_number(), "{v}");
    // The example forecasts are for June 2026: on the EMS's day (27 November, its clock's
    // origin) the intraday re-plan cannot run, which is reported (the controller goes on with
    // self-consumption).
    let ok = eventually(5.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v["faults"].as_array().is_some_and(|f| {
            f.iter().any(|x| {
                x.as_str()
                    .unwrap_or("")
                    .contains("re-plan failed: no forecast for")
            })
        })
    })
    .await;
    assert!(ok, "re-plan failure not reported");
    let (_, ev) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    assert!(
        ev.as_array()
            .unwrap()
            .iter()
            .any(|e| e["severity"] == "alarm"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("re-plan failed (every 15 min")),
        "{ev}"
    );
    ems.stop().await;
}

/// The live stream shows a measurement that changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_follows_a_measurement() {
    let ems = Ems::start("the-stream-follows-a-mea").await;
    let c = client();
    let b = &ems.base;

    // The stream: a measurement that changes shows in the stream (how fast is the stream
    // bench's figure, crates/pedf-server/benches/stream.rs, not an assert here).
    let mut resp = c
        .get(format!("{b}/api/v1/stream"))
        .bearer_auth(&ems.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: state"));
    let changed_at = Instant::now();
    ems.sim.set_grid_kw(-42.5);
    let mut seen = None;
    let mut buf = String::new();
    while changed_at.elapsed() < Duration::from_secs(20) {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .map(|r| r.unwrap())
        else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if buf.contains("\"grid_kw\":-42.5") {
            seen = Some(changed_at.elapsed());
            break;
        }
    }
    let latency = seen.expect("the stream never showed the new grid value (20 s)");
    eprintln!("api: measurement to stream in {latency:?}");
    drop(resp);
    ems.stop().await;
}

/// A viewer cannot change the mode; an operator's change is audited (API and store) and the
/// runtime follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_changes_are_authorised_audited_and_followed() {
    let ems = Ems::start("mode-changes-are-authori").await;
    let c = client();
    let b = &ems.base;

    // Control: a viewer is refused, an operator changes the mode, which is audited and followed.
    let url = format!("{b}/api/v1/mode");
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.viewer,
        r#"{"mode":"safe"}"#,
        "application/json",
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("operator"), "{v}");
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.operator,
        r#"{"mode":"manual","battery_kw":-50,"reason":"test charge"}"#,
        "application/json",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mode"], "manual");
    let ok = eventually(3.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v["mode"]["mode"] == "manual" && v["mode"]["battery_kw"] == json!(-50.0)
    })
    .await;
    assert!(ok, "the runtime did not take the manual mode");
    let (s, audit) = get(
        &c,
        &format!("{b}/api/v1/audit?limit=500"),
        Some(&ems.operator),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        audit.as_array().unwrap().iter().any(|a| a["by"]
            .as_str()
            .unwrap()
            .starts_with("operator #")
            && a["reason"].as_str().unwrap().contains("test charge")),
        "{audit}"
    );
    // The whole audit, a page of one at a time: each page before the last id seen.
    let mut before = None::<i64>;
    for _ in 0..3 {
        let url = match before {
            Some(id) => format!("{b}/api/v1/audit?limit=1&before={id}"),
            None => format!("{b}/api/v1/audit?limit=1"),
        };
        let (_, page) = get(&c, &url, Some(&ems.operator)).await;
        // Newer entries may have come meanwhile: the page is the next one before `before`.
        let got = &page.as_array().unwrap()[0];
        if let Some(id) = before {
            assert!(got["id"].as_i64().unwrap() < id, "{page}");
        }
        before = got["id"].as_i64();
    }
    let (s, _) = get(&c, &format!("{b}/api/v1/audit"), Some(&ems.viewer)).await;
    assert_eq!(s, 403);
    // The operator's action is an event anyone with a token sees, not only an audit row.
    let (_, ev) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    assert!(
        ev.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("mode manual (battery -50 kW) set by operator #")),
        "{ev}"
    );
    // The audit of the mode change is in the store the runtime writes.
    let st = Store::open(&ems.store).unwrap();
    assert!(st.audit_count().unwrap() > 0);
    drop(st);
    ems.stop().await;
}

/// Each bad body is refused with a status and a reason naming the problem; an unknown path
/// is a JSON 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_with_a_reason() {
    let ems = Ems::start("bad-bodies-are-refused-w").await;
    let c = client();
    let b = &ems.base;

    // Bad bodies: each refused with a status and a reason naming the problem.
    let url = format!("{b}/api/v1/mode");
    let cases: &[(&str, &str, u16, &str)] = &[
        ("{\"mode\":", "application/json", 400, "request body"),
        (
            "{\"mode\":\"turbo\"}",
            "application/json",
            400,
            "mode: `turbo`",
        ),
        (
            "{\"mode\":\"manual\"}",
            "application/json",
            400,
            "battery_kw",
        ),
        (
            "{\"mode\":\"manual\",\"battery_kw\":1e9}",
            "application/json",
            400,
            "outside the park's battery range",
        ),
        (
            "{\"mode\":\"safe\",\"colour\":1}",
            "application/json",
            422,
            "colour",
        ),
        ("mode=safe", "text/plain", 415, "application/json"),
    ];
    for (body, ct, status, needle) in cases {
        let (s, v) = send(&c, reqwest::Method::PUT, &url, &ems.operator, body, ct).await;
        assert_eq!(s, *status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {v}"
        );
    }
    let big = format!(
        "{{\"mode\":\"safe\",\"reason\":\"{}\"}}",
        "x".repeat(100_000)
    );
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.operator,
        &big,
        "application/json",
    )
    .await;
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
    // Unknown path: JSON 404 pointing at the API description.
    let (s, v) = get(&c, &format!("{b}/api/v1/nothing"), Some(&ems.viewer)).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("openapi"), "{v}");
    ems.stop().await;
}

/// Only an admin makes tokens, which work at once with their role; metrics need a token; the
/// OpenAPI document describes exactly the routes served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_metrics_and_the_openapi_document() {
    let ems = Ems::start("tokens-metrics-and-the-o").await;
    let c = client();
    let b = &ems.base;

    // Tokens: only an admin creates them; the new token works at once with its role.
    let (s, _) = send(
        &c,
        reqwest::Method::POST,
        &format!("{b}/api/v1/tokens"),
        &ems.operator,
        r#"{"label":"x","role":"viewer"}"#,
        "application/json",
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = send(
        &c,
        reqwest::Method::POST,
        &format!("{b}/api/v1/tokens"),
        &ems.admin,
        r#"{"label":"control room","role":"viewer"}"#,
        "application/json",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, who) = get(
        &c,
        &format!("{b}/api/v1/whoami"),
        Some(v["token"].as_str().unwrap()),
    )
    .await;
    assert_eq!((s, who["role"].as_str()), (200, Some("viewer")));

    // Metrics need a token and show the park.
    let (s, _) = get(&c, &format!("{b}/metrics"), None).await;
    assert_eq!(s, 401);
    let text = c
        .get(format!("{b}/metrics"))
        .bearer_auth(&ems.viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("pedf_power_kw{flow=\"pv\"} 300"), "{text}");
    assert!(text.contains("# TYPE pedf_cycles_total counter"));
    assert!(text.contains("pedf_auth_failures_total "));
    // The text as the Prometheus project's own parser reads it (prometheus-client, in the venv
    // of outside peers scripts/setup makes): the cycle's work and lag are histograms.
    let families = prometheus_parse(&text);
    for h in ["pedf_cycle_work_seconds", "pedf_cycle_lag_seconds"] {
        assert_eq!(families[h]["type"], "histogram", "{h}: {families}");
        let count = families[h]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == format!("{h}_count"))
            .map(|s| s[2].as_f64().unwrap());
        assert!(count.is_some_and(|n| n >= 1.0), "{h}: {count:?}");
    }
    assert_eq!(families["pedf_power_kw"]["type"], "gauge");

    // The OpenAPI document describes exactly the routes served.
    let (s, doc) = get(&c, &format!("{b}/api/v1/openapi.json"), None).await;
    assert_eq!(s, 200);
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.clone(), p.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = pedf_server::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    ems.stop().await;
}

/// Devices that fail mid-run show as bad and are alarms; the grid meter among them puts the
/// park in its safe state (the operator's mode stays what it was); what they measure is
/// unknown, never 0 kW; the EMS keeps cycling, and when they answer again the alarms go and
/// the operator's mode applies. (Before, every device could be lost with no alarm, the grid
/// at 0 kW and the strategy still "optimized".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_device_shows_bad_and_the_ems_goes_on() {
    let ems = Ems::start("a-failing-device-shows-b").await;
    let c = client();
    let b = &ems.base;

    // A device that fails mid-run: shown as bad, and the EMS keeps cycling.
    ems.sim.modbus.set_faults(pedf_sim_devices::bank::Faults {
        delay: None,
        exception: Some(tokio_modbus::ExceptionCode::ServerDeviceFailure),
    });
    let ok = eventually(5.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "bess-1" && d["quality"] == "bad")
    })
    .await;
    assert!(ok, "the failed battery never showed as bad");
    // Every Modbus device (PV, battery, meter) is an alarm within its 2 s stale time, the
    // meter's loss holds the park safe, and the flows they measure are unknown.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ok, seen) = loop {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        let alarms = v["alarms"].to_string();
        let done = ["pv-roof-a", "bess-1", "grid-meter"]
            .iter()
            .all(|id| alarms.contains(&format!("{id} (")))
            && alarms.contains("not answering")
            && v["strategy"]
                .as_str()
                .is_some_and(|t| t.starts_with("safe state: the grid meter is not answering"));
        if done || Instant::now() >= deadline {
            break (done, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(ok, "no alarms for the lost devices: {seen}");
    let f = &seen["flows"];
    for flow in ["pv_kw", "battery_kw", "grid_kw", "load_kw"] {
        assert!(f[flow].is_null(), "{flow} is not unknown: {f}");
    }
    assert_eq!(
        seen["mode"]["mode"], "automatic",
        "the operator's mode is kept"
    );
    // The EMS goes on: its cycle count moves on (waited for, not timed).
    let (_, v1) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
    let before = v1["cycle"].as_u64().unwrap_or(0);
    let ok = eventually(10.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v["cycle"].as_u64().unwrap_or(0) > before + 2
    })
    .await;
    assert!(ok, "the EMS stopped cycling after the device failed");
    // They answer again: the alarms go, the operator's mode applies, events tell both ways.
    ems.sim.modbus.set_faults(pedf_sim_devices::bank::Faults {
        delay: None,
        exception: None,
    });
    let ok = eventually(10.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        !v["alarms"].to_string().contains("not answering")
            && !v["strategy"]
                .as_str()
                .unwrap_or("")
                .starts_with("safe state")
            && v["flows"]["grid_kw"].is_number()
    })
    .await;
    assert!(ok, "the devices answer again but the park is still held");
    let (_, ev) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    let ev = ev.to_string();
    assert!(ev.contains("grid-meter (meter) not answering"), "{ev}");
    assert!(ev.contains("grid-meter answering again"), "{ev}");
    assert!(ev.contains("the grid meter answers again"), "{ev}");
    // The meter's alarm acknowledged: not by a viewer, once by an operator (audited, said).
    let (_, list) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    let alarm = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["severity"] == "alarm"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("grid-meter (meter) not answering")
        })
        .expect("the meter's alarm event")
        .clone();
    assert!(alarm["acked_by"].is_null(), "{alarm}");
    let url = format!("{b}/api/v1/events/{}/ack", alarm["id"]);
    let (s, _) = send(
        &c,
        reqwest::Method::POST,
        &url,
        &ems.viewer,
        "",
        "application/json",
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = send(
        &c,
        reqwest::Method::POST,
        &url,
        &ems.operator,
        "",
        "application/json",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = send(
        &c,
        reqwest::Method::POST,
        &url,
        &ems.operator,
        "",
        "application/json",
    )
    .await;
    assert_eq!(s, 404, "acknowledged once");
    let (_, list) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    let acked = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == alarm["id"])
        .unwrap();
    assert!(
        acked["acked_by"]
            .as_str()
            .unwrap()
            .starts_with("operator #"),
        "{acked}"
    );
    assert!(list.to_string().contains(&format!(
        "alarm #{} acknowledged by operator #",
        alarm["id"]
    )));
    let summary = ems.stop().await;
    assert!(summary.cycles >= 3, "{summary:?}");
}

/// An operator tells the EMS what the car on ev-01 needs and when it leaves: the live state
/// shows the session with it, the audit and the events say who; a viewer is refused, and a
/// past departure, an unknown charger and an empty order are answered with what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_a_cars_session() {
    let ems = Ems::start("session").await;
    let c = client();
    let b = &ems.base;
    let url = format!("{b}/api/v1/chargers/ev-01/session");
    // The simulated charger reports a car: the session is tracked with the park's default.
    let ok = eventually(10.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v["chargers"][0]["session"]["requested_kwh"] == json!(30.0)
    })
    .await;
    assert!(ok, "the car on ev-01 was never tracked");
    let departure = (ems.time.now() + chrono::Duration::hours(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let body = format!(
        r#"{{"energy_kwh": 45, "departure": "{departure}", "reason": "driver at the desk"}}"#
    );
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.viewer,
        &body,
        "application/json",
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.operator,
        &body,
        "application/json",
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let ok = eventually(5.0, || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        let sess = &v["chargers"][0]["session"];
        sess["requested_kwh"] == json!(45.0)
            && sess["departure"]
                .as_str()
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .map(|d| {
                    d.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                })
                == Some(departure.clone())
    })
    .await;
    assert!(ok, "the order never reached the session");
    let (_, ev) = get(&c, &format!("{b}/api/v1/events"), Some(&ems.viewer)).await;
    assert!(
        ev.as_array().unwrap().iter().any(|e| {
            let m = e["message"].as_str().unwrap_or("");
            m.starts_with("session on ev-01 set by operator") && m.contains("45.0 kWh")
        }),
        "{ev}"
    );
    // What is wrong is said.
    let past = r#"{"departure": "2020-01-01T00:00:00Z"}"#;
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.operator,
        past,
        "application/json",
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"].as_str().unwrap().contains("is not after now"),
        "{v}"
    );
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        &ems.operator,
        "{}",
        "application/json",
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"].as_str().unwrap().contains("give energy_kwh"),
        "{v}"
    );
    let (s, v) = send(
        &c,
        reqwest::Method::PUT,
        &format!("{b}/api/v1/chargers/ev-99/session"),
        &ems.operator,
        r#"{"energy_kwh": 10}"#,
        "application/json",
    )
    .await;
    assert_eq!(s, 404, "{v}");
    ems.stop().await;
}

/// Parses Prometheus text with the Prometheus project's Python client (tests/peers/check_metrics.py).
fn prometheus_parse(text: &str) -> serde_json::Value {
    use std::io::Write;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = std::path::Path::new(root).join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        python.display()
    );
    let mut child = std::process::Command::new(python)
        .arg(format!("{root}/tests/peers/check_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the peer runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An operator commands an OCPP charger through the API (the `ocpp` package's charge point,
/// which checks every request against the 1.6 schemas): a transaction started for an id tag
/// and stopped, the connector out of service once it ends, each answered with what the
/// charger did, audited and an event; a charger whose protocol takes no commands, a viewer,
/// a start without an id tag and a stop with nothing running are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_commands_an_ocpp_charger() {
    let port = ports::free_port();
    let password = "pw-0123456789abcdef";
    let ems = Ems::start_with(
        "command",
        "\n[[connection]]\nid = \"chargers\"\nkind = \"ocpp\"\n\n[[device]]\nid = \"ev-02\"\ncapability = \"ev-charger\"\nasset = \"ev-02\"\nconnection = \"chargers\"\nstale_after_ms = 5000\n",
        &format!(
            "\n[ocpp]\nlisten = \"127.0.0.1:{port}\"\nid_tags = [\"TAG-0001\"]\n\n[[ocpp.charger]]\nidentity = \"CP-02\"\npassword_sha256 = \"{}\"\nunit = \"A\"\nsafe_kw = 4.1\nconnectors = [{{ connector = 1, device = \"ev-02\" }}]\n",
            pedf_devices::ocpp::password_hash(password)
        ),
    )
    .await;
    let python = std::path::Path::new(common::ROOT).join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the EMS never listened for OCPP");
        tokio::task::yield_now().await;
    }
    let mut peer = std::process::Command::new(python)
        .arg(std::path::Path::new(common::ROOT).join("tests/peers/ocpp_cp16.py"))
        .args([
            &format!("ws://127.0.0.1:{port}/ocpp"),
            "CP-02",
            password,
            "operate",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = client();
    let b = &ems.base;
    let state = || async {
        let (_, v) = get(&c, &format!("{b}/api/v1/state"), Some(&ems.viewer)).await;
        v
    };
    let charger = |v: &Value, id: &str| {
        v["chargers"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
            .unwrap_or(Value::Null)
    };
    // The OCPP charger takes commands; the simulated MQTT one does not.
    let ok = eventually(20.0, || async {
        let v = state().await;
        charger(&v, "ev-02")["actions"] == json!(["stop", "start", "disable", "enable"])
            && charger(&v, "ev-01")["actions"] == json!([])
            && v["devices"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|x| x["id"] == "ev-02" && x["quality"] == "good")
            })
    })
    .await;
    assert!(ok, "ev-02 never answered: {}", state().await);
    let post = |id: &'static str, token: String, body: &'static str| {
        let c = c.clone();
        let url = format!("{b}/api/v1/chargers/{id}/command");
        async move {
            send(
                &c,
                reqwest::Method::POST,
                &url,
                &token,
                body,
                "application/json",
            )
            .await
        }
    };
    let op = ems.operator.clone();
    let (s, v) = post("ev-01", op.clone(), r#"{"action": "stop"}"#).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("takes no `stop`"),
        "{v}"
    );
    let (s, v) = post("ev-02", ems.viewer.clone(), r#"{"action": "stop"}"#).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = post("ev-02", op.clone(), r#"{"action": "start"}"#).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("start needs id_tag"),
        "{v}"
    );
    let (s, v) = post("ev-02", op.clone(), r#"{"action": "stop"}"#).await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no transaction is running"),
        "{v}"
    );
    let (s, v) = post(
        "ev-02",
        op.clone(),
        r#"{"action": "start", "id_tag": "TAG-0001", "reason": "the driver's card is lost"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["outcome"].as_str().unwrap().starts_with("accepted"),
        "{v}"
    );
    // The charger's transaction is the park's session on ev-02.
    let ok = eventually(10.0, || async {
        charger(&state().await, "ev-02")["session"].is_object()
    })
    .await;
    assert!(ok, "no session on ev-02: {}", state().await);
    let (s, v) = post("ev-02", op.clone(), r#"{"action": "stop"}"#).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["outcome"].as_str().unwrap().contains("ended"), "{v}");
    let ok = eventually(10.0, || async {
        charger(&state().await, "ev-02")["session"].is_null()
    })
    .await;
    assert!(ok, "the session on ev-02 did not end: {}", state().await);
    // Out of service with no car (while one charges it is scheduled: the device tests).
    let (s, v) = post("ev-02", op.clone(), r#"{"action": "disable"}"#).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"], "out of service", "{v}");
    let (s, v) = post("ev-02", op.clone(), r#"{"action": "enable"}"#).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"], "in service", "{v}");
    // Each command audited and said, refusals too.
    let ok = eventually(5.0, || async {
        let (_, a) = get(
            &c,
            &format!("{b}/api/v1/audit?limit=1000"),
            Some(&ems.operator),
        )
        .await;
        let a = a.as_array().cloned().unwrap_or_default();
        let of = |what: &str, outcome: &str| {
            a.iter().any(|x| {
                x["device"] == "ev-02"
                    && x["reason"].as_str().is_some_and(|r| r.starts_with(what))
                    && x["outcome"]
                        .as_str()
                        .is_some_and(|o| o.starts_with(outcome))
            })
        };
        of("command start: the driver's card is lost", "ok")
            && of("command stop", "refused")
            && of("command stop", "ok")
            && of("command disable", "ok")
            && of("command enable", "ok")
    })
    .await;
    let (_, a) = get(
        &c,
        &format!("{b}/api/v1/audit?limit=1000"),
        Some(&ems.operator),
    )
    .await;
    assert!(ok, "commands not all audited: {a}");
    let (_, ev) = get(
        &c,
        &format!("{b}/api/v1/events?limit=1000"),
        Some(&ems.viewer),
    )
    .await;
    assert!(
        ev.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stop on ev-02 by ") && m.contains("ended"))),
        "{ev}"
    );
    let _ = peer.kill();
    let _ = peer.wait();
    ems.stop().await;
}

/// Grid requests through the API: an operator's import cap over the running hour is taken
/// (held, said in force, listed with its status and, without like days recorded yet, why its
/// baseline cannot be made); a reduction against a baseline the store cannot give, an export
/// floor above the park's export limit and a window already over are refused with why (422);
/// a bad kind is a 400; a viewer
/// may read but not give one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_gives_a_grid_request_the_ems_holds_or_refuses() {
    let ems = Ems::start("grid-requests").await;
    let c = client();
    let url = format!("{}/api/v1/grid-requests", ems.base);
    // The EMS's clock starts at 10:00 local on 27 November 2026: the hour from 10:00.
    let body = |kind: &str, kw: f64, start: &str, end: &str| {
        json!({"id": format!("r-{kind}"), "kind": kind, "kw": kw, "start": start, "end": end,
               "price_cny_per_kwh": 3.0})
        .to_string()
    };
    let (hour_start, hour_end) = ("2026-11-27T10:00:00+08:00", "2026-11-27T11:00:00+08:00");
    let post = |token: String, b: String| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            send(
                &c,
                reqwest::Method::POST,
                &url,
                &token,
                &b,
                "application/json",
            )
            .await
        }
    };
    let (status, v) = post(
        ems.operator.clone(),
        body("cap_import", 60.0, hour_start, hour_end),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["held_kw"], 60.0);
    assert!(v["note"].as_str().unwrap().starts_with("accepted"), "{v}");
    for (kind, kw, start, end, why) in [
        ("reduce_import", 50.0, hour_start, hour_end, "like days"),
        (
            "export_at_least",
            5000.0,
            hour_start,
            hour_end,
            "above the park's export limit",
        ),
        (
            "cap_export",
            50.0,
            "2026-11-27T08:00:00+08:00",
            "2026-11-27T09:00:00+08:00",
            "window ended",
        ),
    ] {
        let (status, v) = post(ems.operator.clone(), body(kind, kw, start, end)).await;
        assert_eq!(status, 422, "{kind}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(why) || v.to_string().contains(why),
            "{kind}: {v}"
        );
    }
    let (status, v) = post(
        ems.operator.clone(),
        body("shed", 50.0, hour_start, hour_end),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("kinds: cap_import"), "{v}");
    let (status, v) = post(
        ems.operator.clone(),
        body("cap_import", 50.0, "2026-11-27T10:07:00+08:00", hour_end),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = post(
        ems.viewer.clone(),
        body("cap_import", 50.0, hour_start, hour_end),
    )
    .await;
    assert_eq!(status, 403);
    // Listed: in force, what is held, and why no delivery is measured yet.
    let (status, v) = get(&c, &url, Some(&ems.viewer)).await;
    assert_eq!(status, 200, "{v}");
    let list = v["requests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let r = &list[0];
    assert_eq!(
        (r["id"].as_str(), r["kind"].as_str(), r["status"].as_str()),
        (Some("r-cap_import"), Some("cap_import"), Some("in force")),
        "{r}"
    );
    assert_eq!(r["held_kw"], 60.0);
    assert!(
        r["source"].as_str().unwrap().starts_with("api: operator"),
        "{r}"
    );
    assert!(
        r["delivery"]["why"].as_str().unwrap().contains("like days"),
        "{r}"
    );
    // Said in the events: taken, in force, the refusals.
    let events = format!("{}/api/v1/events?limit=200", ems.base);
    let seen = eventually(10.0, || async {
        let (_, v) = get(&c, &events, Some(&ems.viewer)).await;
        let t = v.to_string();
        t.contains("grid request r-cap_import in force") && t.contains("refused")
    })
    .await;
    let (_, v) = get(&c, &events, Some(&ems.viewer)).await;
    assert!(seen, "{v}");
    assert!(
        v.to_string()
            .contains("grid request r-export_at_least from api: operator"),
        "{v}"
    );
    ems.stop().await;
}
