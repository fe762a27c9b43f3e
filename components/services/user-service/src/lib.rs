//! `services/user-service` (http-worker): the User Service. Users and
//! e-mail jobs live in the table of setting `table` (default `users`;
//! partition key `PK`, sort key `SK`):
//!
//! - a user: `{"PK":"USER#<globalUserId>","SK":"PROFILE","user":<User>,"createdAt","updatedAt"}`;
//! - an e-mail job: `{"PK":"JOB#<jobId>","SK":"JOB","jobId","campaignId","marketId","templateId","fans":[…],"sendAt","receivedAt"}`
//!   (written once: its key is the idempotency key);
//! - a job's index item, for listing: `{"PK":"JOBS#<campaignId>","SK":"JOB#<marketId>#<jobId>", …summary}`.
//!
//! Paths are relative to the worker's route (`/services/users`); bodies are
//! JSON; errors are `{"error": "..."}` (400 bad input, 404, 405, 409 a jobId
//! reused for another job, 413 too many items, 5xx table failures).
//! `openapi.yaml` next to this crate is the contract.
//!
//! - `POST /users/batch-upsert {"users":[User ≤ 25]}` →
//!   `{"upserted":n,"failures":[{"index","globalUserId"?,"reason"}]}`; an
//!   invalid user (`usher_domain::user::validate`: globalUserId, a valid
//!   e-mail, an ISO 3166-1 alpha-2 country) fails alone.
//! - `GET /users/{globalUserId}` → User | 404.
//! - `POST /email-jobs {"jobId","campaignId","marketId","templateId","fans":[≤ 500],"sendAt"?}`
//!   → `{"jobId","enqueued","duplicate"}`, idempotent by jobId.
//! - `GET /email-jobs?campaignId=&marketId=&limit=&after=` →
//!   `{"jobs":[{"jobId","campaignId","marketId","templateId","fans":n,"sendAt"?,"receivedAt"}],"next"}`, paged.
//! - `GET /email-jobs/{jobId}` → the job with its `fans` list (and
//!   `triggeredAt` once triggered).
//! - `POST /email-jobs/{jobId}/trigger` → `{"jobId","triggered","triggeredAt","fans"}`:
//!   sends the job once (`triggered: true` the first time only; its trigger
//!   record `{"PK":"JOB#<jobId>","SK":"TRIGGER","jobId","triggeredAt"}` is
//!   written on condition that it does not exist); 409 before its `sendAt`.

mod logic;

pub use logic::{
    batch_upsert, enqueue_job, get_job, get_user, handle, index_key, job_key, list_jobs,
    trigger_job, trigger_key, user_key, Failure, Settings, DEFAULT_LIMIT, MAX_ID_BYTES,
    MAX_JOB_FANS, MAX_LIMIT,
};

use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// The worker.
pub struct UserService;

impl HttpWorker for UserService {
    fn handle(request: HttpRequest) -> HttpResponse {
        usher_sdk::router::serve_with(Settings::load, |settings| handle(settings, &request))
    }
}

usher_sdk::export_http_worker!(UserService);
