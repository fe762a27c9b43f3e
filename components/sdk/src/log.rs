//! Structured logging (the `log` capability).
//!
//! The host adds the worker's name, version and the invocation's correlation
//! id to every line. Natively (outside a component) lines go to standard
//! error, so worker logic that logs still runs in native unit tests.
//!
//! ```
//! use usher_sdk::{info, warn};
//! let id = "m-1";
//! info!("saved {} entries", 3);
//! warn!(message_id = id, reason = "bad json"; "dropping message");
//! ```

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics useful while developing.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the worker handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes one log line with structured `(name, value)` fields.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    sys::write(level, message, fields);
}

/// Writes a `trace` line.
pub fn trace(message: &str, fields: &[(&str, &str)]) {
    write(Level::Trace, message, fields);
}

/// Writes a `debug` line.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    write(Level::Debug, message, fields);
}

/// Writes an `info` line.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    write(Level::Info, message, fields);
}

/// Writes a `warn` line.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    write(Level::Warn, message, fields);
}

/// Writes an `error` line.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    write(Level::Error, message, fields);
}

/// The correlation id of the current invocation (natively: `"native"`).
pub fn correlation_id() -> String {
    sys::correlation_id()
}

/// Renders a line the way the native build prints it:
/// `LEVEL message name=value …`.
pub fn render(level: Level, message: &str, fields: &[(&str, &str)]) -> String {
    let mut line = format!("{:5} {message}", level.as_str().to_uppercase());
    for (name, value) in fields {
        line.push(' ');
        line.push_str(name);
        line.push('=');
        line.push_str(value);
    }
    line
}

/// Logs at a level with optional fields: `log!(Level::Info, k = v; "fmt", args)`.
///
/// Field values are anything that implements `Display`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($name:ident = $value:expr),+ ; $($arg:tt)+) => {{
        let __values: &[(&str, ::std::string::String)] =
            &[$((::core::stringify!($name), ::std::string::ToString::to_string(&$value))),+];
        let __fields: ::std::vec::Vec<(&str, &str)> =
            __values.iter().map(|(n, v)| (*n, v.as_str())).collect();
        $crate::log::write($level, &::std::format!($($arg)+), &__fields);
    }};
    ($level:expr, $($arg:tt)+) => {
        $crate::log::write($level, &::std::format!($($arg)+), &[])
    };
}

/// Logs at `trace` level: `trace!(k = v; "fmt", args)` or `trace!("fmt", args)`.
#[macro_export]
macro_rules! trace {
    ($($t:tt)+) => { $crate::log!($crate::log::Level::Trace, $($t)+) };
}

/// Logs at `debug` level: `debug!(k = v; "fmt", args)` or `debug!("fmt", args)`.
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::log!($crate::log::Level::Debug, $($t)+) };
}

/// Logs at `info` level: `info!(k = v; "fmt", args)` or `info!("fmt", args)`.
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::log!($crate::log::Level::Info, $($t)+) };
}

/// Logs at `warn` level: `warn!(k = v; "fmt", args)` or `warn!("fmt", args)`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::log!($crate::log::Level::Warn, $($t)+) };
}

/// Logs at `error` level: `error!(k = v; "fmt", args)` or `error!("fmt", args)`.
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::log!($crate::log::Level::Error, $($t)+) };
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::Level;
    use crate::bindings::caps::usher::platform::{log as wit, types::Pair};

    pub(super) fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        let fields: Vec<Pair> = fields
            .iter()
            .map(|(name, value)| Pair {
                name: (*name).to_string(),
                value: (*value).to_string(),
            })
            .collect();
        wit::write(level, message, &fields);
    }

    pub(super) fn correlation_id() -> String {
        wit::correlation_id()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::Level;

    pub(super) fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        eprintln!("{}", super::render(level, message, fields));
    }

    pub(super) fn correlation_id() -> String {
        "native".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_line() {
        assert_eq!(
            render(Level::Warn, "dropped", &[("id", "m1"), ("reason", "x")]),
            "WARN  dropped id=m1 reason=x"
        );
    }

    #[test]
    fn macros_compile_and_run_natively() {
        let id = "m-1";
        crate::info!("plain {}", 1);
        crate::warn!(message_id = id, n = 3; "with fields {}", "ok");
        crate::debug!(x = 1.5; "debug");
        assert_eq!(correlation_id(), "native");
    }
}
