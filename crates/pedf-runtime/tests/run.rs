//! `run` end to end against simulated devices: Modbus (SunSpec PV inverter and battery, a
//! template meter) and MQTT (a charger and a DC load through a real Mosquitto). The controller
//! writes setpoints through safe control, the store fills, and shutdown leaves every device in
//! its safe state.

#[path = "support/plans.rs"]
mod plans;
#[path = "support/ports.rs"]
mod ports;

use std::time::Duration;

use chrono::Utc;
use pedf_runtime::run::{run, RunConfig};
use pedf_sim_devices::park::SimPark;
use pedf_store::Store;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The instant the EMS's clock starts from in the tests that set it: 10:05 local (UTC+8) on
/// 21 June 2026.
fn ems_origin() -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 6, 21, 2, 5, 0).unwrap()
}

/// A simulated park (PV 300 kW, battery at 60 %, grid meter at 100 kW import) in a fresh
/// folder named after the test, with a run file for it (cycle 200 ms).
async fn sim_park(name: &str) -> (std::path::PathBuf, SimPark, RunConfig) {
    let dir = std::env::temp_dir().join(format!("pedf-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = SimPark::start(
        &dir,
        std::path::Path::new(&format!("{ROOT}/config/devices/templates")),
        300.0,
        60.0,
        100.0,
    )
    .await
    .expect("simulated park");
    std::fs::write(
        dir.join("run.toml"),
        format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n"),
    )
    .unwrap();
    let cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    (dir, sim, cfg)
}

/// A local time of the park (UTC+8), `YYYY-MM-DD HH:MM`.
fn local(s: &str) -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// The Python of the outside test peers' venv (scripts/setup makes it).
fn peers_python() -> std::path::PathBuf {
    let python = std::path::Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        python.display()
    );
    python
}

