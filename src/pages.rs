//! Server-rendered HTML pages: the landing page at `/`, and the billing pages (checkout
//! button, claim page). No scripts: every page works without JavaScript.

use crate::{
    config::{Config, MeterUnit, Plan},
    http::HttpResponse,
    mcp::tools::Registry,
};

/// Content-Security-Policy of a page without forms.
pub const CSP_NO_FORMS: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
/// Content-Security-Policy of a page whose forms post here and may redirect to a client
/// or to Stripe (browsers check `form-action` along the redirects too).
pub const CSP_FORMS: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'";

/// [`CSP_FORMS`], also letting the form's redirect reach a native application's
/// private-use scheme (`cursor:`), when the sign-in sends the user back to one.
pub fn csp_forms_to(redirect_uri: &str) -> String {
    match private_use_scheme(redirect_uri) {
        Some(scheme) => CSP_FORMS.replace(
            "form-action 'self' https: http:",
            &format!("form-action 'self' https: http: {scheme}:"),
        ),
        None => CSP_FORMS.to_owned(),
    }
}

/// The scheme of a redirect URI that is neither `https` nor `http`.
fn private_use_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    (!scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http"))
        .then_some(scheme)
}

/// Headers of pages that show or take secrets (keys, sign-in): never cached, never
/// framed (clickjacking), never leaked as a referrer. Replaces the page's default CSP.
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

/// One style sheet for every page: readable on a phone and a desktop, light and dark;
/// long keys and commands wrap inside their box.
const STYLE: &str = ":root{color-scheme:light dark;--fg:#1b1b1f;--bg:#fff;--muted:#4d5156;--box:#f1f3f5;--line:#cfd4da;--accent:#0b57d0;--on-accent:#fff;--err:#b3261e}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e6ea;--bg:#16171a;--muted:#b4b8be;--box:#24262b;--line:#41454d;--accent:#8ab4f8;--on-accent:#0b1a33;--err:#f2b8b5}}\
*{box-sizing:border-box}\
body{font:16px/1.55 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:46rem;margin:0 auto;padding:1.25rem 1rem 2rem;color:var(--fg);background:var(--bg)}\
a{color:var(--accent)}h1{font-size:1.6rem;line-height:1.25;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin-top:2rem}\
code,pre{font:.9em/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--box);border-radius:6px}\
code{padding:.1rem .3rem;overflow-wrap:anywhere}td:first-child code{white-space:nowrap;overflow-wrap:normal}pre{padding:.75rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}\
pre.key{font-size:1rem;border:1px solid var(--line);word-break:break-all}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.45rem .75rem .45rem 0;border-bottom:1px solid var(--line);vertical-align:top}\
label{display:block;font-weight:600;margin:1rem 0 .3rem}\
input{width:100%;max-width:36rem;font:inherit;padding:.55rem .7rem;border:1px solid var(--muted);border-radius:6px;background:var(--bg);color:var(--fg)}\
button{font:inherit;font-weight:600;padding:.5rem 1.1rem;border-radius:6px;border:2px solid var(--accent);background:var(--accent);color:var(--on-accent);cursor:pointer}\
button.secondary{background:transparent;color:var(--accent)}\
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
.actions{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}.actions form{margin:0}\
.muted{color:var(--muted);font-size:.92em}.error{color:var(--err);font-weight:600}\
footer{margin-top:2.5rem;padding-top:1rem;border-top:1px solid var(--line)}";

/// The landing page: what the server is, its tools, its plans, and how to connect.
pub fn landing(config: &Config, base_url: &str, registry: &Registry) -> String {
    let name = escape(&config.server_name);
    let mcp_url = escape(&format!("{base_url}/mcp"));
    let tools: String = registry
        .tools()
        .filter(|t| t.offered(config))
        .map(|t| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(t.name),
                escape(t.description)
            )
        })
        .collect();
    let body = format!(
        r#"<p>A remote <a href="https://modelcontextprotocol.io">Model Context Protocol</a> server. Connect any MCP client to
<code>{mcp_url}</code> (Streamable HTTP).</p>
<h2>Tools</h2>
<div class="scroll"><table><tr><th scope="col">Name</th><th scope="col">What it does</th></tr>{tools}</table></div>
{pricing}
<h2>Connect</h2>
<p><b>Claude Desktop / claude.ai</b>: Settings → Connectors → Add custom connector, URL <code>{mcp_url}</code>; when asked, sign in with your API key (or subscribe there).</p>
<p><b>Claude Code</b>:</p>
<pre>claude mcp add --transport http {name} {mcp_url}</pre>
<p><b>Cursor</b> (<code>~/.cursor/mcp.json</code>):</p>
<pre>{{ "mcpServers": {{ "{name}": {{ "url": "{mcp_url}" }} }} }}</pre>
<p><b>stdio-only clients</b>, through <code>mcp-remote</code>:</p>
<pre>npx mcp-remote {mcp_url}</pre>
<p><b>Directories</b>: the <a href="/mcp/server-card">server card</a> (also at <a href="/.well-known/mcp/server-card.json">/.well-known/mcp/server-card.json</a>), the MCP Registry's <a href="/server.json">server.json</a> and the domain's <a href="/.well-known/ai-catalog.json">AI catalog</a>.</p>"#,
        pricing = pricing(config),
    );
    document(&config.server_name, &config.server_name, "", &body, false)
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
    if let Some(d) = p.daily_tokens {
        parts.push(format!("{d} tokens/day"));
    }
    if let Some(m) = p.monthly_tokens {
        parts.push(format!("{m} tokens/month"));
    }
    if p.metered {
        parts.push(match p.meter {
            MeterUnit::Calls => "billed per call".to_owned(),
            MeterUnit::Tokens => "billed per token".to_owned(),
        });
    }
    parts.join(", ")
}

