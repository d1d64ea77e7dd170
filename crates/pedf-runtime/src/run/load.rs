//! The load the controller works with, derived from the grid meter: PV, batteries and grid
//! less EV. The devices are read at different instants, each on its own poll, so a reading of
//! the batteries and one of the meter may straddle a step of the batteries' own setpoint: the
//! meter's after it and the batteries' before it put the step, with its sign turned, into the
//! derived load, and the other way round the step itself. Answering such a load makes the
//! batteries answer their own steps: at `pedf demo --speed 60`, the load still at 683 kW, the
//! battery swung 483, 242, 479, 289, 691, 312 kW cycle after cycle, and at 691 kW the park
//! exported 10 kW with 2.5 kW of PV, against the export rules.
//!
//! So after each step of the batteries' setpoint the estimate is held until the step has been
//! taken: a battery reading taken after the step was decided shows the setpoint (or shows the
//! batteries have stopped moving short of it: a limit of their own), and then a meter reading
//! taken after that battery reading. Readings on either side of a step are never combined.
//! Between steps the derived load is taken by [`LOAD_GAIN`] of its change each cycle.

use chrono::{DateTime, Utc};

/// How much of the change in the derived load the controller takes in one cycle.
pub(super) const LOAD_GAIN: f64 = 0.5;

/// A change of the batteries' setpoint, or of their reading, that counts as a step, kW.
pub(super) const STEP_KW: f64 = 5.0;

/// The longest the estimate is held for one step, EMS time: a battery that answers neither
/// its setpoint nor stops moving does not freeze the load the controller sees.
const HOLD_MAX_S: i64 = 15;

/// A reading with its time.
pub(super) type Timed = (f64, DateTime<Utc>);

/// The load estimate and the step it waits for.
#[derive(Debug, Default)]
pub(super) struct LoadEstimate {
    /// The load the controller worked with last cycle, kW.
    kw: Option<f64>,
    /// The last step of the batteries' setpoint not yet taken: its setpoint and when the
    /// cycle decided it.
    step: Option<(f64, DateTime<Utc>)>,
    /// When a battery reading showed the last step taken: a meter reading must be newer.
    taken_at: Option<DateTime<Utc>>,
    /// The batteries' setpoint last decided, kW.
    set_kw: Option<f64>,
    /// The batteries' last reading seen.
    last_battery: Option<Timed>,
}

