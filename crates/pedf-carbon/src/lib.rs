//! Carbon accounting of a PEDF park ("能碳双控"): emission factors with their provenance,
//! interval energy records, allocation of every flow at the DC bus, the battery as a carbon
//! store, and the period figures (location- and market-based Scope 2, avoided emissions of PV,
//! consequential effect of shifting, hourly carbon-free-energy score, park intensity).
//!
//! No I/O here: readers take bytes and return values or located diagnostics.

#![warn(missing_docs)]

pub mod account;
pub mod certificate;
pub mod counters;
pub mod factors;
pub mod jcs;
pub mod merkle;
pub mod period;
/// Interval energy records live in pedf-core (the store and the runtime write them too).
pub use pedf_core::records;
