//! Embeds the shipped rule pack (`rules/*.yaml`, in name order) into the
//! crate, so that `ksight run` has its default rules wherever it is installed.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../../rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("rules/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut out = String::from("/// The shipped rule pack: (file, text), in load order.\npub const DEFAULT_PACK: &[(&str, &str)] = &[\n");
    for f in &files {
        let name = format!("rules/{}", f.file_name().unwrap().to_string_lossy());
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    fs::write(
        PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("pack.rs"),
        out,
    )
    .unwrap();
}
