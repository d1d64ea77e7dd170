//! Who a request to the hub comes from, as on the park's server: a token in
//! `Authorization: Bearer` or in the hub's login cookie, with a role. Reading (the API, the
//! view's data, /metrics) needs viewer, a grid request operator, the tokens admin. The view's
//! own files are open: it asks for a token and logs in (`POST /api/v1/session`).

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pedf_server::Role;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api_error, Shared};

/// The hub's login cookie (the park server's is `pedf_token`: a park's dashboard and the hub
/// on one host would otherwise share it, cookies do not keep ports apart).
const COOKIE: &str = "pedf_fleet_token";

/// A call refused: its status and why (the API's error body).
pub(super) struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        api_error(self.0, self.1)
    }
}

/// A caller the hub knows: the park server's caller (token id, label, role), from the hub's
/// store.
pub(super) struct HubCaller(pub pedf_server::Caller);

impl HubCaller {
    /// Refused (403) unless the token's role is `role` or above.
    pub fn require(&self, role: Role) -> Result<(), Refused> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {} role; the token has {}",
                    role.name(),
                    self.0.role.name()
                ),
            ))
        }
    }

    /// How the hub's records name the caller (as the park's audit log does).
    pub fn who(&self) -> String {
        self.0.who()
    }
}

/// The caller of `token`, if it is one of the hub's, not revoked.
fn lookup(s: &Shared, token: &str) -> Result<Option<HubCaller>, Refused> {
    let hash = pedf_server::auth::hash_token(token.trim());
    let t = s
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .token(&hash)
        .map_err(|e| Refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(t.and_then(|t| {
        Some(HubCaller(pedf_server::Caller {
            token_id: t.id,
            label: t.label,
            role: Role::parse(&t.role)?,
        }))
    }))
}

impl FromRequestParts<Shared> for HubCaller {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Refused> {
        let refused = |why: &str| {
            s.counters.auth_failures.fetch_add(1, Relaxed);
            Refused(StatusCode::UNAUTHORIZED, why.to_string())
        };
        let Some((token, from)) = pedf_server::token_in(&parts.headers, COOKIE) else {
            return Err(refused(
                "no token: send `Authorization: Bearer TOKEN` or log in at POST /api/v1/session (the first token is said once at the hub's first start)",
            ));
        };
        if from == pedf_server::TokenFrom::Cookie {
            if let Some((origin, host)) = pedf_server::from_elsewhere(&parts.method, &parts.headers)
            {
                return Err(Refused(
                    StatusCode::FORBIDDEN,
                    format!("a change made with the login cookie must come from the fleet view itself (Origin {origin} is not this hub, {host}); scripts send Authorization: Bearer"),
                ));
            }
        }
        lookup(s, &token)?.ok_or_else(|| refused("not a token of this hub's, or revoked"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    token: String,
}

/// The body of a JSON request, or 400 saying what would do.
fn body<T: serde::de::DeserializeOwned>(b: &[u8], give: &str) -> Result<T, Refused> {
    serde_json::from_slice(b).map_err(|e| {
        Refused(
            StatusCode::BAD_REQUEST,
            format!("not the body this takes ({e}); give {give}"),
        )
    })
}

/// `POST /api/v1/session` `{"token": ...}`: sets the login cookie (HttpOnly, SameSite=Strict).
/// Ten failures a minute from one address, then 429 for the rest of the minute.
pub(super) async fn login(
    State(s): State<Shared>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    b: axum::body::Bytes,
) -> Response {
    let peer = peer.map(|p| p.0 .0.ip());
    if let Some(wait) = peer.and_then(|p| s.failed_logins.blocked(p)) {
        let mut r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} failed logins from this address in a minute: try again in {wait} s",
                pedf_server::MAX_FAILED_LOGINS
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let b: LoginBody = match body(&b, "{\"token\": TOKEN}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match lookup(&s, &b.token) {
        Ok(Some(c)) => {
            let c = c.0;
            let mut r = Json(json!({ "role": c.role.name(), "label": c.label })).into_response();
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
                b.token.trim(),
                if s.secure_cookie { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            s.counters.auth_failures.fetch_add(1, Relaxed);
            if let Some(p) = peer {
                s.failed_logins.failed(p);
            }
            api_error(
                StatusCode::UNAUTHORIZED,
                "not a token of this hub's, or revoked",
            )
        }
        Err(r) => r.into_response(),
    }
}

/// `DELETE /api/v1/session`: the login cookie dropped.
pub(super) async fn logout() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pedf_fleet_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// `GET /api/v1/whoami`: the caller's role and label.
pub(super) async fn whoami(c: HubCaller) -> Json<Value> {
    Json(json!({ "role": c.0.role.name(), "label": c.0.label, "token_id": c.0.token_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    label: String,
    role: String,
}

/// `POST /api/v1/tokens` (admin) `{"label": ..., "role": viewer|operator|admin}`: a new token,
/// said this once.
pub(super) async fn token_create(
    c: HubCaller,
    State(s): State<Shared>,
    b: axum::body::Bytes,
) -> Response {
    if let Err(r) = c.require(Role::Admin) {
        return r.into_response();
    }
    let b: TokenBody = match body(&b, "{\"label\": NAME, \"role\": \"viewer\"}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let (role, label) = match token_wanted(&b.role, &b.label) {
        Ok(x) => x,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    let made = make_token(
        &mut s.store.lock().unwrap_or_else(|p| p.into_inner()),
        label,
        role,
        s.time.now(),
    );
    match made {
        Ok((token, id)) => {
            tracing::info!(
                "fleet hub: token #{id} ({}) for {label} made by {}",
                role.name(),
                c.who()
            );
            (
                StatusCode::CREATED,
                Json(json!({ "id": id, "label": label, "role": role.name(), "token": token })),
            )
                .into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The role and label asked for a new token, checked: the role named, a label of 1 to 100
/// characters (trimmed).
pub fn token_wanted<'a>(role: &str, label: &'a str) -> Result<(Role, &'a str), String> {
    let role = Role::parse(role)
        .ok_or_else(|| format!("role: `{role}` is not one of viewer, operator, admin"))?;
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 {
        return Err("label: give a name of 1 to 100 characters".into());
    }
    Ok((role, label))
}

/// Makes one of the hub's tokens in its store at `now`: the token (said once, only its hash is
/// kept) and its id. The API's and `pedf fleet token create`'s.
pub fn make_token(
    store: &mut pedf_store::fleet::FleetStore,
    label: &str,
    role: Role,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, i64), String> {
    let token = pedf_server::auth::new_token()?;
    let id = store
        .add_token(
            &pedf_server::auth::hash_token(&token),
            label,
            role.name(),
            now,
        )
        .map_err(|e| e.to_string())?;
    Ok((token, id))
}

/// `GET /api/v1/tokens` (admin): each token's id, label, role, when made and revoked (never
/// the token).
pub(super) async fn token_list(c: HubCaller, State(s): State<Shared>) -> Response {
    if let Err(r) = c.require(Role::Admin) {
        return r.into_response();
    }
    let all = s
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .all_tokens();
    match all {
        Ok(all) => Json(json!({
            "tokens": all
                .iter()
                .map(|t| json!({ "id": t.id, "label": t.label, "role": t.role,
                                 "created": t.created, "revoked": t.revoked }))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/v1/tokens/{id}` (admin): refused from now on. A token cannot revoke itself.
pub(super) async fn token_revoke(
    c: HubCaller,
    State(s): State<Shared>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if let Err(r) = c.require(Role::Admin) {
        return r.into_response();
    }
    if id == c.0.token_id {
        return api_error(
            StatusCode::CONFLICT,
            "a token cannot revoke itself: revoke it with another admin token",
        );
    }
    let done = s
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .revoke_token(id, s.time.now());
    match done {
        Ok(true) => {
            tracing::info!("fleet hub: token #{id} revoked by {}", c.who());
            Json(json!({ "id": id, "revoked": true })).into_response()
        }
        Ok(false) => api_error(
            StatusCode::NOT_FOUND,
            format!("no token #{id} that is not revoked already"),
        ),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
