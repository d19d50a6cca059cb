//! The `#[cached]` attribute of `acgs-cache`.
//!
//! Use it through the facade crate (`acgs_cache::cached`), whose
//! documentation is the attribute's reference; the expansion names only
//! `::acgs_cache::__private` items. `attr.rs` parses the arguments,
//! `template.rs` the tag templates, `func.rs` recognises the function,
//! `expand.rs` checks it and generates the wrapper, and `companions.rs` moves
//! the companions of a trait impl's methods into an inherent impl.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

use proc_macro::TokenStream;

mod attr;
mod companions;
mod errors;
mod expand;
mod func;
mod invalidates;
mod template;

/// Caches an `async fn` in two tiers. See the `acgs-cache` crate
/// documentation for the attribute reference.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// On a trait impl (native `async fn` or `#[async_trait]`, written above
/// it): puts the companions of its `#[cached]` methods into an inherent impl
/// of the same type beside it. See the `acgs-cache` crate documentation.
#[proc_macro_attribute]
pub fn cached_companions(args: TokenStream, item: TokenStream) -> TokenStream {
    companions::cached_companions(args.into(), item.into()).into()
}

/// Publishes events after a write function succeeds. See the `acgs-cache`
/// crate documentation.
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidates::invalidates(args.into(), item.into()).into()
}
