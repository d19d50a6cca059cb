//! What the hot path counts into: striped counters, latency histograms, the
//! per-function counters and the public snapshot types. Below every layer that
//! counts; read out by `observe`.

pub(crate) mod counter;
pub(crate) mod latency;
pub(crate) mod stats;
