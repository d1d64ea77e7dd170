//! Curtailable DC loads (lighting, HVAC on the DC bus): the demand each would draw if not
//! held, the plan's shed shared over them, and the caps written to them.
//!
//! A capped load draws its cap, so its demand is not measured while it is held: a load
//! drawing at (or within 0.5 kW of) its cap keeps the demand it had before (or the cap, if
//! higher); one drawing below its cap shows its demand. The plan's shed is shared over the
//! loads by demand, never above a load's sheddable share; the controller's peak-guard shed
//! over the room each has left. A cap is written when it changes by more than 0.5 kW, and
//! once, to the load's maximum, to lift it.

use std::collections::BTreeMap;

/// One curtailable load this cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct CurtailableLoad {
    /// The device id.
    pub id: String,
    /// What it draws now, kW; `None` when it has no good reading.
    pub measured_kw: Option<f64>,
    /// The share of its demand that may be shed, 0..1.
    pub share: f64,
    /// Its highest power (the value that lifts a cap), kW.
    pub max_kw: f64,
}

/// What curtailment remembers from one cycle to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curtailment {
    /// Each load's demand when not held, kW.
    free_kw: BTreeMap<String, f64>,
    /// The cap written last (none: unrestricted), kW.
    caps: BTreeMap<String, f64>,
}

/// One load's part this cycle.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    id: String,
    free_kw: f64,
    share: f64,
    planned_kw: f64,
    max_kw: f64,
}

impl Part {
    /// What may still be shed after the plan's part, kW.
    fn room_kw(&self) -> f64 {
        (self.share * self.free_kw - self.planned_kw).max(0.0)
    }
}

/// The loads' demand and the plan's shed over them, before the controller runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    parts: Vec<Part>,
    /// Demand the caps hold back now (free demand less what is drawn), kW: the controller
    /// sees the park's load without last cycle's caps.
    pub held_kw: f64,
    /// The plan's shed as shared over the loads, kW.
    pub planned_kw: f64,
    /// What the peak guard may still shed on top of the plan, kW.
    pub room_kw: f64,
}

/// A cap to write to a load.
#[derive(Debug, Clone, PartialEq)]
pub enum CapChange {
    /// The load is held at `cap_kw`, shedding `shed_kw` of its demand.
    Capped {
        /// The device id.
        id: String,
        /// The cap, kW.
        cap_kw: f64,
        /// Its demand less the cap, kW.
        shed_kw: f64,
        /// Whether the peak guard sheds part of it (else the plan alone).
        by_guard: bool,
        /// Whether the load was unrestricted before.
        first: bool,
    },
    /// Nothing is shed any more: the cap goes back to the load's maximum.
    Lifted {
        /// The device id.
        id: String,
        /// The load's maximum, kW.
        max_kw: f64,
    },
}

impl CapChange {
    /// The device and the value to write.
    pub fn write(&self) -> (&str, f64) {
        match self {
            CapChange::Capped { id, cap_kw, .. } => (id, *cap_kw),
            CapChange::Lifted { id, max_kw } => (id, *max_kw),
        }
    }
}

impl Curtailment {
    /// The loads' demand when not held and the plan's shed (`plan_shed_kw`, 0 outside
    /// automatic mode) shared over them by demand, each at most its sheddable share.
    pub fn share(&mut self, loads: &[CurtailableLoad], plan_shed_kw: f64) -> Shares {
        let mut parts = Vec::new();
        let mut held_kw = 0.0;
        for l in loads {
            if let Some(m) = l.measured_kw {
                let free = match self.caps.get(&l.id) {
                    // Drawing at its cap: its demand is what it was, or the cap if higher.
                    Some(cap) if m >= cap - 0.5 => {
                        self.free_kw.get(&l.id).copied().unwrap_or(m).max(*cap)
                    }
                    // Drawing below its cap (or not capped): that is its demand.
                    _ => m,
                };
                self.free_kw.insert(l.id.clone(), free);
                held_kw += (free - m).max(0.0);
            }
            if let Some(&free) = self.free_kw.get(&l.id) {
                parts.push(Part {
                    id: l.id.clone(),
                    free_kw: free,
                    share: l.share,
                    planned_kw: 0.0,
                    max_kw: l.max_kw,
                });
            }
        }
        let total_free: f64 = parts.iter().map(|p| p.free_kw).sum();
        for p in &mut parts {
            p.planned_kw = (plan_shed_kw.max(0.0) * p.free_kw / total_free.max(1e-9))
                .min(p.share * p.free_kw)
                .max(0.0);
        }
        Shares {
            held_kw,
            planned_kw: parts.iter().map(|p| p.planned_kw).sum(),
            room_kw: parts.iter().map(Part::room_kw).sum::<f64>().max(0.0),
            parts,
        }
    }

