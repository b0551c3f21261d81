//! Form and query text (`form::form_value`, `form::percent_decode`, `form::percent_encode`,
//! `http::HttpRequest::query_param` and `body_field`): the first line of the input is a
//! field name, the rest form text (also tried as a query string and as a JSON or form body).
//!
//! Checks: nothing panics; `percent_decode(percent_encode(s)) == Some(s)` and the encoding
//! is plain unreserved ASCII; decoding never grows the text; a found value is the decoding
//! of some pair's value; a pair put first with the encoded name and value is what is read
//! back (from the form, the query and a form body), and a JSON body's string field too;
//! `query_param` and a form `body_field` read exactly what `form_value` reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::{
    form::{form_value, percent_decode, percent_encode},
    http::HttpRequest,
};
use paid_mcp_worker_fuzz::first_line;

fn request(query: &str, content_type: &str, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: "POST".to_owned(),
        origin: "https://mcp.example.com".to_owned(),
        path: "/".to_owned(),
        query: query.to_owned(),
        headers: vec![("content-type".to_owned(), content_type.to_owned())],
        body,
    }
}

fuzz_target!(|data: &[u8]| {
    let (name, rest) = first_line(data);
    let form = String::from_utf8_lossy(rest);

    for s in [&*name, &*form] {
        let encoded = percent_encode(s);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
            "{encoded}"
        );
        assert_eq!(percent_decode(&encoded).as_deref(), Some(s), "round trip");
        if let Some(decoded) = percent_decode(s) {
            assert!(decoded.len() <= s.len());
        }
    }

    let found = form_value(&form, &name);
    if let Some(v) = &found {
        let from_some_pair = form.split('&').any(|pair| {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            percent_decode(k).as_deref() == Some(&*name) && percent_decode(val).as_ref() == Some(v)
        });
        assert!(from_some_pair, "{v:?} from {form:?}");
    }
    let as_query = request(&form, "text/plain", Vec::new());
    assert_eq!(as_query.query_param(&name), found);
    let as_body = request(
        "",
        "application/x-www-form-urlencoded",
        form.as_bytes().to_vec(),
    );
    assert_eq!(as_body.body_field(&name), found);
    let raw_json = request("", "application/json", rest.to_vec());
    let _ = raw_json.body_field(&name);

    // A pair put first is what is read back, whatever follows.
    let value = form.lines().next().unwrap_or_default();
    let first = format!("{}={}&{form}", percent_encode(&name), percent_encode(value));
    assert_eq!(form_value(&first, &name).as_deref(), Some(value));
    assert_eq!(
        request(&first, "", Vec::new())
            .query_param(&name)
            .as_deref(),
        Some(value)
    );
    let body = request(
        "",
        "application/x-www-form-urlencoded; charset=utf-8",
        first.into_bytes(),
    );
    assert_eq!(body.body_field(&name).as_deref(), Some(value));
    let json = serde_json::to_vec(&serde_json::json!({ name.clone(): value })).expect("json");
    let body = request("", "application/json", json);
    assert_eq!(body.body_field(&name).as_deref(), Some(value));
});
