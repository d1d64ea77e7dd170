//! The sink against a real server that speaks the InfluxDB v2 write API: Debian's
//! `victoria-metrics` (installed by scripts/setup), started here on loopback and a free port.
//! The server is stopped in the middle of the test and started again on the same data; every
//! sample is read back (`/api/v1/export`) and compared.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use pedf_core::live::Sample;
use pedf_influx::{InfluxConfig, InfluxSink, SinkStats};

#[path = "../../pedf-runtime/tests/support/ports.rs"]
mod ports;
use ports::free_port;

struct Victoria {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    /// More command-line flags (e.g. basic auth).
    flags: Vec<String>,
}

impl Victoria {
    fn start(data: &Path) -> Victoria {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, flags: &[&str]) -> Victoria {
        let port = free_port();
        let mut v = Victoria {
            child: None,
            port,
            data: data.to_path_buf(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        v.restart();
        v
    }

    fn restart(&mut self) {
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            // Without it points older than a month are dropped silently.
            .arg("-retentionPeriod=100y")
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (Debian package; scripts/setup installs it)");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if http_get(self.port, "/health").is_some_and(|b| b.trim() == "OK") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "victoria-metrics did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A graceful stop (SIGTERM), as an operator's restart or a server's shutdown would be:
    /// the server keeps what it acknowledged. (A SIGKILL loses its last second of writes,
    /// which no client can see or prevent.)
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET on loopback (no client library needed for reading back).
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_string())
}

fn samples(from_s: i64, n: i64) -> Vec<Sample> {
    let t0 = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
    (from_s..from_s + n)
        .flat_map(|s| {
            let at = t0 + chrono::Duration::seconds(s);
            [
                Sample {
                    device: "pv-roof-a".into(),
                    field: "power_kw".into(),
                    at,
                    value: (s % 500) as f64 + 0.25,
                    quality: 0,
                },
                Sample {
                    device: "bess-1".into(),
                    field: "soc_pct".into(),
                    at,
                    value: 50.0 + (s % 40) as f64 / 4.0,
                    quality: 0,
                },
            ]
        })
        .collect()
}

type Key = (String, String, i64, u64);

fn keys(v: &[Sample]) -> BTreeSet<Key> {
    v.iter()
        .map(|s| {
            (
                s.device.clone(),
                format!("pedf_{}", s.field),
                s.at.timestamp_millis(),
                s.value.to_bits(),
            )
        })
        .collect()
}

fn exported(port: u16) -> BTreeSet<Key> {
    let _ = http_get(port, "/internal/force_flush");
    let body = http_get(
        port,
        "/api/v1/export?match[]=%7B__name__%3D~%22pedf_.*%22%7D&start=0",
    )
    .unwrap_or_default();
    let mut out = BTreeSet::new();
    for l in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let name = v["metric"]["__name__"].as_str().unwrap().to_string();
        let device = v["metric"]["device"].as_str().unwrap().to_string();
        let values = v["values"].as_array().unwrap();
        let ts = v["timestamps"].as_array().unwrap();
        for (x, t) in values.iter().zip(ts) {
            out.insert((
                device.clone(),
                name.clone(),
                t.as_i64().unwrap(),
                x.as_f64().unwrap().to_bits(),
            ));
        }
    }
    out
}

async fn until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f()
}

