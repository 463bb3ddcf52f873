// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * enforce.bpf.c: enforcement, decided in the kernel before the act happens.
 *
 * - deny_connect / deny_domain: cgroup/connect4, connect6 (4.17+) and
 *   cgroup/sendmsg4, sendmsg6 (4.18+) on the cgroup v2 root. Returning 0 makes
 *   connect() (TCP, and UDP's connect) or an unconnected sendto() fail with
 *   EPERM before a packet is built. Paid per connect()/sendto() with an
 *   address, never per packet: one LPM lookup and one hash lookup, then the
 *   port, when anything matched.
 * - deny_domain's addresses: cgroup_skb/ingress reads the DNS answers a socket
 *   receives (UDP from a DNS port) and, for a name a rule denies, puts each
 *   A/AAAA address of the answer into ks_enf_answers with its TTL, in the
 *   softirq that queues the datagram: before the application can read the
 *   answer, so before it can connect. Loaded only with deny_domain rules.
 * - kill: sched_process_exec (tp_btf 5.5+, raw_tp 4.17+), in the new image's
 *   context: bpf_send_signal(SIGKILL) (5.3+) is delivered on the way back to
 *   user space, so the new image never runs an instruction.
 *
 * Rules are bits (at most KS_ENF_RULES): each map gives the set of rules a
 * destination, a port, a file or a name matches; ks_enf_rules[bit] says what
 * else a rule needs (socket type, cgroup subtree, executable) and whether it
 * acts or only reports. Every decision, in either mode, is a record and a
 * count in ks_enf_stats: nothing is blocked silently. ksight's own process is
 * never denied nor killed; the addresses in ks_enf_allow (the resolvers,
 * ksight's own endpoints) are never denied.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KS_SOCK_STREAM 1
#define KS_SOCK_DGRAM 2
#define KS_SIGKILL 9
#define KS_IPPROTO_UDP 17
#define KS_ETH_P_IP 0x0800
#define KS_ETH_P_IPV6 0x86DD

/* ksight's tgid: never denied, never killed */
const volatile __u32 ks_cfg_self = 0;
/* rules (bits) that need the executable / the cgroup subtree checked */
const volatile __u64 ks_cfg_exe_rules = 0;
const volatile __u64 ks_cfg_cgroup_rules = 0;
/* rules (bits) that kill at exec, and those of them scoped to a parent */
const volatile __u64 ks_cfg_kill_rules = 0;
const volatile __u64 ks_cfg_ancestor_rules = 0;
/* the DNS port answers are read from (deny_domain) */
const volatile __u16 ks_cfg_answer_port = 53;
/* added to each answer's TTL before its addresses stop being denied */
const volatile __u64 ks_cfg_answer_grace_ns = 60ULL * 1000000000ULL;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KS_ENF_RULES);
	__type(key, __u32);
	__type(value, struct ks_enf_rule);
} ks_enf_rules SEC(".maps");

/* The rules' ids: only read by `ksight enforce status` on a pinned copy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KS_ENF_RULES);
	__type(key, __u32);
	__type(value, struct ks_enf_name);
} ks_enf_names SEC(".maps");

/* Destinations by CIDR: each prefix's mask holds the rules of every prefix
 * that contains it (userspace folds them), so the longest match is enough. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ks_enf_net4);
	__type(value, __u64);
} ks_enf_nets4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ks_enf_net6);
	__type(value, __u64);
} ks_enf_nets6 SEC(".maps");

/* Destination port (host order) -> rules; port 0: rules for any port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} ks_enf_ports SEC(".maps");

/* Addresses from answers for denied names. Bounded: a full map is counted
 * (answers_full) and reported, never evicted silently. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ks_enf_addr);
	__type(value, struct ks_enf_answer);
} ks_enf_answers SEC(".maps");

/* Name suffix hash (see ks_enf_name_mask) -> rules. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ks_enf_domain);
} ks_enf_domains SEC(".maps");

/* Executables by identity, and directories whose executables (at any depth,
 * within the directory's file system) a rule names. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ks_enf_file);
	__type(value, __u64);
} ks_enf_exes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct ks_enf_file);
	__type(value, __u64);
} ks_enf_dirs SEC(".maps");

/* Kill rules scoped to what a parent runs: its executable by identity. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct ks_enf_file);
	__type(value, __u64);
} ks_enf_parents SEC(".maps");

/* Never denied: the resolvers (with deny_domain), ksight's endpoints. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct ks_enf_addr);
	__type(value, __u32);
} ks_enf_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_enf_stats);
} ks_enf_stats SEC(".maps");

/* Rules scoped to a cgroup subtree, by the subtree's cgroup id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KS_ENF_RULES);
	__type(key, __u64);
	__type(value, __u64);
} ks_enf_cgroups SEC(".maps");

/* ---- helpers ---- */

