//! Simulated devices of a PEDF park, for the device and runtime tests and for `pedf demo`:
//! Modbus TCP servers over in-memory register banks (`bank`, with SunSpec layouts from
//! `sunspec_image`), servers that misbehave on purpose (`faulty`) so the device layer's fault
//! handling is tested over real sockets, MQTT charger and load (`mqtt`), an OCPP 1.6J charge
//! point (`ocpp`), Debian's Mosquitto
//! started on a free loopback port (`broker`), an in-process broker for the demo
//! (`embedded_broker`), and `park::SimPark`, a small park on loopback with its device list.
//!
//! It knows no pedf crate: tests of the device layer and the runtime build no planner.

#![warn(missing_docs)]

pub mod bank;
pub mod broker;
pub mod dlt645;
#[cfg(feature = "embedded-broker")]
pub mod embedded_broker;
pub mod faulty;
pub mod mqtt;
pub mod ocpp;
pub mod park;
pub mod sunspec_image;
