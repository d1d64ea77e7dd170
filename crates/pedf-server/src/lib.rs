//! The HTTP side of pedf: REST API under `/api/v1` (described by `/api/v1/openapi.json`), the
//! live stream of the park (`/api/v1/stream`, server-sent events), Prometheus metrics
//! (`/metrics`) and the dashboard, whose files are embedded in the binary.
//!
//! Auth: every API call needs a token (`Authorization: Bearer ...`, or the `pedf_token` cookie
//! a browser gets from `POST /api/v1/session`). Reading needs viewer; control actions (mode,
//! plans, certificates) need operator and are written to the audit log; tokens need admin.
//! Request bodies are JSON of at most 64 KiB; anything else is refused with a JSON error that
//! says what was wrong.

#![warn(missing_docs)]

mod access;
pub mod auth;
mod carbon;
mod error;
mod grid;
mod history;
mod live;
mod metrics;
mod plans;
mod serve;
mod web;

pub use error::{ApiError, Body};
pub use serve::{serve, serve_router, serve_tls, serve_with, tls_config, ServeOptions};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use pedf_core::live::{Live, Mode, Order};
use pedf_core::services::{
    CarbonSummary, CertificateFormat, IssuedCertificate, Period, PlannedDay, ServiceError,
};
use pedf_core::Park;
use pedf_store::Store;
use tokio::sync::watch;

use access::{login, logout, token_create, token_list, token_revoke, whoami};
use carbon::{carbon, certificate_file, certificate_issue};
use history::{audit, events, records};
use live::{mode_get, mode_put, session_put, state_now, stream};
use plans::{plan_activate, plan_get, plan_run, plans};

pub use access::{from_elsewhere, token_in, FailedLogins, TokenFrom, MAX_FAILED_LOGINS};
pub use auth::{Caller, Role};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Plans and carbon figures come from the application (pedf-runtime's `EmsServices`); the
/// server parses and checks the requests, calls these with typed values on the blocking pool,
/// and answers each [`ServiceError`] with the status of its kind.
pub trait Services: Send + Sync + 'static {
    /// Plans a local day.
    fn plan_day(&self, date: chrono::NaiveDate) -> Result<PlannedDay, ServiceError>;
    /// Carbon accounting of a period from the store's interval records.
    fn carbon(&self, period: Period) -> Result<CarbonSummary, ServiceError>;
    /// The park's history over a period: each day's energy, bill terms and carbon.
    fn history(&self, period: Period) -> Result<pedf_core::services::History, ServiceError>;
    /// Issues a certificate for a period; `by` is who asked.
    fn issue_certificate(
        &self,
        period: Period,
        by: &str,
    ) -> Result<IssuedCertificate, ServiceError>;
    /// A certificate's file (`id` is letters, digits, `-` and `_` only: the server checks).
    fn certificate_file(
        &self,
        id: &str,
        format: CertificateFormat,
    ) -> Result<Vec<u8>, ServiceError>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    park: Park,
    live: watch::Receiver<Arc<Live>>,
    /// The live state serialised once per cycle for every stream client.
    frames: watch::Receiver<Arc<str>>,
    mode: watch::Sender<Mode>,
    store: Mutex<Store>,
    services: Option<Box<dyn Services>>,
    counters: Counters,
    shutdown: watch::Receiver<bool>,
    secure_cookie: bool,
    /// "Now" for stamps and "today": the runtime's time source.
    time: pedf_core::time::TimeSource,
    /// Operators' orders on EV sessions, to the run loop.
    orders: Option<tokio::sync::mpsc::Sender<Order>>,
    /// Operators' commands to chargers, to the run loop.
    commands: Option<Commands>,
    /// Grid requests, to the run loop.
    grid_requests: Option<GridRequests>,
    baseline_rule: pedf_core::grid_request::BaselineRule,
    /// Failed logins per peer address in the running minute.
    failed_logins: access::FailedLogins,
    /// Tokens revoked while the server runs: their open streams end.
    revoked: watch::Sender<std::collections::BTreeSet<i64>>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    auth_failures: AtomicU64,
    stream_clients: AtomicI64,
    control_actions: AtomicU64,
    /// Connections closed at once: the server had its most open.
    connections_refused: AtomicU64,
}

/// The shortest real time between two live-state frames to the stream's clients.
const MIN_FRAME_GAP: std::time::Duration = std::time::Duration::from_millis(200);

