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

/// `pedf run`: the runtime on a tokio runtime, stopped by Ctrl-C, SIGTERM or `--for`.
pub fn run_ems(config: &Path, for_seconds: Option<f64>) -> Result<(), UserError> {
    let cfg = RunConfig::load(config).map_err(UserError)?;
    if let Some(s) = for_seconds {
        if !(s.is_finite() && s > 0.0) {
            return Err(UserError(format!(
                "--for: {s} must be a positive number of seconds"
            )));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UserError(format!("cannot start the runtime: {e}")))?;
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
    if let Some(s) = for_seconds {
        if !(s.is_finite() && s > 0.0) {
            return Err(UserError(format!(
                "--for: {s} must be a positive number of seconds"
            )));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UserError(format!("cannot start the runtime: {e}")))?;
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
