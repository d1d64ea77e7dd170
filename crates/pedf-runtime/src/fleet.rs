//! The park as an edge node of a fleet (`[fleet]`, issue 24): what the park's EMS keeps goes to
//! the fleet's hub over NATS. Its closed interval records, its events and each plan it makes
//! active go into JetStream (`pedf.<park>.records`, `.events`, `.plans`), each with a message
//! id the stream deduplicates on (`<park>/records/<start ms>`, `<park>/events/<id>`,
//! `<park>/plans/<activation>`), one after the other,
//! each sent again until the hub acknowledges it: at least once from here, exactly once in the
//! stream within its duplicate window. Its live state goes to `pedf.<park>.state` every few
//! seconds, not kept (the next one replaces it).
//!
//! The outbox is the park's own store: the publisher reads what comes after the last record
//! and event the hub acknowledged (kept in `<store>.fleet-cursor.json`, written atomically), so
//! while the hub is unreachable the park works as before and its backlog waits in the store,
//! sent in order when the link returns, and a restart resumes where the last run stopped. A
//! backlog older than the store's retention of events (`log_retention_days`) is gone with it.
//! The publisher is a task of its own: the control cycle never waits on the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pedf_core::live::Live;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub mod hub;
pub mod requests;
pub mod sim;

/// The `[fleet]` table of a run file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The hub's NATS servers, e.g. `nats://127.0.0.1:4222` (the cluster's nodes separated by
    /// commas: the client moves to another when one fails).
    pub url: String,
    /// The park's name in subjects (`pedf.<park>.records`): letters, digits, `-` and `_`;
    /// default: the park file's id.
    #[serde(default)]
    pub park: Option<String>,
    /// The park's NATS credentials file (`.creds`: its user JWT and nkey seed, for a server
    /// in operator mode), relative to the run file; none: `nkey_seed`, or the server's own
    /// rules (e.g. no authentication on a trial).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// A file holding the park's NATS user nkey seed (`SU...`, for a server whose
    /// configuration lists the park's public key with its permissions), relative to the run
    /// file.
    #[serde(default)]
    pub nkey_seed: Option<PathBuf>,
    /// The certificates (PEM) the hub's TLS certificate is checked against, relative to the
    /// run file; with it the link is TLS only.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The park's own TLS certificate and key (PEM), for a server that asks for one.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How often the live state is published, s (default 5).
    #[serde(default = "default_state_every_s")]
    pub state_every_s: u64,
    /// The address of the park's own dashboard as the fleet's users reach it (the fleet view
    /// links to it), e.g. `https://park-7.example.cn:8443/`; none: not linked.
    #[serde(default)]
    pub dashboard: Option<String>,
}

fn default_state_every_s() -> u64 {
    5
}

/// Whether `url` names NATS servers: `nats://HOST:PORT` or `tls://HOST:PORT`, several
/// separated by commas.
fn check_urls(url: &str) -> Result<(), String> {
    for u in url.split(',') {
        let u = u.trim();
        if !(u.starts_with("nats://") || u.starts_with("tls://")) {
            return Err(format!(
                "url: `{u}` is not a NATS server address; give nats://HOST:PORT (or tls://HOST:PORT), several separated by commas"
            ));
        }
        u.parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("url: `{u}`: {e}"))?;
    }
    Ok(())
}

