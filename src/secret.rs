//! Comparing secrets (API keys, the cluster token) without leaking where they differ.
//!
//! The comparison is `subtle`'s constant-time equality: the time it takes does not depend on
//! where, or whether, two secrets of the same length differ. Only a length mismatch answers
//! early, and lengths are not secret (keys and tokens are generated at a fixed length).

use subtle::ConstantTimeEq;

/// Whether `presented` is exactly `expected`, compared in constant time.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_secrets() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "abcd") && !same_secret("", "a"));
        assert!(!same_secret("abc", "") && !same_secret("abc", "ABC"));
    }
}
