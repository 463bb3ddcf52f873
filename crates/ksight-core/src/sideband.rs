//! What the kernel reports beside the BPF programs: BPF programs loaded by
//! anyone else (perf's side-band `PERF_RECORD_BPF_EVENT`, read in ksight-bpf
//! `bpfwatch`). Handed to the `bpf_load` kind through
//! [`crate::kind::KernelState::bpf_loads`].

/// One BPF program the kernel loaded, and what it says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBpfLoad {
    /// CLOCK_MONOTONIC ns of the load.
    pub ktime: u64,
    /// The process (thread group) and thread that loaded it.
    pub pid: u32,
    pub tid: u32,
    pub id: u32,
    pub tag: [u8; 8],
    /// From the program's info, when it was still loaded when ksight asked.
    pub info: Option<BpfProgInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgInfo {
    /// libbpf's name of its type: `kprobe`, `tracing`, `lsm`, `xdp`, ...
    pub prog_type: String,
    pub name: String,
    pub uid: u32,
    pub maps: u32,
    /// Instructions after the verifier's rewriting.
    pub insns: u32,
    pub gpl: bool,
}
