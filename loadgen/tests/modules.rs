//! loadgen's modules import each other without a circle: each depends only on modules "below" it
//! (cli -> plan -> mix, run -> client, ...), so any one can be read, tested and changed on its own.
//!
//! The graph is read from the source: a module's edges are the `crate::<module>` paths it names
//! outside its `#[cfg(test)]` section (tests may reach anywhere), a folder module's files counting as
//! one module. The crate root (lib.rs) and the binary (main.rs) assemble the modules and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules named by `crate::` paths in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `crate::{a, b::{C, D}}`: the first segment of each top-level item.
            Some(group) => top_level_items(group),
            None => vec![rest],
        };
        for name in names {
            let name: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != "self" {
                found.insert(name);
            }
        }
    }
    found
}

/// The comma-separated items of a `{...}` group (`group` starts after its `{`), nested groups kept
/// whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut from) = (Vec::new(), 0, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[from..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[from..]);
    items
}

/// The code before the file's test section, which by this crate's habit closes the file.
fn without_tests(code: &str) -> &str {
    code.find("#[cfg(test)]").map_or(code, |at| &code[..at])
}

/// Each module of `src` and the modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = vec![src.to_path_buf()];
    while let Some(dir) = visit.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let module = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let edges = graph.entry(module.clone()).or_default();
            edges.extend(
                imports(without_tests(&code))
                    .into_iter()
                    .filter(|m| *m != module),
            );
        }
    }
    graph
}

/// A circle of imports, as `a -> b -> a`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    fn walk(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module.to_owned());
            return Some(circle.join(" -> "));
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = walk(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| walk(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn loadgen_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.len() >= 10 && graph["cli"].contains("plan") && graph["plan"].contains("mix"),
        "the graph was read: {graph:?}"
    );
    assert_eq!(circle(&graph), None, "{graph:#?}");
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in pairs {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert_eq!(
        circle(&edges(&[("cli", "plan"), ("plan", "mix"), ("mix", "cli")])).as_deref(),
        Some("cli -> plan -> mix -> cli")
    );
    assert_eq!(
        circle(&edges(&[("cli", "plan"), ("plan", "mix"), ("cli", "mix")])),
        None
    );
    let code = "use crate::plan::Plan;\nuse crate::{mix::{self, Mix}, trace_headers};\n\
                #[cfg(test)]\nmod tests { use crate::cli; }";
    assert_eq!(
        imports(without_tests(code)),
        BTreeSet::from([
            "plan".to_owned(),
            "mix".to_owned(),
            "trace_headers".to_owned()
        ])
    );
}
