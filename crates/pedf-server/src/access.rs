//! Who a request comes from: the token (header or cookie), the role it needs, logging in and
//! out, and making tokens.

use std::sync::atomic::Ordering;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{self, Caller, Role};
use crate::error::{bad_request, internal, ApiError, Body};
use crate::AppState;

/// Failed logins per peer address: at most [`MAX_FAILED_LOGINS`] a minute, then 429 until
/// the minute is over.
#[derive(Default)]
pub struct FailedLogins(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
);

/// Failed logins a peer may make in a minute.
pub const MAX_FAILED_LOGINS: u32 = 10;

impl FailedLogins {
    /// Seconds `peer` must still wait, when it has failed too often this minute.
    pub fn blocked(&self, peer: std::net::IpAddr) -> Option<u64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (since, n) = map.get(&peer)?;
        let left = 60u64.saturating_sub(since.elapsed().as_secs());
        (*n >= MAX_FAILED_LOGINS && left > 0).then_some(left)
    }

    /// Counts a failed login from `peer`.
    pub fn failed(&self, peer: std::net::IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (since, _)| since.elapsed().as_secs() < 60);
        let e = map.entry(peer).or_insert((std::time::Instant::now(), 0));
        e.1 += 1;
    }
}

/// How a request's token came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    /// `Authorization: Bearer` (a script: no browser sends it by itself).
    Header,
    /// The login cookie (a browser, which also sends it with requests other sites make).
    Cookie,
}

/// The park server's login cookie.
const COOKIE: &str = "pedf_token";

pub(crate) fn token_of(headers: &HeaderMap) -> Option<(String, TokenFrom)> {
    token_in(headers, COOKIE)
}

/// The token a request brings: `Authorization: Bearer`, else the login cookie `cookie` (each
/// server its own name: cookies do not keep ports apart).
pub fn token_in(headers: &HeaderMap, cookie: &str) -> Option<(String, TokenFrom)> {
    let prefix = format!("{cookie}=");
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_string(), TokenFrom::Header));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(prefix.as_str()).map(str::to_string))
        .map(|t| (t, TokenFrom::Cookie))
}

/// A change (any method but GET and HEAD) made with the login cookie must come from the
/// dashboard's own page: its `Origin` is this server. Another page, even on the same host at
/// another port (same-site, so the cookie goes along), is refused.
fn same_origin(parts: &Parts) -> Result<(), ApiError> {
    match from_elsewhere(&parts.method, &parts.headers) {
        None => Ok(()),
        Some((origin, host)) => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a change made with the login cookie must come from the dashboard itself (Origin {origin} is not this server, {host}); scripts send Authorization: Bearer"),
                format!("用登录 Cookie 做的更改必须来自本看板（Origin {origin} 不是本服务器 {host}）；脚本请使用 Authorization: Bearer"),
            ))
        }
    }
}

/// A change (a method but GET and HEAD) whose `Origin` is not this server (its `Host`):
/// the origin (or "missing") and the host, to refuse it when it came with a cookie.
pub fn from_elsewhere(
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Option<(String, String)> {
    if matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin.and_then(|o| o.split_once("://")).map(|(_, a)| a) {
        Some(authority) if !host.is_empty() && authority.eq_ignore_ascii_case(host) => None,
        _ => Some((origin.unwrap_or("missing").to_string(), host.to_string())),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some((token, from)) = token_of(&parts.headers) else {
            s.inner
                .counters
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no token: send `Authorization: Bearer <token>` or log in at POST /api/v1/session",
                "没有令牌：请发送 `Authorization: Bearer <令牌>`，或在 POST /api/v1/session 登录",
            ));
        };
        if from == TokenFrom::Cookie {
            same_origin(parts)?;
        }
        match auth::lookup(&s.store(), &token, s.inner.time.now()) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                s.inner
                    .counters
                    .auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(invalid_token())
            }
            Err(e) => Err(internal(e)),
        }
    }
}

