//! The house: folders import only downwards, in the order a frame flows, and no files import
//! each other in a circle.
//!
//! Reads the sources (`use` trees and qualified `crate::`/`super::` paths outside comments and
//! test modules), resolves each path to the file that defines its module, and checks every edge
//! against [`LAYERS`]. A failure names the file, the path it used and the rule it broke.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The library's folders (and top-level files), bottom first. A folder may import only folders
/// of a lower layer: nothing of its own layer and nothing above.
const LAYERS: &[&[&str]] = &[
    // The words every stage shares.
    &["domain"],
    // What every stage counts, and the wire format peers speak.
    &["stats", "protocol"],
    // How every listener accepts, keeping the archive's file descriptors.
    &["net"],
    &["config"],
    &["tls"],
    &["catalog"],
    // A frame's way: priority fan-in and shards, the connections that feed them, the archive
    // that stores what they carry and reads it back.
    &["pipeline"],
    &["ingest"],
    &["links"],
    &["archive"],
    // The archive's readers, side by side: each reads with the archive's read side, and none
    // imports another (the TM outputs and the sinks speak no follow protocol).
    &["follow", "tm", "sinks"],
    &["ops"],
    &["daemon", "sim"],
];

/// Folders whose own rooms are layered the same way, bottom first: a room (a subfolder or a file
/// of the folder) may import only rooms of a lower layer; none imports the folder's face
/// (`mod.rs`), which only names the rooms.
const INNER_LAYERS: &[(&str, &[&[&str]])] = &[(
    "archive",
    &[
        // The bytes on disk: names, records, scans, the index and RETENTION files.
        &["format"],
        // Which sealed segments go, and the deleting.
        &["retention"],
        // How a frame becomes durable, and how the files are read back: side by side, neither
        // imports the other.
        &["write", "read"],
        // Questions of the whole archive, through the read side.
        &["query"],
        // The operators' tools over a stopped archive.
        &["tools"],
    ],
)];

/// The crates of the repository: (root file, the folder its modules live in).
fn crates() -> Vec<(PathBuf, PathBuf)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut crates = vec![(repo.join("src/lib.rs"), repo.join("src"))];
    for bench in ["bench/src/main.rs", "bench/src/lib.rs"] {
        let root = repo.join(bench);
        if root.exists() {
            crates.push((root, repo.join("bench/src")));
        }
    }
    crates
}

#[test]
fn folders_import_only_the_layers_below_them() {
    let (root, dir) = &crates()[0];
    let graph = Graph::read(root, dir);
    let layer_of = |folder: &str| LAYERS.iter().position(|layer| layer.contains(&folder));
    let mut broken = Vec::new();
    for (from, uses) in &graph.edges {
        let from_folder = graph.folder(from);
        if from_folder.is_empty() {
            continue;
        }
        let Some(from_layer) = layer_of(&from_folder) else {
            broken.push(format!(
                "{}: folder {from_folder:?} is in no layer",
                from.display()
            ));
            continue;
        };
        for (to, path) in uses {
            let to_folder = graph.folder(to);
            if to_folder == from_folder || to_folder.is_empty() {
                continue;
            }
            match layer_of(&to_folder) {
                Some(to_layer) if to_layer < from_layer => {}
                Some(_) => broken.push(format!(
                    "{} uses {path}: {from_folder} may not import {to_folder}, which is not below it",
                    from.display()
                )),
                None => broken.push(format!("{}: folder {to_folder:?} is in no layer", to.display())),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports that run up or across:\n{}",
        broken.join("\n")
    );
}

#[test]
fn rooms_inside_a_folder_import_only_the_layers_below_them() {
    let (root, dir) = &crates()[0];
    let graph = Graph::read(root, dir);
    let broken = inner_imports_against(&graph, INNER_LAYERS);
    assert!(
        broken.is_empty(),
        "imports inside a folder that run up or across:\n{}",
        broken.join("\n")
    );
}

#[test]
fn an_inner_room_importing_upwards_is_caught() {
    let (root, dir) = &crates()[0];
    let mut graph = Graph::read(root, dir);
    let format = dir.join("archive/format/names.rs");
    let tools = dir.join("archive/tools/mod.rs");
    let path = "crate::archive::tools::verify".to_string();
    graph.edges.entry(format).or_default().insert((tools, path));
    let broken = inner_imports_against(&graph, INNER_LAYERS);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0].contains("format may not import tools"),
        "{broken:?}"
    );
}

