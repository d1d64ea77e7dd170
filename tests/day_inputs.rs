//! Bad day inputs give located errors (file, line, column), never a plan from repaired data.

use chrono::NaiveDate;
use pedf_core::config::Diagnostic;
use pedf_core::inputs::{load_day_inputs, DayFiles, InputFile};
use pedf_core::Park;

fn park() -> Park {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/qingzhou-pedf.toml"
    ))
    .unwrap();
    pedf_core::config::load_park("p.toml", &text).value.unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 21).unwrap()
}

/// A valid pv.csv for the day with `edit` applied to its lines (0 = header).
fn pv(edit: impl Fn(&mut Vec<String>)) -> String {
    let mut lines = vec!["start,pv-roof-a,pv-roof-b,pv-carport".to_string()];
    for q in 0..96 {
        lines.push(format!(
            "2026-06-21T{:02}:{:02}:00+08:00,10,5,2",
            q / 4,
            (q % 4) * 15
        ));
    }
    edit(&mut lines);
    lines.join("\n") + "\n"
}

fn loads() -> String {
    let mut s = "start,office,lab,hvac\n".to_string();
    for q in 0..96 {
        s += &format!(
            "2026-06-21T{:02}:{:02}:00+08:00,200,100,50\n",
            q / 4,
            (q % 4) * 15
        );
    }
    s
}

fn run(pv_text: &str, loads_text: &str, sessions: Option<&str>) -> Result<usize, Vec<Diagnostic>> {
    let files = DayFiles {
        pv: InputFile {
            name: "pv.csv",
            bytes: pv_text.as_bytes(),
        },
        loads: InputFile {
            name: "loads.csv",
            bytes: loads_text.as_bytes(),
        },
        sessions: sessions.map(|s| InputFile {
            name: "ev-sessions.csv",
            bytes: s.as_bytes(),
        }),
        carbon: None,
        prices: None,
    };
    load_day_inputs(&park(), day(), files).map(|d| d.len())
}

