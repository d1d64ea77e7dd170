//! Forecasts for pedf: solar position, clear-sky irradiance, PV power, loads and EV demand.
//!
//! Pure computation on data passed in; file reading lives in the `weather` module's readers
//! and returns located errors.

#![warn(missing_docs)]

pub mod calendar;
pub mod correction;
pub mod ev;
pub mod irradiance;
pub mod load;
pub mod metrics;
pub mod pv;
pub mod pvwatts;
pub mod spa;
mod spa_tables;
pub mod weather;
