//! Enforcement policy: what the kernel is to deny or kill, as rules compiled
//! it (ksight-rules) and before anything is resolved on this host (paths to
//! inodes, cgroup paths to ids: ksight-bpf's enforce sensor does that).
//!
//! Each rule is one bit in the kernel's maps (bpf/enforce.bpf.c), so there
//! are at most [`MAX_RULES`]. Also here, because both sides must agree on
//! them: how a name pattern is hashed for the kernel's suffix lookup
//! ([`suffix_hashes`]), and how CIDRs of several rules are folded so that the
//! kernel's longest-prefix match finds every rule ([`fold_nets`]).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Rules the kernel decides on: one bit each.
pub const MAX_RULES: usize = 64;

/// Labels of a name pattern the kernel hashes from the right (KS_ENF_NAME_DEPTH).
pub const MAX_NAME_LABELS: usize = 8;

/// Parents a kill rule's `any(ancestors, .exe ...)` looks at (KS_ENF_ANCESTORS).
pub const MAX_ANCESTORS: usize = 8;

/// Depth of a cgroup subtree a rule may be scoped to (KS_ENF_LEVELS - 1).
pub const MAX_CGROUP_LEVEL: usize = 15;

crate::named_enum! {
    /// What a rule does when its condition holds.
    pub enum Action {
        /// connect()/sendto() to a destination: EPERM
        DenyConnect = "deny_connect",
        /// the same, for the addresses DNS answered for a name
        DenyDomain = "deny_domain",
        /// SIGKILL at exec, before the new image runs
        Kill = "kill",
        /// SIGKILL from ksight after the event, for conditions only
        /// userspace decides: through a pidfd, to the process image the
        /// event names (its start time and executable checked)
        KillUserspace = "kill_userspace",
    }
}

/// What a userspace kill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillOutcome {
    Killed,
    /// the process had exited, or its pid is another process or image now
    Gone,
    Failed(String),
}

impl Action {
    pub fn from_name(s: &str) -> Option<Action> {
        Action::NAMES.iter().position(|n| *n == s).map(|i| {
            [
                Action::DenyConnect,
                Action::DenyDomain,
                Action::Kill,
                Action::KillUserspace,
            ][i]
        })
    }
}

crate::named_enum! {
    /// Whether a rule acts or only says what it would have done.
    pub enum Mode {
        Monitor = "monitor",
        Enforce = "enforce",
    }
}

/// A network: `addr/bits`, the address canonical (an IPv4-mapped IPv6
/// address is IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or an address alone (a /32 or /128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then(|| Cidr { addr, bits }.masked())
    }

    fn max(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The network with its host bits cleared.
    pub fn masked(self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        };
        Cidr {
            addr,
            bits: self.bits,
        }
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && other.bits >= self.bits
            && Cidr {
                addr: other.addr,
                bits: self.bits,
            }
            .masked()
                == *self
    }

    /// Every address of its family.
    pub fn is_everything(&self) -> bool {
        self.bits == 0
    }

    pub fn is_host(&self) -> bool {
        self.bits == self.max()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// A denied name: `pool.minexmr.com` (that name), or `*.pastebin.com`
/// (`pastebin.com` and every name under it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    /// Lower case, no trailing dot, no `*.`.
    pub name: String,
    pub subtree: bool,
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<DomainPattern, String> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        let (name, subtree) = match s.strip_prefix("*.") {
            Some(rest) => (rest.to_string(), true),
            None => (s.clone(), false),
        };
        let labels: Vec<&str> = name.split('.').collect();
        if name.is_empty()
            || labels
                .iter()
                .any(|l| l.is_empty() || l.len() > 63 || l.contains('*'))
        {
            return Err(format!(
                "`{s}` is not a name such as pool.example.com or *.example.com"
            ));
        }
        if labels.len() > MAX_NAME_LABELS {
            return Err(format!(
                "`{s}` has more than {MAX_NAME_LABELS} labels, more than the kernel compares"
            ));
        }
        Ok(DomainPattern { name, subtree })
    }

    /// The hash the kernel looks this pattern up by.
    pub fn hash(&self) -> u64 {
        *suffix_hashes(&self.name)
            .last()
            .expect("a name has a label")
    }

    /// Whether a name (as asked, any case) is one this pattern denies.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == self.name || (self.subtree && name.ends_with(&format!(".{}", self.name)))
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subtree {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// FNV-1a of a label's lower-cased bytes.
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(FNV_OFFSET, |h, c| {
        (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
    })
}

/// The hashes of a name's suffixes, shortest first: for `x.pastebin.com`,
/// those of `com`, `pastebin.com`, `x.pastebin.com`. Each label is hashed
/// alone ([`label_hash`]); from the rightmost label, a suffix's hash is the
/// previous one's folded with its label's: `h = (h ^ label) * prime`.
/// Exactly what bpf/enforce.bpf.c computes over a question's labels.
pub fn suffix_hashes(name: &str) -> Vec<u64> {
    let mut h = FNV_OFFSET;
    name.trim_end_matches('.')
        .rsplit('.')
        .map(|label| {
            h = (h ^ label_hash(label)).wrapping_mul(FNV_PRIME);
            h
        })
        .collect()
}

/// Which sockets a deny applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

/// One rule, as the kernel is to apply it. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    pub id: Arc<str>,
    pub action: Action,
    /// What the rule file asked for; [`Policy::effective`] says what applies.
    pub mode: Option<Mode>,
    pub nets: Vec<Cidr>,
    pub ports: Vec<u16>,
    pub protocols: Protocols,
    pub domains: Vec<DomainPattern>,
    /// Executables, by path (resolved to their inodes at load).
    pub exes: Vec<PathBuf>,
    /// Directories whose executables match (`process.exe startswith "/tmp/"`).
    pub dirs: Vec<PathBuf>,
    /// Executables by content (`exec.file.sha256 in (...)`, kill only), lower-case
    /// hex: each file ksight hashes to one of these is added to the kernel's
    /// executables while it runs.
    pub sha256: Vec<String>,
    /// Kill only when a parent (up to [`MAX_ANCESTORS`] up) runs one of these
    /// executables (`any(ancestors, .exe in (...))`, resolved to inodes at load).
    pub ancestor_exes: Vec<PathBuf>,
    /// A cgroup subtree, as a path from the cgroup v2 root (`/system.slice/x.service`).
    pub cgroup: Option<String>,
    /// The rule said it may deny all egress (`allow_broad: true`).
    pub allow_broad: bool,
}

