#!/usr/bin/env bash
# Capture the raw kernel records of a small, known scenario, for the pipeline's
# tests without root (crates/ksight-core/tests/pipeline.rs):
#   - sh runs `/bin/echo ksight-fixture 1 2` (fork, exec, exit);
#   - a TCP listener on 127.0.0.1:40123 and one connection to it, one byte each way;
#   - a DNS query for fixture.ksight.test to a dnsmasq on 127.0.0.1:5353.
# Writes crates/ksight-core/tests/fixtures/records/scenario.bin (every record
# ksight saw: a u32 length, little endian, then the bytes) and scenario.txt
# (the scenario's pids). Run as root, by hand, when the record layouts change
# (KS_ABI_VERSION): the tests say so when they cannot decode the fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
out=crates/ksight-core/tests/fixtures/records
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
cargo build --release --locked
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
dnsmasq --keep-in-foreground --port=5353 --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --address=/fixture.ksight.test/10.9.8.7 --pid-file="$tmp/dnsmasq.pid" &
sleep 0.5
target/release/ksight run --format json --no-rules --dns-port 5353 --capture "$tmp/records.bin" \
    -o "$tmp/events.json" 2>"$tmp/stderr" &
ks=$!
for _ in $(seq 50); do grep -q '^ksight: watching' "$tmp/stderr" && break; sleep 0.1; done
sh -c '/bin/echo ksight-fixture 1 2' >/dev/null &
echo_sh=$!
wait $echo_sh
python3 - <<'PY' &
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 40123)); s.listen(1)
c, _ = s.accept(); c.sendall(b"x"); c.recv(1); c.close(); s.close()
PY
server=$!
sleep 0.3
python3 -c 'import socket; c = socket.create_connection(("127.0.0.1", 40123)); c.recv(1); c.sendall(b"y"); c.close()' &
client=$!
wait $client $server
dig @127.0.0.1 -p 5353 +tries=1 +time=2 fixture.ksight.test A >/dev/null &
digp=$!
wait $digp
sleep 0.5
kill -INT $ks; wait $ks || true
cp "$tmp/records.bin" "$out/scenario.bin"
printf 'sh %s\nserver %s\nclient %s\ndig %s\n' "$echo_sh" "$server" "$client" "$digp" >"$out/scenario.txt"
echo "captured $(stat -c %s "$out/scenario.bin") bytes: $(grep "^ksight: stopped" "$tmp/stderr")"
