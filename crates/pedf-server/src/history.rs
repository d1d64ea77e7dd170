//! What happened: events, the audit log, interval records of a day.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{bad_request, internal, ApiError};
use crate::AppState;

#[derive(Deserialize)]
pub(crate) struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

pub(crate) async fn events(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store()
        .recent_event_rows(q.limit.unwrap_or(100).min(1000))
        .map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|e| {
                json!({"id": e.id, "at": e.at, "severity": e.severity, "kind": e.kind, "message": e.message,
                       "acked_at": e.acked.as_ref().map(|a| a.0), "acked_by": e.acked.map(|a| a.1)})
            })
            .collect(),
    )))
}

/// An operator acknowledges an alarm: it is marked with who and when, audited, and said as
/// an event; an alarm is acknowledged once.
pub(crate) async fn event_ack(
    c: Caller,
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    c.require(crate::auth::Role::Operator)?;
    let now = s.inner.time.now();
    let who = c.who();
    let mut store = s.store();
    if !store.ack_event(id, now, &who).map_err(internal)? {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no alarm #{id} that is not acknowledged already"),
            format!("没有尚未确认的告警 #{id}"),
        ));
    }
    store
        .audit(
            now,
            "park",
            &who,
            &format!("alarm #{id} acknowledged"),
            id as f64,
            None,
            None,
            "accepted",
        )
        .map_err(internal)?;
    let _ = store.event(
        now,
        "info",
        "alarm",
        &format!("alarm #{id} acknowledged by {who}"),
    );
    Ok(Json(json!({"id": id, "acked_at": now, "acked_by": who})))
}

/// A page of the audit query: at most `limit` entries (100, at most 1000), before the entry
/// `before` (an id of the previous page's last entry; none: the newest).
#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    before: Option<i64>,
}

/// The audit, newest first, a page at a time: each entry has its `id`; the next page is
/// `?before=<the last id>`, until a page is empty.
pub(crate) async fn audit(
    c: Caller,
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let rows = s
        .store()
        .audit_page(q.before, q.limit.unwrap_or(100).min(1000))
        .map_err(internal)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|a| {
                json!({"id": a.id, "at": a.at, "device": a.device, "by": a.by, "reason": a.reason,
                       "requested": a.requested, "written": a.written, "readback": a.readback,
                       "outcome": a.outcome})
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
pub(crate) struct DayQuery {
    pub(crate) day: Option<String>,
}

pub(crate) fn parse_day(text: &str, field: &str) -> Result<chrono::NaiveDate, ApiError> {
    pedf_core::time::parse_date(text).map_err(|e| {
        bad_request(
            format!("{field}: {e}"),
            format!("{field}：`{text}` 不是日期 YYYY-MM-DD（{e}）"),
        )
    })
}

/// The interval energy records of a local day (measured by the runtime), with each one's
/// index in the day and what the grid meters' counters gave for it (`grid_meters`: each
/// meter's import and export between the interval's boundaries, and how late they were read).
pub(crate) async fn records(
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
        return Err(bad_request(
            format!("day: {day} has no intervals"),
            format!("day：{day} 没有区间"),
        ));
    };
    let to = *last + clock.interval.duration();
    let (rows, counted) = {
        let st = s.store();
        (
            st.stored_records(*from, to).map_err(internal)?,
            st.meter_intervals(*from, to).map_err(internal)?,
        )
    };
    let list: Vec<Value> = rows
        .into_iter()
        .filter_map(|stored| {
            let r = stored.record;
            let index = starts.iter().position(|t| *t == r.start)?;
            // Each charger's and each battery's part, as the records file of `pedf carbon`
            // and of a certificate's verification has them (`ev:<id>`, `charge:<id>`).
            let chargers: serde_json::Map<String, Value> =
                r.ev_chargers.iter().map(|(id, kwh)| (id.clone(), json!(kwh))).collect();
            let batteries: Vec<Value> = r
                .batteries
                .iter()
                .map(|(id, c, d)| json!({"id": id, "charge_kwh": c, "discharge_kwh": d}))
                .collect();
            let meters: Vec<Value> = counted
                .iter()
                .filter(|m| m.start == r.start)
                .map(|m| json!({"meter": m.meter, "import_kwh": m.import_kwh, "export_kwh": m.export_kwh, "lag_s": m.lag_s}))
                .collect();
            Some(json!({"grid_meters": meters,"index": index, "start": r.start, "source": stored.source,
                "observed_share": stored.observed,
                "pv_kwh": r.pv_kwh, "grid_import_kwh": r.grid_import_kwh, "grid_export_kwh": r.grid_export_kwh,
                "battery_charge_kwh": r.battery_charge_kwh, "battery_discharge_kwh": r.battery_discharge_kwh,
                "load_kwh": r.load_kwh, "ev_kwh": r.ev_kwh, "ev_chargers": chargers, "batteries": batteries}))
        })
        .collect();
    Ok(Json(
        json!({"day": day.to_string(), "from": from, "to": to, "intervals_per_day": starts.len(),
        "interval_hours": clock.interval.hours().0, "records": list}),
    ))
}