/*
 * Decisions are mask arithmetic, not a loop over rules: a loop of 64 with a
 * branch per rule attribute is more than the verifier's budget. Each rule
 * attribute is a mask set by userspace at load.
 */
const volatile __u64 ks_cfg_enforce_rules = 0; /* rules that act (else monitor) */
const volatile __u64 ks_cfg_tcp_rules = 0;
const volatile __u64 ks_cfg_udp_rules = 0;

static __always_inline void ks_enf_count(__u32 rule)
{
	__u32 zero = 0;
	struct ks_enf_stats *st = bpf_map_lookup_elem(&ks_enf_stats, &zero);

	if (st)
		__sync_fetch_and_add(&st->hits[rule & (KS_ENF_RULES - 1)], 1);
}

/* The rules an executable or one of its directories matches. The walk stays
 * within the file's file system: a directory that is a mount point (/dev/shm)
 * is the root of the file system mounted there, which is what stat() of its
 * path gives userspace. */
static __always_inline __u64 ks_enf_file_mask(struct file *f)
{
	struct ks_enf_file k = {};
	struct dentry *d, *p;
	struct inode *ino;
	__u64 mask = 0, *m;

	if (!f)
		return 0;
	ino = BPF_CORE_READ(f, f_inode);
	k.ino = BPF_CORE_READ(ino, i_ino);
	k.dev = BPF_CORE_READ(ino, i_sb, s_dev);
	m = bpf_map_lookup_elem(&ks_enf_exes, &k);
	if (m)
		mask |= *m;
	d = BPF_CORE_READ(f, f_path.dentry);
	for (int i = 0; i < 32 && d; i++) {
		p = BPF_CORE_READ(d, d_parent);
		ino = BPF_CORE_READ(p, d_inode);
		k.ino = BPF_CORE_READ(ino, i_ino);
		k.dev = BPF_CORE_READ(ino, i_sb, s_dev);
		m = bpf_map_lookup_elem(&ks_enf_dirs, &k);
		if (m)
			mask |= *m;
		if (p == d)
			break;
		d = p;
	}
	return mask;
}

/* The cgroup-scoped rules whose subtree holds the task: its cgroup and each
 * ancestor, looked up. */
static __always_inline __u64 ks_enf_cgroup_mask(struct task_struct *t)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	__u64 mask = 0, *m, id;

	for (int i = 0; i < 64 && cg; i++) {
		id = BPF_CORE_READ(cg, kn, id);
		m = bpf_map_lookup_elem(&ks_enf_cgroups, &id);
		if (m)
			mask |= *m;
		/* `self` is a cgroup's first member: its parent css is the parent cgroup */
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return mask;
}

static __always_inline __u32 ks_ctz(__u64 x)
{
	__u32 n = 0;

	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffff)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xff)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xf)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1))
		n += 1;
	return n;
}

/*
 * Of the rules in `mask` (those the destination or file matched), keep those
 * that apply to this socket type (0: an exec), executable and cgroup; *rule
 * is the lowest enforcing one (DENIED), else the lowest monitoring one
 * (WOULD_DENY). 0: none applies.
 */
static __always_inline __u32 ks_enf_decide(__u64 mask, __u32 sotype, struct task_struct *t,
					   __u64 exe_mask, __u32 *rule)
{
	if (sotype == KS_SOCK_STREAM)
		mask &= ks_cfg_tcp_rules;
	else if (sotype == KS_SOCK_DGRAM)
		mask &= ks_cfg_udp_rules;
	mask &= ~ks_cfg_exe_rules | exe_mask;
	if (mask & ks_cfg_cgroup_rules)
		mask &= ~ks_cfg_cgroup_rules | ks_enf_cgroup_mask(t);
	if (!mask)
		return 0;
	if (mask & ks_cfg_enforce_rules) {
		*rule = ks_ctz(mask & ks_cfg_enforce_rules);
		return KS_ENF_DENIED;
	}
	*rule = ks_ctz(mask);
	return KS_ENF_WOULD_DENY;
}

