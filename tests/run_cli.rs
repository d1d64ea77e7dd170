//! `pedf run` as a process: it keeps running with no device answering, and SIGTERM stops it
//! cleanly, saying which devices it could not put into their safe state.

use std::process::{Command, Stdio};

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_cleanly() {
    let dir = std::env::temp_dir().join(format!("pedf-run-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    // The reference device list points at pedf-sim's ports, where nothing listens here.
    std::fs::write(
        dir.join("run.toml"),
        format!("park = \"{root}/config/qingzhou-pedf.toml\"\ndevices = \"{root}/config/devices/qingzhou-pedf.toml\"\nstore = \"var/pedf.sqlite\"\ncycle_ms = 200\n"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pedf"))
        .args(["run", "--config", dir.join("run.toml").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Waits (with a deadline) for the run to have started its loop, which registers the signal
    // handlers in its first turn: the store's "pedf run started" event comes just before it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let started = pedf_store::Store::open(&dir.join("var/pedf.sqlite"))
            .and_then(|st| st.recent_events(10))
            .is_ok_and(|ev| ev.iter().any(|e| e.3.starts_with("pedf run started")));
        if started {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pedf run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("pedf run: SIGTERM, stopping"), "{stderr}");
    assert!(stdout.contains("not answering at shutdown (their own fail-safe applies): pv-roof-a, bess-1, ev-01, hvac"), "{stdout}");
    assert!(dir.join("var/pedf.sqlite").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
