//! The fleet hub's own store (`pedf fleet serve`, issue 24): one SQLite file in WAL mode with
//! what the parks sent into the fleet's JetStream stream and the parks' last live state.
//!
//! Tables: `parks` (each park the hub has heard of, its last live state and when it came),
//! `records` (each park's closed interval records), `events` (each park's events and alarms),
//! `plans` (each plan a park made active, in the park's order). A message the stream delivers
//! again (at least once from the stream) lands on its row's key, `(park, start)`,
//! `(park, id)`, `(park, activation)`: the row takes the later copy and counts the delivery
//! (`deliveries`), so the store holds each once, however often it was delivered.
//! `delivered` holds what each park measured it delivered of a grid request, on
//! `(park, request)` likewise. The hub's own: `requests` (the grid requests given to the
//! fleet) with `request_parts` (each park's part, offer and answer), and `tokens` (the API's
//! tokens: the hash, never the token, with a label, a role and when revoked).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::{err, from_ms, ms, StoreError};

/// The fleet store's schema version (kept in `PRAGMA user_version`; a park's store has its
/// own, so neither is taken for the other).
const FLEET_SCHEMA_VERSION: i64 = 1003;

const FLEET_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS parks (
    park TEXT PRIMARY KEY, first_ms INTEGER NOT NULL, state_ms INTEGER, state TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    park TEXT NOT NULL, start_ms INTEGER NOT NULL, pv_kwh REAL NOT NULL, grid_import_kwh REAL NOT NULL,
    grid_export_kwh REAL NOT NULL, battery_charge_kwh REAL NOT NULL, battery_discharge_kwh REAL NOT NULL,
    load_kwh REAL NOT NULL, ev_kwh REAL NOT NULL, source TEXT NOT NULL, body TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (park, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    park TEXT NOT NULL, id INTEGER NOT NULL, at_ms INTEGER NOT NULL, severity TEXT NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (park, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plans (
    park TEXT NOT NULL, activation INTEGER NOT NULL, plan INTEGER NOT NULL, day TEXT NOT NULL,
    strategy TEXT NOT NULL, body TEXT NOT NULL, flexibility TEXT, deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (park, activation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS plans_by_day ON plans (day, park, activation);
CREATE TABLE IF NOT EXISTS delivered (
    park TEXT NOT NULL, request TEXT NOT NULL, end_ms INTEGER NOT NULL, requested_kwh REAL,
    delivered_kwh REAL, body TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (park, request)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, given_ms INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    kind TEXT NOT NULL, kw REAL NOT NULL, price REAL, by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS request_parts (
    request TEXT NOT NULL, park TEXT NOT NULL, offered_kw REAL NOT NULL, asked_kw REAL NOT NULL,
    status TEXT NOT NULL, held_kw REAL NOT NULL, note TEXT NOT NULL, PRIMARY KEY (request, park)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, label TEXT NOT NULL, role TEXT NOT NULL,
    created_ms INTEGER NOT NULL, revoked_ms INTEGER
);
";

/// The schema version before the fleet's grid requests (its tables are all kept).
const FLEET_SCHEMA_1001: i64 = 1001;

/// The schema version whose tokens had no role (each was the admin's) and no id.
const FLEET_SCHEMA_1002: i64 = 1002;

/// One of the API's tokens (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct HubToken {
    /// Its number (to revoke it by).
    pub id: i64,
    /// Whose it is, as given.
    pub label: String,
    /// What it may do: viewer, operator or admin.
    pub role: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked: Option<DateTime<Utc>>,
}

/// A park's closed interval record as the hub took it from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRecord {
    /// The park's name in subjects.
    pub park: String,
    /// The interval's start.
    pub start: DateTime<Utc>,
    /// Its energies, kWh: PV, grid import, grid export, battery charge, battery discharge,
    /// load, EV.
    pub kwh: [f64; 7],
    /// How the park made it (`measured`, `measured-partial`, ...).
    pub source: String,
    /// The message as sent (JSON).
    pub body: String,
}

/// A park's event as the hub took it from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvent {
    /// The park's name in subjects.
    pub park: String,
    /// The event's id in the park's store.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `info`, `warning` or `alarm`.
    pub severity: String,
    /// Its kind (`plan`, `device`, ...).
    pub kind: String,
    /// What it says.
    pub message: String,
}

/// A plan a park made active, as the hub took it from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPlan {
    /// The park's name in subjects.
    pub park: String,
    /// The activation's number in the park's order.
    pub activation: i64,
    /// The plan's id in the park's store.
    pub plan: i64,
    /// The day planned, YYYY-MM-DD.
    pub day: String,
    /// How it was made.
    pub strategy: String,
    /// The message as sent (JSON, the plan in it).
    pub body: String,
    /// What the park can change against the plan, interval by interval (JSON array of
    /// `{start, down_kw, up_kw}`), when it said.
    pub flexibility: Option<String>,
}

/// What a park measured it delivered of a grid request, as the hub took it from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDelivery {
    /// The park's name in subjects.
    pub park: String,
    /// The request's id (a fleet request's parts have the fleet request's).
    pub request: String,
    /// Its window's end.
    pub end: DateTime<Utc>,
    /// Energy asked over the window's recorded intervals, kWh (none: not measured).
    pub requested_kwh: Option<f64>,
    /// Energy delivered, kWh (none: not measured).
    pub delivered_kwh: Option<f64>,
    /// The message as sent (JSON).
    pub body: String,
}

/// One message of the fleet's stream, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetMessage {
    /// A closed interval record.
    Record(FleetRecord),
    /// An event.
    Event(FleetEvent),
    /// An activated plan.
    Plan(FleetPlan),
    /// A grid request's delivery.
    Delivery(FleetDelivery),
}

