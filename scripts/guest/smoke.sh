#!/bin/sh
# ksight smoke suite, run by /init inside a kernel-matrix guest (busybox sh, as root).
#
# 1. `ksight doctor --format json`, printed between KSIGHT-MATRIX-DOCTOR-BEGIN/END markers
#    so the host (scripts/kernel-matrix.sh) can collect it from the serial console;
# 2. `ksight run --format json` with --transport ringbuf, then perf, each while this
#    script execs processes, makes a loopback TCP connection and sends a UDP datagram to
#    a local responder; ksight is stopped with SIGINT and the JSON lines are checked.
#
# 3. the accept() hook forced to each flavour (fexit, kretprobe), on a listener opened before
#    ksight: its connection must be reported, attributed to the process that accepted it;
# 4. with /sys/kernel/btf hidden (or on a kernel without BTF): doctor must exit 2 and
#    `ksight run` exit 1 with a message naming BTF.
#
# Last line: `KSIGHT-MATRIX <uname -r> PASS` or `KSIGHT-MATRIX <uname -r> FAIL: <reasons>`.
# TCP or UDP checks that fail on a kernel where ksight itself says the feature is degraded
# (`ksight: degraded: ...` on stderr) are reported as KSIGHT-MATRIX-DEGRADED lines, not
# failures. Process events must always work when the kernel has BTF.

K=$(uname -r)
FAILS=""
BAD_RUNS=""
DIAGNOSED=""

fail() { FAILS="${FAILS:+$FAILS; }$*"; echo "KSIGHT-MATRIX-CHECK $K FAILED: $*"; }
info() { echo "KSIGHT-MATRIX-INFO $K: $*"; }
degraded() { echo "KSIGHT-MATRIX-DEGRADED $K: $*"; }
ok() { echo "KSIGHT-MATRIX-CHECK $K ok: $*"; }

# print a file on the console, indented, with kernel chatter held back
show() {
    echo "----- $1"
    sed 's/^/  | /' "$2"
    echo "----- end of $1"
}

# wait until command "$1" succeeds, at most $2 steps of 0.2 s
wait_for() {
    n=0
    while ! eval "$1" >/dev/null 2>&1; do
        n=$((n + 1))
        [ "$n" -ge "$2" ] && return 1
        sleep 0.2
    done
    return 0
}

# wait for pid $1 to end, at most $2 seconds; its exit status in $WAITED
wait_pid() {
    n=0
    while kill -0 "$1" 2>/dev/null; do
        # a zombie counts as gone: `wait` reaps it below
        [ "$(cut -d' ' -f3 /proc/"$1"/stat 2>/dev/null)" = Z ] && break
        n=$((n + 1))
        if [ "$n" -ge $(($2 * 5)) ]; then
            kill -9 "$1" 2>/dev/null
            wait "$1" 2>/dev/null
            WAITED=timeout
            return 1
        fi
        sleep 0.2
    done
    wait "$1"
    WAITED=$?
    return 0
}

# `ksight run "$@"` in the background, stdout to $1 and stderr to $2 (before "$@"), until it
# attaches: 0 when it did ($kp is its pid); else 1, with $KRC its exit status (124: killed
# after 60 s without attaching)
start_ksight() {
    out=$1
    err=$2
    shift 2
    ksight run "$@" >"$out" 2>"$err" &
    kp=$!
    wait_for "grep -q '^ksight: watching' $err || ! kill -0 $kp" 300
    grep -q '^ksight: watching' "$err" && return 0
    if kill -0 "$kp" 2>/dev/null; then
        kill -9 "$kp"
        wait "$kp"
        KRC=124
    else
        wait "$kp"
        KRC=$?
    fi
    return 1
}

dump_doctor() {
    echo 1 >/proc/sys/kernel/printk
    echo "KSIGHT-MATRIX-DOCTOR-BEGIN $K exit=$1"
    cat /tmp/doctor.json
    echo
    echo "KSIGHT-MATRIX-DOCTOR-END $K"
    echo 4 >/proc/sys/kernel/printk
}

