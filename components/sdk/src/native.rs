//! The capability layer of a native build.
//!
//! The module exists on every target (so that tests type-check for
//! wasm32 too), but inside a component the capability calls always go to
//! the host: an installed backend is never called there.
//!
//! Inside a component every capability call crosses to the host. Natively
//! (`cargo test`, benches) it goes to the [`Backend`] installed on the
//! current thread, so a worker's logic calls `usher_sdk::table::*`,
//! `queue::*`, `services::*` and `config::*` directly, with no "ports"
//! trait of its own, and its native tests install a fake: the in-memory
//! [`Fakes`](crate::fakes::Fakes) of the `fakes` feature, or their own
//! implementation of [`Backend`]. Without a backend every call answers
//! [`Error::Unsupported`] ("… only inside a component").
//!
//! Documents cross as `serde_json::Value` (not text): a native run
//! serializes nothing a fake would parse straight back.
//!
//! ```
//! use usher_sdk::native::{self, Backend};
//! use usher_sdk::{queue, Result};
//!
//! struct Counting(usize);
//! impl Backend for Counting {
//!     fn queue_send_batch(&mut self, _queue: &str, messages: &[queue::Outgoing]) -> Result<Vec<Result<String>>> {
//!         self.0 += messages.len();
//!         Ok(messages.iter().map(|_| Ok(format!("id-{}", self.0))).collect())
//!     }
//! }
//!
//! let _installed = native::install(Counting(0));
//! assert_eq!(queue::send("q", queue::Outgoing::new("hi")).unwrap(), "id-1");
//! ```

use std::cell::RefCell;

use serde_json::Value;

use crate::queue::Outgoing;
use crate::services::{Request, Response};
use crate::table::{Condition, Page, PutItem, TransactItem, UpdateItem, Write};
use crate::{Error, Result};

/// What a native build's capability calls reach. Every method has a
/// default that answers [`Error::Unsupported`] (the `…_many` ones make one
/// single call after another), so an implementation provides only what its
/// worker calls. The arguments are those of the SDK function of the same
/// name, as JSON values.
#[allow(unused_variables)]
pub trait Backend {
    /// `config::get`: the setting's value, `None` when not set.
    fn config_get(&mut self, key: &str) -> Result<Option<Value>> {
        Err(Error::native("config::get"))
    }
    /// `config::all`: every setting as one object.
    fn config_all(&mut self) -> Result<Value> {
        Err(Error::native("config::all"))
    }
    /// `table::get`.
    fn table_get(&mut self, table: &str, key: &Value) -> Result<Option<Value>> {
        Err(Error::native("table::get"))
    }
    /// `table::batch_get`: one entry per key, in order.
    fn table_batch_get(&mut self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>> {
        Err(Error::native("table::batch_get"))
    }
    /// `table::put`.
    fn table_put(
        &mut self,
        table: &str,
        item: &Value,
        condition: Option<&Condition>,
    ) -> Result<()> {
        Err(Error::native("table::put"))
    }
    /// `table::update`: the item after the update.
    fn table_update(
        &mut self,
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        condition: Option<&Condition>,
    ) -> Result<Value> {
        Err(Error::native("table::update"))
    }
    /// `table::delete`.
    fn table_delete(
        &mut self,
        table: &str,
        key: &Value,
        condition: Option<&Condition>,
    ) -> Result<()> {
        Err(Error::native("table::delete"))
    }
    /// `table::query`.
    fn table_query(
        &mut self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: Option<u32>,
        start_after: Option<&Value>,
    ) -> Result<Page> {
        Err(Error::native("table::query"))
    }
    /// `table::batch_write`: one result per write.
    fn table_batch_write(&mut self, table: &str, writes: &[Write]) -> Result<Vec<Result<()>>> {
        Err(Error::native("table::batch_write"))
    }
    /// `table::put_many`: one result per put.
    fn table_put_many(&mut self, table: &str, puts: &[PutItem]) -> Result<Vec<Result<()>>> {
        Ok(puts
            .iter()
            .map(|p| self.table_put(table, &p.item, p.condition.as_ref()))
            .collect())
    }
    /// `table::update_many`: one result (the item after) per update.
    fn table_update_many(
        &mut self,
        table: &str,
        updates: &[UpdateItem],
    ) -> Result<Vec<Result<Value>>> {
        Ok(updates
            .iter()
            .map(|u| self.table_update(table, &u.key, &u.set, &u.remove, u.condition.as_ref()))
            .collect())
    }
    /// `table::transact_write`: `Err` of the inner result with the
    /// indexes of the items whose conditions were false.
    fn table_transact_write(
        &mut self,
        table: &str,
        items: &[TransactItem],
    ) -> Result<std::result::Result<(), Vec<u32>>> {
        Err(Error::native("table::transact_write"))
    }
    /// `queue::send_batch`: one message id or error per message.
    fn queue_send_batch(
        &mut self,
        queue: &str,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String>>> {
        Err(Error::native("queue::send_batch"))
    }
    /// `services::call`.
    fn services_call(&mut self, request: &Request) -> Result<Response> {
        Err(Error::native("services::call"))
    }
    /// `services::call_many`: one result per request, in order.
    fn services_call_many(&mut self, requests: &[Request]) -> Result<Vec<Result<Response>>> {
        Ok(requests.iter().map(|r| self.services_call(r)).collect())
    }
}

thread_local! {
    static BACKEND: RefCell<Option<Box<dyn Backend>>> = const { RefCell::new(None) };
}

/// Installs `backend` for the capability calls of the current thread until
/// the returned guard is dropped (the backend installed before, if any, is
/// then back). Each test runs on its own thread, so tests do not see each
/// other's backends.
#[must_use = "the backend is uninstalled when the guard is dropped"]
pub fn install(backend: impl Backend + 'static) -> Installed {
    let previous = BACKEND.with(|b| b.borrow_mut().replace(Box::new(backend)));
    Installed { previous }
}

/// Keeps a [`Backend`] installed; see [`install`].
pub struct Installed {
    previous: Option<Box<dyn Backend>>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        BACKEND.with(|b| *b.borrow_mut() = previous);
    }
}

/// Runs `f` on the installed backend; [`Error::Unsupported`] naming `what`
/// when there is none. A backend must not call capability functions itself
/// (it is borrowed while it answers): that is an `Unsupported` error too.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn with<R>(what: &str, f: impl FnOnce(&mut dyn Backend) -> Result<R>) -> Result<R> {
    BACKEND.with(|b| match b.try_borrow_mut() {
        Ok(mut guard) => match guard.as_mut() {
            Some(backend) => f(backend.as_mut()),
            None => Err(Error::native(what)),
        },
        Err(_) => Err(Error::Unsupported(format!(
            "{what} called from inside the native backend"
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table;
    use serde_json::json;

    struct OneItem;
    impl Backend for OneItem {
        fn table_get(&mut self, table: &str, key: &Value) -> Result<Option<Value>> {
            Ok(Some(json!({"table": table, "key": key})))
        }
    }

    #[test]
    fn calls_reach_the_installed_backend_until_the_guard_drops() {
        let key = json!({"PK": "a"});
        {
            let _installed = install(OneItem);
            let item: Option<Value> = table::get("t", &key).expect("get");
            assert_eq!(item, Some(json!({"table": "t", "key": {"PK": "a"}})));
            // What the backend does not implement is unsupported.
            let err = table::delete("t", &key, None).expect_err("delete");
            assert!(matches!(err, Error::Unsupported(_)));
        }
        let err = table::get::<Value>("t", &key).expect_err("none installed");
        assert!(err.to_string().contains("only inside a component"));
    }
}
