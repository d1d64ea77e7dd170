//! Verifiable carbon-reduction statements: content, canonical form, ed25519 signature,
//! recomputation from the records, the hash-chained ledger, and rendering.
//!
//! **Format 2** (`pedf-certificate/2`): the signature covers the RFC 8785 (JCS) canonical JSON
//! of the certificate without its `signature` member ([`crate::jcs`]), so any JCS
//! implementation reproduces the signed bytes. Figures are rounded before signing (MWh to
//! 1 kWh... 1e-6 MWh, t to 1 g... 1e-6 t), so a recomputation from the same records gives the
//! same numbers. **Format 1** (`pedf-certificate/1`, methodology 1.0: avoided emissions on
//! gross PV at the DC bus) used pedf's own canonical form (sorted keys, serde_json numbers);
//! such certificates still verify by that rule and are reported as version 1.
//!
//! These are the park's own verifiable statements in the style of ISO 14064-2; they are not
//! CCER credits or tradable offsets (distributed PV is not admitted to CCER, NEA/MEE 2024
//! No. 124), and the certificate says so in both languages.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::account::{account, Accounting, Options};
use crate::merkle::{hex, merkle_root, sha256_hex, unhex};
use crate::records::IntervalRecord;

/// The format written now.
pub const FORMAT: &str = "pedf-certificate/2";
/// The first format: pedf's own canonical JSON, methodology 1.0 (gross PV).
pub const FORMAT_V1: &str = "pedf-certificate/1";
pub const METHODOLOGY: &str = "pedf park carbon statement";
pub const METHODOLOGY_VERSION: &str = "2.0";

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

/// How the figures were made: references, rules and every parameter, so anyone can repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Methodology {
    pub name: String,
    pub version: String,
    pub references: Vec<String>,
    pub allocation: String,
    /// What EG, the net delivered electricity, counts.
    pub net_delivered_rule: String,
    pub project_emissions_rule: String,
    pub leakage_rule: String,
    pub green_certificate_rule: String,
    pub rounding: String,
    pub claim_status: String,
    /// How the batteries' carbon was kept: one store per battery, or pooled.
    pub storage_rule: String,
    /// Each battery's carbon-store parameters.
    pub batteries: Vec<BatteryUsed>,
    pub grid_cfe_share: f64,
    /// MWh of grid import covered by instruments the park holds (market-based Scope 2).
    pub covered_import_mwh: f64,
}

/// A battery's carbon-store parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryUsed {
    pub id: String,
    /// Bus to bus.
    pub round_trip_efficiency: f64,
    /// Energy in it at the start, kWh (taken at the grid factor, with no PV in it).
    pub initial_kwh: f64,
}

/// A factor used, with its provenance and what it is applied to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorUsed {
    /// `location`, `residual` or `baseline`.
    pub role: String,
    /// The figure it is used for.
    pub applies_to: String,
    pub value_kg_per_kwh: f64,
    pub description: String,
}

/// Where a monitored quantity is measured, and by which meters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterUsed {
    pub quantity: String,
    pub point: String,
    /// Meter ids of the park file; empty when the quantity is the balance of the others.
    pub meters: Vec<String>,
}

/// Monitored quantities, MWh. Where each is measured is in [`Certificate::meters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitored {
    /// PV energy delivered to the DC bus (gross generation of the plant).
    pub pv_generated_dc_bus_mwh: f64,
    /// PV delivered to the park's loads and cars, directly or out of the battery.
    pub pv_delivered_on_site_mwh: f64,
    /// PV delivered to the grid at the grid meter (AC, after the converter).
    pub pv_delivered_grid_meter_mwh: f64,
    /// PV lost in the grid converter on the export path.
    pub pv_converter_losses_mwh: f64,
    /// PV lost in the battery's round trip.
    pub pv_storage_losses_mwh: f64,
    /// PV still in the battery at the end (charged energy), not credited.
    pub pv_in_storage_at_end_mwh: f64,
    /// Grid import that fed only the conversion (the plant's auxiliary consumption).
    pub auxiliary_import_mwh: f64,
    /// EG = on site + grid meter - auxiliary.
    pub net_delivered_mwh: f64,
    /// MWh of EG whose green certificates were issued: subtracted from the claim.
    pub green_certificate_mwh: f64,
    /// EG - green-certificate MWh: what the baseline emissions are counted on.
    pub claimed_mwh: f64,
    pub grid_import_mwh: f64,
    pub grid_export_mwh: f64,
    pub battery_charged_mwh: f64,
    pub battery_discharged_mwh: f64,
    pub consumption_mwh: f64,
    /// All conversion losses closing the bus balance (import side too).
    pub converter_losses_mwh: f64,
}

