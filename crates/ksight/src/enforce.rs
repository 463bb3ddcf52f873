//! Enforcement around `ksight run`: what is never denied, what ksight says
//! at start, and `ksight enforce status|clear` for the pinned programs of
//! `--enforce-persist`.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ksight_bpf::enforce::{clear_pins, pinned_status, PIN_DIR};
use ksight_core::enforce::{KillOutcome, Mode, Policy};
use ksight_core::model::Process;
use ksight_core::procfs::ProcFs;
use ksight_rules::live::Killer;

/// `ksight enforce ...`.
#[derive(clap::Subcommand, Debug)]
pub enum EnforceCommand {
    /// What is pinned in /sys/fs/bpf/ksight/enforce: its programs, its rules and their counts.
    Status,
    /// Remove the pinned enforcement: its programs detach (once no ksight holds them).
    Clear,
}

/// The addresses a deny never applies to: the resolvers of /etc/resolv.conf
/// (a deny_domain rule must not cut the resolution it reads) and ksight's
/// own metrics endpoint. ksight's own process is exempt in the kernel.
pub fn never_denied(metrics: Option<std::net::SocketAddr>) -> Vec<IpAddr> {
    let mut out = resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    out.extend(metrics.map(|m| m.ip()).filter(|ip| !ip.is_unspecified()));
    out
}

fn resolvers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect()
}

/// The `kill_userspace` action: SIGKILL through a pidfd to the process an
/// event names, once /proc says the pid is still that process (its creation
/// time) running that image (its executable): never by bare pid, never a
/// process that reused the pid.
pub fn userspace_killer() -> Killer {
    let procfs = ProcFs::new("/proc");
    Box::new(move |ev| {
        let Some(p) = &ev.process else {
            return KillOutcome::Gone;
        };
        if p.pid == std::process::id() || p.pid <= 1 {
            return KillOutcome::Failed(format!("pid {} is not killed", p.pid));
        }
        ksight_bpf::sys::pidfd_kill(p.pid, || same_image(&procfs, p))
    })
}

fn same_image(procfs: &ProcFs, p: &Process) -> bool {
    let Ok(info) = procfs.read(p.pid) else {
        return false;
    };
    let clock = ksight_bpf::sys::clock_now();
    let tick_ns = 1_000_000_000 / clock.clk_tck.max(1);
    let boot_ns = info.start_ticks.saturating_mul(tick_ns) as i64;
    let wall = boot_ns + clock.wall_minus_mono - clock.boot_minus_mono;
    // /proc counts clock ticks: the event's creation time within two of them
    if (wall - p.start_time.0 as i64).abs() > 2 * tick_ns as i64 {
        return false;
    }
    match (&p.exe, &info.exe) {
        (Some(want), Some(now)) => {
            let now = now.strip_suffix(b" (deleted)").unwrap_or(now);
            want.as_bytes() == now
        }
        // the event does not say which image: its creation time must do
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// One line on what is enforced, and how.
pub fn summary(policy: &Policy, persist: bool) -> String {
    let acting = policy
        .rules
        .iter()
        .filter(|r| policy.effective(r) == Mode::Enforce)
        .count();
    let watching = policy.rules.len() - acting;
    let mut s = format!(
        "{} rule{} ({acting} enforcing, {watching} monitoring)",
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" }
    );
    if acting == 0 && !policy.enforce {
        s.push_str("; monitor mode: nothing is stopped (--enforce to act)");
    }
    s.push_str(if persist {
        "; pinned: it outlives ksight (`ksight enforce clear` removes it)"
    } else {
        "; it ends with ksight"
    });
    s
}

/// Persisted enforcement of an earlier run that this run does not replace.
pub fn warn_if_pinned(cfg: &ksight_bpf::Config) {
    if cfg.enforce_persist {
        return; // replaced once this run's programs are attached
    }
    if std::path::Path::new(PIN_DIR).exists() {
        eprintln!(
            "ksight: warning: enforcement pinned by an earlier `run --enforce-persist` is active \
             in {PIN_DIR}; it stays until `ksight enforce clear`"
        );
    }
}

pub fn command(which: EnforceCommand) -> Result<ExitCode> {
    crate::preflight::check_privileges()?;
    match which {
        EnforceCommand::Status => {
            let Some(st) = pinned_status().map_err(anyhow::Error::msg)? else {
                println!("no persisted enforcement ({PIN_DIR} does not exist)");
                return Ok(ExitCode::SUCCESS);
            };
            println!("persisted enforcement in {PIN_DIR}");
            println!("programs: {}", st.links.join(", "));
            println!(
                "{:<32} {:<14} {:<8} {:>10}",
                "rule", "action", "mode", "hits"
            );
            for (id, action, enforcing, hits) in &st.rules {
                let mode = if *enforcing { "enforce" } else { "monitor" };
                println!("{id:<32} {action:<14} {mode:<8} {hits:>10}");
            }
            println!(
                "answers added: {}, refused (map full): {}",
                st.answers, st.answers_full
            );
            Ok(ExitCode::SUCCESS)
        }
        EnforceCommand::Clear => {
            let n = clear_pins().with_context(|| format!("removing {PIN_DIR}"))?;
            if n == 0 {
                println!("no persisted enforcement");
            } else {
                println!(
                    "removed {n} pins from {PIN_DIR}: its programs are detached \
                     (a running ksight keeps its own until it exits)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_from_resolv_conf() {
        let text =
            "# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\nnameserver junk\n";
        let r = resolvers(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].to_string(), "127.0.0.53");
        assert_eq!(r[1].to_string(), "fe80::1");
    }
}
