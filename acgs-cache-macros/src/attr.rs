//! Parsing of `#[cached(...)]` arguments.
//!
//! Every argument has one `set_*` slot so duplicates are rejected at the
//! second occurrence; all problems are collected and reported together.

use std::time::Duration;

use acgs_cache_grammar as grammar;
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Expr, Ident, LitInt, LitStr, Path, Token};

use crate::errors::Errors;
use crate::template::Template;

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
    syn::custom_keyword!(max_staleness);
    syn::custom_keyword!(consistency);
    syn::custom_keyword!(companions);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(refresh_ahead);
    syn::custom_keyword!(cache_if);
    syn::custom_keyword!(ttl_from);
}

/// Every argument, for "expected …" and "did you mean …".
const KEYS: [&str; 16] = [
    "ttl",
    "invalidate_on",
    "tags",
    "skip",
    "key",
    "negative_ttl",
    "codec",
    "max_staleness",
    "lock",
    "refresh_ahead",
    "cache_if",
    "ttl_from",
    "name",
    "version",
    "cache",
    "companions",
];

/// Where a function's TTL policy comes from.
pub(crate) enum TtlSpec {
    /// A built-in policy, by its name.
    Builtin(LitStr),
    /// A literal duration such as `"90s"`.
    Literal(LitStr, Duration),
    /// A path to a user `const` policy.
    Path(Path),
}

/// `max_staleness = "250ms"` or `"l1_ttl"`.
pub(crate) enum MaxStalenessSpec {
    Lease(Duration),
    L1Ttl,
}

/// The shortest lease the runtime accepts (`MIN_MAX_STALENESS`).
const MIN_LEASE: Duration = Duration::from_millis(20);

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
    pub(crate) cache: Option<Path>,
    pub(crate) tags: Option<Vec<Template>>,
    pub(crate) max_staleness: Option<MaxStalenessSpec>,
    pub(crate) companions: Option<bool>,
    pub(crate) lock: Option<bool>,
    pub(crate) refresh_ahead: Option<bool>,
    pub(crate) cache_if: Option<Path>,
    pub(crate) ttl_from: Option<Path>,
    /// Span of the whole argument list, for "missing `ttl`".
    pub(crate) span: Option<Span>,
    /// A `ttl` argument was written (even if it did not parse).
    pub(crate) ttl_written: bool,
}

