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
