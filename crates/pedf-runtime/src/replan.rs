//! Intraday re-planning: every `every_min` minutes (at interval boundaries) and when the grid
//! deviates from the active plan by more than `deviation_kw` for `deviation_s` seconds, the
//! rest of the day is planned again from the measured state (rolling optimisation of
//! pedf-dispatch) on a worker thread, so the control cycle never waits for the solver. When
//! the optimiser fails, the rule-based plan of the same inputs is used and says so in its
//! strategy; when even the inputs cannot be read, the controller keeps what it follows and
//! the failure is reported. The day's last scheduled re-plan (the next would fall after
//! midnight) also plans the next day from the state this one leaves at midnight, so the
//! controller has the new day's plan from its first second: without it the first minutes of
//! each day ran without a plan, the battery discharging into the night's valley.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use pedf_core::inputs::{DayInputs, EvSession};

use crate::sessions::Session;
use pedf_core::plan::Plan;
use pedf_core::Park;
use pedf_dispatch::{plan_rule_based, replan, CurrentState, DispatchError, GridCap, PlanOptions};
use serde::Deserialize;

/// The `[replan]` table of a run configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplanConfig {
    /// Forecast folder in the day-inputs format (`pedf plan --inputs`); a subfolder named
    /// after the day (YYYY-MM-DD) is used when there is one.
    pub inputs: PathBuf,
    /// How often a re-plan runs in any case, min (default 15).
    #[serde(default = "default_every")]
    pub every_min: u32,
    /// Grid deviation from the plan that triggers a re-plan, kW.
    #[serde(default = "default_deviation_kw")]
    pub deviation_kw: f64,
    /// How long the deviation must last, s.
    #[serde(default = "default_deviation_s")]
    pub deviation_s: u64,
    /// Solver time limit per re-plan, s.
    #[serde(default = "default_time_limit")]
    pub time_limit_s: f64,
    /// The least time from one re-plan's start to the next one an event or a deviation
    /// asks for, min (default 5; the schedule's own re-plans keep `every_min`): events
    /// meanwhile are held and taken together when the gap is over.
    #[serde(default = "default_min_gap")]
    pub min_gap_min: u32,
}

fn default_min_gap() -> u32 {
    5
}

fn default_every() -> u32 {
    15
}
fn default_deviation_kw() -> f64 {
    100.0
}
fn default_deviation_s() -> u64 {
    60
}
fn default_time_limit() -> f64 {
    5.0
}

/// The optimiser the re-planner calls (pedf-dispatch's rolling re-plan; tests put a failing
/// one in to exercise the fallback).
pub type Planner =
    fn(&Park, &DayInputs, &PlanOptions, &CurrentState) -> Result<Plan, DispatchError>;

/// What a finished re-plan produced.
#[derive(Debug)]
pub struct Outcome {
    /// The day planned (the park's local date).
    pub day: NaiveDate,
    /// The plan, or why there is none.
    pub plan: Result<Replanned, String>,
    /// What triggered it.
    pub why: String,
    /// The next day's plan made with the day's last re-plan, from the state this one leaves at
    /// midnight (the next day's first re-plan replaces it), and the day.
    pub ahead: Option<(NaiveDate, Result<Replanned, String>)>,
}

/// A re-plan's plan and whether it is the optimiser's or the rule-based fallback.
#[derive(Debug)]
pub struct Replanned {
    /// The plan of the rest of the day.
    pub plan: Plan,
    /// Why the rule-based plan stands in for the optimiser's, when it does (an alarm).
    pub fallback: Option<String>,
}

impl Replanned {
    /// The plan's strategy as stored and shown: `optimized, intraday` or
    /// `rule, fallback: <why>`.
    pub fn label(&self) -> String {
        match &self.fallback {
            Some(why) => format!("rule, fallback: {why}"),
            None => "optimized, intraday".into(),
        }
    }

    /// The label of a next day's plan made ahead: `optimized, day ahead` or
    /// `rule, day ahead, fallback: <why>`.
    pub fn ahead_label(&self) -> String {
        match &self.fallback {
            Some(why) => format!("rule, {AHEAD}, fallback: {why}"),
            None => format!("optimized, {AHEAD}"),
        }
    }
}

