//! The suite of the `queue` backend trait (to be written).
