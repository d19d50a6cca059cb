//! Checks the annotated function and generates its wrapper: a static call-site
//! descriptor and one call into `::acgs_cache::__private`, plus the
//! companions (`invalidate_<fn>`, `invalidate_all_<fn>`, `warm_entry_<fn>`,
//! `<fn>_uncached`) next to it.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Pat, Type};

use crate::attr::{Args, CodecSpec, MaxStalenessSpec, Parsed, TtlSpec};
use crate::errors::Errors;
use crate::func::{Body, Function};
use crate::template::check_arguments;

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
    let function = match Function::from_item(item_fn, false) {
        Ok(function) => function,
        // Report the argument errors too, all at once.
        Err(e) => return with_errors(item, errors.ending_with(e)),
    };
    let plan = Plan::check(&function, &args, &mut errors);
    match errors.into_result() {
        Ok(()) => generate(function, &args, &plan),
        Err(e) => with_errors(item, e),
    }
}

/// The companions of `method`, a `#[cached(args)]` method of a trait impl
/// of `trait_path`, for an inherent impl beside it (`#[cached_companions]`),
/// with the signature `beside` (the method's, its `Self::X` qualified).
/// `None` when the method or its arguments have errors: its own
/// `#[cached]` reports them.
pub(crate) fn trait_companions(
    method: ItemFn,
    beside: syn::Signature,
    args: TokenStream,
    trait_path: syn::Path,
) -> Option<TokenStream> {
    let Parsed(args, mut errors) = syn::parse2::<Parsed>(args).ok()?;
    let mut rewritten = method.clone();
    rewritten.sig = beside;
    // The plan (key arguments, the signature text of the fingerprint) is the
    // method's as written: the companions must name the same instance.
    let function = Function::from_item(method, false).ok()?;
    let plan = Plan::check(&function, &args, &mut errors);
    errors.into_result().ok()?;
    let function = Function::from_item(rewritten, false).ok()?;
    let parts = Parts {
        f: &function,
        args: &args,
        plan: &plan,
        private: quote!(::acgs_cache::__private),
        owner: Owner::TraitImpl(trait_path),
    };
    Some(companions(&parts))
}

