//! Carbon figures and certificates, from the application on the blocking pool.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pedf_core::message::Message;
use pedf_core::services::{
    CarbonSummary, CertificateFormat, IssuedCertificate, Period, ServiceError,
};
use pedf_core::Park;
use serde::Deserialize;

use crate::auth::{Caller, Role};
use crate::error::{bad_request, internal, ApiError, Body};
use crate::{AppState, Services};

#[derive(Deserialize)]
pub(crate) struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Runs a service call on the blocking pool: accounting, issuing and reading files take time
/// and touch the disk, and must never hold an executor thread (the stream, the dashboard and
/// the other requests go on meanwhile).
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    s: &AppState,
    call: impl FnOnce(&dyn Services) -> Result<T, ServiceError> + Send + 'static,
) -> Result<Result<T, ServiceError>, ApiError> {
    services(s)?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || match st.inner.services.as_deref() {
        Some(x) => call(x),
        None => Err(ServiceError::NotConfigured(unavailable())),
    })
    .await
    .map_err(internal)
}

pub(crate) fn services(s: &AppState) -> Result<&dyn Services, ApiError> {
    s.inner
        .services
        .as_deref()
        .ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, unavailable()))
}

fn unavailable() -> Message {
    Message::new(
        "carbon accounting and planning are not available in this server",
        "此服务器不提供碳核算和计划",
    )
}

fn from_and_to_needed() -> ApiError {
    bad_request(
        "from and to: both are needed (dates YYYY-MM-DD or RFC 3339 instants)",
        "from 和 to：两者都要给（日期 YYYY-MM-DD 或带时区的 RFC 3339 时刻）",
    )
}

pub(crate) async fn carbon(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<CarbonSummary>, ApiError> {
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(from_and_to_needed());
    };
    let period = parse_period(&s.inner.park, &from, &to)?;
    Ok(Json(
        on_blocking_pool(&s, move |x| x.carbon(period)).await??,
    ))
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// The park's history, day by day: energy by flow, the bill's terms (energy at its
/// time-of-use prices, export, wear; each month's demand charge on its peak so far) and
/// carbon, as JSON or (`format=csv`) one CSV line per day.
pub(crate) async fn history(
    _c: Caller,
    State(s): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(from_and_to_needed());
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(bad_request(
                format!("format: `{other}` is not json or csv"),
                format!("format：`{other}` 不是 json 或 csv"),
            ))
        }
    };
    let period = parse_period(&s.inner.park, &from, &to)?;
    let h = on_blocking_pool(&s, move |x| x.history(period)).await??;
    if !csv {
        return Ok(Json(h).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"history-{from}-{to}.csv\""),
            ),
        ],
        history_csv(&h),
    )
        .into_response())
}

/// One line per day: energy kWh, the bill's terms CNY, the day's peak kW, carbon kg.
fn history_csv(h: &pedf_core::services::History) -> String {
    let mut s = String::new();
    for n in &h.notes {
        s.push_str(&format!("# {n}\n"));
    }
    s.push_str("day,intervals,intervals_expected,pv_kwh,import_kwh,export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh,energy_cny,export_cny,wear_cny,peak_import_kw,scope2_kg,avoided_kg,self_sufficiency\n");
    for d in &h.days {
        let b = &d.bill;
        s.push_str(&format!(
            "{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.2},{:.2},{:.2},{:.1},{:.1},{:.1},{:.4}\n",
            b.day,
            b.intervals,
            d.intervals_expected,
            b.pv_kwh,
            b.import_kwh,
            b.export_kwh,
            b.battery_charge_kwh,
            b.battery_discharge_kwh,
            b.load_kwh,
            b.ev_kwh,
            b.energy_cny,
            b.export_cny,
            b.wear_cny,
            b.peak_import_kw,
            d.scope2_kg,
            d.avoided_kg,
            d.self_sufficiency
        ));
    }
    for m in &h.months {
        s.push_str(&format!(
            "# month {}: {} day(s), energy {:.2} CNY - export {:.2} CNY + demand {:.2} CNY (peak {:.1} kW) + wear {:.2} CNY = {:.2} CNY\n",
            m.month, m.days, m.energy_cny, m.export_cny, m.demand_cny, m.peak_import_kw, m.wear_cny, m.total_cny
        ));
    }
    s
}

/// A period from the API's `from` and `to`: dates (the park's local midnight) or RFC 3339
/// instants with an offset, `from` before `to`.
pub(crate) fn parse_period(park: &Park, from: &str, to: &str) -> Result<Period, ApiError> {
    let instant =
        |text: &str, field: &str| match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) => Ok(park.clock.start_of_local_day(d)),
            Err(_) => pedf_core::time::parse_rfc3339(text).map_err(|_| {
                bad_request(
                    format!(
                    "{field}: `{text}` is not a date YYYY-MM-DD or an RFC 3339 time with an offset"
                ),
                    format!("{field}：`{text}` 不是日期 YYYY-MM-DD，也不是带时区的 RFC 3339 时刻"),
                )
            }),
        };
    let period = Period {
        from: instant(from, "from")?,
        to: instant(to, "to")?,
    };
    if period.to <= period.from {
        return Err(bad_request(
            format!("to: `{to}` is not after from `{from}`"),
            format!("to：`{to}` 不晚于 from `{from}`"),
        ));
    }
    Ok(period)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateBody {
    from: String,
    to: String,
}

pub(crate) async fn certificate_issue(
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

pub(crate) async fn certificate_file(
    _c: Caller,
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(format) = CertificateFormat::parse(&kind) else {
        return Err(bad_request(
            format!("kind: `{kind}` is not pdf, json, records or meter-intervals"),
            format!("kind：`{kind}` 不是 pdf、json、records 或 meter-intervals"),
        ));
    };
    let content_type = format.content_type();
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad_request(
            format!("id: `{id}` is not a certificate id"),
            format!("id：`{id}` 不是证书编号"),
        ));
    }
    let i = id.clone();
    let bytes = on_blocking_pool(&s, move |x| x.certificate_file(&i, format)).await??;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.{}\"", format.extension()),
            ),
        ],
        bytes,
    )
        .into_response())
}
