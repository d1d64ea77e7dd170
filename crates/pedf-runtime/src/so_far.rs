//! The billing month and the calendar year so far, as the running EMS keeps them: the month's
//! peak import (interval averages: what the demand charge is billed on), its Scope 2 with and
//! without the EMS, its consumption, the year's Scope 2. Read from the store's records at start
//! (restart-safe), raised as intervals close, reset when a new month or year begins. The peak
//! guard, every re-plan and the live state use it.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use pedf_core::park::{BudgetPeriod, BudgetStatus};
use pedf_core::records::{IntervalRecord, PeriodSoFar};
use pedf_core::Park;
use pedf_store::Store;

use crate::live::MonthLive;
use crate::replan::MonthSoFar;

/// The month and the year so far.
pub(crate) struct SoFar {
    /// The first day of the billing month it counts.
    month: NaiveDate,
    /// The start of the calendar year it counts.
    year: DateTime<Utc>,
    /// The figures.
    pub(crate) figures: MonthSoFar,
}

fn month_of(park: &Park, t: DateTime<Utc>) -> NaiveDate {
    let d = park.clock.local(t).date_naive();
    d.with_day(1).unwrap_or(d)
}

impl SoFar {
    /// The month and the year up to the interval running at `now`, from the store's records;
    /// the month's Scope 2 without the EMS as it was run alongside where it was stored,
    /// estimated from the record where not (intervals before that was stored). A store that
    /// cannot be read gives zeros, logged.
    pub(crate) fn load(park: &Park, store: &Store, now: DateTime<Utc>) -> SoFar {
        let running_start = park.clock.interval_start(now);
        let factor = park.carbon.grid_factor.value.0;
        let eta_in = park.converter.efficiency_ac_to_dc;
        let (year_start, _) = BudgetPeriod::Year.bounds(&park.clock, now);
        let (month_start, _) = BudgetPeriod::Month.bounds(&park.clock, now);
        let so_far = match store.records(year_start, running_start) {
            Ok(v) => {
                let recs: Vec<_> = v.into_iter().map(|(r, _)| r).collect();
                let mut so_far = PeriodSoFar::of(&recs, &park.clock, running_start, factor, eta_in);
                let stored = store
                    .without_ems(month_start, running_start)
                    .unwrap_or_default();
                so_far.month_scope2_without_ems_kg = recs
                    .iter()
                    .filter(|r| r.start >= month_start && r.start < running_start)
                    .map(|r| {
                        stored
                            .get(&r.start)
                            .copied()
                            .unwrap_or_else(|| r.import_without_ems_kwh(eta_in))
                            * factor
                    })
                    .sum();
                so_far
            }
            Err(e) => {
                tracing::warn!(error = %e, "the month's and year's records could not be read; 0 assumed");
                PeriodSoFar::default()
            }
        };
        SoFar {
            month: month_of(park, now),
            year: year_start,
            figures: MonthSoFar {
                peak_kw: so_far.month_peak_kw,
                scope2_kg: so_far.month_scope2_kg,
                scope2_without_ems_kg: so_far.month_scope2_without_ems_kg,
                consumption_kwh: so_far.month_consumption_kwh,
                year_scope2_kg: so_far.year_scope2_kg,
            },
        }
    }

    /// Starts a new month or year when `now` is in one.
    pub(crate) fn roll(&mut self, park: &Park, now: DateTime<Utc>) {
        if month_of(park, now) != self.month {
            self.month = month_of(park, now);
            let year_scope2_kg = self.figures.year_scope2_kg;
            self.figures = MonthSoFar {
                year_scope2_kg,
                ..MonthSoFar::default()
            };
        }
        let year = BudgetPeriod::Year.bounds(&park.clock, now).0;
        if year != self.year {
            self.year = year;
            self.figures.year_scope2_kg = 0.0;
        }
    }

    /// Whether `closed` belongs to the month counted.
    pub(crate) fn in_month(&self, park: &Park, closed: &IntervalRecord) -> bool {
        month_of(park, closed.start) == self.month
    }

    /// Adds an interval that closed; `without_ems_import_kwh` is the import the park would
    /// have had without the EMS in it (for an interval of the month).
    pub(crate) fn add(
        &mut self,
        park: &Park,
        closed: &IntervalRecord,
        without_ems_import_kwh: Option<f64>,
    ) {
        let factor = park.carbon.grid_factor.value.0;
        if BudgetPeriod::Year.bounds(&park.clock, closed.start).0 == self.year {
            self.figures.year_scope2_kg += closed.grid_import_kwh * factor;
        }
        if self.in_month(park, closed) {
            let f = &mut self.figures;
            f.peak_kw = f
                .peak_kw
                .max(closed.grid_import_kwh / park.clock.interval.hours().0);
            f.scope2_kg += closed.grid_import_kwh * factor;
            f.consumption_kwh += closed.load_kwh + closed.ev_kwh;
            f.scope2_without_ems_kg += without_ems_import_kwh.unwrap_or(0.0) * factor;
        }
    }

    /// The month as the live state shows it, with the park's budgets at `now`.
    pub(crate) fn live(&self, park: &Park, now: DateTime<Utc>) -> MonthLive {
        let f = &self.figures;
        let control = park.carbon.control;
        MonthLive {
            peak_import_kw: f.peak_kw,
            demand_free_up_to_kw: park.tariff.demand.free_up_to(f.peak_kw),
            scope2_kg: f.scope2_kg,
            scope2_without_ems_kg: f.scope2_without_ems_kg,
            consumption_kwh: f.consumption_kwh,
            year_scope2_kg: f.year_scope2_kg,
            budgets: [
                (control.monthly_budget_t, BudgetPeriod::Month, f.scope2_kg),
                (
                    control.annual_budget_t,
                    BudgetPeriod::Year,
                    f.year_scope2_kg,
                ),
            ]
            .into_iter()
            .filter_map(|(b, period, used)| {
                Some(BudgetStatus::at(period, &park.clock, b?, used, now).into())
            })
            .collect(),
            intensity_target_kg_per_kwh: control.intensity_kg_per_kwh,
            no_more_than_without_ems: control.no_more_than_without_ems,
        }
    }
}
