//! The crate's layering, checked from its source: every module imports only modules
//! below it in the order `lib.rs` documents, and no two source files import each other,
//! directly or round a longer loop; and no function runs over sixty lines. Run alone
//! with `cargo test --test layout`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The top-level modules, highest first: each may import only those after it.
const LAYERS: [&str; 18] = [
    "entry", "adapters", "app", "routes", "context", "error", "pages", "http", "mcp", "billing",
    "oauth", "auth", "quota", "usage", "form", "store", "config", "upstream",
];

/// Every `.rs` file under `src`, by its module path (`src/a/mod.rs` is `a`).
fn modules() -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![Path::new("src").to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix("src")
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts, fs::read_to_string(&path).expect("a source file"));
        }
    }
    out
}

/// The code of a file without comments, string literals and its unit tests (crude, but
/// enough for paths; the tests module's `super` is the file itself).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut in_str = false;
        for c in line.chars() {
            match c {
                '"' => in_str = !in_str,
                _ if in_str => {}
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// The modules a file names: every `crate::…`, `super::…` and `self::…` path, braces of
/// `use` groups expanded, resolved against the file's own module path.
fn imports(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let code = code_of(text);
    let mut paths = BTreeSet::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        if let Some(rest) = stmt
            .strip_prefix("use ")
            .or_else(|| stmt.strip_prefix("pub use "))
        {
            expand(&[], rest, &mut paths);
        }
    }
    for (i, _) in code.char_indices() {
        let boundary = code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        for root in ["crate::", "super::", "self::"] {
            if boundary && code[i..].starts_with(root) {
                let tail: String = code[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                // `use super::{…}` groups are expanded above; the bare root says nothing.
                let path: Vec<String> = tail
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if path.len() > 1 {
                    paths.insert(path);
                }
            }
        }
    }
    paths
        .into_iter()
        .filter_map(|p| resolve(module, &p))
        .collect()
}

/// A path as the crate-relative module path it names (`super` is the parent module).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => Some(path[1..].to_vec()),
        Some("self") => Some([module, &path[1..]].concat()),
        Some("super") => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = module.get(..module.len().checked_sub(ups)?)?;
            Some([base, &path[ups..]].concat())
        }
        _ => None,
    }
}

/// Expands one `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(prefix: &[String], tree: &str, out: &mut BTreeSet<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let prefix = [prefix.to_vec(), head].concat();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&prefix, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&prefix, &inner[start..], out);
    } else if !tree.is_empty() {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let path: Vec<String> = name.split("::").map(|s| s.trim().to_owned()).collect();
        out.insert([prefix.to_vec(), path].concat());
    }
}

/// The file a path lands in: its longest prefix that is a module of the crate.
fn file_of(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
}

/// Which file imports which.
fn graph() -> Graph {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (module, text) in &modules {
        let targets = imports(module, text)
            .iter()
            .filter_map(|p| file_of(p, &modules))
            .filter(|t| t != module)
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let rank = |m: &[String]| {
        m.first()
            .and_then(|top| LAYERS.iter().position(|l| l == top))
    };
    let mut upward = Vec::new();
    for (from, targets) in graph() {
        let Some(r) = rank(&from) else { continue };
        for to in targets {
            if let Some(t) = rank(&to)
                && t < r
            {
                upward.push(format!("{} imports {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering:\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tops: BTreeSet<String> = modules()
        .keys()
        .filter_map(|m| m.first().cloned())
        .collect();
    let missing: Vec<&String> = tops
        .iter()
        .filter(|t| !LAYERS.contains(&t.as_str()))
        .collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}

type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// The loops of a graph, each as `a -> b -> a`, found by depth-first search.
fn loops(graph: &Graph) -> Vec<String> {
    fn visit(
        n: &Vec<String>,
        graph: &Graph,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let names: Vec<String> = stack[at..]
                .iter()
                .chain([n])
                .map(|m| m.join("::"))
                .collect();
            found.push(names.join(" -> "));
            return;
        }
        if !done.insert(n.clone()) {
            return;
        }
        stack.push(n.clone());
        for next in graph.get(n).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for n in graph.keys() {
        visit(n, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn no_files_import_each_other_round_a_loop() {
    let found = loops(&graph());
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_loops() {
    let text = "use crate::{a::{b, c::D}, e as f};\nuse super::g;\nfn x() { crate::h::i(); }";
    let found = imports(&["m".into(), "n".into()], text);
    let names: BTreeSet<String> = found.iter().map(|p| p.join("::")).collect();
    for want in ["a::b", "a::c::D", "e", "m::g", "h::i"] {
        assert!(names.contains(want), "{want} in {names:?}");
    }
    let m = |s: &str| vec![s.to_owned()];
    let g: Graph = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    assert_eq!(loops(&g), ["a -> b -> c -> a"]);
}

/// Longest function body allowed (the conformance fixtures, test scaffolding for the
/// suite's scenarios, are exempt).
const MAX_FUNCTION_LINES: usize = 60;

/// Functions longer than `max` lines in a file's text: `(name, first line, length)`.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let sig = ["pub(crate) ", "pub(super) ", "pub ", ""]
            .iter()
            .find_map(|v| trimmed.strip_prefix(v))
            .map(|t| t.strip_prefix("async ").unwrap_or(t));
        let Some(name) = sig.and_then(|t| t.strip_prefix("fn ")) else {
            continue;
        };
        // A declaration without a body (a trait's) ends with `;` before any `{`.
        let opens = lines[i..]
            .iter()
            .find(|l| l.contains('{') || l.trim_end().ends_with(';'))
            .is_some_and(|l| l.contains('{'));
        if !opens {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            let length = end + 2;
            if length > max {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((name, i + 1, length));
            }
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_sixty_lines() {
    let mut long = Vec::new();
    for dir in ["src", "tests"] {
        let mut stack = vec![Path::new(dir).to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).expect("readable") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/mcp/tools/fixtures.rs")
                {
                    let text = fs::read_to_string(&path).expect("a source file");
                    for (name, line, length) in long_functions(&text, MAX_FUNCTION_LINES) {
                        long.push(format!("{}:{line} {name}: {length} lines", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_counts_bodies_not_declarations() {
    let body: String = (0..70).map(|i| format!("    let _x{i} = {i};\n")).collect();
    let text =
        format!("trait T {{\n    fn declared(&self);\n}}\n\npub async fn long() {{\n{body}}}\n");
    assert_eq!(long_functions(&text, 60), [("long".to_owned(), 5, 72)]);
    assert!(long_functions(&text, 80).is_empty());
}
