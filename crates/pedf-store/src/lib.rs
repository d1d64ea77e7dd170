//! The embedded store: one SQLite file in WAL mode.
//!
//! Tables: `samples` (raw device values with quality, kept for the configured retention),
//! `agg_1min` (min/mean/max per device, field and minute, kept), `interval_records` (the
//! interval energy records the carbon ledger and certificates are computed from), `plans`,
//! `events`, `audit`, `tokens` (API tokens, SHA-256 hashes only). Durability: WAL with `synchronous = NORMAL` keeps every committed
//! transaction through a process crash (kill -9); writers commit a batch at least once a
//! second, so a crash loses at most the last second. Every write transaction begins IMMEDIATE,
//! so another connection's write makes it wait (the 5-s busy timeout) instead of failing: a
//! deferred one that reads first cannot wait for the lock when it comes to write (SQLite
//! answers "database is locked" at once; it failed a test that activated a plan while the EMS
//! wrote). A full disk or any SQLite failure is a
//! `StoreError` naming the file; the caller keeps running.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use pedf_core::records::IntervalRecord;
use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};

/// Makes a folder (and its parents) only its owner may enter (0700 on Unix), as the EMS's
/// data folders should be; an existing folder is left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk is full: nothing of the write was kept.
    #[error("{path}: the disk is full; nothing was written (free space, the EMS keeps running)")]
    DiskFull {
        /// The store file.
        path: String,
    },
    /// Any other SQLite error.
    #[error("{path}: {message}")]
    Sqlite {
        /// The store file.
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// The file is a store of another schema version (or not a store).
    #[error("{path}: the file is not a pedf store (schema version {found}, expected {expected})")]
    Schema {
        /// The store file.
        path: String,
        /// The version the file has.
        found: i64,
        /// The version this build reads.
        expected: i64,
    },
}

pub mod fleet;
mod grid;
pub use grid::{Measured, Reference};

/// One raw value (a pedf-core type: the runtime makes it, the InfluxDB sink sends it too).
pub use pedf_core::live::Sample;

/// An event: time, severity, kind, message.
pub type EventRow = (DateTime<Utc>, String, String, String);

/// A 1-minute aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// The lowest value in the minute.
    pub min: f64,
    /// The mean of the values.
    pub mean: f64,
    /// The highest value.
    pub max: f64,
    /// How many values.
    pub count: i64,
}

