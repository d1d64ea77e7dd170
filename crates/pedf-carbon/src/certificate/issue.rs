//! Issuing: the procedure from an accounted period to a signed certificate in the ledger and
//! its files. The ledger is held (locked) from reading it to appending the entry; the entry is
//! appended before any file is written, so a crash leaves the period reserved and no
//! certificate outside the ledger; the files appear whole or not at all. The time of issue
//! comes from the caller (the EMS's clock for the API), the HTML and PDF from the application
//! (laid out by pedf-report).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use pedf_core::message::Message;
use pedf_core::Park;

use super::{
    build, load_or_create_key, overlapping, Certificate, FactorUsed, GreenCertificates, IssueInput,
    LockedLedger, MeterUsed, ParkIdentity,
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
///
/// An issue is crash-safe: under the ledger's lock it writes the certificate's JSON, HTML and
/// PDF as `.pending` files (synced), then appends the ledger entry (synced: the commit), then
/// renames the files into place. The next issue, under the same lock, finishes what a crash
/// left: pending files of a committed certificate are put in place, those of an uncommitted
/// one removed (its period stays issuable), and a torn last ledger line is cut off
/// ([`LockedLedger::open`]). A crash leaves a whole certificate or none.
pub struct CertificateIssuer<'a> {
    /// The folder certificates are written to.
    pub out_dir: &'a Path,
    /// The issuer's ed25519 key file.
    pub key: &'a Path,
    /// The ledger file (default: ledger.jsonl in `out_dir`).
    pub ledger: Option<&'a Path>,
    /// The least share of the period's intervals that must be recorded, 0..1 (see
    /// [`DEFAULT_MIN_COVERAGE`]): a statement on mostly estimated data is refused.
    pub min_coverage: f64,
}

/// The share of a period's intervals an issue needs recorded unless the issuer says otherwise:
/// 90 % (a day may miss two hours and some minutes; a month three days).
pub const DEFAULT_MIN_COVERAGE: f64 = 0.9;

/// The steps of an issue after which a crash is simulated in tests ([`CertificateIssuer::issue_crashing_after`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueStep {
    /// The JSON written as pending.
    PendingJson,
    /// Every file written as pending.
    PendingAll,
    /// The ledger entry appended (committed).
    Committed,
    /// The JSON renamed into place.
    JsonInPlace,
}

impl IssueStep {
    /// Every step, in order.
    pub const ALL: [IssueStep; 4] = [
        IssueStep::PendingJson,
        IssueStep::PendingAll,
        IssueStep::Committed,
        IssueStep::JsonInPlace,
    ];
}

/// The pending name of a certificate file: `SERIAL.json` -> `SERIAL.json.pending`.
fn pending(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pending");
    PathBuf::from(name)
}

