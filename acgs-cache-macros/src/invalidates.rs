//! `#[invalidates("event", "tenant.{tenant}", cache = PATH)]`: a write
//! function that publishes its events after it returns (`Ok` for a
//! `Result`, under any alias; with `when = "always"`, whatever it returns:
//! for a write that can fail halfway), so that writes and reads name the
//! same events. The templates are the tag templates of `#[cached]`: a read tagged
//! `tenant.{tenant}` is dropped by a write that invalidates `tenant.{tenant}`
//! with the same value.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, ItemFn, LitStr, Path, Token};

use crate::errors::Errors;
use crate::func::{Body, Function};
use crate::template::{check_arguments, Template};

struct Args {
    events: Vec<Template>,
    cache: Option<Path>,
    /// `when = "always"`: publish even when the write returns `Err`.
    always: Option<bool>,
    errors: Errors,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args {
            events: Vec::new(),
            cache: None,
            always: None,
            errors: Errors::default(),
        };
        while !input.is_empty() {
            if input.peek(LitStr) {
                match Template::parse(input.parse()?, "event") {
                    Ok(template) => args.events.push(template),
                    Err(e) => args.errors.push(e),
                }
            } else if input.peek(Ident) && input.peek2(Token![=]) {
                let name: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                match (name.to_string().as_str(), value) {
                    ("cache", Expr::Path(path)) if args.cache.is_none() => {
                        args.cache = Some(path.path);
                    }
                    ("cache", Expr::Path(_)) => args.errors.at(name.span(), "`cache` is given twice"),
                    ("cache", value) => args.errors.push(syn::Error::new_spanned(
                        value,
                        "`cache` takes the path of a `static` cache, e.g. `cache = CACHE`",
                    )),
                    ("when", _) if args.always.is_some() => {
                        args.errors.at(name.span(), "`when` is given twice")
                    }
                    (
                        "when",
                        Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(when),
                            ..
                        }),
                    ) if matches!(when.value().as_str(), "always" | "ok") => {
                        args.always = Some(when.value() == "always");
                    }
                    ("when", value) => args.errors.push(syn::Error::new_spanned(
                        value,
                        "`when` is \"ok\" (the default: publish once the write returned `Ok`) or \"always\" (publish whatever it returned: a write that can fail halfway)",
                    )),
                    (other, _) => args.errors.at(
                        name.span(),
                        format!("unknown `#[invalidates]` argument `{other}`: it takes event templates (\"governance.rules.updated\", \"tenant.{{tenant}}\"), `cache = PATH` and `when = \"always\"`"),
                    ),
                }
            } else {
                return Err(input.error(
                    "`#[invalidates]` takes event templates, e.g. `#[invalidates(\"governance.rules.updated\", \"tenant.{tenant}\")]`",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

pub(crate) fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    let with_errors = |e: syn::Error| {
        let errors = e.to_compile_error();
        quote!(#item #errors)
    };
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            return with_errors(syn::Error::new(
                Span::call_site(),
                "`#[invalidates]` works on `async fn` items only",
            ))
        }
    };
    let Args {
        events,
        cache,
        always,
        mut errors,
    } = match syn::parse2::<Args>(args) {
        Ok(args) => args,
        Err(e) => return with_errors(e),
    };
    if events.is_empty() && errors.is_empty() {
        errors.at(
            Span::call_site(),
            "`#[invalidates]` needs at least one event, e.g. `#[invalidates(\"governance.rules.updated\")]`",
        );
    }
    let function = match Function::from_item(item_fn, true) {
        Ok(function) => function,
        Err(e) => return with_errors(errors.ending_with(e)),
    };
    let names: Vec<String> = function
        .params
        .iter()
        .map(|(ident, _)| ident.to_string())
        .collect();
    check_arguments(
        &events,
        &names,
        function.receiver.is_some(),
        "event",
        &mut errors,
    );
    if let Err(e) = errors.into_result() {
        return with_errors(e);
    }
    generate(&function, &events, cache.as_ref(), always.unwrap_or(false))
}

fn generate(f: &Function, events: &[Template], cache: Option<&Path>, always: bool) -> TokenStream {
    let private = quote!(::acgs_cache::__private);
    let formatted = events.iter().map(Template::format_expr);
    let cache = match cache {
        Some(path) => quote!(::core::option::Option::Some(#private::static_cache(&#path))),
        None => quote!(::core::option::Option::None),
    };
    let output = &f.output;
    let (events_ident, out) = (
        Ident::new("__acgs_events", Span::mixed_site()),
        Ident::new("__acgs_out", Span::mixed_site()),
    );
    // The events are formatted before the body, which may consume the
    // arguments; they are published once the body has succeeded (or, with
    // `when = "always"`, once it has returned).
    let wrap = |body: TokenStream| {
        let publish = if always {
            quote!(#private::publish_after(#cache, &#events_ident).await;)
        } else {
            quote! {
                let succeeded = {
                    use #private::{WrittenAny as _, WrittenResult as _};
                    (&#private::Written(&#out)).succeeded()
                };
                if succeeded {
                    #private::publish_after(#cache, &#events_ident).await;
                }
            }
        };
        quote! {
            let #events_ident: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#formatted),*];
            let #out: #output = #body.await;
            #publish
            #out
        }
    };
    let Function {
        attrs, vis, sig, ..
    } = f;
    let body = match &f.body {
        Body::Async(block) => {
            let inner = wrap(quote!(async move #block));
            quote!({ #inner })
        }
        Body::AsyncTrait { before, inner } => {
            let inner = wrap(inner.to_token_stream());
            quote!({
                #(#before)*
                ::std::boxed::Box::pin(async move { #inner })
            })
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig #body
    }
}