# --- the workload: processes, a loopback TCP connection, a UDP datagram -------------------
workload() {
    tport=$1
    uport=$2
    /bin/true ksight-matrix </dev/null
    sh -c 'exit 7'
    # a signal from one process to another
    sleep 30 &
    SIGNALLED=$!
    sh -c "kill -TERM $SIGNALLED"
    wait "$SIGNALLED" 2>/dev/null
    # TCP: busybox nc server (stdin /dev/null: it half-closes at once) and client
    timeout 30 nc -l -p "$tport" </dev/null >/tmp/tcp-server.out 2>&1 &
    srv=$!
    wait_for "netstat -ltn | grep -q ':$tport '" 100 || info "tcp server on $tport not listening after 20s"
    echo hello-ksight | timeout 30 nc 127.0.0.1 "$tport" >/tmp/tcp-client.out 2>&1
    info "tcp client exited $?, server got: $(cat /tmp/tcp-server.out)"
    wait_pid "$srv" 30
    # UDP: a responder (nc.openbsd, -d: never reads stdin) and one datagram to it
    timeout 30 nc.openbsd -u -l -d 127.0.0.1 "$uport" >/tmp/udp-server.out 2>&1 &
    usrv=$!
    wait_for "netstat -lun | grep -q ':$uport '" 100 || info "udp responder on $uport not listening after 20s"
    echo ping-ksight | timeout 30 nc.openbsd -u -w 1 -q 0 127.0.0.1 "$uport" >/dev/null 2>&1
    info "udp client exited $?"
    wait_for "grep -q ping-ksight /tmp/udp-server.out" 50 || info "udp responder got nothing"
    kill "$usrv" 2>/dev/null
    wait_pid "$usrv" 10
    info "udp responder got: $(cat /tmp/udp-server.out)"
    # a watched directory (--file-watch-changes /tmp/kw): a file made, written, renamed
    echo kw >/tmp/kw/f
    mv /tmp/kw/f /tmp/kw/g
    rm -f /tmp/kw/g
    # a kernel module loaded and removed (crc7 from the kernel's own package, when staged)
    if [ -e /crc7.ko ] && [ -e /proc/modules ]; then
        insmod /crc7.ko && info "insmod crc7: ok" || info "insmod crc7 failed"
        rmmod crc7 2>/dev/null
    fi
    # a debugger's attach and a write into another process's memory
    TRACED=$(ptrace-attach 2>/tmp/ptrace.err)
    info "ptrace-attach: traced pid ${TRACED:-none} $(cat /tmp/ptrace.err)"
    # a process that drops to uid 65534 without an exec
    CREDS=$(ptrace-attach setuid 2>/tmp/creds.err)
    info "setuid helper: pid ${CREDS:-none} $(cat /tmp/creds.err)"
    # BPF programs loaded by another process: a second ksight, for a moment
    ksight run --no-config --events exec --duration 1s >/dev/null 2>&1
    # one more exec after the sockets closed, so the kernel has something to flush
    /bin/true
}

# lines of event type $1 in file $3 that also contain $2 (a fixed string)
has() {
    grep -F "\"type\":\"$1\"" "$3" | grep -qF -- "$2"
}

