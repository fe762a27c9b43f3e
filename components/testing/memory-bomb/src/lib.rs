//! `testing/memory-bomb` (invoke-worker): allocates 1 MiB more at every
//! step and keeps it all, until allocation fails (a trap), so the host's
//! memory limit must stop it. Imports no capability.

use std::hint::black_box;

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// One step's allocation.
pub const STEP: usize = 1 << 20;

/// Allocates and keeps `STEP` bytes per step, `steps` times (forever when
/// `None`); returns the bytes held.
pub fn grow(steps: Option<usize>) -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        if steps.is_some_and(|steps| hoard.len() >= steps) {
            return hoard.iter().map(Vec::len).sum();
        }
        // Non-zero bytes: the memory is really written, not just reserved.
        hoard.push(black_box(vec![0xA5u8; STEP]));
        black_box(&hoard);
    }
}

/// The worker.
pub struct MemoryBomb;

impl InvokeWorker for MemoryBomb {
    fn handle(_payload: Value) -> Result<Value, InvokeError> {
        Ok(Value::from(grow(None)))
    }
}

usher_sdk::export_invoke_worker!(MemoryBomb);

#[cfg(test)]
mod tests {
    #[test]
    fn grows_by_a_mebibyte_per_step() {
        assert_eq!(super::grow(Some(3)), 3 * super::STEP);
    }
}
