//! Batches split into the requests a service accepts, with one result per
//! item, and the backoff for items a service left unprocessed.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use usher_capabilities::CapError;

/// Splits `items` (with their positions in the caller's batch) into chunks
/// of at most `max_items` whose `size` adds up to at most `max_bytes`;
/// `apart(a, b)` forces items into different chunks (same key twice).
pub(crate) fn split<T>(
    items: Vec<(usize, T)>,
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
    apart: impl Fn(&T, &T) -> bool,
) -> Vec<Vec<(usize, T)>> {
    let mut chunks: Vec<Vec<(usize, T)>> = Vec::new();
    let mut current: Vec<(usize, T)> = Vec::new();
    let mut bytes = 0;
    for (i, item) in items {
        let n = size(&item);
        let full = current.len() == max_items
            || (!current.is_empty() && bytes + n > max_bytes)
            || current.iter().any(|(_, c)| apart(c, &item));
        if full {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push((i, item));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Sends the chunks in order with `send`, which answers one result per item
/// of its chunk (by position) or fails as a whole, and stores every item's
/// result in `results`.
///
/// A chunk refused as `Invalid` as a whole (one malformed item spoils a
/// batch request) is sent again item by item, so only the bad items fail.
/// Any other failure of a whole chunk ends the batch: when nothing of it was
/// accepted yet the call fails with that error, otherwise this chunk and
/// every later one get it as their items' results (the earlier ones stand).
pub(crate) async fn send<T, R, F, Fut>(
    chunks: Vec<Vec<(usize, T)>>,
    results: &mut [Option<Result<R, CapError>>],
    send: F,
) -> Result<(), CapError>
where
    T: Clone,
    F: Fn(Vec<(usize, T)>) -> Fut,
    Fut: Future<Output = Result<Vec<(usize, Result<R, CapError>)>, CapError>>,
{
    let mut chunks = chunks.into_iter();
    while let Some(chunk) = chunks.next() {
        let outcome = send(chunk.clone()).await;
        match outcome {
            Ok(done) => {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
            Err(CapError::Invalid(_)) if chunk.len() > 1 => {
                for item in chunk {
                    let i = item.0;
                    let r = match send(vec![item]).await {
                        Ok(mut done) => done.pop().map(|(_, r)| r),
                        Err(e) => Some(Err(e)),
                    };
                    results[i] = r;
                }
            }
            Err(e) => {
                if !results.iter().any(|r| matches!(r, Some(Ok(_)))) {
                    return Err(e);
                }
                for (i, _) in chunk.into_iter().chain(chunks.flatten()) {
                    results[i] = Some(Err(e.clone()));
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Every item's result; an item the service did not answer for is a fault.
pub(crate) fn finish<R>(
    results: Vec<Option<Result<R, CapError>>>,
    what: &str,
) -> Vec<Result<R, CapError>> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(CapError::Fault(format!(
                    "{what}: the service gave no result for item {i}"
                )))
            })
        })
        .collect()
}

/// Waits between retries of items a batch call left unprocessed
/// (exponential, from 50 ms up to 5 s apart, for at most 60 s in all).
pub(crate) struct Unprocessed(backoff::ExponentialBackoff);

impl Unprocessed {
    pub(crate) fn new() -> Unprocessed {
        Unprocessed(
            ExponentialBackoffBuilder::new()
                .with_initial_interval(Duration::from_millis(50))
                .with_max_interval(Duration::from_secs(5))
                .with_max_elapsed_time(Some(Duration::from_secs(60)))
                .build(),
        )
    }

    /// Sleeps before the next retry; `false` once retrying should stop.
    pub(crate) async fn wait(&mut self) -> bool {
        match self.0.next_backoff() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_count_bytes_and_repeated_keys() {
        let items: Vec<(usize, (&str, usize))> = [("a", 4), ("b", 4), ("c", 4), ("a", 1), ("d", 9)]
            .into_iter()
            .enumerate()
            .collect();
        let positions = |chunks: Vec<Vec<(usize, (&str, usize))>>| -> Vec<Vec<usize>> {
            chunks
                .into_iter()
                .map(|c| c.into_iter().map(|(i, _)| i).collect())
                .collect()
        };
        let by_count = split(items.clone(), 2, usize::MAX, |_| 0, |_, _| false);
        assert_eq!(positions(by_count), vec![vec![0, 1], vec![2, 3], vec![4]]);
        let by_bytes = split(items.clone(), 10, 10, |t| t.1, |_, _| false);
        assert_eq!(positions(by_bytes), vec![vec![0, 1], vec![2, 3], vec![4]]);
        let apart = split(items, 10, usize::MAX, |_| 0, |a, b| a.0 == b.0);
        assert_eq!(positions(apart), vec![vec![0, 1, 2], vec![3, 4]]);
    }

    #[tokio::test]
    async fn an_invalid_chunk_is_retried_item_by_item_and_other_failures_stop() {
        let chunks = vec![
            vec![(0, 1), (1, -1), (2, 3)],
            vec![(3, 4)],
            vec![(4, 0)],
            vec![(5, 6)],
        ];
        let mut results = vec![None; 6];
        send(
            chunks,
            &mut results,
            |chunk: Vec<(usize, i32)>| async move {
                if chunk.iter().any(|(_, v)| *v < 0) {
                    return Err(CapError::Invalid("negative".into()));
                }
                if chunk.iter().any(|(_, v)| *v == 0) {
                    return Err(CapError::Unavailable("down".into()));
                }
                Ok(chunk.into_iter().map(|(i, v)| (i, Ok(v))).collect())
            },
        )
        .await
        .expect("partly sent");
        let results = finish(results, "test");
        assert_eq!(results[0], Ok(1));
        assert!(matches!(results[1], Err(CapError::Invalid(_))));
        assert_eq!(results[2], Ok(3));
        assert_eq!(results[3], Ok(4));
        assert!(matches!(results[4], Err(CapError::Unavailable(_))));
        assert!(matches!(results[5], Err(CapError::Unavailable(_))));

        // Nothing sent yet: the call fails.
        let mut results: Vec<Option<Result<i32, CapError>>> = vec![None; 1];
        let e = send(
            vec![vec![(0, 0)]],
            &mut results,
            |_: Vec<(usize, i32)>| async {
                Err::<Vec<(usize, Result<i32, CapError>)>, _>(CapError::Unavailable("down".into()))
            },
        )
        .await;
        assert!(matches!(e, Err(CapError::Unavailable(_))));
    }
}
