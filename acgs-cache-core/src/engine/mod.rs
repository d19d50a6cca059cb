//! The cache instance (`instance`: the `Cache` handle and its shared state)
//! and everything a call does: call-site resolution, the read and write
//! paths, flights, warming, values put by the toolkit, the log tailer.

pub(crate) mod call;
pub(crate) mod flight;
pub(crate) mod instance;
pub(crate) mod land;
mod miss;
pub(crate) mod outcome;
mod path;
pub(crate) mod publish;
mod read;
pub(crate) mod site;
pub(crate) mod store;
pub(crate) mod tailer;
pub(crate) mod warm;
