//! The central system's connections: TLS when configured (security profile 2), the WebSocket
//! handshake (identity, subprotocol, Basic authentication), then one task per charger reading
//! its frames, answering its calls and making the EMS's, one outstanding at a time.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::rpc::{CallError, ErrorKind, Frame, Version};
use super::v16::{self, ChargePointStatus, Reading};
use super::{ocpp_time, password_hash, Connector, Inner, Link, Outgoing, State, Tx};

/// The largest frame taken (a charger's message is a few kB; a flood of larger ones is
/// refused by the WebSocket layer before it is read whole).
const MAX_MESSAGE: usize = 64 * 1024;
/// Calls of the EMS waiting for a charger's connection, beyond the one outstanding.
const QUEUE: usize = 16;
/// A handshake not done in this long is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// The longest time between the hub's WebSocket pings to a charger it has not heard from.
const MAX_PING: Duration = Duration::from_secs(60);

/// How often the hub pings a charger it has not heard from, and how long a charger may stay
/// silent (no frame, no answer to the pings) before its connection is taken for dead: a
/// half-open TCP connection (a charger whose power or network went without a FIN) otherwise
/// stays "connected" for hours, its last readings held as fresh.
pub fn liveness(heartbeat_s: u32, call_timeout: Duration) -> (Duration, Duration) {
    let ping = Duration::from_secs(u64::from(heartbeat_s.max(1))).min(MAX_PING);
    (ping, 2 * ping + call_timeout)
}

pub(super) async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "pedf::ocpp", "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let io: Box<dyn Io> = match &inner.config.tls {
                None => Box::new(stream),
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => Box::new(s),
                        // Not TLS, or a certificate the charger refused: nothing of it read.
                        Ok(Err(e)) => {
                            tracing::debug!(target: "pedf::ocpp", "TLS from {peer}: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            if let Some((ws, identity, version)) = handshake(io, peer, &inner).await {
                serve(ws, identity, version, inner).await;
            }
        });
    }
}

/// Why a handshake was refused: the HTTP status and what the log and the events say.
struct Refusal(StatusCode, String);

fn check(req: &Request, inner: &Inner) -> Result<(String, Version), Refusal> {
    let identity = req
        .uri()
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(percent_decode)
        .unwrap_or_default();
    let Some(entry) = inner.entry(&identity) else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("an unknown charger `{identity}` was refused (not in the run file's chargers)"),
        ));
    };
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(Version::of_subprotocol)
        .collect::<Vec<_>>();
    // The charger's first choice of those pedf speaks (a WebSocket client lists its
    // subprotocols in its order of preference).
    let Some(version) = offered.first().copied() else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "charger {identity} was refused: it offers no subprotocol pedf speaks (ocpp2.0.1, ocpp1.6)"
            ),
        ));
    };
    let password = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| {
            let (user, pass) = up.split_once(':')?;
            (user == identity).then(|| pass.to_string())
        });
    let ok = password.is_some_and(|p| {
        constant_time_eq(
            password_hash(&p).as_bytes(),
            entry.password_sha256.to_ascii_lowercase().as_bytes(),
        )
    });
    if !ok {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            format!("charger {identity} was refused: wrong or missing password (HTTP Basic, user = its identity)"),
        ));
    }
    Ok((identity, version))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A charger's byte stream: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn handshake(
    stream: Box<dyn Io>,
    peer: std::net::SocketAddr,
    inner: &Arc<Inner>,
) -> Option<(Ws, String, Version)> {
    let mut outcome: Option<Result<(String, Version), Refusal>> = None;
    // The handshake's callback type is tungstenite's (its error is an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let r = check(req, inner);
        let answer = match &r {
            Ok((_, v)) => {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(v.subprotocol()),
                );
                Ok(resp)
            }
            Err(Refusal(status, why)) => {
                let mut e = ErrorResponse::new(Some(why.clone()));
                *e.status_mut() = *status;
                if *status == StatusCode::UNAUTHORIZED {
                    e.headers_mut().insert(
                        "WWW-Authenticate",
                        HeaderValue::from_static("Basic realm=\"pedf OCPP\""),
                    );
                }
                Err(e)
            }
        };
        outcome = Some(r);
        answer
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = tokio::time::timeout(
        HANDSHAKE,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await;
    match (ws, outcome) {
        (Ok(Ok(ws)), Some(Ok((identity, version)))) => Some((ws, identity, version)),
        (_, Some(Err(Refusal(_, why)))) => {
            let mut st = inner.lock();
            inner.event(&mut st, format!("{why} (from {peer})"));
            None
        }
        (Ok(Err(e)), _) => {
            tracing::debug!(target: "pedf::ocpp", "handshake from {peer}: {e}");
            None
        }
        (Err(_), _) => {
            tracing::debug!(target: "pedf::ocpp", "handshake from {peer}: timed out");
            None
        }
        (Ok(Ok(_)), _) => None,
    }
}