/// The imports between rooms of each folder of `layers` that break its order.
fn inner_imports_against(graph: &Graph, layers: &[(&str, &[&[&str]])]) -> Vec<String> {
    let mut broken = Vec::new();
    for (folder, rooms) in layers {
        let base = graph.dir.join(folder);
        let face = base.join("mod.rs");
        let room_of = |file: &Path| -> Option<String> {
            let rel = file.strip_prefix(&base).ok()?;
            let first = rel.iter().next()?.to_string_lossy();
            Some(first.trim_end_matches(".rs").to_string())
        };
        let layer_of = |room: &str| rooms.iter().position(|layer| layer.contains(&room));
        for (from, uses) in &graph.edges {
            let Some(from_room) = room_of(from).filter(|_| *from != face) else {
                continue;
            };
            let Some(from_layer) = layer_of(&from_room) else {
                broken.push(format!(
                    "{}: room {from_room:?} is in no layer",
                    from.display()
                ));
                continue;
            };
            for (to, path) in uses {
                let Some(to_room) = room_of(to) else { continue };
                if *to == face {
                    broken.push(format!(
                        "{} uses {path}: import the room that defines it, not {folder}'s face",
                        from.display()
                    ));
                    continue;
                }
                match layer_of(&to_room) {
                    _ if to_room == from_room => {}
                    Some(to_layer) if to_layer < from_layer => {}
                    _ => broken.push(format!(
                        "{} uses {path}: {from_room} may not import {to_room}, which is not below it",
                        from.display()
                    )),
                }
            }
        }
    }
    broken
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let mut circles = Vec::new();
    for (root, dir) in crates() {
        let graph = Graph::read(&root, &dir);
        for circle in graph.circles() {
            let mut lines = Vec::new();
            for from in &circle {
                for (to, path) in &graph.edges[from] {
                    if circle.contains(to) && to != from {
                        lines.push(format!("  {} -> {}: {path}", from.display(), to.display()));
                    }
                }
            }
            circles.push(lines.join("\n"));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n\n")
    );
}

/// Which file imports which, and by what path.
struct Graph {
    dir: PathBuf,
    edges: BTreeMap<PathBuf, BTreeSet<(PathBuf, String)>>,
}

impl Graph {
    fn read(root: &Path, dir: &Path) -> Graph {
        let mut graph = Graph {
            dir: dir.to_path_buf(),
            edges: BTreeMap::new(),
        };
        let mut files = Vec::new();
        collect(dir, &mut files);
        for file in files {
            if file.starts_with(dir.join("bin")) || (file != root && is_crate_root(&file)) {
                continue;
            }
            let module = graph.module_of(&file);
            let text = code_of(&fs::read_to_string(&file).expect("read a source file"));
            let face = file.parent().filter(|_| file.ends_with("mod.rs"));
            let mut uses = BTreeSet::new();
            for (path, reexport) in paths_in(&text) {
                let Some(to) = graph.resolve(&module, &path) else {
                    continue;
                };
                // A folder's face handing on its children's names imports nothing.
                let handed_on = reexport && face.is_some_and(|dir| to.starts_with(dir));
                if to != file && !is_crate_root(&to) && !handed_on {
                    uses.insert((to, path));
                }
            }
            graph.edges.insert(file, uses);
        }
        graph
    }

    /// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
    fn module_of(&self, file: &Path) -> Vec<String> {
        let rel = file.strip_prefix(&self.dir).expect("a file of the crate");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts
            .last()
            .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
        {
            parts.pop();
        }
        parts
    }

    /// The folder (or top-level file) a file belongs to; empty for the crate root.
    fn folder(&self, file: &Path) -> String {
        self.module_of(file).into_iter().next().unwrap_or_default()
    }

    /// The file that defines the deepest module `path` names, from a file of module `from`.
    fn resolve(&self, from: &[String], path: &str) -> Option<PathBuf> {
        let mut segments = path.split("::").peekable();
        let mut module: Vec<String> = match *segments.peek()? {
            "crate" => Vec::new(),
            "self" => from.to_vec(),
            "super" => from[..from.len().checked_sub(1)?].to_vec(),
            // A child module, named without `self::` (an external crate otherwise).
            child => {
                let mut module = from.to_vec();
                module.push(child.to_string());
                self.file_of(&module)?;
                from.to_vec()
            }
        };
        if matches!(segments.peek(), Some(&("crate" | "self" | "super"))) {
            segments.next();
        }
        while segments.peek() == Some(&"super") {
            segments.next();
            module.pop();
        }
        let mut file = self.file_of(&module)?;
        for segment in segments {
            module.push(segment.to_string());
            match self.file_of(&module) {
                Some(deeper) => file = deeper,
                None => break,
            }
        }
        Some(file)
    }

    fn file_of(&self, module: &[String]) -> Option<PathBuf> {
        if module.is_empty() {
            return ["lib.rs", "main.rs"]
                .iter()
                .map(|root| self.dir.join(root))
                .find(|p| p.exists());
        }
        let base = self.dir.join(module.join("/"));
        [base.with_extension("rs"), base.join("mod.rs")]
            .into_iter()
            .find(|p| p.exists())
    }

    /// The strongly connected groups of more than one file (Tarjan).
    fn circles(&self) -> Vec<Vec<PathBuf>> {
        struct State<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a PathBuf, usize>,
            low: BTreeMap<&'a PathBuf, usize>,
            stack: Vec<&'a PathBuf>,
            on_stack: BTreeSet<&'a PathBuf>,
            found: Vec<Vec<PathBuf>>,
        }
        fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
            let i = s.index.len();
            s.index.insert(v, i);
            s.low.insert(v, i);
            s.stack.push(v);
            s.on_stack.insert(v);
            for (w, _) in s.graph.edges.get(v).into_iter().flatten() {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut group = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    s.found.push(group);
                }
            }
        }
        let mut state = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for v in self.edges.keys() {
            if !state.index.contains_key(v) {
                visit(&mut state, v);
            }
        }
        state.found
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn is_crate_root(file: &Path) -> bool {
    file.file_name()
        .is_some_and(|name| name == "lib.rs" || name == "main.rs")
}