/// Writes a file and syncs it (a pending file: not in place yet).
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Syncs a folder, so renames in it survive a power loss.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
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
    /// What the records are when they are not a real park's measurements (e.g. "simulated
    /// by pedf demo"): the certificate says so on its face.
    pub simulated: Option<String>,
    /// The billing meters' interval energies from their counters (empty: none read): the
    /// certificate states them beside the records' grid figures.
    pub meter_intervals: Vec<super::MeterInterval>,
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
            simulated: None,
            meter_intervals: Vec::new(),
        }
    }

    /// The same, with the billing meters' interval energies (from their counters).
    pub fn billing(mut self, meter_intervals: Vec<super::MeterInterval>) -> Period<'a> {
        self.meter_intervals = meter_intervals;
        self
    }

    /// The same, marked as not a real park's measurements (`what`: e.g. "simulated by pedf
    /// demo").
    pub fn simulated(mut self, what: Option<String>) -> Period<'a> {
        self.simulated = what;
        self
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
    NoRecords(Message),
    /// The period overlaps one the ledger holds.
    #[error("{0}")]
    AlreadyCertified(Message),
    /// A file (key, ledger, certificate folder or file) could not be read or written.
    #[error("{0}")]
    Io(Message),
    /// The period is not over at the issue time: it is certified once it is.
    #[error("{0}")]
    NotClosed(Message),
    /// Too little of the period was recorded for this issuer's minimum coverage.
    #[error("{0}")]
    TooLittleData(Message),
    /// The reductions round down to 0 t: there is nothing to state.
    #[error("{0}")]
    NothingToCertify(Message),
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
    /// What this issue finished of a crashed one before it (files completed or removed).
    pub recovered: Vec<String>,
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
        self.issue_crashing_after(period, issued_at, render, None)
    }

    /// Finishes what a crashed issue left in the folder (under the ledger's lock): pending
    /// files of a certificate the ledger holds are put in place; those of one it does not
    /// hold are removed. Returns what was done, one line each.
    fn recover(&self, ledger: &LockedLedger) -> Vec<String> {
        let mut done = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.out_dir) else {
            return done;
        };
        let mut names: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pending"))
            .collect();
        names.sort();
        for p in names {
            let target = p.with_extension("");
            let serial = target
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if ledger.entries.iter().any(|e| e.serial == serial) {
                if std::fs::rename(&p, &target).is_ok() {
                    done.push(format!(
                        "{}: completed (committed in the ledger)",
                        target.display()
                    ));
                }
            } else if std::fs::remove_file(&p).is_ok() {
                done.push(format!("{}: removed (never committed)", p.display()));
            }
        }
        sync_dir(self.out_dir);
        done
    }

    /// [`CertificateIssuer::issue`], stopping after `crash` as a killed process would (no
    /// clean-up): for the tests of what the next issue finds.
    #[doc(hidden)]
    pub fn issue_crashing_after(
        &self,
        period: Period,
        issued_at: DateTime<Utc>,
        render: impl Fn(&Certificate) -> Rendered,
        crash: Option<IssueStep>,
    ) -> Result<Issued, IssueError> {
        let crashed = |step: IssueStep| {
            (crash == Some(step)).then(|| {
                IssueError::Io(Message::framed(
                    "crash injected",
                    "注入的崩溃",
                    format!("{step:?}"),
                ))
            })
        };
        let Period {
            park,
            records,
            from,
            to,
            options,
            choice,
            green_certificates,
            simulated,
            meter_intervals,
        } = period;
        if !records.iter().any(|r| r.start >= from && r.start < to) {
            let (f, t) = (park.clock.format(from), park.clock.format(to));
            return Err(IssueError::NoRecords(Message::new(
                format!("no record inside {f} – {t}: nothing to certify"),
                format!("{f} – {t} 内没有任何区间记录：没有可核证的内容"),
            )));
        }
        if to > issued_at {
            let (t, at) = (park.clock.format(to), park.clock.format(issued_at));
            return Err(IssueError::NotClosed(Message::new(
                format!("the period ends at {t}, after the issue time {at}: a period is certified once it is over"),
                format!("期间结束于 {t}，晚于签发时间 {at}：期间结束后才能核证"),
            )));
        }
        std::fs::create_dir_all(self.out_dir).map_err(|e| {
            let dir = self.out_dir.display();
            IssueError::Io(Message::new(
                format!("{dir}: cannot make the certificates' folder: {e}"),
                format!("{dir}：无法创建证书文件夹：{e}"),
            ))
        })?;
        let ledger_path = self
            .ledger
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.out_dir.join("ledger.jsonl"));
        // Held from reading the ledger to putting the files in place: another issue at the
        // same time (the API, another command) waits, then sees this one's entry.
        let mut ledger = LockedLedger::open(&ledger_path).map_err(|e| {
            IssueError::Io(Message::new(
                format!("{e}; no certificate was issued (cannot append to the ledger)"),
                format!("{e}；未签发证书（无法写入台账）"),
            ))
        })?;
        let recovered = self.recover(&ledger);
        if let Some(e) = overlapping(&ledger.entries, &park.id, from, to) {
            let (serial, f, t, ledger) = (&e.serial, &e.from, &e.to, ledger_path.display());
            return Err(IssueError::AlreadyCertified(Message::new(
                format!("the period overlaps certificate {serial} ({f} – {t}) in {ledger}: refused, a period is certified once"),
                format!("该期间与 {ledger} 中的证书 {serial}（{f} – {t}）重叠：拒绝签发，同一期间只核证一次"),
            )));
        }
        let (key, key_created) = load_or_create_key(self.key).map_err(|e| {
            IssueError::Io(Message::new(
                e.clone(),
                format!("签发密钥无法读取或创建：{e}"),
            ))
        })?;
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
                simulated,
                meter_intervals: &meter_intervals,
            },
        );
        let q = &cert.data_quality;
        if q.coverage + 1e-12 < self.min_coverage {
            let (n, of, got, need) = (
                q.intervals_recorded,
                q.intervals_expected,
                100.0 * q.coverage,
                100.0 * self.min_coverage,
            );
            return Err(IssueError::TooLittleData(Message::new(
                format!("{n} of the period's {of} intervals are recorded ({got:.1} %), below the {need:.0} % a certificate needs: the rest would be estimated"),
                format!("期间 {of} 个区间中有记录的只有 {n} 个（{got:.1} %），低于证书要求的 {need:.0} %：其余只能估算"),
            )));
        }
        if cert.figures.stated_reductions_t <= 0.0 {
            let er = cert.figures.emission_reductions_t;
            return Err(IssueError::NothingToCertify(Message::new(
                format!("the emission reductions of the period round down to 0 t CO2e (ER {er} t): nothing to certify"),
                format!("该期间的减排量取整后为 0 t CO₂e（ER {er} t）：没有可核证的内容"),
            )));
        }
        cert.sign(&key);
        let json_path = self.out_dir.join(format!("{}.json", cert.serial));
        let html_path = self.out_dir.join(format!("{}.html", cert.serial));
        let pdf_path = self.out_dir.join(format!("{}.pdf", cert.serial));
        // 1. Everything made and written aside (a crash here leaves no certificate).
        let rendered = render(&cert);
        let not_issued = |path: &Path, e: std::io::Error| {
            let p = path.display();
            IssueError::Io(Message::new(
                format!("{p}: {e}; no certificate was issued"),
                format!("{p}：{e}；未签发证书"),
            ))
        };
        let mut files: Vec<(PathBuf, Vec<u8>)> = vec![(
            json_path.clone(),
            format!("{}\n", cert.canonical_json()).into_bytes(),
        )];
        files.push((html_path.clone(), rendered.html.into_bytes()));
        let pdf_error = match rendered.pdf {
            Ok(bytes) => {
                files.push((pdf_path.clone(), bytes));
                None
            }
            Err(why) => Some(why),
        };
        for (i, (path, bytes)) in files.iter().enumerate() {
            if let Err(e) = write_synced(&pending(path), bytes) {
                for (p, _) in &files {
                    let _ = std::fs::remove_file(pending(p));
                }
                return Err(not_issued(path, e));
            }
            if i == 0 {
                if let Some(e) = crashed(IssueStep::PendingJson) {
                    return Err(e);
                }
            }
        }
        if let Some(e) = crashed(IssueStep::PendingAll) {
            return Err(e);
        }
        // 2. The commit: the ledger entry, synced.
        let entry = match ledger.append(&cert) {
            Ok(entry) => entry,
            Err(e) => {
                for (p, _) in &files {
                    let _ = std::fs::remove_file(pending(p));
                }
                return Err(IssueError::Io(Message::new(
                    format!("{e}; no certificate was issued"),
                    format!("{e}；未签发证书"),
                )));
            }
        };
        if let Some(e) = crashed(IssueStep::Committed) {
            return Err(e);
        }
        // 3. The files in place (what a crash leaves of this, the next issue finishes).
        for (i, (path, _)) in files.iter().enumerate() {
            std::fs::rename(pending(path), path).map_err(|e| {
                let (p, serial) = (path.display(), &cert.serial);
                IssueError::Io(Message::new(
                    format!("{p}: {e} (certificate {serial} is committed in the ledger; the next issue puts its files in place)"),
                    format!("{p}：{e}（证书 {serial} 已记入台账；下一次签发会补齐其文件）"),
                ))
            })?;
            if i == 0 {
                if let Some(e) = crashed(IssueStep::JsonInPlace) {
                    return Err(e);
                }
            }
        }
        sync_dir(self.out_dir);
        Ok(Issued {
            cert,
            json_path,
            html_path,
            pdf_path,
            pdf_error,
            ledger_path,
            ledger_seq: entry.seq,
            key_created,
            recovered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_ledger;
    use super::*;
    use crate::factors::{choose, FactorTable};

    fn park() -> Park {
        pedf_core::config::load_park(
            "qingzhou-pedf.toml",
            include_bytes!("../../../../config/qingzhou-pedf.toml"),
        )
        .value
        .unwrap()
    }

    /// A day of hourly records: PV at noon, grid at night.
    fn records(park: &Park) -> Vec<IntervalRecord> {
        let day = park
            .clock
            .start_of_local_day(chrono::NaiveDate::from_ymd_opt(2026, 6, 21).unwrap());
        (0..96)
            .map(|k| {
                let sun = (32..64).contains(&k);
                IntervalRecord {
                    start: day + chrono::Duration::minutes(15 * k),
                    pv_kwh: if sun { 100.0 } else { 0.0 },
                    grid_import_kwh: if sun { 0.0 } else { 52.0 },
                    load_kwh: 50.0,
                    grid_export_kwh: if sun { 47.5 } else { 0.0 },
                    ..Default::default()
                }
            })
            .collect()
    }

    fn render(c: &Certificate) -> Rendered {
        Rendered {
            html: format!("<p>{}</p>", c.serial),
            pdf: Ok(format!("%PDF {}", c.serial).into_bytes()),
        }
    }

    /// Issues the reference day through `dir`'s issuer, crashing after `crash` if given.
    fn issue_day(dir: &Path, crash: Option<IssueStep>) -> Result<Issued, IssueError> {
        let park = park();
        issue_records(dir, records(&park), None, crash)
    }

    /// Issues the day of `records` (its first record's) at `issued_at` (default: the day's
    /// end).
    fn issue_records(
        dir: &Path,
        records: Vec<IntervalRecord>,
        issued_at: Option<DateTime<Utc>>,
        crash: Option<IssueStep>,
    ) -> Result<Issued, IssueError> {
        issue_marked(dir, records, issued_at, crash, None, Vec::new())
    }

    /// [`issue_records`] with the records marked as simulated (`what`), and the billing
    /// meters' intervals.
    fn issue_marked(
        dir: &Path,
        records: Vec<IntervalRecord>,
        issued_at: Option<DateTime<Utc>>,
        crash: Option<IssueStep>,
        simulated: Option<String>,
        meter_intervals: Vec<crate::certificate::MeterInterval>,
    ) -> Result<Issued, IssueError> {
        let park = park();
        let day = park.clock.local(records[0].start).date_naive();
        let from = park.clock.start_of_local_day(day);
        let choice = choose(&park, FactorTable::shipped(), 2026, "auto").unwrap();
        let options = Options::for_park(&park, &choice, 0.0);
        let to = from + chrono::Duration::days(1);
        let issuer = CertificateIssuer {
            out_dir: dir,
            key: &dir.join("issuer.key"),
            ledger: None,
            min_coverage: DEFAULT_MIN_COVERAGE,
        };
        issuer.issue_crashing_after(
            Period {
                park: &park,
                records: &records,
                from,
                to,
                options: &options,
                choice: &choice,
                green_certificates: Vec::new(),
                simulated,
                meter_intervals,
            },
            issued_at.unwrap_or(to),
            render,
            crash,
        )
    }

    fn fresh(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pedf-issue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "issuer.key")
            .collect();
        v.sort();
        v
    }

    /// A certificate on simulated records (`pedf demo`) says so in its signed data and on its
    /// face, and still verifies; one on measured records has no such key at all, so the
    /// format-2 certificates issued before the mark existed are unchanged. (The demo's
    /// certificates once looked like a real park's.)
    #[test]
    fn a_certificate_on_simulated_data_says_so_and_one_on_measured_data_is_unchanged() {
        let park = park();
        let what = "the park simulated by pedf demo";
        let dir = fresh("simulated");
        let i = issue_marked(
            &dir,
            records(&park),
            None,
            None,
            Some(what.into()),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(i.cert.data_quality.simulated.as_deref(), Some(what));
        crate::certificate::check_signature(&i.cert).unwrap();
        let json = std::fs::read_to_string(dir.join(format!("{}.json", i.cert.serial))).unwrap();
        assert!(
            json.contains(&format!("\"simulated\":\"{what}\"")),
            "{json}"
        );
        assert!(crate::certificate::rows(&i.cert)
            .iter()
            .any(|(zh, en, v)| zh == "数据性质"
                && en == "Nature of the data"
                && v.contains("SIMULATED DATA")));
        // The recomputation from the same records finds nothing changed.
        let diffs =
            crate::certificate::compare_with_data(&i.cert, &records(&park), None, park.clock)
                .unwrap();
        assert!(diffs.is_empty(), "{diffs:?}");
        let measured = issue_records(&fresh("measured"), records(&park), None, None).unwrap();
        assert!(measured.cert.value()["data_quality"]
            .get("simulated")
            .is_none());
        // Without billing meter intervals there is no billing_meter member either.
        assert!(measured.cert.value().get("billing_meter").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A certificate issued with the grid company's billing meter names it and states what
    /// its counters gave beside the records' grid figures, signed; the figures recompute from
    /// the meter's intervals, a changed meter file or none at all is a named problem, and the
    /// statement's own figures stay the records'.
    #[test]
    fn a_certificate_states_the_billing_meter_beside_the_records_and_checks_it() {
        use crate::certificate::MeterInterval;
        let park = park();
        let recs = records(&park);
        // The meter counts 1 % more import than the records (a converter-side measurement
        // against the utility's), every interval but the last.
        let meters: Vec<MeterInterval> = recs[..95]
            .iter()
            .map(|r| MeterInterval {
                meter: "grid".into(),
                start: r.start,
                import_kwh: r.grid_import_kwh * 1.01,
                export_kwh: Some(r.grid_export_kwh),
            })
            .collect();
        let dir = fresh("billing");
        let i = issue_marked(&dir, recs.clone(), None, None, None, meters.clone()).unwrap();
        crate::certificate::check_signature(&i.cert).unwrap();
        let b = i.cert.billing_meter.clone().expect("a billing meter block");
        assert_eq!(b.meters, ["grid"]);
        assert_eq!(b.intervals_counted, 95);
        // 63 night intervals of 52 kWh counted (the last one is not): 3.276 MWh in the
        // records, 3.30876 at the meter; 32 sunny ones of 47.5 kWh exported.
        assert_eq!(b.records_import_mwh, 3.276);
        assert_eq!(b.import_mwh, 3.30876);
        assert_eq!(b.export_mwh, Some(1.52));
        assert_eq!(b.import_difference_share, Some(-0.009901));
        let plain = issue_records(&fresh("billing-plain"), recs.clone(), None, None).unwrap();
        assert_eq!(
            i.cert.monitored, plain.cert.monitored,
            "the records' figures"
        );
        assert_eq!(i.cert.figures, plain.cert.figures);
        assert!(crate::certificate::rows(&i.cert).iter().any(|(_, en, v)| en
            == "Billing meter (the grid company's)"
            && v.starts_with(
                "grid: import 3.30876 / export 1.52 MWh by its counters over 95 intervals"
            )));
        let check = |m: Option<&[MeterInterval]>| {
            crate::certificate::compare_with_data(&i.cert, &recs, m, park.clock).unwrap()
        };
        assert_eq!(check(Some(&meters)), Vec::<String>::new());
        let none = check(None);
        assert!(
            none.len() == 1 && none[0].contains("no meter intervals were given"),
            "{none:?}"
        );
        let mut changed = meters.clone();
        changed[0].import_kwh += 1.0;
        let diffs = check(Some(&changed));
        assert!(
            diffs.iter().any(|d| d.starts_with(
                "billing_meter.import_mwh: the certificate says 3.30876, the meter intervals give 3.30976"
            )) && diffs.iter().any(|d| d.starts_with("billing_meter.intervals_sha256")),
            "{diffs:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A crash after each step of an issue leaves a whole certificate or none: before the
    /// ledger entry nothing is issued and the next issue of the period succeeds; after it, the
    /// next issue puts the committed certificate's files in place and refuses the period. (An
    /// issue once appended the entry first and wrote its files after: a kill while the PDF was
    /// made left a period reserved by a certificate that did not exist.)
    #[test]
    fn a_crash_at_any_step_leaves_a_whole_certificate_or_none() {
        for step in IssueStep::ALL {
            let dir = fresh(&format!("{step:?}"));
            let e = issue_day(&dir, Some(step)).err().unwrap();
            assert!(e.to_string().contains("crash injected"), "{e}");
            let committed = matches!(step, IssueStep::Committed | IssueStep::JsonInPlace);
            let again = issue_day(&dir, None);
            let serial = "QINGZHOU-PEDF-2026-000001";
            if committed {
                assert!(
                    matches!(&again, Err(IssueError::AlreadyCertified(_))),
                    "{step:?}: {:?}",
                    again.as_ref().err()
                );
                // The refused issue still finished the committed one's files.
                assert_eq!(
                    files(&dir),
                    vec![
                        format!("{serial}.html"),
                        format!("{serial}.json"),
                        format!("{serial}.pdf"),
                        "ledger.jsonl".to_string()
                    ],
                    "{step:?}"
                );
                let json = std::fs::read_to_string(dir.join(format!("{serial}.json"))).unwrap();
                let cert: Certificate = serde_json::from_str(&json).unwrap();
                assert_eq!(super::super::check_signature(&cert), Ok(()));
                let ledger = read_ledger(
                    &std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap(),
                    "l",
                )
                .unwrap();
                assert_eq!(ledger.len(), 1);
                assert_eq!(
                    ledger[0].certificate_sha256,
                    crate::merkle::sha256_hex(cert.canonical_json().as_bytes())
                );
            } else {
                let issued = again.unwrap_or_else(|e| panic!("{step:?}: {e}"));
                assert_eq!(issued.cert.serial, serial, "{step:?}");
                assert!(
                    issued.recovered.iter().all(|r| r.contains("removed")),
                    "{:?}",
                    issued.recovered
                );
                assert_eq!(files(&dir).len(), 4, "{step:?}: {:?}", files(&dir));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// A ledger whose last append was cut (a crash, a full disk) is repaired at the next
    /// issue: the torn line committed nothing and is cut off; the chain stays valid and the
    /// next certificate follows the last whole entry. (A torn line once made every later
    /// issue fail.)
    #[test]
    fn a_torn_last_ledger_line_is_cut_and_issuing_goes_on() {
        let dir = fresh("torn");
        issue_day(&dir, None).unwrap();
        let path = dir.join("ledger.jsonl");
        let whole = std::fs::read_to_string(&path).unwrap();
        let torn = "{\"seq\":2,\"serial\":\"QINGZ";
        std::fs::write(&path, format!("{whole}{torn}")).unwrap();
        let ledger = LockedLedger::open(&path).unwrap();
        assert_eq!(ledger.entries.len(), 1);
        assert_eq!(ledger.repaired, Some(torn.len()));
        drop(ledger);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        // The day is certified already; the ledger takes the next period's entry.
        assert!(matches!(
            issue_day(&dir, None),
            Err(IssueError::AlreadyCertified(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issues of one period at the same time (threads standing for the API and the command
    /// line) give one certificate and a valid ledger.
    #[test]
    fn concurrent_issues_of_one_period_give_one_certificate() {
        let dir = fresh("concurrent");
        let results: Vec<Result<Issued, IssueError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| issue_day(&dir, None))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, IssueError::AlreadyCertified(_))));
        let ledger = read_ledger(
            &std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap(),
            "l",
        )
        .unwrap();
        assert_eq!(ledger.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A statement only on a period that is over, recorded well enough, with something to
    /// state: a day not yet over, a day with half its intervals, and a day whose reductions
    /// round down to 0 t are each refused with the figures, and nothing is written.
    #[test]
    fn periods_not_over_thin_or_empty_of_reductions_are_refused() {
        let dir = fresh("refusals");
        let park = park();
        let day = records(&park);
        let noon = day[48].start;
        let e = issue_records(&dir, day.clone(), Some(noon), None)
            .err()
            .unwrap();
        assert!(
            matches!(&e, IssueError::NotClosed(m) if m.en.contains("certified once it is over")),
            "{e}"
        );
        let half: Vec<IntervalRecord> = day.iter().step_by(2).cloned().collect();
        let e = issue_records(&dir, half, None, None).err().unwrap();
        assert!(
            matches!(&e, IssueError::TooLittleData(m) if m.en.contains("48 of the period's 96 intervals are recorded (50.0 %), below the 90 %")),
            "{e}"
        );
        let night: Vec<IntervalRecord> = day
            .iter()
            .map(|r| IntervalRecord {
                pv_kwh: 0.0,
                grid_export_kwh: 0.0,
                grid_import_kwh: 52.0,
                ..r.clone()
            })
            .collect();
        let e = issue_records(&dir, night, None, None).err().unwrap();
        assert!(
            matches!(&e, IssueError::NothingToCertify(m) if m.en.contains("round down to 0 t")),
            "{e}"
        );
        assert_eq!(
            files(&dir),
            vec!["ledger.jsonl".to_string()],
            "no certificate written"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap(),
            "",
            "no ledger entry"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
