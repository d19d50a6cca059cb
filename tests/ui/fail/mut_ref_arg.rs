use acgs_cache::cached;

#[cached(ttl = "policy_decision")]
async fn evaluate(audit: &mut Vec<u64>, policy_id: u64) -> bool {
    audit.push(policy_id);
    policy_id > 3
}

struct Counter(u64);

impl Counter {
    #[cached(ttl = "policy_decision", skip(self))]
    async fn bump(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn main() {}
