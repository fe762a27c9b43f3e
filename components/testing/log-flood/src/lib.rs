//! `testing/log-flood` (invoke-worker): a hostile worker's output, to test
//! the host's limits on log lines, log volume and stderr.
//!
//! Payload (every field optional, default 0 / false):
//! `{"lines": N, "line_bytes": B, "field_bytes": F, "stderr_bytes": S, "panic": true}`
//! writes N info lines of B bytes each (with one field `pad` of F bytes when
//! F > 0) through the `log` capability, then S bytes to stderr with
//! `eprintln!`, then panics when asked (the panic message comes last on
//! stderr). Answers `{"lines": N, "stderr_bytes": S}`.

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// What a payload asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flood {
    /// Log lines to write.
    pub lines: usize,
    /// Bytes of each line's message.
    pub line_bytes: usize,
    /// Bytes of each line's one field (none when 0).
    pub field_bytes: usize,
    /// Bytes to write to stderr.
    pub stderr_bytes: usize,
    /// Panic at the end.
    pub panic: bool,
}

/// The message of the panic asked for.
pub const PANIC_MESSAGE: &str = "log-flood: the panic asked for, after the flood";

/// Reads a payload; a field that is not a non-negative integer counts as 0.
pub fn parse(payload: &Value) -> Flood {
    let size = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    };
    Flood {
        lines: size("lines"),
        line_bytes: size("line_bytes"),
        field_bytes: size("field_bytes"),
        stderr_bytes: size("stderr_bytes"),
        panic: payload.get("panic").and_then(Value::as_bool) == Some(true),
    }
}

/// The worker.
pub struct LogFlood;

impl InvokeWorker for LogFlood {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let flood = parse(&payload);
        let line = "l".repeat(flood.line_bytes);
        let pad = "f".repeat(flood.field_bytes);
        let fields: &[(&str, &str)] = if flood.field_bytes > 0 {
            &[("pad", pad.as_str())]
        } else {
            &[]
        };
        for _ in 0..flood.lines {
            usher_sdk::log::info(&line, fields);
        }
        if flood.stderr_bytes > 0 {
            eprintln!("{}", "e".repeat(flood.stderr_bytes.saturating_sub(1)));
        }
        if flood.panic {
            panic!("{PANIC_MESSAGE}");
        }
        Ok(serde_json::json!({"lines": flood.lines, "stderr_bytes": flood.stderr_bytes}))
    }
}

usher_sdk::export_invoke_worker!(LogFlood);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_flood() {
        assert_eq!(
            parse(
                &json!({"lines": 2000, "line_bytes": 65536, "stderr_bytes": 1048576, "panic": true})
            ),
            Flood {
                lines: 2000,
                line_bytes: 65536,
                field_bytes: 0,
                stderr_bytes: 1 << 20,
                panic: true
            }
        );
        assert_eq!(
            parse(&json!({"lines": -1, "panic": "yes"})),
            Flood::default()
        );
    }

    #[test]
    fn answers_what_it_wrote() {
        assert_eq!(
            LogFlood::handle(json!({"lines": 0, "stderr_bytes": 0})),
            Ok(json!({"lines": 0, "stderr_bytes": 0}))
        );
    }
}
