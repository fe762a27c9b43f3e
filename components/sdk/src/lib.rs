//! # usher-sdk
//!
//! What an Usher worker author imports. A worker is business logic compiled
//! to a WebAssembly component against the `usher:platform` WIT package; it
//! reaches the outside world only through the host's capability interfaces.
//!
//! * Capability wrappers, one module each: [`log`], [`config`], [`table`],
//!   [`queue`], [`topic`], [`objects`], [`events`], [`cache`], [`services`],
//!   [`codec`], [`workers`]; one error type, [`Error`]; JSON helpers in
//!   [`json`].
//! * Plain handler types ([`Message`], [`BatchResult`], [`Change`],
//!   [`StreamResult`], [`InvokeError`], [`Tick`], [`HttpRequest`],
//!   [`HttpResponse`]) and the traits a worker implements ([`BatchWorker`],
//!   [`StreamWorker`], [`InvokeWorker`], [`ScheduledWorker`], [`HttpWorker`]).
//! * A small router for http-workers: [`router::Router`].
//! * One export macro per world: [`export_batch_worker!`],
//!   [`export_stream_worker!`], [`export_invoke_worker!`],
//!   [`export_scheduled_worker!`], [`export_http_worker!`]. A worker crate
//!   invokes exactly one of them.
//!
//! Everything compiles natively too, so worker logic is unit-tested with
//! plain `cargo test`: there the table, queue, services and config calls
//! go to the [`native::Backend`] installed on the test's thread (with the
//! `fakes` feature, [`fakes::Fakes`]: an in-memory table, queue and
//! services with a record of every call), the other capabilities and calls
//! without a backend return [`Error::Unsupported`] ("… only inside a
//! component"), and log lines go to standard error. Worker logic calls the
//! capability functions directly; its tests install a fake:
//!
//! ```toml
//! [dev-dependencies]
//! usher-sdk = { workspace = true, features = ["fakes"] }
//! ```
//!
//! A component imports only the capability interfaces it actually calls:
//! calls that are never made are removed by the linker, and `wit-component`
//! drops the unused imports.
//!
//! ```
//! use usher_sdk::{BatchResult, BatchWorker, Message};
//!
//! struct Echo;
//!
//! impl BatchWorker for Echo {
//!     fn handle(messages: Vec<Message>) -> BatchResult {
//!         for m in &messages {
//!             usher_sdk::info!(id = m.id; "got a message");
//!         }
//!         BatchResult::all_processed(messages.len())
//!     }
//! }
//!
//! usher_sdk::export_batch_worker!(Echo);
//! # fn main() {}
//! ```

#![deny(missing_docs)]

// Lets generated bindings and the export macros name this crate
// `usher_sdk` from inside it too.
extern crate self as usher_sdk;

pub mod cache;
pub mod codec;
pub mod config;
mod error;
pub mod events;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod handler;
pub mod json;
pub mod log;
pub mod native;
pub mod objects;
pub mod queue;
pub mod router;
pub mod services;
pub mod stream_text;
pub mod table;
pub mod topic;
mod wire;
pub mod workers;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod export;

pub use error::{Error, Result};
pub use handler::{
    BatchResult, BatchWorker, Change, ChangeKind, HttpRequest, HttpResponse, HttpWorker,
    InvokeError, InvokeWorker, Message, ScheduledWorker, StreamResult, StreamWorker, Tick,
};
pub use serde_json::Value;

/// Implementation details of the export macros. Not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::{batch, caps, http, invoke, scheduled, stream};
    #[cfg(target_arch = "wasm32")]
    pub use crate::export::{
        handle_batch, handle_http, handle_invoke, handle_scheduled, handle_stream,
        handle_stream_text,
    };
}

/// Exports a [`BatchWorker`] as this component's `batch-worker` world.
///
/// ```ignore
/// usher_sdk::export_batch_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_batch_worker {
    ($worker:ty) => {
        const _: fn(::std::vec::Vec<$crate::Message>) -> $crate::BatchResult =
            <$worker as $crate::BatchWorker>::handle;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __UsherBatchWorker;
            impl $crate::__private::batch::exports::usher::platform::batch_handler::Guest
                for __UsherBatchWorker
            {
                fn handle(
                    messages: ::std::vec::Vec<
                        $crate::__private::batch::exports::usher::platform::batch_handler::Message,
                    >,
                ) -> $crate::__private::batch::exports::usher::platform::batch_handler::BatchResult
                {
                    $crate::__private::handle_batch::<$worker>(messages)
                }
            }
            $crate::__export_batch_worker_impl!(__UsherBatchWorker with_types_in $crate::__private::batch);
        };
    };
}

