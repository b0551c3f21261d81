//! Worker glue: the `fetch` event and the conversions between `worker` types and the
//! plain values in [`crate::http`]. Nothing here decides anything.

use futures_util::StreamExt;
use worker::{Context, Env, Headers, Method, Request, Response, Result, event};

use crate::{
    app::{self, AppContext},
    config::Config,
    http::{HttpRequest, HttpResponse},
};

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()));
    let http_req = match read_request(&mut req, config.max_body_bytes).await {
        Ok(r) => r,
        Err(resp) => return to_worker_response(resp),
    };
    let cx = AppContext {
        config: &config,
        client_ip: http_req.header("cf-connecting-ip"),
    };
    let resp = app::handle(&http_req, &cx).await;
    to_worker_response(resp)
}

/// Reads the request, refusing bodies over `limit` bytes without buffering them whole.
async fn read_request(
    req: &mut Request,
    limit: usize,
) -> std::result::Result<HttpRequest, HttpResponse> {
    let url = req
        .url()
        .map_err(|_| app::bad_request("unparsable request URL"))?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(app::payload_too_large(limit));
    }
    let mut body = Vec::new();
    if !matches!(req.method(), Method::Get | Method::Head) {
        let mut stream = req
            .stream()
            .map_err(|_| app::bad_request("unreadable request body"))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| app::bad_request("unreadable request body"))?;
            if body.len() + chunk.len() > limit {
                return Err(app::payload_too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(HttpRequest {
        method: req.method().to_string(),
        origin: url.origin().ascii_serialization(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or_default().to_owned(),
        headers,
        body,
    })
}

fn to_worker_response(resp: HttpResponse) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &resp.headers {
        headers.append(name, value)?;
    }
    let body = if resp.body.is_empty() {
        None
    } else {
        Some(resp.body)
    };
    let out = match body {
        Some(b) => Response::from_bytes(b)?,
        None => Response::empty()?,
    };
    Ok(out.with_status(resp.status).with_headers(headers))
}