impl FleetMessage {
    /// The park it is of.
    pub fn park(&self) -> &str {
        match self {
            FleetMessage::Record(r) => &r.park,
            FleetMessage::Event(e) => &e.park,
            FleetMessage::Plan(p) => &p.park,
            FleetMessage::Delivery(d) => &d.park,
        }
    }
}

/// A grid request given to the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRequest {
    /// Its id.
    pub id: String,
    /// When it was given.
    pub given: DateTime<Utc>,
    /// The window.
    pub start: DateTime<Utc>,
    /// Its end.
    pub end: DateTime<Utc>,
    /// The kind of grid request (`reduce_import`).
    pub kind: String,
    /// What it asks of the fleet, kW.
    pub kw: f64,
    /// What a delivered kWh is paid, CNY/kWh.
    pub price: Option<f64>,
    /// Who gave it (the API token's label).
    pub by: String,
}

/// A park's part of a fleet request: what it offered, was asked, and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPart {
    /// The park.
    pub park: String,
    /// What its plan offered over the window, kW.
    pub offered_kw: f64,
    /// Its part, kW.
    pub asked_kw: f64,
    /// `accepted`, `part`, `refused` or `no answer`.
    pub status: String,
    /// What it holds, kW.
    pub held_kw: f64,
    /// What it said.
    pub note: String,
}

/// A park as the hub knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPark {
    /// Its name in subjects.
    pub park: String,
    /// When the hub first heard of it.
    pub first: DateTime<Utc>,
    /// When its last live state came, and the state (JSON).
    pub state: Option<(DateTime<Utc>, String)>,
    /// Its records held.
    pub records: i64,
    /// The start of its newest record.
    pub last_record: Option<DateTime<Utc>>,
}

/// What the store holds of one kind of message: rows, and deliveries taken (more than the
/// rows when the stream delivered some again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Rows.
    pub rows: i64,
    /// Deliveries.
    pub deliveries: i64,
}

/// The fleet hub's store.
pub struct FleetStore {
    conn: Connection,
    path: PathBuf,
}

