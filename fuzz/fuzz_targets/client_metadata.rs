//! OAuth client metadata (`oauth::clients`): the first line of the input is a `client_id`,
//! the rest a client metadata document or registration request (JSON). Runs
//! `is_document_url`, `document` (under the first line and under the `client_id` the
//! document names), `registration` (via serde of `ClientMetadata`) and
//! `valid_redirect_uri` (on every line and every redirect URI of the document).
//!
//! Checks: nothing panics; a document URL is https (or loopback http when allowed), at
//! most 2000 bytes, has a host and a path and no fragment; `valid_redirect_uri` never
//! accepts script, data, file or other refused schemes, a fragment, whitespace, control or
//! non-ASCII text, user info, or plain http off loopback; an accepted document names the
//! `client_id` it was fetched for; every accepted client has 1 to 10 valid redirect URIs
//! and a non-empty name of at most 100 characters without control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::oauth::clients::{
    ClientMetadata, MAX_NAME_LEN, MAX_REDIRECT_URIS, MAX_URI_LEN, document, is_document_url,
    registration, valid_redirect_uri,
};
use paid_mcp_worker_fuzz::{NOW_MS, first_line};

const NEVER: [&str; 18] = [
    "javascript",
    "data",
    "file",
    "blob",
    "about",
    "vbscript",
    "filesystem",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
    "intent",
    "chrome",
    "chrome-extension",
    "view-source",
    "jar",
];

fn check_redirect_uri(uri: &str) {
    if !valid_redirect_uri(uri) {
        return;
    }
    assert!(uri.len() <= MAX_URI_LEN, "{uri:?}");
    assert!(!uri.contains('#'), "fragment: {uri:?}");
    assert!(uri.is_ascii(), "non-ASCII: {uri:?}");
    assert!(
        !uri.chars().any(|c| c.is_whitespace() || c.is_control()),
        "whitespace or control: {uri:?}"
    );
    let (scheme, rest) = uri.split_once(':').expect("a scheme");
    let scheme = scheme.to_ascii_lowercase();
    assert!(
        !NEVER.contains(&scheme.as_str()) && !scheme.starts_with("web+"),
        "refused scheme: {uri:?}"
    );
    if scheme == "http" || scheme == "https" {
        let authority = rest
            .strip_prefix("//")
            .expect("http(s) has an authority")
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        assert!(!authority.is_empty() && !authority.contains('@'), "{uri:?}");
        if scheme == "http" {
            let host = authority.to_ascii_lowercase();
            let loopback = ["127.0.0.1", "localhost", "[::1]"]
                .iter()
                .any(|h| host == *h || host.starts_with(&format!("{h}:")));
            assert!(loopback, "http off loopback: {uri:?}");
        }
    }
}

fn check_document_url(id: &str) {
    let strict = is_document_url(id, false);
    let loose = is_document_url(id, true);
    assert!(!strict || loose, "allowing loopback only widens");
    if loose {
        assert!(id.len() <= MAX_URI_LEN && !id.contains('#'), "{id:?}");
        let rest = id
            .strip_prefix("https://")
            .or_else(|| id.strip_prefix("http://127.0.0.1:"))
            .or_else(|| id.strip_prefix("http://localhost:"))
            .expect("https or loopback http");
        assert!(!strict || id.starts_with("https://"), "{id:?}");
        assert!(rest.contains('/'), "a path: {id:?}");
    }
}

fn check_client(client_name: &str, redirect_uris: &[String]) {
    assert!((1..=MAX_REDIRECT_URIS).contains(&redirect_uris.len()));
    for uri in redirect_uris {
        assert!(valid_redirect_uri(uri), "{uri:?}");
    }
    assert!(!client_name.is_empty() && client_name.chars().count() <= MAX_NAME_LEN);
    assert!(
        !client_name.chars().any(char::is_control),
        "{client_name:?}"
    );
}

fn check_document(id: &str, body: &[u8]) {
    if let Ok(record) = document(id, body, NOW_MS) {
        assert_eq!(record.client_id, id, "the document names its own URL");
        assert_eq!(record.fetched_at, Some(NOW_MS));
        check_client(&record.client_name, &record.redirect_uris);
    }
}

fuzz_target!(|data: &[u8]| {
    let (client_id, body) = first_line(data);
    check_document_url(&client_id);
    check_document(&client_id, body);
    for line in String::from_utf8_lossy(data).lines() {
        check_redirect_uri(line);
    }
    let Ok(meta) = serde_json::from_slice::<ClientMetadata>(body) else {
        return;
    };
    for uri in &meta.redirect_uris {
        check_redirect_uri(uri);
    }
    if let Some(id) = &meta.client_id {
        check_document_url(id);
        check_document(id, body);
    }
    if let Ok((name, uris)) = registration(&meta) {
        assert_eq!(uris, meta.redirect_uris);
        check_client(&name, &uris);
    }
});
