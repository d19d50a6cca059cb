//! What a cached function returns, and which part of it is cached.
//!
//! The shape is chosen by the return *type*, not by how it is spelled:
//! `Result<T, E>` under any alias (`io::Result<T>`, `anyhow::Result<T>`,
//! `type ApiResult<T> = …`) caches only `Ok`; `Option<T>` caches `Some` (and
//! `None` with negative caching); anything else is cached as is. The
//! attribute asks `shape!` for it, which picks the most specific of three
//! impls by autoref (the `Result` impl is tried on `&&ShapeProbe<R>`, the
//! `Option` one on `&ShapeProbe<R>`, the plain one on `ShapeProbe<R>`):
//! method resolution sees through aliases, a macro would not.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

/// What a cached value must be: stored in two tiers, shared between tasks.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`",
    label = "this type is stored in L1 (cloned, shared between tasks) and L2 (serialized)"
)]
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

/// Whether (and how) a function's output is stored.
#[derive(Debug)]
pub enum Verdict<'a, V> {
    /// Store the value, for this long (`None`: the policy's TTL).
    Store(&'a V, Option<Duration>),
    /// Store the value only if negative caching is on, with its TTL.
    Negative(&'a V),
    /// Do not store (an `Err`, or refused by `cache_if`).
    Skip,
}

/// How a function's return value maps to the value that is cached.
pub trait Shape {
    /// The function's return type.
    type Out;
    /// The part of it that is cached (`Cacheable` where it is stored: the
    /// bound sits on the functions that store, so that a value that cannot
    /// be cached is reported as exactly that, at the return type).
    type Value;
    /// Decides whether `out` is stored.
    fn verdict<'a>(&self, out: &'a Self::Out) -> Verdict<'a, Self::Value>;
    /// Rebuilds the return value from a cached value.
    fn rebuild(&self, value: Self::Value) -> Self::Out;
}

/// Any cacheable return type: always stored.
pub struct Plain<R>(PhantomData<fn() -> R>);

impl<R> Shape for Plain<R> {
    type Out = R;
    type Value = R;
    fn verdict<'a>(&self, out: &'a R) -> Verdict<'a, R> {
        Verdict::Store(out, None)
    }
    fn rebuild(&self, value: R) -> R {
        value
    }
}

/// `Result<T, E>` (under any name): only `Ok` is stored; `E` needs no traits.
pub struct OkOnly<R>(PhantomData<fn() -> R>);

impl<T, E> Shape for OkOnly<Result<T, E>> {
    type Out = Result<T, E>;
    type Value = T;
    fn verdict<'a>(&self, out: &'a Result<T, E>) -> Verdict<'a, T> {
        match out {
            Ok(value) => Verdict::Store(value, None),
            Err(_) => Verdict::Skip,
        }
    }
    fn rebuild(&self, value: T) -> Result<T, E> {
        Ok(value)
    }
}

/// `Option<T>`: `Some` is stored; `None` only with negative caching.
pub struct SomeOnly<R>(PhantomData<fn() -> R>);

impl<T> Shape for SomeOnly<Option<T>> {
    type Out = Option<T>;
    type Value = Option<T>;
    fn verdict<'a>(&self, out: &'a Option<T>) -> Verdict<'a, Option<T>> {
        match out {
            Some(_) => Verdict::Store(out, None),
            None => Verdict::Negative(out),
        }
    }
    fn rebuild(&self, value: Option<T>) -> Option<T> {
        value
    }
}

impl<R> std::fmt::Debug for Plain<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain")
    }
}

impl<R> std::fmt::Debug for OkOnly<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OkOnly")
    }
}

impl<R> std::fmt::Debug for SomeOnly<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SomeOnly")
    }
}

/// The return type `R`, for picking its shape (see the module docs).
#[derive(Debug)]
pub struct ShapeProbe<R>(PhantomData<fn() -> R>);

