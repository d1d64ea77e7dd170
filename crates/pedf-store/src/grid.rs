//! A grid request's baseline and delivery from what the store keeps: one procedure for the
//! running EMS (which says a request's delivery when it is over) and the API (which lists
//! them).

use std::collections::BTreeSet;

use chrono::NaiveDate;
use pedf_core::grid_request::{baseline, delivery, Baseline, BaselineRule, Delivery, GridRequest};
use pedf_core::time::ParkClock;

use crate::{Store, TakenGridRequest};

/// What a request's delivery was measured against.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// The baseline of these like days (the settlement's basis).
    Baseline(Vec<NaiveDate>),
    /// The plan active when the request was taken (its id), where there is no baseline (why):
    /// a measure of what the park did for the request, not a settlement basis.
    Plan(i64, String),
}

/// A request's delivery and what it was measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Delivery per interval recorded, the totals and the settlement (against a baseline
    /// only).
    pub delivery: Delivery,
    /// Against what.
    pub against: Reference,
}

impl Reference {
    /// Said in a sentence: "against the baseline (the mean of ...)" or "against plan #N ...".
    pub fn said(&self) -> String {
        match self {
            Reference::Baseline(days) => format!(
                "against the baseline (the mean of {})",
                days.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Reference::Plan(id, why) => format!(
                "against plan #{id}, active when it was taken (no baseline: {why}; no settlement without one)"
            ),
        }
    }
}

impl Store {
    /// The baseline of `r` under the default rule from the records kept, the days of other
    /// requests left out.
    pub fn grid_request_baseline(
        &self,
        r: &GridRequest,
        clock: &ParkClock,
        rule: &BaselineRule,
    ) -> Result<Baseline, String> {
        let from = r.start - chrono::Duration::days(rule.look_back_days + 1);
        let records: Vec<_> = self
            .stored_records(from, r.end)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| s.record)
            .collect();
        let excluded: BTreeSet<NaiveDate> = self
            .grid_requests(from, r.start)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|o| o.request.id != r.id)
            .map(|o| clock.local(o.request.start).date_naive())
            .collect();
        baseline(r, &records, clock, rule, &excluded)
    }

    /// What the park delivered of `t` so far: against its baseline (`known`, or made from the
    /// records under `rule`), or where there is none against the plan active when it was
    /// taken; an error says why neither can be had.
    pub fn grid_request_delivery(
        &self,
        t: &TakenGridRequest,
        clock: &ParkClock,
        rule: &BaselineRule,
        known: Option<&Baseline>,
    ) -> Result<Measured, String> {
        let r = &t.request;
        let records: Vec<_> = self
            .stored_records(r.start, r.end)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| s.record)
            .collect();
        let (reference, against) = match known
            .cloned()
            .map_or_else(|| self.grid_request_baseline(r, clock, rule), Ok)
        {
            Ok(b) => {
                let days = b.days.clone();
                (b, Reference::Baseline(days))
            }
            Err(why) => {
                let Some(id) = t.reference_plan else {
                    return Err(format!("{why}, and no plan was active when it was taken"));
                };
                let plan = match self.plan(id) {
                    Ok(Some((_, text))) => serde_json::from_str::<pedf_core::plan::Plan>(&text)
                        .map_err(|e| format!("{why}; plan #{id} does not read: {e}"))?,
                    Ok(None) => return Err(format!("{why}; plan #{id} is no longer kept")),
                    Err(e) => return Err(format!("{why}; plan #{id}: {e}")),
                };
                (Baseline::of_plan(r, &plan, clock), Reference::Plan(id, why))
            }
        };
        let mut d = delivery(r, &reference, &records, clock);
        if matches!(against, Reference::Plan(..)) {
            d.settlement_cny = None;
        }
        Ok(Measured {
            delivery: d,
            against,
        })
    }
}