impl PolicyRule {
    pub fn new(id: Arc<str>, action: Action) -> PolicyRule {
        PolicyRule {
            id,
            action,
            mode: None,
            nets: Vec::new(),
            ports: Vec::new(),
            protocols: Protocols {
                tcp: true,
                udp: true,
            },
            domains: Vec::new(),
            exes: Vec::new(),
            dirs: Vec::new(),
            sha256: Vec::new(),
            ancestor_exes: Vec::new(),
            cgroup: None,
            allow_broad: false,
        }
    }

    /// Why the kernel cannot apply it as written, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let scoped = self.cgroup.is_some() || !self.exes.is_empty() || !self.dirs.is_empty();
        match self.action {
            Action::KillUserspace => {
                return Err("kill_userspace is decided by ksight, not the kernel".into())
            }
            Action::Kill => {
                if self.exes.is_empty() && self.dirs.is_empty() && self.sha256.is_empty() {
                    return Err("a kill rule names its executables: `process.exe == ...`, \
                                `process.exe in (...)`, `process.exe startswith \"/dir/\"` \
                                or `exec.file.sha256 in (...)`"
                        .into());
                }
                if !self.nets.is_empty() || !self.ports.is_empty() || !self.domains.is_empty() {
                    return Err("a kill rule cannot test network fields".into());
                }
            }
            _ if !self.ancestor_exes.is_empty() => {
                return Err("only a kill rule tests its ancestors in the kernel".into());
            }
            Action::DenyDomain => {
                if self.domains.is_empty() {
                    return Err("a deny_domain rule names its domains: \
                                `net.remote_name == ...` or `net.remote_name glob \"*.example.com\"`"
                        .into());
                }
                if !self.nets.is_empty() {
                    return Err("a deny_domain rule matches by name: put addresses \
                                in a deny_connect rule"
                        .into());
                }
            }
            Action::DenyConnect => {
                if !self.domains.is_empty() {
                    return Err("names are matched by a deny_domain rule".into());
                }
                let everywhere = self.nets.is_empty() || self.nets.iter().any(Cidr::is_everything);
                if everywhere && self.ports.is_empty() && !scoped && !self.allow_broad {
                    return Err("this rule would deny all egress of the host; \
                                say `allow_broad: true` in the rule if that is meant"
                        .into());
                }
            }
        }
        if self
            .cgroup
            .as_deref()
            .is_some_and(|c| c.split('/').filter(|s| !s.is_empty()).count() > MAX_CGROUP_LEVEL)
        {
            return Err(format!(
                "the cgroup is more than {MAX_CGROUP_LEVEL} levels deep"
            ));
        }
        Ok(())
    }
}

/// The rules the kernel applies, in bit order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
    /// `--enforce`: rules act (but those that say `mode: monitor`).
    pub enforce: bool,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The kill rules (bits) that name this content, by SHA-256 (lower-case hex).
    pub fn sha256_rules(&self, sha256: &str) -> u64 {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.sha256.iter().any(|h| h.eq_ignore_ascii_case(sha256)))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// A rule's mode: monitor unless both `--enforce` and the rule allow it.
    pub fn effective(&self, r: &PolicyRule) -> Mode {
        match (self.enforce, r.mode) {
            (true, Some(Mode::Enforce) | None) => Mode::Enforce,
            _ => Mode::Monitor,
        }
    }

    pub fn has(&self, action: Action) -> bool {
        self.rules.iter().any(|r| r.action == action)
    }

    /// The rule of a bit, if any.
    pub fn rule(&self, bit: u32) -> Option<&PolicyRule> {
        self.rules.get(bit as usize)
    }
}