impl<R> ShapeProbe<R> {
    /// The probe.
    pub const NEW: Self = ShapeProbe(PhantomData);
}

/// The shape of the probed return type. Implemented three times, for three
/// receiver types: `&&ShapeProbe<Result<T, E>>`, `&ShapeProbe<Option<T>>`
/// and `ShapeProbe<R>`; `(&&&probe).shape()` stops at the first that applies.
pub trait ShapeOf {
    /// The shape.
    type Shape;
    /// The shape.
    fn shape(&self) -> Self::Shape;
}

impl<T, E> ShapeOf for &&ShapeProbe<Result<T, E>> {
    type Shape = OkOnly<Result<T, E>>;
    fn shape(&self) -> Self::Shape {
        OkOnly(PhantomData)
    }
}

impl<T> ShapeOf for &ShapeProbe<Option<T>> {
    type Shape = SomeOnly<Option<T>>;
    fn shape(&self) -> Self::Shape {
        SomeOnly(PhantomData)
    }
}

impl<R> ShapeOf for ShapeProbe<R> {
    type Shape = Plain<R>;
    fn shape(&self) -> Self::Shape {
        Plain(PhantomData)
    }
}

/// The shape of return type `R`: `shape!(ApiResult<Decision>)`.
#[macro_export]
#[doc(hidden)]
macro_rules! __acgs_shape {
    ($ret:ty) => {{
        use $crate::__private::ShapeOf as _;
        (&&&$crate::__private::ShapeProbe::<$ret>::NEW).shape()
    }};
}

/// A shape whose values are stored only when a predicate says so (`cache_if`).
#[derive(Debug)]
pub struct CacheIf<S, P>(S, P);

/// Wraps `shape` so that only values for which `predicate` holds are stored.
pub fn cache_if<S: Shape, P: Fn(&S::Value) -> bool>(shape: S, predicate: P) -> CacheIf<S, P> {
    CacheIf(shape, predicate)
}

impl<S: Shape, P: Fn(&S::Value) -> bool> Shape for CacheIf<S, P> {
    type Out = S::Out;
    type Value = S::Value;
    fn verdict<'a>(&self, out: &'a S::Out) -> Verdict<'a, S::Value> {
        match self.0.verdict(out) {
            Verdict::Store(value, ttl) if (self.1)(value) => Verdict::Store(value, ttl),
            Verdict::Negative(value) if (self.1)(value) => Verdict::Negative(value),
            _ => Verdict::Skip,
        }
    }
    fn rebuild(&self, value: S::Value) -> S::Out {
        self.0.rebuild(value)
    }
}

/// A TTL chosen per value (`ttl_from`): a `Duration`, or `Option<Duration>`
/// where `None` keeps the policy's TTL. Zero: not stored.
pub trait IntoTtl {
    /// The TTL, if one is chosen.
    fn into_ttl(self) -> Option<Duration>;
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Option<Duration> {
        Some(self)
    }
}

impl IntoTtl for Option<Duration> {
    fn into_ttl(self) -> Option<Duration> {
        self
    }
}

/// A shape whose stored values choose their own TTL (`ttl_from`).
#[derive(Debug)]
pub struct TtlFrom<S, F>(S, F);

/// Wraps `shape` so that each stored value's TTL is `ttl(value)`.
pub fn ttl_from<S: Shape, T: IntoTtl, F: Fn(&S::Value) -> T>(shape: S, ttl: F) -> TtlFrom<S, F> {
    TtlFrom(shape, ttl)
}

impl<S: Shape, T: IntoTtl, F: Fn(&S::Value) -> T> Shape for TtlFrom<S, F> {
    type Out = S::Out;
    type Value = S::Value;
    fn verdict<'a>(&self, out: &'a S::Out) -> Verdict<'a, S::Value> {
        match self.0.verdict(out) {
            Verdict::Store(value, policy) => match (self.1)(value).into_ttl() {
                Some(ttl) if ttl.is_zero() => Verdict::Skip,
                Some(ttl) => Verdict::Store(value, Some(ttl)),
                None => Verdict::Store(value, policy),
            },
            other => other,
        }
    }
    fn rebuild(&self, value: S::Value) -> S::Out {
        self.0.rebuild(value)
    }
}

