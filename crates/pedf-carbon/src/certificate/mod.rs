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

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::account::{account, Accounting, Options};
use crate::merkle::{hex, merkle_root};
use crate::records::IntervalRecord;

mod billing;
mod green;
mod issue;
mod ledger;
mod signing;
mod verify;
mod view;

pub use billing::{
    billing_meter, parse_meter_intervals, write_meter_intervals, BillingMeter, MeterInterval,
    BILLING_RULE, METER_INTERVALS_HEADER,
};
pub use green::parse_green_certificates;
pub use verify::{parse_trust_list, Check, Verification};

pub use issue::{
    factors_used, meters_of, CertificateIssuer, IssueError, Issued, Period as IssuePeriod,
    Rendered, DEFAULT_MIN_COVERAGE,
};

pub use ledger::{
    append_line, load_or_create_key, next_entry, overlapping, read_ledger, write_atomic,
    LedgerEntry, LockedLedger,
};
pub use signing::{
    canonical_text, canonical_v1, check_signature, check_signature_value, header, key_fingerprint,
    signed_bytes_of, v1_records_match, Header,
};
pub use view::{closing_lines, num, rows, TITLE};

/// The format written now.
pub const FORMAT: &str = "pedf-certificate/2";
/// The first format: pedf's own canonical JSON, methodology 1.0 (gross PV).
pub const FORMAT_V1: &str = "pedf-certificate/1";
/// The methodology's name, as the certificate states it.
pub const METHODOLOGY: &str = "pedf park carbon statement";
/// The methodology's version (2.0: avoided emissions on net delivered electricity).
pub const METHODOLOGY_VERSION: &str = "2.0";

/// The park a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkIdentity {
    /// The park id.
    pub id: String,
    /// The park's name.
    pub name: String,
    /// Its Chinese name, if the park file gives one.
    pub name_zh: Option<String>,
    /// Its owner, if the park file gives one.
    pub owner: Option<String>,
    /// Latitude, degrees north.
    pub latitude_deg: f64,
    /// Longitude, degrees east.
    pub longitude_deg: f64,
    /// Installed PV, kWp.
    pub pv_kwp: f64,
    /// Battery capacity, kWh.
    pub battery_kwh: f64,
    /// The park's IANA time zone (the records' clock).
    pub time_zone: String,
    /// The records' interval, minutes.
    pub interval_minutes: u32,
}

/// The period, half-open, in RFC 3339 with the park's offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// The period's start, RFC 3339 with the park's offset.
    pub from: String,
    /// The period's end (exclusive), RFC 3339.
    pub to: String,
}

/// How the figures were made: references, rules and every parameter, so anyone can repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Methodology {
    /// The methodology's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The standards and tools it follows.
    pub references: Vec<String>,
    /// How the bus's sources are allocated to its sinks.
    pub allocation: String,
    /// What EG, the net delivered electricity, counts.
    pub net_delivered_rule: String,
    /// How project emissions PE are counted.
    pub project_emissions_rule: String,
    /// How leakage LE is counted.
    pub leakage_rule: String,
    /// How green certificates are taken off the claim.
    pub green_certificate_rule: String,
    /// How figures are rounded before signing.
    pub rounding: String,
    /// What the statement is and is not (bilingual).
    pub claim_status: String,
    /// How the batteries' carbon was kept: one store per battery, or pooled.
    pub storage_rule: String,
    /// Each battery's carbon-store parameters.
    pub batteries: Vec<BatteryUsed>,
    /// Share of the grid's supply counted carbon-free in the CFE score, 0..1.
    pub grid_cfe_share: f64,
    /// MWh of grid import covered by instruments the park holds (market-based Scope 2).
    pub covered_import_mwh: f64,
}

/// A battery's carbon-store parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryUsed {
    /// The battery's park asset id.
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
    /// The factor, kg CO2/kWh.
    pub value_kg_per_kwh: f64,
    /// The factor's publisher, edition and variant.
    pub description: String,
}

