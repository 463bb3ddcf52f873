//! A rule with an `action` (deny_connect, deny_domain, kill): its condition
//! turned into what the kernel decides on ([`PolicyRule`]).
//!
//! The kernel can decide an `and` of tests, one per field, each test a value
//! or a set of values (an `or` of tests of one field, `in (...)`, a list):
//!
//! | field | tests |
//! |---|---|
//! | `net.remote.addr` | `==`, `in (...)`, `in cidr(...)` |
//! | `net.remote.port` | `==`, `in (...)` |
//! | `net.protocol` | `==`, `in (...)` (tcp, udp) |
//! | `net.remote_name` | `==`, `in (...)`, `glob "*.example.com"` (deny_domain) |
//! | `process.exe` | `==`, `in (...)`, `startswith "/dir/"` |
//! | `process.cgroup` | `startswith "/path"`, `==` (the subtree at that cgroup) |
//! | `exec.file.sha256` | `==`, `in (...)` (kill: the files ksight hashes to one of these) |
//! | `any(ancestors, .exe ...)` | `==`, `in (...)` (kill: a parent, up to 8 levels up, runs it) |
//!
//! Anything else (a `not`, another field, a regex) is refused with its
//! column: only userspace could decide it, after the fact.

use std::collections::HashMap;
use std::sync::Arc;

use ksight_core::enforce::{Action, Cidr, DomainPattern, PolicyRule};

use crate::compile::MacroDef;
use crate::lang::{CmpOp, Expr, LangError, Lit, Span, StrOp, Test};

fn err<T>(span: Span, msg: impl Into<String>) -> Result<T, LangError> {
    Err(LangError {
        span,
        msg: msg.into(),
    })
}

const DECIDABLE: &str = "an action's condition is decided in the kernel: an `and` of tests of \
     net.remote.addr, net.remote.port, net.protocol, net.remote_name, process.exe, process.cgroup \
     (for a condition only ksight can decide, after the event: `action: kill_userspace`)";

/// One test of a field, as written.
struct Atom<'e> {
    field: &'e str,
    span: Span,
    test: &'e Test,
}

/// The conjuncts of `e`, macros expanded: each an `or` of atoms of one field.
fn clauses<'e>(
    e: &'e Expr,
    macros: &'e HashMap<String, MacroDef>,
    depth: usize,
    out: &mut Vec<Vec<Atom<'e>>>,
) -> Result<(), LangError> {
    if depth > 16 {
        return err(Span::default(), "macros nested too deep");
    }
    match e {
        Expr::And(parts) => {
            for p in parts {
                clauses(p, macros, depth + 1, out)?;
            }
            Ok(())
        }
        Expr::Const(true) => Ok(()),
        Expr::Macro { name, span } => match macros.get(name) {
            Some(m) => clauses(&m.expr, macros, depth + 1, out),
            None => err(*span, format!("no macro or field `{name}`")),
        },
        other => {
            let mut atoms = Vec::new();
            alternatives(other, macros, depth, &mut atoms)?;
            let field = atoms[0].field;
            if let Some(a) = atoms.iter().find(|a| a.field != field) {
                return err(
                    a.span,
                    format!("an `or` here must test one field (`{field}`): {DECIDABLE}"),
                );
            }
            out.push(atoms);
            Ok(())
        }
    }
}

fn alternatives<'e>(
    e: &'e Expr,
    macros: &'e HashMap<String, MacroDef>,
    depth: usize,
    out: &mut Vec<Atom<'e>>,
) -> Result<(), LangError> {
    if depth > 16 {
        return err(Span::default(), "macros nested too deep");
    }
    match e {
        Expr::Or(parts) => {
            for p in parts {
                alternatives(p, macros, depth + 1, out)?;
            }
            Ok(())
        }
        Expr::Macro { name, span } => match macros.get(name) {
            Some(m) => alternatives(&m.expr, macros, depth + 1, out),
            None => err(*span, format!("no macro or field `{name}`")),
        },
        Expr::Test { field, fspan, test } => {
            out.push(Atom {
                field,
                span: *fspan,
                test,
            });
            Ok(())
        }
        Expr::And(_) => err(
            Span::default(),
            format!("an `and` inside an `or`: {DECIDABLE}"),
        ),
        Expr::Not(_) => err(Span::default(), format!("a `not`: {DECIDABLE}")),
        Expr::Const(_) => err(Span::default(), format!("a constant: {DECIDABLE}")),
        // any(ancestors, .exe == /path): the kernel walks the parents
        Expr::Quant {
            all: false,
            field,
            pred,
            fspan,
        } if field == "ancestors" => match pred.as_ref() {
            Expr::Test { field: f, test, .. } if f == ".exe" => {
                out.push(Atom {
                    field: "ancestors.exe",
                    span: *fspan,
                    test,
                });
                Ok(())
            }
            _ => err(
                *fspan,
                format!("in the kernel, any(ancestors, ...) tests `.exe` alone: {DECIDABLE}"),
            ),
        },
        Expr::Quant { fspan, .. } => err(*fspan, format!("any()/all(): {DECIDABLE}")),
    }
}

