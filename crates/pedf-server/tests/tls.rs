//! HTTPS: the server with a certificate made here by `openssl` (scripts/setup installs it)
//! answers over TLS to a client that trusts that certificate, marks the login cookie Secure,
//! and refuses a key that does not fit the certificate with a message naming both files.

use std::sync::Arc;

use pedf_core::live::Live;
use pedf_core::live::Mode;
use pedf_server::auth::create_token;
use pedf_server::{tls_config, AppState, Role};
use pedf_store::Store;
use tokio::sync::watch;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[path = "../../pedf-runtime/tests/support/self_signed.rs"]
mod certs;
use certs::self_signed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_given_certificate() {
    let dir = std::env::temp_dir().join(format!("pedf-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir, "a");
    self_signed(&dir, "b");

    // A key of another certificate, or a file that is no PEM: refused, naming the files.
    let e = tls_config(&dir.join("a.crt"), &dir.join("b.key")).unwrap_err();
    assert!(
        e.contains("a.crt") && e.contains("b.key") && e.contains("does not fit"),
        "{e}"
    );
    std::fs::write(dir.join("junk.pem"), "hello").unwrap();
    let e = tls_config(&dir.join("junk.pem"), &dir.join("a.key")).unwrap_err();
    assert!(e.contains("junk.pem"), "{e}");

    let path = format!("{ROOT}/config/qingzhou-pedf.toml");
    let park = pedf_core::config::load_park(&path, &std::fs::read(&path).unwrap())
        .value
        .unwrap();
    let mut store = Store::open(&dir.join("s.sqlite")).unwrap();
    let (viewer, _) = create_token(
        &mut store,
        "tls",
        Role::Viewer,
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap();
    let (_live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
    let (mode_tx, _) = watch::channel(Mode::Automatic);
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(park, live_rx, mode_tx, store, None, stop_rx.clone());
    let tls = tls_config(&dir.join("a.crt"), &dir.join("a.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(pedf_server::serve_tls(
        listener,
        state.with_secure_cookie(),
        tls,
        stop_rx,
    ));

    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("a.crt")).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{port}/api/v1/whoami"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .post(format!("https://localhost:{port}/api/v1/session"))
        .header("Content-Type", "application/json")
        .body(format!("{{\"token\":\"{viewer}\"}}"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A client that does not trust the certificate gets no answer.
    let strict = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(dir.join("b.crt")).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap();
    assert!(strict
        .get(format!("https://localhost:{port}/api/v1/openapi.json"))
        .send()
        .await
        .is_err());
    // Plain HTTP on the HTTPS port: no answer either.
    let plain = reqwest::Client::new();
    assert!(plain
        .get(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .send()
        .await
        .is_err());

    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
