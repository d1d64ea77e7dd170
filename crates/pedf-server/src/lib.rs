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

pub mod auth;
mod metrics;
mod web;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use pedf_core::live::{Live, Mode, ModeView, Order};
use pedf_core::services::{
    CarbonSummary, CertificateFormat, IssuedCertificate, Period, PlannedDay, ServiceError,
};
use pedf_core::Park;
use pedf_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

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

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let status = match &e {
            ServiceError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
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
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    auth_failures: AtomicU64,
    stream_clients: AtomicI64,
    control_actions: AtomicU64,
}

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

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An error answer: status and a message saying what was wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

fn internal(m: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, m.to_string())
}

/// A JSON body whose problems are answered as [`ApiError`]s naming them.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => {
                let status = r.status();
                let message = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => format!(
                        "request body too large: at most {MAX_BODY_BYTES} bytes are accepted"
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        "request body must be JSON with Content-Type: application/json".to_string()
                    }
                    _ => format!("request body: {}", r.body_text()),
                };
                Err(ApiError(status, message))
            }
        }
    }
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("pedf_token=").map(str::to_string))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = token_of(&parts.headers) else {
            s.inner
                .counters
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "no token: send `Authorization: Bearer <token>` or log in at POST /api/v1/session"
                    .into(),
            ));
        };
        match auth::lookup(&s.store(), &token) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                s.inner
                    .counters
                    .auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "the token is not valid (unknown or revoked)".into(),
                ))
            }
            Err(e) => Err(internal(e)),
        }
    }
}

