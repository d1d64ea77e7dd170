//! The planning problem in numbers: every input of the park and the day inputs resolved to
//! per-interval vectors, shared by the optimiser, the rule-based strategy and the evaluator.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use pedf_core::assets::Flexibility;
use pedf_core::inputs::{DayInputs, EvSession};
use pedf_core::park::{BudgetPeriod, BudgetStatus};
use pedf_core::Park;

use crate::{CurrentState, PlanOptions, TerminalSoc};

/// Smallest wear cost used per kWh discharged, so that charging and discharging in the same
/// interval (which only burns energy) is never a tie with doing nothing.
pub(crate) const MIN_DEGRADATION_CNY_PER_KWH: f64 = 1e-3;

pub(crate) struct Battery {
    pub id: String,
    pub ch_max: f64,
    pub dis_max: f64,
    pub ec: f64,
    pub ed: f64,
    pub lo: f64,
    pub hi: f64,
    pub soc0: f64,
    pub target: f64,
    pub deg: f64,
    /// CNY per kWh the battery ends below `target` (`PlanOptions::terminal_refill_priced`).
    pub short_price: f64,
}

pub(crate) struct Curtailable {
    pub id: String,
    pub demand: Vec<f64>,
    pub share: f64,
    pub voll: f64,
}

/// One energy requirement of a deferrable load: deliver `energy` kWh inside `intervals`.
pub(crate) struct Requirement {
    pub intervals: Vec<usize>,
    pub energy: f64,
    pub label: String,
}

pub(crate) struct Deferrable {
    pub id: String,
    pub min: f64,
    pub max: f64,
    /// Whether the load may run in each interval (inside some window).
    pub allowed: Vec<bool>,
    pub requirements: Vec<Requirement>,
    /// Whether the MILP enforces "off or at least `min`" (see `Session::strict`).
    pub strict: bool,
}

pub(crate) struct Session {
    pub id: String,
    pub charger: String,
    pub first: usize,
    pub end: usize,
    pub min: f64,
    pub max: f64,
    pub need: f64,
    /// Whether the MILP enforces "off or at least `min`". The search starts with it relaxed
    /// everywhere and enforces it only where a solution runs below the minimum (a binary only
    /// where it changes the answer); the final plan always respects every minimum.
    pub strict: bool,
}

pub(crate) struct Problem {
    pub n: usize,
    pub dt: f64,
    pub pv: Vec<f64>,
    pub fixed: Vec<f64>,
    pub curtailable: Vec<Curtailable>,
    pub deferrable: Vec<Deferrable>,
    pub batteries: Vec<Battery>,
    pub sessions: Vec<Session>,
    pub imp_price: Vec<f64>,
    pub exp_price: Vec<f64>,
    pub ci: Vec<f64>,
    pub carbon_price_per_kg: f64,
    pub eta_in: f64,
    pub eta_out: f64,
    pub rating: f64,
    pub imp_cap: f64,
    /// The grid's import cap per interval (`CurrentState::grid_caps`), kW: import above it is
    /// a shortfall at `grid_penalty`.
    pub imp_req: Vec<Option<f64>>,
    /// The grid's export floor per interval (`GridCap::export_at_least_kw`), kW: net export
    /// (export less import) below it is a shortfall at `grid_penalty`.
    pub exp_req: Vec<Option<f64>>,
    /// CNY per kWh imported above `imp_req` or exported short of `exp_req`.
    pub grid_penalty: f64,
    pub exp_cap: Vec<f64>,
    pub pv_only: bool,
    pub no_simultaneous: bool,
    /// CNY per kW the month's bill adds for each kW of peak above `existing_peak`.
    pub demand_rate: f64,
    /// The month's peak import before the horizon (reported).
    pub month_peak: f64,
    /// The level up to which the horizon's peak costs nothing (`DemandCharge::free_up_to`,
    /// at most the import limit).
    pub existing_peak: f64,
    /// Range the horizon's peak import can take in a plan worth looking at: the import limit
    /// and the month's peak so far unless tightened (`tighten_peak`), which also narrows every
    /// interval's import bound.
    pub peak_lo: f64,
    pub peak_hi: f64,
    /// Import/export directions held fixed in the MILP (`Some(true)` importing), by interval;
    /// `None` leaves the binary free.
    pub directions: Vec<Option<bool>>,
    /// Bounds on how many intervals of a run of consecutive import/export-binary intervals
    /// import, by the run's first interval (`milp::count_split`); a run not listed is free.
    pub import_counts: std::collections::BTreeMap<usize, (f64, f64)>,
    pub penalty: f64,
    pub unserved_penalty: f64,
    /// The annual grid factor, kg/kWh: location-based Scope 2 as the report and backtests
    /// count it (import x this factor, whatever the hourly shape the carbon price uses).
    pub scope2_factor: f64,
    /// Location-based Scope 2 the horizon may emit (carbon dual control), kg; `None`: no limit.
    /// Above it each kg costs `penalty`.
    pub scope2_allowance: Option<f64>,
    /// Scope 2 of the same horizon without the EMS (battery idle, cars on arrival at full
    /// power, deferrable loads flat over their window, nothing shed), kg.
    pub scope2_without_ems: f64,
    pub notes: Vec<String>,
}

