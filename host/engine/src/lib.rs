//! Usher's engine: one wasmtime `Engine` with a pooling allocator and an
//! epoch ticker; an `InstancePre` per worker version; a fresh instance per
//! invocation with the worker's memory limit and deadline; precompiled
//! artifacts cached in the store by digest and engine; and a [`Runtime`]
//! holding every worker of a registry, swapping versions atomically when a
//! new release is promoted.

#![deny(missing_docs)]

mod engine;
pub mod io;
mod output;
pub mod release;
mod runtime;

pub use engine::{
    EngineOptions, InvocationLimits, PreparedWorker, UsherEngine, DEFAULT_KEEP_RESIDENT_BYTES,
};
pub use io::*;
pub use runtime::{
    load_component, load_version, Invocation, LiveVersion, LiveWorker, LocalInvoker, Runtime, Swap,
};

use usher_registry::WorldKind;

/// A failure to build the engine or load a component.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused something.
    #[error("{0}")]
    Wasmtime(String),
    /// The component store failed.
    #[error("store: {0}")]
    Store(String),
}

/// The host refuses to start: every problem found, by worker.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct StartupError {
    /// (worker, problem) pairs.
    pub problems: Vec<(String, String)>,
}

impl StartupError {
    pub(crate) fn single(worker: &str, problem: String) -> Self {
        Self {
            problems: vec![(worker.to_string(), problem)],
        }
    }
}

fn render(problems: &[(String, String)]) -> String {
    let mut out = format!("refusing to start: {} problem(s)", problems.len());
    for (worker, problem) in problems {
        out.push_str(&format!("\n  worker {worker}: {problem}"));
    }
    out
}

/// An invocation that did not produce the worker's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The worker trapped (a panic, an `unreachable`, a host fault).
    #[error("the worker trapped: {message}{}", if guest_output.is_empty() { String::new() } else { format!(" (guest stderr: {guest_output})") })]
    Trap {
        /// The trap.
        message: String,
        /// What the guest wrote to stdout and stderr (a Rust panic message,
        /// say): at most `usher_capabilities::limits::MAX_GUEST_OUTPUT_BYTES`,
        /// its beginning and its end.
        guest_output: String,
    },
    /// The worker ran past its deadline and was stopped.
    #[error("the worker ran past its {timeout_ms} ms deadline and was stopped")]
    Deadline {
        /// The deadline.
        timeout_ms: u64,
    },
    /// The worker asked for more memory than its limit.
    #[error(
        "the worker exceeded its memory limit of {limit_bytes} bytes (asked for {requested_bytes})"
    )]
    MemoryLimit {
        /// The limit.
        limit_bytes: usize,
        /// What it asked for.
        requested_bytes: usize,
    },
    /// The input does not fit the worker's world.
    #[error("the worker is a {} but was given a {} event", expected.world_name(), got.world_name())]
    WrongInput {
        /// The worker's world.
        expected: WorldKind,
        /// The input's world.
        got: WorldKind,
    },
    /// No such worker.
    #[error("unknown worker `{name}` (known: {})", known.join(", "))]
    UnknownWorker {
        /// The name asked for.
        name: String,
        /// The names known.
        known: Vec<String>,
    },
}
