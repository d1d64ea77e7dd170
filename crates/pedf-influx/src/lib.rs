//! The InfluxDB v2 sink: every sample the runtime stores is also written to an InfluxDB v2
//! server (or one that speaks its write API) as line protocol, in batches.
//!
//! Store and forward: a batch the server does not take (down, refusing, too slow) is appended
//! to an on-disk buffer of numbered segment files (fsync'd) and the sink retries with a
//! doubling back-off up to 30 s. Buffered segments are always written before newer data and
//! deleted only after the server answered 204, so an outage loses nothing and the data arrives
//! in the order it was measured. On shutdown what has not been written is spooled to disk and
//! replayed by the next run.
//!
//! Line protocol (ms precision): measurement `pedf`, tags `device` and `quality`, one field
//! per sample named after the device field, e.g.
//! `pedf,device=bess-1,quality=good soc_pct=60 1782000000000`.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use influxdb2::api::write::TimestampPrecision;
use pedf_core::live::Sample;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

/// The `[influx]` table of a run configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Server URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Organisation the bucket belongs to.
    pub org: String,
    /// Bucket the samples are written to.
    pub bucket: String,
    /// API token (may be empty for servers without auth). Better kept out of the run file:
    /// `token_env` or `token_file`.
    #[serde(default)]
    pub token: String,
    /// The environment variable holding the token (instead of `token`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token, relative to the run file (instead of `token`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Folder of the store-and-forward buffer (relative to the run file).
    pub buffer_dir: PathBuf,
    /// Lines per write request.
    #[serde(default = "default_batch")]
    pub batch_lines: usize,
    /// Longest a sample waits before it is sent, ms.
    #[serde(default = "default_flush")]
    pub flush_ms: u64,
    /// The most the disk buffer holds, MB; past it the oldest segments are dropped (counted,
    /// said in the sink's state) so an outage never fills the EMS's disk.
    #[serde(default = "default_buffer_mb")]
    pub max_buffer_mb: u64,
}

impl InfluxConfig {
    /// Takes the token from `token_env` or `token_file` (relative to `base`) when one is
    /// given; an error names the key and what is wrong.
    pub fn resolve_token(&mut self, base: &Path) -> Result<(), String> {
        let given = [
            !self.token.is_empty(),
            self.token_env.is_some(),
            self.token_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("[influx]: give the token one way: token, token_env or token_file".into());
        }
        if let Some(var) = &self.token_env {
            self.token = std::env::var(var).map_err(|_| {
                format!("[influx] token_env = {var}: the environment has no such variable")
            })?;
        }
        if let Some(f) = &self.token_file {
            let f = if f.is_relative() {
                base.join(f)
            } else {
                f.clone()
            };
            self.token = std::fs::read_to_string(&f)
                .map_err(|e| format!("[influx] token_file = {}: cannot read: {e}", f.display()))?
                .trim()
                .to_string();
            self.token_file = Some(f);
        }
        Ok(())
    }
}

fn default_batch() -> usize {
    5000
}
fn default_buffer_mb() -> u64 {
    1024
}
fn default_flush() -> u64 {
    1000
}

/// Escapes a tag value or field key (commas, equals signs, spaces).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            o.push('\\');
        }
        if c == '\n' {
            o.push_str("\\n");
            continue;
        }
        o.push(c);
    }
    o
}

/// One sample as a line of line protocol.
pub fn line(s: &Sample) -> Option<String> {
    if !s.value.is_finite() {
        return None;
    }
    let q = match s.quality {
        0 => "good",
        1 => "stale",
        _ => "bad",
    };
    Some(format!(
        "pedf,device={},quality={q} {}={} {}",
        escape(&s.device),
        escape(&s.field),
        s.value,
        s.at.timestamp_millis()
    ))
}

