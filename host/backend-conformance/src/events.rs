//! The suite of the `events` backend trait (to be written).