/// Green certificates (绿证) of one calendar month the period touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreenCertificateMonth {
    /// `YYYY-MM`, the park's local month.
    pub month: String,
    /// MWh covered by green certificates issued for the park's PV that month (1 per MWh).
    pub mwh: f64,
    /// `none declared`, or as declared: issued, held, sold, cancelled.
    pub status: String,
    /// The issuing record or transaction, as declared.
    pub reference: String,
    /// The period's net delivered electricity in that month, MWh.
    pub net_delivered_mwh: f64,
    /// What is subtracted from the claim: the month's MWh, at most the period's EG in it.
    pub subtracted_mwh: f64,
}

/// Green certificates declared for a month (input of an issue).
#[derive(Debug, Clone, PartialEq)]
pub struct GreenCertificates {
    pub month: String,
    pub mwh: f64,
    pub status: String,
    pub reference: String,
}

/// Emissions and reductions, t CO2 (to the gram).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    pub scope2_location_based_t: f64,
    pub scope2_market_based_t: f64,
    /// BE = claimed MWh x baseline factor.
    pub baseline_emissions_t: f64,
    pub project_emissions_t: f64,
    pub leakage_t: f64,
    /// ER = BE - PE - LE.
    pub emission_reductions_t: f64,
    /// ER rounded down to whole tonnes (0 if negative): the figure the statement claims.
    pub stated_reductions_t: f64,
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

/// A carbon-reduction statement (format 2).
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
    pub meters: Vec<MeterUsed>,
    pub monitored: Monitored,
    pub green_certificates: Vec<GreenCertificateMonth>,
    pub figures: Figures,
    pub data_quality: DataQuality,
    pub records: RecordsDigest,
    pub issuer: Issuer,
    pub signature: Option<String>,
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (x * f).round() / f;
    // Never a negative zero where a person reads the figure.
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// A figure as people read it: shortest digits, never `-0`.
pub fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        crate::jcs::number(x).unwrap_or_else(|_| x.to_string())
    }
}