const SCHEMA_VERSION: i64 = 12;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    device TEXT NOT NULL, field TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL, quality INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_key ON samples (device, field, ts_ms);
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (ts_ms);
CREATE TABLE IF NOT EXISTS agg_1min (
    device TEXT NOT NULL, field TEXT NOT NULL, minute_ms INTEGER NOT NULL,
    min REAL NOT NULL, mean REAL NOT NULL, max REAL NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (device, field, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interval_records (
    start_ms INTEGER PRIMARY KEY, pv_kwh REAL NOT NULL, grid_import_kwh REAL NOT NULL, grid_export_kwh REAL NOT NULL,
    battery_charge_kwh REAL NOT NULL, battery_discharge_kwh REAL NOT NULL, load_kwh REAL NOT NULL, ev_kwh REAL NOT NULL,
    ev_chargers TEXT NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, day TEXT NOT NULL, strategy TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0, json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, severity TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, device TEXT NOT NULL, by_whom TEXT NOT NULL, reason TEXT NOT NULL,
    requested REAL, written REAL, readback REAL, outcome TEXT NOT NULL
);
";

/// Added in schema version 2.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, label TEXT NOT NULL, role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, revoked INTEGER NOT NULL DEFAULT 0
);
";

/// Added in schema version 3: the grid import the park would have had without the EMS in each
/// closed interval (carbon dual control's counterfactual, run alongside the park), so that a
/// restart keeps the month's figure.
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS without_ems (
    start_ms INTEGER PRIMARY KEY, import_kwh REAL NOT NULL
);
";

/// Added in schema version 4: each battery's charge and discharge of an interval record (JSON
/// `[[id, charge_kwh, discharge_kwh], ...]`, `[]` when only the totals are known), so records
/// split by battery keep their split (each battery's carbon store).
const SCHEMA_V4: &str = "
ALTER TABLE interval_records ADD COLUMN batteries TEXT NOT NULL DEFAULT '[]';
";

/// Added in schema version 5: a token may expire (NULL: never).
const SCHEMA_V5: &str = "
ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
";

/// Added in schema version 7: an alarm's acknowledgement (who, when).
const SCHEMA_V7: &str = "
ALTER TABLE events ADD COLUMN acked_ms INTEGER;
ALTER TABLE events ADD COLUMN acked_by TEXT;
";

/// Added in schema version 8: the limits the grid set at the connection (IEC 104 setpoints),
/// kept across a restart: one row per limit in force, who set it and when.
const SCHEMA_V8: &str = "
CREATE TABLE IF NOT EXISTS grid_limits (
    name TEXT PRIMARY KEY, kw REAL NOT NULL, set_by TEXT NOT NULL, set_ms INTEGER NOT NULL
);
";

/// Added in schema version 9: the grid requests taken (what was asked, who asked, what the EMS
/// holds of it).
const SCHEMA_V9: &str = "
CREATE TABLE IF NOT EXISTS grid_requests (
    id TEXT PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, kind TEXT NOT NULL, kw REAL NOT NULL,
    price REAL, source TEXT NOT NULL, taken_ms INTEGER NOT NULL, held_kw REAL NOT NULL, note TEXT NOT NULL
);
";

/// Added in schema version 10: the plan a grid request's delivery is measured against where
/// it has no baseline (the plan active when it was taken).
const SCHEMA_V10: &str = "
ALTER TABLE grid_requests ADD COLUMN reference_plan INTEGER;
";

/// Added in schema version 11: each interval's import and export at a billing meter, from its
/// energy counters at the interval's boundaries (with how late after each boundary they were
/// read, summed).
const SCHEMA_V11: &str = "
CREATE TABLE IF NOT EXISTS meter_intervals (
    meter TEXT NOT NULL, start_ms INTEGER NOT NULL, import_kwh REAL NOT NULL, export_kwh REAL,
    lag_s REAL NOT NULL, PRIMARY KEY (meter, start_ms)
) WITHOUT ROWID;
";

/// Added in schema version 12: each time a plan is made the active one of its day, in order
/// (what a fleet publisher sends as the park's activated plans).
const SCHEMA_V12: &str = "
CREATE TABLE IF NOT EXISTS plan_activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, plan INTEGER NOT NULL
);
";

/// Added in schema version 6: the share of each record's interval the EMS observed, 0..1
/// (NULL: not said, e.g. records imported from a meter file or written before version 6).
const SCHEMA_V6: &str = "
ALTER TABLE interval_records ADD COLUMN observed REAL;
";

/// A grid request the EMS took, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenGridRequest {
    /// The request.
    pub request: pedf_core::grid_request::GridRequest,
    /// When it was taken.
    pub taken: DateTime<Utc>,
    /// What the EMS holds of it, kW (the request's kW, or less when taken in part).
    pub held_kw: f64,
    /// What the EMS said when it took it.
    pub note: String,
    /// The plan active when it was taken (its delivery is measured against it where there is
    /// no baseline).
    pub reference_plan: Option<i64>,
}

/// An interval's energy at a billing meter, from its counters at the interval's boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterInterval {
    /// The meter (device id).
    pub meter: String,
    /// The interval's start.
    pub start: DateTime<Utc>,
    /// Import (forward active energy), kWh.
    pub import_kwh: f64,
    /// Export (reverse active energy), kWh; `None` where the meter has no reverse counter.
    pub export_kwh: Option<f64>,
    /// How late after its two boundaries the counters were read, s, summed: energy of that
    /// long at either end may belong to the neighbouring interval.
    pub lag_s: f64,
}

/// A limit the grid set at the connection, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GridLimit {
    /// `import_limit_kw` or `export_limit_kw`.
    pub name: String,
    /// kW.
    pub kw: f64,
    /// Who set it (the master's address).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// `info`, `warning` or `alarm`.
    pub severity: String,
    /// Where from.
    pub kind: String,
    /// What happened.
    pub message: String,
    /// An alarm's acknowledgement: when and by whom.
    pub acked: Option<(DateTime<Utc>, String)>,
}

/// An interval record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record.
    pub record: IntervalRecord,
    /// Where it comes from: `measured` (its whole interval observed), `measured-partial`,
    /// `running` (the running interval's checkpoint), `estimated`, `plan`.
    pub source: String,
    /// The share of its interval the EMS observed, 0..1 (`None`: not said).
    pub observed: Option<f64>,
}

