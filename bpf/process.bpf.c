// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * process.bpf.c: process lifecycle (fork, exec, exit).
 *
 * Each hook comes twice: as tp_btf (5.5+, BTF-typed arguments, cheapest) and
 * as raw_tp (4.17+, same arguments as a u64 array). Userspace loads one set
 * and disables the other with set_autoload(false). Both read the task with
 * BPF_CORE_READ, so the bodies below are shared.
 *
 * Only the tracepoint arguments that every kernel since 4.17 has are used:
 * sched_process_exit gained a `group_dead` argument in 6.x; we do not read it.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- configuration ---- */

/* argv bytes copied per exec (userspace clamps it to [64, KS_ARGV_MAX]) */
const volatile __u32 ks_cfg_argv_max = 16384;
/* report thread creation and thread exit, not only processes */
const volatile __u32 ks_cfg_threads = 0;

/* ---- maps ---- */

/* An exec record under construction, and the path walks' cursor (kept in
 * map memory on purpose: see ks_path_walk). */
struct ks_exec_scratch {
	struct ks_exec_event ev;
	__u16 off;
	__u16 _pad[3];
};

/* Exec records (up to ~70 KiB) are built here, one slot per CPU, then copied
 * into the ring buffer at their real length. A plain array indexed by CPU:
 * per-CPU array values are capped at 32 KiB. max_entries = possible CPUs,
 * set by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_exec_scratch);
} ks_scratch SEC(".maps");

/* ---- exec ---- */

/* from include/uapi/linux/stat.h */
#define KS_S_IFMT 0170000
#define KS_S_IFSOCK 0140000
#define KS_S_IFLNK 0120000
#define KS_S_IFREG 0100000
#define KS_S_IFBLK 0060000
#define KS_S_IFDIR 0040000
#define KS_S_IFCHR 0020000
#define KS_S_IFIFO 0010000
/* include/linux/mount.h: kern_mount()ed, never in a namespace (shm_mnt of memfd) */
#define KS_MNT_INTERNAL 0x4000

/*
 * A field of a BTF-typed pointer (tp_btf arguments and what they lead to):
 * a plain load, relocated by CO-RE and checked by the verifier; else (raw_tp)
 * a probe read. `direct` is a constant at every call site.
 */
#define KS_RD(direct, p, field) ((direct) ? (p)->field : BPF_CORE_READ(p, field))

/* inode times moved: 6.6 renamed i_ctime to __i_ctime, 6.7 i_mtime to
 * __i_mtime, 6.11 split both into i_[cm]time_sec and _nsec (vmlinux.h).
 * preserve_access_index: plain loads through these flavours (tp_btf) are
 * relocated too, not compiled at these local offsets (which on 5.10 read
 * i_mode as 8 bytes, and the verifier refused the program). */
