//! The Redis cache against a real redis-server (`USHER_TEST_REDIS`, started
//! by `scripts/servers`): the cache conformance suite, key prefixes, the
//! cache-aside helper, and an unreachable server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usher_backend_conformance::{cache, server, unique_name};
use usher_backend_redis::{get_or_load, RedisCache, RedisOptions};
use usher_capabilities::{CacheBackend, CapError};

async fn redis(prefix: &str) -> Option<RedisCache> {
    let url = server("USHER_TEST_REDIS")?;
    let cache = RedisCache::connect(&url, RedisOptions::with_prefix(prefix))
        .await
        .expect("redis cache");
    cache.ping().await.expect("PING");
    Some(cache)
}

#[tokio::test]
async fn cache_conformance_on_redis() {
    let Some(cache) = redis(&unique_name("usher-test")).await else {
        return;
    };
    cache::run_all(&cache, "conformance").await;
}

#[tokio::test]
async fn deployments_do_not_see_each_others_keys() {
    let Some(a) = redis(&unique_name("deploy-a")).await else {
        return;
    };
    let Some(b) = redis(&unique_name("deploy-b")).await else {
        return;
    };
    a.set("shared", "from a", None).await.unwrap();
    assert_eq!(b.get("shared").await.unwrap(), None);
    b.set("shared", "from b", None).await.unwrap();
    assert_eq!(a.get("shared").await.unwrap().as_deref(), Some("from a"));
    a.delete("shared").await.unwrap();
    assert_eq!(b.get("shared").await.unwrap().as_deref(), Some("from b"));
}

#[tokio::test]
async fn ttl_is_set_in_redis() {
    let Some(url) = server("USHER_TEST_REDIS") else {
        return;
    };
    let prefix = unique_name("ttl");
    let cache = RedisCache::connect(&url, RedisOptions::with_prefix(&prefix))
        .await
        .unwrap();
    cache
        .set("k", "v", Some(Duration::from_secs(90)))
        .await
        .unwrap();
    cache.set("forever", "v", None).await.unwrap();
    cache
        .set("tiny", "v", Some(Duration::from_micros(1500)))
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pttl = |key: String| redis::cmd("PTTL").arg(key).to_owned();
    let ms: i64 = pttl(format!("{prefix}:k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((85_000..=90_000).contains(&ms), "PTTL {ms}");
    let ms: i64 = pttl(format!("{prefix}:forever"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ms, -1, "no expiry");
    // A sub-millisecond rest rounds up (1.5 ms → 2 ms), never to zero.
    let ms: i64 = pttl(format!("{prefix}:tiny"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ms <= 2, "PTTL {ms}");
}

async fn cache_aside_on(cache: &dyn CacheBackend) {
    let loads = Arc::new(AtomicU32::new(0));
    let loader = |value: &'static str| {
        let loads = loads.clone();
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(value.to_string())
        }
    };
    let ttl = Some(Duration::from_secs(1));
    let v = get_or_load(cache, "eligibility:fan-1", ttl, loader("yes"))
        .await
        .unwrap();
    assert_eq!(v, "yes");
    let v = get_or_load(cache, "eligibility:fan-1", ttl, loader("changed"))
        .await
        .unwrap();
    assert_eq!(v, "yes", "the cached value, not a second load");
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    let err = get_or_load(cache, "eligibility:fan-2", ttl, || async {
        Err(CapError::NotFound("fan-2".into()))
    })
    .await
    .unwrap_err();
    assert_eq!(err, CapError::NotFound("fan-2".into()));
    assert_eq!(
        cache.get("eligibility:fan-2").await.unwrap(),
        None,
        "nothing cached on error"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = get_or_load(cache, "eligibility:fan-1", ttl, loader("changed"))
        .await
        .unwrap();
    assert_eq!(v, "changed", "loaded again after the time to live");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cache_aside_on_redis() {
    let Some(cache) = redis(&unique_name("aside")).await else {
        return;
    };
    cache_aside_on(&cache).await;
    // The method is the same helper.
    let v = cache
        .get_or_load("m", None, || async { Ok("loaded".to_string()) })
        .await
        .unwrap();
    assert_eq!(v, "loaded");
    assert_eq!(cache.get("m").await.unwrap().as_deref(), Some("loaded"));
}

#[tokio::test]
async fn cache_aside_on_the_embedded_cache() {
    cache_aside_on(&usher_backend_embedded::EmbeddedCache::new()).await;
}

/// A port nothing listens on: bind one, then drop the listener.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_not_a_panic() {
    let url = format!("redis://127.0.0.1:{}/", closed_port());
    let mut options = RedisOptions::with_prefix("down");
    options.connect_timeout = Duration::from_millis(500);
    options.response_timeout = Duration::from_millis(500);
    options.reconnect_retries = 1;
    let started = Instant::now();
    let cache = RedisCache::connect(&url, options)
        .await
        .expect("connecting is lazy");
    assert!(matches!(cache.ping().await, Err(CapError::Unavailable(_))));
    for _ in 0..3 {
        match cache.get("k").await {
            Err(CapError::Unavailable(m)) => assert!(m.contains("127.0.0.1"), "{m}"),
            other => panic!("get on an unreachable Redis gave {other:?}"),
        }
        assert!(matches!(
            cache.set("k", "v", None).await,
            Err(CapError::Unavailable(_))
        ));
        assert!(matches!(
            cache.delete("k").await,
            Err(CapError::Unavailable(_))
        ));
    }
    // Cache-aside still answers from the loader.
    let v = cache
        .get_or_load("k", None, || async { Ok("from the source".to_string()) })
        .await
        .unwrap();
    assert_eq!(v, "from the source");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
