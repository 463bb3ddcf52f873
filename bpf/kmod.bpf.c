// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * kmod.bpf.c: kernel modules loaded, by whom, and whether their signature
 * was verified.
 *
 * One hook: module/module_load (a tracepoint since 2.6.33), as tp_btf (5.5+)
 * or raw_tp. It fires once per module loaded, after the kernel accepted it
 * and before its init runs, in the context of the process that called
 * init_module or finit_module. Paid per module load: nothing else passes.
 * A kernel built without modules (CONFIG_MODULES unset) has no such
 * tracepoint and nothing to watch: the sensor is not loaded there.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* sig_ok exists only with CONFIG_MODULE_SIG (not in the pinned vmlinux.h) */
struct module___sig {
	bool sig_ok;
} __attribute__((preserve_access_index));

static __always_inline int on_module(void *ctx, struct module *mod, struct task_struct *current,
				     const int direct)
{
	struct ks_module_event e = {};

	if (!ks_wanted())
		return 0;
	e.hdr.ktime = bpf_ktime_get_ns();
	e.hdr.kind = KS_EVENT_MODULE_LOAD;
	ks_fill_task_any(&e.task, current, direct);
	BPF_CORE_READ_STR_INTO(&e.name, mod, name);
	e.taints = BPF_CORE_READ(mod, taints);
	struct module___sig *sig = (void *)mod;

	if (bpf_core_field_exists(sig->sig_ok))
		e.sig_ok = BPF_CORE_READ(sig, sig_ok) ? 1 : 0;
	else
		e.sig_ok = 2;
	ks_emit(ctx, &e.hdr, sizeof(e));
	return 0;
}

SEC("tp_btf/module_load")
int BPF_PROG(ks_module_btf, struct module *mod)
{
	struct task_struct *current = ks_current_btf();

	if (!current)
		return on_module(ctx, mod, (struct task_struct *)bpf_get_current_task(), 0);
	return on_module(ctx, mod, current, 1);
}

SEC("raw_tp/module_load")
int BPF_PROG(ks_module_raw, struct module *mod)
{
	return on_module(ctx, mod, (struct task_struct *)bpf_get_current_task(), 0);
}