impl Caller {
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            let (need, has) = (role.name(), self.role.name());
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this needs the {need} role; the token has {has}"),
                format!("此操作需要 {need} 角色；该令牌的角色是 {has}"),
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    token: String,
}

pub(crate) async fn login(
    State(s): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Body(b): Body<LoginBody>,
) -> Response {
    let peer = peer.map(|p| p.0 .0.ip());
    if let Some(wait) = peer.and_then(|p| s.inner.failed_logins.blocked(p)) {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_FAILED_LOGINS} failed logins from this address in a minute: try again in {wait} s"),
            format!("此地址一分钟内登录失败 {MAX_FAILED_LOGINS} 次：请 {wait} 秒后再试"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match auth::lookup(&s.store(), b.token.trim(), s.inner.time.now()) {
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
            if let Some(p) = peer {
                s.inner.failed_logins.failed(p);
            }
            invalid_token().into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

pub(crate) async fn logout() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pedf_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

pub(crate) async fn whoami(c: Caller) -> Json<Value> {
    Json(json!({ "role": c.role.name(), "label": c.label, "token_id": c.token_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    label: String,
    role: String,
    /// Refused after this many days (1 to 3650; none: never).
    #[serde(default)]
    expires_days: Option<u32>,
}

pub(crate) async fn token_create(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Admin)?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        bad_request(
            format!("role: `{}` is not one of viewer, operator, admin", b.role),
            format!(
                "role：`{}` 不是 viewer（查看）、operator（运行）、admin（管理）之一",
                b.role
            ),
        )
    })?;
    if b.label.trim().is_empty() || b.label.len() > 100 {
        return Err(bad_request(
            "label: give a name of 1 to 100 characters",
            "label：请给出 1 到 100 个字符的名称",
        ));
    }
    if b.expires_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(bad_request(
            "expires_days: give 1 to 3650 days (or leave it out: never)",
            "expires_days：请给 1 到 3650 天（不给则永不过期）",
        ));
    }
    let now = s.inner.time.now();
    let expires = b
        .expires_days
        .map(|d| now + chrono::Duration::days(i64::from(d)));
    let mut store = s.store();
    let (token, id) = auth::create_expiring_token(&mut store, b.label.trim(), role, now, expires)
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
        json!({"id": id, "role": role.name(), "label": b.label.trim(), "token": token, "expires": expires}),
    ))
}

/// The tokens: id, label, role, when made, whether revoked (never the token itself) (admin).
pub(crate) async fn token_list(
    c: Caller,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Admin)?;
    let rows = s.store().all_tokens().map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|t| {
                json!({"id": t.id, "label": t.label, "role": t.role, "created": t.created,
                       "revoked": t.revoked, "expires": t.expires})
            })
            .collect(),
    )))
}

/// Revokes a token (admin): it is refused from now on and its open live streams end. The
/// token making the request cannot revoke itself (an admin would lock themselves out).
pub(crate) async fn token_revoke(
    c: Caller,
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Admin)?;
    if id == c.token_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a token cannot revoke itself: revoke it with another admin token or `pedf token revoke`",
            "令牌不能吊销自己：请用另一个管理员令牌或 `pedf token revoke` 吊销",
        ));
    }
    let mut store = s.store();
    if !store.revoke_token(id).map_err(internal)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token #{id} that is not revoked already"),
            format!("没有尚未吊销的令牌 #{id}"),
        ));
    }
    let _ = store.event(
        s.inner.time.now(),
        "info",
        "auth",
        &format!("token #{id} revoked by {}", c.who()),
    );
    s.inner.revoked.send_modify(|r| {
        r.insert(id);
    });
    Ok(Json(json!({"id": id, "revoked": true})))
}

fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "the token is not valid (unknown or revoked)",
        "令牌无效（未知或已吊销）",
    )
}
