//! Plans: listed, made by the application, read, activated.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pedf_core::services::PlannedDay;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::carbon::on_blocking_pool;
use crate::error::{internal, ApiError, Body};
use crate::history::{parse_day, DayQuery};
use crate::AppState;

pub(crate) async fn plans(
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
pub(crate) struct PlanRunBody {
    day: String,
}

pub(crate) async fn plan_run(
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

pub(crate) async fn plan_get(
    _c: Caller,
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let Some((row, text)) = s.store().plan(id).map_err(internal)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no plan #{id}"),
            format!("没有计划 #{id}"),
        ));
    };
    let plan: Value = serde_json::from_str(&text).map_err(internal)?;
    Ok(Json(
        json!({"id": row.id, "created": row.created, "day": row.day, "strategy": row.strategy,
                   "active": row.active, "plan": plan}),
    )
    .into_response())
}

pub(crate) async fn plan_activate(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let mut store = s.store();
    let Some((row, _)) = store.plan(id).map_err(internal)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no plan #{id}"),
            format!("没有计划 #{id}"),
        ));
    };
    let before = store.active_plan(&row.day).map_err(internal)?;
    store.activate_plan(id).map_err(internal)?;
    let _ = store.event(
        s.inner.time.now(),
        "info",
        "plan",
        &format!(
            "plan #{id} ({}) for {} made active by {}{}",
            row.strategy,
            row.day,
            c.who(),
            match before {
                Some((old, strategy, _)) if old != id =>
                    format!(", replacing plan #{old} ({strategy})"),
                _ => String::new(),
            }
        ),
    );
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
