// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * gai.bpf.c: libc getaddrinfo, the application's view of name resolution.
 *
 * A uprobe on entry (the name asked) and a uretprobe on return (result,
 * addresses, latency), attached to the host's libc for every process: paid
 * only by the processes that call getaddrinfo. When a local stub resolver
 * sends the packets, this still names the application that asked.
 * Optional: a kernel or libc without uprobes loses only this view.
 */
#include "common.bpf.h"
#include "netfilter.bpf.h" /* not used here: the knobs every network object shares */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* glibc's struct addrinfo on x86_64 (a user ABI: not in kernel BTF) */
#define KS_AI_FAMILY 4
#define KS_AI_ADDR 24
#define KS_AI_NEXT 40

struct ks_gai_call {
	__u64 start_ns;
	__u64 res;	/* struct addrinfo ** */
	char name[KS_GAI_NAME];
};

/* Calls in progress, by thread. 4096 x (272 B + 8 B + ~64 B) ~ 1.4 MiB. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ks_gai_call);
} ks_gai_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_getaddrinfo_event);
} ks_gai_scratch SEC(".maps");

static __always_inline struct ks_getaddrinfo_event *ks_gai_record(__u32 phase)
{
	__u32 zero = 0;
	struct ks_getaddrinfo_event *e = bpf_map_lookup_elem(&ks_gai_scratch, &zero);

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.ktime = bpf_ktime_get_ns();
	e->hdr.kind = KS_EVENT_GETADDRINFO;
	e->phase = phase;
	ks_fill_task(&e->task, (struct task_struct *)bpf_get_current_task());
	return e;
}

SEC("uprobe")
int BPF_KPROBE(ks_gai_enter, const char *node, const char *service, const void *hints, void **res)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ks_gai_call *c;
	struct ks_getaddrinfo_event *e;

	if (!ks_wanted())
		return 0;
	e = ks_gai_record(KS_GAI_CALL);
	if (!e)
		return 0;
	if (node)
		bpf_probe_read_user_str(e->name, sizeof(e->name), node);
	/* the call, with its name, waits in the map for the return; the entry
	 * is created from the record's bytes (too big for the stack) and then
	 * filled in place */
	bpf_map_update_elem(&ks_gai_calls, &id, &e->hdr.ktime, BPF_ANY);
	c = bpf_map_lookup_elem(&ks_gai_calls, &id);
	if (c) {
		c->start_ns = e->hdr.ktime;
		c->res = (__u64)res;
		__builtin_memcpy(c->name, e->name, sizeof(c->name));
	}
	ks_emit(ctx, &e->hdr, sizeof(*e));
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(ks_gai_exit, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ks_gai_call *c = bpf_map_lookup_elem(&ks_gai_calls, &id);
	struct ks_getaddrinfo_event *e;
	void *ai = 0;

	if (!c)
		return 0;
	e = ks_gai_record(KS_GAI_RETURN);
	if (!e)
		goto out;
	e->ret = ret;
	e->latency_ns = e->hdr.ktime - c->start_ns;
	__builtin_memcpy(e->name, c->name, sizeof(e->name));
	if (ret == 0 && c->res)
		bpf_probe_read_user(&ai, sizeof(ai), (void *)c->res);
	for (int i = 0; i < KS_GAI_ADDRS && ai; i++) {
		int family = 0;
		void *sa = 0;

		bpf_probe_read_user(&family, sizeof(family), ai + KS_AI_FAMILY);
		bpf_probe_read_user(&sa, sizeof(sa), ai + KS_AI_ADDR);
		if (sa && family == 2)
			bpf_probe_read_user(e->addrs[i], 4, sa + 4);	/* sin_addr */
		else if (sa && family == 10)
			bpf_probe_read_user(e->addrs[i], 16, sa + 8);	/* sin6_addr */
		else
			family = 0;
		e->families[i] = family;
		bpf_probe_read_user(&ai, sizeof(ai), ai + KS_AI_NEXT);
	}
	ks_emit(ctx, &e->hdr, sizeof(*e));
out:
	bpf_map_delete_elem(&ks_gai_calls, &id);
	return 0;
}