/// Whether `name` can be one token of a NATS subject as pedf names them.
fn subject_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl FleetConfig {
    /// Whether the table can be used: its servers' addresses, the park's name, the state's
    /// period.
    pub fn check(&self) -> Result<(), String> {
        check_urls(&self.url)?;
        self.link().check()?;
        if let Some(p) = &self.park {
            if !subject_token(p) {
                return Err(format!(
                    "park = `{p}`: give letters, digits, `-` and `_` (one token of a NATS subject, at most 64)"
                ));
            }
        }
        if let Some(d) = &self.dashboard {
            if !(d.starts_with("http://") || d.starts_with("https://")) {
                return Err(format!(
                    "dashboard = `{d}`: give the park dashboard's address, http://... or https://..."
                ));
            }
        }
        if !(1..=3600).contains(&self.state_every_s) {
            return Err(format!(
                "state_every_s = {}: give 1 to 3600 seconds",
                self.state_every_s
            ));
        }
        Ok(())
    }

    /// How the park reaches the hub.
    pub fn link(&self) -> Link {
        Link {
            url: self.url.clone(),
            credentials: self.credentials.clone(),
            nkey_seed: self.nkey_seed.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }

    /// Its files made relative to `dir` (the run file's folder).
    pub fn resolve(&mut self, dir: &Path) {
        for p in [
            &mut self.credentials,
            &mut self.nkey_seed,
            &mut self.tls_ca,
            &mut self.tls_cert,
            &mut self.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The park's name in subjects: the table's, or the park id made a subject token.
    pub fn name_of(&self, park_id: &str) -> String {
        self.park.clone().unwrap_or_else(|| {
            park_id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    }
}

/// The park's live state as the fleet gets it (`pedf.<park>.state`): what the fleet view shows
/// of a park, a small part of its own live state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// The park's id (its park file's).
    pub park_id: String,
    /// Its name, and in Chinese where the park file gives one.
    pub name: String,
    /// Its name in Chinese.
    #[serde(default)]
    pub name_zh: Option<String>,
    /// The EMS's time of the state.
    pub at: Option<DateTime<Utc>>,
    /// The park's IANA time zone (its times are shown in it).
    #[serde(default)]
    pub time_zone: String,
    /// `automatic`, `manual` or `safe` (none: not known yet).
    #[serde(default)]
    pub mode: Option<String>,
    /// What the controller follows.
    #[serde(default)]
    pub strategy: String,
    /// PV, kW.
    pub pv_kw: Option<f64>,
    /// The batteries, +discharge/-charge, kW.
    pub battery_kw: Option<f64>,
    /// Their state of charge, %.
    pub soc_pct: Option<f64>,
    /// Their usable capacity, kWh.
    #[serde(default)]
    pub battery_capacity_kwh: f64,
    /// The loads, kW.
    pub load_kw: Option<f64>,
    /// The chargers, kW.
    pub ev_kw: Option<f64>,
    /// The grid connection, +import/-export, kW.
    pub grid_kw: Option<f64>,
    /// The local day so far: PV, import, export, kWh, and the location-based CO2 of the
    /// import and the CO2 the PV avoided, kg.
    #[serde(default)]
    pub today_pv_kwh: f64,
    /// Import today, kWh.
    #[serde(default)]
    pub today_import_kwh: f64,
    /// Export today, kWh.
    #[serde(default)]
    pub today_export_kwh: f64,
    /// CO2 of the import today (location-based), kg.
    #[serde(default)]
    pub today_co2_kg: f64,
    /// CO2 avoided today, kg.
    #[serde(default)]
    pub today_avoided_kg: f64,
    /// Alarms raised now.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// Faults of the EMS itself now.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Devices not answering now, of all.
    #[serde(default)]
    pub devices_down: usize,
    /// Devices.
    #[serde(default)]
    pub devices: usize,
    /// The park's own dashboard.
    #[serde(default)]
    pub dashboard: Option<String>,
    /// When the publisher sent it, on the park machine's wall clock (the hub measures the
    /// delay to its view with it, both clocks kept by NTP).
    #[serde(default)]
    pub sent: Option<DateTime<Utc>>,
}

impl FleetState {
    /// The fleet's part of a live state.
    pub fn of(l: &Live, dashboard: Option<&str>) -> FleetState {
        FleetState {
            park_id: l.park_id.clone(),
            name: l.park_name.clone(),
            name_zh: l.park_name_zh.clone(),
            at: l.at,
            time_zone: l.time_zone.clone(),
            mode: l.mode.as_ref().map(|m| m.mode.clone()),
            strategy: l.strategy.clone(),
            pv_kw: l.flows.pv_kw,
            battery_kw: l.flows.battery_kw,
            soc_pct: l.flows.soc_pct,
            battery_capacity_kwh: l.battery_capacity_kwh,
            load_kw: l.flows.load_kw,
            ev_kw: l.flows.ev_kw,
            grid_kw: l.flows.grid_kw,
            today_pv_kwh: l.today.pv_kwh,
            today_import_kwh: l.today.grid_import_kwh,
            today_export_kwh: l.today.grid_export_kwh,
            today_co2_kg: l.today.location_kg,
            today_avoided_kg: l.today.avoided_kg,
            alarms: l.alarms.clone(),
            faults: l.faults.clone(),
            devices_down: l.devices.iter().filter(|d| d.quality != "good").count(),
            devices: l.devices.len(),
            dashboard: dashboard.map(str::to_string),
            sent: None,
        }
    }
}

/// The entry of a park's NATS user in a NATS server's `authorization { users: [...] }`: its
/// public nkey, allowed to publish under its own name only (`pedf.<park>.>`) and to receive
/// only its own requests (`pedf.<park>.requests`) and the replies to its own inbox
/// (`_INBOX.<park>.>`, the inbox prefix its publisher uses).
pub fn park_user_entry(park: &str, public_key: &str) -> String {
    format!(
        "{{ nkey: {public_key}, permissions: {{ publish: {{ allow: [\"pedf.{park}.>\"] }}, subscribe: {{ allow: [\"_INBOX.{park}.>\", \"pedf.{park}.requests\"] }} }} }}"
    )
}

/// A new NATS user for the park `park`: (its seed, for the park's `nkey_seed` file; the
/// server's entry for it, [`park_user_entry`]).
pub fn new_park_user(park: &str) -> Result<(String, String), String> {
    if !subject_token(park) {
        return Err(format!(
            "park `{park}`: give letters, digits, `-` and `_` (one token of a NATS subject, at most 64)"
        ));
    }
    let k = nkeys::KeyPair::new_user();
    let seed = k.seed().map_err(|e| e.to_string())?;
    Ok((seed, park_user_entry(park, &k.public_key())))
}

/// How far the hub has acknowledged the park's backlog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The start of the last interval record acknowledged.
    pub records: Option<DateTime<Utc>>,
    /// The id of the last event acknowledged (0: none).
    pub events: i64,
    /// The last plan activation acknowledged (0: none).
    #[serde(default)]
    pub plans: i64,
    /// The end of the last grid requests' window whose deliveries are all acknowledged.
    #[serde(default)]
    pub deliveries: Option<DateTime<Utc>>,
}

/// Where the cursor of the publisher of `store` is kept.
pub fn cursor_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".fleet-cursor.json");
    PathBuf::from(name)
}

/// The cursor kept beside `store` (none kept: from the start; an unreadable one is said and
/// taken as none: the stream's deduplication drops what is sent again).
fn load_cursor(store: &Path) -> Cursor {
    let p = cursor_path(store);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
            tracing::warn!(target: "pedf::fleet", "{}: {e}: sending the store's backlog from its start", p.display());
            Cursor::default()
        }),
        Err(_) => Cursor::default(),
    }
}

