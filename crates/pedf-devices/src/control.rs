//! Safe control: every setpoint is clamped to the device's and the park's limits, ramp-rate
//! limited, written and read back, and logged as an audit event naming who asked and why. A
//! watchdog puts the device into its safe state (battery 0 kW, chargers at their minimum, PV
//! unrestricted, loads uncurtailed, converter 0 kW) when the controller stops sending or the
//! device stops answering.
//!
//! The safe state is written without a ramp: reaching it quickly is the point.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::park::Park;

use crate::capability::Capability;
use crate::device::{DeviceError, ModbusDevice};

/// Something a setpoint can be written to.
pub trait SetpointSink {
    /// Writes a value (already safe) and returns what the device reports back.
    fn write_setpoint(
        &mut self,
        value: f64,
    ) -> impl Future<Output = Result<f64, DeviceError>> + Send;
}

impl SetpointSink for ModbusDevice {
    fn write_setpoint(
        &mut self,
        value: f64,
    ) -> impl Future<Output = Result<f64, DeviceError>> + Send {
        ModbusDevice::write_setpoint(self, value)
    }
}

/// The allowed range of a setpoint, in pedf's unit and sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The lowest value allowed.
    pub min: f64,
    /// The highest value allowed.
    pub max: f64,
}

impl Limits {
    /// The range both allow; `None` if they do not overlap.
    pub fn intersect(self, other: Limits) -> Option<Limits> {
        let (min, max) = (self.min.max(other.min), self.max.min(other.max));
        (min <= max).then_some(Limits { min, max })
    }
}

/// The limits the park file sets for an asset's setpoint.
pub fn park_limits(park: &Park, asset: &str, capability: Capability) -> Option<Limits> {
    match capability {
        Capability::Battery => park
            .batteries
            .iter()
            .find(|b| b.id == asset)
            .map(|b| Limits {
                min: -b.max_charge.0,
                max: b.max_discharge.0,
            }),
        Capability::EvCharger => park
            .ev_chargers
            .iter()
            .find(|c| c.id == asset)
            .map(|c| Limits {
                min: 0.0,
                max: c.max_power.0,
            }),
        Capability::PvInverter => Some(Limits {
            min: 0.0,
            max: 100.0,
        }),
        Capability::DcLoad => park
            .flexible_loads
            .iter()
            .find(|l| l.id == asset)
            .map(|l| Limits {
                min: l.min_power.0,
                max: l.max_power.0,
            }),
        Capability::Converter => Some(Limits {
            min: -park.converter.rating.0,
            max: park.converter.rating.0,
        }),
        Capability::Meter => None,
    }
}

/// The safe value of a capability within its limits.
pub fn default_safe_value(capability: Capability, limits: Limits) -> f64 {
    match capability {
        Capability::Battery | Capability::Converter => 0.0f64.clamp(limits.min, limits.max),
        Capability::EvCharger => limits.min.max(0.0).min(limits.max),
        Capability::PvInverter | Capability::DcLoad => limits.max,
        Capability::Meter => 0.0,
    }
}

/// How one device is controlled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// What kind of device it is.
    pub capability: Capability,
    /// The range every setpoint is clamped to.
    pub limits: Limits,
    /// Largest change per second; `None`: no ramp limit.
    pub ramp_per_s: Option<f64>,
    /// The value written when the controller or the device goes silent, and at shutdown.
    pub safe_value: f64,
    /// The watchdog acts when no command came for this long.
    pub command_timeout: Duration,
}

/// What happened to one write.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When the write was made.
    pub at: DateTime<Utc>,
    /// The device id.
    pub device: String,
    /// Who asked: `controller`, `operator:<name>`, `watchdog`, ...
    pub by: String,
    /// Why it was asked for.
    pub reason: String,
    /// The value asked for.
    pub requested: f64,
    /// What was written after clamping and ramping (`None`: nothing was written).
    pub written: Option<f64>,
    /// The value the device reported back (`None`: no read-back).
    pub readback: Option<f64>,
    /// `ok`, or why it failed.
    pub outcome: String,
}

