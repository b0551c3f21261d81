//! Server-rendered HTML pages: the landing page at `/`, and the billing pages (checkout
//! button, claim page). No scripts: every page works without JavaScript.

use crate::{config::Config, http::HttpResponse, mcp::tools::Registry, quota::policy::Plan};

/// Content-Security-Policy of a page without forms.
pub const CSP_NO_FORMS: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
/// Content-Security-Policy of a page whose forms post here and may redirect to a client.
pub const CSP_FORMS: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'";

/// Headers of pages that show or take secrets (keys, sign-in): never cached, never
/// framed (clickjacking), never leaked as a referrer.
pub fn private(resp: HttpResponse, csp: &str) -> HttpResponse {
    resp.with_header("cache-control", "no-store")
        .with_header("x-frame-options", "DENY")
        .with_header("referrer-policy", "no-referrer")
        .with_header("content-security-policy", csp)
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
code,pre{background:#f4f4f4;border-radius:4px}pre{padding:.75rem;overflow-x:auto}code{padding:.1rem .3rem}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}td,th{text-align:left;padding:.2rem .8rem .2rem 0}";

/// The landing page: what the server is, its tools, and how to connect.
pub fn landing(config: &Config, base_url: &str, registry: &Registry) -> String {
    let name = escape(&config.server_name);
    let pricing = pricing(config);
    let mcp_url = escape(&format!("{base_url}/mcp"));
    let tools: String = registry
        .tools()
        .map(|t| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(t.name),
                escape(t.description)
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{name}</title><style>{STYLE}</style></head>
<body>
<h1>{name}</h1>
<p>A remote <a href="https://modelcontextprotocol.io">Model Context Protocol</a> server. Connect any MCP client to
<code>{mcp_url}</code> (Streamable HTTP).</p>
<h2>Tools</h2>
<table><tr><th>name</th><th>what it does</th></tr>{tools}</table>
{pricing}
<h2>Connect</h2>
<p><b>Claude Desktop / claude.ai</b>: Settings → Connectors → Add custom connector, URL <code>{mcp_url}</code>; when asked, sign in with your API key (or subscribe there).</p>
<p><b>Claude Code</b>:</p>
<pre>claude mcp add --transport http {name} {mcp_url}</pre>
<p><b>Cursor</b> (<code>~/.cursor/mcp.json</code>):</p>
<pre>{{ "mcpServers": {{ "{name}": {{ "url": "{mcp_url}" }} }} }}</pre>
<p><b>stdio-only clients</b>, through <code>mcp-remote</code>:</p>
<pre>npx mcp-remote {mcp_url}</pre>
</body></html>
"#
    )
}

fn limits(p: &Plan) -> String {
    let mut parts = Vec::new();
    if let Some(d) = p.daily {
        parts.push(format!("{d} calls/day"));
    }
    if let Some(m) = p.monthly {
        parts.push(format!("{m} calls/month"));
    }
    if parts.is_empty() {
        parts.push("unlimited calls".to_owned());
    }
    if p.metered {
        parts.push("billed per call".to_owned());
    }
    parts.join(", ")
}

/// The plans table; each paid plan that Stripe can sell gets a Subscribe button.
fn pricing(config: &Config) -> String {
    let rows: String = config
        .plans
        .iter()
        .map(|p| {
            let action =
                if p.is_paid() && p.stripe_price.is_some() && config.stripe_secret_key.is_some() {
                    subscribe_form(&p.id, "Subscribe")
                } else {
                    String::new()
                };
            format!(
                "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                escape(&p.id),
                escape(p.price.as_deref().unwrap_or("free")),
                escape(&limits(p)),
            )
        })
        .collect();
    format!(
        "<h2 id=\"pricing\">Plans</h2>\n<table><tr><th>plan</th><th>price</th><th>limits</th><th></th></tr>{rows}</table>\n<p>Subscribers get an API key on the page Stripe returns to. Manage or cancel a subscription with <code>curl -X POST -H 'Authorization: Bearer KEY' …/api/stripe/portal</code>.</p>"
    )
}

fn subscribe_form(plan: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/api/stripe/checkout\" style=\"margin:0\"><input type=\"hidden\" name=\"plan\" value=\"{}\"><button type=\"submit\">{}</button></form>",
        escape(plan),
        escape(label)
    )
}

fn page(server_name: &str, title: &str, head_extra: &str, body: &str) -> String {
    let name = escape(server_name);
    let title = escape(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">{head_extra}<title>{title} · {name}</title><style>{STYLE}</style></head>\n\
         <body>\n<h1>{title}</h1>\n{body}\n<p><a href=\"/\">{name}</a></p>\n</body></html>\n"
    )
}

/// A page with a title and one paragraph.
pub fn message(server_name: &str, title: &str, text: &str) -> String {
    page(server_name, title, "", &format!("<p>{}</p>", escape(text)))
}

/// The button page that starts Checkout for a plan.
pub fn checkout(server_name: &str, plan: &Plan) -> String {
    let price = escape(plan.price.as_deref().unwrap_or_default());
    page(
        server_name,
        &format!("Subscribe to {}", plan.id),
        "",
        &format!(
            "<p>Plan <b>{}</b>: {price}, {}.</p>\n<p>Payment is handled by Stripe. Afterwards you are brought back here and shown your API key once.</p>\n{}",
            escape(&plan.id),
            escape(&limits(plan)),
            subscribe_form(&plan.id, "Continue to payment")
        ),
    )
}

/// Shown while the payment is being confirmed; reloads itself.
pub fn confirming(server_name: &str, refresh_s: u32) -> String {
    page(
        server_name,
        "Confirming your payment",
        &format!("<meta http-equiv=\"refresh\" content=\"{refresh_s}\">"),
        "<p>Stripe has not confirmed the payment to this server yet. This page reloads itself every few seconds and will show your API key as soon as it is confirmed.</p>",
    )
}

/// The one time an API key is shown: the key and how to connect each client with it.
pub fn claimed_key(
    server_name: &str,
    base_url: &str,
    key: &str,
    plan: &str,
    return_to: Option<&str>,
) -> String {
    let resume = return_to
        .map(|to| {
            format!(
                "<p><b>Signing in to an application?</b> Copy the key, then <a href=\"{}\">continue signing in</a> and paste it there.</p>\n",
                escape(to)
            )
        })
        .unwrap_or_default();
    let k = escape(key);
    let n = escape(server_name);
    let url = escape(&format!("{base_url}/mcp"));
    page(
        server_name,
        "Your API key",
        "",
        &format!(
            "<p>Thank you: plan <b>{plan}</b> is active. This is your API key. <b>It is shown only this once</b>; this server keeps only a hash of it, so copy it now and keep it secret.</p>\n\
             <pre id=\"key\">{k}</pre>\n{resume}\
             <h2>Connect</h2>\n\
             <p><b>Claude Desktop / claude.ai</b>: Settings → Connectors → Add custom connector, URL <code>{url}</code>; sign in with this key when asked.</p>\n\
             <p><b>Claude Code</b>:</p>\n<pre>claude mcp add --transport http {n} {url} --header \"Authorization: Bearer {k}\"</pre>\n\
             <p><b>Cursor</b> (<code>~/.cursor/mcp.json</code>):</p>\n<pre>{{ \"mcpServers\": {{ \"{n}\": {{ \"url\": \"{url}\", \"headers\": {{ \"Authorization\": \"Bearer {k}\" }} }} }} }}</pre>\n\
             <p><b>Any stdio client</b>, through <code>mcp-remote</code>:</p>\n<pre>npx mcp-remote {url} --header \"Authorization: Bearer {k}\"</pre>\n\
             <p><b>Billing</b>: change or cancel the subscription in Stripe's portal: <code>curl -X POST -H \"Authorization: Bearer {k}\" {portal}</code></p>",
            plan = escape(plan),
            portal = escape(&format!("{base_url}/api/stripe/portal")),
        ),
    )
}

/// What the authorize page shows.
pub struct AuthorizePage<'a> {
    pub server_name: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    /// The authorization request, carried through the form.
    pub hidden: &'a [(&'static str, String)],
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    /// Plans that can be bought here, for visitors without a key.
    pub plans: &'a [&'a Plan],
    /// Where Checkout's claim page sends the new subscriber back to.
    pub return_to: &'a str,
}

