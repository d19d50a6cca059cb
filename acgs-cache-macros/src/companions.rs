//! `#[cached_companions]` on a trait impl: a trait impl holds only the
//! trait's items, so the companions of its `#[cached]` methods
//! (`invalidate_<fn>`, `invalidate_all_<fn>`, `warm_entry_<fn>`,
//! `<fn>_uncached`, `refresh_<fn>`) go into an inherent impl of the same type
//! generated beside it. The methods' own `#[cached]` is told to write none
//! (`companions = false` is added to it).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{ImplItem, ItemFn, ItemImpl, Meta, Visibility};

/// Entry point. On an error the impl is emitted unchanged beside it.
pub(crate) fn cached_companions(args: TokenStream, item: TokenStream) -> TokenStream {
    let vis: Visibility = if args.is_empty() {
        syn::parse_quote!(pub)
    } else {
        match syn::parse2(args) {
            Ok(vis) => vis,
            Err(e) => return with_error(item, &e),
        }
    };
    let mut imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(imp) => imp,
        Err(_) => {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[cached_companions]` goes on a trait impl whose methods carry `#[cached]`",
            );
            return with_error(item, &e);
        }
    };
    let Some((_, trait_path, _)) = imp.trait_.clone() else {
        let e = syn::Error::new(
            imp.impl_token.span,
            "an inherent impl needs no `#[cached_companions]`: `#[cached]` writes the companions beside the method",
        );
        return with_error(item, &e);
    };
    let mut companions = TokenStream::new();
    for item in &mut imp.items {
        let ImplItem::Fn(method) = item else { continue };
        let Some(at) = method.attrs.iter().position(is_cached) else {
            continue;
        };
        if method.sig.asyncness.is_none() {
            let rewritten = crate::func::Function::from_item(
                ItemFn {
                    attrs: Vec::new(),
                    vis: Visibility::Inherited,
                    sig: method.sig.clone(),
                    block: Box::new(method.block.clone()),
                },
                false,
            )
            .is_ok_and(|f| f.is_async_trait());
            if !rewritten {
                continue; // not `async`: the method's own `#[cached]` says so
            }
            // `#[async_trait]` ran first and rewrote the method.
            let e = syn::Error::new(
                method.sig.fn_token.span,
                "write `#[cached_companions]` above `#[async_trait]`, so that it sees the `async fn`s as written",
            );
            return with_error(imp.to_token_stream(), &e);
        }
        let args = match &method.attrs[at].meta {
            Meta::Path(_) => TokenStream::new(),
            Meta::List(list) => list.tokens.clone(),
            // `#[cached = …]`: the method's own attribute reports it.
            Meta::NameValue(_) => continue,
        };
        match syn::parse2::<crate::attr::Parsed>(args.clone()) {
            Ok(crate::attr::Parsed(written, _)) if written.companions == Some(false) => continue,
            Ok(crate::attr::Parsed(written, _)) if written.companions == Some(true) => {
                let e = syn::Error::new(
                    method.sig.ident.span(),
                    "`companions = true` is what `#[cached_companions]` does for every `#[cached]` method: remove it",
                );
                return with_error(imp.to_token_stream(), &e);
            }
            _ => {}
        }
        let written: Vec<_> = method
            .attrs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, a)| a.clone())
            .collect();
        let function = ItemFn {
            attrs: written,
            vis: vis.clone(),
            sig: method.sig.clone(),
            block: Box::new(method.block.clone()),
        };
        // Beside the trait impl, `Self::Output` would be ambiguous: the
        // companions' signatures name the trait's associated items through
        // the trait (the fingerprint keeps the text the method was written
        // with).
        let beside = syn::parse2(qualify_self(method.sig.to_token_stream(), &trait_path))
            .unwrap_or_else(|_| method.sig.clone());
        if let Some(items) =
            crate::expand::trait_companions(function, beside, args.clone(), trait_path.clone())
        {
            companions.extend(items);
        }
        let path = method.attrs[at].path().clone();
        let comma = (!args.is_empty() && !ends_with_comma(&args)).then(|| quote!(,));
        method.attrs[at] = syn::parse_quote!(#[#path(#args #comma companions = false)]);
    }
    let (impl_generics, _, where_clause) = imp.generics.split_for_impl();
    let self_ty = &imp.self_ty;
    let doc = format!(
        "Companions of the `#[cached]` methods of `impl {} for {}`.",
        trait_path.to_token_stream(),
        self_ty.to_token_stream()
    );
    quote! {
        #imp

        #[doc = #doc]
        impl #impl_generics #self_ty #where_clause {
            #companions
        }
    }
}

/// `tokens` with every `Self::X` written `<Self as Trait>::X` (groups
/// included): in an inherent impl, `Self::X` does not reach the trait's
/// associated type `X`.
fn qualify_self(tokens: TokenStream, trait_path: &syn::Path) -> TokenStream {
    use proc_macro2::{Group, TokenTree};
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = TokenStream::new();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Ident(ident) if ident == "Self" && is_path_sep(&trees[i + 1..]) => {
                out.extend(quote!(<Self as #trait_path>));
            }
            TokenTree::Group(group) => {
                let mut inner =
                    Group::new(group.delimiter(), qualify_self(group.stream(), trait_path));
                inner.set_span(group.span());
                out.extend([TokenTree::Group(inner)]);
            }
            other => out.extend([other.clone()]),
        }
        i += 1;
    }
    out
}

/// Whether `rest` starts with `::`.
fn is_path_sep(rest: &[proc_macro2::TokenTree]) -> bool {
    use proc_macro2::{Spacing, TokenTree};
    matches!(
        rest,
        [TokenTree::Punct(a), TokenTree::Punct(b), ..]
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

fn with_error(item: TokenStream, e: &syn::Error) -> TokenStream {
    let e = e.to_compile_error();
    quote!(#item #e)
}

/// `#[cached]` or `#[…::cached]`.
fn is_cached(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "cached")
}

fn ends_with_comma(args: &TokenStream) -> bool {
    matches!(args.clone().into_iter().last(), Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ',')
}
