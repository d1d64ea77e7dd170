//! The EMS runtime: the real-time controller (pure logic from a snapshot of the park to safe
//! setpoints), the run loop wiring devices, store and controller (`pedf run`), and what the
//! loop publishes for the server each cycle (`live`).

pub mod controller;
pub mod live;
pub mod replan;
pub mod run;