/// The code of a file without its comments and its `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names, with `use` trees expanded, each with whether a `pub use` hands it
/// on. Paths outside `use` are read only from `crate::` and `super::`.
fn paths_in(code: &str) -> Vec<(String, bool)> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        let tree: String = rest[at + 4..end]
            .replace(" as ", "#")
            .split_whitespace()
            .collect();
        let reexport = rest[..at].trim_end().ends_with("pub") || rest[..at].ends_with(") ");
        let mut expanded = Vec::new();
        expand("", &tree, &mut expanded);
        paths.extend(expanded.into_iter().map(|path| (path, reexport)));
        rest = &rest[end..];
    }
    let mut code_paths = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start).map(|at| from + at) {
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            // `pub(in crate::a)` names who may see an item, not a path it uses.
            if code[..at].ends_with("(in ") {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            code_paths.push(path.trim_end_matches(':').to_string());
        }
    }
    paths.extend(code_paths.into_iter().map(|path| (path, false)));
    paths
}

/// Where the next `use` statement's tree begins.
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = code[from..].find("use ").map(|at| from + at) {
        let before = code[..at].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Expands `a::{b, c::{d, e}}` under `prefix` into whole paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let join = |p: &str, t: &str| {
        if p.is_empty() {
            t.to_string()
        } else {
            format!("{p}::{t}")
        }
    };
    match tree.find('{') {
        None => {
            let path = tree
                .split('#')
                .next()
                .unwrap_or(tree)
                .trim_end_matches("::*");
            out.push(join(prefix, path.trim_end_matches("::self")));
        }
        Some(open) => {
            let head = join(prefix, tree[..open].trim_end_matches("::"));
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand_item(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand_item(&head, &inner[start..], out);
        }
    }
}

fn expand_item(head: &str, item: &str, out: &mut Vec<String>) {
    if item.is_empty() {
        return;
    }
    if item == "self" {
        out.push(head.to_string());
    } else {
        expand(head, item, out);
    }
}
