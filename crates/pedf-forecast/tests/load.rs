//! Load forecasts from history: day types, recency weighting, fallbacks, located errors.

use chrono::{Datelike, Duration, NaiveDate, Timelike, Weekday};
use pedf_core::config::load_park;
use pedf_core::csvtext::InputFile;
use pedf_core::park::Park;
use pedf_forecast::calendar::{read_calendar, Calendar};
use pedf_forecast::load::{
    backtest_loads, forecast_loads, read_load_history, LoadForecastError, LoadModel,
};

fn park() -> Park {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/qingzhou-pedf.toml"
    );
    load_park("qingzhou-pedf.toml", &std::fs::read(path).unwrap())
        .value
        .expect("reference park")
}

/// A history CSV from 2026-05-01 for `days` days: office load `level(day) x shape(hour)`.
fn history(park: &Park, days: i64, level: impl Fn(NaiveDate) -> f64) -> String {
    let mut s = String::from("# synthetic\nstart,office,lab,hvac\n");
    let first = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
    for d in 0..days {
        let day = first + Duration::days(d);
        for t in park.clock.intervals_of_local_day(day) {
            let h = park.clock.local(t).hour();
            let office = level(day) * if (8..18).contains(&h) { 2.0 } else { 1.0 };
            s.push_str(&format!("{},{office},120,60\n", park.clock.format(t)));
        }
    }
    s
}

fn read(park: &Park, text: &str) -> pedf_forecast::load::LoadHistory {
    read_load_history(
        InputFile {
            name: "loads-history.csv",
            bytes: text.as_bytes(),
        },
        park,
    )
    .unwrap()
}

fn weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

#[test]
fn day_types_are_kept_apart_and_constant_profiles_are_reproduced() {
    let park = park();
    let h = read(
        &park,
        &history(&park, 42, |d| if weekend(d) { 50.0 } else { 200.0 }),
    );
    let cal = Calendar::default();
    // 2026-06-12 is a Friday, 06-13 a Saturday.
    let f = forecast_loads(
        &park,
        &h,
        &cal,
        NaiveDate::from_ymd_opt(2026, 6, 12).unwrap(),
        2,
        &LoadModel::default(),
    )
    .unwrap();
    assert_eq!(f.starts.len(), 192);
    assert_eq!(f.columns, ["office", "lab", "hvac"]);
    let office = &f.values[0];
    assert!(
        (office[4 * 10] - 400.0).abs() < 1e-9,
        "Friday 10:00: {}",
        office[40]
    ); // 200 x 2 by day
    assert!((office[4 * 2] - 200.0).abs() < 1e-9);
    assert!(
        (office[96 + 4 * 10] - 100.0).abs() < 1e-9,
        "Saturday 10:00: {}",
        office[96 + 40]
    );
    assert!(f.values[1].iter().all(|&v| (v - 120.0).abs() < 1e-9));
}

#[test]
fn recent_days_weigh_more() {
    let park = park();
    // The workday level rises 10 kW a day: a recency-weighted mean is nearer the latest level
    // than the plain mean of the same days.
    let first = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
    let level = |d: NaiveDate| 100.0 + 10.0 * (d - first).num_days() as f64;
    let h = read(&park, &history(&park, 42, level));
    let day = NaiveDate::from_ymd_opt(2026, 6, 12).unwrap();
    let model = LoadModel::default();
    let f = forecast_loads(&park, &h, &Calendar::default(), day, 1, &model).unwrap();
    let got = f.values[0][4 * 2]; // 02:00: office = level
    let workdays: Vec<NaiveDate> = (1..=20)
        .map(|k| day - Duration::days(k))
        .filter(|d| !weekend(*d))
        .take(model.max_days)
        .collect();
    let plain = workdays.iter().map(|d| level(*d)).sum::<f64>() / workdays.len() as f64;
    let latest = level(workdays[0]);
    assert!(
        got > plain && got < latest,
        "recency-weighted {got}, plain mean {plain}, latest {latest}"
    );
}

