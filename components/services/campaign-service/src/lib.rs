//! `services/campaign-service` (http-worker): the Campaign Service.
//! Campaigns, their markets and the markets' draw stats live in the table of
//! setting `table` (default `campaigns`; partition key `PK`, sort key `SK`):
//!
//! - a campaign: `{"PK":"CAMPAIGN#<id>","SK":"CAMPAIGN","campaign":<Campaign>,"slug","version","updatedAt"}`;
//! - a slug: `{"PK":"SLUG#<slug>","SK":"SLUG","campaignId","claim","claimVersion","claimedAt"}`
//!   (who holds it; see [`claim_slug`]);
//! - a market: `{"PK":"CAMPAIGN#<id>","SK":"MARKET#<marketId>","market":<Market>,"updatedAt"}`;
//! - a market's stats: `{"PK":"CAMPAIGN#<id>","SK":"STATS#<marketId>",…}` ([`StatsItem`]);
//! - a verdict report: `{"PK":"CAMPAIGN#<id>","SK":"REPORT#<marketId>#<reportId>","reportId","counts","state","receivedAt"}`.
//!
//! Paths are relative to the worker's route (`/services/campaigns`); bodies
//! are JSON (the shapes of `usher_domain::campaign`); errors are
//! `{"error": "..."}` (400 bad input, 404 unknown campaign, market or path,
//! 405 wrong method, 409 conflict, 503 contention or table unavailable).
//! `openapi.yaml` next to this crate is the contract.
//!
//! - `PUT /campaigns/{id}` (Campaign; `id` must be the path's) → Campaign.
//!   Checks: ids without `#`/`/`, slug `[a-z0-9-]+`, `opensAt` < `closesAt`
//!   (RFC 3339), field names unique and their constraints coherent, a
//!   countries gate with ISO 3166-1 alpha-2 codes (stored in upper case), a
//!   linked campaign other than itself. The slug is unique: 409 when another
//!   campaign holds it; a PUT with a new slug moves the campaign to it and
//!   frees the old one.
//! - `GET /campaigns/{id}`, `GET /campaigns/by-slug/{slug}` → Campaign | 404.
//! - `GET /campaigns?status=&limit=&after=` → `{"campaigns":[Campaign…],"next"}`
//!   by id, paged (an index item `{"PK":"CAMPAIGNS","SK":"CAMPAIGN#<id>","campaignId"}`
//!   per campaign, written by every PUT); for the notification workers.
//! - `PUT /campaigns/{id}/markets/{mid}` (Market; ids must match, the
//!   campaign must exist) → Market; `GET /campaigns/{id}/markets` →
//!   `{"markets":[…]}` by id; `GET /campaigns/{id}/markets/{mid}` → Market.
//! - `PUT /campaigns/{id}/markets/{mid}/stats {"status","drawId","entries","expected"}`
//!   and `GET …/stats` → MarketStats `{"campaignId","marketId","status",
//!   "drawId","entries","expected","reported","reports","updatedAt"}`.
//! - `POST /campaigns/{id}/markets/{mid}/verdict-reports {"reportId","counts","drawId"?}`
//!   → `{"counted": bool}`, counted exactly once per `reportId` ([`report_verdicts`]).

mod logic;

pub use logic::{
    campaign_by_slug, campaign_index_key, campaign_key, check_id, check_slug, claim_slug,
    get_campaign, get_market, get_stats, handle, list_campaigns, list_markets, market_key,
    parse_campaign, put_campaign, put_market, put_stats, report_key, report_verdicts, slug_key,
    stats_key, Failure, Settings, StatsItem, DEFAULT_LIST_LIMIT, MAX_ID_BYTES, MAX_LIST_LIMIT,
    STALE_CLAIM_MS, STATS_ATTEMPTS, WRITE_ATTEMPTS,
};

use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// The worker.
pub struct CampaignService;

impl HttpWorker for CampaignService {
    fn handle(request: HttpRequest) -> HttpResponse {
        usher_sdk::router::serve_with(Settings::load, |settings| handle(settings, &request))
    }
}

usher_sdk::export_http_worker!(CampaignService);
