//! The embedded store: round trips, retention, aggregates, a full disk, and durability across
//! kill -9.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, TimeZone, Utc};
use pedf_core::records::IntervalRecord;
use pedf_store::{Sample, Store, StoreError};

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pedf-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("pedf.sqlite")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 21, 4, 0, 0).unwrap()
}

fn sample(device: &str, s: i64, value: f64, quality: u8) -> Sample {
    Sample {
        device: device.into(),
        field: "power_kw".into(),
        at: t0() + Duration::seconds(s),
        value,
        quality,
    }
}

#[test]
fn samples_aggregates_retention_records_plans_events_audit() {
    let path = temp_db("roundtrip");
    let mut st = Store::open(&path).unwrap();
    let batch: Vec<Sample> = (0..180)
        .map(|s| sample("meter", s, s as f64, if s == 10 { 2 } else { 0 }))
        .collect();
    assert_eq!(st.insert_samples(&batch).unwrap(), 180);
    let got = st
        .samples("meter", "power_kw", t0(), t0() + Duration::seconds(60))
        .unwrap();
    assert_eq!(got.len(), 60);
    assert_eq!(got[10].quality, 2);
    assert_eq!(
        st.aggregate_minutes(t0(), t0() + Duration::minutes(3))
            .unwrap(),
        3
    );
    let agg = st
        .aggregates("meter", "power_kw", t0(), t0() + Duration::minutes(3))
        .unwrap();
    assert_eq!(agg.len(), 3);
    assert_eq!(
        (agg[0].min, agg[0].max, agg[0].count),
        (0.0, 59.0, 59),
        "the bad sample is left out"
    );
    assert_eq!(agg[1].mean, 89.5);
    // Retention: raw samples go, aggregates stay.
    assert_eq!(st.prune_samples(t0() + Duration::minutes(2)).unwrap(), 120);
    assert_eq!(st.sample_count().unwrap(), 60);
    assert_eq!(
        st.aggregates("meter", "power_kw", t0(), t0() + Duration::minutes(3))
            .unwrap()
            .len(),
        3
    );

    let rec = IntervalRecord {
        start: t0(),
        pv_kwh: 10.5,
        load_kwh: 8.0,
        ev_kwh: 2.0,
        ev_chargers: vec![("ev-01".into(), 2.0)],
        battery_charge_kwh: 0.5,
        batteries: vec![("bess-1".into(), 0.2, 0.0), ("bess-2".into(), 0.3, 0.0)],
        ..Default::default()
    };
    st.put_records(std::slice::from_ref(&rec), "measured")
        .unwrap();
    let back = st.records(t0(), t0() + Duration::hours(1)).unwrap();
    assert_eq!(back, vec![(rec, "measured".to_string())]);

    let a = st
        .put_plan(t0(), "2026-06-21", "optimized", "{\"objective_cny\": 1}")
        .unwrap();
    let b = st
        .put_plan(t0(), "2026-06-21", "rule", "{\"objective_cny\": 2}")
        .unwrap();
    st.activate_plan(a).unwrap();
    st.activate_plan(b).unwrap();
    assert_eq!(st.active_plan("2026-06-21").unwrap().unwrap().1, "rule");
    assert!(st.active_plan("2026-06-22").unwrap().is_none());

    st.event(t0(), "warning", "device", "pv-roof-a stopped answering")
        .unwrap();
    assert_eq!(
        st.events(t0(), t0() + Duration::seconds(1)).unwrap()[0].3,
        "pv-roof-a stopped answering"
    );
    st.audit(
        t0(),
        "bess-1",
        "controller",
        "plan",
        1500.0,
        Some(1000.0),
        Some(1000.0),
        "ok",
    )
    .unwrap();
    assert_eq!(st.audit_count().unwrap(), 1);
    assert_eq!(st.integrity_check().unwrap(), "ok");
    drop(st);
    // Reopening keeps everything.
    let st = Store::open(&path).unwrap();
    assert_eq!(st.sample_count().unwrap(), 60);
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_store_stays_usable() {
    let path = temp_db("full");
    let mut st = Store::open(&path).unwrap();
    // Cap the database a few pages above its size: a large batch finds the "disk" full.
    let pages = st.page_count_for_test();
    st.set_max_pages_for_test(pages + 8);
    let big: Vec<Sample> = (0..20_000).map(|s| sample("meter", s, 1.0, 0)).collect();
    match st.insert_samples(&big) {
        Err(StoreError::DiskFull { path: p }) => assert!(p.ends_with("pedf.sqlite"), "{p}"),
        other => panic!("{other:?}"),
    }
    // The failed batch left nothing; small writes still fit.
    assert_eq!(st.sample_count().unwrap(), 0);
    st.insert_samples(&big[..10]).unwrap();
    assert_eq!(st.sample_count().unwrap(), 10);
}

/// Run only as the child process of `kill_9_loses_nothing_committed` (ignored otherwise, never
/// counted as a pass): writes batches of 100 samples, one commit each, and reports each commit
/// on stdout until it is killed.
#[test]
#[ignore = "the child process of kill_9_loses_nothing_committed"]
fn child_writer() {
    let path = std::env::var_os("PEDF_STORE_CHILD")
        .expect("run by kill_9_loses_nothing_committed, which sets PEDF_STORE_CHILD");
    let mut st = Store::open(std::path::Path::new(&path)).unwrap();
    let mut out = std::io::stdout();
    for batch in 0i64.. {
        let samples: Vec<Sample> = (0..100)
            .map(|i| sample("meter", batch * 100 + i, (batch * 100 + i) as f64, 0))
            .collect();
        st.insert_samples(&samples).unwrap();
        writeln!(out, "committed {}", (batch + 1) * 100).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_nothing_committed() {
    let path = temp_db("kill9");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PEDF_STORE_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut committed = 0i64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while committed < 5_000 {
        let line = lines.next().expect("the writer reports").unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.trim().parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint
    child.wait().unwrap();
    let st = Store::open(&path).unwrap();
    assert_eq!(st.integrity_check().unwrap(), "ok");
    let n = st.sample_count().unwrap();
    eprintln!("kill -9 after {committed} samples reported committed: {n} in the store");
    assert!(
        n >= committed,
        "{n} samples after kill -9, {committed} were committed"
    );
    assert_eq!(n % 100, 0, "no half batch: {n}");
}

/// The billing month's peak and import so far are read back after a restart: the largest
/// interval import in the period and their sum, from a reopened store; none is 0.
#[test]
fn the_months_largest_interval_import_survives_a_reopen() {
    let path = temp_db("month-peak");
    let at = |i: i64| t0() + Duration::minutes(15 * i);
    {
        let mut st = Store::open(&path).unwrap();
        assert_eq!(
            st.import_max_and_sum_kwh(at(0), at(100)).unwrap(),
            (0.0, 0.0),
            "no records"
        );
        let recs: Vec<IntervalRecord> = [120.0, 212.5, 180.0]
            .iter()
            .enumerate()
            .map(|(i, kwh)| IntervalRecord {
                start: at(i as i64),
                grid_import_kwh: *kwh,
                ..Default::default()
            })
            .collect();
        st.put_records(&recs, "measured").unwrap();
    }
    let st = Store::open(&path).unwrap();
    assert_eq!(
        st.import_max_and_sum_kwh(at(0), at(100)).unwrap(),
        (212.5, 512.5)
    );
    // Only the period asked for.
    assert_eq!(
        st.import_max_and_sum_kwh(at(2), at(100)).unwrap(),
        (180.0, 180.0)
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The import without the EMS of each closed interval survives a reopen (carbon dual control's
/// month so far after a restart), and only the period asked for is returned.
#[test]
fn the_counterfactual_survives_a_reopen() {
    let path = temp_db("without-ems");
    let at = |i: i64| t0() + Duration::minutes(15 * i);
    {
        let mut st = Store::open(&path).unwrap();
        assert!(st.without_ems(at(0), at(10)).unwrap().is_empty());
        st.put_without_ems(at(0), 101.5).unwrap();
        st.put_without_ems(at(1), 99.0).unwrap();
        st.put_without_ems(at(1), 98.0).unwrap();
    }
    let st = Store::open(&path).unwrap();
    let got = st.without_ems(at(0), at(10)).unwrap();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        vec![(at(0), 101.5), (at(1), 98.0)]
    );
    assert_eq!(st.without_ems(at(1), at(10)).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A store of schema 3 (records without the split by battery or the observed share, tokens
/// without expiry) opens as the schema of now: its records read back with no split and no
/// observed share said, and new records keep theirs.
#[test]
fn a_schema_3_store_gains_the_split_by_battery() {
    let dir = std::env::temp_dir().join(format!("pedf-store-v3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pedf.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE interval_records (
                start_ms INTEGER PRIMARY KEY, pv_kwh REAL NOT NULL, grid_import_kwh REAL NOT NULL, grid_export_kwh REAL NOT NULL,
                battery_charge_kwh REAL NOT NULL, battery_discharge_kwh REAL NOT NULL, load_kwh REAL NOT NULL, ev_kwh REAL NOT NULL,
                ev_chargers TEXT NOT NULL, source TEXT NOT NULL);
             INSERT INTO interval_records VALUES (1782000000000, 1, 0, 0, 0, 0, 1, 0, '[]', 'measured');
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let mut st = Store::open(&path).unwrap();
    let t = Utc.timestamp_millis_opt(1_782_000_000_000).unwrap();
    let old = st.records(t, t + Duration::hours(1)).unwrap();
    assert_eq!(old.len(), 1);
    assert!(old[0].0.batteries.is_empty());
    assert_eq!(
        st.stored_records(t, t + Duration::hours(1)).unwrap()[0].observed,
        None
    );
    let rec = IntervalRecord {
        start: t + Duration::minutes(15),
        battery_discharge_kwh: 1.0,
        load_kwh: 1.0,
        batteries: vec![("bess-1".into(), 0.0, 1.0)],
        ..Default::default()
    };
    st.put_observed(std::slice::from_ref(&rec), "measured-partial", Some(0.75))
        .unwrap();
    drop(st);
    let st = Store::open(&path).unwrap();
    let back = st.stored_records(t, t + Duration::hours(1)).unwrap();
    assert_eq!(back[1].record, rec);
    assert_eq!(back[1].source, "measured-partial");
    assert_eq!(back[1].observed, Some(0.75));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Several processes (threads here) opening one new file at the same moment: each gets the
/// store, none fails on a half-made migration (the runtime and a reader do this at start).
#[test]
fn a_new_store_opened_at_once_by_several_is_migrated_once() {
    let path = temp_db("open-at-once");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (p, b) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                Store::open(&p).map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(()));
    }
    let st = Store::open(&path).unwrap();
    assert_eq!(st.integrity_check().unwrap(), "ok");
}

/// The whole audit can be read page by page (the API once showed only the newest 1000
/// entries), and events, audit and aggregates older than the retention go.
#[test]
fn the_audit_pages_and_the_log_is_pruned_by_age() {
    let path = temp_db("audit-pages");
    let mut st = Store::open(&path).unwrap();
    for k in 0..25 {
        st.audit(
            t0() + Duration::days(k),
            "bess-1",
            "controller",
            "automatic cycle",
            k as f64,
            Some(k as f64),
            Some(k as f64),
            "ok",
        )
        .unwrap();
        st.event(
            t0() + Duration::days(k),
            "info",
            "test",
            &format!("day {k}"),
        )
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = st.audit_page(before, 10).unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|a| a.id);
        seen.extend(page.into_iter().map(|a| a.requested.unwrap_or(-1.0) as i64));
    }
    assert_eq!(
        seen,
        (0..25).rev().collect::<Vec<i64>>(),
        "newest first, each once"
    );
    let deleted = st.prune_log(t0() + Duration::days(20)).unwrap();
    assert_eq!(deleted, 40, "20 audit entries and 20 events");
    assert_eq!(st.audit_count().unwrap(), 5);
    assert_eq!(st.events(t0(), t0() + Duration::days(30)).unwrap().len(), 5);
}

/// A store of schema 9 (grid requests without a reference plan) opens as the schema of now:
/// its request reads back with none, a new one keeps its plan; without like days recorded a
/// request's delivery is measured against its plan, and where that is missing too the error
/// says both.
#[test]
fn a_grid_requests_reference_plan_is_kept_and_said_when_missing() {
    use pedf_core::grid_request::{GridRequest, RequestKind};
    let path = temp_db("v9");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE grid_requests (
                id TEXT PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, kind TEXT NOT NULL, kw REAL NOT NULL,
                price REAL, source TEXT NOT NULL, taken_ms INTEGER NOT NULL, held_kw REAL NOT NULL, note TEXT NOT NULL);
             INSERT INTO grid_requests VALUES ('old', 1782000000000, 1782003600000, 'cap_import', 50, NULL, 'api', 1782000000000, 50, 'accepted');
             PRAGMA user_version = 9;",
        )
        .unwrap();
    }
    let mut st = Store::open(&path).unwrap();
    let t = Utc.timestamp_millis_opt(1_782_000_000_000).unwrap();
    let old = st.grid_requests(t, t + Duration::days(1)).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].reference_plan, None);
    let new = pedf_store::TakenGridRequest {
        request: GridRequest {
            id: "new".into(),
            start: t + Duration::hours(2),
            end: t + Duration::hours(3),
            kind: RequestKind::CapImport(80.0),
            price_cny_per_kwh: Some(2.0),
            source: "IEC 104 master 127.0.0.1".into(),
        },
        taken: t,
        held_kw: 80.0,
        note: "measured".into(),
        reference_plan: Some(3),
    };
    st.put_grid_request(&new).unwrap();
    drop(st);
    let st = Store::open(&path).unwrap();
    let back = st.grid_requests(t, t + Duration::days(1)).unwrap();
    assert_eq!(back[1], new);
    let clock = pedf_core::time::ParkClock::new(
        chrono_tz::Asia::Shanghai,
        pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
    );
    let rule = pedf_core::grid_request::BaselineRule::default();
    let why = st
        .grid_request_delivery(&old[0], &clock, &rule, None)
        .unwrap_err();
    assert!(
        why.contains("0 like days") && why.contains("no plan was active when it was taken"),
        "{why}"
    );
    let why = st
        .grid_request_delivery(&new, &clock, &rule, None)
        .unwrap_err();
    assert!(why.contains("plan #3 is no longer kept"), "{why}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// What a publisher sends next (the fleet's edge): the closed records after the last one sent,
/// in time order, up to the running interval's checkpoint; the events after the last id.
#[test]
fn a_publisher_reads_the_closed_records_and_the_events_after_its_cursor() {
    let path = temp_db("after");
    let mut st = Store::open(&path).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
    let rec = |k: i64| IntervalRecord {
        start: t0 + Duration::minutes(15 * k),
        load_kwh: 10.0,
        grid_import_kwh: 10.0,
        ..Default::default()
    };
    st.put_records(&[rec(0), rec(1)], "measured").unwrap();
    st.put_records(&[rec(2)], "running").unwrap();
    st.put_records(&[rec(3)], "measured").unwrap();
    let starts = |st: &Store, after: Option<DateTime<Utc>>| -> Vec<DateTime<Utc>> {
        st.closed_records_after(after, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.record.start)
            .collect()
    };
    // Not past the running checkpoint: what follows it waits until it is closed.
    assert_eq!(starts(&st, None), [rec(0).start, rec(1).start]);
    assert_eq!(starts(&st, Some(rec(0).start)), [rec(1).start]);
    assert_eq!(starts(&st, Some(rec(1).start)), Vec::<DateTime<Utc>>::new());
    st.put_records(&[rec(2)], "measured-partial").unwrap();
    assert_eq!(
        starts(&st, Some(rec(1).start)),
        [rec(2).start, rec(3).start]
    );
    assert_eq!(st.closed_records_after(None, 1).unwrap().len(), 1);
    for m in ["a", "b", "c"] {
        st.event(t0, "info", "test", m).unwrap();
    }
    let all = st.events_after(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let rest = st.events_after(all[0].id, 1).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].message, "b");
    // Plans as they are activated: a plan made active again after another was is a new
    // activation; one made active while it is already is not.
    let a = st.put_plan(t0, "2026-06-21", "optimized", "{}").unwrap();
    let b = st.put_plan(t0, "2026-06-21", "rule", "{}").unwrap();
    st.activate_plan(a).unwrap();
    st.activate_plan(a).unwrap();
    st.activate_plan(b).unwrap();
    st.activate_plan(a).unwrap();
    let acts = st.activations_after(0, 10).unwrap();
    assert_eq!(
        acts.iter().map(|(_, p, _)| p.id).collect::<Vec<_>>(),
        [a, b, a]
    );
    assert_eq!(st.activations_after(acts[1].0, 10).unwrap().len(), 1);
    let _ = std::fs::remove_file(&path);
}
