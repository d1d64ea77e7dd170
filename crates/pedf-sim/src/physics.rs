//! The park's physics, one step at a time (1 s to an interval): battery with efficiencies,
//! power limits and BMS taper near the SoC limits; flexible loads that obey setpoints inside
//! their comfort limits; EV cars on chargers; the converter's losses; the grid meter from the
//! balance at the DC bus.
//!
//! Balance at the bus each step: `pv_used + discharge + grid_to_bus = load + ev + charge`,
//! with `grid_to_bus = import * eta_in` when importing and `-export / eta_out` when exporting.

use pedf_core::assets::Flexibility;
use pedf_core::Park;

/// BMS taper: full power until this fraction of capacity from a SoC limit, then linear to zero
/// at the limit (typical LFP constant-voltage phase; [U] the band is an assumption).
pub const TAPER_BAND: f64 = 0.05;

/// The park's batteries as one (the controller commands their sum).
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryModel {
    /// Usable capacity, kWh.
    pub capacity_kwh: f64,
    /// Lowest stored energy allowed, kWh.
    pub lo_kwh: f64,
    /// Highest stored energy allowed, kWh.
    pub hi_kwh: f64,
    /// Rated charge power, kW.
    pub max_charge_kw: f64,
    /// Rated discharge power, kW.
    pub max_discharge_kw: f64,
    /// Charge efficiency, 0..1.
    pub eta_charge: f64,
    /// Discharge efficiency, 0..1.
    pub eta_discharge: f64,
    /// Energy stored now, kWh.
    pub stored_kwh: f64,
}

impl BatteryModel {
    /// The park's batteries aggregated; `None` without batteries.
    pub fn of(park: &Park) -> Option<BatteryModel> {
        let b = park.batteries.first()?;
        let sum = |f: &dyn Fn(&pedf_core::assets::Battery) -> f64| {
            park.batteries.iter().map(f).sum::<f64>()
        };
        Some(BatteryModel {
            capacity_kwh: sum(&|b| b.capacity.0),
            lo_kwh: sum(&|b| b.capacity.0 * b.soc_min),
            hi_kwh: sum(&|b| b.capacity.0 * b.soc_max),
            max_charge_kw: sum(&|b| b.max_charge.0),
            max_discharge_kw: sum(&|b| b.max_discharge.0),
            eta_charge: b.charge_efficiency,
            eta_discharge: b.discharge_efficiency,
            stored_kwh: sum(&|b| b.capacity.0 * b.initial_soc),
        })
    }

    /// Stored energy as % of capacity.
    pub fn soc_pct(&self) -> f64 {
        100.0 * self.stored_kwh / self.capacity_kwh
    }

    /// What the BMS allows now for a step of `dt_h` hours (magnitudes, kW): the taper near
    /// the limits, and no more energy than fits or is left within the window.
    pub fn limits(&self, dt_h: f64) -> (f64, f64) {
        let band = TAPER_BAND * self.capacity_kwh;
        let taper = |room: f64| (room / band).clamp(0.0, 1.0);
        let room_up = self.hi_kwh - self.stored_kwh;
        let room_down = self.stored_kwh - self.lo_kwh;
        let ch = (self.max_charge_kw * taper(room_up))
            .min((room_up / (self.eta_charge * dt_h)).max(0.0));
        let dis = (self.max_discharge_kw * taper(room_down))
            .min((room_down * self.eta_discharge / dt_h).max(0.0));
        (ch.max(0.0), dis.max(0.0))
    }

    /// Runs the battery at `kw` (+discharge/-charge, bus side) for `dt_h` hours, within its
    /// limits; returns the power it actually gave.
    pub fn apply(&mut self, kw: f64, dt_h: f64) -> f64 {
        let (ch, dis) = self.limits(dt_h);
        let p = if kw.is_finite() {
            kw.clamp(-ch, dis)
        } else {
            0.0
        };
        if p >= 0.0 {
            self.stored_kwh -= p * dt_h / self.eta_discharge;
        } else {
            self.stored_kwh += -p * dt_h * self.eta_charge;
        }
        // Rounding only: the limits keep the energy inside the window.
        self.stored_kwh = self.stored_kwh.clamp(
            self.lo_kwh.min(self.stored_kwh),
            self.hi_kwh.max(self.stored_kwh),
        );
        p
    }
}

