//! The suite of the `objects` backend trait.
//!
//! The caller creates one bucket for the suite; every case writes under a
//! key prefix of its own ([`unique_name`]).

use usher_capabilities::{ObjectBackend, ObjectInfo};

use crate::{expect_err, unique_name};

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// Runs every case of the suite, in order.
pub async fn all(o: &dyn ObjectBackend, bucket: &str) {
    eprintln!("objects: put_get");
    put_get(o, bucket).await;
    eprintln!("objects: list");
    list(o, bucket).await;
    eprintln!("objects: writer");
    writer(o, bucket).await;
    eprintln!("objects: writer_abort");
    writer_abort(o, bucket).await;
    eprintln!("objects: invalid_requests");
    invalid_requests(o, bucket).await;
}

/// Bytes that differ from part to part (so a part out of place shows).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Put then get returns the bytes; a put replaces; a missing object is
/// `None`.
pub async fn put_get(o: &dyn ObjectBackend, bucket: &str) {
    let prefix = unique_name("putget");
    let key = format!("{prefix}/dir/file.json");
    assert_eq!(o.get(bucket, &key).await.expect("get missing"), None);

    let body = br#"{"hello":"w\u00f6rld"}"#.to_vec();
    let info = o
        .put(bucket, &key, body.clone(), Some("application/json"))
        .await
        .expect("put");
    assert_eq!(info.key, key);
    assert_eq!(info.size, body.len() as u64);
    assert!(!info.etag.is_empty());
    assert_eq!(o.get(bucket, &key).await.expect("get"), Some(body));

    let bytes = pattern(100_000, 7);
    let again = o
        .put(bucket, &key, bytes.clone(), None)
        .await
        .expect("put again");
    assert_ne!(again.etag, info.etag, "other content, other entity tag");
    assert_eq!(o.get(bucket, &key).await.expect("get"), Some(bytes));

    let empty = format!("{prefix}/empty");
    let info = o
        .put(bucket, &empty, Vec::new(), None)
        .await
        .expect("put empty");
    assert_eq!(info.size, 0);
    assert_eq!(o.get(bucket, &empty).await.expect("get"), Some(Vec::new()));

    assert_eq!(
        o.get(bucket, &format!("{prefix}/dir")).await.expect("get"),
        None,
        "a prefix of keys is not an object"
    );
}

/// Objects under a prefix in key order, sizes and entity tags as written,
/// at most `limit`.
pub async fn list(o: &dyn ObjectBackend, bucket: &str) {
    let prefix = unique_name("list");
    let keys = ["p/b", "p/a", "p/c/d", "p/c/e", "pq", "q/x"];
    let mut written: Vec<ObjectInfo> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let key = format!("{prefix}/{k}");
        written.push(
            o.put(bucket, &key, pattern(10 + i, i as u8), None)
                .await
                .expect("put"),
        );
    }
    written.sort_by(|a, b| a.key.cmp(&b.key));
    let under = |p: &str| -> Vec<ObjectInfo> {
        written
            .iter()
            .filter(|i| i.key.starts_with(&format!("{prefix}/{p}")))
            .cloned()
            .collect()
    };

    let got = o
        .list(bucket, &format!("{prefix}/p/"), 100)
        .await
        .expect("list p/");
    assert_eq!(got, under("p/"));
    assert_eq!(
        got.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["p/a", "p/b", "p/c/d", "p/c/e"].map(|k| format!("{prefix}/{k}"))
    );
    let got = o
        .list(bucket, &format!("{prefix}/p"), 100)
        .await
        .expect("list p");
    assert_eq!(got, under("p"), "a prefix need not end at a `/`");
    let got = o
        .list(bucket, &format!("{prefix}/"), 100)
        .await
        .expect("list all");
    assert_eq!(got.len(), keys.len());
    let got = o
        .list(bucket, &format!("{prefix}/p/"), 2)
        .await
        .expect("list limit 2");
    assert_eq!(got, under("p/")[..2].to_vec());
    let got = o
        .list(bucket, &format!("{prefix}/p/c/"), 100)
        .await
        .expect("list p/c/");
    assert_eq!(got, under("p/c/"));
    assert!(o
        .list(bucket, &format!("{prefix}/nothing/"), 100)
        .await
        .expect("list nothing")
        .is_empty());
}

async fn write_all(
    o: &dyn ObjectBackend,
    bucket: &str,
    key: &str,
    chunks: &[Vec<u8>],
) -> ObjectInfo {
    let mut w = o
        .open_writer(bucket, key, Some("text/csv"))
        .await
        .expect("open_writer");
    for c in chunks {
        w.write(c).await.expect("write");
    }
    w.finish().await.expect("finish")
}

