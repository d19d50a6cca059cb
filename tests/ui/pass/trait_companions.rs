//! `#[cached_companions]` on trait impls: native `async fn` (with a
//! generic impl) and `#[async_trait]` (written above it), with the
//! companions' visibility chosen, and a method that opts out.
use acgs_cache::{cached, cached_companions};
use async_trait::async_trait;

pub trait Directory {
    fn member(&self, group: u64) -> impl std::future::Future<Output = bool> + Send;
}

pub struct Ldap<T>(std::marker::PhantomData<T>);

#[cached_companions]
impl<T: Send + Sync> Directory for Ldap<T> {
    #[cached(ttl = "5m", skip(self))]
    async fn member(&self, group: u64) -> bool {
        group > 0
    }
}

#[async_trait]
pub trait Rules {
    async fn count(&self, tenant: String) -> u64;
    async fn other(&self, tenant: String) -> u64;
}

pub struct Db;

#[cached_companions(pub(crate))]
#[async_trait]
impl Rules for Db {
    #[cached(ttl = "5m", skip(self), tags = ["tenant.{tenant}"])]
    async fn count(&self, tenant: String) -> u64 {
        tenant.len() as u64
    }

    #[cached(ttl = "5m", skip(self), companions = false)]
    async fn other(&self, tenant: String) -> u64 {
        tenant.len() as u64
    }
}

async fn uses() -> Result<(), acgs_cache::Error> {
    let ldap = Ldap::<u8>(std::marker::PhantomData);
    ldap.invalidate_member(1).await?;
    ldap.invalidate_all_member().await?;
    let _: bool = ldap.refresh_member(1).await;
    let _: bool = ldap.member_uncached(1).await;
    let _ = ldap.warm_entry_member(1, true);
    Db.invalidate_count("acme".into()).await?;
    let _: u64 = Db.refresh_count("acme".into()).await;
    Ok(())
}

fn main() {
    let _ = uses();
}