/// What the sink has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Lines the server took.
    pub written_lines: u64,
    /// Lines that went to the disk buffer (each is written later).
    pub spooled_lines: u64,
    /// Failed write attempts.
    pub failures: u64,
    /// Segments waiting in the buffer now.
    pub buffered_segments: usize,
    /// Bytes waiting in the buffer now.
    pub buffered_bytes: u64,
    /// Lines the server refused for good (a 4xx other than 408 and 429: a bad bucket, token
    /// or line): kept aside in `.rejected` files, never retried.
    pub rejected_lines: u64,
    /// Lines dropped because the buffer reached its size limit (the oldest go first).
    pub dropped_lines: u64,
    /// Whether the last write reached the server (false: it is unreachable or refusing).
    pub connected: bool,
    /// The last write error, as the server or the network said it.
    pub last_error: Option<String>,
}

enum Msg {
    Samples(Vec<Sample>),
    Lines(Vec<String>),
    Stats(oneshot::Sender<SinkStats>),
    Stop(oneshot::Sender<SinkStats>),
}

/// The running sink; cloneable handle.
#[derive(Clone)]
pub struct InfluxSink {
    tx: mpsc::Sender<Msg>,
    state: tokio::sync::watch::Receiver<SinkStats>,
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The buffer folder cannot be made or opened.
    #[error("{path}: cannot use the InfluxDB buffer folder: {why}")]
    Buffer {
        /// The folder.
        path: String,
        /// What the file system said.
        why: String,
    },
}

impl InfluxSink {
    /// Starts the sink's task (needs a tokio runtime).
    pub fn start(cfg: InfluxConfig) -> Result<InfluxSink, SinkError> {
        // The buffer holds the park's samples: a folder its owner's alone (0700 on Unix).
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&cfg.buffer_dir).map_err(|e| SinkError::Buffer {
            path: cfg.buffer_dir.display().to_string(),
            why: e.to_string(),
        })?;
        let spool = Spool::open(&cfg.buffer_dir).map_err(|e| SinkError::Buffer {
            path: cfg.buffer_dir.display().to_string(),
            why: e.to_string(),
        })?;
        let (tx, rx) = mpsc::channel(1024);
        let (state_tx, state) = tokio::sync::watch::channel(SinkStats::default());
        tokio::spawn(task(cfg, spool, rx, state_tx));
        Ok(InfluxSink { tx, state })
    }

    /// The sink's state as of its last flush, without waiting (for the control cycle).
    pub fn state(&self) -> SinkStats {
        self.state.borrow().clone()
    }

    /// Hands samples to the sink. Never blocks the control loop: when the sink's queue is full
    /// the samples are refused (and counted by the caller); the queue holds 1024 batches.
    pub fn send(&self, samples: Vec<Sample>) -> bool {
        self.tx.try_send(Msg::Samples(samples)).is_ok()
    }

    /// Hands lines of line protocol (ms precision) made elsewhere to the sink, as
    /// [`InfluxSink::send`] does samples (the fleet hub's measurements).
    pub fn send_lines(&self, lines: Vec<String>) -> bool {
        self.tx.try_send(Msg::Lines(lines)).is_ok()
    }

    /// The sink's counters now (the default when the sink has stopped).
    pub async fn stats(&self) -> SinkStats {
        let (t, r) = oneshot::channel();
        if self.tx.send(Msg::Stats(t)).await.is_err() {
            return SinkStats::default();
        }
        r.await.unwrap_or_default()
    }

    /// Writes or spools everything pending, then stops.
    pub async fn stop(&self) -> SinkStats {
        let (t, r) = oneshot::channel();
        if self.tx.send(Msg::Stop(t)).await.is_err() {
            return SinkStats::default();
        }
        r.await.unwrap_or_default()
    }
}

/// The on-disk buffer: numbered segment files of line protocol.
struct Spool {
    dir: PathBuf,
    segments: std::collections::VecDeque<(u64, PathBuf)>,
    next: u64,
    /// Bytes in the segments.
    bytes: u64,
}

