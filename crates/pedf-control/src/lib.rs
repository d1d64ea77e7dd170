//! The controller of one cycle (1 s by default): from what the park measures now and the
//! active plan's interval to setpoints for the battery, the EV chargers, the deferrable DC loads
//! (the plan's power; their maximum in safe mode; none without a plan) and the PV limit.
//!
//! Automatic mode follows the plan's grid exchange, not its battery power: the battery absorbs
//! the forecast error (more sun, less load) inside its limits. Without a plan, a self-consumption
//! rule: the battery takes PV surplus and covers deficits. In every mode the grid limits are
//! enforced hard, in this order: the import limit by lowering EV charging (each charger no lower
//! than its minimum while a session needs it; for the month's peak, also no lower than what the
//! session needs to finish by its departure, [`ev_must_kw`]); the export limit, the no-export rule and the
//! export-only-from-PV rule by charging the battery more, then by curtailing PV; where they
//! forbid export now, the park's reverse-flow margin is kept as import (less battery
//! discharge). A grid request's export floor (`Limits::export_floor_kw`) is kept within
//! those rules by more from the battery, then lower deferrable loads, then less EV (never
//! below a session's minimum or what it needs by its departure). The balance counts each
//! charger and deferrable load at its setpoint, but no more than it draws now (one that does
//! not take its setpoint is not covered). Safe mode
//! writes the safe values (battery 0, chargers at minimum, PV unrestricted). What could not be
//! met is said in `alarms`, never hidden.
//!
//! Power balance at the DC bus: `pv + battery + grid_to_bus = load + ev`, with
//! `grid_to_bus = import * eta_in` when importing and `-export / eta_out` when exporting.
//!
//! Several batteries are one battery to [`control`]: [`pool_batteries`] sums what each that
//! answers can give or take now (inside its own SoC window and BMS limits) with their
//! capacity-weighted SoC, and [`share_battery_power`] splits the park's battery setpoint among
//! them in proportion to what each can do in that direction, so no battery is asked for more
//! than it can give and the setpoints add up to the park's.

#![warn(missing_docs)]

pub mod curtail;

use pedf_core::Park;

/// What the park measures now (kW, bus side unless said).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// PV power the arrays could give now (unrestricted), at the bus.
    pub pv_available_kw: f64,
    /// Fixed and flexible loads.
    pub load_kw: f64,
    /// Chargers with a car: (id, power it would take now, minimum while charging, maximum).
    pub chargers: Vec<ChargerNow>,
    /// Battery state, if the battery answers.
    pub battery: Option<BatteryNow>,
    /// Deferrable loads the controller commands (their power is part of `load_kw`).
    pub loads: Vec<LoadNow>,
    /// Curtailable demand the controller may shed now, kW (part of `load_kw`); 0: none.
    pub curtailable_kw: f64,
    /// The peak guard: the import (AC, kW) that keeps the demand meter's window at or below
    /// the month's peak so far (or the park's target), from [`window_allowance`]. `None`: no
    /// guard (no demand charge, or the month's state unknown).
    pub import_guard_kw: Option<f64>,
}

/// The import allowed for the rest of a demand window so that its average stays at `level_kw`:
/// (level x window - energy imported so far in it) / time left. `window_s` and `elapsed_s` in
/// seconds, `imported_kwh` since the window began; never below 0 and, with under a second left,
/// the level itself (the window is as good as closed).
pub fn window_allowance(level_kw: f64, window_s: f64, elapsed_s: f64, imported_kwh: f64) -> f64 {
    let left_s = window_s - elapsed_s;
    if left_s < 1.0 {
        return level_kw.max(0.0);
    }
    ((level_kw * window_s / 3600.0 - imported_kwh) * 3600.0 / left_s).max(0.0)
}

