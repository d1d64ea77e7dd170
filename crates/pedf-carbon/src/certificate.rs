//! Verifiable carbon-reduction certificates: content, canonical form, ed25519 signature,
//! recomputation from the records, the hash-chained ledger, and rendering.
//!
//! The signature covers the canonical JSON of the certificate without its `signature` field:
//! object keys sorted at every level, no whitespace, numbers as serde_json writes them
//! (shortest round-trip). Figures are rounded before signing (kWh to 1 Wh, kg to 1 g), so a
//! recomputation from the same records gives the same numbers.
//!
//! These certificates are the park's own verifiable statements in the style of ISO 14064-2;
//! they are not CCER credits or tradable offsets (distributed PV is not admitted to CCER,
//! NEA/MEE 2024 No. 124), and the certificate says so.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::account::{account, Accounting, Options};
use crate::merkle::{hex, merkle_root, sha256_hex, unhex};
use crate::records::IntervalRecord;

pub const FORMAT: &str = "pedf-certificate/1";
pub const METHODOLOGY: &str = "pedf park carbon statement";
pub const METHODOLOGY_VERSION: &str = "1.0";

/// The park a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkIdentity {
    pub id: String,
    pub name: String,
    pub name_zh: Option<String>,
    pub owner: Option<String>,
    pub latitude_deg: f64,
    pub longitude_deg: f64,
    pub pv_kwp: f64,
    pub battery_kwh: f64,
    pub time_zone: String,
    pub interval_minutes: u32,
}

/// The period, half-open, in RFC 3339 with the park's offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub from: String,
    pub to: String,
}

/// How the figures were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Methodology {
    pub name: String,
    pub version: String,
    pub references: Vec<String>,
    pub allocation: String,
    pub claim_status: String,
    /// Parameters of the calculation, so it can be repeated.
    pub round_trip_efficiency: f64,
    pub initial_battery_kwh: f64,
    pub grid_cfe_share: f64,
    pub covered_mwh: f64,
}

/// A factor used, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorUsed {
    /// `location`, `residual` or `baseline`.
    pub role: String,
    pub value_kg_per_kwh: f64,
    pub description: String,
}

/// Monitored quantities, MWh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitored {
    pub pv_generated_mwh: f64,
    pub pv_self_consumed_mwh: f64,
    pub pv_exported_mwh: f64,
    pub grid_import_mwh: f64,
    pub grid_export_mwh: f64,
    pub battery_charged_mwh: f64,
    pub battery_discharged_mwh: f64,
    pub consumption_mwh: f64,
    pub losses_mwh: f64,
}

/// Emissions and reductions, t CO2 (to the kg).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    pub scope2_location_based_t: f64,
    pub scope2_market_based_t: f64,
    /// Baseline emissions of the PV generation (BE = EG x EF).
    pub baseline_emissions_t: f64,
    pub project_emissions_t: f64,
    pub leakage_t: f64,
    /// ER = BE - PE - LE.
    pub emission_reductions_t: f64,
    /// ER rounded down to whole tonnes: the figure claimed.
    pub certified_reductions_t: f64,
    pub park_intensity_kg_per_kwh: f64,
    pub self_sufficiency: f64,
    pub cfe_score: f64,
}

/// How complete the data was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataQuality {
    pub intervals_expected: usize,
    pub intervals_recorded: usize,
    pub coverage: f64,
    pub estimated_intervals: usize,
    pub estimation_rule: String,
    pub first_gaps: Vec<String>,
}

/// The records the figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsDigest {
    pub count: usize,
    pub merkle_root: String,
    pub leaf_rule: String,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    pub algorithm: String,
    pub public_key: String,
}

/// A carbon-reduction certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub format: String,
    pub serial: String,
    pub issued_at: String,
    pub park: ParkIdentity,
    pub period: Period,
    pub methodology: Methodology,
    pub factors: Vec<FactorUsed>,
    pub monitored: Monitored,
    pub figures: Figures,
    pub data_quality: DataQuality,
    pub records: RecordsDigest,
    pub issuer: Issuer,
    pub signature: Option<String>,
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (x * f).round() / f;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Canonical JSON: keys sorted at every level, no whitespace.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

