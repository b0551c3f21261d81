//! The caller's identity. Anonymous callers are keyed by address bucket: an IPv4
//! address as is, an IPv6 address reduced to its /64 (one customer network, RFC 6177),
//! so that rotating through a /64 does not mint fresh free-tier buckets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::api_key::KeyHash;

/// The bucket an anonymous caller is counted in, and the network around it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressBucket {
    bucket: String,
    network: String,
}

impl AddressBucket {
    /// Parses a client address (`CF-Connecting-IP`) into its bucket.
    ///
    /// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) counts as the IPv4 address. Zone ids
    /// (`fe80::1%eth0`), ports, brackets and anything else that is not a bare address are
    /// refused.
    pub fn parse(addr: &str) -> Option<Self> {
        let ip: IpAddr = addr.trim().parse().ok()?;
        let v4 = |v4: Ipv4Addr| {
            let [a, b, c, _] = v4.octets();
            Self {
                bucket: v4.to_string(),
                network: format!("{}/24", Ipv4Addr::new(a, b, c, 0)),
            }
        };
        Some(match ip {
            IpAddr::V4(a) => v4(a),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(a) => v4(a),
                None => {
                    let s = v6.segments();
                    let slash64 = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    let slash48 = Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                    Self {
                        bucket: format!("{slash64}/64"),
                        network: format!("{slash48}/48"),
                    }
                }
            },
        })
    }

    /// The bucket's text form (`192.0.2.1` or `2001:db8:1:2::/64`).
    pub fn as_str(&self) -> &str {
        &self.bucket
    }

    /// The network the bucket lies in, one coarser step: an IPv4 /24 or an IPv6 /48 (one
    /// site, RFC 6177), so that a /48's 65,536 /64s share a second, larger allowance.
    pub fn network(&self) -> &str {
        &self.network
    }
}

/// Scope that lets a caller call the basic tools (the anonymous free tier has it).
pub const SCOPE_TOOLS: &str = "mcp:tools";
/// Scope that lets a caller read its own usage.
pub const SCOPE_USAGE: &str = "mcp:usage";
/// Scope that lets a caller act on the account's billing: open the Customer Portal
/// (cancel, payment methods, invoices) or start a Checkout that reveals a new key.
pub const SCOPE_BILLING: &str = "mcp:billing";
/// Every scope this server knows, for metadata and API keys.
pub const ALL_SCOPES: [&str; 3] = [SCOPE_TOOLS, SCOPE_USAGE, SCOPE_BILLING];
/// The scopes a client gets when it asks for none, and that challenges ask for: billing
/// is granted only to a client that names it (and the sign-in page then says so).
pub const DEFAULT_SCOPES: [&str; 2] = [SCOPE_TOOLS, SCOPE_USAGE];

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Principal {
    /// No credentials; counted by address bucket (`None` when the address is unknown).
    /// `shared` marks an address in a configured shared egress range (a hosted client
    /// such as Claude's connectors, calling for many users): it gets no shared allowance.
    Anonymous {
        bucket: Option<AddressBucket>,
        shared: bool,
    },
    /// An API-key holder.
    ApiKey {
        account: String,
        key_hash: KeyHash,
        plan: String,
        scopes: Vec<String>,
    },
    /// An OAuth access-token holder.
    OAuth {
        account: String,
        plan: String,
        scopes: Vec<String>,
    },
}

