//! Grid requests through the API: an operator gives one (the EMS holds it, holds part of it,
//! or refuses it with why); anyone reads them with their baseline and what the park delivered.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use pedf_core::grid_request::{GridRequest, RequestKind};
use pedf_store::Reference;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{bad_request, internal, ApiError, Body};
use crate::AppState;

/// How long a request waits for the EMS's answer (it is taken at the next control cycle).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

fn time_of(what: &str, t: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    pedf_core::time::parse_rfc3339(t).map_err(|_| {
        bad_request(
            format!("{what}: `{t}` is not an RFC 3339 time, e.g. 2026-07-01T14:00:00+08:00"),
            format!("{what}：`{t}` 不是 RFC 3339 时刻，例如 2026-07-01T14:00:00+08:00"),
        )
    })
}

/// An operator gives a grid request; the EMS answers at its next cycle.
pub(crate) async fn request_post(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<pedf_core::grid_request::GivenRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    c.require(Role::Operator)?;
    let kind = RequestKind::of(&b.kind, b.kw).map_err(|e| bad_request(e.clone(), e))?;
    let (start, end) = (time_of("start", &b.start)?, time_of("end", &b.end)?);
    let id = match b.id {
        Some(id) if pedf_core::grid_request::id_ok(&id) => id,
        Some(id) => {
            return Err(bad_request(
                format!("id: `{id}`: give 1 to 64 letters, digits, `-`, `_` or `.`"),
                format!("id：`{id}`：请给 1 到 64 个字母、数字、`-`、`_` 或 `.`"),
            ))
        }
        None => format!("api-{}", s.inner.time.now().format("%Y%m%dT%H%M%S%3f")),
    };
    let request = GridRequest {
        id: id.clone(),
        start,
        end,
        kind,
        price_cny_per_kwh: b.price_cny_per_kwh,
        source: format!("api: {}", c.who()),
    };
    request
        .check(&s.inner.park.clock)
        .map_err(|e| bad_request(e.clone(), e))?;
    let Some(tx) = &s.inner.grid_requests else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server takes no grid requests",
            "此服务器不接受电网请求",
        ));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.try_send((request, reply)).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the EMS is not taking grid requests now; try again",
            "EMS 暂时不接受电网请求；请重试",
        )
    })?;
    match tokio::time::timeout(ANSWER_WAIT, answer).await {
        Ok(Ok(Ok((held, note)))) => Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "held_kw": held, "note": note})),
        )),
        Ok(Ok(Err(why))) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("grid request {id} refused: {why}"),
            format!("电网请求 {id} 被拒绝：{why}"),
        )),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no answer to grid request {id} within {} s; see the events",
                ANSWER_WAIT.as_secs()
            ),
            format!(
                "{} 秒内未得到电网请求 {id} 的答复；请查看事件",
                ANSWER_WAIT.as_secs()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Days back from now (default 31, at most 400).
    #[serde(default)]
    days: Option<i64>,
}

/// The grid requests of the last days: each with what the EMS holds of it, its baseline and
/// what the park delivered so far (against the baseline, at most what was asked), and its
/// settlement line.
pub(crate) async fn requests_get(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days.unwrap_or(31);
    if !(1..=400).contains(&days) {
        return Err(bad_request(
            format!("days: {days}: give 1 to 400"),
            format!("days：{days}：请给 1 到 400"),
        ));
    }
    let now = s.inner.time.now();
    let clock = &s.inner.park.clock;
    let store = s.store();
    let taken = store
        .grid_requests(
            now - chrono::Duration::days(days),
            now + chrono::Duration::days(3650),
        )
        .map_err(|e| internal(e.to_string()))?;
    let mut out = Vec::new();
    for t in &taken {
        let r = &t.request;
        let status = if now < r.start {
            "waiting"
        } else if now < r.end {
            "in force"
        } else {
            "over"
        };
        let measured = match store.grid_request_delivery(t, clock, &s.inner.baseline_rule, None) {
            Err(why) => json!({"baseline": null, "why": why}),
            Ok(m) => {
                let d = &m.delivery;
                let (days, plan, why) = match &m.against {
                    Reference::Baseline(days) => (
                        days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                        None,
                        None,
                    ),
                    Reference::Plan(id, why) => (Vec::new(), Some(*id), Some(why.clone())),
                };
                json!({
                    "against": m.against.said(),
                    "baseline_days": days,
                    "reference_plan": plan,
                    "why_no_baseline": why,
                    "requested_kwh": d.requested_kwh,
                    "delivered_kwh": d.delivered_kwh,
                    "share": d.share,
                    "settlement_cny": d.settlement_cny,
                    "intervals": d.intervals.iter().map(|i| json!({
                        "start": i.start.to_rfc3339(),
                        "requested_kw": i.requested_kw,
                        "delivered_kw": i.delivered_kw,
                        "baseline_kw": i.baseline_kw,
                        "measured_kw": i.measured_kw,
                    })).collect::<Vec<_>>(),
                })
            }
        };
        out.push(json!({
            "id": r.id,
            "kind": r.kind.name(),
            "kw": r.kind.kw(),
            "start": r.start.to_rfc3339(),
            "end": r.end.to_rfc3339(),
            "price_cny_per_kwh": r.price_cny_per_kwh,
            "source": r.source,
            "taken": t.taken.to_rfc3339(),
            "held_kw": t.held_kw,
            "note": t.note,
            "status": status,
            "delivery": measured,
        }));
    }
    Ok(Json(json!({ "requests": out })))
}
