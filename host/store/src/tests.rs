use std::sync::Arc;

use semver::Version;

use crate::*;

const WORKER: &str = "replication/save-entries";

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// Puts `bytes` and records them as `version` of `worker`.
fn push(store: &LocalStore, worker: &str, version: &str, bytes: &[u8]) -> Digest {
    let digest = store.put_component(bytes).unwrap();
    store.record_version(worker, &v(version), &digest).unwrap();
    digest
}

#[test]
fn open_creates_the_layout() {
    let (_dir, store) = store();
    for sub in ["components", "precompiled", "versions", "releases"] {
        assert!(store.root().join(sub).is_dir(), "{sub}");
    }
    // Opening again is fine.
    LocalStore::open(store.root()).unwrap();
}

#[test]
fn put_and_read_components() {
    let (_dir, store) = store();
    let bytes = b"\0asm component bytes";
    let digest = store.put_component(bytes).unwrap();
    assert_eq!(digest, Digest::of(bytes));
    let path = store.component_path(&digest);
    assert_eq!(
        path,
        store
            .root()
            .join("components")
            .join(format!("sha256-{}.wasm", digest.hex()))
    );
    assert!(store.has_component(&digest));
    assert_eq!(store.read_component(&digest).unwrap(), bytes);

    // Idempotent; no temporary files are left behind.
    assert_eq!(store.put_component(bytes).unwrap(), digest);
    let names: Vec<_> = std::fs::read_dir(store.root().join("components"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let other = Digest::of(b"never stored");
    assert!(!store.has_component(&other));
    assert!(matches!(
        store.read_component(&other),
        Err(StoreError::MissingComponent { digest, .. }) if digest == other
    ));
}

#[test]
fn tampered_components_are_detected_and_repaired_by_put() {
    let (_dir, store) = store();
    let bytes = b"original";
    let digest = store.put_component(bytes).unwrap();
    let path = store.component_path(&digest);
    std::fs::write(&path, b"tampered").unwrap();
    match store.read_component(&digest) {
        Err(StoreError::DigestMismatch {
            expected,
            actual,
            path: p,
        }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, Digest::of(b"tampered"));
            assert_eq!(p, path);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    let msg = store.read_component(&digest).unwrap_err().to_string();
    assert!(msg.contains("modified or corrupted"), "{msg}");

    // Putting the real bytes again restores the file.
    store.put_component(bytes).unwrap();
    assert_eq!(store.read_component(&digest).unwrap(), bytes);
}

#[test]
fn precompiled_artifacts() {
    let (_dir, store) = store();
    let digest = store.put_component(b"component").unwrap();
    let key = "wasmtime-48.0.8-x86_64-abc123";
    assert!(!store.has_precompiled(&digest, key));
    let path = store.write_precompiled(&digest, key, b"cwasm").unwrap();
    assert_eq!(path, store.precompiled_path(&digest, key));
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("sha256-{}.{key}.cwasm", digest.hex())
    );
    assert!(store.has_precompiled(&digest, key));
    assert!(!store.has_precompiled(&digest, "other-engine"));
    assert_eq!(std::fs::read(&path).unwrap(), b"cwasm");
    // Rewriting replaces the artifact.
    store.write_precompiled(&digest, key, b"cwasm2").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"cwasm2");

    for bad in ["", "../escape", "a/b", ".hidden"] {
        assert!(matches!(
            store.write_precompiled(&digest, bad, b"x"),
            Err(StoreError::InvalidName { .. })
        ));
    }
}

#[test]
fn versions_are_recorded_sorted_and_idempotent() {
    let (_dir, store) = store();
    assert!(store.versions(WORKER).unwrap().is_empty());
    assert!(store.workers().unwrap().is_empty());

    let d2 = push(&store, WORKER, "0.2.0", b"two");
    let d10 = push(&store, WORKER, "0.10.0", b"ten");
    let d1 = push(&store, WORKER, "0.1.0", b"one");
    push(&store, "replication/retry-score", "1.0.0", b"retry");

    let versions = store.versions(WORKER).unwrap();
    let listed: Vec<(String, Digest)> = versions
        .iter()
        .map(|e| (e.version.to_string(), e.digest))
        .collect();
    assert_eq!(
        listed,
        [
            ("0.1.0".to_string(), d1),
            ("0.2.0".to_string(), d2),
            ("0.10.0".to_string(), d10)
        ]
    );
    assert!(
        versions[0].pushed_at.ends_with('Z'),
        "{}",
        versions[0].pushed_at
    );
    assert_eq!(
        store.workers().unwrap(),
        ["replication/retry-score", "replication/save-entries"]
    );

    // Same version, same bytes: nothing changes.
    let again = store.record_version(WORKER, &v("0.2.0"), &d2).unwrap();
    assert_eq!(again, versions[1]);
    assert_eq!(store.versions(WORKER).unwrap(), versions);

    // The file has the documented shape.
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.root().join("versions/replication~save-entries.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["versions"][0]["version"], "0.1.0");
    assert_eq!(json["versions"][0]["digest"], d1.to_string());
    assert!(json["versions"][0]["pushed_at"].is_string());
}

#[test]
fn version_conflicts_are_refused() {
    let (_dir, store) = store();
    let d1 = push(&store, WORKER, "0.1.0", b"one");
    let other = store.put_component(b"other bytes").unwrap();
    match store.record_version(WORKER, &v("0.1.0"), &other) {
        Err(StoreError::VersionConflict {
            worker,
            version,
            existing,
            new,
        }) => {
            assert_eq!(worker, WORKER);
            assert_eq!(*version, v("0.1.0"));
            assert_eq!(existing, d1);
            assert_eq!(new, other);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.find_version(WORKER, &v("0.1.0")).unwrap().digest, d1);
}

#[test]
fn recording_needs_the_component() {
    let (_dir, store) = store();
    let absent = Digest::of(b"absent");
    assert!(matches!(
        store.record_version(WORKER, &v("0.1.0"), &absent),
        Err(StoreError::MissingComponent { .. })
    ));
    assert!(store.versions(WORKER).unwrap().is_empty());
}

#[test]
fn missing_versions_list_the_known_ones() {
    let (_dir, store) = store();
    push(&store, WORKER, "0.1.0", b"one");
    push(&store, WORKER, "0.2.0", b"two");
    let err = store.find_version(WORKER, &v("0.3.0")).unwrap_err();
    assert!(matches!(&err, StoreError::UnknownVersion { known, .. } if known.len() == 2));
    let msg = err.to_string();
    assert!(
        msg.contains("replication/save-entries 0.3.0 was never pushed"),
        "{msg}"
    );
    assert!(msg.contains("0.1.0, 0.2.0"), "{msg}");

    let msg = store
        .find_version("replication/none", &v("1.0.0"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("known versions: none"), "{msg}");

    let err = store.promote("dev", WORKER, &v("9.9.9")).unwrap_err();
    assert!(matches!(err, StoreError::UnknownVersion { .. }), "{err}");
    assert!(store.release("dev").unwrap().workers.is_empty());
}

#[test]
fn invalid_names_are_refused() {
    let (_dir, store) = store();
    let d = store.put_component(b"x").unwrap();
    for bad in [
        "", "/lead", "trail/", "a//b", "../up", "a/../b", "til~de", "sp ace",
    ] {
        assert!(
            matches!(
                store.record_version(bad, &v("0.1.0"), &d),
                Err(StoreError::InvalidName { kind: "worker", .. })
            ),
            "{bad}"
        );
    }
    for bad in ["", "../prod", "a/b", ".hidden"] {
        assert!(
            matches!(
                store.release(bad),
                Err(StoreError::InvalidName {
                    kind: "environment",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

#[test]
fn promote_and_rollback_sequence() {
    let (_dir, store) = store();
    let d1 = push(&store, WORKER, "0.1.0", b"one");
    let d2 = push(&store, WORKER, "0.2.0", b"two");
    let d3 = push(&store, WORKER, "0.3.0", b"three");

    assert_eq!(store.release("prod").unwrap(), Release::default());
    assert_eq!(store.live("prod", WORKER).unwrap(), None);
    assert!(!store.release_path("prod").exists());

    let e1 = store.promote("prod", WORKER, &v("0.1.0")).unwrap();
    assert_eq!((e1.version.clone(), e1.digest), (v("0.1.0"), d1));
    assert!(e1.history.is_empty());
    assert!(e1.promoted_at.ends_with('Z'));

    // Promoting the live version again is a no-op.
    assert_eq!(store.promote("prod", WORKER, &v("0.1.0")).unwrap(), e1);

    store.promote("prod", WORKER, &v("0.2.0")).unwrap();
    let e3 = store.promote("prod", WORKER, &v("0.3.0")).unwrap();
    assert_eq!(e3.digest, d3);
    assert_eq!(
        e3.history,
        [
            HistoryEntry {
                version: v("0.1.0"),
                digest: d1
            },
            HistoryEntry {
                version: v("0.2.0"),
                digest: d2
            },
        ]
    );
    assert_eq!(store.live("prod", WORKER).unwrap(), Some(e3.clone()));
    // Other environments are separate.
    assert_eq!(store.live("dev", WORKER).unwrap(), None);
    assert_eq!(store.environments().unwrap(), ["prod"]);

    // The release file has the documented shape.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.release_path("prod")).unwrap()).unwrap();
    let entry = &json["workers"][WORKER];
    assert_eq!(entry["version"], "0.3.0");
    assert_eq!(entry["digest"], d3.to_string());
    assert!(entry["promoted_at"].is_string());
    assert_eq!(entry["history"][1]["version"], "0.2.0");

    let back = store.rollback("prod", WORKER).unwrap();
    assert_eq!((back.version.clone(), back.digest), (v("0.2.0"), d2));
    assert_eq!(back.history.len(), 1);
    let back = store.rollback("prod", WORKER).unwrap();
    assert_eq!(back.version, v("0.1.0"));
    assert!(back.history.is_empty());

    let err = store.rollback("prod", WORKER).unwrap_err();
    assert!(matches!(err, StoreError::NoHistory { .. }), "{err}");
    assert!(err.to_string().contains("no earlier release"), "{err}");
    assert_eq!(
        store.live("prod", WORKER).unwrap().unwrap().version,
        v("0.1.0")
    );

    let err = store
        .rollback("prod", "replication/retry-score")
        .unwrap_err();
    assert!(matches!(err, StoreError::NotReleased { .. }), "{err}");

    // Promoting after a rollback goes forward again.
    let fwd = store.promote("prod", WORKER, &v("0.3.0")).unwrap();
    assert_eq!(fwd.history.len(), 1);
    assert_eq!(fwd.history[0].version, v("0.1.0"));
}

#[test]
fn history_is_capped() {
    let (_dir, store) = store();
    for i in 0..30u64 {
        push(
            &store,
            WORKER,
            &format!("0.{i}.0"),
            format!("build {i}").as_bytes(),
        );
        store
            .promote("dev", WORKER, &Version::new(0, i, 0))
            .unwrap();
    }
    let live = store.live("dev", WORKER).unwrap().unwrap();
    assert_eq!(live.version, v("0.29.0"));
    assert_eq!(live.history.len(), HISTORY_LIMIT);
    assert_eq!(live.history[0].version, v("0.9.0"));
    assert_eq!(live.history[HISTORY_LIMIT - 1].version, v("0.28.0"));
}

#[test]
fn promote_refuses_a_version_whose_component_is_gone() {
    let (_dir, store) = store();
    let d = push(&store, WORKER, "0.1.0", b"one");
    std::fs::remove_file(store.component_path(&d)).unwrap();
    assert!(matches!(
        store.promote("dev", WORKER, &v("0.1.0")),
        Err(StoreError::MissingComponent { .. })
    ));
}

#[test]
fn corrupt_release_file_is_reported() {
    let (_dir, store) = store();
    std::fs::write(store.release_path("dev"), b"{not json").unwrap();
    let err = store.release("dev").unwrap_err();
    assert!(matches!(err, StoreError::Json { .. }), "{err}");
    assert!(err.to_string().contains("dev.json"), "{err}");
}

#[test]
fn concurrent_promotes_do_not_lose_each_other() {
    let (_dir, store) = store();
    let workers = ["replication/save-entries", "replication/retry-score"];
    for w in workers {
        push(&store, w, "1.0.0", format!("{w} a").as_bytes());
        push(&store, w, "2.0.0", format!("{w} b").as_bytes());
    }
    let root = Arc::new(store.root().to_path_buf());
    let threads: Vec<_> = workers
        .into_iter()
        .map(|w| {
            let root = Arc::clone(&root);
            std::thread::spawn(move || {
                // Each thread opens its own store, as another process would.
                let store = LocalStore::open(root.as_path()).unwrap();
                for i in 0..50 {
                    let version = if i % 2 == 0 { v("1.0.0") } else { v("2.0.0") };
                    store.promote("prod", w, &version).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let release = store.release("prod").unwrap();
    assert_eq!(release.workers.len(), 2);
    for w in workers {
        let entry = &release.workers[w];
        // The 50th promote (i = 49) is 2.0.0; each of the 49 later promotes
        // pushed the previous live version, capped at the limit.
        assert_eq!(entry.version, v("2.0.0"), "{w}");
        assert_eq!(entry.history.len(), 49.min(HISTORY_LIMIT), "{w}");
        assert_eq!(entry.history.last().unwrap().version, v("1.0.0"), "{w}");
    }
    // No temporary files are left in releases/.
    let leftovers: Vec<_> = std::fs::read_dir(store.root().join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_record_version_of_one_worker() {
    let (_dir, store) = store();
    let root = store.root().to_path_buf();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let store = LocalStore::open(root).unwrap();
                for i in 0..25u64 {
                    let version = Version::new(t, i, 0);
                    let d = store.put_component(format!("{t}.{i}").as_bytes()).unwrap();
                    store.record_version(WORKER, &version, &d).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.versions(WORKER).unwrap().len(), 50);
}
