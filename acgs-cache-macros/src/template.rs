//! Tag templates (`tags = ["tenant.{tenant}", "order.{req.id}"]`) and event
//! templates of `#[invalidates]`: literal text with `{argument}` or
//! `{argument.field}` placeholders, formatted with `Display`.

use acgs_cache_grammar as grammar;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Ident, LitStr};

/// A parsed template.
pub(crate) struct Template {
    pub(crate) lit: LitStr,
    /// The `format!` string: the literal text, `{}` for each placeholder.
    format: String,
    /// Each placeholder: an argument (or `self`) and the fields read from it.
    pub(crate) places: Vec<Vec<String>>,
}

impl Template {
    /// Parses `lit` (a `what`: "tag" or "event"), checking that every name
    /// it formats is an event name `invalidate` accepts (a name and a dot
    /// before the first placeholder).
    pub(crate) fn parse(lit: LitStr, what: &str) -> syn::Result<Template> {
        let text = lit.value();
        let fail = |message: String| {
            Err(syn::Error::new(
                lit.span(),
                format!("invalid {what} template {text:?}: {message}"),
            ))
        };
        let mut format = String::new();
        let mut places = Vec::new();
        let mut head = None;
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    format.push_str("{{");
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    format.push_str("}}");
                }
                '}' => {
                    return fail(
                        "`}` without a matching `{` (write `}}` for a literal brace)".into(),
                    )
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(close) = rest.find('}') else {
                        return fail("`{` without a matching `}`".into());
                    };
                    let inner = &rest[..close];
                    let path: Vec<String> = inner.split('.').map(str::to_owned).collect();
                    if !path.iter().all(|p| is_ident(p)) {
                        return fail(format!(
                            "`{{{inner}}}` is not an argument: placeholders are `{{argument}}` or `{{argument.field}}`"
                        ));
                    }
                    head.get_or_insert_with(|| unescape(&text[..at]));
                    places.push(path);
                    format.push_str("{}");
                    for _ in 0..=inner.chars().count() {
                        chars.next();
                    }
                }
                c => format.push(c),
            }
        }
        let whole = head.is_none();
        let head = head.unwrap_or_else(|| unescape(&text));
        if let Err(e) = grammar::check_tag_head(&head, whole) {
            let hint = suggestion(&text);
            let lead = if what == "tag" {
                "every tag is an event name for `invalidate`"
            } else {
                "`invalidate` takes event names"
            };
            return fail(format!("{lead}, and this one {e}{hint}"));
        }
        Ok(Template {
            lit,
            format,
            places,
        })
    }

    /// The arguments the placeholders name.
    pub(crate) fn arguments(&self) -> impl Iterator<Item = &str> {
        self.places.iter().map(|p| p[0].as_str())
    }

    /// `::std::format!("tenant.{}", tenant)` (fields read by reference).
    pub(crate) fn format_expr(&self) -> TokenStream {
        let span = self.lit.span();
        let format = LitStr::new(&self.format, span);
        let args = self.places.iter().map(|path| {
            let idents = path.iter().map(|p| Ident::new(p, span));
            quote_spanned!(span=> &#(#idents).*)
        });
        quote!(::std::format!(#format, #(#args),*))
    }
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unescape(literal: &str) -> String {
    literal.replace("{{", "{").replace("}}", "}")
}

/// A template with `:` (or no dot) before its first placeholder, written
/// the way events are: `tenant:{t}` → `tenant.{t}`.
fn suggestion(text: &str) -> String {
    let Some(open) = text.find('{') else {
        return String::new();
    };
    let head = &text[..open];
    let name: String = head
        .trim_end_matches([':', '/', '-', '_', '.', ' '])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        return "; start it with a name and a dot, e.g. \"tenant.{tenant}\"".into();
    }
    format!("; write \"{name}.{}\"", &text[open..])
}

/// Checks every placeholder names an argument (or `self` in a method), and
/// reports the ones that do not at the template.
pub(crate) fn check_arguments(
    templates: &[Template],
    names: &[String],
    has_receiver: bool,
    what: &str,
    errors: &mut crate::errors::Errors,
) {
    for template in templates {
        for name in template.arguments() {
            let known = if name == "self" {
                has_receiver
            } else {
                names.iter().any(|n| n == name)
            };
            if !known {
                errors.at(
                    template.lit.span(),
                    format!(
                        "{what} template {:?}: the function has no argument `{name}`",
                        template.lit.value()
                    ),
                );
            }
        }
    }
}
