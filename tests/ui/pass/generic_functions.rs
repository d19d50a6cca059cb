//! Generic functions need no `key`: each instantiation has its own entries.
use acgs_cache::cached;
use serde::{de::DeserializeOwned, Serialize};

pub trait Loadable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    fn load(id: u64) -> Self;
}

impl Loadable for u64 {
    fn load(id: u64) -> Self {
        id
    }
}

impl Loadable for String {
    fn load(id: u64) -> Self {
        id.to_string()
    }
}

#[cached(ttl = "policy_decision")]
async fn lookup<T: Serialize + Send + Sync>(id: T) -> String {
    let _ = id;
    String::new()
}

#[cached(ttl = "policy_decision", key = id)]
async fn load<T: Loadable>(id: u64) -> T {
    T::load(id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(lookup(7u8).await, "");
    assert_eq!(load::<u64>(7).await, 7);
    assert_eq!(load::<String>(7).await, "7");
    invalidate_load::<u64>(7).await.unwrap();
    invalidate_all_load::<String>().await.unwrap();
    let _entry = warm_entry_load::<u64>(8, 8u64);
}