    /// The caps after the controller asked the guard to shed `guard_shed_kw`, shared by the
    /// room each load has: only those that change (or are lifted) are returned.
    pub fn caps(&mut self, shares: &Shares, guard_shed_kw: f64) -> Vec<CapChange> {
        let mut guard_left = guard_shed_kw.max(0.0);
        let room_total: f64 = shares.parts.iter().map(Part::room_kw).sum();
        let mut changes = Vec::new();
        for p in &shares.parts {
            let room = p.room_kw();
            let g = (guard_shed_kw.max(0.0) * room / room_total.max(1e-9))
                .min(room)
                .min(guard_left);
            guard_left -= g;
            let shed = p.planned_kw + g;
            if shed > 0.01 {
                let cap = (p.free_kw - shed).max(0.0);
                let old = self.caps.get(&p.id).copied();
                if old.is_none_or(|old| (old - cap).abs() > 0.5) {
                    self.caps.insert(p.id.clone(), cap);
                    changes.push(CapChange::Capped {
                        id: p.id.clone(),
                        cap_kw: cap,
                        shed_kw: shed,
                        by_guard: g > 0.01,
                        first: old.is_none(),
                    });
                }
            } else if self.caps.remove(&p.id).is_some() {
                changes.push(CapChange::Lifted {
                    id: p.id.clone(),
                    max_kw: p.max_kw,
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(id: &str, kw: f64) -> CurtailableLoad {
        CurtailableLoad {
            id: id.into(),
            measured_kw: Some(kw),
            share: 0.3,
            max_kw: 100.0,
        }
    }

    #[test]
    fn the_plans_shed_is_shared_by_demand_within_each_loads_share() {
        let mut c = Curtailment::default();
        let s = c.share(&[load("hvac", 60.0), load("light", 20.0)], 20.0);
        // 20 kW by demand: 15 and 5, within 30 % (18 and 6).
        assert!((s.planned_kw - 20.0).abs() < 1e-9);
        assert!((s.room_kw - (18.0 - 15.0 + 6.0 - 5.0)).abs() < 1e-9);
        let caps = c.caps(&s, 0.0);
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[0].write(), ("hvac", 45.0));
        assert_eq!(caps[1].write(), ("light", 15.0));
        // More than the shares allow: each at its share.
        let mut c = Curtailment::default();
        let s = c.share(&[load("hvac", 60.0), load("light", 20.0)], 50.0);
        assert!((s.planned_kw - 24.0).abs() < 1e-9);
    }

    #[test]
    fn a_load_held_at_its_cap_keeps_its_demand_and_the_cap_is_lifted_once() {
        let mut c = Curtailment::default();
        let s = c.share(&[load("hvac", 60.0)], 0.0);
        let caps = c.caps(&s, 10.0);
        assert!(matches!(
            &caps[..],
            [CapChange::Capped { cap_kw, by_guard: true, first: true, .. }] if (*cap_kw - 50.0).abs() < 1e-9
        ));
        // Held at 50 kW: its demand is still 60 kW, 10 kW held back.
        let s = c.share(&[load("hvac", 50.0)], 0.0);
        assert!((s.held_kw - 10.0).abs() < 1e-9);
        assert!(
            c.caps(&s, 10.0).is_empty(),
            "the same cap is not written again"
        );
        // Nothing to shed: lifted to its maximum, once.
        let s = c.share(&[load("hvac", 50.0)], 0.0);
        assert_eq!(
            c.caps(&s, 0.0),
            vec![CapChange::Lifted {
                id: "hvac".into(),
                max_kw: 100.0
            }]
        );
        let s = c.share(&[load("hvac", 60.0)], 0.0);
        assert!(c.caps(&s, 0.0).is_empty());
        // Drawing below a cap: that is its demand.
        let s = c.share(&[load("hvac", 40.0)], 0.0);
        assert_eq!(s.held_kw, 0.0);
    }

    #[test]
    fn a_load_without_a_reading_keeps_its_last_demand() {
        let mut c = Curtailment::default();
        c.share(&[load("hvac", 60.0)], 0.0);
        let mut silent = load("hvac", 0.0);
        silent.measured_kw = None;
        let s = c.share(&[silent], 12.0);
        assert!((s.planned_kw - 12.0).abs() < 1e-9);
        assert_eq!(s.held_kw, 0.0);
    }
}
