//! `pedf`: the command line of the pedf energy and carbon management system.
//!
//! This file only parses arguments, sets up logging and calls into the library crates; it
//! decides how results and errors are shown and which exit code is returned:
//! 0 on success, 1 on a user error (the message names the file, field or argument), never a
//! panic or a backtrace.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pedf_core::config::Diagnostic;

use check_cmd::check;
use cli::{
    CarbonCommand, CertificateCommand, Cli, Command, FleetCommand, FleetTokenCommand,
    ForecastCommand, TokenCommand,
};
use pedf_dispatch::{PlanOptions, TerminalSoc, MAX_TIME_LIMIT_S};

mod carbon_cmd;
mod certificate_cmd;
mod check_cmd;
mod cli;
mod demo_cmd;
mod forecast_cmd;
mod plan_cmd;
mod run_cmd;
mod simulate_cmd;
mod token_cmd;

/// An error the user can fix; printed as `error: ...` with exit code 1.
#[derive(Debug)]
pub struct UserError(pub String);

/// Prints diagnostics to stderr, one located line and a hint each.
pub fn print_diagnostics(ds: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in ds {
        let _ = writeln!(err, "{d}");
    }
}

/// Loads the system font plots use for their text (DejaVu Sans, Debian fonts-dejavu-core).
fn load_plot_font() -> Result<(), UserError> {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    for c in CANDIDATES {
        if let Ok(bytes) = std::fs::read(c) {
            // Registered once for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return pedf_report::use_font(bytes).map_err(|e| UserError(format!("{c}: {e}")));
        }
    }
    Err(UserError(
        "plots need the DejaVu Sans font (Debian package fonts-dejavu-core; scripts/setup installs it)".into(),
    ))
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
        Command::Plan {
            park,
            inputs,
            date,
            format,
            out,
            plot,
            out_dir,
            strategy,
            mip_gap,
            time_limit,
            threads,
            no_mip,
            terminal_soc,
            records_out,
            days,
            month_peak,
            records,
        } => {
            let result = plan_options(mip_gap, time_limit, threads, no_mip, &terminal_soc)
                .and_then(|options| {
                    let needs_font = format.is_none() || plot.is_some();
                    if needs_font {
                        load_plot_font()?;
                    }
                    plan_cmd::run(plan_cmd::PlanArgs {
                        park,
                        inputs,
                        date,
                        format,
                        out,
                        plot,
                        out_dir,
                        strategy,
                        options,
                        records_out,
                        days,
                        month_peak_kw: month_peak,
                        records,
                    })
                });
            report(result)
        }
        Command::Forecast(ForecastCommand::Pv {
            park,
            date,
            days,
            weather,
            history,
            linke_turbidity,
            transposition,
            mounting,
            format,
            out,
        }) => report(forecast_cmd::run(forecast_cmd::PvArgs {
            park,
            date,
            days,
            weather,
            history,
            linke_turbidity,
            transposition,
            mounting,
            format,
            out,
        })),
        Command::Carbon(CarbonCommand::Report {
            park,
            records,
            from,
            to,
            factors,
            hourly_factors,
            covered_mwh,
            baseline,
            format,
            out,
            sessions,
        }) => report(carbon_cmd::run(carbon_cmd::ReportArgs {
            park,
            records,
            from,
            to,
            factors,
            hourly_factors,
            covered_mwh,
            baseline,
            format,
            out,
            sessions,
        })),
        Command::Run {
            config,
            for_seconds,
        } => report(run_cmd::run_ems(&config, for_seconds)),
        Command::Fleet(FleetCommand::Serve {
            config,
            for_seconds,
        }) => report(run_cmd::serve_hub(&config, for_seconds)),
        Command::Fleet(FleetCommand::Token(FleetTokenCommand::List { config })) => {
            report(token_cmd::hub_list(&config))
        }
        Command::Fleet(FleetCommand::Token(FleetTokenCommand::Create {
            config,
            role,
            label,
        })) => report(token_cmd::hub_create(&config, &role, &label)),
        Command::Fleet(FleetCommand::Token(FleetTokenCommand::Revoke { config, id })) => {
            report(token_cmd::hub_revoke(&config, id))
        }
        Command::Fleet(FleetCommand::AddPark { park, dir }) => {
            report(run_cmd::add_park(&park, &dir))
        }
        Command::Fleet(FleetCommand::Simulate {
            parks,
            url,
            dir,
            prefix,
            speed,
            start,
            state_every,
            drain,
            for_seconds,
        }) => report(run_cmd::simulate_fleet(
            run_cmd::FleetSimArgs {
                parks,
                url,
                dir,
                prefix,
                speed,
                start,
                state_every,
                drain,
            },
            for_seconds,
        )),
        Command::Demo {
            scenario,
            listen,
            modbus_port,
            mqtt_port,
            mqtt,
            ocpp_port,
            meter_port,
            iec104_port,
            speed,
            start,
            dir,
            for_seconds,
        } => report(demo_cmd::run(demo_cmd::DemoArgs {
            scenario,
            listen,
            modbus_port,
            ocpp_port,
            meter_port,
            iec104_port,
            mqtt,
            mqtt_port,
            speed,
            start,
            dir,
            for_seconds,
        })),
        Command::Simulate {
            scenario,
            days,
            strategy,
            out_dir,
            seed,
            requests,
            quiet,
        } => report(simulate_cmd::run(simulate_cmd::SimulateArgs {
            scenario,
            days,
            strategy,
            out_dir,
            seed,
            requests,
            progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })),
        Command::Certificate(CertificateCommand::Issue {
            park,
            records,
            from,
            to,
            month,
            green_certificates,
            meter_intervals,
            factors,
            covered_mwh,
            baseline,
            out_dir,
            key,
            ledger,
            min_coverage,
        }) => report(certificate_cmd::issue(certificate_cmd::IssueArgs {
            park,
            records,
            from,
            to,
            month,
            green_certificates,
            meter_intervals,
            factors,
            covered_mwh,
            baseline,
            out_dir,
            key,
            ledger,
            min_coverage,
        })),
        Command::Certificate(CertificateCommand::Verify {
            file,
            data,
            ledger,
            public_key,
            trusted_keys,
            meter_intervals,
        }) => report(certificate_cmd::verify(certificate_cmd::VerifyArgs {
            file,
            data,
            meter_intervals,
            ledger,
            public_key,
            trusted_keys,
        })),
        Command::Certificate(CertificateCommand::Render { file, out_dir }) => {
            report(certificate_cmd::render(&file, out_dir.as_deref()))
        }
        Command::Token(TokenCommand::List { config }) => report(token_cmd::list(&config)),
        Command::Token(TokenCommand::Create {
            config,
            role,
            label,
            expires_days,
        }) => report(token_cmd::create(&config, &role, &label, expires_days)),
        Command::Token(TokenCommand::Revoke { config, id }) => {
            report(token_cmd::revoke(&config, id))
        }
        Command::Forecast(ForecastCommand::Load { common, history }) => {
            report(forecast_cmd::run_load(common.with(history)))
        }
        Command::Forecast(ForecastCommand::Ev { common, sessions }) => {
            report(forecast_cmd::run_ev(common.with(sessions)))
        }
    }
}

