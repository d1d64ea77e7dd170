pub mod capability;
pub mod codec;
pub mod device;
pub mod modbus;
pub mod sunspec;
pub mod template;