/// An EMS call sent and not answered yet.
struct Pending {
    id: String,
    action: &'static str,
    reply: Option<oneshot::Sender<Result<Value, String>>>,
    deadline: tokio::time::Instant,
}

async fn serve(mut ws: Ws, identity: String, version: Version, inner: Arc<Inner>) {
    let (calls_tx, mut calls) = mpsc::channel::<Outgoing>(QUEUE);
    let closed = Arc::new(tokio::sync::Notify::new());
    let seq = {
        let mut st = inner.lock();
        st.next_link += 1;
        let seq = st.next_link;
        let old = st.chargers.get_mut(&identity).and_then(|c| {
            c.link.replace(Link {
                seq,
                version,
                calls: calls_tx.clone(),
                closed: closed.clone(),
            })
        });
        let replaced = old.is_some();
        if let Some(old) = old {
            old.closed.notify_one();
        }
        let what = if replaced {
            format!(
                "charger {identity} connected again ({}); its older connection is closed",
                version.subprotocol()
            )
        } else {
            format!("charger {identity} connected ({})", version.subprotocol())
        };
        inner.event(&mut st, what);
        seq
    };
    let mut pending: Option<Pending> = None;
    let mut next_id: u64 = 0;
    let timeout = inner.config.call_timeout;
    let (ping_every, silence) = liveness(inner.config.heartbeat_s, timeout);
    let mut heard = tokio::time::Instant::now();
    let mut next_ping = heard + ping_every;
    loop {
        // Still this charger's connection? (A newer one replaces it.)
        let current = inner
            .lock()
            .chargers
            .get(&identity)
            .and_then(|c| c.link.as_ref())
            .is_some_and(|l| l.seq == seq);
        if !current {
            let _ = ws.close(None).await;
            return;
        }
        let deadline = pending.as_ref().map(|p| p.deadline);
        tokio::select! {
            _ = closed.notified() => {
                let _ = ws.close(None).await;
                return;
            }
            msg = ws.next() => {
                if matches!(msg, Some(Ok(_))) {
                    heard = tokio::time::Instant::now();
                }
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        let e = CallError::new(ErrorKind::Format, "OCPP-J frames are text");
                        let _ = ws.send(Message::text(Frame::error("-1", &e, version).text())).await;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::debug!(target: "pedf::ocpp", "{identity}: {e}");
                        break;
                    }
                };
                match Frame::parse(&text) {
                    Ok(Frame::Call { id, action, payload }) => {
                        let (answer, after) = match version {
                            Version::V16 => handle(&inner, &identity, &action, &payload),
                            Version::V201 => super::csms201::handle(&inner, &identity, &action, &payload),
                        };
                        let frame = match answer {
                            Ok(p) => Frame::Result { id, payload: p },
                            Err(e) => Frame::error(&id, &e, version),
                        };
                        if ws.send(Message::text(frame.text())).await.is_err() {
                            break;
                        }
                        for o in after {
                            let _ = calls_tx.try_send(o);
                        }
                    }
                    Ok(Frame::Result { id, payload }) => {
                        if pending.as_ref().is_some_and(|p| p.id == id) {
                            if let Some(p) = pending.take() {
                                match p.reply {
                                    Some(r) => { let _ = r.send(Ok(payload)); }
                                    None => own_call_answered(&inner, &identity, p.action, &payload),
                                }
                            }
                        }
                    }
                    Ok(Frame::Error { id, code, description }) => {
                        if pending.as_ref().is_some_and(|p| p.id == id) {
                            if let Some(p) = pending.take() {
                                let why = format!("charger {identity} answered {} with {code}: {description}", p.action);
                                match p.reply {
                                    Some(r) => { let _ = r.send(Err(why)); }
                                    // The hub's own call (the safe default at boot): said.
                                    None => { let mut st = inner.lock(); inner.event(&mut st, why); }
                                }
                            }
                        }
                    }
                    Err(bad) => {
                        let id = bad.id.unwrap_or_else(|| "-1".into());
                        if ws.send(Message::text(Frame::error(&id, &bad.error, version).text())).await.is_err() {
                            break;
                        }
                    }
                }
                touch(&inner, &identity);
            }
            Some(o) = calls.recv(), if pending.is_none() => {
                next_id += 1;
                let id = format!("pedf-{next_id}");
                let frame = Frame::Call { id: id.clone(), action: o.action.to_string(), payload: o.payload };
                if ws.send(Message::text(frame.text())).await.is_err() {
                    if let Some(r) = o.reply { let _ = r.send(Err(format!("{identity}: the connection failed"))); }
                    break;
                }
                pending = Some(Pending { id, action: o.action, reply: o.reply, deadline: tokio::time::Instant::now() + timeout });
            }
            _ = tokio::time::sleep_until(next_ping) => {
                let now = tokio::time::Instant::now();
                next_ping = now + ping_every;
                // A send that does not finish (the peer's window shut) is a dead connection too.
                if now >= heard + ping_every
                    && !matches!(tokio::time::timeout(timeout, ws.send(Message::Ping(Vec::new().into()))).await, Ok(Ok(())))
                {
                    break;
                }
            }
            _ = tokio::time::sleep_until(heard + silence) => {
                {
                    let mut st = inner.lock();
                    inner.event(&mut st, format!(
                        "charger {identity} silent for {:.0} s (no message, no answer to pings): its connection is taken for dead and closed",
                        silence.as_secs_f64()
                    ));
                }
                let _ = tokio::time::timeout(timeout, ws.close(None)).await;
                break;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                if let Some(p) = pending.take() {
                    let why = format!("charger {identity} did not answer {} in {:.1} s", p.action, timeout.as_secs_f64());
                    let mut st = inner.lock();
                    inner.event(&mut st, why.clone());
                    drop(st);
                    if let Some(r) = p.reply { let _ = r.send(Err(why)); }
                }
            }
        }
    }
    if let Some(r) = pending.and_then(|p| p.reply) {
        let _ = r.send(Err(format!("{identity} disconnected")));
    }
    let mut st = inner.lock();
    let ours = st
        .chargers
        .get(&identity)
        .and_then(|c| c.link.as_ref())
        .is_some_and(|l| l.seq == seq);
    if ours {
        if let Some(c) = st.chargers.get_mut(&identity) {
            c.link = None;
            // Back, it may have lost the EMS's limits: each is sent again.
            c.connectors.values_mut().for_each(|k| k.asked = None);
        }
        inner.event(&mut st, format!("charger {identity} disconnected"));
    }
}