fn report(result: Result<(), UserError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(UserError(message)) => {
            let _ = writeln!(std::io::stderr().lock(), "error: {message}");
            ExitCode::from(1)
        }
    }
}

fn plan_options(
    mip_gap: f64,
    time_limit: f64,
    threads: Option<u32>,
    no_mip: bool,
    terminal: &str,
) -> Result<PlanOptions, UserError> {
    if !(mip_gap.is_finite() && (0.0..1.0).contains(&mip_gap)) {
        return Err(UserError(format!(
            "--mip-gap: {mip_gap} is outside [0, 1); e.g. 1e-4"
        )));
    }
    if !(time_limit.is_finite() && time_limit > 0.0 && time_limit <= MAX_TIME_LIMIT_S) {
        return Err(UserError(format!(
            "--time-limit: {time_limit} must be a number of seconds above 0 and at most {MAX_TIME_LIMIT_S} (an hour), e.g. 5"
        )));
    }
    if threads == Some(0) {
        return Err(UserError("--threads: must be at least 1".into()));
    }
    let terminal_soc = match terminal {
        "initial" => TerminalSoc::AtLeastInitial,
        "free" => TerminalSoc::Free,
        other => match other.parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => TerminalSoc::AtLeast(f),
            _ => {
                return Err(UserError(format!(
                    "--terminal-soc: `{other}` is not \"initial\", \"free\" or a fraction 0-1"
                )))
            }
        },
    };
    Ok(PlanOptions {
        mip: !no_mip,
        mip_gap,
        time_limit_s: time_limit,
        threads,
        terminal_soc,
        ..PlanOptions::default()
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // The embedded broker (pedf demo) logs every client that drops as an error; it is quiet
        // unless asked for.
        0 => "warn,highs=error,rumqttd=off",
        1 => "info,rumqttd=warn",
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
