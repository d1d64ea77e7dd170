//! The store's writer: everything the cycle stores (samples, events, the units' audit, the
//! interval records and their checkpoints, the imports without the EMS, 1-minute aggregates,
//! pruning, the re-planner's plans) goes to the store through a connection and a thread of
//! their own, in the order the cycle handed it over, so a slow, locked or full disk never
//! holds the control cycle. The cycle hands a write over without waiting.
//!
//! What a writer that falls behind gives up, and what it never does:
//! - samples: at most 64 batches wait; a newer batch is dropped and counted;
//! - events, audit entries, checkpoints, aggregates, pruning and re-plans: at most
//!   [`MAX_QUEUED_WRITES`] wait; more are dropped and counted (a re-plan that is not stored
//!   is a fault, and the next one comes within minutes);
//! - closed interval records and imports without the EMS are never dropped: one that fails
//!   (a full disk) is kept and tried again before the next record and at shutdown.
//!
//! Each kind's last error, while that kind fails, is a fault of the cycle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use crate::replan::AHEAD;
use chrono::{DateTime, Utc};
use pedf_core::records::IntervalRecord;
use pedf_devices::control::AuditEvent;
use pedf_store::{Sample, Store};

/// Sample batches that may wait for the writer.
const MAX_QUEUED_SAMPLE_BATCHES: usize = 64;

/// Other droppable writes (events, audit entries, checkpoints, housekeeping) that may wait.
pub(super) const MAX_QUEUED_WRITES: usize = 20_000;

/// One thing to store.
#[derive(Debug)]
pub(super) enum Write {
    /// A cycle's samples.
    Samples(Vec<Sample>),
    /// An event.
    Event {
        /// When.
        at: DateTime<Utc>,
        /// `info`, `warning` or `alarm`.
        severity: &'static str,
        /// Where from (`run`, `control`, `device`, ...).
        kind: &'static str,
        /// What happened.
        message: String,
    },
    /// The units' audit entries.
    Audit(Vec<AuditEvent>),
    /// Interval records under a source label; `closed` ones are never dropped.
    Records {
        /// The records.
        records: Vec<IntervalRecord>,
        /// `measured`, `measured-partial`, `running`, ...
        source: String,
        /// The share of their interval observed, 0..1.
        observed: Option<f64>,
        /// A closed interval (kept until stored) rather than a checkpoint.
        closed: bool,
    },
    /// An interval's energy at a grid meter, from its counters.
    MeterInterval(pedf_store::MeterInterval),
    /// A closed interval's import without the EMS, kWh.
    WithoutEms {
        /// The interval's start.
        start: DateTime<Utc>,
        /// kWh.
        import_kwh: f64,
    },
    /// The 1-minute aggregates of `[from, to)`.
    Aggregate {
        /// From.
        from: DateTime<Utc>,
        /// To.
        to: DateTime<Utc>,
    },
    /// A limit the grid set (`Some`) or released (`None`), kept across a restart.
    GridLimit {
        /// `import_limit_kw` or `export_limit_kw`.
        name: String,
        /// The limit, kW.
        kw: Option<f64>,
        /// Who set it.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Samples older than this pruned.
    PruneSamples(DateTime<Utc>),
    /// Events, audit and aggregates older than this pruned.
    PruneLog(DateTime<Utc>),
    /// A re-plan stored and made active, with its event.
    Plan {
        /// Made at.
        at: DateTime<Utc>,
        /// The plan's local day.
        day: String,
        /// Its strategy label.
        strategy: String,
        /// The plan as JSON.
        json: String,
        /// `info`, or `alarm` for a fallback plan.
        severity: &'static str,
        /// A next day's plan made ahead: made active unless the day has an active plan that
        /// is not itself one made ahead (an operator's choice stands until the day's first
        /// re-plan).
        ahead: bool,
        /// Why it was made.
        why: String,
    },
    /// The file capped at this many pages, as a full (or freed) disk would (tests).
    #[cfg(test)]
    MaxPages(i64),
    /// The writer held until the sender is dropped, as a disk that stalls would (tests).
    #[cfg(test)]
    Hold(std::sync::mpsc::Receiver<()>),
}

impl Write {
    /// What the cycle's faults call it.
    fn kind(&self) -> &'static str {
        match self {
            Write::Samples(_) => "samples",
            Write::Event { .. } => "events",
            Write::Audit(_) => "audit entries",
            Write::Records { closed: true, .. } => "interval records",
            Write::Records { closed: false, .. } => "the running interval's checkpoint",
            Write::WithoutEms { .. } => "imports without the EMS",
            Write::MeterInterval(_) => "the grid meters' interval energies",
            Write::GridLimit { .. } => "the grid's limits",
            Write::Aggregate { .. } => "1-minute aggregates",
            Write::PruneSamples(_) | Write::PruneLog(_) => "pruning",
            Write::Plan { .. } => "re-plans",
            #[cfg(test)]
            Write::MaxPages(_) | Write::Hold(_) => "test",
        }
    }