/// Shapes that can store `None` (negative caching needs an `Option`).
#[diagnostic::on_unimplemented(
    message = "`negative_ttl` caches `None` and needs an `Option<T>` return type",
    label = "this function does not return an `Option`"
)]
pub trait OptionShape {}

impl<T> OptionShape for SomeOnly<Option<T>> {}
impl<S: OptionShape, P> OptionShape for CacheIf<S, P> {}
impl<S: OptionShape, F> OptionShape for TtlFrom<S, F> {}

/// Checks at compile time that `shape` can cache `None` (`negative_ttl`).
pub fn negative<S: OptionShape>(shape: S) -> S {
    shape
}

/// What a `warm_entry_<fn>` companion accepts for a function returning `R`:
/// the return value itself, or its cached part (`T` for `Result<T, E>` or
/// `Option<T>`).
pub trait WarmInto<R> {
    /// The value the function would have returned.
    fn into_return(self) -> R;
}

impl<R> WarmInto<R> for R {
    fn into_return(self) -> R {
        self
    }
}

impl<T, E> WarmInto<Result<T, E>> for T {
    fn into_return(self) -> Result<T, E> {
        Ok(self)
    }
}

impl<T> WarmInto<Option<T>> for T {
    fn into_return(self) -> Option<T> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type ApiResult<T> = Result<T, String>;
    type Maybe = Option<u8>;

    fn stored<S: Shape>(shape: &S, out: &S::Out) -> Option<Option<Duration>> {
        match shape.verdict(out) {
            Verdict::Store(_, ttl) => Some(ttl),
            _ => None,
        }
    }

    #[test]
    fn shapes_follow_the_type_through_aliases() {
        let result = crate::__acgs_shape!(ApiResult<u8>);
        assert_eq!(stored(&result, &Ok(1)), Some(None));
        assert_eq!(stored(&result, &Err("no".into())), None);
        let option = crate::__acgs_shape!(Maybe);
        assert!(matches!(option.verdict(&None), Verdict::Negative(_)));
        let io = crate::__acgs_shape!(std::io::Result<u8>);
        assert_eq!(stored(&io, &Ok(2)), Some(None));
        let plain = crate::__acgs_shape!(Vec<u8>);
        assert_eq!(stored(&plain, &vec![1]), Some(None));
    }

    #[test]
    fn cache_if_and_ttl_from_wrap_any_shape() {
        let shape = ttl_from(
            cache_if(crate::__acgs_shape!(ApiResult<u32>), |v: &u32| *v > 0),
            |v: &u32| Duration::from_secs(u64::from(*v)),
        );
        assert_eq!(stored(&shape, &Ok(0)), None, "refused by cache_if");
        assert_eq!(stored(&shape, &Ok(5)), Some(Some(Duration::from_secs(5))));
        let keep = ttl_from(crate::__acgs_shape!(u32), |_: &u32| None::<Duration>);
        assert_eq!(stored(&keep, &3), Some(None));
        let zero = ttl_from(crate::__acgs_shape!(u32), |_: &u32| Duration::ZERO);
        assert_eq!(stored(&zero, &3), None);
    }

    #[test]
    fn warm_values_convert_to_the_return_type() {
        fn warm<R>(v: impl WarmInto<R>) -> R {
            v.into_return()
        }
        let a: ApiResult<u8> = warm(1u8);
        let b: ApiResult<u8> = warm(Ok::<u8, String>(1));
        let c: Maybe = warm(3u8);
        assert_eq!((a, b, c), (Ok(1), Ok(1), Some(3)));
    }
}
