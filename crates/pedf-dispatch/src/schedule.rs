//! A schedule (the decision values of every strategy) and its evaluation into a [`Plan`]: one
//! cost function for optimiser and rules alike, so their objectives compare honestly.

use std::collections::BTreeMap;

use pedf_core::inputs::DayInputs;
use pedf_core::plan::{Plan, PlanInterval, SolverInfo, Strategy, Unmet};
use pedf_core::Park;

use crate::problem::Problem;

/// Decision values per interval (kW) and per requirement (kWh shortfalls).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub imp: Vec<f64>,
    pub exp: Vec<f64>,
    pub pv_used: Vec<f64>,
    /// Per battery, per interval.
    pub ch: Vec<Vec<f64>>,
    pub dis: Vec<Vec<f64>>,
    /// Stored energy at the end of each interval.
    pub soc: Vec<Vec<f64>>,
    /// Per deferrable load, per interval.
    pub defer: Vec<Vec<f64>>,
    /// Per curtailable load, per interval: demand shed.
    pub shed: Vec<Vec<f64>>,
    /// Per session, per interval.
    pub ev: Vec<Vec<f64>>,
    pub unserved: Vec<f64>,
}

impl Schedule {
    pub fn zeros(p: &Problem) -> Schedule {
        let z = || vec![0.0; p.n];
        Schedule {
            imp: z(),
            exp: z(),
            pv_used: z(),
            ch: p.batteries.iter().map(|_| z()).collect(),
            dis: p.batteries.iter().map(|_| z()).collect(),
            soc: p.batteries.iter().map(|b| vec![b.soc0; p.n]).collect(),
            defer: p.deferrable.iter().map(|_| z()).collect(),
            shed: p.curtailable.iter().map(|_| z()).collect(),
            ev: p.sessions.iter().map(|_| z()).collect(),
            unserved: z(),
        }
    }

    /// Recomputes the state of charge from charge and discharge.
    pub fn recompute_soc(&mut self, p: &Problem) {
        for (b, bat) in p.batteries.iter().enumerate() {
            let mut s = bat.soc0;
            for t in 0..p.n {
                s += bat.ec * p.dt * self.ch[b][t] - p.dt / bat.ed * self.dis[b][t];
                self.soc[b][t] = s;
            }
        }
    }

    pub fn peak(&self, p: &Problem) -> f64 {
        self.imp.iter().copied().fold(p.existing_peak, f64::max)
    }

    pub fn ev_short(&self, p: &Problem, k: usize) -> f64 {
        let delivered: f64 = self.ev[k].iter().sum::<f64>() * p.dt;
        (p.sessions[k].need - delivered).max(0.0)
    }

    pub fn defer_short(&self, p: &Problem, f: usize, r: usize) -> f64 {
        let req = &p.deferrable[f].requirements[r];
        let delivered: f64 = req.intervals.iter().map(|&t| self.defer[f][t]).sum::<f64>() * p.dt;
        (req.energy - delivered).max(0.0)
    }

    /// Location-based Scope 2 of the schedule, kg (import x the annual factor).
    pub fn scope2(&self, p: &Problem) -> f64 {
        self.imp.iter().sum::<f64>() * p.dt * p.scope2_factor
    }

    /// Scope 2 above the horizon's allowance, kg (0 without one).
    pub fn scope2_over(&self, p: &Problem) -> f64 {
        p.scope2_allowance
            .map_or(0.0, |a| (self.scope2(p) - a).max(0.0))
    }

    /// Import above the grid's cap at `t`, kW (0 where it asks none).
    pub fn grid_over(&self, p: &Problem, t: usize) -> f64 {
        p.imp_req[t].map_or(0.0, |c| (self.imp[t] - c).max(0.0))
    }

    /// Net export short of the grid's floor at `t`, kW (0 where it asks none).
    pub fn grid_under(&self, p: &Problem, t: usize) -> f64 {
        p.exp_req[t].map_or(0.0, |x| (x - (self.exp[t] - self.imp[t])).max(0.0))
    }

    pub fn terminal_short(&self, p: &Problem, b: usize) -> f64 {
        let end = self.soc[b].last().copied().unwrap_or(p.batteries[b].soc0);
        (p.batteries[b].target - end).max(0.0)
    }
}

