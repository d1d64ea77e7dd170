//! What a park could change at its grid connection against its plan, interval by interval:
//! the flexibility it offers a fleet or the grid (issue 24). Two directions, both kW at the
//! connection and held for a whole hour from the interval's start:
//!
//! - `down_kw`: less import (or more export) than planned: the batteries discharge more (up to
//!   their power, and only as much as their energy above `soc_min` holds for an hour), stop the
//!   charging the plan has, deferrable loads go down to their least power and curtailable
//!   loads shed their share. Bounded by what the connection may take: the planned import,
//!   plus the export room where the park may export from its battery (never where export is
//!   forbidden or only PV may be exported).
//! - `up_kw`: more import (or less export) than planned: the batteries charge more (up to
//!   their power and the room below `soc_max` for an hour), stop the discharging the plan has,
//!   deferrable loads inside their window go up to their highest power. Bounded by the import
//!   limit and the converter's rating against the planned exchange.
//!
//! PV curtailment and EV charging are not offered (PV is the park's green energy; a car's
//! charge is owed to its driver). The batteries are one pool (their powers and energies
//! summed), efficiencies applied to energy.

use serde::{Deserialize, Serialize};

use crate::assets::Flexibility;
use crate::plan::{Plan, PlanInterval};
use crate::Park;

/// One interval's flexibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalFlexibility {
    /// The interval's start (the plan's, in the park's offset).
    pub start: chrono::DateTime<chrono::FixedOffset>,
    /// Less import than planned the park can hold for an hour, kW.
    pub down_kw: f64,
    /// More import than planned the park can hold for an hour, kW.
    pub up_kw: f64,
}

/// The park's limits the flexibility is computed with.
#[derive(Debug, Clone, PartialEq)]
pub struct FlexLimits {
    /// The batteries' charging power, summed, kW.
    pub charge_kw: f64,
    /// Their discharging power, summed, kW.
    pub discharge_kw: f64,
    /// Their energy at `soc_min`, summed, kWh.
    pub floor_kwh: f64,
    /// Their energy at `soc_max`, summed, kWh.
    pub ceiling_kwh: f64,
    /// Charging efficiency (energy stored per kWh drawn), the pool's.
    pub charge_eff: f64,
    /// Discharging efficiency (energy delivered per kWh taken), the pool's.
    pub discharge_eff: f64,
    /// The most the connection may import, kW.
    pub import_kw: f64,
    /// The most the battery may push to the grid (0 where export is forbidden or only PV may
    /// be exported), kW.
    pub battery_export_kw: f64,
    /// The flexible loads.
    pub loads: Vec<FlexLoad>,
}

/// A flexible load as the flexibility counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlexLoad {
    /// Its asset id (its power in the plan's `flexible_loads`).
    pub id: String,
    /// Its least power while running, kW.
    pub min_kw: f64,
    /// Its highest power, kW.
    pub max_kw: f64,
    /// The share it may shed (curtailable); none: deferrable.
    pub curtailable_share: Option<f64>,
    /// A deferrable load's window, local minutes of the day `[from, to)`.
    pub window: (u32, u32),
}

impl FlexLimits {
    /// A park's limits.
    pub fn of(park: &Park) -> FlexLimits {
        let b = &park.batteries;
        let sum = |f: &dyn Fn(&crate::assets::Battery) -> f64| b.iter().map(f).sum::<f64>();
        let cap = sum(&|x| x.capacity.value()).max(1e-9);
        let rules = &park.grid.export_rules;
        FlexLimits {
            charge_kw: sum(&|x| x.max_charge.value()),
            discharge_kw: sum(&|x| x.max_discharge.value()),
            floor_kwh: sum(&|x| x.soc_min * x.capacity.value()),
            ceiling_kwh: sum(&|x| x.soc_max * x.capacity.value()),
            charge_eff: if b.is_empty() {
                1.0
            } else {
                sum(&|x| x.charge_efficiency * x.capacity.value()) / cap
            },
            discharge_eff: if b.is_empty() {
                1.0
            } else {
                sum(&|x| x.discharge_efficiency * x.capacity.value()) / cap
            },
            import_kw: park
                .grid
                .import_limit
                .value()
                .min(park.converter.rating.value()),
            battery_export_kw: if rules.allow_export && !rules.export_only_from_pv {
                park.grid
                    .export_limit
                    .value()
                    .min(park.converter.rating.value())
            } else {
                0.0
            },
            loads: park
                .flexible_loads
                .iter()
                .map(|l| match &l.flexibility {
                    Flexibility::Deferrable {
                        window_start,
                        window_end,
                        ..
                    } => FlexLoad {
                        id: l.id.clone(),
                        min_kw: l.min_power.value(),
                        max_kw: l.max_power.value(),
                        curtailable_share: None,
                        window: (window_start.minutes(), window_end.minutes()),
                    },
                    Flexibility::Curtailable {
                        curtailable_share, ..
                    } => FlexLoad {
                        id: l.id.clone(),
                        min_kw: l.min_power.value(),
                        max_kw: l.max_power.value(),
                        curtailable_share: Some(*curtailable_share),
                        window: (0, 0),
                    },
                })
                .collect(),
        }
    }

