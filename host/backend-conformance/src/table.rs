//! The suite of the `table` backend trait (to be written).
