//! The EMS as one application: the run loop and, when the run file has a `[server]` table,
//! the HTTP server beside it (API, live stream, metrics, dashboard) with the EMS's services
//! (planning, carbon accounting, certificates) behind it, all on the run's clock.

use std::sync::Arc;

use pedf_core::live::{Live, Mode};
use pedf_server::AppState;
use pedf_store::Store;
use tokio::sync::watch;

use crate::run::{run_with, RunConfig, RunIo, RunSummary};
use crate::services::EmsServices;

/// The runtime with its server (when the run file has one) until `shutdown`. What an operator
/// must see (the dashboard's address, the admin token made at first start, a server that did
/// not stop) goes to `say`, one line each; the binary prints it.
pub async fn run_and_serve(
    cfg: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
    say: impl Fn(String),
) -> Result<RunSummary, String> {
    let mut io = RunIo::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server = None;
    // Grid requests come through the server's API and the fleet's hub, onto one channel.
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
    if cfg.server.is_some() || cfg.fleet.is_some() {
        io.grid_requests = Some(requests_rx);
    }
    if let Some(srv) = cfg.server.clone() {
        let park = cfg.read_park()?;
        if let Some(dir) = cfg.store.parent().filter(|d| !d.as_os_str().is_empty()) {
            pedf_store::create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut store = Store::open(&cfg.store).map_err(|e| e.to_string())?;
        if let Some(token) = pedf_server::auth::ensure_admin_token(&mut store, cfg.time.now())? {
            say(format!(
                "first start: admin token (shown once, keep it safe): {token}"
            ));
        }
        let (live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
        let (mode_tx, mode_rx) = watch::channel(Mode::Automatic);
        io.live = Some(live_tx);
        io.mode = Some(mode_rx);
        let (orders_tx, orders_rx) = tokio::sync::mpsc::channel(64);
        io.orders = Some(orders_rx);
        let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
        io.commands = Some(commands_rx);
        let services = EmsServices {
            park: park.clone(),
            store: cfg.store.clone(),
            plan_inputs: srv.plan_inputs.clone(),
            factors: srv.emission_factors.clone(),
            certificates: srv.certificates_dir.clone().unwrap_or_default(),
            issuer_key: srv.issuer_key.clone().unwrap_or_default(),
            min_coverage: srv.certificate_min_coverage,
            time: cfg.time,
            simulated: srv.simulated.clone(),
        };
        let state = AppState::new(
            park,
            live_rx,
            mode_tx,
            store,
            Some(Box::new(services)),
            stop_rx.clone(),
        )
        .with_time(cfg.time)
        .with_orders(orders_tx)
        .with_commands(commands_tx)
        .with_grid_requests(requests_tx.clone(), cfg.baseline);
        let tls = match (&srv.tls_cert, &srv.tls_key) {
            (Some(c), Some(k)) => Some(pedf_server::tls_config(c, k)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(&srv.listen)
            .await
            .map_err(|e| format!("[server] listen = {}: {e}", srv.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        server = Some(match tls {
            Some(tls) => {
                say(format!("dashboard and API at https://{addr}/"));
                tokio::spawn(pedf_server::serve_tls(
                    listener,
                    state.with_secure_cookie(),
                    tls,
                    stop_rx.clone(),
                ))
            }
            None => {
                say(format!("dashboard and API at http://{addr}/"));
                tokio::spawn(pedf_server::serve(listener, state, stop_rx.clone()))
            }
        });
    }
    // The fleet's edge publisher (`[fleet]`): on the caller's runtime, apart from the cycle.
    let fleet = match cfg.fleet.clone() {
        Some(f) => {
            let park = cfg.read_park()?;
            let live = match &io.live {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(Arc::new(Live::default()));
                    io.live = Some(tx);
                    rx
                }
            };
            say(format!(
                "fleet: publishing as pedf.{} to {}",
                f.name_of(&park.id),
                f.url
            ));
            let edge = crate::fleet::Edge {
                requests: Some(requests_tx.clone()),
                baseline: cfg.baseline,
                ..crate::fleet::Edge::of(&park)
            };
            Some(crate::fleet::start_named(
                f.clone(),
                f.name_of(&park.id),
                edge,
                cfg.store.clone(),
                live,
                stop_rx.clone(),
            ))
        }
        None => None,
    };
    let r = run_apart(cfg, io, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(f) = fleet {
        if tokio::time::timeout(std::time::Duration::from_secs(5), f)
            .await
            .is_err()
        {
            say("fleet publisher did not stop within 5 s".into());
        }
    }
    if let Some(s) = server {
        match tokio::time::timeout(std::time::Duration::from_secs(5), s).await {
            Ok(Ok(Err(e))) => say(format!("server: {e}")),
            Err(_) => say("server did not stop within 5 s".into()),
            _ => {}
        }
    }
    r
}

/// Runs the control cycle, with the devices' units and the sinks it starts, on a thread and a
/// tokio runtime of its own until `shutdown`: requests, live streams and the planner on the
/// caller's runtime can never hold the workers the cycle needs.
pub async fn run_apart(
    cfg: RunConfig,
    io: RunIo,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, String> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pedf-cycle".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("pedf-cycle")
                .enable_all()
                .build()
                .map_err(|e| format!("the control cycle's runtime: {e}"))
                .and_then(|rt| {
                    rt.block_on(run_with(cfg, io, async {
                        let _ = stop_rx.await;
                    }))
                });
            let _ = done_tx.send(r);
        })
        .map_err(|e| format!("the control cycle's thread: {e}"))?;
    let ended = |r: Result<Result<RunSummary, String>, _>| {
        r.unwrap_or_else(|_| Err("the control cycle's thread ended without a summary".into()))
    };
    tokio::pin!(done_rx);
    tokio::select! {
        _ = shutdown => {
            let _ = stop_tx.send(());
            ended(done_rx.await)
        }
        r = &mut done_rx => ended(r),
    }
}
