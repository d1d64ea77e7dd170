//! Error answers: a status and a JSON message saying what was wrong, for bad bodies and
//! for the application's typed errors.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pedf_core::services::ServiceError;
use serde_json::json;

use crate::MAX_BODY_BYTES;

/// An error answer: status and a message saying what was wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

pub(crate) fn internal(m: impl std::fmt::Display) -> ApiError {
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

/// Every error answer is JSON `{"error": ...}`: axum's own rejections (a path or query that
/// does not parse, a method the route does not take) come as plain text and are wrapped, with
/// their words kept.
pub(crate) async fn json_errors(r: axum::response::Response) -> axum::response::Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let status = r.status();
    let json = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    axum::response::Response::from_parts(
        parts,
        axum::body::Body::from(json!({ "error": text }).to_string()),
    )
}
