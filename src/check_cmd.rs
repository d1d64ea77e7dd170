//! `pedf check FILE...`: tells park files, run files, device lists, device templates and
//! scenarios apart and has each checked where its type lives (pedf-core, pedf-runtime,
//! pedf-devices, pedf-sim); prints what each found.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use pedf_core::config::{load_park, Diagnostic, Severity};

use crate::print_diagnostics;

/// Checks every file; exit code 1 when any has an error.
pub fn check(files: &[PathBuf], quiet: bool) -> ExitCode {
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for path in files {
        let name = path.display().to_string();
        tracing::info!(file = %name, "checking");
        if path.is_dir() && path.join("scenario.toml").is_file() {
            failed += usize::from(!check_scenario(path));
            continue;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let why = if path.is_dir() {
                    "is a directory without a scenario.toml; give a park, run, device or scenario file".to_string()
                } else {
                    e.to_string()
                };
                let _ = writeln!(stderr.lock(), "{name}: error: cannot read: {why}");
                failed += 1;
                continue;
            }
        };
        if pedf_sim::scenario::is_scenario_text(&String::from_utf8_lossy(&bytes)) {
            failed += usize::from(!check_scenario(path));
            continue;
        }
        if let Some(ok) = check_device_file(path, &bytes) {
            failed += usize::from(!ok);
            continue;
        }
        if let Some(ok) = check_hub_file(path, &bytes) {
            failed += usize::from(!ok);
            continue;
        }
        if let Some(ok) = check_run_file(path, &bytes) {
            failed += usize::from(!ok);
            continue;
        }
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

/// Checks a device list (`[[device]]`/`[[connection]]` tables, templates from `templates/`
/// beside it) or a device template (`[template]`); `None` when the file is neither.
/// A scenario folder (or its scenario.toml): every file it names, each problem located.
fn check_scenario(path: &std::path::Path) -> bool {
    match pedf_sim::scenario::Scenario::load(path) {
        Ok(s) => {
            println!(
                "{}: scenario is valid (\"{}\", park {}, from {}, seed {}, {} EV groups)",
                s.file.display(),
                s.name,
                s.park_file.display(),
                s.start,
                s.seed,
                s.ev_groups.len()
            );
            true
        }
        Err(ds) => {
            print_diagnostics(&ds);
            eprintln!("{}: {} error(s) in the scenario", path.display(), ds.len());
            false
        }
    }
}

/// A fleet hub file (`pedf fleet serve --config`): its top-level keys name NATS servers and
/// an address to listen on, and no park.
fn check_hub_file(path: &std::path::Path, bytes: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(bytes);
    let top: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    if !(top.contains(&"url") && top.contains(&"listen") && !top.contains(&"park")) {
        return None;
    }
    match pedf_runtime::fleet::hub::HubConfig::load(path) {
        Ok(c) => {
            println!(
                "{}: fleet hub file is valid (NATS {}, store {}, listening on {}{})",
                path.display(),
                c.url,
                c.store.display(),
                c.listen,
                c.influx
                    .as_ref()
                    .map(|i| format!(", time series to {}", i.url))
                    .unwrap_or_default()
            );
            Some(true)
        }
        Err(e) => {
            eprintln!("{e}");
            Some(false)
        }
    }
}

/// A run file (`pedf run --config`): pedf-runtime checks it as `pedf run` starts from it.
fn check_run_file(path: &std::path::Path, bytes: &[u8]) -> Option<bool> {
    if !pedf_runtime::config::is_run_file_text(&String::from_utf8_lossy(bytes)) {
        return None;
    }
    let check = pedf_runtime::config::check_run_file(path);
    for m in &check.messages {
        eprintln!("{m}");
    }
    if check.valid {
        println!("{}", check.summary);
    }
    Some(check.valid)
}

fn check_device_file(path: &std::path::Path, bytes: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(bytes);
    let has = |h: &str| text.lines().any(|l| l.trim_start().starts_with(h));
    let name = path.display().to_string();
    let result = if has("[[device]]") || has("[[connection]]") {
        pedf_devices::template::load_device_set(path).map(|set| {
            format!(
                "{name}: device list is valid ({} devices on {} connections, {} templates)",
                set.devices.devices.len(),
                set.devices.connections.len(),
                set.templates.len()
            )
        })
    } else if has("[template]") {
        pedf_devices::template::Template::parse(&name, &text).map(|t| {
            format!(
                "{name}: template `{}` ({}) is valid",
                t.template.name,
                t.template.capability.name()
            )
        })
    } else {
        return None;
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            Some(true)
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for e in &errors {
                let _ = writeln!(
                    err,
                    "{}:{}:{}: error: {}",
                    e.file, e.line, e.column, e.message
                );
            }
            let _ = writeln!(err, "{name}: {} error(s)", errors.len());
            Some(false)
        }
    }
}

fn count(ds: &[Diagnostic]) -> (usize, usize) {
    let errors = ds.iter().filter(|d| d.severity == Severity::Error).count();
    (errors, ds.len() - errors)
}
