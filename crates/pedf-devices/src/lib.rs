//! The device layer of pedf: the park's equipment as capabilities (meter, PV inverter,
//! battery, EV charger, DC load, converter) independent of vendor and protocol.
//!
//! - [`capability`]: what devices can do, their fields and readings with time and quality, in
//!   one sign convention at this boundary.
//! - [`template`]: devices as data (register-map templates, the park's device list).
//! - [`modbus`], [`codec`], [`sunspec`], [`device`]: Modbus TCP/RTU links, register decoding,
//!   SunSpec discovery, a polled device and its state.
//! - [`mqtt`]: MQTT devices through one hub (subscriptions, availability, commands).
//! - [`ocpp`]: EV chargers over OCPP 1.6J and 2.0.1, pedf their central system (charging
//!   profiles as setpoints, read back as composite schedules).
//! - [`dlt645`]: the grid company's billing meters over DL/T 645-2007 (RS-485 or a TCP
//!   serial gateway): energy registers (per tariff period), power, voltage, current, demand.
//! - [`control`]: safe control of setpoints (clamp, ramp, write, read back, audit, watchdog).
//! - [`unit`]: every device in its own task, read on its own period into the process image
//!   and written through safe control, with its watchdog; the control cycle never waits on
//!   the network.
//!
//! Every transport, protocol and decoding problem is a value, never a panic: a device never
//! crashes the EMS.

#![warn(missing_docs)]

pub mod capability;
pub mod codec;
pub mod control;
pub mod device;
pub mod dlt645;
pub mod modbus;
pub mod mqtt;
pub mod ocpp;
pub mod sunspec;
pub mod template;
pub mod unit;
