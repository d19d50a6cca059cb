use std::collections::HashMap;

use acgs_cache::cached;

#[cached(ttl = "static_configuration")]
async fn settings(overrides: HashMap<String, String>) -> usize {
    overrides.len()
}

fn main() {}
