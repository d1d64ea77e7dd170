//! Device units: every device runs in its own task, so the control cycle never waits on the
//! network.
//!
//! A unit reads its device on the device's own period (a Modbus device is polled; an MQTT
//! device's state is what its hub last received) into the [`ProcessImage`], the latest state
//! of every device with time and quality that the cycle takes a snapshot of. A controllable
//! unit also owns the device's [`SafeControl`]: the cycle hands it an [`Order`] (the latest
//! wins; handing it over never blocks), the unit clamps, ramps, writes and reads back, and
//! keeps the audit for the cycle to store. Its watchdog runs in the unit, not in the cycle: the
//! device goes to its safe state when it stops answering, and when the cycle itself stops
//! beating the [`Heartbeat`] for longer than the command timeout, a stalled controller
//! included.
//!
//! Modbus, MQTT and OCPP devices are driven alike through [`DeviceIo`]; the runtime does not
//! branch on the transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::time::TimeSource;
use tokio::sync::{oneshot, Notify};
use tokio::time::MissedTickBehavior;

use crate::capability::DeviceState;
use crate::control::{AuditEvent, SafeControl, SetpointSink};
use crate::device::{DeviceError, ModbusDevice};
use crate::mqtt::MqttDevice;

/// A device as a unit drives it: read on a period, written through safe control.
pub trait DeviceIo: SetpointSink + Send + 'static {
    /// Brings the device's state up to date and returns it: a Modbus device is polled (a
    /// failed poll is in the state, as its error); an MQTT device's state is what its hub
    /// last received.
    fn refresh(&mut self, now: DateTime<Utc>) -> impl Future<Output = DeviceState> + Send;
    /// How often [`DeviceIo::refresh`] runs, in the EMS's time (a unit on an accelerated
    /// clock reads that many times faster in real time).
    fn period(&self) -> Duration;
}

impl DeviceIo for ModbusDevice {
    async fn refresh(&mut self, now: DateTime<Utc>) -> DeviceState {
        let _ = self.poll(now).await;
        self.state.clone()
    }
    fn period(&self) -> Duration {
        Duration::from_millis(self.config.poll_ms.max(1))
    }
}

impl DeviceIo for crate::ocpp::OcppDevice {
    fn refresh(&mut self, _now: DateTime<Utc>) -> impl Future<Output = DeviceState> + Send {
        std::future::ready(self.state())
    }
    fn period(&self) -> Duration {
        self.period
    }
}

impl DeviceIo for MqttDevice {
    fn refresh(&mut self, _now: DateTime<Utc>) -> impl Future<Output = DeviceState> + Send {
        std::future::ready(self.state())
    }
    fn period(&self) -> Duration {
        self.period
    }
}

