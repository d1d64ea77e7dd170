//! pedf's OCPP 1.6J central system against a charge point it did not write: the `ocpp`
//! package (mobilityhouse, pinned in the outside peers' venv that scripts/setup makes), which
//! checks every message against the official OCPP 1.6 JSON schemas, driven from here through
//! `tests/peers/ocpp_cp16.py`. A session: wrong-schema messages answered with the right
//! CALLERROR, boot, authorisation (a listed tag and an unknown one), a transaction with meter
//! values into the connector's device state, a limit set as a charging profile and read back
//! as the composite schedule, a remote stop, a stop repeated; a transaction across a
//! reconnect with its stop sent on the new connection; a wrong password and an unknown
//! charger refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pedf_devices::capability::Field;
use pedf_devices::ocpp::v16::RateUnit;
use pedf_devices::ocpp::{
    password_hash, ChargerEntry, ConnectorEntry, OcppConfig, OcppDevice, OcppHub,
};
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn python() -> PathBuf {
    let p = Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        p.display()
    );
    p
}

/// The peer's lines, read on a thread, taken with a deadline.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    /// Lines `said` took that `next` has not gone past yet.
    unread: std::collections::VecDeque<Value>,
}

impl Peer {
    fn start(url: &str, identity: &str, password: &str, scenario: &str) -> Peer {
        Peer::start_trusting(url, identity, password, scenario, None)
    }

    /// The OCPP 2.0.1 charging station (`tests/peers/ocpp_cs201.py`).
    fn start201(url: &str, identity: &str, password: &str, scenario: &str) -> Peer {
        Peer::spawn("ocpp_cs201.py", url, [identity, password, scenario], None)
    }

    /// The same over `wss://`, trusting the central system's certificate `ca` (PEM).
    fn start_trusting(
        url: &str,
        identity: &str,
        password: &str,
        scenario: &str,
        ca: Option<&Path>,
    ) -> Peer {
        Peer::spawn("ocpp_cp16.py", url, [identity, password, scenario], ca)
    }

    fn spawn(script: &str, url: &str, args: [&str; 3], ca: Option<&Path>) -> Peer {
        let mut cmd = Command::new(python());
        if let Some(ca) = ca {
            cmd.env("OCPP_CA", ca);
        }
        let mut child = cmd
            .arg(Path::new(ROOT).join("tests/peers").join(script))
            .arg(url)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the OCPP peer starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Peer {
            child,
            lines,
            seen: Vec::new(),
            unread: std::collections::VecDeque::new(),
        }
    }

    /// Waits (at most 20 s) for the peer's next `event`, returning it.
    async fn next(&mut self, event: &str) -> Value {
        // Lines already taken by `said` first, in order.
        while let Some(v) = self.unread.pop_front() {
            if v["event"] == event {
                return v;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Blocking on the peer's line with the deadline, the runtime's other thread
            // serving the hub meanwhile.
            match tokio::task::block_in_place(|| self.lines.recv_timeout(left)) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == event {
                        return v;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no `{event}` from the peer; it said {:?}", self.seen)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the peer ended before `{event}`; it said {:?}", self.seen)
                }
            }
        }
    }
}

impl Peer {
    /// The next `n` CALLERRORs the peer received: each one's message id and error code.
    async fn callerrors(&mut self, n: usize) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for _ in 0..n {
            let v = self.next("callerror").await;
            let a = v["answer"].as_array().unwrap().clone();
            assert_eq!(a[0], 4, "{v}");
            errors.push((
                a[1].as_str().unwrap().to_string(),
                a[2].as_str().unwrap().to_string(),
            ));
        }
        errors
    }

    /// Everything the peer said so far but its meter values (what `next` has not gone past
    /// stays for it).
    fn said(&mut self) -> Vec<Value> {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v.clone());
            self.unread.push_back(v);
        }
        self.seen
            .iter()
            .filter(|v| v["event"] != "meter")
            .cloned()
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The EMS's clock in these tests: from a fixed instant (10:00 local on 21 June 2026), not
/// today's date; the chargers keep their own.
fn ems_time() -> pedf_core::time::TimeSource {
    pedf_core::time::TimeSource::scaled(
        chrono::DateTime::from_timestamp(1_782_007_200, 0).unwrap(),
        1.0,
    )
}

fn config() -> OcppConfig {
    OcppConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        chargers: vec![
            ChargerEntry {
                identity: "CP-A".into(),
                password_sha256: password_hash("secret-a-0123456789"),
                connectors: vec![ConnectorEntry {
                    connector: 1,
                    device: "ev-a1".into(),
                }],
                unit: RateUnit::A {
                    phases: 3,
                    voltage: 230.0,
                },
                safe_kw: 4.1,
            },
            ChargerEntry {
                identity: "CP-B".into(),
                password_sha256: password_hash("secret-b-0123456789"),
                connectors: vec![ConnectorEntry {
                    connector: 1,
                    device: "ev-b1".into(),
                }],
                unit: RateUnit::W,
                safe_kw: 3.0,
            },
            // An OCPP 2.0.1 station: its EVSE 1 is the device.
            ChargerEntry {
                identity: "CS-C".into(),
                password_sha256: password_hash("secret-c-0123456789"),
                connectors: vec![ConnectorEntry {
                    connector: 1,
                    device: "ev-c1".into(),
                }],
                unit: RateUnit::W,
                safe_kw: 3.5,
            },
        ],
        id_tags: vec!["TAG-0001".into()],
        accept_unknown_tags: false,
        heartbeat_s: 60,
        call_timeout: Duration::from_secs(10),
        limit_hold_s: 120,
        meter_interval_s: None,
        tls: None,
    }
}

