/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * tcp.bpf.h: what the TCP objects share: net.bpf.c (state changes) and
 * accept.bpf.c (the optional accept() hook). The connection and listener
 * tables are defined in both; userspace points accept.bpf.c's at net.bpf.c's
 * (reuse_fd), so there is one table of each.
 */
#ifndef KS_TCP_BPF_H
#define KS_TCP_BPF_H

#include "common.bpf.h"
#include "netfilter.bpf.h"

/* from include/net/tcp_states.h (an anonymous enum in BTF) */
enum {
	KS_TCP_ESTABLISHED = 1,
	KS_TCP_SYN_SENT = 2,
	KS_TCP_SYN_RECV = 3,
	KS_TCP_CLOSE = 7,
	KS_TCP_LISTEN = 10,
};

#define KS_IPPROTO_TCP 6

enum {
	KS_TCP_FIN_WAIT1 = 4,
	KS_TCP_FIN_WAIT2 = 5,
	KS_TCP_TIME_WAIT = 6,
	KS_TCP_LAST_ACK = 9,
	KS_TCP_CLOSING = 11,
};

/* One entry per connection ksight saw begin, freed at close. LRU: a socket
 * whose close we never see (a missed record) cannot leak an entry forever.
 * 65536 entries x (~192 B value + 8 B key + ~64 B overhead) ~ 17 MiB at most. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ks_tcp_conn);
} ks_tcp_conns SEC(".maps");

struct ks_listen_key {
	__u32 netns;
	__u16 port;
	__u16 family;
};

/* The owner of the first socket listening on a port, and how many listen on
 * it now: several can (SO_REUSEPORT, one per address), and a listen() that
 * fails with EADDRINUSE enters LISTEN and leaves it again. The entry goes
 * with the last of them. */
struct ks_listener {
	struct ks_task owner;
	__u32 sockets;
	__u32 flags;	/* KS_NET_PROCFS: put here by userspace at start, the owner
			 * read from /proc (a listener older than ksight) */
};

/* Listening ports, for attributing accepted connections.
 * 4096 x (~104 B + 8 B + ~64 B) ~ 0.7 MiB. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ks_listen_key);
	__type(value, struct ks_listener);
} ks_listeners SEC(".maps");

/* A record under construction: too big for the 512-byte stack with the
 * rest, so one slot per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_tcp_event);
} ks_tcp_scratch SEC(".maps");

/* 1 once userspace has attached accept.bpf.c: accept records are then its to
 * send. A map both objects share, not a knob: accept.bpf.c loads after
 * net.bpf.c, and may not load at all. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ks_accept_hooked SEC(".maps");

static __always_inline int ks_accept_is_hooked(void)
{
	__u32 zero = 0;
	__u32 *hooked = bpf_map_lookup_elem(&ks_accept_hooked, &zero);

	return hooked && *hooked;
}

/*
 * `direct`: tp_btf hands us a BTF-typed socket, which the verifier lets us
 * read with plain loads (CO-RE-relocated through vmlinux.h) instead of one
 * bpf_probe_read call per field; raw_tp hands a bare address, read with
 * probe reads. `direct` is a constant at each call, so each program keeps
 * only its own branch. (A connect storm builds five of these per connection.)
 */
static __always_inline void fill_tuple(struct ks_sock_tuple *t, const struct sock *sk,
				       const int direct)
{
	if (direct) {
		t->family = sk->__sk_common.skc_family;
		t->sport = sk->__sk_common.skc_num;
		t->dport = bpf_ntohs(sk->__sk_common.skc_dport);
		t->netns = sk->__sk_common.skc_net.net->ns.inum;
		if (t->family == KS_AF_INET6) {
			__builtin_memcpy(t->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
			__builtin_memcpy(t->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
		} else {
			__u32 s4 = sk->__sk_common.skc_rcv_saddr, d4 = sk->__sk_common.skc_daddr;

			__builtin_memcpy(t->saddr, &s4, 4);
			__builtin_memcpy(t->daddr, &d4, 4);
		}
	} else {
		ks_sock_tuple_read(t, sk);
	}
	/* by CLOSE the port is given back (skc_num = 0), but inet_sport keeps it
	 * (inet_sock lies beyond struct sock: a probe read either way) */
	if (!t->sport)
		t->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
}

/* This CPU's record for `sk`: zeroed, stamped `now`, with its addresses; NULL if none. */
static __always_inline struct ks_tcp_event *tcp_record(const struct sock *sk, __u64 now,
						       const int direct)
{
	__u32 zero = 0;
	struct ks_tcp_event *e = bpf_map_lookup_elem(&ks_tcp_scratch, &zero);

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.ktime = now;
	e->sock = (__u64)sk;
	fill_tuple(&e->tuple, sk, direct);
	return e;
}

static __always_inline void send(void *ctx, struct ks_tcp_event *e, __u32 kind)
{
	e->hdr.kind = kind;
	ks_emit(ctx, &e->hdr, sizeof(*e));
}

#endif /* KS_TCP_BPF_H */