/// The answer to one of the hub's own calls (the meter value interval and the safe
/// default at boot): a refusal is said with what it leaves.
pub(super) fn own_call_answered(inner: &Inner, identity: &str, action: &str, payload: &Value) {
    let status = payload.get("status").and_then(Value::as_str);
    let (fine, leaves) = match action {
        "ChangeConfiguration" => (
            matches!(status, Some("Accepted" | "RebootRequired")),
            "it sends meter values at its own interval",
        ),
        // Nothing to clear is as good as cleared.
        "ClearChargingProfile" => (
            matches!(status, Some("Accepted" | "Unknown")),
            "default profiles it held before may stand over the EMS's limits",
        ),
        "SetVariables" => {
            let status = payload["setVariableResult"][0]["attributeStatus"].as_str();
            (
                matches!(status, Some("Accepted" | "RebootRequired")),
                "it sends meter values at its own interval",
            )
        }
        _ => (
            status == Some("Accepted"),
            "its safe default is not in place",
        ),
    };
    if !fine {
        let mut st = inner.lock();
        inner.event(
            &mut st,
            format!(
                "charger {identity} answered {action} with {}: {leaves}",
                status.unwrap_or("no status")
            ),
        );
    }
}

pub(super) fn touch(inner: &Inner, identity: &str) {
    let now = inner.time.now();
    if let Some(c) = inner.lock().chargers.get_mut(identity) {
        c.last_seen = Some(now);
    }
}

