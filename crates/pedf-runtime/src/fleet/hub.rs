//! The fleet's hub (`pedf fleet serve HUB.toml`, issue 24): it makes the fleet's JetStream
//! stream `PEDF` (every park's records, events and activated plans, deduplicated on their
//! message ids over `duplicate_window_h`, kept on `replicas` nodes), reads it with the durable
//! consumer `pedf-hub` (the cluster keeps how far it has read: a hub restarted resumes where
//! it stopped), and takes each batch into its own store before acknowledging it: a message
//! delivered again lands on its row's key, so each is held once. The parks' live states
//! (`pedf.*.state`, not kept by the stream) are held in memory for the view and written to
//! the store every few seconds. Records and states also go to a time-series server that speaks
//! InfluxDB's write API (VictoriaMetrics) through the Influx sink, with its on-disk buffer.
//!
//! The park a message is of is its subject's second token, never what its body says: a
//! park's NATS user may publish only under its own name, so the subject is what the server
//! vouches for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use pedf_store::fleet::{
    FleetDelivery, FleetEvent, FleetMessage, FleetPlan, FleetRecord, FleetStore,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{subject_token, FleetState};
use access::HubCaller;
pub use access::{make_token, token_wanted};
use pedf_server::Role;

mod access;

/// A record's energies, kWh, in `FleetRecord::kwh`'s order: a record file's columns after
/// `start`.
const ENERGIES: [&str; 7] = {
    let c = pedf_core::records::COLUMNS;
    [c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
};

/// The fleet's stream.
pub const STREAM: &str = "PEDF";
/// The hub's durable consumer of it.
pub const CONSUMER: &str = "pedf-hub";

/// A hub file (`pedf fleet serve HUB.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The NATS servers (the cluster's nodes separated by commas).
    pub url: String,
    /// The hub's NATS credentials file (relative to the hub file); none: `nkey_seed`, or the
    /// server's rules.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// A file holding the hub's NATS user nkey seed (relative to the hub file).
    #[serde(default)]
    pub nkey_seed: Option<PathBuf>,
    /// The certificates (PEM) the servers' TLS certificates are checked against; with it
    /// the link is TLS only.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The hub's own TLS certificate, for servers that ask for one.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The hub's store (relative to the hub file).
    pub store: PathBuf,
    /// Where the fleet view and API listen, e.g. `127.0.0.1:8090`.
    pub listen: String,
    /// The view's and API's own TLS certificate chain (PEM, relative to the hub file): with
    /// `https_key`, they are served over HTTPS only and the login cookie is `Secure`.
    #[serde(default)]
    pub https_cert: Option<PathBuf>,
    /// The key of `https_cert` (PEM).
    #[serde(default)]
    pub https_key: Option<PathBuf>,
    /// On how many nodes the stream is kept: 1, or 3 on a three-node cluster.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Over how long the stream drops a message whose id it has had, hours (default 24).
    #[serde(default = "day")]
    pub duplicate_window_h: u64,
    /// A park whose last state is older than this is shown as not reporting, s (default 30).
    #[serde(default = "half_minute")]
    pub stale_after_s: u64,
    /// The fleet's time zone: its days and hours (the flexibility of tomorrow) are this
    /// zone's (default Asia/Shanghai).
    #[serde(default = "shanghai")]
    pub time_zone: String,
    /// The time-series server the records and states also go to (VictoriaMetrics, or
    /// InfluxDB v2), as a run file's `[influx]`.
    #[serde(default)]
    pub influx: Option<pedf_influx::InfluxConfig>,
}

fn one() -> usize {
    1
}
fn day() -> u64 {
    24
}
fn half_minute() -> u64 {
    30
}
fn shanghai() -> String {
    "Asia/Shanghai".into()
}

impl HubConfig {
    /// How the hub reaches NATS.
    pub fn link(&self) -> super::Link {
        super::Link {
            url: self.url.clone(),
            credentials: self.credentials.clone(),
            nkey_seed: self.nkey_seed.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }

    /// Reads a hub file; paths become relative to its folder; every mistake names the file
    /// (and the line where it is one of TOML).
    pub fn load(path: &Path) -> Result<HubConfig, String> {
        let name = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let mut c: HubConfig = toml::from_str(&text).map_err(|e| {
            let (line, col) =
                pedf_core::config::SourceMap::new(&text).locate(e.span().map_or(0, |s| s.start));
            format!("{name}:{line}:{col}: {}", e.message().trim())
        })?;
        super::check_urls(&c.url).map_err(|e| format!("{name}: {e}"))?;
        c.link().check().map_err(|e| format!("{name}: {e}"))?;
        if c.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "{name}: listen = `{}`: give an address and port, e.g. 127.0.0.1:8090",
                c.listen
            ));
        }
        if c.https_cert.is_some() != c.https_key.is_some() {
            return Err(format!(
                "{name}: give https_cert and https_key together (the view's TLS certificate and its key), or neither for plain HTTP"
            ));
        }
        if !matches!(c.replicas, 1 | 3 | 5) {
            return Err(format!(
                "{name}: replicas = {}: give 1, 3 or 5 (the stream's copies, at most the cluster's nodes)",
                c.replicas
            ));
        }
        if !(1..=24 * 30).contains(&c.duplicate_window_h) {
            return Err(format!(
                "{name}: duplicate_window_h = {}: give 1 to 720 hours",
                c.duplicate_window_h
            ));
        }
        if c.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "{name}: time_zone = `{}`: give an IANA zone, e.g. Asia/Shanghai",
                c.time_zone
            ));
        }
        if !(1..=86_400).contains(&c.stale_after_s) {
            return Err(format!(
                "{name}: stale_after_s = {}: give 1 to 86400 seconds",
                c.stale_after_s
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.store].into_iter().chain(
            [
                &mut c.credentials,
                &mut c.nkey_seed,
                &mut c.tls_ca,
                &mut c.tls_cert,
                &mut c.tls_key,
                &mut c.https_cert,
                &mut c.https_key,
            ]
            .into_iter()
            .flatten(),
        ) {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let Some(i) = &mut c.influx {
            if i.buffer_dir.is_relative() {
                i.buffer_dir = dir.join(&i.buffer_dir);
            }
            if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
                return Err(format!(
                    "{name}: [influx] url = `{}` is not an http:// or https:// URL",
                    i.url
                ));
            }
            i.resolve_token(dir).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(c)
    }
}

/// What the hub has done since it started.
#[derive(Default)]
struct Counters {
    /// Stream messages taken into the store, by kind: records, events, plans, deliveries.
    taken: [AtomicU64; 4],
    /// Stream messages refused for good (not a message of pedf's: wrong subject or body).
    refused: AtomicU64,
    /// Live states received.
    states: AtomicU64,
    /// Batches the store could not take (delivered again later).
    store_errors: AtomicU64,
    /// Lines handed to the time-series server.
    lines: AtomicU64,
    /// Connections refused by the HTTP server's limits.
    connections_refused: AtomicU64,
    /// API calls refused for no token or a wrong one, and failed logins.
    auth_failures: AtomicU64,
}

/// A park's last live state as the hub has it.
#[derive(Clone)]
struct Latest {
    /// When it came (the hub's clock).
    received: DateTime<Utc>,
    state: FleetState,
}

/// What the view and the API read.
#[derive(Clone)]
struct Shared {
    store: Arc<Mutex<FleetStore>>,
    latest: Arc<Mutex<HashMap<String, Latest>>>,
    counters: Arc<Counters>,
    /// The hub's link to NATS now, said as it is.
    link: Arc<Mutex<String>>,
    stale_after_s: u64,
    zone: chrono_tz::Tz,
    /// The hub's clock (the wall clock; a test's own).
    time: pedf_core::time::TimeSource,
    /// The last states' delays from the park's sending to the hub's view, s (10 000 kept).
    delays: Arc<Mutex<std::collections::VecDeque<f64>>>,
    /// The hub's NATS connection, once made (the fleet's grid requests go out on it).
    nats: Arc<Mutex<Option<async_nats::Client>>>,
    /// Failed logins per address in the running minute.
    failed_logins: Arc<pedf_server::FailedLogins>,
    /// The view is served over HTTPS: the login cookie is `Secure`.
    secure_cookie: bool,
}

impl Shared {
    /// The delays' median and 99th percentile, s, and how many they are of.
    fn delay_quantiles(&self) -> Option<(f64, f64, usize)> {
        let mut v: Vec<f64> = self
            .delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99), v.len()))
    }
}

