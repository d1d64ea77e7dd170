//! What the running EMS serves besides the live park: planning a day, a period's carbon
//! accounting, certificates (issued with their bilingual HTML and PDF, and read back), for
//! pedf-server through its typed `Services` interface. Every failure is a typed
//! [`ServiceError`]: the request's (422), not configured (503), or the EMS's own (500).

use std::path::PathBuf;

use chrono::NaiveDate;
use pedf_carbon::certificate::{
    write_meter_intervals, Certificate, CertificateIssuer, IssueError, IssuePeriod, MeterInterval,
    Rendered,
};
use pedf_carbon::factors::FactorTable;
use pedf_carbon::period::PeriodSetup;
use pedf_core::inputs::FolderError;
use pedf_core::message::Message;
use pedf_core::services::{
    CarbonSummary, CarbonTotals, CertificateFormat, History, HistoryDay, IssuedCertificate, Period,
    PlannedDay, ServiceError,
};
use pedf_core::Park;
use pedf_dispatch::{plan_optimized, CurrentState, PlanOptions};
use pedf_server::Services;
use pedf_store::Store;

/// Planning and carbon accounting from a run's files and store.
pub struct EmsServices {
    /// The park the EMS runs.
    pub park: Park,
    /// The EMS store (its interval records).
    pub store: PathBuf,
    /// The day-input folder days are planned from (a subfolder named after the day when
    /// there is one).
    pub plan_inputs: Option<PathBuf>,
    /// The emission-factor table.
    pub factors: PathBuf,
    /// Where certificates and their ledger go.
    pub certificates: PathBuf,
    /// The issuer's ed25519 key (made at first use).
    pub issuer_key: PathBuf,
    /// The least share of a period's intervals recorded for a certificate.
    pub min_coverage: f64,
    /// The EMS's clock: certificates issued through the API are stamped with its time.
    pub time: pedf_core::time::TimeSource,
    /// Set when the devices are simulated (`pedf demo`): what they are; certificates say
    /// so on their face.
    pub simulated: Option<String>,
}

/// A certificate's bilingual statement.
fn statement(cert: &Certificate) -> pedf_report::statement::Statement {
    let (zh, en) = pedf_carbon::certificate::TITLE;
    pedf_report::statement::Statement {
        title_zh: zh.into(),
        title_en: en.into(),
        heading: match &cert.data_quality.simulated {
            Some(_) => format!("{} · 模拟数据 SIMULATED DATA", cert.serial),
            None => cert.serial.clone(),
        },
        rows: pedf_carbon::certificate::rows(cert),
        closing: pedf_carbon::certificate::closing_lines(cert),
    }
}

/// A certificate's HTML and PDF (A4, fonts subset), as its issuer commits them.
pub fn certificate_renderings(cert: &Certificate) -> Rendered {
    let s = statement(cert);
    Rendered {
        html: s.to_html(),
        pdf: pedf_report::statement::system_fonts()
            .and_then(|(latin, cjk)| s.to_pdf(&[&latin, &cjk]).map_err(|e| e.to_string())),
    }
}

/// Whether a stored record's source says its whole interval was observed (`measured`; the
/// runtime's `measured-partial` and `running` were observed in part, `estimated` and `plan`
/// are no observation).
fn observed_whole(source: &str) -> bool {
    source == "measured"
}

impl EmsServices {
    /// The period's setup from the store's interval records.
    fn setup(&self, period: Period) -> Result<PeriodSetup, ServiceError> {
        // Refused before any record is read: one request never accounts more than a year.
        pedf_carbon::period::check_span(&self.park, period.from, period.to)
            .map_err(ServiceError::Unprocessable)?;
        let store_failed = |e: &dyn std::fmt::Display| {
            ServiceError::Failed(Message::framed("the EMS store", "EMS 数据库", e))
        };
        let store = Store::open(&self.store).map_err(|e| store_failed(&e))?;
        // Only intervals observed whole are records here: one the EMS saw in part (a device
        // not answering, a restart, the running interval) is a gap to the accounting, so no
        // avoided emissions are claimed for it and the coverage counts it missing.
        let records: Vec<_> = store
            .records(period.from, period.to)
            .map_err(|e| store_failed(&e))?
            .into_iter()
            .filter(|(_, source)| observed_whole(source))
            .map(|(r, _)| r)
            .collect();
        let name = self.factors.display().to_string();
        let text = std::fs::read_to_string(&self.factors).map_err(|e| {
            ServiceError::NotConfigured(Message::framed(
                &format!("[server] emission_factors = {name}"),
                &format!("运行文件 [server] emission_factors = {name} 无法读取"),
                e,
            ))
        })?;
        let table = FactorTable::parse(&name, &text).map_err(|es| {
            let (n, first) = (
                es.len(),
                es.first().map(ToString::to_string).unwrap_or_default(),
            );
            ServiceError::NotConfigured(Message::new(
                format!("[server] emission_factors = {name}: {n} error(s), the first: {first}"),
                format!(
                    "运行文件 [server] emission_factors = {name} 有 {n} 处错误，第一处：{first}"
                ),
            ))
        })?;
        pedf_carbon::period::setup(
            self.park.clone(),
            records,
            period.from,
            period.to,
            &table,
            "auto",
            0.0,
        )
        .map_err(|e| {
            ServiceError::Unprocessable(Message::framed(
                "the period's factors",
                "期间的排放因子",
                e,
            ))
        })
    }