/// Intraday re-planning: on a schedule, on a lasting grid deviation from the plan or on an event, in a thread of its own (the cycle never waits for the solver).
pub struct Replanner {
    cfg: ReplanConfig,
    park: Park,
    planner: Planner,
    task: Option<std::thread::JoinHandle<Outcome>>,
    last_slot: Option<DateTime<Utc>>,
    /// When the last re-plan started.
    last_start: Option<DateTime<Utc>>,
    /// The interval of the last re-plan a deviation asked for: at most one per interval (a
    /// re-plan cannot mend a forecast error of the interval it starts in).
    last_deviation_slot: Option<DateTime<Utc>>,
    deviation_since: Option<DateTime<Utc>>,
    /// A re-plan asked for by an event (a car arrived), and why.
    requested: Option<String>,
    /// Whether the one asked for starts without waiting for the gap after the last (a grid
    /// request waiting for its answer).
    urgent: bool,
}

impl Replanner {
    /// A re-planner with pedf-dispatch's optimiser.
    pub fn new(cfg: ReplanConfig, park: Park) -> Replanner {
        Replanner {
            cfg,
            park,
            planner: replan,
            task: None,
            last_slot: None,
            last_start: None,
            last_deviation_slot: None,
            deviation_since: None,
            requested: None,
            urgent: false,
        }
    }

    /// The same with another optimiser.
    pub fn with_planner(mut self, planner: Planner) -> Replanner {
        self.planner = planner;
        self
    }

    /// Asks for a re-plan at the next chance (after the one running, if any).
    pub fn request(&mut self, why: String) {
        match &mut self.requested {
            Some(w) => {
                w.push_str("; ");
                w.push_str(&why);
            }
            None => self.requested = Some(why),
        }
    }

    /// Asks for a re-plan as soon as none runs (no gap after the last one).
    pub fn request_now(&mut self, why: String) {
        self.request(why);
        self.urgent = true;
    }

    /// Whether a re-plan is running.
    pub fn running(&self) -> bool {
        self.task.is_some()
    }

    /// Whether a re-plan is due now, and why.
    pub fn due(
        &mut self,
        now: DateTime<Utc>,
        grid_kw: f64,
        plan_grid_kw: Option<f64>,
    ) -> Option<String> {
        if self.task.is_some() {
            return None;
        }
        let every = chrono::Duration::minutes(i64::from(self.cfg.every_min.max(1)));
        let slot = self.park.clock.interval_start(now);
        let periodic = match self.last_slot {
            None => true,
            Some(last) => slot >= last + every,
        };
        if periodic || (self.urgent && self.requested.is_some()) {
            self.urgent = false;
            if !periodic {
                return self.requested.take();
            }
            return Some(match self.requested.take() {
                Some(why) => format!("every {} min; {why}", self.cfg.every_min),
                None => format!("every {} min", self.cfg.every_min),
            });
        }
        // How long the grid has been off the plan (tracked every cycle, gap or not).
        let deviation = match plan_grid_kw {
            Some(p) if (grid_kw - p).abs() > self.cfg.deviation_kw => {
                let since = *self.deviation_since.get_or_insert(now);
                ((now - since).num_seconds() >= self.cfg.deviation_s as i64).then(|| {
                    format!(
                        "grid {grid_kw:.0} kW is {:.0} kW off the plan's {p:.0} kW for {} s",
                        (grid_kw - p).abs(),
                        self.cfg.deviation_s
                    )
                })
            }
            _ => {
                self.deviation_since = None;
                None
            }
        };
        // Events and deviations wait for the gap after the last re-plan (events are held).
        let gap = chrono::Duration::minutes(i64::from(self.cfg.min_gap_min));
        if self.last_start.is_some_and(|t| now < t + gap) {
            return None;
        }
        if let Some(why) = self.requested.take() {
            return Some(why);
        }
        if deviation.is_some() {
            if self.last_deviation_slot == Some(slot) {
                return None;
            }
            self.deviation_since = None;
            self.last_deviation_slot = Some(slot);
        }
        deviation
    }

