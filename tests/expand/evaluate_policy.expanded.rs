#[doc(hidden)]
#[allow(non_upper_case_globals)]
static __acgs_site_evaluate_policy: ::acgs_cache::__private::CallSite = {
    ::acgs_cache::__private::CallSite::new(
            "evaluate_policy",
            "quickstart",
            ::acgs_cache::__private::fingerprint(
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
            ),
            &::acgs_cache::__private::policies::POLICY_DECISION,
        )
        .invalidate_on(&["governance.*"])
};
/// Evaluates `policy_id` for `subject`: cached for 5 minutes (the
/// `policy_decision` policy), dropped on any `governance.*` event.
pub async fn evaluate_policy(
    policy_id: u64,
    subject: &str,
) -> Result<Decision, DbError> {
    let __acgs_key = ::acgs_cache::__private::KeyBuilder::new()
        .arg(&policy_id)
        .arg(&subject)
        .finish();
    let __acgs_site = &__acgs_site_evaluate_policy;
    ::acgs_cache::__private::call::<
        ::acgs_cache::__private::OkOnly<Result<Decision, DbError>>,
        _,
    >(
            __acgs_site,
            __acgs_key,
            async move { query_policy_store(policy_id, subject).await },
        )
        .await
}
///Invalidates the cached entry of [`evaluate_policy`] for these arguments, on every instance (see `acgs_cache::Cache::invalidate`).
#[allow(unused_variables, clippy::needless_lifetimes)]
pub async fn invalidate_evaluate_policy(
    policy_id: u64,
    subject: &str,
) -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> {
    let key = ::acgs_cache::__private::KeyBuilder::new()
        .arg(&policy_id)
        .arg(&subject)
        .finish();
    ::acgs_cache::__private::invalidate_entry(
            "evaluate_policy",
            ::core::option::Option::None,
            key,
        )
        .await
}
///Invalidates every cached entry of [`evaluate_policy`], on every instance.
pub async fn invalidate_all_evaluate_policy() -> ::core::result::Result<
    ::acgs_cache::LogPosition,
    ::acgs_cache::Error,
> {
    ::acgs_cache::__private::invalidate_function(
            "evaluate_policy",
            ::core::option::Option::None,
        )
        .await
}
///The cache entry of [`evaluate_policy`] for these arguments holding `value`, for `acgs_cache::Warmer` (bulk priming).
#[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
pub fn warm_entry_evaluate_policy(
    policy_id: u64,
    subject: &str,
    value: <::acgs_cache::__private::OkOnly<
        Result<Decision, DbError>,
    > as ::acgs_cache::__private::Shape>::Value,
) -> ::acgs_cache::WarmEntry {
    let key = ::acgs_cache::__private::KeyBuilder::new()
        .arg(&policy_id)
        .arg(&subject)
        .finish();
    ::acgs_cache::__private::warm_entry::<
        ::acgs_cache::__private::OkOnly<Result<Decision, DbError>>,
    >(&__acgs_site_evaluate_policy, key, value, ::std::vec::Vec::new())
}
