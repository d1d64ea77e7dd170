//! The layering ARCHITECTURE.md states, held by the crates' manifests: the domain and adapter
//! crates know pedf-core and no other pedf crate; the server knows core and the store; the
//! simulated devices know no pedf crate; the applications (pedf-runtime, pedf-sim) are where
//! the others meet. Tests of a domain or adapter crate build at most the simulated devices
//! besides what the crate itself knows: never an application (no dependency cycle through a
//! test, no optimiser built for a device test).

use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pedf crates each crate's `[dependencies]` name.
fn pedf_dependencies() -> BTreeMap<String, Vec<String>> {
    pedf_crates_in("dependencies")
}

/// The pedf crates each crate's `table` (`dependencies`, `dev-dependencies`) names.
fn pedf_crates_in(table: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("{ROOT}/crates")).unwrap() {
        let dir = entry.unwrap().path();
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        let deps = manifest
            .get(table)
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

/// What each domain and adapter crate may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
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
    ("pedf-iec104", &[]),
    ("pedf-sim-devices", &[]),
];

#[test]
fn domain_and_adapter_crates_know_only_the_core() {
    let deps = pedf_dependencies();
    let allowed = ALLOWED;
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

#[test]
fn tests_of_domain_and_adapter_crates_build_no_application() {
    let dev = pedf_crates_in("dev-dependencies");
    for (krate, may) in ALLOWED {
        let extra: Vec<_> = dev
            .get(*krate)
            .into_iter()
            .flatten()
            .filter(|d| !may.contains(&d.as_str()) && d.as_str() != "pedf-sim-devices")
            .collect();
        assert!(
            extra.is_empty(),
            "{krate}'s tests depend on {extra:?}: a test of the whole EMS belongs to pedf-runtime"
        );
    }
}
