//! Checks the annotated function and generates its wrapper: a static call-site
//! descriptor and one call into `::acgs_cache::__private::call`.

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::{placeholders, Args, CodecSpec, ConsistencySpec, Errors, Parsed, TtlSpec};

/// Entry point: on any error the user's function is emitted unchanged next
/// to the errors, so the rest of the crate (and the IDE) keeps working.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "`#[cached]` works on `async fn` items only",
            );
            return with_errors(item, e);
        }
    };
    let Parsed(args, mut errors) = match syn::parse2::<Parsed>(args) {
        Ok(parsed) => parsed,
        Err(e) => return with_errors(item, e),
    };
    let plan = Plan::check(&item_fn, &args, &mut errors);
    match errors.into_result() {
        Ok(()) => generate(item_fn, &args, plan),
        Err(e) => with_errors(item, e),
    }
}

fn with_errors(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote!(#item #errors)
}

/// How the return type maps to what is cached.
enum Shape {
    Plain,
    OkOnly,
    SomeOnly,
}

/// What generation needs, established by the checks.
struct Plan {
    shape: Shape,
    is_method: bool,
    /// Key arguments (parameter names), in signature order.
    key_args: Vec<Ident>,
    /// The signature text folded into the schema fingerprint.
    signature: String,
    /// Every typed parameter (for the invalidation companions).
    params: Vec<(Ident, Type)>,
    /// Whether the computation owns everything it uses (no receiver, no
    /// generics, no borrowed parameter), so it can be refreshed in the
    /// background.
    detachable: bool,
}

impl Plan {
    fn check(f: &ItemFn, args: &Args, errors: &mut Errors) -> Plan {
        let sig = &f.sig;
        if sig.asyncness.is_none() {
            errors.at(
                sig.fn_token.span,
                "`#[cached]` works on `async fn` only: add `async`",
            );
        }
        if !args.ttl_written {
            errors.at(
                args.span.unwrap_or_else(Span::call_site),
                "`#[cached]` needs a TTL: `ttl = \"policy_decision\"` (a built-in policy), `ttl = \"5m\"` or `ttl = MY_POLICY`",
            );
        }
        let is_generic = sig
            .generics
            .params
            .iter()
            .any(|p| matches!(p, GenericParam::Type(_) | GenericParam::Const(_)));
        if is_generic && args.key.is_none() {
            errors.at(
                sig.generics.span(),
                "a generic cached function needs `key = ...`: every instantiation shares one call site, so the key must say what distinguishes them",
            );
        }
        if args.key.is_some() && args.skip.is_some() {
            errors.at(
                sig.ident.span(),
                "`skip` has no effect together with `key`: the key is exactly the `key` expression",
            );
        }

        let shape = match &sig.output {
            ReturnType::Default => {
                errors.at(
                    sig.ident.span(),
                    "a cached function must return a value; `()` has nothing to cache",
                );
                Shape::Plain
            }
            ReturnType::Type(_, ty) => match &**ty {
                Type::ImplTrait(_) => {
                    errors.at(
                        ty.span(),
                        "a cached function cannot return `impl Trait`: name a concrete type",
                    );
                    Shape::Plain
                }
                ty => match last_segment(ty).as_deref() {
                    Some("Result") => Shape::OkOnly,
                    Some("Option") => Shape::SomeOnly,
                    _ => Shape::Plain,
                },
            },
        };
        if let (Some((lit, _)), false) = (&args.negative_ttl, matches!(shape, Shape::SomeOnly)) {
            errors.at(
                lit.span(),
                "`negative_ttl` caches `None` and needs an `Option<T>` return type",
            );
        }

        let skipped: Vec<String> = args.skip.iter().flatten().map(Ident::to_string).collect();
        let mut is_method = false;
        let mut names = Vec::new();
        let mut key_args = Vec::new();
        let mut signature_types = Vec::new();
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    is_method = true;
                    names.push("self".to_owned());
                    if receiver.mutability.is_some() && receiver.reference.is_some() {
                        errors.at(receiver.span(), "`&mut self` methods cannot be cached: a cache hit would skip the mutation");
                    }
                    if !skipped.iter().any(|s| s == "self") && args.key.is_none() {
                        key_args.push(Ident::new("self", receiver.self_token.span));
                        signature_types.push("self".to_owned());
                    }
                }
                FnArg::Typed(pat_type) => {
                    let Pat::Ident(pat_ident) = &*pat_type.pat else {
                        errors.at(pat_type.pat.span(), "destructuring patterns are not supported by `#[cached]`: bind the argument to a name");
                        continue;
                    };
                    let name = pat_ident.ident.to_string();
                    names.push(name.clone());
                    params.push((pat_ident.ident.clone(), (*pat_type.ty).clone()));
                    if let Type::Reference(r) = &*pat_type.ty {
                        if r.mutability.is_some() {
                            errors.at(pat_type.ty.span(), format!("`{name}: &mut ...` cannot be cached: a cache hit would skip the mutation"));
                        }
                    }
                    if contains_impl_trait(&pat_type.ty) {
                        errors.at(pat_type.ty.span(), format!("`{name}: impl Trait` is not supported by `#[cached]`: use a concrete type (or a generic parameter with `key = ...`)"));
                    }
                    let in_key = args.key.is_none() && !skipped.contains(&name);
                    if in_key {
                        if let Some(map) = unordered_collection(&pat_type.ty) {
                            errors.at(pat_type.ty.span(), format!("`{name}` is a `{map}`, whose iteration order is random, so its encoding cannot key a cache: use a `BTree` collection, or `skip({name})`"));
                        }
                        key_args.push(pat_ident.ident.clone());
                        signature_types.push(normalized(&pat_type.ty));
                    }
                }
            }
        }
        for template in args.tags.iter().flatten() {
            for name in placeholders(&template.value()).unwrap_or_default() {
                if !names.iter().any(|n| n == name) || name == "self" {
                    errors.at(
                        template.span(),
                        format!(
                            "tag template {:?}: the function has no argument `{name}`",
                            template.value()
                        ),
                    );
                }
            }
        }
        for s in args.skip.iter().flatten() {
            if !names.contains(&s.to_string()) {
                errors.at(
                    s.span(),
                    format!("`skip({s})`: the function has no argument `{s}`"),
                );
            }
        }
        let output = match &sig.output {
            ReturnType::Type(_, ty) => normalized(ty),
            ReturnType::Default => String::new(),
        };
        let key_text = args.key.as_ref().map(normalized).unwrap_or_default();
        let signature = format!(
            "{}({})key({key_text})->{output}",
            sig.ident,
            signature_types.join(",")
        );
        let owns_its_arguments = plan_owns(&params);
        let detachable = !is_method
            && sig.generics.params.is_empty()
            && owns_its_arguments
            && args.refresh_ahead != Some(false);
        Plan {
            shape,
            is_method,
            key_args,
            signature,
            params,
            detachable,
        }
    }
}

