//! `testing/spin-forever` (invoke-worker): never returns, so the host's
//! time limit (epoch deadline) must stop it. Imports no capability.

use std::hint::black_box;

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// Counts up until `limit` (forever when `None`); the counter goes through
/// `black_box` so the loop cannot be optimized away.
pub fn spin(limit: Option<u64>) -> u64 {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
        if limit.is_some_and(|limit| n >= limit) {
            return n;
        }
    }
}

/// The worker.
pub struct SpinForever;

impl InvokeWorker for SpinForever {
    fn handle(_payload: Value) -> Result<Value, InvokeError> {
        let n = spin(None);
        Ok(Value::from(n))
    }
}

usher_sdk::export_invoke_worker!(SpinForever);

#[cfg(test)]
mod tests {
    #[test]
    fn spins_until_the_limit() {
        assert_eq!(super::spin(Some(10_000)), 10_000);
    }
}
