//! The suite of the `cache` backend trait (to be written).
