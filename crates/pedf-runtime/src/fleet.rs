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
    let edge = Edge {
        clock: park.clock,
        flex: Some(Arc::new(pedf_core::flexibility::FlexLimits::of(park))),
    };
    start_named(cfg.clone(), cfg.name_of(&park.id), edge, store, live, stop)
}

/// What a publisher knows of its park besides its store.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The park's clock (its records' times are sent in its offset).
    pub clock: pedf_core::time::ParkClock,
    /// The park's limits its plans' flexibility is computed with (none: not sent).
    pub flex: Option<Arc<pedf_core::flexibility::FlexLimits>>,
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
                    Ok(c) => client = Some(c),
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
