//! `pedf run`: the runtime on tokio and, when the run file has a `[server]` table, the HTTP
//! server (API, live stream, metrics, dashboard) beside it, with planning and carbon
//! accounting wired in from the rest of pedf.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use pedf_core::live::Mode;
use pedf_core::Park;
use pedf_dispatch::{plan_optimized, CurrentState, PlanOptions};
use pedf_runtime::live::Live;
use pedf_runtime::run::{run_with, RunConfig, RunIo};
use pedf_server::{AppState, Services};
use pedf_store::Store;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{carbon_cmd, certificate_cmd, plan_cmd, UserError};

/// Planning and carbon accounting for the server, from the run's files and store.
struct EmsServices {
    park: Park,
    store: PathBuf,
    plan_inputs: Option<PathBuf>,
    factors: PathBuf,
    certificates: PathBuf,
    issuer_key: PathBuf,
    /// The EMS's clock: certificates issued through the API are stamped with its time.
    time: pedf_core::time::TimeSource,
}

impl EmsServices {
    /// The period's setup from the store's interval records.
    fn setup(&self, from: &str, to: &str) -> Result<carbon_cmd::PeriodSetup, String> {
        let store = Store::open(&self.store).map_err(|e| e.to_string())?;
        let (f, t) = match (
            pedf_core::time::parse_rfc3339(from),
            pedf_core::time::parse_rfc3339(to),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            _ => {
                return Err(format!(
                    "from/to: `{from}` .. `{to}`: write dates YYYY-MM-DD or RFC 3339 times with an offset"
                ))
            }
        };
        let records: Vec<_> = store
            .records(f, t)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        carbon_cmd::prepare_with(
            self.park.clone(),
            records,
            from,
            to,
            &self.factors,
            "auto",
            0.0,
        )
        .map_err(|e| e.0.replace("--from", "from").replace("--to", "to"))
    }
}

/// A date (local midnight of the park) or an RFC 3339 instant, as RFC 3339.
fn instant_text(park: &Park, text: &str) -> String {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => park
            .clock
            .local(park.clock.start_of_local_day(d))
            .to_rfc3339(),
        Err(_) => text.to_string(),
    }
}

impl Services for EmsServices {
    fn plan_day(&self, date: NaiveDate) -> Result<(String, String), String> {
        let dir = self.plan_inputs.as_ref().ok_or(
            "planning needs the day-input folder: set [server] plan_inputs in the run file",
        )?;
        let inputs = plan_cmd::load_inputs(&self.park, &dir.join(date.to_string()), date, 1)
            .or_else(|_| plan_cmd::load_inputs(&self.park, dir, date, 1))
            .map_err(|e| e.0)?;
        let opts = PlanOptions::default();
        let state = CurrentState::default();
        // The optimiser falls back to the rule-based plan itself when HiGHS fails (its
        // strategy says so); an error here is in the inputs, which no planner can use.
        let plan = plan_optimized(&self.park, &inputs, &opts, &state)
            .map_err(|e| format!("planning failed: {e}"))?;
        let strategy = match plan.strategy {
            pedf_core::plan::Strategy::Optimized => "optimized".to_string(),
            pedf_core::plan::Strategy::Rule => format!(
                "rule, fallback: {}",
                plan.notes
                    .iter()
                    .find(|n| n.contains("optimiser failed"))
                    .map_or("the optimiser gave the rule-based plan", String::as_str)
            ),
        };
        let json = serde_json::to_string(&plan).map_err(|e| e.to_string())?;
        Ok((strategy, json))
    }

    fn carbon(&self, from: &str, to: &str) -> Result<Value, String> {
        let (from, to) = (instant_text(&self.park, from), instant_text(&self.park, to));
        let setup = self.setup(&from, &to)?;
        let a = pedf_carbon::account::account(&setup.records, setup.from, setup.to, &setup.options);
        let tt = &a.totals;
        Ok(json!({
            "from": from, "to": to,
            "factor": setup.choice.location.describe(),
            "baseline": setup.choice.baseline_text,
            "notes": setup.choice.notes,
            "measured_intervals": tt.intervals - tt.estimated_intervals,
            "estimated_intervals": tt.estimated_intervals,
            "totals": {
                "pv_kwh": tt.pv_kwh, "grid_import_kwh": tt.grid_import_kwh,
                "grid_export_kwh": tt.grid_export_kwh, "consumption_kwh": tt.consumption_kwh,
                "location_kg": tt.location_kg, "market_kg": tt.market_kg,
                "avoided_pv_kg": tt.avoided_pv_kg, "shifting_kg": tt.shifting_kg,
                "park_intensity_kg_per_kwh": tt.park_intensity,
                "self_sufficiency": tt.self_sufficiency, "self_consumption": tt.self_consumption,
                "cfe_score": tt.cfe_score,
            }
        }))
    }