/// A deferrable DC load (e.g. cold storage) the plan schedules.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadNow {
    /// The park asset id.
    pub id: String,
    /// What it draws now.
    pub kw: f64,
    /// Its lowest power when running, kW.
    pub min_kw: f64,
    /// Its highest power, kW.
    pub max_kw: f64,
    /// Whether it takes what it is told: `false` once it has drawn more than its last
    /// setpoint for a while (its own controls: a cold store keeping its temperature), and then
    /// the balance counts what it draws, not what it is told.
    pub follows: bool,
}

/// An EV charger with a car plugged in, as the controller sees it this cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerNow {
    /// The charger's park asset id.
    pub id: String,
    /// What the car would draw if let (the plan's or the car's request).
    pub wanted_kw: f64,
    /// The lowest charging power the car accepts once charging, kW (IEC 61851: 6 A).
    pub min_kw: f64,
    /// The charger's (or the car's) highest power, kW.
    pub max_kw: f64,
    /// The power the session needs now to still get what it is owed by its departure at full
    /// power afterwards, from [`ev_must_kw`]: the plan and the peak guard never give it less
    /// (only the hard import limit may). 0: no deadline known, or time to spare.
    pub must_kw: f64,
    /// What the charger draws now, measured; `None`: it draws what it is told (a model that
    /// follows its setpoint, as the backtest's). The power balance counts no more than this
    /// for it: a car taking less than its limit (not there yet, full, still ramping up) is not
    /// covered by the battery, which would otherwise feed that power to the grid.
    pub drawing_kw: Option<f64>,
}

/// The power a session must get now so that what it is still owed can be delivered by its
/// departure: what full power after this step (`hours_left - step_h` of it) cannot deliver,
/// spread over this step; 0 while there is time to spare, at most `max_kw`.
pub fn ev_must_kw(owed_kwh: f64, max_kw: f64, hours_left: f64, step_h: f64) -> f64 {
    if owed_kwh <= 0.0 || step_h <= 0.0 || max_kw <= 0.0 {
        return 0.0;
    }
    let after = (hours_left - step_h).max(0.0);
    ((owed_kwh - max_kw * after) / step_h).clamp(0.0, max_kw)
}

/// The pooled battery as measured this cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatteryNow {
    /// State of charge, % of usable capacity.
    pub soc_pct: f64,
    /// BMS limits now (magnitudes).
    pub max_charge_kw: f64,
    /// Discharge limit now, kW.
    pub max_discharge_kw: f64,
}

/// One of the park's batteries as the controller shares power among them (from the park file).
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryUnit {
    /// The park asset id.
    pub id: String,
    /// Usable capacity, kWh.
    pub capacity_kwh: f64,
    /// Lowest state of charge allowed, %.
    pub soc_min_pct: f64,
    /// Highest state of charge allowed, %.
    pub soc_max_pct: f64,
    /// Rated charge power, kW.
    pub max_charge_kw: f64,
    /// Rated discharge power, kW.
    pub max_discharge_kw: f64,
}

impl BatteryUnit {
    /// The park's batteries.
    pub fn of(park: &Park) -> Vec<BatteryUnit> {
        park.batteries
            .iter()
            .map(|b| BatteryUnit {
                id: b.id.clone(),
                capacity_kwh: b.capacity.0,
                soc_min_pct: b.soc_min * 100.0,
                soc_max_pct: b.soc_max * 100.0,
                max_charge_kw: b.max_charge.0,
                max_discharge_kw: b.max_discharge.0,
            })
            .collect()
    }

    /// What it can take and give now (magnitudes, kW): its BMS limits now and its own limits,
    /// nothing in a direction its SoC window closes.
    fn room(&self, now: &BatteryNow) -> (f64, f64) {
        let charge = if now.soc_pct >= self.soc_max_pct {
            0.0
        } else {
            now.max_charge_kw.min(self.max_charge_kw).max(0.0)
        };
        let discharge = if now.soc_pct <= self.soc_min_pct {
            0.0
        } else {
            now.max_discharge_kw.min(self.max_discharge_kw).max(0.0)
        };
        (charge, discharge)
    }
}

