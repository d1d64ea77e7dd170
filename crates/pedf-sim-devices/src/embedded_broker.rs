//! An MQTT broker inside the process (rumqttd), so `pedf demo` needs no outside service.
//! MQTT 3.1.1 on a loopback port, anonymous, no persistence: a demonstration broker, not a
//! production one (a park runs its own, e.g. Mosquitto, and `pedf run` connects to it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on `addr` (port 0 is not allowed: the devices must be told the port) and
/// waits until it accepts connections (at most 5 s).
pub fn start(addr: SocketAddr) -> Result<(), String> {
    if addr.port() == 0 {
        return Err("the embedded MQTT broker needs a fixed port".into());
    }
    // Fail early and clearly when the port is taken (rumqttd would only log it).
    std::net::TcpListener::bind(addr).map_err(|e| format!("MQTT port {addr}: {e}"))?;
    let server = ServerSettings {
        name: "pedf-demo".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 64 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| format!("MQTT broker thread: {e}"))?;
    // Listening once the port can no longer be bound (no probe connection to log).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpListener::bind(addr).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the embedded MQTT broker did not open {addr} within 5 s"
    ))
}
