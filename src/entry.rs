//! Worker glue: the `fetch` event and the conversions between `worker` types and the
//! plain values in [`crate::http`]. Nothing here decides anything.

use std::{cell::OnceCell, rc::Rc};

use futures_util::StreamExt;
use serde_json::json;
use worker::{Date, Env, Headers, Method, Request, Response, Result, event};

use crate::{
    adapters::WorkerBackend,
    app, billing,
    config::Config,
    context::Context,
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    usage::UsageLog,
};

fn now_ms() -> u64 {
    Date::now().as_millis()
}

thread_local! {
    /// The configuration, read once per isolate: vars and secrets are fixed for the life of
    /// a deployment's isolate, and parsing `PLANS` on every request would cost CPU.
    static CONFIG: OnceCell<Rc<Config>> = const { OnceCell::new() };
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|c| {
        c.get_or_init(|| {
            let config = Config::from_lookup(|name| {
                env.var(name)
                    .ok()
                    .map(|v| v.to_string())
                    .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
            });
            if !config.warnings.is_empty() {
                worker::console_warn!("{}", json!({ "config_warnings": config.warnings }));
            }
            Rc::new(config)
        })
        .clone()
    })
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: worker::Context) -> Result<Response> {
    let started = now_ms();
    let config = config(&env);
    let http_req = match read_request(&mut req, config.max_body_bytes).await {
        Ok(r) => r,
        Err(e) => return to_worker_response(e.response(&config, "", false)),
    };
    let backend = WorkerBackend::from_env(&env)?;
    let clock = now_ms;
    let cx = Context {
        config: &config,
        client_ip: http_req.header("cf-connecting-ip"),
        backend: &backend,
        now_ms: started,
        clock: &clock,
    };
    let handled = app::handle(&http_req, &cx).await;
    let effects = handled.effects;

    // One structured line per request; never a key, token or signature.
    let first = effects.usage.first();
    worker::console_log!(
        "{}",
        json!({
            "request_id": first.map(|u| &u.request_id),
            "http": format!("{} {}", http_req.method, http_req.path),
            "status": handled.response.status,
            "principal": effects.principal_kind,
            "method": effects.rpc_method,
            "tool": first.and_then(|u| u.tool.as_ref()),
            "outcome": first.map(|u| u.status),
            "duration_ms": now_ms().saturating_sub(started),
            "error": effects.error,
        })
    );
    if !effects.usage.is_empty() || !effects.meter.is_empty() {
        // After the response: a slow or failing D1 write or Stripe report never delays or
        // fails the call.
        let records = effects.usage;
        let meter = effects.meter;
        ctx.wait_until(async move {
            if !records.is_empty()
                && let Err(e) = backend.write_usage(&records).await
            {
                worker::console_error!(
                    "{}",
                    json!({ "usage_write_failed": e.to_string(), "records": records.len() })
                );
            }
            for failure in billing::meter::report(&config, &backend, &meter).await {
                worker::console_error!("{}", json!({ "meter_event_failed": failure }));
            }
        });
    }
    to_worker_response(handled.response)
}

/// Reads the request, refusing bodies over `limit` bytes without buffering them whole.
async fn read_request(
    req: &mut Request,
    limit: usize,
) -> std::result::Result<HttpRequest, ApiError> {
    let unreadable = || ApiError::BadRequest("unreadable request body".to_owned());
    let url = req
        .url()
        .map_err(|_| ApiError::BadRequest("unparsable request URL".to_owned()))?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = Vec::new();
    if !matches!(req.method(), Method::Get | Method::Head) {
        let mut stream = req.stream().map_err(|_| unreadable())?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| unreadable())?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
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
    let out = if resp.body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(resp.body)?
    };
    Ok(out.with_status(resp.status).with_headers(headers))
}
