//! Serving the routes over HTTP or HTTPS until shutdown.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{router, AppState};

/// Limits of the server's connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeOptions {
    /// Connections open at once; one more is closed as soon as it is accepted (the EMS keeps
    /// its file descriptors for its devices and store).
    pub max_connections: usize,
    /// Connections open at once from one address: one host holding sockets open cannot take
    /// the slots the operators' browsers need.
    pub max_per_peer: usize,
    /// Time a client has to send a request's headers, counted from the connection's start
    /// and from the end of each response: an idle keep-alive socket or a half-sent request
    /// is closed after it.
    pub header_timeout: std::time::Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 512,
            max_per_peer: 64,
            header_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(listener, state, None, ServeOptions::default(), shutdown).await
}

/// Reads a PEM certificate chain and private key into a TLS configuration (HTTP/1.1).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
    };
    let cert_bytes = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e:?}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
        format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e:?}",
            key.display()
        )
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| {
        format!(
            "{} and {}: the key does not fit the certificate or is unusable: {e}",
            cert.display(),
            key.display()
        )
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves `app` over HTTPS on `listener` until `shutdown` turns true, with the default
/// limits. A failed handshake ends that connection only.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(
        listener,
        state,
        Some(tls),
        ServeOptions::default(),
        shutdown,
    )
    .await
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` turns true,
/// within `options`' limits: at most `max_connections` at once, each closed when its client
/// sends no request headers within `header_timeout` (idle or half-sent). On shutdown every
/// connection ends gracefully, within 5 s.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let counted = state.clone();
    let refused = Arc::new(move || {
        counted
            .inner
            .counters
            .connections_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    serve_router(listener, router(state), tls, options, refused, shutdown).await
}

/// Serves any router `app` as [`serve_with`] serves the park's (the fleet hub's, for one),
/// calling `refused` for each connection closed for want of a slot.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    options: ServeOptions,
    refused: Arc<dyn Fn() + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let per_peer: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: wait for connections to end.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        let peer_slot = PeerSlot::take(&per_peer, peer.ip(), options.max_per_peer);
        let (Ok(slot), Some(peer_slot)) = (slots.clone().try_acquire_owned(), peer_slot) else {
            refused();
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            // Each request knows its peer (`ConnectInfo`, as axum::serve gives it).
            let app = tower::ServiceExt::map_request(
                app,
                move |mut r: hyper::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    r
                },
            );
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(options.header_timeout);
            match acceptor {
                Some(acceptor) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(options.header_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    run_until_stopped(conn, &mut stop).await;
                }
                None => {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    run_until_stopped(conn, &mut stop).await;
                }
            }
        });
    }
}

/// One connection counted against its peer's share, given back when it ends.
struct PeerSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    peer: std::net::IpAddr,
}

impl PeerSlot {
    /// A slot for `peer`, or none when it has `most` connections open already.
    fn take(
        counts: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        peer: std::net::IpAddr,
        most: usize,
    ) -> Option<PeerSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(peer).or_insert(0);
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Serves one connection until it ends, or ends it gracefully (at most 5 s) on shutdown.
async fn run_until_stopped<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    stop: &mut watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped(stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
}