    /// Starts a re-plan of the rest of the local day from `now` with the measured stored
    /// energy (kWh, whole park), on a worker thread.
    /// Starts a re-plan from the measured stored energy and the billing month so far (its peak
    /// import: the plan pays the demand charge only on a rise above it; its Scope 2: a monthly
    /// carbon budget gets what is left).
    pub fn start(
        &mut self,
        now: DateTime<Utc>,
        stored_kwh: Option<f64>,
        month: MonthSoFar,
        sessions: Vec<Session>,
        grid_caps: BTreeMap<DateTime<Utc>, GridCap>,
        why: String,
    ) {
        let slot = self.park.clock.interval_start(now);
        self.last_slot = Some(slot);
        self.last_start = Some(now);
        let park = self.park.clone();
        let cfg = self.cfg.clone();
        let planner = self.planner;
        let day = park.clock.local(now).date_naive();
        // The last scheduled re-plan of the day: the next one would start after midnight.
        let next_day = day.succ_opt();
        let midnight = next_day.map(|d| park.clock.start_of_local_day(d));
        let every = chrono::Duration::minutes(i64::from(cfg.every_min.max(1)));
        let last_of_day = midnight.filter(|m| slot + every >= *m);
        self.task = Some(std::thread::spawn(move || {
            let mut state = measured_state(&park, stored_kwh, month);
            state.grid_caps = grid_caps;
            let plan = plan_from(&park, &cfg, planner, now, state.clone(), &sessions);
            let ahead = last_of_day.zip(next_day).map(|(midnight, next)| {
                let state = at_midnight(&park, &state, plan.as_ref().ok(), midnight);
                (
                    next,
                    plan_from(&park, &cfg, planner, midnight, state, &sessions),
                )
            });
            Outcome {
                day,
                plan,
                why,
                ahead,
            }
        }));
    }

    /// The outcome of a finished re-plan (never waits).
    pub fn poll(&mut self) -> Option<Outcome> {
        if !self.task.as_ref()?.is_finished() {
            return None;
        }
        let t = self.task.take()?;
        Some(t.join().unwrap_or_else(|_| Outcome {
            day: NaiveDate::MIN,
            plan: Err("the re-plan thread panicked".into()),
            why: String::new(),
            ahead: None,
        }))
    }

    /// Waits for a running re-plan (tests, shutdown).
    pub fn wait(&mut self) -> Option<Outcome> {
        let t = self.task.take()?;
        t.join().ok()
    }
}

/// What a next day's plan made ahead says in its strategy label.
pub const AHEAD: &str = "day ahead";

/// The billing month so far, as the runtime measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MonthSoFar {
    /// The month's highest interval-average import, kW.
    pub peak_kw: f64,
    /// The month's location-based Scope 2, kg CO2.
    pub scope2_kg: f64,
    /// The month's Scope 2 without the EMS, kg CO2.
    pub scope2_without_ems_kg: f64,
    /// The month's consumption on site (loads and EV), kWh.
    pub consumption_kwh: f64,
    /// The calendar year's Scope 2, kg CO2.
    pub year_scope2_kg: f64,
}

/// The state a re-plan starts from: the measured stored energy (shared over the batteries by
/// capacity) and the billing month so far.
fn measured_state(park: &Park, stored_kwh: Option<f64>, month: MonthSoFar) -> CurrentState {
    let mut state = CurrentState {
        month_peak_import_kw: month.peak_kw,
        month_scope2_kg: month.scope2_kg,
        month_scope2_without_ems_kg: month.scope2_without_ems_kg,
        month_consumption_kwh: month.consumption_kwh,
        year_scope2_kg: month.year_scope2_kg,
        ..CurrentState::default()
    };
    if let Some(kwh) = stored_kwh {
        let total: f64 = park.batteries.iter().map(|b| b.capacity.0).sum();
        for b in &park.batteries {
            state
                .soc_kwh
                .insert(b.id.clone(), kwh * b.capacity.0 / total.max(1e-9));
        }
    }
    state
}