/// Takes one stream message apart: its subject's park and kind and its body (what the hub
/// does with each message it reads).
pub fn parse(subject: &str, body: &[u8]) -> Result<FleetMessage, String> {
    let mut tokens = subject.split('.');
    let (Some("pedf"), Some(park), Some(kind), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(format!(
            "{subject}: not a subject of pedf's (pedf.PARK.KIND)"
        ));
    };
    if !subject_token(park) {
        return Err(format!("{subject}: `{park}` is not a park's name"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{subject}: not JSON: {e}"))?;
    let text = |k: &str| -> Result<String, String> {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{subject}: `{k}` missing or not text"))
    };
    let int = |k: &str| -> Result<i64, String> {
        v[k].as_i64()
            .ok_or_else(|| format!("{subject}: `{k}` missing or not a whole number"))
    };
    let time = |k: &str| -> Result<DateTime<Utc>, String> {
        let t = text(k)?;
        DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{subject}: `{k}` = `{t}`: {e}"))
    };
    let park = park.to_string();
    match kind {
        "records" => {
            let mut kwh = [0.0; 7];
            for (k, f) in ENERGIES.iter().enumerate() {
                kwh[k] = v[f]
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{subject}: `{f}` missing or not a number"))?;
            }
            Ok(FleetMessage::Record(FleetRecord {
                park,
                start: time("start")?,
                kwh,
                source: text("source")?,
                body: String::from_utf8_lossy(body).into_owned(),
            }))
        }
        "events" => Ok(FleetMessage::Event(FleetEvent {
            park,
            id: int("id")?,
            at: time("at")?,
            severity: text("severity")?,
            kind: text("kind")?,
            message: text("message")?,
        })),
        "plans" => {
            // Its flexibility kept apart (small; summed over the fleet), only when it is the
            // list pedf sends: one that is not is left out, the plan taken all the same.
            let flexibility = v
                .get("flexibility")
                .filter(|f| !f.is_null())
                .and_then(|f| {
                    serde_json::from_value::<Vec<pedf_core::flexibility::IntervalFlexibility>>(
                        f.clone(),
                    )
                    .ok()
                })
                .filter(|l| {
                    l.iter().all(|x| {
                        x.down_kw.is_finite()
                            && x.up_kw.is_finite()
                            && x.down_kw >= 0.0
                            && x.up_kw >= 0.0
                    })
                })
                .and_then(|l| serde_json::to_string(&l).ok());
            Ok(FleetMessage::Plan(FleetPlan {
                park,
                activation: int("activation")?,
                plan: int("id")?,
                day: text("day")?,
                strategy: text("strategy")?,
                body: String::from_utf8_lossy(body).into_owned(),
                flexibility,
            }))
        }
        "deliveries" => {
            let kwh = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
            let request = text("request")?;
            if request.is_empty() || request.len() > 200 {
                return Err(format!(
                    "{subject}: `request` = `{request}`: not a request's id"
                ));
            }
            Ok(FleetMessage::Delivery(FleetDelivery {
                park,
                request,
                end: time("end")?,
                requested_kwh: kwh("requested_kwh"),
                delivered_kwh: kwh("delivered_kwh"),
                body: String::from_utf8_lossy(body).into_owned(),
            }))
        }
        other => Err(format!(
            "{subject}: `{other}` is not a kind the stream keeps"
        )),
    }
}

/// A record as a line of line protocol (measurement `pedf_record`, tag `park`).
fn record_line(r: &FleetRecord) -> String {
    let fields: Vec<String> = ENERGIES
        .iter()
        .zip(r.kwh)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    format!(
        "pedf_record,park={} {} {}",
        pedf_influx::escape(&r.park),
        fields.join(","),
        r.start.timestamp_millis()
    )
}

/// A live state as a line of line protocol (measurement `pedf_park`, tag `park`), at the
/// park's time of it; none when it has no time or no value.
fn state_line(park: &str, s: &FleetState) -> Option<String> {
    let at = s.at?;
    let fields: Vec<String> = [
        ("pv_kw", s.pv_kw),
        ("battery_kw", s.battery_kw),
        ("soc_pct", s.soc_pct),
        ("load_kw", s.load_kw),
        ("ev_kw", s.ev_kw),
        ("grid_kw", s.grid_kw),
    ]
    .iter()
    .filter_map(|(n, v)| v.filter(|x| x.is_finite()).map(|x| format!("{n}={x}")))
    .collect();
    (!fields.is_empty()).then(|| {
        format!(
            "pedf_park,park={} {} {}",
            pedf_influx::escape(park),
            fields.join(","),
            at.timestamp_millis()
        )
    })
}

/// Makes (or finds) the fleet's stream and the hub's durable consumer of it.
async fn stream_and_consumer(
    js: &async_nats::jetstream::Context,
    cfg: &HubConfig,
) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
    use async_nats::jetstream::{consumer, stream};
    let config = stream::Config {
        name: STREAM.into(),
        subjects: ["records", "events", "plans", "deliveries"]
            .iter()
            .map(|k| format!("pedf.*.{k}"))
            .collect(),
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: Duration::from_secs(cfg.duplicate_window_h * 3600),
        ..Default::default()
    };
    let mut s = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| format!("stream {STREAM}: {e}"))?;
    // A stream an earlier hub made keeps fewer subjects: given the ones this hub reads.
    let has = s
        .info()
        .await
        .map_err(|e| format!("stream {STREAM}: {e}"))?
        .config
        .subjects
        .clone();
    if config.subjects.iter().any(|x| !has.contains(x)) {
        js.update_stream(stream::Config {
            subjects: config.subjects.clone(),
            ..s.cached_info().config.clone()
        })
        .await
        .map_err(|e| format!("stream {STREAM}: its subjects: {e}"))?;
    }
    s.get_or_create_consumer(
        CONSUMER,
        consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            // A batch taken by a hub that died before acknowledging it comes again after this.
            ack_wait: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("consumer {CONSUMER}: {e}"))
}

/// Reads the stream with the durable consumer until `stop`: each batch into the store, then
/// acknowledged (a batch the store cannot take is not, and comes again).
async fn consume(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    shared: Shared,
    sink: Option<pedf_influx::InfluxSink>,
    mut stop: watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = tokio::select! {
            b = consumer.batch().max_messages(500).expires(Duration::from_millis(500)).messages() => b,
            _ = stop.changed() => return,
        };
        let mut batch = match batch {
            Ok(b) => {
                // Reading again after a failure: the link is back.
                let mut link = shared.link.lock().unwrap_or_else(|p| p.into_inner());
                if *link != "connected" {
                    *link = "connected".into();
                }
                b
            }
            Err(e) => {
                *shared.link.lock().unwrap_or_else(|p| p.into_inner()) =
                    format!("reading the stream: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut msgs = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    tracing::warn!(target: "pedf::fleet", "fleet stream: {e}");
                    break;
                }
            }
        }
        if msgs.is_empty() {
            continue;
        }
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        for m in &msgs {
            match parse(&m.subject, &m.payload) {
                Ok(x) => taken.push(x),
                Err(e) => refused.push((m, e)),
            }
        }
        let store = shared.store.clone();
        let rows = taken.clone();
        let now = shared.time.now();
        let stored = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(now, &rows)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = stored {
            // Not acknowledged: the stream delivers them again after ack_wait.
            shared.counters.store_errors.fetch_add(1, Relaxed);
            tracing::warn!(target: "pedf::fleet", "fleet store: {e} ({} messages wait in the stream)", msgs.len());
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        for (m, why) in &refused {
            shared.counters.refused.fetch_add(1, Relaxed);
            tracing::warn!(target: "pedf::fleet", "refused for good: {why}");
            let _ = m.ack_with(async_nats::jetstream::AckKind::Term).await;
        }
        for m in &msgs {
            if refused.iter().all(|(r, _)| !std::ptr::eq(*r, m)) {
                let _ = m.ack().await;
            }
        }
        let mut lines = Vec::new();
        for x in &taken {
            let k = match x {
                FleetMessage::Record(r) => {
                    lines.push(record_line(r));
                    0
                }
                FleetMessage::Event(_) => 1,
                FleetMessage::Plan(_) => 2,
                FleetMessage::Delivery(_) => 3,
            };
            shared.counters.taken[k].fetch_add(1, Relaxed);
        }
        if let Some(s) = &sink {
            let n = lines.len() as u64;
            if !lines.is_empty() && s.send_lines(lines) {
                shared.counters.lines.fetch_add(n, Relaxed);
            }
        }
    }
}

/// Receives the parks' live states until `stop`: the newest of each park held for the view,
/// written to the store (and the time-series server) every 2 s.
async fn states(
    client: async_nats::Client,
    shared: Shared,
    sink: Option<pedf_influx::InfluxSink>,
    mut stop: watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    let mut sub = match client.subscribe("pedf.*.state").await {
        Ok(s) => s,
        Err(e) => {
            *shared.link.lock().unwrap_or_else(|p| p.into_inner()) =
                format!("subscribing to the states: {e}");
            return;
        }
    };
    let mut pending: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    let mut lines = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m else { return };
                let park = m.subject.split('.').nth(1).unwrap_or_default().to_string();
                let Ok(mut state) = serde_json::from_slice::<FleetState>(&m.payload) else {
                    shared.counters.refused.fetch_add(1, Relaxed);
                    continue;
                };
                if !subject_token(&park) {
                    shared.counters.refused.fetch_add(1, Relaxed);
                    continue;
                }
                // A park's link is shown only as a web address (not `javascript:` or the like).
                if state.dashboard.as_deref().is_some_and(|d| {
                    !(d.starts_with("http://") || d.starts_with("https://"))
                }) {
                    state.dashboard = None;
                }
                shared.counters.states.fetch_add(1, Relaxed);
                let now = shared.time.now();
                // The delay on the wall clocks (the park's sending, the hub's receiving).
                if let Some(sent) = state.sent {
                    let d = (Utc::now() - sent).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                    let mut q = shared.delays.lock().unwrap_or_else(|p| p.into_inner());
                    if q.len() >= 10_000 {
                        q.pop_front();
                    }
                    q.push_back(d);
                }
                if let Some(l) = state_line(&park, &state) {
                    lines.push(l);
                }
                pending.insert(park.clone(), (now, serde_json::to_string(&state).unwrap_or_default()));
                shared.latest.lock().unwrap_or_else(|p| p.into_inner()).insert(park, Latest { received: now, state });
            }
            _ = tick.tick() => {
                if !pending.is_empty() {
                    let rows: Vec<(String, DateTime<Utc>, String)> =
                        pending.drain().map(|(p, (t, s))| (p, t, s)).collect();
                    let store = shared.store.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        store.lock().unwrap_or_else(|p| p.into_inner()).put_states(&rows)
                    }).await;
                    if !matches!(r, Ok(Ok(()))) {
                        shared.counters.store_errors.fetch_add(1, Relaxed);
                    }
                }
                if let Some(s) = &sink {
                    let n = lines.len() as u64;
                    if !lines.is_empty() && s.send_lines(std::mem::take(&mut lines)) {
                        shared.counters.lines.fetch_add(n, Relaxed);
                    }
                }
                lines.clear();
            }
            _ = stop.changed() => return,
        }
    }
}

