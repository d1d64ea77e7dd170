//! Fuzz-style tests of the park file reader: whatever bytes it is given, it returns located
//! diagnostics and never panics.

use std::path::Path;

use pedf_core::config::load_park;
use proptest::prelude::*;

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/qingzhou-pedf.toml");
    std::fs::read_to_string(path).expect("reference park readable")
}

/// Loads bytes and checks every diagnostic points inside the file (or just past its end).
fn check_located(bytes: &[u8]) -> usize {
    let loaded = load_park("fuzz.toml", bytes);
    let text = String::from_utf8_lossy(bytes);
    let lines = text.split('\n').count();
    for d in &loaded.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "line out of range: {d}");
        assert!(d.column >= 1, "column out of range: {d}");
        assert!(d.hint.is_some(), "no hint: {d}");
        assert!(d.to_string().starts_with("fuzz.toml:"), "no file name: {d}");
    }
    if loaded.value.is_none() {
        assert!(loaded.has_errors(), "no park but no error either");
    }
    loaded.diagnostics.len()
}

#[test]
fn every_truncation_of_the_reference_park_is_reported_not_panicked() {
    let text = reference();
    let mut rejected = 0;
    for (cut, _) in text.char_indices().step_by(3) {
        let loaded = load_park("cut.toml", &text.as_bytes()[..cut]);
        if loaded.value.is_none() {
            rejected += 1;
            assert!(loaded.has_errors());
        }
        check_located(&text.as_bytes()[..cut]);
    }
    assert!(rejected > 0);
}

#[test]
fn the_empty_file_names_every_missing_section() {
    let loaded = load_park("empty.toml", b"");
    let messages: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    for section in ["park", "dc_bus", "grid", "converter", "tariff", "carbon"] {
        assert!(
            messages.iter().any(|m| m.contains(&format!("[{section}]"))),
            "{section} not reported: {messages:?}"
        );
    }
}

const NASTY: &[&str] = &[
    "nan",
    "-nan",
    "inf",
    "-inf",
    "1e400",
    "-1e309",
    "99999999999999999999999",
    "-9223372036854775808",
    "0x7FFFFFFFFFFFFFFF",
    "1e15",
    "-0",
    "0",
    "\"\"",
    "\"text\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "true",
    "1979-05-27T07:32:00Z",
    "'''",
    "\"\\u0000\"",
    "\"24:00\"",
    "\"99:99\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_located(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[\\[\\]a-z_=\"0-9.\\n #{},-]{0,400}") {
        check_located(text.as_bytes());
    }

    #[test]
    fn a_nasty_value_anywhere_is_located(line_pick in any::<prop::sample::Index>(), value in prop::sample::select(NASTY)) {
        let text = reference();
        let lines: Vec<&str> = text.lines().collect();
        let assignments: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(" = ") && !l.trim_start().starts_with('{'))
            .map(|(i, _)| i)
            .collect();
        let target = assignments[line_pick.index(assignments.len())];
        let key = lines[target].split(" = ").next().unwrap_or_default();
        let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        out[target] = format!("{key} = {value}");
        let mutated = out.join("\n");
        let n = check_located(mutated.as_bytes());
        let loaded = load_park("fuzz.toml", mutated.as_bytes());
        // A wrong value either still reads as a valid park or is reported on its own line
        // (except an opened multi-line string, which runs on until its error further down, and
        // a changed id, which is legal in itself but leaves the meters that cite it dangling).
        if loaded.has_errors() && value != "'''" && key.trim() != "id" {
            prop_assert!(n > 0);
            // Cross-field problems (base above peak) may sit on a neighbour in the same table.
            let header = |i: &usize| out[*i].trim_start().starts_with('[');
            let first = (0..=target).rev().find(header).unwrap_or(0) + 1;
            let last = (target + 1..out.len()).find(header).unwrap_or(out.len());
            prop_assert!(
                loaded.diagnostics.iter().any(|d| d.line >= first && d.line <= last),
                "nothing reported on line {} ({}): {:?}", target + 1, out[target],
                loaded.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_random_byte_inserted_anywhere_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = reference().into_bytes();
        let at = pos.index(bytes.len() + 1);
        bytes.insert(at, byte);
        check_located(&bytes);
    }

    #[test]
    fn a_deleted_line_never_panics(pos in any::<prop::sample::Index>()) {
        let text = reference();
        let lines: Vec<&str> = text.lines().collect();
        let drop = pos.index(lines.len());
        let kept: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, l)| *l).collect();
        check_located(kept.join("\n").as_bytes());
    }
}