/// Answers one of a charger's calls; also what the EMS calls right after (the safe default
/// profiles after a boot).
fn handle(
    inner: &Inner,
    identity: &str,
    action: &str,
    payload: &Value,
) -> (Result<Value, CallError>, Vec<Outgoing>) {
    let now = inner.time.now();
    let mut after = Vec::new();
    let answer = (|| -> Result<Value, CallError> {
        let mut st = inner.lock();
        match action {
            "BootNotification" => {
                let b: v16::BootNotification = v16::read(action, payload)?;
                let what = format!(
                    "charger {identity} booted: {} {}{}",
                    b.charge_point_vendor.0,
                    b.charge_point_model.0,
                    b.firmware_version
                        .as_ref()
                        .map(|f| format!(", firmware {}", f.0))
                        .unwrap_or_default()
                );
                if let Some(secs) = inner.config.meter_interval_s {
                    // The meter values the EMS needs, as often as it needs them.
                    after.push(Outgoing {
                        action: "ChangeConfiguration",
                        payload: json!({"key": "MeterValueSampleInterval", "value": secs.to_string()}),
                        reply: None,
                    });
                }
                Ok(booted(
                    inner,
                    &mut st,
                    identity,
                    what,
                    Version::V16,
                    &mut after,
                ))
            }
            "Heartbeat" => {
                let _: v16::Heartbeat = v16::read(action, payload)?;
                Ok(json!({"currentTime": ocpp_time(now)}))
            }
            "StatusNotification" => {
                let s: v16::StatusNotification = v16::read(action, payload)?;
                if s.connector_id > 0 {
                    let k = connector(&mut st, identity, s.connector_id);
                    k.status = Some(s.status);
                    k.status_at = Some(now);
                    k.problem = (s.status == ChargePointStatus::Faulted).then(|| {
                        format!(
                            "faulted: {:?}{}",
                            s.error_code,
                            s.info.map(|i| format!(" ({})", i.0)).unwrap_or_default()
                        )
                    });
                }
                if s.status == ChargePointStatus::Faulted {
                    inner.event(
                        &mut st,
                        format!(
                            "charger {identity} connector {} faulted: {:?}",
                            s.connector_id, s.error_code
                        ),
                    );
                }
                Ok(json!({}))
            }
            "Authorize" => {
                let a: v16::Authorize = v16::read(action, payload)?;
                Ok(json!({"idTagInfo": {"status": tag_status(inner, &a.id_tag.0)}}))
            }
            "StartTransaction" => {
                let s: v16::StartTransaction = v16::read(action, payload)?;
                let status = tag_status(inner, &s.id_tag.0);
                // The same start again (its confirmation was lost): the same transaction.
                let again = st
                    .transactions
                    .iter()
                    .find(|((who, _), t)| {
                        who == identity
                            && t.connector == s.connector_id
                            && t.id_tag == s.id_tag.0
                            && t.meter_start_wh == s.meter_start
                            && t.started == s.timestamp
                    })
                    .and_then(|((_, id), _)| id.parse::<i64>().ok());
                let id = match again {
                    Some(id) => id,
                    None => {
                        st.next_tx += 1;
                        let id = st.next_tx;
                        st.transactions.insert(
                            (identity.to_string(), id.to_string()),
                            Tx {
                                connector: s.connector_id,
                                id_tag: s.id_tag.0.clone(),
                                meter_start_wh: s.meter_start,
                                start_known: true,
                                started: s.timestamp.clone(),
                                last_wh: s.meter_start,
                                stopped: false,
                            },
                        );
                        prune(&mut st);
                        inner.event(&mut st, format!("charger {identity} connector {}: transaction {id} started by {} ({status})", s.connector_id, s.id_tag.0));
                        id
                    }
                };
                let k = connector(&mut st, identity, s.connector_id);
                k.tx = Some(id.to_string());
                k.reading.energy_kwh = Some(s.meter_start as f64 / 1000.0);
                Ok(json!({"transactionId": id, "idTagInfo": {"status": status}}))
            }
            "StopTransaction" => {
                let s: v16::StopTransaction = v16::read(action, payload)?;
                let key = (identity.to_string(), s.transaction_id.to_string());
                let known = st.transactions.get(&key).cloned();
                match known {
                    Some(t) if !t.stopped => {
                        if let Some(tx) = st.transactions.get_mut(&key) {
                            tx.stopped = true;
                            tx.last_wh = s.meter_stop.max(tx.meter_start_wh);
                        }
                        let kwh = (s.meter_stop - t.meter_start_wh).max(0) as f64 / 1000.0;
                        inner.event(&mut st, format!("charger {identity} connector {}: transaction {} stopped ({:?}), {kwh:.3} kWh", t.connector, s.transaction_id, s.reason.unwrap_or(v16::Reason::Local)));
                        let k = connector(&mut st, identity, t.connector);
                        if k.tx.as_ref() == Some(&key.1) {
                            k.tx = None;
                        }
                        k.reading.energy_kwh = Some(s.meter_stop as f64 / 1000.0);
                    }
                    // Already stopped (sent again): confirmed, counted once.
                    Some(_) => {}
                    None => inner.event(&mut st, format!("charger {identity}: a stop of transaction {} this EMS never started ({} Wh at stop): confirmed", s.transaction_id, s.meter_stop)),
                }
                let tag = s
                    .id_tag
                    .map(|t| tag_status(inner, &t.0))
                    .unwrap_or("Accepted");
                Ok(json!({"idTagInfo": {"status": tag}}))
            }
            "MeterValues" => {
                let m: v16::MeterValues = v16::read(action, payload)?;
                let latest = m
                    .meter_value
                    .iter()
                    .max_by_key(|v| parse_time(&v.timestamp));
                if let Some(v) = latest {
                    let (r, problems) = Reading::of(v);
                    let tx = m.transaction_id.map(|t| t.to_string());
                    let at = Sample {
                        connector: m.connector_id,
                        timestamp: &v.timestamp,
                        tx,
                        now,
                    };
                    take_reading(inner, &mut st, identity, at, r, problems);
                }
                Ok(json!({}))
            }
            "DataTransfer" => {
                let _: v16::DataTransfer = v16::read(action, payload)?;
                Ok(json!({"status": "UnknownVendorId"}))
            }
            "DiagnosticsStatusNotification" | "FirmwareStatusNotification" => {
                let status = payload
                    .get("status")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        CallError::new(
                            ErrorKind::ProtocolError,
                            format!("{action}: missing field `status`"),
                        )
                    })?;
                inner.event(&mut st, format!("charger {identity}: {action} {status}"));
                Ok(json!({}))
            }
            other => Err(CallError::new(
                ErrorKind::NotImplemented,
                format!("{other} is not an OCPP 1.6 action a central system takes"),
            )),
        }
    })();
    (answer, after)
}