/// A deferrable load (cold storage, water heating): needs its daily energy inside its window;
/// obeys the setpoint unless the energy still needed can no longer be delivered at full power
/// in the window left (its comfort limit: the cold room would warm), then it runs as needed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferrableModel {
    /// The park's flexible-load id.
    pub id: String,
    /// Its lowest power when running, kW.
    pub min_kw: f64,
    /// Its highest power, kW.
    pub max_kw: f64,
    /// The energy it needs in its window, kWh.
    pub energy_kwh: f64,
    /// Window in minutes of the local day.
    pub window: (u32, u32),
    /// Delivered so far in the window, kWh.
    pub delivered_kwh: f64,
}

impl DeferrableModel {
    /// The park's deferrable loads.
    pub fn of(park: &Park) -> Vec<DeferrableModel> {
        park.flexible_loads
            .iter()
            .filter_map(|l| match &l.flexibility {
                Flexibility::Deferrable {
                    energy,
                    window_start,
                    window_end,
                } => Some(DeferrableModel {
                    id: l.id.clone(),
                    min_kw: l.min_power.0,
                    max_kw: l.max_power.0,
                    energy_kwh: energy.0,
                    window: (window_start.minutes(), window_end.minutes()),
                    delivered_kwh: 0.0,
                }),
                _ => None,
            })
            .collect()
    }

    /// Starts a new local day.
    pub fn new_day(&mut self) {
        self.delivered_kwh = 0.0;
    }

    /// The flat schedule without any control: the day's energy spread over the window.
    pub fn flat_kw(&self) -> f64 {
        let hours = f64::from(self.window.1.saturating_sub(self.window.0)) / 60.0;
        if hours <= 0.0 {
            return 0.0;
        }
        (self.energy_kwh / hours).clamp(self.min_kw, self.max_kw)
    }

    /// Runs for `dt_h` hours from local minute `now_min` at the wished power; returns the power.
    pub fn run(&mut self, wish_kw: f64, now_min: f64, dt_h: f64) -> f64 {
        let (ws, we) = (f64::from(self.window.0), f64::from(self.window.1));
        if now_min < ws || now_min >= we {
            return 0.0;
        }
        let left = (self.energy_kwh - self.delivered_kwh).max(0.0);
        // At least what full power after the next minute (or this step, when longer) could no
        // longer catch up. Over a step of a second, reckoning on the step alone ran the load at
        // full power one step and at nothing the next on the line where it falls behind (a
        // cold store switching 150 kW on and off every second); over a minute it settles at
        // full power there, as a load that must catch up does.
        let rest_h = (we - now_min) / 60.0;
        let span_h = dt_h.max((1.0 / 60.0f64).min(rest_h));
        let after_h = (rest_h - span_h).max(0.0);
        let must = ((left - self.max_kw * after_h) / span_h).max(0.0);
        let mut p = wish_kw.max(must).min(self.max_kw).min(left / dt_h);
        if p > 1e-9 && p < self.min_kw {
            p = if left / dt_h >= self.min_kw {
                self.min_kw
            } else {
                0.0
            };
        }
        let p = p.max(0.0);
        self.delivered_kwh += p * dt_h;
        p
    }
}

/// A car on a charger.
#[derive(Debug, Clone, PartialEq)]
pub struct Car {
    /// Index of the session in the world.
    pub session: usize,
    /// Energy the car asks for, kWh.
    pub need_kwh: f64,
    /// Energy it got so far, kWh.
    pub got_kwh: f64,
    /// The last interval (index in the period) the car is present for in full.
    pub last: usize,
    /// What its charger could give it over its stay at full power, kWh: a session asking
    /// more leaves short whatever the EMS does.
    pub deliverable_kwh: f64,
}

/// The converter between the AC grid and the DC bus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Converter {
    /// Efficiency AC to DC (import), 0..1.
    pub eta_in: f64,
    /// Efficiency DC to AC (export), 0..1.
    pub eta_out: f64,
}

