//! `log`: structured log lines with the worker, version and correlation id,
//! bounded: a line is cut to [`MAX_LOG_LINE_BYTES`], and an invocation
//! writes at most [`MAX_LOG_BYTES_PER_INVOCATION`] (the lines after are
//! dropped, and one line at the end of the invocation says how many).

use serde_json::json;
use usher_world::{log, types};

use crate::call::pairs;
use crate::limits::{MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES};
use crate::{Caller, CapError, CapabilityCtx};

impl log::Host for CapabilityCtx {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<types::Pair>,
    ) -> wasmtime::Result<()> {
        let fields = pairs(fields);
        let original = line_bytes(&message, &fields);
        let (message, fields) = if original > MAX_LOG_LINE_BYTES {
            bounded_line(message, fields, MAX_LOG_LINE_BYTES)
        } else {
            (message, fields)
        };
        if self.log.admit(line_bytes(&message, &fields), original) {
            self.caller.log_line(level, message, fields);
        }
        Ok(())
    }

    async fn correlation_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.caller.correlation_id.clone())
    }
}

impl Caller {
    /// Emits a log line of the worker (and records it).
    pub(crate) fn log_line(
        &self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        let rendered = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let worker = &self.worker.name;
        let version = &self.worker.version;
        let cid = &self.correlation_id;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    worker,
                    version,
                    correlation_id = cid,
                    fields = rendered,
                    "{message}"
                )
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
        let level_name = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.record(
            "log",
            "write",
            "",
            || json!({"level": level_name, "message": message, "fields": fields}),
            &Ok::<_, CapError>(()),
        );
    }
}

/// What one invocation has logged, against [`MAX_LOG_BYTES_PER_INVOCATION`].
#[derive(Debug, Default)]
pub(crate) struct LogVolume {
    written: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl LogVolume {
    /// Whether a line of `bytes` (`original` before it was cut) is written.
    /// Once a line does not fit, it and every line after it are dropped
    /// and counted.
    pub(crate) fn admit(&mut self, bytes: usize, original: usize) -> bool {
        if self.dropped_lines == 0 && self.written + bytes <= MAX_LOG_BYTES_PER_INVOCATION {
            self.written += bytes;
            true
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += original as u64;
            false
        }
    }

    /// The line that says what was dropped, when anything was.
    pub(crate) fn dropped(&self) -> Option<String> {
        (self.dropped_lines > 0).then(|| {
            format!(
                "…[dropped {} log lines ({} bytes): the invocation reached its log volume of {MAX_LOG_BYTES_PER_INVOCATION} bytes]",
                self.dropped_lines, self.dropped_bytes
            )
        })
    }
}

impl Drop for CapabilityCtx {
    /// The end of the invocation: one line says what the log volume cap dropped.
    fn drop(&mut self) {
        if let Some(marker) = self.log.dropped() {
            self.caller.log_line(log::Level::Warn, marker, Vec::new());
        }
    }
}
/// A log line cut to at most `max` bytes of message and fields (names and
/// values, in order): the message first, then each field while room is
/// left. When anything was cut, the message ends in `…[truncated N bytes]`.
pub(crate) fn bounded_line(
    mut message: String,
    fields: Vec<(String, String)>,
    max: usize,
) -> (String, Vec<(String, String)>) {
    let mut room = max;
    let mut cut = take(&mut message, &mut room);
    let mut kept = Vec::with_capacity(fields.len());
    for (name, mut value) in fields {
        if name.len() > room {
            cut += name.len() + value.len();
            room = 0;
            continue;
        }
        room -= name.len();
        cut += take(&mut value, &mut room);
        kept.push((name, value));
    }
    if cut > 0 {
        message.push_str(&format!("…[truncated {cut} bytes]"));
    }
    (message, kept)
}

/// Keeps what fits of `text` in `room` (at a character boundary); the
/// bytes cut.
fn take(text: &mut String, room: &mut usize) -> usize {
    if text.len() <= *room {
        *room -= text.len();
        return 0;
    }
    let mut end = *room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    *room = 0;
    cut
}

/// The size of a log line: its message and its fields' names and values.
pub(crate) fn line_bytes(message: &str, fields: &[(String, String)]) -> usize {
    message.len() + fields.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn a_short_line_is_kept_as_it_is() {
        let (m, f) = bounded_line("hello".into(), vec![field("k", "v")], 8);
        assert_eq!((m.as_str(), f), ("hello", vec![field("k", "v")]));
    }

    #[test]
    fn a_long_message_is_cut_with_a_marker_and_its_fields_dropped() {
        let (m, f) = bounded_line("x".repeat(100), vec![field("k", "vv")], 10);
        assert_eq!(m, format!("{}…[truncated 93 bytes]", "x".repeat(10)));
        assert!(f.is_empty());
    }

    #[test]
    fn fields_are_kept_while_room_is_left() {
        let (m, f) = bounded_line(
            "msg".into(),
            vec![field("a", "1"), field("b", "0123456789"), field("c", "2")],
            10,
        );
        // 3 (msg) + 2 (a1) + 1 (b) + 4 of b's value = 10; 6 of b's value and c2 cut.
        assert_eq!(m, "msg…[truncated 8 bytes]");
        assert_eq!(f, vec![field("a", "1"), field("b", "0123")]);
        assert!(line_bytes("msg", &f) <= 10);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let (m, _) = bounded_line("ééé".into(), Vec::new(), 3);
        assert_eq!(m, "é…[truncated 4 bytes]");
    }

    #[test]
    fn the_volume_cap_drops_every_line_after_the_first_that_does_not_fit() {
        let mut v = LogVolume::default();
        assert!(v.admit(MAX_LOG_BYTES_PER_INVOCATION - 10, 500_000));
        assert_eq!(v.dropped(), None);
        assert!(!v.admit(11, 11));
        assert!(!v.admit(1, 1));
        assert_eq!(
            v.dropped(),
            Some(format!("…[dropped 2 log lines (12 bytes): the invocation reached its log volume of {MAX_LOG_BYTES_PER_INVOCATION} bytes]"))
        );
    }
}
