//! pedf's DL/T 645-2007 master against a meter it did not write: the `dlt645` package's meter
//! side (PyPI, pinned in the outside peers' venv that scripts/setup makes) over TCP, as a
//! serial gateway carries the RS-485 line, driven from here through
//! `tests/peers/dlt645_meter.py`: every register pedf reads, in its field and unit, with the
//! transformer ratios applied; a meter of another address on the same bus; a counting
//! register; the gateway gone and back.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pedf_devices::capability::Field;
use pedf_devices::dlt645::{Address, Dlt645Device, Dlt645Link, Endpoint};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const ADDRESS: &str = "000012345678";

fn python() -> PathBuf {
    let p = Path::new(ROOT).join(".venv-peers/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it makes the venv of outside test peers)",
        p.display()
    );
    p
}

/// The meter, serving until dropped (its stdin closed).
struct Meter(Child);

impl Meter {
    /// Starts the meter on `port` and waits (at most 20 s) for it to listen.
    fn start(port: u16, scenario: &str) -> Meter {
        Meter::spawn(&port.to_string(), scenario).0
    }

    /// Starts the meter on a serial line: the line's path.
    fn start_serial(scenario: &str) -> (Meter, String) {
        let (m, ready) = Meter::spawn("pty", scenario);
        let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
        (m, v["path"].as_str().unwrap().to_string())
    }