/// Whether Stripe can sell a plan here.
fn sellable(config: &Config, p: &Plan) -> bool {
    p.is_paid() && p.stripe_price.is_some() && config.stripe_secret_key.is_some()
}

/// The plans table; each paid plan that Stripe can sell gets a Subscribe button.
fn pricing(config: &Config) -> String {
    let rows: String = config
        .plans
        .iter()
        .map(|p| {
            let action = if sellable(config, p) {
                subscribe_form(&p.id, "Subscribe", &format!("Subscribe to {}", p.id), None)
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
    let manage = if config.stripe_secret_key.is_some() {
        "<p>Subscribers get an API key on the page Stripe returns to. Change plan, payment method or cancel: <a href=\"/api/stripe/portal\">Manage subscription</a>.</p>"
    } else {
        ""
    };
    format!(
        "<h2 id=\"pricing\">Plans</h2>\n<div class=\"scroll\"><table><tr><th scope=\"col\">Plan</th><th scope=\"col\">Price</th><th scope=\"col\">Limits</th><th scope=\"col\"><span class=\"muted\">Action</span></th></tr>{rows}</table></div>\n{manage}"
    )
}

/// A form with one button that starts Checkout for a plan (`return_to`: the sign-in
/// page to come back to). `label` is the visible text, `name` the accessible name.
fn subscribe_form(plan: &str, label: &str, name: &str, return_to: Option<&str>) -> String {
    let back = return_to
        .map(|r| {
            format!(
                "<input type=\"hidden\" name=\"return_to\" value=\"{}\">",
                escape(r)
            )
        })
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"/api/stripe/checkout\"><input type=\"hidden\" name=\"plan\" value=\"{}\">{back}<button type=\"submit\" aria-label=\"{}\">{}</button></form>",
        escape(plan),
        escape(name),
        escape(label)
    )
}

/// A whole page. `title` and `body` are the page's own; `body` is HTML already escaped.
fn document(server_name: &str, title: &str, head_extra: &str, body: &str, footer: bool) -> String {
    let name = escape(server_name);
    let heading = escape(title);
    let full_title = if title == server_name {
        name.clone()
    } else {
        format!("{heading} · {name}")
    };
    let footer = if footer {
        format!("<footer><a href=\"/\">{name}</a></footer>\n")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">{head_extra}<title>{full_title}</title><style>{STYLE}</style></head>\n\
         <body>\n<main>\n<h1>{heading}</h1>\n{body}\n</main>\n{footer}</body></html>\n"
    )
}

fn page(server_name: &str, title: &str, head_extra: &str, body: &str) -> String {
    document(server_name, title, head_extra, body, true)
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
            "<p>Plan <b>{}</b>: {price}, {}.</p>\n<p>Payment is handled by Stripe. Afterwards you are brought back here and shown your API key once.</p>\n<div class=\"actions\">{}</div>",
            escape(&plan.id),
            escape(&limits(plan)),
            subscribe_form(&plan.id, "Continue to payment", "Continue to payment", None)
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
             <pre id=\"key\" class=\"key\">{k}</pre>\n{resume}\
             <h2>Connect</h2>\n\
             <p><b>Claude Desktop / claude.ai</b>: Settings → Connectors → Add custom connector, URL <code>{url}</code>; sign in with this key when asked.</p>\n\
             <p><b>Claude Code</b>:</p>\n<pre>claude mcp add --transport http {n} {url} --header \"Authorization: Bearer {k}\"</pre>\n\
             <p><b>Cursor</b> (<code>~/.cursor/mcp.json</code>):</p>\n<pre>{{ \"mcpServers\": {{ \"{n}\": {{ \"url\": \"{url}\", \"headers\": {{ \"Authorization\": \"Bearer {k}\" }} }} }} }}</pre>\n\
             <p><b>Any stdio client</b>, through <code>mcp-remote</code>:</p>\n<pre>npx mcp-remote {url} --header \"Authorization: Bearer {k}\"</pre>\n\
             <h2>Billing</h2>\n<p>Change plan or payment method, see invoices or cancel in Stripe's portal: <a href=\"/api/stripe/portal\">Manage subscription</a> (you will need this key).</p>",
            plan = escape(plan),
        ),
    )
}

