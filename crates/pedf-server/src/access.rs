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

pub(crate) fn token_of(headers: &HeaderMap) -> Option<String> {
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
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    token: String,
}

pub(crate) async fn login(State(s): State<AppState>, Body(b): Body<LoginBody>) -> Response {
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
}

pub(crate) async fn token_create(
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