/// Where and when a reading was taken.
pub(super) struct Sample<'a> {
    /// The connector (1.6) or EVSE (2.0.1).
    pub connector: u32,
    /// The charger's timestamp of the values.
    pub timestamp: &'a str,
    /// The transaction the charger says they are of (else the connector's running one).
    pub tx: Option<String>,
    /// The EMS's time.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Takes a meter value's reading into its connector's state and its transaction's energy.
pub(super) fn take_reading(
    inner: &Inner,
    st: &mut State,
    identity: &str,
    at: Sample<'_>,
    r: Reading,
    problems: Vec<String>,
) {
    let k = connector(st, identity, at.connector);
    // Fresh as of its arrival, on the EMS's clock: a charger's own clock may be anywhere (one
    // on the wall clock beside a simulated park fell hours behind, and its every reading was
    // stale on arrival). Its timestamps only order its own values: one older than the one
    // held (sent late, after an outage) does not replace it; several in a row are a clock
    // that went back, and are taken (held back, every reading went stale until the charger's
    // clock came back to where it was).
    let stamp = parse_time(at.timestamp);
    let late = matches!((k.stamp, stamp), (Some(held), Some(t)) if t < held);
    k.behind = if late { k.behind + 1 } else { 0 };
    let back = k.behind >= super::CLOCK_BACK_AFTER;
    if back {
        k.behind = 0;
        let what = format!(
            "charger {identity} connector {}: its clock went back (values stamped {} after {}): taken on its new clock",
            at.connector,
            at.timestamp,
            k.stamp.map(super::ocpp_time).unwrap_or_default()
        );
        inner.event(st, what);
    }
    let k = connector(st, identity, at.connector);
    if !late || back {
        k.reading = Reading {
            energy_kwh: r.energy_kwh.or(k.reading.energy_kwh),
            power_kw: r.power_kw,
            current_a: r.current_a,
            soc_pct: r.soc_pct.or(k.reading.soc_pct),
        };
        k.read_at = Some(at.now);
        k.stamp = stamp.or(k.stamp);
    }
    k.problem = (!problems.is_empty()).then(|| problems.join("; "));
    let tx = at.tx.or(k.tx.clone());
    if let (Some(id), Some(e)) = (tx, r.energy_kwh) {
        if let Some(t) = st.transactions.get_mut(&(identity.to_string(), id)) {
            let wh = (e * 1000.0).round() as i64;
            if !t.start_known {
                t.meter_start_wh = wh;
                t.start_known = true;
            }
            t.last_wh = t.last_wh.max(wh);
        }
    }
}

