//! Names and patterns shared by the acgs-cache runtime and its `#[cached]`
//! attribute, so that the attribute checks at compile time exactly what the
//! runtime accepts at run time: one grammar, one place.
//!
//! - A **pattern** (`invalidate_on = "governance.*"`) is written in source:
//!   dot-separated segments of letters, digits, `_` and `-`, optionally ending
//!   in `.*`.
//! - An **event** (what `invalidate` takes) is a concrete name: a first
//!   segment of letters, digits, `_` and `-`, then optionally a dot followed
//!   by *any* text. `governance.rules.updated`, `tenant.acme corp`,
//!   `tenant.` and `user.a@b.example` are events, so a tag formatted from
//!   any value (`tenant.{tenant}`) can always be invalidated.
//! - A **tag template** (`tags = ["tenant.{tenant}"]`) must produce events:
//!   its literal text starts with such a first segment and a dot.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The built-in TTL policy names, in the order of DESIGN.md.
///
/// ```
/// assert!(acgs_cache_grammar::BUILTIN_POLICY_NAMES.contains(&"policy_decision"));
/// ```
pub const BUILTIN_POLICY_NAMES: [&str; 6] = [
    "policy_decision",
    "governance_rules",
    "static_configuration",
    "user_sessions",
    "api_responses",
    "compliance_checks",
];

/// Why an event name, a pattern or a tag template was rejected.
///
/// ```
/// use acgs_cache_grammar::{check_event_name, NameError};
/// assert_eq!(check_event_name(""), Err(NameError::Empty));
/// println!("{}", check_event_name("a b").unwrap_err()); // the rule, in words
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The text is empty.
    Empty,
    /// A segment between two dots (or at either end) is empty.
    EmptySegment,
    /// A character outside `a-z A-Z 0-9 _ -` where only those are allowed
    /// (and `*` as a whole last segment in patterns).
    BadCharacter(char),
    /// `*` used anywhere but as the whole last segment of a pattern.
    MisplacedWildcard,
    /// A tag template that does not start with a literal name and a dot.
    NoLiteralHead,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NameError::Empty => f.write_str("is empty"),
            NameError::EmptySegment => {
                f.write_str("has an empty segment (two dots in a row, or a dot at an end)")
            }
            NameError::BadCharacter(c) => write!(
                f,
                "contains {c:?}; names use letters, digits, `_` and `-`, separated by `.`"
            ),
            NameError::MisplacedWildcard => f.write_str(
                "uses `*` inside a segment or before the end; `*` may only be the whole last segment, as in `governance.*`",
            ),
            NameError::NoLiteralHead => f.write_str(
                "does not start with a name and a dot (letters, digits, `_`, `-`, then `.`), as in `tenant.{tenant}`",
            ),
        }
    }
}

fn check_segment(segment: &str) -> Result<(), NameError> {
    if segment.is_empty() {
        return Err(NameError::EmptySegment);
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some('*') => Err(NameError::MisplacedWildcard),
        Some(c) => Err(NameError::BadCharacter(c)),
        None => Ok(()),
    }
}

/// Checks a concrete event name given to `invalidate`: a first segment of
/// letters, digits, `_` and `-`, then optionally `.` and any text at all
/// (`governance.rules.updated`, `tenant.acme corp`, `tenant.`).
///
/// # Errors
///
/// Returns the rule the first segment breaks.
///
/// ```
/// use acgs_cache_grammar::check_event_name;
/// assert!(check_event_name("governance.rules.updated").is_ok());
/// assert!(check_event_name("tenant.acme corp").is_ok()); // free text after the first dot
/// assert!(check_event_name("no spaces.here").is_err());
/// ```
pub fn check_event_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let head = name.split_once('.').map_or(name, |(head, _)| head);
    check_segment(head)
}

/// Checks a dotted name made of segments of letters, digits, `_` and `-`
/// only (no wildcard, no free text): names that become part of keys.
///
/// # Errors
///
/// Returns the first rule the name breaks.
///
/// ```
/// use acgs_cache_grammar::check_dotted_name;
/// assert!(check_dotted_name("policy_decision").is_ok());
/// assert!(check_dotted_name("tenant.acme corp").is_err());
/// ```
pub fn check_dotted_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    name.split('.').try_for_each(check_segment)
}