/// A park in the view: its last state, how old it is, what the store holds of it.
fn park_view(
    park: &pedf_store::fleet::FleetPark,
    latest: Option<&Latest>,
    now: DateTime<Utc>,
    stale_after_s: u64,
) -> Value {
    // The state received since the hub started, else the one the store kept.
    let (received, state) = match latest {
        Some(l) => (Some(l.received), Some(l.state.clone())),
        None => park
            .state
            .as_ref()
            .map(|(t, s)| (Some(*t), serde_json::from_str::<FleetState>(s).ok()))
            .unwrap_or((None, None)),
    };
    let age = received.map(|t| (now - t).num_milliseconds() as f64 / 1000.0);
    json!({
        "park": park.park,
        "state": state,
        "received": received,
        "age_s": age,
        "reporting": age.is_some_and(|a| a <= stale_after_s as f64),
        "records": park.records,
        "last_record": park.last_record,
    })
}

/// `GET /api/v1/parks`: every park with its last state.
async fn parks(_c: HubCaller, State(s): State<Shared>) -> Response {
    let store = s.store.clone();
    let list = tokio::task::spawn_blocking(move || {
        store.lock().unwrap_or_else(|p| p.into_inner()).parks()
    })
    .await;
    let Ok(Ok(list)) = list else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fleet store cannot be read",
        )
            .into_response();
    };
    let latest = s.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let now = s.time.now();
    let mut out: Vec<Value> = list
        .iter()
        .map(|p| park_view(p, latest.get(&p.park), now, s.stale_after_s))
        .collect();
    // A park heard of only by its state since the last write to the store.
    for (name, l) in &latest {
        if list.iter().all(|p| &p.park != name) {
            let p = pedf_store::fleet::FleetPark {
                park: name.clone(),
                first: l.received,
                state: None,
                records: 0,
                last_record: None,
            };
            out.push(park_view(&p, Some(l), now, s.stale_after_s));
        }
    }
    Json(json!({ "parks": out })).into_response()
}