    /// Kept and tried again when it fails, never dropped when the writer is behind.
    fn kept(&self) -> bool {
        // Not a re-plan: one stored late would replace a newer plan; the next re-plan comes
        // within minutes.
        matches!(
            self,
            Write::Records { closed: true, .. }
                | Write::WithoutEms { .. }
                | Write::GridLimit { .. }
        )
    }

    fn apply(&self, store: &mut Store) -> Result<(), pedf_store::StoreError> {
        match self {
            Write::Samples(batch) => store.insert_samples(batch).map(|_| ()),
            Write::Event {
                at,
                severity,
                kind,
                message,
            } => store.event(*at, severity, kind, message),
            Write::Audit(entries) => {
                for a in entries {
                    store.audit(
                        a.at,
                        &a.device,
                        &a.by,
                        &a.reason,
                        a.requested,
                        a.written,
                        a.readback,
                        &a.outcome,
                    )?;
                }
                Ok(())
            }
            Write::Records {
                records,
                source,
                observed,
                ..
            } => store.put_observed(records, source, *observed).map(|_| ()),
            Write::WithoutEms { start, import_kwh } => store.put_without_ems(*start, *import_kwh),
            Write::MeterInterval(m) => store.put_meter_interval(m),
            Write::GridLimit { name, kw, by, at } => store.put_grid_limit(name, *kw, by, *at),
            Write::Aggregate { from, to } => store.aggregate_minutes(*from, *to).map(|_| ()),
            Write::PruneSamples(before) => store.prune_samples(*before).map(|_| ()),
            Write::PruneLog(before) => store.prune_log(*before).map(|_| ()),
            Write::Plan {
                at,
                day,
                strategy,
                json,
                severity,
                why,
                ahead,
            } => {
                let before = store.active_plan(day)?;
                let id = store.put_plan(*at, day, strategy, json)?;
                if *ahead {
                    if let Some((old, s, _)) =
                        before.as_ref().filter(|(_, s, _)| !s.contains(AHEAD))
                    {
                        return store.event(
                            *at,
                            "info",
                            "plan",
                            &format!("planned {day} ahead ({why}): plan #{id} ({strategy}) stored; plan #{old} ({s}) stays active for it"),
                        );
                    }
                }
                store.activate_plan(id)?;
                let replaced = before
                    .map(|(old, s, _)| format!(", replacing plan #{old} ({s})"))
                    .unwrap_or_default();
                store.event(
                    *at,
                    severity,
                    "plan",
                    &if *ahead {
                        format!("planned {day} ahead ({why}): plan #{id} ({strategy}) active for it{replaced}")
                    } else {
                        format!("re-planned ({why}): plan #{id} ({strategy}) active{replaced}")
                    },
                )
            }
            #[cfg(test)]
            Write::MaxPages(p) => {
                store.set_max_pages_for_test(*p);
                Ok(())
            }
            #[cfg(test)]
            Write::Hold(rx) => {
                let _ = rx.recv();
                Ok(())
            }
        }
    }
}

