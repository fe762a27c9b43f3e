//! End to end: 10,000 fan entries written into demand-table while `usher up`
//! replicates them — inserts, then modifications and removals from several
//! writers racing on the same entries (read, then a write conditional on the
//! version read), removals followed by re-inserts — and the Entry Service
//! converges to exactly the table's state, every flag cleared.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{bump, converge, failures, remove, Platform};

const CAMPAIGN: &str = "c-race";
const ENTRIES: usize = 10_000;
const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_entries_with_racing_changes_converge() {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let tables = platform.embedded().tables();
    let users: Arc<Vec<String>> = Arc::new((0..ENTRIES).map(|i| format!("u{i:05}")).collect());

    // Inserts, from several writers at once.
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (tables, users) = (tables.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            for user in users.iter().skip(w).step_by(WRITERS) {
                bump(tables.as_ref(), CAMPAIGN, user).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("insert writer");
    }

    // Then every writer changes the same entries (every 3rd one), racing the
    // others and the replication in flight; every 10th entry is removed, and
    // every 20th of those re-inserted afterwards.
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (tables, users) = (tables.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            for (i, user) in users.iter().enumerate() {
                if i % 3 == 0 {
                    bump(tables.as_ref(), CAMPAIGN, user).await;
                }
                if i % 10 == 3 && i % WRITERS == w {
                    remove(tables.as_ref(), CAMPAIGN, user).await;
                    if i % 20 == 13 {
                        bump(tables.as_ref(), CAMPAIGN, user).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("racing writer");
    }

    let state = converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(300),
    )
    .await;
    // The races really happened: entries changed several times, entries
    // gone (a racing writer may re-create a removed entry: that is fine).
    assert!(
        (ENTRIES / 2..ENTRIES).contains(&state.len()),
        "{} entries left",
        state.len()
    );

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    // No invocation failed or was given up along the way.
    for (worker, (failed, given_up)) in failures(&platform.status()) {
        assert_eq!(
            (failed, given_up),
            (0, 0),
            "{worker}: {}",
            platform.status()
        );
    }
}
