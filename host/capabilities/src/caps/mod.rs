//! The host side of the `usher:platform` capability interfaces: one module
//! per interface, each a thin mapping from WIT types to the backend trait
//! through the shared sequence of [`crate::call`].

mod cache;
mod codec;
mod config;
mod events;
mod log;
mod objects;
mod queue;
mod services;
mod table;
mod topic;
mod workers;

pub(crate) use log::LogVolume;

impl usher_world::types::Host for crate::CapabilityCtx {}
