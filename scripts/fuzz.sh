#!/usr/bin/env bash
# Fuzz ksight's DNS parsing path (fuzz/fuzz_targets/dns.rs) with cargo-fuzz/libFuzzer.
# Works on the stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags, and
# no sanitizer is needed for safe Rust. New inputs land in fuzz/corpus/dns (keep them:
# crates/ksight-core replays the corpus in its tests); a crash lands in fuzz/artifacts:
# copy it into the corpus once fixed.
#
#   scripts/fuzz.sh [SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none dns -- -max_total_time="${1:-60}" -max_len=1200
RUSTC_BOOTSTRAP=1 cargo fuzz cmin --sanitizer none dns
