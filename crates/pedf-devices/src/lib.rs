pub mod capability;
pub mod codec;
pub mod control;
pub mod device;
pub mod modbus;
pub mod mqtt;
pub mod sunspec;
pub mod template;
