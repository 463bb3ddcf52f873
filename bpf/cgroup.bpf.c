// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * cgroup.bpf.c: cgroup v2 directories as they are made, with their path.
 *
 * Userspace names a cgroup id by walking /sys/fs/cgroup; a cgroup that is
 * removed before that walk (a container that runs one command, a systemd
 * unit that ends at once) would stay unnamed, and with it its container id.
 * The kernel says the path when it makes the directory, before any task can
 * run in it, so the record comes before every event made there.
 *
 * One hook: cgroup/cgroup_mkdir (its path argument since 4.18; BTF-typed as
 * tp_btf 5.5+, else raw_tp). Paid per mkdir in a cgroup hierarchy, never by
 * processes or packets. v1 hierarchies' mkdirs leave at the first test.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_cgroup_event);
} ks_cgroup_scratch SEC(".maps");

static __always_inline int on_mkdir(void *ctx, struct cgroup *cgrp, const char *path)
{
	__u32 zero = 0;
	struct ks_cgroup_event *e;
	long n;

	/* the default (v2) hierarchy is the first: hierarchy id 0 */
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0;
	/* not filtered by --cgroup here: the maker (a runtime, systemd) is
	 * rarely in the cgroup it makes, and the path is needed either way */
	e = bpf_map_lookup_elem(&ks_cgroup_scratch, &zero);
	if (!e)
		return 0;
	e->hdr.ktime = bpf_ktime_get_ns();
	e->hdr.kind = KS_EVENT_CGROUP;
	ks_fill_task(&e->task, (struct task_struct *)bpf_get_current_task());
	e->id = BPF_CORE_READ(cgrp, kn, id);
	n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	if (n < 1)
		return 0;
	e->len = n - 1;
	/* a full buffer: the path may go on */
	e->truncated = n == sizeof(e->path);
	ks_emit(ctx, &e->hdr, sizeof(*e));
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(ks_cgroup_btf, struct cgroup *cgrp, const char *path)
{
	return on_mkdir(ctx, cgrp, path);
}

SEC("raw_tp/cgroup_mkdir")
int BPF_PROG(ks_cgroup_raw, struct cgroup *cgrp, const char *path)
{
	return on_mkdir(ctx, cgrp, path);
}
