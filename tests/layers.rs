//! The module graph points one way, down (ARCHITECTURE.md draws it): a
//! module may import only modules of a lower layer. Every `crate::` path in
//! `src/` (tests included) is checked, and a module missing from `LAYERS`
//! fails too, so a new one is placed deliberately.

use std::path::Path;

/// Lowest first. Within a layer, modules do not import each other, except on
/// the top one, where the daemon, the CLI and the HTTP servers meet.
const LAYERS: &[&[&str]] = &[
    // What an alert is; utilities that know nothing of herald.
    &["model", "files", "telemetry"],
    // The TOML file: settings, secrets, errors by field; builds nothing.
    &["config"],
    // Pure formatting; routing rules, namespace and cluster metadata; TLS settings.
    &["formats", "routing", "tls"],
    // One module per destination type and the registry table.
    &["notifiers"],
    // State: the ledger, dead letters, the Kafka consumer and its tracker.
    &["ledger", "deadletter", "source", "central"],
    // Lanes, the delivery state machine, the sweeper.
    &["delivery"],
    // Joins a destination's table to its rule, policy and notifier.
    &["destinations"],
    // The daemon, the CLI, the HTTP servers, the binaries.
    &["app", "cli", "http", "lib", "main", "bin"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Source without comments (a `crate::` in prose is not an import). String
/// literals are kept: a path inside one is rare and errs on the safe side.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("//") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find('\n').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules `src` names through `crate::`.
fn imports(src: &str) -> Vec<String> {
    let src = strip_comments(src);
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = src[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        // `herald_crate::x` or `my_crate::x` are not ours.
        let before = src[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &src[at..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c::{d, e}}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_name(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(first_name(&item));
        } else {
            out.push(first_name(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn first_name(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every wrong import among `files` (path under `src/`, contents).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, src) in files {
        let from = module_of(rel);
        let Some(lf) = layer(from) else {
            out.push(format!(
                "src/{rel}: module `{from}` has no layer in tests/layers.rs"
            ));
            continue;
        };
        for to in imports(src) {
            if to == from || to == "self" {
                continue;
            }
            let Some(lt) = layer(&to) else {
                out.push(format!(
                    "src/{rel}: imports `crate::{to}`, which has no layer"
                ));
                continue;
            };
            let top = lf == LAYERS.len() - 1;
            if lt > lf || (lt == lf && !top) {
                out.push(format!(
                    "src/{rel}: `{from}` imports `crate::{to}`, a {} layer",
                    if lt > lf { "higher" } else { "same" }
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn every_import_points_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    assert_eq!(violations(&files), Vec::<String>::new());
}

#[test]
fn a_wrong_import_fails_the_check() {
    let file = |rel: &str, src: &str| (rel.to_string(), src.to_string());
    let files = [
        file("config/mod.rs", "use crate::notifiers::Notifier;\nuse crate::model::Event;\n"),
        file(
            "notifiers/jira.rs",
            "use crate::{\n    formats::jira,\n    delivery::{Outcome, Lane},\n};\n// crate::app in a comment is fine\n",
        ),
        file("ledger/mod.rs", "fn f() { crate::source::Tracker::new(); }\n"),
        file("formats/cef.rs", "use crate::formats::text;\nuse herald_crate::app;\n"),
        file("newthing.rs", "use crate::model::Event;\n"),
        file("app.rs", "use crate::cli::Cli;\nuse crate::delivery::Pool;\n"),
    ];
    assert_eq!(
        violations(&files),
        [
            "src/config/mod.rs: `config` imports `crate::notifiers`, a higher layer",
            "src/ledger/mod.rs: `ledger` imports `crate::source`, a same layer",
            "src/newthing.rs: module `newthing` has no layer in tests/layers.rs",
            "src/notifiers/jira.rs: `notifiers` imports `crate::delivery`, a higher layer",
        ]
    );
}
