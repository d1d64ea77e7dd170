//! Issuing: the procedure from an accounted period to a signed certificate in the ledger and
//! its files. The ledger is held (locked) from reading it to appending the entry; the entry is
//! appended before any file is written, so a crash leaves the period reserved and no
//! certificate outside the ledger; the files appear whole or not at all. The time of issue
//! comes from the caller (the EMS's clock for the API), the HTML and PDF from the application
//! (laid out by pedf-report).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use pedf_core::Park;

use super::{
    build, load_or_create_key, overlapping, write_atomic, Certificate, FactorUsed,
    GreenCertificates, IssueInput, LockedLedger, MeterUsed, ParkIdentity,
};
use crate::account::Options;
use crate::factors::FactorChoice;
use crate::records::IntervalRecord;

impl ParkIdentity {
    /// The park as a certificate names it.
    pub fn of_park(park: &Park) -> ParkIdentity {
        ParkIdentity {
            id: park.id.clone(),
            name: park.name.clone(),
            name_zh: park.name_zh.clone(),
            owner: park.owner.clone(),
            latitude_deg: park.location.latitude_deg,
            longitude_deg: park.location.longitude_deg,
            pv_kwp: park.pv_peak_power().0,
            battery_kwh: park.battery_capacity().0,
            time_zone: park.clock.tz.name().to_string(),
            interval_minutes: park.clock.interval.minutes(),
        }
    }
}

/// The factors a certificate lists, each with what it applies to.
pub fn factors_used(choice: &FactorChoice) -> Vec<FactorUsed> {
    vec![
        FactorUsed {
            role: "location".into(),
            applies_to: "Scope 2 location-based (grid average)".into(),
            value_kg_per_kwh: choice.location.value,
            description: choice.location.describe(),
        },
        FactorUsed {
            role: "residual".into(),
            applies_to: "Scope 2 market-based, uncovered import (residual mix)".into(),
            value_kg_per_kwh: choice.residual.value,
            description: choice.residual.describe(),
        },
        FactorUsed {
            role: "baseline".into(),
            applies_to: "avoided emissions, BE = EG x EF".into(),
            value_kg_per_kwh: choice.baseline,
            description: choice.baseline_text.clone(),
        },
    ]
}

/// Where each monitored quantity is measured, with the park file's meter ids.
pub fn meters_of(park: &Park) -> Vec<MeterUsed> {
    use pedf_core::assets::MeterPoint;
    let ids = |pick: &dyn Fn(&MeterPoint) -> bool| -> Vec<String> {
        park.meters
            .iter()
            .filter(|m| pick(&m.point))
            .map(|m| m.id.clone())
            .collect()
    };
    let of_assets = |assets: Vec<&str>| {
        ids(&|p: &MeterPoint| matches!(p, MeterPoint::Asset(a) if assets.contains(&a.as_str())))
    };
    vec![
        MeterUsed {
            quantity: "grid import and export".into(),
            point: "grid meter, AC, the utility's billing point".into(),
            meters: ids(&|p: &MeterPoint| matches!(p, MeterPoint::Grid)),
        },
        MeterUsed {
            quantity: "PV generation".into(),
            point: "DC bus, output of each PV array's converter".into(),
            meters: of_assets(park.pv.iter().map(|a| a.id.as_str()).collect()),
        },
        MeterUsed {
            quantity: "battery charge and discharge".into(),
            point: "DC bus, battery side".into(),
            meters: of_assets(park.batteries.iter().map(|a| a.id.as_str()).collect()),
        },
        MeterUsed {
            quantity: "grid converter".into(),
            point: "AC side of the park's grid converter".into(),
            meters: of_assets(vec![park.converter.id.as_str()]),
        },
        MeterUsed {
            quantity: "loads, cars and converter losses".into(),
            point: "DC bus: the chargers' and loads' own meters where listed, the balance of the metered flows otherwise".into(),
            meters: of_assets(
                park.fixed_loads
                    .iter()
                    .map(|a| a.id.as_str())
                    .chain(park.flexible_loads.iter().map(|a| a.id.as_str()))
                    .chain(park.ev_chargers.iter().map(|a| a.id.as_str()))
                    .collect(),
            ),
        },
    ]
}

/// Where an issuer keeps its files: the certificates' folder, the issuer key (made at first
/// use, mode 0600), the ledger (default: ledger.jsonl in the folder).
pub struct CertificateIssuer<'a> {
    /// The folder certificates are written to.
    pub out_dir: &'a Path,
    /// The issuer's ed25519 key file.
    pub key: &'a Path,
    /// The ledger file (default: ledger.jsonl in `out_dir`).
    pub ledger: Option<&'a Path>,
}

/// A period to certify, accounted.
pub struct Period<'a> {
    /// The park certified.
    pub park: &'a Park,
    /// Its interval records (the period's are certified).
    pub records: &'a [IntervalRecord],
    /// The period's first instant.
    pub from: DateTime<Utc>,
    /// The instant after the period.
    pub to: DateTime<Utc>,
    /// The accounting options (factors, batteries, clock).
    pub options: &'a Options,
    /// The factors chosen, with their sources.
    pub choice: &'a FactorChoice,
    /// Green certificates declared for the months the period touches.
    pub green_certificates: Vec<GreenCertificates>,
}

