#!/usr/bin/env bash
# Compile once, run everywhere: boot real Debian kernels under qemu (TCG) and run ksight's
# smoke suite in each (issue 8).
#
#   scripts/kernel-matrix.sh            # every kernel in the list below
#   scripts/kernel-matrix.sh 5.10 6.12  # only these entries
#
# For each kernel: resolve the newest linux-image-amd64 of the entry's Debian suites with a
# private apt state (nothing under /etc/apt is read for sources or written), download the
# package (`apt-get download`, cached), extract /boot from it (no install), boot it with
# qemu-system-x86_64 -accel tcg on an initramfs (busybox, ksight, nc.openbsd and their
# shared libraries, scripts/guest/init and scripts/guest/smoke.sh), and read the result
# from the serial console: one `KSIGHT-MATRIX <release> PASS|FAIL: ...` line per kernel,
# plus `ksight doctor --format json` between markers. Finally docs/kernels.md (kernels x
# features) is regenerated from the doctor JSON of this run.
#
# Runs as root (apt, mknod). Installs qemu-system-x86, busybox-static, cpio,
# netcat-openbsd if they are missing. Exit status: 0 all kernels passed, 1 otherwise.
#
# Environment:
#   KSIGHT_BIN             ksight binary to test (default: cargo build --release --locked)
#   KSIGHT_MATRIX_KERNELS  kernel list, "name=suite,suite ..." (default below)
#   KSIGHT_MATRIX_CACHE    apt state and downloaded kernels (default /var/cache/ksight-matrix)
#   KSIGHT_MATRIX_OUT      console logs, doctor JSON, results (default target/kernel-matrix)
#   KSIGHT_MATRIX_TIMEOUT  seconds one guest may run (default 150; a normal run takes 15-20)
#   KSIGHT_MATRIX_DOCS     table to write (default docs/kernels.md; empty: none)
#   KSIGHT_MATRIX_MIRROR   Debian mirror (default http://deb.debian.org)
#   KSIGHT_MATRIX_LABEL    what docs/kernels.md says was tested (default: commit, or --version)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${KSIGHT_MATRIX_CACHE:-/var/cache/ksight-matrix}
OUT=${KSIGHT_MATRIX_OUT:-$ROOT/target/kernel-matrix}
TIMEOUT=${KSIGHT_MATRIX_TIMEOUT:-150}
DOCS=${KSIGHT_MATRIX_DOCS-$ROOT/docs/kernels.md}
MIRROR=${KSIGHT_MATRIX_MIRROR:-http://deb.debian.org}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# name=suites: the newest linux-image-amd64 those suites serve together
KERNELS=${KSIGHT_MATRIX_KERNELS:-"5.10=bullseye,bullseye-security 6.1=bookworm,bookworm-updates,bookworm-security 6.12=bookworm-backports"}

log() { printf '[kernel-matrix] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, mknod for the initramfs)"
T0=$(date +%s)

# --- host tools ------------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v busybox >/dev/null || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v nc.openbsd >/dev/null || need+=(netcat-openbsd)
command -v python3 >/dev/null || need+=(python3-minimal)
command -v dpkg-deb >/dev/null || die "dpkg-deb missing: this script needs a Debian-based host"
[ -r "$KEYRING" ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the ksight binary -----------------------------------------------------------------------
if [ -n "${KSIGHT_BIN:-}" ]; then
  KSIGHT=$KSIGHT_BIN
else
  command -v cargo >/dev/null || die "cargo not found: install Rust (scripts/setup.sh) or set KSIGHT_BIN"
  log "building ksight (cargo build --release --locked)"
  (cd "$ROOT" && cargo build --release --locked)
  KSIGHT=$ROOT/target/release/ksight
fi
[ -x "$KSIGHT" ] || die "no ksight binary at $KSIGHT"
# what the docs say was tested
if [ -n "${KSIGHT_MATRIX_LABEL:-}" ]; then
  LABEL=$KSIGHT_MATRIX_LABEL
elif [ -n "${KSIGHT_BIN:-}" ]; then
  LABEL="$("$KSIGHT" --version 2>/dev/null || echo ksight) from KSIGHT_BIN"
else
  LABEL="ksight at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "an unknown commit")"
  git -C "$ROOT" diff --quiet HEAD -- crates bpf Cargo.toml Cargo.lock 2>/dev/null || LABEL="$LABEL with local changes"
fi

mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)

# --- initramfs (the same for every kernel) ----------------------------------------------------
# copy an executable and the shared libraries it loads (ldd), at the same paths
stage_bin() { # src dest-in-rootfs
  local src=$1 dst=$RD$2 lib
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$RD$lib" ] && continue
    mkdir -p "$RD$(dirname "$lib")"
    cp -L "$lib" "$RD$lib"
  done
}

build_initramfs() {
  RD=$OUT/initramfs
  rm -rf "$RD"
  mkdir -p "$RD"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root}
  stage_bin "$(command -v busybox)" /bin/busybox
  ln -s busybox "$RD/bin/sh"
  stage_bin "$KSIGHT" /usr/bin/ksight
  # keep the symbols (for backtraces), drop DWARF: a third of the size, a faster boot
  objcopy --strip-debug "$RD/usr/bin/ksight" 2>/dev/null || true
  stage_bin "$(command -v nc.openbsd)" /usr/bin/nc.openbsd
  # a ptrace attach and a process_vm_writev, for the ptrace check (busybox has no debugger)
  "${CC:-clang}" -static -O2 -o "$RD/usr/bin/ptrace-attach" "$ROOT/scripts/guest/ptrace-attach.c"
  install -m 0755 "$ROOT/scripts/guest/init" "$RD/init"
  install -m 0755 "$ROOT/scripts/guest/smoke.sh" "$RD/smoke.sh"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$RD/etc/passwd"
  printf 'root:x:0:\n' >"$RD/etc/group"
  printf '127.0.0.1 localhost\n' >"$RD/etc/hosts"
  # the kernel opens /dev/console for init before anything is mounted
  mknod -m 600 "$RD/dev/console" c 5 1
  mknod -m 666 "$RD/dev/null" c 1 3
  (cd "$RD" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >"$OUT/initramfs.cpio"
  log "initramfs: $(du -h "$OUT/initramfs.cpio" | cut -f1) ($KSIGHT)"
}

# --- kernels ---------------------------------------------------------------------------------
# resolve NAME SUITES -> prints "package version" of the newest linux-image-amd64 dependency
apt_opts() { # dir
  local d=$1
  printf '%s\n' -o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=$d/none" \
    -o "Dir::Etc::preferences=$d/none" -o "Dir::Etc::preferencesparts=$d/none" \
    -o "Dir::State::Lists=$d/lists" -o "Dir::State::status=$d/status" \
    -o "Dir::Cache=$d/cache" -o "Dir::Cache::Archives=$d/archives" \
    -o Acquire::Languages=none -o APT::Sandbox::User=root -o Debug::NoLocking=1
}

fetch_kernel() { # name suites -> sets KDIR (has vmlinuz), KPKG, KVER
  local name=$1 suites=$2 d=$CACHE/apt/$1 s uri opts pkg ver
  mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/cache" "$d/none"
  : >"$d/sources.list"
  for s in ${suites//,/ }; do
    case $s in *-security) uri=$MIRROR/debian-security ;; *) uri=$MIRROR/debian ;; esac
    echo "deb [signed-by=$KEYRING] $uri $s main" >>"$d/sources.list"
  done
  [ -e "$d/status" ] || : >"$d/status"
  mapfile -t opts < <(apt_opts "$d")
  pkg="" ver=""
  if apt-get "${opts[@]}" -qq update >"$d/update.log" 2>&1; then
    pkg=$(apt-cache "${opts[@]}" depends linux-image-amd64 2>/dev/null |
      awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] && ver=$(apt-cache "${opts[@]}" policy "$pkg" | awk '/Candidate:/ { print $2 }')
  else
    log "$name: apt-get update failed ($(tail -n1 "$d/update.log")); trying the cache"
  fi
  if [ -z "$pkg" ] || [ -z "$ver" ]; then
    [ -s "$d/current" ] || { log "$name: cannot resolve linux-image-amd64 in $suites"; return 1; }
    read -r pkg ver <"$d/current"
    log "$name: using the cached $pkg $ver"
  fi
  KPKG=$pkg KVER=$ver
  KDIR=$CACHE/kernels/$name/${pkg}_$ver
  if [ ! -s "$KDIR/vmlinuz" ]; then
    log "$name: downloading $pkg $ver"
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
    (cd "$KDIR.tmp" && apt-get "${opts[@]}" -qq download "$pkg=$ver") ||
      { log "$name: apt-get download $pkg=$ver failed"; return 1; }
    dpkg-deb --fsys-tarfile "$KDIR.tmp"/*.deb | tar -x -C "$KDIR.tmp" ./boot
    mv "$KDIR.tmp"/boot/vmlinuz-* "$KDIR.tmp/vmlinuz"
    mv "$KDIR.tmp"/boot/config-* "$KDIR.tmp/config" 2>/dev/null || true
    rm -rf "$KDIR.tmp/boot"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
    # keep one kernel per entry: the one just fetched
    find "$CACHE/kernels/$name" -mindepth 1 -maxdepth 1 ! -path "$KDIR" -exec rm -rf {} +
  else
    log "$name: $pkg $ver (cached)"
  fi
  echo "$pkg $ver" >"$d/current"
}

# --- one guest -------------------------------------------------------------------------------
run_guest() { # name -> writes $OUT/$name/{console.log,doctor.json,result.env}
  local name=$1 dir=$OUT/$1 t rc line result reason release
  rm -rf "$dir" && mkdir -p "$dir"
  # the kernel's build config at /boot/config-<release>, where ksight doctor looks for it
  # (Debian kernels have no /proc/config.gz): a second cpio archive after the common one
  cp "$OUT/initramfs.cpio" "$dir/initramfs.cpio"
  mkdir -p "$dir/extra"
  if [ -s "$KDIR/config" ]; then
    local rel=${KPKG#linux-image-}
    rel=${rel%-unsigned}
    mkdir -p "$dir/extra/boot"
    cp "$KDIR/config" "$dir/extra/boot/config-$rel"
  fi
  # one small module of the kernel's own package (signed by Debian), for the module_load
  # check: crc7, which nothing in the guest loads by itself
  local deb m
  deb=$(ls "$KDIR"/*.deb 2>/dev/null | head -n1)
  if [ -n "$deb" ]; then
    mkdir -p "$dir/mod"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir/mod" --wildcards './lib/modules/*/kernel/lib/crc7.ko*' 2>/dev/null || true
    m=$(find "$dir/mod" -name 'crc7.ko*' | head -n1)
    case $m in
    *.ko.xz) xz -dc "$m" >"$dir/extra/crc7.ko" ;;
    *.ko) cp "$m" "$dir/extra/crc7.ko" ;;
    esac
    rm -rf "$dir/mod"
  fi
  if [ -n "$(ls -A "$dir/extra")" ]; then
    (cd "$dir/extra" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >>"$dir/initramfs.cpio"
  fi
  rm -rf "$dir/extra"
  t=$(date +%s)
  rc=0
  # thread=single: with one host thread per vCPU (MTTCG), a vCPU can run a stale int3 after
  # the kernel finished patching its text (static keys flipped by perf events, trampolines),
  # and the guest oopses in __schedule (seen once on 6.12); one thread is as fast here
  timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=single -cpu max -smp 2 -m 1024 \
    -nodefaults -display none -no-reboot \
    -serial "file:$dir/console.raw" \
    -kernel "$KDIR/vmlinuz" -initrd "$dir/initramfs.cpio" \
    -append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4" \
    </dev/null >"$dir/qemu.log" 2>&1 || rc=$?
  t=$(($(date +%s) - t))
  tr -d '\r' <"$dir/console.raw" >"$dir/console.log" 2>/dev/null || : >"$dir/console.log"
  sed -n '/^KSIGHT-MATRIX-DOCTOR-BEGIN /,/^KSIGHT-MATRIX-DOCTOR-END /{//!p}' \
    "$dir/console.log" >"$dir/doctor.json"
  line=$(grep -aE '^KSIGHT-MATRIX [^ ]+ (PASS|FAIL)' "$dir/console.log" | tail -n1 || true)
  release=$(awk '$1 == "KSIGHT-MATRIX" { print $2 }' <<<"$line")
  if [[ $line == *" PASS" ]]; then
    result=PASS reason=""
  elif [ -n "$line" ]; then
    result=FAIL reason=${line#* FAIL: }
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    result=FAIL reason="no result after ${TIMEOUT}s (guest timed out)"
  else
    result=FAIL reason="no result line (qemu exit $rc; kernel panic or early crash?)"
  fi
  grep -a '^KSIGHT-MATRIX-DEGRADED ' "$dir/console.log" | cut -d' ' -f3- >"$dir/degraded.txt" || true
  grep -a '^KSIGHT-MATRIX-DEGRADED-LOG ' "$dir/console.log" | cut -d' ' -f3- >"$dir/degraded-log.txt" || true
  # every kernel here has BTF and is 5.5+: the raw_tp fallback working is not
  # enough, a refused tp_btf program is a regression (the verifier line follows)
  if [ "$result" = PASS ] && grep -q 'tp_btf programs refused' "$dir/degraded.txt"; then
    result=FAIL reason="the kernel refused ksight's tp_btf programs (the raw_tp fallback ran); this kernel has BTF and tp_btf"
  fi
  {
    printf 'name=%q\npackage=%q\nversion=%q\nrelease=%q\n' "$name" "$KPKG" "$KVER" "${release:-?}"
    printf 'result=%q\nreason=%q\nseconds=%q\n' "$result" "$reason" "$t"
  } >"$dir/result.env"
  log "$name: $result in ${t}s${reason:+: $reason}"
  sed -n 's/^KSIGHT-MATRIX-DEGRADED [^ ]* /    degraded: /p' "$dir/console.log" >&2
  # the verifier's complaint: the last log line that is neither libbpf's nor a statistic
  grep -v -e ': libbpf:' -e ': processed [0-9]* insns' -e ': -- \(BEGIN\|END\)' "$dir/degraded-log.txt" |
    awk -F': ' '{ last[$1] = $0 } END { for (t in last) print "    verifier (" t "): " substr(last[t], length(t) + 3) }' >&2
  if [ "$result" != PASS ]; then
    log "$name: last console lines ($dir/console.log):"
    # everything the suite printed about its failures, else the tail
    if grep -aq '^KSIGHT-MATRIX-CHECK .* FAILED' "$dir/console.log"; then
      sed -n '/^KSIGHT-MATRIX-DOCTOR-END/,$p' "$dir/console.log" | grep -av '^KSIGHT-MATRIX-CHECK .* ok:' |
        tail -n 150 | sed 's/^/    /' >&2
    else
      tail -n 60 "$dir/console.log" | sed 's/^/    /' >&2
    fi
  fi
  [ "$result" = PASS ]
}

# --- docs/kernels.md -------------------------------------------------------------------------
gen_docs() { # names...
  python3 - "$OUT" "$DOCS" "$LABEL" "$@" <<'PY'
import json, os, shlex, sys, time

out, docs, commit, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def env(path):
    r = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            r[k] = (shlex.split(v) or [""])[0]
    return r

def noise(line):
    return (line.startswith(("libbpf:", "-- BEGIN", "-- END", "processed ")) or not line.strip())

kernels = []
for n in names:
    d = os.path.join(out, n)
    if not os.path.exists(os.path.join(d, "result.env")):
        continue
    k = env(os.path.join(d, "result.env"))
    try:
        with open(os.path.join(d, "doctor.json")) as f:
            k["doctor"] = json.load(f)
    except (OSError, ValueError):
        k["doctor"] = None
    # "<transport>: ksight: degraded: <msg>" (or "doctor exit 1 ..."): one entry per message,
    # with the transports it was seen in and the verifier's words that came with it
    k["degraded"] = {}
    with open(os.path.join(d, "degraded.txt")) as f:
        for l in f:
            t, sep, msg = l.strip().partition(": ")
            if not sep or t not in ("ringbuf", "perf"):
                t, msg = None, l.strip()
            msg = msg.replace("ksight: degraded: ", "")
            e = k["degraded"].setdefault(msg, {"in": [], "log": []})
            if t and t not in e["in"]:
                e["in"].append(t)
            if t and not e["log"] and os.path.exists(os.path.join(d, "degraded-log.txt")):
                with open(os.path.join(d, "degraded-log.txt")) as g:
                    lines = [x.rstrip("\n").partition(": ")[2].strip() for x in g
                             if x.startswith(t + ": ")]
                    e["log"] = [x for x in lines if x and not noise(x)]
    kernels.append(k)

def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")

def degraded(ds):
    parts = []
    for msg, e in ds.items():
        p = msg + (" (%s)" % ", ".join(e["in"]) if e["in"] else "")
        if e["log"]:
            p += "; verifier: `%s`" % e["log"][-1]
        parts.append(p)
    return "; ".join(parts) or "none"

def short(s, n=70):
    s = s or ""
    return s if len(s) <= n else s[: n - 1] + "…"

L = []
L.append("# Kernels ksight has been run on")
L.append("")
L.append("Generated by `scripts/kernel-matrix.sh` from its last run (%s, %s); do not edit"
         % (time.strftime("%Y-%m-%d", time.gmtime()), commit))
L.append("by hand, re-run the script. Each kernel is a stock Debian `linux-image-*-amd64`, booted")
L.append("under `qemu-system-x86_64 -accel tcg` on a busybox initramfs; the guest runs")
L.append("`ksight doctor --format json`, then `ksight run --format json` with `--transport ringbuf`")
L.append("and `--transport perf` while it execs processes, makes a loopback TCP connection and sends")
L.append("a UDP datagram, and checks the events that arrive (`scripts/guest/smoke.sh`); then it")
L.append("forces each accept() hook (`--accept-hook fexit`, `kretprobe`) on a listener opened before")
L.append("ksight and checks that its connection is reported, owned by the process that accepted it.")
L.append("")
L.append("| kernel | package | smoke suite | doctor verdict (exit) | degraded at run time |")
L.append("|---|---|---|---|---|")
for k in kernels:
    d = k["doctor"]
    verdict = "%s (%s)" % (d.get("verdict"), d.get("exit_code")) if d else "no doctor output"
    res = k["result"] if k["result"] == "PASS" else "FAIL: " + short(k["reason"], 120)
    L.append("| %s | `%s` %s | %s | %s | %s |" % (
        cell(k["release"]), k["package"], cell(k["version"]), cell(res), cell(verdict),
        cell(degraded(k["degraded"]))))
L.append("")
L.append("*degraded at run time*: what `ksight run` itself reported on stderr (`ksight: degraded: ...`,")
L.append("with the transports it happened in and the verifier's last words); the run still passes")
L.append("when only network features degrade. The doctor loads the same programs, so its verdict")
L.append("should agree. Logs: `target/kernel-matrix/<entry>/console.log`.")
L.append("")

def column_rows(select):
    rows = []
    for k in kernels:
        for f in (k["doctor"] or {}).get(select[0], []):
            key = f.get(select[1])
            if select[2](key) and key not in rows:
                rows.append(key)
    return rows

def lookup(k, kind, field, key):
    for f in (k["doctor"] or {}).get(kind, []):
        if f.get(field) == key:
            return f
    return None

head = "| | " + " | ".join(cell(k["release"]) for k in kernels) + " |"
sep = "|---|" + "---|" * len(kernels)

L.append("## Features (`ksight doctor`)")
L.append("")
L.append("active: works fully; degraded: works with less (the detail says what); unavailable: not")
L.append("on this kernel.")
L.append("")
L.append(head)
L.append(sep)
for name in column_rows(("features", "name", lambda _: True)):
    cells = []
    for k in kernels:
        f = lookup(k, "features", "name", name)
        cells.append("**%s**: %s" % (f["state"], cell(f.get("detail") or "")) if f else "—")
    L.append("| %s | %s |" % (cell(name), " | ".join(cells)))
L.append("")

L.append("## Hooks and the ring buffer (doctor's probes)")
L.append("")
L.append("Each hook kind is attached for real once; `ok` means it works, otherwise the kernel's")
L.append("answer. `load.*`: ksight's own programs loaded (verified) without attaching.")
L.append("")
L.append(head)
L.append(sep)
pick = lambda i: i is not None and (i.startswith("hook.") or i == "map.ringbuf"
                                    or i == "map.perf_event_array" or i.startswith("load."))
for fid in column_rows(("findings", "id", pick)):
    cells = []
    for k in kernels:
        f = lookup(k, "findings", "id", fid)
        if not f:
            cells.append("—")
        elif f.get("status") == "ok":
            cells.append("ok")
        else:
            cells.append("%s: %s" % (f.get("status"), cell(short(f.get("detail"), 90))))
    L.append("| `%s` | %s |" % (fid, " | ".join(cells)))
L.append("")

L.append("## Not covered")
L.append("")
L.append("- **A kernel without BTF** (the \"too old\" case): Debian no longer serves one. buster")
L.append("  (4.19, no `/sys/kernel/btf/vmlinux`) is gone from deb.debian.org (404; archive.debian.org")
L.append("  is not reachable from CI), and every kernel the archive still has is 5.10 or newer with")
L.append("  `CONFIG_DEBUG_INFO_BTF=y`. Instead, each guest hides its own BTF (an empty tmpfs over")
L.append("  `/sys/kernel/btf`, which is all ksight can see of it) and checks the refusals: doctor exits")
L.append("  2 naming `btf.vmlinux`, `run` exits 1 with a message naming BTF, no crash. A real BTF-less")
L.append("  kernel added to `KSIGHT_MATRIX_KERNELS` takes the same checks.")
L.append("- Only x86-64, only Debian kernels; devices and containers are not exercised (the")
L.append("  guest has loopback only; one module, crc7, is loaded for the module_load check).")
L.append("")
L.append("Run it: `sudo scripts/kernel-matrix.sh` (or `scripts/kernel-matrix.sh 6.1` for one entry);")
L.append("logs and the doctor JSON of each kernel land in `target/kernel-matrix/<entry>/`.")
L.append("")
with open(docs, "w") as f:
    f.write("\n".join(L))
PY
  log "wrote $DOCS"
}

# --- main ------------------------------------------------------------------------------------
declare -A SUITES
ORDER=()
for e in $KERNELS; do
  SUITES[${e%%=*}]=${e#*=}
  ORDER+=("${e%%=*}")
done
if [ $# -gt 0 ]; then
  for n in "$@"; do [ -n "${SUITES[$n]:-}" ] || die "unknown kernel entry '$n' (have: ${ORDER[*]})"; done
  ORDER=("$@")
fi

build_initramfs
failed=()
ran=()
for name in "${ORDER[@]}"; do
  if ! fetch_kernel "$name" "${SUITES[$name]}"; then
    mkdir -p "$OUT/$name"
    failed+=("$name (no kernel)")
    continue
  fi
  log "$name: booting $KPKG $KVER (timeout ${TIMEOUT}s)"
  run_guest "$name" || failed+=("$name")
  ran+=("$name")
done

[ -n "$DOCS" ] && [ ${#ran[@]} -gt 0 ] && gen_docs "${ran[@]}"

echo
echo "kernel matrix ($(($(date +%s) - T0))s):"
for name in "${ran[@]}"; do
  (
    . "$OUT/$name/result.env"
    printf '  %-6s %-28s %-22s %s%s\n' "$name" "$package" "$release" "$result" "${reason:+: $reason}"
  )
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all kernels passed"
