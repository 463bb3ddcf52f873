#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the end-to-end tests
# that load ksight's BPF programs into this kernel (they need root). The
# end-to-end tests run three times: primary hooks and transport (tp_btf, ring
# buffer), then each fallback: raw tracepoints, and the perf buffer. Before them,
# the kernel matrix boots Debian's 5.10, 6.1 and 6.12 kernels and runs the
# smoke suite in each (scripts/kernel-matrix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi

scripts/setup.sh
# setup.sh installs podman: the container tests must run, not skip
export KSIGHT_REQUIRE_PODMAN=1
cargo fmt --all -- --check
# every dependency's licence fits Apache-2.0 OR MIT
scripts/check-licences.sh
# the kind and sensor modules are declared by build scripts, which rustfmt does not follow
rustfmt --edition 2021 --check crates/ksight-core/src/kinds/*.rs crates/ksight-bpf/src/sensors/*.rs
# compile once, run everywhere: the smoke suite on real Debian kernels under qemu
# (docs/kernels.md is regenerated only when the script is run by hand)
KSIGHT_MATRIX_DOCS= scripts/kernel-matrix.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# the shipped rule pack's own tests, through the command a rule author runs
cargo run --locked -q -p ksight -- rules test rules
e2e=(--test process --test exec_context --test files --test security --test container --test cli --test transport --test net --test dns --test rules --test enforce --test torture)
KSIGHT_TEST_ARGS="--attach raw_tp" cargo test --locked -p ksight "${e2e[@]}"
KSIGHT_TEST_ARGS="--transport perf" cargo test --locked -p ksight "${e2e[@]}"
