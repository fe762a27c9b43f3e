//! The suite of the `topic` backend trait (to be written).
