//! The outstation's server: the masters' connections, flow control and timers, and what the
//! station answers.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::frame::{
    cot, cp56, monitor, read_cp56, short_float, single, type_id, Apdu, Asdu, FrameError, UFunction,
    MODULO,
};

/// A measured value or single point the station reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuePoint {
    /// The value's name (what [`Outstation::update`] gives it by).
    pub name: String,
    /// Its information object address.
    pub ioa: u32,
    /// A change smaller than this (in the value's unit) is not sent spontaneously (single
    /// points: unused).
    pub deadband: f64,
}

/// A setpoint the master may send (C_SE_NC_1).
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointPoint {
    /// The setpoint's name (what [`Command::point`] says).
    pub name: String,
    /// Its information object address.
    pub ioa: u32,
    /// Whether it must be selected before it is executed.
    pub select_before_operate: bool,
}

/// The station's points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointMap {
    /// Measured values (short floats).
    pub measurements: Vec<ValuePoint>,
    /// Single points.
    pub singles: Vec<ValuePoint>,
    /// Setpoints.
    pub setpoints: Vec<SetpointPoint>,
}

/// The outstation's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it listens (2404 is 104's port).
    pub listen: SocketAddr,
    /// The station's common address.
    pub common_address: u16,
    /// The masters allowed to connect, by address; any other is refused.
    pub masters: Vec<IpAddr>,
    /// Unacknowledged I-frames sent before the station waits (k, 12 by default).
    pub k: u16,
    /// I-frames received before the station acknowledges (w, 8 by default).
    pub w: u16,
    /// How long a sent frame waits for its acknowledgement before the connection is closed.
    pub t1: Duration,
    /// How long the station waits before acknowledging what it received (t2 < t1).
    pub t2: Duration,
    /// Silence after which the station tests the link (TESTFR).
    pub t3: Duration,
    /// Every measured value this often (cause periodic); `None`: not cyclic.
    pub cyclic: Option<Duration>,
    /// The points.
    pub points: PointMap,
    /// The time zone of the time tags (the station's local time).
    pub utc_offset: FixedOffset,
    /// How long a selection waits for its execution.
    pub select_timeout: Duration,
    /// How long the station waits for the application to accept or refuse a setpoint.
    pub command_timeout: Duration,
}

impl Config {
    /// What is wrong with the configuration, if anything: k and w, the timers, the points'
    /// addresses.
    pub fn check(&self) -> Result<(), String> {
        if self.k == 0 || self.w == 0 || self.w > self.k {
            return Err(format!(
                "k {} and w {}: both at least 1, w at most k (the standard's 12 and 8)",
                self.k, self.w
            ));
        }
        if self.t2 >= self.t1 {
            return Err(format!(
                "t2 {:?} must be shorter than t1 {:?}",
                self.t2, self.t1
            ));
        }
        let mut ioas = std::collections::BTreeSet::new();
        let all = self
            .points
            .measurements
            .iter()
            .chain(&self.points.singles)
            .map(|p| (p.ioa, &p.name))
            .chain(self.points.setpoints.iter().map(|p| (p.ioa, &p.name)));
        for (ioa, name) in all {
            if ioa == 0 || ioa > 0xFF_FFFF || !ioas.insert(ioa) {
                return Err(format!(
                    "point `{name}`: information object address {ioa} is 0, above 16777215 or used twice"
                ));
            }
        }
        Ok(())
    }
}