/// `GET /api/v1/fleet`: the fleet's totals now.
async fn fleet(_c: HubCaller, State(s): State<Shared>) -> Response {
    let latest = s.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let now = s.time.now();
    let fresh: Vec<&Latest> = latest
        .values()
        .filter(|l| (now - l.received).num_seconds() <= s.stale_after_s as i64)
        .collect();
    // Sums from +0 (an empty f64 sum is -0).
    let total = |it: &mut dyn Iterator<Item = f64>| it.fold(0.0, |a, b| a + b);
    let sum = |f: fn(&FleetState) -> Option<f64>| -> f64 {
        total(&mut fresh.iter().filter_map(|l| f(&l.state)))
    };
    let cap = total(
        &mut fresh
            .iter()
            .filter(|l| l.state.soc_pct.is_some())
            .map(|l| l.state.battery_capacity_kwh),
    );
    let stored = total(&mut fresh.iter().filter_map(|l| {
        l.state
            .soc_pct
            .map(|soc| soc / 100.0 * l.state.battery_capacity_kwh)
    }));
    let store = s.store.clone();
    let held =
        tokio::task::spawn_blocking(move || store.lock().unwrap_or_else(|p| p.into_inner()).held())
            .await;
    let held = match held {
        Ok(Ok(h)) => json!({
            "records": h[0].rows, "record_deliveries": h[0].deliveries,
            "events": h[1].rows, "event_deliveries": h[1].deliveries,
            "plans": h[2].rows, "plan_deliveries": h[2].deliveries,
        }),
        _ => Value::Null,
    };
    Json(json!({
        "parks_reporting": fresh.len(),
        "parks_known": latest.len(),
        "pv_kw": sum(|x| x.pv_kw),
        "load_kw": sum(|x| x.load_kw),
        "ev_kw": sum(|x| x.ev_kw),
        "battery_kw": sum(|x| x.battery_kw),
        "import_kw": sum(|x| x.grid_kw.map(|g| g.max(0.0))),
        "export_kw": sum(|x| x.grid_kw.map(|g| (-g).max(0.0))),
        "battery_capacity_kwh": cap,
        "battery_stored_kwh": stored,
        "soc_pct": if cap > 0.0 { Some(stored / cap * 100.0) } else { None },
        "today_co2_kg": total(&mut fresh.iter().map(|l| l.state.today_co2_kg)),
        "today_avoided_kg": total(&mut fresh.iter().map(|l| l.state.today_avoided_kg)),
        "alarms": fresh.iter().map(|l| l.state.alarms.len()).sum::<usize>(),
        "held": held,
        "state_delay_s": s.delay_quantiles().map(|(p50, p99, n)| json!({ "p50": p50, "p99": p99, "of": n })),
        "link": s.link.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    }))
    .into_response()
}

