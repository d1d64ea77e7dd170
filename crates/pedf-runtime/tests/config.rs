//! `pedf check` on a run file: pedf-runtime checks it as `pedf run` would start from it.

use pedf_runtime::config::{check_run_file, is_run_file_text};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[test]
fn the_reference_run_file_is_valid() {
    let path = std::path::PathBuf::from(format!("{ROOT}/config/run-qingzhou.toml"));
    assert!(is_run_file_text(&std::fs::read_to_string(&path).unwrap()));
    let check = check_run_file(&path);
    assert!(check.valid, "{:?}", check.messages);
    assert!(
        check.summary.contains("server on 127.0.0.1:8080"),
        "{}",
        check.summary
    );
}

/// Every file and folder the run names is checked, each problem naming its table and key.
#[test]
fn a_run_file_naming_missing_files_says_which() {
    let dir = std::env::temp_dir().join(format!("pedf-run-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n\n[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"no.crt\"\ntls_key = \"no.key\"\nemission_factors = \"{ROOT}/config/emission-factors/china-grid.toml\"\n\n[replan]\ninputs = \"no-such-folder\"\n"
        ),
    )
    .unwrap();
    let check = check_run_file(&path);
    assert!(!check.valid);
    let all = check.messages.join("\n");
    for want in [
        "[server] tls_cert = ",
        "[server] tls_key = ",
        "[replan] inputs = ",
    ] {
        assert!(all.contains(want), "{want} not in:\n{all}");
    }
    // A park file is not a run file.
    assert!(!is_run_file_text(
        &std::fs::read_to_string(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap()
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Secrets stay out of files others may read: the Influx token may come from a file or the
/// environment, a token written in a world-readable run file is a warning, and the store the
/// EMS makes is its owner's alone. (The database and the run file with its token were 0644.)
#[cfg(unix)]
#[test]
fn secrets_and_the_store_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pedf-run-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = format!(
        "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"var/pedf.sqlite\"\n\n[influx]\nurl = \"http://127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\nbuffer_dir = \"buf\"\n"
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, format!("{base}token = \"s3cret\"\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = check_run_file(&path);
    assert!(
        check
            .messages
            .iter()
            .any(|m| m.contains("warning: [influx] token is in a file others may read")),
        "{:?}",
        check.messages
    );
    // From a file next to the run file.
    std::fs::write(dir.join("influx.token"), "from-a-file\n").unwrap();
    std::fs::write(&path, format!("{base}token_file = \"influx.token\"\n")).unwrap();
    let cfg = pedf_runtime::run::RunConfig::load(&path).unwrap();
    assert_eq!(cfg.influx.unwrap().token, "from-a-file");
    // Not both ways; an environment variable that is not set is named.
    std::fs::write(
        &path,
        format!("{base}token = \"x\"\ntoken_file = \"influx.token\"\n"),
    )
    .unwrap();
    let e = pedf_runtime::run::RunConfig::load(&path).err().unwrap();
    assert!(e.contains("give the token one way"), "{e}");
    std::fs::write(
        &path,
        format!("{base}token_env = \"PEDF_TEST_NO_SUCH_VARIABLE\"\n"),
    )
    .unwrap();
    let e = pedf_runtime::run::RunConfig::load(&path).err().unwrap();
    assert!(e.contains("token_env = PEDF_TEST_NO_SUCH_VARIABLE"), "{e}");
    // The store, made in a folder of its own: 0600 in 0700.
    pedf_store::create_private_dir(&dir.join("var")).unwrap();
    let _store = pedf_store::Store::open(&dir.join("var/pedf.sqlite")).unwrap();
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("var/pedf.sqlite"), 0o600);
    assert_eq!(mode("var"), 0o700);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The control cycle is `cycle_ms` of the EMS's time: at `pedf demo --speed 60` a 1000 ms
/// cycle is a simulated second (1/60 s of real time), so the simulated park never runs a
/// setpoint longer than a real one would (it once ran each for a simulated minute); past
/// 100 cycles a second the real floor of 10 ms lengthens it in the EMS's time.
#[test]
fn the_cycle_is_in_the_ems_time() {
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("pedf-run-cycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\ncycle_ms = 1000\n"),
    )
    .unwrap();
    let mut cfg = pedf_runtime::run::RunConfig::load(&path).unwrap();
    let origin = chrono::DateTime::from_timestamp(1_782_000_000, 0).unwrap();
    let at = |speed: f64| {
        let mut c = cfg.clone();
        c.time = pedf_core::time::TimeSource::scaled(origin, speed);
        c.cycle()
    };
    assert_eq!(
        cfg.cycle(),
        (Duration::from_secs(1), Duration::from_secs(1))
    );
    let (real, ems) = at(60.0);
    assert_eq!(real, Duration::from_secs(1).div_f64(60.0));
    assert!((ems.as_secs_f64() - 1.0).abs() < 1e-6, "{ems:?}");
    let (real, ems) = at(3600.0);
    assert_eq!(real, Duration::from_millis(10));
    assert!((ems.as_secs_f64() - 36.0).abs() < 1e-6, "{ems:?}");
    cfg.cycle_ms = 200;
    assert_eq!(cfg.cycle().0, Duration::from_millis(200));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `[ocpp]` table: a listen address off loopback without TLS, a password that is not a
/// SHA-256, a unit the profiles do not take, a device given to two connectors, a TLS
/// certificate without its key and one that cannot be read are refused, each naming its key
/// or file.
#[test]
fn an_ocpp_table_with_mistakes_says_which() {
    let dir = std::env::temp_dir().join(format!("pedf-run-ocpp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    let hash = "a".repeat(64);
    let run = |ocpp: &str| {
        std::fs::write(
            &path,
            format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n\n[ocpp]\n{ocpp}"),
        )
        .unwrap();
        pedf_runtime::run::RunConfig::load(&path).map(|_| ())
    };
    let charger = |extra: &str| {
        format!("listen = \"127.0.0.1:9000\"\n\n[[ocpp.charger]]\nidentity = \"CP-1\"\npassword_sha256 = \"{hash}\"\nsafe_kw = 7\nconnectors = [{{ connector = 1, device = \"ev-21\" }}]\n{extra}")
    };
    assert_eq!(run(&charger("")), Ok(()));
    let cases = [
        (
            "listen = \"0.0.0.0:9000\"\n".to_string(),
            "[ocpp] listen = `0.0.0.0:9000`: plain WebSocket with Basic authentication is taken on loopback only",
        ),
        (
            charger("").replace(&hash, "secret"),
            "[[ocpp.charger]] 1 (`CP-1`): password_sha256 must be 64 hex digits",
        ),
        (
            charger("unit = \"kW\"\n"),
            "[[ocpp.charger]] 1 (`CP-1`): unit = `kW` is not W or A",
        ),
        (
            charger("").replace(
                "[{ connector = 1, device = \"ev-21\" }]",
                "[{ connector = 1, device = \"ev-21\" }, { connector = 2, device = \"ev-21\" }]",
            ),
            "connector 2 (`ev-21`): connectors are numbered from 1 and each device is one connector",
        ),
        (
            charger("").replace("listen = ", "tls_cert = \"ocpp.crt\"\nlisten = "),
            "[ocpp] TLS needs both tls_cert and tls_key (PEM files), or neither",
        ),
        (
            charger("").replace(
                "listen = ",
                "tls_cert = \"ocpp.crt\"\ntls_key = \"ocpp.key\"\nlisten = ",
            ),
            "ocpp.crt: cannot read",
        ),
    ];
    for (text, want) in cases {
        let e = run(&text).unwrap_err();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_iec104_table_with_mistakes_says_which() {
    let dir = std::env::temp_dir().join(format!("pedf-run-iec104-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    let run = |table: &str, points: &str| {
        std::fs::write(dir.join("points.toml"), points).unwrap();
        std::fs::write(
            &path,
            format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n\n[iec104]\n{table}"),
        )
        .unwrap();
        pedf_runtime::run::RunConfig::load(&path).map(|_| ())
    };
    let table = "listen = \"0.0.0.0:2404\"\ncommon_address = 1\nmasters = [\"10.20.0.5\"]\npoints = \"points.toml\"\n";
    let points = "[[measurement]]\nname = \"grid_kw\"\nioa = 1001\ndeadband = 5\n\n[[setpoint]]\nname = \"import_limit_kw\"\nioa = 3001\nselect_before_operate = true\n";
    assert_eq!(run(table, points), Ok(()));
    let cases = [
        (
            table.replace("10.20.0.5", "dispatch.example"),
            points.to_string(),
            "[iec104] masters: `dispatch.example` is not an IP address",
        ),
        (
            table.replace("common_address = 1", "common_address = 65535"),
            points.to_string(),
            "[iec104] common_address must be 1 to 65534",
        ),
        (
            format!("{table}t1_s = 5\nt2_s = 10\n"),
            points.to_string(),
            "[iec104] t2 10s must be shorter than t1 5s",
        ),
        (
            table.to_string(),
            points.replace("grid_kw", "grid_power"),
            "[[measurement]] `grid_power` is not one pedf has; measurements: grid_kw, pv_kw",
        ),
        (
            table.to_string(),
            points.replace("ioa = 3001", "ioa = 1001"),
            "[iec104] point `import_limit_kw`: information object address 1001 is 0, above 16777215 or used twice",
        ),
        (
            table.to_string(),
            points.replace("deadband = 5", "dead_band = 5"),
            "points.toml:4:1: unknown field `dead_band`",
        ),
    ];
    for (t, p, want) in cases {
        let e = run(&t, &p).unwrap_err();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}

/// The run file's grid requests file is checked as `pedf run` reads it: a window off the
/// park's intervals and an unknown kind are each located (file:line:column) and said with what
/// would be valid; a good file passes.
#[test]
fn a_run_files_grid_requests_file_is_checked_where_it_is_written() {
    let dir = std::env::temp_dir().join(format!("pedf-run-requests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\ngrid_requests = \"requests.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("requests.toml"),
        "[[grid_request]]\nid = \"a\"\nkind = \"cap_import\"\nkw = 100\nstart = \"2026-07-15T14:07:00+08:00\"\nend = \"2026-07-15T15:00:00+08:00\"\n\n[[grid_request]]\nid = \"b\"\nkind = \"shed\"\nkw = 50\nstart = \"2026-07-15T14:00:00+08:00\"\nend = \"2026-07-15T15:00:00+08:00\"\n",
    )
    .unwrap();
    let check = check_run_file(&path);
    assert!(!check.valid);
    let all = check.messages.join("\n");
    let file = dir.join("requests.toml").display().to_string();
    for want in [
        format!("{file}:5:9: error: grid_request[0].start:"),
        format!("{file}:10:8: error: grid_request[1].kind:"),
        "cap_import, reduce_import, cap_export or export_at_least".to_string(),
    ] {
        assert!(all.contains(&want), "{want} not in:\n{all}");
    }
    std::fs::write(
        dir.join("requests.toml"),
        "[[grid_request]]\nid = \"a\"\nkind = \"cap_import\"\nkw = 100\nstart = \"2026-07-15T14:00:00+08:00\"\nend = \"2026-07-15T15:00:00+08:00\"\n",
    )
    .unwrap();
    let check = check_run_file(&path);
    assert!(check.valid, "{:?}", check.messages);
    // The baseline's rule is checked too.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[baseline]\ndays = 0\n")).unwrap();
    let check = check_run_file(&path);
    assert!(!check.valid);
    assert!(
        check
            .messages
            .join("\n")
            .contains("[baseline] days = 0: give 1 to 30 like days"),
        "{:?}",
        check.messages
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fleet_table_with_mistakes_says_which() {
    let dir = std::env::temp_dir().join(format!("pedf-run-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.toml");
    let run = |table: &str| {
        std::fs::write(
            &path,
            format!("park = \"{ROOT}/config/qingzhou-pedf.toml\"\ndevices = \"{ROOT}/config/devices/qingzhou-pedf.toml\"\nstore = \"pedf.sqlite\"\n\n[fleet]\n{table}"),
        )
        .unwrap();
        pedf_runtime::run::RunConfig::load(&path)
    };
    let good =
        run("url = \"nats://10.0.0.1:4222, nats://10.0.0.2:4222\"\ncredentials = \"park.creds\"\n")
            .unwrap();
    let f = good.fleet.unwrap();
    assert_eq!(f.name_of("qingzhou-pedf"), "qingzhou-pedf");
    assert_eq!(f.credentials, Some(dir.join("park.creds")));
    let f =
        run("url = \"tls://10.0.0.1:4222\"\nnkey_seed = \"park.nk\"\ntls_ca = \"hub-ca.pem\"\n")
            .unwrap()
            .fleet
            .unwrap();
    assert_eq!(f.nkey_seed, Some(dir.join("park.nk")));
    assert_eq!(f.tls_ca, Some(dir.join("hub-ca.pem")));
    for (table, want) in [
        (
            "url = \"http://hub:4222\"\n",
            "[fleet] url: `http://hub:4222` is not a NATS server address",
        ),
        (
            "url = \"nats://hub:4222\"\npark = \"qingzhou.pedf\"\n",
            "[fleet] park = `qingzhou.pedf`: give letters, digits, `-` and `_`",
        ),
        (
            "url = \"nats://hub:4222\"\nstate_every_s = 0\n",
            "[fleet] state_every_s = 0: give 1 to 3600 seconds",
        ),
        (
            "url = \"nats://hub:4222\"\nsubject = \"x\"\n",
            "unknown field `subject`",
        ),
        (
            "url = \"nats://hub:4222\"\ncredentials = \"a.creds\"\nnkey_seed = \"a.nk\"\n",
            "[fleet] credentials and nkey_seed: give one",
        ),
        (
            "url = \"tls://hub:4222\"\ntls_cert = \"park.crt\"\n",
            "[fleet] tls_cert and tls_key: give both or neither",
        ),
        (
            "url = \"nats://hub:4222\"\ndashboard = \"park-7:8080\"\n",
            "[fleet] dashboard = `park-7:8080`: give the park dashboard's address",
        ),
    ] {
        let e = run(table).map(|_| ()).unwrap_err();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