/// The state the rest of today's plan leaves at `midnight`: each battery's stored energy at
/// its end, the month's peak and Scope 2 with what it adds (a new month or year starts from
/// nothing); today's deliveries to sessions and loads are not carried (a new day).
fn at_midnight(
    park: &Park,
    now: &CurrentState,
    today: Option<&Replanned>,
    midnight: DateTime<Utc>,
) -> CurrentState {
    let mut state = CurrentState {
        soc_kwh: now.soc_kwh.clone(),
        grid_caps: now.grid_caps.clone(),
        ..CurrentState::default()
    };
    let (mut peak, mut scope2, mut consumption) = (
        now.month_peak_import_kw,
        now.month_scope2_kg,
        now.month_consumption_kwh,
    );
    let mut scope2_without = now.month_scope2_without_ems_kg;
    let mut year = now.year_scope2_kg;
    if let Some(p) = today.map(|r| &r.plan) {
        if let Some(last) = p.intervals.last() {
            if !last.batteries_soc_kwh.is_empty() {
                state.soc_kwh = last.batteries_soc_kwh.clone();
            }
        }
        let h = f64::from(p.interval_minutes) / 60.0;
        peak = peak.max(p.peak_import_kw);
        scope2 += p.scope2_kg;
        year += p.scope2_kg;
        scope2_without += p.scope2_without_ems_kg;
        consumption += p
            .intervals
            .iter()
            .map(|i| (i.fixed_load_kw + i.flexible_load_kw + i.ev_kw) * h)
            .sum::<f64>();
    }
    let before = park.clock.local(midnight - chrono::Duration::seconds(1));
    let after = park.clock.local(midnight);
    use chrono::Datelike;
    if before.month() == after.month() {
        state.month_peak_import_kw = peak;
        state.month_scope2_kg = scope2;
        state.month_scope2_without_ems_kg = scope2_without;
        state.month_consumption_kwh = consumption;
    }
    if before.year() == after.year() {
        state.year_scope2_kg = year;
    }
    state
}

/// A plan from the interval `from` falls in to the end of its local day, from `state`, the
/// cars there now in place of the forecast's.
fn plan_from(
    park: &Park,
    cfg: &ReplanConfig,
    planner: Planner,
    now: DateTime<Utc>,
    state: CurrentState,
    sessions: &[Session],
) -> Result<Replanned, String> {
    let day = park.clock.local(now).date_naive();
    let sub = cfg.inputs.join(day.to_string());
    let dir = if sub.is_dir() {
        sub
    } else {
        cfg.inputs.clone()
    };
    let inputs = pedf_core::inputs::load_day_inputs_from_dir(park, &dir, day)
        .map_err(|e| format!("no forecast for {day}: {e}"))?;
    let slot = park.clock.interval_start(now);
    let k = inputs
        .starts
        .iter()
        .position(|s| *s == slot)
        .ok_or(format!("the forecast has no interval starting at {slot}"))?;
    let mut tail = inputs.tail(k);
    with_sessions(park, &mut tail, now, sessions);
    let opts = PlanOptions {
        time_limit_s: cfg.time_limit_s,
        // The rest of the day: what the battery lacks at midnight is refilled the next night.
        terminal_refill_priced: true,
        ..PlanOptions::default()
    };
    match planner(park, &tail, &opts, &state) {
        // The optimiser falls back to the rule-based plan itself when HiGHS fails, and says so
        // in the plan's strategy and notes: the label carries it, so the runtime alarms.
        Ok(p) if p.strategy == pedf_core::plan::Strategy::Rule => {
            let why = p
                .notes
                .iter()
                .find(|n| n.contains("optimiser failed"))
                .cloned()
                .unwrap_or_else(|| "the optimiser gave the rule-based plan".into());
            Ok(Replanned {
                plan: p,
                fallback: Some(why),
            })
        }
        Ok(p) => Ok(Replanned {
            plan: p,
            fallback: None,
        }),
        Err(e) => {
            let mut p = plan_rule_based(park, &tail, &opts, &state).map_err(|e2| {
                format!("optimiser failed ({e}) and the rule-based plan too ({e2})")
            })?;
            p.notes
                .push(format!("optimiser failed ({e}): rule-based fallback"));
            Ok(Replanned {
                plan: p,
                fallback: Some(format!("optimiser failed: {e}")),
            })
        }
    }
}

