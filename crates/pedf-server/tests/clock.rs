//! The server stamps what it writes with the EMS's clock (the accelerated time of `pedf demo`,
//! a fixed clock in tests), never the wall clock.

use std::sync::Arc;

use chrono::TimeZone;
use pedf_core::live::Live;
use pedf_core::live::Mode;
use pedf_server::auth::ensure_admin_token;
use pedf_server::AppState;
use pedf_store::Store;
use tokio::sync::watch;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_through_the_api_carries_the_ems_time() {
    let dir = std::env::temp_dir().join(format!("pedf-clock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let origin = chrono::Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
    let path = format!("{ROOT}/config/qingzhou-pedf.toml");
    let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
        .value
        .unwrap();
    let mut store = Store::open(&dir.join("s.sqlite")).unwrap();
    let admin = ensure_admin_token(&mut store, origin).unwrap().unwrap();
    let (_live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
    let (mode_tx, _) = watch::channel(Mode::Automatic);
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(park, live_rx, mode_tx, store, None, stop_rx.clone())
        .with_time(pedf_core::time::TimeSource::scaled(origin, 1.0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(pedf_server::serve(listener, state, stop_rx));
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body(r#"{"label":"wall screen","role":"viewer"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let st = Store::open(&dir.join("s.sqlite")).unwrap();
    let made = st.tokens_with_role("viewer").unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0].created.date_naive(),
        origin.date_naive(),
        "stamped {} instead of the EMS's day",
        made[0].created
    );
    stop_tx.send(true).unwrap();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
