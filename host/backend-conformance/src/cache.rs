//! The suite of the [`CacheBackend`] trait (a Redis-shaped key/value cache).
//!
//! The contract, as `usher-backend-embedded` and `usher-backend-redis` both
//! keep it:
//!
//! - a missing key reads as `None`; deleting it is not an error;
//! - `set` creates or overwrites; the value reads back byte for byte
//!   (empty and non-ASCII values and keys included);
//! - a key with a time to live disappears once it has passed; writing it
//!   again without one makes it permanent (as Redis `SET` does);
//! - a time to live of zero is `Invalid`; one too long to represent means
//!   "never expires".
//!
//! Every key the suite writes starts with the caller's `prefix`, so runs on
//! a shared server do not collide.

use std::time::Duration;

use usher_capabilities::{CacheBackend, CapError};

async fn get(cache: &dyn CacheBackend, key: &str) -> Option<String> {
    cache
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get `{key}`: {e}"))
}

async fn set(cache: &dyn CacheBackend, key: &str, value: &str, ttl: Option<Duration>) {
    cache
        .set(key, value, ttl)
        .await
        .unwrap_or_else(|e| panic!("set `{key}` (ttl {ttl:?}): {e}"));
}

/// Missing keys, set and get, overwrite, delete (twice), odd keys and values.
pub async fn get_set_delete(cache: &dyn CacheBackend, prefix: &str) {
    let key = format!("{prefix}:basic");
    assert_eq!(get(cache, &key).await, None, "a key never written");

    set(cache, &key, "one", None).await;
    assert_eq!(get(cache, &key).await.as_deref(), Some("one"));
    set(cache, &key, "two", None).await;
    assert_eq!(get(cache, &key).await.as_deref(), Some("two"), "overwrite");

    cache
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete `{key}`: {e}"));
    assert_eq!(get(cache, &key).await, None, "after delete");
    cache
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("deleting a missing key: {e}"));

    let odd = [
        (format!("{prefix}:empty"), String::new()),
        (
            format!("{prefix}:ünïcödé key with spaces"),
            "värde ✓ 値".to_string(),
        ),
        (format!("{prefix}:json"), r#"{"a":[1,2,{"b":null}]}"#.into()),
        (format!("{prefix}:big"), "x".repeat(256 * 1024)),
        (format!("{prefix}:lines"), "a\r\nb\n\0c".into()),
    ];
    for (k, v) in &odd {
        set(cache, k, v, None).await;
    }
    for (k, v) in &odd {
        assert_eq!(get(cache, k).await.as_ref(), Some(v), "value of `{k}`");
    }
    let other = format!("{prefix}:basic-other");
    assert_eq!(
        get(cache, &other).await,
        None,
        "a key that only shares a prefix"
    );
}

/// A key with a 1 s time to live is there at once and gone after it; its
/// neighbour without one stays; rewriting a key without a time to live
/// keeps it.
pub async fn ttl_expiry(cache: &dyn CacheBackend, prefix: &str) {
    let short = format!("{prefix}:ttl-short");
    let forever = format!("{prefix}:ttl-none");
    let rewritten = format!("{prefix}:ttl-rewritten");
    let longer = format!("{prefix}:ttl-long");
    let ttl = Some(Duration::from_secs(1));
    set(cache, &short, "soon gone", ttl).await;
    set(cache, &forever, "stays", None).await;
    set(cache, &rewritten, "first", ttl).await;
    set(cache, &rewritten, "second", None).await;
    set(
        cache,
        &longer,
        "stays a while",
        Some(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(get(cache, &short).await.as_deref(), Some("soon gone"));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(cache, &short).await, None, "after its time to live");
    assert_eq!(get(cache, &forever).await.as_deref(), Some("stays"));
    assert_eq!(
        get(cache, &rewritten).await.as_deref(),
        Some("second"),
        "rewritten without a time to live"
    );
    assert_eq!(get(cache, &longer).await.as_deref(), Some("stays a while"));

    // An expired key can be written again.
    set(cache, &short, "back", None).await;
    assert_eq!(get(cache, &short).await.as_deref(), Some("back"));
}

/// A zero time to live is refused (and leaves the old value); a very long
/// one means the key does not expire.
pub async fn ttl_bounds(cache: &dyn CacheBackend, prefix: &str) {
    let key = format!("{prefix}:ttl-zero");
    set(cache, &key, "kept", None).await;
    match cache.set(&key, "new", Some(Duration::ZERO)).await {
        Err(CapError::Invalid(_)) => {}
        other => panic!("a zero time to live gave {other:?}, not Invalid"),
    }
    assert_eq!(get(cache, &key).await.as_deref(), Some("kept"));

    let long = format!("{prefix}:ttl-max");
    set(cache, &long, "long", Some(Duration::MAX)).await;
    assert_eq!(get(cache, &long).await.as_deref(), Some("long"));
    let year = format!("{prefix}:ttl-year");
    set(
        cache,
        &year,
        "year",
        Some(Duration::from_secs(365 * 86_400)),
    )
    .await;
    assert_eq!(get(cache, &year).await.as_deref(), Some("year"));
}

/// Every test of the suite, on keys starting with `prefix`.
pub async fn run_all(cache: &dyn CacheBackend, prefix: &str) {
    get_set_delete(cache, prefix).await;
    ttl_expiry(cache, prefix).await;
    ttl_bounds(cache, prefix).await;
}
