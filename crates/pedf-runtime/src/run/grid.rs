//! The grid's link (`[iec104]`): the park as an IEC 60870-5-104 station. Each cycle the
//! station is given the park's values (what the master reads on interrogation and sees change
//! spontaneously), and the master's setpoints are taken: an import or export limit at the
//! grid connection, checked against the park's own limits, held by the controller from the
//! same cycle on (the park's limits lowered to it), said in an event with who set it.
//!
//! A limit the grid set holds until the master changes it (a setpoint equal to the park's own
//! limit releases it), across a restart of the EMS too (kept in the store; said at the start);
//! the master sees the limits in force (points `import_limit_kw` and `export_limit_kw`, and the
//! `grid_limit_active` single point).

use chrono::{DateTime, Offset, Utc};
use pedf_control::Limits;
use pedf_core::live::Flows;
use pedf_iec104::{Command, Outstation};
use tokio::sync::mpsc;

use super::{Cycle, Decision, Measured};

/// The station and the limits its master set.
pub(crate) struct GridLink {
    station: Outstation,
    commands: mpsc::Receiver<Command>,
    caps: GridCaps,
    /// What is to be said at the first cycle (limits held after a restart).
    said: Vec<String>,
}

/// Limits the grid set at the connection, kW (`None`: the park's own).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GridCaps {
    import_kw: Option<f64>,
    export_kw: Option<f64>,
}

impl GridCaps {
    /// The park's limits with the grid's over them (the lower of each).
    pub(crate) fn apply(&self, l: &Limits) -> Limits {
        let mut out = l.clone();
        if let Some(c) = self.import_kw {
            out.import_kw = out.import_kw.min(c);
        }
        if let Some(c) = self.export_kw {
            out.export_kw = out.export_kw.min(c);
        }
        out
    }

    fn active(&self) -> bool {
        self.import_kw.is_some() || self.export_kw.is_some()
    }
}

impl GridLink {
    /// Starts the station of `cfg` (its time tags in the park's time zone now), holding the
    /// limits the grid set before a restart (`kept`) that are still within the park's own.
    pub(crate) fn start(
        cfg: &crate::config::Iec104Run,
        park: &pedf_core::Park,
        time: pedf_core::time::TimeSource,
        kept: &[pedf_store::GridLimit],
    ) -> Result<GridLink, String> {
        let offset = park.clock.local(time.now()).offset().fix();
        let config = cfg.config(offset)?;
        let (station, commands) = Outstation::start(config, move || time.now())?;
        let own = Limits::of(park);
        let mut caps = GridCaps::default();
        let mut said = Vec::new();
        for pedf_store::GridLimit { name, kw, by, at } in kept {
            let (slot, own_kw) = match name.as_str() {
                "import_limit_kw" => (&mut caps.import_kw, own.import_kw),
                "export_limit_kw" => (&mut caps.export_kw, own.export_kw),
                _ => continue,
            };
            if kw.is_finite() && *kw >= 0.0 && *kw < own_kw {
                *slot = Some(*kw);
                said.push(format!(
                    "the {} of {kw:.1} kW the grid (IEC 104 master {by}) set at {} holds after the restart",
                    name.trim_end_matches("_kw").replace('_', " "),
                    park.clock.format(*at)
                ));
            }
        }
        Ok(GridLink {
            station,
            commands,
            caps,
            said,
        })
    }

    /// Stops listening.
    pub(crate) fn stop(&self) {
        self.station.stop();
    }
}

impl Cycle {
    /// The controller's limits this cycle: the park's, lowered by the grid's; the master's
    /// setpoints taken first (each accepted or refused with why).
    pub(super) fn grid_limits(&mut self, now: DateTime<Utc>) -> Limits {
        let Cycle {
            grid,
            limits,
            writer,
            ..
        } = self;
        let Some(g) = grid.as_mut() else {
            return limits.clone();
        };
        for e in std::mem::take(&mut g.said) {
            writer.event(now, "warning", "grid", e);
        }
        for e in g.station.take_events() {
            let severity = if e.contains("refused") || e.contains("closed") {
                "warning"
            } else {
                "info"
            };
            writer.event(now, severity, "grid", e);
        }
        while let Ok(c) = g.commands.try_recv() {
            let own = match c.point.as_str() {
                "import_limit_kw" => limits.import_kw,
                _ => limits.export_kw,
            };
            let outcome = if !(c.value.is_finite() && c.value >= 0.0) {
                Err(format!("{} must be 0 kW or more", c.point))
            } else if c.value > own + 1e-6 {
                Err(format!(
                    "{} kW is above the park's own limit of {own:.1} kW (its connection's)",
                    c.value
                ))
            } else {
                let cap = (c.value < own - 1e-6).then_some(c.value);
                match c.point.as_str() {
                    "import_limit_kw" => g.caps.import_kw = cap,
                    _ => g.caps.export_kw = cap,
                }
                writer.send(super::Write::GridLimit {
                    name: c.point.clone(),
                    kw: cap,
                    by: c.master.to_string(),
                    at: now,
                });
                Ok(cap)
            };
            let said = match &outcome {
                Ok(Some(v)) => format!(
                    "the grid (IEC 104 master {}) set the {} to {v:.1} kW: held from this cycle",
                    c.master,
                    c.point.trim_end_matches("_kw").replace('_', " ")
                ),
                Ok(None) => format!(
                    "the grid (IEC 104 master {}) released the {}: the park's own {own:.1} kW applies",
                    c.master,
                    c.point.trim_end_matches("_kw").replace('_', " ")
                ),
                Err(why) => format!(
                    "the grid (IEC 104 master {}) asked {} = {}: refused, {why}",
                    c.master, c.point, c.value
                ),
            };
            writer.event(
                now,
                if outcome.is_ok() { "info" } else { "warning" },
                "grid",
                said,
            );
            let _ = c.reply.send(outcome.map(|_| ()));
        }
        g.caps.apply(limits)
    }

    /// The station's values of this cycle.
    pub(super) fn grid_values(&self, m: &Measured, d: &Decision, flows: &Flows, alarm: bool) {
        let Some(g) = &self.grid else {
            return;
        };
        let limits = g.caps.apply(&self.limits);
        let battery = m.battery.as_ref();
        let battery_kw = flows.battery_kw;
        // The battery's headroom: how much more it could charge (the park's import up) or
        // discharge (down) now, from what it does.
        let flex_up = battery
            .zip(battery_kw)
            .map(|(b, p)| (b.max_charge_kw + p).max(0.0));
        let flex_down = battery
            .zip(battery_kw)
            .map(|(b, p)| (b.max_discharge_kw - p).max(0.0));
        g.station.update(
            &[
                ("grid_kw", flows.grid_kw),
                ("pv_kw", flows.pv_kw),
                ("battery_kw", battery_kw),
                ("soc_pct", flows.soc_pct),
                ("load_kw", flows.load_kw),
                ("ev_kw", flows.ev_kw),
                ("flex_up_kw", flex_up),
                ("flex_down_kw", flex_down),
                ("import_limit_kw", Some(limits.import_kw)),
                ("export_limit_kw", Some(limits.export_kw)),
            ],
            &[
                (
                    "safe_state",
                    Some(d.mode == pedf_control::Mode::Safe || d.held_safe.is_some()),
                ),
                ("alarm", Some(alarm)),
                ("automatic", Some(d.chosen == pedf_control::Mode::Automatic)),
                ("grid_limit_active", Some(g.caps.active())),
            ],
        );
    }
}
