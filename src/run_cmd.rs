//! `pedf run`: the EMS application of pedf-runtime (the run loop, and the HTTP server with
//! its services when the run file has a `[server]` table) on tokio, stopped by Ctrl-C,
//! SIGTERM or `--for`, with its summary printed.

use std::path::Path;

use pedf_runtime::ems::run_and_serve;
use pedf_runtime::run::RunConfig;

use crate::UserError;

pub async fn shutdown_signal(for_seconds: Option<f64>, who: &str) {
    let timer = async {
        match for_seconds {
            Some(s) => tokio::time::sleep(std::time::Duration::from_secs_f64(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("{who}: Ctrl-C, stopping"),
        _ = term => eprintln!("{who}: SIGTERM, stopping"),
        _ = timer => {}
    }
}

/// `--for`: a positive number of seconds.
fn check_for(for_seconds: Option<f64>) -> Result<(), UserError> {
    match for_seconds {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(UserError(format!(
            "--for: {s} must be a positive number of seconds"
        ))),
        _ => Ok(()),
    }
}

/// The commands' tokio runtime: two worker threads.
fn runtime() -> Result<tokio::runtime::Runtime, UserError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UserError(format!("cannot start the runtime: {e}")))
}

/// `pedf run`: the runtime on a tokio runtime, stopped by Ctrl-C, SIGTERM or `--for`.
pub fn run_ems(config: &Path, for_seconds: Option<f64>) -> Result<(), UserError> {
    let cfg = RunConfig::load(config).map_err(UserError)?;
    check_for(for_seconds)?;
    let rt = runtime()?;
    let summary = rt.block_on(run_and_serve(
        cfg,
        shutdown_signal(for_seconds, "pedf run"),
        |line| println!("pedf run: {line}"),
    ));
    let s = summary.map_err(UserError)?;
    let safe = if s.not_made_safe.is_empty() {
        "every controllable device in its safe state".to_string()
    } else {
        format!(
            "not answering at shutdown (their own fail-safe applies): {}",
            s.not_made_safe.join(", ")
        )
    };
    println!(
        "pedf run stopped: {} cycles, {} samples stored, {} setpoints written, {} alarms; {safe}",
        s.cycles, s.samples, s.setpoints, s.alarms
    );
    Ok(())
}

/// `pedf fleet serve`: the fleet's hub on tokio, stopped by Ctrl-C, SIGTERM or `--for`.
pub fn serve_hub(config: &Path, for_seconds: Option<f64>) -> Result<(), UserError> {
    let cfg = pedf_runtime::fleet::hub::HubConfig::load(config).map_err(UserError)?;
    check_for(for_seconds)?;
    let rt = runtime()?;
    let said = rt
        .block_on(pedf_runtime::fleet::hub::serve(
            cfg,
            shutdown_signal(for_seconds, "pedf fleet serve"),
            |line| println!("pedf fleet serve: {line}"),
        ))
        .map_err(UserError)?;
    println!("pedf fleet serve: stopped; {said}");
    Ok(())
}

/// The arguments of `pedf fleet simulate`.
pub struct FleetSimArgs {
    pub parks: usize,
    pub url: String,
    pub dir: std::path::PathBuf,
    pub prefix: String,
    pub speed: f64,
    pub start: Option<String>,
    pub state_every: u64,
    pub drain: u64,
}

/// `pedf fleet simulate`: light simulated parks against a fleet's NATS servers.
pub fn simulate_fleet(a: FleetSimArgs, for_seconds: Option<f64>) -> Result<(), UserError> {
    check_for(for_seconds)?;
    if !(1..=3600).contains(&a.state_every) {
        return Err(UserError(format!(
            "--state-every {}: give 1 to 3600 seconds",
            a.state_every
        )));
    }
    if !a
        .prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || a.prefix.is_empty()
        || a.prefix.len() > 40
    {
        return Err(UserError(format!(
            "--prefix `{}`: give 1 to 40 letters, digits, `-` or `_`",
            a.prefix
        )));
    }
    let start = match &a.start {
        None => chrono::Utc::now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                UserError(format!(
                    "--start {t}: {e}; give a time with its offset, for example 2026-06-22T08:00:00+08:00"
                ))
            })?,
    };
    let rt = runtime()?;
    let s = rt
        .block_on(pedf_runtime::fleet::sim::run(
            pedf_runtime::fleet::sim::SimOptions {
                parks: a.parks,
                prefix: a.prefix,
                url: a.url,
                dir: a.dir,
                start,
                speed: a.speed,
                state_every_s: a.state_every,
                drain_s: a.drain,
            },
            shutdown_signal(for_seconds, "pedf fleet simulate"),
            |line| println!("pedf fleet simulate: {line}"),
        ))
        .map_err(UserError)?;
    println!(
        "pedf fleet simulate: stopped; the parks closed {} records, wrote {} events, made {} plans active{}",
        s.records,
        s.events,
        s.plans,
        if s.behind.is_empty() {
            "; the hub acknowledged all of it".to_string()
        } else {
            format!(
                "; {} parks had not sent all of it (kept in their stores, sent at the next start): {}",
                s.behind.len(),
                s.behind.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        }
    );
    Ok(())
}

/// `pedf fleet add-park`: a park's NATS user, its seed written (owner only), the servers'
/// entry printed.
pub fn add_park(park: &str, dir: &Path) -> Result<(), UserError> {
    let (seed, entry) = pedf_runtime::fleet::new_park_user(park).map_err(UserError)?;
    pedf_store::create_private_dir(dir)
        .map_err(|e| UserError(format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!("{park}.nk"));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&path).map_err(|e| {
        UserError(format!(
            "{}: {e}{}",
            path.display(),
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (a park's key is not replaced: remove the file first if it is to be made anew)"
            } else {
                ""
            }
        ))
    })?;
    std::io::Write::write_all(&mut f, format!("{seed}\n").as_bytes())
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    println!(
        "{}: the park's NATS key (keep it secret; name it in the run file's [fleet] nkey_seed)",
        path.display()
    );
    println!("add to the NATS servers' authorization {{ users: [...] }}:");
    println!("{entry}");
    Ok(())
}