impl AppState {
    /// `store` is the server's own connection to the EMS store (WAL lets it read while the
    /// runtime writes). `shutdown` ends the live streams when it turns true.
    pub fn new(
        park: Park,
        live: watch::Receiver<Arc<Live>>,
        mode: watch::Sender<Mode>,
        store: Store,
        services: Option<Box<dyn Services>>,
        shutdown: watch::Receiver<bool>,
    ) -> AppState {
        let (ftx, frames) = watch::channel::<Arc<str>>(Arc::from(
            serde_json::to_string(&**live.borrow()).unwrap_or_default(),
        ));
        // One serialisation per cycle, shared by every stream client.
        let mut lrx = live.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = lrx.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
                let text = serde_json::to_string(&**lrx.borrow_and_update()).unwrap_or_default();
                ftx.send_replace(Arc::from(text));
                // At most a few frames a second however fast the EMS cycles (`pedf demo
                // --speed 60` runs 60 cycles a second): the next frame is the newest state.
                tokio::select! {
                    _ = tokio::time::sleep(MIN_FRAME_GAP) => {}
                    _ = stop.changed() => break,
                }
            }
        });
        AppState {
            inner: Arc::new(Inner {
                park,
                live,
                frames,
                mode,
                store: Mutex::new(store),
                services,
                counters: Counters::default(),
                shutdown,
                secure_cookie: false,
                time: pedf_core::time::TimeSource::wall(),
                orders: None,
                commands: None,
                grid_requests: None,
                baseline_rule: Default::default(),
                failed_logins: Default::default(),
                revoked: watch::channel(Default::default()).0,
            }),
        }
    }

    /// Marks the login cookie `Secure` (served over HTTPS).
    pub fn with_secure_cookie(mut self) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.secure_cookie = true;
        }
        self
    }

    /// Takes "now" from `time` (the accelerated time of `pedf demo --speed`); call before
    /// the state is shared.
    pub fn with_time(mut self, time: pedf_core::time::TimeSource) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.time = time;
        }
        self
    }

    /// Takes operators' orders on EV sessions to the run loop (`RunIo::orders`).
    pub fn with_orders(mut self, orders: tokio::sync::mpsc::Sender<Order>) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.orders = Some(orders);
        }
        self
    }

    /// Takes operators' commands to chargers to the run loop (`RunIo::commands`).
    pub fn with_commands(mut self, commands: Commands) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.commands = Some(commands);
        }
        self
    }

    /// Takes grid requests to the run loop (`RunIo::grid_requests`); their baselines are
    /// made under `rule` (the run file's `[baseline]`).
    pub fn with_grid_requests(
        mut self,
        requests: GridRequests,
        rule: pedf_core::grid_request::BaselineRule,
    ) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.grid_requests = Some(requests);
            inner.baseline_rule = rule;
        }
        self
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the outcome of an operator's command to a charger goes: what the charger did, or
/// why it did not (refused, not connected, no answer).
pub type CommandReply = tokio::sync::oneshot::Sender<Result<String, String>>;

/// The channel of operators' commands to chargers, server to run loop.
pub type Commands = tokio::sync::mpsc::Sender<(pedf_core::live::ChargerCommand, CommandReply)>;

/// Where the EMS's answer to a grid request goes: what it holds of it (kW) and what it said,
/// or why it refused it.
pub type GridRequestReply = tokio::sync::oneshot::Sender<Result<(f64, String), String>>;

/// The channel of grid requests, server to run loop.
pub type GridRequests =
    tokio::sync::mpsc::Sender<(pedf_core::grid_request::GridRequest, GridRequestReply)>;

/// The routes of the API (method, path): the OpenAPI document lists exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/session"),
    ("delete", "/api/v1/session"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/state"),
    ("get", "/api/v1/stream"),
    ("get", "/api/v1/mode"),
    ("put", "/api/v1/mode"),
    ("put", "/api/v1/chargers/{id}/session"),
    ("post", "/api/v1/chargers/{id}/command"),
    ("get", "/api/v1/grid-requests"),
    ("post", "/api/v1/grid-requests"),
    ("get", "/api/v1/events"),
    ("post", "/api/v1/events/{id}/ack"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/records"),
    ("get", "/api/v1/plans"),
    ("post", "/api/v1/plans"),
    ("get", "/api/v1/plans/{id}"),
    ("post", "/api/v1/plans/{id}/activate"),
    ("get", "/api/v1/carbon"),
    ("get", "/api/v1/history"),
    ("post", "/api/v1/certificates"),
    ("get", "/api/v1/certificates/{id}/{kind}"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
];

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/session", post(login).delete(logout))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/state", get(state_now))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/mode", get(mode_get).put(mode_put))
        .route("/api/v1/chargers/{id}/session", put(session_put))
        .route("/api/v1/chargers/{id}/command", post(live::command_post))
        .route(
            "/api/v1/grid-requests",
            get(grid::requests_get).post(grid::request_post),
        )
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{id}/ack", post(history::event_ack))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/records", get(records))
        .route("/api/v1/plans", get(plans).post(plan_run))
        .route("/api/v1/plans/{id}", get(plan_get))
        .route("/api/v1/plans/{id}/activate", post(plan_activate))
        .route("/api/v1/carbon", get(carbon))
        .route("/api/v1/history", get(carbon::history))
        .route("/api/v1/certificates", post(certificate_issue))
        .route("/api/v1/certificates/{id}/{kind}", get(certificate_file))
        .route("/api/v1/tokens", get(token_list).post(token_create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(token_revoke))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .merge(web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    State(s): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    s.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such path; the API is described at /api/v1/openapi.json",
        "没有这个地址；API 的说明在 /api/v1/openapi.json",
    )
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
