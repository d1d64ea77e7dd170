//! The layering ARCHITECTURE.md states, held by the crates' manifests: the domain and adapter
//! crates know pedf-core and no other pedf crate; the server knows core and the store; the
//! simulated devices know no pedf crate; the applications (pedf-runtime, pedf-sim) are where
//! the others meet. Dev-dependencies (tests' harnesses) are not layering.

use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pedf crates each crate's `[dependencies]` name.
fn pedf_dependencies() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("{ROOT}/crates")).unwrap() {
        let dir = entry.unwrap().path();
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        let deps = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| {
                t.keys()
                    .filter(|k| k.starts_with("pedf-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn domain_and_adapter_crates_know_only_the_core() {
    let deps = pedf_dependencies();
    let allowed: &[(&str, &[&str])] = &[
        ("pedf-core", &[]),
        ("pedf-forecast", &["pedf-core"]),
        ("pedf-dispatch", &["pedf-core"]),
        ("pedf-control", &["pedf-core"]),
        ("pedf-carbon", &["pedf-core"]),
        ("pedf-devices", &["pedf-core"]),
        ("pedf-store", &["pedf-core"]),
        ("pedf-influx", &["pedf-core"]),
        ("pedf-report", &["pedf-core"]),
        ("pedf-server", &["pedf-core", "pedf-store"]),
        ("pedf-sim-devices", &[]),
    ];
    for (krate, may) in allowed {
        let have = deps
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate}: no such crate under crates/"));
        let extra: Vec<_> = have.iter().filter(|d| !may.contains(&d.as_str())).collect();
        assert!(
            extra.is_empty(),
            "{krate} depends on {extra:?}: only {may:?} (ARCHITECTURE.md, Invariants)"
        );
    }
    // Every crate is placed: a new one is added to the list above or to the applications.
    let applications = ["pedf-runtime", "pedf-sim"];
    for krate in deps.keys() {
        assert!(
            applications.contains(&krate.as_str()) || allowed.iter().any(|(k, _)| k == krate),
            "{krate}: not placed in the layering"
        );
    }
}