/// Runs the EMS until its live state satisfies `until` (or `secs` pass), then stops it
/// cleanly; returns the run's summary and the live state that satisfied it.
async fn run_until(
    cfg: RunConfig,
    secs: u64,
    until: impl Fn(&pedf_runtime::live::Live) -> bool + Send + Sync + 'static,
) -> (
    pedf_runtime::run::RunSummary,
    Option<std::sync::Arc<pedf_runtime::live::Live>>,
) {
    use pedf_runtime::run::{run_with, RunIo};
    let (live_tx, mut live_rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(pedf_runtime::live::Live::default()));
    let io = RunIo {
        live: Some(live_tx),
        ..RunIo::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let wait = async {
            while live_rx.changed().await.is_ok() {
                let l = live_rx.borrow_and_update().clone();
                if until(&l) {
                    return Some(l);
                }
            }
            None
        };
        let seen = tokio::time::timeout(Duration::from_secs(secs), wait)
            .await
            .ok()
            .flatten();
        let _ = tx.send(());
        seen
    });
    let summary = run_with(cfg, io, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    (summary, watcher.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_simulated_devices_and_stops_safely() {
    let (dir, sim, cfg) = sim_park("basic").await;
    let storage = sim.storage_addr;
    let summary = run(cfg, tokio::time::sleep(Duration::from_millis(3000)))
        .await
        .unwrap();
    assert!(summary.cycles >= 10, "{summary:?}");
    assert!(summary.samples > 0 && summary.setpoints > 0, "{summary:?}");

    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let t0 = Utc::now() - chrono::Duration::minutes(5);
    let pv_samples = st.samples("pv-roof-a", "power_kw", t0, Utc::now()).unwrap();
    assert!(!pv_samples.is_empty() && pv_samples.iter().all(|s| s.value == 300.0));
    assert!(st.audit_count().unwrap() > 0);
    // 1-minute aggregates of the good samples (the last minute is made at shutdown).
    let aggs = st
        .aggregates(
            "pv-roof-a",
            "power_kw",
            t0,
            Utc::now() + chrono::Duration::minutes(1),
        )
        .unwrap();
    assert!(
        !aggs.is_empty() && aggs.iter().all(|a| a.mean == 300.0 && a.count > 0),
        "{aggs:?}"
    );
    let events = st
        .events(t0, Utc::now() + chrono::Duration::minutes(1))
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.3.contains("devices in their safe state")),
        "{events:?}"
    );
    // Shutdown left the battery at 0 kW (OutWRte = InWRte = 0) and the charger at its minimum.
    let rates = sim
        .modbus
        .with_bank(pedf_sim_devices::park::BATTERY_UNIT, |b| {
            b.holding[usize::from(storage) + 10..usize::from(storage) + 12].to_vec()
        });
    assert_eq!(rates, vec![0, 0]);
    let mut ev = f64::NAN;
    for _ in 0..40 {
        ev = *sim.charger.power_kw.lock().unwrap();
        if ev == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ev, 0.0, "charger at its minimum (0 kW for this template)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_control_goes_on() {
    use pedf_runtime::run::{run_with, RunIo};
    use std::sync::Arc;
    let (dir, sim, cfg) = sim_park("full").await;
    // The store exists with its schema; then the "disk" has room for a few more pages only.
    let pages = Store::open(&dir.join("pedf.sqlite"))
        .unwrap()
        .page_count_for_test();
    let (live_tx, mut live_rx) =
        tokio::sync::watch::channel(Arc::new(pedf_runtime::live::Live::default()));
    let io = RunIo {
        live: Some(live_tx),
        store_max_pages_for_test: Some(pages + 3),
        ..RunIo::default()
    };
    // The run stops 6 cycles after the full disk is reported (or after 60 s without it).
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut full_seen_at_cycle = None;
        let mut last_cycle = 0;
        let watch = async {
            while live_rx.changed().await.is_ok() {
                let l = live_rx.borrow_and_update().clone();
                last_cycle = l.cycle;
                if full_seen_at_cycle.is_none()
                    && l.faults.iter().any(|f| f.contains("the disk is full"))
                {
                    full_seen_at_cycle = Some(l.cycle);
                }
                if full_seen_at_cycle.is_some_and(|f| last_cycle >= f + 6) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(60), watch).await;
        let _ = stop_tx.send(());
        (full_seen_at_cycle, last_cycle)
    });
    let summary = run_with(cfg, io, async {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    let (full_at, last) = watcher.await.unwrap();
    let full_at = full_at.expect("the full disk was never reported");
    assert!(
        last >= full_at + 5,
        "control stopped after the disk filled: {full_at} .. {last}"
    );
    // Setpoints kept being written and the shutdown still reached the safe state.
    assert!(
        summary.setpoints > 0 && summary.not_made_safe.is_empty(),
        "{summary:?}"
    );
    let rates = sim
        .modbus
        .with_bank(pedf_sim_devices::park::BATTERY_UNIT, |b| {
            b.holding[usize::from(sim.storage_addr) + 10..usize::from(sim.storage_addr) + 12]
                .to_vec()
        });
    assert_eq!(rates, vec![0, 0]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// EV sessions in the running EMS: the simulated charger reports a car (state 1/2), the run
/// opens a session with the park's default (30 kWh in 8 h) and says so; when the car is
/// unplugged (state 0) the session is closed with what it got. Waits for each event in the
/// store with a deadline, never for a fixed time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_car_arrives_and_leaves() {
    let (dir, sim, mut cfg) = sim_park("ev").await;
    // The EMS on its own clock from a fixed instant (10:05 local on 21 June 2026): nothing
    // depends on today's date.
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let db = dir.join("pedf.sqlite");
    let present = sim.charger.present.clone();
    let wait_for = move |text: &'static str| {
        let db = db.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(st) = Store::open(&db) {
                    let t0 = ems_origin() - chrono::Duration::hours(1);
                    let events = st
                        .events(t0, ems_origin() + chrono::Duration::hours(1))
                        .unwrap_or_default();
                    if let Some(e) = events.iter().find(|e| e.3.contains(text)) {
                        return Some(e.3.clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let driver = tokio::spawn(async move {
        let arrived = wait_for("car on ev-01").await;
        present.store(false, std::sync::atomic::Ordering::Relaxed);
        let left = wait_for("car left ev-01").await;
        let _ = tx.send(());
        (arrived, left)
    });
    run(cfg, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let (arrived, left) = driver.await.unwrap();
    let arrived = arrived.expect("an arrival event within 20 s");
    assert!(arrived.contains("asks 30.0 kWh by"), "{arrived}");
    let left = left.expect("a departure event within 20 s");
    assert!(left.contains("of 30.0 kWh"), "{left}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A car plugged in but not drawing yet (charger state 1 at 0 kW), with no plan for the day:
/// the EMS lets it charge, at the session's power within the park's limits, as the charger
/// would without an EMS. (It once took what the charger drew as the car's wish, so a car
/// first seen at 0 kW was held at 0 kW.) Waits for the live view with a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_car_first_seen_at_zero_kw_is_let_charge_without_a_plan() {
    let (dir, sim, mut cfg) = sim_park("ev-zero").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    *sim.charger.power_kw.lock().unwrap() = 0.0;
    let (_, seen) = run_until(cfg, 30, |l| {
        l.chargers.iter().any(|c| {
            c.id == "ev-01"
                && c.session.is_some()
                && c.setpoint_kw.is_some_and(|kw| kw > 1.0)
                && c.kw.is_some_and(|kw| kw > 1.0)
        })
    })
    .await;
    seen.expect("ev-01 charging within 30 s of its car being seen at 0 kW");
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plan that sheds 30 kW of the curtailable HVAC (drawing 120 kW, 30 % sheddable): the run
/// caps it at 90 kW and says so. Waits for the command with a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_shed_caps_the_curtailable_load() {
    let (dir, sim, mut cfg) = sim_park("shed").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let park = pedf_core::config::load_park(
        "park",
        &std::fs::read(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap(),
    )
    .value
    .unwrap();
    // A real plan of the day (as the store keeps plans), whose EMS interval and the next (the
    // test may cross a boundary) shed 30 kW at 100 kW of import.
    let now = ems_origin();
    let t0 = park.clock.interval_start(now);
    let day = park.clock.local(now).date_naive();
    let mut plan = plans::example_rule_plan(&park, ROOT, day);
    for i in plan.intervals.iter_mut().filter(|i| {
        let s = i.start.with_timezone(&Utc);
        s == t0 || s == t0 + park.clock.interval.duration()
    }) {
        i.grid_import_kw = 100.0;
        i.grid_export_kw = 0.0;
        i.battery_charge_kw = 0.0;
        i.ev_chargers.clear();
        i.flexible_loads.clear();
        i.load_shed_kw = 30.0;
    }
    let plan = serde_json::to_value(&plan).unwrap();
    {
        let mut st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        let day = park.clock.local(now).date_naive().to_string();
        let id = st.put_plan(now, &day, "test", &plan.to_string()).unwrap();
        st.activate_plan(id).unwrap();
    }
    let command = sim.load.command_kw.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            let c = *command.lock().unwrap();
            if c.is_some_and(|c| (c - 90.0).abs() < 1e-6) {
                seen = c;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.send(());
        seen
    });
    run(cfg, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    assert_eq!(
        watcher.await.unwrap(),
        Some(90.0),
        "the HVAC was never capped at 90 kW: {:?}",
        st.recent_audit(500)
            .unwrap()
            .into_iter()
            .filter(|a| a.device == "hvac")
            .collect::<Vec<_>>()
    );
    let events = st
        .events(
            now - chrono::Duration::minutes(1),
            now + chrono::Duration::hours(1),
        )
        .unwrap();
    assert!(
        events.iter().any(|e| e
            .3
            .contains("hvac capped at 90.0 kW: 30.0 kW of its demand shed (plan)")),
        "{events:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two batteries (the reference park with a second `bess-2` like `bess-1`), a manual setpoint
/// of 400 kW for the park (which the controller may trim for the grid rules): each battery is
/// asked its share (half each, both able), not the park's whole setpoint each; one that cannot
/// discharge (below its SoC minimum) is asked nothing and the other takes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batteries_share_the_parks_setpoint() {
    use pedf_core::live::Mode;
    use pedf_runtime::run::{run_with, RunIo};
    for (socs, _want) in [([60.0, 60.0], [200.0, 200.0]), ([60.0, 8.0], [400.0, 0.0])] {
        let dir = std::env::temp_dir().join(format!(
            "pedf-run-two-batteries-{}-{}",
            socs[1],
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let sim = SimPark::start_with_batteries(
            &dir,
            std::path::Path::new(&format!("{ROOT}/config/devices/templates")),
            300.0,
            &socs,
            100.0,
        )
        .await
        .expect("simulated park");
        let park = std::fs::read_to_string(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap();
        let first = park.find("[[battery]]").unwrap();
        let block_end = first + park[first..].find("\n\n").unwrap();
        let second = park[first..block_end].replace("id = \"bess-1\"", "id = \"bess-2\"");
        let two = format!("{}\n\n{second}{}", &park[..block_end], &park[block_end..]);
        std::fs::write(dir.join("park.toml"), two).unwrap();
        std::fs::write(
            dir.join("run.toml"),
            "park = \"park.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n",
        )
        .unwrap();
        let cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
        let (_mode_tx, mode_rx) = tokio::sync::watch::channel(Mode::Manual { battery_kw: 400.0 });
        let (live_tx, mut live_rx) =
            tokio::sync::watch::channel(std::sync::Arc::new(pedf_runtime::live::Live::default()));
        let io = RunIo {
            mode: Some(mode_rx),
            live: Some(live_tx),
            ..RunIo::default()
        };
        // Stops after ten cycles with both batteries read (waited for, with a deadline), not
        // after a time: a slow machine runs as many cycles.
        let ten_cycles = async move {
            let wait = async {
                while live_rx.changed().await.is_ok() {
                    let l = live_rx.borrow_and_update().clone();
                    if l.cycle >= 10 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), wait).await;
        };
        run_with(cfg, io, ten_cycles).await.unwrap();
        let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        let audit = st.recent_audit(500).unwrap();
        // The newest five setpoints of each (the first cycles may have read one battery
        // before the other).
        let asked = |battery: &str| -> Vec<f64> {
            audit
                .iter()
                .filter(|a| a.device == battery && a.reason.contains("manual"))
                .take(5)
                .map(|a| a.requested.unwrap_or(f64::NAN))
                .collect()
        };
        let (one, two) = (asked("bess-1"), asked("bess-2"));
        assert!(!one.is_empty(), "no setpoint for bess-1: {audit:?}");
        // The park's setpoint: 400 kW, or a little less where the controller trimmed it.
        let park_kw = |kw: f64| kw > 300.0 && kw <= 400.0 + 1e-9;
        if socs[1] > 10.0 {
            assert_eq!(one, two, "equal batteries, equal shares");
            assert!(
                one.iter().all(|kw| park_kw(2.0 * kw)),
                "each asked {one:?}: not half the park's setpoint"
            );
        } else {
            assert!(one.iter().all(|kw| park_kw(*kw)), "bess-1 asked {one:?}");
            assert!(
                two.iter().all(|kw| *kw == 0.0),
                "bess-2 below its minimum asked {two:?}"
            );
        }
        drop(sim);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// An active plan this version cannot read (a hand-made or older JSON) is a fault the live
/// state names, and the controller runs without a plan rather than on a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_active_plan_is_a_named_fault() {
    use pedf_runtime::run::{run_with, RunIo};
    let (dir, _sim, mut cfg) = sim_park("bad-plan").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    {
        let mut st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        let id = st
            .put_plan(ems_origin(), "2026-06-21", "test", r#"{"intervals": []}"#)
            .unwrap();
        st.activate_plan(id).unwrap();
    }
    let (live_tx, mut live_rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(pedf_runtime::live::Live::default()));
    let io = RunIo {
        live: Some(live_tx),
        ..RunIo::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let wait = async {
            while live_rx.changed().await.is_ok() {
                let l = live_rx.borrow_and_update().clone();
                if let Some(f) = l.faults.iter().find(|f| f.contains("cannot be read")) {
                    return Some((f.clone(), l.strategy.clone()));
                }
            }
            None
        };
        let seen = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .ok()
            .flatten();
        let _ = tx.send(());
        seen
    });
    run_with(cfg, io, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let (fault, strategy) = watcher.await.unwrap().expect("the fault was never shown");
    eprintln!("fault shown: {fault}");
    assert!(
        fault.starts_with("plan #1 (test) cannot be read"),
        "{fault}"
    );
    assert!(!strategy.starts_with("plan #"), "followed {strategy}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A device that accepts the connection and never answers (a 60 s link timeout) does not delay
/// the cycle: it is read and written in its own unit, and the cycle runs on at its period with
/// the other devices good. Before units the first cycle waited the whole timeout on its poll.
/// The run stops after 15 cycles (waited for with a deadline far beyond 15 x 200 ms, far below
/// the 60 s the old cycle needed for one), and shutdown does not wait on the silent device:
/// it is listed as not made safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_answers_does_not_delay_the_cycle() {
    let (dir, _sim, mut cfg) = sim_park("silent").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    // A listener that takes connections and reads nothing back.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let devices = std::fs::read_to_string(dir.join("devices.toml")).unwrap();
    std::fs::write(
        dir.join("devices.toml"),
        format!(
            "{devices}\n[[connection]]\nid = \"silent\"\nkind = \"tcp\"\naddress = \"{silent_addr}\"\ntimeout_ms = 60000\n\n[[device]]\nid = \"pv-silent\"\ncapability = \"pv-inverter\"\nconnection = \"silent\"\nunit_id = 1\nsunspec = true\npoll_ms = 200\nstale_after_ms = 2000\n"
        ),
    )
    .unwrap();
    let (summary, live) = run_until(cfg, 30, |l| l.cycle >= 15).await;
    let live = live.expect("the cycle stalled on the device that never answers");
    let quality = |id: &str| {
        live.devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.quality.clone())
    };
    assert_eq!(quality("pv-silent").as_deref(), Some("none"));
    assert_eq!(quality("pv-roof-a").as_deref(), Some("good"));
    // The park's PV is unknown while one inverter is silent (never the answering one's 300 kW
    // as if it were all), and the silent one is an alarm.
    assert_eq!(live.flows.pv_kw, None);
    assert!(
        live.alarms
            .iter()
            .any(|a| a.starts_with("pv-silent (pv-inverter) not answering")),
        "{:?}",
        live.alarms
    );
    assert_eq!(summary.not_made_safe, vec!["pv-silent".to_string()]);
    held.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run killed mid-interval (its task dropped: no shutdown code runs, as with kill -9)
/// keeps the running interval's energy in the store to its last checkpoint (every 10 cycles);
/// the next run says the last one did not stop cleanly, resumes the interval from the
/// checkpoint, and stores it as measured-partial. (After a kill -9 the interval once held
/// half its PV, labelled `measured`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_keeps_its_interval_to_the_last_checkpoint() {
    use pedf_runtime::run::{run_with, RunIo};
    let (dir, _sim, mut cfg) = sim_park("killed").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let (live_tx, mut live_rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(pedf_runtime::live::Live::default()));
    let io = RunIo {
        live: Some(live_tx),
        ..RunIo::default()
    };
    let first = tokio::spawn(run_with(cfg.clone(), io, std::future::pending::<()>()));
    // Past two checkpoints (cycles 10 and 20), with PV integrated.
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            live_rx.changed().await.unwrap();
            let l = live_rx.borrow_and_update().clone();
            if l.cycle >= 25 {
                return l;
            }
        }
    })
    .await
    .expect("the first run never reached 25 cycles");
    first.abort();
    let _ = first.await;
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let records = st
        .records(
            ems_origin() - chrono::Duration::hours(1),
            ems_origin() + chrono::Duration::hours(1),
        )
        .unwrap();
    let (checkpoint, source) = records.last().cloned().expect("a checkpoint");
    assert_eq!(source, "running");
    // The checkpoint says how much of its 15-minute interval was observed: at most the
    // cycles run so far, 200 ms each.
    let observed_at_kill = st
        .stored_records(
            checkpoint.start,
            checkpoint.start + chrono::Duration::minutes(15),
        )
        .unwrap()[0]
        .observed
        .expect("the checkpoint's observed share");
    assert!(
        observed_at_kill > 0.0 && observed_at_kill <= seen.cycle as f64 * 0.2 / 900.0 + 1e-9,
        "{observed_at_kill} after {} cycles",
        seen.cycle
    );
    // Within one checkpoint (10 cycles of 200 ms at 300 kW) and the few cycles to the kill of
    // what the run had integrated.
    let per_cycle = 300.0 * 0.2 / 3600.0;
    assert!(checkpoint.pv_kwh > 0.0);
    assert!(
        seen.today.pv_kwh - checkpoint.pv_kwh <= 16.0 * per_cycle,
        "{} kWh integrated, {} kWh checkpointed",
        seen.today.pv_kwh,
        checkpoint.pv_kwh
    );
    drop(st);

    // The next run (another MQTT client id: the killed run's tasks are still about).
    cfg.mqtt_client_id = "pedf-ems-after-kill".into();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    run_until(cfg, 60, |l| l.cycle >= 5).await;
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let events = st
        .events(
            ems_origin() - chrono::Duration::hours(1),
            ems_origin() + chrono::Duration::hours(1),
        )
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.1 == "warning" && e.3.starts_with("the last run did not stop cleanly")),
        "{events:?}"
    );
    let records = st
        .records(
            ems_origin() - chrono::Duration::hours(1),
            ems_origin() + chrono::Duration::hours(1),
        )
        .unwrap();
    let (resumed, source) = records.last().cloned().unwrap();
    assert_eq!(resumed.start, checkpoint.start);
    assert_eq!(source, "measured-partial");
    assert!(
        resumed.pv_kwh >= checkpoint.pv_kwh,
        "{} < {}",
        resumed.pv_kwh,
        checkpoint.pv_kwh
    );
    // Its coverage says what was observed: the first run's to its checkpoint and the
    // second's, never the time between.
    let observed = st
        .stored_records(resumed.start, resumed.start + chrono::Duration::minutes(15))
        .unwrap()[0]
        .observed
        .expect("the record's observed share");
    assert!(
        observed > observed_at_kill && observed < 0.5,
        "{observed_at_kill} at the kill, {observed} after the second run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An InfluxDB sink whose server is out of reach is shown in the live state (not connected,
/// its backlog) and as a fault, while control goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_influxdb_is_shown_live() {
    let (dir, _sim, _) = sim_park("influx-down").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = std::fs::read_to_string(dir.join("run.toml")).unwrap();
    std::fs::write(
        dir.join("run.toml"),
        format!("{run}\n[influx]\nurl = \"http://127.0.0.1:{port}\"\norg = \"pedf\"\nbucket = \"park\"\nbuffer_dir = \"influx-buffer\"\nflush_ms = 100\nbatch_lines = 50\n"),
    )
    .unwrap();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let (_, live) = run_until(cfg, 60, |l| {
        l.influx.as_ref().is_some_and(|k| k.buffered_segments > 0)
            && l.faults
                .iter()
                .any(|f| f.starts_with("InfluxDB not reachable"))
    })
    .await;
    let live = live.expect("the sink's trouble never showed");
    let k = live.influx.clone().unwrap();
    assert!(!k.connected && k.last_error.is_some(), "{k:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cycle runs on a runtime of its own: with every worker of the caller's runtime (the
/// server's: requests, streams) held busy, the cycle goes on storing samples. (It shared the
/// server's workers: two long requests stalled it for seconds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cycle_goes_on_while_the_servers_runtime_is_busy() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (dir, _sim, mut cfg) = sim_park("apart").await;
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let store = dir.join("pedf.sqlite");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(pedf_runtime::ems::run_apart(
        cfg,
        pedf_runtime::run::RunIo::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let samples = move || {
        Store::open(&store)
            .and_then(|s| s.sample_count())
            .unwrap_or(0)
    };
    // Cycles are storing samples (watched from the blocking pool, not a worker).
    let s0 = tokio::task::spawn_blocking({
        let samples = samples.clone();
        move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let n = samples();
                if n > 0 || std::time::Instant::now() > deadline {
                    return n;
                }
                std::thread::yield_now();
            }
        }
    })
    .await
    .unwrap();
    assert!(s0 > 0, "the cycle never stored a sample");
    // Both workers held busy until the cycle has stored more.
    let release = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let release = release.clone();
            tokio::spawn(async move {
                while !release.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let watcher = std::thread::spawn({
        let release = release.clone();
        move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut grew = false;
            while std::time::Instant::now() < deadline {
                if samples() >= s0 + 20 {
                    grew = true;
                    break;
                }
                std::thread::yield_now();
            }
            release.store(true, Ordering::Relaxed);
            grew
        }
    });
    for b in busy {
        b.await.unwrap();
    }
    assert!(
        watcher.join().unwrap(),
        "the cycle stopped while the caller's runtime was busy"
    );
    let _ = stop_tx.send(());
    let summary = run.await.unwrap().unwrap();
    assert!(summary.cycles > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An OCPP 1.6J charger (the `ocpp` package's charge point, pinned in the outside peers'
/// venv) as one of the running EMS's devices: the run file's `[ocpp]` says where the central
/// system listens and which charger and connector the device list's `ev-02` is; the charger
/// connects, boots and starts a transaction, its meter values become the live state's charger
/// power, and the controller's setpoints reach it as charging profiles above its safe default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocpp_charger_is_a_device_of_the_running_ems() {
    let (dir, _sim, _) = sim_park("ocpp").await;
    let python = peers_python();
    let port = ports::free_port();
    let mut devices = std::fs::read_to_string(dir.join("devices.toml")).unwrap();
    devices.push_str("\n[[connection]]\nid = \"chargers\"\nkind = \"ocpp\"\n\n[[device]]\nid = \"ev-02\"\ncapability = \"ev-charger\"\nasset = \"ev-02\"\nconnection = \"chargers\"\nstale_after_ms = 5000\n");
    std::fs::write(dir.join("devices.toml"), devices).unwrap();
    let password = "pw-0123456789abcdef";
    std::fs::write(
        dir.join("run.toml"),
        format!(
            "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n\n[ocpp]\nlisten = \"127.0.0.1:{port}\"\nid_tags = [\"TAG-0001\"]\n\n[[ocpp.charger]]\nidentity = \"CP-02\"\npassword_sha256 = \"{}\"\nunit = \"A\"\nsafe_kw = 4.1\nconnectors = [{{ connector = 1, device = \"ev-02\" }}]\n",
            pedf_devices::ocpp::password_hash(password)
        ),
    )
    .unwrap();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    // The charger connects once the EMS listens (waited for with a deadline).
    let peer = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the EMS never listened for OCPP"
            );
            std::thread::yield_now();
        }
        std::process::Command::new(python)
            .arg(std::path::Path::new(ROOT).join("tests/peers/ocpp_cp16.py"))
            .args([
                &format!("ws://127.0.0.1:{port}/ocpp"),
                "CP-02",
                password,
                "charge",
            ])
            .output()
            .expect("the OCPP peer runs")
    });
    // Seen charging as a session of the park (its meter's energy), given setpoints by the
    // controller, then free: the run stops once the car has left.
    let flags = std::sync::Arc::new([
        std::sync::atomic::AtomicBool::new(false),
        std::sync::atomic::AtomicBool::new(false),
    ]);
    let f = flags.clone();
    let (summary, seen) = run_until(cfg, 40, move |l| {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(ev) = l.chargers.iter().find(|c| c.id == "ev-02") else {
            return false;
        };
        // The meter's energy in the session (how much power the controller then allows
        // depends on when the session starts against the first reading: not asserted).
        if ev.kw.is_some() && ev.session.as_ref().is_some_and(|s| s.delivered_kwh > 0.0) {
            f[0].store(true, Relaxed);
        }
        if ev.session.is_some() && ev.setpoint_kw.is_some() {
            f[1].store(true, Relaxed);
        }
        f[0].load(Relaxed) && f[1].load(Relaxed) && ev.session.is_none()
    })
    .await;
    let flag = |i: usize| flags[i].load(std::sync::atomic::Ordering::Relaxed);
    let out = peer.await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        flag(0),
        "ev-02's meter never seen in a session; the charger said:\n{said}"
    );
    assert!(
        flag(1),
        "ev-02 never given a setpoint; the charger said:\n{said}"
    );
    seen.expect("ev-02 free again after its car left, within 40 s");
    let lines: Vec<serde_json::Value> = said
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let profiles: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["event"] == "profile").collect();
    // The safe default at boot, then the EMS's limits above it.
    assert_eq!(
        profiles.first().map(|p| p["stack"].clone()),
        Some(0.into()),
        "{said}"
    );
    assert!(
        profiles
            .iter()
            .any(|p| p["stack"] == 1 && p["purpose"] == "TxProfile"),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.iter().any(|v| v["event"] == "done"), "{said}");
    assert!(summary.setpoints > 0);
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let events = st
        .events(
            ems_origin() - chrono::Duration::hours(1),
            ems_origin() + chrono::Duration::hours(1),
        )
        .unwrap();
    let text: Vec<&str> = events.iter().map(|e| e.3.as_str()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("charger CP-02 connected (ocpp1.6)")),
        "{text:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DL/T 645-2007 billing meter (the `dlt645` package's meter, pinned in the outside peers'
/// venv, behind a TCP serial gateway) as one of the running EMS's devices: its registers, in
/// their fields with the transformer ratio applied, stored as samples like any device's; as
/// a meter of another asset than `grid` it is not taken for the grid meter (the park's flows
/// stay the simulated Modbus meter's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlt645_billing_meter_is_a_device_of_the_running_ems() {
    let (dir, _sim, _) = sim_park("dlt645").await;
    let python = peers_python();
    let port = ports::free_port();
    let mut meter = std::process::Command::new(python)
        .arg(std::path::Path::new(ROOT).join("tests/peers/dlt645_meter.py"))
        .args([&port.to_string(), "000012345678", "static"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the DL/T 645 meter runs");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(meter.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("ready"), "{line}");
    }
    let mut devices = std::fs::read_to_string(dir.join("devices.toml")).unwrap();
    devices.push_str(&format!("\n[[connection]]\nid = \"rs485\"\nkind = \"dlt645-tcp\"\naddress = \"127.0.0.1:{port}\"\n\n[[device]]\nid = \"billing\"\ncapability = \"meter\"\nasset = \"grid-billing\"\nconnection = \"rs485\"\nmeter_address = \"000012345678\"\nct_ratio = 40\npoll_ms = 500\nstale_after_ms = 5000\n"));
    std::fs::write(dir.join("devices.toml"), devices).unwrap();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let (summary, seen) = run_until(cfg, 30, |l| {
        l.devices
            .iter()
            .any(|d| d.id == "billing" && d.quality == "good")
    })
    .await;
    let seen = seen.expect("the billing meter read good within 30 s");
    // The grid's flows are the grid meter's (asset `grid`), not the billing meter's export.
    assert!(
        seen.flows
            .grid_kw
            .is_some_and(|g| (g - -12.3456 * 40.0).abs() > 1.0),
        "{:?}",
        seen.flows
    );
    let _ = meter.kill();
    let _ = meter.wait();
    assert!(summary.samples > 0, "{summary:?}");
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let t0 = ems_origin() - chrono::Duration::hours(1);
    let t1 = ems_origin() + chrono::Duration::hours(1);
    let got = |field: &str| {
        st.samples("billing", field, t0, t1)
            .unwrap()
            .last()
            .map(|s| s.value)
    };
    let close = |field: &str, want: f64| {
        let v = got(field).unwrap_or_else(|| panic!("no {field} sample"));
        assert!((v - want).abs() < 1e-6, "{field}: {v} for {want}");
    };
    close("import_kwh", 12345.67 * 40.0);
    close("export_kwh", 89.01 * 40.0);
    close("import_kwh_valley", 2345.01 * 40.0);
    close("power_kw", -12.3456 * 40.0);
    close("voltage_v", 230.1);
    close("max_demand_kw", 45.6789 * 40.0);
}

/// The grid's master (the `c104` package's, on lib60870, pinned in the outside peers' venv)
/// over IEC 60870-5-104 to the running EMS: it interrogates the park (its grid power and the
/// park's own import limit), sets an import limit (selected, then executed) that the station
/// reports in force from the next cycles, is refused one above the park's own, and releases
/// the limit by setting the park's own; each said in an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grids_master_sets_the_parks_import_limit_over_iec104() {
    let (dir, _sim, port) = iec104_park(
        "iec104",
        "[[measurement]]\nname = \"grid_kw\"\nioa = 1001\ndeadband = 1\n\n[[measurement]]\nname = \"import_limit_kw\"\nioa = 1009\n\n[[single]]\nname = \"grid_limit_active\"\nioa = 2004\n\n[[setpoint]]\nname = \"import_limit_kw\"\nioa = 3001\nselect_before_operate = true\n",
    )
    .await;
    let python = peers_python();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let master = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Write};
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the EMS never listened for IEC 104"
            );
            std::thread::yield_now();
        }
        let mut child = std::process::Command::new(python)
            // A crash of the C library under it says where (Python's fault handler).
            .args(["-X", "faulthandler"])
            .arg(std::path::Path::new(ROOT).join("tests/peers/iec104_master.py"))
            .args(["127.0.0.1", &port.to_string(), "7"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the c104 master runs");
        let mut stdin = child.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut said = Vec::new();
        let mut ask = |what: serde_json::Value| {
            if !what.is_null() {
                writeln!(stdin, "{what}").unwrap();
                stdin.flush().unwrap();
            }
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            said.push(v.clone());
            v
        };
        assert_eq!(ask(serde_json::Value::Null)["ok"], true, "connected");
        assert_eq!(ask(serde_json::json!({"do": "interrogate"}))["ok"], true);
        let points = ask(serde_json::json!({"do": "points"}));
        let value = |ioa: u64| {
            points["points"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["ioa"] == ioa)
                .map(|p| p["value"].clone())
        };
        let own = value(1009)
            .and_then(|v| v.as_f64())
            .expect("the park's import limit");
        assert_eq!(value(2004), Some(serde_json::json!(false)));
        let set = |v: f64| serde_json::json!({"do": "set", "ioa": 3001, "value": v, "sbo": true});
        let capped = ask(set(20.0))["ok"].clone();
        let limit_seen = ask(
            serde_json::json!({"do": "wait", "ioa": 1009, "near": 20.0, "within": 0.01, "seconds": 10}),
        )["ok"]
            == true;
        // The station says a grid limit holds (waited for, not slept).
        let active = ask(serde_json::json!({"do": "wait", "ioa": 2004, "near": 1.0, "within": 0.01, "seconds": 10}))["ok"].clone();
        let above = ask(set(own + 500.0))["ok"].clone();
        let released = ask(set(own))["ok"].clone();
        let back = ask(serde_json::json!({"do": "wait", "ioa": 1009, "near": own, "within": 0.01, "seconds": 10}))["ok"].clone();
        let _ = writeln!(stdin, "{}", serde_json::json!({"do": "quit"}));
        let _ = child.wait();
        d.store(true, std::sync::atomic::Ordering::Relaxed);
        (
            own,
            capped,
            limit_seen && active == true,
            above,
            released,
            back,
            said,
        )
    });
    let (summary, _) = run_until(cfg, 60, move |_| {
        done.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    let (own, capped, limit_seen, above, released, back, said) = master.await.unwrap();
    assert!(own > 20.0, "{own}");
    assert_eq!(capped, true, "{said:?}");
    assert!(limit_seen, "{said:?}");
    assert_eq!(above, false, "{said:?}");
    assert_eq!(released, true, "{said:?}");
    assert_eq!(back, true, "{said:?}");
    assert!(summary.cycles > 0);
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let events = st.recent_events(200).unwrap();
    let text: Vec<String> = events.iter().map(|e| e.3.clone()).collect();
    let all = text.join("\n");
    for want in [
        "set the import limit to 20.0 kW: held from this cycle",
        "refused, ",
        "released the import limit",
    ] {
        assert!(all.contains(want), "`{want}` in {all}");
    }
    // Whether the park's power follows is the demo's to show (this park's meter is a fixed
    // 100 kW, no physics answers it): `demo_cli`.
}

/// A simulated park named `name` whose run file has `[iec104]` on a free loopback port
/// (common address 7, the master on this host, the point map `points`): its folder, the park
/// and the port.
async fn iec104_park(name: &str, points: &str) -> (std::path::PathBuf, SimPark, u16) {
    let (dir, sim, _) = sim_park(name).await;
    let port = ports::free_port();
    std::fs::write(dir.join("points.toml"), points).unwrap();
    let mut run = std::fs::read_to_string(dir.join("run.toml")).unwrap();
    run.push_str(&format!("\n[iec104]\nlisten = \"127.0.0.1:{port}\"\ncommon_address = 7\nmasters = [\"127.0.0.1\"]\npoints = \"points.toml\"\n"));
    std::fs::write(dir.join("run.toml"), run).unwrap();
    (dir, sim, port)
}

/// The c104 master on `port` (common address `ca`), once the station listens: it does each
/// of `asks` in turn and says what each answered (the connection first).
fn c104_master(port: u16, ca: u16, asks: &[serde_json::Value]) -> Vec<serde_json::Value> {
    use std::io::{BufRead, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the EMS never listened for IEC 104"
        );
        std::thread::yield_now();
    }
    let mut child = std::process::Command::new(peers_python())
        // A crash of the C library under it says where (Python's fault handler).
        .args(["-X", "faulthandler"])
        .arg(std::path::Path::new(ROOT).join("tests/peers/iec104_master.py"))
        .args(["127.0.0.1", &port.to_string(), &ca.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the c104 master runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = || {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        serde_json::from_str::<serde_json::Value>(&l).unwrap_or_default()
    };
    let mut said = vec![line()];
    for a in asks {
        writeln!(stdin, "{a}").unwrap();
        stdin.flush().unwrap();
        said.push(line());
    }
    let _ = writeln!(stdin, "{}", serde_json::json!({"do": "quit"}));
    let _ = child.wait();
    said
}

/// A limit the grid set is kept across a restart of the EMS: the next run holds it from its
/// first cycle, says so, and reports it to the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_the_grid_set_holds_after_a_restart() {
    let (dir, _sim, port) = iec104_park("iec104-restart", "[[measurement]]\nname = \"import_limit_kw\"\nioa = 1009\n\n[[single]]\nname = \"grid_limit_active\"\nioa = 2004\n\n[[setpoint]]\nname = \"import_limit_kw\"\nioa = 3001\n").await;
    let config = || {
        let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
        cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
        cfg
    };
    let run_with_master = |asks: Vec<serde_json::Value>| {
        let cfg = config();
        async move {
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let d = done.clone();
            let master = tokio::task::spawn_blocking(move || {
                let said = c104_master(port, 7, &asks);
                d.store(true, std::sync::atomic::Ordering::Relaxed);
                said
            });
            run_until(cfg, 60, move |_| {
                done.load(std::sync::atomic::Ordering::Relaxed)
            })
            .await;
            master.await.unwrap()
        }
    };
    let set = serde_json::json!({"do": "set", "ioa": 3001, "value": 120.0, "sbo": false});
    let first = run_with_master(vec![set]).await;
    assert_eq!(first[1]["ok"], true, "{first:?}");
    // The next run: held from its start, reported at interrogation.
    let second = run_with_master(vec![
        serde_json::json!({"do": "interrogate"}),
        serde_json::json!({"do": "points"}),
    ])
    .await;
    let points = second[2]["points"].as_array().cloned().unwrap_or_default();
    let value = |ioa: u64| {
        points
            .iter()
            .find(|p| p["ioa"] == ioa)
            .map(|p| p["value"].clone())
    };
    assert_eq!(value(1009), Some(serde_json::json!(120.0)), "{second:?}");
    assert_eq!(value(2004), Some(serde_json::json!(true)), "{second:?}");
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let events = st.recent_events(200).unwrap();
    assert!(
        events.iter().any(|e| e
            .3
            .contains("the import limit of 120.0 kW the grid (IEC 104 master 127.0.0.1:")
            && e.3.contains("holds after the restart")),
        "{events:?}"
    );
}

/// A grid request's whole life in a running EMS: a reduction of 200 kW over two quarter
/// hours, against a baseline of 400 kW (the park's import at those times on its last like
/// days, five weekend days stored before, of which the run file's `[baseline]` takes three),
/// is taken whole, said in force, and once over said with what was delivered (this park's
/// meter holds 100 kW: 300 kW below the baseline, counted at the 200 asked) and its
/// settlement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_requests_delivery_is_measured_against_its_baseline() {
    use pedf_core::grid_request::{GridRequest, RequestKind};
    use pedf_runtime::run::{run_with, RunIo};
    let (dir, _sim, _) = sim_park("grid-delivery").await;
    {
        // Sunday 21 June 2026 is the request's day: its like days are the weekend days before.
        let mut st = Store::open(&dir.join("pedf.sqlite")).unwrap();
        let mut records = Vec::new();
        for day in [
            "2026-06-20",
            "2026-06-14",
            "2026-06-13",
            "2026-06-07",
            "2026-06-06",
        ] {
            for hm in ["10:15", "10:30"] {
                records.push(pedf_core::records::IntervalRecord {
                    start: local(&format!("{day} {hm}")),
                    pv_kwh: 0.0,
                    grid_import_kwh: 100.0,
                    grid_export_kwh: 0.0,
                    battery_charge_kwh: 0.0,
                    battery_discharge_kwh: 0.0,
                    load_kwh: 0.0,
                    ev_kwh: 0.0,
                    ev_chargers: Vec::new(),
                    batteries: Vec::new(),
                });
            }
        }
        st.put_records(&records, "measured").unwrap();
    }
    let mut run = std::fs::read_to_string(dir.join("run.toml")).unwrap();
    run.push_str("\n[baseline]\ndays = 3\n");
    std::fs::write(dir.join("run.toml"), run).unwrap();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    // 10:05 local, 120 times real time: the window 10:15-10:45 passes in about 20 s.
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 120.0);
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    let (live_tx, mut live_rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(pedf_runtime::live::Live::default()));
    let io = RunIo {
        live: Some(live_tx),
        grid_requests: Some(req_rx),
        ..RunIo::default()
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    req_tx
        .send((
            GridRequest {
                id: "g1".into(),
                start: local("2026-06-21 10:15"),
                end: local("2026-06-21 10:45"),
                kind: RequestKind::ReduceImport(200.0),
                price_cny_per_kwh: Some(3.0),
                source: "test".into(),
            },
            reply,
        ))
        .await
        .unwrap();
    let over = local("2026-06-21 10:55");
    let stop = async move {
        let wait = async {
            while live_rx.changed().await.is_ok() {
                let at = live_rx.borrow_and_update().at;
                if at.is_some_and(|t| t >= over) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(120), wait).await;
    };
    run_with(cfg, io, stop).await.unwrap();
    let (held, note) = answer.await.unwrap().unwrap();
    assert_eq!(held, 200.0, "{note}");
    assert!(
        note.starts_with(
            "accepted: import 200.0 kW below the baseline (the mean of 2026-06-20, 2026-06-14, 2026-06-13)"
        ),
        "{note}"
    );
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let events: Vec<String> = st
        .recent_events(100_000)
        .unwrap()
        .into_iter()
        .map(|e| e.3)
        .collect();
    let all = events.join("\n");
    assert!(all.contains("grid request g1 in force until"), "{all}");
    assert!(
        all.contains("grid request g1 is over: 100.0 of 100.0 kWh delivered (100 %) against the baseline (the mean of ")
            && all.contains("), settlement 300.00 CNY"),
        "{all}"
    );
}

/// A grid request in the rest of the day is checked against the park's plan: the EMS re-plans
/// with it as a constraint before answering. An evening import cap the battery can carry is
/// held in full and the plan made with it becomes the active plan (its window's import under
/// the cap); a cap of nothing from the evening to midnight, which the battery cannot carry,
/// is refused with the share the park could hold, and the active plan stays as it was. An
/// export floor at noon (PV surplus: the battery charges less) is held in full, its plan
/// exporting at least the floor in the window; one in the evening, when only PV may be
/// exported and there is none, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_request_is_planned_for_before_it_is_answered() {
    use pedf_core::grid_request::{GridRequest, RequestKind};
    use pedf_runtime::run::{run_with, RunIo};
    let (dir, _sim, _) = sim_park("grid-planned").await;
    let mut run = std::fs::read_to_string(dir.join("run.toml")).unwrap();
    run.push_str(&format!(
        "\n[replan]\ninputs = \"{ROOT}/simulations/qingzhou-pedf/day-inputs\"\n"
    ));
    std::fs::write(dir.join("run.toml"), run).unwrap();
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let store_path = cfg.store.clone();
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    let io = RunIo {
        grid_requests: Some(req_rx),
        ..RunIo::default()
    };
    let day = "2026-06-21";
    let active = move || {
        Store::open(&store_path)
            .ok()
            .and_then(|s| s.active_plan(day).ok().flatten())
    };
    let ask = move |id: &str, kind: RequestKind, from: &str, to: &str, price: Option<f64>| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let r = GridRequest {
            id: id.into(),
            start: local(&format!("{day} {from}")),
            end: if to == "24:00" {
                local("2026-06-22 00:00")
            } else {
                local(&format!("{day} {to}"))
            },
            kind,
            price_cny_per_kwh: price,
            source: "test".into(),
        };
        (r, reply, answer)
    };
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = outcome.clone();
    let stop = async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        // The day's first plan, made at the start.
        while active().is_none() {
            if std::time::Instant::now() > deadline {
                out.lock()
                    .unwrap()
                    .push("no plan made at the start".to_string());
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (id, kind, from, to, price) in [
            (
                "evening",
                RequestKind::CapImport(150.0),
                "19:00",
                "20:00",
                Some(3.0),
            ),
            (
                "all-night",
                RequestKind::CapImport(0.0),
                "17:00",
                "24:00",
                None,
            ),
            (
                "noon-export",
                RequestKind::ExportAtLeast(200.0),
                "12:00",
                "13:00",
                None,
            ),
            (
                "dusk-export",
                RequestKind::ExportAtLeast(100.0),
                "21:00",
                "22:00",
                None,
            ),
        ] {
            let before = active().map(|p| p.0);
            let (r, reply, answer) = ask(id, kind, from, to, price);
            req_tx.send((r, reply)).await.unwrap();
            let a = tokio::time::timeout(Duration::from_secs(90), answer).await;
            // The plan active once the answer is given (a held request's plan is stored by
            // the writer a moment later).
            let mut after = active();
            if matches!(&a, Ok(Ok(Ok(_)))) {
                while after.as_ref().map(|p| p.0) == before && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    after = active();
                }
            }
            out.lock().unwrap().push(format!(
                "{id}|{a:?}|{:?}|{:?}|{}",
                before,
                after.as_ref().map(|p| p.0),
                after.map(|p| p.2).unwrap_or_default()
            ));
        }
    };
    run_with(cfg, io, stop).await.unwrap();
    let outcome = outcome.lock().unwrap().clone();
    assert_eq!(outcome.len(), 4, "{outcome:?}");
    let (evening, night) = (&outcome[0], &outcome[1]);
    let part = |s: &str, k: usize| s.split('|').nth(k).unwrap().to_string();
    for o in &outcome {
        println!("answer: {}", part(o, 1));
        assert!(!part(o, 1).contains("-0.0"), "{o}");
    }
    // Held in full; the plan made with it is active and keeps the cap.
    assert!(
        part(evening, 1).contains("Ok(Ok(Ok((150.0")
            && part(evening, 1).contains("the re-plan holds it in every interval"),
        "{evening}"
    );
    // With what holding it costs against the plan before, and what it pays.
    assert!(
        part(evening, 1).contains("holding it changes the plan's bill by ")
            && part(evening, 1)
                .contains("it pays 3.00 CNY/kWh on what is delivered against its baseline"),
        "{evening}"
    );
    assert_ne!(part(evening, 2), part(evening, 3), "{evening}");
    let plan: pedf_core::plan::Plan = serde_json::from_str(&part(evening, 4)).unwrap();
    let window: Vec<f64> = plan
        .intervals
        .iter()
        .filter(|i| {
            let t = i.start.with_timezone(&Utc);
            t >= local("2026-06-21 19:00") && t < local("2026-06-21 20:00")
        })
        .map(|i| i.grid_import_kw)
        .collect();
    assert_eq!(window.len(), 4, "{evening}");
    assert!(window.iter().all(|kw| *kw <= 150.5), "{window:?}");
    // Refused with the share; the active plan is the one before it.
    assert!(
        part(night, 1).contains("Ok(Ok(Err(\"the park can hold only"),
        "{night}"
    );
    assert_eq!(part(night, 2), part(night, 3), "{night}");
    // The export floor at noon: held in full, the active plan exports at least it.
    let (noon, dusk) = (&outcome[2], &outcome[3]);
    assert!(
        part(noon, 1).contains("Ok(Ok(Ok((200.0")
            && part(noon, 1).contains("the re-plan holds it in every interval"),
        "{noon}"
    );
    let plan: pedf_core::plan::Plan = serde_json::from_str(&part(noon, 4)).unwrap();
    let window: Vec<f64> = plan
        .intervals
        .iter()
        .filter(|i| {
            let t = i.start.with_timezone(&Utc);
            t >= local("2026-06-21 12:00") && t < local("2026-06-21 13:00")
        })
        .map(|i| i.grid_export_kw - i.grid_import_kw)
        .collect();
    assert_eq!(window.len(), 4, "{noon}");
    assert!(window.iter().all(|kw| *kw >= 199.5), "{window:?}");
    // In the evening there is no PV to export: refused, nothing changes.
    assert!(
        part(dusk, 1).contains("Ok(Ok(Err(\"the park can hold only 0 %")
            && part(dusk, 1).contains("short of it"),
        "{dusk}"
    );
    assert_eq!(part(dusk, 2), part(dusk, 3), "{dusk}");
    let st = Store::open(&dir.join("pedf.sqlite")).unwrap();
    let mut kept: Vec<String> = st
        .grid_requests(local("2026-06-21 00:00"), local("2026-06-22 00:00"))
        .unwrap()
        .into_iter()
        .map(|t| t.request.id)
        .collect();
    kept.sort();
    assert_eq!(kept, ["evening", "noon-export"]);
}

/// The run file's `grid_requests` file: at the start the EMS takes its requests as it takes the
/// API's (an import cap over the running hour held, one whose window is over refused with
/// why); after a restart a request it took is not given again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_files_grid_requests_are_taken_once() {
    let (dir, _sim, _) = sim_park("requests-file").await;
    std::fs::write(
        dir.join("grid-requests.toml"),
        "[[grid_request]]\nid = \"f-cap\"\nkind = \"cap_import\"\nkw = 60\nstart = \"2026-06-21T10:00:00+08:00\"\nend = \"2026-06-21T11:00:00+08:00\"\nprice_cny_per_kwh = 2.5\n\n[[grid_request]]\nid = \"f-over\"\nkind = \"cap_export\"\nkw = 10\nstart = \"2026-06-21T08:00:00+08:00\"\nend = \"2026-06-21T09:00:00+08:00\"\n",
    )
    .unwrap();
    let run_file = dir.join("run.toml");
    let text = std::fs::read_to_string(&run_file).unwrap();
    std::fs::write(
        &run_file,
        format!("grid_requests = \"grid-requests.toml\"\n{text}"),
    )
    .unwrap();
    let store = dir.join("pedf.sqlite");
    let events = |store: &std::path::Path| -> Vec<String> {
        Store::open(store)
            .and_then(|s| s.recent_events(1000))
            .map(|v| v.into_iter().map(|e| e.3).collect())
            .unwrap_or_default()
    };
    // Runs until `n` events say the cap is in force (waited for, with a deadline).
    let run_until_in_force = |n: usize| {
        let mut cfg = RunConfig::load(&run_file).unwrap();
        cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
        let store = store.clone();
        async move {
            let stop = async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline
                    && events(&store)
                        .iter()
                        .filter(|e| e.starts_with("grid request f-cap in force"))
                        .count()
                        < n
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            run(cfg, stop).await.unwrap()
        }
    };
    run_until_in_force(1).await;
    let first = events(&store);
    let all = first.join("\n");
    assert!(
        all.contains(&format!(
            "grid request f-cap from file {} (cap_import 60 kW",
            dir.join("grid-requests.toml").display()
        )) && all.contains("accepted: import at most 60.0 kW"),
        "{all}"
    );
    assert!(
        all.contains("grid request f-over from file")
            && all.contains("refused, its window ended at 2026-06-21T09:00:00+08:00"),
        "{all}"
    );
    run_until_in_force(2).await;
    let all = events(&store);
    let given = |id: &str| {
        all.iter()
            .filter(|e| e.starts_with(&format!("grid request {id} from file")))
            .count()
    };
    // Taken once; the refused one is given (and refused) again at each start.
    assert_eq!(given("f-cap"), 1, "{all:?}");
    assert_eq!(given("f-over"), 2, "{all:?}");
    let taken = Store::open(&store)
        .unwrap()
        .grid_requests(
            ems_origin() - chrono::Duration::days(1),
            ems_origin() + chrono::Duration::days(1),
        )
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].request.price_cny_per_kwh, Some(2.5));
}

/// The grid's master sets a power target at the connection (IEC 104 setpoint
/// `power_target_kw`): -50 kW (export 50 kW) is held from that cycle and reported (the target,
/// and the export limit it sets); one beyond what the park may export is refused with why; the
/// park's own import limit releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grids_master_sets_a_power_target_at_the_connection() {
    let (dir, _sim, port) = iec104_park("iec104-target", "[[measurement]]\nname = \"export_limit_kw\"\nioa = 1010\n\n[[measurement]]\nname = \"power_target_kw\"\nioa = 1012\n\n[[setpoint]]\nname = \"power_target_kw\"\nioa = 3004\n").await;
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let set = |ioa: u32, v: f64| serde_json::json!({"do": "set", "ioa": ioa, "value": v});
    let wait = |ioa: u32, v: f64| serde_json::json!({"do": "wait", "ioa": ioa, "near": v, "within": 0.01, "seconds": 15});
    let asks = vec![
        set(3004, -50.0),
        wait(1012, -50.0),
        wait(1010, 50.0),
        set(3004, -99999.0),
        set(3004, 1500.0),
        wait(1012, 1500.0),
        wait(1010, 1500.0),
    ];
    let master = tokio::task::spawn_blocking(move || {
        let said = c104_master(port, 7, &asks);
        d.store(true, std::sync::atomic::Ordering::Relaxed);
        said
    });
    run_until(cfg, 60, move |_| {
        done.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    let said = master.await.unwrap();
    let oks: Vec<bool> = said[1..].iter().map(|v| v["ok"] == true).collect();
    assert_eq!(oks, [true, true, true, false, true, true, true], "{said:?}");
    let all = Store::open(&dir.join("pedf.sqlite"))
        .unwrap()
        .recent_events(500)
        .unwrap()
        .into_iter()
        .map(|e| e.3)
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "set the power target to -50.0 kW: held from this cycle",
        "asked power_target_kw = -99999: refused, -99999 kW exports more than the park may (1500.0 kW: its export limit and rules)",
        "released the power target",
    ] {
        assert!(all.contains(want), "`{want}` in {all}");
    }
}

/// The grid's master sets a duration first (`limit_minutes`, here 0.05 min: 3 s), then an
/// import limit: the limit holds from that cycle, is said with when it ends, ends by itself
/// (the park's own limit reported again) and the master is told; a duration above a day is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_the_grid_sets_for_a_while_ends_by_itself() {
    let (dir, _sim, port) = iec104_park("iec104-duration", "[[measurement]]\nname = \"import_limit_kw\"\nioa = 1009\n\n[[measurement]]\nname = \"limit_minutes\"\nioa = 1011\n\n[[setpoint]]\nname = \"import_limit_kw\"\nioa = 3001\n\n[[setpoint]]\nname = \"limit_minutes\"\nioa = 3003\n").await;
    let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
    cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let set = |ioa: u32, v: f64| serde_json::json!({"do": "set", "ioa": ioa, "value": v});
    let wait = |ioa: u32, v: f64| serde_json::json!({"do": "wait", "ioa": ioa, "near": v, "within": 0.01, "seconds": 15});
    let asks = vec![
        set(3003, 0.05),
        wait(1011, 0.05),
        set(3001, 20.0),
        wait(1009, 20.0),
        wait(1009, 1500.0),
        set(3003, 2000.0),
    ];
    let master = tokio::task::spawn_blocking(move || {
        let said = c104_master(port, 7, &asks);
        d.store(true, std::sync::atomic::Ordering::Relaxed);
        said
    });
    run_until(cfg, 60, move |_| {
        done.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    let said = master.await.unwrap();
    let oks: Vec<bool> = said[1..].iter().map(|v| v["ok"] == true).collect();
    assert_eq!(oks, [true, true, true, true, true, false], "{said:?}");
    let all = Store::open(&dir.join("pedf.sqlite"))
        .unwrap()
        .recent_events(500)
        .unwrap()
        .into_iter()
        .map(|e| e.3)
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "set the limits' duration to 0.05 min",
        "set the import limit to 20.0 kW: held from this cycle until 2026-06-21T10:0",
        "the import limit of 20.0 kW the grid (IEC 104 master 127.0.0.1:",
        "ended: the park's own 1500.0 kW applies",
        "asked limit_minutes = 2000: refused, limit_minutes must be 0 (until released) to 1440 minutes",
    ] {
        assert!(all.contains(want), "`{want}` in {all}");
    }
}