/// The park's batteries as one: the sum of what each answering battery (`now`, by asset id) can
/// take and give now, with their capacity-weighted SoC. `None` when none answers. Batteries
/// not in `units` are ignored.
pub fn pool_batteries(units: &[BatteryUnit], now: &[(String, BatteryNow)]) -> Option<BatteryNow> {
    let mut pooled: Option<(f64, f64, f64, f64)> = None;
    for u in units {
        let Some((_, n)) = now.iter().find(|(id, _)| *id == u.id) else {
            continue;
        };
        let (charge, discharge) = u.room(n);
        let (c, d, e, cap) = pooled.unwrap_or_default();
        pooled = Some((
            c + charge,
            d + discharge,
            e + n.soc_pct * u.capacity_kwh,
            cap + u.capacity_kwh,
        ));
    }
    pooled.map(|(charge, discharge, e, cap)| BatteryNow {
        soc_pct: if cap > 0.0 { e / cap } else { 0.0 },
        max_charge_kw: charge,
        max_discharge_kw: discharge,
    })
}

/// The park's battery setpoint `total_kw` (+discharge / -charge) split among the batteries
/// (by asset id): each in proportion to what it can do in that direction now; a battery that
/// does not answer, or cannot move that way, gets 0. The shares add up to `total_kw` within
/// what the answering batteries can do (which [`control`] keeps to, through the pool).
pub fn share_battery_power(
    total_kw: f64,
    units: &[BatteryUnit],
    now: &[(String, BatteryNow)],
) -> Vec<(String, f64)> {
    let rooms: Vec<(String, f64)> = units
        .iter()
        .map(|u| {
            let room = now
                .iter()
                .find(|(id, _)| *id == u.id)
                .map_or(0.0, |(_, n)| {
                    let (charge, discharge) = u.room(n);
                    if total_kw >= 0.0 {
                        discharge
                    } else {
                        charge
                    }
                });
            (u.id.clone(), room)
        })
        .collect();
    let all: f64 = rooms.iter().map(|(_, r)| r).sum();
    rooms
        .into_iter()
        .map(|(id, room)| {
            let kw = if all > 0.0 {
                total_kw * room / all
            } else {
                0.0
            };
            // Never more than the battery can do, whatever the total.
            (id, kw.clamp(-room, room))
        })
        .collect()
}

/// The active plan's interval, as the controller uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanTarget {
    /// The plan's import from the grid in the interval, kW.
    pub grid_import_kw: f64,
    /// The plan's export to the grid in the interval, kW.
    pub grid_export_kw: f64,
    /// The plan's battery charging in the interval, kW (magnitude): the peak guard lets the
    /// battery charge this much at the plan's import, and no more above the month's peak.
    pub battery_charge_kw: f64,
    /// EV power per charger.
    pub ev_kw: Vec<(String, f64)>,
    /// Power per deferrable load.
    pub loads_kw: Vec<(String, f64)>,
}

impl PlanTarget {
    /// What the controller follows of a plan's interval: its grid exchange, its battery
    /// charging, each charger's and each flexible load's power (by park asset). One mapping
    /// for the runtime and the simulator's backtests.
    pub fn of(i: &pedf_core::plan::PlanInterval) -> PlanTarget {
        PlanTarget {
            grid_import_kw: i.grid_import_kw,
            grid_export_kw: i.grid_export_kw,
            battery_charge_kw: i.battery_charge_kw,
            ev_kw: i.ev_chargers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            loads_kw: i
                .flexible_loads
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }
}

/// Operating modes (a pedf-core type: the server sets it, the controller follows it).
pub use pedf_core::live::Mode;

/// What to write this cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Setpoints {
    /// Battery power, +discharge / -charge.
    pub battery_kw: f64,
    /// EV chargers: (id, kW).
    pub chargers: Vec<(String, f64)>,
    /// Deferrable loads: (id, kW); a load the plan does not schedule (no plan) gets none and
    /// runs on its own control.
    pub loads: Vec<(String, f64)>,
    /// PV power allowed at the bus (the available power when not curtailing).
    pub pv_kw: f64,
    /// Curtailable demand to shed now, kW (the peak guard's), at most `curtailable_kw`.
    pub shed_kw: f64,
    /// Grid exchange that results, AC side: +import / -export.
    pub grid_kw: f64,
    /// Why the setpoints differ from the wish (limits met, rules applied).
    pub notes: Vec<String>,
    /// Limits that could not be met.
    pub alarms: Vec<String>,
}

