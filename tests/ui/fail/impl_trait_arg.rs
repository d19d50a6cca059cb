use acgs_cache::cached;

#[cached(ttl = "policy_decision", key = 1u8)]
async fn describe(subject: impl std::fmt::Display) -> String {
    subject.to_string()
}

fn main() {}