/// The values an atom accepts, lists expanded, and whether it is a prefix
/// (`startswith`), a glob or a network.
enum Values {
    Exact(Vec<(String, Span)>),
    Prefix(String, Span),
    Glob(String, Span),
    Nets(Vec<(String, Span)>),
}

fn values(a: &Atom<'_>, lists: &HashMap<String, Vec<String>>) -> Result<Values, LangError> {
    let expand = |lits: &[Lit]| -> Vec<(String, Span)> {
        let mut v = Vec::new();
        for l in lits {
            match lists.get(&l.text).filter(|_| !l.quoted) {
                Some(items) => v.extend(items.iter().map(|i| (i.clone(), l.span))),
                None => v.push((l.text.clone(), l.span)),
            }
        }
        v
    };
    Ok(match a.test {
        Test::Cmp(CmpOp::Eq, l) => Values::Exact(vec![(l.text.clone(), l.span)]),
        Test::In(ls) => Values::Exact(expand(ls)),
        Test::InList(l) => match lists.get(&l.text) {
            Some(items) => Values::Exact(items.iter().map(|i| (i.clone(), l.span)).collect()),
            None => return err(l.span, format!("no list `{}`", l.text)),
        },
        Test::Cidr(ls) => Values::Nets(expand(ls)),
        Test::Str(StrOp::StartsWith, l) => Values::Prefix(l.text.clone(), l.span),
        Test::Str(StrOp::Glob, l) => Values::Glob(l.text.clone(), l.span),
        _ => {
            return err(
                a.span,
                format!(
                "`{}` is tested in a way the kernel cannot decide (==, in, cidr, startswith, glob)",
                a.field
            ),
            )
        }
    })
}