/// Checks a subscription pattern: a dotted name, or a prefix followed by `.*`
/// (`governance.*` matches `governance.rules` and `governance.rules.updated`,
/// not `governance` nor `governancex.rules`).
///
/// # Errors
///
/// Returns the first rule the pattern breaks.
///
/// ```
/// use acgs_cache_grammar::check_pattern;
/// assert!(check_pattern("governance.*").is_ok());
/// assert!(check_pattern("*").is_err());
/// ```
pub fn check_pattern(pattern: &str) -> Result<(), NameError> {
    let name = match pattern.strip_suffix(".*") {
        Some(prefix) => prefix,
        None if pattern == "*" => return Err(NameError::MisplacedWildcard),
        None => pattern,
    };
    check_dotted_name(name)
}

/// Checks the literal text a tag template starts with (everything before its
/// first placeholder; `whole` says whether the template has no placeholder
/// at all): every tag it formats must be an event that `invalidate` accepts.
///
/// # Errors
///
/// [`NameError::NoLiteralHead`] when a placeholder could end up in the first
/// segment; otherwise the rule that segment breaks.
///
/// ```
/// use acgs_cache_grammar::check_tag_head;
/// assert!(check_tag_head("tenant.", false).is_ok());   // "tenant.{tenant}"
/// assert!(check_tag_head("tenant", false).is_err());   // "tenant{id}": no dot before the placeholder
/// ```
pub fn check_tag_head(literal: &str, whole: bool) -> Result<(), NameError> {
    if whole {
        return check_event_name(literal);
    }
    match literal.split_once('.') {
        Some((head, _)) => check_segment(head),
        None => Err(NameError::NoLiteralHead),
    }
}

/// Whether `event` matches `pattern` (the pattern assumed valid; the event is
/// compared as text, so `governance.*` matches `governance.any text`).
///
/// ```
/// use acgs_cache_grammar::pattern_matches;
/// assert!(pattern_matches("governance.*", "governance.rules.updated"));
/// assert!(!pattern_matches("governance.*", "governance"));
/// assert!(pattern_matches("tenant.eu", "tenant.eu"));
/// ```
#[must_use]
pub fn pattern_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => event
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.')),
        None => pattern == event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_a_name_then_anything() {
        for ok in [
            "governance",
            "governance.rules.updated",
            "tenant.acme corp",
            "tenant.",
            "tenant.a@b.example",
            "tenant.x:y",
            "tenant.*",
            "tenant.%\tü",
            "t-1_x.",
        ] {
            assert_eq!(check_event_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_event_name(""), Err(NameError::Empty));
        assert_eq!(check_event_name(".x"), Err(NameError::EmptySegment));
        assert_eq!(
            check_event_name("tenant:acme"),
            Err(NameError::BadCharacter(':'))
        );
        assert_eq!(
            check_event_name("acme corp"),
            Err(NameError::BadCharacter(' '))
        );
    }

    #[test]
    fn patterns_stay_strict() {
        assert_eq!(check_pattern("governance.*"), Ok(()));
        assert_eq!(check_pattern("a.b"), Ok(()));
        assert_eq!(check_pattern("*"), Err(NameError::MisplacedWildcard));
        assert_eq!(check_pattern("a.*.b"), Err(NameError::MisplacedWildcard));
        assert_eq!(check_pattern("a b.*"), Err(NameError::BadCharacter(' ')));
        assert_eq!(check_pattern("a..b"), Err(NameError::EmptySegment));
        assert_eq!(check_pattern(".*"), Err(NameError::Empty));
    }

    #[test]
    fn tag_heads_must_make_events() {
        assert_eq!(check_tag_head("tenant.", false), Ok(()));
        assert_eq!(check_tag_head("tenant.eu.", false), Ok(()));
        assert_eq!(
            check_tag_head("tenant", false),
            Err(NameError::NoLiteralHead)
        );
        assert_eq!(check_tag_head("", false), Err(NameError::NoLiteralHead));
        assert_eq!(
            check_tag_head("tenant:", false),
            Err(NameError::NoLiteralHead)
        );
        assert_eq!(
            check_tag_head("ten ant.", false),
            Err(NameError::BadCharacter(' '))
        );
        assert_eq!(check_tag_head("static.rules", true), Ok(()));
    }

    #[test]
    fn matching_is_by_prefix_and_dot() {
        assert!(pattern_matches("governance.*", "governance.rules"));
        assert!(pattern_matches("governance.*", "governance.rules.updated"));
        assert!(pattern_matches("governance.*", "governance.any text"));
        assert!(!pattern_matches("governance.*", "governance"));
        assert!(!pattern_matches("governance.*", "governance."));
        assert!(!pattern_matches("governance.*", "governancex.rules"));
        assert!(pattern_matches("a.b", "a.b"));
        assert!(!pattern_matches("a.b", "a.b.c"));
    }
}