/// Format 1's canonical JSON: keys sorted at every level (by bytes), no whitespace, numbers as
/// serde_json writes them (`12.0`). Only for checking version-1 certificates.
pub fn canonical_v1(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_v1(&map[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical_v1).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The canonical text of a certificate (any format) as JSON: JCS for format 2, format 1's own
/// rule for format 1.
pub fn canonical_text(cert: &Value) -> Result<String, String> {
    match cert.get("format").and_then(Value::as_str) {
        Some(FORMAT_V1) => Ok(canonical_v1(cert)),
        Some(FORMAT) => crate::jcs::canonicalize(cert),
        Some(other) => Err(format!(
            "format `{other}` is not one this version reads ({FORMAT_V1}, {FORMAT})"
        )),
        None => Err("no `format` member: not a pedf certificate".into()),
    }
}

/// The bytes the signature of a certificate (any format) covers: its canonical text without
/// the `signature` member.
pub fn signed_bytes_of(cert: &Value) -> Result<Vec<u8>, String> {
    let mut v = cert.clone();
    if let Value::Object(m) = &mut v {
        m.remove("signature");
    }
    canonical_text(&v).map(String::into_bytes)
}

impl Certificate {
    fn value(&self) -> Value {
        serde_json::to_value(self).expect("a certificate serialises")
    }

    /// The bytes the signature covers (RFC 8785 canonical JSON without `signature`).
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes_of(&self.value()).expect("a format-2 certificate has finite figures")
    }

    /// The canonical JSON of the whole certificate (signature included): the file's content.
    pub fn canonical_json(&self) -> String {
        canonical_text(&self.value()).expect("a format-2 certificate has finite figures")
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
    pub meters: Vec<MeterUsed>,
    pub green_certificates: Vec<GreenCertificates>,
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

/// The green certificates of each month the period touches, matched against the period's net
/// delivered electricity of that month.
fn green_months(
    a: &Accounting,
    declared: &[GreenCertificates],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    o: &Options,
) -> Vec<GreenCertificateMonth> {
    let mut months: Vec<String> = Vec::new();
    let mut t = from;
    while t < to {
        let m = o.clock.local(t).format("%Y-%m").to_string();
        if months.last() != Some(&m) {
            months.push(m);
        }
        t += o.clock.interval.duration();
    }
    months
        .into_iter()
        .map(|m| {
            let net_mwh = a
                .totals
                .net_delivered_by_month
                .get(&m)
                .copied()
                .unwrap_or(0.0)
                / 1000.0;
            let (mwh, status, reference) = declared
                .iter()
                .find(|g| g.month == m)
                .map(|g| (g.mwh, g.status.clone(), g.reference.clone()))
                .unwrap_or((0.0, "none declared".into(), String::new()));
            GreenCertificateMonth {
                month: m,
                mwh: round(mwh, 6),
                status,
                reference,
                net_delivered_mwh: round(net_mwh, 6),
                subtracted_mwh: round(mwh.min(net_mwh.max(0.0)), 6),
            }
        })
        .collect()
}

fn figures_of(
    a: &Accounting,
    green: &[GreenCertificateMonth],
    baseline: f64,
) -> (Monitored, Figures) {
    let t = &a.totals;
    let mwh = |kwh: f64| round(kwh / 1000.0, 6);
    let tonnes = |kg: f64| round(kg / 1000.0, 6);
    let net_kwh = t.pv_onsite_kwh + t.pv_export_kwh - t.aux_import_kwh;
    let gec_mwh: f64 = green.iter().map(|g| g.subtracted_mwh).sum();
    let claimed_kwh = net_kwh - gec_mwh * 1000.0;
    // BE on the claimed energy: the accountant's EG x EF less the green-certificate MWh x EF.
    let be = tonnes(t.avoided_pv_kg - gec_mwh * 1000.0 * baseline);
    (
        Monitored {
            pv_generated_dc_bus_mwh: mwh(t.pv_kwh),
            pv_delivered_on_site_mwh: mwh(t.pv_onsite_kwh),
            pv_delivered_grid_meter_mwh: mwh(t.pv_export_kwh),
            pv_converter_losses_mwh: mwh(t.flows[0][4]),
            pv_storage_losses_mwh: mwh(t.pv_storage_losses_kwh),
            pv_in_storage_at_end_mwh: mwh(t.pv_in_storage_end_kwh),
            auxiliary_import_mwh: mwh(t.aux_import_kwh),
            net_delivered_mwh: mwh(net_kwh),
            green_certificate_mwh: round(gec_mwh, 6),
            claimed_mwh: mwh(claimed_kwh),
            grid_import_mwh: mwh(t.grid_import_kwh),
            grid_export_mwh: mwh(t.grid_export_kwh),
            battery_charged_mwh: mwh(t.battery_charge_kwh),
            battery_discharged_mwh: mwh(t.battery_discharge_kwh),
            consumption_mwh: mwh(t.consumption_kwh),
            converter_losses_mwh: mwh(t.conversion_losses_kwh),
        },
        Figures {
            scope2_location_based_t: tonnes(t.location_kg),
            scope2_market_based_t: tonnes(t.market_kg),
            baseline_emissions_t: be,
            project_emissions_t: 0.0,
            leakage_t: 0.0,
            emission_reductions_t: be,
            stated_reductions_t: be.floor().max(0.0),
            park_intensity_kg_per_kwh: round(t.park_intensity, 6),
            self_sufficiency: round(t.self_sufficiency, 6),
            cfe_score: round(t.cfe_score, 6),
        },
    )
}

/// The rule of the Merkle leaves, as a verifier in another language needs it.
pub const LEAF_RULE: &str = "RFC 6962 Merkle tree hash (SHA-256) over the records inside the period in time order: leaf = SHA-256(0x00 || line), node = SHA-256(0x01 || left || right), the first subtree the largest power of two below n; line = UTF-8 'start,pv_kwh,grid_import_kwh,grid_export_kwh,battery_charge_kwh,battery_discharge_kwh,load_kwh,ev_kwh' with start in RFC 3339 at the park's offset and each energy with exactly 6 decimals, then ',<charger id>=<kWh>' for each charger with energy, by id, then ',charge:<battery id>=<kWh>' and ',discharge:<battery id>=<kWh>' for each battery flow that is not zero, by id (records split by battery only)";

/// Builds (unsigned) the certificate of a period.
pub fn build(records: &[IntervalRecord], input: IssueInput) -> Certificate {
    let o = input.options;
    let a = account(records, input.from, input.to, o);
    let green = green_months(&a, &input.green_certificates, input.from, input.to, o);
    let (monitored, figures) = figures_of(&a, &green, o.baseline_factor);
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
                "CDM ACM0002 (grid-connected renewable generation) and AMS-I.D / AMS-I.F (small-scale renewable electricity, to the grid / for captive use): ER = BE - PE - LE, BE = EG x EF_grid,CM".into(),
                "CDM methodological tool 07 (emission factor of an electricity system): EF_CM = 0.75 EF_OM + 0.25 EF_BM for wind and solar, OM and BM of one publication".into(),
                "GHG Protocol Scope 2 Guidance (2015): location- and market-based dual reporting".into(),
                "Attributional storage tracking: discharged energy carries the stored intensity".into(),
                "ISO 14064-2 style statement of the park; NDRC/MoF/NEA 2023 No. 1044 and NEA 2024 No. 67 on green certificates".into(),
            ],
            allocation: "proportional at the DC bus each interval (crates/pedf-carbon/src/account.rs)".into(),
            net_delivered_rule: "EG = PV delivered to the park's loads and cars (directly, or out of the battery's PV share after its round-trip losses) + PV delivered to the grid at the grid meter (AC, after the converter's losses) - auxiliary imports (grid energy that fed only the conversion); PV left in the battery at the end is not credited; estimated intervals credit nothing".into(),
            project_emissions_rule: "PE = 0: a PV plant burns no fuel and its own grid use is taken off EG as auxiliary imports (ACM0002)".into(),
            leakage_rule: "LE = 0: no equipment is transferred from or to another activity (ACM0002 / AMS-I.D)".into(),
            green_certificate_rule: "MWh of the park's PV covered by green certificates (绿证) issued in a month are subtracted from that month's EG in the period, at most that EG; a period covering part of a month subtracts the month's whole MWh (conservative)".into(),
            rounding: "energies to 1e-6 MWh, masses to 1e-6 t; the stated reductions are ER rounded down to whole tonnes, 0 when ER is negative".into(),
            claim_status: "Self-declared, verifiable statement of the park; not a CCER credit, not certified by a third party, not a tradable offset (distributed PV is not admitted to CCER, NEA/MEE 2024 No. 124). 园区自我声明的可核验碳减排声明：非CCER减排量，未经第三方核证，不可交易或用于抵消。".into(),
            storage_rule: a.storage.rule(o.batteries.len()),
            batteries: o
                .batteries
                .iter()
                .map(|b| BatteryUsed {
                    id: b.id.clone(),
                    round_trip_efficiency: b.round_trip_efficiency,
                    initial_kwh: b.initial_kwh,
                })
                .collect(),
            grid_cfe_share: o.grid_cfe_share,
            covered_import_mwh: o.covered_mwh,
        },
        factors: input.factors,
        meters: input.meters,
        monitored,
        green_certificates: green,
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
            leaf_rule: LEAF_RULE.into(),
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
        covered_mwh: cert.methodology.covered_import_mwh,
        grid_cfe_share: cert.methodology.grid_cfe_share,
        batteries: cert
            .methodology
            .batteries
            .iter()
            .map(|b| crate::account::BatteryParams {
                id: b.id.clone(),
                round_trip_efficiency: b.round_trip_efficiency,
                initial_kwh: b.initial_kwh,
            })
            .collect(),
        clock,
    })
}

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