run_transport() {
    t=$1
    tport=$2
    uport=$3
    ev=/tmp/events-$t.jsonl
    er=/tmp/stderr-$t.txt
    info "ksight run --transport $t"
    rm -rf /tmp/kw && mkdir -p /tmp/kw
    if ! start_ksight "$ev" "$er" -v --format json --transport "$t" --file-watch-changes /tmp/kw; then
        if [ "$KRC" = 124 ]; then
            fail "$t: ksight not attached after 60s"
        else
            fail "$t: ksight exited $KRC before attaching"
        fi
        show "ksight stderr ($t)" "$er"
        BAD_RUNS="$BAD_RUNS $t"
        return
    fi
    info "$(grep '^ksight: watching' "$er")"
    workload "$tport" "$uport"
    sleep 1
    kill -INT "$kp"
    if ! wait_pid "$kp" 30; then
        fail "$t: ksight did not exit within 30s of SIGINT"
    elif [ "$WAITED" != 0 ]; then
        fail "$t: ksight exited $WAITED after SIGINT"
    else
        ok "$t: exited 0 after SIGINT"
    fi

    before=$FAILS
    counts=""
    for k in exec fork exit connect accept listen tcp_close udp file bpf_load module_load ptrace cred_change lost; do
        counts="$counts $k=$(grep -cF "\"type\":\"$k\"" "$ev")"
    done
    info "$t: $(wc -l <"$ev") events:$counts"

    # process events: always required
    has exec '"filename":"/bin/true"' "$ev" && has exec '"argv":["/bin/true","ksight-matrix"]' "$ev" &&
        ok "$t: exec of /bin/true with its argv" || fail "$t: no exec event for /bin/true ksight-matrix"
    # what the exec ran with: stdio, the file's identity (inode times moved between kernels)
    x=$(grep -F '"argv":["/bin/true","ksight-matrix"]' "$ev" | head -1)
    case "$x" in
    *'"stdio":[{"fd":0,"type":"char","path":"/dev/null","device":"1:3"'*) ok "$t: exec stdio: fd 0 is /dev/null" ;;
    *) fail "$t: exec stdio lacks fd 0 /dev/null" ;;
    esac
    case "$x" in
    *'"deleted":true'*) fail "$t: /bin/true reported deleted" ;;
    *'"ctime":"20'*'"mtime":"20'*'"nlink":'*) ok "$t: exec file identity (times, links)" ;;
    *) fail "$t: exec file identity missing or times not read" ;;
    esac
    # the time read where this kernel keeps it (the inode's fields moved in 6.6, 6.7, 6.11)
    want=$(date -u -d "@$(stat -L -c %Y /bin/true)" +%Y-%m-%dT%H:%M:%S 2>/dev/null)
    case "$x" in
    *"\"mtime\":\"$want."*) ok "$t: exec file mtime is the file's ($want)" ;;
    *) fail "$t: exec file mtime is not the file's ($want): $(echo "$x" | grep -o '"mtime":"[^"]*"')" ;;
    esac
    grep -F '"type":"exe_hash"' "$ev" | grep -qF '"status":"ok"' || grep -qF '"sha256":"' "$ev" &&
        ok "$t: an executed file hashed" || fail "$t: no executed file was hashed"
    has fork '"child":' "$ev" && ok "$t: fork" || fail "$t: no fork event"
    has exit '"code":7' "$ev" && ok "$t: exit with code 7" || fail "$t: no exit event with code 7"
    if grep -q '^ksight: degraded: signal events unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: signal' "$er")"
    else
        grep -F '"type":"signal"' "$ev" | grep -F '"name":"SIGTERM"' | grep -qF "\"target\":{\"pid\":$SIGNALLED," &&
            ok "$t: signal SIGTERM to pid $SIGNALLED" ||
            fail "$t: no signal event for the SIGTERM sent to pid $SIGNALLED"
    fi

    # security signals: files (fanotify), BPF loads (perf side band), modules (module_load)
    if grep -q '^ksight: degraded: sensitive files unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: sensitive files' "$er")"
    elif grep -q '^ksight: warning: not watching /tmp/kw' "$er"; then
        # the guest's /tmp is tmpfs, which has no fsid for fanotify before 6.7
        degraded "$t: $(grep '^ksight: warning: not watching /tmp/kw' "$er")"
    else
        grep -F '"type":"file"' "$ev" | grep -F '"op":"create"' | grep -qF '"path":"/tmp/kw/f"' &&
            ok "$t: file create /tmp/kw/f" || fail "$t: no file create event for /tmp/kw/f"
        grep -F '"type":"file"' "$ev" | grep -F '"op":"rename"' | grep -F '"from":"/tmp/kw/f"' | grep -qF '"to":"/tmp/kw/g"' &&
            ok "$t: file rename /tmp/kw/f -> /tmp/kw/g" || fail "$t: no file rename event from /tmp/kw/f to /tmp/kw/g"
    fi
    if grep -q '^ksight: degraded: BPF program loads unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: BPF program loads' "$er")"
    else
        grep -F '"type":"bpf_load"' "$ev" | grep -qF '"name":"ks_' &&
            ok "$t: bpf_load of the second ksight's programs" || fail "$t: no bpf_load event for the second ksight's programs"
    fi
    if [ -e /crc7.ko ] && [ -e /proc/modules ]; then
        m=$(grep -F '"type":"module_load"' "$ev" | grep -F '"name":"crc7"' | head -n1)
        if [ -n "$m" ]; then
            ok "$t: module_load crc7 ($(echo "$m" | grep -o '"signature":"[a-z]*"'), by $(echo "$m" | grep -o '"comm":"[^"]*"' | head -n1))"
        else
            fail "$t: no module_load event for crc7"
        fi
    else
        info "$t: no module to load (no /crc7.ko or no module support)"
    fi

    if grep -q '^ksight: degraded: ptrace events unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: ptrace' "$er")"
    elif [ -n "$TRACED" ]; then
        p="\"target\":{\"pid\":$TRACED,"
        grep -F '"type":"ptrace"' "$ev" | grep -F '"request":"attach"' | grep -qF "$p" &&
            ok "$t: ptrace attach to pid $TRACED" || fail "$t: no ptrace attach event for pid $TRACED"
        grep -F '"type":"ptrace"' "$ev" | grep -F '"syscall":"process_vm_writev"' | grep -qF "$p" &&
            ok "$t: process_vm_writev into pid $TRACED" || fail "$t: no ptrace event for process_vm_writev into pid $TRACED"
    else
        fail "$t: ptrace-attach did not run"
    fi

    if [ -z "$CREDS" ]; then
        fail "$t: the setuid helper did not run"
    else
        # with the commit_creds hook as it happens, else found at its exit
        c=$(grep -F '"type":"cred_change"' "$ev" | grep -F "\"pid\":$CREDS," | grep -F '"after":{"uid":65534' | head -n1)
        if [ -z "$c" ]; then
            fail "$t: no cred_change event for pid $CREDS"
        elif grep -q '^ksight: degraded: credential changes are found by comparing' "$er"; then
            degraded "$t: cred_change by comparison only ($(echo "$c" | grep -o '"found_by":"[a-z_]*"'))"
        else
            echo "$c" | grep -qF '"found_by":"commit_creds"' &&
                ok "$t: cred_change of pid $CREDS at commit_creds" ||
                fail "$t: cred_change of pid $CREDS not from the commit_creds hook"
        fi
    fi

    # network events: required unless ksight said they are degraded
    if grep -q '^ksight: degraded: TCP events unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: TCP' "$er")"
    else
        p="\"port\":$tport"
        grep -F '"type":"connect"' "$ev" | grep -F '"result":"success"' | grep -qF "$p" &&
            ok "$t: connect success to port $tport" || fail "$t: no successful connect to port $tport"
        has accept "$p" "$ev" && ok "$t: accept on port $tport" || fail "$t: no accept on port $tport"
        # with an accept() hook the acceptor is named, else the listener's owner
        if grep -q '^ksight: watching:.*(accept() via ' "$er"; then by=accept; else by=listener; fi
        has accept "\"by\":\"$by\"" "$ev" && ok "$t: accept attributed by $by" ||
            fail "$t: no accept with \"by\":\"$by\""
        has listen "$p" "$ev" && ok "$t: listen on port $tport" || fail "$t: no listen on port $tport"
        has tcp_close "$p" "$ev" && ok "$t: tcp_close on port $tport" || fail "$t: no tcp_close on port $tport"
        grep -F '"type":"tcp_close"' "$ev" | grep -F '"direction":"out"' | grep -qF '"bytes_sent":13' &&
            ok "$t: outbound tcp_close with bytes_sent 13" ||
            fail "$t: no outbound tcp_close with bytes_sent 13 (echo hello-ksight)"
    fi
    if grep -q '^ksight: degraded: UDP flows unavailable' "$er"; then
        degraded "$t: $(grep '^ksight: degraded: UDP' "$er")"
    else
        has udp "\"port\":$uport" "$ev" && ok "$t: udp flow with port $uport" ||
            fail "$t: no udp event with port $uport"
    fi
    grep '^ksight: degraded:' "$er" | grep -v -e 'TCP events unavailable' -e 'UDP flows unavailable' -e 'signal events unavailable' \
        -e 'sensitive files unavailable' -e 'BPF program loads unavailable' -e 'ptrace events unavailable' \
        -e 'credential changes are found by comparing' |
        while read -r line; do degraded "$t: $line"; done
    # the verifier's / libbpf's last words that ksight prints under a degraded line
    awk '/^ksight: degraded:/ { d = 1; next } d && /^last lines of the/ { next } d && /^  \| / { sub(/^  \| /, ""); print; next } { d = 0 }' "$er" |
        while read -r line; do echo "KSIGHT-MATRIX-DEGRADED-LOG $K: $t: $line"; done
    grep -q '"type":"lost"' "$ev" && info "$t: WARNING: lost events reported"
    # a degraded network feature: show libbpf's own account of why (once, first transport)
    if [ -z "$DIAGNOSED" ] && grep -q '^ksight: degraded: \(TCP\|UDP\)' "$er"; then
        DIAGNOSED=1
        ev2=""
        grep -q '^ksight: degraded: TCP' "$er" && ev2="connect"
        grep -q '^ksight: degraded: UDP' "$er" && ev2="${ev2:+$ev2,}udp"
        KSIGHT_LIBBPF_DEBUG=1 timeout 60 ksight run --format json --transport "$t" --events "$ev2" \
            --duration 1s >/dev/null 2>/tmp/libbpf-$t.txt
        grep -v '^libbpf: *$' /tmp/libbpf-$t.txt | tail -n 60 >/tmp/libbpf-tail.txt
        show "libbpf log of 'ksight run --events $ev2' (KSIGHT_LIBBPF_DEBUG=1, last 60 lines)" /tmp/libbpf-tail.txt
    fi

    if [ "$FAILS" != "$before" ]; then
        BAD_RUNS="$BAD_RUNS $t"
        show "ksight stderr ($t)" "$er"
        echo "----- first event lines ($t)"
        head -c 3000 "$ev"
        echo
        echo "----- end of event lines ($t)"
    else
        grep -E '^ksight: (stopped|perf buffer|loaded)' "$er" | while read -r line; do info "$t: $line"; done
    fi
}