/// The latest state of every device, written by the units, read by the cycle.
#[derive(Debug, Clone)]
pub struct ProcessImage {
    states: Arc<Mutex<BTreeMap<String, DeviceState>>>,
    /// Counts the states put, for [`ProcessImage::first_reads`].
    puts: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ProcessImage {
    fn default() -> Self {
        ProcessImage {
            states: Arc::default(),
            puts: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl ProcessImage {
    /// A copy of every device's latest state, by device id.
    pub fn snapshot(&self) -> BTreeMap<String, DeviceState> {
        self.lock().clone()
    }

    /// One device's latest state.
    pub fn get(&self, id: &str) -> Option<DeviceState> {
        self.lock().get(id).cloned()
    }

    /// Waits until every one of `ids` has been read once (answering or not), at most
    /// `bound`; returns the ids still not read. The EMS's first cycle starts on a full image.
    pub async fn first_reads(&self, ids: &[String], bound: Duration) -> Vec<String> {
        let missing = |image: &ProcessImage| -> Vec<String> {
            let states = image.lock();
            ids.iter()
                .filter(|id| !states.contains_key(*id))
                .cloned()
                .collect()
        };
        let mut rx = self.puts.subscribe();
        let wait = rx.wait_for(|_| missing(self).is_empty());
        let _ = tokio::time::timeout(bound, wait).await;
        missing(self)
    }

    fn put(&self, state: DeviceState) {
        self.lock().insert(state.id.clone(), state);
        self.puts.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeviceState>> {
        // A unit that panicked while holding the lock left whole states behind: still usable.
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When the controller last ran, for every unit's watchdog.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    /// A heartbeat that last beat at `now` (the controller is given the command timeout to
    /// start).
    pub fn new(now: DateTime<Utc>) -> Heartbeat {
        Heartbeat(Arc::new(AtomicI64::new(now.timestamp_millis())))
    }

    /// The controller ran at `now`.
    pub fn beat(&self, now: DateTime<Utc>) {
        self.0.fetch_max(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// When the controller last ran.
    pub fn last(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::Relaxed)).unwrap_or_default()
    }
}

/// A setpoint for a unit to write (pedf's unit and sign), with who asks and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// The setpoint, in pedf's unit and sign.
    pub value: f64,
    /// Who asks (`controller`, an operator's token label, ...).
    pub by: String,
    /// Why.
    pub reason: String,
}

type StopRequest = (String, oneshot::Sender<Option<Result<f64, DeviceError>>>);

#[derive(Default)]
struct Shared {
    order: Mutex<Option<Order>>,
    wake: Notify,
    audit: Mutex<Vec<AuditEvent>>,
}

/// One device's task and what the cycle talks to it through.
pub struct Unit {
    id: String,
    controllable: bool,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<StopRequest>>,
    task: tokio::task::JoinHandle<()>,
}

impl Unit {
    /// Starts the unit of `device` (controlled through `control` when it is controllable),
    /// writing its state into `image`.
    pub fn spawn<D: DeviceIo>(
        id: impl Into<String>,
        device: D,
        control: Option<SafeControl>,
        image: ProcessImage,
        heartbeat: Heartbeat,
        time: TimeSource,
    ) -> Unit {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let controllable = control.is_some();
        let task = tokio::spawn(drive(
            device,
            control,
            image,
            heartbeat,
            time,
            shared.clone(),
            stop_rx,
        ));
        Unit {
            id: id.into(),
            controllable,
            shared,
            stop: Some(stop_tx),
            task,
        }
    }

    /// The device's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the unit writes setpoints.
    pub fn controllable(&self) -> bool {
        self.controllable
    }

    /// Hands the unit a setpoint to write; an order it has not taken yet is replaced. Never
    /// waits.
    pub fn order(&self, order: Order) {
        *self.shared.order.lock().unwrap_or_else(|p| p.into_inner()) = Some(order);
        self.shared.wake.notify_one();
    }

    /// The audit of the writes done since the last call.
    pub fn take_audit(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.shared.audit.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops the unit; a controllable one first writes its safe value (`reason` in the
    /// audit) and returns the outcome. The audit of that write stays for
    /// [`Unit::take_audit`].
    pub async fn stop(&mut self, reason: &str) -> Option<Result<f64, DeviceError>> {
        let stop = self.stop.take()?;
        let (tx, rx) = oneshot::channel();
        if stop.send((reason.to_string(), tx)).is_err() {
            return self.controllable.then(|| {
                Err(DeviceError::Link(crate::modbus::LinkError::Io(
                    "the device's task had ended".into(),
                )))
            });
        }
        let out = rx.await.unwrap_or_else(|_| {
            self.controllable.then(|| {
                Err(DeviceError::Link(crate::modbus::LinkError::Io(
                    "the device's task ended before its safe state was written".into(),
                )))
            })
        });
        let _ = (&mut self.task).await;
        out
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the pending order, if there is one, through safe control.
async fn write_order<D: DeviceIo>(
    device: &mut D,
    control: &mut Option<SafeControl>,
    shared: &Shared,
    time: TimeSource,
    last_order: &mut Option<Order>,
) {
    let order = shared
        .order
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let (Some(c), Some(o)) = (control.as_mut(), order) {
        let _ = c
            .command(device, o.value, &o.by, &o.reason, time.now())
            .await;
        *last_order = Some(o);
    }
}

fn answering(state: &DeviceState) -> bool {
    state.last_error.is_none() && state.last_ok.is_some()
}

async fn drive<D: DeviceIo>(
    mut device: D,
    mut control: Option<SafeControl>,
    image: ProcessImage,
    heartbeat: Heartbeat,
    time: TimeSource,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<StopRequest>,
) {
    let real_period = device
        .period()
        .div_f64(time.speed())
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(real_period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut is_answering = false;
    // A device not heard from at all (an MQTT device before its first message) is given its
    // staleness time from the start before the watchdog counts it as not answering.
    let started = time.now();
    let mut waiting_first = true;
    // The last order written, to write again when the device is back from an outage.
    let mut last_order: Option<Order> = None;
    let keep = |control: &mut Option<SafeControl>| {
        if let Some(c) = control {
            shared
                .audit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut c.audit);
        }
    };
    loop {
        // Stop first, then the read when it is due (it writes the pending order too), then an
        // order between reads: an order woken every cycle with a write slower than the cycle
        // (an OCPP charger's two round trips at `pedf demo --speed 60`) must not starve the
        // reads, or the device goes stale while it answers.
        tokio::select! {
            biased;
            request = &mut stop => {
                let Ok((reason, done)) = request else { return };
                let outcome = match control.as_mut() {
                    Some(c) => Some(c.force_safe(&mut device, &reason, time.now()).await),
                    None => None,
                };
                keep(&mut control);
                let _ = done.send(outcome);
                return;
            }
            _ = tick.tick() => {
                let state = device.refresh(time.now()).await;
                is_answering = answering(&state);
                waiting_first = waiting_first
                    && state.last_ok.is_none()
                    && state.last_error.is_none()
                    && (time.now() - started).to_std().unwrap_or_default() < state.stale_after;
                image.put(state);
                if let Some(c) = control.as_mut() {
                    c.heard(heartbeat.last());
                }
                if control.is_some() {
                    if is_answering {
                        write_order(&mut device, &mut control, &shared, time, &mut last_order)
                            .await;
                    }
                    // Back from an outage the watchdog met with the safe value, with the
                    // controller alive: the controller's last setpoint again (a curtailable
                    // load's cap is sent only when it changes, so it would not come again).
                    if let (true, Some(c), Some(o)) =
                        (is_answering, control.as_mut(), last_order.as_ref())
                    {
                        let alive = (time.now() - heartbeat.last())
                            .to_std()
                            .is_ok_and(|d| d <= c.policy.command_timeout)
                            || time.now() <= heartbeat.last();
                        if c.in_safe_state() && alive {
                            let reason = format!("{} (again: the device answers again)", o.reason);
                            let _ = c.command(&mut device, o.value, &o.by, &reason, time.now()).await;
                        }
                    }
                    if let Some(c) = control.as_mut() {
                        let answering_or_not_yet = is_answering || waiting_first;
                        let _ = c.watchdog(&mut device, answering_or_not_yet, time.now()).await;
                    }
                    keep(&mut control);
                }
            }
            _ = shared.wake.notified() => {
                // A device not read yet, or not answering, takes the order after a read that
                // answers; meanwhile the watchdog has it in its safe state.
                if is_answering {
                    write_order(&mut device, &mut control, &shared, time, &mut last_order).await;
                    keep(&mut control);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Capability, Field};
    use crate::control::{Limits, Policy};
    use std::sync::atomic::AtomicBool;

    /// A load whose reads fail while `down` (its writes still land, as an MQTT device's
    /// commands do while it publishes no state), with every value written.
    struct Load {
        down: Arc<AtomicBool>,
        written: Arc<Mutex<Vec<f64>>>,
    }

    impl SetpointSink for Load {
        fn write_setpoint(
            &mut self,
            value: f64,
        ) -> impl Future<Output = Result<f64, DeviceError>> + Send {
            self.written.lock().unwrap().push(value);
            std::future::ready(Ok(value))
        }
    }

    impl DeviceIo for Load {
        async fn refresh(&mut self, now: DateTime<Utc>) -> DeviceState {
            let mut s = DeviceState::new("hvac", Capability::DcLoad, Duration::from_secs(5));
            if self.down.load(Ordering::Relaxed) {
                s.poll_failed("no state published");
            } else {
                s.set(Field::PowerKw, 80.0, now);
                s.poll_ok(now);
            }
            s
        }
        fn period(&self) -> Duration {
            Duration::from_millis(20)
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A curtailable load capped at 90 kW stops answering: the watchdog lifts the cap (its
    /// safe value, 120 kW). When it answers again, with the controller alive, the cap is
    /// written again; before, it stayed lifted until the cap changed.
    #[tokio::test]
    async fn a_device_back_from_an_outage_gets_the_last_setpoint_again() {
        let time = TimeSource::wall();
        let heartbeat = Heartbeat::new(time.now());
        let (down, written) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let load = Load {
            down: down.clone(),
            written: Arc::clone(&written),
        };
        let policy = Policy {
            capability: Capability::DcLoad,
            limits: Limits {
                min: 0.0,
                max: 120.0,
            },
            ramp_per_s: None,
            safe_value: 120.0,
            command_timeout: Duration::from_secs(10),
        };
        let unit = Unit::spawn(
            "hvac",
            load,
            Some(SafeControl::new("hvac", policy)),
            ProcessImage::default(),
            heartbeat.clone(),
            time,
        );
        let last = || written.lock().unwrap().last().copied();
        let beat = || heartbeat.beat(time.now());
        unit.order(Order {
            value: 90.0,
            by: "controller".into(),
            reason: "plan".into(),
        });
        until("the cap written", || {
            beat();
            last() == Some(90.0)
        })
        .await;
        down.store(true, Ordering::Relaxed);
        until("the watchdog's safe value", || {
            beat();
            last() == Some(120.0)
        })
        .await;
        down.store(false, Ordering::Relaxed);
        until("the cap written again", || {
            beat();
            last() == Some(90.0)
        })
        .await;
        // The write is audited once the device has answered it: wait for the entry too.
        let audit = std::sync::Mutex::new(Vec::new());
        until("the write again audited", || {
            let mut a = audit.lock().unwrap();
            a.extend(unit.take_audit());
            a.last().is_some_and(|e| e.reason.contains("(again"))
        })
        .await;
        let audit = audit.into_inner().unwrap();
        let again = audit.last().unwrap();
        assert_eq!(
            (again.by.as_str(), again.written),
            ("controller", Some(90.0))
        );
        assert!(
            again.reason.ends_with("(again: the device answers again)"),
            "{again:?}"
        );
    }
}