/// What the writer has met.
#[derive(Debug, Default, Clone)]
pub(super) struct WriterState {
    /// Each kind's last error, while writes of that kind fail.
    pub errors: BTreeMap<&'static str, String>,
    /// Samples dropped because the writer was behind.
    pub dropped_samples: u64,
    /// Other writes (events, audit entries, checkpoints) dropped because it was behind.
    pub dropped_writes: u64,
    /// Writes kept after failing, to be tried again.
    pub kept: usize,
    /// Writes handled (stored or not) so far.
    pub handled: u64,
}

/// The handle the cycle keeps.
pub(super) struct StoreWriter {
    tx: Option<Sender<Write>>,
    queued_samples: Arc<AtomicUsize>,
    queued_other: Arc<AtomicUsize>,
    state: Arc<Mutex<WriterState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(state: &Mutex<WriterState>) -> std::sync::MutexGuard<'_, WriterState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl StoreWriter {
    /// Opens its own connection to `path` (with `max_pages`, a full disk in tests) and
    /// starts the thread.
    pub(super) fn start(path: &std::path::Path, max_pages: Option<i64>) -> Result<Self, String> {
        let mut store = Store::open(path).map_err(|e| e.to_string())?;
        if let Some(p) = max_pages {
            store.set_max_pages_for_test(p);
        }
        let (tx, rx) = channel::<Write>();
        let state = Arc::new(Mutex::new(WriterState::default()));
        let queued_samples = Arc::new(AtomicUsize::new(0));
        let queued_other = Arc::new(AtomicUsize::new(0));
        let (shared, qs, qo) = (state.clone(), queued_samples.clone(), queued_other.clone());
        let thread = std::thread::Builder::new()
            .name("pedf-store-writer".into())
            .spawn(move || {
                let mut kept: Vec<Write> = Vec::new();
                let done = |w: &Write, r: Result<(), pedf_store::StoreError>| {
                    let mut s = lock(&shared);
                    match r {
                        Ok(()) => {
                            s.errors.remove(w.kind());
                            true
                        }
                        Err(e) => {
                            tracing::error!(error = %e, what = w.kind(), "not stored; control goes on");
                            s.errors.insert(w.kind(), e.to_string());
                            false
                        }
                    }
                };
                while let Ok(w) = rx.recv() {
                    match &w {
                        Write::Samples(_) => qs.fetch_sub(1, Ordering::Relaxed),
                        w if !w.kept() => qo.fetch_sub(1, Ordering::Relaxed),
                        _ => 0,
                    };
                    // What failed before goes first, in its order, when the next kept write
                    // comes.
                    if w.kept() && !kept.is_empty() {
                        let before = std::mem::take(&mut kept);
                        for k in before {
                            let r = k.apply(&mut store);
                            if !done(&k, r) {
                                kept.push(k);
                            }
                        }
                    }
                    let r = w.apply(&mut store);
                    if !done(&w, r) && w.kept() {
                        kept.push(w);
                    }
                    let mut s = lock(&shared);
                    s.kept = kept.len();
                    s.handled += 1;
                }
                // Shutdown: one last try for what was kept.
                for k in std::mem::take(&mut kept) {
                    let r = k.apply(&mut store);
                    if !done(&k, r) {
                        tracing::error!(what = k.kind(), "lost at shutdown: the store refused it");
                    }
                }
            })
            .map_err(|e| format!("the store's writer thread: {e}"))?;
        Ok(StoreWriter {
            tx: Some(tx),
            queued_samples,
            queued_other,
            state,
            thread: Some(thread),
        })
    }