    fn spawn(port: &str, scenario: &str) -> (Meter, String) {
        let mut child = Command::new(python())
            .arg(Path::new(ROOT).join("tests/peers/dlt645_meter.py"))
            .args([port, ADDRESS, scenario])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the DL/T 645 meter starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the meter says it is ready");
        assert!(line.contains("\"ready\""), "{line}");
        (Meter(child), line)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "../../pedf-runtime/tests/support/ports.rs"]
mod ports;
use ports::free_port;

fn now() -> chrono::DateTime<chrono::Utc> {
    // A fixed instant: the readings' times are the EMS's, not the meter's.
    chrono::DateTime::from_timestamp(1_782_007_200, 0).unwrap()
}

fn device(link: &std::sync::Arc<Dlt645Link>, address: &str, ratios: (f64, f64)) -> Dlt645Device {
    Dlt645Device::new(
        "grid-billing",
        Address::parse(address).unwrap(),
        ratios,
        link.clone(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registers_of_a_meter_of_the_dlt645_package_are_read_in_pedfs_units() {
    let port = free_port();
    let _meter = Meter::start(port, "static");
    let link = Dlt645Link::new(
        Endpoint::Tcp(([127, 0, 0, 1], port).into()),
        Duration::from_secs(2),
    );
    let mut d = device(&link, ADDRESS, (1.0, 1.0));
    d.poll(now()).await.unwrap();
    let s = d.state();
    let got = |f: Field| s.good(f, now());
    assert_eq!(got(Field::ImportKwh), Some(12345.67));
    assert_eq!(got(Field::ExportKwh), Some(89.01));
    // Reverse power (the sign bit): the park exporting, negative at the grid meter.
    assert_eq!(got(Field::PowerKw), Some(-12.3456));
    assert_eq!(got(Field::ImportKwhSharp), Some(1000.11));
    assert_eq!(got(Field::ImportKwhPeak), Some(4000.22));
    assert_eq!(got(Field::ImportKwhFlat), Some(5000.33));
    assert_eq!(got(Field::ImportKwhValley), Some(2345.01));
    assert_eq!(got(Field::VoltageV), Some(230.1));
    assert_eq!(got(Field::CurrentA), Some(-15.123));
    assert_eq!(got(Field::MaxDemandKw), Some(45.6789));
    assert!(d.missing().is_empty(), "{:08x?}", d.missing());

    // The same meter behind 200/5 A current transformers (ratio 40) and no PT: primary values.
    let mut ct = device(&link, ADDRESS, (40.0, 1.0));
    ct.poll(now()).await.unwrap();
    let s = ct.state();
    let close = |f: Field, want: f64| {
        let v = s.good(f, now()).unwrap();
        assert!((v - want).abs() < 1e-6, "{f:?}: {v} for {want}");
    };
    close(Field::ImportKwh, 12345.67 * 40.0);
    close(Field::PowerKw, -12.3456 * 40.0);
    close(Field::CurrentA, -15.123 * 40.0);
    close(Field::VoltageV, 230.1);

    // A meter of another address on the bus: the read fails, said; the bus goes on.
    let mut other = device(&link, "000000000099", (1.0, 1.0));
    let e = other.poll(now()).await.unwrap_err().to_string();
    assert!(!e.is_empty());
    assert!(other.state().good(Field::ImportKwh, now()).is_none());
    d.poll(now()).await.unwrap();
    assert_eq!(d.state().good(Field::ImportKwh, now()), Some(12345.67));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counting_register_is_followed_and_a_gateway_gone_and_back_is_reconnected() {
    let port = free_port();
    let meter = Meter::start(port, "counting");
    let link = Dlt645Link::new(
        Endpoint::Tcp(([127, 0, 0, 1], port).into()),
        Duration::from_secs(2),
    );
    let mut d = device(&link, ADDRESS, (1.0, 1.0));
    d.poll(now()).await.unwrap();
    let first = d.state().good(Field::ImportKwh, now()).unwrap();
    // The register rises (the meter counts every 0.1 s): waited for with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        d.poll(now()).await.unwrap();
        let v = d.state().good(Field::ImportKwh, now()).unwrap();
        if v > first {
            assert_eq!(d.state().good(Field::PowerKw, now()), Some(1.8));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the register stayed at {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The gateway gone: the poll fails (its values no longer fresh: the poll says why).
    drop(meter);
    let e = d.poll(now()).await.unwrap_err().to_string();
    assert!(!e.is_empty());
    assert!(d.state().last_error.is_some());
    // Back on the same address: the link connects again on its next read.
    let _meter = Meter::start(port, "static");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.poll(now()).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.state().good(Field::ImportKwh, now()), Some(12345.67));
}

/// pedf's reader against the demo's simulated meter (pedf-sim-devices, written apart from
/// the reader): a single-rate meter's "no data requested" for the tariff registers leaves
/// them out, not asked for again, the rest read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_without_tariff_registers_is_read_without_them() {
    let meter = pedf_sim_devices::dlt645::SimDlt645Meter::start(
        "127.0.0.1:0".parse().unwrap(),
        "000020260001",
    )
    .await
    .unwrap();
    {
        let mut r = meter.registers.lock().unwrap();
        r.tariffs = false;
        r.import_kwh = 1.15;
        r.power_kw = -0.5;
    }
    let link = Dlt645Link::new(Endpoint::Tcp(meter.addr), Duration::from_secs(2));
    let mut d = device(&link, "000020260001", (200.0, 1.0));
    d.poll(now()).await.unwrap();
    assert_eq!(
        d.missing(),
        [0x0001_0100, 0x0001_0200, 0x0001_0300, 0x0001_0400]
    );
    let s = d.state();
    assert_eq!(s.good(Field::ImportKwh, now()), Some(230.0));
    assert_eq!(s.good(Field::PowerKw, now()), Some(-100.0));
    assert_eq!(s.good(Field::ImportKwhPeak, now()), None);
    // Asked once: the next poll does not ask again, and still succeeds.
    d.poll(now()).await.unwrap();
    assert_eq!(d.missing().len(), 4);
}

/// The same meter on a serial line (the package's RTU server at 2400 Bd 8E1 on a
/// pseudo-terminal, the peer carrying the bytes to a second one pedf opens as its RS-485
/// port): pedf's serial path reads every register as over a gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_on_a_serial_line_is_read_as_over_a_gateway() {
    let (_meter, path) = Meter::start_serial("static");
    let link = Dlt645Link::new(
        Endpoint::Serial { path, baud: 2400 },
        Duration::from_secs(3),
    );
    let mut d = device(&link, ADDRESS, (1.0, 1.0));
    d.poll(now()).await.unwrap();
    let s = d.state();
    assert_eq!(s.good(Field::ImportKwh, now()), Some(12345.67));
    assert_eq!(s.good(Field::PowerKw, now()), Some(-12.3456));
    assert_eq!(s.good(Field::ImportKwhValley, now()), Some(2345.01));
    assert_eq!(s.good(Field::MaxDemandKw, now()), Some(45.6789));
}
