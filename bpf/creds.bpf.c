// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * creds.bpf.c: the optional credentials hook. Every change of a task's
 * credentials goes through commit_creds(new) (setuid, setresgid, capset,
 * a kernel exploit that builds its own cred and commits it); this hook sees
 * each as it happens, in the task's context, with the old credentials still
 * in place. Changes an exec makes (set-id bits, file capabilities) are the
 * exec event's: while the task is in execve they leave at once. So do
 * commits that change neither an id nor the effective capabilities (keyring
 * and fs-id bookkeeping).
 *
 * Two flavours of one handler; userspace loads the first this kernel accepts
 * (both optional: fentry is refused under lockdown, kprobes need
 * CONFIG_KPROBES):
 *   - fentry/commit_creds
 *   - kprobe/commit_creds
 * Where neither attaches, the `cred_change` kind falls back to comparing the
 * credentials other hooks record (userspace, found late). Paid per commit.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline __u64 ks_caps(const struct cred *c)
{
	kernel_cap_t cap = BPF_CORE_READ(c, cap_effective);
	__u64 v = 0;

	/* a u64 since 6.3, two u32s before */
	bpf_probe_read_kernel(&v, sizeof(v), &cap);
	return v;
}

static __always_inline int on_commit(void *ctx, struct cred *new)
{
	struct task_struct *current = (struct task_struct *)bpf_get_current_task();
	const struct cred *old = BPF_CORE_READ(current, real_cred);
	struct ks_cred_event e = {};

	if (bpf_core_field_exists(current->in_execve) &&
	    BPF_CORE_READ_BITFIELD_PROBED(current, in_execve))
		return 0;
	e.uid = BPF_CORE_READ(new, uid.val);
	e.euid = BPF_CORE_READ(new, euid.val);
	e.gid = BPF_CORE_READ(new, gid.val);
	e.egid = BPF_CORE_READ(new, egid.val);
	e.old_cap_effective = ks_caps(old);
	e.new_cap_effective = ks_caps(new);
	if (e.uid == BPF_CORE_READ(old, uid.val) && e.euid == BPF_CORE_READ(old, euid.val) &&
	    e.gid == BPF_CORE_READ(old, gid.val) && e.egid == BPF_CORE_READ(old, egid.val) &&
	    e.old_cap_effective == e.new_cap_effective)
		return 0;
	if (!ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_CRED_CHANGE;
	ks_fill_task_any(&e.task, current, 0);
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

SEC("fentry/commit_creds")
int BPF_PROG(ks_creds_fentry, struct cred *new)
{
	return on_commit(ctx, new);
}

SEC("kprobe/commit_creds")
int BPF_KPROBE(ks_creds_kprobe, struct cred *new)
{
	return on_commit(ctx, new);
}
