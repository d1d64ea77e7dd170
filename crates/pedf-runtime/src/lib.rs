//! The EMS runtime: the real-time controller (pure logic from a snapshot of the park to safe
//! setpoints), the run loop wiring devices, store and controller (`pedf run`), and what the
//! loop publishes for the server each cycle (`live`).

/// The controller lives in its own crate so the simulator can run the very same logic.
pub use pedf_control as controller;
pub mod live;
pub mod replan;
pub mod run;
pub mod sessions;