fn errors(pv_text: &str, loads_text: &str, sessions: Option<&str>) -> Vec<String> {
    run(pv_text, loads_text, sessions)
        .expect_err("should be rejected")
        .iter()
        .map(|d| {
            assert!(d.hint.is_some(), "no hint: {d}");
            d.to_string().lines().next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn valid_inputs_give_96_intervals() {
    assert_eq!(run(&pv(|_| {}), &loads(), None).unwrap(), 96);
}

#[test]
fn nan_negative_and_text_values_are_located() {
    let e = errors(
        &pv(|l| {
            l[3] = "2026-06-21T00:30:00+08:00,NaN,5,2".into();
            l[5] = "2026-06-21T01:00:00+08:00,10,-5,2".into();
            l[7] = "2026-06-21T01:30:00+08:00,10,5,lots".into();
        }),
        &loads(),
        None,
    );
    assert_eq!(
        e,
        [
            "pv.csv:4:27: error: pv-roof-a: `NaN` is not a finite number",
            "pv.csv:6:30: error: pv-roof-b: -5 is outside 0..10000000 (power in kW, >= 0)",
            "pv.csv:8:32: error: pv-carport: `lots` is not a finite number",
        ]
    );
}

#[test]
fn gaps_duplicates_order_and_alignment_are_located() {
    let e = errors(
        &pv(|l| {
            l.remove(10); // a gap at 02:15
            l[20] = "2026-06-21T04:52:00+08:00,10,5,2".into();
            let dup = l[30].clone();
            l.insert(31, dup);
        }),
        &loads(),
        None,
    );
    assert!(e.iter().any(|m| m.starts_with("pv.csv:11:1: error: gap: expected 2026-06-21T02:15:00+08:00, found 2026-06-21T02:30:00+08:00")), "{e:#?}");
    assert!(
        e.iter().any(|m| m.starts_with(
            "pv.csv:21:1: error: 2026-06-21T04:52:00+08:00 is not the start of a 15 min interval"
        )),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("pv.csv:32:1: error: duplicate row")),
        "{e:#?}"
    );
}

#[test]
fn header_problems_are_located_with_suggestions() {
    let e = errors(
        &pv(|l| l[0] = "start,pv-roof-a,pv-roofb,pv-carport".into()),
        &loads(),
        None,
    );
    assert_eq!(
        e,
        [
            "pv.csv:1:1: error: no column for `pv-roof-b`",
            "pv.csv:1:17: error: unknown column `pv-roofb`"
        ]
    );
    let err = run(
        &pv(|l| l[0] = "start,pv-roof-a,pv-roofb,pv-carport".into()),
        &loads(),
        None,
    )
    .unwrap_err();
    assert!(err[1]
        .hint
        .as_deref()
        .unwrap()
        .contains("did you mean `pv-roof-b`?"));
    let e = errors(
        &pv(|l| l[5] = "2026-06-21T01:00:00+08:00,10,5".into()),
        &loads(),
        None,
    );
    assert_eq!(e, ["pv.csv:6:1: error: 3 fields, the header has 4"]);
}

#[test]
fn times_need_an_offset() {
    let e = errors(
        &pv(|l| l[1] = "2026-06-21T00:00:00,10,5,2".into()),
        &loads(),
        None,
    );
    assert!(
        e[0].starts_with(
            "pv.csv:2:1: error: `2026-06-21T00:00:00` is not an RFC 3339 time with an offset"
        ),
        "{e:#?}"
    );
}

#[test]
fn a_date_outside_the_data_is_refused() {
    let (pv_text, loads_text) = (pv(|_| {}), loads());
    let files = DayFiles {
        pv: InputFile {
            name: "pv.csv",
            bytes: pv_text.as_bytes(),
        },
        loads: InputFile {
            name: "loads.csv",
            bytes: loads_text.as_bytes(),
        },
        sessions: None,
        carbon: None,
        prices: None,
    };
    let e =
        load_day_inputs(&park(), NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(), files).unwrap_err();
    // Every series is refused, each located where its data stops: the last row, line 97.
    assert_eq!(e.len(), 2);
    let pv_err = e
        .iter()
        .find(|d| d.file == "pv.csv")
        .expect("pv.csv is reported");
    assert_eq!((pv_err.line, pv_err.column), (97, 1));
    assert!(pv_err.to_string().contains("96 of 96 intervals of the horizon are missing, first 2026-07-01T00:00:00+08:00; the file covers 2026-06-21T00:00:00+08:00 to 2026-06-21T23:45:00+08:00"), "{pv_err}");
}

#[test]
fn bad_sessions_are_located() {
    let sessions = "id,charger,arrival,departure,energy_kwh
a,ev-01,2026-06-21T10:00:00+08:00,2026-06-21T09:00:00+08:00,10
b,ev-99,2026-06-21T10:00:00+08:00,2026-06-21T12:00:00+08:00,10
c,ev-02,2026-06-21T10:00:00+08:00,2026-06-21T11:00:00+08:00,80
d,ev-03,2026-06-21T10:00:00+08:00,2026-06-21T12:00:00+08:00,10
e,ev-03,2026-06-21T11:00:00+08:00,2026-06-21T13:00:00+08:00,10
d,ev-04,2026-06-21T10:00:00+08:00,2026-06-21T12:00:00+08:00,-1
";
    let e = errors(&pv(|_| {}), &loads(), Some(sessions));
    assert_eq!(
        e,
        [
            "ev-sessions.csv:2:35: error: session leaves (2026-06-21T09:00:00+08:00) before it arrives (2026-06-21T10:00:00+08:00)",
            "ev-sessions.csv:3:3: error: charger `ev-99` is not in the park",
            "ev-sessions.csv:4:61: error: 80 kWh is more than charger ev-02 can give in 1.00 h at 60 kW (60.0 kWh)",
            "ev-sessions.csv:6:9: error: charger ev-03 already has a session at this time (line 5)",
            "ev-sessions.csv:7:1: error: session id `d` repeats (first at line 5)",
            "ev-sessions.csv:7:61: error: energy_kwh `-1` is not a non-negative number",
        ]
    );
}

#[test]
fn the_reference_example_inputs_are_valid() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/simulations/qingzhou-pedf/day-inputs/"
    );
    let read = |f: &str| std::fs::read(format!("{dir}{f}")).unwrap();
    let (pv, loads, ev, ci) = (
        read("pv.csv"),
        read("loads.csv"),
        read("ev-sessions.csv"),
        read("carbon-intensity.csv"),
    );
    let files = DayFiles {
        pv: InputFile {
            name: "pv.csv",
            bytes: &pv,
        },
        loads: InputFile {
            name: "loads.csv",
            bytes: &loads,
        },
        sessions: Some(InputFile {
            name: "ev-sessions.csv",
            bytes: &ev,
        }),
        carbon: Some(InputFile {
            name: "carbon-intensity.csv",
            bytes: &ci,
        }),
        prices: None,
    };
    let d = load_day_inputs(&park(), day(), files).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(d.len(), 96);
    assert!(!d.sessions.is_empty());
    assert!(d.pv_total().iter().all(|x| *x >= 0.0));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Arbitrary bytes in any input file: located errors, never a panic.
        #[test]
        fn arbitrary_files_never_panic(a in proptest::collection::vec(any::<u8>(), 0..600),
                                       b in "[0-9a-z:+T,.\\n -]{0,600}") {
            let good_pv = pv(|_| {});
            let good_loads = loads();
            for (pv_bytes, loads_bytes, ev) in [
                (a.as_slice(), good_loads.as_bytes(), None),
                (good_pv.as_bytes(), b.as_bytes(), None),
                (good_pv.as_bytes(), good_loads.as_bytes(), Some(b.as_bytes())),
                (good_pv.as_bytes(), good_loads.as_bytes(), Some(a.as_slice())),
            ] {
                let files = DayFiles {
                    pv: InputFile { name: "pv.csv", bytes: pv_bytes },
                    loads: InputFile { name: "loads.csv", bytes: loads_bytes },
                    sessions: ev.map(|bytes| InputFile { name: "ev-sessions.csv", bytes }),
                    carbon: None,
                    prices: None,
                };
                if let Err(diags) = load_day_inputs(&park(), day(), files) {
                    prop_assert!(!diags.is_empty());
                    for d in diags {
                        prop_assert!(d.line >= 1 && d.column >= 1 && d.hint.is_some(), "{}", d);
                    }
                }
            }
        }

        /// A corrupted line anywhere in pv.csv is reported on that line or a neighbour (a dropped
        /// row shows as a gap on the next line, or as missing data after the previous one).
        #[test]
        fn a_corrupted_row_is_reported_on_its_line(row in 1usize..97, junk in "[a-z0-9,:.+-]{0,40}") {
            let text = pv(|l| l[row] = junk.clone());
            if let Err(diags) = run(&text, &loads(), None) {
                prop_assert!(diags.iter().any(|d| (row..=row + 2).contains(&d.line)),
                    "{:?}", diags.iter().map(|d| d.to_string()).collect::<Vec<_>>());
            }
        }
    }
}