/// The limits the controller keeps, from the park file.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Import limit at the point of connection, kW (the contract or the converter, the lower).
    pub import_kw: f64,
    /// Export limit at the point of connection, kW.
    pub export_kw: f64,
    /// Whether the grid connection agreement allows export at all.
    pub allow_export: bool,
    /// Whether only PV may be exported (no battery-to-grid).
    pub export_only_from_pv: bool,
    /// Converter efficiency AC to DC (import), 0..1.
    pub eta_in: f64,
    /// Converter efficiency DC to AC (export), 0..1.
    pub eta_out: f64,
    /// Lowest state of charge, % (one battery; 0 when several are pooled).
    pub soc_min_pct: f64,
    /// Highest state of charge, % (one battery; 100 when several are pooled).
    pub soc_max_pct: f64,
    /// Import kept in hand wherever the export rules forbid export now, kW (防逆流 margin; 0:
    /// none): the battery discharges this much less (and, where no export is allowed at all,
    /// charges more or PV is curtailed) so that a load dropping on its own between two cycles
    /// lowers the import instead of reversing the flow.
    pub reverse_flow_margin_kw: f64,
    /// All batteries' rated charge power, kW.
    pub battery_charge_kw: f64,
    /// All batteries' rated discharge power, kW.
    pub battery_discharge_kw: f64,
    /// Export the grid asks at least, kW (a grid request in force; 0: none): held within the
    /// export rules and the reverse-flow margin by more from the battery, then lower
    /// deferrable loads, then less EV charging (no session below its minimum or what it needs
    /// by its departure); what is still short is an alarm.
    pub export_floor_kw: f64,
}

impl Limits {
    /// The limits of a park file.
    pub fn of(park: &Park) -> Limits {
        // One battery: its SoC window. Several: each battery's window is applied where they
        // are pooled ([`pool_batteries`]); the pool's weighted SoC closes nothing.
        let b = park.batteries.first().filter(|_| park.batteries.len() == 1);
        Limits {
            import_kw: park.grid.import_limit.0.min(park.converter.rating.0),
            export_kw: park.grid.export_limit.0.min(park.converter.rating.0),
            allow_export: park.grid.export_rules.allow_export,
            export_only_from_pv: park.grid.export_rules.export_only_from_pv,
            eta_in: park.converter.efficiency_ac_to_dc,
            eta_out: park.converter.efficiency_dc_to_ac,
            soc_min_pct: b.map_or(0.0, |b| b.soc_min * 100.0),
            soc_max_pct: b.map_or(100.0, |b| b.soc_max * 100.0),
            reverse_flow_margin_kw: park.grid.export_rules.reverse_flow_margin.0.max(0.0),
            battery_charge_kw: park.batteries.iter().map(|b| b.max_charge.0).sum(),
            battery_discharge_kw: park.batteries.iter().map(|b| b.max_discharge.0).sum(),
            export_floor_kw: 0.0,
        }
    }

    /// AC grid power (+import) for a bus deficit (+ = the bus needs power).
    fn grid_for(&self, deficit_kw: f64) -> f64 {
        if deficit_kw >= 0.0 {
            deficit_kw / self.eta_in
        } else {
            deficit_kw * self.eta_out
        }
    }

    /// Bus deficit for an AC grid power.
    fn deficit_for(&self, grid_kw: f64) -> f64 {
        if grid_kw >= 0.0 {
            grid_kw * self.eta_in
        } else {
            grid_kw / self.eta_out
        }
    }
}

