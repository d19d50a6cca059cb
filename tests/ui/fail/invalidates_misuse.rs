use acgs_cache::invalidates;

#[invalidates("tenant:{tenant}")]
async fn a(tenant: String) -> Result<(), String> {
    Ok(())
}

#[invalidates("tenant.{tenant_id}")]
async fn b(tenant: String) {}

#[invalidates]
async fn c() {}

#[invalidates("rules.updated", cache = make())]
async fn d() {}

#[invalidates("rules.updated")]
fn e() {}

#[invalidates("rules.updated", when = "sometimes")]
async fn f() -> Result<(), String> {
    Ok(())
}

fn main() {}