/// Whether no parameter type borrows (`&`, a lifetime) or hides a type (`impl`).
fn plan_owns(params: &[(Ident, Type)]) -> bool {
    params.iter().all(|(_, ty)| {
        let text = ty.to_token_stream().to_string();
        !text.contains('&') && !text.contains('\'') && !text.contains("impl")
    })
}

/// Tokens as text without whitespace, so the fingerprint does not depend on
/// how a compiler version spaces tokens.
fn normalized(tokens: &impl ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Paren(p) => last_segment(&p.elem),
        Type::Group(g) => last_segment(&g.elem),
        _ => None,
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        _ => false,
    }
}

fn unordered_collection(ty: &Type) -> Option<String> {
    match ty {
        Type::Reference(r) => unordered_collection(&r.elem),
        _ => last_segment(ty).filter(|s| s == "HashMap" || s == "HashSet"),
    }
}

fn generate(f: ItemFn, args: &Args, plan: Plan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let private = quote!(::acgs_cache::__private);
    let fn_name = sig.ident.to_string();
    let name = args.name.as_ref().map_or(fn_name, syn::LitStr::value);
    let signature = &plan.signature;
    let version = args.version.unwrap_or(0);

    let policy = match args.ttl.as_ref().expect("checked: ttl is present") {
        TtlSpec::Builtin(lit) => {
            let konst = format_ident!("{}", lit.value().to_uppercase(), span = lit.span());
            quote!(&#private::policies::#konst)
        }
        TtlSpec::Literal(lit, d) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote_spanned!(lit.span()=> &#private::literal_policy(#lit, #secs, #nanos))
        }
        TtlSpec::Path(path) => quote_spanned!(path.span()=> &#path),
    };

    let mut options = TokenStream::new();
    if let Some(patterns) = &args.invalidate_on {
        options.extend(quote!(.invalidate_on(&[#(#patterns),*])));
    }
    if let Some(CodecSpec::Json) = &args.codec {
        options.extend(quote!(.codec(#private::Codec::Json)));
    }
    if let Some(true) = args.lock {
        options.extend(quote!(.lock(true)));
    }
    if let Some(ConsistencySpec::Strict) = &args.consistency {
        options.extend(quote!(.consistency(#private::Consistency::Strict)));
    }
    if let Some((_, d)) = &args.negative_ttl {
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        options.extend(quote!(.negative_ttl(#private::Duration::new(#secs, #nanos))));
    }
    let instance_fn = args.cache.as_ref().map(|expr| {
        options.extend(quote!(.instance(__acgs_instance)));
        quote_spanned! {expr.span()=>
            fn __acgs_instance() -> &'static #private::Cache { &*#expr }
        }
    });
    let site_static = quote! {
        #private::CallSite = {
            #instance_fn
            #private::CallSite::new(
                #name,
                ::core::module_path!(),
                #private::fingerprint(::core::module_path!(), #signature, #version),
                #policy,
            )#options
        }
    };
    // Free functions keep their descriptor next to them, where the
    // companions reach it too; methods keep it in their body (an impl block
    // cannot hold a static).
    let companions_wanted = !plan.is_method && args.companions != Some(false);
    let module_site = format_ident!("__acgs_site_{}", sig.ident);

    // Methods fold the receiver's type into the key: two types with the same
    // method never share entries, even when `self` is skipped.
    let receiver_type = plan
        .is_method
        .then(|| quote!(.arg(::core::any::type_name::<Self>())));
    let key_parts = key_parts(args, &plan);

    let (ret_ty, ret_span) = match &sig.output {
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
        ReturnType::Default => unreachable!("checked: the function returns a value"),
    };
    let shape = match plan.shape {
        Shape::Plain => quote!(Plain),
        Shape::OkOnly => quote!(OkOnly),
        Shape::SomeOnly => quote!(SomeOnly),
    };
    // Mixed-site hygiene: the user's code cannot see (or be shadowed by) these locals.
    let key = Ident::new("__acgs_key", Span::mixed_site());
    let site = Ident::new("__acgs_site", Span::mixed_site());
    // Spanned on the return type: an uncacheable value is reported there.
    let private_at_ret = quote_spanned!(ret_span=> ::acgs_cache::__private);
    // Functions whose computation owns its arguments can be refreshed in the
    // background (refresh-ahead); the others are refreshed on expiry.
    let (call_fn, call_tagged_fn) = if plan.detachable {
        ("call_refreshing", "call_tagged_refreshing")
    } else {
        ("call", "call_tagged")
    };
    let (call_fn, call_tagged_fn) = (
        Ident::new(call_fn, ret_span),
        Ident::new(call_tagged_fn, ret_span),
    );
    let call = match &args.tags {
        None => quote_spanned! {ret_span=>
            #private_at_ret::#call_fn::<#private_at_ret::#shape<#ret_ty>, _>(#site, #key, async move #block).await
        },
        Some(templates) => {
            // Tags are formatted inside the computation, before the body can
            // consume the arguments: a hit pays nothing for them.
            let tags = Ident::new("__acgs_tags", Span::mixed_site());
            let out = Ident::new("__acgs_out", Span::mixed_site());
            quote_spanned! {ret_span=>
                #private_at_ret::#call_tagged_fn::<#private_at_ret::#shape<#ret_ty>, _>(#site, #key, async move {
                    let #tags = ::std::vec![#(#private::format!(#templates)),*];
                    let #out: #ret_ty = async move #block.await;
                    (#tags, #out)
                })
                .await
            }
        }
    };

    let site_ref = if companions_wanted {
        quote!(&#module_site)
    } else {
        // In a block of its own, so the descriptor's name never meets the user's.
        quote!({
            static __ACGS_SITE: #site_static;
            &__ACGS_SITE
        })
    };
    let body = quote! {
        let #key = #private::KeyBuilder::new()#receiver_type #key_parts.finish();
        let #site = #site_ref;
        #call
    };
    // The body's braces carry the return type's span: a value that cannot be
    // cached is reported at the type the user wrote, not at the attribute.
    let mut body = Group::new(Delimiter::Brace, body);
    body.set_span(ret_span);
    let companions = companions_wanted.then(|| {
        let cfgs = attrs.iter().filter(|a| a.path().is_ident("cfg"));
        let companions = companions(
            &sig,
            &vis,
            args,
            &plan,
            &name,
            instance_fn.as_ref(),
            &module_site,
        );
        quote! {
            #(#cfgs)*
            #[doc(hidden)]
            #[allow(non_upper_case_globals)]
            static #module_site: #site_static;
            #companions
        }
    });
    quote! {
        #(#attrs)*
        #vis #sig #body
        #companions
    }
}

/// `.arg(&x)` for each key argument, each spanned where the user wrote it:
/// a non-serializable argument is reported there (once, as the wrapper and
/// its companion report it at the same place).
fn key_parts(args: &Args, plan: &Plan) -> TokenStream {
    match &args.key {
        Some(expr) => quote_spanned!(expr.span()=> .arg(&(#expr))),
        None => plan
            .key_args
            .iter()
            .map(|arg| quote_spanned!(arg.span()=> .arg(&#arg)))
            .collect(),
    }
}

/// `invalidate_<fn>(same arguments)` and `invalidate_all_<fn>()`, next to the
/// function (free or associated), so the invalidation API of a cached
/// function is found where the function is documented.
fn companions(
    sig: &syn::Signature,
    vis: &syn::Visibility,
    args: &Args,
    plan: &Plan,
    name: &str,
    instance_fn: Option<&TokenStream>,
    site: &Ident,
) -> TokenStream {
    let private = quote!(::acgs_cache::__private);
    let fn_name = &sig.ident;
    let one = format_ident!("invalidate_{}", fn_name);
    let all = format_ident!("invalidate_all_{}", fn_name);
    let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
    let params: Vec<_> = plan
        .params
        .iter()
        .map(|(ident, ty)| quote!(#ident: #ty))
        .collect();
    let key_parts = key_parts(args, plan);
    let (instance_item, instance) = match instance_fn {
        Some(item) => (
            item.clone(),
            quote!(::core::option::Option::Some(__acgs_instance)),
        ),
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    let doc_one = format!(
        "Invalidates the cached entry of [`{fn_name}`] for these arguments, on every instance \
         (see `acgs_cache::Cache::invalidate`)."
    );
    let doc_all = format!("Invalidates every cached entry of [`{fn_name}`], on every instance.");
    let warm = format_ident!("warm_entry_{}", fn_name);
    let doc_warm = format!(
        "The cache entry of [`{fn_name}`] for these arguments holding `value`, for \
         `acgs_cache::Warmer` (bulk priming)."
    );
    let value = if plan.params.iter().any(|(ident, _)| ident == "value") {
        format_ident!("cached_value")
    } else {
        format_ident!("value")
    };
    let (ret_ty, ret_span) = match &sig.output {
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
        ReturnType::Default => unreachable!("checked: the function returns a value"),
    };
    // Spanned like the wrapper's call: an uncacheable return type is
    // reported once, at the type the user wrote.
    let shape = match plan.shape {
        Shape::Plain => quote_spanned!(ret_span=> ::acgs_cache::__private::Plain<#ret_ty>),
        Shape::OkOnly => quote_spanned!(ret_span=> ::acgs_cache::__private::OkOnly<#ret_ty>),
        Shape::SomeOnly => quote_spanned!(ret_span=> ::acgs_cache::__private::SomeOnly<#ret_ty>),
    };
    let value_ty = quote_spanned!(ret_span=> <#shape as ::acgs_cache::__private::Shape>::Value);
    let warm_entry = quote_spanned!(ret_span=> ::acgs_cache::__private::warm_entry::<#shape>);
    let tags = match &args.tags {
        Some(templates) => quote!(::std::vec![#(#private::format!(#templates)),*]),
        None => quote!(::std::vec::Vec::new()),
    };
    quote! {
        #[doc = #doc_one]
        #[allow(unused_variables, clippy::needless_lifetimes)]
        #vis async fn #one #generics (#(#params),*) -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> #where_clause {
            #instance_item
            let key = #private::KeyBuilder::new() #key_parts .finish();
            #private::invalidate_entry(#name, #instance, key).await
        }
        #[doc = #doc_all]
        #vis async fn #all() -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> {
            #instance_item
            #private::invalidate_function(#name, #instance).await
        }
        #[doc = #doc_warm]
        #[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
        #vis fn #warm #generics (#(#params,)* #value: #value_ty) -> ::acgs_cache::WarmEntry #where_clause {
            let key = #private::KeyBuilder::new() #key_parts .finish();
            #warm_entry(&#site, key, #value, #tags)
        }
    }
}
