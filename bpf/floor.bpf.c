// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * floor.bpf.c: ksight's hooks with programs that return at once, for
 * `ksight bench overhead`: the bare cost of being attached, against which
 * ksight's own programs are measured.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ks_floor_fork)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ks_floor_exec)
{
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ks_floor_exit)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ks_floor_tcp)
{
	return 0;
}

SEC("cgroup_skb/egress")
int ks_floor_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int ks_floor_ingress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup/sock_create")
int ks_floor_create(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/sock_release")
int ks_floor_release(struct bpf_sock *ctx)
{
	return 1;
}
