//! EV sessions as the running EMS sees them: a car arrives when its charger reports a car
//! (charger state 1 connected or 2 charging), leaves when the charger reports none (state 0).
//! The energy delivered is the charger's session register where it has one, else the power
//! integrated over the cycles. What the session asks for and when it leaves come from the
//! park file's defaults for the charger (`session_kwh`, `session_hours`) when neither the
//! charger nor the operator says. Re-plans get what each session is still owed and its
//! departure; the controller never gives a session less than it needs to finish by then.
//!
//! A charger without a state register cannot tell a car that is plugged in but held at 0 kW
//! from none: its sessions are not tracked (the plan uses the EV forecast for it).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

/// One car on one charger.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The device id of the charger.
    pub device: String,
    /// The park's charger id (the plan's name for it).
    pub charger: String,
    /// When the car was plugged in.
    pub arrival: DateTime<Utc>,
    /// When it is expected to leave.
    pub departure: DateTime<Utc>,
    /// What it asks for, kWh.
    pub requested_kwh: f64,
    /// Delivered so far, kWh.
    pub delivered_kwh: f64,
    /// The charger's highest power, kW.
    pub max_kw: f64,
}

impl Session {
    /// Energy still owed, kWh.
    pub fn owed_kwh(&self) -> f64 {
        (self.requested_kwh - self.delivered_kwh).max(0.0)
    }

    /// Hours until the expected departure (0 when past it).
    pub fn hours_left(&self, now: DateTime<Utc>) -> f64 {
        ((self.departure - now).num_milliseconds() as f64 / 3.6e6).max(0.0)
    }
}

/// What changed in a cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The session as it started.
    Arrived(Session),
    /// The session as it ended.
    Departed(Session),
}

/// The defaults of a charger, from the park file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Energy a session asks for when the car does not say, kWh.
    pub session_kwh: f64,
    /// How long a session stays when the car does not say, h.
    pub session_hours: f64,
    /// The charger's highest power, kW.
    pub max_kw: f64,
}

/// What a charger reports in a cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Charger state (0 no car, 1 connected, 2 charging, 3 fault); `None`: not reported now.
    pub state: Option<f64>,
    /// The session's energy register, kWh, if the charger has one.
    pub session_kwh: Option<f64>,
    /// Power now, kW.
    pub power_kw: f64,
}

/// An operator's word on the session on a charger (a pedf-core type: the server takes it).
pub use pedf_core::live::Order;

/// The open sessions, by device.
#[derive(Debug, Default)]
pub struct Sessions {
    open: BTreeMap<String, Session>,
    last: Option<DateTime<Utc>>,
}

impl Sessions {
    /// No sessions yet.
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// The open sessions.
    pub fn open(&self) -> impl Iterator<Item = &Session> {
        self.open.values()
    }

    /// The open session on a device.
    pub fn on(&self, device: &str) -> Option<&Session> {
        self.open.get(device)
    }

    /// Applies an operator's order to the open session on its charger; the session as it
    /// now is, or why not (no car there, a departure already past, energy not positive).
    pub fn apply(&mut self, now: DateTime<Utc>, o: &Order) -> Result<Session, String> {
        let s = self
            .open
            .values_mut()
            .find(|s| s.device == o.charger || s.charger == o.charger)
            .ok_or_else(|| format!("no car on {} now", o.charger))?;
        if let Some(e) = o.energy_kwh {
            if !(e.is_finite() && e > 0.0) {
                return Err(format!("energy_kwh {e} is not a positive number of kWh"));
            }
        }
        if let Some(d) = o.departure {
            if d <= now {
                return Err(format!("departure {d} is not after now ({now})"));
            }
        }
        if let Some(e) = o.energy_kwh {
            s.requested_kwh = e;
        }
        if let Some(d) = o.departure {
            s.departure = d;
        }
        Ok(s.clone())
    }