    /// The records a certificate covers, as its issue took them from the store (the
    /// intervals observed whole inside its period), in the records file format: what
    /// `pedf certificate verify --data` recomputes the certificate from.
    /// The billing meters' interval energies in `[from, to)` the EMS kept (from their
    /// counters, `run/billing.rs`).
    fn meter_intervals(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<MeterInterval>, ServiceError> {
        let failed = |e: &dyn std::fmt::Display| {
            ServiceError::Failed(Message::framed("the EMS store", "EMS 数据库", e))
        };
        let store = Store::open(&self.store).map_err(|e| failed(&e))?;
        Ok(store
            .meter_intervals(from, to)
            .map_err(|e| failed(&e))?
            .into_iter()
            .map(|m| MeterInterval {
                meter: m.meter,
                start: m.start,
                import_kwh: m.import_kwh,
                export_kwh: m.export_kwh,
            })
            .collect())
    }

    /// Certificate `id` as written, and its period.
    fn certificate_of(
        &self,
        id: &str,
    ) -> Result<
        (
            Certificate,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        ),
        ServiceError,
    > {
        let p = self.certificates.join(format!("{id}.json"));
        let text = std::fs::read_to_string(&p).map_err(|_| {
            ServiceError::NotFound(Message::new(
                format!("no certificate {id}"),
                format!("没有证书 {id}"),
            ))
        })?;
        let cert: Certificate = serde_json::from_str(&text).map_err(|e| {
            ServiceError::Failed(Message::framed(
                &format!("certificate {id}"),
                &format!("证书 {id} 无法读取"),
                e,
            ))
        })?;
        let instant = |s: &str| {
            pedf_core::time::parse_rfc3339(s).map_err(|e| {
                ServiceError::Failed(Message::framed(
                    &format!("certificate {id}'s period"),
                    &format!("证书 {id} 的期间无法读取"),
                    e,
                ))
            })
        };
        let (from, to) = (instant(&cert.period.from)?, instant(&cert.period.to)?);
        Ok((cert, from, to))
    }

    /// The billing meters' intervals certificate `id` states, as `pedf certificate verify
    /// --meter-intervals` reads them (only the header where it states none).
    fn certificate_meter_intervals(&self, id: &str) -> Result<String, ServiceError> {
        let (cert, from, to) = self.certificate_of(id)?;
        let list = if cert.billing_meter.is_some() {
            self.meter_intervals(from, to)?
        } else {
            Vec::new()
        };
        Ok(format!(
            "# The billing meters' interval energies certificate {id} states ({} to {}), from the EMS store: check with\n# pedf certificate verify {id}.json --public-key KEY --data {id}.records.csv --meter-intervals {id}.meter-intervals.csv\n{}",
            cert.period.from,
            cert.period.to,
            write_meter_intervals(&list, &self.park.clock)
        ))
    }

    fn certificate_records(&self, id: &str) -> Result<String, ServiceError> {
        let (cert, from, to) = self.certificate_of(id)?;
        let setup = self.setup(Period { from, to })?;
        let inside: Vec<_> = setup
            .records
            .into_iter()
            .filter(|r| r.start >= from && r.start < to)
            .collect();
        Ok(format!(
            "# The interval records certificate {id} covers ({} to {}), from the EMS store: check with\n# pedf certificate verify {id}.json --public-key KEY --data {id}.records.csv\n{}",
            cert.period.from,
            cert.period.to,
            pedf_core::records::write_records(&inside, &self.park.clock)
        ))
    }

    fn text(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        self.park.clock.local(t).to_rfc3339()
    }
}

impl Services for EmsServices {
    fn plan_day(&self, date: NaiveDate) -> Result<PlannedDay, ServiceError> {
        let dir = self.plan_inputs.as_ref().ok_or_else(|| {
            ServiceError::NotConfigured(Message::new(
                "planning needs the day-input folder: set [server] plan_inputs in the run file",
                "制定计划需要日输入文件夹：请在运行文件中设置 [server] plan_inputs",
            ))
        })?;
        let load = |d: &std::path::Path| {
            pedf_core::inputs::load_days_inputs_from_dir(&self.park, d, date, 1)
        };
        let inputs = load(&dir.join(date.to_string()))
            .or_else(|_| load(dir))
            .map_err(|e| match e {
                FolderError::Invalid { diagnostics, .. } => {
                    let n = diagnostics.len();
                    // Where and what (the hints speak to the command line).
                    let first = diagnostics
                        .iter()
                        .take(3)
                        .map(|d| format!("{}:{}: {}", d.file, d.line, d.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    ServiceError::Unprocessable(Message::new(
                        format!("the day inputs of {date} have {n} error(s): {first}"),
                        format!("{date} 的日输入有 {n} 处错误：{first}"),
                    ))
                }
                other => ServiceError::Unprocessable(Message::framed(
                    &format!("no day inputs for {date}"),
                    &format!("没有 {date} 的日输入"),
                    other,
                )),
            })?;
        // The optimiser falls back to the rule-based plan itself when HiGHS fails (its
        // strategy says so); an error here is in the inputs, which no planner can use.
        let plan = plan_optimized(
            &self.park,
            &inputs,
            &PlanOptions::default(),
            &CurrentState::default(),
        )
        .map_err(|e| {
            ServiceError::Unprocessable(Message::framed("planning failed", "计划失败", e))
        })?;
        let strategy = match plan.strategy {
            pedf_core::plan::Strategy::Optimized => "optimized".to_string(),
            pedf_core::plan::Strategy::Rule => format!(
                "rule, fallback: {}",
                plan.notes
                    .iter()
                    .find(|n| n.contains("optimiser failed"))
                    .map_or("the optimiser gave the rule-based plan", String::as_str)
            ),
        };
        Ok(PlannedDay { strategy, plan })
    }

    fn carbon(&self, period: Period) -> Result<CarbonSummary, ServiceError> {
        let setup = self.setup(period)?;
        // Up to the EMS's now: the intervals still to come are no gap to estimate (a period
        // to the end of the month once counted its future days as estimated intervals).
        let end = setup
            .to
            .min(self.park.clock.interval_start(self.time.now()))
            .max(setup.from);
        let a = pedf_carbon::account::account(&setup.records, setup.from, end, &setup.options);
        let tt = &a.totals;
        Ok(CarbonSummary {
            from: self.text(period.from),
            to: self.text(end),
            factor: setup.choice.location.describe(),
            baseline: setup.choice.baseline_text.clone(),
            notes: setup.choice.notes.clone(),
            measured_intervals: tt.intervals - tt.estimated_intervals,
            estimated_intervals: tt.estimated_intervals,
            totals: CarbonTotals {
                pv_kwh: tt.pv_kwh,
                grid_import_kwh: tt.grid_import_kwh,
                grid_export_kwh: tt.grid_export_kwh,
                consumption_kwh: tt.consumption_kwh,
                location_kg: tt.location_kg,
                market_kg: tt.market_kg,
                avoided_pv_kg: tt.avoided_pv_kg,
                shifting_kg: tt.shifting_kg,
                park_intensity_kg_per_kwh: tt.park_intensity,
                self_sufficiency: tt.self_sufficiency,
                self_consumption: tt.self_consumption,
                cfe_score: tt.cfe_score,
            },
        })
    }

    fn history(&self, period: Period) -> Result<History, ServiceError> {
        let setup = self.setup(period)?;
        let clock = &self.park.clock;
        // Not past the EMS's now: the intervals still to come are no gap of the day.
        let now = self.time.now();
        let end = setup
            .to
            .min(clock.interval_start(now) + clock.interval.duration());
        let bill = pedf_core::bill::bill(&self.park, &setup.records, setup.from, end);
        let days = bill
            .days
            .into_iter()
            .map(|b| {
                let date =
                    chrono::NaiveDate::parse_from_str(&b.day, "%Y-%m-%d").unwrap_or_default();
                let from = clock.start_of_local_day(date).max(setup.from);
                let to = clock
                    .start_of_local_day(date + chrono::Duration::days(1))
                    .min(end);
                let a = pedf_carbon::account::account(&setup.records, from, to, &setup.options);
                HistoryDay {
                    intervals_expected: a.totals.intervals,
                    scope2_kg: a.totals.location_kg,
                    avoided_kg: a.totals.avoided_pv_kg,
                    self_sufficiency: a.totals.self_sufficiency,
                    bill: b,
                }
            })
            .collect();
        let tariff = &self.park.tariff;
        let window = tariff.demand.window_minutes;
        let factor = setup.choice.location.describe();
        let mut notes = vec![
            Message::new(
                "records: the intervals the EMS observed whole (measured); a day's missing intervals are counted in its carbon figures as the carbon page estimates them, never in its bill",
                "记录：EMS 完整观测（实测）的区间；一天中缺失的区间按碳核算页面的估算方法计入碳排放，从不计入电费",
            ),
            Message::new(
                format!(
                    "bill: {} (source: {}); the demand charge is the month's on its highest {window}-minute import so far",
                    tariff.name, tariff.source
                ),
                format!(
                    "电费：{}（来源：{}）；需量电费按本月迄今最高的 {window} 分钟平均购电功率计",
                    tariff.name, tariff.source
                ),
            ),
            Message::new(format!("carbon: {factor}"), format!("碳排放因子：{factor}")),
        ];
        if bill.unpriced_intervals > 0 {
            let n = bill.unpriced_intervals;
            notes.push(Message::new(
                format!(
                    "{n} interval(s) have no time-of-use price in the tariff: counted at 0 CNY"
                ),
                format!("{n} 个区间在电价中没有分时价格：按 0 元计"),
            ));
        }
        Ok(History {
            from: self.text(period.from),
            to: self.text(period.to),
            days,
            months: bill.months,
            unpriced_intervals: bill.unpriced_intervals,
            notes,
        })
    }

    fn issue_certificate(
        &self,
        period: Period,
        by: &str,
    ) -> Result<IssuedCertificate, ServiceError> {
        let setup = self.setup(period)?;
        let meter_intervals = self.meter_intervals(period.from, period.to)?;
        let issuer = CertificateIssuer {
            out_dir: &self.certificates,
            key: &self.issuer_key,
            ledger: None,
            min_coverage: self.min_coverage,
        };
        let i = issuer
            .issue(
                IssuePeriod::of(&setup, Vec::new())
                    .simulated(self.simulated.clone())
                    .billing(meter_intervals),
                self.time.now(),
                certificate_renderings,
            )
            .map_err(|e| match e {
                IssueError::NoRecords(m) => ServiceError::Unprocessable(Message::new(
                    format!("the EMS store's interval records: {}", m.en),
                    format!("EMS 数据库的区间记录：{}", m.zh),
                )),
                IssueError::AlreadyCertified(m)
                | IssueError::NotClosed(m)
                | IssueError::TooLittleData(m)
                | IssueError::NothingToCertify(m) => ServiceError::Unprocessable(m),
                IssueError::Io(m) => ServiceError::Failed(m),
            })?;
        tracing::info!(serial = %i.cert.serial, by, "certificate issued from the API");
        let f = &i.cert.figures;
        Ok(IssuedCertificate {
            id: i.cert.serial.clone(),
            from: i.cert.period.from.clone(),
            to: i.cert.period.to.clone(),
            stated_t: f.stated_reductions_t,
            emission_reductions_t: f.emission_reductions_t,
            scope2_location_based_t: f.scope2_location_based_t,
            intervals_recorded: i.cert.data_quality.intervals_recorded,
            intervals_expected: i.cert.data_quality.intervals_expected,
            pdf: i.pdf_error.is_none(),
            issuer_public_key: i.cert.issuer.public_key.clone(),
            ledger_seq: i.ledger_seq,
        })
    }

    fn certificate_file(
        &self,
        id: &str,
        format: CertificateFormat,
    ) -> Result<Vec<u8>, ServiceError> {
        let kind = format.extension();
        if format == CertificateFormat::Records {
            return self.certificate_records(id).map(String::into_bytes);
        }
        if format == CertificateFormat::MeterIntervals {
            return self.certificate_meter_intervals(id).map(String::into_bytes);
        }
        let p = self.certificates.join(format!("{id}.{kind}"));
        std::fs::read(&p).map_err(|_| {
            ServiceError::NotFound(Message::new(
                format!("no {kind} of certificate {id}"),
                format!("证书 {id} 没有 {kind} 文件"),
            ))
        })
    }
}
