//! End to end: `kill -9` of `usher up` in the middle of a run, then a
//! restart on the same data folder. Queues, stream checkpoints and tables
//! are in SQLite, acknowledged only after a worker answered, so the
//! restarted host picks up where the killed one was: everything converges,
//! nothing is lost (delivery is at least once; the workers are idempotent).

use crate::common;

use std::time::{Duration, Instant};

use common::{bump, converge, remove, Platform};

const CAMPAIGN: &str = "c-kill";
const ENTRIES: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_run_and_restart_converges() {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let tables = platform.embedded().tables();
    let users: Vec<String> = (0..ENTRIES).map(|i| format!("u{i:05}")).collect();

    // Writes in the background, going on across the kill.
    let writer = {
        let (tables, users) = (tables.clone(), users.clone());
        tokio::spawn(async move {
            for (i, user) in users.iter().enumerate() {
                bump(tables.as_ref(), CAMPAIGN, user).await;
                if i % 7 == 0 {
                    bump(tables.as_ref(), CAMPAIGN, user).await;
                }
                if i % 50 == 0 {
                    // Leave the SQLite write lock to the host now and then.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };

    // Wait until replication is under way (the first entry cleared), then
    // kill -9 in the middle of it.
    let first = vec![users[0].clone()];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (present, flagged) = common::table_state(tables.as_ref(), CAMPAIGN, &first).await;
        if present.len() == 1 && flagged == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not start: {}\n{}",
            platform.status(),
            common::tail(&platform.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    platform.kill9();
    // What the killed host left undone (the writes may still be going on).
    let (_, flagged) = common::table_state(tables.as_ref(), CAMPAIGN, &users).await;
    assert!(
        flagged > 0,
        "everything replicated before the kill; the test proves nothing"
    );
    writer.await.expect("writer");
    eprintln!("killed mid-run; {flagged} of {ENTRIES} entries still flagged");

    // More changes while it is down.
    for (i, user) in users.iter().enumerate() {
        if i % 10 == 5 {
            remove(tables.as_ref(), CAMPAIGN, user).await;
        }
    }

    platform.start().await;
    let state = converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(state.len(), ENTRIES - ENTRIES / 10);
    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
}
