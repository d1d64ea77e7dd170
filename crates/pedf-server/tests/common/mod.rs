//! The server alone over a fresh store, for the server's own tests.

use std::path::PathBuf;
use std::sync::Arc;

use pedf_core::live::{Live, Mode};
use pedf_server::AppState;
use pedf_store::Store;
use tokio::sync::watch;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A server's state over a new store in a folder named after the test (the reference park,
/// no services, an admin token made at a fixed instant); the admin token and the shutdown sender with
/// its receiver.
pub struct Server {
    pub dir: PathBuf,
    pub state: AppState,
    pub admin: String,
    pub stop_tx: watch::Sender<bool>,
    pub stop_rx: watch::Receiver<bool>,
    /// Kept so the live state and the mode channel do not end.
    _live: watch::Sender<Arc<Live>>,
    _mode: watch::Receiver<Mode>,
}

impl Server {
    pub fn new(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("pedf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{ROOT}/config/qingzhou-pedf.toml");
        let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
            .value
            .unwrap();
        let mut store = Store::open(&dir.join("s.sqlite")).unwrap();
        // Made at a fixed instant (the server here runs on the wall clock; tokens never expire).
        let made = chrono::DateTime::from_timestamp(1_782_000_000, 0).unwrap();
        let admin = pedf_server::auth::ensure_admin_token(&mut store, made)
            .unwrap()
            .unwrap();
        let (live, live_rx) = watch::channel(Arc::new(Live::default()));
        let (mode_tx, mode_rx) = watch::channel(Mode::Automatic);
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = AppState::new(park, live_rx, mode_tx, store, None, stop_rx.clone());
        Server {
            dir,
            state,
            admin,
            stop_tx,
            stop_rx,
            _live: live,
            _mode: mode_rx,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
