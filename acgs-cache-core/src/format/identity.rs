//! Which function instance a call belongs to.
//!
//! A function instance is its crate and module, the type of the impl it is
//! in (with that type's generic arguments), its name, its own instantiated
//! generic arguments, its signature as written and its `version`. The
//! attribute knows the parts written in the source (module, name, signature,
//! version: the *source fingerprint*, computed at compile time); the impl's
//! type and the generic arguments exist only after monomorphization. Each
//! generated item passes `std::any::type_name` of a closure it creates, which
//! Rust prints as the path of the enclosing function with every generic
//! argument filled in (`app::orders::Service<app::db::Pg>::find::{{closure}}`),
//! and this module takes the instance from it.
//!
//! Stability: a free, non-generic function's identity is its source
//! fingerprint alone, stable across builds and compiler versions. Any other
//! function's identity also hashes the instance path, and `type_name`'s
//! output is not promised stable across Rust releases: a toolchain change
//! may move such a function to a fresh key space (a cold start), never let
//! it read another instance's entries, since every entry is checked against
//! the full identity.

use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A resolved function instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Separates entries in L1 and L2, and is the envelope's fingerprint.
    pub(crate) hash: u64,
    /// The name in stats, metrics, keys and function invalidations:
    /// `orders::get`, `db::Service<db::Pg>::find`, `load<String>`.
    pub(crate) name: Arc<str>,
}

/// What the attribute wrote about the function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The function's name as written.
    pub(crate) fn_name: &'a str,
    /// `name = "…"`: replaces the function's name (not its path).
    pub(crate) rename: Option<&'a str>,
    /// `module_path!()` where the function is written.
    pub(crate) module: &'a str,
    /// The compile-time fingerprint of module, signature and version.
    pub(crate) fingerprint: u64,
}

/// The item that printed a probe: the cached function itself, or one of its
/// companions, which may have generic parameters of its own after the
/// function's (`warm_entry_<fn>`'s `impl WarmInto<R>` is one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) name: &'a str,
    pub(crate) extra_generics: usize,
}

/// The identity of the instance whose item `caller` printed `probe` (the
/// `type_name` of a closure made in its body). An empty `probe` means a
/// function built at run time (sessions, tokens, named caches): its name is
/// `fn_name`.
pub(crate) fn resolve(source: Source<'_>, probe: &str, caller: Caller<'_>) -> Identity {
    let shown_name = source.rename.unwrap_or(source.fn_name);
    if probe.is_empty() {
        return Identity {
            hash: source.fingerprint,
            name: Arc::from(shown_name),
        };
    }
    let crate_name = source.module.split("::").next().unwrap_or_default();
    match instance_path(probe, caller) {
        Some((owner, generic_args)) => {
            let generic_args = generic_args.as_str();
            let stable = owner == source.module && generic_args.is_empty();
            let instance = format!("{owner}::{}{generic_args}", source.fn_name);
            let hash = if stable {
                source.fingerprint
            } else {
                xxh3_64_with_seed(instance.as_bytes(), source.fingerprint)
            };
            // A function declared inside an async fn's body is owned by that
            // body (`app::outer::{{closure}}::inner`): its name shows the
            // path without the compiler's `{{closure}}` segments.
            let shown = format!("{}::{shown_name}{generic_args}", readable(owner));
            Identity {
                hash,
                name: Arc::from(shorten(&shown, crate_name)),
            }
        }
        None => {
            // A `type_name` format this code does not know: the whole probe
            // (with the companion's name put back) still separates instances.
            let probe = probe.replace(caller.name, source.fn_name);
            Identity {
                hash: xxh3_64_with_seed(probe.as_bytes(), source.fingerprint),
                name: Arc::from(format!(
                    "{}::{shown_name}",
                    shorten(source.module, crate_name)
                )),
            }
        }
    }
}

/// `path` without the compiler's `{{closure}}`-like segments.
fn readable(path: &str) -> String {
    split_top_level(path)
        .into_iter()
        .filter(|segment| !(segment.starts_with("{{") && segment.ends_with("}}")))
        .collect::<Vec<_>>()
        .join("::")
}

/// `(owner, generic arguments)` of the function `caller` in `probe`:
/// `("app::m::Service<app::Pg>", "")` for
/// `app::m::Service<app::Pg>::find::{{closure}}::{{closure}}`, and
/// `("app::m", "<alloc::string::String>")` for `app::m::load<alloc::string::String>::{{closure}}`.
fn instance_path<'p>(probe: &'p str, caller: Caller<'_>) -> Option<(&'p str, String)> {
    let mut segments = split_top_level(probe);
    while segments.last().is_some_and(|s| *s == "{{closure}}") {
        segments.pop();
    }
    let last = segments.pop()?;
    let generic_args = last.strip_prefix(caller.name)?;
    if !(generic_args.is_empty() || generic_args.starts_with('<')) || segments.is_empty() {
        return None;
    }
    // The owner is everything before the last segment, as one slice.
    let owner_end = last_offset(probe, last)?;
    let owner = probe[..owner_end].strip_suffix("::")?;
    let generic_args = without_last(generic_args, caller.extra_generics)?;
    Some((owner, without_lifetimes(&generic_args)))
}

