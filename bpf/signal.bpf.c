// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * signal.bpf.c: signals one process sends another (kill, tgkill, sigqueue,
 * pidfd_send_signal), and SIGKILLs the kernel sends (the OOM killer).
 *
 * One hook: signal/signal_generate (a tracepoint since 3.10; its siginfo is
 * `struct kernel_siginfo` since 4.20), as tp_btf (5.5+) or raw_tp. It fires for every signal the
 * kernel generates, most of them SIGCHLD at every exit: those, and every
 * other signal whose default action neither ends nor stops a process, leave
 * at the first comparison. A process signalling itself, and signals from
 * timers and faults (si_code other than user, queue, tkill; kernel for
 * SIGKILL only), leave at the second. Paid per signal, not per syscall.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* si_code values (include/uapi/asm-generic/siginfo.h) */
#define KS_SI_USER 0
#define KS_SI_QUEUE -1
#define KS_SI_TKILL -6
#define KS_SI_KERNEL 0x80
#define KS_SIGKILL 9

/* Signals whose default action ends (or stops) a process: 1..31 but for
 * SIGCHLD (17), SIGCONT (18), SIGURG (23), SIGWINCH (28). Real-time signals
 * (32+) are IPC (glibc uses two internally) and are not reported. */
#define KS_SIGNALS_REPORTED (0xfffffffeu & ~((1u << 17) | (1u << 18) | (1u << 23) | (1u << 28)))

static __always_inline int on_signal(void *ctx, int sig, struct kernel_siginfo *info,
				     struct task_struct *target, int group, int result,
				     struct task_struct *current, const int direct)
{
	struct ks_signal_event e = {};
	int code;

	if (sig <= 0 || sig >= 32 || !(KS_SIGNALS_REPORTED & (1u << sig)))
		return 0;
	/* SEND_SIG_NOINFO (0) is a user's kill, SEND_SIG_PRIV (1) the kernel's */
	if ((unsigned long)info == 0)
		code = KS_SI_USER;
	else if ((unsigned long)info == 1)
		code = KS_SI_KERNEL;
	else
		code = BPF_CORE_READ(info, si_code);
	if (code != KS_SI_USER && code != KS_SI_QUEUE && code != KS_SI_TKILL &&
	    !(code == KS_SI_KERNEL && sig == KS_SIGKILL))
		return 0;
	if (BPF_CORE_READ(target, tgid) == BPF_CORE_READ(current, tgid) || !ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_SIGNAL;
	ks_fill_task_any(&e.task, current, direct);
	/* the target's cgroup is its own, not the sender's: read through the task */
	ks_fill_task_cg(&e.target, target, 0);
	e.sig = sig;
	e.code = code;
	e.result = result;
	e.group = group;
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(ks_signal_btf, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	struct task_struct *current = ks_current_btf();

	/* before 5.11 no BTF pointer to the current task: read it as raw_tp does */
	if (!current)
		return on_signal(ctx, sig, info, task, group, result,
				 (struct task_struct *)bpf_get_current_task(), 0);
	return on_signal(ctx, sig, info, task, group, result, current, 1);
}

SEC("raw_tp/signal_generate")
int BPF_PROG(ks_signal_raw, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	return on_signal(ctx, sig, info, task, group, result,
			 (struct task_struct *)bpf_get_current_task(), 0);
}