impl Spool {
    fn open(dir: &Path) -> std::io::Result<Spool> {
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let n = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".lp"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n {
                found.push((n, p));
            }
        }
        found.sort();
        let next = found.last().map_or(1, |(n, _)| n + 1);
        let bytes = found
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            segments: found.into(),
            next,
            bytes,
        })
    }

    /// Takes the oldest segment off the buffer (written, rejected or dropped).
    fn pop(&mut self) {
        if let Some((_, p)) = self.segments.pop_front() {
            self.bytes = self
                .bytes
                .saturating_sub(std::fs::metadata(&p).map_or(0, |m| m.len()));
        }
    }

    /// Sets a batch the server refused for good aside (`NNN.rejected`), for an operator to
    /// look at; it is never retried.
    fn reject(&mut self, body: &str) -> std::io::Result<()> {
        let path = self.dir.join(format!("{:012}.rejected", self.next));
        self.next += 1;
        std::fs::write(path, body)
    }

    fn push(&mut self, body: &str) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.dir.join(format!("{:012}.lp", self.next));
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.segments.push_back((self.next, path));
        self.next += 1;
        self.bytes += body.len() as u64;
        Ok(())
    }
}

/// Why a write failed: for good (the server refused the batch itself) or for now.
struct Failure {
    permanent: bool,
    message: String,
}

async fn write(
    client: &influxdb2::Client,
    cfg: &InfluxConfig,
    body: String,
) -> Result<(), Failure> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.write_line_protocol_with_precision(
            &cfg.org,
            &cfg.bucket,
            body,
            TimestampPrecision::Milliseconds,
        ),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            // A 4xx says the batch itself (or the bucket, org or token) is wrong: sending it
            // again gives the same answer. 408 and 429 are "later".
            let permanent = matches!(&e, influxdb2::RequestError::Http { status, .. }
                if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429);
            Err(Failure {
                permanent,
                message: e.to_string(),
            })
        }
        Err(_) => Err(Failure {
            permanent: false,
            message: "no answer within 10 s".into(),
        }),
    }
}

struct State {
    cfg: InfluxConfig,
    client: influxdb2::Client,
    spool: Spool,
    pending: Vec<String>,
    stats: SinkStats,
    backoff: Duration,
    retry_at: Option<tokio::time::Instant>,
}

impl State {
    /// Tries the buffered segments (oldest first), then the pending lines; whatever is not
    /// taken stays buffered, and the pending lines join the buffer so the order holds. A batch
    /// refused for good is set aside; the buffer is kept under its size limit.
    async fn flush(&mut self, force_spool: bool) {
        let now = tokio::time::Instant::now();
        let may_try = self.retry_at.is_none_or(|t| now >= t) && !force_spool;
        if may_try {
            while let Some((_, path)) = self.spool.segments.front().cloned() {
                let body = match std::fs::read_to_string(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        // An unreadable segment is kept aside, never deleted silently.
                        tracing::error!(file = %path.display(), error = %e, "buffer segment unreadable; kept as .bad");
                        self.spool.pop();
                        let _ = std::fs::rename(&path, path.with_extension("bad"));
                        continue;
                    }
                };
                let n = body.lines().count() as u64;
                match write(&self.client, &self.cfg, body).await {
                    Ok(()) => {
                        self.spool.pop();
                        let _ = std::fs::remove_file(&path);
                        self.stats.written_lines += n;
                        self.written();
                    }
                    Err(f) if f.permanent => {
                        self.spool.pop();
                        let _ = std::fs::rename(&path, path.with_extension("rejected"));
                        self.rejected(n, f.message);
                    }
                    Err(f) => {
                        self.failed(f.message);
                        break;
                    }
                }
            }
        }
        if !self.pending.is_empty() {
            let lines = std::mem::take(&mut self.pending);
            let body = lines.join("\n");
            let n = lines.len() as u64;
            let can_send = may_try && self.spool.segments.is_empty() && self.retry_at.is_none();
            let mut keep = true;
            if can_send {
                match write(&self.client, &self.cfg, body.clone()).await {
                    Ok(()) => {
                        self.stats.written_lines += n;
                        self.written();
                        keep = false;
                    }
                    Err(f) if f.permanent => {
                        let _ = self.spool.reject(&body);
                        self.rejected(n, f.message);
                        keep = false;
                    }
                    Err(f) => self.failed(f.message),
                }
            }
            if keep {
                match self.spool.push(&body) {
                    Ok(()) => self.stats.spooled_lines += n,
                    Err(e) => {
                        // The disk refused too: keep the lines in memory and try again later.
                        tracing::error!(error = %e, "InfluxDB buffer not writable; lines kept in memory");
                        self.stats.last_error = Some(format!("buffer not writable: {e}"));
                        self.pending = lines;
                    }
                }
            }
        }
        // The buffer's size limit: the oldest segments go first.
        let limit = self.cfg.max_buffer_mb.saturating_mul(1 << 20);
        while self.spool.bytes > limit && self.spool.segments.len() > 1 {
            let Some((_, path)) = self.spool.segments.front().cloned() else {
                break;
            };
            let n = std::fs::read_to_string(&path).map_or(0, |b| b.lines().count() as u64);
            self.spool.pop();
            let _ = std::fs::remove_file(&path);
            self.stats.dropped_lines += n;
            tracing::error!(
                lines = n,
                "InfluxDB buffer full: the oldest segment dropped"
            );
        }
        self.stats.buffered_segments = self.spool.segments.len();
        self.stats.buffered_bytes = self.spool.bytes;
    }

    fn written(&mut self) {
        self.stats.connected = true;
        self.backoff = Duration::from_millis(500);
        self.retry_at = None;
    }

    fn rejected(&mut self, n: u64, e: String) {
        tracing::error!(error = %e, lines = n, "InfluxDB refused a batch for good; kept aside as .rejected");
        // The server answered: it is reachable.
        self.stats.connected = true;
        self.stats.rejected_lines += n;
        self.stats.last_error = Some(e);
    }

    fn failed(&mut self, e: String) {
        tracing::warn!(error = %e, "InfluxDB write failed; data buffered on disk");
        self.stats.connected = false;
        self.stats.failures += 1;
        self.stats.last_error = Some(e);
        self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }
}

