//! Operators' commands to chargers that take them (OCPP chargers: a transaction stopped or
//! started, a connector out of service or back in): each carried out off the cycle (the
//! charger's answer takes a round trip), answered to the server, audited and said in an event
//! when it is done.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::live::{ChargerAction, ChargerCommand};
use pedf_devices::control::AuditEvent;

use super::writer::{StoreWriter, Write};
use super::RunIo;
use crate::devices::Devices;

/// A command carried out: what was asked and what came of it.
pub(super) struct Done {
    at: DateTime<Utc>,
    command: ChargerCommand,
    outcome: Result<String, String>,
}

/// Commands carried out, waiting to be stored by the cycle.
#[derive(Clone, Default)]
pub(super) struct CommandsDone(Arc<Mutex<Vec<Done>>>);

impl CommandsDone {
    fn push(&self, d: Done) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }

    fn take(&self) -> Vec<Done> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Takes the server's commands (never waits): each goes to its charger on a task of its own;
/// a charger that takes no commands is refused at once. The ones done are audited and said.
pub(super) fn take_commands(
    devices: &Devices,
    time: pedf_core::time::TimeSource,
    done: &CommandsDone,
    writer: &StoreWriter,
    now: DateTime<Utc>,
    io: &mut RunIo,
) {
    while let Some((command, reply)) = io.commands.as_mut().and_then(|rx| rx.try_recv().ok()) {
        let Some(dev) = devices
            .ocpp
            .as_ref()
            .and_then(|h| h.device(&command.charger, Duration::from_secs(1)))
        else {
            let why = format!(
                "{} takes no commands: its protocol carries only the EMS's setpoints",
                command.charger
            );
            let _ = reply.send(Err(why.clone()));
            done.push(Done {
                at: now,
                command,
                outcome: Err(why),
            });
            continue;
        };
        let done = done.clone();
        tokio::spawn(async move {
            let outcome = match command.action {
                ChargerAction::Stop => dev
                    .remote_stop()
                    .await
                    .map(|tx| format!("transaction {tx} ended")),
                ChargerAction::Start => {
                    let tag = command.id_tag.clone().unwrap_or_default();
                    dev.remote_start(&tag).await.map(|()| {
                        format!("accepted: a transaction for {tag} starts when a car is connected")
                    })
                }
                ChargerAction::Disable => dev.set_available(false).await.map(|s| {
                    if s == "Scheduled" {
                        "scheduled: out of service when its transaction ends".to_string()
                    } else {
                        "out of service".to_string()
                    }
                }),
                ChargerAction::Enable => dev
                    .set_available(true)
                    .await
                    .map(|_| "in service".to_string()),
            };
            let _ = reply.send(outcome.clone());
            done.push(Done {
                at: time.now(),
                command,
                outcome,
            });
        });
    }
    for d in done.take() {
        let c = &d.command;
        let (severity, said, audited) = match &d.outcome {
            Ok(o) => ("info", o.clone(), "ok".to_string()),
            Err(e) => ("warning", format!("not done: {e}"), format!("refused: {e}")),
        };
        writer.event(
            d.at,
            severity,
            "control",
            format!(
                "{} on {} by {} ({}): {said}",
                c.action.name(),
                c.charger,
                c.by,
                c.reason
            ),
        );
        writer.send(Write::Audit(vec![AuditEvent {
            at: d.at,
            device: c.charger.clone(),
            by: c.by.clone(),
            reason: format!("command {}: {}", c.action.name(), c.reason),
            requested: 0.0,
            written: None,
            readback: None,
            outcome: audited,
        }]));
    }
}