impl Certificate {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a certificate serialises");
        if let Value::Object(m) = &mut v {
            m.remove("signature");
        }
        canonical(&v).into_bytes()
    }

    /// The canonical JSON of the whole certificate (signature included).
    pub fn canonical_json(&self) -> String {
        canonical(&serde_json::to_value(self).expect("a certificate serialises"))
    }

    pub fn sign(&mut self, key: &SigningKey) {
        self.issuer = Issuer {
            algorithm: "ed25519".into(),
            public_key: hex(key.verifying_key().as_bytes()),
        };
        self.signature = None;
        let sig = key.sign(&self.signed_bytes());
        self.signature = Some(hex(&sig.to_bytes()));
    }
}

/// What an issue needs besides the records.
pub struct IssueInput<'a> {
    pub serial: String,
    pub issued_at: DateTime<Utc>,
    pub park: ParkIdentity,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub options: &'a Options,
    pub factors: Vec<FactorUsed>,
}

/// The lines the Merkle tree covers: the records inside the period, canonical CSV.
pub fn record_lines(
    records: &[IntervalRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    options: &Options,
) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .map(|r| r.canonical_line(&options.clock))
        .collect()
}

fn figures_of(a: &Accounting) -> (Monitored, Figures) {
    let t = &a.totals;
    let mwh = |kwh: f64| round(kwh / 1000.0, 6);
    let tonnes = |kg: f64| round(kg / 1000.0, 6);
    let self_consumed = t.flows[0][0] + t.flows[0][1] + t.flows[0][2];
    let er = tonnes(t.avoided_pv_kg);
    (
        Monitored {
            pv_generated_mwh: mwh(t.pv_kwh),
            pv_self_consumed_mwh: mwh(self_consumed),
            pv_exported_mwh: mwh(t.flows[0][3]),
            grid_import_mwh: mwh(t.grid_import_kwh),
            grid_export_mwh: mwh(t.grid_export_kwh),
            battery_charged_mwh: mwh(t.battery_charge_kwh),
            battery_discharged_mwh: mwh(t.battery_discharge_kwh),
            consumption_mwh: mwh(t.consumption_kwh),
            losses_mwh: mwh(t.losses_kwh),
        },
        Figures {
            scope2_location_based_t: tonnes(t.location_kg),
            scope2_market_based_t: tonnes(t.market_kg),
            baseline_emissions_t: er,
            project_emissions_t: 0.0,
            leakage_t: 0.0,
            emission_reductions_t: er,
            certified_reductions_t: er.floor(),
            park_intensity_kg_per_kwh: round(t.park_intensity, 6),
            self_sufficiency: round(t.self_sufficiency, 6),
            cfe_score: round(t.cfe_score, 6),
        },
    )
}

/// Builds (unsigned) the certificate of a period.
pub fn build(records: &[IntervalRecord], input: IssueInput) -> Certificate {
    let o = input.options;
    let a = account(records, input.from, input.to, o);
    let (monitored, figures) = figures_of(&a);
    let lines = record_lines(records, input.from, input.to, o);
    let expected = a.totals.intervals;
    Certificate {
        format: FORMAT.into(),
        serial: input.serial,
        issued_at: input.issued_at.to_rfc3339(),
        park: input.park,
        period: Period { from: o.clock.format(input.from), to: o.clock.format(input.to) },
        methodology: Methodology {
            name: METHODOLOGY.into(),
            version: METHODOLOGY_VERSION.into(),
            references: vec![
                "GHG Protocol Scope 2 Guidance (2015): location- and market-based dual reporting".into(),
                "CDM ACM0002 / AMS-I.D, AMS-I.F: ER = BE - PE - LE, BE = EG x EF, PE = LE = 0 for PV".into(),
                "Attributional storage tracking: discharged energy carries the stored intensity".into(),
                "ISO 14064-2 style statement of the park".into(),
            ],
            allocation: "proportional at the DC bus each interval (crates/pedf-carbon/src/account.rs)".into(),
            claim_status: "The park's own verifiable statement; not a CCER credit or tradable offset (distributed PV is not admitted to CCER, NEA/MEE 2024 No. 124). 园区自愿性碳减排声明，非CCER或可交易抵消量。".into(),
            round_trip_efficiency: o.round_trip_efficiency,
            initial_battery_kwh: o.initial_battery_kwh,
            grid_cfe_share: o.grid_cfe_share,
            covered_mwh: o.covered_mwh,
        },
        factors: input.factors,
        monitored,
        figures,
        data_quality: DataQuality {
            intervals_expected: expected,
            intervals_recorded: lines.len(),
            coverage: round(if expected > 0 { lines.len() as f64 / expected as f64 } else { 0.0 }, 6),
            estimated_intervals: a.totals.estimated_intervals,
            estimation_rule: "a missing interval claims no PV and is given the mean grid import of recorded intervals at the same time of day".into(),
            first_gaps: a.gaps.iter().take(20).map(|g| o.clock.format(*g)).collect(),
        },
        records: RecordsDigest {
            count: lines.len(),
            merkle_root: hex(&merkle_root(&lines)),
            leaf_rule: "SHA-256(0x00 || record CSV line), node SHA-256(0x01 || left || right), odd node carried up".into(),
        },
        issuer: Issuer { algorithm: "ed25519".into(), public_key: String::new() },
        signature: None,
    }
}

