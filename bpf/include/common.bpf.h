/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * common.bpf.h: what every ksight BPF program shares.
 *
 *   - the transport: the ks_events ring buffer and ks_stats per-CPU counters,
 *     and ks_emit(), the only way a record leaves the kernel (it stamps the
 *     per-CPU sequence number and counts every record the buffer refuses);
 *   - task readers: identity, pid namespace, credentials (CO-RE throughout);
 *   - ks_path_walk(): a dentry/mount walk that works from any hook
 *     (bpf_d_path is restricted to a few LSM/fentry hooks).
 *
 * Transport: the ring buffer (5.8+) by default; on older kernels userspace
 * sets ks_cfg_perf and does not create ks_events, and records go through the
 * per-CPU perf buffer ks_perf instead. The untaken branch is dead code to the
 * verifier (ks_cfg_perf is a load-time constant), so a kernel without ring
 * buffer helpers never sees them. Userspace sizes the maps before load.
 */
#ifndef KS_COMMON_BPF_H
#define KS_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "events.h"

/* ---- configuration, written by userspace into .rodata before load ---- */

/* Force a consumer wake-up once this many bytes wait in the ring; below it
 * records are written with BPF_RB_NO_WAKEUP and userspace polls on a timer.
 * A wake-up costs ~15 us here, so batching them is most of the exec-path cost. */
const volatile __u64 ks_cfg_wakeup_bytes = 256 * 1024;
/* send records through ks_perf instead of ks_events */
const volatile __u32 ks_cfg_perf = 0;
/* report only tasks under one of the first ks_cfg_cgroups cgroups of ks_cgroups */
const volatile __u32 ks_cfg_cgroups = 0;

/* ---- maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* resized by userspace */
} ks_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} ks_perf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_cpu_stats);
} ks_stats SEC(".maps");

#define KS_MAX_CGROUPS 8
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, KS_MAX_CGROUPS);
	__type(key, __u32);
	__type(value, __u32);
} ks_cgroups SEC(".maps");

/* ---- transport ---- */

/*
 * Stamp and send one record. The header's ktime and kind are the caller's;
 * seq, cpu, size and abi are set here. A refused record still consumes a
 * sequence number, so the gap is visible to consumers, and is counted by kind.
 */
static __always_inline void ks_emit(void *ctx, struct ks_event_hdr *hdr, __u32 size)
{
	__u32 zero = 0;
	struct ks_cpu_stats *st = bpf_map_lookup_elem(&ks_stats, &zero);
	long err;

	if (!st)
		return;
	/* Not atomic: another of ksight's programs interrupting this one on its
	 * CPU (a softirq's hook) between the read and the write gives both
	 * records one number. A fetching atomic would close that, but 5.10's
	 * verifier rejects the instruction even in a branch it never takes. */
	hdr->seq = st->seq++;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->size = size;
	hdr->abi = KS_ABI_VERSION;
	if (ks_cfg_perf) {
		err = bpf_perf_event_output(ctx, &ks_perf, BPF_F_CURRENT_CPU, hdr, size);
	} else {
		__u64 flags = BPF_RB_NO_WAKEUP;

		if (bpf_ringbuf_query(&ks_events, BPF_RB_AVAIL_DATA) >= ks_cfg_wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
		err = bpf_ringbuf_output(&ks_events, hdr, size, flags);
	}
	/* atomic: another program can interrupt this one on its CPU (a softirq's
	 * hook), and both may count a drop */
	if (err)
		__sync_fetch_and_add(&st->drops[hdr->kind & (KS_EVENT_KIND_MAX - 1)], 1);
}

/* Is the current task one the user asked for? (--cgroup, decided in the kernel
 * so that unwanted records cost no buffer space.) */
static __always_inline int ks_wanted(void)
{
	if (!ks_cfg_cgroups)
		return 1;
	for (__u32 i = 0; i < KS_MAX_CGROUPS && i < ks_cfg_cgroups; i++)
		if (bpf_current_task_under_cgroup(&ks_cgroups, i) == 1)
			return 1;
	return 0;
}

/* ---- task readers ---- */

/* Before 4.19 a task's struct pid hung off task->pids[PIDTYPE_PID].pid
 * (commit 2c4704756cab moved it to task->thread_pid). */
struct pid_link___ks_old {
	struct hlist_node node;
	struct pid *pid;
} __attribute__((preserve_access_index));
struct task_struct___ks_old {
	struct pid_link___ks_old pids[3];
	u64 real_start_time;
} __attribute__((preserve_access_index));

/*
 * When a task was created, in CLOCK_BOOTTIME ns: what /proc/PID/stat's start
 * time counts (in clock ticks), so that processes older than ksight, known
 * from /proc, are recognised in its records even after the machine slept.
 * task->start_time is CLOCK_MONOTONIC, which stops during suspend. 5.5 renamed
 * real_start_time (boottime since 4.x) to start_boottime.
 */
static __always_inline __u64 ks_task_start(struct task_struct *t)
{
	if (bpf_core_field_exists(t->start_boottime))
		return BPF_CORE_READ(t, start_boottime);
	return BPF_CORE_READ((struct task_struct___ks_old *)t, real_start_time);
}

static __always_inline struct pid *ks_task_pid(struct task_struct *t)
{
	if (bpf_core_field_exists(t->thread_pid))
		return BPF_CORE_READ(t, thread_pid);
	return BPF_CORE_READ((struct task_struct___ks_old *)t, pids[0].pid);
}

/*
 * The pid of `t` as seen in its own (deepest) pid namespace, and that
 * namespace's inode: what `readlink /proc/PID/ns/pid` and `getpid()` inside
 * a container say. task_active_pid_ns() is pid->numbers[pid->level].ns.
 */
static __always_inline __u32 ks_ns_nr(struct task_struct *t, __u32 *ns_ino)
{
	struct pid *pid = ks_task_pid(t);
	unsigned int level;
	struct upid up;

	if (!pid)
		return 0;
	level = BPF_CORE_READ(pid, level);
	if (bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]))
		return 0;
	if (ns_ino)
		*ns_ino = BPF_CORE_READ(up.ns, ns.inum);
	return up.nr;
}

