//! Checks made before touching the kernel, so that the common failures get a
//! message that says what to do instead of an errno from deep inside libbpf.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ksight_doctor::host::{can_load_bpf, effective_caps};

/// The same rule `ksight doctor` reports on (its `caps` finding).
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let caps = effective_caps(&status).context("no readable CapEff line in /proc/self/status")?;
    if can_load_bpf(caps) {
        return Ok(());
    }
    bail!(
        "ksight needs privileges to load BPF programs, and this process lacks them \
         (effective capabilities {caps:#x}).\n\
         Fix: run it as root (sudo ksight run), or grant CAP_BPF and CAP_PERFMON \
         (kernel 5.8+; CAP_SYS_ADMIN before 5.8), plus CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH \
         to read other users' /proc entries:\n  \
         sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep \"$(command -v ksight)\""
    )
}

pub fn check_btf(custom: Option<&Path>) -> Result<()> {
    if let Some(path) = custom {
        if !path.is_file() {
            bail!(
                "the BTF file given with --btf, {}, does not exist",
                path.display()
            );
        }
        return Ok(());
    }
    let vmlinux = Path::new("/sys/kernel/btf/vmlinux");
    if !vmlinux.exists() {
        bail!(
            "this kernel exposes no BTF type information ({} is missing), which ksight's \
             compile-once programs need to adapt to it.\n\
             Fix: use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since \
             kernel 5.4), or pass --btf FILE with a BTF file generated for this exact kernel \
             (e.g. from BTFHub).",
            vmlinux.display()
        );
    }
    Ok(())
}