/// The options a certificate's own parameters and factors give, for recomputation.
pub fn options_of(
    cert: &Certificate,
    clock: pedf_core::time::ParkClock,
) -> Result<Options, String> {
    let factor = |role: &str| {
        cert.factors
            .iter()
            .find(|f| f.role == role)
            .map(|f| f.value_kg_per_kwh)
            .ok_or(format!("the certificate lists no {role} factor"))
    };
    Ok(Options {
        grid_factor: factor("location")?,
        hourly_factors: Default::default(),
        baseline_factor: factor("baseline")?,
        residual_factor: factor("residual")?,
        covered_mwh: cert.methodology.covered_mwh,
        grid_cfe_share: cert.methodology.grid_cfe_share,
        round_trip_efficiency: cert.methodology.round_trip_efficiency,
        initial_battery_kwh: cert.methodology.initial_battery_kwh,
        clock,
    })
}

/// Checks the signature against the embedded public key (and, if given, the expected one).
/// A key's fingerprint as people compare it: the first 16 bytes of SHA-256 of the 32 key
/// bytes, hex in groups of four.
pub fn key_fingerprint(public_key_hex: &str) -> String {
    let bytes = unhex(public_key_hex).unwrap_or_default();
    let digest = crate::merkle::sha256_hex(&bytes);
    digest.as_bytes()[..32]
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn check_signature(cert: &Certificate, expected_key: Option<&str>) -> Result<(), String> {
    if let Some(k) = expected_key {
        if !k.eq_ignore_ascii_case(&cert.issuer.public_key) {
            return Err(format!(
                "signed by key {}, not the expected {k}",
                cert.issuer.public_key
            ));
        }
    }
    let key_bytes: [u8; 32] = unhex(&cert.issuer.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or("issuer.public_key is not a 32-byte hex key")?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| format!("issuer.public_key is not a valid ed25519 key: {e}"))?;
    let sig_hex = cert
        .signature
        .as_deref()
        .ok_or("the certificate is not signed")?;
    let sig_bytes: [u8; 64] = unhex(sig_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or("signature is not 64 bytes of hex")?;
    key.verify(&cert.signed_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "signature does not match: the certificate was changed after it was signed, or signed with another key".to_string())
}

/// Differences between a certificate and a recomputation from records, each named.
pub fn compare_with_data(
    cert: &Certificate,
    records: &[IntervalRecord],
    clock: pedf_core::time::ParkClock,
) -> Result<Vec<String>, String> {
    let options = options_of(cert, clock)?;
    let from = pedf_core::time::parse_rfc3339(&cert.period.from)
        .map_err(|e| format!("period.from: {e}"))?;
    let to =
        pedf_core::time::parse_rfc3339(&cert.period.to).map_err(|e| format!("period.to: {e}"))?;
    let again = build(
        records,
        IssueInput {
            serial: cert.serial.clone(),
            issued_at: Utc::now(),
            park: cert.park.clone(),
            from,
            to,
            options: &options,
            factors: cert.factors.clone(),
        },
    );
    let mut diffs = Vec::new();
    let (a, b) = (
        serde_json::to_value(cert).unwrap_or_default(),
        serde_json::to_value(&again).unwrap_or_default(),
    );
    for section in ["monitored", "figures", "data_quality", "records"] {
        if let (Some(Value::Object(x)), Some(Value::Object(y))) = (a.get(section), b.get(section)) {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if x.get(k) != y.get(k) {
                    diffs.push(format!(
                        "{section}.{k}: the certificate says {}, the data gives {}",
                        x.get(k).map_or("nothing".into(), Value::to_string),
                        y.get(k).map_or("nothing".into(), Value::to_string)
                    ));
                }
            }
        }
    }
    Ok(diffs)
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub seq: u64,
    pub serial: String,
    pub park: String,
    pub from: String,
    pub to: String,
    /// SHA-256 of the certificate's canonical JSON (signature included).
    pub certificate_sha256: String,
    /// `hash` of the entry before (64 zeros for the first).
    pub prev: String,
    /// SHA-256 of this entry's canonical JSON without `hash`.
    pub hash: String,
}

impl LedgerEntry {
    fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).expect("an entry serialises");
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        sha256_hex(canonical(&v).as_bytes())
    }
}