/// The fleet's flexibility over a day from each park's plan for it: per hour of the fleet's
/// zone, each park's least over the hour's intervals (what it holds through the hour) summed
/// over the parks; and now (the interval each park's plan has now), when the day is today.
pub fn fleet_flexibility(
    plans: &[(String, String)],
    zone: chrono_tz::Tz,
    day: chrono::NaiveDate,
    now: DateTime<Utc>,
) -> Value {
    use chrono::{TimeZone, Timelike};
    let mut hours = vec![(0.0f64, 0.0f64, 0usize); 24];
    let (mut now_down, mut now_up, mut now_parks) = (0.0, 0.0, 0usize);
    for (_, json) in plans {
        let Ok(list) =
            serde_json::from_str::<Vec<pedf_core::flexibility::IntervalFlexibility>>(json)
        else {
            continue;
        };
        let mut per_hour: [Option<(f64, f64)>; 24] = [None; 24];
        for (k, x) in list.iter().enumerate() {
            let local = x.start.with_timezone(&zone);
            if local.date_naive() != day {
                continue;
            }
            let h = local.hour() as usize;
            per_hour[h] = Some(match per_hour[h] {
                Some((d, u)) => (d.min(x.down_kw), u.min(x.up_kw)),
                None => (x.down_kw, x.up_kw),
            });
            let start = x.start.with_timezone(&Utc);
            let end = list
                .get(k + 1)
                .map(|n| n.start.with_timezone(&Utc))
                .unwrap_or(start + chrono::Duration::minutes(15));
            if start <= now && now < end {
                now_down += x.down_kw;
                now_up += x.up_kw;
                now_parks += 1;
            }
        }
        for (h, v) in per_hour.iter().enumerate() {
            if let Some((d, u)) = v {
                hours[h].0 += d;
                hours[h].1 += u;
                hours[h].2 += 1;
            }
        }
    }
    let start_of = |h: u32| {
        zone.from_local_datetime(&day.and_hms_opt(h, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.to_rfc3339())
    };
    json!({
        "day": day.to_string(),
        "time_zone": zone.name(),
        "now": (now_parks > 0).then(|| json!({ "down_kw": now_down, "up_kw": now_up, "parks": now_parks })),
        "hours": hours.iter().enumerate().map(|(h, (d, u, n))| json!({
            "hour": h, "start": start_of(h as u32), "down_kw": d, "up_kw": u, "parks": n,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
struct DayQuery {
    day: Option<String>,
}

/// `GET /api/v1/flexibility?day=YYYY-MM-DD`: the fleet's flexibility over a day of its zone
/// (default today) from the parks' plans.
async fn flexibility(
    _c: HubCaller,
    State(s): State<Shared>,
    Query(q): Query<DayQuery>,
) -> Response {
    let now = s.time.now();
    let today = now.with_timezone(&s.zone).date_naive();
    let day = match q.day.as_deref() {
        None | Some("today") => today,
        Some("tomorrow") => today.succ_opt().unwrap_or(today),
        Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => d,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": format!("day = `{d}`: {e}; give YYYY-MM-DD (e.g. 2026-06-22), today or tomorrow") })),
                )
                    .into_response()
            }
        },
    };
    let store = s.store.clone();
    let key = day.to_string();
    let r = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flexibility_of_day(&key)
    })
    .await;
    match r {
        Ok(Ok(plans)) => Json(fleet_flexibility(&plans, s.zone, day, now)).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fleet store cannot be read",
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct RecordsQuery {
    from: String,
    to: String,
}

/// `GET /api/v1/parks/{park}/records?from=&to=`: a park's records as it sent them.
async fn park_records(
    _c: HubCaller,
    State(s): State<Shared>,
    UrlPath(park): UrlPath<String>,
    Query(q): Query<RecordsQuery>,
) -> Response {
    let parse = |k: &str, v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!(
                    "{k} = `{v}`: {e}; give a time with its offset, e.g. 2026-06-21T00:00:00+08:00"
                )
            })
    };
    let (from, to) = match (parse("from", &q.from), parse("to", &q.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response()
        }
    };
    if !subject_token(&park) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("`{park}` is not a park's name") })),
        )
            .into_response();
    }
    let store = s.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .records(&park, from, to)
    })
    .await;
    match r {
        Ok(Ok(list)) => {
            let v: Vec<Value> = list
                .iter()
                .filter_map(|b| serde_json::from_str(b).ok())
                .collect();
            Json(json!({ "records": v })).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fleet store cannot be read",
        )
            .into_response(),
    }
}