/// An API token as stored: never the token itself, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token's row id.
    pub id: i64,
    /// The label given when it was made.
    pub label: String,
    /// Its role: viewer, operator or admin.
    pub role: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it stops being accepted (`None`: never).
    pub expires: Option<DateTime<Utc>>,
}

/// An audit entry: time, device, by whom, reason, requested, written, read back, outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// The entry's id: the API pages through the audit by it (`before`).
    pub id: i64,
    /// When the write was made.
    pub at: DateTime<Utc>,
    /// The device written to.
    pub device: String,
    /// Who asked: the controller, the watchdog, or an operator's token label.
    pub by: String,
    /// Why.
    pub reason: String,
    /// The value asked for.
    pub requested: Option<f64>,
    /// The value written (after the limits).
    pub written: Option<f64>,
    /// The value the device reported back.
    pub readback: Option<f64>,
    /// How it went (ok, refused, failed, with the reason).
    pub outcome: String,
}

/// A stored plan without its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    /// The plan's row id.
    pub id: i64,
    /// When it was stored.
    pub created: DateTime<Utc>,
    /// The day planned, YYYY-MM-DD.
    pub day: String,
    /// How it was made (optimized, rule, ...), as stored.
    pub strategy: String,
    /// Whether the controller follows it.
    pub active: bool,
}

/// A token row of `SELECT id, label, role, created_ms, revoked, expires_ms`.
fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        label: r.get(1)?,
        role: r.get(2)?,
        created: from_ms(r.get(3)?),
        revoked: r.get::<_, i64>(4)? != 0,
        expires: r.get::<_, Option<i64>>(5)?.map(from_ms),
    })
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// An event as a row of `id, ts_ms, severity, kind, message, acked_ms, acked_by` gives it.
fn stored_event_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let acked: Option<i64> = r.get(5)?;
    let by: Option<String> = r.get(6)?;
    Ok(StoredEvent {
        id: r.get(0)?,
        at: from_ms(r.get(1)?),
        severity: r.get(2)?,
        kind: r.get(3)?,
        message: r.get(4)?,
        acked: acked.map(|ms| (from_ms(ms), by.unwrap_or_default())),
    })
}

/// An interval record as a row of `start_ms, pv_kwh, grid_import_kwh, grid_export_kwh,
/// battery_charge_kwh, battery_discharge_kwh, load_kwh, ev_kwh, ev_chargers, source,
/// batteries, observed` gives it.
fn stored_record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let chargers: String = r.get(8)?;
    Ok(StoredRecord {
        record: IntervalRecord {
            start: from_ms(r.get(0)?),
            pv_kwh: r.get(1)?,
            grid_import_kwh: r.get(2)?,
            grid_export_kwh: r.get(3)?,
            battery_charge_kwh: r.get(4)?,
            battery_discharge_kwh: r.get(5)?,
            load_kwh: r.get(6)?,
            ev_kwh: r.get(7)?,
            ev_chargers: serde_json::from_str(&chargers).unwrap_or_default(),
            batteries: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
        },
        source: r.get(9)?,
        observed: r.get(11)?,
    })
}