    fn issue_certificate(&self, from: &str, to: &str, by: &str) -> Result<Value, String> {
        let (from, to) = (instant_text(&self.park, from), instant_text(&self.park, to));
        let setup = self.setup(&from, &to)?;
        let i = certificate_cmd::issue_prepared(
            setup,
            "the EMS store's interval records",
            certificate_cmd::IssueFiles {
                out_dir: &self.certificates,
                key: &self.issuer_key,
                ledger: None,
            },
            Vec::new(),
            self.time.now(),
        )
        .map_err(|e| e.0)?;
        tracing::info!(serial = %i.cert.serial, by, "certificate issued from the API");
        let f = &i.cert.figures;
        Ok(json!({
            "id": i.cert.serial,
            "from": i.cert.period.from,
            "to": i.cert.period.to,
            "stated_t": f.stated_reductions_t,
            "emission_reductions_t": f.emission_reductions_t,
            "scope2_location_based_t": f.scope2_location_based_t,
            "intervals_recorded": i.cert.data_quality.intervals_recorded,
            "intervals_expected": i.cert.data_quality.intervals_expected,
            "pdf": i.pdf_error.is_none(),
            "issuer_public_key": i.cert.issuer.public_key,
            "ledger_seq": i.ledger_seq,
        }))
    }

    fn certificate_file(&self, id: &str, kind: &str) -> Result<Vec<u8>, String> {
        // The id is checked by the server (letters, digits, - and _ only).
        let p = self.certificates.join(format!("{id}.{kind}"));
        std::fs::read(&p).map_err(|_| format!("no {kind} of certificate {id}"))
    }
}

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

fn load_park(path: &Path) -> Result<Park, UserError> {
    plan_cmd::load_park_file(path)
}

/// The runtime with its server (when the run file has one) until `shutdown`; `who` prefixes
/// the console lines (`pedf run`, `pedf demo`).
pub async fn run_and_serve(
    cfg: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
    who: &str,
) -> Result<pedf_runtime::run::RunSummary, UserError> {
    let mut io = RunIo::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server = None;
    if let Some(srv) = cfg.server.clone() {
        let park = load_park(&cfg.park)?;
        if let Some(dir) = cfg.store.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| UserError(format!("{}: {e}", dir.display())))?;
        }
        let mut store = Store::open(&cfg.store).map_err(|e| UserError(e.to_string()))?;
        if let Some(token) =
            pedf_server::auth::ensure_admin_token(&mut store, cfg.time.now()).map_err(UserError)?
        {
            println!("{who}: first start: admin token (shown once, keep it safe): {token}");
        }
        let (live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
        let (mode_tx, mode_rx) = watch::channel(Mode::Automatic);
        io.live = Some(live_tx);
        io.mode = Some(mode_rx);
        let (orders_tx, orders_rx) = tokio::sync::mpsc::channel(64);
        io.orders = Some(orders_rx);
        let services = EmsServices {
            park: park.clone(),
            store: cfg.store.clone(),
            plan_inputs: srv.plan_inputs.clone(),
            factors: srv.emission_factors.clone(),
            certificates: srv.certificates_dir.clone().unwrap_or_default(),
            issuer_key: srv.issuer_key.clone().unwrap_or_default(),
            time: cfg.time,
        };
        let state = AppState::new(
            park,
            live_rx,
            mode_tx,
            store,
            Some(Box::new(services)),
            stop_rx.clone(),
        )
        .with_time(cfg.time)
        .with_orders(orders_tx);
        let tls = match (&srv.tls_cert, &srv.tls_key) {
            (Some(c), Some(k)) => Some(pedf_server::tls_config(c, k).map_err(UserError)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(&srv.listen)
            .await
            .map_err(|e| UserError(format!("[server] listen = {}: {e}", srv.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| UserError(e.to_string()))?;
        server = Some(match tls {
            Some(tls) => {
                println!("{who}: dashboard and API at https://{addr}/");
                tokio::spawn(pedf_server::serve_tls(
                    listener,
                    state.with_secure_cookie(),
                    tls,
                    stop_rx.clone(),
                ))
            }
            None => {
                println!("{who}: dashboard and API at http://{addr}/");
                tokio::spawn(pedf_server::serve(listener, state, stop_rx.clone()))
            }
        });
    }
    let r = run_with(cfg, io, shutdown).await.map_err(UserError);
    let _ = stop_tx.send(true);
    if let Some(s) = server {
        match tokio::time::timeout(std::time::Duration::from_secs(5), s).await {
            Ok(Ok(Err(e))) => eprintln!("{who}: server: {e}"),
            Err(_) => eprintln!("{who}: server did not stop within 5 s"),
            _ => {}
        }
    }
    r
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
        "pedf run",
    ));
    let s = summary?;
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