    /// One interval's flexibility; `soc_start_kwh`: the pool's energy at its start.
    pub fn interval(&self, iv: &PlanInterval, soc_start_kwh: f64) -> IntervalFlexibility {
        use chrono::Timelike;
        let minute = iv.start.hour() * 60 + iv.start.minute();
        let (c, d) = (
            iv.battery_charge_kw.max(0.0),
            iv.battery_discharge_kw.max(0.0),
        );
        // Energy above the floor delivered over an hour, and room below the ceiling drawn.
        let can_give = ((soc_start_kwh - self.floor_kwh).max(0.0) * self.discharge_eff).max(0.0);
        let can_take =
            ((self.ceiling_kwh - soc_start_kwh).max(0.0) / self.charge_eff.max(1e-9)).max(0.0);
        let bat_down = c + self.discharge_kw.min(can_give).max(d) - d;
        let bat_up = d + self.charge_kw.min(can_take).max(c) - c;
        let (mut load_down, mut load_up) = (0.0, 0.0);
        for l in &self.loads {
            let p = iv
                .flexible_loads
                .get(&l.id)
                .copied()
                .unwrap_or(0.0)
                .max(0.0);
            match l.curtailable_share {
                Some(s) => load_down += p * s.clamp(0.0, 1.0),
                None => {
                    load_down += (p - l.min_kw).max(0.0);
                    if minute >= l.window.0 && minute < l.window.1 {
                        load_up += (l.max_kw - p).max(0.0);
                    }
                }
            }
        }
        let (import, export) = (iv.grid_import_kw.max(0.0), iv.grid_export_kw.max(0.0));
        let down = (bat_down + load_down).min(import + (self.battery_export_kw - export).max(0.0));
        let up = (bat_up + load_up).min((self.import_kw - import).max(0.0) + export);
        IntervalFlexibility {
            start: iv.start,
            down_kw: down.max(0.0),
            up_kw: up.max(0.0),
        }
    }

    /// Every interval's flexibility in a plan (the pool's energy at each start from the
    /// plan's stored energy at the end of the one before; the first from the energy it stores
    /// in its first interval taken back).
    pub fn plan(&self, plan: &Plan) -> Vec<IntervalFlexibility> {
        let h = f64::from(plan.interval_minutes) / 60.0;
        let mut out = Vec::with_capacity(plan.intervals.len());
        let mut soc = plan.intervals.first().map(|iv| {
            iv.battery_soc_kwh
                - (iv.battery_charge_kw * self.charge_eff
                    - iv.battery_discharge_kw / self.discharge_eff.max(1e-9))
                    * h
        });
        for iv in &plan.intervals {
            out.push(self.interval(iv, soc.unwrap_or(iv.battery_soc_kwh)));
            soc = Some(iv.battery_soc_kwh);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn interval(import: f64, export: f64, ch: f64, dis: f64, hvac: f64) -> PlanInterval {
        PlanInterval {
            start: chrono::DateTime::parse_from_rfc3339("2026-06-21T14:00:00+08:00").unwrap(),
            import_price_cny_per_kwh: 1.0,
            export_price_cny_per_kwh: 0.3,
            carbon_intensity_kg_per_kwh: 0.57,
            grid_import_kw: import,
            grid_export_kw: export,
            pv_available_kw: 0.0,
            pv_used_kw: 0.0,
            battery_charge_kw: ch,
            battery_discharge_kw: dis,
            battery_soc_kwh: 0.0,
            fixed_load_kw: 0.0,
            flexible_load_kw: hvac,
            load_shed_kw: 0.0,
            load_unserved_kw: 0.0,
            ev_kw: 0.0,
            ev_chargers: BTreeMap::new(),
            batteries_soc_kwh: BTreeMap::new(),
            flexible_loads: [("hvac".to_string(), hvac)].into_iter().collect(),
        }
    }

    fn limits() -> FlexLimits {
        FlexLimits {
            charge_kw: 500.0,
            discharge_kw: 500.0,
            floor_kwh: 200.0,
            ceiling_kwh: 1900.0,
            charge_eff: 0.95,
            discharge_eff: 0.95,
            import_kw: 1500.0,
            battery_export_kw: 0.0,
            loads: vec![FlexLoad {
                id: "hvac".into(),
                min_kw: 20.0,
                max_kw: 120.0,
                curtailable_share: None,
                window: (13 * 60, 17 * 60),
            }],
        }
    }

    #[test]
    fn a_battery_with_energy_and_room_offers_its_power_both_ways_within_the_connection() {
        // Importing 400 kW, charging 100 kW, HVAC at 60 kW (window 13:00-17:00), 1000 kWh.
        let f = limits().interval(&interval(400.0, 0.0, 100.0, 0.0, 60.0), 1000.0);
        // Down: stop charging (100) + discharge 500 + HVAC to 20 (40) = 640, but export is
        // forbidden: at most the 400 kW import.
        assert_eq!(f.down_kw, 400.0);
        // Up: charge 400 more + HVAC to 120 (60) = 460, within the import room (1100).
        assert_eq!(f.up_kw, 460.0);
    }

    #[test]
    fn an_empty_battery_offers_what_its_energy_holds_for_an_hour() {
        // 250 kWh: 50 kWh above the floor, 47.5 kWh delivered over the hour.
        let f = limits().interval(&interval(400.0, 0.0, 0.0, 0.0, 20.0), 250.0);
        assert!((f.down_kw - 47.5).abs() < 1e-9, "{f:?}");
        // Outside the HVAC's window nothing of it goes up.
        let mut iv = interval(1450.0, 0.0, 0.0, 0.0, 20.0);
        iv.start = chrono::DateTime::parse_from_rfc3339("2026-06-21T20:00:00+08:00").unwrap();
        let f = limits().interval(&iv, 250.0);
        // Up: 500 kW of charging, but only 50 kW of import room.
        assert_eq!(f.up_kw, 50.0);
    }
}