/// A charger booted (`what` says what it is): said; the EMS's limits it lost are sent again;
/// after the calls in `after` (its meter value interval), every default profile it held is
/// cleared (one another central system, or an earlier configuration, left at a higher stack
/// level would stand over the EMS's; a charge point maximum, the installer's hardware limit,
/// is left alone) and each connector (EVSE) gets its safe default, below the EMS's limits.
/// The boot's answer.
pub(super) fn booted(
    inner: &Inner,
    st: &mut State,
    identity: &str,
    what: String,
    version: Version,
    after: &mut Vec<Outgoing>,
) -> Value {
    let now = inner.time.now();
    inner.event(st, what.clone());
    if let Some(c) = st.chargers.get_mut(identity) {
        c.booted = Some(what);
        c.connectors.values_mut().for_each(|k| k.asked = None);
    }
    after.push(Outgoing {
        action: "ClearChargingProfile",
        payload: match version {
            Version::V16 => json!({"chargingProfilePurpose": "TxDefaultProfile"}),
            Version::V201 => {
                json!({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}})
            }
        },
        reply: None,
    });
    if let Some(entry) = inner.entry(identity) {
        let start = ocpp_time(now);
        for k in &entry.connectors {
            let profile = v16::Profile {
                connector: k.connector,
                id: super::safe_profile_id(k.connector),
                stack_level: 0,
                purpose: v16::Purpose::TxDefault,
                unit: entry.unit,
                limit: entry.unit.limit_of_kw(entry.safe_kw.max(0.0)),
                start: &start,
                duration_s: None,
            };
            after.push(Outgoing {
                action: "SetChargingProfile",
                payload: match version {
                    Version::V16 => v16::set_charging_profile(&profile),
                    Version::V201 => super::v201::set_charging_profile(&profile),
                },
                reply: None,
            });
        }
    }
    json!({"status": "Accepted", "currentTime": ocpp_time(now), "interval": inner.config.heartbeat_s})
}

pub(super) fn connector<'s>(st: &'s mut State, identity: &str, n: u32) -> &'s mut Connector {
    st.chargers
        .entry(identity.to_string())
        .or_default()
        .connectors
        .entry(n)
        .or_default()
}

pub(super) fn tag_status(inner: &Inner, tag: &str) -> &'static str {
    if inner
        .config
        .id_tags
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
        || inner.config.accept_unknown_tags
    {
        "Accepted"
    } else {
        "Invalid"
    }
}

pub(super) fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    pedf_core::time::parse_rfc3339(s).ok()
}

/// Keeps the transactions to a bound: the oldest stopped ones go first.
pub(super) fn prune(st: &mut State) {
    while st.transactions.len() > super::MAX_TRANSACTIONS {
        let Some(id) = st
            .transactions
            .iter()
            .find(|(_, t)| t.stopped)
            .map(|(id, _)| id.clone())
        else {
            break;
        };
        st.transactions.remove(&id);
    }
}