/// A setpoint the master sent, for the application to accept (carry out) or refuse.
#[derive(Debug)]
pub struct Command {
    /// The setpoint's name.
    pub point: String,
    /// The value.
    pub value: f64,
    /// Who sent it.
    pub master: SocketAddr,
    /// Where the outcome goes: `Err` with why it was refused.
    pub reply: oneshot::Sender<Result<(), String>>,
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Information objects of one ASDU: each address and its element's octets.
type Objects = Vec<(u32, Vec<u8>)>;

#[derive(Default)]
struct Values {
    measured: BTreeMap<u32, (Option<f64>, DateTime<Utc>)>,
    /// The value last sent spontaneously (the deadband is measured from it).
    reported: BTreeMap<u32, Option<f64>>,
    singles: BTreeMap<u32, (Option<bool>, DateTime<Utc>)>,
}

struct Shared {
    config: Config,
    now: Clock,
    values: Mutex<Values>,
    spont: broadcast::Sender<Vec<u8>>,
    commands: mpsc::Sender<Command>,
    events: Mutex<VecDeque<String>>,
}

impl Shared {
    fn event(&self, what: String) {
        tracing::info!(target: "pedf::iec104", "{what}");
        let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= 256 {
            e.pop_front();
        }
        e.push_back(what);
    }