/// `<A, B>` without its lifetime arguments (`#[async_trait]` gives its
/// methods lifetime parameters, which `type_name` shows as `'_`: they never
/// make another instance).
fn without_lifetimes(generic_args: &str) -> String {
    let Some(inner) = generic_args
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
    else {
        return generic_args.to_owned();
    };
    let kept: Vec<&str> = split_top_level_by(inner, ", ")
        .into_iter()
        .filter(|arg| !arg.starts_with('\''))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("<{}>", kept.join(", "))
    }
}

/// `<A, B, C>` without its last `n` arguments (`""` when none are left).
fn without_last(generic_args: &str, n: usize) -> Option<String> {
    if n == 0 {
        return Some(generic_args.to_owned());
    }
    let inner = generic_args.strip_prefix('<')?.strip_suffix('>')?;
    let args = split_top_level_by(inner, ", ");
    let kept = args.len().checked_sub(n)?;
    Some(if kept == 0 {
        String::new()
    } else {
        format!("<{}>", args[..kept].join(", "))
    })
}

/// Where `segment` (a slice of `probe`) starts in `probe`.
fn last_offset(probe: &str, segment: &str) -> Option<usize> {
    let start = (segment.as_ptr() as usize).checked_sub(probe.as_ptr() as usize)?;
    (start <= probe.len()).then_some(start)
}

/// Splits at `::` outside `<…>`, `(…)` and `[…]`.
fn split_top_level(path: &str) -> Vec<&str> {
    split_top_level_by(path, "::")
}

/// Splits at `separator` outside `<…>`, `(…)` and `[…]` (`->` is not a bracket).
fn split_top_level_by<'p>(path: &'p str, separator: &str) -> Vec<&'p str> {
    let bytes = path.as_bytes();
    let mut depth = 0i32;
    let mut segments = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => depth -= 1,
            _ if depth == 0 && path[i..].starts_with(separator) => {
                segments.push(&path[start..i]);
                i += separator.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    segments.push(&path[start..]);
    segments
}

