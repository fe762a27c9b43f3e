//! `testing/boundary-probe`: a probe-only component (no registry entry, no
//! `usher:platform` world) on its own WIT package,
//! `tests/wit/boundary-probe.wit`. Each export takes the same
//! save-entries-like batch in one encoding (JSON text, typed WIT records,
//! postcard bytes, unparsed bytes; one call per batch or one per record),
//! runs the same logic on the same serde-typed model ([`model`]) and writes
//! the batch's items back to the host in the same encoding. The bench
//! `tests/benches/invoke.rs` (`boundary_encodings`) measures them side by
//! side; `tests/tests/component_testing_boundary_probe.rs` checks they all
//! write the same items.

pub mod model;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../tests/wit/boundary-probe.wit",
        world: "usher:boundary-probe/boundary-probe",
    });

    use crate::model::{self, Change, Item, Keys, Unreadable};
    use exports::usher::boundary_probe::probe::Guest;
    use usher::boundary_probe::{sink, types};

    fn item_from_wit(e: types::Entry) -> Result<Item, Unreadable> {
        Ok(Item {
            entry: serde_json::from_str(&e.entry).map_err(|e| Unreadable(e.to_string()))?,
            pk: e.pk,
            sk: e.sk,
            campaign_id: e.campaign_id,
            global_user_id: e.global_user_id,
            verdict: e.verdict,
            needs_replication: e.needs_replication,
            version: e.version,
            created_at: e.created_at,
            updated_at: e.updated_at,
        })
    }

    fn item_to_wit(i: Item) -> types::Entry {
        types::Entry {
            entry: i.entry.to_string(),
            pk: i.pk,
            sk: i.sk,
            campaign_id: i.campaign_id,
            global_user_id: i.global_user_id,
            verdict: i.verdict,
            needs_replication: i.needs_replication,
            version: i.version,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }

    fn count(n: usize) -> Result<u32, String> {
        u32::try_from(n).map_err(|_| format!("{n} items"))
    }

    struct Probe;

    impl Guest for Probe {
        fn json(messages: Vec<String>) -> Result<u32, String> {
            let items = model::json_batch(&messages).map_err(|e| e.0)?;
            sink::put_json_many(&items);
            count(items.len())
        }

        fn json_raw(messages: Vec<String>) -> Result<u32, String> {
            let items = model::json_raw_batch(&messages).map_err(|e| e.0)?;
            sink::put_json_many(&items);
            count(items.len())
        }

        fn json_one(message: String) -> Result<u32, String> {
            match model::json_one(&message).map_err(|e| e.0)? {
                Some(item) => {
                    sink::put_json(&item);
                    Ok(1)
                }
                None => Ok(0),
            }
        }

        fn typed(changes: Vec<types::Change>) -> Result<u32, String> {
            let mut items = Vec::with_capacity(changes.len());
            for c in changes {
                let change = Change {
                    table: c.table,
                    event_name: c.event_name,
                    keys: Keys { pk: c.pk, sk: c.sk },
                    new_image: c
                        .new_image
                        .map(item_from_wit)
                        .transpose()
                        .map_err(|e| e.0)?,
                    sequence_number: c.sequence_number,
                    timestamp_ms: c.timestamp_ms,
                };
                if let Some(item) = model::step(change) {
                    items.push(item_to_wit(item));
                }
            }
            sink::put_typed_many(&items);
            count(items.len())
        }

        fn compact(batch: Vec<u8>) -> Result<u32, String> {
            let (out, n) = model::compact_batch(&batch).map_err(|e| e.0)?;
            sink::put_compact_many(&out);
            count(n)
        }

        fn pass_through(bodies: Vec<Vec<u8>>) -> Result<u32, String> {
            sink::put_bytes_many(&bodies);
            count(bodies.len())
        }
    }

    export!(Probe);
}
