//! Every limit the capability layer puts on a guest's calls, in one place.
//!
//! A call over a limit is refused with the guest-visible `invalid` error
//! (never a trap), so a worker can handle it.

/// The most records one capability call may carry (table writes, messages,
/// events, codec records, keys of a `batch-get`).
pub const MAX_BATCH: usize = 10_000;

/// The largest page of a table query or object listing; a guest asking for
/// more (or for nothing) gets this many.
pub const MAX_PAGE: u32 = 1000;

/// The most requests one `services.call-many` may carry.
pub const MAX_SERVICE_CALLS: usize = 256;

/// How many requests of one `services.call-many` are in flight at once.
pub const SERVICE_CALLS_IN_FLIGHT: usize = 32;