struct inode___ks_v67 {
	struct timespec64 __i_mtime;
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___ks_v66 {
	struct timespec64 i_mtime;
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___ks_old {
	struct timespec64 i_mtime;
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

static __always_inline void exec_file_times(struct ks_exec_file *f, struct inode *ino,
					    const int direct)
{
	if (bpf_core_field_exists(ino->i_ctime_sec)) {
		f->ctime_sec = KS_RD(direct, ino, i_ctime_sec);
		/* 6.13+ keeps a flag (I_CTIME_QUERIED, multigrain timestamps) in bit 31 */
		f->ctime_nsec = KS_RD(direct, ino, i_ctime_nsec) & 0x7fffffff;
		f->mtime_sec = KS_RD(direct, ino, i_mtime_sec);
		f->mtime_nsec = KS_RD(direct, ino, i_mtime_nsec);
	} else if (bpf_core_field_exists(((struct inode___ks_v67 *)ino)->__i_mtime)) {
		struct inode___ks_v67 *o = (void *)ino;

		f->ctime_sec = KS_RD(direct, o, __i_ctime.tv_sec);
		f->ctime_nsec = KS_RD(direct, o, __i_ctime.tv_nsec);
		f->mtime_sec = KS_RD(direct, o, __i_mtime.tv_sec);
		f->mtime_nsec = KS_RD(direct, o, __i_mtime.tv_nsec);
	} else if (bpf_core_field_exists(((struct inode___ks_v66 *)ino)->__i_ctime)) {
		struct inode___ks_v66 *o = (void *)ino;

		f->ctime_sec = KS_RD(direct, o, __i_ctime.tv_sec);
		f->ctime_nsec = KS_RD(direct, o, __i_ctime.tv_nsec);
		f->mtime_sec = KS_RD(direct, o, i_mtime.tv_sec);
		f->mtime_nsec = KS_RD(direct, o, i_mtime.tv_nsec);
	} else {
		struct inode___ks_old *o = (void *)ino;

		f->ctime_sec = KS_RD(direct, o, i_ctime.tv_sec);
		f->ctime_nsec = KS_RD(direct, o, i_ctime.tv_nsec);
		f->mtime_sec = KS_RD(direct, o, i_mtime.tv_sec);
		f->mtime_nsec = KS_RD(direct, o, i_mtime.tv_nsec);
	}
}

/* The executed file's identity, from its inode. */
static __always_inline void exec_file(struct ks_exec_file *f, struct file *file,
				      const int direct)
{
	struct vfsmount *mnt = KS_RD(direct, file, f_path.mnt);
	struct inode *ino = KS_RD(direct, file, f_inode);
	struct super_block *sb = KS_RD(direct, ino, i_sb);

	f->ino = KS_RD(direct, ino, i_ino);
	f->size = KS_RD(direct, ino, i_size);
	f->dev = KS_RD(direct, sb, s_dev);
	f->magic = KS_RD(direct, sb, s_magic);
	f->mode = KS_RD(direct, ino, i_mode);
	f->uid = KS_RD(direct, ino, i_uid.val);
	f->gid = KS_RD(direct, ino, i_gid.val);
	f->nlink = KS_RD(direct, ino, i_nlink);
	f->flags = (KS_RD(direct, mnt, mnt_flags) & KS_MNT_INTERNAL) ? KS_FILE_INTERNAL_MNT : 0;
	exec_file_times(f, ino, direct);
}

/* The credentials the exec left (committed before this tracepoint), and
 * whether set-id bits or file capabilities made them. kernel_cap_t is one
 * u64 since 6.3, two u32 before: eight bytes either way. */
static __always_inline void exec_cred(struct ks_exec_cred *c, struct task_struct *task,
				      struct linux_binprm *bprm, const int direct)
{
	const struct cred *cred = KS_RD(direct, task, cred);

	if (direct && bpf_core_field_exists(cred->cap_effective.val)) {
		c->cap_effective = cred->cap_effective.val;
		c->cap_permitted = cred->cap_permitted.val;
	} else {
		c->cap_effective = 0;
		c->cap_permitted = 0;
		bpf_core_read(&c->cap_effective, 8, &cred->cap_effective);
		bpf_core_read(&c->cap_permitted, 8, &cred->cap_permitted);
	}
	c->suid = KS_RD(direct, cred, suid.val);
	c->sgid = KS_RD(direct, cred, sgid.val);
	c->per_clear = KS_RD(direct, bprm, per_clear);
	c->secure = BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec);
}

/* Components of a stdio file's path walked at most: each of the three walks
 * costs the verifier (ksight's start) in proportion. */
#define KS_STDIO_PATH_DEPTH 16

/* What fds 0, 1 and 2 are; the paths of files and directories go into the
 * data area from s->off on (walked like exe and cwd). */
static __always_inline void exec_stdio(struct ks_exec_scratch *s, struct task_struct *task)
{
	struct ks_exec_event *e = &s->ev;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	__u32 max = BPF_CORE_READ(fdt, max_fds);

	for (int i = 0; i < 3; i++) {
		struct ks_stdio *sd = &e->stdio[i];
		struct file *f = 0;
		int walk = 0;

		__builtin_memset(sd, 0, sizeof(*sd));
		if (i >= max || bpf_probe_read_kernel(&f, sizeof(f), &fds[i]) || !f)
			continue;
		/* a pointer read from the fd array is no BTF pointer: probe reads
		 * from here on, as few as the type needs */
		struct inode *ino = BPF_CORE_READ(f, f_inode);
		__u32 mode = BPF_CORE_READ(ino, i_mode);

		switch (mode & KS_S_IFMT) {
		case KS_S_IFREG:
			sd->type = KS_STDIO_FILE;
			walk = 1;
			break;
		case KS_S_IFDIR:
			sd->type = KS_STDIO_DIR;
			walk = 1;
			break;
		case KS_S_IFCHR:
		case KS_S_IFBLK:
			/* the device number names it (userspace knows /dev/null, the
			 * ptys, ...): a path walk here would cost more than the rest */
			sd->type = (mode & KS_S_IFMT) == KS_S_IFCHR ? KS_STDIO_CHAR : KS_STDIO_BLOCK;
			sd->rdev = BPF_CORE_READ(ino, i_rdev);
			break;
		case KS_S_IFIFO:
			sd->type = KS_STDIO_PIPE;
			sd->ino = BPF_CORE_READ(ino, i_ino);
			break;
		case KS_S_IFSOCK: {
			struct socket *so = BPF_CORE_READ(f, private_data);
			struct sock *sk = BPF_CORE_READ(so, sk);

			sd->type = KS_STDIO_SOCKET;
			if (sk) {
				ks_sock_tuple_read(&sd->sock, sk);
				sd->sock_type = BPF_CORE_READ(sk, sk_type);
				sd->protocol = BPF_CORE_READ(sk, sk_protocol);
			}
			break;
		}
		default:
			sd->type = KS_STDIO_OTHER;
		}
		if (walk)
			ks_path_walk_n(e->data, &s->off, &sd->path_len, &e->info.flags,
				       KS_EXEC_STDIO_TRUNCATED, BPF_CORE_READ(f, f_path.dentry),
				       BPF_CORE_READ(f, f_path.mnt), KS_STDIO_PATH_DEPTH);
		/* the next path goes after this one (in map memory: see ks_path_walk) */
		s->off += sd->path_len;
	}
}

static __always_inline int on_exec(void *ctx, struct task_struct *task, pid_t old_pid,
				   struct linux_binprm *bprm, const int direct)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct ks_exec_scratch *s = bpf_map_lookup_elem(&ks_scratch, &cpu);
	struct ks_exec_event *e;
	__u32 off, n;
	long got;

	if (!s || !ks_wanted())
		return 0;
	e = &s->ev;
	e->hdr.ktime = bpf_ktime_get_ns();
	e->hdr.kind = KS_EVENT_EXEC;
	ks_fill_task_any(&e->task, task, direct);
	e->info.flags = 0;
	e->info.old_tid = old_pid;

	/* argv: the new image's arg pages, already set up at this point */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u32 len = arg_end > arg_start ? arg_end - arg_start : 0;
	__u32 max = ks_cfg_argv_max;

	if (max > KS_ARGV_MAX)
		max = KS_ARGV_MAX;
	if (len > max) {
		len = max;
		e->info.flags |= KS_EXEC_ARGV_TRUNCATED;
	}
	if (len > KS_ARGV_MAX)
		len = KS_ARGV_MAX;
	if (len && bpf_probe_read_user(e->data, len, (void *)arg_start)) {
		len = 0;
		e->info.flags |= KS_EXEC_ARGV_FAULT;
	}
	e->info.argv_len = len;
	off = len;

	/* filename as passed to execve (may be relative, or /dev/fd/N) */
	const char *filename = BPF_CORE_READ(bprm, filename);
	got = bpf_probe_read_kernel_str(&e->data[off & KS_DATA_MASK], KS_PATH_MAX, filename);
	n = got > 0 ? got - 1 : 0; /* drop the NUL */
	e->info.filename_len = n;
	off += n;

	/* binfmt_script/misc replace bprm->interp; bprm->file is then the
	 * interpreter and the script itself is `filename` */
	int script = BPF_CORE_READ(bprm, interp) != filename;
	struct file *file = KS_RD(direct, bprm, file);
	/* probe reads, whatever `direct` says: the path walks mix these with
	 * pointers they probe-read themselves, and a walk whose pointers change
	 * type between iterations defeats the verifier's pruning (4x the time) */
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);