/// The kernel's form of a rule's condition, or where and why it cannot be.
pub fn kernel_rule(
    id: Arc<str>,
    action: Action,
    conds: &[Expr],
    lists: &HashMap<String, Vec<String>>,
    macros: &HashMap<String, MacroDef>,
) -> Result<PolicyRule, LangError> {
    let mut cl = Vec::new();
    for c in conds {
        clauses(c, macros, 0, &mut cl)?;
    }
    let mut r = PolicyRule::new(id, action);
    let mut seen: Vec<&str> = Vec::new();
    for atoms in &cl {
        let field = atoms[0].field;
        if seen.contains(&field) {
            return err(
                atoms[0].span,
                format!("`{field}` is tested twice: put its values in one `in (...)`"),
            );
        }
        seen.push(field);
        for a in atoms {
            let v = values(a, lists)?;
            match (field, v) {
                ("net.remote.addr", Values::Exact(vs) | Values::Nets(vs)) => {
                    for (s, span) in vs {
                        match Cidr::parse(&s) {
                            Some(c) => r.nets.push(c),
                            None => {
                                return err(span, format!("`{s}` is not an address or network"))
                            }
                        }
                    }
                }
                ("net.remote.port", Values::Exact(vs)) => {
                    for (s, span) in vs {
                        match s.parse::<u16>() {
                            Ok(p) if p > 0 => r.ports.push(p),
                            _ => return err(span, format!("`{s}` is not a port")),
                        }
                    }
                }
                ("net.protocol", Values::Exact(vs)) => {
                    let (mut tcp, mut udp) = (false, false);
                    for (s, span) in vs {
                        match s.as_str() {
                            "tcp" => tcp = true,
                            "udp" => udp = true,
                            _ => return err(span, format!("`{s}` is not tcp or udp")),
                        }
                    }
                    r.protocols.tcp &= tcp;
                    r.protocols.udp &= udp;
                }
                ("net.remote_name", Values::Exact(vs)) => {
                    for (s, span) in vs {
                        r.domains.push(
                            DomainPattern::parse(&s).map_err(|m| LangError { span, msg: m })?,
                        );
                    }
                }
                ("net.remote_name", Values::Glob(s, span)) => {
                    if !s.starts_with("*.") {
                        return err(span, "the kernel matches names as `*.example.com`");
                    }
                    r.domains
                        .push(DomainPattern::parse(&s).map_err(|m| LangError { span, msg: m })?);
                }
                ("process.exe", Values::Exact(vs)) => {
                    for (s, span) in vs {
                        if !s.starts_with('/') {
                            return err(span, "an executable is named by its absolute path");
                        }
                        r.exes.push(s.into());
                    }
                }
                ("ancestors.exe", Values::Exact(vs)) => {
                    for (s, span) in vs {
                        if !s.starts_with('/') {
                            return err(span, "an executable is named by its absolute path");
                        }
                        r.ancestor_exes.push(s.into());
                    }
                }
                ("exec.file.sha256", Values::Exact(vs)) => {
                    for (s, span) in vs {
                        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return err(span, "a SHA-256 is 64 hexadecimal digits");
                        }
                        r.sha256.push(s.to_ascii_lowercase());
                    }
                }
                ("process.exe", Values::Prefix(s, span)) => {
                    if !s.starts_with('/') || !s.ends_with('/') {
                        return err(
                            span,
                            "a directory of executables is written as an absolute path \
                             ending in `/`: startswith \"/tmp/\"",
                        );
                    }
                    r.dirs.push(s.trim_end_matches('/').to_string().into());
                }
                ("process.cgroup", v) => {
                    let (s, span) = match v {
                        Values::Prefix(s, span) => (s, span),
                        Values::Exact(mut vs) if vs.len() == 1 => vs.pop().expect("one"),
                        _ => {
                            return err(
                                a.span,
                                "a rule is scoped to one cgroup subtree: \
                                 process.cgroup startswith \"/path\"",
                            )
                        }
                    };
                    if !s.starts_with('/') {
                        return err(
                            span,
                            "a cgroup is a path from the cgroup v2 root: /system.slice/x",
                        );
                    }
                    if r.cgroup.is_some() {
                        return err(span, "a rule is scoped to one cgroup subtree");
                    }
                    let p = s.trim_end_matches('/');
                    r.cgroup = Some(if p.is_empty() {
                        "/".into()
                    } else {
                        p.to_string()
                    });
                }
                (f, _) => {
                    return err(
                        a.span,
                        format!("`{f}` cannot be tested this way in the kernel: {DECIDABLE}"),
                    )
                }
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::parse;

    fn rule(action: Action, cond: &str) -> Result<PolicyRule, String> {
        let lists = HashMap::from([("pools".to_string(), vec!["3333".to_string(), "5555".into()])]);
        let e = parse(cond).map_err(|e| e.msg)?;
        kernel_rule("r".into(), action, &[e], &lists, &HashMap::new()).map_err(|e| e.msg)
    }

    #[test]
    fn an_and_of_one_field_tests_each_compiles() {
        let r = rule(
            Action::DenyConnect,
            "net.remote.addr in cidr(10.0.0.0/8, \"fd00::/8\") and net.remote.port in pools \
             and net.protocol == tcp and process.cgroup startswith \"/system.slice/x.service/\"",
        )
        .unwrap();
        assert_eq!(r.nets.len(), 2);
        assert_eq!(r.ports, [3333, 5555]);
        assert!(r.protocols.tcp && !r.protocols.udp);
        assert_eq!(r.cgroup.as_deref(), Some("/system.slice/x.service"));
        let d = rule(
            Action::DenyDomain,
            "net.remote_name glob \"*.pastebin.com\" or net.remote_name == pool.minexmr.com",
        )
        .unwrap();
        assert_eq!(d.domains.len(), 2);
        assert!(d.domains[0].subtree && !d.domains[1].subtree);
        let k = rule(
            Action::Kill,
            "process.exe startswith \"/tmp/\" and any(ancestors, .exe in (/usr/sbin/nginx))",
        )
        .unwrap();
        assert_eq!(k.dirs, [std::path::PathBuf::from("/tmp")]);
        assert_eq!(k.ancestor_exes.len(), 1);
    }

    #[test]
    fn what_only_userspace_could_decide_is_refused() {
        for cond in [
            "not net.remote.addr == 10.0.0.1",
            "process.exe regex \"^/tmp\"",
            "net.remote.port == 1 or process.exe == /x",
            "process.comm == sh",
            "net.remote.port == 1 and net.remote.port == 2",
            "process.exe startswith \"/tmp\"",
            "net.remote_name glob \"a*.example.com\"",
        ] {
            assert!(rule(Action::Kill, cond).is_err(), "{cond}");
        }
    }
}
