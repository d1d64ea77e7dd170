//! The EMS runtime. Today: the real-time controller, pure logic from a snapshot of the park to
//! safe setpoints; the wiring of devices, store, planner and server (`pedf run`) comes next.

pub mod controller;
pub mod run;