/// Shortens every path in `text`: this crate's name is dropped, and `std`,
/// `core` and `alloc` paths keep their last segment
/// (`app::m::Service<alloc::string::String>` → `m::Service<String>`).
pub(crate) fn shorten(text: &str, crate_name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let starts_path = rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !out.ends_with("::")
            && !out.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !starts_path {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        // A path: identifiers joined by `::`, up to the first other character.
        let mut end = 0;
        loop {
            let ident = rest[end..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(rest.len(), |n| end + n);
            end = ident;
            let next = &rest[end..];
            let continues = next.starts_with("::")
                && next[2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if !continues {
                break;
            }
            end += 2;
        }
        let segments: Vec<&str> = rest[..end].split("::").collect();
        let kept: &[&str] = match segments.first().copied() {
            Some(first) if first == crate_name && segments.len() > 1 => &segments[1..],
            Some("std" | "core" | "alloc") if segments.len() > 1 => &segments[segments.len() - 1..],
            _ => &segments,
        };
        out.push_str(&kept.join("::"));
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: u64 = 0xfeed;

    fn caller(name: &str) -> Caller<'_> {
        Caller {
            name,
            extra_generics: 0,
        }
    }

    fn source<'a>(fn_name: &'a str, module: &'a str) -> Source<'a> {
        Source {
            fn_name,
            rename: None,
            module,
            fingerprint: FP,
        }
    }

    #[test]
    fn free_functions_keep_their_source_fingerprint() {
        let id = resolve(
            source("free", "app::m"),
            "app::m::free::{{closure}}::{{closure}}",
            caller("free"),
        );
        assert_eq!(id.hash, FP);
        assert_eq!(&*id.name, "m::free");
        let root = resolve(
            source("evaluate", "app"),
            "app::evaluate::{{closure}}",
            caller("evaluate"),
        );
        assert_eq!((root.hash, &*root.name), (FP, "evaluate"));
    }

    /// `fn fetch` declared inside `async fn tenant_a_limits`: the compiler
    /// names its owner `…::tenant_a_limits::{{closure}}`; stats, keys and
    /// metric labels show `tenant_a_limits::fetch`.
    #[test]
    fn a_function_inside_an_async_fn_has_a_readable_name() {
        let local = resolve(
            source("fetch", "app::limits"),
            "app::limits::tenant_a_limits::{{closure}}::fetch::{{closure}}",
            caller("fetch"),
        );
        assert_eq!(&*local.name, "limits::tenant_a_limits::fetch");
        // Another body's `fetch` stays another instance.
        let other = resolve(
            source("fetch", "app::limits"),
            "app::limits::tenant_b_limits::{{closure}}::fetch::{{closure}}",
            caller("fetch"),
        );
        assert_ne!(local.hash, other.hash);
        assert_eq!(&*other.name, "limits::tenant_b_limits::fetch");
    }

    #[test]
    fn companions_resolve_to_the_function() {
        let s = source("find", "app::m");
        let wrapper = resolve(
            s,
            "app::m::Users::find::{{closure}}::{{closure}}",
            caller("find"),
        );
        let invalidate = resolve(
            s,
            "app::m::Users::invalidate_find::{{closure}}::{{closure}}",
            caller("invalidate_find"),
        );
        let warm = resolve(
            s,
            "app::m::Users::warm_entry_find<alloc::string::String>::{{closure}}",
            Caller {
                name: "warm_entry_find",
                extra_generics: 1,
            },
        );
        assert_eq!(wrapper, invalidate);
        assert_eq!(wrapper, warm);
        assert_eq!(&*wrapper.name, "m::Users::find");
    }

    #[test]
    fn every_instance_is_its_own() {
        let s = source("find", "app::m");
        let users = resolve(s, "app::m::Users::find::{{closure}}", caller("find"));
        let orders = resolve(s, "app::m::Orders::find::{{closure}}", caller("find"));
        let pg = resolve(
            s,
            "app::m::Service<app::db::Pg>::find::{{closure}}",
            caller("find"),
        );
        let mem = resolve(
            s,
            "app::m::Service<app::db::Mem>::find::{{closure}}",
            caller("find"),
        );
        let free = resolve(s, "app::m::find::{{closure}}", caller("find"));
        let hashes = [users.hash, orders.hash, pg.hash, mem.hash, free.hash];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(&*pg.name, "m::Service<db::Pg>::find");
        let s = source("load", "app::m");
        let string = resolve(
            s,
            "app::m::load<alloc::string::String>::{{closure}}",
            caller("load"),
        );
        let account = resolve(s, "app::m::load<app::Account>::{{closure}}", caller("load"));
        assert_ne!(string.hash, account.hash);
        assert_eq!(&*string.name, "m::load<String>");
        let warm = resolve(
            s,
            "app::m::warm_entry_load<alloc::string::String, alloc::string::String>::{{closure}}",
            Caller {
                name: "warm_entry_load",
                extra_generics: 1,
            },
        );
        assert_eq!(warm, string);
        assert_eq!(&*account.name, "m::load<Account>");
    }

    #[test]
    fn lifetime_arguments_are_not_part_of_a_name() {
        assert_eq!(without_lifetimes("<'_, '_>"), "");
        assert_eq!(without_lifetimes("<'_, app::Pg>"), "<app::Pg>");
        assert_eq!(without_lifetimes("<app::Pg>"), "<app::Pg>");
        assert_eq!(without_lifetimes(""), "");
    }

    #[test]
    fn trait_impls_and_odd_types() {
        let s = source("count", "app::m");
        let id = resolve(
            s,
            "<app::m::Users as app::m::Rules>::count::{{closure}}::{{closure}}",
            caller("count"),
        );
        assert_eq!(&*id.name, "<m::Users as m::Rules>::count");
        let s = source("load", "app");
        let id = resolve(
            s,
            "app::load<fn(u8) -> core::option::Option<u8>, [u32; 3]>::{{closure}}",
            caller("load"),
        );
        assert_eq!(&*id.name, "load<fn(u8) -> Option<u8>, [u32; 3]>");
        assert_ne!(id.hash, FP);
    }

    #[test]
    fn renamed_functions_keep_their_path() {
        let s = Source {
            rename: Some("decision"),
            ..source("evaluate", "app::policy")
        };
        let id = resolve(s, "app::policy::evaluate::{{closure}}", caller("evaluate"));
        assert_eq!((id.hash, &*id.name), (FP, "policy::decision"));
        let run_time = resolve(
            Source {
                rename: None,
                ..source("session-web", "acgs_cache_core::session")
            },
            "",
            caller(""),
        );
        assert_eq!(&*run_time.name, "session-web");
    }

    #[test]
    fn unknown_formats_still_separate_instances() {
        let s = source("find", "app::m");
        let a = resolve(s, "something new(Users)", caller("find"));
        let b = resolve(s, "something new(Orders)", caller("find"));
        assert_ne!(a.hash, b.hash);
        assert_eq!(&*a.name, "m::find");
    }
}
