//! End to end: a new version of replication/save-entries is pushed and
//! promoted (`usher push` + `usher promote`, from another process) while
//! `usher up` is replicating a steady stream of writes. The running host
//! notices the release, loads the new version off the hot path and swaps
//! it in: no invocation fails, and everything converges.
//!
//! The new version is the built component with an extra custom section, so
//! it is a different component (another digest, compiled anew), with the
//! same behaviour.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bump, converge, failures, root, with_custom_section, Platform};

const CAMPAIGN: &str = "c-swap";
const ENTRIES: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_under_load_fails_no_invocation() {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let tables = platform.embedded().tables();
    let users: Arc<Vec<String>> = Arc::new((0..ENTRIES).map(|i| format!("u{i:05}")).collect());

    // A steady stream of writes in the background.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (tables, users, writing) = (tables.clone(), users.clone(), writing.clone());
        tokio::spawn(async move {
            for user in users.iter() {
                bump(tables.as_ref(), CAMPAIGN, user).await;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            writing.store(false, Ordering::SeqCst);
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Push and promote a new version while the writes and the replication go on.
    let built = std::fs::read(root().join("build/components/replication/save-entries.wasm"))
        .expect("the built save-entries component");
    let new = with_custom_section(built, "usher-e2e-swap", b"0.9.0");
    let file = platform.tmp.path().join("save-entries-0.9.0.wasm");
    std::fs::write(&file, new).expect("write");
    platform.run(&[
        "push",
        "replication/save-entries",
        file.to_str().expect("utf-8"),
        "--version",
        "0.9.0",
    ]);
    platform.run(&["promote", "replication/save-entries", "0.9.0"]);
    platform
        .wait_for_version("replication/save-entries", "0.9.0", Duration::from_secs(20))
        .await;
    assert!(
        writing.load(Ordering::SeqCst),
        "the writes were over before the swap; the test proves nothing"
    );
    let saved_at_swap = platform.status()["workers"]["replication/save-entries"]["succeeded"]
        .as_u64()
        .unwrap_or(0);
    writer.await.expect("writer");

    converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(300),
    )
    .await;
    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    let status = platform.status();
    assert_eq!(
        status["workers"]["replication/save-entries"]["version"],
        "0.9.0"
    );
    for (worker, (failed, given_up)) in failures(&status) {
        assert_eq!((failed, given_up), (0, 0), "{worker}: {status}");
    }
    // Messages were saved before the swap and after it (by the new version).
    let saved = status["workers"]["replication/save-entries"]["succeeded"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        saved_at_swap > 0 && saved > saved_at_swap,
        "{saved_at_swap} then {saved}"
    );
}