# --- the accept() hook, each flavour forced ---------------------------------------------------
# A listener opened before ksight starts: only an accept() hook sees its connections (net.bpf.c
# learns listeners when they listen), and it names the accepting process and thread. The hook
# runs when accept() returns, for calls that began after it was attached: the call the server
# is blocked in when ksight starts is not seen, so the server (nc.openbsd -k) takes two.
accept_hook() {
    f=$1
    port=$2
    ev=/tmp/events-accept-$f.jsonl
    er=/tmp/stderr-accept-$f.txt
    timeout 60 nc.openbsd -d -k -l 127.0.0.1 "$port" >/dev/null 2>&1 &
    srv=$!
    wait_for "netstat -ltn | grep -q ':$port '" 100 || info "accept-$f: server on $port not listening after 20s"
    if ! start_ksight "$ev" "$er" --format json --accept-hook "$f" --events accept,tcp_close; then
        if [ "$KRC" = 1 ] && grep -q "^ksight: error: --accept-hook $f: no accept() hook" "$er"; then
            degraded "accept-$f: $(grep '^ksight: error' "$er")"
        else
            fail "accept-$f: ksight exited $KRC before attaching"
            show "ksight stderr (accept-$f)" "$er"
        fi
        kill "$srv" 2>/dev/null
        wait_pid "$srv" 10
        return
    fi
    info "accept-$f: $(grep '^ksight: watching' "$er")"
    for i in 1 2; do
        echo "hello $i" | timeout 30 nc.openbsd -N 127.0.0.1 "$port" >/dev/null 2>&1 ||
            info "accept-$f: client $i exited $?"
    done
    sleep 1
    kill "$srv" 2>/dev/null
    wait_pid "$srv" 10
    kill -INT "$kp"
    wait_pid "$kp" 30
    before=$FAILS
    [ "$WAITED" = 0 ] || fail "accept-$f: ksight exited $WAITED after SIGINT"
    grep -q "^ksight: watching:.*(accept() via $f)" "$er" || fail "accept-$f: the watching line does not name $f"
    line=$(grep -F '"type":"accept"' "$ev" | grep -F "\"port\":$port" | head -n 1)
    if [ -z "$line" ]; then
        fail "accept-$f: no accept on port $port (a listener older than ksight)"
    else
        echo "$line" | grep -qF '"by":"accept"' && echo "$line" | grep -qF "\"pid\":$srv," &&
            ok "accept-$f: accept on a listener older than ksight, by the accepting pid $srv" ||
            fail "accept-$f: accept on port $port not attributed to pid $srv by accept(): $line"
        echo "$line" | grep -qF '"queued_ns":' || fail "accept-$f: no queued_ns"
    fi
    grep -F '"type":"tcp_close"' "$ev" | grep -F "\"port\":$port" | grep -F '"direction":"in"' |
        grep -qF "\"pid\":$srv," && ok "accept-$f: inbound tcp_close owned by $srv" ||
        fail "accept-$f: no inbound tcp_close on port $port owned by pid $srv"
    if [ "$FAILS" != "$before" ]; then
        show "ksight stderr (accept-$f)" "$er"
        show "events (accept-$f)" "$ev"
    fi
}