/// Where a monitored quantity is measured, and by which meters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterUsed {
    /// What the meter measures (PV, grid import, ...).
    pub quantity: String,
    /// Where it measures.
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
    /// Grid import at the meter, MWh.
    pub grid_import_mwh: f64,
    /// Grid export at the meter, MWh.
    pub grid_export_mwh: f64,
    /// Battery charge, MWh.
    pub battery_charged_mwh: f64,
    /// Battery discharge, MWh.
    pub battery_discharged_mwh: f64,
    /// Consumption on site (loads and EV), MWh.
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
    /// The park's local month, YYYY-MM.
    pub month: String,
    /// MWh covered (one certificate per MWh).
    pub mwh: f64,
    /// issued, held, sold or cancelled.
    pub status: String,
    /// The issuing record or transaction.
    pub reference: String,
}

/// Emissions and reductions, t CO2 (to the gram).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    /// Location-based Scope 2 of the period, t CO2.
    pub scope2_location_based_t: f64,
    /// Market-based Scope 2, t CO2.
    pub scope2_market_based_t: f64,
    /// BE = claimed MWh x baseline factor.
    pub baseline_emissions_t: f64,
    /// PE, project emissions, t CO2 (0, see the methodology).
    pub project_emissions_t: f64,
    /// LE, leakage, t CO2 (0, see the methodology).
    pub leakage_t: f64,
    /// ER = BE - PE - LE.
    pub emission_reductions_t: f64,
    /// ER rounded down to whole tonnes (0 if negative): the figure the statement claims.
    pub stated_reductions_t: f64,
    /// Carbon in the energy consumed per kWh, kg CO2/kWh.
    pub park_intensity_kg_per_kwh: f64,
    /// Share of consumption served by the park's PV, 0..1.
    pub self_sufficiency: f64,
    /// Hourly carbon-free-energy score of consumption, 0..1.
    pub cfe_score: f64,
}

/// How complete the data was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataQuality {
    /// Intervals in the period.
    pub intervals_expected: usize,
    /// Intervals with a record.
    pub intervals_recorded: usize,
    /// Recorded share of the intervals, 0..1.
    pub coverage: f64,
    /// Intervals estimated (missing from the records).
    pub estimated_intervals: usize,
    /// How missing intervals are estimated.
    pub estimation_rule: String,
    /// The first gaps, as ranges of local time.
    pub first_gaps: Vec<String>,
    /// Set when the records are not measurements of a real park (e.g. `pedf demo`'s
    /// simulated devices): what they are. Absent otherwise, so certificates on measured data
    /// are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<String>,
}

/// The records the figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsDigest {
    /// Records in the period.
    pub count: usize,
    /// RFC 6962 Merkle root of the records' canonical lines, hex.
    pub merkle_root: String,
    /// How a record becomes a leaf.
    pub leaf_rule: String,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// The signature algorithm (ed25519).
    pub algorithm: String,
    /// The issuer's public key, hex.
    pub public_key: String,
}