/* ---- deny_connect, deny_domain ---- */

static __always_inline int ks_is_v4_mapped(const __u8 *a)
{
	for (int i = 0; i < 10; i++)
		if (a[i])
			return 0;
	return a[10] == 0xff && a[11] == 0xff;
}

/* The rules a destination matches, by CIDR and by the answers for denied
 * names. `a` is normalised: a v4-mapped IPv6 address is looked up as IPv4. */
static __always_inline __u64 ks_enf_addr_mask(struct ks_enf_addr *a)
{
	struct ks_enf_answer *ans;
	__u64 mask = 0, *m;

	if (a->family == 10 && ks_is_v4_mapped(a->addr)) {
		__builtin_memcpy(a->addr, &a->addr[12], 4);
		__builtin_memset(&a->addr[4], 0, 12);
		a->family = 2;
	}
	if (a->family == 2) {
		struct ks_enf_net4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, a->addr, 4);
		m = bpf_map_lookup_elem(&ks_enf_nets4, &k);
	} else {
		struct ks_enf_net6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, a->addr, 16);
		m = bpf_map_lookup_elem(&ks_enf_nets6, &k);
	}
	if (m)
		mask |= *m;
	ans = bpf_map_lookup_elem(&ks_enf_answers, a);
	if (ans && ans->expires_ns > bpf_ktime_get_ns())
		mask |= ans->mask;
	return mask;
}

static __always_inline int ks_enf_sock(void *ctx, struct ks_enf_addr *a, __u16 port,
				       __u32 sotype)
{
	struct ks_enforce_event e = {};
	struct task_struct *t;
	__u64 mask, exe_mask = 0, *m;
	__u32 key = port, any = 0, rule = 0, result;

	mask = ks_enf_addr_mask(a);
	if (!mask)
		return 1;
	m = bpf_map_lookup_elem(&ks_enf_ports, &key);
	mask &= (m ? *m : 0) | ({
			 __u64 *n = bpf_map_lookup_elem(&ks_enf_ports, &any);
			 n ? *n : 0;
		 });
	if (!mask || bpf_map_lookup_elem(&ks_enf_allow, a))
		return 1;
	t = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(t, tgid) == ks_cfg_self)
		return 1;
	if (mask & ks_cfg_exe_rules)
		exe_mask = ks_enf_file_mask(BPF_CORE_READ(t, mm, exe_file));
	result = ks_enf_decide(mask, sotype, t, exe_mask, &rule);
	if (!result)
		return 1;
	ks_enf_count(rule);
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_ENFORCEMENT;
	ks_fill_task_cg(&e.task, t, 0);
	__builtin_memcpy(e.addr, a->addr, 16);
	e.family = a->family;
	e.port = port;
	e.sotype = sotype;
	e.rule = rule;
	e.result = result;
	{
		struct ks_enf_rule *r = bpf_map_lookup_elem(&ks_enf_rules, &rule);

		e.action = r ? r->action : KS_ENF_DENY_CONNECT;
	}
	ks_emit(ctx, &e.hdr, sizeof(e));
	return result == KS_ENF_DENIED ? 0 : 1;
}

static __always_inline int ks_enf_sock4(struct bpf_sock_addr *ctx)
{
	struct ks_enf_addr a = { .family = 2 };
	__u32 ip = ctx->user_ip4;

	__builtin_memcpy(a.addr, &ip, 4);
	return ks_enf_sock(ctx, &a, bpf_ntohs((__u16)ctx->user_port), ctx->type);
}

static __always_inline int ks_enf_sock6(struct bpf_sock_addr *ctx)
{
	struct ks_enf_addr a = { .family = 10 };
	__u32 w[4];

	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memcpy(a.addr, w, 16);
	return ks_enf_sock(ctx, &a, bpf_ntohs((__u16)ctx->user_port), ctx->type);
}

SEC("cgroup/connect4")
int ks_enf_connect4(struct bpf_sock_addr *ctx)
{
	return ks_enf_sock4(ctx);
}

