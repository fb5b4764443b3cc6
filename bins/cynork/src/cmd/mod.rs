//! One module per command group.

pub mod auth;
pub mod chat;
pub mod misc;
pub mod resources;
pub mod shell;
pub mod skills;
pub mod task;
