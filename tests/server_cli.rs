//! `pedf run` with a `[server]` table, as a process: the first start prints the admin token
//! once; the plan page's calls plan a day from the example inputs and make the plan active;
//! the carbon page's calls account a day of interval records in the store and issue a signed
//! certificate whose PDF and JSON can be downloaded; a second certificate for the same period
//! is refused; a viewer may not issue one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[path = "../crates/pedf-runtime/tests/support/ports.rs"]
mod ports;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn call(
    c: &reqwest::blocking::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut r = c
        .request(method.parse().unwrap(), url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(60));
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().unwrap();
    let s = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[cfg(unix)]
#[test]
fn plans_accounts_and_certifies_through_the_api() {
    let dir = std::env::temp_dir().join(format!("pedf-server-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("var")).unwrap();
    // The store holds the example day's interval records (as the runtime would have written).
    let park_path = format!("{ROOT}/config/qingzhou-pedf.toml");
    let park = pedf_core::config::load_park(&park_path, &std::fs::read(&park_path).unwrap())
        .value
        .unwrap();
    let rec_path = format!("{ROOT}/simulations/qingzhou-pedf/records/2026-06-21.csv");
    let bytes = std::fs::read(&rec_path).unwrap();
    let records = pedf_carbon::records::read_records(
        pedf_core::csvtext::InputFile {
            name: &rec_path,
            bytes: &bytes,
        },
        &park.clock,
    )
    .unwrap();
    let pv_total: f64 = records.iter().map(|r| r.pv_kwh).sum();
    let mut store = pedf_store::Store::open(&dir.join("var/pedf.sqlite")).unwrap();
    store.put_records(&records, "measured").unwrap();
    // The last interval (23:45, night: no PV) the EMS saw only in part: a gap to carbon
    // accounting and certificates, never a record observed whole.
    let last = records.last().unwrap().clone();
    assert_eq!(last.pv_kwh, 0.0);
    store.put_records(&[last], "measured-partial").unwrap();
    // The grid company's billing meter counted every interval (its counters differenced, as
    // the runtime's billing reads write them): 0.3 % more import than the records.
    for r in &records {
        store
            .put_meter_interval(&pedf_store::MeterInterval {
                meter: "grid".into(),
                start: r.start,
                import_kwh: r.grid_import_kwh * 1.003,
                export_kwh: Some(r.grid_export_kwh),
                lag_s: 2.0,
            })
            .unwrap();
    }
    drop(store);
    let port = ports::free_port();
    std::fs::write(
        dir.join("run.toml"),
        format!(
            "park = \"{park_path}\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"var/pedf.sqlite\"\ncycle_ms = 500\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nplan_inputs = \"{ROOT}/simulations/qingzhou-pedf/day-inputs\"\nemission_factors = \"{ROOT}/config/emission-factors/china-grid.toml\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedf"))
        .args(["run", "--config", dir.join("run.toml").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin = None;
    let mut url = None;
    for l in lines.by_ref() {
        let l = l.unwrap();
        if let Some(t) = l.split("keep it safe): ").nth(1) {
            admin = Some(t.trim().to_string());
        }
        if let Some(u) = l.strip_prefix("pedf run: dashboard and API at ") {
            url = Some(u.trim().trim_end_matches('/').to_string());
            break;
        }
    }
    let admin = admin.expect("the admin token is printed on first start");
    let b = url.expect("the server's address is printed");
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::blocking::Client::new();

    // The dashboard page itself is served.
    let page = c.get(format!("{b}/")).send().unwrap().text().unwrap();
    assert!(page.contains("/assets/app.js"));

    // A viewer token, made by the admin.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/tokens"),
        &admin,
        Some(r#"{"label":"auditor","role":"viewer"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let viewer = v["token"].as_str().unwrap().to_string();

    // Plan a day from the example inputs, inspect it, make it active.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/plans"),
        &admin,
        Some(r#"{"day":"2026-06-21"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, p) = call(&c, "GET", &format!("{b}/api/v1/plans/{id}"), &viewer, None);
    assert_eq!(s, 200);
    assert_eq!(p["plan"]["intervals"].as_array().unwrap().len(), 96);
    assert!(p["plan"]["objective_cny"].as_f64().unwrap() > 0.0);
    let (s, _) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/plans/{id}/activate"),
        &viewer,
        None,
    );
    assert_eq!(s, 403);
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/plans/{id}/activate"),
        &admin,
        None,
    );
    assert_eq!(s, 200, "{v}");
    let (_, list) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/plans?day=2026-06-21"),
        &viewer,
        None,
    );
    assert_eq!(list[0]["active"], Value::Bool(true), "{list}");
    // The activation is an event naming who made it.
    let (_, ev) = call(&c, "GET", &format!("{b}/api/v1/events"), &viewer, None);
    let said = format!("plan #{id} (");
    assert!(
        ev.as_array().unwrap().iter().any(|e| {
            let m = e["message"].as_str().unwrap();
            m.starts_with(&said) && m.contains("made active by admin #")
        }),
        "{ev}"
    );
    // A day without inputs: a clear reason.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/plans"),
        &admin,
        Some(r#"{"day":"2027-01-01"}"#),
    );
    assert_eq!(s, 422, "{v}");
    // The application's reason in the answer, not a command-line one (`--inputs`) pointing at
    // what the server printed on its console ("see above").
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains("2027-01-01") && !why.contains("--") && !why.contains("see above"),
        "{v}"
    );

    // The period is checked by the server: each problem names its field (400).
    for (query, field) in [
        ("from=2026-06-22&to=2026-06-21", "to"),
        ("from=June&to=2026-06-21", "from"),
    ] {
        let (s, v) = call(
            &c,
            "GET",
            &format!("{b}/api/v1/carbon?{query}"),
            &viewer,
            None,
        );
        assert_eq!(s, 400, "{query}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{query}: {v}"
        );
    }
    // A period without records: nothing to certify (422, the store named).
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/certificates"),
        &admin,
        Some(r#"{"from":"2025-01-01","to":"2025-01-02"}"#),
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no record inside"),
        "{v}"
    );
    // A certificate that does not exist: 404.
    let (s, _) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/certificates/QINGZHOU-PEDF-2026-999999/json"),
        &viewer,
        None,
    );
    assert_eq!(s, 404);

    // Carbon accounting of the day in the store.
    let (s, v) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/carbon?from=2026-06-21&to=2026-06-22"),
        &viewer,
        None,
    );
    assert_eq!(s, 200, "{v}");
    let pv = v["totals"]["pv_kwh"].as_f64().unwrap();
    assert!((pv - pv_total).abs() < 1e-6, "{pv} vs {pv_total}");
    assert_eq!(
        v["estimated_intervals"], 1,
        "the interval seen in part: {v}"
    );
    // One viewer's request for 8000 years is refused before anything is read (it once
    // accounted every interval in memory and aborted the EMS).
    let (s, v) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/carbon?from=2021-01-01&to=9999-12-31"),
        &viewer,
        None,
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("at most 366 days"),
        "{v}"
    );

    // Certificates: a viewer is refused; an operator (here the admin) issues one.
    let body = r#"{"from":"2026-06-21","to":"2026-06-22"}"#;
    let (s, _) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/certificates"),
        &viewer,
        Some(body),
    );
    assert_eq!(s, 403);
    let (s, cert) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/certificates"),
        &admin,
        Some(body),
    );
    assert_eq!(s, 200, "{cert}");
    let serial = cert["id"].as_str().unwrap().to_string();
    assert!(serial.starts_with("QINGZHOU-PEDF-2026-"), "{serial}");
    assert!(cert["stated_t"].as_f64().unwrap() > 0.0, "{cert}");
    let pdf = c
        .get(format!("{b}/api/v1/certificates/{serial}/pdf"))
        .bearer_auth(&viewer)
        .send()
        .unwrap();
    assert_eq!(pdf.status().as_u16(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().unwrap().starts_with(b"%PDF-"));
    let json = c
        .get(format!("{b}/api/v1/certificates/{serial}/json"))
        .bearer_auth(&viewer)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["serial"].as_str(), Some(serial.as_str()));
    // The interval seen in part is not claimed as recorded.
    assert_eq!(
        (
            &doc["data_quality"]["intervals_recorded"],
            &doc["data_quality"]["intervals_expected"]
        ),
        (&serde_json::json!(95), &serde_json::json!(96)),
        "{}",
        doc["data_quality"]
    );
    // The downloaded certificate verifies (signature and ledger) with `pedf certificate verify`
    // and the server's issuer key as the park publishes it (from its key file).
    let (issuer, _) =
        pedf_carbon::certificate::load_or_create_key(&dir.join("var/issuer.key")).unwrap();
    let issuer_public_key: String = issuer
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join("downloaded.json"), &json).unwrap();
    // `pedf certificate verify` on the download, with more arguments: (passed, what it said).
    let verify = |more: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pedf"))
            .args(["certificate", "verify"])
            .arg(dir.join("downloaded.json"))
            .args(["--public-key", &issuer_public_key, "--ledger"])
            .arg(dir.join("var/certificates/ledger.jsonl"))
            .args(more)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = verify(&[]);
    assert!(ok, "{said}");
    // The records it covers, from the API, and the data check: the figures recomputed from
    // them, the Merkle root over them (the PDF's verify command works as printed).
    let covered = c
        .get(format!("{b}/api/v1/certificates/{serial}/records"))
        .bearer_auth(&viewer)
        .send()
        .unwrap();
    assert_eq!(covered.status().as_u16(), 200);
    assert!(covered.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    std::fs::write(dir.join("covered.csv"), covered.bytes().unwrap()).unwrap();
    let covered_csv = dir.join("covered.csv");
    // The certificate states the billing meter beside the records, over the 95 intervals
    // both have; its intervals come from the API too.
    let billing = &doc["billing_meter"];
    assert_eq!(
        (&billing["meters"], &billing["intervals_counted"]),
        (&serde_json::json!(["grid"]), &serde_json::json!(95)),
        "{billing}"
    );
    let metered = c
        .get(format!("{b}/api/v1/certificates/{serial}/meter-intervals"))
        .bearer_auth(&viewer)
        .send()
        .unwrap();
    assert_eq!(metered.status().as_u16(), 200);
    std::fs::write(dir.join("metered.csv"), metered.bytes().unwrap()).unwrap();
    let metered_csv = dir.join("metered.csv");
    let (ok, said) = verify(&[
        "--data",
        covered_csv.to_str().unwrap(),
        "--meter-intervals",
        metered_csv.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    assert!(
        said.contains("every figure recomputed from the 95 records matches; Merkle root matches; the billing meter's figures (grid, 95 intervals) recomputed from its intervals match"),
        "the data was checked: {said}"
    );
    // Without the meter's intervals the billing meter's figures are not taken on trust.
    let (ok, said) = verify(&["--data", covered_csv.to_str().unwrap()]);
    assert!(
        !ok && said.contains("no meter intervals were given"),
        "{said}"
    );
    // The day's history: its bill, computed here from the records with the park file's June
    // prices by hand (not pedf's tariff code), and terms that add up to the month's total.
    let (s, h) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/history?from=2026-06-21&to=2026-06-22"),
        &viewer,
        None,
    );
    assert_eq!(s, 200, "{h}");
    let june_price = |hour: u32| match hour {
        0..=6 | 10 | 23 => 0.32,
        7..=9 | 14 | 15 | 21 | 22 => 0.65,
        11..=13 => 0.20,
        16..=18 => 1.05,
        _ => 1.25,
    };
    let whole = &records[..records.len() - 1];
    let hour = |r: &pedf_core::records::IntervalRecord| {
        use chrono::Timelike;
        park.clock.local(r.start).hour()
    };
    let energy: f64 = whole
        .iter()
        .map(|r| r.grid_import_kwh * june_price(hour(r)))
        .sum();
    let export: f64 = whole.iter().map(|r| r.grid_export_kwh * 0.3949).sum();
    let wear: f64 = whole.iter().map(|r| r.battery_discharge_kwh * 0.10).sum();
    let peak = whole
        .iter()
        .map(|r| r.grid_import_kwh / 0.25)
        .fold(0.0, f64::max);
    let day = &h["days"][0];
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-6 * x.abs().max(1.0);
    assert_eq!(day["day"], "2026-06-21", "{h}");
    assert_eq!(
        (&day["intervals"], &day["intervals_expected"]),
        (&serde_json::json!(95), &serde_json::json!(96))
    );
    assert!(close(&day["energy_cny"], energy), "energy {energy}: {day}");
    assert!(close(&day["export_cny"], export), "export {export}: {day}");
    assert!(close(&day["wear_cny"], wear), "wear {wear}: {day}");
    assert!(close(&day["peak_import_kw"], peak), "peak {peak}: {day}");
    let month = &h["months"][0];
    assert!(close(&month["demand_cny"], 38.0 * peak), "{month}");
    assert!(
        close(&month["total_cny"], energy - export + 38.0 * peak + wear),
        "{month}"
    );
    let csv = c
        .get(format!(
            "{b}/api/v1/history?from=2026-06-21&to=2026-06-22&format=csv"
        ))
        .bearer_auth(&viewer)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lines: Vec<&str> = csv.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("day,intervals,") && lines[1].starts_with("2026-06-21,95,96,"));
    // The same period again: refused, a period is certified once.
    let (s, v) = call(
        &c,
        "POST",
        &format!("{b}/api/v1/certificates"),
        &admin,
        Some(body),
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("overlaps"), "{v}");
    // Path tricks are refused.
    let (s, _) = call(
        &c,
        "GET",
        &format!("{b}/api/v1/certificates/..%2Fpedf/json"),
        &viewer,
        None,
    );
    assert_eq!(s, 400);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