impl Problem {
    /// Effective import cost per kWh (energy plus carbon), the figure that decides whether a
    /// binary is needed.
    pub fn import_cost(&self, t: usize) -> f64 {
        self.imp_price[t] + self.carbon_price_per_kg * self.ci[t]
    }

    /// The import the grid asks at most at `t` (its request's cap, or the connection's).
    pub fn imp_limit(&self, t: usize) -> f64 {
        self.imp_req[t].map_or(self.imp_cap, |c| c.min(self.imp_cap))
    }

    /// Total curtailable demand at t.
    pub fn curtailable_demand(&self, t: usize) -> f64 {
        self.curtailable.iter().map(|c| c.demand[t]).sum()
    }

    /// The most the DC bus can take at `t`: every load at its most, every session and
    /// deferrable load at full power, every battery charging at full power.
    pub fn sink_max(&self, t: usize) -> f64 {
        self.fixed[t]
            + self.curtailable_demand(t)
            + self
                .deferrable
                .iter()
                .filter(|d| d.allowed[t])
                .map(|d| d.max)
                .sum::<f64>()
            + self
                .sessions
                .iter()
                .filter(|s| s.first <= t && t < s.end)
                .map(|s| s.max)
                .sum::<f64>()
            + self.batteries.iter().map(|b| b.ch_max).sum::<f64>()
    }

    /// An upper bound on import at `t` that keeps at least one optimal plan. Where importing
    /// costs money and importing while exporting is forbidden or does not pay, some optimal
    /// plan never imports and exports at once (netting the two is no dearer) and never
    /// imports while curtailing PV (using the PV and importing less is cheaper), so import
    /// never needs to exceed what the bus can take beyond all of its PV.
    pub fn import_bound(&self, t: usize) -> f64 {
        let both_pay = !self.no_simultaneous
            && self.exp_cap[t] > 0.0
            && self.import_cost(t) < self.exp_price[t] * self.eta_in * self.eta_out;
        if self.import_cost(t) > 0.0 && !both_pay {
            (((self.sink_max(t) - self.pv[t]) / self.eta_in).max(0.0))
                .min(self.imp_cap)
                .min(self.peak_hi)
        } else {
            self.imp_cap.min(self.peak_hi)
        }
    }