impl Caller {
    fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {} role; the token has {}",
                    role.name(),
                    self.role.name()
                ),
            ))
        }
    }
}

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
    ("get", "/api/v1/events"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/records"),
    ("get", "/api/v1/plans"),
    ("post", "/api/v1/plans"),
    ("get", "/api/v1/plans/{id}"),
    ("post", "/api/v1/plans/{id}/activate"),
    ("get", "/api/v1/carbon"),
    ("post", "/api/v1/certificates"),
    ("get", "/api/v1/certificates/{id}/{kind}"),
    ("post", "/api/v1/tokens"),
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
        .route("/api/v1/events", get(events))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/records", get(records))
        .route("/api/v1/plans", get(plans).post(plan_run))
        .route("/api/v1/plans/{id}", get(plan_get))
        .route("/api/v1/plans/{id}/activate", post(plan_activate))
        .route("/api/v1/carbon", get(carbon))
        .route("/api/v1/certificates", post(certificate_issue))
        .route("/api/v1/certificates/{id}/{kind}", get(certificate_file))
        .route("/api/v1/tokens", post(token_create))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .merge(web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    ApiError(
        StatusCode::NOT_FOUND,
        "no such path; the API is described at /api/v1/openapi.json".into(),
    )
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
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

/// Serves `app` over HTTPS on `listener` until `shutdown` turns true. A failed handshake
/// ends that connection only.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(state);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopped(&mut stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        });
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

async fn login(State(s): State<AppState>, Body(b): Body<LoginBody>) -> Response {
    match auth::lookup(&s.store(), b.token.trim()) {
        Ok(Some(c)) => {
            let cookie = format!(
                "pedf_token={}; Path=/; HttpOnly; SameSite=Strict{}",
                b.token.trim(),
                if s.inner.secure_cookie {
                    "; Secure"
                } else {
                    ""
                }
            );
            let mut r = Json(json!({ "role": c.role.name(), "label": c.label })).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            s.inner
                .counters
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            ApiError(
                StatusCode::UNAUTHORIZED,
                "the token is not valid (unknown or revoked)".into(),
            )
            .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

async fn logout() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pedf_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn whoami(c: Caller) -> Json<Value> {
    Json(json!({ "role": c.role.name(), "label": c.label, "token_id": c.token_id }))
}

async fn state_now(_c: Caller, State(s): State<AppState>) -> Json<Live> {
    Json((**s.inner.live.borrow()).clone())
}

async fn stream(_c: Caller, State(s): State<AppState>) -> impl IntoResponse {
    struct Client {
        frames: watch::Receiver<Arc<str>>,
        stop: watch::Receiver<bool>,
        first: bool,
        state: AppState,
    }
    impl Drop for Client {
        fn drop(&mut self) {
            self.state
                .inner
                .counters
                .stream_clients
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
    s.inner
        .counters
        .stream_clients
        .fetch_add(1, Ordering::Relaxed);
    let client = Client {
        frames: s.inner.frames.clone(),
        stop: s.inner.shutdown.clone(),
        first: true,
        state: s.clone(),
    };
    let events = futures_util::stream::unfold(client, |mut c| async move {
        if *c.stop.borrow() {
            return None;
        }
        if !c.first {
            tokio::select! {
                r = c.frames.changed() => r.ok()?,
                _ = c.stop.changed() => return None,
            }
        }
        c.first = false;
        let text = c.frames.borrow_and_update().clone();
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().event("state").data(&*text)),
            c,
        ))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn mode_get(_c: Caller, State(s): State<AppState>) -> Json<ModeView> {
    Json(ModeView::from(&*s.inner.mode.borrow()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
    #[serde(default)]
    battery_kw: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
}

async fn mode_put(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<ModeBody>,
) -> Result<Json<ModeView>, ApiError> {
    c.require(Role::Operator)?;
    let park = &s.inner.park;
    let charge: f64 = park.batteries.iter().map(|b| b.max_charge.0).sum();
    let discharge: f64 = park.batteries.iter().map(|b| b.max_discharge.0).sum();
    let mode = match (b.mode.as_str(), b.battery_kw) {
        ("automatic", None) => Mode::Automatic,
        ("safe", None) => Mode::Safe,
        ("manual", Some(kw)) if kw.is_finite() && kw >= -charge && kw <= discharge => {
            Mode::Manual { battery_kw: kw }
        }
        ("manual", Some(kw)) => {
            return Err(bad_request(format!(
                "battery_kw: {kw} is outside the park's battery range {:.0}..={discharge:.0} kW (+discharge/-charge)",
                -charge
            )))
        }
        ("manual", None) => {
            return Err(bad_request(
                "battery_kw: manual mode needs the battery setpoint in kW (+discharge/-charge)",
            ))
        }
        ("automatic" | "safe", Some(_)) => {
            return Err(bad_request(format!(
                "battery_kw: only manual mode takes a setpoint, not {}",
                b.mode
            )))
        }
        (other, _) => {
            return Err(bad_request(format!(
                "mode: `{other}` is not one of automatic, manual, safe"
            )))
        }
    };
    let view = ModeView::from(&mode);
    let reason = b.reason.unwrap_or_else(|| "set from the API".into());
    s.store()
        .audit(
            s.inner.time.now(),
            "park",
            &c.who(),
            &format!("mode {}: {reason}", view.mode),
            b.battery_kw.unwrap_or(0.0),
            None,
            None,
            "accepted",
        )
        .map_err(internal)?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    s.inner.mode.send_replace(mode);
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    #[serde(default)]
    energy_kwh: Option<f64>,
    /// RFC 3339, e.g. 2026-06-21T17:30:00+08:00.
    #[serde(default)]
    departure: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// An operator tells the EMS what the car on a charger needs and when it leaves (replacing
/// the park file's default session); the run loop applies it in its next cycle and re-plans.
async fn session_put(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<SessionBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    c.require(Role::Operator)?;
    let now = s.inner.time.now();
    if b.energy_kwh.is_none() && b.departure.is_none() {
        return Err(bad_request(
            "give energy_kwh (kWh the car still needs in all) and/or departure (RFC 3339)",
        ));
    }
    if let Some(e) = b
        .energy_kwh
        .filter(|e| !(e.is_finite() && *e > 0.0 && *e < 1e4))
    {
        return Err(bad_request(format!(
            "energy_kwh: {e} is not a car's energy; give kWh above 0 and below 10000"
        )));
    }
    let departure = match &b.departure {
        None => None,
        Some(t) => {
            let d = pedf_core::time::parse_rfc3339(t).map_err(|_| {
                bad_request(format!(
                    "departure: `{t}` is not an RFC 3339 time, e.g. 2026-06-21T17:30:00+08:00"
                ))
            })?;
            if d <= now {
                return Err(bad_request(format!(
                    "departure: {t} is not after now ({})",
                    s.inner.park.clock.format(now)
                )));
            }
            Some(d)
        }
    };
    let live = s.inner.live.borrow().clone();
    let Some(charger) = live.chargers.iter().find(|x| x.id == id) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no charger `{id}` (the chargers are in /api/v1/state)"),
        ));
    };
    if charger.session.is_none() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("no car on {id} now (or its sessions are not tracked: it needs a charger state and the park's default session)"),
        ));
    }
    let Some(tx) = &s.inner.orders else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server takes no session orders".into(),
        ));
    };
    let order = Order {
        charger: id.clone(),
        energy_kwh: b.energy_kwh,
        departure,
        by: c.who(),
        reason: b.reason.unwrap_or_else(|| "set from the API".into()),
    };
    tx.try_send(order).map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the EMS is not taking orders now; try again".into(),
        )
    })?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "charger": id,
            "energy_kwh": b.energy_kwh,
            "departure": departure.map(|d| s.inner.park.clock.format(d)),
            "applied": "in the next control cycle, then a re-plan",
        })),
    ))
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

