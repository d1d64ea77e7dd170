//! The EMS runtime, the application layer where the domain crates meet: the run loop wiring
//! device units, store, InfluxDB sink and the controller of pedf-control (`pedf run`), intraday
//! re-planning (`replan`), EV sessions (`sessions`) and what the loop publishes for the server
//! each cycle (`live`).

#![warn(missing_docs)]
pub mod config;
mod devices;
pub mod ems;
pub mod fleet;
pub mod live;
pub mod replan;
pub mod run;
pub mod services;
pub mod sessions;
mod so_far;
