//! `pedf demo`: the reference park simulated on loopback (Modbus and MQTT devices driven by the
//! physics), its own MQTT broker, the EMS with intraday re-planning, and the dashboard. One
//! command, no outside service; Ctrl-C leaves every device in its safe state and stops.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pedf_runtime::run::RunConfig;
use pedf_sim::demo::{DemoOptions, DemoPark};
use pedf_sim::scenario::Scenario;
use pedf_sim::world::World;

use crate::UserError;

/// The demo station's IEC 104 point map (`iec104-points.toml` in the demo's folder).
const IEC104_POINTS: &str =
    "# Written by `pedf demo`: the park's IEC 60870-5-104 points (information object addresses).
# Measured values (short floats, time tagged; sent on a change past the deadband), kW or %.
[[measurement]]
name = \"grid_kw\"
ioa = 1001
deadband = 5
[[measurement]]
name = \"pv_kw\"
ioa = 1002
deadband = 5
[[measurement]]
name = \"battery_kw\"
ioa = 1003
deadband = 5
[[measurement]]
name = \"soc_pct\"
ioa = 1004
deadband = 0.5
[[measurement]]
name = \"load_kw\"
ioa = 1005
deadband = 5
[[measurement]]
name = \"ev_kw\"
ioa = 1006
deadband = 5
[[measurement]]
name = \"flex_up_kw\"
ioa = 1007
deadband = 10
[[measurement]]
name = \"flex_down_kw\"
ioa = 1008
deadband = 10
[[measurement]]
name = \"import_limit_kw\"
ioa = 1009
[[measurement]]
name = \"export_limit_kw\"
ioa = 1010
[[measurement]]
name = \"limit_minutes\"
ioa = 1011
[[measurement]]
name = \"power_target_kw\"
ioa = 1012
# Single points.
[[single]]
name = \"safe_state\"
ioa = 2001
[[single]]
name = \"alarm\"
ioa = 2002
[[single]]
name = \"automatic\"
ioa = 2003
[[single]]
name = \"grid_limit_active\"
ioa = 2004
# Setpoints (short floats, kW), selected before they are executed; limit_minutes: how long the
# limits set next hold (0: until released); power_target_kw: the power at the connection
# (+import: at most; -export: at least and at most; the import limit releases it).
[[setpoint]]
name = \"import_limit_kw\"
ioa = 3001
select_before_operate = true
[[setpoint]]
name = \"export_limit_kw\"
ioa = 3002
select_before_operate = true
[[setpoint]]
name = \"limit_minutes\"
ioa = 3003
select_before_operate = true
[[setpoint]]
name = \"power_target_kw\"
ioa = 3004
select_before_operate = true
";

pub struct DemoArgs {
    pub scenario: Option<PathBuf>,
    pub listen: String,
    pub modbus_port: u16,
    pub ocpp_port: u16,
    pub meter_port: u16,
    pub iec104_port: u16,
    pub mqtt: Option<String>,
    pub mqtt_port: u16,
    pub speed: f64,
    /// `--start` as given (RFC 3339), or none: now.
    pub start: Option<String>,
    pub dir: PathBuf,
    pub for_seconds: Option<f64>,
}

/// The reference scenario and what the demo needs besides, built into the binary (paths as in
/// the repository, so the scenario's relative park path holds): `pedf demo` runs from any
/// folder and from an installed binary.
const REFERENCE: &[(&str, &str)] = &[
    (
        "simulations/qingzhou-pedf/scenario.toml",
        include_str!("../simulations/qingzhou-pedf/scenario.toml"),
    ),
    (
        "simulations/qingzhou-pedf/climate.csv",
        include_str!("../simulations/qingzhou-pedf/climate.csv"),
    ),
    (
        "simulations/qingzhou-pedf/load-profiles.csv",
        include_str!("../simulations/qingzhou-pedf/load-profiles.csv"),
    ),
    (
        "config/qingzhou-pedf.toml",
        include_str!("../config/qingzhou-pedf.toml"),
    ),
    (
        "config/devices/templates/pedf-sim-meter.toml",
        include_str!("../config/devices/templates/pedf-sim-meter.toml"),
    ),
    (
        "config/devices/templates/pedf-sim-dc-charger.toml",
        include_str!("../config/devices/templates/pedf-sim-dc-charger.toml"),
    ),
    (
        "config/devices/templates/pedf-sim-dc-load.toml",
        include_str!("../config/devices/templates/pedf-sim-dc-load.toml"),
    ),
    (
        "config/emission-factors/china-grid.toml",
        include_str!("../config/emission-factors/china-grid.toml"),
    ),
];