async fn task(
    cfg: InfluxConfig,
    spool: Spool,
    mut rx: mpsc::Receiver<Msg>,
    state: tokio::sync::watch::Sender<SinkStats>,
) {
    let client = influxdb2::Client::new(&cfg.url, &cfg.org, &cfg.token);
    let mut st = State {
        client,
        spool,
        pending: Vec::new(),
        stats: SinkStats::default(),
        backoff: Duration::from_millis(500),
        retry_at: None,
        cfg,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(st.cfg.flush_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Msg::Samples(v)) => {
                    st.pending.extend(v.iter().filter_map(line));
                    if st.pending.len() >= st.cfg.batch_lines {
                        st.flush(false).await;
                    }
                }
                Some(Msg::Lines(v)) => {
                    st.pending.extend(v);
                    if st.pending.len() >= st.cfg.batch_lines {
                        st.flush(false).await;
                    }
                }
                Some(Msg::Stats(t)) => {
                    st.stats.buffered_segments = st.spool.segments.len();
                    st.stats.buffered_bytes = st.spool.bytes;
                    let _ = t.send(st.stats.clone());
                }
                Some(Msg::Stop(t)) => {
                    // One last try; what the server does not take stays on disk.
                    st.retry_at = None;
                    st.flush(false).await;
                    if !st.pending.is_empty() {
                        st.flush(true).await;
                    }
                    let _ = t.send(st.stats.clone());
                    return;
                }
                None => {
                    st.flush(true).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if st.retry_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    st.retry_at = None;
                }
                st.flush(false).await;
            }
        }
        state.send_replace(st.stats.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lines_escape_tags_and_skip_non_finite_values() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 6, 21, 4, 0, 0).unwrap();
        let s = Sample {
            device: "roof a,1".into(),
            field: "power_kw".into(),
            at,
            value: 12.5,
            quality: 1,
        };
        assert_eq!(
            line(&s).unwrap(),
            format!(
                "pedf,device=roof\\ a\\,1,quality=stale power_kw=12.5 {}",
                at.timestamp_millis()
            )
        );
        assert!(line(&Sample {
            value: f64::NAN,
            ..s
        })
        .is_none());
    }

    #[test]
    fn the_spool_reopens_in_order() {
        let dir = std::env::temp_dir().join(format!("pedf-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Spool::open(&dir).unwrap();
        for i in 0..12 {
            s.push(&format!("line {i}")).unwrap();
        }
        let s2 = Spool::open(&dir).unwrap();
        let order: Vec<String> = s2
            .segments
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(
            order,
            (0..12).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        assert_eq!(s2.next, 13);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