/* The cgroup v2 id of a task (== bpf_get_current_cgroup_id() for the current
 * one), read through the task: cgroup programs cannot call that helper on
 * every kernel (6.1's cgroup_skb cannot). */
static __always_inline __u64 ks_task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

static __always_inline void ks_fill_task_cg(struct ks_task *out, struct task_struct *t,
					    const int helper_cgroup);

static __always_inline void ks_fill_task(struct ks_task *out, struct task_struct *t)
{
	ks_fill_task_cg(out, t, 1);
}

/* ks_fill_task, taking the cgroup id from the helper (tracing programs) or
 * from the task (cgroup programs). */
static __always_inline void ks_fill_task_cg(struct ks_task *out, struct task_struct *t,
					    const int helper_cgroup)
{
	struct task_struct *leader = BPF_CORE_READ(t, group_leader);
	struct task_struct *parent = BPF_CORE_READ(t, real_parent);
	const struct cred *cred = BPF_CORE_READ(t, cred);

	out->pid = BPF_CORE_READ(t, tgid);
	out->tid = BPF_CORE_READ(t, pid);
	out->ppid = BPF_CORE_READ(parent, tgid);
	out->start_ns = ks_task_start(leader);
	out->parent_start_ns = ks_task_start(BPF_CORE_READ(parent, group_leader));
	out->uid = BPF_CORE_READ(cred, uid.val);
	out->gid = BPF_CORE_READ(cred, gid.val);
	out->euid = BPF_CORE_READ(cred, euid.val);
	out->egid = BPF_CORE_READ(cred, egid.val);
	out->auid = 0xffffffff;
	if (bpf_core_field_exists(t->loginuid))
		out->auid = BPF_CORE_READ(t, loginuid.val);
	out->ns_pid = ks_ns_nr(leader, &out->pidns_ino);
	out->ns_tid = ks_ns_nr(t, 0);
	out->flags = 0;
	/* every hook using this runs in t's own context */
	out->cgroup_id = helper_cgroup ? bpf_get_current_cgroup_id() : ks_task_cgroup_id(t);
	BPF_CORE_READ_STR_INTO(&out->comm, t, comm);
}

/*
 * ks_fill_task for a BTF-typed task pointer (tp_btf arguments,
 * bpf_get_current_task_btf): plain loads, relocated by CO-RE and checked by
 * the verifier, instead of a bpf_probe_read per field. `direct` is a constant
 * at every call site, so each program keeps only its own branch.
 */
