//! The engine's files import each other in one direction only (issue #12): no file under
//! `src/engine/` names an item of a file that names one of its items back, directly or through
//! others. A child holding an `impl` block of its parent's type may name the parent
//! (`super::Runner`) because the parent imports nothing from it; `engine/mod.rs` re-exports but
//! no file below imports through it. See `src/engine/mod.rs`, "Which way the imports go".
//!
//! The graph is read from the source text: `super::…`, `self::…` and `crate::engine::…` paths
//! (resolved to the deepest module file they reach) and `use child::…` of a file's own child
//! modules. Comments and `#[cfg(test)] mod tests` blocks are left out.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["engine", "runner", "inbound"]`) → file, for every `.rs` under `root`.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut module = vec!["engine".to_owned()];
            module.extend(rel.iter().map(|s| s.to_string_lossy().into_owned()));
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source without comments and without its unit-test module.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path segments starting at `rest` (`a::b::{c, d}` → `[a, b]` and the group `[c, d]`).
fn segments(rest: &str) -> (Vec<String>, Vec<String>) {
    let mut segs = Vec::new();
    let mut rest = rest;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let names = group[..end]
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or("").to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            return (segs, names);
        }
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            return (segs, Vec::new());
        }
        segs.push(rest[..len].to_owned());
        match rest[len..].strip_prefix("::") {
            Some(more) => rest = more,
            None => return (segs, Vec::new()),
        }
    }
}

/// The deepest module file `start` + `path` reaches.
fn resolve(
    files: &BTreeMap<Vec<String>, PathBuf>,
    start: &[String],
    path: &[String],
) -> Vec<String> {
    let mut target = start.to_vec();
    let mut path = path;
    while let Some((first, more)) = path.split_first() {
        if first != "super" {
            break;
        }
        target.pop();
        path = more;
    }
    for seg in path {
        let mut deeper = target.clone();
        deeper.push(seg.clone());
        if !files.contains_key(&deeper) {
            break;
        }
        target = deeper;
    }
    target
}

/// Module → the modules whose items it names.
fn import_graph(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = modules(root);
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let code = code_of(path);
        let mut deps = BTreeSet::new();
        for (at, _) in code.match_indices("::") {
            // The segment before this `::`; only the first `::` of a path is looked at.
            let begin = code[..at]
                .char_indices()
                .rev()
                .find(|(_, c)| !is_ident(*c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            if code[..begin].ends_with("::") || begin == at {
                continue;
            }
            let (head, rest) = (&code[begin..at], &code[at + 2..]);
            let (base, prefix): (Vec<String>, Vec<String>) = match head {
                "super" => (module.clone(), vec!["super".to_owned()]),
                "self" => (module.clone(), Vec::new()),
                "crate" if rest.starts_with("engine::") => (vec!["engine".to_owned()], Vec::new()),
                child => {
                    // `use child::…` of one of this file's own modules.
                    let mut c = module.clone();
                    c.push(child.to_owned());
                    let used = code[..begin].trim_end().ends_with("use");
                    if used && files.contains_key(&c) {
                        deps.insert(c);
                    }
                    continue;
                }
            };
            let rest = if head == "crate" { &rest[8..] } else { rest };
            let (mut segs, group) = segments(rest);
            let mut path = prefix;
            path.append(&mut segs);
            let targets: Vec<Vec<String>> = if group.is_empty() {
                vec![resolve(&files, &base, &path)]
            } else {
                group
                    .iter()
                    .map(|name| {
                        let mut p = path.clone();
                        p.push(name.clone());
                        resolve(&files, &base, &p)
                    })
                    .collect()
            };
            deps.extend(targets.into_iter().filter(|t| t != module));
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, bool>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|m| m.join("::")).collect();
                cycle.push(node.join("::"));
                return Some(cycle);
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node.clone(), true);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.clone(), false);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn engine_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine")
}

#[test]
fn no_file_in_the_engine_imports_one_that_imports_it_back() {
    let graph = import_graph(&engine_dir());
    assert!(graph.len() > 20, "the engine's files were found: {graph:?}");
    assert_eq!(find_cycle(&graph), None, "an import cycle inside src/engine/");
}

#[test]
fn the_runner_is_imported_only_by_start_and_its_own_children() {
    let graph = import_graph(&engine_dir());
    let runner = vec!["engine".to_owned(), "runner".to_owned()];
    for (module, deps) in &graph {
        let own_child = module.len() == 3 && module.starts_with(&runner);
        let start = module == &["engine", "start"];
        if deps.contains(&runner) {
            assert!(own_child || start, "{} imports the runner", module.join("::"));
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runner")).unwrap();
    std::fs::write(dir.path().join("mod.rs"), "mod runner;\nmod view;\n").unwrap();
    std::fs::write(
        dir.path().join("runner/mod.rs"),
        "mod inbound;\nuse super::view::build;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("runner/inbound.rs"),
        "use super::Runner;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("view.rs"),
        "use super::runner::Runner;\nuse crate::engine::{snapshot, runner::Runner};\n",
    )
    .unwrap();
    let graph = import_graph(dir.path());
    let cycle = find_cycle(&graph).expect("runner and view import each other");
    assert!(cycle.contains(&"engine::view".to_owned()), "{cycle:?}");
    // A child naming its parent, with the parent importing nothing from it, is no cycle.
    std::fs::write(dir.path().join("view.rs"), "use super::snapshot::Snapshot;\n").unwrap();
    assert_eq!(find_cycle(&import_graph(dir.path())), None);
}
