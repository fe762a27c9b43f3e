//! Every limit the capability layer puts on a guest's calls, in one place.
//!
//! A call over a limit is refused with the guest-visible `invalid` error
//! (never a trap), so a worker can handle it.

/// The most records one capability call may carry (table writes, messages,
/// events, codec records, keys of a `batch-get`).
pub const MAX_BATCH: usize = 10_000;

/// The most values one `codec.salted-sha256-hex` may hash.
pub const MAX_HASH_VALUES: usize = 100_000;

/// The largest page of a table query or object listing; a guest asking for
/// more (or for nothing) gets this many.
pub const MAX_PAGE: u32 = 1000;

/// The most requests one `services.call-many` may carry.
pub const MAX_SERVICE_CALLS: usize = 256;

/// How many requests of one `services.call-many` are in flight at once.
pub const SERVICE_CALLS_IN_FLIGHT: usize = 32;

/// The largest log line, in bytes: its message and its fields' names and
/// values. A longer line is cut (the message first, then the fields in
/// order) and its message ends in `…[truncated N bytes]`.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// The most log bytes (lines as cut) one invocation writes. The first line
/// that does not fit and every line after it are dropped; at the end of the
/// invocation one line says how many (`…[dropped N log lines (M bytes) …]`).
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 256 * 1024;

/// The most bytes of a guest's stdout and stderr (one capture) kept per
/// invocation, for trap errors: the first and the last half, with
/// `…[truncated N bytes]…` between. Writing more never traps. 16 KiB, what
/// WASI's pipe held before, so trap messages do not grow.
pub const MAX_GUEST_OUTPUT_BYTES: usize = 16 * 1024;
