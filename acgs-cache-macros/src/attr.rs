//! Parsing of `#[cached(...)]` arguments.
//!
//! Every argument has one `set_*` slot so duplicates are rejected at the
//! second occurrence; all problems are collected and reported together.

use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Expr, Ident, LitInt, LitStr, Path, Token};

use crate::grammar;

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(invalidate_on);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(key);
    syn::custom_keyword!(negative_ttl);
    syn::custom_keyword!(codec);
    syn::custom_keyword!(name);
    syn::custom_keyword!(version);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(consistency);
    syn::custom_keyword!(companions);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(refresh_ahead);
}

/// Where a function's TTL policy comes from.
pub(crate) enum TtlSpec {
    /// A built-in policy, by its name.
    Builtin(LitStr),
    /// A literal duration such as `"90s"`.
    Literal(LitStr, Duration),
    /// A path to a user `const` policy.
    Path(Path),
}

pub(crate) enum ConsistencySpec {
    Bounded,
    Strict,
}

pub(crate) enum CodecSpec {
    Postcard,
    Json,
}

/// The parsed arguments.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) ttl: Option<TtlSpec>,
    pub(crate) invalidate_on: Option<Vec<LitStr>>,
    pub(crate) skip: Option<Vec<Ident>>,
    pub(crate) key: Option<Expr>,
    pub(crate) negative_ttl: Option<(LitStr, Duration)>,
    pub(crate) codec: Option<CodecSpec>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<u32>,
    pub(crate) cache: Option<Expr>,
    pub(crate) tags: Option<Vec<LitStr>>,
    pub(crate) consistency: Option<ConsistencySpec>,
    pub(crate) companions: Option<bool>,
    pub(crate) lock: Option<bool>,
    pub(crate) refresh_ahead: Option<bool>,
    /// Span of the whole argument list, for "missing `ttl`".
    pub(crate) span: Option<Span>,
    /// A `ttl` argument was written (even if it did not parse).
    pub(crate) ttl_written: bool,
}

/// Collects errors instead of stopping at the first.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

const KEYS: &str = "`ttl`, `invalidate_on`, `tags`, `skip`, `key`, `negative_ttl`, `codec`, \
                    `consistency`, `lock`, `refresh_ahead`, `name`, `version`, `cache` or `companions`";

impl Args {
    pub(crate) fn parse_all(input: ParseStream<'_>, errors: &mut Errors) -> Args {
        let mut args = Args {
            span: Some(input.span()),
            ..Args::default()
        };
        while !input.is_empty() {
            if let Err(e) = args.parse_one(input, errors) {
                errors.push(e);
                // Resynchronise at the next comma so later arguments are still checked.
                while !input.is_empty() && !input.peek(Token![,]) {
                    let _ = input.parse::<proc_macro2::TokenTree>();
                }
            }
            if !input.is_empty() {
                if let Err(e) = input.parse::<Token![,]>() {
                    errors.push(e);
                    break;
                }
            }
        }
        args
    }

