//! API keys: `mcp_live_` or `mcp_test_` followed by 32 random bytes in hex. Only the
//! SHA-256 of a key is ever stored; the key itself is shown once, when minted.

use sha2::{Digest, Sha256};

/// Prefix of keys for live use.
pub const LIVE_PREFIX: &str = "mcp_live_";
/// Prefix of keys for tests and development.
pub const TEST_PREFIX: &str = "mcp_test_";

/// A syntactically valid API key (the secret itself; never log it).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// The hex SHA-256 of an API key: what storage holds and logs may show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyHash(pub String);

impl ApiKey {
    /// Parses a presented key; `None` if it is not `mcp_(live|test)_` plus 64 lower-case hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s
            .strip_prefix(LIVE_PREFIX)
            .or_else(|| s.strip_prefix(TEST_PREFIX))?;
        (rest.len() == 64 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    /// Mints a new key from 32 random bytes.
    pub fn generate(live: bool) -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let prefix = if live { LIVE_PREFIX } else { TEST_PREFIX };
        Ok(Self(format!("{prefix}{}", hex::encode(bytes))))
    }

    /// The key's hash.
    pub fn hash(&self) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// Whether it is a test key.
    pub fn is_test(&self) -> bool {
        self.0.starts_with(TEST_PREFIX)
    }

    /// The secret, for showing it to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A random identifier with a prefix (`acct_…`), 16 random bytes in hex.
pub fn random_id(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Whether an account id is well formed: `acct_` and 1 to 64 letters, digits or `_`.
pub fn valid_account_id(a: &str) -> bool {
    a.strip_prefix("acct_").is_some_and(|r| {
        (1..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_checked() {
        assert!(valid_account_id("acct_abc_123"));
        assert!(!valid_account_id("acct_"));
        assert!(!valid_account_id("acct_a'b"));
        assert!(!valid_account_id("user_1"));
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = ApiKey::generate(true).unwrap();
        let b = ApiKey::generate(false).unwrap();
        assert!(a.expose().starts_with("mcp_live_") && a.expose().len() == 9 + 64);
        assert!(b.is_test() && !a.is_test());
        assert_eq!(ApiKey::parse(a.expose()), Some(a.clone()));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = format!("mcp_live_{}", "a".repeat(64));
        assert!(ApiKey::parse(&good).is_some());
        for bad in [
            format!("mcp_live_{}", "a".repeat(63)),
            format!("mcp_live_{}", "A".repeat(64)),
            format!("mcp_prod_{}", "a".repeat(64)),
            format!("mcp_live_{}g", "a".repeat(63)),
            format!(" mcp_live_{}", "a".repeat(64)),
            String::new(),
        ] {
            assert!(ApiKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex_of_the_whole_key() {
        let key = ApiKey::parse(&format!("mcp_test_{}", "0".repeat(64))).unwrap();
        assert_eq!(
            key.hash().0,
            hex::encode(Sha256::digest(key.expose().as_bytes()))
        );
        assert_eq!(
            format!("{key:?}"),
            "ApiKey(…)",
            "Debug never shows the secret"
        );
    }
}
