//! The suite of the `objects` backend trait (to be written).
