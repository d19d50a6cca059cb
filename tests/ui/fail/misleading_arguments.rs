use acgs_cache::{cached, Cache};

fn make() -> Cache {
    Cache::builder().build().unwrap()
}

#[cached(ttl = 300)]
async fn a(id: u64) -> u64 {
    id
}

#[cached(ttl = "300")]
async fn b(id: u64) -> u64 {
    id
}

#[cached(ttl = "5m", cache = make())]
async fn c(id: u64) -> u64 {
    id
}

#[cached(ttl = "5m", tag = ["tenant.{id}"])]
async fn d(id: u64) -> u64 {
    id
}

#[cached(ttl = "5m", lock = "yes")]
async fn e(id: u64) -> u64 {
    id
}

fn main() {}