    pub fn build(
        park: &Park,
        inputs: &DayInputs,
        opts: &PlanOptions,
        state: &CurrentState,
    ) -> Problem {
        let n = inputs.len();
        let dt = park.clock.interval.hours().0;
        let mut notes = inputs.notes.clone();
        let pv = inputs.pv_total();
        let mut fixed = vec![0.0; n];
        for l in &park.fixed_loads {
            if let Some(v) = inputs.load_kw.get(&l.id) {
                for (f, x) in fixed.iter_mut().zip(v) {
                    *f += x;
                }
            }
        }
        let local_dates: Vec<NaiveDate> = inputs
            .starts
            .iter()
            .map(|t| park.clock.local(*t).date_naive())
            .collect();
        let tods: Vec<u32> = inputs
            .starts
            .iter()
            .map(|t| pedf_core::time::TimeOfDay::of(park.clock.local(*t).time()).minutes())
            .collect();

        let mut curtailable = Vec::new();
        let mut deferrable = Vec::new();
        for l in &park.flexible_loads {
            match &l.flexibility {
                Flexibility::Curtailable {
                    curtailable_share,
                    value_of_lost_load,
                } => curtailable.push(Curtailable {
                    id: l.id.clone(),
                    demand: inputs
                        .load_kw
                        .get(&l.id)
                        .cloned()
                        .unwrap_or_else(|| vec![0.0; n]),
                    share: *curtailable_share,
                    voll: value_of_lost_load.0,
                }),
                Flexibility::Deferrable {
                    energy,
                    window_start,
                    window_end,
                } => {
                    let allowed: Vec<bool> = tods
                        .iter()
                        .map(|m| *m >= window_start.minutes() && *m < window_end.minutes())
                        .collect();
                    let window_len = (window_end.minutes() - window_start.minutes()) as f64
                        / park.clock.interval.minutes() as f64;
                    let mut by_day: BTreeMap<NaiveDate, Vec<usize>> = BTreeMap::new();
                    for t in 0..n {
                        if allowed[t] {
                            by_day.entry(local_dates[t]).or_default().push(t);
                        }
                    }
                    let delivered = state
                        .deferrable_delivered_kwh
                        .get(&l.id)
                        .copied()
                        .unwrap_or(0.0);
                    let mut requirements = Vec::new();
                    for (day, ivs) in by_day {
                        let mut need = energy.0;
                        if (ivs.len() as f64) < window_len - 1e-9 {
                            if day == local_dates[0] && delivered > 0.0 {
                                need = (energy.0 - delivered).max(0.0);
                                notes.push(format!(
                                    "{}: {delivered:.1} kWh already delivered on {day}; {need:.1} kWh left",
                                    l.id
                                ));
                            } else {
                                need = energy.0 * ivs.len() as f64 / window_len;
                                notes.push(format!(
                                    "{}: only {} of its {} window intervals on {day} are in the horizon; {need:.1} of {} kWh required (prorated)",
                                    l.id,
                                    ivs.len(),
                                    window_len,
                                    energy.0
                                ));
                            }
                        }
                        requirements.push(Requirement {
                            intervals: ivs,
                            energy: need,
                            label: format!("{} on {day}", l.id),
                        });
                    }
                    deferrable.push(Deferrable {
                        id: l.id.clone(),
                        min: l.min_power.0,
                        max: l.max_power.0,
                        allowed,
                        requirements,
                        strict: true,
                    });
                }
            }
        }

        let batteries = park
            .batteries
            .iter()
            .map(|b| {
                let cap = b.capacity.0;
                let soc0 = state
                    .soc_kwh
                    .get(&b.id)
                    .copied()
                    .unwrap_or(b.initial_soc * cap);
                let mut lo = b.soc_min * cap;
                let mut hi = b.soc_max * cap;
                if soc0 < lo || soc0 > hi {
                    notes.push(format!(
                        "battery {} starts at {:.1} kWh, outside its window {:.1}-{:.1} kWh; the window is widened to include it",
                        b.id, soc0, lo, hi
                    ));
                    lo = lo.min(soc0);
                    hi = hi.max(soc0);
                }
                let target = match opts.terminal_soc {
                    TerminalSoc::AtLeastInitial => soc0,
                    TerminalSoc::AtLeast(f) => (f * cap).clamp(lo, hi),
                    TerminalSoc::Free => lo,
                };
                let short_price = if opts.terminal_refill_priced {
                    let cheapest = (0..n)
                        .map(|t| {
                            inputs.import_price[t]
                                + park.carbon.carbon_price_cny_per_t / 1000.0
                                    * inputs.carbon_intensity[t]
                        })
                        .fold(f64::INFINITY, f64::min);
                    (cheapest / (park.converter.efficiency_ac_to_dc * b.charge_efficiency))
                        .max(0.0)
                } else {
                    opts.unmet_penalty_cny_per_kwh
                };
                Battery {
                    short_price,
                    id: b.id.clone(),
                    ch_max: b.max_charge.0,
                    dis_max: b.max_discharge.0,
                    ec: b.charge_efficiency,
                    ed: b.discharge_efficiency,
                    lo,
                    hi,
                    soc0,
                    target,
                    deg: b.degradation_cost.0.max(MIN_DEGRADATION_CNY_PER_KWH),
                }
            })
            .collect();

        let sessions: Vec<Session> = inputs
            .sessions
            .iter()
            .map(|s: &EvSession| {
                let c = park.ev_chargers.iter().find(|c| c.id == s.charger);
                let delivered = state.ev_delivered_kwh.get(&s.id).copied().unwrap_or(0.0);
                Session {
                    id: s.id.clone(),
                    charger: s.charger.clone(),
                    first: s.first,
                    end: s.end,
                    min: c.map(|c| c.min_power.0).unwrap_or(0.0),
                    max: c.map(|c| c.max_power.0).unwrap_or(0.0),
                    need: (s.energy_kwh - delivered).max(0.0),
                    strict: true,
                }
            })
            .collect();

        let rules = &park.grid.export_rules;
        let rating = park.converter.rating.0;
        let imp_cap = park.grid.import_limit.0.min(rating);
        let eta_out = park.converter.efficiency_dc_to_ac;
        let asked: Vec<crate::GridCap> = inputs
            .starts
            .iter()
            .map(|t| state.grid_caps.get(t).copied().unwrap_or_default())
            .collect();
        let exp_cap: Vec<f64> = (0..n)
            .map(|t| {
                let own = if !rules.allow_export {
                    0.0
                } else if rules.export_only_from_pv {
                    park.grid.export_limit.0.min(rating).min(pv[t] * eta_out)
                } else {
                    park.grid.export_limit.0.min(rating)
                };
                asked[t].export_kw.map_or(own, |c| own.min(c.max(0.0)))
            })
            .collect();
        let imp_req: Vec<Option<f64>> = asked
            .iter()
            .map(|a| a.import_kw.map(|c| c.max(0.0)).filter(|c| *c < imp_cap))
            .collect();
        let exp_req: Vec<Option<f64>> = asked
            .iter()
            .map(|a| a.export_at_least_kw.filter(|x| *x > 0.0))
            .collect();
        if exp_req.iter().any(Option::is_some) {
            notes.push(format!(
                "the grid asks export at least {:.1} kW (the highest) in {} interval(s): export short of it is a shortfall at {:.0} CNY/kWh",
                exp_req.iter().flatten().fold(0.0, |a: f64, b| a.max(*b)),
                exp_req.iter().flatten().count(),
                2.0 * opts.unmet_penalty_cny_per_kwh
            ));
        }
        if imp_req.iter().any(Option::is_some) {
            notes.push(format!(
                "the grid asks import at most {:.1} kW (the lowest) in {} interval(s): import above it is a shortfall at {:.0} CNY/kWh",
                imp_req.iter().flatten().fold(f64::INFINITY, |a, b| a.min(*b)),
                imp_req.iter().flatten().count(),
                2.0 * opts.unmet_penalty_cny_per_kwh
            ));
        }
        // The demand charge as the bill computes it: one window sets the month's charge, so
        // raising the month's peak costs the whole monthly rate, whatever the horizon; up to
        // the month's peak so far (or the target, or 105 % of a contract) it costs nothing.
        let demand = &park.tariff.demand;
        let free = demand.free_up_to(state.month_peak_import_kw).min(imp_cap);
        if demand.marginal_rate() > 0.0 && free <= 0.0 {
            notes.push(format!(
                "no month peak so far and no demand target: the horizon's whole peak is charged as the month's new peak at {:.2} CNY/kW (give the month's peak so far, e.g. --month-peak, or the park's tariff.demand_target_kw)",
                demand.marginal_rate()
            ));
        }
        if local_dates
            .first()
            .zip(local_dates.last())
            .is_some_and(|(a, b)| (a.year(), a.month()) != (b.year(), b.month()))
        {
            notes.push(
                "the horizon runs into the next billing month: its peak is charged as one month's (an upper bound on the bill)".into(),
            );
        }
        // Carbon dual control: the horizon's Scope 2 allowance.
        let scope2_factor = park.carbon.grid_factor.value.0;
        let scope2_without_ems = scope2_factor
            * dt
            * without_ems_import(
                n,
                dt,
                &pv,
                &fixed,
                &curtailable,
                &deferrable,
                &sessions,
                park.converter.efficiency_ac_to_dc,
                imp_cap,
            );
        let control = park.carbon.control;
        let mut scope2_allowance: Option<f64> = None;
        if control.no_more_than_without_ems {
            // The month is what is compared: the horizon's counterfactual plus what the month
            // so far stayed under it (or minus what it went over).
            let carry = state.month_scope2_without_ems_kg - state.month_scope2_kg;
            scope2_allowance = Some((scope2_without_ems + carry).max(0.0));
        }
        let horizon_h = n as f64 * dt;
        let mut limit = |allowance: f64, note: String| {
            notes.push(note);
            scope2_allowance = Some(scope2_allowance.map_or(allowance, |a| a.min(allowance)));
        };
        for (budget, period, used) in [
            (
                control.monthly_budget_t,
                BudgetPeriod::Month,
                state.month_scope2_kg,
            ),
            (
                control.annual_budget_t,
                BudgetPeriod::Year,
                state.year_scope2_kg,
            ),
        ] {
            let Some(budget_t) = budget else { continue };
            let status = BudgetStatus::at(period, &park.clock, budget_t, used, inputs.starts[0]);
            let share = status.share_kg(horizon_h);
            limit(
                share,
                format!(
                    "{}; this plan's share of what is left {share:.0} kg for {horizon_h:.1} of {:.0} h",
                    status.describe(),
                    status.hours_left
                ),
            );
        }
        if let Some(target) = control.intensity_kg_per_kwh {
            // The month's Scope 2 no more than the target times its consumption: this horizon
            // may emit the target times its own consumption plus what the month so far stayed
            // under the line (less what it went over).
            let consumption = dt
                * (0..n)
                    .map(|t| fixed[t] + curtailable.iter().map(|c| c.demand[t]).sum::<f64>())
                    .sum::<f64>()
                + deferrable
                    .iter()
                    .flat_map(|d| d.requirements.iter().map(|r| r.energy))
                    .sum::<f64>()
                + sessions.iter().map(|s| s.need).sum::<f64>();
            let carry = target * state.month_consumption_kwh - state.month_scope2_kg;
            let allowance = (target * consumption + carry).max(0.0);
            let so_far = if state.month_consumption_kwh > 0.0 {
                format!(
                    "{:.3} kg/kWh so far this month",
                    state.month_scope2_kg / state.month_consumption_kwh
                )
            } else {
                "nothing consumed yet this month".to_string()
            };
            limit(
                allowance,
                format!(
                    "Scope 2 intensity target {target:.3} kg/kWh consumed ({so_far}): this plan may emit {allowance:.0} kg for its {consumption:.0} kWh"
                ),
            );
        }
        Problem {
            scope2_factor,
            scope2_allowance,
            scope2_without_ems,
            n,
            dt,
            pv,
            fixed,
            curtailable,
            deferrable,
            batteries,
            sessions,
            imp_price: inputs.import_price.clone(),
            exp_price: inputs.export_price.clone(),
            ci: inputs.carbon_intensity.clone(),
            carbon_price_per_kg: park.carbon.carbon_price_cny_per_t / 1000.0,
            eta_in: park.converter.efficiency_ac_to_dc,
            eta_out,
            rating,
            imp_cap,
            imp_req,
            exp_req,
            grid_penalty: 2.0 * opts.unmet_penalty_cny_per_kwh,
            exp_cap,
            pv_only: rules.export_only_from_pv,
            no_simultaneous: rules.no_simultaneous_import_export,
            demand_rate: demand.marginal_rate(),
            month_peak: state.month_peak_import_kw,
            existing_peak: free,
            peak_lo: free,
            peak_hi: imp_cap,
            directions: vec![None; n],
            import_counts: Default::default(),
            penalty: opts.unmet_penalty_cny_per_kwh,
            unserved_penalty: opts.unserved_penalty_cny_per_kwh,
            notes,
        }
    }
}

