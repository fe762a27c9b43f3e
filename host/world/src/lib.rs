//! Host-side bindings for the `usher:platform` WIT package.
//!
//! This crate is the only place that runs `bindgen!` over `wit/`. Every
//! capability import is generated `async` and `trappable`: a host function
//! returns `wasmtime::Result<T>`, where `T` carries the guest-visible
//! `types::Error` variant and an `Err` of the outer result is a host fault
//! that traps the invocation. Every import is also generated with `tracing`:
//! each call is a `wit-bindgen import` span (TRACE, with the interface and
//! the function) under the engine's `invocation` span.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "usher:platform/platform-host",
        imports: { default: async | trappable | tracing },
        exports: { default: async },
    });
}

pub use bindings::exports::usher::platform::{
    batch_handler, http_handler, invoke_handler, scheduled_handler, stream_handler,
};
pub use bindings::usher::platform::{
    cache, codec, config, events, log, objects, queue, services, table, topic, types, workers,
};
pub use bindings::PlatformHost;

/// The version of the `usher:platform` package this host implements.
pub const PLATFORM_VERSION: &str = "0.1.4";

/// The package prefix of every capability and handler interface.
pub const PLATFORM_PACKAGE: &str = "usher:platform";
