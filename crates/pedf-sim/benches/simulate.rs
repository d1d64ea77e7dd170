//! Backtest speed: days of the reference scenario under each strategy, 15-min steps, and the
//! year of issue 7's target (365 days optimised, daily plan plus hourly re-plans, under 60 s):
//! `cargo bench -p pedf-sim --bench simulate -- year` runs that one alone (about 7 minutes).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use pedf_sim::backtest::{run, StrategyKind};
use pedf_sim::scenario::Scenario;

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulations/qingzhou-pedf");
    let s = Scenario::load(&dir).expect("scenario");
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.bench_function("none_365_days", |b| {
        b.iter(|| run(&s, 365, &[StrategyKind::None], &mut |_, _| {}).unwrap())
    });
    g.bench_function("rule_30_days", |b| {
        b.iter(|| run(&s, 30, &[StrategyKind::Rule], &mut |_, _| {}).unwrap())
    });
    g.bench_function("optimized_7_days", |b| {
        b.iter(|| run(&s, 7, &[StrategyKind::Optimized], &mut |_, _| {}).unwrap())
    });
    g.finish();
    let mut y = c.benchmark_group("year");
    y.sample_size(10);
    y.bench_function("optimized_365_days", |b| {
        b.iter(|| run(&s, 365, &[StrategyKind::Optimized], &mut |_, _| {}).unwrap())
    });
    y.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
