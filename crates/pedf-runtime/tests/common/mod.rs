//! An EMS for the server tests: the simulated park (pedf-sim, Mosquitto), `run_with` on it and
//! the server on a free loopback port, with a token of each role.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pedf_core::live::Mode;
use pedf_runtime::live::Live;
use pedf_runtime::run::{run_with, RunConfig, RunIo, RunSummary};
use pedf_server::auth::{create_token, ensure_admin_token};
use pedf_server::{AppState, Role};
use pedf_sim_devices::park::SimPark;
use pedf_store::Store;
use tokio::sync::watch;

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

pub struct Ems {
    /// The EMS's clock: fixed to start at [`ems_origin`], whatever the day the tests run.
    pub time: pedf_core::time::TimeSource,
    pub base: String,
    pub admin: String,
    pub operator: String,
    pub viewer: String,
    pub sim: SimPark,
    pub dir: PathBuf,
    pub store: PathBuf,
    stop: watch::Sender<bool>,
    run: Option<tokio::task::JoinHandle<Result<RunSummary, String>>>,
}

/// Where the tests' EMS clock starts: 10:00 local on 27 November 2026, a day the example
/// forecasts (June 2026) do not cover, so the intraday re-plan reports that it has none on
/// any day the tests are run.
pub fn ems_origin() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

impl Ems {
    pub async fn start(name: &str) -> Ems {
        Ems::start_with(name, "", "").await
    }

    /// The same with more devices in the device list and more tables in the run file.
    pub async fn start_with(name: &str, more_devices: &str, more_run: &str) -> Ems {
        let dir = std::env::temp_dir().join(format!("pedf-server-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sim = SimPark::start(
            &dir,
            &PathBuf::from(format!("{ROOT}/config/devices/templates")),
            300.0,
            60.0,
            100.0,
        )
        .await
        .expect("simulated park");
        if !more_devices.is_empty() {
            let mut devices = std::fs::read_to_string(dir.join("devices.toml")).unwrap();
            devices.push_str(more_devices);
            std::fs::write(dir.join("devices.toml"), devices).unwrap();
        }
        std::fs::write(
            dir.join("run.toml"),
            format!(
                "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"devices.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 200\n\n[server]\nlisten = \"127.0.0.1:0\"\nemission_factors = \"{ROOT}/config/emission-factors/china-grid.toml\"\n\n[replan]\ninputs = \"{ROOT}/simulations/qingzhou-pedf/day-inputs\"\n{more_run}"
            ),
        )
        .unwrap();
        let mut cfg = RunConfig::load(&dir.join("run.toml")).unwrap();
        cfg.time = pedf_core::time::TimeSource::scaled(ems_origin(), 1.0);
        let bytes = std::fs::read(&cfg.park).unwrap();
        let park = pedf_core::config::load_park("park", &bytes).value.unwrap();
        let mut store = Store::open(&cfg.store).unwrap();
        let now = cfg.time.now();
        let admin = ensure_admin_token(&mut store, now).unwrap().unwrap();
        let (operator, _) =
            create_token(&mut store, "shift operator", Role::Operator, now).unwrap();
        let (viewer, _) = create_token(&mut store, "wall screen", Role::Viewer, now).unwrap();
        let (live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
        let (mode_tx, mode_rx) = watch::channel(Mode::Automatic);
        let (stop, stop_rx) = watch::channel(false);
        let (orders_tx, orders_rx) = tokio::sync::mpsc::channel(64);
        let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
        let time = cfg.time;
        // The application's services (carbon, history, certificates) on the EMS's store.
        let services = pedf_runtime::services::EmsServices {
            park: park.clone(),
            store: cfg.store.clone(),
            plan_inputs: None,
            factors: format!("{ROOT}/config/emission-factors/china-grid.toml").into(),
            certificates: dir.join("certificates"),
            issuer_key: dir.join("issuer.key"),
            min_coverage: pedf_carbon::certificate::DEFAULT_MIN_COVERAGE,
            time,
            simulated: None,
        };
        let state = AppState::new(
            park,
            live_rx,
            mode_tx,
            store,
            Some(Box::new(services)),
            stop_rx.clone(),
        )
        .with_time(time)
        .with_orders(orders_tx)
        .with_commands(commands_tx)
        .with_grid_requests(requests_tx, Default::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(pedf_server::serve(listener, state, stop_rx.clone()));
        let mut stop_run = stop_rx.clone();
        let store_path = cfg.store.clone();
        let run = tokio::spawn(run_with(
            cfg,
            RunIo {
                live: Some(live_tx),
                mode: Some(mode_rx),
                orders: Some(orders_rx),
                commands: Some(commands_rx),
                grid_requests: Some(requests_rx),
                ..RunIo::default()
            },
            async move {
                let _ = stop_run.wait_for(|s| *s).await;
            },
        ));
        Ems {
            time,
            base,
            admin,
            operator,
            viewer,
            sim,
            dir,
            store: store_path,
            stop,
            run: Some(run),
        }
    }

    pub async fn stop(mut self) -> RunSummary {
        let _ = self.stop.send(true);
        let s = self.run.take().unwrap().await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        s
    }
}

/// Waits up to `secs` for `f` to hold, polling every 50 ms.
pub async fn eventually<F, Fut>(secs: f64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + Duration::from_secs_f64(secs);
    while std::time::Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
