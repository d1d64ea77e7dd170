//! `pedf`: the command line of the pedf energy and carbon management system.
//!
//! This file only parses arguments, sets up logging and calls into the library crates; it
//! decides how results and errors are shown and which exit code is returned:
//! 0 on success, 1 on a user error (the message names the file, field or argument), never a
//! panic or a backtrace.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use pedf_core::config::{load_park, Diagnostic, Severity};

/// Energy and carbon management for zero-carbon PEDF (光储直柔) parks.
#[derive(Debug, Parser)]
#[command(
    name = "pedf",
    version,
    about = "Energy and carbon management for zero-carbon PV-storage-DC-flexibility (光储直柔) parks",
    after_help = "Example:\n  pedf check config/qingzhou-pedf.toml\n\nLogging: -v for info, -vv for debug, or RUST_LOG=pedf=debug."
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate park files: every problem as file:line:col with a hint; exit 1 when any.
    #[command(
        after_help = "Examples:\n  pedf check config/qingzhou-pedf.toml\n  pedf check config/*.toml\n\nA valid park prints a one-screen summary of its assets, capacities and tariff periods.\nWarnings (e.g. an unverified emission factor) are printed but do not fail the check."
    )]
    Check {
        /// Park files (TOML) to validate.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print only the problems, not the summary of valid parks.
        #[arg(short, long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are successes; every other argument error is a user error (1).
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Check { files, quiet } => check(&files, quiet),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `pedf check`: reads every file, prints every diagnostic, then the summary of valid parks.
fn check(files: &[PathBuf], quiet: bool) -> ExitCode {
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for path in files {
        let name = path.display().to_string();
        tracing::info!(file = %name, "checking");
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let why = if path.is_dir() {
                    "is a directory; give the park file inside it".to_string()
                } else {
                    e.to_string()
                };
                let _ = writeln!(stderr.lock(), "{name}: error: cannot read: {why}");
                failed += 1;
                continue;
            }
        };
        let loaded = load_park(&name, &bytes);
        let (errors, warnings) = count(&loaded.diagnostics);
        {
            let mut err = stderr.lock();
            for d in &loaded.diagnostics {
                let _ = writeln!(err, "{d}");
            }
        }
        match &loaded.value {
            Some(park) => {
                let mut out = stdout.lock();
                let note = if warnings > 0 {
                    format!(" ({warnings} warning(s))")
                } else {
                    String::new()
                };
                let _ = writeln!(out, "{name}: park is valid{note}");
                if !quiet {
                    let _ = writeln!(out, "{}", park.summary());
                }
            }
            None => {
                failed += 1;
                let _ = writeln!(
                    stderr.lock(),
                    "{name}: {errors} error(s), {warnings} warning(s)"
                );
            }
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn count(ds: &[Diagnostic]) -> (usize, usize) {
    let errors = ds.iter().filter(|d| d.severity == Severity::Error).count();
    (errors, ds.len() - errors)
}
