//! What the attribute is applied to: an `async fn`, or a method that
//! `#[async_trait]` already rewrote into `fn … -> Pin<Box<dyn Future<Output
//! = R> …>> { Box::pin(async move { … }) }` (the attribute on the impl runs
//! first). Both give the same parts: the value type, the parameters, the
//! async body.

use syn::{
    Attribute, Block, Expr, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType,
    Signature, Stmt, Type, TypeParamBound, Visibility,
};

/// The async body of the function.
pub(crate) enum Body {
    /// An `async fn`'s block.
    Async(Box<Block>),
    /// A method `#[async_trait]` rewrote: the statements before the
    /// `Box::pin(…)` and the async block inside it.
    AsyncTrait {
        before: Vec<Stmt>,
        /// The future: an async block, or one another attribute wrapped
        /// (`#[tracing::instrument]` makes it `Instrument::instrument(async
        /// move { … }, span)`).
        inner: Box<Expr>,
    },
}

/// A function the attribute can wrap.
pub(crate) struct Function {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) body: Body,
    /// What the call returns (`R` of `Pin<Box<dyn Future<Output = R>>>` for
    /// an `#[async_trait]` method).
    pub(crate) output: Type,
    pub(crate) receiver: Option<syn::Receiver>,
    /// The typed parameters, in order (destructuring patterns are refused
    /// by the checks; they are skipped here).
    pub(crate) params: Vec<(syn::Ident, Type)>,
}

impl Function {
    /// Recognises the function, or says why the attribute cannot apply to
    /// it. `#[invalidates]` (`writes`) accepts functions that return `()`;
    /// `#[cached]` has nothing to cache in them.
    pub(crate) fn from_item(item: ItemFn, writes: bool) -> Result<Function, syn::Error> {
        let attribute = if writes {
            "#[invalidates]"
        } else {
            "#[cached]"
        };
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
        } = item;
        let (body, output) = if sig.asyncness.is_some() {
            let output = match &sig.output {
                ReturnType::Type(_, ty) => (**ty).clone(),
                ReturnType::Default if writes => syn::parse_quote!(()),
                ReturnType::Default => {
                    return Err(syn::Error::new(
                        sig.ident.span(),
                        "a cached function must return a value; `()` has nothing to cache",
                    ))
                }
            };
            (Body::Async(block), output)
        } else if let Some((before, inner, output)) = async_trait_parts(&sig, &block) {
            (Body::AsyncTrait { before, inner }, output)
        } else {
            return Err(syn::Error::new(
                sig.fn_token.span,
                format!("`{attribute}` works on `async fn` only: add `async` (in a trait impl, `#[async_trait]` methods work too)"),
            ));
        };
        let receiver = sig.receiver().cloned();
        let params = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(pat_type) => match &*pat_type.pat {
                    Pat::Ident(p) => Some((p.ident.clone(), (*pat_type.ty).clone())),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect();
        Ok(Function {
            attrs,
            vis,
            sig,
            body,
            output,
            receiver,
            params,
        })
    }

    /// Whether this is an `#[async_trait]` method (so it sits in a trait
    /// impl, where no companion items can be added).
    pub(crate) fn is_async_trait(&self) -> bool {
        matches!(self.body, Body::AsyncTrait { .. })
    }
}

/// `(statements before, the async block, R)` when `block` is
/// `…; Box::pin(async move { … })` and the signature returns
/// `Pin<Box<dyn Future<Output = R> …>>`.
fn async_trait_parts(sig: &Signature, block: &Block) -> Option<(Vec<Stmt>, Box<Expr>, Type)> {
    let ReturnType::Type(_, ty) = &sig.output else {
        return None;
    };
    let output = future_output(ty)?;
    let (last, before) = block.stmts.split_last()?;
    let Stmt::Expr(Expr::Call(call), None) = last else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = func
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    let inner = call.args.first()?;
    Some((before.to_vec(), Box::new(inner.clone()), output))
}

/// `R` in `Pin<Box<dyn Future<Output = R> + Send + '_>>`.
fn future_output(ty: &Type) -> Option<Type> {
    let inner = single_generic(ty, "Pin")?;
    let boxed = single_generic(&inner, "Box")?;
    let Type::TraitObject(object) = boxed else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(t) = bound else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}

/// The one type argument of `Name<T>` (by the path's last segment).
fn single_generic(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}
