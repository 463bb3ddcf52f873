#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the end-to-end tests
# that load ksight's BPF programs into this kernel (they need root), run once on
# the primary hooks (tp_btf) and once more on the raw tracepoint fallback.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
KSIGHT_TEST_ARGS="--attach raw_tp" cargo test --locked -p ksight --test process --test cli