# --- enforcement (issue 15) -------------------------------------------------------------------
# A deny_connect rule for 127.0.0.77 and a kill rule for the executables in /tmp/enf-bin, with
# --enforce: the connect must fail with EPERM while one to 127.0.0.1 passes, the killed program
# must not make its marker and its shell must see status 137; both as `enforcement` events.
enforce_checks() {
    port=$1
    ev=/tmp/events-enforce.jsonl
    er=/tmp/stderr-enforce.txt
    mkdir -p /tmp/enf-rules /tmp/enf-bin
    cp /bin/busybox /tmp/enf-bin/bb
    cat >/tmp/enf-rules/r.yaml <<'EOF'
- rule: matrix_deny
  description: matrix
  action: deny_connect
  condition: net.remote.addr == 127.0.0.77
  severity: high
  output: denied
- rule: matrix_kill
  description: matrix
  action: kill
  condition: process.exe startswith "/tmp/enf-bin/"
  severity: high
  output: killed
EOF
    timeout 60 nc.openbsd -d -k -l "$port" >/dev/null 2>&1 &
    srv=$!
    wait_for "netstat -ltn | grep -q ':$port '" 100 || info "enforce: server on $port not listening after 20s"
    if ! start_ksight "$ev" "$er" --format json --enforce --rules /tmp/enf-rules --events enforcement; then
        fail "enforce: ksight exited $KRC before attaching"
        show "ksight stderr (enforce)" "$er"
        kill "$srv" 2>/dev/null
        wait_pid "$srv" 10
        return
    fi
    info "enforce: $(grep '^ksight: enforcement' "$er")"
    timeout 10 nc.openbsd -v -z -w 2 127.0.0.77 "$port" >/tmp/enf-nc.out 2>&1
    denied_rc=$?
    timeout 10 nc.openbsd -z -w 2 127.0.0.1 "$port" >/dev/null 2>&1
    allowed_rc=$?
    rm -f /tmp/enf-marker
    sh -c '/tmp/enf-bin/bb touch /tmp/enf-marker; echo $? >/tmp/enf-rc'
    sleep 1
    kill "$srv" 2>/dev/null
    wait_pid "$srv" 10
    kill -INT "$kp"
    wait_pid "$kp" 30
    before=$FAILS
    [ "$denied_rc" != 0 ] && grep -q "not permitted" /tmp/enf-nc.out &&
        ok "enforce: connect to 127.0.0.77 denied (EPERM)" ||
        fail "enforce: connect to 127.0.0.77 not denied (nc exit $denied_rc: $(cat /tmp/enf-nc.out))"
    [ "$allowed_rc" = 0 ] && ok "enforce: connect to 127.0.0.1 allowed" || fail "enforce: allowed connect failed ($allowed_rc)"
    [ ! -e /tmp/enf-marker ] && [ "$(cat /tmp/enf-rc)" = 137 ] &&
        ok "enforce: killed at exec (no marker, status 137)" ||
        fail "enforce: not killed at exec (marker: $(ls /tmp/enf-marker 2>&1), status $(cat /tmp/enf-rc))"
    grep -F '"type":"enforcement"' "$ev" | grep -F '"rule":"matrix_deny"' | grep -qF '"result":"denied"' &&
        ok "enforce: denied event" || fail "enforce: no denied enforcement event"
    grep -F '"type":"enforcement"' "$ev" | grep -F '"rule":"matrix_kill"' | grep -qF '"result":"killed"' &&
        ok "enforce: killed event" || fail "enforce: no killed enforcement event"
    if [ "$FAILS" != "$before" ]; then
        show "ksight stderr (enforce)" "$er"
        show "events (enforce)" "$ev"
    fi
}