/// Waits (at most 10 s) until the device's state satisfies `ok`.
async fn wait_state(
    d: &OcppDevice,
    what: &str,
    ok: impl Fn(&pedf_devices::capability::DeviceState) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.state();
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_point_on_the_ocpp_package_runs_a_session_under_pedfs_limits() {
    let time = ems_time();
    let hub = OcppHub::start(config(), time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-a1", Duration::from_secs(5)).unwrap();
    let now = || time.now();

    let mut peer = Peer::start(&url, "CP-A", "secret-a-0123456789", "session");
    // Messages the schema refuses, each answered with the CALLERROR OCPP-J 1.6 names.
    let errors = peer.callerrors(4).await;
    assert_eq!(
        errors,
        [
            ("bad-1".into(), "PropertyConstraintViolation".into()),
            ("bad-2".into(), "FormationViolation".into()),
            ("bad-3".into(), "ProtocolError".into()),
            ("-1".into(), "FormationViolation".into()),
        ]
    );

    // Boot: accepted with the heartbeat interval; the safe default follows at stack level 0.
    let boot = peer.next("boot").await;
    assert_eq!(
        (boot["status"].as_str(), boot["interval"].as_u64()),
        (Some("Accepted"), Some(60))
    );
    // Default profiles from before cleared (none here), then the safe default.
    let cleared = peer.next("cleared").await;
    assert_eq!(
        (cleared["purpose"].as_str(), cleared["n"].as_u64()),
        (Some("TxDefaultProfile"), Some(0))
    );
    let safe = peer.next("profile").await;
    assert_eq!(
        (
            safe["purpose"].as_str(),
            safe["stack"].as_u64(),
            safe["unit"].as_str()
        ),
        (Some("TxDefaultProfile"), Some(0), Some("A"))
    );
    // 4.1 kW on three phases at 230 V: 5.9 A (rounded down, never above).
    assert_eq!(safe["limit"].as_f64(), Some(5.9));
    assert_eq!(safe["duration"], Value::Null);
    let started = peer.next("started").await;
    let tx = started["transaction"].as_i64().unwrap();
    // The listed tag is accepted, another refused (said before the start, in whatever order
    // beside the central system's calls after the boot).
    let said = peer.said();
    let status = |e: &str| {
        said.iter()
            .find(|v| v["event"] == e)
            .map(|v| v["status"].clone())
    };
    assert_eq!(status("authorize"), Some(json!("Accepted")));
    assert_eq!(status("authorize_unknown"), Some(json!("Invalid")));
    peer.next("charging").await;

    // Meter values reach the connector's device state: charging at the safe limit.
    wait_state(&dev, "charging at the safe default", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
            && s.good(Field::PowerKw, now())
                .is_some_and(|p| (p - 4.071).abs() < 0.01)
            && s.good(Field::SessionKwh, now()).is_some_and(|e| e > 0.0)
            && s.good(Field::SocPct, now()) == Some(57.0)
    })
    .await;

    // The EMS's limit: the transaction's own profile, read back as the composite schedule.
    let got = match dev.set_limit(7.0).await {
        Ok(g) => g,
        Err(e) => panic!("{e}; the peer said {:?}", peer.said()),
    };
    let p = peer.next("profile").await;
    assert_eq!(
        (
            p["purpose"].as_str(),
            p["stack"].as_u64(),
            p["duration"].as_u64()
        ),
        (Some("TxProfile"), Some(1), Some(120))
    );
    // 7 kW: 10.1 A on three phases (6.969 kW), what the charger confirms.
    assert_eq!(p["limit"].as_f64(), Some(10.1));
    assert!((got - 10.1 * 230.0 * 3.0 / 1000.0).abs() < 1e-9, "{got}");
    assert_eq!(dev.limit_kw(), Some(got));
    wait_state(&dev, "charging at the EMS's limit", |s| {
        s.good(Field::PowerKw, now())
            .is_some_and(|p| (p - got).abs() < 0.01)
    })
    .await;

    // A remote stop: the charger stops the transaction; the session's energy is its meter's.
    let answer = hub
        .call(
            "CP-A",
            "RemoteStopTransaction",
            json!({"transactionId": tx}),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Accepted");
    let stopped = peer.next("stopped").await;
    let wh = stopped["wh"].as_i64().unwrap();
    assert_eq!(peer.next("stopped_again").await["status"], "Accepted");
    peer.next("done").await;
    wait_state(&dev, "free after the stop", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
            && s.good(Field::PowerKw, now()) == Some(0.0)
            && s.good(Field::EnergyKwh, now()) == Some(wh as f64 / 1000.0)
    })
    .await;
    let events = hub.take_events();
    let said = events.join("\n");
    for want in [
        "charger CP-A connected (ocpp1.6)",
        "charger CP-A booted: PeerCo Wallbox 11, firmware 1.2.3",
        &format!("transaction {tx} started by TAG-0001 (Accepted)"),
        &format!(
            "transaction {tx} stopped (Remote), {:.3} kWh",
            (wh - 1000) as f64 / 1000.0
        ),
    ] {
        assert!(said.contains(want), "`{want}` in {said}");
    }
    // Counted once: one stop event for the transaction.
    assert_eq!(
        said.matches(&format!("transaction {tx} stopped")).count(),
        1
    );
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_goes_on_across_a_reconnect_and_strangers_are_refused() {
    let time = ems_time();
    let hub = OcppHub::start(config(), time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-b1", Duration::from_secs(5)).unwrap();
    let now = || time.now();

    // A wrong password and an unknown charger: refused at the handshake, said as events.
    let mut p = Peer::start(&url, "CP-B", "not-the-password", "refused");
    assert_eq!(p.next("refused").await["status"], 401);
    let mut p = Peer::start(&url, "CP-Z", "whatever", "refused");
    assert_eq!(p.next("refused").await["status"], 404);
    let said = hub.take_events().join("\n");
    assert!(
        said.contains("charger CP-B was refused: wrong or missing password"),
        "{said}"
    );
    assert!(
        said.contains("an unknown charger `CP-Z` was refused"),
        "{said}"
    );
    assert!(!hub.connected("CP-B"));
    // Never heard from yet: not read, not failed (the runtime's start grace applies).
    let before = dev.state();
    assert_eq!((before.last_ok, before.last_error), (None, None));

    let mut peer = Peer::start(&url, "CP-B", "secret-b-0123456789", "reconnect");
    let tx = peer.next("started").await["transaction"].as_i64().unwrap();
    // The safe default in W: 3000.0 W.
    let dropped = peer.next("dropped").await;
    wait_state(&dev, "not answering while disconnected", |s| {
        s.last_error.as_deref() == Some("the charger is not connected")
    })
    .await;
    let back = peer.next("back").await;
    assert_eq!(back["transaction"].as_i64(), Some(tx));
    let stopped = peer.next("stopped").await;
    peer.next("done").await;
    let wh = stopped["wh"].as_i64().unwrap();
    assert!(wh > dropped["wh"].as_i64().unwrap());
    wait_state(&dev, "the stop after the reconnect counted", |s| {
        s.good(Field::EnergyKwh, now()) == Some(wh as f64 / 1000.0)
            && s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    let said = hub.take_events().join("\n");
    assert!(
        said.contains(&format!(
            "transaction {tx} stopped (EVDisconnected), {:.3} kWh",
            (wh - 1000) as f64 / 1000.0
        )),
        "{said}"
    );
    assert_eq!(said.matches("charger CP-B booted").count(), 2, "{said}");
    hub.stop();
}

/// A bare charger for faults the well-behaved peer does not make: a WebSocket with the
/// subprotocol and password, sending and reading raw frames.
async fn raw(
    addr: std::net::SocketAddr,
    identity: &str,
    password: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use base64::Engine;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ocpp/{identity}")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().unwrap());
    h.insert(
        "Authorization",
        format!("Basic {}", encode(&format!("{identity}:{password}")))
            .parse()
            .unwrap(),
    );
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn send(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    v: Value,
) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
        .await
        .unwrap();
}

/// The next text frame, at most 10 s away (`None`: the connection ended).
async fn recv(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Value> {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        match m {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).ok()
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None | Some(Err(_)) => {
                return None
            }
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_charger_a_double_and_a_flood_leave_the_hub_working() {
    let mut cfg = config();
    cfg.call_timeout = Duration::from_millis(300);
    let time = ems_time();
    let hub = OcppHub::start(cfg, time).unwrap();
    let dev = hub.device("ev-b1", Duration::from_secs(5)).unwrap();
    let now = || time.now();

    // A charger that boots, then never answers the EMS: each call fails after its timeout,
    // one at a time, and the charger's own calls are still answered meanwhile.
    let mut ws = raw(hub.addr, "CP-B", "secret-b-0123456789").await;
    send(
        &mut ws,
        json!([2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]),
    )
    .await;
    let boot = recv(&mut ws).await.unwrap();
    assert_eq!(boot[2]["status"], "Accepted", "{boot}");
    // Default profiles from before cleared, then the safe default profile (each unanswered:
    // said as a timeout).
    let clear = recv(&mut ws).await.unwrap();
    assert_eq!(
        (
            clear[2].as_str(),
            clear[3]["chargingProfilePurpose"].as_str()
        ),
        (Some("ClearChargingProfile"), Some("TxDefaultProfile"))
    );
    let safe = recv(&mut ws).await.unwrap();
    assert_eq!(
        (safe[0].as_i64(), safe[2].as_str()),
        (Some(2), Some("SetChargingProfile"))
    );
    let (a, b) = tokio::join!(dev.set_limit(5.0), dev.set_limit(6.0));
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    assert!(
        a.contains("charger CP-B did not answer SetChargingProfile in 0.3 s"),
        "{a}"
    );
    assert!(b.contains("did not answer SetChargingProfile"), "{b}");
    send(&mut ws, json!([2, "h1", "Heartbeat", {}])).await;
    // Frames in order: the two unanswered calls, then the heartbeat's answer.
    let mut got_heartbeat = false;
    for _ in 0..3 {
        let f = recv(&mut ws).await.unwrap();
        if f[0] == 3 && f[1] == "h1" {
            got_heartbeat = true;
            assert!(f[2]["currentTime"].is_string());
        }
    }
    assert!(got_heartbeat);

    // A flood of meter values: every one answered, the newest held.
    send(&mut ws, json!([2, "s1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}])).await;
    let _ = recv(&mut ws).await;
    let n = 2000;
    for i in 0..n {
        send(
            &mut ws,
            json!([2, format!("m{i}"), "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": pedf_devices::ocpp::ocpp_time(now()), "sampledValue": [
                {"value": format!("{}", 1000 + i), "measurand": "Energy.Active.Import.Register"},
                {"value": "3000", "measurand": "Power.Active.Import", "unit": "W"}]}]}]),
        )
        .await;
    }
    let mut answered = 0;
    while answered < n {
        let f = recv(&mut ws).await.unwrap();
        if f[0] == 3 && f[1].as_str().is_some_and(|id| id.starts_with('m')) {
            answered += 1;
        }
    }
    wait_state(&dev, "the newest of the flood", |s| {
        s.good(Field::EnergyKwh, now()) == Some((1000 + n - 1) as f64 / 1000.0)
            && s.good(Field::PowerKw, now()) == Some(3.0)
    })
    .await;

    // A charger whose clock is years behind: its readings are fresh as of their arrival; one
    // stamped earlier than the one held (sent late) does not replace it.
    let mv = |id: &str, stamp: &str, w: &str| {
        json!([2, id, "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": stamp,
            "sampledValue": [{"value": w, "measurand": "Power.Active.Import", "unit": "W"}]}]}])
    };
    let mut behind = raw(hub.addr, "CP-A", "secret-a-0123456789").await;
    let a1 = hub.device("ev-a1", Duration::from_secs(5)).unwrap();
    send(&mut behind, mv("old-1", "2020-01-01T00:00:10Z", "4000")).await;
    let _ = recv(&mut behind).await;
    send(&mut behind, mv("old-2", "2020-01-01T00:00:05Z", "9000")).await;
    let _ = recv(&mut behind).await;
    wait_state(&a1, "a skewed clock's reading, fresh", |s| {
        s.good(Field::PowerKw, now()) == Some(4.0)
    })
    .await;

    // A second connection claiming the identity: it takes over, the first is closed.
    let mut second = raw(hub.addr, "CP-B", "secret-b-0123456789").await;
    assert!(
        recv(&mut ws).await.is_none(),
        "the older connection is closed"
    );
    send(&mut second, json!([2, "h2", "Heartbeat", {}])).await;
    assert_eq!(recv(&mut second).await.unwrap()[1], "h2");
    let said = hub.take_events().join("\n");
    assert!(
        said.contains("charger CP-B did not answer SetChargingProfile"),
        "{said}"
    );
    assert!(
        said.contains("charger CP-B connected again (ocpp1.6); its older connection is closed"),
        "{said}"
    );
    assert!(hub.connected("CP-B"));
    hub.stop();
}

/// The simulated charge point of pedf-sim-devices (the demo's OCPP chargers, written apart
/// from the central system) against the hub: a car plugs in, charges under a limit set and
/// read back, leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_charge_point_charges_a_car_under_the_hubs_limit() {
    use pedf_sim_devices::ocpp::SimOcppVersion;
    sim_charges(
        SimOcppVersion::V16,
        "CP-B",
        "secret-b-0123456789",
        "ev-b1",
        3.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_2_0_1_station_charges_a_car_under_the_hubs_limit() {
    use pedf_sim_devices::ocpp::SimOcppVersion;
    sim_charges(SimOcppVersion::V201, "CS-C", PASS_C, "ev-c1", 3.5).await;
}

async fn sim_charges(
    version: pedf_sim_devices::ocpp::SimOcppVersion,
    identity: &str,
    password: &str,
    device: &str,
    safe_kw: f64,
) {
    let time = ems_time();
    let hub = OcppHub::start(config(), time).unwrap();
    let dev = hub.device(device, Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let cp = pedf_sim_devices::ocpp::SimOcppCharger::start_speaking(
        version,
        &format!("ws://{}/ocpp", hub.addr),
        identity,
        password,
        Duration::from_millis(50),
        60.0,
    );
    // The safe default reaches it after its boot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *cp.command_kw.lock().unwrap() != Some(safe_kw) {
        assert!(
            Instant::now() < deadline,
            "no safe default: {:?}",
            hub.take_events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *cp.power_kw.lock().unwrap() = 3.0;
    cp.present.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_state(&dev, "a car charging", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
            && s.good(Field::PowerKw, now()) == Some(3.0)
            && s.good(Field::SessionKwh, now()).is_some_and(|e| e > 0.0)
    })
    .await;
    let got = dev.set_limit(5.0).await.unwrap();
    assert!((got - 5.0).abs() < 1e-9, "{got}");
    assert_eq!(*cp.command_kw.lock().unwrap(), Some(5.0));
    // The operator's commands: out of service once the transaction ends, which a remote stop
    // ends; the car, still plugged in, draws nothing until a remote start.
    assert_eq!(dev.set_available(false).await.unwrap(), "Scheduled");
    let tx = dev.remote_stop().await.unwrap();
    wait_state(&dev, "out of service", |s| {
        s.good(Field::ChargerState, now()) == Some(3.0)
    })
    .await;
    assert_eq!(dev.transaction(), None);
    assert_eq!(*cp.command_kw.lock().unwrap(), Some(0.0));
    assert!(
        dev.remote_start("TAG-0001").await.is_err(),
        "out of service"
    );
    assert_eq!(dev.set_available(true).await.unwrap(), "Accepted");
    dev.remote_start("TAG-0001").await.unwrap();
    wait_state(&dev, "charging again", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
    })
    .await;
    assert!(dev.transaction().is_some_and(|t| t != tx));
    cp.present
        .store(false, std::sync::atomic::Ordering::Relaxed);
    wait_state(&dev, "free", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    let said = hub.take_events().join("\n");
    assert!(
        said.contains(&format!("charger {identity} booted: pedf-sim DC 60")),
        "{said}"
    );
    assert!(said.contains("stopped (EVDisconnected)"), "{said}");
    hub.stop();
}

/// A charger whose connection goes half-open (it boots, then reads nothing and sends
/// nothing: no frame, no answer to the hub's pings) is taken for dead after the silence the
/// heartbeat allows, and its device stops answering instead of holding its last readings as
/// fresh; one that answers the pings stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_taken_for_dead() {
    use futures_util::StreamExt;
    let mut cfg = config();
    cfg.heartbeat_s = 1;
    cfg.call_timeout = Duration::from_millis(300);
    let (ping, silence) = pedf_devices::ocpp::liveness(cfg.heartbeat_s, cfg.call_timeout);
    assert_eq!(ping, Duration::from_secs(1));
    assert_eq!(silence, Duration::from_millis(2300));
    let time = ems_time();
    let hub = OcppHub::start(cfg, time).unwrap();
    let boot =
        json!([2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]);
    // CP-A keeps reading (tungstenite answers pings as it reads) and answers the EMS.
    let mut alive = raw(hub.addr, "CP-A", "secret-a-0123456789").await;
    send(&mut alive, boot.clone()).await;
    let alive_task = tokio::spawn(async move {
        while let Some(Ok(m)) = alive.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v[0] == 2 {
                    let id = v[1].clone();
                    let answer = json!([3, id, {"status": "Accepted"}]).to_string();
                    use futures_util::SinkExt;
                    if alive
                        .send(tokio_tungstenite::tungstenite::Message::text(answer))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    // CP-B boots and goes silent.
    let mut dead = raw(hub.addr, "CP-B", "secret-b-0123456789").await;
    send(&mut dead, boot).await;
    assert_eq!(recv(&mut dead).await.unwrap()[0], 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = String::new();
    while !said.contains("charger CP-B silent for 2 s") {
        assert!(Instant::now() < deadline, "{said}");
        said += &hub.take_events().join("\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!hub.connected("CP-B"));
    let dev = hub.device("ev-b1", Duration::from_secs(5)).unwrap();
    assert!(dev.state().last_error.is_some(), "{:?}", dev.state());
    // Well past CP-B's silence, CP-A (answering the pings) is still there.
    assert!(hub.connected("CP-A"), "{said}");
    assert!(!said.contains("charger CP-A silent"), "{said}");
    drop(dead);
    alive_task.abort();
    hub.stop();
}

/// What the EMS asks of a charger, against the `ocpp` package's charge point (which checks
/// every request against the OCPP 1.6 schemas): the meter value interval set at its boot, its
/// configuration read and a read-only key refused, a transaction started and stopped
/// remotely, the connector taken out of service once that transaction ends, a status
/// triggered, a soft reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ems_operates_a_charger_of_the_ocpp_package() {
    let mut cfg = config();
    cfg.meter_interval_s = Some(10);
    let time = ems_time();
    let hub = OcppHub::start(cfg, time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-a1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let mut peer = Peer::start(&url, "CP-A", "secret-a-0123456789", "operate");
    let set = peer.next("configured").await;
    assert_eq!(
        (set["key"].as_str(), set["value"].as_str()),
        (Some("MeterValueSampleInterval"), Some("10"))
    );
    peer.next("ready").await;
    wait_state(&dev, "available", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    let (keys, unknown) = hub
        .get_configuration("CP-A", &["MeterValueSampleInterval", "NoSuchKey"])
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![pedf_devices::ocpp::ConfigKey {
            key: "MeterValueSampleInterval".into(),
            value: Some("10".into()),
            readonly: false,
        }]
    );
    assert_eq!(unknown, vec!["NoSuchKey".to_string()]);
    let e = hub
        .change_configuration("CP-A", "NumberOfConnectors", "2")
        .await
        .unwrap_err();
    assert!(e.contains("NumberOfConnectors with Rejected"), "{e}");
    // No transaction to stop yet: said, nothing sent.
    let e = dev.remote_stop().await.unwrap_err();
    assert!(e.contains("no transaction is running"), "{e}");
    dev.remote_start("TAG-0001").await.unwrap();
    let started = peer.next("started").await;
    assert_eq!(started["status"], "Accepted", "{started}");
    wait_state(&dev, "charging", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
    })
    .await;
    let tx = dev.transaction().expect("the remote start's transaction");
    assert_eq!(
        Some(tx.clone()),
        started["transaction"].as_i64().map(|t| t.to_string())
    );
    // Out of service while a car charges: scheduled for when its transaction ends.
    assert_eq!(dev.set_available(false).await.unwrap(), "Scheduled");
    assert_eq!(dev.remote_stop().await.unwrap(), tx);
    assert_eq!(peer.next("stopped").await["transaction"].to_string(), tx);
    wait_state(&dev, "out of service", |s| {
        s.good(Field::ChargerState, now()) == Some(3.0)
    })
    .await;
    assert_eq!(dev.transaction(), None);
    assert_eq!(dev.set_available(true).await.unwrap(), "Accepted");
    wait_state(&dev, "in service again", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    hub.trigger("CP-A", "StatusNotification", Some(1))
        .await
        .unwrap();
    assert_eq!(
        peer.next("triggered").await["message"],
        "StatusNotification"
    );
    let e = hub
        .trigger("CP-A", "DiagnosticsStatusNotification", None)
        .await;
    assert!(e.unwrap_err().contains("NotImplemented"));
    hub.reset("CP-A", false).await.unwrap();
    assert_eq!(peer.next("reset").await["type"], "Soft");
    peer.next("done").await;
    let said = hub.take_events().join("\n");
    assert!(!said.contains("its own interval"), "{said}");
    hub.stop();
}

#[path = "../../pedf-runtime/tests/support/self_signed.rs"]
mod certs;

/// A certificate for `localhost` and 127.0.0.1 and the rustls configuration of it.
fn tls_of(dir: &Path) -> (PathBuf, std::sync::Arc<tokio_rustls::rustls::ServerConfig>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    certs::self_signed(dir, "cs");
    let (cert, key) = (dir.join("cs.crt"), dir.join("cs.key"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (cert, std::sync::Arc::new(cfg))
}

/// OCPP security profile 2: TLS with Basic authentication. Off loopback the hub takes only
/// TLS; over it the `ocpp` package's charge point (trusting the central system's
/// certificate) charges a car under the EMS's limit; a wrong password inside TLS is refused;
/// a plain WebSocket to the TLS port gets nothing and the hub goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_profile_2_is_tls_with_basic_authentication() {
    let dir = std::env::temp_dir().join(format!("pedf-ocpp-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, tls) = tls_of(&dir);
    let time = ems_time();
    let mut cfg = config();
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = OcppHub::start(cfg.clone(), time)
        .err()
        .expect("plain off loopback");
    assert!(e.contains("loopback only") && e.contains("tls_cert"), "{e}");
    cfg.tls = Some(tls);
    let hub = OcppHub::start(cfg, time).unwrap();
    let url = format!("wss://localhost:{}/ocpp", hub.addr.port());
    let dev = hub.device("ev-a1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    // A plain WebSocket to the TLS port: refused before any OCPP, the hub unharmed.
    let plain = format!("ws://127.0.0.1:{}/ocpp/CP-A", hub.addr.port());
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = plain.into_client_request().unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("the plain handshake ends");
    assert!(r.is_err(), "a plain WebSocket got through to the TLS port");
    let mut wrong = Peer::start_trusting(&url, "CP-A", "not-its-password", "refused", Some(&ca));
    assert_eq!(wrong.next("refused").await["status"], 401);
    let mut peer = Peer::start_trusting(&url, "CP-A", "secret-a-0123456789", "charge", Some(&ca));
    peer.next("boot").await;
    wait_state(&dev, "charging over TLS", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
    })
    .await;
    let got = dev.set_limit(6.9).await.unwrap();
    assert!((got - 6.9).abs() < 0.25, "{got}");
    peer.next("done").await;
    let said = hub.take_events().join("\n");
    assert!(said.contains("charger CP-A connected (ocpp1.6)"), "{said}");
    assert!(
        said.contains("charger CP-A was refused: wrong or missing password"),
        "{said}"
    );
    hub.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A charger's clock that goes back (NTP, the central system's time at boot): one value
/// stamped before the one held is taken for one sent late and does not replace it; several in
/// a row are the charger's new clock, taken and said. Held back, every reading would go stale
/// until the charger's clock came back to where it was (a charger that sets its clock from
/// the central system's time at boot steps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charger_whose_clock_goes_back_is_read_on_its_new_clock() {
    let mut cfg = config();
    cfg.call_timeout = Duration::from_millis(300);
    let time = ems_time();
    let hub = OcppHub::start(cfg, time).unwrap();
    let dev = hub.device("ev-b1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let mut ws = raw(hub.addr, "CP-B", "secret-b-0123456789").await;
    // A call and its answer (the hub's own calls to it, left unanswered, are skipped).
    async fn ask(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        id: &str,
        action: &str,
        payload: Value,
    ) -> Value {
        send(ws, json!([2, id, action, payload])).await;
        loop {
            let v = recv(ws).await.expect("an answer");
            if v[0] == 3 && v[1] == id {
                return v[2].clone();
            }
        }
    }
    ask(
        &mut ws,
        "b",
        "BootNotification",
        json!({"chargePointVendor": "V", "chargePointModel": "M"}),
    )
    .await;
    ask(
        &mut ws,
        "s",
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    )
    .await;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-06-21T02:00:00Z").unwrap();
    let meter = |stamp: chrono::DateTime<chrono::FixedOffset>, w: u32| {
        json!({"connectorId": 1, "meterValue": [{"timestamp": stamp.to_rfc3339(), "sampledValue": [
            {"value": w.to_string(), "measurand": "Power.Active.Import", "unit": "W"}]}]})
    };
    let power = || dev.state().good(Field::PowerKw, now());
    ask(&mut ws, "m1", "MeterValues", meter(t0, 3000)).await;
    assert_eq!(power(), Some(3.0));
    // One value an hour older: sent late, not taken.
    let back = t0 - chrono::Duration::hours(1);
    ask(&mut ws, "m2", "MeterValues", meter(back, 4000)).await;
    assert_eq!(power(), Some(3.0));
    ask(
        &mut ws,
        "m3",
        "MeterValues",
        meter(back + chrono::Duration::seconds(1), 5000),
    )
    .await;
    assert_eq!(power(), Some(3.0));
    // The third in a row: the charger's clock went back; taken, and on from there.
    ask(
        &mut ws,
        "m4",
        "MeterValues",
        meter(back + chrono::Duration::seconds(2), 6000),
    )
    .await;
    assert_eq!(power(), Some(6.0));
    ask(
        &mut ws,
        "m5",
        "MeterValues",
        meter(back + chrono::Duration::seconds(3), 7000),
    )
    .await;
    assert_eq!(power(), Some(7.0));
    let said = hub.take_events().join("\n");
    assert!(
        said.contains("charger CP-B connector 1: its clock went back"),
        "{said}"
    );
    hub.stop();
}

/// The 2.0.1 station's (CS-C) password.
const PASS_C: &str = "secret-c-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charging_station_on_the_ocpp_package_speaks_2_0_1_under_pedfs_limits() {
    let mut cfg = config();
    cfg.meter_interval_s = Some(15);
    let time = ems_time();
    let hub = OcppHub::start(cfg, time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-c1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let mut peer = Peer::start201(&url, "CS-C", PASS_C, "session");
    // Offered both, 2.0.1 first: 2.0.1 it is.
    assert_eq!(peer.next("subprotocol").await["name"], "ocpp2.0.1");
    // Messages the 2.0.1 schemas refuse, each answered with the CALLERROR 2.0.1 names.
    let errors = peer.callerrors(5).await;
    assert_eq!(
        errors,
        [
            ("bad-1".into(), "PropertyConstraintViolation".into()),
            ("bad-2".into(), "FormatViolation".into()),
            ("bad-3".into(), "ProtocolError".into()),
            ("bad-4".into(), "TypeConstraintViolation".into()),
            ("-1".into(), "FormatViolation".into()),
        ]
    );
    let boot = peer.next("boot").await;
    assert_eq!(
        (boot["status"].as_str(), boot["interval"].as_u64()),
        (Some("Accepted"), Some(60))
    );
    // After the boot: the meter value interval as a variable, the EVSE's safe default.
    let set = peer.next("variable_set").await;
    assert_eq!(
        (
            set["component"].as_str(),
            set["variable"].as_str(),
            set["value"].as_str()
        ),
        (
            Some("SampledDataCtrlr"),
            Some("TxUpdatedInterval"),
            Some("15")
        )
    );
    // The default profile another CSMS left (stack level 5, 22 kW) cleared before the
    // safe default is set: charging below proves it gone.
    let cleared = peer.next("cleared").await;
    assert_eq!(
        (cleared["purpose"].as_str(), cleared["n"].as_u64()),
        (Some("TxDefaultProfile"), Some(1))
    );
    let safe = peer.next("profile").await;
    assert_eq!(
        (
            safe["evse"].as_u64(),
            safe["purpose"].as_str(),
            safe["stack"].as_u64(),
            safe["unit"].as_str(),
            safe["limit"].as_f64()
        ),
        (
            Some(1),
            Some("TxDefaultProfile"),
            Some(0),
            Some("W"),
            Some(3500.0)
        )
    );
    assert_eq!(safe["id"], safe["schedule_id"]);
    let started = peer.next("started").await;
    // The station's calls and the CSMS's after its boot cross: its authorisations before
    // its start, in whatever order beside the profiles.
    let said = peer.said();
    let status = |e: &str| {
        said.iter()
            .find(|v| v["event"] == e)
            .map(|v| v["status"].clone())
    };
    assert_eq!(status("authorize"), Some(json!("Accepted")));
    assert_eq!(status("authorize_unknown"), Some(json!("Unknown")));
    assert_eq!(started["status"], "Accepted");
    let tx = started["transaction"].as_str().unwrap().to_string();
    // The transaction's meter values reach the EVSE's device state: charging at the safe
    // default, the register given in kWh by its multiplier read in kWh.
    wait_state(&dev, "charging at the safe default", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
            && s.good(Field::PowerKw, now()) == Some(3.5)
            && s.good(Field::SessionKwh, now()).is_some_and(|e| e > 0.0)
            && s.good(Field::SocPct, now()) == Some(61.0)
    })
    .await;
    assert_eq!(dev.transaction(), Some(tx.clone()));
    let got = match dev.set_limit(7.0).await {
        Ok(g) => g,
        Err(e) => panic!("{e}; the peer said {:?}", peer.said()),
    };
    let p = peer.next("profile").await;
    assert_eq!(
        (
            p["purpose"].as_str(),
            p["stack"].as_u64(),
            p["transaction"].as_str(),
            p["duration"].as_u64()
        ),
        (Some("TxProfile"), Some(1), Some(tx.as_str()), Some(120))
    );
    // Its own profile id, not the safe default's.
    assert_ne!(p["id"], safe["id"]);
    assert_eq!(got, 7.0);
    wait_state(&dev, "charging at the EMS's limit", |s| {
        s.good(Field::PowerKw, now()) == Some(7.0)
    })
    .await;
    assert_eq!(dev.remote_stop().await.unwrap(), tx);
    let stopped = peer.next("stopped").await;
    let wh = stopped["wh"].as_i64().unwrap();
    // The Ended again: answered, counted once.
    peer.next("stopped").await;
    peer.next("done").await;
    wait_state(&dev, "free after the stop", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
            && s.good(Field::PowerKw, now()) == Some(0.0)
            && s.good(Field::EnergyKwh, now()) == Some(wh as f64 / 1000.0)
    })
    .await;
    assert_eq!(dev.transaction(), None);
    let said = hub.take_events().join("\n");
    for want in [
        "charger CS-C connected (ocpp2.0.1)",
        "charger CS-C booted: PeerCo Wallbox 22, firmware 2.0.1-7 (PowerUp)",
        &format!("transaction {tx} started by TAG-0001 (Accepted)"),
        &format!(
            "transaction {tx} stopped (Remote), {:.3} kWh",
            (wh - 1000) as f64 / 1000.0
        ),
    ] {
        assert!(said.contains(want), "`{want}` in {said}");
    }
    assert_eq!(
        said.matches(&format!("transaction {tx} stopped")).count(),
        1
    );
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_0_1_stations_events_queued_offline_are_taken_once_on_its_return() {
    let time = ems_time();
    let hub = OcppHub::start(config(), time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-c1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let mut peer = Peer::start201(&url, "CS-C", PASS_C, "reconnect");
    let first = peer.next("dropped").await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = peer.next("sent").await;
    peer.next("done").await;
    assert_eq!(sent["first"].as_str(), Some(first.as_str()));
    let second = sent["second"].as_str().unwrap().to_string();
    let (first_wh, second_start, second_wh) = (
        sent["first_wh"].as_i64().unwrap(),
        sent["second_start_wh"].as_i64().unwrap(),
        sent["second_wh"].as_i64().unwrap(),
    );
    wait_state(&dev, "free, the register the last one sent", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
            && s.good(Field::EnergyKwh, now()) == Some(second_wh as f64 / 1000.0)
    })
    .await;
    let said = hub.take_events().join("\n");
    for want in [
        format!(
            "transaction {first} stopped (EVDisconnected), {:.3} kWh",
            (first_wh - 1000) as f64 / 1000.0
        ),
        format!("transaction {second} started by TAG-0001 (Accepted)"),
        format!(
            "transaction {second} stopped (Local), {:.3} kWh",
            (second_wh - second_start) as f64 / 1000.0
        ),
        "charger CS-C connected again".to_string(),
    ] {
        let n = said.matches(&want).count();
        assert!(
            n == 1 || want.ends_with("again"),
            "`{want}` {n} times in {said}"
        );
    }
    assert_eq!(dev.transaction(), None);
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ems_operates_a_2_0_1_station_of_the_ocpp_package() {
    let time = ems_time();
    let hub = OcppHub::start(config(), time).unwrap();
    let url = format!("ws://{}/ocpp", hub.addr);
    let dev = hub.device("ev-c1", Duration::from_secs(5)).unwrap();
    let now = || time.now();
    let mut peer = Peer::start201(&url, "CS-C", PASS_C, "operate");
    peer.next("ready").await;
    wait_state(&dev, "available", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    use pedf_devices::ocpp::v201::{VariableName, TX_UPDATED_INTERVAL};
    // 1.6's configuration calls are refused for a 2.0.1 station, with what to use instead.
    let e = hub.get_configuration("CS-C", &[]).await.unwrap_err();
    assert!(e.contains("get_variables"), "{e}");
    assert_eq!(
        hub.set_variable("CS-C", &TX_UPDATED_INTERVAL, "20")
            .await
            .unwrap(),
        "Accepted"
    );
    let unknown = VariableName {
        component: "SampledDataCtrlr",
        variable: "NoSuchVariable",
    };
    let got = hub
        .get_variables("CS-C", &[TX_UPDATED_INTERVAL, unknown])
        .await
        .unwrap();
    assert_eq!(got[0], Ok("20".to_string()));
    assert!(
        got[1].as_ref().unwrap_err().contains("UnknownVariable"),
        "{got:?}"
    );
    let model = VariableName {
        component: "ChargingStation",
        variable: "Model",
    };
    let e = hub.set_variable("CS-C", &model, "x").await.unwrap_err();
    assert!(e.contains("Rejected"), "{e}");
    // A remote start: the station's own transaction id comes back in its Started event.
    dev.remote_start("TAG-0001").await.unwrap();
    let asked = peer.next("remote_start").await;
    assert_eq!(
        (
            asked["id_token"]["id_token"].as_str(),
            asked["id_token"]["type"].as_str(),
            asked["evse"].as_u64()
        ),
        (Some("TAG-0001"), Some("Central"), Some(1))
    );
    let started = peer.next("started").await;
    assert_eq!(started["status"], "Accepted");
    wait_state(&dev, "charging", |s| {
        s.good(Field::ChargerState, now()) == Some(2.0)
    })
    .await;
    let tx = dev.transaction().expect("the remote start's transaction");
    assert_eq!(started["transaction"].as_str(), Some(tx.as_str()));
    assert_eq!(dev.set_available(false).await.unwrap(), "Scheduled");
    assert_eq!(dev.remote_stop().await.unwrap(), tx);
    assert_eq!(
        peer.next("stopped").await["transaction"].as_str(),
        Some(tx.as_str())
    );
    wait_state(&dev, "out of service", |s| {
        s.good(Field::ChargerState, now()) == Some(3.0)
    })
    .await;
    assert!(
        dev.remote_start("TAG-0001").await.is_err(),
        "out of service"
    );
    assert_eq!(dev.set_available(true).await.unwrap(), "Accepted");
    wait_state(&dev, "in service again", |s| {
        s.good(Field::ChargerState, now()) == Some(0.0)
    })
    .await;
    hub.trigger("CS-C", "StatusNotification", Some(1))
        .await
        .unwrap();
    let t = peer.next("triggered").await;
    assert_eq!(t["evse"]["id"], 1);
    assert!(hub
        .trigger("CS-C", "LogStatusNotification", None)
        .await
        .is_err());
    hub.reset("CS-C", false).await.unwrap();
    assert_eq!(peer.next("reset").await["type"], "OnIdle");
    peer.next("done").await;
    hub.stop();
}