/// Reads and checks a ledger (JSON lines): sequence numbers, the hash chain, each entry's hash.
pub fn read_ledger(text: &str, name: &str) -> Result<Vec<LedgerEntry>, String> {
    let mut out: Vec<LedgerEntry> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: LedgerEntry = serde_json::from_str(line)
            .map_err(|err| format!("{name}:{}: not a ledger entry: {err}", i + 1))?;
        let prev = out.last().map_or("0".repeat(64), |p| p.hash.clone());
        if e.seq != out.len() as u64 + 1 {
            return Err(format!(
                "{name}:{}: entry {} where {} was expected: entries were removed or reordered",
                i + 1,
                e.seq,
                out.len() + 1
            ));
        }
        if e.prev != prev {
            return Err(format!("{name}:{}: entry {} does not follow the entry before it (prev hash differs): the ledger was changed", i + 1, e.seq));
        }
        if e.compute_hash() != e.hash {
            return Err(format!(
                "{name}:{}: entry {} ({}) was changed after it was written",
                i + 1,
                e.seq,
                e.serial
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// The next entry for a certificate.
pub fn next_entry(ledger: &[LedgerEntry], cert: &Certificate) -> LedgerEntry {
    let mut e = LedgerEntry {
        seq: ledger.len() as u64 + 1,
        serial: cert.serial.clone(),
        park: cert.park.id.clone(),
        from: cert.period.from.clone(),
        to: cert.period.to.clone(),
        certificate_sha256: sha256_hex(cert.canonical_json().as_bytes()),
        prev: ledger.last().map_or("0".repeat(64), |p| p.hash.clone()),
        hash: String::new(),
    };
    e.hash = e.compute_hash();
    e
}

/// An issued certificate of the same park whose period overlaps `[from, to)`.
pub fn overlapping<'l>(
    ledger: &'l [LedgerEntry],
    park: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<&'l LedgerEntry> {
    ledger.iter().find(|e| {
        let (Ok(a), Ok(b)) = (
            pedf_core::time::parse_rfc3339(&e.from),
            pedf_core::time::parse_rfc3339(&e.to),
        ) else {
            return false;
        };
        e.park == park && a < to && from < b
    })
}

/// Loads the issuer key, or makes one (mode 0600) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), String> {
    let name = path.display();
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{name}: {e}"))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{name}: the key file is readable by others (mode {mode:o}); chmod 600 it"
                ));
            }
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let bytes: [u8; 32] = unhex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or(format!("{name}: not a 32-byte hex ed25519 secret key"))?;
        return Ok((SigningKey::from_bytes(&bytes), false));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a new key: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{name}: cannot create: {e}"))?;
    f.write_all(hex(&secret).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((SigningKey::from_bytes(&secret), true))
}

