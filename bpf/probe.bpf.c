// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * probe.bpf.c: one do-nothing program per hook kind, for `ksight doctor`.
 *
 * The doctor loads and attaches them one at a time (the others set_autoload
 * false, since one refused program fails a whole object) and reports the
 * kernel's own answer for each: what works here, and the errno of what does
 * not (ENOENT without kprobes, EPERM under lockdown, ...).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/sched/sched_process_exec")
int ks_probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("raw_tp/sched_process_exec")
int ks_probe_raw_tp(void *ctx)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ks_probe_tp_btf)
{
	return 0;
}

SEC("kprobe/do_nanosleep")
int ks_probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_nanosleep")
int BPF_PROG(ks_probe_fentry)
{
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(ks_probe_lsm)
{
	return 0;
}

SEC("uprobe")
int ks_probe_uprobe(void *ctx)
{
	return 0;
}

/* allows every connect: attached for an instant to the cgroup v2 root */
SEC("cgroup/connect4")
int ks_probe_cgroup(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("iter/task")
int ks_probe_iter(struct bpf_iter__task *ctx)
{
	return 0;
}