/// Writes the cursor atomically (a temporary file renamed over it).
fn save_cursor(store: &Path, c: &Cursor) -> std::io::Result<()> {
    let p = cursor_path(store);
    let mut tmp = p.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, serde_json::to_vec(c).unwrap_or_default())?;
    std::fs::rename(&tmp, &p)
}

/// One message of the backlog: its subject, id and body.
struct Outgoing {
    subject: String,
    id: String,
    body: Vec<u8>,
    /// What sending it advances the cursor to.
    advance: Advance,
}

enum Advance {
    Record(DateTime<Utc>),
    Event(i64),
    Plan(i64),
    /// A delivery: the end of its window once every delivery of that end is sent (none
    /// before).
    Delivery(Option<DateTime<Utc>>),
}

/// At most this many of each kind are read from the store per round.
const BATCH: usize = 500;

/// The publisher's own connection to the store, opened at its first round and kept (opened
/// again after an error).
type Db = Arc<std::sync::Mutex<Option<pedf_store::Store>>>;

/// The backlog after `cursor`, read from the store at `path` through `db`.
fn backlog(
    db: &Db,
    path: &Path,
    name: &str,
    edge: &Edge,
    cursor: &Cursor,
) -> Result<Vec<Outgoing>, String> {
    let mut held = db.lock().unwrap_or_else(|e| e.into_inner());
    if held.is_none() {
        *held = Some(pedf_store::Store::open(path).map_err(|e| e.to_string())?);
    }
    let read = read_backlog(held.as_ref().expect("opened above"), name, edge, cursor);
    if read.is_err() {
        *held = None;
    }
    read
}

