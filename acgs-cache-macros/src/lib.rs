//! The `#[cached]` attribute of [`acgs-cache`](https://docs.rs/acgs-cache).
//!
//! Use it through the facade crate (`acgs_cache::cached`); the expansion names
//! only `::acgs_cache::__private` items. This crate parses the attribute
//! (`attr.rs`), checks the function and generates the wrapper (`expand.rs`).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use proc_macro::TokenStream;

mod attr;
mod expand;
#[path = "../../acgs-cache-core/src/grammar.rs"]
#[allow(dead_code, unreachable_pub)]
mod grammar;

/// Caches an `async fn` in two tiers. See the `acgs-cache` crate
/// documentation for the attribute reference.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}
