//! The rule-based strategy: the baseline every optimised plan is compared with, and the
//! fallback when the solver fails or runs out of time.
//!
//! Rules, in the order an operator would apply them:
//! 1. Loads are served as asked: EV sessions charge at full power from arrival until done;
//!    deferrable loads run at full power in the cheapest intervals of their window.
//! 2. PV covers the bus first; surplus charges the battery, then is exported where the rules
//!    allow, then curtailed.
//! 3. A deficit is covered from the battery in expensive intervals (price in the top 40 % of
//!    the day's range), otherwise from the grid; beyond the import limit the battery helps at
//!    any price, then curtailable loads are shed, then demand goes unserved.
//! 4. In cheap intervals (bottom 25 % of the range) the battery charges from the grid.
//! 5. Finally the battery is topped up in the cheapest idle intervals to its end-of-horizon
//!    target, so that the plan is comparable with the optimiser's.

use crate::problem::Problem;
use crate::schedule::Schedule;

/// Fills power `max` into intervals in `order` until `energy` kWh. A last piece below the
/// minimum power runs at the minimum (delivering at most `min * dt` more than asked, as the
/// optimiser may); with no interval left it is a shortfall.
fn fill(order: &[usize], energy: f64, min: f64, max: f64, dt: f64, out: &mut [f64]) {
    let mut left = energy;
    for &t in order {
        if left <= 1e-12 {
            break;
        }
        let p = (left / dt).min(max).max(min.min(max));
        out[t] = p;
        left -= p * dt;
    }
}

pub(crate) fn schedule(p: &Problem) -> Schedule {
    let n = p.n;
    let dt = p.dt;
    let mut s = Schedule::zeros(p);
    // 1. Loads as asked.
    for (k, sess) in p.sessions.iter().enumerate() {
        let order: Vec<usize> = (sess.first..sess.end).collect();
        fill(&order, sess.need, sess.min, sess.max, dt, &mut s.ev[k]);
    }
    for (f, d) in p.deferrable.iter().enumerate() {
        for req in &d.requirements {
            let mut order = req.intervals.clone();
            order.sort_by(|a, b| {
                p.import_cost(*a)
                    .total_cmp(&p.import_cost(*b))
                    .then(a.cmp(b))
            });
            fill(&order, req.energy, d.min, d.max, dt, &mut s.defer[f]);
        }
    }
    let lo_price = (0..n)
        .map(|t| p.import_cost(t))
        .fold(f64::INFINITY, f64::min);
    let hi_price = (0..n)
        .map(|t| p.import_cost(t))
        .fold(f64::NEG_INFINITY, f64::max);
    let range = (hi_price - lo_price).max(0.0);
    let cheap = |t: usize| range > 1e-9 && p.import_cost(t) <= lo_price + 0.25 * range;
    let dear = |t: usize| range > 1e-9 && p.import_cost(t) >= lo_price + 0.6 * range;

    let mut soc: Vec<f64> = p.batteries.iter().map(|b| b.soc0).collect();
    for t in 0..n {
        let load = p.fixed[t]
            + p.curtailable_demand(t)
            + s.defer.iter().map(|v| v[t]).sum::<f64>()
            + s.ev.iter().map(|v| v[t]).sum::<f64>();
        let net = load - p.pv[t];
        if net <= 0.0 {
            // 2. Surplus: battery, export, curtail.
            let mut surplus = -net;
            for (b, bat) in p.batteries.iter().enumerate() {
                let room = (bat.hi - soc[b]).max(0.0) / (bat.ec * dt);
                let c = surplus.min(bat.ch_max).min(room);
                s.ch[b][t] = c;
                soc[b] += c * bat.ec * dt;
                surplus -= c;
            }
            let e = (surplus * p.eta_out).min(p.exp_cap[t]).max(0.0);
            s.exp[t] = e;
            surplus -= e / p.eta_out;
            s.pv_used[t] = p.pv[t] - surplus.max(0.0);
        } else {
            s.pv_used[t] = p.pv[t];
            let mut deficit = net;
            // 3. Battery at dear prices.
            if dear(t) {
                for (b, bat) in p.batteries.iter().enumerate() {
                    let avail = (soc[b] - bat.lo).max(0.0) * bat.ed / dt;
                    let d = deficit.min(bat.dis_max).min(avail);
                    s.dis[b][t] = d;
                    soc[b] -= d * dt / bat.ed;
                    deficit -= d;
                }
            }
            let mut imp = deficit / p.eta_in;
            if imp > p.imp_cap {
                let mut over = (imp - p.imp_cap) * p.eta_in;
                imp = p.imp_cap;
                for (b, bat) in p.batteries.iter().enumerate() {
                    let avail = (soc[b] - bat.lo).max(0.0) * bat.ed / dt;
                    let d = over.min(bat.dis_max - s.dis[b][t]).min(avail).max(0.0);
                    s.dis[b][t] += d;
                    soc[b] -= d * dt / bat.ed;
                    over -= d;
                }
                for (c, cur) in p.curtailable.iter().enumerate() {
                    let x = over.min(cur.share * cur.demand[t]).max(0.0);
                    s.shed[c][t] = x;
                    over -= x;
                }
                s.unserved[t] = over.max(0.0);
            }
            s.imp[t] = imp;
        }
        // 4. Cheap grid charging, when nothing is exported.
        if cheap(t) && s.exp[t] == 0.0 {
            for (b, bat) in p.batteries.iter().enumerate() {
                if s.dis[b][t] > 0.0 {
                    continue;
                }
                let room = (bat.hi - soc[b]).max(0.0) / (bat.ec * dt);
                let grid_room = (p.imp_cap - s.imp[t]).max(0.0) * p.eta_in;
                let c = (bat.ch_max - s.ch[b][t]).min(room).min(grid_room).max(0.0);
                s.ch[b][t] += c;
                s.imp[t] += c / p.eta_in;
                soc[b] += c * bat.ec * dt;
            }
        }
    }
    s.recompute_soc(p);
    // 5. Top up to the end-of-horizon target in the cheapest idle intervals.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| {
        p.import_cost(*a)
            .total_cmp(&p.import_cost(*b))
            .then(b.cmp(a))
    });
    for (b, bat) in p.batteries.iter().enumerate() {
        let mut short = s.terminal_short(p, b);
        for &t in &order {
            if short <= 1e-9 {
                break;
            }
            if s.dis[b][t] > 0.0 || s.exp[t] > 0.0 {
                continue;
            }
            let headroom = s.soc[b][t..]
                .iter()
                .map(|x| bat.hi - x)
                .fold(f64::INFINITY, f64::min)
                .max(0.0);
            let by_power = (bat.ch_max - s.ch[b][t]).max(0.0) * bat.ec * dt;
            let by_grid = (p.imp_cap - s.imp[t]).max(0.0) * p.eta_in * bat.ec * dt;
            let add = short.min(headroom).min(by_power).min(by_grid);
            if add <= 0.0 {
                continue;
            }
            let c = add / (bat.ec * dt);
            s.ch[b][t] += c;
            s.imp[t] += c / p.eta_in;
            for x in s.soc[b][t..].iter_mut() {
                *x += add;
            }
            short -= add;
        }
    }
    s
}
