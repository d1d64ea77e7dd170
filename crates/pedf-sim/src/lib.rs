//! Simulated devices for pedf: Modbus TCP servers over in-memory register banks (with SunSpec
//! layouts for a PV inverter, a battery and a meter), and servers that misbehave on purpose so
//! the device layer's fault handling is tested over real sockets.
//!
//! The park model: scenario folders (`scenario`), seeded weather (`weather`), the world of a
//! period (`world`: actual and forecast PV, loads, EVs), the physics (`physics`) and backtests
//! of the strategies (`backtest`, `pedf simulate`).

pub mod backtest;
pub mod bank;
pub mod broker;
pub mod demo;
#[cfg(feature = "embedded-broker")]
pub mod embedded_broker;
pub mod faulty;
pub mod mqtt;
pub mod park;
pub mod physics;
pub mod rng;
pub mod scenario;
pub mod sunspec_image;
pub mod weather;
pub mod world;
