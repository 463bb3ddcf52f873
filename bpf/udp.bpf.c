// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * udp.bpf.c: UDP flows, counted per (socket, remote) in the kernel.
 *
 * cgroup_skb egress/ingress (4.10+) on the cgroup v2 root see every packet of
 * every socket; they leave non-UDP packets at once and add UDP ones to their
 * flow's counters (no record per datagram). cgroup/sock_create (4.10+) runs in
 * the creating process: it records the socket's owner. cgroup/sock_release
 * (5.9+) sends one record when the socket goes, so userspace can report its
 * flows. All of these run only for sockets, not for every syscall.
 *
 * A separate object from net.bpf.c: a kernel that refuses these program
 * types loses UDP flows only.
 */
#include "common.bpf.h"
#include "netfilter.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KS_IPPROTO_UDP 17
#define KS_IPPROTO_TCP 6
#define KS_ETH_P_IP 0x0800
#define KS_ETH_P_IPV6 0x86DD

/* One entry per live UDP socket, freed at release. LRU bounds a socket whose
 * release we miss. 65536 x (~200 B + 8 B + ~64 B) ~ 17 MiB at most. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ks_udp_sock);
} ks_udp_socks SEC(".maps");

/* One entry per flow; userspace deletes them when it reports a closed
 * socket. LRU: a busy server's oldest idle flows make way.
 * 65536 x (~72 B + 32 B + ~64 B) ~ 11 MiB at most. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ks_udp_flow_key);
	__type(value, struct ks_udp_flow);
} ks_udp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_udp_event);
} ks_udp_scratch SEC(".maps");

/* Record the current task as the owner of a socket ksight did not see
 * created (egress runs in the sending process's context). Its flows are not
 * listed, so its release scans for them. */
static __always_inline void ks_udp_adopt(__u64 cookie)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct ks_udp_sock fresh = {};

	ks_fill_task_cg(&fresh.owner, task, 0);
	fresh.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	fresh.nremotes = KS_UDP_REMOTES + 1;
	bpf_map_update_elem(&ks_udp_socks, &cookie, &fresh, BPF_NOEXIST);
}

/* DNS ports whose datagrams are copied to userspace (0 = unused slot) */
const volatile __u16 ks_cfg_dns_ports[KS_DNS_PORTS] = { 53 };

/* One slot per direction: egress runs in process context and ingress in
 * softirq, which can interrupt it on the same CPU mid-record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ks_dns_event);
} ks_dns_scratch SEC(".maps");

static __always_inline int ks_dns_port(__u16 port)
{
	for (int i = 0; i < KS_DNS_PORTS; i++)
		if (ks_cfg_dns_ports[i] && ks_cfg_dns_ports[i] == port)
			return 1;
	return 0;
}

/* Copy a DNS datagram's (or TCP segment's) payload, at most KS_DNS_MAX
 * bytes, into a record. The ports are at ports_off, the payload at off. */
static __always_inline void ks_dns_emit(struct __sk_buff *skb, __u32 off, __u32 ports_off,
					__u32 len, __u64 cookie, __u16 family, int egress,
					__u32 tcp)
{
	__u32 slot = egress ? 1 : 0;
	struct ks_dns_event *e = bpf_map_lookup_elem(&ks_dns_scratch, &slot);
	struct ks_udp_sock *s;
	__u32 caplen = len > KS_DNS_MAX ? KS_DNS_MAX : len;
	__u16 ports[2];

	if (!e || caplen == 0)
		return;
	/* Before 6.x the verifier loses a checked bound when the compiler
	 * copies or spills the register: give the helper a length whose bounds
	 * [1, KS_DNS_MAX] follow from its own arithmetic (it equals caplen). */
	__u32 n = ((caplen - 1) & (KS_DNS_MAX - 1)) + 1;

	barrier_var(n);
	if (bpf_skb_load_bytes(skb, ports_off, ports, 4) ||
	    bpf_skb_load_bytes(skb, off, e->data, ((n - 1) & (KS_DNS_MAX - 1)) + 1))
		return;
	caplen = n;
	e->hdr.ktime = bpf_ktime_get_ns();
	e->hdr.kind = KS_EVENT_DNS;
	e->cookie = cookie;
	e->family = family;
	e->egress = egress;
	e->sport = bpf_ntohs(ports[0]);
	e->dport = bpf_ntohs(ports[1]);
	e->len = len;
	e->caplen = caplen;
	__builtin_memset(e->saddr, 0, 16);
	__builtin_memset(e->daddr, 0, 16);
	if (family == 2) {
		bpf_skb_load_bytes(skb, 12, e->saddr, 4);
		bpf_skb_load_bytes(skb, 16, e->daddr, 4);
	} else {
		bpf_skb_load_bytes(skb, 8, e->saddr, 16);
		bpf_skb_load_bytes(skb, 24, e->daddr, 16);
	}
	e->flags = tcp ? KS_NET_TCP : 0;
	e->netns = 0;
	s = bpf_map_lookup_elem(&ks_udp_socks, &cookie);
	if (!s && egress) {
		/* a resolver's socket older than ksight: named by what it sends */
		ks_udp_adopt(cookie);
		s = bpf_map_lookup_elem(&ks_udp_socks, &cookie);
	}
	if (s) {
		e->task = s->owner;
		e->netns = s->netns;
		e->flags |= KS_NET_OWNER;
	}
	ks_emit(skb, &e->hdr, offsetof(struct ks_dns_event, data) + caplen);
}