impl Converter {
    /// AC grid power (+import) for a bus deficit (+ = the bus needs power).
    pub fn grid_for(&self, deficit_kw: f64) -> f64 {
        if deficit_kw >= 0.0 {
            deficit_kw / self.eta_in
        } else {
            deficit_kw * self.eta_out
        }
    }

    /// Losses in the converter for an AC grid power, kW.
    pub fn losses(&self, grid_kw: f64) -> f64 {
        if grid_kw >= 0.0 {
            grid_kw * (1.0 - self.eta_in)
        } else {
            -grid_kw * (1.0 / self.eta_out - 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bat() -> BatteryModel {
        BatteryModel {
            capacity_kwh: 2000.0,
            lo_kwh: 200.0,
            hi_kwh: 1900.0,
            max_charge_kw: 1000.0,
            max_discharge_kw: 1000.0,
            eta_charge: 0.96,
            eta_discharge: 0.96,
            stored_kwh: 1000.0,
        }
    }

    #[test]
    fn battery_keeps_its_efficiencies_and_window() {
        let mut b = bat();
        assert_eq!(b.apply(-400.0, 0.25), -400.0);
        assert!((b.stored_kwh - (1000.0 + 100.0 * 0.96)).abs() < 1e-9);
        assert_eq!(b.apply(480.0, 0.25), 480.0);
        assert!((b.stored_kwh - (1096.0 - 120.0 / 0.96)).abs() < 1e-9);
        // Near the top the BMS tapers: 50 kWh below the 1900 kWh limit is half the 100 kWh band.
        b.stored_kwh = 1850.0;
        let (ch, _) = b.limits(1.0 / 3600.0);
        assert!((ch - 500.0).abs() < 1e-9, "{ch}");
        // A long step cannot overfill: 0.5 h at full power would; the energy limit holds.
        let p = b.apply(-1000.0, 0.5);
        assert!(b.stored_kwh <= 1900.0 + 1e-9);
        assert!((-p * 0.5 * 0.96 - 50.0).abs() < 1e-9, "{p}");
        // Empty side.
        b.stored_kwh = 200.0;
        assert_eq!(b.apply(500.0, 0.25), 0.0);
    }

    #[test]
    fn deferrable_load_catches_up_when_it_must() {
        let mut d = DeferrableModel {
            id: "cold".into(),
            min_kw: 30.0,
            max_kw: 150.0,
            energy_kwh: 1200.0,
            window: (0, 1440),
            delivered_kwh: 0.0,
        };
        // Told to stay off all day: off while it can still catch up, then on at what it needs.
        let mut total = 0.0;
        for k in 0..96 {
            total += d.run(0.0, f64::from(k * 15), 0.25) * 0.25;
        }
        assert!((total - 1200.0).abs() < 1e-6, "{total}");
        // A small wish below the minimum runs at the minimum.
        d.new_day();
        assert_eq!(d.run(10.0, 0.0, 0.25), 30.0);
        assert!((d.flat_kw() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_deferrable_load_that_must_catch_up_stays_on_over_second_steps() {
        // Told to stay off, stepped every second (the demo at --speed 60): once behind it runs
        // on, never switching on and off from one second to the next.
        let mut d = DeferrableModel {
            id: "cold".into(),
            min_kw: 30.0,
            max_kw: 150.0,
            energy_kwh: 1200.0,
            window: (0, 1440),
            delivered_kwh: 0.0,
        };
        let dt = 1.0 / 3600.0;
        let mut powers = Vec::new();
        let mut total = 0.0;
        for k in 0..(24 * 3600) {
            let p = d.run(0.0, f64::from(k) / 60.0, dt);
            total += p * dt;
            powers.push(p);
        }
        assert!((total - 1200.0).abs() < 0.2, "{total}");
        let first_on = powers.iter().position(|p| *p > 0.0).unwrap();
        let switches = powers[first_on..]
            .windows(2)
            .filter(|w| (w[0] > 0.0) != (w[1] > 0.0))
            .count();
        assert!(switches <= 1, "{switches} switches after it started");
    }
}