/// What a certificate file says about itself before any check: its format version, serial,
/// period and issuer key (read from the JSON of any format).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub serial: String,
    pub public_key: String,
}

/// Reads the header of a certificate of any format.
pub fn header(cert: &Value) -> Result<Header, String> {
    let version = match cert.get("format").and_then(Value::as_str) {
        Some(FORMAT_V1) => 1,
        Some(FORMAT) => 2,
        Some(other) => {
            return Err(format!(
                "format `{other}` is not one this version reads ({FORMAT_V1}, {FORMAT})"
            ))
        }
        None => return Err("no `format` member: not a pedf certificate".into()),
    };
    let text = |path: &[&str]| {
        let mut v = cert;
        for p in path {
            v = v.get(*p).ok_or(format!("no `{}` member", path.join(".")))?;
        }
        v.as_str()
            .map(str::to_string)
            .ok_or(format!("`{}` is not a string", path.join(".")))
    };
    Ok(Header {
        version,
        serial: text(&["serial"])?,
        public_key: text(&["issuer", "public_key"])?,
    })
}

/// Checks the signature of a certificate of any format against the key it names (whether that
/// key is trusted is the caller's question).
pub fn check_signature_value(cert: &Value) -> Result<(), String> {
    let h = header(cert)?;
    let key_bytes: [u8; 32] = unhex(&h.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or("issuer.public_key is not a 32-byte hex key")?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| format!("issuer.public_key is not a valid ed25519 key: {e}"))?;
    let sig_hex = cert
        .get("signature")
        .and_then(Value::as_str)
        .ok_or("the certificate is not signed")?;
    let sig_bytes: [u8; 64] = unhex(sig_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or("signature is not 64 bytes of hex")?;
    key.verify(&signed_bytes_of(cert)?, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "signature does not match: the certificate was changed after it was signed, or signed with another key".to_string())
}

/// Checks a format-2 certificate's signature against the key it names.
pub fn check_signature(cert: &Certificate) -> Result<(), String> {
    check_signature_value(&cert.value())
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
            meters: cert.meters.clone(),
            green_certificates: cert
                .green_certificates
                .iter()
                .filter(|g| g.status != "none declared")
                .map(|g| GreenCertificates {
                    month: g.month.clone(),
                    mwh: g.mwh,
                    status: g.status.clone(),
                    reference: g.reference.clone(),
                })
                .collect(),
        },
    );
    let mut diffs = Vec::new();
    let (a, b) = (cert.value(), again.value());
    if a.get("green_certificates") != b.get("green_certificates") {
        diffs.push(format!(
            "green_certificates: the certificate says {}, the data gives {}",
            a["green_certificates"], b["green_certificates"]
        ));
    }
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

