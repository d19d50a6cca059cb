//! The value every benchmark caches, so their figures compare alike.

use serde::{Deserialize, Serialize};

/// A policy decision, about 60 bytes encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub policy_id: u64,
    pub subject: String,
    pub allow: bool,
    pub reason: String,
}

pub fn decision(policy_id: u64, subject: &str) -> Decision {
    Decision {
        policy_id,
        subject: subject.to_owned(),
        allow: true,
        reason: format!("policy {policy_id} permits {subject}"),
    }
}
