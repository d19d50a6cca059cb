use acgs_cache::cached;

static NOT_A_CACHE: u32 = 3;

#[cached(ttl = "5m", cache = NOT_A_CACHE)]
async fn a(id: u64) -> u64 {
    id
}

fn main() {}
