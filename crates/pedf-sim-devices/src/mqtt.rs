//! Simulated MQTT devices: an EV charger and a DC load that publish JSON state periodically
//! and follow power commands on `{prefix}/set`.
//!
//! Charger state: `{"power_w": .., "state": 0|1|2, "session_wh": ..}` on `{prefix}/state`
//! (state 1 connected, 2 charging). Load state: `{"power_kw": ..}`. Command:
//! `{"power_kw": x}`, clamped to the device's maximum.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Which device is simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimKind {
    /// An EV charger with a car that draws what it is allowed.
    Charger {
        /// The charger's highest power, kW.
        max_kw: f64,
    },
    /// A curtailable DC load drawing up to its cap.
    DcLoad {
        /// The load's full power, kW.
        max_kw: f64,
    },
}

/// A running simulated MQTT device.
pub struct SimMqttDevice {
    /// Current power, kW (commands change it; tests and the demo's physics may too).
    pub power_kw: Arc<Mutex<f64>>,
    /// The last power command received, kW (`None` until one arrives; the demo's physics
    /// clears it when a new car plugs in).
    pub command_kw: Arc<Mutex<Option<f64>>>,
    /// Charger: a car is plugged in (state 0 when not; default true, as before the demo).
    pub present: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimMqttDevice {
    /// Connects to the broker and starts publishing every `period`.
    pub fn start(
        host: &str,
        port: u16,
        prefix: &str,
        kind: SimKind,
        initial_kw: f64,
        period: Duration,
    ) -> SimMqttDevice {
        Self::start_at_speed(host, port, prefix, kind, initial_kw, period, 1.0)
    }

    /// The same with the park's time running `speed` times real time (`pedf demo --speed`):
    /// the charger's session register counts simulated hours.
    pub fn start_at_speed(
        host: &str,
        port: u16,
        prefix: &str,
        kind: SimKind,
        initial_kw: f64,
        period: Duration,
        speed: f64,
    ) -> SimMqttDevice {
        let mut options =
            MqttOptions::new(format!("pedf-sim-{}", prefix.replace('/', "-")), host, port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let power = Arc::new(Mutex::new(initial_kw));
        let command: Arc<Mutex<Option<f64>>> = Arc::new(Mutex::new(None));
        let present = Arc::new(AtomicBool::new(true));
        let (set_topic, state_topic) = (format!("{prefix}/set"), format!("{prefix}/state"));
        let (p1, c1, st1) = (power.clone(), client.clone(), set_topic.clone());
        let cmd1 = command.clone();
        let max = match kind {
            SimKind::Charger { max_kw } | SimKind::DcLoad { max_kw } => max_kw,
        };
        let events = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c1.try_subscribe(st1.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == st1 => {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                            if let Some(x) = v.get("power_kw").and_then(serde_json::Value::as_f64) {
                                *p1.lock().expect("sim lock") = x.clamp(0.0, max);
                                *cmd1.lock().expect("sim lock") = Some(x.clamp(0.0, max));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let p2 = power.clone();
        let here = present.clone();
        let publisher = tokio::spawn(async move {
            let mut session_wh = 0.0;
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let p = *p2.lock().expect("sim lock");
                session_wh += p * 1000.0 * period.as_secs_f64() * speed / 3600.0;
                let json = match kind {
                    SimKind::Charger { .. } => {
                        let state = if !here.load(Ordering::Relaxed) {
                            session_wh = 0.0;
                            0
                        } else if p > 0.0 {
                            2
                        } else {
                            1
                        };
                        serde_json::json!({"power_w": p * 1000.0, "state": state, "session_wh": session_wh})
                    }
                    SimKind::DcLoad { .. } => serde_json::json!({"power_kw": p}),
                };
                let _ = client.try_publish(
                    state_topic.clone(),
                    QoS::AtMostOnce,
                    false,
                    json.to_string(),
                );
            }
        });
        SimMqttDevice {
            power_kw: power,
            command_kw: command,
            present,
            tasks: vec![events, publisher],
        }
    }
}

impl Drop for SimMqttDevice {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