fn scope_text(scope: &str) -> &'static str {
    match scope {
        "mcp:tools" => "call this server's tools on your account, within your plan",
        "mcp:usage" => "read your account's usage and remaining quota",
        _ => "an unknown permission",
    }
}

/// The sign-in page of the authorization server.
pub fn authorize(p: &AuthorizePage<'_>) -> String {
    let hidden: String = p
        .hidden
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    let scopes: String = p
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code>: {}</li>", escape(s), scope_text(s)))
        .collect();
    let error = p
        .error
        .map(|e| {
            format!(
                "<p role=\"alert\" style=\"color:#a00\"><b>{}</b></p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let host = p
        .redirect_uri
        .split_once("://")
        .map_or(p.redirect_uri, |(_, r)| {
            r.split(['/', '?']).next().unwrap_or(r)
        });
    let subscribe = if p.plans.is_empty() {
        String::new()
    } else {
        let buttons: String = p
            .plans
            .iter()
            .map(|plan| {
                format!(
                    "<form method=\"post\" action=\"/api/stripe/checkout\" style=\"display:inline-block;margin:0 .5rem .5rem 0\">\
                     <input type=\"hidden\" name=\"plan\" value=\"{id}\"><input type=\"hidden\" name=\"return_to\" value=\"{ret}\">\
                     <button type=\"submit\">Subscribe to {id} ({price})</button></form>",
                    id = escape(&plan.id),
                    price = escape(plan.price.as_deref().unwrap_or_default()),
                    ret = escape(p.return_to),
                )
            })
            .collect();
        format!(
            "<h2>No key yet?</h2>\n<p>Subscribe: after paying you get a key and come straight back here to finish signing in.</p>\n{buttons}"
        )
    };
    page(
        p.server_name,
        "Sign in",
        "",
        &format!(
            "<p><b>{client}</b> wants access to your account on {server}. It will be able to:</p>\n<ul>{scopes}</ul>\n\
             <p style=\"font-size:.9em;color:#555\">Client id <code>{client_id}</code>; you will be sent back to <code>{host}</code>.</p>\n{error}\
             <form method=\"post\" action=\"/authorize\">{hidden}<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <p><label>Your API key<br><input name=\"api_key\" type=\"password\" autocomplete=\"off\" required size=\"60\" placeholder=\"mcp_live_…\"></label></p>\n\
             <p><button type=\"submit\" name=\"action\" value=\"approve\">Allow</button> \
             <button type=\"submit\" name=\"action\" value=\"deny\" formnovalidate>Deny</button></p></form>\n{subscribe}",
            client = escape(p.client_name),
            server = escape(p.server_name),
            client_id = escape(p.client_id),
            host = escape(host),
            csrf = escape(p.csrf),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