/// Plans `day` from the day inputs in `inputs` and stores the plan, active, in the new store
/// `store` (labelled as a plan made ahead, as the runtime labels the next day's), made at
/// `made` (the demo's start on its clock).
fn day_ahead_plan(
    park: &pedf_core::Park,
    inputs: &Path,
    day: chrono::NaiveDate,
    store: &Path,
    made: DateTime<Utc>,
) -> Result<(), UserError> {
    let days = pedf_core::inputs::load_days_inputs_from_dir(park, inputs, day, 1)
        .map_err(|e| UserError(format!("the demo's day inputs for {day}: {e}")))?;
    let plan = pedf_dispatch::plan_optimized(
        park,
        &days,
        &pedf_dispatch::PlanOptions::default(),
        &pedf_dispatch::CurrentState::default(),
    )
    .map_err(|e| UserError(format!("the demo's day-ahead plan for {day}: {e}")))?;
    let json = serde_json::to_string(&plan).map_err(|e| UserError(e.to_string()))?;
    let mut st = pedf_store::Store::open(store).map_err(|e| UserError(e.to_string()))?;
    let id = st
        .put_plan(made, &day.to_string(), "optimized, day ahead", &json)
        .map_err(|e| UserError(e.to_string()))?;
    st.activate_plan(id).map_err(|e| UserError(e.to_string()))
}