/* A TCP segment of a DNS connection: its payload, if any, is (part of) a
 * length-prefixed DNS message. */
static __always_inline void ks_dns_tcp(struct __sk_buff *skb, int egress)
{
	__u32 hlen, doff, len = skb->len;
	__u16 family;
	__u8 b;

	if (skb->protocol == bpf_htons(KS_ETH_P_IP)) {
		__u8 proto;

		if (bpf_skb_load_bytes(skb, 0, &b, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1) ||
		    proto != KS_IPPROTO_TCP)
			return;
		hlen = (b & 0xf) * 4;
		family = 2;
	} else if (skb->protocol == bpf_htons(KS_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &b, 1) || b != KS_IPPROTO_TCP)
			return;
		hlen = 40;
		family = 10;
	} else {
		return;
	}
	if (hlen < 20 || hlen > 60 || bpf_skb_load_bytes(skb, hlen + 12, &b, 1))
		return;
	doff = (b >> 4) * 4;
	if (doff < 20 || len <= hlen + doff)
		return; /* no payload: a SYN, an ACK, a FIN */
	ks_dns_emit(skb, hlen + doff, hlen, len - hlen - doff, bpf_get_socket_cookie(skb), family,
		    egress, 1);
}

/* Socket creation, in the creating process: remember the owner. */
SEC("cgroup/sock_create")
int ks_udp_create(struct bpf_sock *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct ks_udp_sock s = {};
	__u64 cookie;

	if (ctx->protocol != KS_IPPROTO_UDP)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	ks_fill_task_cg(&s.owner, task, 0);
	s.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	bpf_map_update_elem(&ks_udp_socks, &cookie, &s, BPF_ANY);
	return 1;
}

/* Socket release: tell userspace to report (and forget) its flows. */
SEC("cgroup/sock_release")
int ks_udp_release(struct bpf_sock *ctx)
{
	__u32 zero = 0;
	struct ks_udp_event *e;
	struct ks_udp_sock *s;
	__u64 cookie;

	if (ctx->protocol != KS_IPPROTO_UDP) {
		/* a TCP socket is in the table only if a DNS segment adopted it */
		if (ctx->protocol == KS_IPPROTO_TCP) {
			cookie = bpf_get_socket_cookie(ctx);
			bpf_map_delete_elem(&ks_udp_socks, &cookie);
		}
		return 1;
	}
	e = bpf_map_lookup_elem(&ks_udp_scratch, &zero);
	if (!e)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	e->hdr.ktime = bpf_ktime_get_ns();
	e->hdr.kind = KS_EVENT_UDP;
	e->cookie = cookie;
	e->flags = 0;
	s = bpf_map_lookup_elem(&ks_udp_socks, &cookie);
	if (s) {
		e->sock = *s;
		e->flags = KS_NET_OWNER;
	} else {
		__builtin_memset(&e->sock, 0, sizeof(e->sock));
	}
	ks_emit(ctx, &e->hdr, sizeof(*e));
	bpf_map_delete_elem(&ks_udp_socks, &cookie);
	return 1;
}