/// [`backlog`] from an open store.
fn read_backlog(
    store: &pedf_store::Store,
    name: &str,
    edge: &Edge,
    cursor: &Cursor,
) -> Result<Vec<Outgoing>, String> {
    let clock = edge.clock;
    let mut out = Vec::new();
    for r in store
        .closed_records_after(cursor.records, BATCH)
        .map_err(|e| e.to_string())?
    {
        let x = &r.record;
        let body = serde_json::json!({
            "park": name,
            "start": clock.format(x.start),
            "pv_kwh": x.pv_kwh,
            "grid_import_kwh": x.grid_import_kwh,
            "grid_export_kwh": x.grid_export_kwh,
            "battery_charge_kwh": x.battery_charge_kwh,
            "battery_discharge_kwh": x.battery_discharge_kwh,
            "load_kwh": x.load_kwh,
            "ev_kwh": x.ev_kwh,
            "ev_chargers": x.ev_chargers,
            "source": r.source,
            "observed_share": r.observed,
        });
        out.push(Outgoing {
            subject: format!("pedf.{name}.records"),
            id: format!("{name}/records/{}", x.start.timestamp_millis()),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            advance: Advance::Record(x.start),
        });
    }
    for e in store
        .events_after(cursor.events, BATCH)
        .map_err(|e| e.to_string())?
    {
        let body = serde_json::json!({
            "park": name,
            "id": e.id,
            "at": clock.format(e.at),
            "severity": e.severity,
            "kind": e.kind,
            "message": e.message,
        });
        out.push(Outgoing {
            subject: format!("pedf.{name}.events"),
            id: format!("{name}/events/{}", e.id),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            advance: Advance::Event(e.id),
        });
    }
    for (seq, p, json) in store
        .activations_after(cursor.plans, BATCH)
        .map_err(|e| e.to_string())?
    {
        // The plan as the park's API serves it; one stored unreadable is sent as its text.
        // What the park can change against the plan, interval by interval (none where the
        // plan is not one of pedf's, or the park's limits are not known).
        let flexibility = edge.flex.as_ref().and_then(|f| {
            serde_json::from_str::<pedf_core::plan::Plan>(&json)
                .ok()
                .map(|plan| f.plan(&plan))
        });
        let plan = serde_json::from_str::<serde_json::Value>(&json)
            .unwrap_or(serde_json::Value::String(json));
        let body = serde_json::json!({
            "park": name,
            "activation": seq,
            "id": p.id,
            "day": p.day,
            "strategy": p.strategy,
            "created": clock.format(p.created),
            "plan": plan,
            "flexibility": flexibility,
        });
        out.push(Outgoing {
            subject: format!("pedf.{name}.plans"),
            id: format!("{name}/plans/{seq}"),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            advance: Advance::Plan(seq),
        });
    }
    out.extend(deliveries(store, name, edge, cursor)?);
    Ok(out)
}