impl<'a> Period<'a> {
    /// The period a [`crate::period::PeriodSetup`] made ready, with the green certificates
    /// issued for it.
    pub fn of(
        setup: &'a crate::period::PeriodSetup,
        green_certificates: Vec<GreenCertificates>,
    ) -> Period<'a> {
        Period {
            park: &setup.park,
            records: &setup.records,
            from: setup.from,
            to: setup.to,
            options: &setup.options,
            choice: &setup.choice,
            green_certificates,
        }
    }
}

/// A certificate's human renderings, made by the application: HTML, and the PDF or why there
/// is none.
pub struct Rendered {
    /// The certificate as HTML.
    pub html: String,
    /// The certificate as PDF, or why it could not be made.
    pub pdf: Result<Vec<u8>, String>,
}

/// A certificate just issued, with where its files are.
/// Why a certificate was not issued (or, for [`IssueError::Io`] after the ledger entry, its
/// files not all written: the message says so).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IssueError {
    /// The period has no interval record.
    #[error("{0}")]
    NoRecords(String),
    /// The period overlaps one the ledger holds.
    #[error("{0}")]
    AlreadyCertified(String),
    /// A file (key, ledger, certificate folder or file) could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// What an issue wrote.
pub struct Issued {
    /// The signed certificate.
    pub cert: Certificate,
    /// Its JSON file (the certificate itself).
    pub json_path: PathBuf,
    /// Its HTML rendering.
    pub html_path: PathBuf,
    /// Its PDF rendering (absent when `pdf_error` says why).
    pub pdf_path: PathBuf,
    /// Why there is no PDF, if there is none.
    pub pdf_error: Option<String>,
    /// The ledger appended to.
    pub ledger_path: PathBuf,
    /// The new entry's sequence number.
    pub ledger_seq: u64,
    /// Whether the issuer key was made by this issue.
    pub key_created: bool,
}

impl CertificateIssuer<'_> {
    /// Issues the certificate of `period` at `issued_at`; refused when the period has no
    /// record or overlaps one in the ledger. Every error says whether a certificate was issued.
    pub fn issue(
        &self,
        period: Period,
        issued_at: DateTime<Utc>,
        render: impl Fn(&Certificate) -> Rendered,
    ) -> Result<Issued, IssueError> {
        let Period {
            park,
            records,
            from,
            to,
            options,
            choice,
            green_certificates,
        } = period;
        if !records.iter().any(|r| r.start >= from && r.start < to) {
            return Err(IssueError::NoRecords(format!(
                "no record inside {} – {}: nothing to certify",
                park.clock.format(from),
                park.clock.format(to)
            )));
        }
        std::fs::create_dir_all(self.out_dir).map_err(|e| {
            IssueError::Io(format!(
                "{}: cannot make the certificates' folder: {e}",
                self.out_dir.display()
            ))
        })?;
        let ledger_path = self
            .ledger
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.out_dir.join("ledger.jsonl"));
        // Held from reading the ledger to appending the entry: another issue at the same time
        // (the API, another command) waits, then sees this one's entry.
        let mut ledger = LockedLedger::open(&ledger_path).map_err(|e| {
            IssueError::Io(format!(
                "{e}; no certificate was issued (cannot append to the ledger)"
            ))
        })?;
        if let Some(e) = overlapping(&ledger.entries, &park.id, from, to) {
            return Err(IssueError::AlreadyCertified(format!(
                "the period overlaps certificate {} ({} – {}) in {}: refused, a period is certified once",
                e.serial,
                e.from,
                e.to,
                ledger_path.display()
            )));
        }
        let (key, key_created) = load_or_create_key(self.key).map_err(IssueError::Io)?;
        let serial = format!(
            "{}-{}-{:06}",
            park.id.to_uppercase(),
            park.clock.local(from).year(),
            ledger.entries.len() + 1
        );
        let mut cert = build(
            records,
            IssueInput {
                serial,
                issued_at,
                park: ParkIdentity::of_park(park),
                from,
                to,
                options,
                factors: factors_used(choice),
                meters: meters_of(park),
                green_certificates,
            },
        );
        cert.sign(&key);
        // The ledger entry first: a crash after it leaves the period reserved and no
        // certificate file, never a certificate outside the ledger.
        let entry = ledger
            .append(&cert)
            .map_err(|e| IssueError::Io(format!("{e}; no certificate was issued")))?;
        let json_path = self.out_dir.join(format!("{}.json", cert.serial));
        let html_path = self.out_dir.join(format!("{}.html", cert.serial));
        let pdf_path = self.out_dir.join(format!("{}.pdf", cert.serial));
        let rendered = render(&cert);
        let write = |path: &Path, bytes: &[u8]| {
            write_atomic(path, bytes).map_err(|e| {
                IssueError::Io(format!(
                    "{}: {e} (certificate {} is in the ledger; `pedf certificate render` can write its files again from its JSON)",
                    path.display(),
                    cert.serial
                ))
            })
        };
        write(
            &json_path,
            format!("{}\n", cert.canonical_json()).as_bytes(),
        )?;
        write(&html_path, rendered.html.as_bytes())?;
        let pdf_error = match rendered.pdf {
            Ok(bytes) => {
                write(&pdf_path, &bytes)?;
                None
            }
            Err(why) => Some(why),
        };
        Ok(Issued {
            cert,
            json_path,
            html_path,
            pdf_path,
            pdf_error,
            ledger_path,
            ledger_seq: entry.seq,
            key_created,
        })
    }
}