/// The control state of one device.
#[derive(Debug, Clone)]
pub struct SafeControl {
    /// The device id.
    pub device: String,
    /// How it is controlled.
    pub policy: Policy,
    last: Option<(f64, DateTime<Utc>)>,
    last_command: Option<DateTime<Utc>>,
    in_safe_state: bool,
    /// Writes not yet taken into the store.
    pub audit: Vec<AuditEvent>,
    /// The last write audited (a write like it is not audited again, see [`SafeControl::log`]).
    last_audited: Option<AuditEvent>,
}

/// An unchanged write is audited again at least this often (the log shows control going on).
const AUDIT_REPEAT_S: i64 = 900;

impl SafeControl {
    /// Control of a device that has had no command yet.
    pub fn new(device: impl Into<String>, policy: Policy) -> Self {
        SafeControl {
            device: device.into(),
            policy,
            last: None,
            last_command: None,
            in_safe_state: false,
            audit: Vec::new(),
            last_audited: None,
        }
    }

    /// The controller was alive at `at` (it ran, whether or not it had a new value for this
    /// device): the watchdog's silence counts from the later of this and the last command.
    pub fn heard(&mut self, at: DateTime<Utc>) {
        if self.last_command.is_none_or(|t| t < at) {
            self.last_command = Some(at);
        }
    }

    /// Whether the last write put the device into its safe state.
    pub fn in_safe_state(&self) -> bool {
        self.in_safe_state
    }

    /// The value that would be written for `requested` at `now`.
    pub fn target(&self, requested: f64, now: DateTime<Utc>) -> f64 {
        let v = requested.clamp(self.policy.limits.min, self.policy.limits.max);
        match (self.last, self.policy.ramp_per_s) {
            (Some((last, at)), Some(ramp)) => {
                let dt = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                let step = ramp * dt;
                v.clamp(last - step, last + step)
            }
            _ => v,
        }
    }