/// The deliveries of the grid requests the park took whose windows ended after the cursor's,
/// each once the park has recorded its window to the end (a closed record of its last
/// interval or a later one), in the order the windows end: what the park delivered, measured
/// as its EMS measures it (against the request's baseline, or the plan active when it was
/// taken where there is none).
fn deliveries(
    store: &pedf_store::Store,
    name: &str,
    edge: &Edge,
    cursor: &Cursor,
) -> Result<Vec<Outgoing>, String> {
    let clock = edge.clock;
    let from = cursor.deliveries.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let until = DateTime::<Utc>::from_timestamp(1 << 36, 0).unwrap_or(from);
    let mut taken = store
        .grid_requests(from, until)
        .map_err(|e| e.to_string())?;
    taken.sort_by(|a, b| (a.request.end, &a.request.id).cmp(&(b.request.end, &b.request.id)));
    let step = chrono::Duration::minutes(i64::from(clock.interval.minutes()));
    let mut ready = Vec::new();
    for t in taken.into_iter().take(BATCH) {
        let last = t.request.end - step - chrono::Duration::milliseconds(1);
        if store
            .closed_records_after(Some(last), 1)
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            break;
        }
        ready.push(t);
    }
    let mut out = Vec::new();
    for (k, t) in ready.iter().enumerate() {
        let r = &t.request;
        let mut body = serde_json::json!({
            "park": name,
            "request": r.id,
            "source": r.source,
            "kind": r.kind.name(),
            "kw": r.kind.kw(),
            "held_kw": t.held_kw,
            "start": clock.format(r.start),
            "end": clock.format(r.end),
        });
        match store.grid_request_delivery(t, &clock, &edge.baseline, None) {
            Ok(m) => {
                let d = &m.delivery;
                body["requested_kwh"] = d.requested_kwh.into();
                body["delivered_kwh"] = d.delivered_kwh.into();
                body["share"] = d.share.into();
                body["settlement_cny"] = serde_json::json!(d.settlement_cny);
                body["against"] = m.against.said().into();
                body["intervals"] = d
                    .intervals
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "start": clock.format(i.start),
                            "requested_kw": i.requested_kw,
                            "delivered_kw": i.delivered_kw,
                            "baseline_kw": i.baseline_kw,
                            "measured_kw": i.measured_kw,
                        })
                    })
                    .collect();
            }
            Err(why) => body["not_measured"] = why.into(),
        }
        let last_of_its_end = ready.get(k + 1).is_none_or(|n| n.request.end != r.end);
        out.push(Outgoing {
            subject: format!("pedf.{name}.deliveries"),
            id: format!("{name}/deliveries/{}", r.id),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            advance: Advance::Delivery(last_of_its_end.then_some(r.end)),
        });
    }
    Ok(out)
}

/// How a park or the hub reaches NATS: the servers, who it is, and TLS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    /// The servers, separated by commas.
    pub url: String,
    /// A `.creds` file (user JWT and seed).
    pub credentials: Option<PathBuf>,
    /// A file holding a user nkey seed.
    pub nkey_seed: Option<PathBuf>,
    /// The certificates the server's is checked against (TLS only then).
    pub tls_ca: Option<PathBuf>,
    /// A client certificate.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
}