/// The kernel's CIDR map: each prefix with the rules of every prefix that
/// contains it, so that the longest match alone gives all the rules of an
/// address. Rules without a CIDR match every address (`/0`).
pub fn fold_nets(rules: &[PolicyRule]) -> Vec<(Cidr, u64)> {
    let mut own: Vec<(Cidr, u64)> = Vec::new();
    let mut add = |c: Cidr, bit: u64| match own.iter_mut().find(|(o, _)| *o == c) {
        Some((_, m)) => *m |= bit,
        None => own.push((c, bit)),
    };
    for (i, r) in rules.iter().enumerate() {
        let bit = 1u64 << i;
        match r.action {
            Action::DenyConnect if r.nets.is_empty() => {
                add(Cidr::parse("0.0.0.0/0").expect("valid"), bit);
                add(Cidr::parse("::/0").expect("valid"), bit);
            }
            Action::DenyConnect => r.nets.iter().for_each(|c| add(*c, bit)),
            _ => {}
        }
    }
    let folded = own
        .iter()
        .map(|(c, _)| {
            let mask = own
                .iter()
                .filter(|(o, _)| o.contains(c))
                .fold(0, |m, (_, b)| m | b);
            (*c, mask)
        })
        .collect();
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, nets: &[&str]) -> PolicyRule {
        let mut r = PolicyRule::new(id.into(), Action::DenyConnect);
        r.nets = nets.iter().map(|n| Cidr::parse(n).unwrap()).collect();
        r
    }

    #[test]
    fn cidrs_parse_masked_and_canonical() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("x").is_none());
        let big = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(big.contains(&Cidr::parse("10.9.0.0/16").unwrap()));
        assert!(!big.contains(&Cidr::parse("11.0.0.0/16").unwrap()));
        assert!(!big.contains(&Cidr::parse("fd00::/16").unwrap()));
    }

    #[test]
    fn folded_prefixes_carry_the_rules_of_their_supernets() {
        let rules = [rule("a", &["10.0.0.0/8"]), rule("b", &["10.1.0.0/16"])];
        let f = fold_nets(&rules);
        let get = |s: &str| f.iter().find(|(c, _)| c.to_string() == s).unwrap().1;
        assert_eq!(get("10.0.0.0/8"), 0b01);
        assert_eq!(get("10.1.0.0/16"), 0b11);
    }

    #[test]
    fn suffix_hashes_are_case_blind_and_shared_by_suffixes() {
        let a = suffix_hashes("X.PasteBin.com");
        let b = suffix_hashes("pastebin.com.");
        assert_eq!(a.len(), 3);
        assert_eq!(a[..2], b[..]);
        // `com`: FNV-1a of its bytes, folded into the offset basis
        let mut l = FNV_OFFSET;
        for c in b"com" {
            l = (l ^ u64::from(*c)).wrapping_mul(FNV_PRIME);
        }
        assert_eq!(a[0], (FNV_OFFSET ^ l).wrapping_mul(FNV_PRIME));
    }

    #[test]
    fn domain_patterns() {
        let p = DomainPattern::parse("*.Pastebin.com").unwrap();
        assert!(p.subtree && p.matches("pastebin.com") && p.matches("a.b.pastebin.com"));
        assert!(!p.matches("notpastebin.com"));
        let e = DomainPattern::parse("pool.minexmr.com").unwrap();
        assert!(e.matches("POOL.minexmr.com.") && !e.matches("x.pool.minexmr.com"));
        assert!(DomainPattern::parse("a.*.com").is_err());
        assert!(DomainPattern::parse("a.b.c.d.e.f.g.h.i").is_err());
    }

    #[test]
    fn a_rule_that_denies_all_egress_must_say_so() {
        let r = rule("all", &["0.0.0.0/0"]);
        assert!(r.check().unwrap_err().contains("allow_broad"));
        let mut ok = r.clone();
        ok.allow_broad = true;
        assert!(ok.check().is_ok());
        let mut scoped = r.clone();
        scoped.cgroup = Some("/x".into());
        assert!(scoped.check().is_ok());
        let mut kill = PolicyRule::new("k".into(), Action::Kill);
        assert!(kill.check().is_err());
        kill.dirs.push("/tmp".into());
        assert!(kill.check().is_ok());
    }

    #[test]
    fn modes_start_in_monitor() {
        let mut p = Policy {
            rules: vec![rule("a", &["10.0.0.0/8"])],
            enforce: false,
        };
        assert_eq!(p.effective(&p.rules[0]), Mode::Monitor);
        p.enforce = true;
        assert_eq!(p.effective(&p.rules[0]), Mode::Enforce);
        p.rules[0].mode = Some(Mode::Monitor);
        assert_eq!(p.effective(&p.rules[0]), Mode::Monitor);
    }
}