/// Exports a [`StreamWorker`] as this component's `stream-worker` world.
///
/// ```ignore
/// usher_sdk::export_stream_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_stream_worker {
    ($worker:ty) => {
        const _: fn(::std::vec::Vec<$crate::Change>) -> $crate::StreamResult =
            <$worker as $crate::StreamWorker>::handle;

        $crate::__export_stream_handler!($worker, handle_stream);
    };
}

/// Exports an [`InvokeWorker`] as this component's `invoke-worker` world.
///
/// ```ignore
/// usher_sdk::export_invoke_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_invoke_worker {
    ($worker:ty) => {
        const _: fn($crate::Value) -> ::core::result::Result<$crate::Value, $crate::InvokeError> =
            <$worker as $crate::InvokeWorker>::handle;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __UsherInvokeWorker;
            impl $crate::__private::invoke::exports::usher::platform::invoke_handler::Guest
                for __UsherInvokeWorker
            {
                fn handle(
                    payload: ::std::string::String,
                ) -> ::core::result::Result<
                    ::std::string::String,
                    $crate::__private::invoke::exports::usher::platform::invoke_handler::InvokeError,
                > {
                    $crate::__private::handle_invoke::<$worker>(payload)
                }
            }
            $crate::__export_invoke_worker_impl!(__UsherInvokeWorker with_types_in $crate::__private::invoke);
        };
    };
}

/// Exports a [`ScheduledWorker`] as this component's `scheduled-worker` world.
///
/// ```ignore
/// usher_sdk::export_scheduled_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_scheduled_worker {
    ($worker:ty) => {
        const _: fn($crate::Tick) -> ::core::result::Result<$crate::Value, ::std::string::String> =
            <$worker as $crate::ScheduledWorker>::handle;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __UsherScheduledWorker;
            impl $crate::__private::scheduled::exports::usher::platform::scheduled_handler::Guest
                for __UsherScheduledWorker
            {
                fn handle(
                    tick: $crate::__private::scheduled::exports::usher::platform::scheduled_handler::Tick,
                ) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                    $crate::__private::handle_scheduled::<$worker>(tick)
                }
            }
            $crate::__export_scheduled_worker_impl!(__UsherScheduledWorker with_types_in $crate::__private::scheduled);
        };
    };
}

/// Exports an [`HttpWorker`] as this component's `http-worker` world.
///
/// ```ignore
/// usher_sdk::export_http_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_http_worker {
    ($worker:ty) => {
        const _: fn($crate::HttpRequest) -> $crate::HttpResponse =
            <$worker as $crate::HttpWorker>::handle;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __UsherHttpWorker;
            impl $crate::__private::http::exports::usher::platform::http_handler::Guest
                for __UsherHttpWorker
            {
                fn handle(
                    request: $crate::__private::http::exports::usher::platform::http_handler::Request,
                ) -> $crate::__private::http::exports::usher::platform::http_handler::Response {
                    $crate::__private::handle_http::<$worker>(request)
                }
            }
            $crate::__export_http_worker_impl!(__UsherHttpWorker with_types_in $crate::__private::http);
        };
    };
}

/// Exports a [`StreamTextWorker`](crate::stream_text::StreamTextWorker) as
/// this component's `stream-worker` world: its changes' keys and images
/// arrive as the host's JSON text, unparsed.
///
/// ```ignore
/// usher_sdk::export_stream_text_worker!(MyWorker);
/// ```
#[macro_export]
macro_rules! export_stream_text_worker {
    ($worker:ty) => {
        const _: fn(::std::vec::Vec<$crate::stream_text::ChangeText>) -> $crate::StreamResult =
            <$worker as $crate::stream_text::StreamTextWorker>::handle;

        $crate::__export_stream_handler!($worker, handle_stream_text);
    };
}

/// The `stream-handler` export both stream macros make: `$adapter` (an
/// adapter of `export.rs`) runs `$worker`. Not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_stream_handler {
    ($worker:ty, $adapter:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __UsherStreamWorker;
            impl $crate::__private::stream::exports::usher::platform::stream_handler::Guest
                for __UsherStreamWorker
            {
                fn handle(
                    changes: ::std::vec::Vec<
                        $crate::__private::stream::exports::usher::platform::stream_handler::Change,
                    >,
                ) -> $crate::__private::stream::exports::usher::platform::stream_handler::StreamResult
                {
                    $crate::__private::$adapter::<$worker>(changes)
                }
            }
            $crate::__export_stream_worker_impl!(__UsherStreamWorker with_types_in $crate::__private::stream);
        };
    };
}
