/// Evaluates `policy_id` for `subject`: cached for 5 minutes (the
/// `policy_decision` policy), dropped on any `governance.*` event.
pub async fn evaluate_policy(
    policy_id: u64,
    subject: &str,
) -> Result<Decision, DbError> {
    let __acgs_site = {
        static __ACGS_SITE: ::acgs_cache::__private::CallSite = ::acgs_cache::__private::CallSite::new(
                "evaluate_policy",
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
                &::acgs_cache::__private::policies::POLICY_DECISION,
            )
            .invalidate_on(&["governance.*"]);
        &__ACGS_SITE
    };
    let __acgs_shape = {
        use ::acgs_cache_core::__private::ShapeOf as _;
        (&&&::acgs_cache_core::__private::ShapeProbe::<Result<Decision, DbError>>::NEW)
            .shape()
    };
    let __acgs_path = ({
        #[allow(unused_imports)]
        use ::acgs_cache::__private::{ChooseEngine as _, ChooseReport as _};
        (&&&::acgs_cache::__private::dispatch(&__acgs_shape)).path()
    });
    let __acgs_value_shape = &__acgs_shape;
    match __acgs_path
        .checked(__acgs_value_shape)
        .start(
            __acgs_site,
            ::acgs_cache::__private::instance(&|| ()),
            __acgs_shape,
            ::acgs_cache::__private::KeyBuilder::new()
                .arg(&policy_id)
                .arg(&subject)
                .finish(),
            false,
        )
    {
        ::core::result::Result::Ok(__acgs_hit) => __acgs_hit,
        ::core::result::Result::Err(__acgs_rest) => {
            __acgs_rest
                .run(async move {
                    let __acgs_out = async move {
                        query_policy_store(policy_id, subject).await
                    }
                        .await;
                    (::std::vec::Vec::new(), __acgs_out)
                })
                .await
        }
    }
}
///Invalidates the cached entry of `evaluate_policy` for these arguments, on every instance.
#[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
pub async fn invalidate_evaluate_policy(
    policy_id: u64,
    subject: &str,
) -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> {
    let __acgs_site = {
        static __ACGS_SITE: ::acgs_cache::__private::CallSite = ::acgs_cache::__private::CallSite::new(
                "evaluate_policy",
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
                &::acgs_cache::__private::policies::POLICY_DECISION,
            )
            .invalidate_on(&["governance.*"]);
        &__ACGS_SITE
    };
    ::acgs_cache::__private::invalidate_entry(
            __acgs_site,
            ::acgs_cache::__private::instance(&|| ()),
            "invalidate_evaluate_policy",
            ::acgs_cache::__private::KeyBuilder::new()
                .arg(&policy_id)
                .arg(&subject)
                .finish(),
        )
        .await
}
///Invalidates every cached entry of `evaluate_policy`, on every instance.
#[allow(unused_variables, clippy::needless_lifetimes)]
pub async fn invalidate_all_evaluate_policy() -> ::core::result::Result<
    ::acgs_cache::LogPosition,
    ::acgs_cache::Error,
