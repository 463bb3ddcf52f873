#!/usr/bin/env bash
# Every crate ksight builds on Linux (normal, build and dev dependencies) has
# a licence compatible with shipping ksight as Apache-2.0 OR MIT: an SPDX
# expression passes when one of its OR branches consists only of licences on
# the allow list. Exit 1, naming each crate that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
  | python3 scripts/check-licences.py
