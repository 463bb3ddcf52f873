// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * net.bpf.c: TCP connections: connect (and its outcome), accept, listen,
 * tcp_close (lifetime, bytes), tcp_state.
 *
 * One hook: sock/inet_sock_set_state (4.16+), as tp_btf (5.5+) or raw_tp.
 * It fires only on TCP state changes, so hosts pay per connection, not per
 * packet or per syscall. The events and maps are shared with process.bpf.c
 * (userspace passes their fds in), so all records travel one ring in order.
 *
 * Attribution: SYN_SENT and LISTEN are entered in the caller's context, so
 * the owner is captured there; a passive connection becomes ESTABLISHED in
 * softirq, so it is attributed to the owner of its listening port. Where the
 * kernel lets ksight hook accept() (accept.bpf.c: fexit or kretprobe on
 * inet_csk_accept), the accept record comes from there instead, in the
 * context of the process that accepted, and this object only starts the
 * connection's entry.
 */
#include "tcp.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* emit tcp_state records for every transition */
const volatile __u32 ks_cfg_tcp_states = 0;

/* Connections open before ksight started, by socket cookie: userspace puts
 * them here at start (sock_diag gives the cookie, /proc the owner, marked
 * KS_TASK_PROCFS). A connection moves to ks_tcp_conns at its first state
 * change that needs it (its close, at the latest). LRU: one that never
 * changes state again does not hold a slot forever.
 * 16384 x (~192 B value + 8 B key + ~64 B overhead) ~ 4 MiB at most. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ks_tcp_conn);
} ks_tcp_seed SEC(".maps");

/* A connection ksight did not see begin: one userspace seeded? Only a miss
 * in ks_tcp_conns on a state change that makes a record pays this. The
 * cookie is set: sock_diag generated it when userspace listed the socket. */
static __always_inline struct ks_tcp_conn *adopt(const struct sock *sk, __u64 key,
						 const int direct)
{
	__u64 cookie = direct ? sk->__sk_common.skc_cookie.counter :
				BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	struct ks_tcp_conn *seed;

	if (!cookie)
		return 0;
	seed = bpf_map_lookup_elem(&ks_tcp_seed, &cookie);
	if (!seed)
		return 0;
	bpf_map_update_elem(&ks_tcp_conns, &key, seed, BPF_NOEXIST);
	bpf_map_delete_elem(&ks_tcp_seed, &cookie);
	return bpf_map_lookup_elem(&ks_tcp_conns, &key);
}


