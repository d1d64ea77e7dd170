//! The command line's definitions (clap): every command, its arguments and their help.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use crate::forecast_cmd;

/// Energy and carbon management for zero-carbon PEDF (光储直柔) parks.
#[derive(Debug, Parser)]
#[command(
    name = "pedf",
    version,
    about = "Energy and carbon management for zero-carbon PV-storage-DC-flexibility (光储直柔) parks",
    after_help = "Examples:\n  pedf check config/qingzhou-pedf.toml\n  pedf plan --park config/qingzhou-pedf.toml --inputs simulations/qingzhou-pedf/day-inputs --date 2026-06-21\n  pedf forecast pv --park config/qingzhou-pedf.toml --date 2026-06-21\n\nLogging: -v for info, -vv for debug, or RUST_LOG=pedf_dispatch=debug."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Day-ahead dispatch plan: lowest cost and carbon within every limit of the park.
    #[command(
        after_help = "Examples:\n  pedf plan --park config/qingzhou-pedf.toml --inputs simulations/qingzhou-pedf/day-inputs --date 2026-06-21\n  pedf plan --park config/qingzhou-pedf.toml --inputs simulations/qingzhou-pedf/day-inputs --date 2026-06-21 --format json --out plan.json --plot plan.png\n  pedf plan --park config/qingzhou-pedf.toml --inputs simulations/qingzhou-pedf/day-inputs --date 2026-06-21 --days 2 --month-peak 850\n  pedf plan --park config/qingzhou-pedf.toml --inputs simulations/qingzhou-pedf/day-inputs --date 2026-06-21 --records month-so-far.csv\n\nThe demand charge is planned as the month's bill has it: importing up to --month-peak (or the\npark's demand_target_kw) adds nothing, a new peak costs the whole monthly rate.\nWithout --format: prints the summary and writes plan-DATE.json, .csv and .svg into --out-dir.\nThe inputs folder holds pv.csv and loads.csv, and optionally ev-sessions.csv,\ncarbon-intensity.csv and prices.csv (formats: simulations/qingzhou-pedf/day-inputs/README.md)."
    )]
    Plan {
        /// The park file.
        #[arg(long, value_name = "FILE")]
        park: PathBuf,
        /// Folder of day inputs.
        #[arg(long, value_name = "DIR")]
        inputs: PathBuf,
        /// The local day to plan, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// Output format for --out (or stdout): json, csv or table.
        #[arg(long, value_parser = ["json", "csv", "table"])]
        format: Option<String>,
        /// Where to write --format's output (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also draw the plan: a .svg or .png file.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Folder for plan-DATE.json/.csv/.svg when no --format is given.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
        /// optimized (MILP, falling back to the rules) or rule (the rule-based baseline).
        #[arg(long, default_value = "optimized", value_parser = ["optimized", "rule"])]
        strategy: String,
        /// Relative MIP gap at which the solver may stop.
        #[arg(long, default_value_t = 1e-4, value_name = "GAP")]
        mip_gap: f64,
        /// Solver time limit in seconds; the best plan found by then is used.
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        time_limit: f64,
        /// Solver threads (default: HiGHS decides).
        #[arg(long, value_name = "N")]
        threads: Option<u32>,
        /// Solve the LP relaxation only: no exclusivity binaries, no minimum powers.
        #[arg(long)]
        no_mip: bool,
        /// Battery at the end of the day: "initial" (at least the start), "free", or a fraction 0-1.
        #[arg(long, default_value = "initial", value_name = "SOC")]
        terminal_soc: String,
        /// Also write the plan's interval energy records (CSV) for `pedf carbon report`.
        #[arg(long, value_name = "FILE")]
        records_out: Option<PathBuf>,
        /// Local days to plan at once from --date (the input files must cover them).
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=31))]
        days: u32,
        /// The billing month's peak import so far, kW: up to it (or the park's demand target)
        /// importing adds nothing to the demand charge; above it the whole monthly rate.
        #[arg(long, default_value_t = 0.0, value_name = "KW", value_parser = parse_month_peak, allow_negative_numbers = true)]
        month_peak: f64,
        /// Interval records measured so far (CSV, `pedf carbon report`'s format): the month's
        /// peak, Scope 2, consumption and Scope 2 without the EMS, and the year's Scope 2, from
        /// the records before the plan's start. The month's peak is the larger of theirs and
        /// --month-peak.
        #[arg(long, value_name = "FILE")]
        records: Option<PathBuf>,
    },
    /// Forecasts for the planner's inputs.
    #[command(subcommand)]
    Forecast(ForecastCommand),
    /// Energy-carbon accounting.
    #[command(subcommand)]
    Carbon(CarbonCommand),
    /// Signed carbon-reduction certificates: issue and verify.
    #[command(subcommand)]
    Certificate(CertificateCommand),
    /// The EMS's API tokens: list, create, revoke (in the store the run file names).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The reference park simulated on loopback with the EMS and the dashboard: one command,
    /// no outside service.
    #[command(
        after_help = "Example:\n  pedf demo            (then open http://127.0.0.1:8080/ and log in with the printed token)\n  pedf demo --speed 60 (a simulated minute per second)\n\nStarts an MQTT broker in the process (rumqttd; or --mqtt HOST:PORT), the scenario's park as\nModbus TCP (SunSpec PV inverters and battery, grid meter) and MQTT devices (EV chargers, DC\nloads) driven by the simulator's physics, the EMS with intraday re-planning from the demo's\nforecasts, and the dashboard. Run it from the repository root. --speed runs the park and the EMS\non one simulated clock that many times faster (weather, loads, cars, tariff periods, records\nand plans alike)."
    )]
    Demo {
        /// A scenario folder (default: the Qingzhou reference scenario built into pedf).
        #[arg(long, value_name = "DIR")]
        scenario: Option<PathBuf>,
        /// Dashboard and API address.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: String,
        /// Port of the simulated Modbus TCP devices (loopback).
        #[arg(long, default_value_t = 15020, value_name = "PORT")]
        modbus_port: u16,
        /// Port of the embedded MQTT broker (loopback).
        #[arg(long, default_value_t = 18830, value_name = "PORT")]
        mqtt_port: u16,
        /// Use this MQTT broker instead of the embedded one.
        #[arg(long, value_name = "HOST:PORT")]
        mqtt: Option<String>,
        /// Port of the EMS's OCPP central system the demo's OCPP chargers connect to (loopback).
        #[arg(long, default_value_t = 19000, value_name = "PORT")]
        ocpp_port: u16,
        /// Port of the TCP serial gateway the grid company's billing meter (DL/T 645-2007)
        /// is read through (loopback).
        #[arg(long, default_value_t = 16450, value_name = "PORT")]
        meter_port: u16,
        /// Port of the park's IEC 60870-5-104 station (loopback; a master on this host may
        /// connect, common address 1, its point map in the demo's folder).
        #[arg(long, default_value_t = 12404, value_name = "PORT")]
        iec104_port: u16,
        /// Simulated seconds per real second for the park's physics.
        #[arg(long, default_value_t = 1.0, value_name = "X")]
        speed: f64,
        /// The simulated instant the demo starts at, RFC 3339 with its offset (for example
        /// 2026-06-22T18:50:00+08:00; default: now): the same park day on every run.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// Where the demo keeps its files (device list, run file, day inputs, store).
        #[arg(long, default_value = ".pedf-demo", value_name = "DIR")]
        dir: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<f64>,
    },
    /// Backtest a scenario under the strategies: energy, cost, carbon, comparison, plots.
    #[command(
        after_help = "Example:\n  pedf simulate simulations/qingzhou-pedf --days 365 --strategy all\n\nThe scenario folder's scenario.toml names the park file, the climate, load profiles, EV\nstatistics, the grid's carbon shape and the optimised strategy's solver settings. Strategies:\nnone (battery idle, chargers and loads uncontrolled), rule (rule-based plans), optimized (MILP\nday-ahead plan and intraday re-plans on forecasts), all. Writes report.txt, report.json,\nmonthly.csv, comparison.svg/.png and week.svg/.png into --out-dir. The same seed gives the\nsame result; the period's energy balance is checked to 0.01 %."
    )]
    Simulate {
        /// The scenario folder (or its scenario.toml).
        #[arg(value_name = "SCENARIO")]
        scenario: PathBuf,
        /// Number of days from the scenario's start.
        #[arg(long, default_value_t = 7, value_name = "N")]
        days: u32,
        #[arg(long, default_value = "all", value_parser = ["none", "rule", "optimized", "all"])]
        strategy: String,
        /// Where the report and plots go.
        #[arg(long, value_name = "DIR", default_value = "simulation")]
        out_dir: PathBuf,
        /// Override the scenario's seed.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Grid requests to hold (a TOML file of [[grid_request]] tables: id, kind =
        /// cap_import | reduce_import | cap_export | export_at_least, kw, start, end,
        /// price_cny_per_kwh), added to the scenario's own; each is measured against the
        /// strategy's baseline.
        #[arg(long, value_name = "FILE")]
        requests: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The EMS against devices: poll, control within hard limits, store; Ctrl-C or SIGTERM
    /// leaves every device in its safe state.
    #[command(
        after_help = "Example:\n  pedf run --config config/run-qingzhou.toml\n\nThe run file names the park file, the device list and the store (SQLite), relative to\nitself, and the cycle (cycle_ms, default 1000). The active plan of the day in the store is\nfollowed; without one the battery maximises self-consumption. With a [server] table
(listen = \"127.0.0.1:8080\") the dashboard, API (/api/v1, OpenAPI at /api/v1/openapi.json),
live stream and /metrics are served; the first start prints an admin token once."
    )]
    Run {
        /// The run configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<f64>,
    },
    /// The fleet of parks on NATS JetStream: its hub.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The fleet's hub: reads every park's records, events, plans and live state from NATS
    /// into its store (and a time-series server), and serves the fleet's API.
    #[command(
        after_help = "Example:\n  pedf fleet serve --config config/fleet-hub.toml\n\nThe hub file names the NATS servers (url), the hub's store (SQLite) and where the API\nlistens; the hub makes the stream PEDF and reads it with the durable consumer pedf-hub, so a\nrestart resumes where it stopped. Parks join with a [fleet] table in their run file."
    )]
    Serve {
        /// The hub file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<f64>,
    },
    /// The hub's API tokens in its store: list, create, revoke (works while the hub runs).
    #[command(subcommand)]
    Token(FleetTokenCommand),
    /// A new NATS user for a park: its key's seed written for the park's run file
    /// (`nkey_seed`), and the entry for the NATS servers' configuration printed, with what
    /// the park may publish and receive.
    #[command(
        after_help = "Example:\n  pedf fleet add-park --park qingzhou-pedf --dir keys\n\nWrites keys/qingzhou-pedf.nk (readable by its owner only; copy it to the park and name it in\nthe run file's [fleet] nkey_seed) and prints the line to add to the servers' authorization\n{ users: [...] }: the park may publish under pedf.qingzhou-pedf.> only and receive only\npedf.qingzhou-pedf.requests and the replies to its own inbox."
    )]
    AddPark {
        /// The park's name in subjects (its run file's [fleet] park, default its park id).
        #[arg(long, value_name = "NAME")]
        park: String,
        /// Where its seed file is written (NAME.nk; an existing one is not replaced).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Light simulated parks in one process, each a real edge node (its own store and
    /// publisher and NATS connection) with cheap physics, for trials and benchmarks of a hub.
    #[command(
        after_help = "Example:\n  pedf fleet simulate --parks 100 --url nats://127.0.0.1:4222 --speed 60 --for 120\n\nEach park sim-0001 ... keeps its store in --dir and publishes its state, records, events and\nplan to pedf.<park>.* like `pedf run` with [fleet]; on stopping, the publishers go on until the\nhub has acknowledged everything the parks closed (--drain seconds at most)."
    )]
    Simulate {
        /// How many parks.
        #[arg(long, value_name = "N")]
        parks: usize,
        /// The NATS servers (a cluster's nodes separated by commas).
        #[arg(long, value_name = "URL")]
        url: String,
        /// Where the parks' stores are kept.
        #[arg(long, default_value = ".pedf-fleet-sim", value_name = "DIR")]
        dir: PathBuf,
        /// The parks' names: PREFIX-0001 ...
        #[arg(long, default_value = "sim", value_name = "PREFIX")]
        prefix: String,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0, value_name = "X")]
        speed: f64,
        /// The simulated start, RFC 3339 with its offset (default: now).
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// Each park's live state every this many seconds.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        state_every: u64,
        /// After stopping, the longest the publishers may take to send the rest.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        drain: u64,
        /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<f64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetTokenCommand {
    /// Every token of the hub: id, role, when made and revoked, label (never the token).
    #[command(after_help = "Example:\n  pedf fleet token list --config config/fleet-hub.toml")]
    List {
        /// The hub file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Makes a token and prints it once (only its hash is kept).
    #[command(
        after_help = "Example:\n  pedf fleet token create --config config/fleet-hub.toml --role viewer --label \"control-room wall\"\n\nRoles: viewer (the view, the API's reads, /metrics), operator (and grid requests to the\nfleet), admin (and tokens)."
    )]
    Create {
        /// The hub file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// viewer, operator or admin.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Whose it is (1 to 100 characters).
        #[arg(long, value_name = "TEXT")]
        label: String,
    },
    /// Revokes a token: refused from now on (an admin who lost theirs revokes it here; the
    /// hub's next start makes a new admin token when none is left).
    #[command(after_help = "Example:\n  pedf fleet token revoke --config config/fleet-hub.toml 2")]
    Revoke {
        /// The hub file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The token's id (`pedf fleet token list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Every token: id, role, label, when made, whether revoked (never the token itself).
    #[command(after_help = "Example:\n  pedf token list --config config/run-qingzhou.toml")]
    List {
        /// The run file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// A new token with a role; it is printed once and only its hash is stored.
    #[command(
        after_help = "Example:\n  pedf token create --config config/run-qingzhou.toml --role viewer --label \"control room screen\""
    )]
    Create {
        /// The run file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// What the token may do.
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Who or what it is for (1 to 100 characters).
        #[arg(long)]
        label: String,
        /// Refused after this many days (1 to 3650; default: never).
        #[arg(long, value_name = "DAYS")]
        expires_days: Option<u32>,
    },
    /// Revokes a token: refused from then on; a running EMS ends its open streams at once
    /// when revoked through the API, at their next reconnect when revoked here.
    #[command(after_help = "Example:\n  pedf token revoke --config config/run-qingzhou.toml 3")]
    Revoke {
        /// The run file (its store holds the tokens).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The token's id (`pedf token list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Issue a signed certificate for a period (refused if it overlaps an issued one).
    #[command(
        after_help = "Example:\n  pedf certificate issue --park config/qingzhou-pedf.toml --records simulations/qingzhou-pedf/records/2026-06-21.csv --from 2026-06-21T00:00:00+08:00 --to 2026-06-22T00:00:00+08:00\n  pedf certificate issue --park PARK --records YEAR.csv --month 2026-06 --green-certificates gec.csv\n\nWrites SERIAL.json (RFC 8785 canonical JSON, signed with ed25519), SERIAL.html and SERIAL.pdf\n(Chinese and English) into --out-dir, and appends a hash-chained entry to the ledger. The issuer\nkey is made at first use in --key (mode 0600); its public key is printed and embedded in every\ncertificate. Avoided emissions count the net delivered electricity (ACM0002 / AMS-I.D / AMS-I.F)\nat the baseline factor (--baseline); green certificates (--green-certificates: CSV\nmonth,mwh,status,reference with status issued, held, sold or cancelled) come off each month."
    )]
    Issue {
        #[arg(long, value_name = "FILE")]
        park: PathBuf,
        /// Interval energy records (CSV).
        #[arg(long, value_name = "FILE")]
        records: PathBuf,
        /// Period start, RFC 3339 with offset (or --month).
        #[arg(
            long,
            value_name = "TIME",
            required_unless_present = "month",
            conflicts_with = "month"
        )]
        from: Option<String>,
        /// Period end (exclusive), RFC 3339 with offset.
        #[arg(
            long,
            value_name = "TIME",
            required_unless_present = "month",
            conflicts_with = "month"
        )]
        to: Option<String>,
        /// A calendar month of the park's zone (YYYY-MM): the period green certificates are
        /// issued for.
        #[arg(long, value_name = "YYYY-MM")]
        month: Option<String>,
        /// Green certificates (绿证) issued for the park's PV, per month (CSV
        /// month,mwh,status,reference): subtracted from what the certificate claims.
        #[arg(long, value_name = "FILE")]
        green_certificates: Option<PathBuf>,
        /// The grid company's billing meters' interval energies from their counters (CSV
        /// meter,start,import_kwh,export_kwh; the EMS serves a certificate's as
        /// /api/v1/certificates/ID/meter-intervals): stated beside the records' grid figures.
        #[arg(long, value_name = "FILE")]
        meter_intervals: Option<PathBuf>,
        #[arg(
            long,
            value_name = "FILE",
            default_value = "config/emission-factors/china-grid.toml"
        )]
        factors: PathBuf,
        /// MWh of grid import covered by green certificates or green-power contracts the park
        /// bought (market-based Scope 2).
        #[arg(long, default_value_t = 0.0, value_name = "MWH")]
        covered_mwh: f64,
        /// The baseline factor of avoided emissions: auto (the park's [carbon.baseline], else
        /// the table's combined margin), project, combined-margin (CDM tool 07), grid-average.
        #[arg(long, default_value = "auto", value_parser = ["auto", "project", "combined-margin", "grid-average"])]
        baseline: String,
        #[arg(long, value_name = "DIR", default_value = "certificates")]
        out_dir: PathBuf,
        /// The issuer's ed25519 secret key (made at first use).
        #[arg(long, value_name = "FILE", default_value = ".pedf/issuer.key")]
        key: PathBuf,
        /// The ledger (default: ledger.jsonl in --out-dir).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// The least share of the period's intervals that must be recorded (0..1; the rest
        /// would be estimated).
        #[arg(long, value_name = "SHARE", default_value_t = 0.9)]
        min_coverage: f64,
    },
    /// Verify a certificate: its signature, and with --data every figure recomputed.
    #[command(
        after_help = "Example:\n  pedf certificate verify certificates/QINGZHOU-PEDF-2026-000001.json --public-key HEX --data simulations/qingzhou-pedf/records/2026-06-21.csv --ledger certificates/ledger.jsonl\n\nA certificate names the key it was signed with, so the signature proves nothing until that key\nis the issuer's: give it (--public-key, or --trusted-keys with a list), from the issuer's\npublished channel. Exit 0 when every check passes; otherwise each problem is named (an untrusted\nor missing key, a changed figure, record, signature or ledger entry) and the exit code is 1."
    )]
    Verify {
        /// The certificate (JSON).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The interval records it was issued on, to recompute every figure.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// The billing meters' interval energies it states (CSV meter,start,import_kwh,
        /// export_kwh), to recompute its billing-meter figures (with --data).
        #[arg(long, value_name = "FILE")]
        meter_intervals: Option<PathBuf>,
        /// The ledger, to check the chain and the certificate's entry.
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// The issuer's public key (hex) the certificate must be signed with, from the
        /// issuer's published channel (not from the certificate itself).
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
        /// A trust list: issuer public keys (hex) accepted, one per line, `#` comments.
        #[arg(long, value_name = "FILE")]
        trusted_keys: Option<PathBuf>,
    },
    /// Render a signed certificate again: its HTML and PDF (Chinese and English).
    #[command(
        after_help = "Example:\n  pedf certificate render certificates/QINGZHOU-PEDF-2026-000001.json --out-dir copies\n\nWrites SERIAL.html and SERIAL.pdf into --out-dir (default: the certificate's folder). A\ncertificate whose signature does not match its content is refused: a changed copy gets no\nclean rendering. Rendering checks nothing about who signed; `pedf certificate verify` does."
    )]
    Render {
        /// The certificate (JSON, format pedf-certificate/2).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where to write the HTML and PDF.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CarbonCommand {
    /// The accounting of a period: flows, Scope 2 (location and market), avoided emissions,
    /// intensity, self-sufficiency, hourly CFE.
    #[command(
        after_help = "Example:\n  pedf carbon report --park config/qingzhou-pedf.toml --records simulations/qingzhou-pedf/records/2026-06-21.csv --from 2026-06-21T00:00:00+08:00 --to 2026-06-22T00:00:00+08:00\n\nRecords: CSV start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,\nbattery_discharge_kwh,load_kwh,ev_kwh per interval (`pedf plan --records-out` writes them\nfor a plan). Factors come from --factors by the park's region and variant, the latest data\nyear at or before the period's; the allocation rule is in crates/pedf-carbon/src/account.rs."
    )]
    Report {
        /// The park file.
        #[arg(long, value_name = "FILE")]
        park: PathBuf,
        /// Interval energy records (CSV).
        #[arg(long, value_name = "FILE")]
        records: PathBuf,
        /// Period start, RFC 3339 with offset.
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Period end (exclusive), RFC 3339 with offset.
        #[arg(long, value_name = "TIME")]
        to: String,
        /// Emission factor table.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "config/emission-factors/china-grid.toml"
        )]
        factors: PathBuf,
        /// Per-interval or hourly grid factors (CSV start,kg_per_kwh), user data.
        #[arg(long, value_name = "FILE")]
        hourly_factors: Option<PathBuf>,
        /// MWh of grid import covered by green certificates or green-power contracts the park
        /// bought (market-based Scope 2).
        #[arg(long, default_value_t = 0.0, value_name = "MWH")]
        covered_mwh: f64,
        /// The baseline factor of avoided emissions: auto (the park's [carbon.baseline], else
        /// the table's combined margin), project, combined-margin (CDM tool 07), grid-average.
        #[arg(long, default_value = "auto", value_parser = ["auto", "project", "combined-margin", "grid-average"])]
        baseline: String,
        /// table, json or csv (per interval).
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// EV sessions (ev-sessions.csv format) to give each its green share (needs the
        /// records' ev:<charger> columns).
        #[arg(long, value_name = "FILE")]
        sessions: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ForecastCommand {
    /// PV power of every array per interval: clear sky, or from an hourly weather forecast.
    #[command(
        after_help = "Examples:\n  pedf forecast pv --park config/qingzhou-pedf.toml --date 2026-06-21\n  pedf forecast pv --park config/qingzhou-pedf.toml --date 2026-06-21 --weather weather.csv --out day-inputs/pv.csv\n  pedf forecast pv --park config/qingzhou-pedf.toml --date 2026-06-21 --format table\n\nOutput: CSV in the planner's pv.csv format (kW at the DC bus, interval mean) unless\n--format or an --out ending in .json says otherwise. Without --weather the sky is clear all\nday: an upper bound. Weather file: hourly CSV `time,ghi_w_m2|cloud_cover_pct[,temp_air_c]\n[,wind_speed_m_s]`; --history: `start,array,forecast_kw,measured_kw` to learn a bias\ncorrection per array and hour (formats: crates/pedf-forecast/README.md)."
    )]
    Pv {
        /// The park file.
        #[arg(long, value_name = "FILE")]
        park: PathBuf,
        /// The first local day to forecast, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// Number of days.
        #[arg(long, default_value_t = 1, value_name = "N")]
        days: u32,
        /// Hourly weather forecast (CSV); without it, clear sky.
        #[arg(long, value_name = "FILE")]
        weather: Option<PathBuf>,
        /// Past forecasts and measurements (CSV) to learn a bias correction from.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Linke turbidity of the clear-sky model (2 clean, 3-4 rural, 5-7 polluted air).
        #[arg(long, default_value_t = 4.0, value_name = "TL")]
        linke_turbidity: f64,
        /// Sky diffuse model on the tilted plane.
        #[arg(long, default_value = "hay-davies", value_parser = ["hay-davies", "isotropic"])]
        transposition: String,
        /// Module mounting, for cell temperature.
        #[arg(long, default_value = "open-rack", value_parser = ["open-rack", "close-roof"])]
        mounting: String,
        /// csv (the planner's pv.csv), json or table.
        #[arg(long, value_parser = ["csv", "json", "table"])]
        format: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Demand of every fixed and curtailable load per interval, from the park's history.
    #[command(
        after_help = "Example:\n  pedf forecast load --park config/qingzhou-pedf.toml --history loads-history.csv --date 2026-06-25 --out day-inputs/loads.csv\n\nHistory: the planner's loads.csv format over past days (missing intervals and empty cells\nallowed). Each day is forecast from the most recent days of its type (workday, weekend,\nholiday; --holidays: CSV `date,kind,name`, kind holiday or workday), recent days weighing more."
    )]
    Load {
        #[command(flatten)]
        common: HistoryOptions,
        /// Past demand per load (CSV, the loads.csv format).
        #[arg(long, value_name = "FILE")]
        history: PathBuf,
    },
    /// Expected EV charging sessions, from past sessions.
    #[command(
        after_help = "Example:\n  pedf forecast ev --park config/qingzhou-pedf.toml --sessions simulations/qingzhou-pedf/day-inputs/ev-sessions.csv --date 2026-06-25\n\nPast sessions: the planner's ev-sessions.csv format. Output: the same format, the day's\nexpected sessions placed on the park's chargers."
    )]
    Ev {
        #[command(flatten)]
        common: HistoryOptions,
        /// Past sessions (CSV, the ev-sessions.csv format).
        #[arg(long, value_name = "FILE")]
        sessions: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct HistoryOptions {
    /// The park file.
    #[arg(long, value_name = "FILE")]
    park: PathBuf,
    /// The first local day to forecast, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: String,
    /// Number of days.
    #[arg(long, default_value_t = 1, value_name = "N")]
    days: u32,
    /// Public holidays and make-up workdays (CSV `date,kind,name`).
    #[arg(long, value_name = "FILE")]
    holidays: Option<PathBuf>,
    /// csv (the planner's input format) or json.
    #[arg(long, value_parser = ["csv", "json"])]
    format: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl HistoryOptions {
    pub fn with(self, history: PathBuf) -> forecast_cmd::HistoryArgs {
        forecast_cmd::HistoryArgs {
            park: self.park,
            history,
            holidays: self.holidays,
            date: self.date,
            days: self.days,
            format: self.format,
            out: self.out,
        }
    }
}

/// `--month-peak`: a finite power in kW, >= 0.
pub fn parse_month_peak(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..1e7).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not a power in kW; give the month's highest 15-minute import so far, e.g. --month-peak 850"
        )),
    }
}
