//! `Outbound` over the worker's `fetch`: requests to Stripe's API and to clients' metadata
//! documents, with a size cap on the answer and a timeout, never following redirects.

use futures_util::future::{Either, select};
use wasm_bindgen::JsValue;
use worker::{Method, Request, RequestInit, RequestRedirect, Response};

use super::{WorkerBackend, js};
use crate::store::{Outbound, OutboundRequest, OutboundResponse, StoreError};

/// The worker request for an outbound request.
fn request(req: &OutboundRequest) -> worker::Result<Request> {
    let headers = worker::Headers::new();
    for (k, v) in &req.headers {
        headers.set(k, v)?;
    }
    let mut init = RequestInit::new();
    // Redirects are never followed: a metadata document must be served at the URL that
    // names the client, and Stripe's API does not redirect.
    init.with_method(Method::from(req.method.to_owned()))
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if let Some(body) = &req.body {
        init.with_body(Some(JsValue::from_str(body)));
    }
    Request::new_with_init(&req.url, &init)
}

/// Reads an answer's body, refusing one over `limit` bytes without reading it whole.
async fn read_limited(mut resp: Response, limit: usize) -> worker::Result<OutboundResponse> {
    let status = resp.status_code();
    let content_type = resp.headers().get("content-type")?;
    let declared = resp
        .headers()
        .get("content-length")?
        .and_then(|n| n.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(worker::Error::RustError(format!(
            "answer larger than {limit} bytes"
        )));
    }
    let mut body = Vec::new();
    let mut stream = resp.stream()?;
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(worker::Error::RustError(format!(
                "answer larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse {
        status,
        content_type,
        body,
    })
}

impl Outbound for WorkerBackend {
    async fn outbound(&self, req: &OutboundRequest) -> Result<OutboundResponse, StoreError> {
        let request = request(req)?;
        let limit = req.max_response_bytes;
        let send = async {
            let resp = worker::Fetch::Request(request).send().await?;
            read_limited(resp, limit).await
        };
        let timeout = js::sleep(req.timeout_ms);
        futures_util::pin_mut!(send, timeout);
        match select(send, timeout).await {
            Either::Left((result, _)) => Ok(result?),
            Either::Right(_) => Err(StoreError(format!(
                "no answer within {} ms",
                req.timeout_ms
            ))),
        }
    }
}
