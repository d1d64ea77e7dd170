//! Slow services never hold the server: while a carbon accounting takes its time, other
//! requests are answered, even on a runtime with one thread.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pedf_core::live::Live;
use pedf_core::live::Mode;
use pedf_core::message::Message;
use pedf_core::services::{
    CarbonSummary, CarbonTotals, CertificateFormat, IssuedCertificate, Period, PlannedDay,
    ServiceError,
};
use pedf_server::auth::create_token;
use pedf_server::{AppState, Role, Services};
use pedf_store::Store;
use tokio::sync::watch;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A carbon service that says when it has started and then waits to be let go (at most a
/// minute, so a broken server cannot hang the test run).
struct Slow {
    entered: Mutex<mpsc::Sender<()>>,
    gate: Mutex<mpsc::Receiver<()>>,
}

impl Services for Slow {
    fn plan_day(&self, _: chrono::NaiveDate) -> Result<PlannedDay, ServiceError> {
        Err(ServiceError::NotConfigured(Message::new(
            "not here",
            "不在这里",
        )))
    }
    fn history(&self, _: Period) -> Result<pedf_core::services::History, ServiceError> {
        Err(ServiceError::NotConfigured(Message::new(
            "not here",
            "不在这里",
        )))
    }
    fn carbon(&self, period: Period) -> Result<CarbonSummary, ServiceError> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self
            .gate
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60));
        Ok(CarbonSummary {
            from: period.from.to_rfc3339(),
            to: period.to.to_rfc3339(),
            factor: String::new(),
            baseline: String::new(),
            notes: Vec::new(),
            measured_intervals: 0,
            estimated_intervals: 0,
            totals: CarbonTotals {
                pv_kwh: 0.0,
                grid_import_kwh: 0.0,
                grid_export_kwh: 0.0,
                consumption_kwh: 0.0,
                location_kg: 0.0,
                market_kg: 0.0,
                avoided_pv_kg: 0.0,
                shifting_kg: 0.0,
                park_intensity_kg_per_kwh: 0.0,
                self_sufficiency: 0.0,
                self_consumption: 0.0,
                cfe_score: 0.0,
            },
        })
    }
    fn issue_certificate(&self, _: Period, _: &str) -> Result<IssuedCertificate, ServiceError> {
        Err(ServiceError::NotConfigured(Message::new(
            "not here",
            "不在这里",
        )))
    }
    fn certificate_file(&self, _: &str, _: CertificateFormat) -> Result<Vec<u8>, ServiceError> {
        Err(ServiceError::NotConfigured(Message::new(
            "not here",
            "不在这里",
        )))
    }
}

/// One HTTP/1.1 GET over a plain socket; the status line, or why there is none within
/// `deadline`.
fn get(port: u16, path: &str, token: &str, deadline: Duration) -> Result<String, String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(deadline)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).map_err(|e| format!("no answer: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_accounting_does_not_hold_other_requests() {
    let dir = std::env::temp_dir().join(format!("pedf-blocking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!("{ROOT}/config/qingzhou-pedf.toml");
    let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
        .value
        .unwrap();
    let mut store = Store::open(&dir.join("s.sqlite")).unwrap();
    let (viewer, _) = create_token(
        &mut store,
        "blocking",
        Role::Viewer,
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let slow = Slow {
        entered: Mutex::new(entered_tx),
        gate: Mutex::new(gate_rx),
    };
    let (_live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
    let (mode_tx, _) = watch::channel(Mode::Automatic);
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(
        park,
        live_rx,
        mode_tx,
        store,
        Some(Box::new(slow)),
        stop_rx.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(pedf_server::serve(listener, state, stop_rx));
    // The clients run on their own threads; this runtime's one thread serves.
    let answered = tokio::task::spawn_blocking(move || {
        let t = viewer.clone();
        let slow_call = std::thread::spawn(move || {
            get(
                port,
                "/api/v1/carbon?from=2026-06-21&to=2026-06-22",
                &t,
                Duration::from_secs(60),
            )
        });
        entered_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the carbon call reached the service");
        // While it runs, another request: answered, not queued behind it.
        let other = get(port, "/api/v1/whoami", &viewer, Duration::from_secs(10));
        gate_tx.send(()).unwrap();
        (other, slow_call.join().unwrap())
    })
    .await
    .unwrap();
    let (other, slow) = answered;
    assert_eq!(
        other.as_deref(),
        Ok("HTTP/1.1 200 OK"),
        "a request during a slow accounting was not answered"
    );
    assert_eq!(slow.as_deref(), Ok("HTTP/1.1 200 OK"));
    stop_tx.send(true).unwrap();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
