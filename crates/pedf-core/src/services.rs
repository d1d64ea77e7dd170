//! The typed interface between the HTTP server and the application behind it: what the server
//! asks (a day to plan, a period to account or certify, a certificate's file) and what it gets
//! back, each failure a [`ServiceError`] whose kind the server answers with its HTTP status.
//! The server parses and checks the request (dates, the period's order); the application
//! never sees text it has to parse again, and never answers with text the server patches.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::message::Message;
use crate::plan::Plan;

/// Why a service call failed, said in both languages; the kind decides the HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The request cannot be served as asked: no data in the period, a period already
    /// certified, day inputs with errors (422).
    #[error("{0}")]
    Unprocessable(Message),
    /// What was asked for does not exist (404).
    #[error("{0}")]
    NotFound(Message),
    /// This EMS is not set up for it (a folder or file not configured) (503).
    #[error("{0}")]
    NotConfigured(Message),
    /// The application failed (a store or file it could not read or write) (500).
    #[error("{0}")]
    Failed(Message),
}

impl ServiceError {
    /// What it says.
    pub fn message(&self) -> &Message {
        match self {
            ServiceError::Unprocessable(m)
            | ServiceError::NotFound(m)
            | ServiceError::NotConfigured(m)
            | ServiceError::Failed(m) => m,
        }
    }
}

/// A period `[from, to)`, checked: `from` before `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// The start.
    pub from: DateTime<Utc>,
    /// The end (not included).
    pub to: DateTime<Utc>,
}

/// A day planned.
#[derive(Debug, Clone)]
pub struct PlannedDay {
    /// `optimized`, or `rule, fallback: <why>` when the optimiser failed.
    pub strategy: String,
    /// The plan, as `pedf plan` writes it.
    pub plan: Plan,
}

/// A day of the park's history: its bill (energy by flow, cost by term) and its carbon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryDay {
    /// The day's energy and bill terms.
    #[serde(flatten)]
    pub bill: crate::bill::DayBill,
    /// Intervals the day has.
    pub intervals_expected: usize,
    /// Location-based Scope 2 of the day's import, kg.
    pub scope2_kg: f64,
    /// CO2 avoided by the park's PV, kg.
    pub avoided_kg: f64,
    /// Share of consumption served by the park's PV, 0..1.
    pub self_sufficiency: f64,
}

/// The park's history over a period, day by day, with its months' bills.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// The period's start, the park's local time.
    pub from: String,
    /// The period's end (exclusive).
    pub to: String,
    /// Each day with a record.
    pub days: Vec<HistoryDay>,
    /// Each month a day belongs to: the demand charge on its peak so far and the total.
    pub months: Vec<crate::bill::MonthBill>,
    /// Intervals the tariff gives no price for (counted at 0 CNY).
    pub unpriced_intervals: usize,
    /// What the figures rest on (the records counted, the tariff, the factor), in both
    /// languages.
    pub notes: Vec<Message>,
}

/// A period's carbon accounting, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarbonSummary {
    /// The start of the period, RFC 3339 in the park's zone.
    pub from: String,
    /// The end of the period accounted (not included): the one asked, or the start of the
    /// EMS's running interval when that is earlier (what is to come is not estimated).
    pub to: String,
    /// The location-based factor, with its source.
    pub factor: String,
    /// The baseline factor of avoided emissions, with its source.
    pub baseline: String,
    /// How the factors were chosen.
    pub notes: Vec<String>,
    /// Intervals with measured records.
    pub measured_intervals: usize,
    /// Intervals estimated by the documented gap rule.
    pub estimated_intervals: usize,
    /// The period's totals.
    pub totals: CarbonTotals,
}

/// The totals of a period's carbon accounting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarbonTotals {
    /// PV generated, kWh.
    pub pv_kwh: f64,
    /// Imported, kWh.
    pub grid_import_kwh: f64,
    /// Exported, kWh.
    pub grid_export_kwh: f64,
    /// Consumed on site (loads and EV), kWh.
    pub consumption_kwh: f64,
    /// Location-based Scope 2, kg CO2.
    pub location_kg: f64,
    /// Market-based Scope 2, kg CO2.
    pub market_kg: f64,
    /// Avoided by the PV electricity delivered, kg CO2.
    pub avoided_pv_kg: f64,
    /// Avoided by shifting import to cleaner hours, kg CO2.
    pub shifting_kg: f64,
    /// Location-based Scope 2 per kWh consumed, kg CO2.
    pub park_intensity_kg_per_kwh: f64,
    /// Share of consumption met by the park's own PV.
    pub self_sufficiency: f64,
    /// Share of PV used on site.
    pub self_consumption: f64,
    /// Hourly carbon-free energy score.
    pub cfe_score: f64,
}

/// A certificate issued, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssuedCertificate {
    /// Its serial.
    pub id: String,
    /// The period certified, as the certificate states it.
    pub from: String,
    /// Its end (not included).
    pub to: String,
    /// The reductions it states (after green certificates), t CO2.
    pub stated_t: f64,
    /// The emission reductions before green certificates, t CO2.
    pub emission_reductions_t: f64,
    /// Location-based Scope 2 of the period, t CO2.
    pub scope2_location_based_t: f64,
    /// Intervals with a record.
    pub intervals_recorded: usize,
    /// Intervals in the period.
    pub intervals_expected: usize,
    /// Whether its PDF was made.
    pub pdf: bool,
    /// The issuer's ed25519 public key, hex.
    pub issuer_public_key: String,
    /// Its entry in the ledger.
    pub ledger_seq: u64,
}

/// A certificate's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateFormat {
    /// The bilingual statement.
    Pdf,
    /// The signed certificate.
    Json,
    /// The interval records it covers, as the CSV `pedf certificate verify --data` reads:
    /// exactly the records its Merkle root hashes.
    Records,
    /// The billing meters' interval energies it states, as the CSV `pedf certificate verify
    /// --meter-intervals` reads.
    MeterIntervals,
}

impl CertificateFormat {
    /// From the API's `pdf`, `json`, `records` or `meter-intervals`.
    pub fn parse(text: &str) -> Option<CertificateFormat> {
        match text {
            "pdf" => Some(CertificateFormat::Pdf),
            "json" => Some(CertificateFormat::Json),
            "records" => Some(CertificateFormat::Records),
            "meter-intervals" => Some(CertificateFormat::MeterIntervals),
            _ => None,
        }
    }

    /// The file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            CertificateFormat::Pdf => "pdf",
            CertificateFormat::Json => "json",
            CertificateFormat::Records => "records.csv",
            CertificateFormat::MeterIntervals => "meter-intervals.csv",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            CertificateFormat::Pdf => "application/pdf",
            CertificateFormat::Json => "application/json",
            CertificateFormat::Records | CertificateFormat::MeterIntervals => {
                "text/csv; charset=utf-8"
            }
        }
    }
}
