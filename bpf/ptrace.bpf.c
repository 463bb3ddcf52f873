// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * ptrace.bpf.c: the optional ptrace hook. A process that gains access to
 * another one's memory: ptrace attach or seize (gdb -p, strace -p),
 * process_vm_readv/writev, /proc/PID/mem, pidfd_getfd. Every such path passes
 * the kernel's access check, __ptrace_may_access, which ends in
 * security_ptrace_access_check(child, mode) for the accesses it allows (a
 * process touching its own thread group never gets there). Only attach-mode
 * checks are reported: the read-mode ones that ps and top make for /proc/PID
 * files leave at the first test. Later requests of an attached tracer
 * (PTRACE_POKEDATA, ...) pass no access check: the attach is what is seen.
 *
 * Two flavours of one handler; userspace loads the first this kernel accepts
 * (both optional: fentry is refused under lockdown, kprobes need
 * CONFIG_KPROBES):
 *   - fentry/security_ptrace_access_check
 *   - kprobe/security_ptrace_access_check
 * Where neither attaches, ptrace is a documented gap (the doctor says so).
 * Paid per access check in attach mode.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KS_PTRACE_MODE_ATTACH 0x02
/* x86-64's kernel stack (without KASAN): the user registers sit at its top */
#define KS_THREAD_SIZE 16384

static __always_inline int on_check(void *ctx, struct task_struct *child, unsigned int mode)
{
	struct task_struct *current = (struct task_struct *)bpf_get_current_task();
	struct ks_ptrace_event e = {};
	struct pt_regs *regs;
	void *stack;

	if (!(mode & KS_PTRACE_MODE_ATTACH) || !ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_PTRACE;
	ks_fill_task_any(&e.task, current, 0);
	ks_fill_task_cg(&e.target, child, 0);
	e.mode = mode;
	/* which syscall asked: its number and first argument, from the user
	 * registers saved at the top of the kernel stack */
	stack = BPF_CORE_READ(current, stack);
	regs = (struct pt_regs *)((char *)stack + KS_THREAD_SIZE) - 1;
	e.syscall = BPF_CORE_READ(regs, orig_ax);
	e.arg0 = BPF_CORE_READ(regs, di);
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

SEC("fentry/security_ptrace_access_check")
int BPF_PROG(ks_ptrace_fentry, struct task_struct *child, unsigned int mode)
{
	return on_check(ctx, child, mode);
}

SEC("kprobe/security_ptrace_access_check")
int BPF_KPROBE(ks_ptrace_kprobe, struct task_struct *child, unsigned int mode)
{
	return on_check(ctx, child, mode);
}