    fn parse_one(&mut self, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::ttl) {
            let k = input.parse::<kw::ttl>()?;
            self.ttl_written = true;
            input.parse::<Token![=]>()?;
            let spec = if input.peek(LitStr) {
                parse_ttl_literal(input.parse()?)?
            } else {
                TtlSpec::Path(input.parse()?)
            };
            set(&mut self.ttl, spec, k.span, "ttl", errors);
        } else if lookahead.peek(kw::invalidate_on) {
            let k = input.parse::<kw::invalidate_on>()?;
            input.parse::<Token![=]>()?;
            let patterns = parse_str_or_list(input)?;
            for p in &patterns {
                if let Err(e) = grammar::check_pattern(&p.value()) {
                    errors.at(
                        p.span(),
                        format!("invalid `invalidate_on` pattern {:?}: it {e}", p.value()),
                    );
                }
            }
            set(
                &mut self.invalidate_on,
                patterns,
                k.span,
                "invalidate_on",
                errors,
            );
        } else if lookahead.peek(kw::skip) {
            let k = input.parse::<kw::skip>()?;
            let content;
            parenthesized!(content in input);
            let names =
                Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
            set(
                &mut self.skip,
                names.into_iter().collect(),
                k.span,
                "skip",
                errors,
            );
        } else if lookahead.peek(kw::key) {
            let k = input.parse::<kw::key>()?;
            input.parse::<Token![=]>()?;
            set(&mut self.key, input.parse()?, k.span, "key", errors);
        } else if lookahead.peek(kw::negative_ttl) {
            let k = input.parse::<kw::negative_ttl>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let duration = parse_duration(&lit)?;
            set(
                &mut self.negative_ttl,
                (lit, duration),
                k.span,
                "negative_ttl",
                errors,
            );
        } else if lookahead.peek(kw::codec) {
            let k = input.parse::<kw::codec>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let codec = match lit.value().as_str() {
                "postcard" => CodecSpec::Postcard,
                "json" => CodecSpec::Json,
                other => {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown codec {other:?}: expected \"postcard\" or \"json\""),
                    ))
                }
            };
            set(&mut self.codec, codec, k.span, "codec", errors);
        } else if lookahead.peek(kw::name) {
            let k = input.parse::<kw::name>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let value = lit.value();
            if value.is_empty() || value.contains(|c: char| c == ':' || c.is_whitespace()) {
                return Err(syn::Error::new(
                    lit.span(),
                    "`name` must be non-empty, without `:` or spaces (it is a key segment)",
                ));
            }
            set(&mut self.name, lit, k.span, "name", errors);
        } else if lookahead.peek(kw::version) {
            let k = input.parse::<kw::version>()?;
            input.parse::<Token![=]>()?;
            let lit: LitInt = input.parse()?;
            set(
                &mut self.version,
                lit.base10_parse()?,
                k.span,
                "version",
                errors,
            );
        } else if lookahead.peek(kw::cache) {
            let k = input.parse::<kw::cache>()?;
            input.parse::<Token![=]>()?;
            set(&mut self.cache, input.parse()?, k.span, "cache", errors);
        } else if lookahead.peek(kw::tags) {
            let k = input.parse::<kw::tags>()?;
            input.parse::<Token![=]>()?;
            let templates = parse_str_or_list(input)?;
            for t in &templates {
                if let Err(message) = check_tag_template(&t.value()) {
                    errors.at(
                        t.span(),
                        format!("invalid tag template {:?}: {message}", t.value()),
                    );
                }
            }
            set(&mut self.tags, templates, k.span, "tags", errors);
        } else if lookahead.peek(kw::consistency) {
            let k = input.parse::<kw::consistency>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let consistency = match lit.value().as_str() {
                "bounded" => ConsistencySpec::Bounded,
                "strict" => ConsistencySpec::Strict,
                other => {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown consistency {other:?}: expected \"bounded\" (serve L1 for at most its TTL while invalidations cannot be heard) or \"strict\" (bypass L1 meanwhile)"),
                    ))
                }
            };
            set(
                &mut self.consistency,
                consistency,
                k.span,
                "consistency",
                errors,
            );
        } else if lookahead.peek(kw::lock) {
            let k = input.parse::<kw::lock>()?;
            input.parse::<Token![=]>()?;
            let lit: syn::LitBool = input.parse()?;
            set(&mut self.lock, lit.value, k.span, "lock", errors);
        } else if lookahead.peek(kw::refresh_ahead) {
            let k = input.parse::<kw::refresh_ahead>()?;
            input.parse::<Token![=]>()?;
            let lit: syn::LitBool = input.parse()?;
            set(
                &mut self.refresh_ahead,
                lit.value,
                k.span,
                "refresh_ahead",
                errors,
            );
        } else if lookahead.peek(kw::companions) {
            let k = input.parse::<kw::companions>()?;
            input.parse::<Token![=]>()?;
            let lit: syn::LitBool = input.parse()?;
            set(
                &mut self.companions,
                lit.value,
                k.span,
                "companions",
                errors,
            );
        } else if input.peek(Ident::peek_any) {
            let unknown = input.call(Ident::parse_any)?;
            return Err(syn::Error::new(
                unknown.span(),
                format!("unknown `#[cached]` argument `{unknown}`: expected {KEYS}"),
            ));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }
}

fn set<T>(slot: &mut Option<T>, value: T, span: Span, name: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(span, format!("duplicate `{name}` argument"));
    } else {
        *slot = Some(value);
    }
}

fn parse_str_or_list(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        Ok(Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect())
    } else {
        Ok(vec![input.parse()?])
    }
}

/// A tag template: text with `{argument}` placeholders (the names are
/// checked against the parameters later, where the signature is known).
fn check_tag_template(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("a tag must not be empty".into());
    }
    for name in placeholders(template)? {
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "`{{{name}}}` is not an argument name; placeholders are `{{argument}}`"
            ));
        }
    }
    Ok(())
}

/// The placeholder names of a tag template, in order.
pub(crate) fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("`}` without a matching `{`".into());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("`{` without a matching `}`")?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

fn parse_duration(lit: &LitStr) -> syn::Result<Duration> {
    match humantime::parse_duration(lit.value().trim()) {
        Ok(d) if d.is_zero() => Err(syn::Error::new(
            lit.span(),
            "a cache lifetime must be positive",
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!(
                "{:?} is not a duration ({e}); write e.g. \"90s\", \"5m\" or \"1h30m\"",
                lit.value()
            ),
        )),
    }
}

fn parse_ttl_literal(lit: LitStr) -> syn::Result<TtlSpec> {
    let value = lit.value();
    if grammar::BUILTIN_POLICY_NAMES.contains(&value.as_str()) {
        return Ok(TtlSpec::Builtin(lit));
    }
    let looks_like_a_name = value.chars().any(|c| c.is_ascii_alphabetic())
        && value.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        && value.len() > 3;
    if looks_like_a_name {
        let closest = grammar::BUILTIN_POLICY_NAMES
            .iter()
            .map(|known| (strsim::damerau_levenshtein(known, &value), known))
            .min()
            .filter(|(distance, _)| *distance <= 4);
        let hint = match closest {
            Some((_, known)) => format!("; did you mean \"{known}\"?"),
            None => format!(
                "; the built-in policies are {}",
                grammar::BUILTIN_POLICY_NAMES.join(", ")
            ),
        };
        return Err(syn::Error::new(
            lit.span(),
            format!("unknown TTL policy \"{value}\"{hint} (or write a duration such as \"5m\", or a path to a `TtlPolicy` const)"),
        ));
    }
    let duration = parse_duration(&lit)?;
    Ok(TtlSpec::Literal(lit, duration))
}

/// A parser that records errors instead of failing, so the item is always kept.
pub(crate) struct Parsed(pub(crate) Args, pub(crate) Errors);

impl Parse for Parsed {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let args = Args::parse_all(input, &mut errors);
        Ok(Parsed(args, errors))
    }
}