    /// One cycle's readings: (device, park charger id, defaults, reading). A charger with no
    /// state now (not answering, no state register) keeps its session as it is; a fault
    /// (state 3) too.
    pub fn update(
        &mut self,
        now: DateTime<Utc>,
        readings: &[(String, String, Defaults, Reading)],
    ) -> Vec<Change> {
        let dt_h = self.last.map_or(0.0, |l| {
            ((now - l).num_milliseconds() as f64 / 3.6e6).max(0.0)
        });
        self.last = Some(now);
        let mut changes = Vec::new();
        for (device, charger, d, r) in readings {
            let Some(state) = r.state else { continue };
            let car = state.round() as i64 == 1 || state.round() as i64 == 2;
            let none = state.round() as i64 == 0;
            match (self.open.get_mut(device), car, none) {
                (Some(s), _, true) => {
                    let mut s = s.clone();
                    if let Some(kwh) = r.session_kwh {
                        s.delivered_kwh = s.delivered_kwh.max(kwh);
                    }
                    self.open.remove(device);
                    changes.push(Change::Departed(s));
                }
                (Some(s), _, false) => {
                    match r.session_kwh {
                        Some(kwh) => s.delivered_kwh = kwh.max(0.0),
                        None => s.delivered_kwh += r.power_kw.max(0.0) * dt_h,
                    }
                    // A car that stays past its expected departure is owed what is left by
                    // one more interval of full power at most: keep it charging, never at 0.
                    if s.departure <= now && s.owed_kwh() > 0.0 {
                        s.departure = now + Duration::minutes(15);
                    }
                }
                (None, true, _) if d.session_kwh > 0.0 && d.session_hours > 0.0 => {
                    let s = Session {
                        device: device.clone(),
                        charger: charger.clone(),
                        arrival: now,
                        departure: now
                            + Duration::milliseconds((d.session_hours * 3.6e6).round() as i64),
                        requested_kwh: d.session_kwh,
                        delivered_kwh: r.session_kwh.unwrap_or(0.0).max(0.0),
                        max_kw: d.max_kw,
                    };
                    self.open.insert(device.clone(), s.clone());
                    changes.push(Change::Arrived(s));
                }
                _ => {}
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 21, 8, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn reading(state: f64, kwh: Option<f64>, kw: f64) -> Vec<(String, String, Defaults, Reading)> {
        vec![(
            "dev-ev-01".into(),
            "ev-01".into(),
            Defaults {
                session_kwh: 30.0,
                session_hours: 8.0,
                max_kw: 60.0,
            },
            Reading {
                state: Some(state),
                session_kwh: kwh,
                power_kw: kw,
            },
        )]
    }

    /// A car plugs in at 08:00: the park's default (30 kWh by 16:00); the register counts
    /// what it got; it leaves at 09:00 with 20 kWh, and the session ends with that.
    #[test]
    fn a_session_from_arrival_to_departure() {
        let mut s = Sessions::new();
        assert!(s.update(at(0), &reading(0.0, None, 0.0)).is_empty());
        let c = s.update(at(1), &reading(1.0, Some(0.0), 0.0));
        let Change::Arrived(a) = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(a.charger, "ev-01");
        assert_eq!(a.departure, at(1) + Duration::hours(8));
        assert_eq!(a.owed_kwh(), 30.0);
        s.update(at(30), &reading(2.0, Some(12.5), 50.0));
        assert_eq!(s.on("dev-ev-01").unwrap().owed_kwh(), 17.5);
        // Not reported this cycle: nothing changes.
        let mut r = reading(0.0, None, 0.0);
        r[0].3.state = None;
        assert!(s.update(at(40), &r).is_empty());
        let c = s.update(at(60), &reading(0.0, Some(20.0), 0.0));
        let Change::Departed(d) = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(d.delivered_kwh, 20.0);
        assert!(s.open().next().is_none());
    }

    /// The operator says the car needs 45 kWh by 12:00: the open session takes it; an order for
    /// a charger without a car, a past departure or a negative energy is refused.
    #[test]
    fn an_operator_sets_what_a_session_asks_for() {
        let mut s = Sessions::new();
        s.update(at(0), &reading(1.0, Some(0.0), 0.0));
        let order = Order {
            charger: "ev-01".into(),
            energy_kwh: Some(45.0),
            departure: Some(at(240)),
            by: "operator".into(),
            reason: "driver at the desk".into(),
        };
        let got = s.apply(at(5), &order).unwrap();
        assert_eq!((got.requested_kwh, got.departure), (45.0, at(240)));
        assert_eq!(s.on("dev-ev-01").unwrap().owed_kwh(), 45.0);
        let past = Order {
            departure: Some(at(1)),
            ..order.clone()
        };
        assert!(s.apply(at(5), &past).unwrap_err().contains("not after now"));
        let negative = Order {
            energy_kwh: Some(-3.0),
            departure: None,
            ..order.clone()
        };
        assert!(s
            .apply(at(5), &negative)
            .unwrap_err()
            .contains("not a positive"));
        let elsewhere = Order {
            charger: "ev-02".into(),
            ..order
        };
        assert_eq!(
            s.apply(at(5), &elsewhere).unwrap_err(),
            "no car on ev-02 now"
        );
    }

    /// Without a register the power is integrated: 60 kW for 30 minutes is 30 kWh.
    #[test]
    fn without_a_register_the_power_counts() {
        let mut s = Sessions::new();
        s.update(at(0), &reading(2.0, None, 60.0));
        s.update(at(30), &reading(2.0, None, 60.0));
        assert!((s.on("dev-ev-01").unwrap().delivered_kwh - 30.0).abs() < 1e-9);
    }
}
