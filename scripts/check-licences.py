"""Reads `cargo metadata` JSON on stdin; see check-licences.sh."""
import json
import re
import sys

ALLOW = {
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib",
    "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0", "0BSD", "MPL-2.0",
    "Apache-2.0 WITH LLVM-exception", "BSL-1.0", "Unlicense", "CDLA-Permissive-2.0",
}
OURS = "Apache-2.0 OR MIT"


def ok(expr):
    # libbpf-sys builds libbpf, "LGPL-2.1-only OR BSD-2-Clause": the BSD branch applies
    expr = expr.replace("/", " OR ").replace("(", " ").replace(")", " ")
    for branch in re.split(r"\s+OR\s+", expr):
        parts = [p.strip() for p in re.split(r"\s+AND\s+", branch) if p.strip()]
        if parts and all(p in ALLOW for p in parts):
            return True
    return False


meta = json.load(sys.stdin)
ours = set(meta["workspace_members"])
used = {n["id"] for n in meta["resolve"]["nodes"]}
bad = []
checked = 0
for p in meta["packages"]:
    if p["id"] not in used:
        continue
    checked += 1
    lic = p.get("license") or ""
    name = "%s %s" % (p["name"], p["version"])
    if p["id"] in ours:
        if lic != OURS:
            bad.append("%s (ours): %r, not %r" % (name, lic, OURS))
    elif not lic:
        bad.append("%s: no SPDX licence (license-file: %s)" % (name, p.get("license_file")))
    elif not ok(lic):
        bad.append("%s: %s" % (name, lic))
for b in bad:
    print("licence check: " + b, file=sys.stderr)
print("licence check: %d of %d crates acceptable" % (checked - len(bad), checked))
sys.exit(1 if bad else 0)