/// The Merkle root of a version-1 certificate's records recomputed (the leaf rule did not
/// change): `Ok(true)` when it matches the certificate's.
pub fn v1_records_match(
    cert: &Value,
    records: &[IntervalRecord],
    clock: pedf_core::time::ParkClock,
) -> Result<bool, String> {
    let period = |k: &str| {
        cert.get("period")
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .ok_or(format!("no period.{k}"))
            .and_then(|t| pedf_core::time::parse_rfc3339(t).map_err(|e| format!("period.{k}: {e}")))
    };
    let (from, to) = (period("from")?, period("to")?);
    let lines: Vec<String> = records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .map(|r| r.canonical_line(&clock))
        .collect();
    let root = cert
        .get("records")
        .and_then(|r| r.get("merkle_root"))
        .and_then(Value::as_str)
        .ok_or("no records.merkle_root")?;
    Ok(hex(&merkle_root(&lines)) == root)
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
        sha256_hex(
            crate::jcs::canonicalize(&v)
                .expect("a ledger entry has no number but integers")
                .as_bytes(),
        )
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

/// The ledger held for one issue: an exclusive lock on the ledger file from reading it to
/// appending the new entry, so two issues at once (two processes, or the API and the command
/// line) cannot both read the same ledger and certify one period twice. The operating system
/// releases the lock when the holder ends, also when it crashes.
pub struct LockedLedger {
    file: std::fs::File,
    name: String,
    pub entries: Vec<LedgerEntry>,
}

impl LockedLedger {
    /// Opens (creating it empty if need be), locks (waiting for another holder) and reads the
    /// ledger at `path`.
    pub fn open(path: &Path) -> Result<LockedLedger, String> {
        Self::open_with(path, true)
    }

    /// As [`LockedLedger::open`], but gives up at once when another issue holds the ledger.
    pub fn try_open(path: &Path) -> Result<LockedLedger, String> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, wait: bool) -> Result<LockedLedger, String> {
        use std::io::{Read, Seek};
        let name = path.display().to_string();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("{name}: cannot open the ledger: {e}"))?;
        if wait {
            file.lock()
                .map_err(|e| format!("{name}: cannot lock the ledger: {e}"))?;
        } else {
            file.try_lock().map_err(|e| match e {
                std::fs::TryLockError::WouldBlock => {
                    format!("{name}: another issue holds the ledger; try again")
                }
                std::fs::TryLockError::Error(e) => format!("{name}: cannot lock the ledger: {e}"),
            })?;
        }
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map_err(|e| format!("{name}: cannot read the ledger: {e}"))?;
        let entries = read_ledger(&text, &name)?;
        Ok(LockedLedger {
            file,
            name,
            entries,
        })
    }

    /// Appends the entry of `cert` (synced) and returns it; the lock is kept until `self` is
    /// dropped.
    pub fn append(&mut self, cert: &Certificate) -> Result<LedgerEntry, String> {
        use std::io::Write;
        let entry = next_entry(&self.entries, cert);
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(|e| format!("{}: cannot append to the ledger: {e}", self.name))?;
        self.entries.push(entry.clone());
        Ok(entry)
    }
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
/// PDF renderings show. Figures are written with their shortest digits, never `-0`.
pub fn rows(c: &Certificate) -> Vec<(String, String, String)> {
    let m = &c.monitored;
    let f = &c.figures;
    let mwh = |x: f64| format!("{} MWh", num(x));
    let mut r: Vec<(String, String, String)> = Vec::new();
    let mut add = |zh: &str, en: &str, v: String| r.push((zh.into(), en.into(), v));
    add("声明编号", "Serial", c.serial.clone());
    add(
        "声明性质",
        "Status of this statement",
        c.methodology.claim_status.clone(),
    );
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
            num(c.park.pv_kwp),
            num(c.park.battery_kwh)
        ),
    );
    add(
        "核算期",
        "Period",
        format!("{} – {} ({})", c.period.from, c.period.to, c.park.time_zone),
    );
    let md = &c.methodology;
    add(
        "方法学",
        "Methodology",
        format!("{} {}: {}", md.name, md.version, md.references.join("; ")),
    );
    add(
        "方法参数",
        "Parameters",
        format!(
            "storage: {}{}; initial battery content at the grid factor, no PV; grid import covered by instruments {} MWh; grid carbon-free share {}; allocation {}",
            md.storage_rule,
            md.batteries
                .iter()
                .map(|b| format!(
                    "; {} round trip {}, initially {} kWh",
                    b.id,
                    num(b.round_trip_efficiency),
                    num(b.initial_kwh)
                ))
                .collect::<String>(),
            num(md.covered_import_mwh),
            num(md.grid_cfe_share),
            md.allocation
        ),
    );
    for fu in &c.factors {
        add(
            "排放因子",
            &format!("Factor: {}", fu.applies_to),
            fu.description.clone(),
        );
    }
    for mu in &c.meters {
        add(
            "计量点",
            &format!("Meters: {}", mu.quantity),
            if mu.meters.is_empty() {
                mu.point.clone()
            } else {
                format!("{} ({})", mu.point, mu.meters.join(", "))
            },
        );
    }
    add(
        "光伏发电量（直流母线）",
        "PV generated (DC bus)",
        mwh(m.pv_generated_dc_bus_mwh),
    );
    add(
        "光伏园区内使用",
        "PV delivered on site",
        mwh(m.pv_delivered_on_site_mwh),
    );
    add(
        "光伏上网（关口表，交流）",
        "PV delivered at the grid meter (AC)",
        mwh(m.pv_delivered_grid_meter_mwh),
    );
    add(
        "光伏损耗（变流器 / 储能）",
        "PV losses (converter / storage)",
        format!(
            "{} / {} MWh; {} MWh still in storage at the end, not credited",
            num(m.pv_converter_losses_mwh),
            num(m.pv_storage_losses_mwh),
            num(m.pv_in_storage_at_end_mwh)
        ),
    );
    add(
        "厂用电（购电）",
        "Auxiliary imports",
        mwh(m.auxiliary_import_mwh),
    );
    add(
        "净上网/自用电量 EG",
        "Net delivered electricity EG",
        format!("{} ({})", mwh(m.net_delivered_mwh), md.net_delivered_rule),
    );
    for g in &c.green_certificates {
        add(
            "绿证",
            &format!("Green certificates {}", g.month),
            format!(
                "{} MWh, {}{}; EG of the period in the month {} MWh; subtracted {} MWh",
                num(g.mwh),
                g.status,
                if g.reference.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", g.reference)
                },
                num(g.net_delivered_mwh),
                num(g.subtracted_mwh)
            ),
        );
    }
    add(
        "声明电量（EG − 绿证）",
        "Claimed energy (EG − green certificates)",
        mwh(m.claimed_mwh),
    );
    add(
        "电网购电 / 上网",
        "Grid import / export (grid meter)",
        format!(
            "{} / {} MWh",
            num(m.grid_import_mwh),
            num(m.grid_export_mwh)
        ),
    );
    add(
        "储能充/放电",
        "Battery charged / discharged",
        format!(
            "{} / {} MWh",
            num(m.battery_charged_mwh),
            num(m.battery_discharged_mwh)
        ),
    );
    add(
        "用电量 / 变流器损耗",
        "Consumption / converter losses",
        format!(
            "{} / {} MWh",
            num(m.consumption_mwh),
            num(m.converter_losses_mwh)
        ),
    );
    add(
        "范围二（基于位置）",
        "Scope 2 location-based",
        format!("{} t CO2", num(f.scope2_location_based_t)),
    );
    add(
        "范围二（基于市场）",
        "Scope 2 market-based",
        format!("{} t CO2", num(f.scope2_market_based_t)),
    );
    add(
        "减排量 ER = BE − PE − LE",
        "Emission reductions",
        format!(
            "{} = {} − {} − {} t CO2e (PE: {}; LE: {})",
            num(f.emission_reductions_t),
            num(f.baseline_emissions_t),
            num(f.project_emissions_t),
            num(f.leakage_t),
            md.project_emissions_rule,
            md.leakage_rule
        ),
    );
    add(
        "声明减排量（向下取整）",
        "Reductions stated (rounded down)",
        format!("{} t CO2e", num(f.stated_reductions_t)),
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
        "数据默克尔根",
        "Records Merkle root",
        format!(
            "{} ({} records; {})",
            c.records.merkle_root, c.records.count, c.records.leaf_rule
        ),
    );
    add(
        "图例",
        "Legend",
        "[C] 已在公开来源核实 confirmed in a published source; [S] 仅见于二手来源 seen only in secondary sources; [U] 未核实 unverified".into(),
    );
    add("签发时间", "Issued", c.issued_at.clone());
    add(
        "签发公钥 (ed25519)",
        "Issuer public key",
        format!(
            "{} (fingerprint {})",
            c.issuer.public_key,
            key_fingerprint(&c.issuer.public_key)
        ),
    );
    add(
        "签名（RFC 8785 规范化 JSON）",
        "Signature (over the RFC 8785 canonical JSON)",
        c.signature.clone().unwrap_or_default(),
    );
    r
}

