//! The structural rules of issue #12, checked on the sources themselves: no module cycle in
//! `src/` (top level and inside each folder), no non-test code matching on error text, the UI
//! without `transport::`, the CLI without `Store::open`, one owner of the download-link format,
//! no `allow(dead_code)`, campaign modules of at most 400 lines, and no dialect named outside the
//! dialect modules. `scripts/dev arch` runs this file.
//!
//! Each rule reads `src/**/*.rs` through a small lexer (comments, string and char literals and
//! raw strings blanked, byte offsets and so line numbers kept) and drops `#[cfg(test)]` items, so
//! neither a comment nor a test module can break or satisfy a rule. Paths (`use` trees,
//! `crate::`/`super::`/`self::` paths in code, paths through a declared child module) are
//! resolved by name to the file of the longest module prefix they name: an edge goes to the
//! module a path names, so importing a re-export still depends on the re-exporting module.
//! `src/testing/` (feature `test-support`) counts as test code for the text rules.
//! The checks are themselves tested at the end of this file (lexer, use trees, cycle finder),
//! and every rule asserts that it saw a plausible amount of code, so none passes vacuously.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Lexer: blank comments and literals, keep byte offsets.

/// A source file with comments and literals blanked (same byte length, same newlines), and
/// the contents of its string literals (for rules about literal text).
struct Lexed {
    code: String,
    strings: Vec<(usize, String)>,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Blanks `bytes[from..to]` except newlines.
fn blank(out: &mut [u8], from: usize, to: usize) {
    let to = to.min(out.len());
    for b in &mut out[from..to] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

/// Strips `//` and nested `/* */` comments, string literals (`"…"`, `b"…"`, `c"…"`, raw
/// `r#"…"#`) and char literals (`'x'`, `'\n'`, not lifetimes). A string literal becomes `""`
/// followed by blanks, a char literal `0` followed by blanks, so the code still tokenizes.
fn lex(src: &str) -> Lexed {
    let bytes = src.as_bytes();
    let mut out = bytes.to_vec();
    let mut strings = Vec::new();
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if b == b'/' && next == Some(b'/') {
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(n, |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if b == b'/' && next == Some(b'*') {
            let mut depth = 0;
            let mut j = i;
            while j < n {
                if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some((content, end)) = raw_string_at(bytes, i) {
            strings.push((i, src[content.0..content.1].to_string()));
            literal(&mut out, i, end, b'"');
            i = end;
        } else if b == b'"' {
            let mut j = i + 1;
            while j < n && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(n);
            strings.push((i, src[i + 1..j.min(n)].to_string()));
            literal(&mut out, i, end, b'"');
            i = end;
        } else if b == b'\'' {
            i = char_literal(bytes, &mut out, i);
        } else {
            i += 1;
        }
    }
    let code = String::from_utf8(out).expect("only ASCII bytes were written over whole literals");
    Lexed { code, strings }
}

/// Replaces the literal `out[from..to]` by a neutral token: `""` for strings, `0` for chars.
fn literal(out: &mut [u8], from: usize, to: usize, kind: u8) {
    blank(out, from, to);
    if kind == b'"' {
        out[from] = b'"';
        if to - from >= 2 {
            out[from + 1] = b'"';
        }
    } else {
        out[from] = b'0';
    }
}

/// A raw string (`r"…"`, `r#"…"#`, `br#"…"#`, `cr"…"`) starting at `i`: its content range and end.
fn raw_string_at(bytes: &[u8], i: usize) -> Option<((usize, usize), usize)> {
    if bytes[i] != b'r' {
        return None;
    }
    let prefixed = i > 0 && matches!(bytes[i - 1], b'b' | b'c');
    let start = if prefixed { i - 1 } else { i };
    if start > 0 && is_ident_byte(bytes[start - 1]) {
        return None;
    }
    let mut j = i + 1;
    let mut hashes = 0;
    while bytes.get(j) == Some(&b'#') {
        hashes += 1;
        j += 1;
    }
    if bytes.get(j) != Some(&b'"') {
        return None;
    }
    let content_start = j + 1;
    let mut k = content_start;
    while k < bytes.len() {
        if bytes[k] == b'"'
            && bytes[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some(((content_start, k), k + 1 + hashes));
        }
        k += 1;
    }
    Some(((content_start, bytes.len()), bytes.len()))
}

/// A char literal at `i` is blanked and its end returned; a lifetime or label is left alone.
fn char_literal(bytes: &[u8], out: &mut [u8], i: usize) -> usize {
    let n = bytes.len();
    if bytes.get(i + 1) == Some(&b'\\') {
        let mut j = i + 3;
        while j < n && bytes[j] != b'\'' {
            j += 1;
        }
        literal(out, i, (j + 1).min(n), b'\'');
        return (j + 1).min(n);
    }
    // One (possibly multi-byte) character and a closing quote.
    let width = match bytes.get(i + 1) {
        Some(&c) if c < 0x80 => 1,
        Some(&c) if c >= 0xF0 => 4,
        Some(&c) if c >= 0xE0 => 3,
        Some(_) => 2,
        None => return n,
    };
    if bytes.get(i + 1 + width) == Some(&b'\'') {
        literal(out, i, i + 2 + width, b'\'');
        i + 2 + width
    } else {
        i + 1
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
    ident: bool,
}

fn tokenize(code: &str) -> Vec<Tok> {
    let bytes = code.as_bytes();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
            i += 1;
        } else if b.is_ascii_whitespace() {
            i += 1;
        } else if is_ident_byte(b) {
            let start = i;
            while i < bytes.len() && is_ident_byte(bytes[i]) {
                i += 1;
            }
            let text = &code[start..i];
            let ident = !b.is_ascii_digit();
            toks.push(Tok {
                text: text.to_string(),
                line,
                ident,
            });
        } else {
            let two = code.get(i..i + 2);
            let text = if two == Some("::") || two == Some("\"\"") {
                2
            } else {
                1
            };
            toks.push(Tok {
                text: code[i..i + text].to_string(),
                line,
                ident: false,
            });
            i += text;
        }
    }
    toks
}

fn is(toks: &[Tok], i: usize, text: &str) -> bool {
    toks.get(i).is_some_and(|t| t.text == text)
}

/// Index of the token closing the bracket opened at `open` (`(`, `[` or `{`).
fn matching(toks: &[Tok], open: usize) -> usize {
    let (o, c) = match toks[open].text.as_str() {
        "(" => ("(", ")"),
        "[" => ("[", "]"),
        _ => ("{", "}"),
    };
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.text == o {
            depth += 1;
        } else if t.text == c {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    toks.len() - 1
}

/// What `#[cfg(test)]` removes from a file.
#[derive(Default)]
struct TestParts {
    /// `#![cfg(test)]` at the top: the whole file is test code.
    whole_file: bool,
    /// Token index ranges (inclusive) of `#[cfg(test)]` items.
    ranges: Vec<(usize, usize)>,
    /// `#[cfg(test)] mod x;`: child files that are test code.
    modules: Vec<String>,
}

/// True for `cfg(test)`, `cfg(any(test, …))`; false for `cfg(not(test))` and everything else.
fn is_test_cfg(attr: &[Tok]) -> bool {
    is(attr, 0, "cfg")
        && attr.iter().any(|t| t.text == "test")
        && !attr.iter().any(|t| t.text == "not")
}

fn test_parts(toks: &[Tok]) -> TestParts {
    let mut parts = TestParts::default();
    let mut i = 0;
    while i < toks.len() {
        if !is(toks, i, "#") {
            i += 1;
            continue;
        }
        let inner = is(toks, i + 1, "!");
        let open = if inner { i + 2 } else { i + 1 };
        if !is(toks, open, "[") {
            i += 1;
            continue;
        }
        let close = matching(toks, open);
        if !is_test_cfg(&toks[open + 1..close]) {
            i = close + 1;
            continue;
        }
        if inner {
            parts.whole_file = true;
            return parts;
        }
        let end = item_end(toks, close + 1);
        let item = &toks[close + 1..=end];
        if let Some(k) = item.iter().position(|t| t.text == "mod")
            && is(item, k + 2, ";")
        {
            parts.modules.push(item[k + 1].text.clone());
        }
        parts.ranges.push((i, end));
        i = end + 1;
    }
    parts
}

/// The last token of the item starting at `from` (after its attributes): its `;` or its `}`.
fn item_end(toks: &[Tok], from: usize) -> usize {
    let mut k = from;
    while is(toks, k, "#") && is(toks, k + 1, "[") {
        k = matching(toks, k + 1) + 1;
    }
    while k < toks.len() {
        match toks[k].text.as_str() {
            ";" => return k,
            "{" => return matching(toks, k),
            "(" | "[" => k = matching(toks, k) + 1,
            _ => k += 1,
        }
    }
    toks.len() - 1
}

// ---------------------------------------------------------------------------------------------
// The source tree.

struct Source {
    /// e.g. `src/engine/runner.rs`.
    rel: String,
    /// e.g. `["engine", "runner"]`; `[]` for `lib.rs`; `None` for `main.rs` (its own crate).
    module: Option<Vec<String>>,
    lines: usize,
    /// Tokens outside `#[cfg(test)]` items.
    code: Vec<Tok>,
    /// Every token, test code included.
    all: Vec<Tok>,
    /// String literals outside test items: (line, content).
    strings: Vec<(usize, String)>,
    /// Test code as a whole (`#![cfg(test)]`, declared under `#[cfg(test)]`, `src/testing/`).
    test_only: bool,
    test_modules: Vec<String>,
}

fn module_of(rel: &str) -> Option<Vec<String>> {
    let path = rel.strip_prefix("src/")?.strip_suffix(".rs")?;
    match path {
        "main" => None,
        "lib" => Some(Vec::new()),
        _ => {
            let path = path.strip_suffix("/mod").unwrap_or(path);
            Some(path.split('/').map(str::to_string).collect())
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse(rel: &str, text: &str) -> Source {
    let lexed = lex(text);
    let all = tokenize(&lexed.code);
    let parts = test_parts(&all);
    let in_test = |line: usize, idx: Option<usize>| {
        parts.ranges.iter().any(|&(a, b)| match idx {
            Some(k) => (a..=b).contains(&k),
            None => (all[a].line..=all[b].line).contains(&line),
        })
    };
    let code: Vec<Tok> = all
        .iter()
        .enumerate()
        .filter(|(k, _)| !in_test(0, Some(*k)))
        .map(|(_, t)| t.clone())
        .collect();
    let strings = lexed
        .strings
        .into_iter()
        .map(|(offset, s)| (line_of(text, offset), s))
        .filter(|(line, _)| !in_test(*line, None))
        .collect();
    Source {
        rel: rel.to_string(),
        module: module_of(rel),
        lines: text.lines().count(),
        code,
        all,
        strings,
        test_only: parts.whole_file || rel.starts_with("src/testing/") || rel == "src/testing.rs",
        test_modules: parts.modules,
    }
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read_tree(folder: &str) -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join(folder), &mut files);
    files
        .iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            parse(&rel, &std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// `src/` with test-only files marked (those declared under `#[cfg(test)]` and their children).
fn read_src() -> Vec<Source> {
    let mut files = read_tree("src");
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .filter_map(|(k, f)| Some((f.module.clone()?, k)))
        .collect();
    let mut test_roots = Vec::new();
    for f in &files {
        if let Some(m) = &f.module {
            for name in &f.test_modules {
                test_roots.push([m.as_slice(), std::slice::from_ref(name)].concat());
            }
        }
    }
    for (module, k) in &by_module {
        if test_roots.iter().any(|r| module.starts_with(r)) {
            files[*k].test_only = true;
        }
    }
    files
}

fn src() -> &'static [Source] {
    static SRC: std::sync::OnceLock<Vec<Source>> = std::sync::OnceLock::new();
    SRC.get_or_init(read_src)
}

/// Files whose code the text rules read: not test-only (`main.rs` included).
fn production() -> impl Iterator<Item = &'static Source> {
    src().iter().filter(|f| !f.test_only)
}

// ---------------------------------------------------------------------------------------------
// Paths and the dependency graph.

/// A path as written (`crate::protocol::Outbound`, `super::Runner`, `child::f`), at a line.
#[derive(Debug, Clone, PartialEq)]
struct PathRef {
    segs: Vec<String>,
    line: usize,
    /// The name a `use` binds (its alias, else its last segment); `None` for paths in code.
    binds: Option<String>,
    /// A `pub use` (any visibility): the name is re-exported.
    reexport: bool,
}

/// Leaf paths of a `use` tree starting at `toks[i]` (after `use`); returns them and the index
/// after the tree. `use a::{b, c::{d, self}, e as f, g::*}` gives `a::b`, `a::c::d`, `a::c`,
/// `a::e`, `a::g`.
fn use_tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<PathRef>) -> usize {
    let mut segs = prefix.to_vec();
    let line = toks.get(i).map_or(0, |t| t.line);
    if is(toks, i, "::") {
        i += 1;
    }
    loop {
        match toks.get(i) {
            Some(t) if t.text == "{" => {
                i += 1;
                while !is(toks, i, "}") && i < toks.len() {
                    i = use_tree(toks, i, &segs, out);
                    if is(toks, i, ",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            Some(t) if t.text == "*" => {
                out.push(PathRef {
                    segs,
                    line,
                    binds: Some("*".to_string()),
                    reexport: false,
                });
                return i + 1;
            }
            Some(t) if t.ident && t.text != "as" => {
                if t.text != "self" || segs.is_empty() {
                    segs.push(t.text.clone());
                }
                i += 1;
                if is(toks, i, "::") {
                    i += 1;
                    continue;
                }
                let mut binds = segs.last().cloned();
                if is(toks, i, "as") {
                    binds = toks.get(i + 1).map(|t| t.text.clone());
                    i += 2;
                }
                out.push(PathRef {
                    segs,
                    line,
                    binds,
                    reexport: false,
                });
                return i;
            }
            _ => return i,
        }
    }
}

/// Every path of `src` code that may name a module of this crate: `use` trees, and paths in
/// code starting with `crate`, `super`, `self` or a child module declared in the file.
fn path_refs(toks: &[Tok], children: &BTreeSet<String>) -> Vec<PathRef> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let after_sep = i > 0 && matches!(toks[i - 1].text.as_str(), "::" | ".");
        if t.text == "use" && t.ident {
            let from = out.len();
            let public = is(toks, i.wrapping_sub(1), "pub")
                || (is(toks, i.wrapping_sub(1), ")")
                    && toks[..i].iter().rev().take(5).any(|t| t.text == "pub"));
            i = use_tree(toks, i + 1, &[], &mut out);
            for r in &mut out[from..] {
                r.reexport = public;
            }
            continue;
        }
        let rooted =
            matches!(t.text.as_str(), "crate" | "super" | "self") || children.contains(&t.text);
        if t.ident && rooted && !after_sep && is(toks, i + 1, "::") {
            let mut segs = vec![t.text.clone()];
            let mut k = i + 2;
            while toks.get(k).is_some_and(|t| t.ident) {
                segs.push(toks[k].text.clone());
                if !is(toks, k + 1, "::") {
                    break;
                }
                k += 2;
            }
            out.push(PathRef {
                segs,
                line: t.line,
                binds: None,
                reexport: false,
            });
            i = k + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// The absolute module path `segs` names from inside `module`; `None` for other crates.
fn absolute(
    segs: &[String],
    module: &[String],
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let first = segs.first()?;
    let mut at = match first.as_str() {
        "crate" => return Some(segs[1..].to_vec()),
        "self" => module.to_vec(),
        "super" => module.to_vec(),
        name if children.contains(name) => return Some([module, segs].concat()),
        _ => return None,
    };
    let mut rest = segs;
    while rest.first().is_some_and(|s| s == "super") {
        at.pop();
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|s| s == "self") {
        rest = &rest[1..];
    }
    at.extend(rest.iter().cloned());
    Some(at)
}

/// One dependency between two files, with the line that makes it.
#[derive(Debug, Clone)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
    path: String,
}

struct Graph {
    files: &'static [Source],
    edges: Vec<Edge>,
}

fn children_of(files: &[Source], module: &[String]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|f| f.module.as_ref())
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        .map(|m| m[module.len()].clone())
        .collect()
}

/// The file graph of the library's non-test code. A path to a name that a module re-exports
/// (`pub use child::X;`) leads on to the file that defines it; a module's `pub use` of its own
/// descendants is its interface, not a dependency (else every folder whose children use their
/// parent's types would be a cycle); any other `pub use` is an edge like a `use`.
fn graph() -> Graph {
    let files = src();
    let index: BTreeMap<&[String], usize> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.test_only)
        .filter_map(|(k, f)| Some((f.module.as_deref()?, k)))
        .collect();
    // Per file: its paths, resolved to absolute module paths, and its re-exports by name.
    let mut refs: BTreeMap<usize, Vec<(PathRef, Vec<String>)>> = BTreeMap::new();
    let mut reexports: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    for (k, f) in files.iter().enumerate() {
        let Some(module) = f.module.as_deref().filter(|_| !f.test_only) else {
            continue;
        };
        let children = children_of(files, module);
        for r in path_refs(&f.code, &children) {
            let Some(abs) = absolute(&r.segs, module, &children) else {
                continue;
            };
            if let (true, Some(name)) = (r.reexport, &r.binds) {
                reexports.insert((k, name.clone()), abs.clone());
            }
            refs.entry(k).or_default().push((r, abs));
        }
    }
    let resolve = |abs: &[String]| {
        let mut abs = abs.to_vec();
        let mut file = None;
        for _ in 0..8 {
            let Some(n) = (0..=abs.len())
                .rev()
                .find(|&n| index.contains_key(&abs[..n]))
            else {
                break;
            };
            let k = index[&abs[..n]];
            file = Some(k);
            match abs
                .get(n)
                .and_then(|item| reexports.get(&(k, item.clone())))
            {
                Some(target) => abs = [target.as_slice(), &abs[n + 1..]].concat(),
                None => break,
            }
        }
        file
    };
    let mut edges = Vec::new();
    for (&from, paths) in &refs {
        let module = files[from].module.as_deref().unwrap_or_default();
        for (r, abs) in paths {
            let facade = r.reexport && abs.len() > module.len() && abs.starts_with(module);
            if let Some(to) = resolve(abs).filter(|&to| to != from && !facade) {
                edges.push(Edge {
                    from,
                    to,
                    line: r.line,
                    path: r.segs.join("::"),
                });
            }
        }
    }
    Graph { files, edges }
}

/// Strongly connected components of more than one node (Tarjan), each a sorted node list.
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on: BTreeSet<N>,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(v: &N, g: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        let n = s.index.len();
        s.index.insert(v.clone(), n);
        s.low.insert(v.clone(), n);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.on.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&N> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a).chain(bs))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(v, edges, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle through `start` inside `scc`: `[start, …, start]`.
fn cycle_path<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>, scc: &[N], start: &N) -> Vec<N> {
    // Breadth-first from `start`; `before[w]` is the node `w` was first reached from.
    let mut before: BTreeMap<N, N> = BTreeMap::new();
    let mut queue = VecDeque::from([start.clone()]);
    while let Some(v) = queue.pop_front() {
        for w in edges
            .get(&v)
            .into_iter()
            .flatten()
            .filter(|w| scc.contains(w))
        {
            if w == start {
                let mut path = vec![start.clone(), v.clone()];
                let mut at = v;
                while let Some(p) = before.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return path;
            }
            if !before.contains_key(w) {
                before.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    vec![start.clone()]
}

/// The node of `file` in the graph of folder `module`: `.` for the folder's own file
/// (`mod.rs`, `lib.rs`), else the child module (folder or file) the file lies in.
fn node_in(module: &[String], file: &[String]) -> Option<String> {
    if !file.starts_with(module) {
        return None;
    }
    Some(
        file.get(module.len())
            .cloned()
            .unwrap_or_else(|| ".".to_string()),
    )
}

/// The cycles of the graph of each folder that `scope` accepts, one message each: the cycle
/// and, for each of its edges, the first line that makes it.
fn folder_cycles(g: &Graph, scope: impl Fn(&[String]) -> bool) -> Vec<String> {
    let folders: BTreeSet<Vec<String>> = g
        .files
        .iter()
        .filter_map(|f| f.module.clone())
        .filter(|m| !children_of(g.files, m).is_empty())
        .collect();
    let mut found = Vec::new();
    for folder in folders.iter().filter(|m| scope(m)) {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut why: BTreeMap<(String, String), &Edge> = BTreeMap::new();
        for e in &g.edges {
            let (Some(a), Some(b)) = (
                g.files[e.from].module.as_deref(),
                g.files[e.to].module.as_deref(),
            ) else {
                continue;
            };
            let (Some(a), Some(b)) = (node_in(folder, a), node_in(folder, b)) else {
                continue;
            };
            if a != b {
                edges.entry(a.clone()).or_default().insert(b.clone());
                why.entry((a, b)).or_insert(e);
            }
        }
        for scc in cycles(&edges) {
            let path = cycle_path(&edges, &scc, &scc[0]);
            let dir = if folder.is_empty() {
                "src/".to_string()
            } else {
                format!("src/{}/", folder.join("/"))
            };
            let mut msg = format!(
                "module cycle in {dir}: {} (all of {{{}}} reach each other)",
                path.join(" -> "),
                scc.join(", ")
            );
            for pair in path.windows(2) {
                let e = why[&(pair[0].clone(), pair[1].clone())];
                let _ = write!(
                    msg,
                    "\n    {} -> {}: {}:{} `{}`",
                    pair[0], pair[1], g.files[e.from].rel, e.line, e.path
                );
            }
            found.push(msg);
        }
    }
    found
}

fn under_engine(module: &[String]) -> bool {
    module.first().is_some_and(|m| m == "engine")
}

fn report(what: &str, hits: &[String]) {
    const SHOWN: usize = 300;
    if hits.is_empty() {
        return;
    }
    let mut msg = format!("{what}: {} finding(s)\n", hits.len());
    for h in hits.iter().take(SHOWN) {
        let _ = writeln!(msg, "  {h}");
    }
    if hits.len() > SHOWN {
        let _ = writeln!(msg, "  … and {} more", hits.len() - SHOWN);
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------------------------
// Rule 1: no module cycle.

#[test]
fn the_sources_were_read() {
    let files = src();
    let g = graph();
    assert!(files.len() >= 120, "only {} files under src/", files.len());
    assert!(
        g.edges.len() >= 400,
        "only {} file dependencies found",
        g.edges.len()
    );
    // Every file is declared by its parent (else the module map is wrong, or the file is dead).
    for f in files {
        let Some(m) = f.module.as_deref().filter(|m| !m.is_empty()) else {
            continue;
        };
        let parent = &m[..m.len() - 1];
        let declared = files.iter().any(|p| {
            p.module.as_deref() == Some(parent)
                && p.all
                    .windows(3)
                    .any(|w| w[0].text == "mod" && w[1].text == m[m.len() - 1] && w[2].text == ";")
        });
        assert!(
            declared,
            "{} is not declared by a `mod` in its parent module",
            f.rel
        );
    }
    // Paths inside an inline module would resolve as if written in its file.
    for f in production() {
        for w in f.code.windows(3) {
            assert!(
                !(w[0].text == "mod" && w[1].ident && w[2].text == "{"),
                "{}:{}: an inline module outside test code: teach tests/architecture.rs to resolve its paths",
                f.rel,
                w[0].line
            );
        }
    }
    // Known dependencies are seen, through `use`, a path in code, `super::` and a child module.
    let has = |from: &str, to: &str| {
        g.edges
            .iter()
            .any(|e| g.files[e.from].rel == from && g.files[e.to].rel == to)
    };
    for (from, to) in [
        ("src/protocol/event.rs", "src/device_id.rs"),
        ("src/rollout/mod.rs", "src/protocol/event.rs"),
        ("src/engine/runner/mod.rs", "src/engine/campaigns/mod.rs"),
        // through the re-export `rollout::Campaign` to the file that defines it
        (
            "src/engine/campaigns/live.rs",
            "src/rollout/campaign/mod.rs",
        ),
        ("src/store/journal.rs", "src/store/sql.rs"),
        // `super::validate_download_url`, re-exported by engine/mod.rs from its defining file
        ("src/engine/resume.rs", "src/engine/download_url.rs"),
    ] {
        assert!(
            has(from, to),
            "the dependency {from} -> {to} was not found: the path resolver is broken"
        );
    }
}

#[test]
fn no_module_cycle() {
    let found = folder_cycles(&graph(), |_| true);
    report(
        "module cycles (top level, and inside each folder); break an edge of each by moving the \
         shared type down into a leaf module",
        &found,
    );
}

#[test]
fn no_module_cycle_inside_engine() {
    let found = folder_cycles(&graph(), under_engine);
    report("module cycles inside src/engine/", &found);
}

/// The top-level edges DESIGN12 §2.7 cuts so that the graph stays acyclic once `protocol`
/// depends on `access` and `sim`, and the leaves that make the cuts possible.
#[test]
fn leaves_stay_leaves_and_the_cut_edges_stay_cut() {
    let g = graph();
    let top = |k: usize| {
        g.files[k]
            .module
            .as_ref()
            .and_then(|m| m.first().cloned())
            .unwrap_or_default()
    };
    let mut hits = Vec::new();
    for e in &g.edges {
        let (from, to) = (top(e.from), top(e.to));
        let cut = matches!(
            (from.as_str(), to.as_str()),
            ("transport", "protocol") | ("access", "rollout") | ("sim", "protocol")
        );
        let leaf = ["device_id", "wire", "time", "host"].contains(&from.as_str()) && from != to;
        if cut || leaf {
            hits.push(format!(
                "{}:{}: {from} -> {to} through `{}`",
                g.files[e.from].rel, e.line, e.path
            ));
        }
    }
    report(
        "dependencies that close a loop once the dialect seam lands (DESIGN12 §2.7)",
        &hits,
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 2: no matching on error text.

fn error_like_name(name: &str) -> bool {
    const NAMES: [&str; 7] = ["e", "err", "error", "why", "reason", "msg", "message"];
    NAMES.contains(&name)
        || NAMES[1..]
            .iter()
            .any(|n| name.ends_with(&format!("_{n}")) || name.starts_with(&format!("{n}_")))
}

/// Whether the receiver ending at `toks[end]` is error text: a `to_string()` call, or a
/// variable or field named like an error, possibly through `to_lowercase()`, `trim()`, ….
fn error_text_receiver(toks: &[Tok], end: usize) -> bool {
    const SAME_TEXT: [&str; 8] = [
        "to_lowercase",
        "to_ascii_lowercase",
        "to_uppercase",
        "as_str",
        "trim",
        "as_ref",
        "as_deref",
        "to_owned",
    ];
    let t = &toks[end];
    if t.ident {
        return error_like_name(&t.text);
    }
    if t.text != ")" || end < 2 {
        return false;
    }
    let mut depth = 0;
    let Some(open) = (0..=end).rev().find(|&k| {
        match toks[k].text.as_str() {
            ")" => depth += 1,
            "(" => depth -= 1,
            _ => {}
        }
        depth == 0
    }) else {
        return false;
    };
    let Some(method) = open.checked_sub(1).map(|k| &toks[k]) else {
        return false;
    };
    let dotted = open >= 3 && toks[open - 2].text == ".";
    match method.text.as_str() {
        "to_string" if dotted => true,
        m if dotted && SAME_TEXT.contains(&m) => error_text_receiver(toks, open - 3),
        _ => false,
    }
}

fn error_text_matches(toks: &[Tok]) -> Vec<(usize, String)> {
    let mut hits = Vec::new();
    for i in 1..toks.len() {
        let method = &toks[i];
        if toks[i - 1].text == "."
            && matches!(
                method.text.as_str(),
                "contains" | "starts_with" | "ends_with"
            )
            && is(toks, i + 1, "(")
            && i >= 2
            && error_text_receiver(toks, i - 2)
        {
            let receiver = match toks[i - 2].text.as_str() {
                ")" => "a `to_string()`".to_string(),
                name => format!("`{name}`"),
            };
            hits.push((method.line, format!("`.{}(` on {receiver}", method.text)));
        }
    }
    hits
}

#[test]
fn no_code_matches_on_error_text() {
    let mut hits = Vec::new();
    let mut calls = 0;
    for f in production() {
        calls += f.code.iter().filter(|t| t.text == "contains").count();
        for (line, what) in error_text_matches(&f.code) {
            hits.push(format!("{}:{line}: {what}", f.rel));
        }
    }
    assert!(
        calls >= 20,
        "only {calls} `contains` calls seen in non-test code"
    );
    report(
        "non-test code that branches on an error's text (match on a typed error instead)",
        &hits,
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 3: the UI without transport, the CLI without the store, one owner of the link format.

#[test]
fn ui_imports_no_transport() {
    let ui: Vec<&Source> = production()
        .filter(|f| f.rel.starts_with("src/ui/"))
        .collect();
    assert!(ui.len() >= 10, "only {} files in src/ui/", ui.len());
    let mut hits = Vec::new();
    for f in &ui {
        for w in f.code.windows(2) {
            if w[0].text == "transport" && w[1].text == "::" {
                hits.push(format!("{}:{}: `transport::`", f.rel, w[0].line));
            }
        }
    }
    report(
        "src/ui/ names transport (it should see the engine's value types only)",
        &hits,
    );
}

/// A command that runs an engine goes through it for everything stored (the engine owns the
/// database while it runs: resuming a campaign is an engine command). Commands without an engine
/// (`broker`, `broker-config`) may read the store themselves.
#[test]
fn cli_never_opens_the_store_behind_the_engine() {
    let cli: Vec<&Source> = production()
        .filter(|f| f.rel.starts_with("src/cli/"))
        .collect();
    assert!(cli.len() >= 8, "only {} files in src/cli/", cli.len());
    let runs_an_engine = |f: &Source| {
        f.code
            .windows(3)
            .any(|w| w[0].text == "engine" && w[1].text == "::" && w[2].text == "start")
    };
    assert!(
        cli.iter().filter(|f| runs_an_engine(f)).count() >= 2,
        "no CLI command seems to start an engine: the check would be vacuous"
    );
    let mut hits = Vec::new();
    for f in cli.into_iter().filter(|f| runs_an_engine(f)) {
        for w in f.code.windows(3) {
            if w[0].text == "Store" && w[1].text == "::" && w[2].text.starts_with("open") {
                hits.push(format!("{}:{}: `Store::{}`", f.rel, w[0].line, w[2].text));
            }
        }
    }
    report("src/cli/ opens the store behind the engine's back", &hits);
}

#[test]
fn download_link_format_has_one_owner() {
    const OWNER: &str = "src/transport/http.rs";
    let owner = src()
        .iter()
        .find(|f| f.rel == OWNER)
        .expect("the firmware server");
    assert!(
        owner.strings.iter().any(|(_, s)| s.contains("/fw/")),
        "{OWNER} no longer holds the link format: update this test"
    );
    let mut hits = Vec::new();
    for f in production().filter(|f| f.rel != OWNER) {
        for (line, s) in &f.strings {
            if s.contains("/fw/") || s.ends_with("/fw") {
                hits.push(format!("{}:{line}: {s:?}", f.rel));
            }
        }
    }
    report(
        &format!("the download-link format (`/fw/`) outside {OWNER}"),
        &hits,
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 4: no `allow(dead_code)`; campaign modules of at most 400 lines.

fn allows_dead_code(toks: &[Tok]) -> Vec<usize> {
    let mut lines = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.text == "allow" && is(toks, i + 1, "(") {
            let close = matching(toks, i + 1);
            if toks[i + 1..close].iter().any(|t| t.text == "dead_code") {
                lines.push(t.line);
            }
        }
    }
    lines
}

#[test]
fn no_allow_dead_code() {
    let tests = read_tree("tests");
    assert!(tests.len() >= 20, "only {} files under tests/", tests.len());
    let mut hits = Vec::new();
    for f in src().iter().chain(&tests) {
        for line in allows_dead_code(&f.all) {
            hits.push(format!("{}:{line}: `allow(dead_code)`", f.rel));
        }
    }
    report(
        "`allow(dead_code)` (remove the dead code, or `expect(dead_code, reason = …)`)",
        &hits,
    );
}

#[test]
fn campaign_modules_are_short() {
    let campaign: Vec<&Source> = src()
        .iter()
        .filter(|f| f.rel.starts_with("src/rollout/campaign/"))
        .collect();
    assert!(
        campaign.len() >= 4,
        "src/rollout/campaign/ holds only {} files",
        campaign.len()
    );
    let hits: Vec<String> = campaign
        .iter()
        .filter(|f| f.lines > 400)
        .map(|f| format!("{}:401: {} lines (at most 400)", f.rel, f.lines))
        .collect();
    report("campaign modules longer than 400 lines", &hits);
}

// ---------------------------------------------------------------------------------------------
// Rule 5: no dialect named outside the dialect modules.

/// The dialects' own folders: every folder of `src/protocol/` (a new dialect's folder is one of
/// them as soon as it exists, so its name is checked everywhere else without editing this test).
fn dialect_folders() -> &'static [String] {
    static FOLDERS: OnceLock<Vec<String>> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
        let mut folders: Vec<String> = std::fs::read_dir(&dir)
            .expect("src/protocol is readable")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            // The loader of dialects described in files, not a dialect of its own.
            .filter(|name| name != "user")
            .collect();
        folders.sort();
        assert!(
            ["aliyun", "dji", "fogcloud"]
                .iter()
                .all(|d| folders.iter().any(|f| f == d)),
            "the built-in dialects' folders were not found: {folders:?}"
        );
        folders
    })
}

/// Where a dialect may be named: its own modules (its simulated devices included), the
/// registry and the trait, `device_id.rs` (parsing).
fn may_name_dialects(rel: &str) -> bool {
    dialect_folders().iter().any(|d| {
        rel.strip_prefix("src/protocol/")
            .and_then(|r| r.strip_prefix(d.as_str()))
            .is_some_and(|r| r.starts_with('/') || r == ".rs")
    }) || [
        "src/protocol/registry.rs",
        "src/protocol/dialect.rs",
        "src/device_id.rs",
    ]
    .contains(&rel)
}

/// `Dialect::`, a dialect folder's module path (`aliyun::`, `dji::`, … — every folder of
/// `src/protocol/` but the loader of dialect files), and the types `Dji*`, `FogCloud*`,
/// `Aliyun*`, `Aws*`.
fn names_a_dialect(toks: &[Tok], i: usize) -> bool {
    let t = &toks[i];
    let typed = |prefix: &str| {
        t.text
            .strip_prefix(prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
    };
    let path = is(toks, i + 1, "::");
    t.ident
        && ((path && (t.text == "Dialect" || dialect_folders().contains(&t.text)))
            || typed("Dji")
            || typed("FogCloud")
            || typed("Aliyun")
            || typed("Aws"))
}

#[test]
fn no_dialect_named_outside_its_modules() {
    let mut per_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for f in production().filter(|f| !may_name_dialects(&f.rel)) {
        checked += 1;
        for i in 0..f.code.len() {
            if names_a_dialect(&f.code, i) {
                let t = &f.code[i];
                let text = if is(&f.code, i + 1, "::") {
                    format!("{}::", t.text)
                } else {
                    t.text.clone()
                };
                per_file
                    .entry(&f.rel)
                    .or_default()
                    .push(format!("{}:{}: `{text}`", f.rel, t.line));
            }
        }
    }
    assert!(checked >= 100, "only {checked} files checked");
    let mut hits: Vec<String> = per_file
        .iter()
        .map(|(file, h)| format!("{file}: {} mention(s)", h.len()))
        .collect();
    hits.extend(per_file.into_values().flatten());
    report(
        "dialects named outside their modules (ask the dialect's trait or the registry)",
        &hits,
    );
}

// ---------------------------------------------------------------------------------------------
// The checks themselves.

#[test]
fn lexer_blanks_comments_and_literals_and_keeps_lines() {
    let src = "let a = \"Dialect::Dji\"; // Dialect::Dji\n/* outer /* Dialect:: */ still */ let b = 'x';\n\
               let c = r#\"a \"quoted\" Dialect::\"#; let q = '\"'; fn f<'a>(x: &'a str) {}\n\
               let d = b\"/fw/\"; let e = '\\''; let f = Dialect::Dji;";
    let lexed = lex(src);
    assert_eq!(lexed.code.len(), src.len());
    assert_eq!(lexed.code.lines().count(), src.lines().count());
    let toks = tokenize(&lexed.code);
    let hits: Vec<usize> = (0..toks.len())
        .filter(|&i| names_a_dialect(&toks, i))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "only the last `Dialect::` is code: {:?}",
        lexed.code
    );
    assert_eq!(toks[hits[0]].line, 4);
    assert!(
        toks.iter().any(|t| t.text == "'") && toks.iter().any(|t| t.text == "a"),
        "lifetimes stay code"
    );
    let strings: Vec<&str> = lexed.strings.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(strings, ["Dialect::Dji", "a \"quoted\" Dialect::", "/fw/"]);
}

#[test]
fn test_items_are_dropped() {
    let src = "use crate::a::X;\n#[cfg(test)]\nmod tests { use crate::b::Y; fn f() { why.contains(\"x\"); } }\n\
               #[cfg(test)] mod more;\n#[cfg(not(test))] use crate::c::Z;\n";
    let f = parse("src/x.rs", src);
    let refs: Vec<String> = path_refs(&f.code, &BTreeSet::new())
        .iter()
        .map(|r| r.segs.join("::"))
        .collect();
    assert_eq!(refs, ["crate::a::X", "crate::c::Z"]);
    assert_eq!(f.test_modules, ["more"]);
    assert!(error_text_matches(&f.code).is_empty());
    assert_eq!(error_text_matches(&f.all).len(), 1);
    assert!(parse("tests/t.rs", "//! doc\n#![cfg(test)]\nuse x;").test_only);
}

#[test]
fn use_trees_and_paths_are_resolved() {
    let code = "pub use crate::a::{b::{c, self}, d as e, f::*};\nuse super::super::g;\n\
                fn h() { child::run(); crate::i::j::K::new(); self::m::N; x.child::y; }";
    let toks = tokenize(&lex(code).code);
    let children = BTreeSet::from(["child".to_string()]);
    let refs: Vec<String> = path_refs(&toks, &children)
        .iter()
        .map(|r| r.segs.join("::"))
        .collect();
    assert_eq!(
        refs,
        [
            "crate::a::b::c",
            "crate::a::b",
            "crate::a::d",
            "crate::a::f",
            "super::super::g",
            "child::run",
            "crate::i::j::K::new",
            "self::m::N"
        ]
    );
    let here = ["p".to_string(), "q".to_string()];
    let abs = |s: &str| {
        absolute(
            &s.split("::").map(str::to_string).collect::<Vec<_>>(),
            &here,
            &children,
        )
    };
    assert_eq!(abs("super::super::g"), Some(vec!["g".to_string()]));
    assert_eq!(
        abs("super::r"),
        Some(vec!["p".to_string(), "r".to_string()])
    );
    assert_eq!(
        abs("child::run").map(|p| p.join("::")),
        Some("p::q::child::run".to_string())
    );
    assert_eq!(abs("std::fmt"), None);
}

#[test]
fn cycle_finder_finds_a_three_cycle_and_no_false_one() {
    let g = |pairs: &[(&'static str, &'static str)]| {
        let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry(a).or_default().insert(b);
        }
        m
    };
    let dag = g(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "a")]);
    assert!(cycles(&dag).is_empty());
    let cyclic = g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e")]);
    let found = cycles(&cyclic);
    assert_eq!(found, [vec!["a", "b", "c"]]);
    assert_eq!(cycle_path(&cyclic, &found[0], &"b"), ["b", "c", "a", "b"]);
}

#[test]
fn error_text_detector_flags_only_error_text() {
    let toks = |s: &str| tokenize(&lex(s).code);
    for bad in [
        "why.contains(\"in use\")",
        "e.to_string().starts_with(\"x\")",
        "self.reason.ends_with('x')",
        "err_text.trim().contains(x)",
        "a.b().to_string().contains(&told.url)",
    ] {
        assert_eq!(error_text_matches(&toks(bad)).len(), 1, "{bad}");
    }
    for good in [
        "list.contains(&x)",
        "name.starts_with(\"a\")",
        "x.contains(why)",
        "errors_seen.contains(&k)",
    ] {
        assert!(error_text_matches(&toks(good)).is_empty(), "{good}");
    }
}

#[test]
fn dialect_names_are_recognised() {
    let toks = tokenize(
        "DjiEvent FogCloudSub AliyunX AwsJobs Dialect::Dji dji::ID Djibouti DialectId::x Dji Awsome",
    );
    let hits: Vec<&str> = (0..toks.len())
        .filter(|&i| names_a_dialect(&toks, i))
        .map(|i| toks[i].text.as_str())
        .collect();
    assert_eq!(
        hits,
        [
            "DjiEvent",
            "FogCloudSub",
            "AliyunX",
            "AwsJobs",
            "Dialect",
            "dji"
        ]
    );
    assert!(
        may_name_dialects("src/protocol/dji/codec.rs")
            && may_name_dialects("src/protocol/aliyun.rs")
    );
    assert!(
        !may_name_dialects("src/protocol/mod.rs")
            && !may_name_dialects("src/engine/runner/inbound.rs")
    );
}