impl Principal {
    /// `anonymous`, `api_key` or `oauth`: the kind, as shown to callers and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Anonymous { .. } => "anonymous",
            Self::ApiKey { .. } => "api_key",
            Self::OAuth { .. } => "oauth",
        }
    }

    /// The counting bucket: `anon:<address bucket>` or `acct:<account>`; one Durable
    /// Object each. Anonymous callers without a known address share `anon:unknown`.
    pub fn bucket(&self) -> String {
        match self {
            Self::Anonymous { bucket, .. } => format!(
                "anon:{}",
                bucket.as_ref().map_or("unknown", AddressBucket::as_str)
            ),
            Self::ApiKey { account, .. } | Self::OAuth { account, .. } => format!("acct:{account}"),
        }
    }

    /// The name of the counter (Durable Object) the principal's calls are counted in:
    /// an account's own, or for anonymous callers their network's (`anon:<network>`),
    /// which counts each address bucket and the whole network in one place.
    pub fn counter(&self) -> String {
        match self {
            Self::Anonymous { bucket, .. } => format!(
                "anon:{}",
                bucket.as_ref().map_or("unknown", AddressBucket::network)
            ),
            Self::ApiKey { account, .. } | Self::OAuth { account, .. } => format!("acct:{account}"),
        }
    }

    /// The address bucket of an anonymous caller.
    pub fn address(&self) -> Option<&AddressBucket> {
        match self {
            Self::Anonymous { bucket, .. } => bucket.as_ref(),
            _ => None,
        }
    }

    /// The account id, for account holders.
    pub fn account(&self) -> Option<&str> {
        match self {
            Self::Anonymous { .. } => None,
            Self::ApiKey { account, .. } | Self::OAuth { account, .. } => Some(account),
        }
    }

    /// The plan id; anonymous callers are on the anonymous tier.
    pub fn plan(&self) -> &str {
        match self {
            Self::Anonymous { .. } => ANONYMOUS_PLAN,
            Self::ApiKey { plan, .. } | Self::OAuth { plan, .. } => plan,
        }
    }

    /// Whether the caller holds a scope. Anonymous callers hold [`SCOPE_TOOLS`] only.
    pub fn has_scope(&self, scope: &str) -> bool {
        match self {
            Self::Anonymous { .. } => scope == SCOPE_TOOLS,
            Self::ApiKey { scopes, .. } | Self::OAuth { scopes, .. } => {
                scopes.iter().any(|s| s == scope)
            }
        }
    }

    /// The API key's hash, for key holders.
    pub fn key_hash(&self) -> Option<&KeyHash> {
        match self {
            Self::ApiKey { key_hash, .. } => Some(key_hash),
            _ => None,
        }
    }
}

pub use crate::config::ANONYMOUS_PLAN;

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(s: &str) -> Option<String> {
        AddressBucket::parse(s).map(|b| b.as_str().to_owned())
    }

    #[test]
    fn ipv4_addresses_are_their_own_bucket() {
        assert_eq!(bucket("203.0.113.7").as_deref(), Some("203.0.113.7"));
        assert_eq!(bucket(" 203.0.113.7 ").as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_bucket_whatever_their_text_form() {
        let forms = [
            "2001:db8:1:2::1",
            "2001:0db8:0001:0002:ffff:ffff:ffff:ffff",
            "2001:DB8:1:2:a:b:c:d",
            "2001:db8:1:2:0:0:0:0",
        ];
        for f in forms {
            assert_eq!(bucket(f).as_deref(), Some("2001:db8:1:2::/64"), "{f}");
        }
        assert_ne!(bucket("2001:db8:1:3::1"), bucket("2001:db8:1:2::1"));
    }

    #[test]
    fn buckets_lie_in_a_v4_slash_24_or_a_v6_slash_48() {
        let net = |s: &str| AddressBucket::parse(s).map(|b| b.network().to_owned());
        assert_eq!(net("203.0.113.7").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(net("::ffff:203.0.113.7").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(net("2001:db8:1:2::1").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(net("2001:db8:1:ffff::9"), net("2001:db8:1:2::1"));
        assert_ne!(net("2001:db8:2:2::1"), net("2001:db8:1:2::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(bucket("::ffff:192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(bucket("::ffff:c000:201").as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn zone_ids_ports_and_junk_are_refused() {
        for bad in [
            "fe80::1%eth0",
            "[2001:db8::1]",
            "192.0.2.1:80",
            "",
            "localhost",
            "1.2.3",
            "::ffff:999.0.0.1",
        ] {
            assert_eq!(bucket(bad), None, "{bad}");
        }
    }
}
