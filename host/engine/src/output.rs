//! The guest's stdout and stderr: captured within a bound, never a trap.
//!
//! WASI's own `MemoryOutputPipe` traps a guest that writes past its
//! capacity (and a Rust guest's `eprintln!` panics when the stream closes),
//! so a worker printing a long diagnostic failed its whole invocation. This
//! stream accepts every write: it keeps the first and the last half of
//! [`MAX_GUEST_OUTPUT_BYTES`] and counts what falls between, so a panic
//! message written after a flood still reaches the trap error.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use usher_capabilities::limits::MAX_GUEST_OUTPUT_BYTES;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may write in one `write` (WASI's `check-write` permit).
const WRITE_PERMIT: usize = 64 * 1024;

/// What the guest wrote, within the bound.
#[derive(Debug, Default)]
struct Capture {
    /// The first bytes written, up to half the bound.
    head: Vec<u8>,
    /// The last bytes written after the head, up to half the bound.
    tail: VecDeque<u8>,
    /// Bytes written between the head and the tail, not kept.
    dropped: u64,
    /// Half the bound.
    half: usize,
}

impl Capture {
    fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < self.half {
            let n = bytes.len().min(self.half - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= self.half {
            // The write alone fills the tail: what the tail held and the
            // start of the write are dropped.
            let skip = bytes.len() - self.half;
            self.dropped += (self.tail.len() + skip) as u64;
            self.tail.clear();
            bytes = &bytes[skip..];
        } else {
            let excess = (self.tail.len() + bytes.len()).saturating_sub(self.half);
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
        self.tail.extend(bytes);
    }
}

/// A guest's stdout and stderr (one capture, in the order written). Cheap
/// to clone: every clone writes to the same capture.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<Capture>>);

impl GuestOutput {
    /// A capture keeping at most [`MAX_GUEST_OUTPUT_BYTES`].
    pub(crate) fn new() -> Self {
        Self::bounded(MAX_GUEST_OUTPUT_BYTES)
    }

    fn bounded(max: usize) -> Self {
        Self(Arc::new(Mutex::new(Capture {
            half: (max / 2).max(1),
            ..Capture::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was kept, as text, with `…[truncated N bytes]…` where bytes
    /// were dropped.
    pub(crate) fn contents(&self) -> String {
        let capture = self.lock();
        let (front, back) = capture.tail.as_slices();
        let mut text = String::from_utf8_lossy(&capture.head).into_owned();
        if capture.dropped > 0 {
            text.push_str(&format!("\n…[truncated {} bytes]…\n", capture.dropped));
        }
        let tail = [front, back].concat();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.lock().push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.lock().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let out = GuestOutput::bounded(16);
        out.lock().push(b"abc");
        out.lock().push(b"def");
        assert_eq!(out.contents(), "abcdef");
        out.lock().push(b"ghijklmnop");
        assert_eq!(out.contents(), "abcdefghijklmnop");
    }

    #[test]
    fn long_output_keeps_its_beginning_and_its_end() {
        let out = GuestOutput::bounded(8);
        out.lock().push(b"0123");
        out.lock().push(b"45");
        out.lock().push(b"6789");
        assert_eq!(out.contents(), "0123\n…[truncated 2 bytes]…\n6789");
        out.lock().push(&[b'x'; 1 << 20]);
        out.lock().push(b"end");
        assert_eq!(
            out.contents(),
            format!("0123\n…[truncated {} bytes]…\nxend", 6 + (1 << 20) - 1)
        );
    }

    #[test]
    fn the_default_bound_holds_a_mebibyte_flood_and_what_follows() {
        let mut out = GuestOutput::new();
        for _ in 0..256 {
            OutputStream::write(&mut out, bytes::Bytes::from(vec![b'e'; 4096])).expect("write");
            assert_eq!(out.check_write().expect("permit"), WRITE_PERMIT);
        }
        OutputStream::write(&mut out, bytes::Bytes::from_static(b"panicked")).expect("write");
        let text = out.contents();
        assert!(text.len() <= MAX_GUEST_OUTPUT_BYTES + 64, "{}", text.len());
        assert!(text.ends_with("panicked"));
        assert!(text.contains(&format!(
            "…[truncated {} bytes]…",
            (1 << 20) + 8 - MAX_GUEST_OUTPUT_BYTES
        )));
    }
}