SEC("cgroup/connect6")
int ks_enf_connect6(struct bpf_sock_addr *ctx)
{
	return ks_enf_sock6(ctx);
}

/* An unconnected UDP socket's sendto()/sendmsg() with an address (a
 * connected one passed connect4/6 at its connect()). */
SEC("cgroup/sendmsg4")
int ks_enf_sendmsg4(struct bpf_sock_addr *ctx)
{
	return ks_enf_sock4(ctx);
}

SEC("cgroup/sendmsg6")
int ks_enf_sendmsg6(struct bpf_sock_addr *ctx)
{
	return ks_enf_sock6(ctx);
}

/* ---- deny_domain: the answers ---- */

#define KS_ENF_DNS_MAX 512
#define KS_ENF_DNS_MASK (KS_ENF_DNS_MAX - 1)
/* labels hashed from the right: the deepest pattern userspace accepts */
#define KS_ENF_NAME_DEPTH 8
/* answer records read per response */
#define KS_ENF_ANSWERS 8

/* The loops below keep what they carry from one step to the next here, in
 * map memory, not in registers: the verifier does not track values in map
 * memory, so the branches of a step meet again in one state and the walk
 * costs it a few thousand instructions, not one path per branch taken. */
struct ks_enf_dns {
	__u8 data[KS_ENF_DNS_MAX + 32]; /* slack: reads at off & MASK may run 16 bytes on */
	__u64 lhash[KS_ENF_NAME_DEPTH];	/* the last labels' hashes, a ring */
	__u64 lh;			/* the label being hashed */
	__u32 off;
	__u32 rem;			/* its bytes still to hash */
	__u32 n;			/* labels hashed */
	__u32 end;			/* 0 until the root label is reached */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_enf_dns);
} ks_enf_dns_scratch SEC(".maps");

#define KS_FNV_OFFSET 0xcbf29ce484222325ULL
#define KS_FNV_PRIME 0x100000001b3ULL

/* The suffix of the last j + 1 labels: fold label n-1-j into h, look it up. */
#define KS_ENF_SUFFIX(j)                                                                  \
	do {                                                                              \
		struct ks_enf_domain *dm;                                                 \
		if ((j) >= n)                                                             \
			return mask;                                                      \
		h = (h ^ d->lhash[(n - 1 - (j)) & (KS_ENF_NAME_DEPTH - 1)]) * KS_FNV_PRIME; \
		dm = bpf_map_lookup_elem(&ks_enf_domains, &h);                            \
		if (dm) {                                                                 \
			mask |= dm->subtree;                                              \
			if ((j) + 1 == n)                                                 \
				mask |= dm->exact;                                        \
		}                                                                         \
	} while (0)

/*
 * The rules the question's name matches. Each label is hashed (FNV-1a over
 * its lower-cased bytes); then, from the rightmost label, each suffix's hash
 * is the previous one's folded with the label's (h = (h ^ label) * prime),
 * looked up in ks_enf_domains: `com`, then `pastebin.com`, then
 * `x.pastebin.com`. crates/ksight-core/src/enforce.rs hashes patterns the
 * same way. Sets d->end past the question.
 */
static __always_inline __u64 ks_enf_name_mask(struct ks_enf_dns *d, __u32 len)
{
	__u64 h = KS_FNV_OFFSET, mask = 0;
	__u32 n;

	d->off = 12;
	d->rem = 0;
	d->n = 0;
	d->end = 0;
	d->lh = KS_FNV_OFFSET;
	/* one flat walk over the name's bytes (at most 255) */
	for (int i = 0; i < 256; i++) {
		__u32 off;

		/* keep the carried state in memory: no register copy the
		 * compiler could carry instead (see struct ks_enf_dns) */
		asm volatile("" ::: "memory");
		off = d->off;
		__u8 c;

		if (off >= len)
			return 0;
		c = d->data[off & KS_ENF_DNS_MASK];
		d->off = off + 1;
		if (d->rem) {
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			d->lh = (d->lh ^ c) * KS_FNV_PRIME;
			d->rem -= 1;
			continue;
		}
		/* a length byte: the label before it is complete */
		if (off > 12) {
			d->lhash[d->n & (KS_ENF_NAME_DEPTH - 1)] = d->lh;
			d->n += 1;
		}
		if (c == 0) {
			d->end = off + 1 + 4; /* the root label, QTYPE, QCLASS */
			break;
		}
		if (c & 0xc0)
			return 0; /* no compression in a question */
		d->rem = c;
		d->lh = KS_FNV_OFFSET;
	}
	n = d->n;
	if (!d->end || n == 0)
		return 0;
	/* by hand, not a loop: before 5.16 a loop whose head follows a helper
	 * call is refused ("back-edge from insn"), and clang does not unroll
	 * this one for being asked */
	KS_ENF_SUFFIX(0);
	KS_ENF_SUFFIX(1);
	KS_ENF_SUFFIX(2);
	KS_ENF_SUFFIX(3);
	KS_ENF_SUFFIX(4);
	KS_ENF_SUFFIX(5);
	KS_ENF_SUFFIX(6);
	KS_ENF_SUFFIX(7);
	return mask;
}