/// `GET /metrics`: the hub's counters in Prometheus' text format.
async fn metrics(_c: HubCaller, State(s): State<Shared>) -> Response {
    let c = &s.counters;
    let latest = s.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let now = s.time.now();
    let reporting = latest
        .values()
        .filter(|l| (now - l.received).num_seconds() <= s.stale_after_s as i64)
        .count();
    let mut out = String::new();
    out.push_str("# HELP pedf_fleet_messages_total Stream messages taken into the fleet store.\n# TYPE pedf_fleet_messages_total counter\n");
    for (k, name) in ["records", "events", "plans", "deliveries"]
        .iter()
        .enumerate()
    {
        out.push_str(&format!(
            "pedf_fleet_messages_total{{kind=\"{name}\"}} {}\n",
            c.taken[k].load(Relaxed)
        ));
    }
    for (name, help, v) in [
        (
            "pedf_fleet_refused_total",
            "Messages refused for good (not pedf's).",
            c.refused.load(Relaxed),
        ),
        (
            "pedf_fleet_states_total",
            "Live states received.",
            c.states.load(Relaxed),
        ),
        (
            "pedf_fleet_store_errors_total",
            "Writes the fleet store could not take.",
            c.store_errors.load(Relaxed),
        ),
        (
            "pedf_fleet_lines_total",
            "Lines handed to the time-series server.",
            c.lines.load(Relaxed),
        ),
        (
            "pedf_fleet_connections_refused_total",
            "HTTP connections refused by the limits.",
            c.connections_refused.load(Relaxed),
        ),
        (
            "pedf_fleet_auth_failures_total",
            "API calls without a token of the hub's, and failed logins.",
            c.auth_failures.load(Relaxed),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP pedf_fleet_parks Parks whose state the hub has.\n# TYPE pedf_fleet_parks gauge\npedf_fleet_parks {}\n# HELP pedf_fleet_parks_reporting Parks whose last state is fresh.\n# TYPE pedf_fleet_parks_reporting gauge\npedf_fleet_parks_reporting {reporting}\n",
        latest.len()
    ));
    if let Some((p50, p99, _)) = s.delay_quantiles() {
        out.push_str(&format!(
            "# HELP pedf_fleet_state_delay_seconds A park's state from its sending to the hub's view, over the last 10000.\n# TYPE pedf_fleet_state_delay_seconds gauge\npedf_fleet_state_delay_seconds{{quantile=\"0.5\"}} {p50}\npedf_fleet_state_delay_seconds{{quantile=\"0.99\"}} {p99}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// One of the fleet view's files, with the headers that keep a page from running anything but
/// its own script (a park's texts are data, never markup).
fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The hub's HTTP routes.
fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(include_str!("web/index.html"), "text/html; charset=utf-8") }),
        )
        .route(
            "/fleet.js",
            get(|| async {
                asset(
                    include_str!("web/fleet.js"),
                    "text/javascript; charset=utf-8",
                )
            }),
        )
        .route(
            "/fleet.css",
            get(|| async { asset(include_str!("web/fleet.css"), "text/css; charset=utf-8") }),
        )
        .route(
            "/api/v1/session",
            axum::routing::post(access::login).delete(access::logout),
        )
        .route("/api/v1/whoami", get(access::whoami))
        .route(
            "/api/v1/tokens",
            get(access::token_list).post(access::token_create),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(access::token_revoke),
        )
        .route("/api/v1/parks", get(parks))
        .route("/api/v1/fleet", get(fleet))
        .route("/api/v1/flexibility", get(flexibility))
        .route("/api/v1/parks/{park}/records", get(park_records))
        .route("/api/v1/requests", get(requests_get).post(request_post))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// An error of the API: its status and what it says.
fn api_error(status: StatusCode, what: impl Into<String>) -> Response {
    (status, Json(json!({ "error": what.into() }))).into_response()
}

/// A fleet request with its parts and the deliveries the parks measured, as the API gives it.
fn request_json(
    zone: chrono_tz::Tz,
    r: &pedf_store::fleet::FleetRequest,
    parts: &[pedf_store::fleet::RequestPart],
    delivered: &[(String, String)],
) -> Value {
    let at = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    let sum = |f: &dyn Fn(&pedf_store::fleet::RequestPart) -> f64| parts.iter().map(f).sum::<f64>();
    let held = sum(&|p| p.held_kw);
    let (mut requested, mut got, mut reported) = (0.0, 0.0, 0usize);
    let list: Vec<Value> = parts
        .iter()
        .map(|p| {
            let d = delivered
                .iter()
                .find(|d| d.0 == p.park)
                .and_then(|d| serde_json::from_str::<Value>(&d.1).ok());
            let delivery = d.map(|d| {
                if let (Some(a), Some(b)) =
                    (d["requested_kwh"].as_f64(), d["delivered_kwh"].as_f64())
                {
                    requested += a;
                    got += b;
                    reported += 1;
                }
                json!({
                    "requested_kwh": d["requested_kwh"],
                    "delivered_kwh": d["delivered_kwh"],
                    "share": d["share"],
                    "settlement_cny": d["settlement_cny"],
                    "against": d["against"],
                    "not_measured": d["not_measured"],
                })
            });
            json!({
                "park": p.park,
                "offered_kw": p.offered_kw,
                "asked_kw": p.asked_kw,
                "status": p.status,
                "held_kw": p.held_kw,
                "note": p.note,
                "delivery": delivery,
            })
        })
        .collect();
    let holding = parts.iter().filter(|p| p.held_kw > 0.0).count();
    json!({
        "id": r.id,
        "given": at(r.given),
        "by": r.by,
        "kind": r.kind,
        "kw": r.kw,
        "start": at(r.start),
        "end": at(r.end),
        "price_cny_per_kwh": r.price,
        "offered_kw": sum(&|p| p.offered_kw),
        "asked_kw": sum(&|p| p.asked_kw),
        "held_kw": held,
        "short_kw": (r.kw - held).max(0.0),
        "parks": list,
        "delivery": json!({
            "parks_reported": reported,
            "parks_holding": holding,
            "requested_kwh": requested,
            "delivered_kwh": got,
            "share": if requested > 1e-9 { Some(got / requested) } else { None },
        }),
    })
}

/// `POST /api/v1/requests` (the API's token): a grid request to the fleet, `reduce_import` by
/// `kw` over a window. Split over the parks whose plans offer flexibility down through the
/// whole window, by their offers; each park's part sent to it and answered by its EMS; kept
/// with every part and answer. Answers 201 with the parts and what the fleet holds.
async fn request_post(c: HubCaller, State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    use super::requests::{offered_down, split, ParkAnswer, ParkRequest, ANSWER_WAIT};
    if let Err(r) = c.require(Role::Operator) {
        return r.into_response();
    }
    let by = c.who();
    let bad = |m: String| api_error(StatusCode::BAD_REQUEST, m);
    let g: pedf_core::grid_request::GivenRequest = match serde_json::from_slice(&body) {
        Ok(g) => g,
        Err(e) => {
            return bad(format!(
                "not a fleet grid request ({e}); give {{\"kind\": \"reduce_import\", \"kw\": KW, \"start\": RFC 3339, \"end\": RFC 3339}} and, if you will, \"id\" and \"price_cny_per_kwh\""
            ))
        }
    };
    if g.kind != "reduce_import" {
        return bad(format!(
            "kind `{}`: the fleet splits reduce_import only (over the parks' flexibility down)",
            g.kind
        ));
    }
    if !(g.kw.is_finite() && g.kw > 0.0) {
        return bad(format!(
            "kw {}: give the kW to take off the fleet's import, more than 0",
            g.kw
        ));
    }
    if let Some(p) = g.price_cny_per_kwh {
        if !(p.is_finite() && p >= 0.0) {
            return bad(format!("price_cny_per_kwh {p}: give 0 or more"));
        }
    }
    let time = |what: &str, t: &str| {
        pedf_core::time::parse_rfc3339(t).map_err(|_| {
            format!("{what}: `{t}` is not an RFC 3339 time, e.g. 2026-07-01T18:00:00+08:00")
        })
    };
    let (start, end) = match (time("start", &g.start), time("end", &g.end)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let now = s.time.now();
    if end <= start || end - start > chrono::Duration::days(1) {
        return bad(format!(
            "the window {} to {}: give an end after the start, a day at most",
            g.start, g.end
        ));
    }
    if end <= now {
        return bad(format!("the window ends at {} and is over", g.end));
    }
    let id = match g.id {
        Some(id) if pedf_core::grid_request::id_ok(&id) => id,
        Some(id) => {
            return bad(format!(
                "id `{id}`: give 1 to 64 letters, digits, `-`, `_` or `.`"
            ))
        }
        None => format!("fleet-{}", now.format("%Y%m%dT%H%M%S%3f")),
    };
    // Each park's flexibility over the window's days (the plans it made active last).
    let days: std::collections::BTreeSet<String> = [start, end - chrono::Duration::seconds(1)]
        .iter()
        .map(|t| t.with_timezone(&s.zone).date_naive().to_string())
        .collect();
    let store = s.store.clone();
    let (ids, lists) = {
        let st = store.lock().unwrap_or_else(|p| p.into_inner());
        let known = st.has_request(&id);
        let mut lists: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for d in &days {
            if let Ok(v) = st.flexibility_of_day(d) {
                for (park, json) in v {
                    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(&json) {
                        lists.entry(park).or_default().extend(a);
                    }
                }
            }
        }
        (known, lists)
    };
    match ids {
        Ok(false) => {}
        Ok(true) => {
            return api_error(
                StatusCode::CONFLICT,
                format!("a fleet request `{id}` was given already"),
            )
        }
        Err(_) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the fleet store cannot be read",
            )
        }
    }
    let offers: Vec<(String, f64)> = lists
        .into_iter()
        .filter_map(|(park, l)| {
            let k = offered_down(&Value::Array(l).to_string(), start, end)?;
            (k >= 0.1).then_some((park, k))
        })
        .collect();
    let parts = split(g.kw, &offers);
    let client = s.nats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(client) = client else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is not connected to NATS yet; try again",
        );
    };
    let zone = s.zone;
    let fmt = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    let asks = parts.iter().map(|(park, kw)| {
        let body = serde_json::to_vec(&ParkRequest {
            id: id.clone(),
            kind: g.kind.clone(),
            kw: *kw,
            start: fmt(start),
            end: fmt(end),
            price_cny_per_kwh: g.price_cny_per_kwh,
        })
        .unwrap_or_default();
        let client = client.clone();
        let subject = format!("pedf.{park}.requests");
        async move {
            let r = client
                .send_request(
                    subject,
                    async_nats::Request::new()
                        .payload(body.into())
                        .timeout(Some(ANSWER_WAIT + Duration::from_secs(5))),
                )
                .await;
            match r {
                Ok(m) => serde_json::from_slice::<ParkAnswer>(&m.payload)
                    .map_err(|e| format!("not an answer: {e}")),
                Err(e) => Err(format!("no answer: {e}")),
            }
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let offered = |park: &str| offers.iter().find(|o| o.0 == park).map_or(0.0, |o| o.1);
    let list: Vec<pedf_store::fleet::RequestPart> = parts
        .iter()
        .zip(answers)
        .map(|((park, kw), a)| match a {
            Ok(a)
                if matches!(a.status.as_str(), "accepted" | "part" | "refused")
                    && a.held_kw.is_finite() =>
            {
                pedf_store::fleet::RequestPart {
                    park: park.clone(),
                    offered_kw: offered(park),
                    asked_kw: *kw,
                    status: a.status,
                    held_kw: a.held_kw.clamp(0.0, *kw),
                    note: a.note.chars().take(2000).collect(),
                }
            }
            Ok(a) => pedf_store::fleet::RequestPart {
                park: park.clone(),
                offered_kw: offered(park),
                asked_kw: *kw,
                status: "no answer".into(),
                held_kw: 0.0,
                note: format!(
                    "not an answer: status `{}`",
                    a.status.chars().take(40).collect::<String>()
                ),
            },
            Err(why) => pedf_store::fleet::RequestPart {
                park: park.clone(),
                offered_kw: offered(park),
                asked_kw: *kw,
                status: "no answer".into(),
                held_kw: 0.0,
                note: why,
            },
        })
        .collect();
    let r = pedf_store::fleet::FleetRequest {
        id,
        given: now,
        start,
        end,
        kind: g.kind,
        kw: g.kw,
        price: g.price_cny_per_kwh,
        by,
    };
    let kept = {
        let (r, list) = (r.clone(), list.clone());
        tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put_request(&r, &list)
        })
        .await
    };
    if !matches!(kept, Ok(Ok(()))) {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the parks answered but the fleet store could not keep the request",
        );
    }
    tracing::info!(target: "pedf::fleet", "fleet grid request {}: {:.1} of {:.1} kW held by {} parks", r.id, list.iter().map(|p| p.held_kw).sum::<f64>(), r.kw, list.iter().filter(|p| p.held_kw > 0.0).count());
    (
        StatusCode::CREATED,
        Json(request_json(zone, &r, &list, &[])),
    )
        .into_response()
}