static __always_inline void ks_fill_task_any(struct ks_task *out, struct task_struct *t,
					     const int direct)
{
	if (!direct) {
		ks_fill_task(out, t);
		return;
	}
	struct task_struct *leader = t->group_leader;
	struct task_struct *parent = t->real_parent;
	const struct cred *cred = t->cred;

	out->pid = t->tgid;
	out->tid = t->pid;
	out->ppid = parent->tgid;
	out->start_ns = ks_task_start(leader);
	out->parent_start_ns = ks_task_start(parent->group_leader);
	out->uid = cred->uid.val;
	out->gid = cred->gid.val;
	out->euid = cred->euid.val;
	out->egid = cred->egid.val;
	out->auid = 0xffffffff;
	if (bpf_core_field_exists(t->loginuid))
		out->auid = t->loginuid.val;
	out->ns_pid = ks_ns_nr(leader, &out->pidns_ino);
	out->ns_tid = ks_ns_nr(t, 0);
	out->flags = 0;
	out->cgroup_id = bpf_get_current_cgroup_id();
	__builtin_memcpy(out->comm, t->comm, sizeof(out->comm));
}

/* The current task as a BTF pointer where the kernel offers one (5.11+). */
static __always_inline struct task_struct *ks_current_btf(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf();
	return 0;
}

/* ---- sockets ---- */

#define KS_AF_UNIX 1
#define KS_AF_INET 2
#define KS_AF_INET6 10

/* A socket's family, addresses and ports, by probe reads (any hook). */
static __always_inline void ks_sock_tuple_read(struct ks_sock_tuple *t, const struct sock *sk)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (t->family == KS_AF_INET6) {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else if (t->family == KS_AF_INET) {
		bpf_core_read(t->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, 4, &sk->__sk_common.skc_daddr);
	}
}

/* ---- path walk ---- */

/*
 * Append the path of (dentry, vfsmount) to buf, leaf first, one NUL-terminated
 * component per name, crossing mount points upwards until the root of the
 * task's mount namespace. The bytes go at buf[base + *lenp ...] and *lenp grows
 * by what was written; `*truncated` is set when the walk stopped at
 * KS_PATH_DEPTH or KS_PATH_MAX.
 *
 * base, *lenp and *truncated live in map memory, not in registers, on purpose:
 * the verifier then sees the same unknown-but-bounded offset in every
 * iteration and after every exit of the loop, so it can prune, instead of
 * re-verifying everything that follows once per distinct offset range (that
 * blew the 1M instruction budget). Every write is masked into
 * [0, KS_DATA_MASK] + KS_NAME_MAX, which the caller's buffer must cover.
 */
static __always_inline void ks_path_walk_n(__u8 *buf, __u16 *basep, __u16 *lenp, __u32 *flags,
					   __u32 trunc_flag, struct dentry *dentry,
					   struct vfsmount *vfsmnt, const int depth)
{
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);

	*lenp = 0;
	for (int i = 0; i < depth; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

		if (dentry == mnt_root || dentry == parent) {
			struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

			/* the root of the namespace */
			if (dentry == mnt_root && mnt == mnt_parent)
				return;
			/* a file of no tree (memfd, other pseudo files: their own
			 * root) or the root of a detached one: its name, and stop */
			if (dentry != mnt_root) {
				__u32 len = *lenp;
				__u32 off = (__u32)*basep + len;
				long n = bpf_probe_read_kernel_str(&buf[off & KS_DATA_MASK], KS_NAME_MAX,
								   BPF_CORE_READ(dentry, d_name.name));
				if (n > 0 && len <= KS_PATH_MAX - KS_NAME_MAX)
					*lenp = len + n;
				return;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			vfsmnt = (void *)mnt + bpf_core_field_offset(struct mount, mnt);
			continue;
		}
		__u32 len = *lenp;
		if (len > KS_PATH_MAX - KS_NAME_MAX)
			break;
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		__u32 off = (__u32)*basep + len;
		long n = bpf_probe_read_kernel_str(&buf[off & KS_DATA_MASK], KS_NAME_MAX, name);
		if (n <= 0)
			break;
		*lenp = len + n;
		dentry = parent;
	}
	*flags |= trunc_flag;
}

/* ks_path_walk_n as deep as any path ksight reports */
static __always_inline void ks_path_walk(__u8 *buf, __u16 *basep, __u16 *lenp, __u32 *flags,
					 __u32 trunc_flag, struct dentry *dentry,
					 struct vfsmount *vfsmnt)
{
	ks_path_walk_n(buf, basep, lenp, flags, trunc_flag, dentry, vfsmnt, KS_PATH_DEPTH);
}

#endif /* KS_COMMON_BPF_H */
