//! `services/code-service` (http-worker): the Code Service. It keeps pools of
//! access codes per campaign and market, reserves them for a draw, assigns
//! them to fans and marks them assigned. Route `/services/codes`; one table
//! (setting `table`, default `codes`; keys `PK`/`SK`). `openapi.yaml` next to
//! this crate is the contract.
//!
//! - `POST /pools/{campaignId}/{marketId}/codes {"codes":[≤ 5000]}` →
//!   `{"loaded","duplicates"}`
//! - `GET /pools/{campaignId}/{marketId}` →
//!   `{"campaignId","marketId","total","available","reserved","assigned","marked"}`
//!   (`assigned` includes the marked codes; total = available + reserved + assigned)
//! - `POST /reservations {"reservationId","campaignId","marketId","count" (1..=20000)}` →
//!   `{"reservationId","campaignId","marketId","codes":[…]}` (sorted); 409
//!   `{"error","available"}` when too few codes are available
//! - `GET /reservations/{reservationId}` → the same answer | 404
//! - `POST /codes/assign` and `POST /codes/mark-assigned`
//!   `{"campaignId","marketId","assignments":[{"code","globalUserId"} ≤ 100]}` →
//!   `{"assigned"|"marked","already","conflicts":[{"code","globalUserId","reason"}]}`
//!
//! ## Items
//!
//! - a code: `{"PK":"POOL#<c>#<m>","SK":"CODE#<code>","code","status",
//!   "reservationId"?,"globalUserId"?}`; `status` is one attribute holding the
//!   whole state, so that every move is one conditional update on it:
//!   `AVAILABLE` → `RESERVED#<reservationId>#<attempt>` → `ASSIGNED#<fan>` →
//!   `MARKED#<fan>`. A code is never in two reservations and never assigned
//!   to two fans because each move is conditional on the status read.
//! - a fan: `{"PK":"POOL#<c>#<m>","SK":"FAN#<globalUserId>","code"}`, created
//!   with `not-exists` before the code moves to the fan: a fan never holds two
//!   codes of one market (a move that then loses its race deletes the fan's
//!   item again, conditional on it naming that code).
//! - the counters: `{"PK":"POOL#<c>#<m>","SK":"COUNTS",total,available,reserved,
//!   assigned,marked,version,epoch,scanAfter,counted}`. An assignment's or a
//!   marking's moves are counted in the same `table::transact_write` as the
//!   moves themselves (up to 99 code updates and one `add` to the counters):
//!   a crash can never leave a move made but not counted. Loads and
//!   reservations update them after their moves by an optimistic
//!   read-modify-write (conditional on `version`, which every write of the
//!   counters raises). Exact under concurrency: only moves that succeeded
//!   are counted, a redelivered request finds its moves done and counts
//!   nothing. `scanAfter`
//!   is where a reservation starts scanning: every code before it is known not
//!   to be available; it is raised by a reservation only when no code became
//!   available since the reservation read the counters (`epoch`), and reset
//!   when a code before it becomes available.
//! - a reservation: `{"PK":"RESERVATION#<id>","SK":"RECORD",campaignId,marketId,
//!   count,phase (`PENDING#<g>`|`FAILED#<g>`|`COMPLETE`),generation,chunks,counted}`, its claims `CLAIM#<generation>#<n>` (the codes
//!   an attempt is about to take, written before it takes them) and its answer
//!   `CODES#<generation>#<n>` (1000 codes per item).
//!
//! ## Reservations
//!
//! A reservation is idempotent by `reservationId`: the record is created
//! (`not-exists`) as `PENDING#1`; each retry of a pending reservation (a crash
//! half-way, a timeout) starts a new attempt `PENDING#<g+1>` that adopts the
//! codes the earlier attempts claimed and hold, and goes on. The answer is
//! written, then the record moves to `COMPLETE` conditional on its attempt
//! still being the current one (an overtaken attempt gives its codes back
//! and answers 503, retry), then it is counted once (the counters remember
//! the last 64 reservation ids they counted) and codes still held by older
//! attempts are given back. The same id again returns the same codes. When
//! the pool has too few codes the attempt gives back everything it took,
//! marks the record `FAILED#<g>` and answers 409 with `available` (a later
//! retry is a new attempt, with a new generation: generations are never
//! reused, so an old attempt can never act for a new one). The same id with
//! another pool or count is a 409. Assignments take a RESERVED code only when
//! its reservation is COMPLETE and the code is held by the completing
//! attempt: a code of a reservation still being made, failed or overtaken is
//! never given to a fan.
//!
//! The codes of a reservation are found by scanning the pool's code items
//! from `scanAfter` (query pages of 1000) and taken with conditional updates
//! in calls of 5000 — 20,000 codes take four `update-many` calls.
//!
//! Known limit: a load's counters are updated after its writes, so a crash
//! of the host between the two leaves them off by that load (a reservation
//! is counted when it completes, and counted once when it is retried).

mod logic;

pub use logic::{
    assign, get_reservation, handle, load_codes, pool_counts, reserve, tally, Counts, Failure,
    Pool, Settings, CHUNK, COUNTED_MEMORY, COUNTER_ATTEMPTS, MAX_ASSIGNMENTS, MAX_CODE_LEN,
    MAX_LOAD,
};

use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// The worker.
pub struct CodeService;

impl HttpWorker for CodeService {
    fn handle(request: HttpRequest) -> HttpResponse {
        usher_sdk::router::serve_with(Settings::load, |settings| handle(settings, &request))
    }
}

usher_sdk::export_http_worker!(CodeService);
