#!/usr/bin/env bash
# Build the Debian package: scripts/package-deb.sh [BINARY [OUTDIR]]
# (default: target/release/ksight, built if missing; target/debian). It holds the
# binary, the systemd unit, the default config (a conffile), man pages generated
# from the command line's own definitions, and the docs. It does not start the
# service: `systemctl enable --now ksight` does, once the config suits the host.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/ksight}
out=${2:-target/debian}
if [ ! -x "$bin" ]; then
  cargo build --release --locked -p ksight
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$bin" "$root/usr/bin/ksight"
install -D -m 0644 packaging/ksight.service "$root/lib/systemd/system/ksight.service"
install -D -m 0644 packaging/ksight.toml "$root/etc/ksight/ksight.toml"
install -d -m 0755 "$root/etc/ksight/rules.d" "$root/var/log/ksight"
"$bin" man "$root/usr/share/man/man1"
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/doc/ksight"
cp docs/config.md docs/outputs.md docs/metrics.md docs/events.md docs/fleet.md "$root/usr/share/doc/ksight/"
cat LICENSE-MIT > "$root/usr/share/doc/ksight/copyright"
cp -r rules "$root/usr/share/doc/ksight/rules"

install -d "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: ksight
Version: $version
Architecture: $arch
Maintainer: ksight developers <ksight@localhost>
Installed-Size: $size
Depends: libc6, libelf1, zlib1g
Section: admin
Priority: optional
Description: eBPF host monitoring agent
 ksight watches processes, TCP connections, UDP flows and DNS on a Linux host
 with CO-RE eBPF programs, runs detection rules, and writes events and alerts
 to files, syslog, webhooks and Prometheus metrics, counting every loss.
CONTROL
echo /etc/ksight/ksight.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop ksight.service || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/ksight_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