> {
    let __acgs_site = {
        static __ACGS_SITE: ::acgs_cache::__private::CallSite = ::acgs_cache::__private::CallSite::new(
                "evaluate_policy",
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
                &::acgs_cache::__private::policies::POLICY_DECISION,
            )
            .invalidate_on(&["governance.*"]);
        &__ACGS_SITE
    };
    ::acgs_cache::__private::invalidate_function(
            __acgs_site,
            ::acgs_cache::__private::instance(&|| ()),
            "invalidate_all_evaluate_policy",
        )
        .await
}
///The cache entry of `evaluate_policy` for these arguments, holding what the function would return (`value`, or `Ok(value)` / `Some(value)`), for `acgs_cache::Warmer`.
#[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
pub fn warm_entry_evaluate_policy(
    policy_id: u64,
    subject: &str,
    value: impl ::acgs_cache::__private::WarmInto<Result<Decision, DbError>>,
) -> ::acgs_cache::WarmEntry {
    let __acgs_site = {
        static __ACGS_SITE: ::acgs_cache::__private::CallSite = ::acgs_cache::__private::CallSite::new(
                "evaluate_policy",
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
                &::acgs_cache::__private::policies::POLICY_DECISION,
            )
            .invalidate_on(&["governance.*"]);
        &__ACGS_SITE
    };
    let __acgs_shape = {
        use ::acgs_cache_core::__private::ShapeOf as _;
        (&&&::acgs_cache_core::__private::ShapeProbe::<Result<Decision, DbError>>::NEW)
            .shape()
    };
    ({
        #[allow(unused_imports)]
        use ::acgs_cache::__private::{ChooseEngine as _, ChooseSilent as _};
        (&&&::acgs_cache::__private::dispatch(&__acgs_shape)).warm_path()
    })
        .warm_entry(
            __acgs_site,
            ::acgs_cache::__private::instance(&|| ()),
            "warm_entry_evaluate_policy",
            __acgs_shape,
            ::acgs_cache::__private::KeyBuilder::new()
                .arg(&policy_id)
                .arg(&subject)
                .finish(),
            ::acgs_cache::__private::WarmInto::into_return(value),
            ::std::vec::Vec::new(),
        )
}
///Runs `evaluate_policy`'s body without the cache.
#[allow(dead_code, unused_variables, clippy::needless_lifetimes)]
pub async fn evaluate_policy_uncached(
    policy_id: u64,
    subject: &str,
) -> Result<Decision, DbError> {
    query_policy_store(policy_id, subject).await
}
///Computes `evaluate_policy` for these arguments without reading the cache, stores the result (as a miss would: one computation per key, the fleet lock with `lock = true`, the invalidation checks) and returns it.
#[allow(
    dead_code,
    unused_variables,
    clippy::needless_lifetimes,
    clippy::too_many_arguments
)]
pub async fn refresh_evaluate_policy(
    policy_id: u64,
    subject: &str,
) -> Result<Decision, DbError> {
    let __acgs_site = {
        static __ACGS_SITE: ::acgs_cache::__private::CallSite = ::acgs_cache::__private::CallSite::new(
                "evaluate_policy",
                "quickstart",
                "evaluate_policy(u64,&str)key()->Result<Decision,DbError>",
                0u32,
                &::acgs_cache::__private::policies::POLICY_DECISION,
            )
            .invalidate_on(&["governance.*"]);
        &__ACGS_SITE
    };
    let __acgs_shape = {
        use ::acgs_cache_core::__private::ShapeOf as _;
        (&&&::acgs_cache_core::__private::ShapeProbe::<Result<Decision, DbError>>::NEW)
            .shape()
    };
    let __acgs_path = ({
        #[allow(unused_imports)]
        use ::acgs_cache::__private::{ChooseEngine as _, ChooseReport as _};
        (&&&::acgs_cache::__private::dispatch(&__acgs_shape)).path()
    });
    let __acgs_value_shape = &__acgs_shape;
    match __acgs_path
        .checked(__acgs_value_shape)
        .start_recompute(
            __acgs_site,
            ::acgs_cache::__private::instance(&|| ()),
            __acgs_shape,
            ::acgs_cache::__private::KeyBuilder::new()
                .arg(&policy_id)
                .arg(&subject)
                .finish(),
            "refresh_evaluate_policy",
        )
    {
        ::core::result::Result::Ok(__acgs_hit) => __acgs_hit,
        ::core::result::Result::Err(__acgs_rest) => {
            __acgs_rest
                .run(async move {
                    let __acgs_out = async move {
                        query_policy_store(policy_id, subject).await
                    }
                        .await;
                    (::std::vec::Vec::new(), __acgs_out)
                })
                .await
        }
    }
}
