//! Imports point down one layer list (the study's order): a module may use its own layer or
//! the layers below it, never one above. Reads every `crate::…` path in `src/` (comments
//! stripped) and fails on an upward edge, naming the file and line.

use std::path::{Path, PathBuf};

/// Layers from the bottom up; each top-level module of the library is in exactly one.
const LAYERS: &[&[&str]] = &[
    &[
        "error", "rng", "optim", "session", "display", "files", "bench",
    ],
    &["data"],
    &["model"],
    &["checkpoint"],
    &["train"],
    &["masking"],
    &["analysis"],
    &["plot"],
    &["notebook", "report", "fixtures", "prelude", "sweep"],
];

fn layer_of(module: &str) -> Option<usize> {
    let module = match module {
        "Error" | "Result" => "error",
        "with_setters" => "error",
        other => other,
    };
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a line of code names through `crate::`, in order.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(inner) = rest.strip_prefix('{') {
            // `crate::{a::b, c}`: the first identifier of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(first_ident(&item));
        } else {
            out.push(first_ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn first_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Upward edges in one file of module `module`: `(line number, target module)`.
fn upward_edges(module: &str, source: &str) -> Vec<(usize, String)> {
    let Some(own) = layer_of(module) else {
        return vec![(0, format!("module '{module}' is in no layer"))];
    };
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        for target in crate_paths(line) {
            match layer_of(&target) {
                Some(l) if l > own => found.push((i + 1, target)),
                Some(_) => {}
                None => found.push((i + 1, format!("{target} (in no layer)"))),
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        if first == "bin" || first == "lib.rs" {
            continue; // the binary sits on top; lib.rs only declares modules
        }
        let module = first.trim_end_matches(".rs").to_string();
        let source = std::fs::read_to_string(file).unwrap();
        for (line, target) in upward_edges(&module, &source) {
            violations.push(format!("src/{}:{line}: {module} → {target}", rel.display()));
        }
    }
    assert!(files.len() > 30, "found only {} source files", files.len());
    assert!(
        violations.is_empty(),
        "imports pointing up the layer list:\n{}",
        violations.join("\n")
    );
}

#[test]
fn a_planted_upward_use_is_caught() {
    let planted = "use crate::model::Params;\nuse crate::plot::line_plot; // upward\n";
    assert_eq!(
        upward_edges("train", planted),
        vec![(2, "plot".to_string())]
    );
    let grouped = "use crate::{data::Split, masking::Mask, Error};";
    assert_eq!(
        upward_edges("model", grouped),
        vec![(1, "masking".to_string())]
    );
    assert!(upward_edges("plot", grouped).is_empty());
    // A path inside a comment is not an import.
    assert!(upward_edges("data", "// see crate::plot").is_empty());
}
