//! pedf's IEC 60870-5-104 outstation against a master it did not write: the `c104` package
//! (PyPI, on lib60870-C, pinned in the outside peers' venv that scripts/setup makes), driven
//! line by line through `tests/peers/iec104_master.py`: interrogation with the live values,
//! a spontaneous change past its deadband with its time tag, clock synchronisation,
//! setpoints executed directly and selected before operation, a setpoint the application
//! refuses (a negative confirmation), a master not allowed; and, with bare frames, a master
//! that never acknowledges (closed after t1) and a sequence error.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pedf_iec104::frame::{Apdu, UFunction};
use pedf_iec104::{Config, Outstation, PointMap, SetpointPoint, ValuePoint};
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn python() -> PathBuf {
    let p = Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        p.display()
    );
    p
}

struct Master {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Master {
    fn start(port: u16) -> Master {
        let mut child = Command::new(python())
            // A crash of the C library under it says where (Python's fault handler).
            .args(["-X", "faulthandler"])
            .arg(Path::new(ROOT).join("tests/peers/iec104_master.py"))
            .args(["127.0.0.1", &port.to_string(), "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the c104 master starts");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Master {
            child,
            stdin,
            lines,
        }
    }

    /// The master's next line (at most 20 s); when there is none, how the master ended.
    async fn next(&mut self) -> Value {
        match tokio::task::block_in_place(|| self.lines.recv_timeout(Duration::from_secs(20))) {
            Ok(v) => v,
            Err(e) => {
                // How it ended, if it did (within 2 s).
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                let ended = loop {
                    match self.child.try_wait() {
                        Ok(Some(status)) => break format!("it ended: {status}"),
                        _ if std::time::Instant::now() > deadline => {
                            break "it is still running".to_string()
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                };
                panic!("the master answers: {e} ({ended}; its stderr is above)")
            }
        }
    }

    async fn ask(&mut self, what: Value) -> Value {
        writeln!(self.stdin, "{what}").unwrap();
        self.stdin.flush().unwrap();
        self.next().await
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"do": "quit"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn points() -> PointMap {
    let v = |name: &str, ioa: u32, deadband: f64| ValuePoint {
        name: name.into(),
        ioa,
        deadband,
    };
    PointMap {
        measurements: vec![
            v("grid_kw", 1001, 1.0),
            v("pv_kw", 1002, 1.0),
            v("soc_pct", 1003, 0.5),
        ],
        singles: vec![v("safe_state", 2001, 0.0), v("alarm", 2002, 0.0)],
        setpoints: vec![
            SetpointPoint {
                name: "import_limit_kw".into(),
                ioa: 3001,
                select_before_operate: false,
            },
            SetpointPoint {
                name: "export_limit_kw".into(),
                ioa: 3002,
                select_before_operate: true,
            },
        ],
    }
}

fn config(masters: &[&str]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        common_address: 1,
        masters: masters.iter().map(|m| m.parse().unwrap()).collect(),
        k: 12,
        w: 8,
        t1: Duration::from_secs(15),
        t2: Duration::from_secs(10),
        t3: Duration::from_secs(20),
        cyclic: None,
        points: points(),
        utc_offset: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        select_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(5),
    }
}

/// The station's clock in these tests: a fixed instant, not today's date.
fn clock() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_782_007_200, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c104_master_interrogates_and_sets_the_park() {
    let (station, mut commands) = Outstation::start(config(&["127.0.0.1"]), clock).unwrap();
    station.update(
        &[
            ("grid_kw", Some(412.5)),
            ("pv_kw", Some(803.0)),
            ("soc_pct", None),
        ],
        &[("safe_state", Some(false)), ("alarm", Some(true))],
    );
    // The application: a limit below zero is refused, any other carried out.
    let (taken_tx, taken) = mpsc::channel();
    tokio::spawn(async move {
        while let Some(c) = commands.recv().await {
            let r = if c.value < 0.0 {
                Err(format!("{} {} is below zero", c.point, c.value))
            } else {
                let _ = taken_tx.send((c.point.clone(), c.value));
                Ok(())
            };
            let _ = c.reply.send(r);
        }
    });
    let mut m = Master::start(station.addr.port());
    let c = m.next().await;
    assert_eq!(c["ok"], true, "connected: {c}");
    let gi = m.ask(json!({"do": "interrogate"})).await;
    assert_eq!(gi["ok"], true, "{gi}: {:?}", station.take_events());
    let pts = m.ask(json!({"do": "points"})).await;
    let by = |ioa: u64| {
        pts["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["ioa"] == ioa)
            .cloned()
            .unwrap_or_else(|| panic!("no point {ioa} in {pts}"))
    };
    assert_eq!(by(1001)["value"], 412.5);
    assert_eq!(by(1002)["value"], 803.0);
    assert!(by(1001)["type"].as_str().unwrap().contains("M_ME_TF_1"));
    assert_eq!(by(2002)["value"], true);
    assert_eq!(by(2001)["value"], false);
    // An unknown value is sent as invalid.
    assert_eq!(by(1003)["invalid"], true, "{}", by(1003));

    // A change within the deadband stays; one past it is sent spontaneously, time tagged.
    station.update(&[("grid_kw", Some(412.9))], &[]);
    station.update(&[("grid_kw", Some(380.0))], &[]);
    let w = m
        .ask(json!({"do": "wait", "ioa": 1001, "near": 380.0, "within": 0.01, "seconds": 10}))
        .await;
    assert_eq!(w["ok"], true, "{w}");
    let p = m.ask(json!({"do": "points"})).await;
    let tagged = p["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ioa"] == 1001)
        .unwrap()
        .clone();
    assert!(
        tagged["type"].as_str().unwrap().contains("M_ME_TF_1"),
        "{tagged}"
    );
    // 10:00 Beijing time, the station's clock.
    assert!(
        tagged["time"]
            .as_str()
            .is_some_and(|t| t.contains("10:00:00")),
        "{tagged}"
    );

    assert_eq!(m.ask(json!({"do": "clock"})).await["ok"], true);
    // Direct execution, then a refusal, then select before operate.
    let set = |ioa: u64, value: f64, sbo: bool| json!({"do": "set", "ioa": ioa, "value": value, "sbo": sbo});
    assert_eq!(m.ask(set(3001, 250.0, false)).await["ok"], true);
    assert_eq!(m.ask(set(3001, -5.0, false)).await["ok"], false);
    assert_eq!(m.ask(set(3002, 100.0, true)).await["ok"], true);
    let got: Vec<(String, f64)> = taken.try_iter().collect();
    assert_eq!(
        got,
        [
            ("import_limit_kw".to_string(), 250.0),
            ("export_limit_kw".to_string(), 100.0)
        ]
    );
    let said = station.take_events().join("\n");
    for want in [
        "master 127.0.0.1:",
        "setpoint `import_limit_kw` = 250: carried out",
        "setpoint `import_limit_kw` = -5: refused (import_limit_kw -5 is below zero)",
        "synchronised the clock",
    ] {
        assert!(said.contains(want), "`{want}` in {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_not_in_the_list_is_refused() {
    let (station, _commands) = Outstation::start(config(&["10.1.2.3"]), clock).unwrap();
    let mut s = tokio::net::TcpStream::connect(station.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s
        .write_all(&Apdu::U(UFunction::StartDt(false)).encode())
        .await;
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("closed, not left hanging");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let said = station.take_events().join("\n");
    assert!(
        said.contains("was refused (not one of the run file's masters)"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_never_acknowledges_is_closed_after_t1_and_a_sequence_error_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config(&["127.0.0.1"]);
    cfg.t1 = Duration::from_millis(600);
    cfg.t2 = Duration::from_millis(200);
    let (station, _commands) = Outstation::start(cfg, clock).unwrap();
    // Started, interrogated, then silent: the station's frames go unacknowledged.
    let mut s = tokio::net::TcpStream::connect(station.addr).await.unwrap();
    s.write_all(&Apdu::U(UFunction::StartDt(false)).encode())
        .await
        .unwrap();
    let gi = Apdu::I {
        send: 0,
        recv: 0,
        asdu: vec![100, 1, 6, 0, 1, 0, 0, 0, 0, 20],
    };
    s.write_all(&gi.encode()).await.unwrap();
    let mut all = Vec::new();
    let mut b = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after t1");
    // It answered first: STARTDT con, then the interrogation's confirmation.
    assert_eq!(&all[..6], &Apdu::U(UFunction::StartDt(true)).encode()[..]);
    let said = station.take_events().join("\n");
    assert!(said.contains("no acknowledgement within t1"), "{said}");

    // N(S) out of step: closed.
    let mut s = tokio::net::TcpStream::connect(station.addr).await.unwrap();
    s.write_all(&Apdu::U(UFunction::StartDt(false)).encode())
        .await
        .unwrap();
    let wrong = Apdu::I {
        send: 5,
        recv: 0,
        asdu: vec![100, 1, 6, 0, 1, 0, 0, 0, 0, 20],
    };
    s.write_all(&wrong.encode()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after a sequence error");
    let said = station.take_events().join("\n");
    assert!(said.contains("N(S) 5 where 0 was due"), "{said}");
}
