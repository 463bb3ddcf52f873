#!/usr/bin/env bash
# Install what building and testing ksight needs, if it is missing (Debian 12 / Ubuntu 22.04+).
# Idempotent: does nothing when everything is there.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang llvm)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v unshare >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
command -v bpftool >/dev/null || [ -x /usr/sbin/bpftool ] || need+=(bpftool)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v curl >/dev/null || need+=(curl)
command -v xz >/dev/null || need+=(xz-utils)
# the kernel matrix's static helper (scripts/guest/ptrace-attach.c: clang -static)
ls /usr/lib/*/libc.a >/dev/null 2>&1 || need+=(libc6-dev)
# the syslog output's real receiver (crates/ksight/tests/outputs.rs)
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
# the fleet's real JetStream cluster (crates/ksight/tests/fleet.rs)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
# the metrics endpoint's real scraper (crates/ksight/tests/metrics.rs)
command -v prometheus >/dev/null || need+=(prometheus)
# the container resolver's real test (crates/ksight-core/tests/runtime.rs): podman, runc for
# hosts with hybrid cgroups (which crun refuses), a static busybox as the image's rootfs
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)

if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "setup: installing ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null; then
    # Ubuntu ships bpftool in linux-tools
    need=("${need[@]/bpftool/linux-tools-common linux-tools-$(uname -r)}")
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq ${need[*]} >/dev/null
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain. Install one with rustup (https://rustup.rs), e.g.:" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"" >&2
  exit 1
fi
