//! Server-rendered HTML pages: the landing page at `/`.

use crate::mcp::tools::Registry;

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
pub fn landing(server_name: &str, base_url: &str, registry: &Registry) -> String {
    let name = escape(server_name);
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
<h2>Connect</h2>
<p><b>Claude Desktop / claude.ai</b>: Settings → Connectors → Add custom connector, URL <code>{mcp_url}</code>.</p>
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
