//! Names and patterns shared by the runtime and the `#[cached]` attribute.
//!
//! This file has no dependencies on purpose: the macro crate includes it with
//! `#[path]`, so the attribute checks at compile time exactly what the runtime
//! accepts at run time — one grammar, one place.

/// The built-in TTL policy names, in the order of DESIGN.md.
pub const BUILTIN_POLICY_NAMES: [&str; 6] = [
    "policy_decision",
    "governance_rules",
    "static_configuration",
    "user_sessions",
    "api_responses",
    "compliance_checks",
];

/// Why an event name or a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The text is empty.
    Empty,
    /// A segment between two dots (or at either end) is empty.
    EmptySegment,
    /// A character outside `a-z A-Z 0-9 _ -` (and `*` as a whole last segment in patterns).
    BadCharacter(char),
    /// `*` used anywhere but as the whole last segment of a pattern.
    MisplacedWildcard,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NameError::Empty => f.write_str("is empty"),
            NameError::EmptySegment => f.write_str("has an empty segment (two dots in a row, or a dot at an end)"),
            NameError::BadCharacter(c) => write!(
                f,
                "contains {c:?}; segments use letters, digits, `_` and `-`, separated by `.`"
            ),
            NameError::MisplacedWildcard => {
                f.write_str("uses `*` inside a segment or before the end; `*` may only be the whole last segment, as in `governance.*`")
            }
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

/// Checks an event name such as `governance.rules.updated`.
///
/// # Errors
///
/// Returns the first rule the name breaks.
pub fn check_event_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    name.split('.').try_for_each(check_segment)
}

/// Checks a subscription pattern: an event name, or a prefix followed by `.*`
/// (`governance.*` matches `governance.rules` and `governance.rules.updated`,
/// not `governance` nor `governancex.rules`).
///
/// # Errors
///
/// Returns the first rule the pattern breaks.
pub fn check_pattern(pattern: &str) -> Result<(), NameError> {
    match pattern.strip_suffix(".*") {
        Some(prefix) => check_event_name(prefix),
        None if pattern == "*" => Err(NameError::MisplacedWildcard),
        None => check_event_name(pattern),
    }
}

/// Whether `event` matches `pattern` (both assumed valid).
pub fn pattern_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => event
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.')),
        None => pattern == event,
    }
}