	/* the walks find their offsets in s->off (map memory): see ks_path_walk */
	e->info.exe_len = 0;
	e->info.interp_len = 0;
	s->off = e->info.argv_len + e->info.filename_len;
	if (script) {
		e->info.flags |= KS_EXEC_SCRIPT;
		ks_path_walk(e->data, &s->off, &e->info.interp_len, &e->info.flags,
			     KS_EXEC_INTERP_TRUNCATED, dentry, vfsmnt);
	} else {
		ks_path_walk(e->data, &s->off, &e->info.exe_len, &e->info.flags,
			     KS_EXEC_EXE_TRUNCATED, dentry, vfsmnt);
	}

	/* cwd */
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	s->off = e->info.argv_len + e->info.filename_len + e->info.exe_len +
			 e->info.interp_len;
	ks_path_walk(e->data, &s->off, &e->info.cwd_len, &e->info.flags,
		     KS_EXEC_CWD_TRUNCATED, BPF_CORE_READ(fs, pwd.dentry), BPF_CORE_READ(fs, pwd.mnt));

	exec_file(&e->file, file, direct);
	exec_cred(&e->cred, task, bprm, direct);
	s->off = e->info.argv_len + e->info.filename_len + e->info.exe_len + e->info.interp_len +
		 e->info.cwd_len;
	exec_stdio(s, task);

