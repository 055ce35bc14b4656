//! The `scope` claim as a small set.

use std::fmt;

/// The scopes a token grants: the space-separated `scope` claim (RFC 8693 §4.2), de-duplicated.
/// Tokens carry a handful, so a sorted vector beats a hash set.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parses a space-separated scope string; empty items are skipped.
    pub fn parse(scope: &str) -> Scopes {
        scope.split_ascii_whitespace().collect()
    }

    /// Whether `scope` is granted (exact match).
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Number of distinct scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for Scopes {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Scopes {
        let mut v: Vec<String> = iter
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort_unstable();
        v.dedup();
        Scopes(v)
    }
}

/// The claim form: scopes joined by single spaces.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_dedups_and_matches_exactly() {
        let s = Scopes::parse("  tenant:read tenant:write\ttenant:read ");
        assert_eq!(s.len(), 2);
        assert!(s.contains("tenant:read"));
        assert!(s.contains("tenant:write"));
        assert!(!s.contains("tenant"));
        assert!(!s.contains("tenant:rea"));
        assert!(!s.contains(""));
        assert_eq!(s.to_string(), "tenant:read tenant:write");
        assert_eq!(format!("{s:?}"), r#"{"tenant:read", "tenant:write"}"#);
    }

    #[test]
    fn empty_scope_grants_nothing() {
        let s = Scopes::parse("");
        assert!(s.is_empty());
        assert!(!s.contains(""));
        assert_eq!(s, Scopes::default());
        assert_eq!(s.to_string(), "");
    }

    #[test]
    fn round_trips_through_display() {
        let s: Scopes = ["b", "a", "c", "a"].into_iter().collect();
        assert_eq!(Scopes::parse(&s.to_string()), s);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