# --- main ------------------------------------------------------------------------------------
info "$(cat /proc/version)"
info "ksight $(ksight --version 2>&1)"

# the "too old" case: doctor must say it cannot run, run must refuse cleanly; $1 = doctor
# JSON file ($2 = "dump" to print it for the host)
nobtf_checks() {
    ksight doctor --format json >"$1" 2>/tmp/doctor.err
    drc=$?
    [ "$2" = dump ] && dump_doctor "$drc"
    [ "$drc" = 2 ] && ok "doctor exits 2 without BTF" || fail "doctor exited $drc without BTF (want 2)"
    grep -q '"id": *"btf.vmlinux"' "$1" && ok "doctor names btf.vmlinux" || fail "doctor JSON has no btf.vmlinux finding"
    ksight run --format json >/tmp/events-nobtf.jsonl 2>/tmp/stderr-nobtf.txt
    rrc=$?
    show "ksight run stderr (no BTF)" /tmp/stderr-nobtf.txt
    if [ "$rrc" = 1 ] && grep -qi btf /tmp/stderr-nobtf.txt && ! grep -q panicked /tmp/stderr-nobtf.txt; then
        ok "run refuses with exit 1 and a BTF message"
    else
        fail "run without BTF exited $rrc (want 1 with a message naming BTF)"
    fi
}