/// The EV sessions of a re-plan: on the chargers whose sessions the runtime tracks (those
/// with a default session in the park file), the cars that are there now with what they are
/// still owed by their departure, in place of the forecast's (a forecast car due before now
/// that has not come is not planned for: its arrival triggers a re-plan; one due on an
/// occupied charger before the car there leaves cannot plug in). Elsewhere the forecast stands.
pub fn with_sessions(park: &Park, inputs: &mut DayInputs, now: DateTime<Utc>, open: &[Session]) {
    let tracked: Vec<&str> = park
        .ev_chargers
        .iter()
        .filter(|c| c.session_kwh > 0.0 && c.session_hours > 0.0)
        .map(|c| c.id.as_str())
        .collect();
    let Some(&h0) = inputs.starts.first() else {
        return;
    };
    let step = park.clock.interval.duration();
    let h1 = inputs.starts[inputs.starts.len() - 1] + step;
    inputs.sessions.retain(|f| {
        if !tracked.contains(&f.charger.as_str()) {
            return true;
        }
        let here = open.iter().find(|s| s.charger == f.charger);
        f.arrival >= now && here.is_none_or(|s| f.arrival >= s.departure)
    });
    for s in open {
        let owed = s.owed_kwh();
        if owed <= 1e-9 {
            continue;
        }
        // Whole intervals that end by the departure; at least the one running now.
        let end = inputs
            .starts
            .iter()
            .rposition(|t| *t + step <= s.departure)
            .map_or(1, |i| i + 1)
            .max(1);
        let mut need = owed;
        if s.departure > h1 {
            let stay = (s.departure - now.max(h0)).num_seconds() as f64;
            let inside = (h1 - now.max(h0)).num_seconds() as f64;
            need *= (inside / stay.max(1.0)).clamp(0.0, 1.0);
        }
        inputs.sessions.push(EvSession {
            id: format!("{}@{}", s.charger, s.arrival.format("%H:%M")),
            charger: s.charger.clone(),
            arrival: s.arrival,
            departure: s.departure,
            energy_kwh: need,
            first: 0,
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    fn park() -> Park {
        let path = format!("{ROOT}/config/qingzhou-pedf.toml");
        let bytes = std::fs::read(&path).unwrap();
        pedf_core::config::load_park(&path, &bytes).value.unwrap()
    }

    fn cfg() -> ReplanConfig {
        ReplanConfig {
            inputs: format!("{ROOT}/simulations/qingzhou-pedf/day-inputs").into(),
            every_min: 15,
            deviation_kw: 100.0,
            deviation_s: 60,
            time_limit_s: 5.0,
            min_gap_min: 5,
        }
    }

    fn failing(
        _: &Park,
        _: &DayInputs,
        _: &PlanOptions,
        _: &CurrentState,
    ) -> Result<Plan, DispatchError> {
        Err(DispatchError::Solver(
            "no solution within the time limit".into(),
        ))
    }

    /// A car that came at 08:00 and got 12 kWh of its 30: the 10:00 re-plan plans the 18 kWh
    /// it is still owed by its 16:00 departure on its charger (not its whole 30 again), the
    /// forecast's earlier cars on that charger are gone, and an arrival asks for a re-plan at
    /// once.
    #[test]
    fn a_replan_plans_what_the_cars_there_are_still_owed() {
        let p = park();
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 7).unwrap();
        let day = p.clock.local(now).date_naive();
        let inputs = pedf_core::inputs::load_day_inputs_from_dir(&p, &cfg().inputs, day).unwrap();
        let k = inputs
            .starts
            .iter()
            .position(|t| *t == p.clock.interval_start(now))
            .unwrap();
        let mut tail = inputs.tail(k);
        let charger = p.ev_chargers[0].id.clone();
        let s = Session {
            device: "dev".into(),
            charger: charger.clone(),
            arrival: now - chrono::Duration::hours(2),
            departure: now + chrono::Duration::hours(6),
            requested_kwh: 30.0,
            delivered_kwh: 12.0,
            max_kw: 60.0,
        };
        with_sessions(&p, &mut tail, now, std::slice::from_ref(&s));
        let on: Vec<_> = tail
            .sessions
            .iter()
            .filter(|x| x.charger == charger)
            .collect();
        let here: Vec<_> = on.iter().filter(|x| x.arrival < s.departure).collect();
        assert_eq!(here.len(), 1, "{on:?}");
        assert!((here[0].energy_kwh - 18.0).abs() < 1e-9);
        assert_eq!(here[0].first, 0);
        assert_eq!(here[0].end, 24, "6 h of 15-minute intervals");
        // A forecast car after this one leaves is still planned for.
        assert!(on.iter().all(|x| x.arrival >= s.departure || x.first == 0));
        assert!(tail.sessions.iter().all(|x| x.first < x.end));
        let mut r = Replanner::new(cfg(), p.clone());
        r.start(
            now,
            None,
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            "test".into(),
        );
        r.request("a car arrived on ev-01".into());
        r.wait();
        // Held for the gap after the last re-plan, then taken.
        assert_eq!(r.due(now + chrono::Duration::minutes(4), 0.0, None), None);
        assert_eq!(
            r.due(now + chrono::Duration::minutes(5), 0.0, None)
                .as_deref(),
            Some("a car arrived on ev-01")
        );
    }

    /// The day's last scheduled re-plan (23:45, every 15 min) also plans the next day, from
    /// the stored energy today's plan leaves at midnight; earlier re-plans do not.
    #[test]
    fn the_days_last_replan_plans_the_next_day_ahead() {
        let p = park();
        // 23:30 local on 2026-06-21: the next re-plan (23:45) is still today's.
        let at = |h: u32, m: u32| {
            p.clock
                .start_of_local_day(NaiveDate::from_ymd_opt(2026, 6, 21).unwrap())
                + chrono::Duration::minutes(i64::from(h * 60 + m))
                + chrono::Duration::seconds(7)
        };
        let mut r = Replanner::new(cfg(), p.clone());
        r.start(
            at(23, 30),
            Some(1200.0),
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            "t".into(),
        );
        let o = r.wait().unwrap();
        assert!(o.ahead.is_none());
        for stored in [300.0, 1500.0] {
            let mut r = Replanner::new(cfg(), p.clone());
            r.start(
                at(23, 45),
                Some(stored),
                MonthSoFar::default(),
                Vec::new(),
                BTreeMap::new(),
                "t".into(),
            );
            let o = r.wait().unwrap();
            let today = o.plan.unwrap().plan;
            assert_eq!(today.intervals.len(), 1);
            let (next, ahead) = o.ahead.expect("the day's last re-plan plans ahead");
            assert_eq!(next, NaiveDate::from_ymd_opt(2026, 6, 22).unwrap());
            let ahead = ahead.unwrap();
            assert!(ahead.fallback.is_none());
            assert_eq!(ahead.ahead_label(), "optimized, day ahead");
            let plan = &ahead.plan;
            assert_eq!(plan.intervals.len(), 96);
            assert_eq!(
                plan.intervals[0].start.with_timezone(&Utc),
                p.clock.start_of_local_day(next)
            );
            // It starts from what today's plan leaves at midnight: the first interval's energy
            // is within one interval's battery power of it.
            let left = today.intervals[0].battery_soc_kwh;
            let first = plan.intervals[0].battery_soc_kwh;
            let most = p.batteries[0]
                .max_charge
                .0
                .max(p.batteries[0].max_discharge.0)
                * 0.25;
            assert!((first - left).abs() <= most + 1e-6, "{first} vs {left}");
            assert!((left - stored).abs() <= most + 1e-6, "{left} vs {stored}");
        }
    }

    /// The month and year carried to midnight: what today's plan adds, unless the next day
    /// starts a new month (or year), which starts from nothing.
    #[test]
    fn the_state_at_midnight_starts_a_new_month_from_nothing() {
        let p = park();
        let now = CurrentState {
            month_peak_import_kw: 500.0,
            month_scope2_kg: 1000.0,
            year_scope2_kg: 9000.0,
            ..CurrentState::default()
        };
        let day = |y, m, d| {
            p.clock
                .start_of_local_day(NaiveDate::from_ymd_opt(y, m, d).unwrap())
        };
        let same = at_midnight(&p, &now, None, day(2026, 6, 22));
        assert_eq!(same.month_peak_import_kw, 500.0);
        assert_eq!(same.month_scope2_kg, 1000.0);
        let july = at_midnight(&p, &now, None, day(2026, 7, 1));
        assert_eq!(july.month_peak_import_kw, 0.0);
        assert_eq!(july.month_scope2_kg, 0.0);
        assert_eq!(july.year_scope2_kg, 9000.0);
        let year = at_midnight(&p, &now, None, day(2027, 1, 1));
        assert_eq!(year.year_scope2_kg, 0.0);
    }

    #[test]
    fn replans_the_rest_of_the_day_from_the_measured_state() {
        let p = park();
        let mut r = Replanner::new(cfg(), p.clone());
        // 10:00 local on the example day (UTC+8).
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 7).unwrap();
        let why = r.due(now, 0.0, None).expect("first call is due");
        r.start(
            now,
            Some(1000.0),
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            why,
        );
        assert!(r.due(now, 0.0, None).is_none(), "one at a time");
        let o = r.wait().unwrap();
        let replanned = o.plan.unwrap();
        assert!(replanned.fallback.is_none());
        let (plan, strategy) = (&replanned.plan, replanned.label());
        assert_eq!(strategy, "optimized, intraday");
        assert_eq!(plan.intervals.len(), 96 - 40);
        assert_eq!(
            plan.intervals[0].start.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap()
        );
        // Starts from the measured 1000 kWh (charge/discharge in the first interval moves it
        // by at most the battery's power for 15 min).
        let cap_kw: f64 = p
            .batteries
            .iter()
            .map(|b| b.max_charge.0.max(b.max_discharge.0))
            .sum();
        assert!((plan.intervals[0].battery_soc_kwh - 1000.0).abs() <= cap_kw * 0.25 + 1e-6);
        // Same interval: not due; next interval: due.
        assert!(r
            .due(now + chrono::Duration::minutes(5), 0.0, Some(0.0))
            .is_none());
        assert!(r
            .due(now + chrono::Duration::minutes(15), 0.0, Some(0.0))
            .is_some());
    }

    #[test]
    fn a_lasting_deviation_triggers_a_replan() {
        let mut r = Replanner::new(cfg(), park());
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        r.last_slot = Some(now);
        let at = |s| now + chrono::Duration::seconds(s);
        assert!(
            r.due(at(1), 500.0, Some(350.0)).is_none(),
            "starts the clock"
        );
        assert!(r.due(at(30), 500.0, Some(350.0)).is_none());
        assert!(
            r.due(at(45), 400.0, Some(350.0)).is_none(),
            "back inside: reset"
        );
        assert!(r.due(at(50), 500.0, Some(350.0)).is_none());
        let why = r.due(at(111), 500.0, Some(350.0)).expect("61 s off");
        assert!(why.contains("150 kW off"), "{why}");
    }

    /// Deviations and events never re-plan sooner than `min_gap_min` after the last re-plan
    /// started (at `pedf demo --speed 60` they once gave a re-plan every 2-4 simulated
    /// minutes); the schedule's own re-plan keeps its cadence.
    #[test]
    fn deviations_and_events_wait_for_the_gap_after_the_last_replan() {
        let mut r = Replanner::new(cfg(), park());
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 2, 0, 0).unwrap();
        r.last_slot = Some(now);
        r.last_start = Some(now);
        let at = |s| now + chrono::Duration::seconds(s);
        // Off the plan from the first second, an event at 30 s: nothing for 5 minutes.
        r.request("a car arrived on ev-02".into());
        for s in (1..300).step_by(7) {
            assert_eq!(r.due(at(s), 500.0, Some(350.0)), None, "at {s} s");
        }
        // Then the held event first (the deviation waits for its own turn).
        assert_eq!(
            r.due(at(300), 500.0, Some(350.0)).as_deref(),
            Some("a car arrived on ev-02")
        );
        // The deviation lasting since the first second is due at once after the gap.
        let why = r.due(at(301), 500.0, Some(350.0)).expect("deviation");
        assert!(why.contains("150 kW off"), "{why}");
        // It lasts on: no second deviation re-plan in the same interval, one in the next.
        r.last_start = Some(at(301));
        assert_eq!(r.due(at(400), 500.0, Some(350.0)), None, "starts the clock");
        assert_eq!(r.due(at(700), 500.0, Some(350.0)), None, "same interval");
        r.last_slot = Some(at(900));
        let next = r
            .due(at(1000), 500.0, Some(350.0))
            .expect("the next interval's");
        assert!(next.contains("150 kW off"), "{next}");
        // The schedule's re-plan at the next 15-minute slot is not held.
        r.last_start = Some(at(1795));
        assert!(r.due(at(1800), 350.0, Some(350.0)).is_some());
    }

    #[test]
    fn a_failing_optimiser_falls_back_to_the_rule_based_plan() {
        let mut r = Replanner::new(cfg(), park()).with_planner(failing);
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 6, 30, 0).unwrap();
        r.start(
            now,
            None,
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            "test".into(),
        );
        let replanned = r.wait().unwrap().plan.unwrap();
        let (plan, strategy) = (&replanned.plan, replanned.label());
        assert!(
            replanned.fallback.is_some(),
            "the runtime alarms on a fallback"
        );
        assert!(
            strategy.starts_with("rule, fallback: optimiser failed"),
            "{strategy}"
        );
        assert_eq!(plan.strategy, pedf_core::plan::Strategy::Rule);
        assert!(plan.notes.iter().any(|n| n.contains("rule-based fallback")));
    }

    /// What `plan_optimized` itself returns when HiGHS fails: the rule-based plan, as `Ok`,
    /// with its strategy `Rule` and a note (pedf-dispatch's own fallback).
    fn falls_back_inside(
        park: &Park,
        inputs: &DayInputs,
        opts: &PlanOptions,
        state: &CurrentState,
    ) -> Result<Plan, DispatchError> {
        let mut p = plan_rule_based(park, inputs, opts, state)?;
        p.solver = pedf_core::plan::SolverInfo::rule_based("fallback", 0.0);
        p.notes
            .push("optimiser failed (HiGHS: solver error); this is the rule-based plan".into());
        Ok(p)
    }

    /// A plan read back from its JSON (as the runtime reads the active plan from the store) is
    /// the plan, and the controller's target of an interval is that interval's grid exchange,
    /// battery charging, chargers and flexible loads: the runtime and the backtests follow a
    /// plan through the same `PlanTarget::of`.
    #[test]
    fn the_active_plan_reads_back_typed_and_maps_to_the_controllers_target() {
        let p = park();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
        let inputs = pedf_core::inputs::load_day_inputs_from_dir(&p, &cfg().inputs, day).unwrap();
        let plan = plan_rule_based(
            &p,
            &inputs,
            &PlanOptions::default(),
            &CurrentState::default(),
        )
        .unwrap();
        let back: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        // The same plan (decimal text round-trips floats to within a unit in the last place).
        assert_eq!(
            (back.strategy, back.intervals.len(), &back.notes),
            (plan.strategy, plan.intervals.len(), &plan.notes)
        );
        for (a, b) in back.intervals.iter().zip(&plan.intervals) {
            assert_eq!(a.start, b.start);
            assert!(
                (a.grid_import_kw - b.grid_import_kw).abs()
                    <= 1e-9 * b.grid_import_kw.abs().max(1.0)
            );
            assert_eq!(
                a.ev_chargers.keys().collect::<Vec<_>>(),
                b.ev_chargers.keys().collect::<Vec<_>>()
            );
        }
        let i = plan
            .intervals
            .iter()
            .find(|i| !i.ev_chargers.is_empty() && !i.flexible_loads.is_empty())
            .expect("an interval with cars and flexible loads");
        let t = pedf_control::PlanTarget::of(i);
        assert_eq!(
            (t.grid_import_kw, t.grid_export_kw, t.battery_charge_kw),
            (i.grid_import_kw, i.grid_export_kw, i.battery_charge_kw)
        );
        assert_eq!(t.ev_kw.len(), i.ev_chargers.len());
        assert_eq!(t.loads_kw.len(), i.flexible_loads.len());
    }

    #[test]
    fn the_optimisers_own_fallback_is_labelled_a_fallback() {
        let mut r = Replanner::new(cfg(), park()).with_planner(falls_back_inside);
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 6, 30, 0).unwrap();
        r.start(
            now,
            None,
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            "test".into(),
        );
        let replanned = r.wait().unwrap().plan.unwrap();
        let (plan, strategy) = (&replanned.plan, replanned.label());
        assert!(
            replanned.fallback.is_some(),
            "the runtime alarms on a fallback"
        );
        assert_eq!(plan.strategy, pedf_core::plan::Strategy::Rule);
        assert!(
            strategy.starts_with("rule, fallback: optimiser failed (HiGHS"),
            "labelled {strategy}: the runtime's alarm would not fire"
        );
    }

    #[test]
    fn no_forecast_for_the_day_is_an_error_naming_it() {
        let mut r = Replanner::new(cfg(), park());
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 6, 30, 0).unwrap();
        r.start(
            now,
            None,
            MonthSoFar::default(),
            Vec::new(),
            BTreeMap::new(),
            "test".into(),
        );
        let e = r.wait().unwrap().plan.unwrap_err();
        assert!(e.contains("no forecast for 2026-11-27"), "{e}");
    }
}