static __always_inline void ks_enf_add_answer(struct ks_enf_dns *d, __u32 off, __u32 family,
					      __u32 ttl, __u64 mask)
{
	struct ks_enf_addr a = { .family = family };
	struct ks_enf_answer v, *old;
	__u32 zero = 0;
	struct ks_enf_stats *st = bpf_map_lookup_elem(&ks_enf_stats, &zero);

	if (family == 2)
		__builtin_memcpy(a.addr, &d->data[off & KS_ENF_DNS_MASK], 4);
	else
		__builtin_memcpy(a.addr, &d->data[off & KS_ENF_DNS_MASK], 16);
	if (ttl > 86400)
		ttl = 86400;
	v.mask = mask;
	v.expires_ns = bpf_ktime_get_ns() + (__u64)ttl * 1000000000ULL + ks_cfg_answer_grace_ns;
	old = bpf_map_lookup_elem(&ks_enf_answers, &a);
	if (old) {
		v.mask |= old->mask;
		if (old->expires_ns > v.expires_ns)
			v.expires_ns = old->expires_ns;
	}
	if (bpf_map_update_elem(&ks_enf_answers, &a, &v, BPF_ANY)) {
		if (st)
			__sync_fetch_and_add(&st->answers_full, 1);
	} else if (st) {
		__sync_fetch_and_add(&st->answers, 1);
	}
}

static __always_inline __u16 ks_be16(struct ks_enf_dns *d, __u32 off)
{
	return ((__u16)d->data[off & KS_ENF_DNS_MASK] << 8) | d->data[(off + 1) & KS_ENF_DNS_MASK];
}

SEC("cgroup_skb/ingress")
int ks_enf_answers_in(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct ks_enf_dns *d;
	__u32 zero = 0, hlen, len, family;
	__u16 ports[2], an;
	__u64 mask;
	__u8 b;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != KS_IPPROTO_UDP)
		return 1;
	if (skb->protocol == bpf_htons(KS_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1))
			return 1;
		hlen = (b & 0xf) * 4;
		family = 2;
	} else if (skb->protocol == bpf_htons(KS_ETH_P_IPV6)) {
		hlen = 40;
		family = 10;
	} else {
		return 1;
	}
	if (hlen < 20 || hlen > 60 || bpf_skb_load_bytes(skb, hlen, ports, 4) ||
	    bpf_ntohs(ports[0]) != ks_cfg_answer_port || skb->len <= hlen + 8 + 12)
		return 1;
	d = bpf_map_lookup_elem(&ks_enf_dns_scratch, &zero);
	if (!d)
		return 1;
	len = skb->len - hlen - 8;
	if (len > KS_ENF_DNS_MAX)
		len = KS_ENF_DNS_MAX;
	{
		/* bounds the verifier keeps on every kernel (see udp.bpf.c) */
		__u32 n = ((len - 1) & KS_ENF_DNS_MASK) + 1;

		barrier_var(n);
		if (bpf_skb_load_bytes(skb, hlen + 8, d->data, ((n - 1) & KS_ENF_DNS_MASK) + 1))
			return 1;
		len = n;
	}
	/* a response (QR), no error, one question */
	if (!(d->data[2] & 0x80) || (d->data[3] & 0xf) || ks_be16(d, 4) != 1)
		return 1;
	an = ks_be16(d, 6);
	mask = ks_enf_name_mask(d, len);
	if (!mask)
		return 1;
	d->off = d->end;
	/* unrolled, as above: each step ends in map updates */