	/* controlling terminal */
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	e->info.tty[0] = 0;
	if (tty)
		bpf_probe_read_kernel_str(e->info.tty, sizeof(e->info.tty), BPF_CORE_READ(tty, name));

	off = e->info.argv_len + e->info.filename_len + e->info.exe_len + e->info.interp_len +
	      e->info.cwd_len + e->stdio[0].path_len + e->stdio[1].path_len + e->stdio[2].path_len;
	__u32 size = offsetof(struct ks_exec_event, data) + (off & KS_DATA_MASK);
	if (size > sizeof(*e))
		return 0;
	ks_emit(ctx, &e->hdr, size);
	return 0;
}

/* sched_process_exec: fires only after the point of no return of a
 * successful exec (a failed execve never gets here), in the new image's
 * context. 4.4+ as a tracepoint; paid only by execs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(ks_exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(ctx, p, old_pid, bprm, 1);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(ks_exec_raw, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(ctx, p, old_pid, bprm, 0);
}

/* ---- fork ---- */

static __always_inline int on_fork(void *ctx, struct task_struct *parent,
				   struct task_struct *child, const int direct)
{
	struct ks_fork_event e = {};
	__u32 child_pid = BPF_CORE_READ(child, tgid);
	__u32 child_tid = BPF_CORE_READ(child, pid);
	int thread = child_pid != child_tid;

	if ((thread && !ks_cfg_threads) || !ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_FORK;
	ks_fill_task_any(&e.task, parent, direct);
	e.child_pid = child_pid;
	e.child_tid = child_tid;
	e.child_start_ns = ks_task_start(BPF_CORE_READ(child, group_leader));
	e.child_ns_pid = ks_ns_nr(child, &e.child_pidns_ino);
	e.child_ns_tid = e.child_ns_pid;
	if (thread) {
		e.flags |= KS_FORK_THREAD;
		e.child_ns_pid = e.task.ns_pid;
	}
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

/* sched_process_fork: every fork/vfork/clone, in the parent's context, after
 * copy_process and before the child is first woken, so this record is in the
 * ring before anything the child does. Paid only by task creation. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(ks_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(ctx, parent, child, 1);
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(ks_fork_raw, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(ctx, parent, child, 0);
}

/* ---- exit ---- */

static __always_inline int on_exit(void *ctx, struct task_struct *task, const int direct)
{
	struct ks_exit_event e = {};
	/* do_exit() decremented signal->live before this tracepoint: zero means
	 * this is the last thread. Two threads exiting at once may both see zero;
	 * userspace keeps the first exit of a process. */
	int last = BPF_CORE_READ(task, signal, live.counter) == 0;

	if ((!last && !ks_cfg_threads) || !ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_EXIT;
	ks_fill_task_any(&e.task, task, direct);
	e.exit_code = BPF_CORE_READ(task, exit_code);
	if (!last)
		e.flags |= KS_EXIT_THREAD;
	/* threads already reaped were folded into signal->[us]time; this one
	 * is folded in later by __exit_signal(), so add it here */
	e.utime_ns = BPF_CORE_READ(task, signal, utime) + BPF_CORE_READ(task, utime);
	e.stime_ns = BPF_CORE_READ(task, signal, stime) + BPF_CORE_READ(task, stime);
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

/* sched_process_exit: once per exiting thread, in its context, after
 * exit_code is set and before the parent is notified. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ks_exit_btf, struct task_struct *p)
{
	return on_exit(ctx, p, 1);
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(ks_exit_raw, struct task_struct *p)
{
	return on_exit(ctx, p, 0);
}