/// The *Manage subscription* page: the API key goes in the form's body, and the browser
/// is sent on to Stripe's Customer Portal.
pub fn portal(server_name: &str, error: Option<&str>) -> String {
    page(
        server_name,
        "Manage subscription",
        "",
        &format!(
            "<p>Change your plan or payment method, see invoices, or cancel, in Stripe's customer portal. Enter the API key you got when you subscribed.</p>\n{}\
             <form method=\"post\" action=\"/api/stripe/portal\">\n\
             <label for=\"api_key\">Your API key</label>\n\
             <input id=\"api_key\" name=\"api_key\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\" required placeholder=\"mcp_live_…\">\n\
             <div class=\"actions\"><button type=\"submit\">Open billing portal</button></div>\n</form>",
            error_text(error),
        ),
    )
}

fn error_text(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>\n", escape(e)))
        .unwrap_or_default()
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
        "mcp:billing" => {
            "manage your billing: open the subscription portal (change or cancel the plan, payment methods, invoices) and start new purchases on your account"
        }
        _ => "an unknown permission",
    }
}

/// Where the sign-in sends the user, as the consent page names it: the host of a web
/// address, or the whole address of a native application's private-use scheme (the
/// scheme alone says little about which application answers it).
pub fn redirect_destination(redirect_uri: &str) -> String {
    if private_use_scheme(redirect_uri).is_some() {
        return format!(
            "the application that opens {} links: {}",
            redirect_uri.split(':').next().unwrap_or_default(),
            redirect_uri
        );
    }
    redirect_uri
        .split_once("://")
        .map_or(redirect_uri, |(_, r)| {
            r.split(['/', '?']).next().unwrap_or(r)
        })
        .to_owned()
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
    let subscribe = if p.plans.is_empty() {
        String::new()
    } else {
        let buttons: String = p
            .plans
            .iter()
            .map(|plan| {
                let label = format!(
                    "Subscribe to {} ({})",
                    plan.id,
                    plan.price.as_deref().unwrap_or_default()
                );
                subscribe_form(&plan.id, &label, &label, Some(p.return_to))
            })
            .collect();
        format!(
            "<h2>No key yet?</h2>\n<p>Subscribe: after paying you get a key and come straight back here to finish signing in.</p>\n<div class=\"actions\">{buttons}</div>"
        )
    };
    page(
        p.server_name,
        "Sign in",
        "",
        &format!(
            "<p><b>{client}</b> wants access to your account on {server}. It will be able to:</p>\n<ul>{scopes}</ul>\n\
             <p class=\"muted\">Client id <code>{client_id}</code>; you will be sent back to <code>{destination}</code>.</p>\n{error}\
             <form method=\"post\" action=\"/authorize\">{hidden}<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <label for=\"api_key\">Your API key</label>\n\
             <input id=\"api_key\" name=\"api_key\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\" required placeholder=\"mcp_live_…\">\n\
             <div class=\"actions\"><button type=\"submit\" name=\"action\" value=\"approve\">Allow</button>\
             <button type=\"submit\" name=\"action\" value=\"deny\" class=\"secondary\" formnovalidate>Deny</button></div></form>\n{subscribe}",
            client = escape(p.client_name),
            server = escape(p.server_name),
            client_id = escape(p.client_id),
            destination = escape(&redirect_destination(p.redirect_uri)),
            csrf = escape(p.csrf),
            error = error_text(p.error),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_redirects_are_named_whole_and_allowed_as_form_targets() {
        let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
        assert_eq!(
            redirect_destination(cursor),
            "the application that opens cursor links: cursor://anysphere.cursor-mcp/oauth/callback"
        );
        assert_eq!(
            redirect_destination("https://claude.ai/api/mcp/auth_callback?x=1"),
            "claude.ai"
        );
        assert!(csp_forms_to(cursor).contains("form-action 'self' https: http: cursor:;"));
        assert_eq!(csp_forms_to("http://127.0.0.1:3/cb"), CSP_FORMS);
    }

    #[test]
    fn plan_limits_name_calls_tokens_and_what_is_billed() {
        let per_call = Plan {
            daily: Some(100),
            metered: true,
            ..Plan::default()
        };
        assert_eq!(limits(&per_call), "100 calls/day, billed per call");
        let per_token = Plan {
            monthly: Some(1000),
            daily_tokens: Some(30000),
            metered: true,
            meter: MeterUnit::Tokens,
            ..Plan::default()
        };
        assert_eq!(
            limits(&per_token),
            "1000 calls/month, 30000 tokens/day, billed per token"
        );
    }

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
