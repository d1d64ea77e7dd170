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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats(child)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        subjects: vec!["pedf.*.records".into(), "pedf.*.events".into()],
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
    assert!(live.get("flows").is_some(), "{live}");

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
