//! `registration/upsert-users` (batch-worker): upserts fans' user records
//! from the `user-info` queue into the User Service.
//!
//! **Message.** A body is either one user record
//! `{"globalUserId","email","firstName"?,"lastName"?,"country"?,"locale"?,…}`
//! or several: `{"users":[record…]}` (a body with a `users` key is always
//! the second form). The records are those of `usher_domain::user` (the
//! User Service's own check, [`usher_domain::user::validate`]).
//!
//! **Processing.** The valid records of the whole batch are merged by
//! `globalUserId` (the later message wins, as the queue's order would), cut
//! in chunks of 25 and sent as `POST /users/batch-upsert {"users":[…]}`,
//! every chunk of the batch in one `services::call_many` (at most 256
//! requests per call).
//!
//! **Failures, per message.** A message fails (and is retried; after
//! `max_receive_count` receives it goes to the dead-letter queue,
//! `user-info-dlq`) when
//! - its body is not JSON, not an object, or `users` is not an array;
//! - one of its records is invalid (the reason is logged with the message
//!   id and the record's index; the message's valid records are still
//!   upserted: upserting is idempotent, so the retry does no harm);
//! - the User Service refused one of its records (`failures` of the answer);
//! - the call of a chunk holding one of its records failed, or answered
//!   anything but 200 with `{"upserted","failures"}`.
//!
//! Settings: `service` (default `users`).

mod logic;

pub use logic::{parse_message, process, MessageError, Settings, MAX_REQUESTS_PER_CALL};

use usher_sdk::{BatchResult, BatchWorker, Message};

/// The worker.
pub struct UpsertUsers;

impl BatchWorker for UpsertUsers {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(UpsertUsers);
