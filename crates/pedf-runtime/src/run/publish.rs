//! Phase 5: the park now, to the server.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::live::{tariff_now, today_and_sessions, ChargerLive, DeviceLive, Flows, Live, ModeView};
use pedf_control::Mode;

use super::{quality_of, Cycle, Decision, Measured, RunIo};

impl Cycle {
    /// Phase 5: the park now, with the cycle's work time and lag, to the server.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &mut self,
        now: DateTime<Utc>,
        m: &Measured,
        d: &Decision,
        (flows, mut chargers_live): (Flows, Vec<ChargerLive>),
        faults: Vec<String>,
        (work_ms, lag_ms): (f64, f64),
        io: &RunIo,
    ) {
        let Cycle {
            park,
            day_records,
            integrator,
            device_list,
            so_far,
            summary,
            timing,
            sink,
            ..
        } = self;
        let states = &m.states;
        let Decision {
            mode,
            chosen,
            held_safe,
            plan,
            out,
            ..
        } = d;
        if let Some(tx) = &io.live {
            let day_start = park
                .clock
                .start_of_local_day(park.clock.local(now).date_naive());
            day_records.retain(|r| r.start >= day_start);
            let mut recs = day_records.clone();
            recs.extend(integrator.running());
            let sessions: Vec<(String, DateTime<Utc>)> = chargers_live
                .iter()
                .filter_map(|c| c.session.as_ref().map(|s| (c.id.clone(), s.arrival)))
                .collect();
            let (today, greens) = today_and_sessions(park, &recs, now, &sessions);
            let mut greens = greens.into_iter();
            for s in chargers_live.iter_mut().filter_map(|c| c.session.as_mut()) {
                s.green_share = greens.next().flatten();
            }
            let devices = device_list
                .iter()
                .map(|(id, capability)| {
                    let st = states.get(id);
                    let quality = quality_of(st, now);
                    DeviceLive {
                        id: id.clone(),
                        capability: capability.name().to_string(),
                        quality: quality.into(),
                        last_ok: st.and_then(|s| s.last_ok),
                        error: st.and_then(|s| s.last_error.clone()),
                    }
                })
                .collect();
            let month_live = so_far.live(park, now);
            let live = Live {
                month: month_live,
                park_id: park.id.clone(),
                park_name: park.name.clone(),
                park_name_zh: park.name_zh.clone(),
                at: Some(now),
                time_zone: park.clock.tz.name().to_string(),
                local_day: park.clock.local(now).date_naive().to_string(),
                interval_minutes: park.clock.interval.minutes(),
                cycle: summary.cycles + 1,
                cycle_work_ms: work_ms,
                cycle_lag_ms: lag_ms,
                timing: timing.clone(),
                mode: Some(ModeView::from(chosen)),
                strategy: match &mode {
                    Mode::Safe => match held_safe {
                        Some(why) => format!("safe state: {why}"),
                        None => "safe state (every device at its safe value)".to_string(),
                    },
                    Mode::Manual { .. } => "manual battery setpoint".to_string(),
                    Mode::Automatic => plan.as_ref().map_or_else(
                        || "self-consumption (no active plan)".to_string(),
                        |p| p.1.clone(),
                    ),
                },
                plan_grid_kw: plan
                    .as_ref()
                    .map(|p| p.0.grid_import_kw - p.0.grid_export_kw),
                flows,
                chargers: chargers_live,
                tariff: tariff_now(park, now),
                battery_capacity_kwh: park.battery_capacity().0,
                grid_factor_kg_per_kwh: park.carbon.grid_factor.value.0,
                today,
                devices,
                // The controller's, the safe state forced on the operator's mode, and every
                // device not answering.
                alarms: out
                    .alarms
                    .iter()
                    .cloned()
                    .chain(held_safe.clone())
                    .chain(m.lost.iter().map(|(_, why)| why.clone()))
                    .collect(),
                faults,
                influx: sink.as_ref().map(|k| {
                    let st = k.state();
                    pedf_core::live::SinkLive {
                        connected: st.connected,
                        buffered_segments: st.buffered_segments,
                        buffered_bytes: st.buffered_bytes,
                        rejected_lines: st.rejected_lines,
                        dropped_lines: st.dropped_lines,
                        last_error: st.last_error,
                    }
                }),
            };
            tx.send_replace(Arc::new(live));
        }
    }
}