    fn values(&self) -> std::sync::MutexGuard<'_, Values> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every measured value and single point now, each with its time tag (when it was last
    /// updated; a point never updated is invalid at the station's time now). One type per
    /// point whatever the cause (a master such as lib60870's keeps a point's type): the
    /// time-tagged ones.
    fn image(&self) -> (Objects, Objects) {
        let now = (self.now)();
        let offset = self.config.utc_offset;
        let v = self.values();
        let me = self
            .config
            .points
            .measurements
            .iter()
            .map(|p| {
                let (x, at) = v.measured.get(&p.ioa).copied().unwrap_or((None, now));
                let mut e = short_float(x);
                e.extend_from_slice(&cp56(at, offset));
                (p.ioa, e)
            })
            .collect();
        let sp = self
            .config
            .points
            .singles
            .iter()
            .map(|p| {
                let (x, at) = v.singles.get(&p.ioa).copied().unwrap_or((None, now));
                let mut e = vec![single(x)];
                e.extend_from_slice(&cp56(at, offset));
                (p.ioa, e)
            })
            .collect();
        (me, sp)
    }
}

/// The running outstation.
pub struct Outstation {
    shared: Arc<Shared>,
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Outstation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// ASDU octets at most (253 less the APCI's control field).
const MAX_ASDU: usize = 249;

impl Outstation {
    /// Starts listening (inside a tokio runtime); the setpoints the masters send come out of
    /// the receiver. `now` is the station's clock (the time tags).
    pub fn start(
        config: Config,
        now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    ) -> Result<(Outstation, mpsc::Receiver<Command>), String> {
        config.check().map_err(|e| format!("iec104: {e}"))?;
        let listener = std::net::TcpListener::bind(config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("iec104 listen {}: {e}", config.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("iec104 listen: {e}"))?;
        let (tx, rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            config,
            now: Arc::new(now),
            values: Mutex::new(Values::default()),
            spont: broadcast::channel(1024).0,
            commands: tx,
            events: Mutex::new(VecDeque::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok((Outstation { shared, addr, task }, rx))
    }

    /// The values now: each measured value (`None`: unknown, sent as invalid) and single
    /// point by name; a measured value that moved past its deadband since it was last sent,
    /// or a single point that changed, goes to every started master spontaneously, time
    /// tagged.
    pub fn update(&self, measured: &[(&str, Option<f64>)], singles: &[(&str, Option<bool>)]) {
        let s = &self.shared;
        let now = (s.now)();
        let offset = s.config.utc_offset;
        let ca = s.config.common_address;
        let mut me = Vec::new();
        let mut sp = Vec::new();
        {
            let mut v = s.values();
            for (name, value) in measured {
                let Some(p) = s
                    .config
                    .points
                    .measurements
                    .iter()
                    .find(|p| p.name == *name)
                else {
                    continue;
                };
                v.measured.insert(p.ioa, (*value, now));
                let last = v.reported.get(&p.ioa).copied();
                let moved = match (last, value) {
                    (None, _) => true,
                    (Some(None), None) => false,
                    (Some(Some(a)), Some(b)) => (a - b).abs() > p.deadband,
                    _ => true,
                };
                if moved {
                    v.reported.insert(p.ioa, *value);
                    let mut e = short_float(*value);
                    e.extend_from_slice(&cp56(now, offset));
                    me.push((p.ioa, e));
                }
            }
            for (name, value) in singles {
                let Some(p) = s.config.points.singles.iter().find(|p| p.name == *name) else {
                    continue;
                };
                let changed = v.singles.get(&p.ioa).is_none_or(|(old, _)| old != value);
                v.singles.insert(p.ioa, (*value, now));
                if changed {
                    let mut e = vec![single(*value)];
                    e.extend_from_slice(&cp56(now, offset));
                    sp.push((p.ioa, e));
                }
            }
        }
        for chunk in me.chunks((MAX_ASDU - 6) / 15) {
            let _ = s
                .spont
                .send(monitor(type_id::M_ME_TF_1, cot::SPONTANEOUS, ca, chunk));
        }
        for chunk in sp.chunks((MAX_ASDU - 6) / 11) {
            let _ = s
                .spont
                .send(monitor(type_id::M_SP_TB_1, cot::SPONTANEOUS, ca, chunk));
        }
    }

    /// The events since the last call (connections, refusals, commands), oldest first.
    pub fn take_events(&self) -> Vec<String> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    /// Stops listening (the connections end with the runtime's tasks).
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "pedf::iec104", "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !shared.config.masters.contains(&peer.ip()) {
            shared.event(format!(
                "iec104: a connection from {peer} was refused (not one of the run file's masters)"
            ));
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        shared.event(format!("iec104: master {peer} connected"));
        let s = shared.clone();
        tokio::spawn(async move {
            let why = Conn::new(peer).serve(stream, &s).await;
            s.event(format!("iec104: master {peer} disconnected ({why})"));
        });
    }
}

/// A selection waiting for its execution.
struct Selected {
    ioa: u32,
    value: [u8; 4],
    until: Instant,
}

struct Conn {
    peer: SocketAddr,
    started: bool,
    /// N(S) of the next I-frame sent, N(R) of the next expected.
    vs: u16,
    vr: u16,
    /// Sent I-frames not acknowledged yet: sequence number and when sent.
    unacked: VecDeque<(u16, Instant)>,
    /// I-frames received since the station last acknowledged.
    received: u16,
    t2_at: Option<Instant>,
    t3_at: Instant,
    test_at: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    selected: Option<Selected>,
}

impl Conn {
    fn new(peer: SocketAddr) -> Conn {
        Conn {
            peer,
            started: false,
            vs: 0,
            vr: 0,
            unacked: VecDeque::new(),
            received: 0,
            t2_at: None,
            t3_at: Instant::now(),
            test_at: None,
            queue: VecDeque::new(),
            selected: None,
        }
    }

    /// Serves the master until the connection ends; why it ended.
    async fn serve(mut self, mut stream: TcpStream, s: &Arc<Shared>) -> String {
        let cfg = &s.config;
        let mut spont = s.spont.subscribe();
        let (done_tx, mut done) = mpsc::channel::<Vec<Vec<u8>>>(16);
        let mut cyclic = cfg.cyclic.map(|p| {
            let mut i = tokio::time::interval(p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        self.t3_at = Instant::now() + cfg.t3;
        loop {
            // Send what is queued, within the k window.
            while self.started && self.unacked.len() < usize::from(cfg.k) {
                let Some(asdu) = self.queue.pop_front() else {
                    break;
                };
                let f = Apdu::I {
                    send: self.vs,
                    recv: self.vr,
                    asdu,
                };
                if let Err(e) = stream.write_all(&f.encode()).await {
                    return format!("write: {e}");
                }
                self.unacked.push_back((self.vs, Instant::now()));
                self.vs = (self.vs + 1) % MODULO;
                // An I-frame acknowledges what was received.
                self.received = 0;
                self.t2_at = None;
            }
            let t1_at = self
                .unacked
                .front()
                .map(|(_, at)| *at + cfg.t1)
                .into_iter()
                .chain(self.test_at)
                .min();
            let next = [t1_at, self.t2_at, Some(self.t3_at)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.t3_at);
            tokio::select! {
                n = stream.read(&mut chunk) => {
                    let n = match n {
                        Ok(0) => return "closed by the master".into(),
                        Ok(n) => n,
                        Err(e) => return format!("read: {e}"),
                    };
                    self.t3_at = Instant::now() + cfg.t3;
                    buf.extend_from_slice(&chunk[..n]);
                    loop {
                        match Apdu::decode(&buf) {
                            Err(FrameError::Incomplete(_)) => break,
                            Err(e) => {
                                s.event(format!("iec104: master {}: {e}: closed", self.peer));
                                return format!("a malformed frame: {e}");
                            }
                            Ok((apdu, used)) => {
                                buf.drain(..used);
                                if let Err(why) = self.take(apdu, &mut stream, s, &done_tx).await {
                                    return why;
                                }
                            }
                        }
                    }
                }
                m = spont.recv(), if self.started => match m {
                    Ok(asdu) => self.queue.push_back(asdu),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        s.event(format!("iec104: master {}: {n} spontaneous messages dropped (the master read too slowly)", self.peer));
                    }
                    Err(broadcast::error::RecvError::Closed) => return "the station stopped".into(),
                },
                Some(asdus) = done.recv() => self.queue.extend(asdus),
                _ = async { cyclic.as_mut().map(|c| c.tick()).unwrap().await }, if cyclic.is_some() && self.started => {
                    let (me, _) = s.image();
                    for c in me.chunks((MAX_ASDU - 6) / 15) {
                        self.queue.push_back(monitor(type_id::M_ME_TF_1, cot::PERIODIC, cfg.common_address, c));
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    if t1_at.is_some_and(|t| now >= t) {
                        s.event(format!("iec104: master {}: no acknowledgement within t1 ({:?}): closed", self.peer, cfg.t1));
                        return "t1 expired".into();
                    }
                    if self.t2_at.is_some_and(|t| now >= t) {
                        if let Err(e) = stream.write_all(&Apdu::S { recv: self.vr }.encode()).await {
                            return format!("write: {e}");
                        }
                        self.received = 0;
                        self.t2_at = None;
                    }
                    if now >= self.t3_at {
                        if let Err(e) = stream.write_all(&Apdu::U(UFunction::TestFr(false)).encode()).await {
                            return format!("write: {e}");
                        }
                        self.test_at = Some(now + cfg.t1);
                        self.t3_at = now + cfg.t3;
                    }
                }
            }
        }
    }

    /// The master acknowledged up to `r` (the next it expects): a number outside the frames
    /// in flight is a protocol error.
    fn acknowledged(&mut self, r: u16) -> Result<(), String> {
        if r != self.vs && !self.unacked.iter().any(|(q, _)| *q == r) {
            return Err(format!(
                "N(R) {r} acknowledges frames never sent (next to send {})",
                self.vs
            ));
        }
        while self.unacked.front().is_some_and(|(q, _)| *q != r) {
            self.unacked.pop_front();
        }
        Ok(())
    }

    async fn take(
        &mut self,
        apdu: Apdu,
        stream: &mut TcpStream,
        s: &Arc<Shared>,
        done: &mpsc::Sender<Vec<Vec<u8>>>,
    ) -> Result<(), String> {
        let cfg = &s.config;
        let send = |f: Apdu| f.encode();
        match apdu {
            Apdu::U(UFunction::StartDt(false)) => {
                stream
                    .write_all(&send(Apdu::U(UFunction::StartDt(true))))
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                self.started = true;
            }
            Apdu::U(UFunction::StopDt(false)) => {
                stream
                    .write_all(&send(Apdu::U(UFunction::StopDt(true))))
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                self.started = false;
            }
            Apdu::U(UFunction::TestFr(false)) => {
                stream
                    .write_all(&send(Apdu::U(UFunction::TestFr(true))))
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            Apdu::U(UFunction::TestFr(true)) => self.test_at = None,
            Apdu::U(_) => {}
            Apdu::S { recv } => self.acknowledged(recv).map_err(|e| {
                s.event(format!("iec104: master {}: {e}: closed", self.peer));
                e
            })?,
            Apdu::I {
                send: ns,
                recv,
                asdu,
            } => {
                if !self.started {
                    s.event(format!(
                        "iec104: master {}: an I-frame before STARTDT: closed",
                        self.peer
                    ));
                    return Err("an I-frame before STARTDT".into());
                }
                if ns != self.vr {
                    s.event(format!(
                        "iec104: master {}: N(S) {ns} where {} was due: closed",
                        self.peer, self.vr
                    ));
                    return Err("a sequence error".into());
                }
                self.vr = (self.vr + 1) % MODULO;
                self.acknowledged(recv).map_err(|e| {
                    s.event(format!("iec104: master {}: {e}: closed", self.peer));
                    e
                })?;
                self.received += 1;
                if self.received >= cfg.w {
                    stream
                        .write_all(&send(Apdu::S { recv: self.vr }))
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    self.received = 0;
                    self.t2_at = None;
                } else if self.t2_at.is_none() {
                    self.t2_at = Some(Instant::now() + cfg.t2);
                }
                let out = self.asdu(&asdu, s, done);
                self.queue.extend(out);
            }
        }
        Ok(())
    }

    /// What the station answers an ASDU (commands carried out later answer through `done`).
    fn asdu(
        &mut self,
        bytes: &[u8],
        s: &Arc<Shared>,
        done: &mpsc::Sender<Vec<Vec<u8>>>,
    ) -> Vec<Vec<u8>> {
        let cfg = &s.config;
        let a = match Asdu::decode(bytes) {
            Ok(a) => a,
            Err(e) => {
                s.event(format!("iec104: master {}: {e}", self.peer));
                return Vec::new();
            }
        };
        let no = |c: u8| vec![a.mirror(c, true).encode()];
        let known = matches!(
            a.type_id,
            type_id::C_IC_NA_1 | type_id::C_CS_NA_1 | type_id::C_SE_NC_1
        );
        if !known {
            return no(cot::UNKNOWN_TYPE);
        }
        let broadcast = a.ca == 0xFFFF && a.type_id != type_id::C_SE_NC_1;
        if a.ca != cfg.common_address && !broadcast {
            return no(cot::UNKNOWN_CA);
        }
        match a.type_id {
            type_id::C_IC_NA_1 => {
                if a.ioa != 0 {
                    return no(cot::UNKNOWN_IOA);
                }
                match a.cot {
                    cot::ACTIVATION => {}
                    cot::DEACTIVATION => {
                        return vec![a.mirror(cot::DEACTIVATION_CON, false).encode()]
                    }
                    _ => return no(cot::UNKNOWN_COT),
                }
                // Station interrogation (QOI 20); groups are not kept.
                if a.element.first() != Some(&20) {
                    return vec![a.mirror(cot::ACTIVATION_CON, true).encode()];
                }
                let mut out = vec![a.mirror(cot::ACTIVATION_CON, false).encode()];
                let (me, sp) = s.image();
                for c in me.chunks((MAX_ASDU - 6) / 15) {
                    out.push(monitor(
                        type_id::M_ME_TF_1,
                        cot::INTERROGATED,
                        cfg.common_address,
                        c,
                    ));
                }
                for c in sp.chunks((MAX_ASDU - 6) / 11) {
                    out.push(monitor(
                        type_id::M_SP_TB_1,
                        cot::INTERROGATED,
                        cfg.common_address,
                        c,
                    ));
                }
                out.push(a.mirror(cot::ACTIVATION_TERM, false).encode());
                out
            }
            type_id::C_CS_NA_1 => {
                if a.cot != cot::ACTIVATION {
                    return no(cot::UNKNOWN_COT);
                }
                let ours = (s.now)();
                match read_cp56(&a.element, cfg.utc_offset) {
                    Some(theirs) => {
                        // The EMS keeps its own clock (the host's, NTP-disciplined, or the
                        // simulation's); the master's time is taken as a check and said.
                        let off = (theirs - ours).num_milliseconds() as f64 / 1000.0;
                        s.event(format!(
                            "iec104: master {} synchronised the clock to {} (the EMS's: {}, {off:+.3} s): confirmed; the EMS keeps its own clock",
                            self.peer,
                            theirs.to_rfc3339(),
                            ours.to_rfc3339()
                        ));
                        vec![a.mirror(cot::ACTIVATION_CON, false).encode()]
                    }
                    None => vec![a.mirror(cot::ACTIVATION_CON, true).encode()],
                }
            }
            _ => self.setpoint(a, s, done),
        }
    }

    fn setpoint(
        &mut self,
        a: Asdu,
        s: &Arc<Shared>,
        done: &mpsc::Sender<Vec<Vec<u8>>>,
    ) -> Vec<Vec<u8>> {
        let cfg = &s.config;
        let Some(point) = cfg
            .points
            .setpoints
            .iter()
            .find(|p| p.ioa == a.ioa)
            .cloned()
        else {
            return vec![a.mirror(cot::UNKNOWN_IOA, true).encode()];
        };
        if a.cot == cot::DEACTIVATION {
            self.selected = None;
            return vec![a.mirror(cot::DEACTIVATION_CON, false).encode()];
        }
        if a.cot != cot::ACTIVATION {
            return vec![a.mirror(cot::UNKNOWN_COT, true).encode()];
        }
        if a.element.len() < 5 {
            return vec![a.mirror(cot::ACTIVATION_CON, true).encode()];
        }
        let raw = [a.element[0], a.element[1], a.element[2], a.element[3]];
        let value = f64::from(f32::from_le_bytes(raw));
        let select = a.element[4] & 0x80 != 0;
        let peer = self.peer;
        if select {
            if !point.select_before_operate {
                s.event(format!(
                    "iec104: master {peer}: a select of `{}`, which is executed directly: refused",
                    point.name
                ));
                return vec![a.mirror(cot::ACTIVATION_CON, true).encode()];
            }
            self.selected = Some(Selected {
                ioa: a.ioa,
                value: raw,
                until: Instant::now() + cfg.select_timeout,
            });
            return vec![a.mirror(cot::ACTIVATION_CON, false).encode()];
        }
        if point.select_before_operate {
            let ok = self.selected.take().is_some_and(|sel| {
                sel.ioa == a.ioa && sel.value == raw && Instant::now() <= sel.until
            });
            if !ok {
                s.event(format!(
                    "iec104: master {peer}: `{}` = {value} executed without its selection (or after it lapsed, or for another value): refused",
                    point.name
                ));
                return vec![a.mirror(cot::ACTIVATION_CON, true).encode()];
            }
        }
        if !value.is_finite() {
            return vec![a.mirror(cot::ACTIVATION_CON, true).encode()];
        }
        // Carried out by the application; the answer comes back on `done`.
        let (reply, outcome) = oneshot::channel();
        let command = Command {
            point: point.name.clone(),
            value,
            master: peer,
            reply,
        };
        let (s, done) = (s.clone(), done.clone());
        tokio::spawn(async move {
            let result = match s.commands.try_send(command) {
                Err(_) => Err("the EMS takes no more commands now".to_string()),
                Ok(()) => match tokio::time::timeout(s.config.command_timeout, outcome).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the EMS dropped the command".into()),
                    Err(_) => Err(format!(
                        "the EMS did not answer in {:?}",
                        s.config.command_timeout
                    )),
                },
            };
            let answer = match &result {
                Ok(()) => vec![
                    a.mirror(cot::ACTIVATION_CON, false).encode(),
                    a.mirror(cot::ACTIVATION_TERM, false).encode(),
                ],
                Err(_) => vec![a.mirror(cot::ACTIVATION_CON, true).encode()],
            };
            s.event(format!(
                "iec104: master {peer}: setpoint `{}` = {value}: {}",
                point.name,
                match &result {
                    Ok(()) => "carried out".to_string(),
                    Err(why) => format!("refused ({why})"),
                }
            ));
            let _ = done.send(answer).await;
        });
        Vec::new()
    }
}
