//! The rule-based strategy: the baseline every optimised plan is compared with, and the
//! fallback when the solver fails or runs out of time.
//!
//! Rules, in the order an operator would apply them:
//! 1. Loads are served as asked: EV sessions charge at full power from arrival until done
//!    (where a demand charge is billed, first in the room under the month's peak so far,
//!    earliest departure first; see `charge_cars`); deferrable loads run at full power in the
//!    cheapest intervals of their window.
//! 2. PV covers the bus first; surplus charges the battery, then is exported where the rules
//!    allow, then curtailed.
//! 3. Where a demand charge is billed, the battery first shaves import down to a level, at any
//!    price: the lowest its stored energy can hold over the horizon (never below the month's
//!    peak so far, the free level), or a higher one between that and the import limit where
//!    refilling the battery to its end target under the lowest costs more (17 levels tried,
//!    the cheapest by the plan's terms kept). Then a deficit is covered from the battery in expensive
//!    intervals (price in the top 40 % of the day's range), keeping back the energy later
//!    shaving needs, otherwise from the grid; beyond the import limit the battery helps at
//!    any price, then curtailable loads are shed, then demand goes unserved.
//! 4. In cheap intervals (bottom 25 % of the range) the battery charges from the grid.
//! 5. Finally the battery is topped up in the cheapest idle intervals to its end-of-horizon
//!    target, so that the plan is comparable with the optimiser's.
//!
//! Charging from the grid (4 and 5) never raises import above the shaving level of rule 3:
//! the level the month's peak may reach for free (its peak so far, the park's target, a
//! contract's 105 %), or the horizon's peak after shaving where the stored energy cannot hold
//! the loads below that; never the import limit, nor the loads' peak before shaving (a
//! forecast peak that does not come would leave such charging as the month's peak).

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
    let first = schedule_at(p, None);
    if p.demand_rate <= 0.0 {
        return first.0;
    }
    // The lowest shaving level may leave the battery short of its end target (the charging it
    // needs does not fit under the level): try higher levels up to the import limit and keep
    // the cheapest by the plan's own terms (energy, demand increment, wear, end shortfall).
    let (mut best, lowest) = first;
    let mut best_cost = rule_cost(p, &best);
    for k in 1..=16 {
        let level = lowest + (p.imp_cap - lowest) * f64::from(k) / 16.0;
        let (s, _) = schedule_at(p, Some(level));
        let c = rule_cost(p, &s);
        if c < best_cost - 1e-9 {
            best = s;
            best_cost = c;
        }
    }
    best
}

/// Rule 1 for EV sessions: each charges from arrival at full power until done. Where a demand
/// charge is billed, a session first takes only the room under the level the month's peak
/// may reach for free (the bus deficit of the loads and the sessions already placed, the
/// battery idle), earliest departure first, and what does not fit there runs from arrival at
/// full power as before: cars are never left short for the peak, but a car with time to
/// spare does not set a new month peak at midnight.
fn charge_cars(p: &Problem, s: &mut Schedule) {
    let dt = p.dt;
    let level = if p.demand_rate > 0.0 {
        p.existing_peak * p.eta_in
    } else {
        f64::INFINITY
    };
    let mut deficit: Vec<f64> = (0..p.n)
        .map(|t| {
            p.fixed[t] + p.curtailable_demand(t) + s.defer.iter().map(|v| v[t]).sum::<f64>()
                - p.pv[t]
        })
        .collect();
    let mut order: Vec<usize> = (0..p.sessions.len()).collect();
    order.sort_by_key(|&k| (p.sessions[k].end, p.sessions[k].first, k));
    for k in order {
        let sess = &p.sessions[k];
        let mut left = sess.need;
        let (lo, hi) = (sess.min.min(sess.max), sess.max);
        // Under the level, where at least the minimum power fits.
        if level.is_finite() {
            let window = sess.first..sess.end;
            for (x, d) in s.ev[k][window.clone()].iter_mut().zip(&deficit[window]) {
                if left <= 1e-12 {
                    break;
                }
                let room = (level - d).min(hi).min(left / dt);
                if room >= lo && room > 1e-9 {
                    *x = room;
                    left -= room * dt;
                }
            }
        }
        // The rest from arrival at full power (a last piece below the minimum runs at it).
        for t in sess.first..sess.end {
            if left <= 1e-12 {
                break;
            }
            let now = s.ev[k][t];
            let next = (now + left / dt).min(hi).max(lo);
            if next > now {
                s.ev[k][t] = next;
                left -= (next - now) * dt;
            }
        }
        let window = sess.first..sess.end;
        for (d, x) in deficit[window.clone()].iter_mut().zip(&s.ev[k][window]) {
            *d += x;
        }
    }
}

