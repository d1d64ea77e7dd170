pub mod capability;
pub mod codec;
pub mod template;
