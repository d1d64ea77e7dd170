//! The learned bias correction: it must reduce bias on history it has not seen, and the
//! history reader must locate bad rows.

use chrono::{NaiveDate, Timelike};
use pedf_core::config::load_park;
use pedf_core::csvtext::InputFile;
use pedf_core::park::Park;
use pedf_forecast::correction::{backtest_correction, read_pv_history, BiasCorrection, PvRecord};
use pedf_forecast::pv::{forecast_pv, PvModel};

fn reference_park() -> Park {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/qingzhou-pedf.toml"
    );
    load_park("qingzhou-pedf.toml", &std::fs::read(path).unwrap())
        .value
        .expect("reference park")
}

/// "Measured" PV: the clear-sky forecast with what a model cannot know: a shadow on
/// pv-roof-a before 09:00, 7 % soiling on every array, and a day-to-day weather factor.
fn synthetic_history(park: &Park, days: u32) -> Vec<PvRecord> {
    let first = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    let f = forecast_pv(park, first, days, None, &PvModel::default()).unwrap();
    let mut seed: u64 = 12345;
    let mut weather = Vec::new();
    for _ in 0..days {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        weather.push(0.75 + 0.25 * ((seed >> 33) as f64 / (1u64 << 31) as f64));
    }
    let mut out = Vec::new();
    for a in &f.arrays {
        for (i, (&t, &p)) in f.starts.iter().zip(&a.kw).enumerate() {
            if p <= 0.0 {
                continue;
            }
            let local = park.clock.local(t);
            let shade = if a.id == "pv-roof-a" && local.hour() < 9 {
                0.5
            } else {
                1.0
            };
            let day = i / 96;
            out.push(PvRecord {
                start: t,
                array: a.id.clone(),
                forecast_kw: p,
                measured_kw: p * shade * 0.93 * weather[day],
            });
        }
    }
    out
}

#[test]
fn correction_reduces_bias_on_unseen_days() {
    let park = reference_park();
    let history = synthetic_history(&park, 21);
    let capacity = park.pv_peak_power().0;
    let bt = backtest_correction(&history, &park.clock, 7, capacity).unwrap();
    assert_eq!(bt.days, 14);
    eprintln!("raw: {}\ncorrected: {}", bt.raw, bt.corrected);
    assert!(
        bt.raw.bias > 0.0,
        "the clear-sky model over-forecasts: {}",
        bt.raw
    );
    assert!(
        bt.corrected.bias.abs() < bt.raw.bias.abs() / 3.0,
        "raw {} corrected {}",
        bt.raw,
        bt.corrected
    );
    assert!(bt.corrected.mae < bt.raw.mae);
    // The shadow is learned: pv-roof-a's early factor is well below its afternoon one.
    let c = BiasCorrection::learn(&history, &park.clock);
    assert!(
        c.factor("pv-roof-a", 7) < 0.6 && c.factor("pv-roof-a", 14) > 0.75,
        "{} {}",
        c.factor("pv-roof-a", 7),
        c.factor("pv-roof-a", 14)
    );
    assert_eq!(c.factor("pv-roof-a", 0), 1.0, "night hours keep factor 1");
    assert!(backtest_correction(&history[..10], &park.clock, 7, capacity).is_none());
}

#[test]
fn one_day_of_history_moves_the_factor_only_part_way() {
    let park = reference_park();
    let history = synthetic_history(&park, 1);
    let c = BiasCorrection::learn(&history, &park.clock);
    // Observed ratio at 14:00 on that day is 0.93 x weather; the prior of 2 days pulls it to 1.
    let observed = history
        .iter()
        .find(|r| r.array == "pv-roof-b" && park.clock.local(r.start).hour() == 14)
        .map(|r| r.measured_kw / r.forecast_kw)
        .unwrap();
    let f = c.factor("pv-roof-b", 14);
    assert!(f > observed && f < 1.0, "factor {f}, observed {observed}");
}

#[test]
fn history_file_errors_are_located() {
    let arrays = ["pv-roof-a", "pv-roof-b"];
    let read = |t: &str| {
        read_pv_history(
            InputFile {
                name: "pv-history.csv",
                bytes: t.as_bytes(),
            },
            &arrays,
        )
    };
    let ok =
        read("start,array,forecast_kw,measured_kw\n2026-06-20T12:00:00+08:00,pv-roof-a,500,450\n")
            .unwrap();
    assert_eq!(ok.len(), 1);
    let msgs = |t: &str| {
        read(t)
            .unwrap_err()
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        msgs("start,array,forecast_kw,measured_kw\n2026-06-20T12:00:00+08:00,pv-roof-c,500,450\n2026-06-20T12:00:00+08:00,pv-roof-a,-1,450\n2026-06-20T12:15:00,pv-roof-a,1,1\n"),
        [
            "2:27: `pv-roof-c` is not a PV array of the park",
            "3:37: forecast_kw: `-1` is not a number >= 0",
            "4:1: `2026-06-20T12:15:00` is not an RFC 3339 time with an offset",
        ]
    );
    assert_eq!(
        msgs("start,array,forecast,measured\n"),
        ["1:1: header is `start,array,forecast,measured`"]
    );
}
