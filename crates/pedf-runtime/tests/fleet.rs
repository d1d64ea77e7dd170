//! The park as a fleet's edge node (issue 24) against a real NATS server with JetStream
//! (Debian's `nats-server`, installed by scripts/setup, started here on a free loopback port):
//! the EMS works while the hub is unreachable and its backlog arrives in order once it is
//! there; a hub that goes away and comes back gets what the park kept meanwhile; a restart
//! that sends everything again leaves each record and event once in the stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use pedf_core::records::IntervalRecord;
use pedf_runtime::run::RunConfig;
use pedf_sim_devices::park::SimPark;
use pedf_store::Store;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// 10:05 local (UTC+8) on 21 June 2026.
fn ems_origin() -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 6, 21, 2, 5, 0).unwrap()
}

/// A NATS server with JetStream on `port`, its streams kept in `dir` (a restart on the same
/// folder keeps them); stopped when dropped.
struct Nats(Child);

impl Nats {
    fn start(port: u16, dir: &Path) -> Nats {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/setup installs it)");
        listening(port);
        Nats(child)
    }
}

/// Waits (10 s at most) for a server to listen on `port`.
fn listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use chromium::free_port;

/// Closed interval records of 21 June from `hh:mm`, `n` of them.
fn records(from: &str, n: i32) -> Vec<IntervalRecord> {
    use chrono::TimeZone;
    let t0 = chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(
            &chrono::NaiveDateTime::parse_from_str(&format!("2026-06-21 {from}"), "%Y-%m-%d %H:%M")
                .unwrap(),
        )
        .unwrap()
        .with_timezone(&Utc);
    (0..n)
        .map(|k| IntervalRecord {
            start: t0 + chrono::Duration::minutes(15 * i64::from(k)),
            pv_kwh: 50.0,
            grid_import_kwh: 10.0,
            load_kwh: 59.0,
            ..Default::default()
        })
        .collect()
}

/// What the stream holds: each message's subject, message id and body, in stream order.
async fn stream_messages(
    js: &async_nats::jetstream::Context,
) -> Vec<(String, String, serde_json::Value)> {
    let Ok(mut stream) = js.get_stream("PEDF").await else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let last = info.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push((
                m.subject.to_string(),
                id,
                serde_json::from_slice(&m.payload).unwrap_or_default(),
            ));
        }
    }
    out
}