/// A carbon-reduction statement (format 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The format, `pedf-certificate/2`.
    pub format: String,
    /// The serial, unique in the issuer's ledger.
    pub serial: String,
    /// When it was issued, RFC 3339.
    pub issued_at: String,
    /// The park certified.
    pub park: ParkIdentity,
    /// The period certified.
    pub period: Period,
    /// The methodology and its rules.
    pub methodology: Methodology,
    /// The emission factors used, with their provenance.
    pub factors: Vec<FactorUsed>,
    /// The meters the records come from.
    pub meters: Vec<MeterUsed>,
    /// What was measured in the period.
    pub monitored: Monitored,
    /// The grid company's billing meter beside the records, where its counters were read
    /// (absent otherwise, so certificates without one are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_meter: Option<BillingMeter>,
    /// Green certificates of each month the period touches.
    pub green_certificates: Vec<GreenCertificateMonth>,
    /// Emissions and reductions.
    pub figures: Figures,
    /// How complete the records are.
    pub data_quality: DataQuality,
    /// The records' digest.
    pub records: RecordsDigest,
    /// Who signed.
    pub issuer: Issuer,
    /// The ed25519 signature over the canonical JSON without this member, hex.
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

    /// Signs the certificate (its canonical JSON without `signature`) with the issuer's key.
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
    /// The serial.
    pub serial: String,
    /// When it is issued.
    pub issued_at: DateTime<Utc>,
    /// The park certified.
    pub park: ParkIdentity,
    /// The period's start.
    pub from: DateTime<Utc>,
    /// The period's end (exclusive).
    pub to: DateTime<Utc>,
    /// The accounting options (factors, batteries, clock).
    pub options: &'a Options,
    /// The emission factors used, with their provenance.
    pub factors: Vec<FactorUsed>,
    /// The meters the records come from.
    pub meters: Vec<MeterUsed>,
    /// Green certificates declared for the months of the period.
    pub green_certificates: Vec<GreenCertificates>,
    /// What the records are when they are not a real park's measurements (simulated).
    pub simulated: Option<String>,
    /// The billing meters' interval energies (from their counters), where they were read.
    pub meter_intervals: &'a [MeterInterval],
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
        billing_meter: billing_meter(
            records,
            input.meter_intervals,
            input.from,
            input.to,
            &o.clock,
        ),
        green_certificates: green,
        figures,
        data_quality: DataQuality {
            intervals_expected: expected,
            intervals_recorded: lines.len(),
            coverage: round(if expected > 0 { lines.len() as f64 / expected as f64 } else { 0.0 }, 6),
            estimated_intervals: a.totals.estimated_intervals,
            estimation_rule: "a missing interval claims no PV and is given the mean grid import of recorded intervals at the same time of day".into(),
            first_gaps: a.gaps.iter().take(20).map(|g| o.clock.format(*g)).collect(),
            simulated: input.simulated,
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

/// Differences between a certificate and a recomputation from records (and the billing
/// meters' intervals, where the certificate states them: `None` when none were given), each
/// named.
pub fn compare_with_data(
    cert: &Certificate,
    records: &[IntervalRecord],
    meter_intervals: Option<&[MeterInterval]>,
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
            // Not compared: the recomputation's own issue time is the certificate's.
            issued_at: pedf_core::time::parse_rfc3339(&cert.issued_at).unwrap_or(from),
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
            // Said by the certificate, not by the records: taken as it is.
            simulated: cert.data_quality.simulated.clone(),
            meter_intervals: meter_intervals.unwrap_or_default(),
        },
    );
    let mut diffs = Vec::new();
    let (a, b) = (cert.value(), again.value());
    match (&cert.billing_meter, meter_intervals, &again.billing_meter) {
        (Some(_), None, _) => diffs.push(
            "billing_meter: the certificate states the billing meter's counters, and no meter intervals were given to check them (--meter-intervals FILE)".to_string(),
        ),
        (x, _, y) if x != y => {
            let (x, y) = (
                a.get("billing_meter").cloned().unwrap_or(Value::Null),
                b.get("billing_meter").cloned().unwrap_or(Value::Null),
            );
            let keys: BTreeSet<String> = [&x, &y]
                .iter()
                .filter_map(|v| v.as_object())
                .flat_map(|o| o.keys().cloned())
                .collect();
            if keys.is_empty() {
                diffs.push(format!(
                    "billing_meter: the certificate says {x}, the meter intervals give {y}"
                ));
            }
            for k in keys {
                if x.get(&k) != y.get(&k) {
                    diffs.push(format!(
                        "billing_meter.{k}: the certificate says {}, the meter intervals give {}",
                        x.get(&k).map_or("nothing".into(), Value::to_string),
                        y.get(&k).map_or("nothing".into(), Value::to_string)
                    ));
                }
            }
        }
        _ => {}
    }
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
                simulated: None,
                meter_intervals: &[],
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
