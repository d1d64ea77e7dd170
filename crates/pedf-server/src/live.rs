//! The park now: its state, the live stream, the mode, and operators' orders on EV sessions.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use pedf_core::live::{ChargerAction, ChargerCommand, Live, Mode, ModeView, Order};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::{Caller, Role};
use crate::error::{bad_request, internal, ApiError, Body};
use crate::AppState;

pub(crate) async fn state_now(_c: Caller, State(s): State<AppState>) -> Json<Live> {
    Json((**s.inner.live.borrow()).clone())
}

pub(crate) async fn stream(c: Caller, State(s): State<AppState>) -> impl IntoResponse {
    struct Client {
        frames: watch::Receiver<Arc<str>>,
        stop: watch::Receiver<bool>,
        /// Tokens revoked: the stream ends when its token is.
        revoked: watch::Receiver<std::collections::BTreeSet<i64>>,
        token: i64,
        first: bool,
        state: AppState,
    }
    impl Drop for Client {
        fn drop(&mut self) {
            self.state
                .inner
                .counters
                .stream_clients
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
    s.inner
        .counters
        .stream_clients
        .fetch_add(1, Ordering::Relaxed);
    let client = Client {
        frames: s.inner.frames.clone(),
        stop: s.inner.shutdown.clone(),
        revoked: s.inner.revoked.subscribe(),
        token: c.token_id,
        first: true,
        state: s.clone(),
    };
    let events = futures_util::stream::unfold(client, |mut c| async move {
        let ended = |c: &Client| *c.stop.borrow() || c.revoked.borrow().contains(&c.token);
        if ended(&c) {
            return None;
        }
        while !c.first {
            tokio::select! {
                r = c.frames.changed() => {
                    r.ok()?;
                    break;
                }
                _ = c.stop.changed() => return None,
                // Another token's revocation: wait on.
                r = c.revoked.changed() => {
                    r.ok()?;
                    if ended(&c) {
                        return None;
                    }
                }
            }
        }
        c.first = false;
        let text = c.frames.borrow_and_update().clone();
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().event("state").data(&*text)),
            c,
        ))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

pub(crate) async fn mode_get(_c: Caller, State(s): State<AppState>) -> Json<ModeView> {
    Json(ModeView::from(&*s.inner.mode.borrow()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeBody {
    mode: String,
    #[serde(default)]
    battery_kw: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) async fn mode_put(
    c: Caller,
    State(s): State<AppState>,
    Body(b): Body<ModeBody>,
) -> Result<Json<ModeView>, ApiError> {
    c.require(Role::Operator)?;
    let park = &s.inner.park;
    let charge: f64 = park.batteries.iter().map(|b| b.max_charge.0).sum();
    let discharge: f64 = park.batteries.iter().map(|b| b.max_discharge.0).sum();
    let mode = match (b.mode.as_str(), b.battery_kw) {
        ("automatic", None) => Mode::Automatic,
        ("safe", None) => Mode::Safe,
        ("manual", Some(kw)) if kw.is_finite() && kw >= -charge && kw <= discharge => {
            Mode::Manual { battery_kw: kw }
        }
        ("manual", Some(kw)) => {
            let low = -charge;
            return Err(bad_request(
                format!("battery_kw: {kw} is outside the park's battery range {low:.0}..={discharge:.0} kW (+discharge/-charge)"),
                format!("battery_kw：{kw} 超出园区储能的范围 {low:.0}..={discharge:.0} kW（正为放电，负为充电）"),
            ));
        }
        ("manual", None) => {
            return Err(bad_request(
                "battery_kw: manual mode needs the battery setpoint in kW (+discharge/-charge)",
                "battery_kw：手动模式需要储能的功率设定值，单位 kW（正为放电，负为充电）",
            ))
        }
        ("automatic" | "safe", Some(_)) => {
            return Err(bad_request(
                format!(
                    "battery_kw: only manual mode takes a setpoint, not {}",
                    b.mode
                ),
                format!("battery_kw：只有手动模式接受设定值，{} 模式不接受", b.mode),
            ))
        }
        (other, _) => {
            return Err(bad_request(
                format!("mode: `{other}` is not one of automatic, manual, safe"),
                format!("mode：`{other}` 不是 automatic（自动）、manual（手动）、safe（安全）之一"),
            ))
        }
    };
    let view = ModeView::from(&mode);
    let reason = b.reason.unwrap_or_else(|| "set from the API".into());
    let mut store = s.store();
    store
        .audit(
            s.inner.time.now(),
            "park",
            &c.who(),
            &format!("mode {}: {reason}", view.mode),
            b.battery_kw.unwrap_or(0.0),
            None,
            None,
            "accepted",
        )
        .map_err(internal)?;
    // An operator's action is an event too (the audit holds every setpoint besides).
    let _ = store.event(
        s.inner.time.now(),
        "info",
        "control",
        &format!(
            "mode {}{} set by {}: {reason}",
            view.mode,
            b.battery_kw
                .map(|kw| format!(" (battery {kw} kW)"))
                .unwrap_or_default(),
            c.who()
        ),
    );
    drop(store);
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    s.inner.mode.send_replace(mode);
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandBody {
    action: ChargerAction,
    #[serde(default)]
    id_tag: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A charger of the live state by its device id (404 naming where the chargers are).
fn live_charger(s: &AppState, id: &str) -> Result<pedf_core::live::ChargerLive, ApiError> {
    s.inner
        .live
        .borrow()
        .chargers
        .iter()
        .find(|x| x.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no charger `{id}` (the chargers are in /api/v1/state)"),
                format!("没有充电桩 `{id}`（充电桩列在 /api/v1/state）"),
            )
        })
}

/// How long the API waits for a charger to do what an operator asked (the charger's own
/// call timeout is shorter).
const COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// An operator's command to a charger that takes commands (an OCPP charger: its transaction
/// stopped or started, its connector out of service or back in). Answered with what the
/// charger did, or why it did not; the run loop audits it and says it in an event.
pub(crate) async fn command_post(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<CommandBody>,
) -> Result<Json<Value>, ApiError> {
    c.require(Role::Operator)?;
    let action = b.action.name();
    let id_tag = match (b.action, b.id_tag) {
        (ChargerAction::Start, None) => return Err(bad_request(
            "start needs id_tag: the id tag the transaction is for (the run file's [ocpp] id_tags)",
            "start 需要 id_tag：交易所属的标识（运行文件 [ocpp] id_tags 中的一个）",
        )),
        (_, Some(t)) if t.is_empty() || t.chars().count() > 20 => {
            return Err(bad_request(
                format!("id_tag: `{t}` is not an OCPP id tag; give 1 to 20 characters"),
                format!("id_tag：`{t}` 不是 OCPP 标识；请给 1 到 20 个字符"),
            ))
        }
        (_, t) => t,
    };
    let charger = live_charger(&s, &id)?;
    if !charger.actions.contains(&b.action) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{id} takes no `{action}`: its protocol carries only the EMS's setpoints (an OCPP charger takes stop, start, disable and enable)"),
            format!("{id} 不接受 `{action}`：其协议只传递 EMS 的设定值（OCPP 充电桩接受 stop、start、disable、enable）"),
        ));
    }
    let Some(tx) = &s.inner.commands else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server takes no charger commands",
            "此服务器不接受充电桩指令",
        ));
    };
    let command = ChargerCommand {
        charger: id.clone(),
        action: b.action,
        id_tag,
        by: c.who(),
        reason: b.reason.unwrap_or_else(|| "from the API".into()),
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    tx.try_send((command, reply)).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the EMS is not taking commands now; try again",
            "EMS 暂时不接受指令；请重试",
        )
    })?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    match tokio::time::timeout(COMMAND_WAIT, outcome).await {
        Ok(Ok(Ok(done))) => Ok(Json(
            json!({"charger": id, "action": action, "outcome": done}),
        )),
        Ok(Ok(Err(why))) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{id} did not {action}: {why}"),
            format!("{id} 未执行 {action}：{why}"),
        )),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no outcome of {action} on {id} within {} s; see the events",
                COMMAND_WAIT.as_secs()
            ),
            format!(
                "{} 秒内未得到 {id} 执行 {action} 的结果；请查看事件",
                COMMAND_WAIT.as_secs()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionBody {
    #[serde(default)]
    energy_kwh: Option<f64>,
    /// RFC 3339, e.g. 2026-06-21T17:30:00+08:00.
    #[serde(default)]
    departure: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// An operator tells the EMS what the car on a charger needs and when it leaves (replacing
/// the park file's default session); the run loop applies it in its next cycle and re-plans.
pub(crate) async fn session_put(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<SessionBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    c.require(Role::Operator)?;
    let now = s.inner.time.now();
    if b.energy_kwh.is_none() && b.departure.is_none() {
        return Err(bad_request(
            "give energy_kwh (kWh the car still needs in all) and/or departure (RFC 3339)",
            "请给出 energy_kwh（车辆还需的总电量，kWh）和/或 departure（离开时间，RFC 3339）",
        ));
    }
    if let Some(e) = b
        .energy_kwh
        .filter(|e| !(e.is_finite() && *e > 0.0 && *e < 1e4))
    {
        return Err(bad_request(
            format!("energy_kwh: {e} is not a car's energy; give kWh above 0 and below 10000"),
            format!("energy_kwh：{e} 不是一辆车的电量；请给大于 0、小于 10000 的 kWh"),
        ));
    }
    let departure = match &b.departure {
        None => None,
        Some(t) => {
            let d = pedf_core::time::parse_rfc3339(t).map_err(|_| {
                bad_request(
                    format!(
                        "departure: `{t}` is not an RFC 3339 time, e.g. 2026-06-21T17:30:00+08:00"
                    ),
                    format!("departure：`{t}` 不是 RFC 3339 时刻，例如 2026-06-21T17:30:00+08:00"),
                )
            })?;
            if d <= now {
                let now = s.inner.park.clock.format(now);
                return Err(bad_request(
                    format!("departure: {t} is not after now ({now})"),
                    format!("departure：{t} 不晚于现在（{now}）"),
                ));
            }
            Some(d)
        }
    };
    let charger = live_charger(&s, &id)?;
    if charger.session.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("no car on {id} now (or its sessions are not tracked: it needs a charger state and the park's default session)"),
            format!("{id} 现在没有车（或其会话未被跟踪：需要充电桩状态和园区的默认会话）"),
        ));
    }
    let Some(tx) = &s.inner.orders else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server takes no session orders",
            "此服务器不接受充电会话指令",
        ));
    };
    let order = Order {
        charger: id.clone(),
        energy_kwh: b.energy_kwh,
        departure,
        by: c.who(),
        reason: b.reason.unwrap_or_else(|| "set from the API".into()),
    };
    tx.try_send(order).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the EMS is not taking orders now; try again",
            "EMS 暂时不接受指令；请重试",
        )
    })?;
    s.inner
        .counters
        .control_actions
        .fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "charger": id,
            "energy_kwh": b.energy_kwh,
            "departure": departure.map(|d| s.inner.park.clock.format(d)),
            "applied": "in the next control cycle, then a re-plan",
        })),
    ))
}