async fn events(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store()
        .recent_events(q.limit.unwrap_or(100).min(1000))
        .map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|(at, severity, kind, message)| {
                json!({"at": at, "severity": severity, "kind": kind, "message": message})
            })
            .collect(),
    )))
}

async fn audit(
    c: Caller,
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let rows = s
        .store()
        .recent_audit(q.limit.unwrap_or(100).min(1000))
        .map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|a| {
                json!({"at": a.at, "device": a.device, "by": a.by, "reason": a.reason,
                       "requested": a.requested, "written": a.written, "readback": a.readback,
                       "outcome": a.outcome})
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
struct DayQuery {
    day: Option<String>,
}

fn parse_day(text: &str, field: &str) -> Result<chrono::NaiveDate, ApiError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad_request(format!("{field}: `{text}` is not a date; write YYYY-MM-DD")))
}

/// The interval energy records of a local day (measured by the runtime), with each one's
/// index in the day.
async fn records(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<DayQuery>,
) -> Result<Json<Value>, ApiError> {
    let clock = s.inner.park.clock;
    let day = match q.day {
        Some(d) => parse_day(&d, "day")?,
        None => clock.local(s.inner.time.now()).date_naive(),
    };
    let starts = clock.intervals_of_local_day(day);
    let (Some(from), Some(last)) = (starts.first(), starts.last()) else {
        return Err(bad_request(format!("day: {day} has no intervals")));
    };
    let to = *last + clock.interval.duration();
    let rows = s.store().records(*from, to).map_err(internal)?;
    let list: Vec<Value> = rows
        .into_iter()
        .filter_map(|(r, source)| {
            let index = starts.iter().position(|t| *t == r.start)?;
            Some(json!({"index": index, "start": r.start, "source": source,
                "pv_kwh": r.pv_kwh, "grid_import_kwh": r.grid_import_kwh, "grid_export_kwh": r.grid_export_kwh,
                "battery_charge_kwh": r.battery_charge_kwh, "battery_discharge_kwh": r.battery_discharge_kwh,
                "load_kwh": r.load_kwh, "ev_kwh": r.ev_kwh}))
        })
        .collect();
    Ok(Json(
        json!({"day": day.to_string(), "intervals_per_day": starts.len(),
        "interval_hours": clock.interval.hours().0, "records": list}),
    ))
}

async fn plans(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<DayQuery>,
) -> Result<Json<Value>, ApiError> {
    let day = match q.day {
        Some(d) => parse_day(&d, "day")?,
        None => s.inner.park.clock.local(s.inner.time.now()).date_naive(),
    };
    let rows = s.store().plans_of_day(&day.to_string()).map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|p| json!({"id": p.id, "created": p.created, "day": p.day, "strategy": p.strategy, "active": p.active}))
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRunBody {
    day: String,
}

async fn plan_run(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<PlanRunBody>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let day = parse_day(&b.day, "day")?;
    let who = c.who();
    let PlannedDay { strategy, plan } = on_blocking_pool(&s, move |x| x.plan_day(day)).await??;
    let json = serde_json::to_string(&plan).map_err(internal)?;
    let mut store = s.store();
    let id = store
        .put_plan(s.inner.time.now(), &day.to_string(), &strategy, &json)
        .map_err(internal)?;
    let _ = store.event(
        s.inner.time.now(),
        "info",
        "plan",
        &format!("plan #{id} ({strategy}) for {day} computed, asked by {who}"),
    );
    Ok(Json(
        json!({"id": id, "day": day.to_string(), "strategy": strategy}),
    ))
}

async fn plan_get(
    _c: Caller,
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let Some((row, text)) = s.store().plan(id).map_err(internal)? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no plan #{id}")));
    };
    let plan: Value = serde_json::from_str(&text).map_err(internal)?;
    Ok(Json(
        json!({"id": row.id, "created": row.created, "day": row.day, "strategy": row.strategy,
                   "active": row.active, "plan": plan}),
    )
    .into_response())
}