static __always_inline int count(struct __sk_buff *skb, int egress)
{
	struct ks_udp_flow_key key = {};
	struct ks_udp_flow *f;
	__u8 laddr[16] = {};
	__u16 ports[2];
	__u32 hlen, len = skb->len;
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk); /* skb->sk may be a request or timewait sock */
	if (!sk)
		return 1;
	if (sk->protocol == KS_IPPROTO_TCP) {
		/* DNS over TCP: other TCP sockets pay only this port check */
		if (ks_dns_port(sk->src_port) || ks_dns_port(bpf_ntohs(sk->dst_port)))
			ks_dns_tcp(skb, egress);
		return 1;
	}
	if (sk->protocol != KS_IPPROTO_UDP)
		return 1;
	if (skb->protocol == bpf_htons(KS_ETH_P_IP)) {
		__u8 vihl;
		__u8 proto;

		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1))
			return 1;
		if (proto != KS_IPPROTO_UDP)
			return 1;
		hlen = (vihl & 0xf) * 4;
		key.family = 2;
		if (bpf_skb_load_bytes(skb, egress ? 16 : 12, key.raddr, 4) ||
		    bpf_skb_load_bytes(skb, egress ? 12 : 16, laddr, 4))
			return 1;
	} else if (skb->protocol == bpf_htons(KS_ETH_P_IPV6)) {
		__u8 next;

		if (bpf_skb_load_bytes(skb, 6, &next, 1) || next != KS_IPPROTO_UDP)
			return 1; /* extension headers: not followed */
		hlen = 40;
		key.family = 10;
		if (bpf_skb_load_bytes(skb, egress ? 24 : 8, key.raddr, 16) ||
		    bpf_skb_load_bytes(skb, egress ? 8 : 24, laddr, 16))
			return 1;
	} else {
		return 1;
	}
	if (hlen < 20 || hlen > 60 || bpf_skb_load_bytes(skb, hlen, ports, 4))
		return 1;
	key.rport = bpf_ntohs(egress ? ports[1] : ports[0]);
	if (!ks_net_wanted(bpf_ntohs(egress ? ports[0] : ports[1]), key.rport, key.raddr,
			   key.family))
		return 1;
	key.cookie = bpf_get_socket_cookie(skb);
	len = len > hlen + 8 ? len - hlen - 8 : 0;

	f = bpf_map_lookup_elem(&ks_udp_flows, &key);
	if (!f) {
		struct ks_udp_flow init = {};

		init.first_ns = bpf_ktime_get_ns();
		init.lport = bpf_ntohs(egress ? ports[0] : ports[1]);
		__builtin_memcpy(init.laddr, laddr, 16);
		if (bpf_map_update_elem(&ks_udp_flows, &key, &init, BPF_NOEXIST) == 0) {
			/* a new flow: its socket remembers it, for the release */
			struct ks_udp_sock *s = bpf_map_lookup_elem(&ks_udp_socks, &key.cookie);

			/* a socket older than ksight has no owner yet: egress runs in
			 * the sender's context, so its first new flow names it */
			if (!s && egress) {
				ks_udp_adopt(key.cookie);
				s = 0;
			}

			if (s) {
				/* read, then a plain atomic add: kernels before 5.12
				 * refuse an atomic add whose result is used (fetch-add).
				 * Two new flows racing may share a slot; the one left out
				 * is then reported by the periodic scan, not at release. */
				__u32 n = s->nremotes;

				__sync_fetch_and_add(&s->nremotes, 1);
				if (n < KS_UDP_REMOTES) {
					__builtin_memcpy(s->remotes[n].raddr, key.raddr, 16);
					s->remotes[n].rport = key.rport;
					s->remotes[n].family = key.family;
				}
			}
		}
		f = bpf_map_lookup_elem(&ks_udp_flows, &key);
		if (!f)
			return 1;
	}
	f->last_ns = bpf_ktime_get_ns();
	if (egress) {
		__sync_fetch_and_add(&f->packets_out, 1);
		__sync_fetch_and_add(&f->bytes_out, len);
	} else {
		__sync_fetch_and_add(&f->packets_in, 1);
		__sync_fetch_and_add(&f->bytes_in, len);
	}
	if (ks_dns_port(bpf_ntohs(ports[0])) || ks_dns_port(bpf_ntohs(ports[1])))
		ks_dns_emit(skb, hlen + 8, hlen, len, key.cookie, key.family, egress, 0);
	return 1;
}

SEC("cgroup_skb/egress")
int ks_udp_egress(struct __sk_buff *skb)
{
	return count(skb, 1);
}

SEC("cgroup_skb/ingress")
int ks_udp_ingress(struct __sk_buff *skb)
{
	return count(skb, 0);
}
