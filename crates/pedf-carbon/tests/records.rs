//! The record reader: located errors, nothing repaired; a plan's records round-trip.

use pedf_carbon::records::{read_records, write_records, IntervalRecord};
use pedf_core::csvtext::InputFile;
use pedf_core::time::{IntervalLength, ParkClock};

fn clock() -> ParkClock {
    ParkClock::new(
        chrono_tz::Asia::Shanghai,
        IntervalLength::from_minutes(15).unwrap(),
    )
}

const HEAD: &str = "start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh\n";

fn errors(body: &str) -> Vec<String> {
    let text = format!("{HEAD}{body}");
    read_records(
        InputFile {
            name: "r.csv",
            bytes: text.as_bytes(),
        },
        &clock(),
    )
    .unwrap_err()
    .iter()
    .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
    .collect()
}

#[test]
fn bad_records_are_located() {
    assert_eq!(
        errors(
            "2026-06-21T12:00:00+08:00,10,0,0,0,0,20,0\n\
             2026-06-21T12:15:00+08:00,10,0,0,0,0,5,0\n\
             2026-06-21T12:15:00+08:00,10,0,0,0,0,5,0\n\
             2026-06-21T12:10:00+08:00,10,0,0,0,0,5,0\n\
             2026-06-21T12:30:00+08:00,10,-1,0,0,0,5,0\n\
             2026-06-21T12:00:00+08:00,1,0,0,0,0,1,0\n"
        ),
        [
            "2:1: 20.000 kWh leave the bus but only 10.000 kWh enter it",
            "4:1: duplicate record for 2026-06-21T12:15:00+08:00",
            "5:1: 2026-06-21T12:10:00+08:00 is not the start of a 15 min interval",
            "6:30: grid_import_kwh: `-1` is not an energy >= 0",
            "7:1: 2026-06-21T12:00:00+08:00 comes before the record above it",
        ]
    );
}

#[test]
fn records_round_trip_through_text() {
    let text = format!("{HEAD}2026-06-21T12:00:00+08:00,100.5,0,39.25,10,0,50,1.125\n");
    let r = read_records(
        InputFile {
            name: "r.csv",
            bytes: text.as_bytes(),
        },
        &clock(),
    )
    .unwrap();
    assert_eq!(r.len(), 1);
    let again = write_records(&r, &clock());
    let back = read_records(
        InputFile {
            name: "r2.csv",
            bytes: again.as_bytes(),
        },
        &clock(),
    )
    .unwrap();
    assert_eq!(r, back);
    let rec: &IntervalRecord = &r[0];
    assert!((rec.losses() - 0.125).abs() < 1e-12);
}

#[test]
fn per_charger_columns_must_add_up() {
    let head = HEAD.trim_end().to_string() + ",ev:ev-01,ev:ev-02\n";
    let ok = format!("{head}2026-06-21T12:00:00+08:00,10,0,0,0,0,5,5,2,3\n");
    let r = read_records(
        InputFile {
            name: "r.csv",
            bytes: ok.as_bytes(),
        },
        &clock(),
    )
    .unwrap();
    assert_eq!(
        r[0].ev_chargers,
        vec![("ev-01".to_string(), 2.0), ("ev-02".to_string(), 3.0)]
    );
    assert!(r[0]
        .canonical_line(&clock())
        .ends_with(",ev-01=2.000000,ev-02=3.000000"));
    let bad = format!("{head}2026-06-21T12:00:00+08:00,10,0,0,0,0,5,5,2,2\n");
    let e = read_records(
        InputFile {
            name: "r.csv",
            bytes: bad.as_bytes(),
        },
        &clock(),
    )
    .unwrap_err();
    assert_eq!(
        e[0].message,
        "the ev:<charger> columns add up to 4.000 kWh, ev_kwh is 5.000"
    );
    let odd = format!("{},charger3\n", HEAD.trim_end());
    let e = read_records(
        InputFile {
            name: "r.csv",
            bytes: odd.as_bytes(),
        },
        &clock(),
    )
    .unwrap_err();
    assert!(
        e[0].message
            .contains("column `charger3` is not `ev:<charger id>`"),
        "{}",
        e[0].message
    );
}

#[test]
fn per_battery_columns_must_come_in_pairs_and_add_up() {
    let read = |text: String| {
        read_records(
            InputFile {
                name: "r.csv",
                bytes: text.as_bytes(),
            },
            &clock(),
        )
    };
    let head = HEAD.trim_end().to_string()
        + ",ev:ev-01,charge:bess-2,discharge:bess-2,charge:bess-1,discharge:bess-1\n";
    let ok = format!(
        "{head}2026-06-21T12:00:00+08:00,100,0,0,60,0,35,5,5,20,0,40,0\n\
         2026-06-21T19:00:00+08:00,0,0,0,0,50,45,5,5,0,10,0,40\n"
    );
    let r = read(ok).unwrap();
    assert_eq!(
        r[0].batteries,
        vec![
            ("bess-1".to_string(), 40.0, 0.0),
            ("bess-2".to_string(), 20.0, 0.0)
        ]
    );
    assert!(r[1]
        .canonical_line(&clock())
        .ends_with(",ev-01=5.000000,discharge:bess-1=40.000000,discharge:bess-2=10.000000"));
    // Written and read again, the split survives.
    let again = read(write_records(&r, &clock())).unwrap();
    assert_eq!(again, r);
    let bad = format!("{head}2026-06-21T12:00:00+08:00,100,0,0,60,0,35,5,5,20,0,30,0\n");
    assert_eq!(
        read(bad).unwrap_err()[0].message,
        "the battery columns add up to 50.000 kWh charged and 0.000 discharged; battery_charge_kwh is 60.000, battery_discharge_kwh 0.000"
    );
    let unpaired = format!("{},charge:bess-1\n", HEAD.trim_end());
    assert_eq!(
        read(unpaired).unwrap_err()[0].message,
        "battery `bess-1` has a charge column but no discharge column"
    );
}

/// Excel's "CSV UTF-8" writes a byte-order mark first: the file reads as without it.
#[test]
fn a_byte_order_mark_is_not_part_of_the_header() {
    let text = format!("\u{feff}{HEAD}2026-06-21T12:00:00+08:00,10,0,0,0,0,5,0\n");
    let r = read_records(
        InputFile {
            name: "excel.csv",
            bytes: text.as_bytes(),
        },
        &clock(),
    )
    .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].pv_kwh, 10.0);
}