/// The horizon's grid import without the EMS, kWh per interval hour summed (multiply by `dt`
/// for kWh): battery idle, every session charging from its first interval at full power until
/// its need is met, deferrable requirements spread evenly over their intervals, curtailable
/// loads at their demand; import capped at the limit (beyond it demand would go unserved).
#[allow(clippy::too_many_arguments)]
fn without_ems_import(
    n: usize,
    dt: f64,
    pv: &[f64],
    fixed: &[f64],
    curtailable: &[Curtailable],
    deferrable: &[Deferrable],
    sessions: &[Session],
    eta_in: f64,
    imp_cap: f64,
) -> f64 {
    let mut deficit: Vec<f64> = (0..n)
        .map(|t| fixed[t] + curtailable.iter().map(|c| c.demand[t]).sum::<f64>() - pv[t])
        .collect();
    for d in deferrable {
        for r in &d.requirements {
            if r.intervals.is_empty() {
                continue;
            }
            let kw = (r.energy / (r.intervals.len() as f64 * dt)).min(d.max);
            for &t in &r.intervals {
                deficit[t] += kw;
            }
        }
    }
    for s in sessions {
        let mut left = s.need;
        for x in deficit.iter_mut().take(s.end).skip(s.first) {
            if left <= 1e-12 {
                break;
            }
            let kw = s.max.min(left / dt);
            *x += kw;
            left -= kw * dt;
        }
    }
    deficit
        .iter()
        .map(|d| (d.max(0.0) / eta_in).min(imp_cap))
        .sum()
}
