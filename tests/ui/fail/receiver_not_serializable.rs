use acgs_cache::cached;

pub struct PolicyService {
    pub pool: Vec<u8>,
}

impl PolicyService {
    #[cached(ttl = "policy_decision")]
    pub async fn decide(&self, policy_id: u64) -> bool {
        self.pool.len() as u64 > policy_id
    }
}

fn main() {}