/// Writes the built-in reference files under `root` (replacing what an earlier start wrote).
fn write_reference(root: &Path) -> Result<(), UserError> {
    for (rel, text) in REFERENCE {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| UserError(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn abs(p: &Path) -> Result<PathBuf, UserError> {
    std::path::absolute(p).map_err(|e| UserError(format!("{}: {e}", p.display())))
}

/// Writes the day inputs the EMS plans from (forecast PV and loads of the demo's world, the
/// sessions drivers booked, the grid's carbon signal), in the planner's formats.
fn write_day_inputs(w: &World, s: &Scenario, dir: &Path) -> Result<(), UserError> {
    std::fs::create_dir_all(dir).map_err(|e| UserError(format!("{}: {e}", dir.display())))?;
    let clock = &s.park.clock;
    let table = |m: &std::collections::BTreeMap<String, Vec<f64>>, what: &str| {
        let mut t = format!(
            "# {what}, kW, interval mean: the demo's day-ahead forecast (pedf demo).\nstart"
        );
        for k in m.keys() {
            t += &format!(",{k}");
        }
        t.push('\n');
        for (i, start) in w.starts.iter().enumerate() {
            t += &clock.format(*start);
            for v in m.values() {
                let _ = write!(t, ",{:.3}", v[i]);
            }
            t.push('\n');
        }
        t
    };
    let put = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| UserError(format!("{}: {e}", dir.join(name).display())))
    };
    put("pv.csv", table(&w.pv_forecast, "PV available at the bus"))?;
    put("loads.csv", table(&w.load_forecast, "Demand"))?;
    let mut ci = String::from("# Grid carbon signal, kg CO2/kWh (scenario: annual factor x hourly shape).\nstart,kg_per_kwh\n");
    for (i, start) in w.starts.iter().enumerate() {
        let _ = writeln!(ci, "{},{:.4}", clock.format(*start), w.intensity[i]);
    }
    put("carbon-intensity.csv", ci)?;
    let mut ev = String::from("# EV sessions as drivers booked them (pedf demo).\nid,charger,arrival,departure,energy_kwh\n");
    for x in &w.sessions {
        let _ = writeln!(
            ev,
            "{},{},{},{},{:.1}",
            x.id,
            x.charger,
            clock.format(x.arrival),
            clock.format(x.departure),
            x.energy_kwh
        );
    }
    put("ev-sessions.csv", ev)
}

pub fn run(a: DemoArgs) -> Result<(), UserError> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| UserError(format!("--dir {}: {e}", a.dir.display())))?;
    let dir = abs(&a.dir)?;
    // The built-in files: the simulated devices' templates and the factors always, the
    // scenario unless --scenario gives another.
    let root = dir.join("reference");
    write_reference(&root)?;
    let scenario = a
        .scenario
        .clone()
        .unwrap_or_else(|| root.join("simulations/qingzhou-pedf"));
    let s = Scenario::load(&scenario).map_err(|ds| {
        crate::print_diagnostics(&ds);
        UserError(format!(
            "{}: {} error(s) in the scenario",
            scenario.display(),
            ds.len()
        ))
    })?;
    if !(a.speed.is_finite() && (0.1..=3600.0).contains(&a.speed)) {
        return Err(UserError(format!(
            "--speed {}: give 0.1..3600 (simulated seconds per second)",
            a.speed
        )));
    }
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        UserError(format!(
            "--listen {}: not an address such as 127.0.0.1:8080",
            a.listen
        ))
    })?;
    let templates = root.join("config/devices/templates");
    let (mqtt_host, mqtt_port, embedded) = match &a.mqtt {
        Some(hp) => {
            let (h, p) = hp
                .rsplit_once(':')
                .ok_or_else(|| UserError(format!("--mqtt {hp}: HOST:PORT")))?;
            (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| UserError(format!("--mqtt {hp}: bad port")))?,
                false,
            )
        }
        None => ("127.0.0.1".to_string(), a.mqtt_port, true),
    };
    if embedded {
        #[cfg(feature = "embedded-broker")]
        pedf_sim::embedded_broker::start(SocketAddr::from(([127, 0, 0, 1], mqtt_port)))
            .map_err(UserError)?;
        #[cfg(not(feature = "embedded-broker"))]
        return Err(UserError(
            "built without the embedded-broker feature: give --mqtt HOST:PORT of a running broker"
                .into(),
        ));
    }
    // The demo starts now (or at --start); the world and the day inputs cover that day and the
    // next days (at least 3, and about 8 hours of real time at the chosen speed; then the
    // park's world repeats and the EMS, without a forecast, raises its alarm).
    let start = match &a.start {
        None => Utc::now(),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                UserError(format!(
                    "--start {t}: {e}; give a time with its offset, for example 2026-06-22T18:50:00+08:00"
                ))
            })?,
    };
    let clock = pedf_core::time::TimeSource::scaled(start, a.speed);
    let days = ((a.speed / 3.0).ceil() as u32).clamp(3, 366);
    let today = s.park.clock.local(start).date_naive();
    let world = World::build(&s, today, days).map_err(UserError)?;
    let inputs = dir.join("day-inputs");
    write_day_inputs(&world, &s, &inputs)?;
    // A fresh store each start: the demo's history is its own.
    let store = dir.join("demo.sqlite");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", store.display()));
    }
    // A park runs on the day-ahead plan made the day before: the demo makes it (from the day's
    // inputs) before the EMS starts, so the first cycles follow a plan until the first intraday
    // re-plan replaces it, not the self-consumption fallback (which holds the import at the
    // reverse-flow margin, where a load's step can turn it into export).
    day_ahead_plan(&s.park, &inputs, today, &store, start)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UserError(format!("cannot start the runtime: {e}")))?;
    let factors = root.join("config/emission-factors/china-grid.toml");
    rt.block_on(async move {
        let opts = DemoOptions {
            modbus: SocketAddr::from(([127, 0, 0, 1], a.modbus_port)),
            mqtt_host: mqtt_host.clone(),
            mqtt_port,
            dir: dir.clone(),
            templates_dir: templates,
            clock,
            days,
            start,
            ocpp: SocketAddr::from(([127, 0, 0, 1], a.ocpp_port)),
            // Each start's own passwords (the chargers and the EMS are both the demo's).
            ocpp_secret: format!("demo-{:x}", start.timestamp_nanos_opt().unwrap_or_default()),
            meter: SocketAddr::from(([127, 0, 0, 1], a.meter_port)),
        };
        let demo = DemoPark::start(&s, &opts).await.map_err(UserError)?;
        let run_file = dir.join("run.toml");
        let q = |p: &Path| p.display().to_string().replace('\\', "/");
        let text = format!(
            "# Written by `pedf demo`.\npark = \"{}\"\ndevices = \"{}\"\nstore = \"{}\"\ncycle_ms = 1000\nretention_days = 1\nmqtt_client_id = \"pedf-demo-ems\"\ncommand_timeout_s = {timeout}\n\n[server]\nlisten = \"{listen}\"\nsimulated = \"the park simulated by pedf demo (physics of the reference scenario, not a real park's meters)\"\nplan_inputs = \"{}\"\nemission_factors = \"{}\"\n\n[replan]\ninputs = \"{}\"\nevery_min = 15\ndeviation_kw = 100\ndeviation_s = 60\ntime_limit_s = 5\n",
            q(&s.park_file.canonicalize().unwrap_or(s.park_file.clone())),
            q(&demo.devices_file),
            q(&store),
            q(&inputs),
            q(&factors),
            q(&inputs),
            // The watchdog's 10 s of real time, in simulated seconds.
            timeout = (10.0 * a.speed).ceil().max(10.0) as u64,
        );
        // The OCPP chargers: the central system on loopback, each charger with its password's
        // hash, a safe default of a fifth of its power (what it may draw with the EMS silent).
        let mut text = text;
        if !demo.ocpp_chargers.is_empty() {
            text += &format!(
                "\n[ocpp]\nlisten = \"127.0.0.1:{}\"\nid_tags = [\"DEMO-CAR\"]\n",
                a.ocpp_port
            );
            for c in &demo.ocpp_chargers {
                text += &format!(
                    "\n[[ocpp.charger]]\nidentity = \"{}\"\npassword_sha256 = \"{}\"\nunit = \"W\"\nsafe_kw = {:.1}\nconnectors = [{{ connector = 1, device = \"{}\" }}]\n",
                    c.identity,
                    pedf_devices::ocpp::password_hash(&c.password),
                    c.max_kw / 5.0,
                    c.device
                );
            }
        }
        // The park as an IEC 104 station for a master on this host: every value pedf reports,
        // the import and export limits as setpoints selected before they are executed.
        let points = dir.join("iec104-points.toml");
        std::fs::write(&points, IEC104_POINTS).map_err(|e| UserError(format!("{}: {e}", points.display())))?;
        text += &format!(
            "\n[iec104]\nlisten = \"127.0.0.1:{}\"\ncommon_address = 1\nmasters = [\"127.0.0.1\"]\npoints = \"iec104-points.toml\"\n",
            a.iec104_port
        );
        std::fs::write(&run_file, text).map_err(|e| UserError(format!("{}: {e}", run_file.display())))?;
        let mut cfg = RunConfig::load(&run_file).map_err(UserError)?;
        cfg.time = clock;
        println!(
            "pedf demo: {} ({}), simulated on loopback: Modbus {} (PV units 1-{}, battery 10, meter 20), MQTT {}:{}{}, OCPP chargers {} (1.6J, the last 2.0.1) to ws://127.0.0.1:{}/ocpp, the billing meter (DL/T 645-2007, address {}) at {}, the park's IEC 104 station at 127.0.0.1:{} (common address 1); park and EMS in simulated time at {}x real time",
            s.park.name,
            s.park.id,
            demo.modbus.addr,
            s.park.pv.len(),
            mqtt_host,
            mqtt_port,
            if embedded { " (embedded broker)" } else { "" },
            demo.ocpp_chargers.iter().map(|c| c.device.as_str()).collect::<Vec<_>>().join(", "),
            a.ocpp_port,
            pedf_sim::demo::BILLING_METER_ADDRESS,
            demo.billing.addr,
            a.iec104_port,
            a.speed
        );
        println!("pedf demo: files in {} (run.toml, devices.toml, day-inputs/, demo.sqlite, reference/: the built-in scenario, templates and factors, written at each start); Ctrl-C stops", dir.display());
        let summary = pedf_runtime::ems::run_and_serve(cfg, crate::run_cmd::shutdown_signal(a.for_seconds, "pedf demo"), |line| println!("pedf demo: {line}")).await.map_err(UserError)?;
        let now = demo.now.lock().map(|n| n.clone()).unwrap_or_default();
        drop(demo);
        println!(
            "pedf demo stopped: {} cycles, {} setpoints written, {} alarms; last: PV {:.0} kW, battery {:.0} kW at {:.1} %, loads {:.0} kW, EV {:.0} kW ({} cars), grid {:.0} kW",
            summary.cycles, summary.setpoints, summary.alarms, now.pv_kw, now.battery_kw, now.soc_pct, now.load_kw, now.ev_kw, now.cars, now.grid_kw
        );
        Ok(())
    })
}