    fn log(
        &mut self,
        now: DateTime<Utc>,
        by: &str,
        reason: &str,
        requested: f64,
        written: Option<f64>,
        result: &Result<f64, DeviceError>,
    ) {
        let (readback, outcome) = match result {
            Ok(r) => (Some(*r), "ok".to_string()),
            Err(e) => (None, e.to_string()),
        };
        tracing::debug!(device = %self.device, by, reason, requested, ?written, ?readback, %outcome, "setpoint");
        let event = AuditEvent {
            at: now,
            device: self.device.clone(),
            by: by.into(),
            reason: reason.into(),
            requested,
            written,
            readback,
            outcome,
        };
        // Audited: a change (by more than 1 % of the device's range), another caller, reason or
        // outcome (a refusal, a failure, the watchdog), and an unchanged write every 15 min.
        // The controller rewriting what it wrote a second ago, or the watchdog retrying the
        // same failed write, is not a new entry.
        let step = 0.01
            * (self.policy.limits.max - self.policy.limits.min)
                .abs()
                .max(1e-9);
        let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < step,
            (None, None) => true,
            _ => false,
        };
        let same = self.last_audited.as_ref().is_some_and(|l| {
            l.by == event.by
                && l.reason == event.reason
                && l.outcome == event.outcome
                && near(l.written, event.written)
                && near(l.readback, event.readback)
                && (now - l.at).num_seconds() < AUDIT_REPEAT_S
        });
        if !same {
            tracing::info!(device = %self.device, by, reason, requested, ?written, ?readback, outcome = %event.outcome, "setpoint");
            self.last_audited = Some(event.clone());
            self.audit.push(event);
        }
    }

    /// Writes a commanded setpoint safely.
    pub async fn command<S: SetpointSink>(
        &mut self,
        dev: &mut S,
        requested: f64,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<f64, DeviceError> {
        self.last_command = Some(now);
        if !requested.is_finite() {
            let r = Err(DeviceError::Encode {
                value: requested,
                why: "not a finite number; nothing written".into(),
            });
            self.log(now, by, reason, requested, None, &r);
            return r;
        }
        let v = self.target(requested, now);
        let r = dev.write_setpoint(v).await;
        self.log(now, by, reason, requested, Some(v), &r);
        if let Ok(back) = r {
            self.last = Some((back, now));
            self.in_safe_state = false;
        }
        r
    }

    /// Checks the watchdog: when the controller has been silent longer than the timeout, or
    /// `device_answering` is false, and the device is not yet in its safe state, the safe
    /// value is written (retried on every call until it is taken). Returns what it did.
    /// Writes the safe value now, whatever the state (shutdown, mode change to safe).
    pub async fn force_safe<S: SetpointSink>(
        &mut self,
        dev: &mut S,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<f64, DeviceError> {
        let safe = self.policy.safe_value;
        let r = dev.write_setpoint(safe).await;
        self.log(now, "watchdog", reason, safe, Some(safe), &r);
        if let Ok(back) = r {
            self.last = Some((back, now));
            self.in_safe_state = true;
        }
        r
    }

    /// Writes the safe value once when the device does not answer, no command came since start, or the controller has been silent longer than the policy's timeout; `None` when nothing was written (already safe, or all is well).
    pub async fn watchdog<S: SetpointSink>(
        &mut self,
        dev: &mut S,
        device_answering: bool,
        now: DateTime<Utc>,
    ) -> Option<Result<f64, DeviceError>> {
        if self.in_safe_state {
            return None;
        }
        let silent_for = self
            .last_command
            .map(|t| (now - t).to_std().unwrap_or_default());
        let reason = match silent_for {
            _ if !device_answering => "device not answering".to_string(),
            None => "no command since start".to_string(),
            Some(d) if d > self.policy.command_timeout => {
                format!("controller silent for {:.1} s", d.as_secs_f64())
            }
            Some(_) => return None,
        };
        let safe = self.policy.safe_value;
        let r = dev.write_setpoint(safe).await;
        self.log(now, "watchdog", &reason, safe, Some(safe), &r);
        if let Ok(back) = r {
            self.last = Some((back, now));
            self.in_safe_state = true;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        written: Vec<f64>,
        fail: bool,
    }

    impl SetpointSink for Fake {
        fn write_setpoint(
            &mut self,
            value: f64,
        ) -> impl Future<Output = Result<f64, DeviceError>> + Send {
            let r = if self.fail {
                Err(DeviceError::Link(crate::modbus::LinkError::Timeout(100)))
            } else {
                self.written.push(value);
                Ok(value)
            };
            std::future::ready(r)
        }
    }

    fn policy() -> Policy {
        Policy {
            capability: Capability::Battery,
            limits: Limits {
                min: -500.0,
                max: 400.0,
            },
            ramp_per_s: Some(100.0),
            safe_value: 0.0,
            command_timeout: Duration::from_secs(10),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-21T04:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::seconds(s)
    }

    /// The controller rewriting the same setpoint every second is one audit entry (then one
    /// every 15 min); a change, a failure and the watchdog are each an entry; a failure
    /// retried is not a new one. (Every write of every cycle was audited: ~110 MB a day.)
    #[tokio::test]
    async fn unchanged_writes_are_audited_once_changes_and_failures_always() {
        let mut c = SafeControl::new("bess", policy());
        let mut dev = Fake {
            written: vec![],
            fail: false,
        };
        for s in 0..60 {
            // Wobbling by less than 1 % of the 900 kW range.
            let kw = 50.0 + if s % 2 == 0 { 0.0 } else { 3.0 };
            c.command(&mut dev, kw, "controller", "automatic cycle", t(s))
                .await
                .unwrap();
        }
        assert_eq!(c.audit.len(), 1, "{:?}", c.audit);
        c.command(&mut dev, 150.0, "controller", "automatic cycle", t(60))
            .await
            .unwrap();
        assert_eq!(c.audit.len(), 2, "a change is audited");
        c.command(
            &mut dev,
            150.0,
            "controller",
            "automatic cycle",
            t(61 + 900),
        )
        .await
        .unwrap();
        assert_eq!(c.audit.len(), 3, "an unchanged write again after 15 min");
        dev.fail = true;
        for s in 0..30 {
            let _ = c
                .force_safe(&mut dev, "device not answering", t(1000 + s))
                .await;
        }
        assert_eq!(c.audit.len(), 4, "a failed write retried is one entry");
        assert_eq!(c.audit[3].by, "watchdog");
        assert!(c.audit[3].readback.is_none());
    }

    #[tokio::test]
    async fn clamps_ramps_and_audits() {
        let mut c = SafeControl::new("bess", policy());
        let mut dev = Fake {
            written: vec![],
            fail: false,
        };
        assert_eq!(
            c.command(&mut dev, 1000.0, "controller", "plan", t(0))
                .await
                .unwrap(),
            400.0,
            "clamped to the limit"
        );
        assert_eq!(
            c.command(&mut dev, -500.0, "controller", "plan", t(2))
                .await
                .unwrap(),
            200.0,
            "ramped: 100 kW/s for 2 s"
        );
        assert!(c
            .command(&mut dev, f64::NAN, "operator:li", "manual", t(3))
            .await
            .is_err());
        assert_eq!(dev.written, vec![400.0, 200.0], "NaN wrote nothing");
        assert_eq!(c.audit.len(), 3);
        assert_eq!(c.audit[2].by, "operator:li");
        assert_eq!(c.audit[2].written, None);
        assert!(c.audit[2].outcome.contains("not a finite number"));
    }

    #[tokio::test]
    async fn watchdog_goes_safe_once_and_retries_until_taken() {
        let mut c = SafeControl::new("bess", policy());
        let mut dev = Fake {
            written: vec![],
            fail: false,
        };
        c.command(&mut dev, 300.0, "controller", "plan", t(0))
            .await
            .unwrap();
        assert!(
            c.watchdog(&mut dev, true, t(5)).await.is_none(),
            "within the timeout"
        );
        dev.fail = true;
        assert!(c.watchdog(&mut dev, true, t(11)).await.unwrap().is_err());
        assert!(!c.in_safe_state());
        dev.fail = false;
        assert_eq!(
            c.watchdog(&mut dev, true, t(12)).await.unwrap().unwrap(),
            0.0,
            "safe value, without ramp"
        );
        assert!(c.in_safe_state());
        assert!(c.watchdog(&mut dev, true, t(13)).await.is_none(), "once");
        assert_eq!(
            c.audit.last().unwrap().reason,
            "controller silent for 12.0 s"
        );
        // A new command leaves the safe state; a device that stops answering goes safe at once.
        c.command(&mut dev, 50.0, "controller", "plan", t(14))
            .await
            .unwrap();
        c.watchdog(&mut dev, false, t(14)).await.unwrap().unwrap();
        assert_eq!(c.audit.last().unwrap().reason, "device not answering");
        assert_eq!(*dev.written.last().unwrap(), 0.0);
    }

    #[test]
    fn safe_values_by_capability() {
        let l = Limits {
            min: 6.0,
            max: 60.0,
        };
        assert_eq!(default_safe_value(Capability::EvCharger, l), 6.0);
        assert_eq!(
            default_safe_value(
                Capability::PvInverter,
                Limits {
                    min: 0.0,
                    max: 100.0
                }
            ),
            100.0
        );
        assert_eq!(
            default_safe_value(
                Capability::Battery,
                Limits {
                    min: -500.0,
                    max: 400.0
                }
            ),
            0.0
        );
        assert_eq!(
            Limits {
                min: 0.0,
                max: 10.0
            }
            .intersect(Limits {
                min: 20.0,
                max: 30.0
            }),
            None
        );
    }
}
