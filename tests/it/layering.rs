//! The import picture of `src/` is a tree: transport → capabilities → values and
//! infrastructure, start-up wiring on top, and no cycle anywhere. Read from the source text,
//! so a new `use crate::…` that breaks the layering fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer; a module may import only modules of a lower layer,
/// or of its own layer when the picture stays acyclic.
const LAYERS: &[(&str, u8)] = &[
    ("app", 4),
    ("http", 3),
    ("graphql", 3),
    ("state", 3),
    ("limits", 3),
    ("payments", 2),
    ("orders", 2),
    ("accounts", 2),
    ("events", 2),
    ("ledger", 2),
    ("audit", 2),
    ("catalog", 2),
    ("agents", 2),
    ("sales", 2),
    ("gateway_calls", 2),
    ("reconcile", 2),
    ("domain", 1),
    ("db", 0),
    ("gateway", 0),
    ("config", 0),
    ("error", 0),
    ("telemetry", 0),
    ("profile", 0),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("inside src");
        let first = relative
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if first == "main" || first == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let entry = graph.entry(first.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // `$crate::` inside a macro names the crate of the caller: same rules.
            let name: String = text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // The crate's exported macros live at its root; they are `db`'s.
            let name = if ["text_enum", "text_newtype"].contains(&name.as_str()) {
                "db".to_string()
            } else {
                name
            };
            if name != first {
                entry.insert(name);
            }
        }
    }
    graph
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/it/layering.rs"))
}

#[test]
fn imports_run_one_way_and_never_in_a_cycle() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if layer(to) > layer(from) {
                wrong.push(format!(
                    "{from} (layer {}) imports {to} (layer {})",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );

    // Depth-first search for a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }

    assert!(
        graph.values().all(|targets| !targets.contains("app")),
        "nothing imports the start-up wiring"
    );
    for capability in LAYERS.iter().filter(|(_, l)| *l == 2).map(|(n, _)| *n) {
        let targets = &graph[capability];
        for transport in ["http", "graphql", "state", "app"] {
            assert!(
                !targets.contains(transport),
                "{capability} imports the transport {transport}"
            );
        }
    }
}