    /// Hands a write over without waiting (dropped and counted when the writer is behind,
    /// unless it is one that is kept).
    pub(super) fn send(&self, w: Write) {
        let Some(tx) = &self.tx else { return };
        let (queue, max) = match &w {
            Write::Samples(_) => (&self.queued_samples, MAX_QUEUED_SAMPLE_BATCHES),
            w if !w.kept() => (&self.queued_other, MAX_QUEUED_WRITES),
            _ => {
                let _ = tx.send(w);
                return;
            }
        };
        if queue.load(Ordering::Relaxed) >= max {
            let mut s = lock(&self.state);
            match &w {
                Write::Samples(b) => s.dropped_samples += b.len() as u64,
                Write::Audit(a) => s.dropped_writes += a.len() as u64,
                _ => s.dropped_writes += 1,
            }
            return;
        }
        queue.fetch_add(1, Ordering::Relaxed);
        if tx.send(w).is_err() {
            queue.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// An event, handed over.
    pub(super) fn event(
        &self,
        at: DateTime<Utc>,
        severity: &'static str,
        kind: &'static str,
        message: impl Into<String>,
    ) {
        self.send(Write::Event {
            at,
            severity,
            kind,
            message: message.into(),
        });
    }

    /// What the writer has met so far.
    pub(super) fn state(&self) -> WriterState {
        lock(&self.state).clone()
    }

    /// The writer's trouble as the cycle's faults.
    pub(super) fn faults(&self, faults: &mut Vec<String>) {
        let s = self.state();
        for (kind, e) in &s.errors {
            faults.push(format!("{kind} not stored: {e}"));
        }
        if s.dropped_samples > 0 {
            faults.push(format!(
                "the store is behind: {} sample(s) dropped so far",
                s.dropped_samples
            ));
        }
        if s.dropped_writes > 0 {
            faults.push(format!(
                "the store is behind: {} event(s), audit entries or checkpoints dropped so far",
                s.dropped_writes
            ));
        }
        if s.kept > 0 {
            faults.push(format!(
                "{} interval record(s) wait to be stored (tried again with the next record)",
                s.kept
            ));
        }
    }

    /// Writes what is queued and stops the thread (shutdown).
    pub(super) fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(start: DateTime<Utc>) -> IntervalRecord {
        IntervalRecord {
            start,
            pv_kwh: 1.0,
            ..IntervalRecord::default()
        }
    }

    fn wait_until(w: &StoreWriter, what: impl Fn(&WriterState) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !what(&w.state()) {
            assert!(std::time::Instant::now() < deadline, "{:?}", w.state());
            std::thread::yield_now();
        }
    }

    /// A closed interval record that meets a full disk is kept, said as a fault, and stored
    /// with the next record once there is room again; nothing of it is lost.
    #[test]
    fn a_record_refused_by_a_full_disk_is_stored_when_room_comes() {
        let dir = std::env::temp_dir().join(format!("pedf-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        let pages = Store::open(&path).unwrap().page_count_for_test();
        let t0 = DateTime::<Utc>::from_timestamp(1_782_000_000, 0).unwrap();
        let mut w = StoreWriter::start(&path, None).unwrap();
        let before = w.state().handled;
        w.send(Write::MaxPages(pages + 1));
        // Handled before the first record: else the first wait below can end on it, and a
        // second record be on its way when the first is refused (two would then wait).
        wait_until(&w, |s| s.handled > before);
        // Closed records, one at a time, until the disk is full (a bound: 100 pages' worth).
        let mut n = 0;
        while w.state().kept == 0 {
            assert!(n < 5000, "the disk never filled: {:?}", w.state());
            let handled = w.state().handled;
            w.send(Write::Records {
                records: vec![record(t0 + chrono::Duration::minutes(15 * n))],
                source: "measured".into(),
                observed: Some(1.0),
                closed: true,
            });
            wait_until(&w, |s| s.handled > handled);
            n += 1;
        }
        let t1 = t0 + chrono::Duration::minutes(15 * n);
        let mut faults = Vec::new();
        w.faults(&mut faults);
        assert!(
            faults
                .iter()
                .any(|f| f.contains("interval records not stored")),
            "{faults:?}"
        );
        assert!(
            faults
                .iter()
                .any(|f| f.contains("1 interval record(s) wait")),
            "{faults:?}"
        );
        // Room again; the next record takes the kept one with it, in order.
        w.send(Write::MaxPages(1_000_000));
        w.send(Write::Records {
            records: vec![record(t1)],
            source: "measured".into(),
            observed: Some(1.0),
            closed: true,
        });
        wait_until(&w, |s| s.kept == 0 && s.errors.is_empty());
        w.finish();
        let st = Store::open(&path).unwrap();
        let stored = st.records(t0, t1 + chrono::Duration::minutes(15)).unwrap();
        assert_eq!(stored.len() as i64, n + 1, "every record stored, none lost");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A next day's plan made ahead becomes the day's active plan unless an operator chose
    /// one for that day (kept, said in an event); a later plan made ahead replaces an earlier
    /// one, and the day's own re-plan replaces either.
    #[test]
    fn a_plan_made_ahead_keeps_an_operators_choice() {
        let dir = std::env::temp_dir().join(format!("pedf-writer-a-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        let t0 = DateTime::<Utc>::from_timestamp(1_782_000_000, 0).unwrap();
        let day = "2026-06-22";
        let plan = |strategy: &str, ahead: bool| Write::Plan {
            at: t0,
            day: day.into(),
            strategy: strategy.into(),
            json: "{}".into(),
            severity: "info",
            why: "every 15 min".into(),
            ahead,
        };
        let active = |path: &std::path::Path| {
            let st = Store::open(path).unwrap();
            st.active_plan(day).unwrap().map(|(id, s, _)| (id, s))
        };
        let mut w = StoreWriter::start(&path, None).unwrap();
        w.send(plan("optimized, day ahead", true));
        w.send(plan("optimized, day ahead", true));
        w.finish();
        assert_eq!(active(&path), Some((2, "optimized, day ahead".into())));
        // The operator activates a plan of their own for the day (as the API does).
        let mut st = Store::open(&path).unwrap();
        let mine = st.put_plan(t0, day, "optimized", "{}").unwrap();
        st.activate_plan(mine).unwrap();
        drop(st);
        let mut w = StoreWriter::start(&path, None).unwrap();
        w.send(plan("optimized, day ahead", true));
        w.finish();
        assert_eq!(active(&path), Some((mine, "optimized".into())));
        let st = Store::open(&path).unwrap();
        let said = st.recent_events(10).unwrap();
        assert!(
            said.iter().any(|e| e.3.contains(&format!(
                "plan #4 (optimized, day ahead) stored; plan #{mine} (optimized) stays active"
            ))),
            "{said:?}"
        );
        drop(st);
        let mut w = StoreWriter::start(&path, None).unwrap();
        w.send(plan("optimized, intraday", false));
        w.finish();
        assert_eq!(active(&path), Some((5, "optimized, intraday".into())));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Droppable writes beyond the queue's bound are counted, never block the sender.
    #[test]
    fn a_writer_behind_drops_and_counts_events_not_records() {
        let dir = std::env::temp_dir().join(format!("pedf-writer-q-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        let t0 = DateTime::<Utc>::from_timestamp(1_782_000_000, 0).unwrap();
        let mut w = StoreWriter::start(&path, None).unwrap();
        // The writer's thread held up, as by a disk that stalls.
        let (release, held) = std::sync::mpsc::channel::<()>();
        w.send(Write::Hold(held));
        for i in 0..MAX_QUEUED_WRITES + 10 {
            w.event(t0, "info", "run", format!("event {i}"));
        }
        w.send(Write::Records {
            records: vec![record(t0)],
            source: "measured".into(),
            observed: Some(1.0),
            closed: true,
        });
        assert!(w.state().dropped_writes >= 10, "{:?}", w.state());
        drop(release);
        w.finish();
        let st = Store::open(&path).unwrap();
        assert_eq!(
            st.records(t0, t0 + chrono::Duration::minutes(15))
                .unwrap()
                .len(),
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