/// The store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| err(&p, e))?;
        // The store holds the audit, token hashes and the park's data: its owner's alone
        // (SQLite gives the -wal and -shm files the database's mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        // Switching a new file to WAL and migrating take the file to themselves; two processes
        // opening it at that moment (the runtime and a reader) may be told "busy" without
        // SQLite's busy handler waiting (it refuses what could deadlock): such an open waits a
        // little and tries again, for at most the busy timeout. Migrations run in one
        // immediate transaction that reads the version again inside it, so a file is
        // migrated once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let version = loop {
            let attempt = (|| {
                store.conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )?;
                let version: i64 = store
                    .conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if (0..SCHEMA_VERSION).contains(&version) {
                    store.migrate()
                } else {
                    Ok(version)
                }
            })();
            match attempt {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(|e| store.err(e))?,
            }
        };
        match version {
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Schema {
                    path: p,
                    found: other,
                    expected: SCHEMA_VERSION,
                })
            }
        }
        Ok(store)
    }

    /// Brings the file to [`SCHEMA_VERSION`] inside one immediate transaction; returns the
    /// version it then has.
    fn migrate(&self) -> Result<i64, rusqlite::Error> {
        let c = &self.conn;
        c.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version >= SCHEMA_VERSION {
                return Ok(version);
            }
            // 0: new file; 1: the tables of version 1 exist, version 2 adds tokens, 3 the
            // counterfactual without the EMS, 4 the records' split by battery, 5 tokens' expiry, 6 the records'
            // observed share, 7 alarms' acknowledgement, 8 the grid's limits, 9 grid requests,
            // 10 a grid request's reference plan, 11 billing meters' interval energies, 12 the
            // plans' activations.
            // Every table made if missing (each statement is IF NOT EXISTS), then the columns
            // added since.
            c.execute_batch(SCHEMA)?;
            c.execute_batch(SCHEMA_V2)?;
            c.execute_batch(SCHEMA_V3)?;
            let has_batteries: bool = c.query_row(
                "SELECT count(*) FROM pragma_table_info('interval_records') WHERE name = 'batteries'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_batteries {
                c.execute_batch(SCHEMA_V4)?;
            }
            let has_expiry: bool = c.query_row(
                "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'expires_ms'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_expiry {
                c.execute_batch(SCHEMA_V5)?;
            }
            let has_observed: bool = c.query_row(
                "SELECT count(*) FROM pragma_table_info('interval_records') WHERE name = 'observed'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_observed {
                c.execute_batch(SCHEMA_V6)?;
            }
            let has_ack: bool = c.query_row(
                "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'acked_ms'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_ack {
                c.execute_batch(SCHEMA_V7)?;
            }
            c.execute_batch(SCHEMA_V8)?;
            c.execute_batch(SCHEMA_V9)?;
            let has_reference: bool = c.query_row(
                "SELECT count(*) FROM pragma_table_info('grid_requests') WHERE name = 'reference_plan'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_reference {
                c.execute_batch(SCHEMA_V10)?;
            }
            c.execute_batch(SCHEMA_V11)?;
            c.execute_batch(SCHEMA_V12)?;
            c.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            Ok(SCHEMA_VERSION)
        })();
        match result {
            Ok(v) => c.execute_batch("COMMIT").map(|()| v),
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        err(&self.path.display().to_string(), e)
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts a batch of samples in one transaction (commit it at least once a second).
    pub fn insert_samples(&mut self, batch: &[Sample]) -> Result<usize, StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO samples (device, field, ts_ms, value, quality) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(|e| err(&path, e))?;
            for s in batch {
                stmt.execute(params![s.device, s.field, ms(s.at), s.value, s.quality])
                    .map_err(|e| err(&path, e))?;
            }
        }
        tx.commit().map_err(|e| err(&path, e))?;
        Ok(batch.len())
    }

    /// Samples of one device field in `[from, to)`.
    pub fn samples(
        &self,
        device: &str,
        field: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sample>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts_ms, value, quality FROM samples WHERE device = ?1 AND field = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 ORDER BY ts_ms")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![device, field, ms(from), ms(to)], |r| {
                Ok(Sample {
                    device: device.into(),
                    field: field.into(),
                    at: from_ms(r.get(0)?),
                    value: r.get(1)?,
                    quality: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Number of raw samples held.
    pub fn sample_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// (Re)computes the 1-minute aggregates of good samples in `[from, to)`.
    pub fn aggregate_minutes(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO agg_1min (device, field, minute_ms, min, mean, max, n)
                 SELECT device, field, (ts_ms / 60000) * 60000, min(value), avg(value), max(value), count(*)
                 FROM samples WHERE ts_ms >= ?1 AND ts_ms < ?2 AND quality = 0 GROUP BY device, field, ts_ms / 60000",
                params![ms(from), ms(to)],
            )
            .map_err(|e| self.err(e))
    }

    /// The 1-minute aggregates of a device field in `[from, to)`.
    pub fn aggregates(
        &self,
        device: &str,
        field: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Aggregate>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT minute_ms, min, mean, max, n FROM agg_1min WHERE device = ?1 AND field = ?2 AND minute_ms >= ?3 AND minute_ms < ?4 ORDER BY minute_ms")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![device, field, ms(from), ms(to)], |r| {
                Ok(Aggregate {
                    minute: from_ms(r.get(0)?),
                    min: r.get(1)?,
                    mean: r.get(2)?,
                    max: r.get(3)?,
                    count: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Deletes raw samples older than `before` (aggregates and records are kept).
    pub fn prune_samples(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM samples WHERE ts_ms < ?1", params![ms(before)])
            .map_err(|e| self.err(e))
    }

    /// Deletes events, audit entries and 1-minute aggregates older than `before` (one
    /// transaction); interval records, plans and tokens are kept. Returns the rows deleted.
    pub fn prune_log(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        let mut n = 0;
        for sql in [
            "DELETE FROM events WHERE ts_ms < ?1",
            "DELETE FROM audit WHERE ts_ms < ?1",
            "DELETE FROM agg_1min WHERE minute_ms < ?1",
        ] {
            n += tx
                .execute(sql, params![ms(before)])
                .map_err(|e| err(&path, e))?;
        }
        tx.commit().map_err(|e| err(&path, e))?;
        Ok(n)
    }

    /// The starts of the records labelled `source`, in order (e.g. the `running` checkpoints
    /// a run that did not stop cleanly left).
    pub fn record_starts_labelled(&self, source: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start_ms FROM interval_records WHERE source = ?1 ORDER BY start_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![source], |r| Ok(from_ms(r.get(0)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Changes the label of the record starting at `start`.
    pub fn relabel_record(&mut self, start: DateTime<Utc>, source: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE interval_records SET source = ?2 WHERE start_ms = ?1",
                params![ms(start), source],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Writes interval records (replacing any at the same start); `source` says where they
    /// come from (`measured`, `measured-partial`, `running`: the running interval so far,
    /// `estimated`, `plan`). Their observed share is not said (see [`Store::put_observed`]).
    pub fn put_records(
        &mut self,
        records: &[IntervalRecord],
        source: &str,
    ) -> Result<usize, StoreError> {
        self.put_observed(records, source, None)
    }

    /// Writes interval records as [`Store::put_records`] does, with the share of each
    /// interval the EMS observed (0..1; `None`: not said).
    pub fn put_observed(
        &mut self,
        records: &[IntervalRecord],
        source: &str,
        observed: Option<f64>,
    ) -> Result<usize, StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO interval_records (start_ms, pv_kwh, grid_import_kwh, grid_export_kwh, battery_charge_kwh, battery_discharge_kwh, load_kwh, ev_kwh, ev_chargers, source, batteries, observed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(|e| err(&path, e))?;
            for r in records {
                let chargers =
                    serde_json::to_string(&r.ev_chargers).unwrap_or_else(|_| "[]".into());
                let batteries = serde_json::to_string(&r.batteries).unwrap_or_else(|_| "[]".into());
                stmt.execute(params![
                    ms(r.start),
                    r.pv_kwh,
                    r.grid_import_kwh,
                    r.grid_export_kwh,
                    r.battery_charge_kwh,
                    r.battery_discharge_kwh,
                    r.load_kwh,
                    r.ev_kwh,
                    chargers,
                    source,
                    batteries,
                    observed.map(|o| o.clamp(0.0, 1.0))
                ])
                .map_err(|e| err(&path, e))?;
            }
        }
        tx.commit().map_err(|e| err(&path, e))?;
        Ok(records.len())
    }

    /// Stores a grid request taken (one of the same id is replaced).
    pub fn put_grid_request(&mut self, g: &TakenGridRequest) -> Result<(), StoreError> {
        let r = &g.request;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO grid_requests (id, start_ms, end_ms, kind, kw, price, source, taken_ms, held_kw, note, reference_plan) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.id,
                    ms(r.start),
                    ms(r.end),
                    r.kind.name(),
                    r.kind.kw(),
                    r.price_cny_per_kwh,
                    r.source,
                    ms(g.taken),
                    g.held_kw,
                    g.note,
                    g.reference_plan
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The grid requests whose window ends after `from` and starts before `to`, by start.
    pub fn grid_requests(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TakenGridRequest>, StoreError> {
        use pedf_core::grid_request::{GridRequest, RequestKind};
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, start_ms, end_ms, kind, kw, price, source, taken_ms, held_kw, note, reference_plan FROM grid_requests WHERE end_ms > ?1 AND start_ms < ?2 ORDER BY start_ms, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(from), ms(to)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, f64>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let t = |v: i64| DateTime::<Utc>::from_timestamp_millis(v).unwrap_or_default();
        let mut out = Vec::new();
        for row in rows {
            let (id, start, end, kind, kw, price, source, taken, held_kw, note, reference_plan) =
                row.map_err(|e| self.err(e))?;
            // A kind this version does not know is skipped, not fatal.
            let Ok(kind) = RequestKind::of(&kind, kw) else {
                continue;
            };
            out.push(TakenGridRequest {
                request: GridRequest {
                    id,
                    start: t(start),
                    end: t(end),
                    kind,
                    price_cny_per_kwh: price,
                    source,
                },
                taken: t(taken),
                held_kw,
                note,
                reference_plan,
            });
        }
        Ok(out)
    }

    /// Keeps a limit the grid set (`Some(kW)`, who, when), or forgets it (`None`: released).
    pub fn put_grid_limit(
        &mut self,
        name: &str,
        kw: Option<f64>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = match kw {
            Some(kw) => self.conn.execute(
                "INSERT OR REPLACE INTO grid_limits (name, kw, set_by, set_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, kw, by, ms(at)],
            ),
            None => self
                .conn
                .execute("DELETE FROM grid_limits WHERE name = ?1", params![name]),
        };
        r.map(|_| ()).map_err(|e| self.err(e))
    }

    /// The limits the grid set and has not released.
    pub fn grid_limits(&self) -> Result<Vec<GridLimit>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, kw, set_by, set_ms FROM grid_limits ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, kw, by, t) = row.map_err(|e| self.err(e))?;
            out.push(GridLimit {
                name,
                kw,
                by,
                at: DateTime::<Utc>::from_timestamp_millis(t).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Stores an interval's energy at a billing meter (replacing one stored for the same meter
    /// and interval).
    pub fn put_meter_interval(&mut self, m: &MeterInterval) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meter_intervals (meter, start_ms, import_kwh, export_kwh, lag_s) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![m.meter, ms(m.start), m.import_kwh, m.export_kwh, m.lag_s],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The billing meters' interval energies of the intervals in `[from, to)`, by start and
    /// meter.
    pub fn meter_intervals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MeterInterval>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT meter, start_ms, import_kwh, export_kwh, lag_s FROM meter_intervals WHERE start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms, meter",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(from), ms(to)], |r| {
                Ok(MeterInterval {
                    meter: r.get(0)?,
                    start: from_ms(r.get(1)?),
                    import_kwh: r.get(2)?,
                    export_kwh: r.get(3)?,
                    lag_s: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stores the grid import without the EMS of a closed interval, kWh (replacing one stored
    /// for the same interval).
    pub fn put_without_ems(
        &mut self,
        start: DateTime<Utc>,
        import_kwh: f64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO without_ems (start_ms, import_kwh) VALUES (?1, ?2)",
                params![ms(start), import_kwh],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The stored imports without the EMS of the intervals in `[from, to)`, by start.
    pub fn without_ems(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<DateTime<Utc>, f64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start_ms, import_kwh FROM without_ems WHERE start_ms >= ?1 AND start_ms < ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(from), ms(to)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (t, kwh) = row.map_err(|e| self.err(e))?;
            if let Some(t) = DateTime::<Utc>::from_timestamp_millis(t) {
                out.insert(t, kwh);
            }
        }
        Ok(out)
    }

    /// The largest grid import of one interval record in `[from, to)` and the sum of all of
    /// them, kWh (0 with none): the billing month's peak so far is the first over the
    /// interval's hours, its Scope 2 so far the second times the grid factor. One query,
    /// however long the period (needed at every start and re-plan).
    pub fn import_max_and_sum_kwh(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(f64, f64), StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(grid_import_kwh), 0.0), COALESCE(SUM(grid_import_kwh), 0.0) FROM interval_records WHERE start_ms >= ?1 AND start_ms < ?2",
                params![ms(from), ms(to)],
                |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?)),
            )
            .map_err(|e| self.err(e))
    }

    /// Interval records in `[from, to)`, in time order, with their source.
    pub fn records(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(IntervalRecord, String)>, StoreError> {
        Ok(self
            .stored_records(from, to)?
            .into_iter()
            .map(|s| (s.record, s.source))
            .collect())
    }

    /// Interval records in `[from, to)`, in time order, with their source and observed share.
    pub fn stored_records(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start_ms, pv_kwh, grid_import_kwh, grid_export_kwh, battery_charge_kwh, battery_discharge_kwh, load_kwh, ev_kwh, ev_chargers, source, batteries, observed
                 FROM interval_records WHERE start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(from), ms(to)], stored_record_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The closed interval records after the one starting at `after` (all from the first
    /// without it), in time order, at most `limit`, up to the first that is still the running
    /// interval's checkpoint (source `running`: it is sent once its interval closes, or once a
    /// restart labels it): what a publisher that has sent up to `after` sends next.
    pub fn closed_records_after(
        &self,
        after: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start_ms, pv_kwh, grid_import_kwh, grid_export_kwh, battery_charge_kwh, battery_discharge_kwh, load_kwh, ev_kwh, ev_chargers, source, batteries, observed
                 FROM interval_records WHERE start_ms > ?1 ORDER BY start_ms LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![after.map_or(i64::MIN, ms), limit as i64],
                stored_record_of,
            )
            .map_err(|e| self.err(e))?;
        let list = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(list
            .into_iter()
            .take_while(|r| r.source != "running")
            .collect())
    }

    /// Stores a plan (its JSON); returns its id.
    pub fn put_plan(
        &mut self,
        created: DateTime<Utc>,
        day: &str,
        strategy: &str,
        json: &str,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO plans (created_ms, day, strategy, json) VALUES (?1, ?2, ?3, ?4)",
                params![ms(created), day, strategy, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Makes a plan the active one for its day (and no other plan of that day); a plan that
    /// was not active already is logged as activated (see [`Store::activations_after`]).
    pub fn activate_plan(&mut self, id: i64) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&path, e))?;
        let (day, was): (String, i64) = tx
            .query_row(
                "SELECT day, active FROM plans WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| err(&path, e))?;
        tx.execute(
            "UPDATE plans SET active = (id = ?1) WHERE day = ?2",
            params![id, day],
        )
        .map_err(|e| err(&path, e))?;
        if was == 0 {
            tx.execute(
                "INSERT INTO plan_activations (plan) VALUES (?1)",
                params![id],
            )
            .map_err(|e| err(&path, e))?;
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// The plans' activations after `after` (a sequence number), oldest first, at most
    /// `limit`: (sequence number, the plan's row, its JSON). What a publisher that has sent up
    /// to `after` sends next.
    pub fn activations_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, PlanRow, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.seq, p.id, p.created_ms, p.day, p.strategy, p.active, p.json
                 FROM plan_activations a JOIN plans p ON p.id = a.plan
                 WHERE a.seq > ?1 ORDER BY a.seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    PlanRow {
                        id: r.get(1)?,
                        created: from_ms(r.get(2)?),
                        day: r.get(3)?,
                        strategy: r.get(4)?,
                        active: r.get::<_, i64>(5)? != 0,
                    },
                    r.get(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The active plan of a day: (id, strategy, json).
    pub fn active_plan(&self, day: &str) -> Result<Option<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, strategy, json FROM plans WHERE day = ?1 AND active = 1")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![day]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => Ok(Some((
                r.get(0).map_err(|e| self.err(e))?,
                r.get(1).map_err(|e| self.err(e))?,
                r.get(2).map_err(|e| self.err(e))?,
            ))),
            None => Ok(None),
        }
    }

    /// Records an event.
    pub fn event(
        &mut self,
        at: DateTime<Utc>,
        severity: &str,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO events (ts_ms, severity, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![ms(at), severity, kind, message],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Events in `[from, to)`: (time, severity, kind, message).
    pub fn events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT ts_ms, severity, kind, message FROM events WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY id").map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(from), ms(to)], |r| {
                Ok((from_ms(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records a setpoint write (the audit log).
    #[allow(clippy::too_many_arguments)]
    pub fn audit(
        &mut self,
        at: DateTime<Utc>,
        device: &str,
        by: &str,
        reason: &str,
        requested: f64,
        written: Option<f64>,
        readback: Option<f64>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit (ts_ms, device, by_whom, reason, requested, written, readback, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![ms(at), device, by, reason, requested, written, readback, outcome],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Number of audit entries.
    pub fn audit_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The last `limit` events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, severity, kind, message FROM events ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((from_ms(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The events after `after` (an id), oldest first, at most `limit`, with their
    /// acknowledgements: what a publisher that has sent up to `after` sends next.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, ts_ms, severity, kind, message, acked_ms, acked_by FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], stored_event_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The last `limit` events, newest first, with their ids and acknowledgements.
    pub fn recent_event_rows(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, ts_ms, severity, kind, message, acked_ms, acked_by FROM events ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], stored_event_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Acknowledges an alarm event (once: false when there is no such alarm or it was
    /// acknowledged already).
    pub fn ack_event(&mut self, id: i64, at: DateTime<Utc>, by: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE events SET acked_ms = ?2, acked_by = ?3 WHERE id = ?1 AND severity = 'alarm' AND acked_ms IS NULL",
                params![id, ms(at), by],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// The last `limit` audit entries, newest first.
    pub fn recent_audit(&self, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.audit_page(None, limit)
    }

    /// `limit` audit entries before the entry `before` (all when `None`), newest first: the
    /// next page starts before the last entry's id.
    pub fn audit_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, ts_ms, device, by_whom, reason, requested, written, readback, outcome FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![before.unwrap_or(i64::MAX), limit as i64], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: from_ms(r.get(1)?),
                    device: r.get(2)?,
                    by: r.get(3)?,
                    reason: r.get(4)?,
                    requested: r.get(5)?,
                    written: r.get(6)?,
                    readback: r.get(7)?,
                    outcome: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The plans of a day, newest first.
    pub fn plans_of_day(&self, day: &str) -> Result<Vec<PlanRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, created_ms, day, strategy, active FROM plans WHERE day = ?1 ORDER BY id DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![day], |r| {
                Ok(PlanRow {
                    id: r.get(0)?,
                    created: from_ms(r.get(1)?),
                    day: r.get(2)?,
                    strategy: r.get(3)?,
                    active: r.get::<_, i64>(4)? != 0,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// One plan: its row and JSON.
    pub fn plan(&self, id: i64) -> Result<Option<(PlanRow, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, created_ms, day, strategy, active, json FROM plans WHERE id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![id]).map_err(|e| self.err(e))?;
        let Some(r) = rows.next().map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let get = |e| self.err(e);
        Ok(Some((
            PlanRow {
                id: r.get(0).map_err(get)?,
                created: from_ms(r.get(1).map_err(get)?),
                day: r.get(2).map_err(get)?,
                strategy: r.get(3).map_err(get)?,
                active: r.get::<_, i64>(4).map_err(get)? != 0,
            },
            r.get(5).map_err(get)?,
        )))
    }

    /// Stores an API token's hash with its role, expiring at `expires` (never: `None`);
    /// returns its id.
    pub fn add_token(
        &mut self,
        at: DateTime<Utc>,
        label: &str,
        role: &str,
        hash: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO tokens (created_ms, label, role, hash, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ms(at), label, role, hash, expires.map(ms)],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The token with this hash that is neither revoked nor expired at `now`.
    pub fn token_by_hash(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, label, role, created_ms, revoked, expires_ms FROM tokens WHERE hash = ?1 AND revoked = 0 AND (expires_ms IS NULL OR expires_ms > ?2)",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query_map(params![hash, ms(now)], token_row)
            .map_err(|e| self.err(e))?;
        rows.next().transpose().map_err(|e| self.err(e))
    }

    /// The tokens (not revoked) with a role.
    pub fn tokens_with_role(&self, role: &str) -> Result<Vec<TokenRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, label, role, created_ms, revoked, expires_ms FROM tokens WHERE role = ?1 AND revoked = 0 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![role], token_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every token, revoked or expired or not, by id.
    pub fn all_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, label, role, created_ms, revoked, expires_ms FROM tokens ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], token_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Revokes a token; false when there was no such token.
    pub fn revoke_token(&mut self, id: i64) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE tokens SET revoked = 1 WHERE id = ?1 AND revoked = 0",
                params![id],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Pages in the database file (tests).
    #[doc(hidden)]
    pub fn page_count_for_test(&self) -> i64 {
        self.conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// Caps the file at `pages` pages, as a full disk would (tests).
    #[doc(hidden)]
    pub fn set_max_pages_for_test(&mut self, pages: i64) {
        let _ = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            });
    }

    /// SQLite's own consistency check ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

fn err(path: &str, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
            StoreError::DiskFull { path: path.into() }
        }
        _ => StoreError::Sqlite {
            path: path.into(),
            message: e.to_string(),
        },
    }
}
