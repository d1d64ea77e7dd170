//! The device layer of pedf: the park's equipment as capabilities (meter, PV inverter,
//! battery, EV charger, DC load, converter) independent of vendor and protocol.
//!
//! - [`capability`]: what devices can do, their fields and readings with time and quality, in
//!   one sign convention at this boundary.
//! - [`template`]: devices as data (register-map templates, the park's device list).
//! - [`modbus`], [`codec`], [`sunspec`], [`device`]: Modbus TCP/RTU links, register decoding,
//!   SunSpec discovery, a polled device and its state.
//! - [`mqtt`]: MQTT devices through one hub (subscriptions, availability, commands).
//! - [`poller`]: each device polled on its own interval into a shared map.
//! - [`control`]: safe control of setpoints (clamp, ramp, write, read back, audit, watchdog).
//!
//! Every transport, protocol and decoding problem is a value, never a panic: a device never
//! crashes the EMS.

pub mod capability;
pub mod codec;
pub mod control;
pub mod device;
pub mod modbus;
pub mod mqtt;
pub mod poller;
pub mod sunspec;
pub mod template;
