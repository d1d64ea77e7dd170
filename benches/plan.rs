//! Planning benchmarks (issue 3): the reference park's day, a week at 15 min, a day at 5 min,
//! 200 chargers with 300 sessions, and a re-plan of the reference day from 06:00. Each case first prints one solve with model-build and
//! solve time apart and the MIP gap reached, then criterion times the whole planning call.
//!
//! Run: `cargo bench --bench plan` (about 5 minutes; the solver's time limit is 5 s per plan).

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion};
use pedf_core::inputs::{load_inputs, DayFiles, DayInputs, EvSession, InputFile};
use pedf_core::Park;
use pedf_dispatch::{plan_optimized, CurrentState, PlanOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn park_from(text: &str) -> Park {
    pedf_core::config::load_park("bench.toml", text.as_bytes())
        .value
        .expect("bench park is valid")
}

fn reference_text() -> String {
    std::fs::read_to_string(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap()
}

fn read(f: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/simulations/qingzhou-pedf/day-inputs/{f}")).unwrap()
}

/// Inputs of the reference folder over the given local days.
fn reference_inputs(park: &Park, days: &[NaiveDate], with_sessions: bool) -> DayInputs {
    let (pv, loads, ev, ci) = (
        read("pv.csv"),
        read("loads.csv"),
        read("ev-sessions.csv"),
        read("carbon-intensity.csv"),
    );
    let horizon: Vec<_> = days
        .iter()
        .flat_map(|d| park.clock.intervals_of_local_day(*d))
        .collect();
    let files = DayFiles {
        pv: InputFile {
            name: "pv.csv",
            bytes: &pv,
        },
        loads: InputFile {
            name: "loads.csv",
            bytes: &loads,
        },
        sessions: with_sessions.then_some(InputFile {
            name: "ev-sessions.csv",
            bytes: &ev,
        }),
        carbon: Some(InputFile {
            name: "carbon-intensity.csv",
            bytes: &ci,
        }),
        prices: None,
    };
    load_inputs(park, &horizon, files).expect("reference inputs are valid")
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
}

/// The reference day at 5-minute resolution: each 15-minute value held for three intervals.
fn five_minute_case() -> (Park, DayInputs) {
    let p15 = park_from(&reference_text());
    let i15 = reference_inputs(&p15, &[day(21)], true);
    let park =
        park_from(&reference_text().replace("interval_minutes = 15", "interval_minutes = 5"));
    let starts = park.clock.intervals_of_local_day(day(21));
    let triple = |v: &Vec<f64>| v.iter().flat_map(|x| [*x, *x, *x]).collect::<Vec<f64>>();
    let inputs = DayInputs {
        starts,
        pv_kw: i15
            .pv_kw
            .iter()
            .map(|(k, v)| (k.clone(), triple(v)))
            .collect(),
        load_kw: i15
            .load_kw
            .iter()
            .map(|(k, v)| (k.clone(), triple(v)))
            .collect(),
        sessions: i15
            .sessions
            .iter()
            .map(|s| EvSession {
                first: s.first * 3,
                end: s.end * 3,
                ..s.clone()
            })
            .collect(),
        carbon_intensity: triple(&i15.carbon_intensity),
        import_price: triple(&i15.import_price),
        export_price: triple(&i15.export_price),
        ..i15
    };
    (park, inputs)
}

/// 200 chargers and 300 sessions on the reference day (seeded, deterministic).
fn many_chargers_case() -> (Park, DayInputs) {
    let park = park_from(&reference_text().replace("count = 20", "count = 200"));
    let mut inputs = reference_inputs(&park, &[day(21)], false);
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut free_from = vec![0usize; 200];
    let mut sessions = Vec::new();
    while sessions.len() < 300 {
        let first = 24 + (rand() * 56.0) as usize; // 06:00 to 20:00
        let len = 4 + (rand() * 28.0) as usize; // 1 to 8 h
        let end = (first + len).min(96);
        let Some(c) = (0..200).find(|&c| free_from[c] <= first) else {
            continue;
        };
        free_from[c] = end;
        let hours = (end - first) as f64 / 4.0;
        let energy = (5.0 + rand() * 25.0).min(0.5 * 60.0 * hours);
        sessions.push(EvSession {
            id: format!("m{}", sessions.len()),
            charger: park.ev_chargers[c].id.clone(),
            arrival: inputs.starts[first],
            departure: inputs.starts[end - 1] + park.clock.interval.duration(),
            energy_kwh: energy,
            first,
            end,
        });
    }
    inputs.sessions = sessions;
    (park, inputs)
}

/// The state the day-ahead plan of `inputs` reaches after its first `k` intervals: stored
/// energy, energy each EV session and flexible load has had so far, peak import so far.
fn state_after(park: &Park, inputs: &DayInputs, k: usize) -> CurrentState {
    let plan = plan_optimized(
        park,
        inputs,
        &PlanOptions::default(),
        &CurrentState::default(),
    )
    .unwrap();
    let dt = park.clock.interval.duration().num_seconds() as f64 / 3600.0;
    let done = &plan.intervals[..k];
    let mut state = CurrentState {
        soc_kwh: done[k - 1].batteries_soc_kwh.clone(),
        month_peak_import_kw: done.iter().map(|i| i.grid_import_kw).fold(0.0, f64::max),
        ..CurrentState::default()
    };
    for s in inputs.sessions.iter().filter(|s| s.first < k) {
        let kwh: f64 = done[s.first..s.end.min(k)]
            .iter()
            .map(|i| i.ev_chargers.get(&s.charger).copied().unwrap_or(0.0) * dt)
            .sum();
        state.ev_delivered_kwh.insert(s.id.clone(), kwh);
    }
    for i in done {
        for (id, kw) in &i.flexible_loads {
            *state
                .deferrable_delivered_kwh
                .entry(id.clone())
                .or_default() += kw * dt;
        }
    }
    state
}

fn report(name: &str, park: &Park, inputs: &DayInputs, opts: &PlanOptions, state: &CurrentState) {
    let plan = plan_optimized(park, inputs, opts, state).unwrap();
    let s = &plan.solver;
    eprintln!(
        "{name}: {} intervals, {} sessions; {} {} gap {:.2e}; build {:.3} s, solve {:.3} s; {} cols, {} rows, {} int/semi-cont; objective {:.2} CNY; unmet {}",
        plan.intervals.len(),
        inputs.sessions.len(),
        s.name,
        s.status,
        s.mip_gap.unwrap_or(f64::NAN),
        s.build_seconds,
        s.seconds,
        s.columns,
        s.rows,
        s.binaries,
        plan.objective_cny,
        plan.unmet.len()
    );
}

fn bench(c: &mut Criterion) {
    let reference = park_from(&reference_text());
    let one_day = reference_inputs(&reference, &[day(21)], true);
    let week = reference_inputs(&reference, &(18..=24).map(day).collect::<Vec<_>>(), true);
    let (park5, five) = five_minute_case();
    let (park200, many) = many_chargers_case();
    let defaults = PlanOptions::default();
    let lp = PlanOptions {
        mip: false,
        ..PlanOptions::default()
    };
    // The target for the reference day is a gap of 1e-6.
    let tight = PlanOptions {
        mip_gap: 1e-6,
        ..PlanOptions::default()
    };
    let cases: [(&str, &Park, &DayInputs, &PlanOptions); 7] = [
        ("reference day, MILP", &reference, &one_day, &defaults),
        (
            "reference day, MILP, gap 1e-6",
            &reference,
            &one_day,
            &tight,
        ),
        ("reference day, LP relaxation", &reference, &one_day, &lp),
        ("week at 15 min, MILP", &reference, &week, &defaults),
        ("day at 5 min, MILP", &park5, &five, &defaults),
        (
            "200 chargers / 300 sessions, MILP",
            &park200,
            &many,
            &defaults,
        ),
        (
            "200 chargers / 300 sessions, LP relaxation",
            &park200,
            &many,
            &lp,
        ),
    ];
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for (name, park, inputs, opts) in cases {
        report(name, park, inputs, opts, &CurrentState::default());
        group.bench_function(name, |b| {
            b.iter(|| {
                plan_optimized(
                    black_box(park),
                    black_box(inputs),
                    opts,
                    &CurrentState::default(),
                )
                .unwrap()
            })
        });
    }
    // A re-plan as the runtime makes one (pedf-runtime's replan: the rest of the day from the
    // measured state): the reference day from 06:00, in the state its day-ahead plan reaches.
    let rest = one_day.tail(24);
    let state = state_after(&reference, &one_day, 24);
    let name = "re-plan from 06:00 (72 intervals), MILP";
    report(name, &reference, &rest, &defaults, &state);
    group.bench_function(name, |b| {
        b.iter(|| {
            plan_optimized(black_box(&reference), black_box(&rest), &defaults, &state).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