#[derive(Deserialize)]
struct RequestsQuery {
    days: Option<i64>,
}

/// `GET /api/v1/requests?days=N`: the fleet requests whose windows ended in the last N days
/// (default 7) or are to come, newest first, each with its parts, answers and the deliveries
/// the parks measured, summed.
async fn requests_get(
    _c: HubCaller,
    State(s): State<Shared>,
    Query(q): Query<RequestsQuery>,
) -> Response {
    let days = q.days.unwrap_or(7);
    if !(1..=400).contains(&days) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("days {days}: give 1 to 400"),
        );
    }
    let from = s.time.now() - chrono::Duration::days(days);
    let store = s.store.clone();
    let got = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests(from)
    })
    .await;
    match got {
        Ok(Ok(list)) => Json(json!({
            "requests": list
                .iter()
                .map(|(r, p, d)| request_json(s.zone, r, p, d))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        _ => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fleet store cannot be read",
        ),
    }
}

/// Connects to NATS, trying again every 2 s until it answers or `stop` turns true.
async fn connect_until(
    cfg: &HubConfig,
    stop: &mut watch::Receiver<bool>,
    say: &impl Fn(String),
) -> Option<async_nats::Client> {
    let mut said = false;
    loop {
        match super::connect(&cfg.link(), "pedf fleet hub", "_INBOX").await {
            Ok(c) => return Some(c),
            Err(e) if !said => {
                say(format!(
                    "NATS not reachable yet ({e}); trying again every 2 s"
                ));
                said = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Runs the hub until `shutdown`: the stream and its consumer, the states, the HTTP view and
/// API. Returns what it took, said in a line.
pub async fn serve(
    cfg: HubConfig,
    shutdown: impl std::future::Future<Output = ()>,
    say: impl Fn(String),
) -> Result<String, String> {
    serve_on(cfg, pedf_core::time::TimeSource::default(), shutdown, say).await
}

/// [`serve`] on the clock `time` (its "now": the parks' ages, today's flexibility).
pub async fn serve_on(
    cfg: HubConfig,
    time: pedf_core::time::TimeSource,
    shutdown: impl std::future::Future<Output = ()>,
    say: impl Fn(String),
) -> Result<String, String> {
    let store = {
        let p = cfg.store.clone();
        tokio::task::spawn_blocking(move || FleetStore::open(&p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    // An admin's token, made at the first start or whenever none is left that is not revoked:
    // its holder makes the others (`POST /api/v1/tokens`).
    let mut store = store;
    let admins = store
        .all_tokens()
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|t| t.role == Role::Admin.name() && t.revoked.is_none())
        .count();
    if admins == 0 {
        let (token, _) = make_token(
            &mut store,
            "admin (made at the first start)",
            Role::Admin,
            time.now(),
        )?;
        say(format!(
            "no admin token yet: the hub's admin token (shown once, keep it safe): {token}"
        ));
    }
    let tls = match (&cfg.https_cert, &cfg.https_key) {
        (Some(cert), Some(key)) => Some(pedf_server::tls_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sink = match &cfg.influx {
        Some(i) => Some(pedf_influx::InfluxSink::start(i.clone()).map_err(|e| e.to_string())?),
        None => None,
    };
    let shared = Shared {
        store: Arc::new(Mutex::new(store)),
        latest: Arc::default(),
        counters: Arc::default(),
        link: Arc::new(Mutex::new("connecting".into())),
        stale_after_s: cfg.stale_after_s,
        zone: cfg.time_zone.parse().unwrap_or(chrono_tz::Asia::Shanghai),
        delays: Arc::default(),
        nats: Arc::default(),
        failed_logins: Arc::default(),
        secure_cookie: tls.is_some(),
        time,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let counters = shared.counters.clone();
    let http = tokio::spawn(pedf_server::serve_router(
        listener,
        router(shared.clone()),
        tls,
        pedf_server::ServeOptions::default(),
        Arc::new(move || {
            counters.connections_refused.fetch_add(1, Relaxed);
        }),
        stop_rx.clone(),
    ));
    say(format!("fleet view and API on http://{addr}/"));
    let work = {
        let shared = shared.clone();
        let sink = sink.clone();
        let mut stop = stop_rx.clone();
        let cfg = cfg.clone();
        async move {
            let Some(client) = connect_until(&cfg, &mut stop, &say).await else {
                return;
            };
            *shared.nats.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
            let js = async_nats::jetstream::new(client.clone());
            // A cluster still electing its JetStream leader answers nothing for a while: said
            // once, tried again every second.
            let mut said = String::new();
            let consumer = loop {
                match stream_and_consumer(&js, &cfg).await {
                    Ok(c) => break c,
                    Err(e) => {
                        if e != said {
                            say(format!("{e} (trying again every second)"));
                            said = e.clone();
                        }
                        *shared.link.lock().unwrap_or_else(|p| p.into_inner()) = e;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
            };
            *shared.link.lock().unwrap_or_else(|p| p.into_inner()) = "connected".into();
            say(format!(
                "reading stream {STREAM} with consumer {CONSUMER} on {}",
                cfg.url
            ));
            let st = tokio::spawn(states(
                client.clone(),
                shared.clone(),
                sink.clone(),
                stop.clone(),
            ));
            consume(consumer, shared.clone(), sink, stop).await;
            let _ = st.await;
        }
    };
    // The work runs in this task beside the wait for the shutdown (`say` need not be Send).
    let stopper = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(work, stopper);
    let _ = http.await;
    if let Some(s) = &sink {
        s.stop().await;
    }
    let c = &shared.counters;
    Ok(format!(
        "took {} records, {} events, {} plans, {} deliveries, {} states; refused {}",
        c.taken[0].load(Relaxed),
        c.taken[1].load(Relaxed),
        c.taken[2].load(Relaxed),
        c.taken[3].load(Relaxed),
        c.states.load(Relaxed),
        c.refused.load(Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleets_flexibility_is_each_parks_least_over_an_hour_summed() {
        let iv = |t: &str, down: f64, up: f64| json!({ "start": format!("2026-06-22T{t}:00+08:00"), "down_kw": down, "up_kw": up });
        let a = json!([
            iv("09:00", 100.0, 50.0),
            iv("09:15", 80.0, 60.0),
            iv("09:30", 90.0, 70.0),
            iv("09:45", 100.0, 40.0),
            iv("10:00", 10.0, 5.0)
        ]);
        let b = json!([iv("09:00", 5.0, 5.0), iv("09:15", 5.0, 5.0)]);
        let plans = vec![
            ("a".to_string(), a.to_string()),
            ("b".to_string(), b.to_string()),
            ("c".to_string(), "not a list".to_string()),
        ];
        let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 22).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-06-22T09:20:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let f = fleet_flexibility(&plans, chrono_tz::Asia::Shanghai, day, now);
        // 09:00-10:00: park a holds 80 down and 40 up through the hour, park b 5 and 5.
        assert_eq!(
            f["hours"][9],
            json!({ "hour": 9, "start": "2026-06-22T09:00:00+08:00", "down_kw": 85.0, "up_kw": 45.0, "parks": 2 })
        );
        assert_eq!(f["hours"][10]["down_kw"], 10.0);
        assert_eq!(f["hours"][8]["parks"], 0);
        // Now (09:20): park a's 09:15 interval and park b's.
        assert_eq!(
            f["now"],
            json!({ "down_kw": 85.0, "up_kw": 65.0, "parks": 2 })
        );
        // Another day: nothing of these.
        let f = fleet_flexibility(
            &plans,
            chrono_tz::Asia::Shanghai,
            day.succ_opt().unwrap(),
            now,
        );
        assert!(f["now"].is_null() && f["hours"][9]["parks"] == 0);
    }

    #[test]
    fn a_stream_message_is_taken_by_its_subjects_park_and_a_stranger_is_refused() {
        let body =
            br#"{"park": "someone-else", "start": "2026-06-21T08:00:00+08:00", "pv_kwh": 50.0,
            "grid_import_kwh": 10.0, "grid_export_kwh": 0.0, "battery_charge_kwh": 0.0,
            "battery_discharge_kwh": 0.0, "load_kwh": 59.0, "ev_kwh": 1.0, "source": "measured"}"#;
        let FleetMessage::Record(r) = parse("pedf.park-a.records", body).unwrap() else {
            panic!("a record");
        };
        assert_eq!(r.park, "park-a");
        assert_eq!(r.kwh, [50.0, 10.0, 0.0, 0.0, 0.0, 59.0, 1.0]);
        assert_eq!(
            record_line(&r),
            "pedf_record,park=park-a pv_kwh=50,grid_import_kwh=10,grid_export_kwh=0,battery_charge_kwh=0,battery_discharge_kwh=0,load_kwh=59,ev_kwh=1 1782000000000"
        );
        let bad_start = String::from_utf8_lossy(body).replace("2026-06-21T08:00:00+08:00", "x");
        for (subject, body, says) in [
            ("pedf.park-a.records", bad_start.as_bytes(), "`start` = `x`"),
            (
                "pedf.park-a.records",
                &b"{\"start\": \"x\"}"[..],
                "`pv_kwh` missing",
            ),
            ("pedf.park-a.records", b"not json", "not JSON"),
            ("pedf.park-a.secrets", b"{}", "`secrets` is not a kind"),
            ("other.park-a.records", b"{}", "not a subject of pedf's"),
            (
                "pedf.park-a.events",
                b"{\"id\": 1.5}",
                "`id` missing or not a whole number",
            ),
        ] {
            let e = parse(subject, body).unwrap_err();
            assert!(e.contains(says), "{subject}: {e}");
        }
    }
}