/// Turns a schedule into a plan with every cost term, the unmet requirements and the notes.
pub(crate) fn evaluate(
    park: &Park,
    inputs: &DayInputs,
    p: &Problem,
    s: &Schedule,
    strategy: Strategy,
    solver: SolverInfo,
) -> Plan {
    let dt = p.dt;
    let mut energy_cost = 0.0;
    let mut export_revenue = 0.0;
    let mut carbon_kg = 0.0;
    let mut degradation = 0.0;
    let mut shed_cost = 0.0;
    let mut unserved_kwh = 0.0;
    let mut intervals = Vec::with_capacity(p.n);
    let offset_of = |t: usize| park.clock.local(inputs.starts[t]).fixed_offset();
    for t in 0..p.n {
        energy_cost += dt * s.imp[t] * p.imp_price[t];
        export_revenue += dt * s.exp[t] * p.exp_price[t];
        carbon_kg += dt * s.imp[t] * p.ci[t];
        for (b, bat) in p.batteries.iter().enumerate() {
            degradation += dt * s.dis[b][t] * bat.deg;
        }
        for (c, cur) in p.curtailable.iter().enumerate() {
            shed_cost += dt * s.shed[c][t] * cur.voll;
        }
        unserved_kwh += dt * s.unserved[t];
        let mut ev_chargers = BTreeMap::new();
        for (k, sess) in p.sessions.iter().enumerate() {
            *ev_chargers.entry(sess.charger.clone()).or_insert(0.0) += s.ev[k][t];
        }
        let mut flexible_loads = BTreeMap::new();
        for (f, d) in p.deferrable.iter().enumerate() {
            flexible_loads.insert(d.id.clone(), s.defer[f][t]);
        }
        let mut shed_t = 0.0;
        for (c, cur) in p.curtailable.iter().enumerate() {
            flexible_loads.insert(cur.id.clone(), cur.demand[t] - s.shed[c][t]);
            shed_t += s.shed[c][t];
        }
        // Unserved demand is taken from the fixed load first, as a controller would shed.
        let fixed_served = (p.fixed[t] - s.unserved[t]).max(0.0);
        let curt_unserved = (s.unserved[t] - p.fixed[t]).max(0.0);
        let flexible_kw: f64 = flexible_loads.values().sum::<f64>() - curt_unserved;
        intervals.push(PlanInterval {
            start: offset_of(t),
            import_price_cny_per_kwh: p.imp_price[t],
            export_price_cny_per_kwh: p.exp_price[t],
            carbon_intensity_kg_per_kwh: p.ci[t],
            grid_import_kw: s.imp[t],
            grid_export_kw: s.exp[t],
            pv_available_kw: p.pv[t],
            pv_used_kw: s.pv_used[t],
            battery_charge_kw: s.ch.iter().map(|v| v[t]).sum(),
            battery_discharge_kw: s.dis.iter().map(|v| v[t]).sum(),
            battery_soc_kwh: s.soc.iter().map(|v| v[t]).sum(),
            fixed_load_kw: fixed_served,
            flexible_load_kw: flexible_kw,
            load_shed_kw: shed_t,
            load_unserved_kw: s.unserved[t],
            ev_kw: ev_chargers.values().sum(),
            ev_chargers,
            batteries_soc_kwh: p
                .batteries
                .iter()
                .enumerate()
                .map(|(b, bat)| (bat.id.clone(), s.soc[b][t]))
                .collect(),
            flexible_loads,
        });
    }
    let peak = s.peak(p);
    let demand_charge = p.demand_rate * (peak - p.existing_peak).max(0.0);
    let carbon_cost = carbon_kg * p.carbon_price_per_kg;
    let mut unmet = Vec::new();
    let mut penalty = unserved_kwh * p.unserved_penalty;
    if unserved_kwh > 1e-6 {
        unmet.push(Unmet {
            kind: "fixed_load".into(),
            id: "park".into(),
            shortfall_kwh: unserved_kwh,
            reason: format!(
                "demand above what PV, batteries and the grid connection ({:.0} kW import) can supply",
                p.imp_cap
            ),
        });
    }
    for (k, sess) in p.sessions.iter().enumerate() {
        let short = s.ev_short(p, k);
        penalty += short * p.penalty;
        if short > 1e-6 {
            let window_h = (sess.end - sess.first) as f64 * dt;
            unmet.push(Unmet {
                kind: "ev_session".into(),
                id: sess.id.clone(),
                shortfall_kwh: short,
                reason: format!(
                    "needs {:.1} kWh on {}; {:.2} h of full intervals present at up to {} kW",
                    sess.need, sess.charger, window_h, sess.max
                ),
            });
        }
    }
    for (f, d) in p.deferrable.iter().enumerate() {
        for (r, req) in d.requirements.iter().enumerate() {
            let short = s.defer_short(p, f, r);
            penalty += short * p.penalty;
            if short > 1e-6 {
                unmet.push(Unmet {
                    kind: "deferrable_load".into(),
                    id: req.label.clone(),
                    shortfall_kwh: short,
                    reason: format!(
                        "needs {:.1} kWh in {} intervals at up to {} kW",
                        req.energy,
                        req.intervals.len(),
                        d.max
                    ),
                });
            }
        }
    }
    for (b, bat) in p.batteries.iter().enumerate() {
        let short = s.terminal_short(p, b);
        penalty += short * bat.short_price;
        if short > 1e-6 {
            let reason = if bat.short_price < p.penalty {
                format!(
                    "ends below its target of {:.1} kWh; priced at {:.3} CNY/kWh, the refill at the horizon's cheapest import",
                    bat.target, bat.short_price
                )
            } else {
                format!("ends below its target of {:.1} kWh", bat.target)
            };
            unmet.push(Unmet {
                kind: "terminal_soc".into(),
                id: bat.id.clone(),
                shortfall_kwh: short,
                reason,
            });
        }
    }
    let grid_over: f64 = (0..p.n).map(|t| s.grid_over(p, t) * dt).sum();
    penalty += grid_over * p.grid_penalty;
    if grid_over > 1e-6 {
        let worst = (0..p.n)
            .filter(|t| s.grid_over(p, *t) > 1e-6)
            .max_by(|a, b| s.grid_over(p, *a).total_cmp(&s.grid_over(p, *b)))
            .unwrap_or(0);
        unmet.push(Unmet {
            kind: "grid_request".into(),
            id: "park".into(),
            shortfall_kwh: grid_over,
            reason: format!(
                "import above the grid's cap in {} interval(s), at most {:.1} kW over its {:.1} kW (what PV, the batteries and the loads that can wait cannot take off the grid)",
                (0..p.n).filter(|t| s.grid_over(p, *t) > 1e-6).count(),
                s.grid_over(p, worst),
                p.imp_req[worst].unwrap_or(0.0)
            ),
        });
    }
    let grid_under: f64 = (0..p.n).map(|t| s.grid_under(p, t) * dt).sum();
    penalty += grid_under * p.grid_penalty;
    if grid_under > 1e-6 {
        let short: Vec<usize> = (0..p.n).filter(|t| s.grid_under(p, *t) > 1e-6).collect();
        let worst = short
            .iter()
            .copied()
            .max_by(|a, b| s.grid_under(p, *a).total_cmp(&s.grid_under(p, *b)))
            .unwrap_or(0);
        unmet.push(Unmet {
            kind: "grid_request".into(),
            id: "park".into(),
            shortfall_kwh: grid_under,
            reason: format!(
                "export below the grid's floor in {} interval(s), at most {:.1} kW short of its {:.1} kW (the PV surplus the export rules let reach the grid, with the batteries and the loads that can wait)",
                short.len(),
                s.grid_under(p, worst),
                p.exp_req[worst].unwrap_or(0.0)
            ),
        });
    }
    let over = s.scope2_over(p);
    penalty += over * p.penalty;
    if over > 1e-6 {
        unmet.push(Unmet {
            kind: "carbon_limit".into(),
            id: "park".into(),
            shortfall_kwh: over / p.scope2_factor.max(1e-9),
            reason: format!(
                "Scope 2 {:.0} kg above the horizon's allowance of {:.0} kg (carbon.control); the import it takes to serve the loads",
                over,
                p.scope2_allowance.unwrap_or(0.0)
            ),
        });
    }
    let objective = energy_cost - export_revenue
        + demand_charge
        + carbon_cost
        + degradation
        + shed_cost
        + penalty;
    Plan {
        park_id: park.id.clone(),
        strategy,
        interval_minutes: park.clock.interval.minutes(),
        objective_cny: objective,
        energy_cost_cny: energy_cost,
        export_revenue_cny: export_revenue,
        demand_charge_cny: demand_charge,
        carbon_cost_cny: carbon_cost,
        degradation_cost_cny: degradation,
        load_shed_cost_cny: shed_cost,
        penalty_cny: penalty,
        carbon_kg,
        peak_import_kw: s.imp.iter().copied().fold(0.0, f64::max),
        month_peak_before_kw: p.month_peak,
        scope2_kg: s.scope2(p),
        scope2_allowance_kg: p.scope2_allowance,
        scope2_without_ems_kg: p.scope2_without_ems,
        demand_free_up_to_kw: p.existing_peak,
        solver,
        intervals,
        unmet,
        notes: p.notes.clone(),
    }
}
