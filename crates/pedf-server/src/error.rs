//! Error answers: a status and a JSON message saying what was wrong, for bad bodies and
//! for the application's typed errors, in the language the request prefers
//! (`Accept-Language`: Chinese or English, English by default). Every error is made with
//! both texts ([`Message`]), so none reaches the dashboard's Chinese page in English only.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pedf_core::message::{Lang, Message};
use pedf_core::services::ServiceError;
use serde_json::json;

use crate::MAX_BODY_BYTES;

/// An error answer: status and a message saying what was wrong, in both languages.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Message);

/// The message of an error answer, kept on the response for [`json_errors`] to say in the
/// request's language.
#[derive(Debug, Clone)]
struct Said(Message);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1.en }))).into_response();
        r.extensions_mut().insert(Said(self.1));
        r
    }
}

impl ApiError {
    /// An answer with `status`, saying `en` and `zh`.
    pub(crate) fn new(
        status: StatusCode,
        en: impl Into<String>,
        zh: impl Into<String>,
    ) -> ApiError {
        ApiError(status, Message::new(en, zh))
    }
}

/// A request that cannot be taken as sent (400).
pub(crate) fn bad_request(en: impl Into<String>, zh: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, en, zh)
}

/// The server failed (500), with the failure's own words.
pub(crate) fn internal(m: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        Message::framed("the server failed", "服务器出错", m),
    )
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
                    StatusCode::PAYLOAD_TOO_LARGE => Message::new(
                        format!(
                            "request body too large: at most {MAX_BODY_BYTES} bytes are accepted"
                        ),
                        format!("请求体过大：最多接受 {MAX_BODY_BYTES} 字节"),
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => Message::new(
                        "request body must be JSON with Content-Type: application/json",
                        "请求体须为 JSON，并带 Content-Type: application/json",
                    ),
                    _ => Message::framed("request body", "请求体有误", r.body_text()),
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
        ApiError(status, e.message().clone())
    }
}

/// Every error answer is JSON `{"error": ...}` in the language the request prefers: the
/// server's own errors carry both texts; axum's rejections (a path or query that does not
/// parse, a method the route does not take) come as plain English text and are wrapped, with
/// their words kept behind a Chinese frame.
pub(crate) async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    use axum::http::header::{ACCEPT_LANGUAGE, CONTENT_LENGTH, CONTENT_TYPE};
    let lang = req
        .headers()
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::from_accept_language);
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    if let Some(Said(m)) = r.extensions().get::<Said>().cloned() {
        if lang == Lang::En {
            return r;
        }
        let (mut parts, _) = r.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(
            parts,
            axum::body::Body::from(json!({ "error": m.get(lang) }).to_string()),
        );
    }
    let json = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json {
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
    let said = match lang {
        Lang::En => text,
        Lang::Zh => format!("{}：{text}", rejection_zh(status)),
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(json!({ "error": said }).to_string()),
    )
}

/// The Chinese words for an axum rejection of `status`, put before its English text.
fn rejection_zh(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "请求有误",
        StatusCode::NOT_FOUND => "没有这个地址",
        StatusCode::METHOD_NOT_ALLOWED => "此地址不接受这种请求方法",
        StatusCode::PAYLOAD_TOO_LARGE => "请求体过大",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "请求体类型不受支持",
        StatusCode::UNPROCESSABLE_ENTITY => "请求内容无法处理",
        StatusCode::TOO_MANY_REQUESTS => "请求过于频繁",
        s if s.is_server_error() => "服务器出错",
        _ => "请求未被接受",
    }
}