/// A bilingual (Chinese and English) HTML rendering. The JSON is the certificate; this is a
/// view of it.
pub fn render_html(c: &Certificate) -> String {
    let mut s = String::new();
    s.push_str("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\n");
    s.push_str(&format!(
        "<title>碳减排自我声明 Self-declared carbon-reduction statement {}</title>\n",
        esc(&c.serial)
    ));
    s.push_str("<style>body{font-family:sans-serif;max-width:52em;margin:2em auto}table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}th{width:40%;background:#f3f3f3}small{color:#555}td{word-break:break-all}</style></head><body>\n");
    s.push_str(&format!("<h1>碳减排自我声明<br><small>Self-declared carbon-reduction statement (pedf certificate, not CCER)</small></h1>\n<p><b>{}</b></p>\n<table>\n", esc(&c.serial)));
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
    use pedf_core::time::{IntervalLength, ParkClock};

    #[test]
    fn format_1_canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1.0,"a":{"d":[3,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_v1(&v),
            r#"{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1.0}"#
        );
    }

    fn day_certificate() -> Certificate {
        let clock = ParkClock::new(chrono_tz::UTC, IntervalLength::from_minutes(60).unwrap());
        let from = pedf_core::time::parse_rfc3339("2026-06-21T00:00:00Z").unwrap();
        let records: Vec<IntervalRecord> = (0..24)
            .map(|h| IntervalRecord {
                start: from + chrono::Duration::hours(h),
                pv_kwh: if (8..16).contains(&h) { 100.0 } else { 0.0 },
                grid_import_kwh: if (8..16).contains(&h) { 0.0 } else { 10.5 },
                load_kwh: 10.0,
                grid_export_kwh: if (8..16).contains(&h) { 87.3 } else { 0.0 },
                ..Default::default()
            })
            .collect();
        let options = Options {
            grid_factor: 0.6361,
            hourly_factors: Default::default(),
            baseline_factor: 0.8264,
            residual_factor: 0.6096,
            covered_mwh: 0.0,
            grid_cfe_share: 0.0,
            batteries: vec![],
            clock,
        };
        build(
            &records,
            IssueInput {
                serial: "P-2026-000001".into(),
                issued_at: from,
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
                    interval_minutes: 60,
                },
                from,
                to: from + chrono::Duration::days(1),
                options: &options,
                factors: vec![],
                meters: vec![],
                green_certificates: vec![GreenCertificates {
                    month: "2026-06".into(),
                    mwh: 0.5,
                    status: "sold".into(),
                    reference: "GEC-1".into(),
                }],
            },
        )
    }

    #[test]
    fn green_certificates_come_off_the_claim() {
        let c = day_certificate();
        // EG: 8 h x (10 on site + 87.3 exported) = 778.4 kWh; 0.5 MWh of it has green
        // certificates: 0.2784 MWh claimed.
        assert_eq!(c.monitored.net_delivered_mwh, 0.7784);
        assert_eq!(c.monitored.green_certificate_mwh, 0.5);
        assert_eq!(c.monitored.claimed_mwh, 0.2784);
        assert_eq!(c.figures.baseline_emissions_t, round(0.2784 * 0.8264, 6));
        assert_eq!(c.green_certificates.len(), 1);
        assert_eq!(c.green_certificates[0].subtracted_mwh, 0.5);
        assert_eq!(c.figures.stated_reductions_t, 0.0);
        // JCS writes whole numbers without a fraction, and never -0.
        let json = c.canonical_json();
        assert!(json.contains("\"project_emissions_t\":0,"), "{json}");
        assert!(!json.contains("-0,") && !json.contains(":-0}"));
    }

    /// While one issue holds the ledger, no other can read it to append (a thread stands in for
    /// a second process: the lock is the file's, per open file description); once it is
    /// released, the next one sees the entry the first appended.
    #[test]
    fn an_issue_holds_the_ledger_until_it_has_appended() {
        let dir = std::env::temp_dir().join(format!("pedf-ledger-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        let mut signed = day_certificate();
        signed.sign(&SigningKey::from_bytes(&[7; 32]));
        let mut first = LockedLedger::open(&path).unwrap();
        let p = path.clone();
        let blocked = std::thread::spawn(move || LockedLedger::try_open(&p).err())
            .join()
            .unwrap();
        assert!(
            blocked.is_some_and(|e| e.contains("another issue holds the ledger")),
            "a second issue read the ledger while the first held it"
        );
        first.append(&signed).unwrap();
        drop(first);
        let second = LockedLedger::try_open(&path).unwrap();
        assert_eq!(second.entries.len(), 1);
        assert!(overlapping(
            &second.entries,
            "p",
            pedf_core::time::parse_rfc3339("2026-06-21T12:00:00Z").unwrap(),
            pedf_core::time::parse_rfc3339("2026-06-21T13:00:00Z").unwrap()
        )
        .is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signatures_cover_the_canonical_bytes_and_ledger_entries_chain() {
        let mut signed = day_certificate();
        signed.sign(&SigningKey::from_bytes(&[7; 32]));
        assert_eq!(check_signature(&signed), Ok(()));
        let mut changed = signed.clone();
        changed.monitored.pv_generated_dc_bus_mwh = 2.0;
        assert!(check_signature(&changed).is_err());
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
