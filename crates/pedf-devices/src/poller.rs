//! Polling: each Modbus device is polled on its own interval by its own task; the devices of
//! one connection share its link, which keeps one request in flight. The latest state of every
//! device is published into a shared map the runtime reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::time::MissedTickBehavior;

use crate::capability::DeviceState;
use crate::device::ModbusDevice;

/// The latest state of every polled device, by device id.
pub type States = Arc<Mutex<BTreeMap<String, DeviceState>>>;

/// Polls `device` every `poll_ms` (a slow poll delays the next one rather than bunching them)
/// until the task is aborted. A failed poll is logged once per error change and retried on the
/// next tick; the link handles reconnection.
pub fn spawn_poller(mut device: ModbusDevice, states: States) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(device.config.poll_ms.max(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            tick.tick().await;
            let result = device.poll(Utc::now()).await;
            match &result {
                Err(e) if last_error.as_deref() != Some(&e.to_string()) => {
                    tracing::warn!(device = %device.config.id, error = %e, "poll failed");
                    last_error = Some(e.to_string());
                }
                Ok(()) if last_error.is_some() => {
                    tracing::info!(device = %device.config.id, "answering again");
                    last_error = None;
                }
                _ => {}
            }
            states
                .lock()
                .expect("states lock")
                .insert(device.config.id.clone(), device.state.clone());
        }
    })
}