if [ ! -e /sys/kernel/btf/vmlinux ]; then
    info "no /sys/kernel/btf/vmlinux"
    nobtf_checks /tmp/doctor.json dump
else
    ksight doctor --format json >/tmp/doctor.json 2>/tmp/doctor.err
    drc=$?
    dump_doctor "$drc"
    case $drc in
    0) ok "doctor exit 0 (ksight runs fully)" ;;
    1) degraded "doctor exit 1 (degraded)" ;;
    2) fail "doctor exit 2 (cannot run) on a kernel with BTF" ;;
    *) fail "doctor exited $drc" ;;
    esac
    [ -s /tmp/doctor.json ] || fail "doctor printed no JSON"
    [ -s /tmp/doctor.err ] && show "ksight doctor stderr" /tmp/doctor.err

    run_transport ringbuf 4101 5101
    run_transport perf 4202 5202
    accept_hook fexit 4303
    accept_hook kretprobe 4404
    enforce_checks 4505

    # no Debian kernel without BTF is still served: hide this one's (an empty tmpfs over
    # /sys/kernel/btf), which is all ksight can see of BTF, and check the same refusals
    if mount -t tmpfs none /sys/kernel/btf; then
        info "/sys/kernel/btf hidden: the no-BTF checks"
        nobtf_checks /tmp/doctor-nobtf.json
        umount /sys/kernel/btf
    else
        fail "could not hide /sys/kernel/btf for the no-BTF checks"
    fi
fi

if [ -n "$FAILS" ]; then
    echo "----- kernel messages since /init started (last 40 lines)"
    dmesg | sed -n '/Run \/init as init process/,$p' | sed 1d | grep -v -e '^.\{0,20\}  *with \(arguments\|environment\):' \
        -e '^\[ *[0-9.]*\]     ' | tail -n 40
    echo "----- end of dmesg"
    echo "KSIGHT-MATRIX $K FAIL: $FAILS"
else
    echo "KSIGHT-MATRIX $K PASS"
fi
