// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * bench.bpf.c: a synthetic producer for `ksight bench transport`.
 *
 * Not attached to any hook: userspace runs it with BPF_PROG_TEST_RUN on a
 * chosen CPU (raw_tp test runs, 5.10+), and each run emits ks_cfg_batch
 * records of ks_cfg_size bytes through the same ks_emit() as the real
 * programs, so the benchmark measures exactly the transport ksight uses.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum ks_bench_limits {
	KS_BENCH_BATCH_MAX = 256,
	KS_BENCH_SIZE_MAX = 4096,
};

const volatile __u32 ks_cfg_batch = 16;
/* record size in bytes, header included (>= sizeof(struct ks_event_hdr)) */
const volatile __u32 ks_cfg_size = 64;

struct ks_bench_record {
	struct ks_event_hdr hdr;
	__u8 payload[KS_BENCH_SIZE_MAX - sizeof(struct ks_event_hdr)];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_bench_record);
} ks_bench_scratch SEC(".maps");

SEC("raw_tp")
int ks_bench(void *ctx)
{
	__u32 zero = 0;
	struct ks_bench_record *r = bpf_map_lookup_elem(&ks_bench_scratch, &zero);
	__u32 size = ks_cfg_size;

	if (!r)
		return 0;
	if (size > sizeof(*r))
		size = sizeof(*r);
	if (size < sizeof(r->hdr))
		size = sizeof(r->hdr);
	for (__u32 i = 0; i < KS_BENCH_BATCH_MAX && i < ks_cfg_batch; i++) {
		r->hdr.ktime = bpf_ktime_get_ns();
		r->hdr.kind = KS_EVENT_NONE;
		ks_emit(ctx, &r->hdr, size);
	}
	return 0;
}