/// Writes a file so that it either appears whole under its name or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Appends one line and syncs it.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The certificate as labelled rows (Chinese label, English label, value): what the HTML and
/// PDF renderings show.
pub fn rows(c: &Certificate) -> Vec<(String, String, String)> {
    let m = &c.monitored;
    let f = &c.figures;
    let mut r: Vec<(String, String, String)> = Vec::new();
    let mut add = |zh: &str, en: &str, v: String| r.push((zh.into(), en.into(), v));
    add("证书编号", "Serial", c.serial.clone());
    add(
        "园区",
        "Park",
        format!(
            "{} {} ({})",
            c.park.name_zh.clone().unwrap_or_default(),
            c.park.name,
            c.park.id
        ),
    );
    add("业主", "Owner", c.park.owner.clone().unwrap_or_default());
    add(
        "位置",
        "Location",
        format!(
            "{:.4} N, {:.4} E",
            c.park.latitude_deg, c.park.longitude_deg
        ),
    );
    add(
        "装机",
        "Capacity",
        format!(
            "PV {} kWp, storage {} kWh",
            c.park.pv_kwp, c.park.battery_kwh
        ),
    );
    add(
        "核算期",
        "Period",
        format!("{} – {} ({})", c.period.from, c.period.to, c.park.time_zone),
    );
    add(
        "方法学",
        "Methodology",
        format!(
            "{} {}; {}",
            c.methodology.name, c.methodology.version, c.methodology.allocation
        ),
    );
    for fu in &c.factors {
        add(
            "排放因子",
            &format!("Factor ({})", fu.role),
            fu.description.clone(),
        );
    }
    add(
        "光伏发电量",
        "PV generated",
        format!("{} MWh", m.pv_generated_mwh),
    );
    add(
        "光伏自用",
        "PV self-consumed",
        format!("{} MWh", m.pv_self_consumed_mwh),
    );
    add(
        "光伏上网",
        "PV exported",
        format!("{} MWh", m.pv_exported_mwh),
    );
    add(
        "电网购电",
        "Grid import",
        format!("{} MWh", m.grid_import_mwh),
    );
    add(
        "储能充/放电",
        "Battery charged / discharged",
        format!(
            "{} / {} MWh",
            m.battery_charged_mwh, m.battery_discharged_mwh
        ),
    );
    add(
        "用电量",
        "Consumption",
        format!("{} MWh", m.consumption_mwh),
    );
    add(
        "范围二（基于位置）",
        "Scope 2 location-based",
        format!("{} t CO2", f.scope2_location_based_t),
    );
    add(
        "范围二（基于市场）",
        "Scope 2 market-based",
        format!("{} t CO2", f.scope2_market_based_t),
    );
    add(
        "减排量 ER = BE − PE − LE",
        "Emission reductions",
        format!(
            "{} = {} − {} − {} t CO2e",
            f.emission_reductions_t, f.baseline_emissions_t, f.project_emissions_t, f.leakage_t
        ),
    );
    add(
        "核证减排量（向下取整）",
        "Certified reductions (rounded down)",
        format!("{} t CO2e", f.certified_reductions_t),
    );
    add(
        "数据质量",
        "Data quality",
        format!(
            "{} of {} intervals recorded ({:.2} %), {} estimated: {}",
            c.data_quality.intervals_recorded,
            c.data_quality.intervals_expected,
            c.data_quality.coverage * 100.0,
            c.data_quality.estimated_intervals,
            c.data_quality.estimation_rule
        ),
    );
    add(
        "声明性质",
        "Claim status",
        c.methodology.claim_status.clone(),
    );
    add(
        "数据默克尔根",
        "Records Merkle root",
        format!("{} ({} records)", c.records.merkle_root, c.records.count),
    );
    add("签发时间", "Issued", c.issued_at.clone());
    add(
        "签发公钥 (ed25519)",
        "Issuer public key",
        c.issuer.public_key.clone(),
    );
    add("签名", "Signature", c.signature.clone().unwrap_or_default());
    r
}

