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

/// `pedf fleet add-park` makes a park's NATS user: its seed in a file only its owner reads,
/// the servers' entry printed with what the park may publish and receive; a park's key is
/// never replaced. `pedf check` tells a hub file apart and names its mistakes.
#[test]
fn a_park_joins_the_fleet_with_a_key_of_its_own() {
    let dir = std::env::temp_dir().join(format!("pedf-fleet-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pedf = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pedf"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let keys = dir.join("keys");
    let keys = keys.to_str().unwrap();
    let (code, out, err) = pedf(&["fleet", "add-park", "--park", "park-7", "--dir", keys]);
    assert_eq!(code, Some(0), "{out}{err}");
    let seed = std::fs::read_to_string(dir.join("keys/park-7.nk")).unwrap();
    let pair = nkeys::KeyPair::from_seed(seed.trim()).expect("a user nkey seed");
    assert!(out.contains(&format!(
        "{{ nkey: {}, permissions: {{ publish: {{ allow: [\"pedf.park-7.>\"] }}, subscribe: {{ allow: [\"_INBOX.park-7.>\", \"pedf.park-7.requests\"] }} }} }}",
        pair.public_key()
    )), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("keys/park-7.nk"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, _, err) = pedf(&["fleet", "add-park", "--park", "park-7", "--dir", keys]);
    assert_eq!(code, Some(1));
    assert!(err.contains("a park's key is not replaced"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("keys/park-7.nk")).unwrap(),
        seed
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = pedf(&["check", &format!("{root}/config/fleet-hub.toml")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("fleet hub file is valid"), "{out}");
    let bad = dir.join("hub.toml");
    std::fs::write(
        &bad,
        "url = \"nats://127.0.0.1:4222\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:8090\"\nreplicas = 2\n",
    )
    .unwrap();
    let (code, _, err) = pedf(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("replicas = 2: give 1, 3 or 5"), "{err}");
    std::fs::write(
        &bad,
        "url = \"nats://127.0.0.1:4222\"\nstore = \"fleet.sqlite\"\nlisten = \"0.0.0.0:8090\"\nhttps_cert = \"hub.crt\"\n",
    )
    .unwrap();
    let (code, _, err) = pedf(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("give https_cert and https_key together"),
        "{err}"
    );
    // The hub's tokens from the command line (its store made on the way), as the API makes
    // them: said once, listed without the token, revoked once.
    let hub = dir.join("hub-ok.toml");
    std::fs::write(
        &hub,
        "url = \"nats://127.0.0.1:4222\"\nstore = \"fleet.sqlite\"\nlisten = \"127.0.0.1:8090\"\n",
    )
    .unwrap();
    let hub = hub.to_str().unwrap();
    let (code, out, err) = pedf(&[
        "fleet", "token", "create", "--config", hub, "--role", "viewer", "--label", "wall",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim();
    assert!(token.starts_with("pedf_") && token.len() == 69, "{out}");
    assert!(err.contains("token #1 (viewer, wall)"), "{err}");
    let (code, _, err) = pedf(&[
        "fleet", "token", "create", "--config", hub, "--role", "boss", "--label", "x",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--role: `boss` is not one of viewer, operator, admin"),
        "{err}"
    );
    let (code, out, _) = pedf(&["fleet", "token", "list", "--config", hub]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("viewer") && out.contains("wall") && !out.contains(token),
        "{out}"
    );
    let (code, out, _) = pedf(&["fleet", "token", "revoke", "--config", hub, "1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("token #1 revoked"), "{out}");
    let (code, _, err) = pedf(&["fleet", "token", "revoke", "--config", hub, "1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no token #1 that is not revoked already"),
        "{err}"
    );
    let stored = pedf_store::fleet::FleetStore::open(&dir.join("fleet.sqlite"))
        .unwrap()
        .all_tokens()
        .unwrap();
    assert!(stored[0].revoked.is_some(), "{stored:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