impl LoadEstimate {
    /// The load this cycle from the `derived` load of the readings, the batteries' reading
    /// (`battery`, the oldest of the batteries' times) and the meter's (`meter`) at `now`:
    /// the estimate held while a step of the batteries is being taken, else moved by
    /// [`LOAD_GAIN`] towards the derived load. None without a meter reading (forgotten).
    pub(super) fn update(
        &mut self,
        derived: Option<f64>,
        battery: Option<Timed>,
        meter: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<f64> {
        let (Some(derived), Some(meter_at)) = (derived, meter) else {
            self.kw = None;
            return None;
        };
        // No battery reading (a park without batteries, or theirs not answering, held at 0
        // kW): nothing to wait for.
        if battery.is_none() {
            self.step = None;
            self.taken_at = None;
        }
        // Has the step been taken? A battery reading after its decision at the setpoint, or
        // no longer moving (two readings after it, a second apart or more, alike).
        if let (Some((target, decided)), Some((b, b_at))) = (self.step, battery) {
            let at_setpoint = (b - target).abs() <= STEP_KW;
            let still = self.last_battery.is_some_and(|(prev, prev_at)| {
                prev_at > decided
                    && b_at > prev_at
                    && (b - prev).abs() <= STEP_KW
                    && (b_at - decided).num_milliseconds() >= 1000
            });
            if b_at > decided && (at_setpoint || still) {
                self.step = None;
                self.taken_at = Some(b_at);
            } else if (now - decided).num_seconds() >= HOLD_MAX_S {
                self.step = None;
                self.taken_at = None;
            }
        }
        if let Some((_, b_at)) = battery {
            if self.last_battery.is_none_or(|(_, t)| b_at > t) {
                self.last_battery = battery;
            }
        }
        if let Some(t) = self.taken_at {
            if meter_at > t {
                self.taken_at = None;
            }
        }
        let hold = self.step.is_some() || self.taken_at.is_some();
        let kw = match self.kw {
            Some(l) if l.is_finite() && hold => l,
            Some(l) if l.is_finite() => l + LOAD_GAIN * (derived - l),
            _ => derived,
        };
        self.kw = Some(kw);
        Some(kw)
    }

    /// The batteries' setpoint the cycle decided at `now`: a change of more than [`STEP_KW`]
    /// is a step the estimate waits for.
    pub(super) fn decided(&mut self, battery_kw: f64, now: DateTime<Utc>) {
        if !battery_kw.is_finite() {
            return;
        }
        if self
            .set_kw
            .is_none_or(|last| (battery_kw - last).abs() > STEP_KW)
        {
            self.step = Some((battery_kw, now));
            self.taken_at = None;
        }
        self.set_kw = Some(battery_kw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A park whose load stays at 683 kW while the controller holds the import at 175 kW; the
    /// battery follows its setpoint a tick after it is written (a cycle a tick), and the
    /// meter's reading is two ticks older than the battery's (a slower poll). Returns the
    /// battery's largest swing from what it should give (508 kW) over the cycles after the
    /// first five.
    fn swing(aligned: bool) -> f64 {
        let t0 = DateTime::<Utc>::from_timestamp(1_782_000_000, 0).unwrap();
        let s = |x: f64| t0 + chrono::Duration::milliseconds((x * 1000.0) as i64);
        let load = 683.0;
        let cap = 175.0;
        let mut est = LoadEstimate::default();
        let mut plain: Option<f64> = None;
        // The battery's power by tick (one tick a second), starting at 340 kW.
        let mut history: Vec<f64> = vec![340.0];
        let mut worst = 0.0f64;
        for cycle in 0..40 {
            let tick = history.len() - 1;
            // The readings: the battery's now, the meter's two ticks old.
            let (b_tick, m_tick) = (tick, tick.saturating_sub(2));
            let b = history[b_tick];
            let grid = load - history[m_tick];
            let derived = b + grid;
            let now = s(tick as f64 + 0.5);
            let l = if aligned {
                est.update(
                    Some(derived),
                    Some((b, s(b_tick as f64))),
                    Some(s(m_tick as f64)),
                    now,
                )
                .unwrap()
            } else {
                let l = plain.map_or(derived, |p| p + LOAD_GAIN * (derived - p));
                plain = Some(l);
                l
            };
            let set = l - cap;
            est.decided(set, now);
            if cycle >= 5 {
                worst = worst.max((set - (load - cap)).abs());
            }
            // The battery takes the setpoint at the next tick.
            history.push(set);
        }
        worst
    }

    #[test]
    fn the_batteries_own_steps_are_not_taken_for_the_load() {
        // Readings straddling the battery's steps, combined: the battery answers its own
        // steps and swings by hundreds of kW.
        assert!(swing(false) > 100.0, "{}", swing(false));
        // Held until each step is taken: it settles.
        assert!(swing(true) < 1.0, "{}", swing(true));
    }

    #[test]
    fn a_step_of_the_load_is_taken_by_half_a_cycle_between_steps() {
        let t0 = DateTime::<Utc>::from_timestamp(1_782_000_000, 0).unwrap();
        let s = |x: i64| t0 + chrono::Duration::seconds(x);
        let mut est = LoadEstimate::default();
        assert_eq!(
            est.update(Some(400.0), Some((0.0, s(0))), Some(s(0)), s(0)),
            Some(400.0)
        );
        assert_eq!(
            est.update(Some(300.0), Some((0.0, s(1))), Some(s(1)), s(1)),
            Some(350.0)
        );
        assert_eq!(
            est.update(Some(300.0), Some((0.0, s(2))), Some(s(2)), s(2)),
            Some(325.0)
        );
        // A step decided: held until a battery reading shows it and a meter reading follows.
        est.decided(200.0, s(2));
        assert_eq!(
            est.update(Some(100.0), Some((0.0, s(3))), Some(s(3)), s(3)),
            Some(325.0)
        );
        assert_eq!(
            est.update(Some(100.0), Some((200.0, s(4))), Some(s(3)), s(4)),
            Some(325.0)
        );
        assert_eq!(
            est.update(Some(300.0), Some((200.0, s(5))), Some(s(5)), s(5)),
            Some(312.5)
        );
        // A battery that never answers its step holds the estimate no longer than 15 s.
        est.decided(900.0, s(6));
        for k in 7..21 {
            assert_eq!(
                est.update(
                    Some(500.0),
                    Some((200.0 + k as f64 * 20.0, s(k))),
                    Some(s(k)),
                    s(k)
                ),
                Some(312.5)
            );
        }
        assert_eq!(
            est.update(Some(500.0), Some((700.0, s(21))), Some(s(21)), s(21)),
            Some(406.25)
        );
        // Without a battery reading (none in the park), nothing is waited for.
        est.decided(0.0, s(21));
        assert_eq!(
            est.update(Some(600.0), None, Some(s(21)), s(21)),
            Some(503.125)
        );
        // Without a meter reading: none, and forgotten.
        assert_eq!(est.update(Some(500.0), None, None, s(22)), None);
        assert_eq!(
            est.update(Some(500.0), Some((700.0, s(23))), Some(s(23)), s(23)),
            Some(500.0)
        );
    }
}