#pragma unroll
	for (int i = 0; i < KS_ENF_ANSWERS; i++) {
		__u32 off, ttl;
		__u16 type, rdlen;

		asm volatile("" ::: "memory");
		off = d->off;
		if (i >= an || off + 12 > len)
			break;
		/* resolvers name an answer by a pointer to the question: an
		 * answer named in full ends the walk (its addresses are not added) */
		if ((d->data[off & KS_ENF_DNS_MASK] & 0xc0) != 0xc0)
			break;
		type = ks_be16(d, off + 2);
		ttl = ((__u32)ks_be16(d, off + 6) << 16) | ks_be16(d, off + 8);
		rdlen = ks_be16(d, off + 10);
		off += 12;
		if (off + rdlen > len)
			break;
		d->off = off + rdlen;
		if (type == 1 && rdlen == 4)
			ks_enf_add_answer(d, off, 2, ttl, mask);
		else if (type == 28 && rdlen == 16)
			ks_enf_add_answer(d, off, 10, ttl, mask);
	}
	(void)family;
	return 1;
}

/* ---- kill ---- */

/* One parent up: its executable's rules in ks_enf_parents. By hand, not a
 * loop (see KS_ENF_SUFFIX): 5.10 refuses a loop head after a helper call. */
#define KS_ENF_PARENT()                                                   \
	do {                                                              \
		struct file *x;                                           \
		__u64 *v;                                                 \
		t = BPF_CORE_READ(t, real_parent);                        \
		if (!t)                                                   \
			return m;                                         \
		x = BPF_CORE_READ(t, mm, exe_file);                       \
		if (x) {                                                  \
			k.ino = BPF_CORE_READ(x, f_inode, i_ino);         \
			k.dev = BPF_CORE_READ(x, f_inode, i_sb, s_dev);   \
			v = bpf_map_lookup_elem(&ks_enf_parents, &k);     \
			if (v)                                            \
				m |= *v;                                  \
		}                                                         \
		if (BPF_CORE_READ(t, tgid) <= 1)                          \
			return m;                                         \
	} while (0)

/* The parent-scoped rules whose executable a parent of `t`, up to 8 up, runs. */
static __always_inline __u64 ks_enf_ancestor_mask(struct task_struct *t)
{
	struct ks_enf_file k = {};
	__u64 m = 0;

	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	KS_ENF_PARENT();
	return m;
}

static __always_inline int ks_enf_exec(void *ctx, struct task_struct *p, struct linux_binprm *bprm)
{
	struct ks_enforce_event e = {};
	struct file *f = BPF_CORE_READ(bprm, file);
	__u64 mask = ks_enf_file_mask(f);
	__u32 rule = 0, result;

	/* a script: bprm->file is its interpreter; the script itself is
	 * bprm->executable (5.8+) */
	if (bpf_core_field_exists(bprm->executable)) {
		struct file *x = BPF_CORE_READ(bprm, executable);

		if (x && x != f)
			mask |= ks_enf_file_mask(x);
	}
	mask &= ks_cfg_kill_rules;
	if (!mask || BPF_CORE_READ(p, tgid) == ks_cfg_self)
		return 0;
	if (mask & ks_cfg_ancestor_rules)
		mask &= ~ks_cfg_ancestor_rules | ks_enf_ancestor_mask(p);
	if (!mask)
		return 0;
	result = ks_enf_decide(mask, 0, p, mask, &rule);
	if (!result)
		return 0;
	if (result == KS_ENF_DENIED)
		result = bpf_send_signal(KS_SIGKILL) ? KS_ENF_FAILED : KS_ENF_KILLED;
	else
		result = KS_ENF_WOULD_KILL;
	ks_enf_count(rule);
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_ENFORCEMENT;
	ks_fill_task(&e.task, p);
	e.exe_ino = BPF_CORE_READ(f, f_inode, i_ino);
	e.exe_dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	e.rule = rule;
	e.action = KS_ENF_KILL;
	e.result = result;
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ks_enf_exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return ks_enf_exec(ctx, p, bprm);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(ks_enf_exec_raw, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return ks_enf_exec(ctx, p, bprm);
}