impl Link {
    /// Whether the link's settings go together.
    pub fn check(&self) -> Result<(), String> {
        if self.credentials.is_some() && self.nkey_seed.is_some() {
            return Err(
                "credentials and nkey_seed: give one (a .creds file for a server in operator mode, or an nkey seed file)".into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key: give both or neither".into());
        }
        Ok(())
    }
}

/// Connects to the NATS servers of `link` as `name`; its inboxes under `inbox` (a park's
/// own, so the server's permissions can keep every other park's replies from it).
async fn connect(link: &Link, name: &str, inbox: &str) -> Result<async_nats::Client, String> {
    let mut o = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(inbox)
        .connection_timeout(Duration::from_secs(3));
    if let Some(c) = &link.credentials {
        o = o
            .credentials_file(c)
            .await
            .map_err(|e| format!("credentials {}: {e}", c.display()))?;
    }
    if let Some(f) = &link.nkey_seed {
        let seed = std::fs::read_to_string(f)
            .map_err(|e| format!("nkey_seed {}: cannot read: {e}", f.display()))?;
        let seed = seed.trim().to_string();
        if !seed.starts_with("SU") {
            return Err(format!(
                "nkey_seed {}: not a user nkey seed (it starts with SU)",
                f.display()
            ));
        }
        o = o.nkey(seed);
    }
    if let Some(ca) = &link.tls_ca {
        o = o.require_tls(true).add_root_certificates(ca.clone());
    }
    if let (Some(c), Some(k)) = (&link.tls_cert, &link.tls_key) {
        o = o.add_client_certificate(c.clone(), k.clone());
    }
    let servers: Vec<async_nats::ServerAddr> = link
        .url
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    o.connect(servers.as_slice())
        .await
        .map_err(|e| format!("{}: {e}", link.url))
}

/// The next grid request from the hub, when subscribed.
async fn next_request(inbox: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    match inbox {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Sends the backlog after `cursor` in order, advancing it with each acknowledgement; stops
/// at the first message the hub does not acknowledge (sent again next round). Returns how
/// many were acknowledged.
async fn send_backlog(
    js: &async_nats::jetstream::Context,
    db: &Db,
    path: &Path,
    name: &str,
    edge: &Edge,
    cursor: &mut Cursor,
) -> Result<usize, String> {
    let (d, p, n, c, e) = (
        db.clone(),
        path.to_path_buf(),
        name.to_string(),
        cursor.clone(),
        edge.clone(),
    );
    let list = tokio::task::spawn_blocking(move || backlog(&d, &p, &n, &e, &c))
        .await
        .map_err(|e| e.to_string())??;
    let mut sent = 0;
    for m in list {
        let publish = async_nats::jetstream::context::Publish::build()
            .message_id(&m.id)
            .payload(m.body.into());
        let ack = js
            .send_publish(m.subject.clone(), publish)
            .await
            .map_err(|e| format!("{}: {e}", m.subject))?;
        ack.await
            .map_err(|e| format!("{} ({}): {e}", m.subject, m.id))?;
        match m.advance {
            Advance::Record(t) => cursor.records = Some(t),
            Advance::Event(id) => cursor.events = id,
            Advance::Plan(seq) => cursor.plans = seq,
            Advance::Delivery(Some(end)) => cursor.deliveries = Some(end),
            Advance::Delivery(None) => {}
        }
        sent += 1;
    }
    Ok(sent)
}

/// Starts the publisher of the park `park_id` whose EMS keeps its store at `store`: it runs
/// until `stop` turns true, reading the live state from `live`.
pub fn start(
    cfg: FleetConfig,
    park: &pedf_core::Park,
    store: PathBuf,
    live: watch::Receiver<Arc<Live>>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    start_named(
        cfg.clone(),
        cfg.name_of(&park.id),
        Edge::of(park),
        store,
        live,
        stop,
    )
}

/// What a publisher knows of its park besides its store.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The park's clock (its records' times are sent in its offset).
    pub clock: pedf_core::time::ParkClock,
    /// The park's limits its plans' flexibility is computed with (none: not sent).
    pub flex: Option<Arc<pedf_core::flexibility::FlexLimits>>,
    /// Where the fleet's grid requests go: the EMS's channel of grid requests, as its API's
    /// (none: the park refuses them, saying so).
    pub requests: Option<pedf_server::GridRequests>,
    /// How the park's EMS makes its requests' baselines (their deliveries are measured
    /// against them).
    pub baseline: pedf_core::grid_request::BaselineRule,
}

impl Edge {
    /// A park's edge: its clock and limits; no grid requests taken, the default baseline.
    pub fn of(park: &pedf_core::Park) -> Edge {
        Edge {
            clock: park.clock,
            flex: Some(Arc::new(pedf_core::flexibility::FlexLimits::of(park))),
            requests: None,
            baseline: Default::default(),
        }
    }
}

/// [`start`] for a park named `name` in subjects, as `edge` says it is.
pub fn start_named(
    cfg: FleetConfig,
    name: String,
    edge: Edge,
    store: PathBuf,
    mut live: watch::Receiver<Arc<Live>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut cursor = load_cursor(&store);
        let db: Db = Arc::default();
        let mut client: Option<async_nats::Client> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = Duration::from_secs(cfg.state_every_s);
        let mut last_state: Option<Instant> = None;
        // What was last said of the link (said again only when it changes).
        let mut said = "starting".to_string();
        // The park's grid requests from the hub (subscribed on each new connection).
        let mut inbox: Option<async_nats::Subscriber> = None;
        let mut say = |what: String| {
            if what != said {
                if what.is_empty() {
                    tracing::info!(target: "pedf::fleet", "fleet hub {}: connected as {name}", cfg.url);
                } else {
                    tracing::warn!(target: "pedf::fleet", "fleet hub {}: {what} (the backlog waits in the store)", cfg.url);
                }
                said = what;
            }
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
                Some(m) = next_request(&mut inbox) => {
                    // Answered in a task of its own (the EMS's verdict may wait for a
                    // re-plan); the publishing goes on meanwhile.
                    if let (Some(c), Some(to)) = (client.clone(), m.reply.clone()) {
                        let edge = edge.clone();
                        tokio::spawn(async move {
                            let a = requests::answer(&m.payload, &edge.clock, edge.requests.as_ref()).await;
                            tracing::info!(target: "pedf::fleet", "fleet grid request {}: {} ({} kW held): {}", a.id, a.status, a.held_kw, a.note);
                            if let Ok(body) = serde_json::to_vec(&a) {
                                let _ = c.publish(to, body.into()).await;
                            }
                        });
                    }
                    continue;
                }
            }
            if *stop.borrow() {
                break;
            }
            if client.is_none() {
                match connect(
                    &cfg.link(),
                    &format!("pedf park {name}"),
                    &format!("_INBOX.{name}"),
                )
                .await
                {
                    Ok(c) => {
                        inbox = c.subscribe(format!("pedf.{name}.requests")).await.ok();
                        client = Some(c);
                    }
                    Err(e) => {
                        say(format!("not reachable: {e}"));
                        continue;
                    }
                }
            }
            let Some(c) = &client else { continue };
            if c.connection_state() != async_nats::connection::State::Connected {
                say("link lost, reconnecting".into());
                continue;
            }
            // Within half a round of its period (the rounds are a second apart: a state due
            // every second would otherwise go every other round).
            if last_state.is_none_or(|t| t.elapsed() + Duration::from_millis(500) >= every) {
                let mut state = FleetState::of(&live.borrow_and_update(), cfg.dashboard.as_deref());
                state.sent = Some(Utc::now());
                if let Ok(body) = serde_json::to_vec(&state) {
                    if c.publish(format!("pedf.{name}.state"), body.into())
                        .await
                        .is_ok()
                    {
                        last_state = Some(Instant::now());
                    }
                }
            }
            let js = async_nats::jetstream::new(c.clone());
            let before = cursor.clone();
            let outcome = send_backlog(&js, &db, &store, &name, &edge, &mut cursor).await;
            if cursor != before {
                if let Err(e) = save_cursor(&store, &cursor) {
                    tracing::warn!(target: "pedf::fleet", "{}: {e}", cursor_path(&store).display());
                }
            }
            match outcome {
                Ok(_) => say(String::new()),
                Err(e) => say(format!("not acknowledged: {e}")),
            }
        }
        // The run has stopped and its last records and events are stored: one more round,
        // for a few seconds at most (what is left waits for the next start).
        if let Some(c) =
            client.filter(|c| c.connection_state() == async_nats::connection::State::Connected)
        {
            let js = async_nats::jetstream::new(c.clone());
            let before = cursor.clone();
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                send_backlog(&js, &db, &store, &name, &edge, &mut cursor),
            )
            .await;
            if cursor != before {
                let _ = save_cursor(&store, &cursor);
            }
            let _ = c.flush().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pedf_core::grid_request::{GridRequest, RequestKind};

    /// A grid request's delivery goes out once the park has recorded its window to the end,
    /// measured as the EMS measures it, each once after the cursor.
    #[test]
    fn a_requests_delivery_is_sent_once_its_window_is_recorded() {
        let path =
            std::env::temp_dir().join(format!("pedf-fleet-delivery-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut st = pedf_store::Store::open(&path).unwrap();
        let clock = pedf_core::time::ParkClock::new(
            chrono_tz::Asia::Shanghai,
            pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
        );
        // Monday 22 June 2026.
        let on = |day: u32, hm: &str| {
            pedf_core::time::parse_rfc3339(&format!("2026-06-{day}T{hm}:00+08:00")).unwrap()
        };
        let at = |hm: &str| on(22, hm);
        st.put_grid_request(&pedf_store::TakenGridRequest {
            request: GridRequest {
                id: "F-1".into(),
                start: at("18:00"),
                end: at("18:30"),
                kind: RequestKind::ReduceImport(40.0),
                price_cny_per_kwh: Some(1.5),
                source: "fleet hub".into(),
            },
            taken: at("10:00"),
            held_kw: 40.0,
            note: "held".into(),
            reference_plan: None,
        })
        .unwrap();
        let record = |day: u32, hm: &str, import_kw: f64| pedf_core::records::IntervalRecord {
            start: on(day, hm),
            pv_kwh: 0.0,
            grid_import_kwh: import_kw * 0.25,
            grid_export_kwh: 0.0,
            battery_charge_kwh: 0.0,
            battery_discharge_kwh: 0.0,
            load_kwh: import_kw * 0.25,
            ev_kwh: 0.0,
            ev_chargers: Default::default(),
            batteries: Default::default(),
        };
        let edge = Edge {
            clock,
            flex: None,
            requests: None,
            baseline: Default::default(),
        };
        let sent = |st: &pedf_store::Store, c: &Cursor| {
            deliveries(st, "park-a", &edge, c)
                .unwrap()
                .into_iter()
                .map(|o| {
                    (
                        o.subject,
                        o.id,
                        serde_json::from_slice::<serde_json::Value>(&o.body).unwrap(),
                        o.advance,
                    )
                })
                .collect::<Vec<_>>()
        };
        // The baseline: the last five working days imported 200 kW through the window.
        for day in 15..=19 {
            st.put_records(
                &[record(day, "18:00", 200.0), record(day, "18:15", 200.0)],
                "measured",
            )
            .unwrap();
        }
        // Its first interval only: not yet.
        st.put_records(&[record(22, "18:00", 170.0)], "measured")
            .unwrap();
        assert!(sent(&st, &Cursor::default()).is_empty());
        // Its last one recorded: 30 kW off the baseline, then 40 (of 40).
        st.put_records(&[record(22, "18:15", 150.0)], "measured")
            .unwrap();
        let out = sent(&st, &Cursor::default());
        assert_eq!(out.len(), 1);
        let (subject, id, body, advance) = &out[0];
        assert_eq!(
            (subject.as_str(), id.as_str()),
            ("pedf.park-a.deliveries", "park-a/deliveries/F-1")
        );
        assert_eq!(body["requested_kwh"], 20.0, "{body}");
        assert_eq!(body["delivered_kwh"], 17.5, "{body}");
        assert_eq!(body["end"], "2026-06-22T18:30:00+08:00");
        assert!(
            body["against"].as_str().unwrap().contains("2026-06-19"),
            "{body}"
        );
        assert_eq!(body["settlement_cny"], 17.5 * 1.5, "{body}");
        assert!(matches!(advance, Advance::Delivery(Some(t)) if *t == at("18:30")));
        // Sent and acknowledged: not again.
        let c = Cursor {
            deliveries: Some(at("18:30")),
            ..Default::default()
        };
        assert!(sent(&st, &c).is_empty());
        drop(st);
        let _ = std::fs::remove_file(&path);
    }
}
