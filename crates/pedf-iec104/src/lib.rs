//! The park as an IEC 60870-5-104 controlled station (an outstation): the dispatch or
//! distribution master connects over TCP, starts data transfer, interrogates the station,
//! synchronises its clock and sends setpoints; the station sends measured values and
//! single points on interrogation, spontaneously when they change beyond their deadband (with
//! CP56Time2a time tags) and cyclically.
//!
//! - [`frame`]: APDUs (APCI in the I, S and U formats) and the ASDUs pedf sends and takes.
//! - [`Outstation`]: the server: masters allowed by address, k/w flow control and the t1, t2,
//!   t3 timers, one task per connection; values come in through [`Outstation::update`],
//!   setpoints go out as [`Command`]s the application accepts or refuses (a positive or
//!   negative activation confirmation, then the termination).
//!
//! Written here from IEC 60870-5-104 (2006) and IEC 60870-5-101 (2003) as they describe the
//! frames; tested against the `c104` package (lib60870's master).

pub mod frame;
mod server;

pub use server::{Command, Config, Outstation, PointMap, SetpointPoint, ValuePoint};
