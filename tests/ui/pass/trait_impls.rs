//! `#[cached]` in trait impls: native `async fn` and `#[async_trait]`
//! (`Send` and `?Send`), with `#[tracing::instrument]` on either side, and
//! `#[invalidates]` on a write.
use acgs_cache::{cached, invalidates};
use async_trait::async_trait;

pub trait Directory {
    fn member(&self, group: u64) -> impl std::future::Future<Output = bool> + Send;
}

pub struct Ldap;

impl Directory for Ldap {
    #[cached(ttl = "5m", skip(self))]
    async fn member(&self, group: u64) -> bool {
        group > 0
    }
}

#[async_trait]
pub trait Rules {
    async fn count(&self, tenant: String) -> u64;
    async fn traced(&self, tenant: String) -> u64;
    async fn update(&self, tenant: String) -> Result<(), String>;
}

#[async_trait(?Send)]
pub trait LocalRules {
    async fn local(&self, tenant: String) -> u64;
}

pub struct Db;

#[async_trait]
impl Rules for Db {
    #[cached(ttl = "5m", skip(self))]
    #[tracing::instrument(skip(self))]
    async fn count(&self, tenant: String) -> u64 {
        tenant.len() as u64
    }

    #[tracing::instrument(skip(self))]
    #[cached(ttl = "5m", skip(self))]
    async fn traced(&self, tenant: String) -> u64 {
        tenant.len() as u64
    }

    #[invalidates("tenant.{tenant}")]
    async fn update(&self, tenant: String) -> Result<(), String> {
        let _ = tenant;
        Ok(())
    }
}

#[async_trait(?Send)]
impl LocalRules for Db {
    #[cached(ttl = "5m", skip(self))]
    async fn local(&self, tenant: String) -> u64 {
        tenant.len() as u64
    }
}

fn main() {}
