//! Address bucketing (`auth::principal::AddressBucket::parse`), the shared-egress check
//! (`config::Config::is_shared_egress`) and `SHARED_EGRESS_RANGES` parsing
//! (`config::parse_ranges`) on any text.
//!
//! Checks: nothing panics; exactly the texts that are a bare IP address (after trimming)
//! get a bucket; a bucket is an IPv4 address or an IPv6 /64 prefix (low 64 bits zero) and
//! round-trips to itself; an IPv4-mapped IPv6 address is its IPv4 bucket; every address in
//! one /64 gets the same bucket and the same shared-egress answer (the configured ranges
//! are /64 or wider); the shared-egress answer is the same for an address and its bucket;
//! only parseable addresses are ever shared; parsed ranges are truncated networks.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::{
    auth::principal::AddressBucket,
    config::{Config, parse_ranges},
};
use paid_mcp_worker_fuzz::config_anonymous;

/// The address a bucket stands for: the IPv4 address, or the /64's first address.
fn bucket_address(b: &AddressBucket) -> IpAddr {
    let text = b.as_str();
    match text.strip_suffix("/64") {
        Some(prefix) => {
            let v6: Ipv6Addr = prefix.parse().expect("a /64 bucket is an IPv6 prefix");
            assert_eq!(v6.segments()[4..], [0, 0, 0, 0], "{text}");
            assert!(v6.to_ipv4_mapped().is_none(), "{text}");
            IpAddr::V6(v6)
        }
        None => IpAddr::V4(text.parse::<Ipv4Addr>().expect("else an IPv4 address")),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config: &Config = config_anonymous();
    let parsed = text.trim().parse::<IpAddr>();
    let bucket = AddressBucket::parse(&text);
    assert_eq!(bucket.is_some(), parsed.is_ok(), "{text:?}");
    let shared = config.is_shared_egress(&text);
    if let (Some(bucket), Ok(ip)) = (&bucket, parsed) {
        let addr = bucket_address(bucket);
        assert_eq!(
            AddressBucket::parse(&addr.to_string()).as_ref(),
            Some(bucket),
            "round trip"
        );
        assert_eq!(
            config.is_shared_egress(&addr.to_string()),
            shared,
            "the bucket shares the address's shared-egress answer"
        );
        match ip {
            IpAddr::V4(v4) => {
                assert_eq!(bucket.as_str(), v4.to_string());
                let mapped = v4.to_ipv6_mapped().to_string();
                assert_eq!(AddressBucket::parse(&mapped).as_ref(), Some(bucket));
                assert_eq!(config.is_shared_egress(&mapped), shared);
            }
            IpAddr::V6(v6) => {
                // Another address in the same /64: the low 64 bits flipped.
                let bits = u128::from(v6) ^ u128::from(u64::MAX);
                let sibling = Ipv6Addr::from(bits);
                if v6.to_ipv4_mapped().is_none() && sibling.to_ipv4_mapped().is_none() {
                    let s = sibling.to_string();
                    assert_eq!(AddressBucket::parse(&s).as_ref(), Some(bucket), "{s}");
                    assert_eq!(config.is_shared_egress(&s), shared, "{s}");
                }
            }
        }
    } else {
        assert!(!shared, "only an address can be in a shared range");
    }
    if let Ok(ranges) = parse_ranges(&text) {
        for r in ranges {
            assert_eq!(r, r.trunc(), "{r}");
        }
    }
});
