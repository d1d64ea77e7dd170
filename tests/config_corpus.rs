//! Data-driven tests of the park file reader: every file under `tests/data/broken/` ends with
//! `# expect: LINE:COL: SEVERITY: MESSAGE` lines, and the reader must report exactly those
//! diagnostics, in that order, each with a hint. Add a case by adding a file.

use std::fs;
use std::path::Path;

use pedf_core::config::load_park;

fn expectations(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_broken_file_reports_exactly_its_expected_problems() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken");
    let mut cases = 0;
    let mut failures = Vec::new();
    for entry in fs::read_dir(&dir).expect("tests/data/broken exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        cases += 1;
        let bytes = fs::read(&path).expect("readable file");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = expectations(&bytes);
        assert!(!expected.is_empty(), "{name} has no `# expect:` lines");
        let loaded = load_park(&name, &bytes);
        assert!(
            loaded.value.is_none(),
            "{name}: a broken file must not yield a park"
        );
        let got: Vec<String> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                let full = d.to_string();
                let first = full.lines().next().unwrap_or_default().to_string();
                first
                    .strip_prefix(&format!("{name}:"))
                    .unwrap_or(&first)
                    .to_string()
            })
            .collect();
        for d in &loaded.diagnostics {
            assert!(d.hint.is_some(), "{name}: diagnostic without a hint: {d}");
            assert!(d.line >= 1 && d.column >= 1, "{name}: bad location: {d}");
        }
        if got != expected {
            failures.push(format!(
                "{name}\n  expected:\n    {}\n  got:\n    {}",
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(
        cases >= 10,
        "only {cases} broken files found in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_files_load_without_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in ["tests/data/valid/minimal.toml", "config/qingzhou-pedf.toml"] {
        let bytes = fs::read(root.join(rel)).expect("readable");
        let loaded = load_park(rel, &bytes);
        let rendered: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(loaded.value.is_some(), "{rel}: {}", rendered.join("\n"));
        assert!(
            rendered.is_empty(),
            "{rel} should have no warnings: {rendered:?}"
        );
    }
}

#[test]
fn the_reference_park_has_the_figures_of_product_md() {
    use chrono::NaiveDate;
    use pedf_core::tariff::PeriodKind;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = fs::read(root.join("config/qingzhou-pedf.toml")).expect("readable");
    let park = load_park("qingzhou-pedf.toml", &bytes)
        .value
        .expect("reference park is valid");
    assert_eq!(park.clock.tz.name(), "Asia/Shanghai");
    assert_eq!(park.clock.interval.minutes(), 15);
    assert!((park.pv_peak_power().0 - 2000.0).abs() < 1e-9);
    assert!((park.battery_capacity().0 - 2000.0).abs() < 1e-9);
    assert_eq!(park.converter.rating.0, 1500.0);
    assert_eq!(park.ev_chargers.len(), 20);
    assert_eq!(park.ev_chargers[0].id, "ev-01");
    assert_eq!(park.ev_chargers[19].id, "ev-20");
    let base: f64 = park.fixed_loads.iter().map(|l| l.base.0).sum();
    let peak: f64 = park.fixed_loads.iter().map(|l| l.peak.0).sum();
    assert_eq!((base, peak), (300.0, 700.0));
    // DOMAIN.md's illustrative Shandong day, in local time.
    let at = |m, h, min| {
        NaiveDate::from_ymd_opt(2026, m, 15)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    };
    let price = |m, h, min| park.tariff.import_price_at(at(m, h, min)).unwrap().0;
    assert_eq!(price(6, 12, 0), 0.20);
    assert_eq!(
        park.tariff.period_at(at(6, 12, 0)),
        Some(PeriodKind::DeepValley)
    );
    assert_eq!(price(6, 19, 30), 1.25);
    assert_eq!(price(6, 17, 0), 1.05);
    assert_eq!(price(6, 8, 0), 0.65);
    assert_eq!(price(6, 23, 45), 0.32);
    assert_eq!(price(1, 12, 0), 0.32, "no deep valley in winter");
    assert_eq!(park.tariff.export_price.0, 0.3949);
    // Every quarter hour of every month has a price.
    for m in 1..=12 {
        for q in 0..96 {
            assert!(park
                .tariff
                .import_price_at(at(m, q / 4, (q % 4) * 15))
                .is_some());
        }
    }
    assert_eq!(park.carbon.grid_factor.value.0, 0.6361);
}