#[test]
fn holidays_use_holiday_history_or_fall_back_with_a_note() {
    let park = park();
    let hol = "date,kind,name\n2026-05-01,holiday,Labour Day\n2026-05-04,holiday,Labour Day\n2026-05-09,workday,make-up day\n2026-06-19,holiday,Dragon Boat\n";
    let cal = read_calendar(InputFile {
        name: "holidays.csv",
        bytes: hol.as_bytes(),
    })
    .unwrap();
    let level = |d: NaiveDate| match cal.day_type(d) {
        pedf_forecast::calendar::DayType::Holiday => 30.0,
        pedf_forecast::calendar::DayType::Weekend => 50.0,
        pedf_forecast::calendar::DayType::Workday => 200.0,
    };
    let h = read(&park, &history(&park, 42, level));
    let f = forecast_loads(
        &park,
        &h,
        &cal,
        NaiveDate::from_ymd_opt(2026, 6, 19).unwrap(),
        1,
        &LoadModel::default(),
    )
    .unwrap();
    assert!(
        (f.values[0][8] - 30.0).abs() < 1e-9,
        "holiday profile: {}",
        f.values[0][8]
    );
    // Without holidays in the lookback window: the weekend profile, said in a note.
    let short = LoadModel {
        lookback_days: 20,
        ..LoadModel::default()
    };
    let f = forecast_loads(
        &park,
        &h,
        &cal,
        NaiveDate::from_ymd_opt(2026, 6, 19).unwrap(),
        1,
        &short,
    )
    .unwrap();
    assert!((f.values[0][8] - 50.0).abs() < 1e-9);
    assert!(
        f.notes.iter().any(|n| n.contains(
            "2026-06-19 is a holiday but the history has no holiday: the weekend profile is used"
        )),
        "{:?}",
        f.notes
    );
}

#[test]
fn backtest_of_a_noisy_stationary_history() {
    let park = park();
    let mut seed = 7u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5
    };
    let mut text = String::from("start,office,lab,hvac\n");
    let first = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
    for d in 0..42 {
        let day = first + Duration::days(d);
        for t in park.clock.intervals_of_local_day(day) {
            let base = if weekend(day) { 150.0 } else { 400.0 };
            text.push_str(&format!(
                "{},{},{},{}\n",
                park.clock.format(t),
                base * (1.0 + 0.1 * noise()),
                120.0,
                60.0
            ));
        }
    }
    let h = read(&park, &text);
    let (days, m) =
        backtest_loads(&park, &h, &Calendar::default(), 14, &LoadModel::default()).unwrap();
    assert_eq!(days, 14);
    // Noise is ±5 % of the office load (uniform): the profile's error stays near its mean
    // absolute value, about 2.5 % of the office load and less of the total.
    assert!(m.nmae < 0.03, "{m}");
    assert!(m.bias.abs() < 3.0, "{m}");
}

#[test]
fn errors_name_the_problem() {
    let park = park();
    let read_err = |t: &str| {
        read_load_history(
            InputFile {
                name: "h.csv",
                bytes: t.as_bytes(),
            },
            &park,
        )
        .unwrap_err()
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        read_err("start,office,labs\n2026-06-01T00:07:00+08:00,1,2\n2026-06-01T00:15:00+08:00,-1,2\n2026-06-01T00:15:00+08:00,1,2\n"),
        [
            "1:14: `labs` is not a fixed or curtailable load of the park",
            "2:1: 2026-06-01T00:07:00+08:00 is not the start of a 15 min interval",
            "3:27: office: `-1` is not a number >= 0",
            "4:1: duplicate row for 2026-06-01T00:15:00+08:00 (first at line 3)",
        ]
    );
    // A history without the lab column cannot forecast it.
    let h = read(&park, "start,office,hvac\n2026-06-01T00:00:00+08:00,1,2\n");
    let e = forecast_loads(
        &park,
        &h,
        &Calendar::default(),
        NaiveDate::from_ymd_opt(2026, 6, 2).unwrap(),
        1,
        &LoadModel::default(),
    )
    .unwrap_err();
    assert_eq!(e, LoadForecastError::MissingColumn("lab".into()));
    // One interval of history is not a day's profile.
    let h = read(
        &park,
        "start,office,lab,hvac\n2026-06-01T00:00:00+08:00,1,2,,\n"
            .replace(",,\n", ",3\n")
            .as_str(),
    );
    let e = forecast_loads(
        &park,
        &h,
        &Calendar::default(),
        NaiveDate::from_ymd_opt(2026, 6, 2).unwrap(),
        1,
        &LoadModel::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("no data for load `office` at 00:15"),
        "{e}"
    );
}