/// The battery range now: BMS limits, park limits, SoC window (no discharge at or below the
/// minimum, no charge at or above the maximum).
fn battery_range(l: &Limits, b: Option<BatteryNow>) -> (f64, f64) {
    let Some(b) = b else { return (0.0, 0.0) };
    let mut lo = -b.max_charge_kw.min(l.battery_charge_kw).max(0.0);
    let mut hi = b.max_discharge_kw.min(l.battery_discharge_kw).max(0.0);
    if b.soc_pct <= l.soc_min_pct {
        hi = 0.0;
    }
    if b.soc_pct >= l.soc_max_pct {
        lo = 0.0;
    }
    (lo, hi)
}

/// A charger as [`control`] works on it.
struct Charge {
    id: String,
    /// Its setpoint.
    kw: f64,
    /// Its minimum while charging.
    min_kw: f64,
    /// What the peak guard leaves it at least (its session's need by departure).
    floor_kw: f64,
    /// What it draws now (infinite: what it is told).
    drawing_kw: f64,
}

impl Charge {
    /// What it will draw: its setpoint, no more than it draws now.
    fn draws(&self) -> f64 {
        self.kw.min(self.drawing_kw)
    }
}

/// One control cycle.
pub fn control(l: &Limits, s: &Snapshot, plan: Option<&PlanTarget>, mode: &Mode) -> Setpoints {
    let mut notes = Vec::new();
    let mut alarms = Vec::new();
    let (bat_lo, bat_hi) = battery_range(l, s.battery);
    if s.battery.is_none() {
        notes.push("battery not answering: held at 0 kW".into());
    }
    // EV wishes: the plan's power per charger in automatic mode, else what the car wants.
    let mut chargers: Vec<Charge> = s
        .chargers
        .iter()
        .map(|c| {
            let must = c.must_kw.clamp(0.0, c.max_kw.max(0.0));
            let want = match (mode, plan) {
                (Mode::Safe, _) => c.min_kw,
                // A plan made before the car came (or on a forecast of it) may give less than
                // the session needs to finish by its departure: never less than that.
                (Mode::Automatic, Some(p)) => p
                    .ev_kw
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map_or(c.wanted_kw, |(_, kw)| *kw)
                    .max(must),
                _ => c.wanted_kw,
            };
            // The floor the guard keeps: the charger's minimum while it charges, and what the
            // session must get now (not in safe mode).
            let floor = if *mode == Mode::Safe { 0.0 } else { must };
            Charge {
                id: c.id.clone(),
                kw: want.clamp(0.0, c.max_kw),
                min_kw: c.min_kw.min(c.max_kw),
                floor_kw: floor,
                drawing_kw: c.drawing_kw.map_or(f64::INFINITY, |d| d.max(0.0)),
            }
        })
        .collect();
    // What the chargers will draw: their setpoints, no more than each draws now.
    let ev = |ch: &[Charge]| ch.iter().map(Charge::draws).sum::<f64>();
    // Deferrable loads: the plan's power in automatic and manual mode, their maximum (the
    // safe value: keep cooling) in safe mode; the bus balance counts what they are told, no
    // more than they draw (`told`).
    let mut loads: Vec<(String, f64)> = s
        .loads
        .iter()
        .filter_map(|x| {
            let want = match (mode, plan) {
                (Mode::Safe, _) => Some(x.max_kw),
                (_, Some(p)) => p
                    .loads_kw
                    .iter()
                    .find(|(id, _)| *id == x.id)
                    .map(|(_, kw)| *kw),
                _ => None,
            }?;
            Some((x.id.clone(), want.clamp(0.0, x.max_kw.max(0.0))))
        })
        .collect();
    // A load told more than it draws now is counted at what it draws: one that does not
    // follow (its energy done, its own controls) would otherwise be covered by the battery
    // and that power fed to the grid; one told less is counted at its setpoint, unless it has
    // not been following (then at what it draws: counted at a setpoint it ignores, the grid
    // takes what the battery was not told to cover, above any import cap).
    let told = |loads: &[(String, f64)]| {
        s.load_kw
            + loads
                .iter()
                .filter_map(|(id, kw)| {
                    s.loads
                        .iter()
                        .find(|x| x.id == *id)
                        .filter(|x| x.follows)
                        .map(|x| kw.min(x.kw.max(0.0)) - x.kw)
                })
                .sum::<f64>()
    };
    let mut load_kw = told(&loads);
    let mut pv = s.pv_available_kw.max(0.0);
    let demand = load_kw.max(0.0) + ev(&chargers);
    // The battery's wish.
    let mut battery = match (mode, plan) {
        (Mode::Safe, _) => 0.0,
        (Mode::Manual { battery_kw }, _) => *battery_kw,
        // Follow the plan's grid exchange: the battery makes up the difference.
        (Mode::Automatic, Some(p)) => {
            demand - pv - l.deficit_for(p.grid_import_kw - p.grid_export_kw)
        }
        // Self-consumption: take the surplus, cover the deficit.
        (Mode::Automatic, None) => demand - pv,
    };
    if !battery.is_finite() {
        alarms.push("battery setpoint not a number: held at 0 kW".into());
        battery = 0.0;
    }
    let wished = battery;
    battery = battery.clamp(bat_lo, bat_hi);
    if (battery - wished).abs() > 1e-6 && *mode != Mode::Safe {
        notes.push(format!(
            "battery {wished:.1} kW limited to {battery:.1} kW (BMS, park or SoC window)"
        ));
    }
    // The peak guard (automatic mode): import no more than the month's peak so far allows in
    // this demand window, or the plan's import where the plan chose to raise the peak.
    let guard = match (mode, s.import_guard_kw) {
        (Mode::Automatic, Some(g)) => Some(g.max(plan.map_or(0.0, |p| p.grid_import_kw))),
        _ => None,
    };
    let cap = guard.map_or(l.import_kw, |g| g.min(l.import_kw));
    let mut shed = 0.0;
    // Following the plan's import where the loads turn out lower would charge the battery
    // from the grid beyond the plan; above the month's peak that buys a new peak for a
    // forecast error: charge only what the plan charges there.
    if let (Some(level), Some(p), Mode::Automatic) = (s.import_guard_kw, plan, mode) {
        let extra_charge = (-battery - p.battery_charge_kw.max(0.0)).max(0.0);
        let grid_now = l.grid_for(load_kw.max(0.0) + ev(&chargers) - pv - battery);
        let above = l.deficit_for(grid_now) - l.deficit_for(level.min(cap));
        let less = extra_charge.min(above).max(0.0);
        if less > 1e-9 {
            battery += less;
            notes.push(format!(
                "battery charges {less:.1} kW less than following the plan's import would: no new month peak for a forecast error"
            ));
        }
    }
    // Import held under the cap: more from the battery first (if it can), then shed
    // curtailable demand and lower deferrable loads (guard only), then less EV (never below a
    // charger's minimum while charging, largest first).
    let mut deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
    let mut grid = l.grid_for(deficit);
    if grid > cap + 1e-9 {
        let why = if cap < l.import_kw {
            format!("the month's peak ({cap:.0} kW)")
        } else {
            format!("the import limit ({:.0} kW)", l.import_kw)
        };
        let over = |deficit: f64| deficit - l.deficit_for(cap);
        let room = bat_hi - battery;
        let extra = room.min(over(deficit)).max(0.0);
        if extra > 0.0 && *mode != Mode::Safe {
            battery += extra;
            notes.push(format!("battery +{extra:.1} kW to keep import under {why}"));
        }
        if guard.is_some() {
            deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
            let x = over(deficit).min(s.curtailable_kw.max(0.0)).max(0.0);
            if x > 1e-9 {
                shed = x;
                load_kw -= x;
                notes.push(format!(
                    "{x:.1} kW of curtailable load shed to keep import under {why}"
                ));
            }
            for k in 0..loads.len() {
                deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
                let cut = over(deficit).min(loads[k].1).max(0.0);
                if cut > 1e-9 {
                    loads[k].1 -= cut;
                    load_kw = told(&loads) - shed;
                    notes.push(format!(
                        "{} lowered by {cut:.1} kW to keep import under {why}",
                        loads[k].0
                    ));
                }
            }
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        let mut over_bus = over(deficit);
        chargers.sort_by(|a, b| b.draws().total_cmp(&a.draws()));
        // First down to what each session must get to finish by its departure; below that
        // only for the hard import limit, never for the month's peak.
        let hard_over = |deficit: f64| deficit - l.deficit_for(l.import_kw);
        for keep_deadlines in [true, false] {
            if !keep_deadlines {
                let deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
                over_bus = hard_over(deficit);
            }
            for c in chargers.iter_mut() {
                if over_bus <= 1e-9 {
                    break;
                }
                // From what it draws (a setpoint above that lowers nothing).
                let draws = c.draws();
                let mut floor = if draws > 0.0 { c.min_kw } else { 0.0 };
                if keep_deadlines {
                    floor = floor.max(c.floor_kw.min(draws));
                }
                let cut = (draws - floor).min(over_bus).max(0.0);
                if cut > 0.0 {
                    c.kw = draws - cut;
                    over_bus -= cut;
                    let why = if keep_deadlines {
                        why.clone()
                    } else {
                        format!(
                            "the import limit ({:.0} kW), short of what the session needs by its departure",
                            l.import_kw
                        )
                    };
                    notes.push(format!(
                        "{} lowered by {cut:.1} kW (to keep import under {why})",
                        c.id
                    ));
                }
            }
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        grid = l.grid_for(deficit);
        if grid > l.import_kw + 1e-6 {
            alarms.push(format!("import {grid:.1} kW above the {:.0} kW limit: loads exceed what PV, battery and the limit can supply", l.import_kw));
        } else if grid > cap + 1e-6 {
            alarms.push(format!(
                "import {grid:.1} kW sets a new month peak above {cap:.0} kW: battery, flexible loads and chargers are at their limits (chargers at what their sessions need by departure)"
            ));
        }
    }
    // Export rules: the allowed export now.
    let mut max_export = if l.allow_export { l.export_kw } else { 0.0 };
    if l.export_only_from_pv {
        max_export = max_export.min(pv * l.eta_out);
    }
    let margin = l.reverse_flow_margin_kw.max(0.0);
    // The grid's export floor, within the export rules and the reverse-flow margin: more from
    // the battery, then lower deferrable loads, then less EV (each charging car at its minimum
    // and what its session needs by its departure at least).
    if l.export_floor_kw > 0.0 && *mode != Mode::Safe {
        let floor = l.export_floor_kw.min(max_export - margin).max(0.0);
        let short = |deficit: f64| deficit - l.deficit_for(-floor);
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        let extra = (bat_hi - battery).min(short(deficit)).max(0.0);
        if extra > 1e-9 {
            battery += extra;
            notes.push(format!(
                "battery +{extra:.1} kW to export at least {floor:.1} kW (the grid's request)"
            ));
        }
        for k in 0..loads.len() {
            deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
            let cut = short(deficit).min(loads[k].1).max(0.0);
            if cut > 1e-9 {
                loads[k].1 -= cut;
                load_kw = told(&loads) - shed;
                notes.push(format!(
                    "{} lowered by {cut:.1} kW to export at least {floor:.1} kW (the grid's request)",
                    loads[k].0
                ));
            }
        }
        chargers.sort_by(|a, b| b.draws().total_cmp(&a.draws()));
        for k in 0..chargers.len() {
            deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
            let need = short(deficit);
            if need <= 1e-9 {
                break;
            }
            let c = &mut chargers[k];
            let draws = c.draws();
            let lowest = if draws > 0.0 {
                c.min_kw.max(c.floor_kw.min(draws))
            } else {
                0.0
            };
            let cut = (draws - lowest).min(need).max(0.0);
            if cut > 1e-9 {
                c.kw = draws - cut;
                notes.push(format!(
                    "{} lowered by {cut:.1} kW to export at least {floor:.1} kW (the grid's request)",
                    c.id
                ));
            }
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        grid = l.grid_for(deficit);
        if -grid < floor - 1e-6 || floor < l.export_floor_kw - 1e-6 {
            alarms.push(format!(
                "export {:.1} kW short of the grid's floor of {:.0} kW: {}",
                (l.export_floor_kw + grid).max(0.0),
                l.export_floor_kw,
                if floor < l.export_floor_kw - 1e-6 {
                    format!(
                        "the export rules allow {:.1} kW now (PV, limits, the reverse-flow margin)",
                        floor
                    )
                } else {
                    "battery, flexible loads and chargers are at their limits".to_string()
                }
            ));
        }
    }
    if -grid > max_export + 1e-9 {
        // Charge the battery more, then curtail PV.
        let excess_bus = l.deficit_for(-max_export) - deficit; // > 0: bus surplus to absorb
        let room = battery - bat_lo;
        let extra = room.min(excess_bus).max(0.0);
        if extra > 0.0 && *mode != Mode::Safe {
            battery -= extra;
            notes.push(format!(
                "battery charges {extra:.1} kW more to keep export within {max_export:.0} kW"
            ));
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        let left = l.deficit_for(-max_export) - deficit;
        if left > 1e-9 {
            let cut = left.min(pv);
            pv -= cut;
            notes.push(format!("PV curtailed by {cut:.1} kW (export rules)"));
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        // Export-only-from-PV depends on the PV left: check again.
        grid = l.grid_for(deficit);
        if l.export_only_from_pv && -grid > pv * l.eta_out + 1e-6 {
            alarms.push(format!(
                "export {:.1} kW above the PV {:.1} kW: battery discharge reaches the grid",
                -grid, pv
            ));
        }
    }
    // The reverse-flow margin: where export is forbidden now, the battery does not discharge
    // (and, with no export allowed at all, PV is not let) so far that a load dropping on its
    // own before the next cycle reverses the flow.
    grid = l.grid_for(deficit);
    let bound = -max_export + margin;
    if margin > 0.0 && *mode != Mode::Safe && grid < bound - 1e-9 {
        let short = l.deficit_for(bound) - deficit; // bus power to take from the grid instead
                                                    // Only the battery's discharge where PV may be exported: a PV surplus feeds the grid
                                                    // anyway when a load drops.
        let room = if l.allow_export {
            battery.max(0.0)
        } else {
            battery - bat_lo
        };
        let less = room.min(short).max(0.0);
        if less > 1e-9 {
            battery -= less;
            notes.push(format!(
                "battery {less:.1} kW less to keep the {margin:.0} kW reverse-flow margin"
            ));
        }
        deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
        if !l.allow_export {
            let left = l.deficit_for(bound) - deficit;
            if left > 1e-9 {
                let cut = left.min(pv);
                pv -= cut;
                notes.push(format!(
                    "PV curtailed by {cut:.1} kW to keep the {margin:.0} kW reverse-flow margin"
                ));
                deficit = load_kw.max(0.0) + ev(&chargers) - pv - battery;
            }
        }
    }
    grid = l.grid_for(deficit);
    chargers.sort_by(|a, b| a.id.cmp(&b.id));
    Setpoints {
        battery_kw: battery,
        chargers: chargers.into_iter().map(|c| (c.id, c.kw)).collect(),
        loads,
        pv_kw: pv,
        shed_kw: shed,
        grid_kw: grid,
        notes,
        alarms,
    }
}