/// A bilingual (Chinese and English) HTML rendering. The JSON is the certificate; this is a
/// view of it.
pub fn render_html(c: &Certificate) -> String {
    let mut s = String::new();
    s.push_str("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\n");
    s.push_str(&format!(
        "<title>碳减排证书 Carbon-reduction certificate {}</title>\n",
        esc(&c.serial)
    ));
    s.push_str("<style>body{font-family:sans-serif;max-width:52em;margin:2em auto}table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}th{width:40%;background:#f3f3f3}small{color:#555}td{word-break:break-all}</style></head><body>\n");
    s.push_str(&format!("<h1>碳减排证书<br><small>Carbon-reduction certificate</small></h1>\n<p><b>{}</b></p>\n<table>\n", esc(&c.serial)));
    for (zh, en, v) in rows(c) {
        s.push_str(&format!(
            "<tr><th>{}<br><small>{}</small></th><td>{}</td></tr>\n",
            esc(&zh),
            esc(&en),
            esc(&v)
        ));
    }
    s.push_str("</table>\n<p><small>核验 Verify (签发密钥指纹 issuer key fingerprint ");
    s.push_str(&esc(&key_fingerprint(&c.issuer.public_key)));
    s.push_str("): <code>pedf certificate verify ");
    s.push_str(&esc(&c.serial));
    s.push_str(".json --public-key ");
    s.push_str(&esc(&c.issuer.public_key));
    s.push_str(" --data RECORDS.csv</code><br>只有当该密钥来自签发方公布的渠道时，核验才有意义。 The check means something only with the key from the issuer's published channel, not from this page alone.</small></p>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[3,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn ledger_entries_chain() {
        let cert = Certificate {
            format: FORMAT.into(),
            serial: "P-2026-000001".into(),
            issued_at: "2026-06-22T00:00:00+00:00".into(),
            park: ParkIdentity {
                id: "p".into(),
                name: "P".into(),
                name_zh: None,
                owner: None,
                latitude_deg: 0.0,
                longitude_deg: 0.0,
                pv_kwp: 1.0,
                battery_kwh: 0.0,
                time_zone: "UTC".into(),
                interval_minutes: 15,
            },
            period: Period {
                from: "2026-06-21T00:00:00+00:00".into(),
                to: "2026-06-22T00:00:00+00:00".into(),
            },
            methodology: Methodology {
                name: METHODOLOGY.into(),
                version: METHODOLOGY_VERSION.into(),
                references: vec![],
                allocation: String::new(),
                claim_status: String::new(),
                round_trip_efficiency: 1.0,
                initial_battery_kwh: 0.0,
                grid_cfe_share: 0.0,
                covered_mwh: 0.0,
            },
            factors: vec![],
            monitored: Monitored {
                pv_generated_mwh: 1.0,
                pv_self_consumed_mwh: 1.0,
                pv_exported_mwh: 0.0,
                grid_import_mwh: 0.0,
                grid_export_mwh: 0.0,
                battery_charged_mwh: 0.0,
                battery_discharged_mwh: 0.0,
                consumption_mwh: 1.0,
                losses_mwh: 0.0,
            },
            figures: Figures {
                scope2_location_based_t: 0.0,
                scope2_market_based_t: 0.0,
                baseline_emissions_t: 0.6,
                project_emissions_t: 0.0,
                leakage_t: 0.0,
                emission_reductions_t: 0.6,
                certified_reductions_t: 0.0,
                park_intensity_kg_per_kwh: 0.0,
                self_sufficiency: 1.0,
                cfe_score: 1.0,
            },
            data_quality: DataQuality {
                intervals_expected: 96,
                intervals_recorded: 96,
                coverage: 1.0,
                estimated_intervals: 0,
                estimation_rule: String::new(),
                first_gaps: vec![],
            },
            records: RecordsDigest {
                count: 96,
                merkle_root: "00".repeat(32),
                leaf_rule: String::new(),
            },
            issuer: Issuer {
                algorithm: "ed25519".into(),
                public_key: String::new(),
            },
            signature: None,
        };
        let mut signed = cert.clone();
        signed.sign(&SigningKey::from_bytes(&[7; 32]));
        assert_eq!(check_signature(&signed, None), Ok(()));
        let mut changed = signed.clone();
        changed.monitored.pv_generated_mwh = 2.0;
        assert!(check_signature(&changed, None).is_err());
        let e1 = next_entry(&[], &signed);
        let e2 = next_entry(std::slice::from_ref(&e1), &signed);
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string(&e1).unwrap(),
            serde_json::to_string(&e2).unwrap()
        );
        assert_eq!(read_ledger(&text, "l").unwrap().len(), 2);
        let from = pedf_core::time::parse_rfc3339("2026-06-21T12:00:00Z").unwrap();
        assert!(overlapping(
            std::slice::from_ref(&e1),
            "p",
            from,
            from + chrono::Duration::hours(1)
        )
        .is_some());
        assert!(
            overlapping(&[e1], "other-park", from, from + chrono::Duration::hours(1)).is_none()
        );
    }
}