fn with_errors(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote!(#item #errors)
}

/// What generation needs, established by the checks.
struct Plan {
    /// Key arguments (parameter names, `self` included), in signature order.
    key_args: Vec<Ident>,
    /// The signature text folded into the source fingerprint.
    signature: String,
    /// Whether the computation owns everything it uses (no receiver, no
    /// generics, no borrowed parameter), so it can be refreshed in the
    /// background.
    detachable: bool,
    /// Whether the companion items are generated.
    companions: bool,
}

impl Plan {
    fn check(f: &Function, args: &Args, errors: &mut Errors) -> Plan {
        let sig = &f.sig;
        if !args.ttl_written {
            errors.at(
                args.span.unwrap_or_else(Span::call_site),
                "`#[cached]` needs a TTL: `ttl = \"policy_decision\"` (a built-in policy), `ttl = \"5m\"` or `ttl = MY_POLICY`",
            );
        }
        if args.key.is_some() && args.skip.is_some() {
            errors.at(
                sig.ident.span(),
                "`skip` has no effect together with `key`: the key is exactly the `key` expression",
            );
        }
        check_output(&f.output, errors);

        let skipped: Vec<String> = args.skip.iter().flatten().map(Ident::to_string).collect();
        let mut names = Vec::new();
        let mut key_args = Vec::new();
        let mut signature_types = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
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
                    if let Type::Reference(r) = &*pat_type.ty {
                        if r.mutability.is_some() {
                            errors.at(pat_type.ty.span(), format!("`{name}: &mut ...` cannot be cached: a cache hit would skip the mutation"));
                        }
                    }
                    if contains_impl_trait(&pat_type.ty) {
                        errors.at(pat_type.ty.span(), format!("`{name}: impl Trait` is not supported by `#[cached]`: use a concrete type or a generic parameter"));
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
        if let Some(templates) = &args.tags {
            check_arguments(templates, &names, f.receiver.is_some(), "tag", errors);
        }
        for s in args.skip.iter().flatten() {
            if !names.contains(&s.to_string()) {
                errors.at(
                    s.span(),
                    format!("`skip({s})`: the function has no argument `{s}`"),
                );
            }
        }
        let companions = match (args.companions, f.is_async_trait()) {
            (Some(true), true) => {
                errors.at(
                    sig.ident.span(),
                    "`companions = true` cannot work on an `#[async_trait]` method: a trait impl holds only the trait's items",
                );
                false
            }
            (Some(wanted), _) => wanted,
            (None, true) => false,
            // A method without `pub` may sit in a trait impl, which holds
            // only the trait's items: it gets companions when asked
            // (`companions = true`). Free functions, associated functions
            // and `pub` methods get them by default.
            (None, false) => f.receiver.is_none() || !matches!(f.vis, syn::Visibility::Inherited),
        };
        let key_text = args.key.as_ref().map(normalized).unwrap_or_default();
        let signature = format!(
            "{}({})key({key_text})->{}",
            sig.ident,
            signature_types.join(","),
            normalized(&f.output)
        );
        let detachable = f.receiver.is_none()
            && sig.generics.params.is_empty()
            && !f.is_async_trait()
            && owns_its_arguments(&f.params)
            && args.refresh_ahead != Some(false);
        Plan {
            key_args,
            signature,
            detachable,
            companions,
        }
    }
}

/// The return type: a value that can be owned by the cache.
fn check_output(output: &Type, errors: &mut Errors) {
    match output {
        Type::ImplTrait(_) => errors.at(
            output.span(),
            "a cached function cannot return `impl Trait`: name a concrete type",
        ),
        ty => {
            if let Some(borrowed) = borrowed_part(ty) {
                let written = borrowed
                    .to_token_stream()
                    .to_string()
                    .replace("& '", "&'")
                    .replace("& ", "&");
                errors.at(
                    borrowed.span(),
                    format!(
                        "a cached function cannot return a borrowed value (`{written}`): the cache keeps and clones what it returns; return an owned type (`String`, `Vec<T>`, `Arc<T>`, …)"
                    ),
                );
            }
        }
    }
}

/// A reference in the return type, at the top or as the value of a
/// literally written `Result`/`Option`.
fn borrowed_part(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(_) => Some(ty),
        Type::Paren(p) => borrowed_part(&p.elem),
        Type::Group(g) => borrowed_part(&g.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Result" && last.ident != "Option" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            match args.args.first()? {
                syn::GenericArgument::Type(inner) => borrowed_part(inner),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether no parameter type borrows (`&`, a lifetime) or hides a type (`impl`).
fn owns_its_arguments(params: &[(Ident, Type)]) -> bool {
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

/// The pieces every generated item shares.
struct Parts<'a> {
    f: &'a Function,
    args: &'a Args,
    plan: &'a Plan,
    private: TokenStream,
    owner: Owner,
}

/// Where the companions are written, which decides how they name the
/// function's instance to the runtime.
enum Owner {
    /// Beside the function (free, or in an inherent impl): each item's own
    /// closure prints its path (`instance(&|| ())`), and the runtime puts
    /// the function's name in place of the companion's.
    Beside,
    /// In an inherent impl beside the trait impl that holds the method
    /// (`#[cached_companions]`): the method's fn item,
    /// `<Self as Trait>::method`, prints the method's own path.
    TraitImpl(syn::Path),
}

impl Parts<'_> {
    /// The expression that names the function's instance from a companion
    /// (see [`Owner`]).
    fn probe(&self) -> TokenStream {
        let private = &self.private;
        match &self.owner {
            Owner::Beside => quote!(#private::instance(&|| ())),
            Owner::TraitImpl(trait_path) => {
                let fn_name = &self.f.sig.ident;
                // Lifetimes are left to inference (late-bound ones cannot
                // be written); types and consts name the instance.
                let args: Vec<_> = self
                    .f
                    .sig
                    .generics
                    .params
                    .iter()
                    .filter_map(|p| match p {
                        syn::GenericParam::Type(t) => Some(t.ident.to_token_stream()),
                        syn::GenericParam::Const(c) => Some(c.ident.to_token_stream()),
                        syn::GenericParam::Lifetime(_) => None,
                    })
                    .collect();
                let turbofish = if args.is_empty() {
                    TokenStream::new()
                } else {
                    quote!(::<#(#args),*>)
                };
                quote!(#private::instance(&<Self as #trait_path>::#fn_name #turbofish))
            }
        }
    }

    /// The name the runtime finds in [`probe`](Self::probe)'s path: the
    /// companion's own beside the function, the method's in a trait impl.
    fn caller(&self, companion: &Ident) -> String {
        match &self.owner {
            Owner::Beside => companion.to_string(),
            Owner::TraitImpl(_) => self.f.sig.ident.to_string(),
        }
    }

    /// `let __acgs_site = { static …: CallSite = …; &… };`, the function's descriptor. Each
    /// generated item holds its own copy: a copy is found by the function's
    /// identity, so all of them share one state in a cache.
    fn site_static(&self) -> TokenStream {
        let Parts {
            f, args, private, ..
        } = self;
        let fn_name = f.sig.ident.to_string();
        let signature = &self.plan.signature;
        let version = args.version.unwrap_or(0);
        let policy = match &args.ttl {
            // Reported by `Plan::check`: expanded only for the other errors.
            None => quote!(::core::compile_error!("`ttl` is required")),
            Some(TtlSpec::Builtin(lit)) => {
                let konst = format_ident!("{}", lit.value().to_uppercase(), span = lit.span());
                quote!(&#private::policies::#konst)
            }
            Some(TtlSpec::Literal(lit, d)) => {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                quote_spanned!(lit.span()=> &#private::literal_policy(#lit, #secs, #nanos))
            }
            Some(TtlSpec::Path(path)) => quote_spanned!(path.span()=> &#path),
        };
        let mut options = TokenStream::new();
        if let Some(name) = &args.name {
            options.extend(quote!(.renamed(#name)));
        }
        if let Some(patterns) = &args.invalidate_on {
            options.extend(quote!(.invalidate_on(&[#(#patterns),*])));
        }
        if let Some(CodecSpec::Json) = &args.codec {
            options.extend(quote!(.codec(#private::Codec::Json)));
        }
        if let Some(true) = args.lock {
            options.extend(quote!(.lock(true)));
        }
        match &args.max_staleness {
            Some(MaxStalenessSpec::Lease(d)) => {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                options.extend(quote!(.max_staleness(#private::MaxStaleness::Lease(#private::Duration::new(#secs, #nanos)))));
            }
            Some(MaxStalenessSpec::L1Ttl) => {
                options.extend(quote!(.max_staleness(#private::MaxStaleness::L1Ttl)));
            }
            None => {}
        }
        if let Some((_, d)) = &args.negative_ttl {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            options.extend(quote!(.negative_ttl(#private::Duration::new(#secs, #nanos))));
        }
        let instance_fn = args.cache.as_ref().map(|path| {
            options.extend(quote!(.instance(__acgs_instance)));
            quote_spanned! {path.span()=>
                fn __acgs_instance() -> &'static #private::Cache { #private::static_cache(&#path) }
            }
        });
        // In a block of its own, so the descriptor's name never meets the user's.
        let site = site_ident();
        let descriptor = quote! {
            #private::CallSite::new(#fn_name, ::core::module_path!(), #signature, #version, #policy)#options
        };
        let descriptor = match instance_fn {
            Some(instance_fn) => quote!({ #instance_fn #descriptor }),
            None => descriptor,
        };
        quote! {
            let #site = {
                static __ACGS_SITE: #private::CallSite = #descriptor;
                &__ACGS_SITE
            };
        }
    }

    /// `KeyBuilder::new().arg(&a).arg(&b).finish()`, each argument spanned
    /// where the user wrote it: one that cannot be serialized is reported there.
    fn key(&self) -> TokenStream {
        let private = &self.private;
        let parts: TokenStream = match &self.args.key {
            Some(expr) => quote_spanned!(expr.span()=> .arg(&(#expr))),
            None => self
                .plan
                .key_args
                .iter()
                .map(|arg| {
                    if arg == "self" {
                        quote_spanned!(arg.span()=> .receiver(&#arg))
                    } else {
                        quote_spanned!(arg.span()=> .arg(&#arg))
                    }
                })
                .collect(),
        };
        quote!(#private::KeyBuilder::new() #parts .finish())
    }

    /// The shape of the return type (what is cached, decided by its type, so
    /// `Result` and `Option` aliases work), with `cache_if` / `ttl_from` /
    /// `negative_ttl` applied.
    fn shape(&self) -> TokenStream {
        let private = &self.private;
        let output = &self.f.output;
        let span = output.span();
        let mut shape = quote_spanned!(span=> #private::shape!(#output));
        if let Some(path) = &self.args.cache_if {
            shape = quote_spanned!(path.span()=> #private::cache_if(#shape, #path));
        }
        if let Some(path) = &self.args.ttl_from {
            shape = quote_spanned!(path.span()=> #private::ttl_from(#shape, #path));
        }
        if let Some((lit, _)) = &self.args.negative_ttl {
            shape = quote_spanned!(lit.span()=> #private::negative(#shape));
        }
        shape
    }

    /// `vec![format!(…), …]`, or nothing without tags.
    fn tags(&self) -> Option<TokenStream> {
        self.args.tags.as_ref().map(|templates| {
            let exprs = templates.iter().map(crate::template::Template::format_expr);
            quote!(::std::vec![#(#exprs),*])
        })
    }

    /// The cached call around the async body `compute` (an expression).
    fn call(&self, compute: TokenStream) -> TokenStream {
        self.call_entry(compute, None)
    }

    /// The cached call, or with `refresh` (the companion's name) the
    /// recomputation that skips the reads.
    fn call_entry(&self, compute: TokenStream, refresh: Option<&str>) -> TokenStream {
        let private = &self.private;
        let site = self.site_static();
        let key = self.key();
        let shape = self.shape();
        let ret_span = self.f.output.span();
        let site_ref = site_ident();
        // The runtime takes one form of computation: the entry's tags (none
        // here) beside the return value.
        let out = Ident::new("__acgs_out", Span::mixed_site());
        let compute = match self.tags() {
            None => quote!(async move {
                let #out = #compute.await;
                (::std::vec::Vec::new(), #out)
            }),
            Some(tags) => {
                // Tags are formatted inside the computation, before the body
                // can consume the arguments: a hit pays nothing for them.
                let tag_list = Ident::new("__acgs_tags", Span::mixed_site());
                quote!(async move {
                    let #tag_list = #tags;
                    let #out = #compute.await;
                    (#tag_list, #out)
                })
            }
        };
        // The last argument of the start: the name the recomputation is
        // called by (so it resolves to the function's instance), or whether
        // the call's computation can be refreshed in the background.
        let (start_fn, run_fn, last) = match refresh {
            Some(name) => {
                let caller = self.caller(&Ident::new(name, Span::call_site()));
                ("start_recompute", "run", quote!(#caller))
            }
            None if self.plan.detachable => ("start", "run_refreshing", quote!(true)),
            None => ("start", "run", quote!(false)),
        };
        let start_fn = Ident::new(start_fn, ret_span);
        let run_fn = Ident::new(run_fn, ret_span);
        // Spanned on the return type: a value that cannot be cached is
        // reported at the type the user wrote.
        // The path is chosen by autoref (see `dispatch.rs` in the core): a
        // value that cannot be cached gets one error, at the return type.
        let shape_ref = Ident::new("__acgs_shape", Span::mixed_site());
        // The check is one expression of tokens located at the return type
        // (with the macro's hygiene), so the error's first line points at
        // the type the user wrote, not at the attribute.
        // (Plain spans: an identifier of the macro's own hygiene is shown
        // at the attribute whatever its location.)
        let path_ref = Ident::new("__acgs_path", ret_span);
        let checked_ref = Ident::new("__acgs_value_shape", ret_span);
        let checked = Ident::new("checked", ret_span);
        let hit = Ident::new("__acgs_hit", Span::mixed_site());
        let rest = Ident::new("__acgs_rest", Span::mixed_site());
        // The function's own call names its instance by its own closure; the
        // refresh companion as every companion does.
        let probe = match refresh {
            Some(_) => self.probe(),
            None => quote!(#private::instance(&|| ())),
        };
        let call = quote_spanned! {ret_span=>
            let #shape_ref = #shape;
            let #path_ref = ({
                // One of the two is used, depending on the value.
                #[allow(unused_imports)]
                use #private::{ChooseEngine as _, ChooseReport as _};
                (&&&#private::dispatch(&#shape_ref)).path()
            });
            let #checked_ref = &#shape_ref;
            // The start is synchronous (the key, the L1 probe): a hit
            // returns before the computation's future is made.
            match #path_ref.#checked(#checked_ref).#start_fn(
                #site_ref,
                #probe,
                #shape_ref,
                #key,
                #last,
            ) {
                ::core::result::Result::Ok(#hit) => #hit,
                ::core::result::Result::Err(#rest) => #rest.#run_fn(#compute).await,
            }
        };
        quote! {
            #site
            #call
        }
    }
}

/// The local holding the descriptor: mixed-site hygiene, so the user's
/// code can neither see nor shadow it.
fn site_ident() -> Ident {
    Ident::new("__acgs_site", Span::mixed_site())
}

fn generate(f: Function, args: &Args, plan: &Plan) -> TokenStream {
    let parts = Parts {
        f: &f,
        args,
        plan,
        private: quote!(::acgs_cache::__private),
        owner: Owner::Beside,
    };
    let Function {
        attrs, vis, sig, ..
    } = &f;
    let body = match &f.body {
        Body::Async(block) => {
            let call = parts.call(quote!(async move #block));
            quote!({ #call })
        }
        Body::AsyncTrait { before, inner } => {
            let call = parts.call(inner.to_token_stream());
            quote!({
                #(#before)*
                ::std::boxed::Box::pin(async move { #call })
            })
        }
    };
    // The body's braces carry the return type's span: a value that cannot be
    // cached is reported at the type the user wrote, not at the attribute.
    let body = match syn::parse2::<proc_macro2::Group>(body) {
        Ok(mut body) => {
            body.set_span(f.output.span());
            body.into_token_stream()
        }
        Err(e) => e.to_compile_error(),
    };
    let companions = plan.companions.then(|| companions(&parts));
    // Where items can be added beside the function, a name given twice in
    // one module (or one type's impls) is a compile error naming it.
    let claim = plan
        .companions
        .then(|| parts.args.name.as_ref().map(name_claim))
        .flatten();
    quote! {
        #(#attrs)*
        #vis #sig #body
        #companions
        #claim
    }
}

/// `const two_cached_functions_are_named_<name>: () = ();`: a second
/// function given the same `name` in the same module, or in an impl of the
/// same type, defines it again, and rustc reports "the name
/// `two_cached_functions_are_named_lookup` is defined multiple times" at its
/// `name = "…"`. (Elsewhere the runtime refuses the second the name.)
fn name_claim(name: &LitStr) -> TokenStream {
    let ident = format_ident!(
        "two_cached_functions_are_named_{}",
        name.value().replace('-', "_"),
        span = name.span()
    );
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #ident: () = ();
    }
}

/// `invalidate_<fn>(same arguments)`, `invalidate_all_<fn>()`,
/// `warm_entry_<fn>(same arguments, value)`, `<fn>_uncached(same
/// arguments)` and `refresh_<fn>(same arguments)` next to the function (free, or associated in an inherent
/// impl), so its cache API is found where the function is documented.
fn companions(parts: &Parts<'_>) -> TokenStream {
    let Parts { f, private, .. } = parts;
    let sig = &f.sig;
    let vis = &f.vis;
    let fn_name = &sig.ident;
    // Conditions and lint levels apply to the companions too.
    let cfgs: Vec<_> = f
        .attrs
        .iter()
        .filter(|a| {
            ["cfg", "allow", "expect", "warn", "deny"]
                .iter()
                .any(|name| a.path().is_ident(name))
        })
        .collect();
    let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
    let receiver = f.receiver.as_ref().map(|r| {
        let self_token = r.self_token;
        quote!(&#self_token,)
    });
    let params: Vec<_> = f
        .params
        .iter()
        .map(|(ident, ty)| quote!(#ident: #ty))
        .collect();
    let output = &f.output;
    let site = parts.site_static();
    let key = parts.key();
    let one = format_ident!("invalidate_{}", fn_name);
    let all = format_ident!("invalidate_all_{}", fn_name);
    let warm = format_ident!("warm_entry_{}", fn_name);
    let uncached = format_ident!("{}_uncached", fn_name);
    let hint = format_ident!(
        "__in_a_trait_impl_put_cached_companions_on_the_impl_or_write_companions_false_for_{}",
        fn_name
    );
    // A companion beside the function in a trait impl would not be one of
    // the trait's items: this one's name says what to do instead.
    let hint = matches!(parts.owner, Owner::Beside).then(|| {
        quote! {
            #(#cfgs)*
            #[doc(hidden)]
            #[allow(dead_code, non_snake_case)]
            fn #hint() {}
        }
    });
    let (one_name, all_name, warm_name) =
        (parts.caller(&one), parts.caller(&all), parts.caller(&warm));
    let probe = parts.probe();
    let doc_one = format!(
        "Invalidates the cached entry of `{fn_name}` for these arguments, on every instance."
    );
    let doc_all = format!("Invalidates every cached entry of `{fn_name}`, on every instance.");
    let doc_warm = format!(
        "The cache entry of `{fn_name}` for these arguments, holding what the function would return (`value`, or `Ok(value)` / `Some(value)`), for `acgs_cache::Warmer`."
    );
    let doc_uncached = format!("Runs `{fn_name}`'s body without the cache.");
    let refresh = format_ident!("refresh_{}", fn_name);
    let doc_refresh = format!(
        "Computes `{fn_name}` for these arguments without reading the cache, stores the result (as a miss would: one computation per key, the fleet lock with `lock = true`, the invalidation checks) and returns it."
    );
    let refresh_fn = refresh_item(parts, &refresh);
    let value = if f.params.iter().any(|(ident, _)| ident == "value") {
        format_ident!("cached_value")
    } else {
        format_ident!("value")
    };
    let tags = parts
        .tags()
        .unwrap_or_else(|| quote!(::std::vec::Vec::new()));
    let shape = parts.shape();
    let ret_span = output.span();
    let warm_into = quote_spanned!(ret_span=> impl #private::WarmInto<#output>);
    let uncached_fn = uncached_item(f, &uncached);
    let site_ref = site_ident();
    let shape_ref = Ident::new("__acgs_shape", Span::mixed_site());
    let warm_call = quote_spanned! {ret_span=>
        let #shape_ref = #shape;
        ({
            #[allow(unused_imports)]
            use #private::{ChooseEngine as _, ChooseSilent as _};
            (&&&#private::dispatch(&#shape_ref)).warm_path()
        })
        .warm_entry(
            #site_ref,
            #probe,
            #warm_name,
            #shape_ref,
            #key,
            #private::WarmInto::into_return(#value),
            #tags,
        )
    };
    quote! {
        #hint

        #(#cfgs)*
        #[doc = #doc_one]
        #[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
        #vis async fn #one #generics (#receiver #(#params),*) -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> #where_clause {
            #site
            #private::invalidate_entry(#site_ref, #probe, #one_name, #key).await
        }

        #(#cfgs)*
        #[doc = #doc_all]
        #[allow(unused_variables, clippy::needless_lifetimes)]
        #vis async fn #all #generics (#receiver) -> ::core::result::Result<::acgs_cache::LogPosition, ::acgs_cache::Error> #where_clause {
            #site
            #private::invalidate_function(#site_ref, #probe, #all_name).await
        }

        #(#cfgs)*
        #[doc = #doc_warm]
        #[allow(unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
        #vis fn #warm #generics (#receiver #(#params,)* #value: #warm_into) -> ::acgs_cache::WarmEntry #where_clause {
            #site
            #warm_call
        }

        #(#cfgs)*
        #[doc = #doc_uncached]
        #uncached_fn

        #(#cfgs)*
        #[doc = #doc_refresh]
        #refresh_fn
    }
}

/// `refresh_<fn>`: the function's signature under another name, whose body
/// computes, stores and returns the value without reading the cache.
fn refresh_item(parts: &Parts<'_>, name: &Ident) -> TokenStream {
    let f = parts.f;
    let mut sig = f.sig.clone();
    sig.ident = name.clone();
    let vis = &f.vis;
    let refresh = name.to_string();
    let body = match &f.body {
        Body::Async(block) => {
            let call = parts.call_entry(quote!(async move #block), Some(&refresh));
            quote!({ #call })
        }
        // No companions in trait impls (see `companions`).
        Body::AsyncTrait { .. } => {
            quote!({ ::core::compile_error!("no companions in trait impls") })
        }
    };
    quote! {
        #[allow(dead_code, unused_variables, clippy::needless_lifetimes, clippy::too_many_arguments)]
        #vis #sig #body
    }
}

/// `<fn>_uncached`: the same signature and body as written, under another name.
fn uncached_item(f: &Function, name: &Ident) -> TokenStream {
    let mut sig = f.sig.clone();
    sig.ident = name.clone();
    let vis = &f.vis;
    let body = match &f.body {
        Body::Async(block) => block.to_token_stream(),
        // The method as `#[async_trait]` wrote it (companions are not made
        // in trait impls today, but the body is well defined).
        Body::AsyncTrait { before, inner } => {
            quote!({ #(#before)* ::std::boxed::Box::pin(#inner) })
        }
    };
    quote! {
        #[allow(dead_code, unused_variables, clippy::needless_lifetimes)]
        #vis #sig #body
    }
}
