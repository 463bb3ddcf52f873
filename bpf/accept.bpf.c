// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * accept.bpf.c: the optional accept() hook. An accepted connection is
 * attributed to the thread that called accept() (accept(2), accept4(2),
 * io_uring, in-kernel callers alike: all return through inet_csk_accept),
 * at the moment it did; net.bpf.c alone can only name the listener's owner,
 * since the handshake completes in softirq. It also sees connections on
 * listeners that were opened before ksight started, which net.bpf.c misses.
 *
 * Three flavours of one handler; userspace loads the first this kernel
 * accepts (kprobes and fentry are both optional: CONFIG_KPROBES, lockdown):
 *   - fexit/inet_csk_accept, 6.10+ signature (sk, struct proto_accept_arg *)
 *   - fexit/inet_csk_accept, older signature (sk, flags, int *err, bool kern)
 *   - kretprobe/inet_csk_accept: any signature (only the return value is read)
 * Paid once per accepted connection.
 *
 * The connection and listener tables, the --port filter and the transport
 * are net.bpf.c's and process.bpf.c's (userspace passes their fds in).
 */
#include "tcp.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int on_accept(void *ctx, struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct ks_tcp_conn *conn;
	struct ks_tcp_event *e;

	if (!sk)
		return 0; /* accept failed */
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != KS_IPPROTO_TCP)
		return 0;
	conn = bpf_map_lookup_elem(&ks_tcp_conns, &key);
	if (!ks_wanted()) {
		/* the listener's owner was wanted, the acceptor is not */
		if (conn)
			bpf_map_delete_elem(&ks_tcp_conns, &key);
		return 0;
	}
	e = tcp_record(sk, now, 0);
	if (!e)
		return 0;
	e->old_state = KS_TCP_SYN_RECV;
	e->new_state = BPF_CORE_READ(sk, __sk_common.skc_state);
	ks_fill_task(&e->task, (struct task_struct *)bpf_get_current_task());
	/* the handshake's time, when ksight saw it complete (net.bpf.c) */
	e->start_ns = conn ? conn->start_ns : 0;

	if (!conn) {
		/* established before ksight started, or on a listener it did not
		 * see: followed from here. One already closed (reset while queued)
		 * has no state change left to end its entry. */
		struct ks_tcp_conn c = { .start_ns = now, .state_ns = now };

		if (e->new_state == KS_TCP_CLOSE ||
		    !ks_net_wanted(e->tuple.sport, e->tuple.dport, e->tuple.daddr, e->tuple.family))
			return 0;
		c.tuple = e->tuple;
		c.flags = KS_NET_INBOUND;
		bpf_map_update_elem(&ks_tcp_conns, &key, &c, BPF_ANY);
		conn = bpf_map_lookup_elem(&ks_tcp_conns, &key);
		if (!conn)
			return 0;
	}
	conn->owner = e->task;
	conn->flags |= KS_NET_OWNER | KS_NET_ACCEPTED;
	e->flags = conn->flags;
	send(ctx, e, KS_EVENT_ACCEPT);
	return 0;
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(ks_accept_fexit, struct sock *sk, struct proto_accept_arg *arg, struct sock *ret)
{
	return on_accept(ctx, ret);
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(ks_accept_fexit_old, struct sock *sk, int flags, int *err, bool kern,
	     struct sock *ret)
{
	return on_accept(ctx, ret);
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(ks_accept_kretprobe, struct sock *ret)
{
	return on_accept(ctx, ret);
}
