//! docs/events.md and the field registry describe the same fields, both ways,
//! with compatible types: a field added to a kind without its documentation,
//! or documented and gone, fails here.

use std::collections::BTreeMap;

use ksight_core::field::FieldType;
use ksight_core::registry::registry;

/// Every documented field: dotted path -> the type its table gives.
fn documented() -> BTreeMap<String, String> {
    let text = include_str!("../../../docs/events.md");
    let mut out = BTreeMap::new();
    let mut prefix = "";
    for line in text.lines() {
        if line.starts_with('#') {
            // the `process` table lists its fields relative to `process.`
            prefix = if line.trim() == "### `process`" {
                "process."
            } else {
                ""
            };
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `a`, `b` | type | meaning |
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let names: Vec<&str> = cells[1].split(", ").map(|n| n.trim_matches('`')).collect();
        let types: Vec<&str> = cells[2].split(", ").collect();
        for (i, name) in names.iter().enumerate() {
            let ty = if types.len() == names.len() {
                types[i]
            } else {
                cells[2]
            };
            let ty = ty.trim_end_matches(" or null");
            if ty == "object" {
                continue; // a container: its fields have rows of their own
            }
            out.insert(format!("{prefix}{name}"), ty.to_string());
        }
    }
    out
}

/// The documentation's words for a registry type.
fn compatible(ty: FieldType, doc: &str) -> bool {
    match ty {
        FieldType::Int | FieldType::Duration => doc == "int",
        FieldType::Bool => doc == "bool",
        FieldType::Text => doc == "text" || doc == "string",
        FieldType::Ip | FieldType::Time | FieldType::Kind | FieldType::Enum(_) => doc == "string",
        // a map (labels) is an object in JSON, its `key=value` pairs a list to rules
        FieldType::List(_) | FieldType::Records(_) => {
            doc.starts_with("array") || doc.starts_with("map")
        }
    }
}

#[test]
fn docs_and_registry_list_the_same_fields() {
    let docs = documented();
    let reg = registry();
    let mut problems = Vec::new();
    for f in reg.fields() {
        match docs.get(f.path) {
            None => problems.push(format!(
                "{} ({}) is in the registry but not in docs/events.md",
                f.path, f.ty
            )),
            Some(doc) if !compatible(f.ty, doc) => problems.push(format!(
                "{}: the registry says {}, docs/events.md says {doc}",
                f.path, f.ty
            )),
            Some(_) => {}
        }
    }
    for path in docs.keys() {
        if reg.field(path).is_none() {
            problems.push(format!(
                "{path} is in docs/events.md but no kind declares it"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(
        docs.len() > 80,
        "the docs' tables were read: {}",
        docs.len()
    );
}
