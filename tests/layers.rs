//! The layers point one way: api → service → cluster → collection → shard → index. No module
//! of a layer names a layer above it, and the crate's doc and the README give the same order.
//! (The modules beside the layers — config, error, codec, store, fsutil, secret, logging — name
//! no layer at all; server wires them all together.)

use std::path::Path;

/// The layers, top first.
const LAYERS: [&str; 6] = ["api", "service", "cluster", "collection", "shard", "index"];
/// Modules every layer may use, which use no layer.
const FOUNDATION: [&str; 7] = [
    "config", "error", "codec", "store", "fsutil", "secret", "logging",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

/// The top-level module a source file belongs to (`src/cluster/local.rs` → `cluster`).
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::<module>`, comments left out.
fn named_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let own = module_of(&root, file);
        let text = std::fs::read_to_string(file).expect("read source");
        for named in named_modules(&text) {
            let wrong = match (rank(&own), rank(&named)) {
                (Some(mine), Some(theirs)) => theirs < mine,
                // A foundation module names no layer.
                (None, Some(_)) => FOUNDATION.contains(&own.as_str()),
                _ => false,
            };
            if wrong {
                upward.push(format!("{} names crate::{named}", file.display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

/// The layers in the order a text first names them (as `name` or `` `name/` ``).
fn order_in(text: &str) -> Vec<&'static str> {
    let mut at: Vec<(usize, &'static str)> = LAYERS
        .iter()
        .filter_map(|l| {
            let shapes = [format!("[`{l}`]"), format!("`{l}/`")];
            shapes
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
                .map(|i| (i, *l))
        })
        .collect();
    at.sort();
    at.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn the_crate_doc_and_the_readme_give_the_same_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let crate_doc: String = lib.lines().filter(|l| l.starts_with("//!")).collect();
    assert_eq!(order_in(&crate_doc), LAYERS, "src/lib.rs");
    let how = readme
        .split("## How it works")
        .nth(1)
        .expect("a README section `How it works`");
    assert_eq!(order_in(how), LAYERS, "README.md, How it works");
}
