// Two functions of one module given one `name`: they would share a stats
// row, metric labels and function invalidations.
use acgs_cache::cached;

#[cached(ttl = "5m", name = "lookup")]
async fn find_user(id: u64) -> String {
    format!("user {id}")
}

#[cached(ttl = "5m", name = "lookup")]
async fn find_order(id: u64) -> String {
    format!("order {id}")
}

struct Accounts;

impl Accounts {
    #[cached(ttl = "5m", name = "balance", skip(self))]
    pub async fn balance(&self, id: u64) -> u64 {
        id
    }
}

impl Accounts {
    #[cached(ttl = "5m", name = "balance", skip(self))]
    pub async fn balance_again(&self, id: u64) -> u64 {
        id + 1
    }
}

fn main() {}
