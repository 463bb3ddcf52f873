/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * netfilter.bpf.h: the in-kernel filters of network events (--port,
 * --no-loopback), shared by net.bpf.c and udp.bpf.c. Deciding here means an
 * unwanted connection or flow takes no map entry and no buffer space.
 */
#ifndef KS_NETFILTER_BPF_H
#define KS_NETFILTER_BPF_H

#include "common.bpf.h"

/* keep only traffic with one of the ports in ks_ports (local or remote) */
const volatile __u32 ks_cfg_ports = 0;
/* drop traffic whose remote end is a loopback address */
const volatile __u32 ks_cfg_no_loopback = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16); /* host byte order */
	__type(value, __u8);
} ks_ports SEC(".maps");

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 (addresses in network byte order) */
static __always_inline int ks_is_loopback(const __u8 *a, __u16 family)
{
	if (family == 2)
		return a[0] == 127;
	for (int i = 0; i < 10; i++)
		if (a[i])
			return 0;
	if (a[10] == 0xff && a[11] == 0xff)
		return a[12] == 127;
	if (a[10] || a[11] || a[12] || a[13] || a[14])
		return 0;
	return a[15] == 1;
}

static __always_inline int ks_net_wanted(__u16 lport, __u16 rport, const __u8 *raddr,
					 __u16 family)
{
	if (ks_cfg_no_loopback && ks_is_loopback(raddr, family))
		return 0;
	if (ks_cfg_ports && !bpf_map_lookup_elem(&ks_ports, &lport) &&
	    !bpf_map_lookup_elem(&ks_ports, &rport))
		return 0;
	return 1;
}

#endif /* KS_NETFILTER_BPF_H */