/// The streaming writer: nothing is visible before `finish`; a large object
/// (over 5 MiB, written in uneven chunks, so a multipart upload has several
/// parts), a small one and an empty one come back whole.
pub async fn writer(o: &dyn ObjectBackend, bucket: &str) {
    let prefix = unique_name("writer");

    // 12.5 MiB in chunks of 1 MiB + 3 bytes and a tail.
    let key = format!("{prefix}/big.csv");
    let mut w = o
        .open_writer(bucket, &key, Some("text/csv"))
        .await
        .expect("open_writer");
    let mut whole = Vec::new();
    let mut seed = 0u8;
    while whole.len() < 12 * MIB + MIB / 2 {
        let chunk = pattern((MIB + 3).min(12 * MIB + MIB / 2 - whole.len()), seed);
        seed = seed.wrapping_add(1);
        w.write(&chunk).await.expect("write");
        whole.extend_from_slice(&chunk);
        assert_eq!(
            o.get(bucket, &key).await.expect("get while writing"),
            None,
            "nothing is visible before finish"
        );
    }
    let info = w.finish().await.expect("finish big");
    assert_eq!(info.key, key);
    assert_eq!(info.size, whole.len() as u64);
    assert!(!info.etag.is_empty());
    let got = o
        .get(bucket, &key)
        .await
        .expect("get big")
        .expect("present");
    assert_eq!(got.len(), whole.len());
    assert!(got == whole, "the big object's bytes differ");
    let listed = o.list(bucket, &key, 10).await.expect("list big");
    assert_eq!(listed, vec![info]);

    // Small: two chunks.
    let key = format!("{prefix}/small.csv");
    let info = write_all(o, bucket, &key, &[b"a,b\n".to_vec(), b"1,2\n".to_vec()]).await;
    assert_eq!(info.size, 8);
    assert_eq!(
        o.get(bucket, &key).await.expect("get small"),
        Some(b"a,b\n1,2\n".to_vec())
    );

    // Exactly 5 MiB in one chunk.
    let key = format!("{prefix}/five.bin");
    let five = pattern(5 * MIB, 99);
    let info = write_all(o, bucket, &key, std::slice::from_ref(&five)).await;
    assert_eq!(info.size, five.len() as u64);
    assert!(o.get(bucket, &key).await.expect("get five") == Some(five));

    // Nothing written.
    let key = format!("{prefix}/empty.csv");
    let info = write_all(o, bucket, &key, &[]).await;
    assert_eq!(info.size, 0);
    assert_eq!(
        o.get(bucket, &key).await.expect("get empty"),
        Some(Vec::new())
    );
}

/// An aborted writer leaves nothing, also after writing more than a part;
/// an existing object under the key stays as it was.
pub async fn writer_abort(o: &dyn ObjectBackend, bucket: &str) {
    let prefix = unique_name("abort");
    let key = format!("{prefix}/aborted.bin");
    let mut w = o.open_writer(bucket, &key, None).await.expect("open");
    w.write(&pattern(6 * MIB, 1)).await.expect("write");
    w.write(&pattern(MIB, 2)).await.expect("write");
    w.abort().await;
    assert_eq!(o.get(bucket, &key).await.expect("get"), None);
    assert!(o
        .list(bucket, &format!("{prefix}/"), 10)
        .await
        .expect("list")
        .is_empty());

    let key = format!("{prefix}/kept.txt");
    o.put(bucket, &key, b"old".to_vec(), None)
        .await
        .expect("put");
    let mut w = o.open_writer(bucket, &key, None).await.expect("open");
    w.write(b"new").await.expect("write");
    w.abort().await;
    assert_eq!(
        o.get(bucket, &key).await.expect("get"),
        Some(b"old".to_vec())
    );
}

/// An empty key is `Invalid`; an unknown bucket is `NotFound` (for a
/// writer: at open, at the first write or at finish).
pub async fn invalid_requests(o: &dyn ObjectBackend, bucket: &str) {
    expect_err(
        "put with an empty key",
        o.put(bucket, "", b"x".to_vec(), None).await,
        "invalid",
    );
    expect_err("get with an empty key", o.get(bucket, "").await, "invalid");
    expect_err(
        "open_writer with an empty key",
        o.open_writer(bucket, "", None).await.map(|_| ()),
        "invalid",
    );
    expect_err(
        "a key longer than 1024 bytes",
        o.put(bucket, &"k".repeat(1025), b"x".to_vec(), None).await,
        "invalid",
    );

    let unknown = unique_name("no-such-bucket");
    expect_err(
        "put to an unknown bucket",
        o.put(&unknown, "k", b"x".to_vec(), None).await,
        "not_found",
    );
    expect_err(
        "get from an unknown bucket",
        o.get(&unknown, "k").await,
        "not_found",
    );
    expect_err(
        "list an unknown bucket",
        o.list(&unknown, "", 10).await,
        "not_found",
    );
    let written = async {
        let mut w = o.open_writer(&unknown, "k", None).await?;
        w.write(b"x").await?;
        w.finish().await
    };
    expect_err("a writer to an unknown bucket", written.await, "not_found");
}
