//! EV sessions in the cycle: arrivals and departures from the chargers' states, and
//! operators' orders on them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pedf_core::Park;
use pedf_devices::capability::{DeviceState, Field};

use crate::devices::Devices;

use super::writer::{StoreWriter, Write};
use super::{Cycle, RunIo};

pub(super) fn session_defaults(park: &Park, asset: &str) -> crate::sessions::Defaults {
    let c = park.ev_chargers.iter().find(|c| c.id == asset);
    crate::sessions::Defaults {
        session_kwh: c.map_or(0.0, |c| c.session_kwh),
        session_hours: c.map_or(0.0, |c| c.session_hours),
        max_kw: c.map_or(0.0, |c| c.max_power.0),
    }
}

impl Cycle {
    /// Sessions: arrivals and departures from the chargers' states, and operators' orders on
    /// them (what a car needs, when it leaves); each an event, a change a re-plan.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_sessions(
        park: &Park,
        writer: &StoreWriter,
        devices: &Devices,
        sessions: &mut crate::sessions::Sessions,
        without: &mut pedf_core::records::WithoutEms,
        replanner: &mut Option<crate::replan::Replanner>,
        tracked: &[String],
        now: DateTime<Utc>,
        states: &BTreeMap<String, DeviceState>,
        io: &mut RunIo,
    ) {
        let controlled = &devices.controlled;
        let session_defaults = |asset: &str| session_defaults(park, asset);
        // Sessions: arrivals and departures from the chargers' states.
        let readings: Vec<_> = controlled
            .iter()
            .filter(|c| tracked.contains(&c.id))
            .map(|c| {
                let st = states.get(&c.id);
                (
                    c.id.clone(),
                    c.asset.clone(),
                    session_defaults(&c.asset),
                    crate::sessions::Reading {
                        state: st.and_then(|s| s.good(Field::ChargerState, now)),
                        session_kwh: st.and_then(|s| s.good(Field::SessionKwh, now)),
                        power_kw: st.and_then(|s| s.good(Field::PowerKw, now)).unwrap_or(0.0),
                    },
                )
            })
            .collect();
        for change in sessions.update(now, &readings) {
            match change {
                crate::sessions::Change::Arrived(s) => {
                    without.arrive(&s.device, s.requested_kwh, s.max_kw);
                    writer.event(
                        now,
                        "info",
                        "ev",
                        format!(
                            "car on {}: asks {:.1} kWh by {} (the park's default session)",
                            s.charger,
                            s.requested_kwh,
                            park.clock.format(s.departure)
                        ),
                    );
                    if let Some(rp) = replanner.as_mut() {
                        rp.request(format!("a car arrived on {}", s.charger));
                    }
                }
                crate::sessions::Change::Departed(s) => {
                    without.depart(&s.device, Some(s.delivered_kwh));
                    let short = s.owed_kwh();
                    let severity = if short > 0.01 && now >= s.departure {
                        "warning"
                    } else {
                        "info"
                    };
                    writer.event(
                        now,
                        severity,
                        "ev",
                        format!(
                            "car left {}: {:.1} of {:.1} kWh in {:.1} h{}",
                            s.charger,
                            s.delivered_kwh,
                            s.requested_kwh,
                            (now - s.arrival).num_seconds() as f64 / 3600.0,
                            if short <= 0.01 {
                                String::new()
                            } else if now >= s.departure {
                                format!(", {short:.1} kWh short")
                            } else {
                                " (before its expected departure)".to_string()
                            }
                        ),
                    );
                }
            }
        }
        // Operators' orders on the sessions (what a car needs, when it leaves).
        while let Some(order) = io.orders.as_mut().and_then(|rx| rx.try_recv().ok()) {
            let outcome = sessions.apply(now, &order);
            let (severity, message, result) = match &outcome {
                Ok(s) => (
                    "info",
                    format!(
                        "session on {} set by {}: {:.1} kWh by {} ({})",
                        s.charger,
                        order.by,
                        s.requested_kwh,
                        park.clock.format(s.departure),
                        order.reason
                    ),
                    "accepted".to_string(),
                ),
                Err(e) => (
                    "warning",
                    format!(
                        "session order for {} by {} refused: {e}",
                        order.charger, order.by
                    ),
                    format!("refused: {e}"),
                ),
            };
            writer.event(now, severity, "ev", message);
            writer.send(Write::Audit(vec![pedf_devices::control::AuditEvent {
                at: now,
                device: order.charger.clone(),
                by: order.by.clone(),
                reason: format!("session: {}", order.reason),
                requested: order.energy_kwh.unwrap_or(0.0),
                written: None,
                readback: None,
                outcome: result,
            }]));
            if outcome.is_ok() {
                if let Some(rp) = replanner.as_mut() {
                    rp.request(format!("the session on {} was changed", order.charger));
                }
            }
        }
    }
}
