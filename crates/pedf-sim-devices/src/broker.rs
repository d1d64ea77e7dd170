//! A Mosquitto broker for tests: started on a free loopback port with its own configuration,
//! stopped (and restartable on the same port) by the test. Debian's `mosquitto` package
//! (installed by `scripts/setup`) provides the binary.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker.
pub struct Mosquitto {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ];
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mosquitto"))
            .find(|p| p.exists())
    })
}

impl Mosquitto {
    /// Starts a broker on a free loopback port: below the kernel's ephemeral range
    /// (32768-60999 on Linux), where no outgoing connection takes a port between its choice
    /// and mosquitto's bind (port 0 picked one from that range), and on another port if
    /// mosquitto still cannot bind it (another server took it first).
    pub fn start() -> Result<Mosquitto, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let dir =
                std::env::temp_dir().join(format!("pedf-mosquitto-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut broker = Mosquitto {
                port,
                dir,
                child: None,
            };
            match broker.launch() {
                Ok(()) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(format!("mosquitto did not start on five ports: {last}"))
    }

    fn launch(&mut self) -> Result<(), String> {
        let bin = binary()
            .ok_or("mosquitto not found (Debian package `mosquitto`; scripts/setup installs it)")?;
        let conf = self.dir.join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n",
            self.port
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mosquitto: {e}"))?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("mosquitto exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "mosquitto did not listen on port {} within 10 s",
            self.port
        ))
    }

    /// Kills the broker (as a crash or an outage would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.launch()
    }
}

/// A loopback port free now in 10000-19999, counting up from a start that depends on the
/// process (the tests' own servers take theirs from 20000 up, `support/ports.rs`).
fn free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10000 + (std::process::id() % 500) as u16 * 20;
    for _ in 0..10000 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 20;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free loopback port for mosquitto in 10000-19999".into())
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
