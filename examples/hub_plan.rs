//! Plans a generated charging hub (issue 26) and prints what the plan reports: status, gap,
//! its bound and where it comes from, the cost, the wall time.
//!
//! `cargo run --release --example hub_plan -- CHARGERS[@SEED] LIMIT[:NODES] ...`, e.g.
//! `-- 1000 60 240` plans 1000 chargers (1500 sessions) with a 60-s and then a 240-s limit;
//! `-- 100 600:10` with a 600-s limit and at most 10 branch-and-bound nodes; `-- 500@3 30` the
//! sessions of seed 3 (0, the default, is the tests' hub). The hub is the reference park scaled
//! with the chargers (`crates/pedf-dispatch/tests/common`, `charging_hub`). With
//! `RUST_LOG=pedf_dispatch=debug` the search's rounds are logged.

#[path = "../crates/pedf-dispatch/tests/common/mod.rs"]
mod common;

use pedf_dispatch::{plan_optimized, CurrentState, PlanOptions};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: hub_plan CHARGERS[@SEED] LIMIT[:NODES] ...";
    let first = args.first().expect(usage);
    let (n, seed) = first.split_once('@').unwrap_or((first, "0"));
    let n: usize = n.parse().ok().filter(|&n| n > 0).expect(usage);
    let seed: u64 = seed.parse().expect(usage);
    let (park, inputs) = common::charging_hub_seeded(n, seed);
    for run in &args[1..] {
        let (limit, nodes) = match run.split_once(':') {
            Some((l, k)) => (l, Some(k.parse::<u32>().expect(usage))),
            None => (run.as_str(), None),
        };
        let opts = PlanOptions {
            time_limit_s: limit.parse().expect(usage),
            max_nodes: nodes,
            ..PlanOptions::default()
        };
        let began = std::time::Instant::now();
        let plan = plan_optimized(&park, &inputs, &opts, &CurrentState::default()).unwrap();
        let s = &plan.solver;
        println!(
            "{n} chargers (seed {seed}), {} sessions, limit {limit} s, nodes {nodes:?}: {} gap {:.2e}, bound {:.2} CNY ({}), objective {:.2} CNY, {:.1} s",
            inputs.sessions.len(),
            s.status,
            s.mip_gap.unwrap_or(f64::NAN),
            s.bound_cny.unwrap_or(f64::NAN),
            s.bound_from.as_deref().unwrap_or("none"),
            plan.objective_cny,
            began.elapsed().as_secs_f64()
        );
    }
}
