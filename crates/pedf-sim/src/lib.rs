//! The park model of pedf: scenario folders (`scenario`), seeded weather (`weather`), the
//! world of a period (`world`: actual and forecast PV, loads, EVs), the physics (`physics`),
//! backtests of the strategies (`backtest`, `pedf simulate`) and the demo (`demo`: the park
//! model driving simulated devices under a running EMS).
//!
//! The simulated devices themselves are pedf-sim-devices' (re-exported here for the demo).

#![warn(missing_docs)]

pub mod backtest;
pub mod demo;
pub mod physics;
pub mod rng;
pub mod scenario;
pub mod weather;
pub mod world;

#[cfg(feature = "embedded-broker")]
pub use pedf_sim_devices::embedded_broker;
pub use pedf_sim_devices::{bank, broker, dlt645, faulty, mqtt, ocpp, park, sunspec_image};
