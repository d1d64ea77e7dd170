//! EV demand from past sessions.

use chrono::{NaiveDate, Timelike};
use pedf_core::config::load_park;
use pedf_core::csvtext::InputFile;
use pedf_core::park::Park;
use pedf_forecast::calendar::Calendar;
use pedf_forecast::ev::{forecast_ev, learn_ev, read_sessions, EvDayKind};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn park() -> Park {
    load_park(
        "qingzhou-pedf.toml",
        &std::fs::read(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap(),
    )
    .value
    .unwrap()
}

fn week() -> Vec<pedf_forecast::ev::Session> {
    let bytes = std::fs::read(format!(
        "{ROOT}/simulations/qingzhou-pedf/day-inputs/ev-sessions.csv"
    ))
    .unwrap();
    read_sessions(InputFile {
        name: "ev-sessions.csv",
        bytes: &bytes,
    })
    .unwrap()
}

#[test]
fn forecast_follows_the_history_of_its_kind_of_day() {
    let park = park();
    let past = week();
    let cal = Calendar::default();
    let stats = learn_ev(&past, &park.clock, &cal);
    let working = &stats.kinds[&EvDayKind::Working];
    let off = &stats.kinds[&EvDayKind::Off];
    assert_eq!((working.days, off.days), (5, 2)); // 18-19 and 22-24 June; the weekend 20-21
    assert!(
        working.per_day() > off.per_day(),
        "{} vs {}",
        working.per_day(),
        off.per_day()
    );

    // Thursday 25 June and Saturday 27 June.
    for (day, kind) in [(25, EvDayKind::Working), (27, EvDayKind::Off)] {
        let date = NaiveDate::from_ymd_opt(2026, 6, day).unwrap();
        let (sessions, notes) = forecast_ev(&park, &stats, &cal, date, 1);
        let want = stats.kinds[&kind].per_day().round() as usize;
        assert_eq!(sessions.len(), want, "{notes:?}");
        let (_, p50, _, dwell, energy) = stats.kinds[&kind].summary().unwrap();
        let mut minutes = Vec::new();
        for s in &sessions {
            let local = park.clock.local(s.arrival);
            assert_eq!(local.date_naive(), date);
            minutes.push(f64::from(local.hour() * 60 + local.minute()));
            assert!(s.departure > s.arrival);
            let charger = park
                .ev_chargers
                .iter()
                .find(|c| c.id == s.charger)
                .expect("a charger of the park");
            let hours = (s.departure - s.arrival).num_seconds() as f64 / 3600.0;
            assert!(s.energy_kwh <= charger.max_power.0 * hours + 0.05);
        }
        minutes.sort_by(f64::total_cmp);
        let median = minutes[minutes.len() / 2];
        assert!(
            (median - p50).abs() <= 30.0,
            "median arrival {median} min vs history {p50} min"
        );
        // No charger has two sessions at once.
        for a in &sessions {
            for b in &sessions {
                if a.id != b.id && a.charger == b.charger {
                    assert!(
                        a.departure <= b.arrival || b.departure <= a.arrival,
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        let mean_energy =
            sessions.iter().map(|s| s.energy_kwh).sum::<f64>() / sessions.len() as f64;
        assert!(
            (mean_energy - energy).abs() < 0.5 * energy,
            "{mean_energy} vs history {energy}"
        );
        let mean_dwell = sessions
            .iter()
            .map(|s| (s.departure - s.arrival).num_minutes() as f64)
            .sum::<f64>()
            / sessions.len() as f64;
        assert!(
            (mean_dwell - dwell).abs() < 0.5 * dwell,
            "{mean_dwell} vs history {dwell}"
        );
    }
}

#[test]
fn more_cars_than_chargers_are_left_out_and_said() {
    let mut park = park();
    park.ev_chargers.truncate(2);
    let stats = learn_ev(&week(), &park.clock, &Calendar::default());
    let (sessions, notes) = forecast_ev(
        &park,
        &stats,
        &Calendar::default(),
        NaiveDate::from_ymd_opt(2026, 6, 25).unwrap(),
        1,
    );
    assert!(sessions.len() <= 2 * 3, "{}", sessions.len());
    assert!(
        notes
            .iter()
            .any(|n| n.contains("found no free charger and are left out")),
        "{notes:?}"
    );
}

#[test]
fn session_file_errors_are_located() {
    let text = "id,charger,arrival,departure,energy_kwh\na,ev-01,2026-06-18T08:00:00+08:00,2026-06-18T07:00:00+08:00,10\na,ev-01,2026-06-18T08:00:00+08:00,2026-06-18T09:00:00+08:00,1\nb,ev-01,2026-06-18T08:00:00,2026-06-18T09:00:00+08:00,1\nc,ev-01,2026-06-18T08:00:00+08:00,2026-06-18T09:00:00+08:00,-3\n";
    let e = read_sessions(InputFile {
        name: "s.csv",
        bytes: text.as_bytes(),
    })
    .unwrap_err();
    let msgs: Vec<String> = e
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect();
    assert_eq!(
        msgs,
        [
            "2:35: departure 2026-06-18T07:00:00+08:00 is not after arrival 2026-06-18T08:00:00+08:00",
            "3:1: session id `a` appears twice",
            "4:9: arrival: `2026-06-18T08:00:00` is not an RFC 3339 time with an offset",
            "5:61: energy_kwh: `-3` is not a number >= 0",
        ]
    );
}