fn expected_keys() -> String {
    let quoted: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// "did you mean `tags`?" for a misspelled argument, when one is close.
fn closest_key(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|known| (strsim::damerau_levenshtein(known, unknown), *known))
        .filter(|(distance, known)| {
            *distance <= 2 || known.starts_with(unknown) || unknown.starts_with(known)
        })
        .min()
        .map(|(_, known)| known)
}

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
            } else if input.peek(LitInt) || input.peek(syn::LitFloat) {
                let number: proc_macro2::TokenTree = input.parse()?;
                return Err(syn::Error::new(
                    number.span(),
                    format!("`ttl` takes a string with a unit, e.g. `ttl = \"{number}s\"`, a built-in policy name such as `ttl = \"policy_decision\"`, or a path to a `TtlPolicy` const"),
                ));
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
            let valid = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(syn::Error::new(
                    lit.span(),
                    "`name` replaces the function's name in keys and stats: letters, digits, `_` and `-`",
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
            let expr: Expr = input.parse()?;
            let Expr::Path(path) = expr else {
                return Err(syn::Error::new_spanned(
                    expr,
                    "`cache` takes the path of a `static` cache, e.g. `cache = CACHE` with `static CACHE: LazyLock<Cache> = LazyLock::new(|| ...)`: a cache made per call would never hit",
                ));
            };
            set(&mut self.cache, path.path, k.span, "cache", errors);
        } else if lookahead.peek(kw::tags) {
            let k = input.parse::<kw::tags>()?;
            input.parse::<Token![=]>()?;
            let mut templates = Vec::new();
            for lit in parse_str_or_list(input)? {
                match Template::parse(lit, "tag") {
                    Ok(t) => templates.push(t),
                    Err(e) => errors.push(e),
                }
            }
            set(&mut self.tags, templates, k.span, "tags", errors);
        } else if lookahead.peek(kw::max_staleness) {
            let k = input.parse::<kw::max_staleness>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let spec = if lit.value().trim() == "l1_ttl" {
                MaxStalenessSpec::L1Ttl
            } else {
                let lease = parse_duration(&lit).map_err(|e| {
                    syn::Error::new(
                        lit.span(),
                        format!("{e}, or \"l1_ttl\" to serve L1 entries for their L1 TTL while the invalidation log is unheard"),
                    )
                })?;
                if lease < MIN_LEASE {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("`max_staleness` must be at least {MIN_LEASE:?}: the clock's resolution and a renewal's round trip would leave no lease"),
                    ));
                }
                MaxStalenessSpec::Lease(lease)
            };
            set(
                &mut self.max_staleness,
                spec,
                k.span,
                "max_staleness",
                errors,
            );
        } else if lookahead.peek(kw::consistency) {
            // The argument this one replaced: say what became of it.
            let k = input.parse::<kw::consistency>()?;
            while !input.is_empty() && !input.peek(Token![,]) {
                let _ = input.parse::<proc_macro2::TokenTree>();
            }
            return Err(syn::Error::new(
                k.span,
                "`consistency` was replaced by `max_staleness`: by default an entry is never served more than 1 s after its invalidation, on any instance (`strict`, and more); `max_staleness = \"250ms\"` sets a shorter bound, `max_staleness = \"l1_ttl\"` serves L1 entries for their L1 TTL while the log is unheard (the former `bounded`)",
            ));
        } else if lookahead.peek(kw::lock) {
            let k = input.parse::<kw::lock>()?;
            self.lock = Some(parse_flag(input, k.span, "lock", self.lock, errors)?);
        } else if lookahead.peek(kw::refresh_ahead) {
            let k = input.parse::<kw::refresh_ahead>()?;
            self.refresh_ahead = Some(parse_flag(
                input,
                k.span,
                "refresh_ahead",
                self.refresh_ahead,
                errors,
            )?);
        } else if lookahead.peek(kw::companions) {
            let k = input.parse::<kw::companions>()?;
            self.companions = Some(parse_flag(
                input,
                k.span,
                "companions",
                self.companions,
                errors,
            )?);
        } else if lookahead.peek(kw::cache_if) {
            let k = input.parse::<kw::cache_if>()?;
            input.parse::<Token![=]>()?;
            let path = parse_fn_path(input, "cache_if", "fn(&Output) -> bool")?;
            set(&mut self.cache_if, path, k.span, "cache_if", errors);
        } else if lookahead.peek(kw::ttl_from) {
            let k = input.parse::<kw::ttl_from>()?;
            input.parse::<Token![=]>()?;
            let path = parse_fn_path(input, "ttl_from", "fn(&Value) -> Option<Duration>")?;
            set(&mut self.ttl_from, path, k.span, "ttl_from", errors);
        } else if input.peek(Ident::peek_any) {
            let unknown = input.call(Ident::parse_any)?;
            let hint = match closest_key(&unknown.to_string()) {
                Some(known) => format!("did you mean `{known}`?"),
                None => format!("expected {}", expected_keys()),
            };
            return Err(syn::Error::new(
                unknown.span(),
                format!("unknown `#[cached]` argument `{unknown}`: {hint}"),
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

/// `= true` / `= false` (or nothing: `lock` alone means `lock = true`).
fn parse_flag(
    input: ParseStream<'_>,
    span: Span,
    name: &str,
    previous: Option<bool>,
    errors: &mut Errors,
) -> syn::Result<bool> {
    if previous.is_some() {
        errors.at(span, format!("duplicate `{name}` argument"));
    }
    if !input.peek(Token![=]) {
        return Ok(true);
    }
    input.parse::<Token![=]>()?;
    if input.peek(syn::LitBool) {
        return Ok(input.parse::<syn::LitBool>()?.value);
    }
    let found: proc_macro2::TokenTree = input.parse()?;
    Err(syn::Error::new(
        found.span(),
        format!("`{name}` takes `true` or `false`"),
    ))
}

/// The path of a function, for `cache_if` / `ttl_from`.
fn parse_fn_path(input: ParseStream<'_>, name: &str, shape: &str) -> syn::Result<Path> {
    let expr: Expr = input.parse()?;
    match expr {
        Expr::Path(p) => Ok(p.path),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{name}` takes the path of a function `{shape}`, e.g. `{name} = my_module::decide`"),
        )),
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

pub(crate) fn parse_duration(lit: &LitStr) -> syn::Result<Duration> {
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
    if value.trim().chars().all(|c| c.is_ascii_digit()) && !value.trim().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "{value:?} has no unit: write e.g. \"{}s\" or \"{}m\"",
                value.trim(),
                value.trim()
            ),
        ));
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