async fn plan_activate(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let mut store = s.store();
    let Some((row, _)) = store.plan(id).map_err(internal)? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no plan #{id}")));
    };
    store.activate_plan(id).map_err(internal)?;
    store
        .audit(
            s.inner.time.now(),
            "park",
            &c.who(),
            &format!("plan #{id} ({}) made active for {}", row.strategy, row.day),
            id as f64,
            None,
            None,
            "accepted",
        )
        .map_err(internal)?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({"id": id, "day": row.day, "active": true})))
}

#[derive(Deserialize)]
struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Runs a service call on the blocking pool: accounting, issuing and reading files take time
/// and touch the disk, and must never hold an executor thread (the stream, the dashboard and
/// the other requests go on meanwhile).
async fn on_blocking_pool<T: Send + 'static>(
    s: &AppState,
    call: impl FnOnce(&dyn Services) -> Result<T, ServiceError> + Send + 'static,
) -> Result<Result<T, ServiceError>, ApiError> {
    services(s)?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || match st.inner.services.as_deref() {
        Some(x) => call(x),
        None => Err(ServiceError::NotConfigured(
            "carbon accounting and planning are not available in this server".into(),
        )),
    })
    .await
    .map_err(internal)
}

fn services(s: &AppState) -> Result<&dyn Services, ApiError> {
    s.inner.services.as_deref().ok_or(ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "carbon accounting and planning are not available in this server".into(),
    ))
}

async fn carbon(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<CarbonSummary>, ApiError> {
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(bad_request(
            "from and to: both are needed (dates YYYY-MM-DD or RFC 3339 instants)",
        ));
    };
    let period = parse_period(&s.inner.park, &from, &to)?;
    Ok(Json(
        on_blocking_pool(&s, move |x| x.carbon(period)).await??,
    ))
}

/// A period from the API's `from` and `to`: dates (the park's local midnight) or RFC 3339
/// instants with an offset, `from` before `to`.
fn parse_period(park: &Park, from: &str, to: &str) -> Result<Period, ApiError> {
    let instant =
        |text: &str, field: &str| match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) => Ok(park.clock.start_of_local_day(d)),
            Err(_) => pedf_core::time::parse_rfc3339(text).map_err(|_| {
                bad_request(format!(
                    "{field}: `{text}` is not a date YYYY-MM-DD or an RFC 3339 time with an offset"
                ))
            }),
        };
    let period = Period {
        from: instant(from, "from")?,
        to: instant(to, "to")?,
    };
    if period.to <= period.from {
        return Err(bad_request(format!(
            "to: `{to}` is not after from `{from}`"
        )));
    }
    Ok(period)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateBody {
    from: String,
    to: String,
}

async fn certificate_issue(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<CertificateBody>,
) -> Result<Json<IssuedCertificate>, ApiError> {
    c.require(Role::Operator)?;
    let period = parse_period(&s.inner.park, &b.from, &b.to)?;
    let who = c.who();
    let out = on_blocking_pool(&s, move |x| x.issue_certificate(period, &who)).await??;
    let id = out.id.clone();
    s.store()
        .audit(
            s.inner.time.now(),
            "carbon",
            &c.who(),
            &format!("certificate {id} issued for {} .. {}", b.from, b.to),
            out.stated_t,
            None,
            None,
            "accepted",
        )
        .map_err(internal)?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    Ok(Json(out))
}

async fn certificate_file(
    _c: Caller,
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(format) = CertificateFormat::parse(&kind) else {
        return Err(bad_request(format!("kind: `{kind}` is not pdf or json")));
    };
    let content_type = format.content_type();
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad_request(format!("id: `{id}` is not a certificate id")));
    }
    let i = id.clone();
    let bytes = on_blocking_pool(&s, move |x| x.certificate_file(&i, format)).await??;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.{kind}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    label: String,
    role: String,
}

async fn token_create(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Admin)?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        bad_request(format!(
            "role: `{}` is not one of viewer, operator, admin",
            b.role
        ))
    })?;
    if b.label.trim().is_empty() || b.label.len() > 100 {
        return Err(bad_request("label: give a name of 1 to 100 characters"));
    }
    let mut store = s.store();
    let (token, id) = auth::create_token(&mut store, b.label.trim(), role, s.inner.time.now())
        .map_err(internal)?;
    let _ = store.event(
        s.inner.time.now(),
        "info",
        "auth",
        &format!(
            "token #{id} ({}) for {} created by {}",
            role.name(),
            b.label.trim(),
            c.who()
        ),
    );
    Ok(Json(
        json!({"id": id, "role": role.name(), "label": b.label.trim(), "token": token}),
    ))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
