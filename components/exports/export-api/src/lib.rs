//! `exports/export-api` (http-worker, route `/campaigns`): the export API of
//! issue 13 (seed 004's export-service router). The host verifies the
//! bearer JWT (registry `trigger.http.auth`) and hands the claims over in
//! `x-usher-claims`; this worker checks the REPORT permission and the
//! campaign scope (403), validates the request (400), and creates, lists and
//! reads export jobs (`usher_domain::exports`). `openapi.yaml` beside it.
//!
//! - `POST /campaigns/{campaignId}/exports {"exportType","marketId"?}` →
//!   202 the new job (PENDING), or 200 the identical job still PENDING or
//!   TRIGGERED; 404 unknown campaign, 400 unknown market or bad body, 413
//!   a body over 16 KiB. The job is written, then a message goes to the
//!   runner's queue (setting `queue`); a lost message is re-sent by
//!   `exports/expire-exports`.
//! - `GET /campaigns/{campaignId}/exports?limit=&after=` → `{"exports":[…],
//!   "next"}` (oldest first; `limit` 1..=100, default 20).
//! - `GET /campaigns/{campaignId}/exports/{exportId}` → the job | 404.
//!
//! Settings: `table` (default `exports`), `queue` (default `run-export`),
//! `campaign_service` (default `campaigns`; empty: the campaign and market
//! are not checked).

mod api;

pub use api::{handle, Settings};

use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// The worker.
pub struct ExportApi;

impl HttpWorker for ExportApi {
    fn handle(request: HttpRequest) -> HttpResponse {
        usher_sdk::router::serve_with(Settings::load, |settings| handle(settings, &request))
    }
}

usher_sdk::export_http_worker!(ExportApi);