/// What the evaluator would charge a rule schedule, without the parts every level shares (EV
/// and deferrable shortfalls: the loads are placed before the battery, whatever the level).
fn rule_cost(p: &Problem, s: &Schedule) -> f64 {
    let energy: f64 = (0..p.n)
        .map(|t| p.dt * (s.imp[t] * p.import_cost(t) - s.exp[t] * p.exp_price[t]))
        .sum();
    let wear: f64 = p
        .batteries
        .iter()
        .enumerate()
        .map(|(b, bat)| s.dis[b].iter().sum::<f64>() * p.dt * bat.deg)
        .sum();
    let short: f64 = p
        .batteries
        .iter()
        .enumerate()
        .map(|(b, bat)| s.terminal_short(p, b) * bat.short_price)
        .sum();
    let shed: f64 = p
        .curtailable
        .iter()
        .enumerate()
        .map(|(c, cur)| s.shed[c].iter().sum::<f64>() * p.dt * cur.voll)
        .sum();
    energy
        + wear
        + short
        + shed
        + p.dt * p.unserved_penalty * s.unserved.iter().sum::<f64>()
        + p.demand_rate * (s.peak(p) - p.existing_peak).max(0.0)
        + p.penalty * s.scope2_over(p)
}

/// The rules with the shaving level `level` (`None`: the lowest the stored energy holds);
/// returns the schedule and the level used.
fn schedule_at(p: &Problem, level: Option<f64>) -> (Schedule, f64) {
    let n = p.n;
    let dt = p.dt;
    let mut s = Schedule::zeros(p);
    // 1. Loads as asked.
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
    charge_cars(p, &mut s);
    let lo_price = (0..n)
        .map(|t| p.import_cost(t))
        .fold(f64::INFINITY, f64::min);
    let hi_price = (0..n)
        .map(|t| p.import_cost(t))
        .fold(f64::NEG_INFINITY, f64::max);
    let range = (hi_price - lo_price).max(0.0);
    let cheap = |t: usize| range > 1e-9 && p.import_cost(t) <= lo_price + 0.25 * range;
    let dear = |t: usize| range > 1e-9 && p.import_cost(t) >= lo_price + 0.6 * range;

    // Peak shaving (demand charge billed): the bus deficit per interval with the battery idle,
    // and the level above which the battery holds import at any price.
    let deficit_of = |t: usize, s: &Schedule| {
        p.fixed[t]
            + p.curtailable_demand(t)
            + s.defer.iter().map(|v| v[t]).sum::<f64>()
            + s.ev.iter().map(|v| v[t]).sum::<f64>()
            - p.pv[t]
    };
    let idle: Vec<f64> = (0..n).map(|t| deficit_of(t, &s).max(0.0)).collect();
    let shave = level.unwrap_or_else(|| shave_level(p, &idle));
    // Grid charging (rules 4 and 5) holds import to the shaving level: the horizon's peak
    // after shaving, never above the month's (no new peak bought to charge).
    let charge_cap = shave.min(p.imp_cap);
    // The import the battery holds at `t` at any price: the shaving level, or the grid's cap
    // (a request) where it is lower.
    let hold = |t: usize| shave.min(p.imp_limit(t));
    // Bus energy the shaving still needs after interval t (kWh), kept back from rule 3.
    let mut reserve = vec![0.0; n + 1];
    for t in (0..n).rev() {
        reserve[t] = reserve[t + 1] + (idle[t] - hold(t) * p.eta_in).max(0.0) * dt;
    }

    let mut soc: Vec<f64> = p.batteries.iter().map(|b| b.soc0).collect();
    for t in 0..n {
        let net = deficit_of(t, &s);
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
            // 3a. Peak shaving: the battery holds import at the shaving level (or a grid
            // request's cap), at any price.
            let over_shave = deficit - hold(t) * p.eta_in;
            if over_shave > 0.0 {
                let mut want = over_shave;
                for (b, bat) in p.batteries.iter().enumerate() {
                    let avail = (soc[b] - bat.lo).max(0.0) * bat.ed / dt;
                    let d = want.min(bat.dis_max).min(avail).max(0.0);
                    s.dis[b][t] = d;
                    soc[b] -= d * dt / bat.ed;
                    deficit -= d;
                    want -= d;
                }
            }
            // 3b. Battery at dear prices, keeping back what later shaving needs.
            if dear(t) {
                let mut spare = (p
                    .batteries
                    .iter()
                    .enumerate()
                    .map(|(b, bat)| (soc[b] - bat.lo).max(0.0) * bat.ed)
                    .sum::<f64>()
                    - reserve[t + 1])
                    .max(0.0)
                    / dt;
                for (b, bat) in p.batteries.iter().enumerate() {
                    let avail = ((soc[b] - bat.lo).max(0.0) * bat.ed / dt).min(spare);
                    let d = deficit.min(bat.dis_max - s.dis[b][t]).min(avail).max(0.0);
                    s.dis[b][t] += d;
                    soc[b] -= d * dt / bat.ed;
                    deficit -= d;
                    spare -= d;
                }
            }
            let mut imp = deficit / p.eta_in;
            if imp > p.imp_cap {
                let over = (imp - p.imp_cap) * p.eta_in;
                imp = p.imp_cap;
                let mut over = discharge(p, &mut s, &mut soc, t, over);
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
                let grid_room = (hold(t).min(charge_cap) - s.imp[t]).max(0.0) * p.eta_in;
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
            let by_grid = (hold(t).min(charge_cap) - s.imp[t]).max(0.0) * p.eta_in * bat.ec * dt;
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
    (s, shave)
}

/// The import level (AC kW) above which the rules shave with the battery: the lowest level
/// whose excess over the horizon (bus deficits with the battery idle, `idle`) the energy
/// stored now can cover, never below the level the month's peak may already reach for free.
/// No demand charge: no shaving (infinite level). Recharging during the horizon is not
/// counted, so the level errs high (the battery is never promised energy it may not get).
fn shave_level(p: &Problem, idle: &[f64]) -> f64 {
    if p.demand_rate <= 0.0 {
        return f64::INFINITY;
    }
    let stored: f64 = p
        .batteries
        .iter()
        .map(|b| (b.soc0 - b.lo).max(0.0) * b.ed)
        .sum();
    let power: f64 = p.batteries.iter().map(|b| b.dis_max).sum();
    // Bus energy and power needed to hold import at `level`.
    let fits = |level: f64| {
        idle.iter().all(|d| d - level * p.eta_in <= power + 1e-9)
            && idle
                .iter()
                .map(|d| (d - level * p.eta_in).max(0.0) * p.dt)
                .sum::<f64>()
                <= stored + 1e-9
    };
    let floor = p.existing_peak.min(p.imp_cap);
    let top = idle.iter().copied().fold(0.0, f64::max) / p.eta_in;
    if top <= floor || fits(floor) {
        return floor;
    }
    let (mut lo, mut hi) = (floor, top.max(floor));
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Discharges the batteries by up to `over` kW more at `t` (each within its power and what it
/// holds above its floor); returns what they could not cover.
fn discharge(p: &Problem, s: &mut Schedule, soc: &mut [f64], t: usize, mut over: f64) -> f64 {
    let dt = p.dt;
    for (b, bat) in p.batteries.iter().enumerate() {
        let avail = (soc[b] - bat.lo).max(0.0) * bat.ed / dt;
        let d = over.min(bat.dis_max - s.dis[b][t]).min(avail).max(0.0);
        s.dis[b][t] += d;
        soc[b] -= d * dt / bat.ed;
        over -= d;
    }
    over
}