static __always_inline int on_state(void *ctx, const struct sock *sk, int old, int new,
				    const int direct)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct ks_tcp_conn *conn;
	struct ks_tcp_event *e;

	if ((direct ? sk->sk_protocol : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol)) !=
	    KS_IPPROTO_TCP)
		return 0;
	/* A connection makes ~10 transitions; most only move its state clock.
	 * Those take one map lookup, not a record (the hot path of a connect
	 * storm: see docs/performance.md). */
	if (!ks_cfg_tcp_states && new != KS_TCP_SYN_SENT && new != KS_TCP_LISTEN &&
	    new != KS_TCP_CLOSE && old != KS_TCP_SYN_SENT &&
	    !(old == KS_TCP_SYN_RECV && new == KS_TCP_ESTABLISHED)) {
		conn = bpf_map_lookup_elem(&ks_tcp_conns, &key);
		if (conn)
			conn->state_ns = now;
		return 0;
	}
	e = tcp_record(sk, now, direct);
	if (!e)
		return 0;
	e->old_state = old;
	e->new_state = new;

	/* process context: the caller of connect() or listen() */
	if (new == KS_TCP_SYN_SENT || new == KS_TCP_LISTEN) {
		/* a listener is judged by its port alone; a connect by both ends */
		if (!ks_wanted() ||
		    (new == KS_TCP_SYN_SENT && !ks_net_wanted(e->tuple.sport, e->tuple.dport,
							       e->tuple.daddr, e->tuple.family)) ||
		    (new == KS_TCP_LISTEN && !ks_net_wanted(e->tuple.sport, e->tuple.sport,
							     e->tuple.saddr, e->tuple.family)))
			return 0;
		struct task_struct *cur = direct ? ks_current_btf() : 0;

		if (cur)
			ks_fill_task_any(&e->task, cur, 1);
		else
			ks_fill_task(&e->task, (struct task_struct *)bpf_get_current_task());
		e->flags = KS_NET_OWNER;
		if (new == KS_TCP_LISTEN) {
			struct ks_listen_key lk = { .netns = e->tuple.netns,
						    .port = e->tuple.sport,
						    .family = e->tuple.family };
			struct ks_listener *l = bpf_map_lookup_elem(&ks_listeners, &lk);

			if (l) {
				__sync_fetch_and_add(&l->sockets, 1);
			} else {
				struct ks_listener nl = { .sockets = 1 };

				nl.owner = e->task;
				bpf_map_update_elem(&ks_listeners, &lk, &nl, BPF_NOEXIST);
			}
			send(ctx, e, KS_EVENT_LISTEN);
		} else {
			struct ks_tcp_conn c = { .start_ns = now, .state_ns = now };

			c.owner = e->task;
			c.tuple = e->tuple;
			c.flags = KS_NET_OUTBOUND | KS_NET_OWNER;
			bpf_map_update_elem(&ks_tcp_conns, &key, &c, BPF_ANY);
		}
		goto state;
	}

	if (old == KS_TCP_LISTEN && new == KS_TCP_CLOSE) {
		struct ks_listen_key lk = { .netns = e->tuple.netns,
					    .port = e->tuple.sport,
					    .family = e->tuple.family };
		struct ks_listener *l = bpf_map_lookup_elem(&ks_listeners, &lk);

		if (l && l->sockets > 1)
			__sync_fetch_and_add(&l->sockets, -1);
		else if (l)
			bpf_map_delete_elem(&ks_listeners, &lk);
		return 0;
	}

	/* a passive open completes (softirq): attribute it to the listener */
	if (old == KS_TCP_SYN_RECV && new == KS_TCP_ESTABLISHED) {
		struct ks_listen_key lk = { .netns = e->tuple.netns,
					    .port = e->tuple.sport,
					    .family = e->tuple.family };
		struct ks_listener *l;
		struct ks_tcp_conn c = { .start_ns = now, .state_ns = now };

		/* accept() may have returned it already: the accept queue can be
		 * served before this transition (always, with TCP Fast Open); the
		 * acceptor stays its owner */
		conn = ks_accept_is_hooked() ? bpf_map_lookup_elem(&ks_tcp_conns, &key) : 0;
		if (conn && (conn->flags & KS_NET_ACCEPTED)) {
			conn->state_ns = now;
			e->task = conn->owner;
			e->flags = conn->flags;
			e->start_ns = conn->start_ns;
			goto state;
		}
		l = bpf_map_lookup_elem(&ks_listeners, &lk);
		if (!l)
			return 0; /* a listener ksight did not see (the accept hook
				   * may still), or filtered out */
		if (!ks_net_wanted(e->tuple.sport, e->tuple.dport, e->tuple.daddr, e->tuple.family))
			return 0;
		c.owner = l->owner;
		c.tuple = e->tuple;
		c.flags = KS_NET_INBOUND | KS_NET_OWNER | (l->flags & KS_NET_PROCFS);
		bpf_map_update_elem(&ks_tcp_conns, &key, &c, BPF_ANY);
		e->task = c.owner;
		e->flags = c.flags;
		e->start_ns = now;
		/* with the accept hook, accept.bpf.c reports it when accepted */
		if (!ks_accept_is_hooked())
			send(ctx, e, KS_EVENT_ACCEPT);
		goto state;
	}

	/* a passive child is cloned from its listener: not the listener's end */
	if (old == KS_TCP_LISTEN)
		return 0;

	conn = bpf_map_lookup_elem(&ks_tcp_conns, &key);
	if (!conn)
		conn = adopt(sk, key, direct);
	if (!conn)
		return 0; /* began before ksight (and not seeded), or filtered out */
	if (e->tuple.sport)
		conn->tuple = e->tuple;
	else
		e->tuple = conn->tuple;
	e->task = conn->owner;
	e->flags = conn->flags;
	e->start_ns = conn->start_ns;
	e->state_ns = conn->state_ns;

	if (old == KS_TCP_SYN_SENT) {
		/* the outcome of a connect: established, refused (RST), timed out,
		 * unreachable (ICMP): tcp_reset/tcp_write_err set sk_err first */
		e->error = BPF_CORE_READ(sk, sk_err);
		send(ctx, e, KS_EVENT_CONNECT);
		if (new == KS_TCP_CLOSE) {
			bpf_map_delete_elem(&ks_tcp_conns, &key);
			goto state;
		}
	} else if (new == KS_TCP_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		__u64 acked = BPF_CORE_READ(tp, bytes_acked);
		__u64 received = BPF_CORE_READ(tp, bytes_received);
		/* payload bytes: these counters follow sequence numbers, and SYN
		 * and FIN take one each. Our SYN counts when we connected (a
		 * passive child starts past its SYN-ACK); our FIN counts once
		 * acknowledged (then snd_una reached write_seq, which includes it);
		 * the peer's FIN counts once received, which tcp_fin() marks with
		 * SOCK_DONE (sk_shutdown will not do: close() sets it too). */
		int fin_sent = old == KS_TCP_FIN_WAIT1 || old == KS_TCP_FIN_WAIT2 ||
			       old == KS_TCP_TIME_WAIT || old == KS_TCP_LAST_ACK ||
			       old == KS_TCP_CLOSING;
		int fin_acked = fin_sent && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq);
		__u64 overhead = (conn->flags & KS_NET_OUTBOUND ? 1 : 0) + (fin_acked ? 1 : 0);

		e->bytes_sent = acked > overhead ? acked - overhead : 0;
		__u64 done = 1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DONE);

		if ((BPF_CORE_READ(sk, __sk_common.skc_flags) & done) && received)
			received--;
		e->bytes_received = received;
		e->retransmits = BPF_CORE_READ(tp, total_retrans);
		send(ctx, e, KS_EVENT_TCP_CLOSE);
		bpf_map_delete_elem(&ks_tcp_conns, &key);
		goto state;
	}
	conn->state_ns = now;

state:
	if (ks_cfg_tcp_states) {
		e->hdr.ktime = now;
		send(ctx, e, KS_EVENT_TCP_STATE);
	}
	return 0;
}

/* sock/inet_sock_set_state: every TCP state change (tcp_set_state and
 * inet_sk_state_store), in the caller's context for connect/listen/close
 * and in softirq for what the peer causes. Paid per state change. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ks_tcp_btf, const struct sock *sk, const int oldstate, const int newstate)
{
	return on_state(ctx, sk, oldstate, newstate, 1);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(ks_tcp_raw, const struct sock *sk, const int oldstate, const int newstate)
{
	return on_state(ctx, sk, oldstate, newstate, 0);
}
