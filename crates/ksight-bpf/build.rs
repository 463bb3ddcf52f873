//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton (`$OUT_DIR/<name>.skel.rs`).
//!
//! clang builds against the pinned `bpf/include/vmlinux/x86/vmlinux.h`, never the
//! build host's kernel, and with -Werror: a warning in BPF code fails the build.
//! The libbpf headers (bpf_helpers.h, ...) come from libbpf-sys, the same libbpf
//! version that loads the objects at run time.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &[
    "process", "net", "accept", "udp", "gai", "bench", "probe", "floor",
];

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../../bpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let libbpf_include = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports its headers");
    let clang = env::var("KSIGHT_CLANG").unwrap_or_else(|_| "clang".into());
    for name in PROGRAMS {
        let src = root.join(format!("{name}.bpf.c"));
        let result = SkeletonBuilder::new()
            .source(&src)
            .clang(&clang)
            .clang_args([
                format!("-I{}", root.join("include").display()),
                format!("-I{}", root.join("include/vmlinux/x86").display()),
                format!("-I{libbpf_include}"),
                "-Wall".into(),
                "-Werror".into(),
                "-mcpu=v3".into(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")));
        if let Err(e) = result {
            panic!(
                "building {}: {e:#}\n\
                 (if clang is missing: apt-get install clang libelf-dev zlib1g-dev pkg-config)",
                src.display()
            );
        }
    }
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=KSIGHT_CLANG");
}