/// The records' starts the stream holds, in stream order.
fn record_starts(all: &[(String, String, serde_json::Value)]) -> Vec<String> {
    all.iter()
        .filter(|m| m.0 == "pedf.qingzhou-pedf.records")
        .map(|m| m.2["start"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits for the stream to satisfy `ok` (with a deadline); returns what it holds then.
async fn stream_until(
    js: &async_nats::jetstream::Context,
    secs: u64,
    ok: impl Fn(&[(String, String, serde_json::Value)]) -> bool,
) -> Vec<(String, String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let all = stream_messages(js).await;
        if ok(&all) || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects to the hub and makes the fleet's stream (as the hub does): records and events of
/// every park, deduplicated on their message ids over a day.
async fn hub(port: u16) -> (async_nats::Client, async_nats::jetstream::Context) {
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "PEDF".into(),
        subjects: vec![
            "pedf.*.records".into(),
            "pedf.*.events".into(),
            "pedf.*.plans".into(),
        ],
        duplicate_window: Duration::from_secs(86_400),
        ..Default::default()
    })
    .await
    .unwrap();
    (client, js)
}

/// Starts the EMS with its `[fleet]` table; returns how to stop it and its task.
fn start_ems(
    run_file: &Path,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<pedf_runtime::run::RunSummary, String>>,
) {
    let mut cfg = RunConfig::load(run_file).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pedf_runtime::ems::run_and_serve(
        cfg,
        async {
            let _ = rx.await;
        },
        |_| {},
    ));
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_park_publishes_its_records_and_events_to_the_fleets_jetstream_once_each() {
    let dir: PathBuf = std::env::temp_dir().join(format!("pedf-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _sim = SimPark::start(
        &dir,
        Path::new(&format!("{ROOT}/config/devices/templates")),
        300.0,
        60.0,
        100.0,
    )
    .await
    .expect("simulated park");
    let port = free_port();
    std::fs::write(
        dir.join("run.toml"),
        format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n\n[fleet]\nurl = \"nats://127.0.0.1:{port}\"\nstate_every_s = 1\n"),
    )
    .unwrap();
    // The morning's records are in the store already (kept while the hub was unreachable).
    Store::open(&dir.join("pedf.sqlite"))
        .unwrap()
        .put_records(&records("08:00", 4), "measured")
        .unwrap();
    let store_events = || -> Vec<i64> {
        let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        st.events_after(0, 100_000)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    // The EMS starts with no hub to reach: it works (its events are written) all the same.
    let (stop, ems) = start_ems(&dir.join("run.toml"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while store_events().is_empty() {
        assert!(Instant::now() < deadline, "the EMS wrote no event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hub comes: the backlog arrives in order, the live state every second.
    let nats = Nats::start(port, &dir.join("jetstream"));
    let (client, js) = hub(port).await;
    let mut state = client.subscribe("pedf.qingzhou-pedf.state").await.unwrap();
    let morning = [
        "2026-06-21T08:00:00+08:00",
        "2026-06-21T08:15:00+08:00",
        "2026-06-21T08:30:00+08:00",
        "2026-06-21T08:45:00+08:00",
    ];
    let all = stream_until(&js, 30, |all| record_starts(all).len() >= 4).await;
    assert_eq!(record_starts(&all), morning, "{all:?}");
    let live = tokio::time::timeout(Duration::from_secs(10), futures_next(&mut state))
        .await
        .expect("a live state within 10 s")
        .expect("the subscription is open");
    let live: serde_json::Value = serde_json::from_slice(&live.payload).unwrap();
    // The fleet's part of the live state.
    assert_eq!(live["park_id"], "qingzhou-pedf", "{live}");
    assert_eq!(live["pv_kw"], 300.0, "{live}");

    // The hub goes away; two more intervals close meanwhile; it comes back with its streams.
    drop(client);
    drop(nats);
    Store::open(&dir.join("pedf.sqlite"))
        .unwrap()
        .put_records(&records("09:00", 2), "measured")
        .unwrap();
    let nats = Nats::start(port, &dir.join("jetstream"));
    let (_client, js) = hub(port).await;
    let all = stream_until(&js, 40, |all| record_starts(all).len() >= 6).await;
    let mut want: Vec<&str> = morning.to_vec();
    want.extend(["2026-06-21T09:00:00+08:00", "2026-06-21T09:15:00+08:00"]);
    assert_eq!(record_starts(&all), want, "in order, each once: {all:?}");

    // The EMS stops and starts again having forgotten how far the hub got: it sends its whole
    // store again, and the stream keeps each record and event once (their message ids).
    let _ = stop.send(());
    ems.await.unwrap().unwrap();
    let cursor = pedf_runtime::fleet::cursor_path(&dir.join("pedf.sqlite"));
    std::fs::remove_file(&cursor).unwrap();
    let (stop, ems) = start_ems(&dir.join("run.toml"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c: Option<pedf_runtime::fleet::Cursor> = std::fs::read_to_string(&cursor)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if c.is_some_and(|c| c.records >= Some(records("09:15", 1)[0].start)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted EMS did not send its store again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    ems.await.unwrap().unwrap();
    // What the store holds now: the records above and the interval the first run was in when
    // it stopped (closed, in part, by the restart), and every event of both runs.
    let ids = store_events();
    let closed: Vec<String> = {
        let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        let clock = pedf_core::time::ParkClock::new(
            chrono_tz::Asia::Shanghai,
            pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
        );
        st.closed_records_after(None, 1000)
            .unwrap()
            .iter()
            .map(|r| clock.format(r.record.start))
            .collect()
    };
    assert!(closed.starts_with(&want.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    let all = stream_until(&js, 30, |all| {
        all.iter().filter(|m| m.0.ends_with(".events")).count() >= ids.len()
            && record_starts(all).len() >= closed.len()
    })
    .await;
    assert_eq!(record_starts(&all), closed, "no record twice: {all:?}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &all {
        *seen.entry(m.1.clone()).or_default() += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a message id twice: {seen:?}"
    );
    let events: Vec<i64> = all
        .iter()
        .filter(|m| m.0 == "pedf.qingzhou-pedf.events")
        .map(|m| m.2["id"].as_i64().unwrap())
        .collect();
    assert_eq!(events, ids, "every event of the store once, in order");
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next message of a subscription.
async fn futures_next(s: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    s.next().await
}

/// VictoriaMetrics on a free loopback port (installed by scripts/setup), its data in `dir`;
/// identical samples of a series (a record delivered twice) kept once; stopped when dropped.
struct Victoria(Child, u16);

impl Victoria {
    fn start(dir: &Path) -> Victoria {
        let port = free_port();
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg("-retentionPeriod=100y")
            .arg("-dedup.minScrapeInterval=1ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (scripts/setup installs it)");
        let v = Victoria(child, port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.get("/health").is_none_or(|b| b.trim() != "OK") {
            assert!(
                Instant::now() < deadline,
                "victoria-metrics did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        v
    }

    /// A plain HTTP/1.0 GET's body (200 only).
    fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.lines()
            .next()?
            .contains(" 200 ")
            .then(|| body.to_string())
    }

    /// The (park, ms) of each PV energy sample of the records the server holds.
    fn record_points(&self) -> std::collections::BTreeSet<(String, i64)> {
        let _ = self.get("/internal/force_flush");
        let body = self
            .get("/api/v1/export?match[]=pedf_record_pv_kwh&start=0")
            .unwrap_or_default();
        let mut out = std::collections::BTreeSet::new();
        for line in body.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let park = v["metric"]["park"].as_str().unwrap_or_default().to_string();
            for t in v["timestamps"].as_array().into_iter().flatten() {
                out.insert((park.clone(), t.as_i64().unwrap_or_default()));
            }
        }
        out
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A park's store as its EMS leaves it: `n` records from 08:00, two events, a plan made
/// active.
fn park_store(path: &Path, n: i32) {
    let mut st = Store::open(path).unwrap();
    st.put_records(&records("08:00", n), "measured").unwrap();
    st.event(ems_origin(), "info", "test", "started").unwrap();
    st.event(ems_origin(), "alarm", "device", "bess-1 not answering")
        .unwrap();
    let id = st
        .put_plan(
            ems_origin(),
            "2026-06-21",
            "optimized",
            r#"{"intervals": []}"#,
        )
        .unwrap();
    st.activate_plan(id).unwrap();
}

/// A park's publisher (the EMS's fleet task) on its store, with a live state of `pv_kw`.
fn publisher(
    port: u16,
    park: &pedf_core::Park,
    name: &str,
    store: &Path,
    pv_kw: f64,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let cfg: pedf_runtime::fleet::FleetConfig = toml::from_str(&format!(
        "url = \"nats://127.0.0.1:{port}\"\npark = \"{name}\"\nstate_every_s = 1\ndashboard = \"https://{name}.example.cn/\"\n"
    ))
    .unwrap();
    let mut live = pedf_core::live::Live {
        park_id: name.into(),
        park_name: name.into(),
        at: Some(ems_origin()),
        battery_capacity_kwh: 1000.0,
        ..Default::default()
    };
    live.flows.pv_kw = Some(pv_kw);
    live.flows.soc_pct = Some(60.0);
    live.flows.grid_kw = Some(-20.0);
    let (_live_tx, live_rx) = tokio::sync::watch::channel(std::sync::Arc::new(live));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = pedf_runtime::fleet::start(cfg, park, store.to_path_buf(), live_rx, stop_rx);
    // The live state's sender is kept by the task's receiver's channel: the last value stays.
    std::mem::forget(_live_tx);
    (stop_tx, task)
}

/// An empty folder of the system's temporary ones for a test, named `name`-PID.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tests' viewer token of the hub (what a wall screen or a script that reads is given).
const VIEWER: &str = "pedf_viewer_token_of_the_fleet_tests";

/// Starts the hub (its store holding [`VIEWER`]); returns how to stop it and its task.
fn start_hub(
    cfg: pedf_runtime::fleet::hub::HubConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<String, String>>,
) {
    let mut st = pedf_store::fleet::FleetStore::open(&cfg.store).unwrap();
    let viewer = pedf_server::auth::hash_token(VIEWER);
    if st.token(&viewer).unwrap().is_none() {
        st.add_token(&viewer, "the tests' reader", "viewer", ems_origin())
            .unwrap();
    }
    drop(st);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The hub's clock: the parks' morning of 21 June (their plans' today).
    let task = tokio::spawn(pedf_runtime::fleet::hub::serve_on(
        cfg,
        pedf_core::time::TimeSource::scaled(ems_origin(), 1.0),
        async {
            let _ = rx.await;
        },
        |line| eprintln!("hub: {line}"),
    ));
    (tx, task)
}

/// GETs `path` from the hub's API with `token` (none: without).
async fn hub_get(port: u16, path: &str, token: Option<&str>) -> reqwest::Result<reqwest::Response> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await
}

/// GETs a JSON document from the hub's API (as [`VIEWER`]).
async fn api(port: u16, path: &str) -> Option<serde_json::Value> {
    hub_get(port, path, Some(VIEWER))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// GETs a JSON document from the hub at `base` (its scheme and address) with `client`, as
/// [`VIEWER`].
async fn api_at(client: &reqwest::Client, base: &str, path: &str) -> Option<serde_json::Value> {
    let r = client.get(format!("{base}{path}")).bearer_auth(VIEWER);
    r.send().await.ok()?.json().await.ok()
}

/// Waits (with a deadline) for the hub's API at `path` to satisfy `ok`; returns it then.
async fn api_until(
    port: u16,
    path: &str,
    secs: u64,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let base = format!("http://127.0.0.1:{port}");
    api_until_at(&reqwest::Client::new(), &base, path, secs, ok).await
}

/// [`api_until`] with `client` at `base`.
async fn api_until_at(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    secs: u64,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = api_at(client, base, path).await.unwrap_or_default();
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hub (`pedf fleet serve`) on a real NATS server with JetStream and a real
/// VictoriaMetrics: two parks' publishers send their stores; the hub holds every record,
/// event and plan once, shows each park's live state and the fleet's totals, writes the
/// records to VictoriaMetrics; stopped while the parks go on, it resumes from its durable
/// consumer without a gap; a message that is not pedf's is refused and does not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_holds_every_parks_messages_once_and_resumes_after_a_restart() {
    let dir = fresh_dir("pedf-fleet-hub");
    let port = free_port();
    let _nats = Nats::start(port, &dir.join("jetstream"));
    let vm = Victoria::start(&dir.join("victoria"));
    let http = free_port();
    let hub_file = dir.join("hub.toml");
    std::fs::write(
        &hub_file,
        format!(
            "url = \"nats://127.0.0.1:{port}\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:{http}\"\n\n[influx]\nurl = \"http://127.0.0.1:{}\"\norg = \"pedf\"\nbucket = \"fleet\"\nbuffer_dir = \"hub-buffer\"\nflush_ms = 100\n",
            vm.1
        ),
    )
    .unwrap();
    let cfg = pedf_runtime::fleet::hub::HubConfig::load(&hub_file).unwrap();
    assert_eq!(cfg.store, dir.join("fleet.sqlite"));
    let (stop_hub, hub) = start_hub(cfg.clone());
    let park = RunConfig::load(Path::new(&format!("{ROOT}/config/run-qingzhou.toml")))
        .unwrap()
        .read_park()
        .unwrap();
    let (a, b) = (dir.join("a.sqlite"), dir.join("b.sqlite"));
    park_store(&a, 4);
    park_store(&b, 3);
    // Park A's real plans for the day and the next (the rule-based ones of the example
    // inputs): its flexibility goes with them.
    {
        let mut st = Store::open(&a).unwrap();
        for day in ["2026-06-21", "2026-06-22"] {
            let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            let plan = plans::example_rule_plan(&park, ROOT, d);
            let id = st
                .put_plan(
                    ems_origin(),
                    day,
                    "rule",
                    &serde_json::to_string(&plan).unwrap(),
                )
                .unwrap();
            st.activate_plan(id).unwrap();
        }
    }
    let pa = publisher(port, &park, "park-a", &a, 120.0);
    let pb = publisher(port, &park, "park-b", &b, 80.0);

    // Every record, event and plan once; each park's live state; the fleet's totals.
    let fleet = api_until(http, "/api/v1/fleet", 30, |v| {
        v["held"]["records"] == 7
            && v["held"]["events"] == 4
            && v["held"]["plans"] == 4
            && v["parks_reporting"] == 2
    })
    .await;
    assert_eq!(fleet["held"]["records"], 7, "{fleet}");
    assert_eq!(fleet["held"]["events"], 4, "{fleet}");
    assert_eq!(fleet["held"]["plans"], 4, "{fleet}");
    assert_eq!(fleet["parks_reporting"], 2, "{fleet}");
    assert_eq!(fleet["pv_kw"], 200.0, "{fleet}");
    assert_eq!(fleet["export_kw"], 40.0, "{fleet}");
    assert_eq!(fleet["soc_pct"], 60.0, "{fleet}");
    let parks = api(http, "/api/v1/parks").await.unwrap();
    let list = parks["parks"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|p| (p["park"].as_str().unwrap(), p["records"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        [("park-a", 4), ("park-b", 3)],
        "{parks}"
    );
    assert_eq!(list[0]["state"]["pv_kw"], 120.0, "{parks}");
    assert_eq!(list[0]["state"]["dashboard"], "https://park-a.example.cn/");
    assert_eq!(list[0]["reporting"], true);

    // The fleet's flexibility: park A's plans say it, park B's (not plans of pedf's) do not.
    let today = api(http, "/api/v1/flexibility").await.unwrap();
    assert_eq!(today["day"], "2026-06-21", "{today}");
    assert_eq!(today["now"]["parks"], 1, "{today}");
    let tomorrow = api(http, "/api/v1/flexibility?day=tomorrow").await.unwrap();
    let hours = tomorrow["hours"].as_array().unwrap();
    assert!(hours.iter().all(|h| h["parks"] == 1), "{tomorrow}");
    // The reference park's battery (1000 kW both ways) offers both ways in the night; at
    // noon, importing nothing and exporting PV with its battery full, it offers nothing.
    assert!(
        hours[..5].iter().all(|h| {
            h["down_kw"].as_f64().unwrap() > 100.0 && h["up_kw"].as_f64().unwrap() > 100.0
        }),
        "{tomorrow}"
    );

    // The fleet view in Chromium: the totals and each park, in Chinese and in English. A
    // state sent by a bad actor on a park's subject shows its texts as text and links
    // nowhere.
    let nc = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    nc.publish(
        "pedf.park-c.state",
        serde_json::to_vec(&serde_json::json!({
            "park_id": "park-c", "name": "<img src=x onerror=alert(1)>", "at": null,
            "pv_kw": 1.0, "battery_kw": null, "soc_pct": null, "load_kw": null, "ev_kw": null,
            "grid_kw": null, "dashboard": "javascript:alert(1)"
        }))
        .unwrap()
        .into(),
    )
    .await
    .unwrap();
    nc.flush().await.unwrap();
    api_until(http, "/api/v1/parks", 10, |v| {
        v["parks"].as_array().is_some_and(|l| l.len() == 3)
    })
    .await;
    // Reading needs a token too, as on the park's server: an admin makes a reader's, which
    // reads, logs in by cookie, may not ask the grid nor make tokens, and is revoked.
    assert_eq!(
        hub_get(http, "/api/v1/fleet", None).await.unwrap().status(),
        401
    );
    assert_eq!(hub_get(http, "/metrics", None).await.unwrap().status(), 401);
    let admin = "pedf_admin_token_of_the_fleet_tests";
    pedf_store::fleet::FleetStore::open(&cfg.store)
        .unwrap()
        .add_token(
            &pedf_server::auth::hash_token(admin),
            "the tests' admin",
            "admin",
            ems_origin(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{http}{p}");
    let made = client
        .post(url("/api/v1/tokens"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"label": "control-room wall", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = made.json().await.unwrap();
    let wall = made["token"].as_str().unwrap().to_string();
    let r = hub_get(http, "/api/v1/fleet", Some(&wall)).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(url("/api/v1/tokens"))
        .bearer_auth(&wall)
        .json(&serde_json::json!({"label": "mine", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let login = client
        .post(url("/api/v1/session"))
        .json(&serde_json::json!({ "token": wall }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("pedf_fleet_token={wall};")) && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let jar = format!("pedf_fleet_token={wall}");
    let me: serde_json::Value = client
        .get(url("/api/v1/whoami"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "viewer", "{me}");
    // A change with the cookie from another page is refused before the role is looked at.
    let r = client
        .post(url("/api/v1/requests"))
        .header("cookie", &jar)
        .header("origin", "http://elsewhere.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("must come from the fleet view"));
    let r = client
        .delete(url(&format!("/api/v1/tokens/{}", made["id"])))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        hub_get(http, "/api/v1/fleet", Some(&wall))
            .await
            .unwrap()
            .status(),
        401
    );
    let listed: serde_json::Value = client
        .get(url("/api/v1/tokens"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "control-room wall" && !t["revoked"].is_null()),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&wall),
        "a token is never listed"
    );

    let (_driver, c) = chromium::start_browser(&dir.join("chromium")).await;
    c.goto(&format!("http://127.0.0.1:{http}/")).await.unwrap();
    // Logged out, the view asks for a token and shows nothing of the fleet.
    let (ok, _) = chromium::wait_js(
        &c,
        "return !document.getElementById('login').hidden",
        10.0,
        |v| v == true,
    )
    .await;
    assert!(ok, "the login form");
    assert!(!chromium::visible(&c, "#app").await);
    chromium::log_in(&c, VIEWER).await;
    let (ok, pv) = chromium::wait_text(&c, "#t-pv", 15.0, |t| t == "201").await;
    assert!(ok, "fleet PV {pv}");
    let (ok, row) =
        chromium::wait_text(&c, "tr[data-park=park-a] td.pv", 5.0, |t| t == "120").await;
    assert!(ok, "park-a's PV {row}");
    assert_eq!(
        chromium::text(&c, "#parks th:nth-child(3)").await,
        "光伏 kW"
    );
    let (ok, down) = chromium::wait_text(&c, "#f-down", 5.0, |t| t != "–" && !t.is_empty()).await;
    assert!(ok, "flexibility now {down}");
    assert_eq!(
        chromium::text(&c, "#flex-hours tr.down td:nth-child(2)").await,
        format!("{:.0}", hours[0]["down_kw"].as_f64().unwrap())
    );
    assert_eq!(
        chromium::text(&c, "tr[data-park=park-c] td:first-child").await,
        "<img src=x onerror=alert(1)>"
    );
    let links = c
        .execute(
            "return [...document.querySelectorAll('#parks a')].map(a => a.getAttribute('href'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        links,
        serde_json::json!(["https://park-a.example.cn/", "https://park-b.example.cn/"])
    );
    chromium::click(&c, "#lang").await;
    let (ok, head) = chromium::wait_text(&c, "#parks th:nth-child(3)", 5.0, |t| t == "PV kW").await;
    assert!(ok, "{head}");
    chromium::shot(&c, ROOT, "fleet-en.png").await;
    let _ = c.close().await;

    // The hub stops; the parks go on (two more of park-a's intervals close, the stream keeps
    // them); started again on its store, it resumes where its consumer was.
    let _ = stop_hub.send(());
    let said = hub.await.unwrap().unwrap();
    assert!(said.contains("took 7 records, 4 events, 4 plans"), "{said}");
    Store::open(&a)
        .unwrap()
        .put_records(&records("09:00", 2), "measured")
        .unwrap();
    // A message on a park's subject that is not pedf's (a bad actor, or a bug): refused for
    // good, the ones after it taken.
    let js = async_nats::jetstream::new(nc.clone());
    js.publish("pedf.park-c.records", "not a record".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (stop_hub, hub) = start_hub(cfg.clone());
    let fleet = api_until(http, "/api/v1/fleet", 30, |v| v["held"]["records"] == 9).await;
    assert_eq!(fleet["held"]["records"], 9, "{fleet}");
    let recs = api(
        http,
        "/api/v1/parks/park-a/records?from=2026-06-21T00:00:00%2B08:00&to=2026-06-22T00:00:00%2B08:00",
    )
    .await
    .unwrap();
    let starts: Vec<&str> = recs["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-06-21T08:00:00+08:00",
            "2026-06-21T08:15:00+08:00",
            "2026-06-21T08:30:00+08:00",
            "2026-06-21T08:45:00+08:00",
            "2026-06-21T09:00:00+08:00",
            "2026-06-21T09:15:00+08:00"
        ]
    );
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let bad = hub_get(
        http,
        "/api/v1/parks/park-a/records?from=yesterday&to=now",
        Some(VIEWER),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("from = `yesterday`"));
    let metrics = hub_get(http, "/metrics", Some(VIEWER))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("pedf_fleet_refused_total 1"), "{metrics}");
    assert!(
        metrics.contains("pedf_fleet_messages_total{kind=\"records\"} 2"),
        "{metrics}"
    );

    // Each record once in VictoriaMetrics too, by park and interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut points = vm.record_points();
    while points.len() < 9 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        points = vm.record_points();
    }
    let want: std::collections::BTreeSet<(String, i64)> = records("08:00", 4)
        .iter()
        .chain(&records("09:00", 2))
        .map(|r| ("park-a".to_string(), r.start.timestamp_millis()))
        .chain(
            records("08:00", 3)
                .iter()
                .map(|r| ("park-b".to_string(), r.start.timestamp_millis())),
        )
        .collect();
    assert_eq!(points, want);

    let _ = stop_hub.send(());
    hub.await.unwrap().unwrap();
    for (stop, task) in [pa, pb] {
        let _ = stop.send(true);
        task.await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A grid request to the fleet through the hub's API: split over the parks by the
/// flexibility down their plans offer through the window, each part sent to its park by
/// request/reply and answered by the park's own EMS (two real EMSs on simulated parks, and a
/// park whose edge has no EMS behind it, which refuses); kept with every part and answer. Only
/// an operator's token may give one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_request_to_the_fleet_is_split_by_the_parks_offers_and_answered_by_their_emss() {
    let dir = fresh_dir("pedf-fleet-request");
    let port = free_port();
    let _nats = Nats::start(port, &dir.join("jetstream"));
    let park = RunConfig::load(Path::new(&format!("{ROOT}/config/run-qingzhou.toml")))
        .unwrap()
        .read_park()
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
    let plan = serde_json::to_string(&plans::example_rule_plan(&park, ROOT, day)).unwrap();
    // Each park's store: the day's plan, and the six weeks before recorded (the baselines of
    // its grid requests are made from them: a reduction is measured against a baseline).
    let history: Vec<IntervalRecord> = {
        let first = records("00:00", 1)[0].start - chrono::Duration::days(42);
        (0..42 * 96)
            .map(|k| IntervalRecord {
                start: first + chrono::Duration::minutes(15 * k),
                grid_import_kwh: 60.0,
                load_kwh: 60.0,
                ..Default::default()
            })
            .collect()
    };
    let with_plan = |store: &Path| {
        let mut st = Store::open(store).unwrap();
        st.put_records(&history, "measured").unwrap();
        let id = st
            .put_plan(ems_origin(), "2026-06-21", "rule", &plan)
            .unwrap();
        st.activate_plan(id).unwrap();
    };
    // Two parks with their EMSs (each on its simulated devices) and the day's plan.
    let mut sims = Vec::new();
    let mut emss = Vec::new();
    for name in ["park-a", "park-b"] {
        let d = dir.join(name);
        sims.push(
            SimPark::start(
                &d,
                Path::new(&format!("{ROOT}/config/devices/templates")),
                100.0,
                60.0,
                250.0,
            )
            .await
            .expect("simulated park"),
        );
        with_plan(&d.join("pedf.sqlite"));
        std::fs::write(
            d.join("run.toml"),
            format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n\n[fleet]\nurl = \"nats://127.0.0.1:{port}\"\npark = \"{name}\"\nstate_every_s = 1\n"),
        )
        .unwrap();
        emss.push(start_ems(&d.join("run.toml")));
    }
    // A third park's edge with no EMS behind it.
    let c_store = dir.join("park-c.sqlite");
    with_plan(&c_store);
    let pc = publisher(port, &park, "park-c", &c_store, 50.0);
    // The hub, with a token of the grid's dispatcher.
    let http = free_port();
    let hub_file = dir.join("hub.toml");
    std::fs::write(
        &hub_file,
        format!("url = \"nats://127.0.0.1:{port}\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:{http}\"\n"),
    )
    .unwrap();
    let token = "pedf_dispatcher_token_for_the_test";
    pedf_store::fleet::FleetStore::open(&dir.join("fleet.sqlite"))
        .unwrap()
        .add_token(
            &pedf_server::auth::hash_token(token),
            "county dispatcher",
            "operator",
            ems_origin(),
        )
        .unwrap();
    let (stop_hub, hub) = start_hub(pedf_runtime::fleet::hub::HubConfig::load(&hub_file).unwrap());
    // The three parks' plans are in; the first hour after noon whose flexibility down the
    // three hold through it is the window.
    let flex = api_until(http, "/api/v1/flexibility", 60, |v| {
        v["hours"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["parks"] == 3))
    })
    .await;
    let hour = flex["hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["hour"].as_u64().unwrap() >= 12
                && h["parks"] == 3
                && h["down_kw"].as_f64().unwrap() >= 30.0
        })
        .unwrap_or_else(|| panic!("no hour with flexibility down: {flex}"))
        .clone();
    let offered = hour["down_kw"].as_f64().unwrap();
    let start = hour["start"].as_str().unwrap().to_string();
    let end = {
        let t = chrono::DateTime::parse_from_rfc3339(&start).unwrap() + chrono::Duration::hours(1);
        t.to_rfc3339()
    };
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, token: Option<&str>| {
        let mut r = client
            .post(format!("http://127.0.0.1:{http}/api/v1/requests"))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let ask = serde_json::json!({
        "id": "county-dr-1", "kind": "reduce_import", "kw": (offered / 2.0).round(),
        "start": start, "end": end, "price_cny_per_kwh": 1.2
    });
    // Without the token, or with another's: refused; a reader's token may not ask.
    assert_eq!(post(ask.clone(), None).await.unwrap().status(), 401);
    assert_eq!(
        post(ask.clone(), Some("pedf_guess"))
            .await
            .unwrap()
            .status(),
        401
    );
    let r = post(ask.clone(), Some(VIEWER)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("needs the operator role"));
    // A kind the fleet does not split: said so.
    let mut other = ask.clone();
    other["kind"] = "cap_export".into();
    let r = post(other, Some(token)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("reduce_import only"));

    // The parks' EMSs are running (their first cycles done) before the request goes.
    for name in ["park-a", "park-b"] {
        api_until(http, "/api/v1/parks", 30, |v| {
            v["parks"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["park"] == name && p["state"]["mode"].is_string())
            })
        })
        .await;
    }
    let r = post(ask.clone(), Some(token)).await.unwrap();
    assert_eq!(r.status(), 201);
    let got: serde_json::Value = r.json().await.unwrap();
    let kw = ask["kw"].as_f64().unwrap();
    let parts = got["parks"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{got}");
    // Each park offered the same plan: a third each, none above its offer.
    for p in parts {
        let asked = p["asked_kw"].as_f64().unwrap();
        assert!((asked - kw / 3.0).abs() <= 0.1, "{p}");
        assert!(asked <= p["offered_kw"].as_f64().unwrap(), "{p}");
    }
    assert!(
        (got["offered_kw"].as_f64().unwrap() - offered).abs() < 0.5,
        "{got}"
    );
    // The two EMSs took their parts (held in full or in part, with what they said); the park
    // without one refused, saying why; the fleet holds what the two hold.
    let by = |name: &str| parts.iter().find(|p| p["park"] == name).unwrap().clone();
    for name in ["park-a", "park-b"] {
        let p = by(name);
        assert!(
            matches!(p["status"].as_str(), Some("accepted" | "part")),
            "{p}"
        );
        assert!(p["held_kw"].as_f64().unwrap() > 0.0, "{p}");
        assert!(!p["note"].as_str().unwrap().is_empty(), "{p}");
    }
    let c = by("park-c");
    assert_eq!(c["status"], "refused", "{c}");
    assert!(
        c["note"]
            .as_str()
            .unwrap()
            .contains("takes no grid requests"),
        "{c}"
    );
    let held =
        by("park-a")["held_kw"].as_f64().unwrap() + by("park-b")["held_kw"].as_f64().unwrap();
    assert!(
        (got["held_kw"].as_f64().unwrap() - held).abs() < 1e-6,
        "{got}"
    );
    assert!(
        (got["short_kw"].as_f64().unwrap() - (kw - held)).abs() < 1e-6,
        "{got}"
    );
    // Each EMS keeps the request as its own, from the fleet, with its part.
    for name in ["park-a", "park-b"] {
        let st = Store::open(&dir.join(name).join("pedf.sqlite")).unwrap();
        let taken = st
            .grid_requests(ems_origin(), ems_origin() + chrono::Duration::days(1))
            .unwrap();
        assert_eq!(taken.len(), 1, "{name}");
        assert_eq!(taken[0].request.id, "county-dr-1");
        assert_eq!(taken[0].request.source, "fleet hub");
        assert!((taken[0].request.kind.kw() - kw / 3.0).abs() <= 0.1);
    }
    // Kept by the hub and listed; the same id again is a conflict.
    let list = api(http, "/api/v1/requests").await.unwrap();
    assert_eq!(list["requests"][0]["id"], "county-dr-1", "{list}");
    assert_eq!(list["requests"][0]["by"], "operator #1 (county dispatcher)");
    assert_eq!(list["requests"][0]["parks"].as_array().unwrap().len(), 3);
    assert_eq!(post(ask, Some(token)).await.unwrap().status(), 409);
    // The fleet view lists it: what was asked, what the parks hold, who holds it.
    let (_driver, c) = chromium::start_browser(&dir.join("chromium")).await;
    c.goto(&format!("http://127.0.0.1:{http}/")).await.unwrap();
    chromium::log_in(&c, VIEWER).await;
    let (ok, row) = chromium::wait_text(
        &c,
        "#requests tr[data-request=county-dr-1] td.held",
        15.0,
        |t| t == format!("{held:.1}"),
    )
    .await;
    assert!(ok, "held {row}");
    assert_eq!(
        chromium::text(&c, "#requests tr[data-request=county-dr-1] td.parks").await,
        "2 / 3"
    );
    assert_eq!(
        chromium::text(&c, "#requests tr[data-request=county-dr-1] td.window").await,
        format!("{} – {}", &start[5..16].replace('T', " "), &end[11..16])
    );
    assert_eq!(
        chromium::text(&c, "#requests th:nth-child(4)").await,
        "园区承担 kW"
    );
    let _ = c.close().await;

    let _ = stop_hub.send(());
    hub.await.unwrap().unwrap();
    for (stop, ems) in emss {
        let _ = stop.send(());
        ems.await.unwrap().unwrap();
    }
    let _ = pc.0.send(true);
    pc.1.await.unwrap();
    drop(sims);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP relay on loopback to a server, which the test can cut (every connection through it
/// closed, new ones refused) and mend: one park's link to the fleet.
struct Relay {
    port: u16,
    to: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let mut r = Relay {
            port: free_port(),
            to,
            task: None,
        };
        r.mend().await;
        r
    }

    /// Accepts again, relaying each connection to the server.
    async fn mend(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let to = self.to;
        self.task = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut a, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        }));
    }

    /// Closes every connection and refuses new ones (the listener and the links dropped).
    async fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// A park offline for more than a simulated hour while the others publish: the hub shows it
/// not reporting meanwhile; back online it sends its backlog, in order, and the stream and the
/// hub hold each of its records once, as its store has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_park_offline_for_a_simulated_hour_sends_its_backlog_in_order() {
    let dir = fresh_dir("pedf-fleet-offline");
    let port = free_port();
    let _nats = Nats::start(port, &dir.join("jetstream"));
    let http = free_port();
    let hub_file = dir.join("hub.toml");
    std::fs::write(
        &hub_file,
        format!("url = \"nats://127.0.0.1:{port}\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:{http}\"\nstale_after_s = 3\n"),
    )
    .unwrap();
    let (stop_hub, hub) = start_hub(pedf_runtime::fleet::hub::HubConfig::load(&hub_file).unwrap());
    // Two parks straight to NATS, one through the relay; 1800 times real time (an interval
    // every half second).
    let mut relay = Relay::start(port).await;
    let sim = |prefix: &str, parks: usize, url: String| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(pedf_runtime::fleet::sim::run(
            pedf_runtime::fleet::sim::SimOptions {
                parks,
                prefix: prefix.into(),
                url,
                dir: dir.join(prefix),
                start: ems_origin(),
                speed: 1800.0,
                state_every_s: 1,
                drain_s: 60,
            },
            async {
                let _ = rx.await;
            },
            |_| {},
        ));
        (tx, task)
    };
    let (stop_on, on) = sim("on", 2, format!("nats://127.0.0.1:{port}"));
    let (stop_off, off) = sim("off", 1, format!("nats://127.0.0.1:{}", relay.port));
    let park_records = |v: &serde_json::Value, name: &str| -> i64 {
        v["parks"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["park"] == name))
            .and_then(|p| p["records"].as_i64())
            .unwrap_or(0)
    };
    let v = api_until(http, "/api/v1/parks", 60, |v| {
        park_records(v, "off-0001") >= 4
    })
    .await;
    assert!(park_records(&v, "off-0001") >= 4, "{v}");
    // Its link cut for 4 s of real time: two simulated hours.
    relay.cut().await;
    let cut_at = park_records(&api(http, "/api/v1/parks").await.unwrap(), "off-0001");
    let v = api_until(http, "/api/v1/parks", 30, |v| {
        v["parks"].as_array().is_some_and(|l| {
            l.iter()
                .any(|p| p["park"] == "off-0001" && p["reporting"] == false)
        })
    })
    .await;
    let by = |name: &str| {
        v["parks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["park"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by("off-0001")["reporting"], false, "{v}");
    assert_eq!(by("on-0001")["reporting"], true, "{v}");
    let on_before = park_records(&v, "on-0001");
    // The others go on meanwhile: eight more of their intervals held by the hub.
    let v = api_until(http, "/api/v1/parks", 30, |v| {
        park_records(v, "on-0001") >= on_before + 8
    })
    .await;
    assert!(park_records(&v, "on-0001") >= on_before + 8, "{v}");
    // Nothing of the offline park came meanwhile (at most what was in flight at the cut).
    assert!(park_records(&v, "off-0001") <= cut_at + 1, "{v}");
    relay.mend().await;
    let _ = stop_off.send(());
    let _ = stop_on.send(());
    let made_off = off.await.unwrap().unwrap();
    let made_on = on.await.unwrap().unwrap();
    assert!(made_off.behind.is_empty() && made_on.behind.is_empty());
    // Its store's records, each once and in order in the stream and the hub.
    let st = Store::open(&dir.join("off").join("off-0001.sqlite")).unwrap();
    let clock = pedf_core::time::ParkClock::new(
        chrono_tz::Asia::Shanghai,
        pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
    );
    let kept: Vec<String> = st
        .closed_records_after(None, 100_000)
        .unwrap()
        .iter()
        .map(|r| clock.format(r.record.start))
        .collect();
    assert!(
        kept.len() as i64 >= cut_at + 8,
        "{} records kept",
        kept.len()
    );
    let nc = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nc);
    let starts = |all: &[(String, String, serde_json::Value)]| -> Vec<String> {
        all.iter()
            .filter(|m| m.0 == "pedf.off-0001.records")
            .map(|m| m.2["start"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let all = stream_until(&js, 30, |all| starts(all).len() >= kept.len()).await;
    assert_eq!(starts(&all), kept, "in order, each once");
    let v = api_until(http, "/api/v1/parks", 30, |v| {
        park_records(v, "off-0001") == kept.len() as i64
    })
    .await;
    assert_eq!(park_records(&v, "off-0001"), kept.len() as i64, "{v}");
    let _ = stop_hub.send(());
    hub.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "support/self_signed.rs"]
mod certs;

#[path = "support/chromium.rs"]
mod chromium;

#[path = "support/plans.rs"]
mod plans;

/// A NATS server with JetStream from a configuration file (its `listen` on `port`).
fn nats_with_config(port: u16, conf: &Path) -> Nats {
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (scripts/setup installs it)");
    listening(port);
    Nats(child)
}

/// Each park its own NATS user (an nkey the server's configuration lists with what it may
/// publish and receive), over TLS with a certificate made here: a park's records reach the
/// hub through the stream; its user cannot publish as another park nor receive another
/// park's requests; a client without a key, or without TLS, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parks_nats_user_publishes_and_receives_only_its_own_over_tls() {
    use futures_util::StreamExt;
    let dir = fresh_dir("pedf-fleet-users");
    certs::self_signed(&dir, "nats");
    let users: Vec<(&str, nkeys::KeyPair)> = ["hub", "park-a", "park-b"]
        .into_iter()
        .map(|n| (n, nkeys::KeyPair::new_user()))
        .collect();
    for (n, k) in &users {
        std::fs::write(dir.join(format!("{n}.nk")), k.seed().unwrap()).unwrap();
    }
    // The hub may do anything; a park publishes under its own name only and receives its own
    // requests and its own inbox's replies only (the entry `pedf fleet add-park` prints).
    let park_user = pedf_runtime::fleet::park_user_entry;
    let port = free_port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{js}\" }}\ntls {{ cert_file: \"{crt}\", key_file: \"{key}\" }}\nauthorization {{ users: [\n{{ nkey: {hub}, permissions: {{ publish: \">\", subscribe: \">\" }} }}\n{a}\n{b}\n] }}\n",
            js = dir.join("js").display(),
            crt = dir.join("nats.crt").display(),
            key = dir.join("nats.key").display(),
            hub = users[0].1.public_key(),
            a = park_user("park-a", &users[1].1.public_key()),
            b = park_user("park-b", &users[2].1.public_key()),
        ),
    )
    .unwrap();
    let _nats = nats_with_config(port, &conf);
    let url = format!("tls://127.0.0.1:{port}");
    let http = free_port();
    std::fs::write(
        dir.join("hub.toml"),
        format!("url = \"{url}\"\nnkey_seed = \"hub.nk\"\ntls_ca = \"nats.crt\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:{http}\"\nhttps_cert = \"nats.crt\"\nhttps_key = \"nats.key\"\n"),
    )
    .unwrap();
    let (stop_hub, hub) =
        start_hub(pedf_runtime::fleet::hub::HubConfig::load(&dir.join("hub.toml")).unwrap());
    let park = RunConfig::load(Path::new(&format!("{ROOT}/config/run-qingzhou.toml")))
        .unwrap()
        .read_park()
        .unwrap();
    // Park A's EMS publisher with its own key, over TLS.
    let a = dir.join("a.sqlite");
    Store::open(&a)
        .unwrap()
        .put_records(&records("08:00", 2), "measured")
        .unwrap();
    let cfg: pedf_runtime::fleet::FleetConfig = toml::from_str(&format!(
        "url = \"{url}\"\npark = \"park-a\"\nnkey_seed = \"{}\"\ntls_ca = \"{}\"\n",
        dir.join("park-a.nk").display(),
        dir.join("nats.crt").display()
    ))
    .unwrap();
    cfg.check().unwrap();
    let (_live_tx, live_rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(pedf_core::live::Live::default()));
    let (stop_a, task_a) = tokio::sync::watch::channel(false);
    let publisher = pedf_runtime::fleet::start(cfg, &park, a.clone(), live_rx, task_a);
    // The hub's view and API over HTTPS (the same certificate, made here): the login cookie
    // is Secure; plain HTTP gets no answer.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.join("nats.crt")).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{http}");
    let fleet = api_until_at(&https, &base, "/api/v1/fleet", 30, |v| {
        v["held"]["records"] == 2
    })
    .await;
    let login = https
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({ "token": VIEWER }))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(
        api(http, "/api/v1/fleet").await.is_none(),
        "the hub answered plain HTTP"
    );
    assert_eq!(fleet["held"]["records"], 2, "{fleet}");

    // Park A's key on a connection of its own (as a compromised park would use it).
    let connect_as = |who: usize| {
        let seed = users[who].1.seed().unwrap();
        let (ca, url) = (dir.join("nats.crt"), url.clone());
        let inbox = format!("_INBOX.{}", users[who].0);
        async move {
            async_nats::ConnectOptions::new()
                .nkey(seed)
                .custom_inbox_prefix(inbox)
                .require_tls(true)
                .add_root_certificates(ca)
                .connect(url)
                .await
        }
    };
    let pa = connect_as(1).await.expect("park-a connects with its key");
    let mut js = async_nats::jetstream::new(pa.clone());
    js.set_timeout(Duration::from_secs(2));
    let body = br#"{"start": "2026-06-21T10:00:00+08:00", "pv_kwh": 1.0, "grid_import_kwh": 0.0,
        "grid_export_kwh": 0.0, "battery_charge_kwh": 0.0, "battery_discharge_kwh": 0.0,
        "load_kwh": 1.0, "ev_kwh": 0.0, "source": "measured"}"#;
    // As park B: the server drops it (no acknowledgement comes).
    let forged = match js.publish("pedf.park-b.records", body[..].into()).await {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(forged.is_err(), "park-a published as park-b");
    // As itself, on the same connection after the forgery: taken.
    js.publish("pedf.park-a.records", body[..].into())
        .await
        .unwrap()
        .await
        .expect("park-a's own record acknowledged");
    let hubc = connect_as(0).await.expect("the hub's key connects");
    let hjs = async_nats::jetstream::new(hubc.clone());
    let stream = hjs.get_stream("PEDF").await.unwrap();
    assert!(
        stream
            .get_last_raw_message_by_subject("pedf.park-b.records")
            .await
            .is_err(),
        "a record of park-b's is in the stream"
    );
    assert!(stream
        .get_last_raw_message_by_subject("pedf.park-a.records")
        .await
        .is_ok());
    // Park B's requests do not reach park A's key; its own do (sent after park B's on the
    // hub's one connection, so park B's would have come first).
    let mut theirs = pa.subscribe("pedf.park-b.requests").await.unwrap();
    let mut mine = pa.subscribe("pedf.park-a.requests").await.unwrap();
    // Both subscriptions on the server before the hub publishes: `flush` only empties the
    // client's buffer (async-nats 0.42), and under load the hub's publish on its own
    // connection could reach the server first (a clean-clone CI run waited 10 s for park A's
    // request). The server takes a connection's operations in order, so the acknowledgement
    // of a publish sent after the subscriptions comes after they hold.
    js.publish("pedf.park-a.records", body[..].into())
        .await
        .unwrap()
        .await
        .expect("park-a's record acknowledged");
    hubc.publish("pedf.park-b.requests", "for park-b".into())
        .await
        .unwrap();
    hubc.publish("pedf.park-a.requests", "for park-a".into())
        .await
        .unwrap();
    hubc.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), mine.next())
        .await
        .expect("park-a's own request within 10 s")
        .unwrap();
    assert_eq!(&got.payload[..], b"for park-a");
    assert!(
        !matches!(
            tokio::time::timeout(Duration::ZERO, theirs.next()).await,
            Ok(Some(_))
        ),
        "park-a received park-b's request"
    );
    // No key, or no TLS: refused.
    let anonymous = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(dir.join("nats.crt"))
        .connect(url.clone())
        .await;
    assert!(anonymous.is_err(), "a client without a key got in");
    let plain = async_nats::ConnectOptions::new()
        .nkey(users[1].1.seed().unwrap())
        .connect(format!("nats://127.0.0.1:{port}"))
        .await;
    assert!(plain.is_err(), "a client without TLS got in");

    let _ = stop_a.send(true);
    publisher.await.unwrap();
    let _ = stop_hub.send(());
    hub.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A three-node NATS cluster with JetStream on loopback; each node's process by index.
struct Cluster {
    nodes: Vec<Option<Nats>>,
    ports: Vec<u16>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for k in 0..3 {
            let others: Vec<String> = (0..3)
                .filter(|j| *j != k)
                .map(|j| format!("\"nats-route://127.0.0.1:{}\"", routes[j]))
                .collect();
            let conf = dir.join(format!("n{k}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{k}\nlisten: \"127.0.0.1:{}\"\njetstream {{ store_dir: \"{}\" }}\ncluster {{ name: pedf, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                    ports[k],
                    dir.join(format!("n{k}")).display(),
                    routes[k],
                    others.join(", ")
                ),
            )
            .unwrap();
            nodes.push(Some(nats_with_config(ports[k], &conf)));
        }
        Cluster { nodes, ports }
    }

    fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// 100 simulated parks publish into a three-node cluster whose stream is kept on all three;
/// one node is killed while they publish and the hub is killed and started again: when the
/// parks stop, every record, event and plan they made is in the fleet store once (counted
/// exactly against the parks' stores), and once in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_the_hub_killed_while_100_parks_publish_lose_and_repeat_nothing() {
    let dir = fresh_dir("pedf-fleet-cluster");
    let mut cluster = Cluster::start(&dir);
    let url = cluster.url();
    let hub_cfg = |http: u16| pedf_runtime::fleet::hub::HubConfig {
        url: url.clone(),
        credentials: None,
        nkey_seed: None,
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
        store: dir.join("fleet.sqlite"),
        listen: format!("127.0.0.1:{http}"),
        https_cert: None,
        https_key: None,
        replicas: 3,
        duplicate_window_h: 24,
        stale_after_s: 30,
        influx: None,
        time_zone: "Asia/Shanghai".into(),
    };
    let http = free_port();
    let (_stop_first, first_hub) = start_hub(hub_cfg(http));
    let ready = api_until(http, "/api/v1/fleet", 60, |v| v["link"] == "connected").await;
    assert_eq!(ready["link"], "connected", "{ready}");
    // An interval closes every half second of real time.
    let (stop_sim, sim_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(pedf_runtime::fleet::sim::run(
        pedf_runtime::fleet::sim::SimOptions {
            parks: 100,
            prefix: "sim".into(),
            url: url.clone(),
            dir: dir.join("parks"),
            start: ems_origin(),
            speed: 1800.0,
            state_every_s: 1,
            drain_s: 90,
        },
        async {
            let _ = sim_rx.await;
        },
        |_| {},
    ));
    let held = |v: &serde_json::Value| v["held"]["records"].as_i64().unwrap_or(0);
    let v = api_until(http, "/api/v1/fleet", 60, |v| held(v) >= 300).await;
    assert!(held(&v) >= 300, "{v}");
    // A node dies (its process killed) while the parks publish.
    cluster.nodes[0] = None;
    let before = held(&api(http, "/api/v1/fleet").await.unwrap_or_default());
    let v = api_until(http, "/api/v1/fleet", 60, |v| held(v) >= before + 300).await;
    assert!(
        held(&v) >= before + 300,
        "the fleet stalled after the node died: {v}"
    );
    // The hub dies too (its task dropped mid-batch: what it took and did not acknowledge
    // comes again) and a new one starts on its store.
    first_hub.abort();
    let _ = first_hub.await;
    let http = free_port();
    let (stop_hub, hub) = start_hub(hub_cfg(http));
    let v = api_until(http, "/api/v1/fleet", 60, |v| held(v) >= before + 600).await;
    assert!(
        held(&v) >= before + 600,
        "the restarted hub took nothing: {v}"
    );
    let _ = stop_sim.send(());
    let made = sim.await.unwrap().unwrap();
    assert!(
        made.behind.is_empty(),
        "parks left behind: {:?}",
        made.behind
    );
    assert!(made.records >= 1000, "{made:?}");
    let want = (made.records as i64, made.events as i64, made.plans as i64);
    let v = api_until(http, "/api/v1/fleet", 60, |v| {
        (
            held(v),
            v["held"]["events"].as_i64().unwrap_or(0),
            v["held"]["plans"].as_i64().unwrap_or(0),
        ) == want
    })
    .await;
    assert_eq!(
        (
            held(&v),
            v["held"]["events"].as_i64().unwrap(),
            v["held"]["plans"].as_i64().unwrap()
        ),
        want,
        "{v}"
    );
    // The link said as it is again after the node's death.
    assert_eq!(v["link"], "connected", "{v}");
    // Every park's flexibility in each hour of the next day, from the plans they made active
    // for it.
    let flex = api(http, "/api/v1/flexibility?day=2026-06-22")
        .await
        .unwrap();
    let hours = flex["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24, "{flex}");
    assert!(hours.iter().all(|h| h["parks"] == 100), "{flex}");
    assert!(
        hours
            .iter()
            .all(|h| h["down_kw"].as_f64().unwrap() > 0.0 || h["up_kw"].as_f64().unwrap() > 0.0),
        "{flex}"
    );
    let bad = hub_get(http, "/api/v1/flexibility?day=22.6.2026", Some(VIEWER))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // And the stream holds each message once.
    let nc = async_nats::connect(format!("nats://127.0.0.1:{}", cluster.ports[1]))
        .await
        .unwrap();
    let mut stream = async_nats::jetstream::new(nc)
        .get_stream("PEDF")
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages as i64,
        want.0 + want.1 + want.2,
        "{:?}",
        info.state
    );
    println!(
        "cluster: {} records, {} events, {} plans held once; deliveries {}",
        want.0, want.1, want.2, v["held"]["record_deliveries"]
    );
    let _ = stop_hub.send(());
    hub.await.unwrap().unwrap();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
