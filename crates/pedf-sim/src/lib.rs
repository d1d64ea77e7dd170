//! Simulated devices for pedf: Modbus TCP servers over in-memory register banks (with SunSpec
//! layouts for a PV inverter, a battery and a meter), and servers that misbehave on purpose so
//! the device layer's fault handling is tested over real sockets.
//!
//! The park physics (issue 7) will drive these banks; today tests and examples set registers.

pub mod bank;
pub mod broker;
pub mod faulty;
pub mod mqtt;
pub mod park;
pub mod sunspec_image;
