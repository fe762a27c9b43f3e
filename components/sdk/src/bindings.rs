//! The raw `wit-bindgen` bindings (wasm32 only).
//!
//! The capability imports are generated once, from the `capabilities` world;
//! each handler world is generated in its own module with its imports mapped
//! onto those shared modules, so a worker crate exports exactly one world
//! through that world's export macro. Because the handler worlds use
//! `pub_export_macro`, the component-type section describing a world's
//! exports is only emitted where the export macro is expanded (in the
//! worker crate); the sections emitted here describe imports only, and
//! `wit-component` drops every import the worker never calls.

#![allow(missing_docs)]

/// The capability imports, shared by every world.
pub mod caps {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "usher:platform/capabilities",
    });
}

macro_rules! handler_world {
    ($module:ident, $world:literal, $macro_name:literal, $default_module:literal) => {
        /// The bindings of one handler world.
        pub mod $module {
            wit_bindgen::generate!({
                path: "../../wit",
                world: $world,
                with: {
                    "usher:platform/types@0.1.4": usher_sdk::__private::caps::usher::platform::types,
                    "usher:platform/log@0.1.4": usher_sdk::__private::caps::usher::platform::log,
                    "usher:platform/config@0.1.4": usher_sdk::__private::caps::usher::platform::config,
                    "usher:platform/table@0.1.4": usher_sdk::__private::caps::usher::platform::table,
                    "usher:platform/queue@0.1.4": usher_sdk::__private::caps::usher::platform::queue,
                    "usher:platform/topic@0.1.4": usher_sdk::__private::caps::usher::platform::topic,
                    "usher:platform/objects@0.1.4": usher_sdk::__private::caps::usher::platform::objects,
                    "usher:platform/events@0.1.4": usher_sdk::__private::caps::usher::platform::events,
                    "usher:platform/cache@0.1.4": usher_sdk::__private::caps::usher::platform::cache,
                    "usher:platform/services@0.1.4": usher_sdk::__private::caps::usher::platform::services,
                    "usher:platform/codec@0.1.4": usher_sdk::__private::caps::usher::platform::codec,
                    "usher:platform/workers@0.1.4": usher_sdk::__private::caps::usher::platform::workers,
                },
                pub_export_macro: true,
                export_macro_name: $macro_name,
                default_bindings_module: $default_module,
            });
        }
    };
}

handler_world!(
    batch,
    "usher:platform/batch-worker",
    "__usher_export_batch_worker",
    "usher_sdk::__private::batch"
);
handler_world!(
    stream,
    "usher:platform/stream-worker",
    "__usher_export_stream_worker",
    "usher_sdk::__private::stream"
);
handler_world!(
    invoke,
    "usher:platform/invoke-worker",
    "__usher_export_invoke_worker",
    "usher_sdk::__private::invoke"
);
handler_world!(
    scheduled,
    "usher:platform/scheduled-worker",
    "__usher_export_scheduled_worker",
    "usher_sdk::__private::scheduled"
);
handler_world!(
    http,
    "usher:platform/http-worker",
    "__usher_export_http_worker",
    "usher_sdk::__private::http"
);