impl FleetStore {
    /// Opens (or makes) the fleet store at `path`; a file that is not one (a park's store, or
    /// no SQLite file) is refused, naming it.
    pub fn open(path: &Path) -> Result<FleetStore, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| err(&p, e))?;
        let s = FleetStore {
            conn,
            path: path.to_path_buf(),
        };
        s.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| s.err(e))?;
        s.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| s.err(e))?;
        let version: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| s.err(e))?;
        match version {
            0 => s
                .conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {FLEET_SCHEMA} PRAGMA user_version = {FLEET_SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(|e| s.err(e))?,
            FLEET_SCHEMA_VERSION => {}
            // The tokens get an id and a role (the one token of 1002 was the admin's).
            FLEET_SCHEMA_1002 => s
                .conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; ALTER TABLE tokens RENAME TO tokens_1002; {FLEET_SCHEMA}
                     INSERT INTO tokens (hash, label, role, created_ms)
                         SELECT hash, label, 'admin', created_ms FROM tokens_1002 ORDER BY created_ms;
                     DROP TABLE tokens_1002; PRAGMA user_version = {FLEET_SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(|e| s.err(e))?,
            // The new tables added; nothing else changes.
            FLEET_SCHEMA_1001 => s
                .conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {FLEET_SCHEMA} PRAGMA user_version = {FLEET_SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(|e| s.err(e))?,
            found => {
                return Err(StoreError::Schema {
                    path: p,
                    found,
                    expected: FLEET_SCHEMA_VERSION,
                })
            }
        }
        Ok(s)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        err(&self.path.display().to_string(), e)
    }

    /// Takes messages of the stream in one transaction (all or none): each lands on its key,
    /// a message delivered again replaces its row and counts a delivery; a park first heard of
    /// is added at `now`.
    pub fn apply(&mut self, now: DateTime<Utc>, msgs: &[FleetMessage]) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        {
            let mut park = tx
                .prepare_cached("INSERT OR IGNORE INTO parks (park, first_ms) VALUES (?1, ?2)")
                .map_err(|e| err(&path, e))?;
            let mut rec = tx
                .prepare_cached(
                    "INSERT INTO records (park, start_ms, pv_kwh, grid_import_kwh, grid_export_kwh, battery_charge_kwh,
                        battery_discharge_kwh, load_kwh, ev_kwh, source, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (park, start_ms) DO UPDATE SET pv_kwh = excluded.pv_kwh,
                        grid_import_kwh = excluded.grid_import_kwh, grid_export_kwh = excluded.grid_export_kwh,
                        battery_charge_kwh = excluded.battery_charge_kwh,
                        battery_discharge_kwh = excluded.battery_discharge_kwh, load_kwh = excluded.load_kwh,
                        ev_kwh = excluded.ev_kwh, source = excluded.source, body = excluded.body,
                        deliveries = deliveries + 1",
                )
                .map_err(|e| err(&path, e))?;
            let mut ev = tx
                .prepare_cached(
                    "INSERT INTO events (park, id, at_ms, severity, kind, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (park, id) DO UPDATE SET at_ms = excluded.at_ms, severity = excluded.severity,
                        kind = excluded.kind, message = excluded.message, deliveries = deliveries + 1",
                )
                .map_err(|e| err(&path, e))?;
            let mut delivered = tx
                .prepare_cached(
                    "INSERT INTO delivered (park, request, end_ms, requested_kwh, delivered_kwh, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (park, request) DO UPDATE SET end_ms = excluded.end_ms,
                        requested_kwh = excluded.requested_kwh, delivered_kwh = excluded.delivered_kwh,
                        body = excluded.body, deliveries = deliveries + 1",
                )
                .map_err(|e| err(&path, e))?;
            let mut plan = tx
                .prepare_cached(
                    "INSERT INTO plans (park, activation, plan, day, strategy, body, flexibility) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (park, activation) DO UPDATE SET plan = excluded.plan, day = excluded.day,
                        strategy = excluded.strategy, body = excluded.body, flexibility = excluded.flexibility,
                        deliveries = deliveries + 1",
                )
                .map_err(|e| err(&path, e))?;
            for m in msgs {
                park.execute(params![m.park(), ms(now)])
                    .map_err(|e| err(&path, e))?;
                match m {
                    FleetMessage::Record(r) => rec.execute(params![
                        r.park,
                        ms(r.start),
                        r.kwh[0],
                        r.kwh[1],
                        r.kwh[2],
                        r.kwh[3],
                        r.kwh[4],
                        r.kwh[5],
                        r.kwh[6],
                        r.source,
                        r.body
                    ]),
                    FleetMessage::Event(e) => ev.execute(params![
                        e.park,
                        e.id,
                        ms(e.at),
                        e.severity,
                        e.kind,
                        e.message
                    ]),
                    FleetMessage::Plan(p) => plan.execute(params![
                        p.park,
                        p.activation,
                        p.plan,
                        p.day,
                        p.strategy,
                        p.body,
                        p.flexibility
                    ]),
                    FleetMessage::Delivery(d) => delivered.execute(params![
                        d.park,
                        d.request,
                        ms(d.end),
                        d.requested_kwh,
                        d.delivered_kwh,
                        d.body
                    ]),
                }
                .map_err(|e| err(&path, e))?;
            }
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// Keeps each park's last live state: (park, when it came, the state's JSON).
    pub fn put_states(
        &mut self,
        states: &[(String, DateTime<Utc>, String)],
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO parks (park, first_ms, state_ms, state) VALUES (?1, ?2, ?2, ?3)
                     ON CONFLICT (park) DO UPDATE SET state_ms = excluded.state_ms, state = excluded.state",
                )
                .map_err(|e| err(&path, e))?;
            for (park, at, json) in states {
                st.execute(params![park, ms(*at), json])
                    .map_err(|e| err(&path, e))?;
            }
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// Every park the hub has heard of, by name.
    pub fn parks(&self) -> Result<Vec<FleetPark>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.park, p.first_ms, p.state_ms, p.state,
                    (SELECT count(*) FROM records r WHERE r.park = p.park),
                    (SELECT max(start_ms) FROM records r WHERE r.park = p.park)
                 FROM parks p ORDER BY p.park",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let at: Option<i64> = r.get(2)?;
                let state: Option<String> = r.get(3)?;
                let last: Option<i64> = r.get(5)?;
                Ok(FleetPark {
                    park: r.get(0)?,
                    first: from_ms(r.get(1)?),
                    state: at.zip(state).map(|(a, s)| (from_ms(a), s)),
                    records: r.get(4)?,
                    last_record: last.map(from_ms),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// What the store holds of records, events and plans.
    pub fn held(&self) -> Result<[Held; 3], StoreError> {
        let mut out = [Held::default(); 3];
        for (k, table) in ["records", "events", "plans"].iter().enumerate() {
            out[k] = self
                .conn
                .query_row(
                    &format!("SELECT count(*), coalesce(sum(deliveries), 0) FROM {table}"),
                    [],
                    |r| {
                        Ok(Held {
                            rows: r.get(0)?,
                            deliveries: r.get(1)?,
                        })
                    },
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(out)
    }

    /// A park's records in `[from, to)` as sent (JSON), oldest first.
    pub fn records(
        &self,
        park: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT body FROM records WHERE park = ?1 AND start_ms >= ?2 AND start_ms < ?3 ORDER BY start_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![park, ms(from), ms(to)], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// A park's events, newest first, at most `limit`.
    pub fn events(&self, park: &str, limit: usize) -> Result<Vec<FleetEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at_ms, severity, kind, message FROM events WHERE park = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![park, limit as i64], |r| {
                Ok(FleetEvent {
                    park: park.to_string(),
                    id: r.get(0)?,
                    at: from_ms(r.get(1)?),
                    severity: r.get(2)?,
                    kind: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Each park's flexibility for `day` (YYYY-MM-DD) from the plan it made active last for
    /// that day: (park, its JSON), parks whose plan says none left out.
    pub fn flexibility_of_day(&self, day: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.park, p.flexibility FROM plans p
                 WHERE p.day = ?1 AND p.activation = (SELECT max(q.activation) FROM plans q WHERE q.day = ?1 AND q.park = p.park)
                   AND p.flexibility IS NOT NULL ORDER BY p.park",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![day], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Keeps a grid request given to the fleet with its parts (replacing one of its id).
    pub fn put_request(
        &mut self,
        r: &FleetRequest,
        parts: &[RequestPart],
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        tx.execute(
            "INSERT OR REPLACE INTO requests (id, given_ms, start_ms, end_ms, kind, kw, price, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![r.id, ms(r.given), ms(r.start), ms(r.end), r.kind, r.kw, r.price, r.by],
        )
        .map_err(|e| err(&path, e))?;
        tx.execute(
            "DELETE FROM request_parts WHERE request = ?1",
            params![r.id],
        )
        .map_err(|e| err(&path, e))?;
        for p in parts {
            tx.execute(
                "INSERT INTO request_parts (request, park, offered_kw, asked_kw, status, held_kw, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.id, p.park, p.offered_kw, p.asked_kw, p.status, p.held_kw, p.note],
            )
            .map_err(|e| err(&path, e))?;
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// Whether a fleet request of this id was given.
    pub fn has_request(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM requests WHERE id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// The fleet requests whose windows end after `from`, newest first, each with its parts
    /// and, by park, what the park measured it delivered (the delivery's JSON as sent).
    #[allow(clippy::type_complexity)]
    pub fn requests(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Vec<(FleetRequest, Vec<RequestPart>, Vec<(String, String)>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, given_ms, start_ms, end_ms, kind, kw, price, by FROM requests WHERE end_ms > ?1 ORDER BY start_ms DESC, id",
            )
            .map_err(|e| self.err(e))?;
        let list = stmt
            .query_map(params![ms(from)], |r| {
                Ok(FleetRequest {
                    id: r.get(0)?,
                    given: from_ms(r.get(1)?),
                    start: from_ms(r.get(2)?),
                    end: from_ms(r.get(3)?),
                    kind: r.get(4)?,
                    kw: r.get(5)?,
                    price: r.get(6)?,
                    by: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut parts = self
            .conn
            .prepare_cached(
                "SELECT park, offered_kw, asked_kw, status, held_kw, note FROM request_parts WHERE request = ?1 ORDER BY park",
            )
            .map_err(|e| self.err(e))?;
        let mut delivered = self
            .conn
            .prepare_cached("SELECT park, body FROM delivered WHERE request = ?1 ORDER BY park")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in list {
            let p = parts
                .query_map(params![r.id], |x| {
                    Ok(RequestPart {
                        park: x.get(0)?,
                        offered_kw: x.get(1)?,
                        asked_kw: x.get(2)?,
                        status: x.get(3)?,
                        held_kw: x.get(4)?,
                        note: x.get(5)?,
                    })
                })
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            let d = delivered
                .query_map(params![r.id], |x| Ok((x.get(0)?, x.get(1)?)))
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            out.push((r, p, d));
        }
        Ok(out)
    }

    /// Keeps an API token's hash with its label and role; its id.
    pub fn add_token(
        &mut self,
        hash: &str,
        label: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO tokens (hash, label, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![hash, label, role, ms(now)],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The token of this hash, if it is one of the API's and not revoked.
    pub fn token(&self, hash: &str) -> Result<Option<HubToken>, StoreError> {
        Ok(self
            .all_tokens_where("hash = ?1 AND revoked_ms IS NULL", params![hash])?
            .pop())
    }

    /// Every token, revoked or not, in the order made.
    pub fn all_tokens(&self) -> Result<Vec<HubToken>, StoreError> {
        self.all_tokens_where("1", [])
    }

    fn all_tokens_where(
        &self,
        filter: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<HubToken>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, label, role, created_ms, revoked_ms FROM tokens WHERE {filter} ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(p, |r| {
                Ok(HubToken {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    role: r.get(2)?,
                    created: from_ms(r.get(3)?),
                    revoked: r.get::<_, Option<i64>>(4)?.map(from_ms),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Revokes token `id` at `now`: false when there is no such token not revoked already.
    pub fn revoke_token(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, ms(now)],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// How many API tokens there are (revoked ones too).
    pub fn tokens(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The plan a park made active last (its message as sent), if any.
    pub fn last_plan(&self, park: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT body FROM plans WHERE park = ?1 ORDER BY activation DESC LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![park]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => Ok(Some(r.get(0).map_err(|e| self.err(e))?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_message_delivered_again_is_held_once_and_counted() {
        let path =
            std::env::temp_dir().join(format!("pedf-fleet-store-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut st = FleetStore::open(&path).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
        let rec = |park: &str, k: i64, pv: f64| {
            FleetMessage::Record(FleetRecord {
                park: park.into(),
                start: t0 + chrono::Duration::minutes(15 * k),
                kwh: [pv, 1.0, 0.0, 0.0, 0.0, 10.0, 0.0],
                source: "measured".into(),
                body: format!("{{\"pv_kwh\": {pv}}}"),
            })
        };
        st.apply(t0, &[rec("a", 0, 5.0), rec("a", 1, 6.0), rec("b", 0, 7.0)])
            .unwrap();
        st.apply(t0, &[rec("a", 1, 6.5)]).unwrap();
        let held = st.held().unwrap();
        assert_eq!(
            held[0],
            Held {
                rows: 3,
                deliveries: 4
            }
        );
        assert_eq!(
            st.records("a", t0, t0 + chrono::Duration::hours(1))
                .unwrap(),
            ["{\"pv_kwh\": 5}", "{\"pv_kwh\": 6.5}"]
        );
        st.put_states(&[("b".into(), t0, "{}".into()), ("c".into(), t0, "{}".into())])
            .unwrap();
        let parks = st.parks().unwrap();
        assert_eq!(
            parks
                .iter()
                .map(|p| (p.park.as_str(), p.records))
                .collect::<Vec<_>>(),
            [("a", 2), ("b", 1), ("c", 0)]
        );
        assert!(parks[0].state.is_none() && parks[1].state.is_some());
        drop(st);
        // A park's store is not a fleet store.
        let park_store =
            std::env::temp_dir().join(format!("pedf-fleet-park-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&park_store);
        drop(crate::Store::open(&park_store).unwrap());
        let e = FleetStore::open(&park_store).err().expect("refused");
        assert!(e.to_string().contains("schema version"), "{e}");
        for p in [path, park_store] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn a_hub_store_of_1002_keeps_its_token_as_the_admins_and_tokens_are_revoked() {
        let path =
            std::env::temp_dir().join(format!("pedf-fleet-1002-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
        // A store as schema 1002 made it: tokens without an id or a role.
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE tokens (hash TEXT PRIMARY KEY, label TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO tokens VALUES ('abc', 'admin', 1782000000000);
                 PRAGMA user_version = 1002;",
            )
            .unwrap();
        }
        let mut st = FleetStore::open(&path).unwrap();
        let old = st.token("abc").unwrap().unwrap();
        assert_eq!(
            (old.id, old.label.as_str(), old.role.as_str()),
            (1, "admin", "admin")
        );
        let id = st.add_token("def", "wall screen", "viewer", t0).unwrap();
        assert_eq!(id, 2);
        assert_eq!(st.token("def").unwrap().unwrap().role, "viewer");
        assert!(st.revoke_token(id, t0).unwrap());
        assert!(!st.revoke_token(id, t0).unwrap(), "revoked once");
        assert_eq!(st.token("def").unwrap(), None);
        let all = st.all_tokens().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].revoked, Some(t0));
        assert_eq!(st.tokens().unwrap(), 2);
        drop(st);
        // Opened again: the schema is the new one, nothing done twice.
        assert_eq!(FleetStore::open(&path).unwrap().all_tokens().unwrap(), all);
        let _ = std::fs::remove_file(path);
    }
}
