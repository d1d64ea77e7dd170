//! The ground floor of pedf: units, time, the assets of a PEDF (光储直柔) park, tariffs, and
//! the park file reader with located diagnostics.
//!
//! This crate does no I/O: it takes text and returns values or diagnostics. Every other pedf
//! crate builds on it; it depends on none of them.

#![warn(missing_docs)]

pub mod assets;
pub mod bill;
pub mod config;
pub mod csvtext;
pub mod flexibility;
pub mod grid_request;
pub mod inputs;
pub mod live;
pub mod message;
pub mod park;
pub mod plan;
pub mod records;
pub mod services;
pub mod sign;
pub mod tariff;
pub mod time;
pub mod units;
pub mod validate;

pub use park::Park;