/// The sink's counters once `want` holds, or after `secs` seconds (the caller asserts).
async fn stats_when(sink: &InfluxSink, secs: u64, want: impl Fn(&SinkStats) -> bool) -> SinkStats {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = sink.stats().await;
        if want(&st) || Instant::now() >= end {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_replays_in_order() {
    let dir = std::env::temp_dir().join(format!("pedf-influx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut vm = Victoria::start(&dir.join("vm"));
    let cfg = InfluxConfig {
        url: format!("http://127.0.0.1:{}", vm.port),
        org: "pedf".into(),
        bucket: "park".into(),
        token: String::new(),
        token_env: None,
        token_file: None,
        buffer_dir: dir.join("buffer"),
        batch_lines: 1000,
        flush_ms: 100,
        max_buffer_mb: 1024,
    };
    let sink = InfluxSink::start(cfg.clone()).unwrap();
    let mut sent = Vec::new();

    // Server up: 3 x 600 s of samples, written.
    for k in 0..3 {
        let v = samples(k * 600, 600);
        sent.extend(v.clone());
        assert!(sink.send(v));
    }
    let n = sent.len() as u64;
    let st = stats_when(&sink, 10, |st| st.written_lines == n).await;
    assert_eq!(st.written_lines, n, "{st:?}");

    // Server down: the next samples go to the disk buffer, every line of them.
    vm.stop();
    let written = sent.len() as u64;
    for k in 3..6 {
        let v = samples(k * 600, 600);
        sent.extend(v.clone());
        assert!(sink.send(v));
    }
    let down = sent.len() as u64 - written;
    let st = stats_when(&sink, 20, |st| st.spooled_lines >= down).await;
    assert!(st.failures > 0 && st.spooled_lines >= down, "{st:?}");
    assert!(st.buffered_segments > 0, "{st:?}");
    assert!(st.last_error.is_some());
    assert_eq!(
        st.written_lines, written,
        "nothing written while the server is down"
    );

    // Server back: the buffer is replayed, oldest first, and emptied.
    vm.restart();
    for k in 6..8 {
        let v = samples(k * 600, 600);
        sent.extend(v.clone());
        assert!(sink.send(v));
    }
    let n = sent.len() as u64;
    let st = stats_when(&sink, 20, |st| {
        st.buffered_segments == 0 && st.written_lines == n
    })
    .await;
    assert!(st.buffered_segments == 0 && st.written_lines == n, "{st:?}");
    let want = keys(&sent);
    let port = vm.port;
    let got_all = until(20, || exported(port) == want).await;
    let got = exported(port);
    assert!(
        got_all,
        "read back {} of {} samples; missing e.g. {:?}",
        got.intersection(&want).count(),
        want.len(),
        want.difference(&got).next()
    );

    // Stopped while the server is down: the lines wait on disk for the next run.
    vm.stop();
    let last = samples(8 * 600, 300);
    sent.extend(last.clone());
    assert!(sink.send(last));
    let st = sink.stop().await;
    assert!(st.buffered_segments > 0, "{st:?}");
    vm.restart();
    let sink2 = InfluxSink::start(cfg).unwrap();
    let st = stats_when(&sink2, 20, |st| st.buffered_segments == 0).await;
    assert_eq!(st.buffered_segments, 0, "{st:?}");
    let want = keys(&sent);
    let got_all = until(20, || exported(port) == want).await;
    assert!(got_all, "after a restart of the EMS");
    sink2.stop().await;
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that refuses the sink for good (a wrong token: 401) has each batch set aside as
/// `.rejected` once, never retried, said in the sink's state; a server out of reach fills the
/// disk buffer only to its limit, the oldest lines dropped and counted. (A permanent 400 was
/// retried forever and the buffer grew without a bound, with nothing said.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_set_aside_and_the_buffer_keeps_its_limit() {
    let dir = std::env::temp_dir().join(format!("pedf-influx-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vm = Victoria::start_with(
        &dir.join("vm"),
        &["-httpAuth.username=pedf", "-httpAuth.password=secret"],
    );
    let cfg = InfluxConfig {
        url: format!("http://127.0.0.1:{}", vm.port),
        org: "pedf".into(),
        bucket: "park".into(),
        token: "not-the-token".into(),
        token_env: None,
        token_file: None,
        buffer_dir: dir.join("refused"),
        batch_lines: 1000,
        flush_ms: 100,
        max_buffer_mb: 1024,
    };
    let sink = InfluxSink::start(cfg.clone()).unwrap();
    let sent = samples(0, 600);
    let n = sent.len() as u64;
    assert!(sink.send(sent));
    let st = stats_when(&sink, 20, |st| st.rejected_lines >= n).await;
    assert_eq!(st.rejected_lines, n, "{st:?}");
    assert_eq!(st.failures, 0, "a refusal is not retried: {st:?}");
    assert!(st.connected, "the server answered: {st:?}");
    assert_eq!(st.buffered_segments, 0, "{st:?}");
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("401"),
        "{st:?}"
    );
    let aside = std::fs::read_dir(dir.join("refused"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rejected")
        })
        .count();
    assert!(aside >= 1, "the refused lines are kept aside");
    assert_eq!(
        sink.state(),
        st,
        "the state the cycle reads without waiting"
    );
    sink.stop().await;
    drop(vm);

    // Nobody listening: 1 MB of buffer, about 2 MB sent.
    let port = free_port();
    let sink = InfluxSink::start(InfluxConfig {
        url: format!("http://127.0.0.1:{port}"),
        buffer_dir: dir.join("capped"),
        max_buffer_mb: 1,
        ..cfg
    })
    .unwrap();
    for k in 0..30 {
        assert!(sink.send(samples(k * 600, 600)));
    }
    let st = stats_when(&sink, 30, |st| {
        st.dropped_lines > 0 && st.spooled_lines >= 30 * 1200
    })
    .await;
    assert!(st.dropped_lines > 0, "{st:?}");
    assert!(!st.connected, "{st:?}");
    // At most the limit, and one segment over it while a segment is being added.
    assert!(st.buffered_bytes <= (1 << 20) + 200_000, "{st:?}");
    sink.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
