//! Rule files: a directory of YAML files, loaded in name order, into a
//! [`RuleSet`] of compiled rules indexed by event kind.
//!
//! Each file is a list of items, each a `list`, a `macro` or a `rule`:
//!
//! ```yaml
//! - list: shells
//!   items: [sh, bash, dash]
//! - macro: spawned_by_web_server
//!   condition: any(ancestors, .exe endswith "/nginx")
//! - rule: shell_from_web_server
//!   description: A shell whose ancestor is a web server.
//!   events: [exec]
//!   condition: process.comm in shells and spawned_by_web_server
//!   severity: high
//!   tags: [T1059.004]
//!   output: "{process.exe} started by a web server"
//!   exceptions:
//!     - name: health_checks
//!       fields: [process.exe, exec.cwd]
//!       values: [[/usr/bin/dash, /srv/health]]
//!   dedup: {by: [process.exe], window: 60s}
//!   tests:
//!     - expect: match
//!       event: {type: exec, process: {comm: sh}, ...}
//! ```
//!
//! `append: true` on a list adds items to a list defined earlier; on a macro,
//! `or`s its condition to the earlier one's; on a rule, `and`s its condition,
//! adds exceptions and tags, and may set `enabled`. Every error of a whole
//! load is reported, each as `file:line:col: message`; a set with any error
//! is refused whole.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use ksight_core::enforce::{Action, Mode, Policy, PolicyRule};
use ksight_core::event::Kind;
use ksight_core::kinds::alert::Severity;
use ksight_core::registry::{registry, Field};

use crate::compile::{compile, MacroDef, Pred, Scope};
use crate::lang::{parse, CmpOp, Expr, LangError, Lit, Span, StrOp, Test};
use crate::source::JsonEvent;
use crate::template::Template;
use crate::yaml::{self, Node, Pos};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.msg)
    }
}

/// Collapse a group of rows into one window per key.
#[derive(Debug, Clone)]
pub struct Dedup {
    pub by: Vec<&'static Field>,
    pub window_ns: u64,
}

/// Fire only when the condition held `count` times within `window` per key.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub count: u64,
    pub window_ns: u64,
    pub by: Vec<&'static Field>,
}

/// A fixture of a rule: events, and whether the rule should fire on them.
pub struct RuleTest {
    pub expect_match: bool,
    pub events: Vec<JsonEvent>,
    /// Where it is written: `file:line`.
    pub origin: String,
}

pub struct Rule {
    pub id: Arc<str>,
    pub description: String,
    pub kinds: Vec<Kind>,
    pub severity: Severity,
    pub tags: Arc<[String]>,
    pub enabled: bool,
    pub(crate) cond: Pred,
    /// True when one of its exceptions holds: the rule does not fire.
    pub(crate) exception: Option<Pred>,
    pub(crate) output: Template,
    pub dedup: Option<Dedup>,
    pub threshold: Option<Threshold>,
    pub tests: Vec<RuleTest>,
    /// `file:line` of its declaration.
    pub origin: String,
    /// Changes when its declaration (or an append to it) changes.
    pub fingerprint: u64,
    /// `action:`: what the kernel does when its condition holds. Such a rule
    /// fires live on the `enforcement` events of its own id (the kernel
    /// decided); its condition is evaluated on its `events` in its tests.
    pub enforce: Option<PolicyRule>,
    /// `action: kill_userspace`: ksight kills the process of every event the
    /// rule matches (see `LiveRules`).
    pub userspace_kill: bool,
    /// `mode:` of an action rule.
    pub mode: Option<Mode>,
}

/// Compiled rules, indexed by kind.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// By `Kind as usize`: the enabled rules for that kind.
    pub(crate) by_kind: Vec<Vec<usize>>,
    /// The fields the conditions read (see `compile::At`).
    pub(crate) slots: crate::compile::Slots,
    /// `enforcement.rule`: how an action rule finds its events.
    pub(crate) enforcement_rule: Option<&'static Field>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.rules.iter().map(|r| &*r.id).collect();
        write!(f, "RuleSet {ids:?}")
    }
}

impl RuleSet {
    /// The kinds the enabled rules need events of.
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| !self.by_kind[*k as usize].is_empty())
            .collect()
    }

    /// Whether an enabled rule applies to `kind`.
    pub fn wants(&self, kind: Kind) -> bool {
        !self.by_kind[kind as usize].is_empty()
    }

    /// What the kernel is to enforce: the enabled rules with an action, in
    /// order (a rule's bit is its place here).
    pub fn policy(&self, enforce: bool) -> Policy {
        Policy {
            rules: self
                .rules
                .iter()
                .filter(|r| r.enabled)
                .filter_map(|r| r.enforce.clone())
                .collect(),
            enforce,
        }
    }

    pub fn enabled(&self) -> usize {
        self.rules.iter().filter(|r| r.enabled).count()
    }

    /// Rules added, removed and changed from `old` to this set.
    pub fn changes_from(&self, old: &RuleSet) -> (usize, usize, usize) {
        let find = |set: &RuleSet, id: &str| {
            set.rules
                .iter()
                .find(|r| &*r.id == id)
                .map(|r| r.fingerprint)
        };
        let added = self
            .rules
            .iter()
            .filter(|r| find(old, &r.id).is_none())
            .count();
        let removed = old
            .rules
            .iter()
            .filter(|r| find(self, &r.id).is_none())
            .count();
        let changed = self
            .rules
            .iter()
            .filter(|r| find(old, &r.id).is_some_and(|f| f != r.fingerprint))
            .count();
        (added, removed, changed)
    }
}

/// Every `*.yaml` / `*.yml` file of a directory, in name order.
pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<RuleError>> {
    load(&read_dir(dir)?)
}

/// The rule files of a directory (`*.yaml`, `*.yml`) as (path, text), in name order.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, Vec<RuleError>> {
    let whole = |msg: String| {
        vec![RuleError {
            file: dir.display().to_string(),
            line: 0,
            col: 0,
            msg,
        }]
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| whole(format!("cannot read the rule directory: {e}")))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(whole("no .yaml or .yml file in the rule directory".into()));
    }
    let mut sources = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).map_err(|e| whole(format!("{}: {e}", f.display())))?;
        sources.push((f.display().to_string(), text));
    }
    Ok(sources)
}

/// Rule files given as (name, text), in order: later files may append to
/// what earlier ones declare. A test's `file:` is looked for beside its rule
/// file (the directory of its name).
pub fn load(sources: &[(String, String)]) -> Result<RuleSet, Vec<RuleError>> {
    let mut l = Loader {
        errors: Vec::new(),
        lists: HashMap::new(),
        macros: Vec::new(),
        rules: Vec::new(),
    };
    for (name, text) in sources {
        match yaml::parse(text) {
            Ok(root) => l.file(name, &root),
            Err((at, msg)) => l.error(name, at, format!("not valid YAML: {msg}")),
        }
    }
    let set = l.finish();
    if l.errors.is_empty() {
        Ok(set)
    } else {
        Err(l.errors)
    }
}

/// A condition as written, with where it is.
#[derive(Clone)]
struct CondText {
    text: String,
    file: String,
    at: Pos,
    plain: bool,
}

struct RawMacro {
    name: String,
    parts: Vec<CondText>,
}

#[derive(Default)]
struct RawRule {
    id: String,
    file: String,
    line: usize,
    description: String,
    kinds: Vec<Kind>,
    conds: Vec<CondText>,
    severity: Option<Severity>,
    tags: Vec<String>,
    output: Option<CondText>,
    enabled: bool,
    exceptions: Vec<(String, Node)>,
    dedup: Option<(String, Node)>,
    threshold: Option<(String, Node)>,
    tests: Vec<(String, Node)>,
    fingerprint: u64,
    action: Option<Action>,
    mode: Option<Mode>,
    allow_broad: bool,
}

struct Loader {
    errors: Vec<RuleError>,
    lists: HashMap<String, Vec<String>>,
    macros: Vec<RawMacro>,
    rules: Vec<RawRule>,
}

const LIST_KEYS: &[&str] = &["list", "items", "append"];
const MACRO_KEYS: &[&str] = &["macro", "condition", "append"];
const RULE_KEYS: &[&str] = &[
    "rule",
    "description",
    "events",
    "condition",
    "severity",
    "tags",
    "output",
    "enabled",
    "exceptions",
    "dedup",
    "threshold",
    "tests",
    "append",
    "action",
    "mode",
    "allow_broad",
];

fn strings(n: &Node) -> Option<Vec<String>> {
    match n {
        Node::Seq { items, .. } => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

fn fingerprint(file: &str, n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{n:?}").replace(file, "").hash(&mut h);
    h.finish()
}

impl Loader {
    fn error(&mut self, file: &str, at: Pos, msg: impl Into<String>) {
        self.errors.push(RuleError {
            file: file.to_string(),
            line: at.line,
            col: at.col,
            msg: msg.into(),
        });
    }

    /// An error at `span` of a condition.
    fn cond_error(&mut self, c: &CondText, e: &LangError) {
        let (line, col, msg) = if c.plain && !c.text.contains('\n') {
            (c.at.line, c.at.col + e.span.start, e.msg.clone())
        } else {
            (
                c.at.line,
                c.at.col,
                format!("at column {} of the condition: {}", e.span.start + 1, e.msg),
            )
        };
        self.errors.push(RuleError {
            file: c.file.clone(),
            line,
            col,
            msg,
        });
    }

    fn file(&mut self, file: &str, root: &Node) {
        let Node::Seq { items, .. } = root else {
            return self.error(
                file,
                root.at(),
                "a rule file is a list of `- rule:`, `- list:` and `- macro:` items",
            );
        };
        for item in items {
            let Node::Map { entries, at } = item else {
                self.error(
                    file,
                    item.at(),
                    "an item is a mapping with `rule:`, `list:` or `macro:`",
                );
                continue;
            };
            let (kind, allowed) = if item.get("rule").is_some() {
                ("rule", RULE_KEYS)
            } else if item.get("list").is_some() {
                ("list", LIST_KEYS)
            } else if item.get("macro").is_some() {
                ("macro", MACRO_KEYS)
            } else {
                self.error(file, *at, "an item needs `rule:`, `list:` or `macro:`");
                continue;
            };
            let mut ok = true;
            for (k, v) in entries {
                if !allowed.contains(&k.as_str()) {
                    self.error(
                        file,
                        v.at(),
                        format!(
                            "unknown key `{k}` in a {kind} (known: {})",
                            allowed.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
            if ok {
                match kind {
                    "rule" => self.rule(file, item),
                    "list" => self.list(file, item),
                    _ => self.macro_(file, item),
                }
            }
        }
    }

    fn append(&mut self, file: &str, item: &Node) -> bool {
        match item.get("append") {
            None => false,
            Some(n) => match n.as_str() {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    self.error(file, n.at(), "`append` is true or false");
                    false
                }
            },
        }
    }

    fn list(&mut self, file: &str, item: &Node) {
        let name_node = item.get("list").expect("checked");
        let Some(name) = name_node.as_str().map(str::to_string) else {
            return self.error(file, name_node.at(), "a list's name is a plain value");
        };
        let append = self.append(file, item);
        let items = match item.get("items").map(|n| (n, strings(n))) {
            Some((_, Some(v))) => v,
            Some((n, None)) => return self.error(file, n.at(), "`items` is a list of values"),
            None => return self.error(file, item.at(), format!("list `{name}` has no `items`")),
        };
        match (self.lists.get_mut(&name), append) {
            (Some(l), true) => l.extend(items),
            (None, true) => self.error(
                file,
                name_node.at(),
                format!("`append` to list `{name}`, which no earlier file defines"),
            ),
            (Some(_), false) => self.error(
                file,
                name_node.at(),
                format!("list `{name}` is defined twice (to extend it, use `append: true`)"),
            ),
            (None, false) => {
                self.lists.insert(name, items);
            }
        }
    }

    fn cond(&mut self, file: &str, n: &Node, what: &str) -> Option<CondText> {
        match n {
            Node::Scalar { text, plain, at } => Some(CondText {
                text: text.clone(),
                file: file.to_string(),
                at: *at,
                plain: *plain,
            }),
            _ => {
                self.error(file, n.at(), format!("`{what}` is a string"));
                None
            }
        }
    }

    fn macro_(&mut self, file: &str, item: &Node) {
        let name_node = item.get("macro").expect("checked");
        let Some(name) = name_node.as_str().map(str::to_string) else {
            return self.error(file, name_node.at(), "a macro's name is a plain value");
        };
        let append = self.append(file, item);
        let Some(cond) = item.get("condition") else {
            return self.error(
                file,
                item.at(),
                format!("macro `{name}` has no `condition`"),
            );
        };
        let Some(cond) = self.cond(file, cond, "condition") else {
            return;
        };
        match (self.macros.iter_mut().find(|m| m.name == name), append) {
            (Some(m), true) => m.parts.push(cond),
            (None, true) => self.error(
                file,
                name_node.at(),
                format!("`append` to macro `{name}`, which no earlier file defines"),
            ),
            (Some(_), false) => self.error(
                file,
                name_node.at(),
                format!("macro `{name}` is defined twice (to extend it, use `append: true`)"),
            ),
            (None, false) => self.macros.push(RawMacro {
                name,
                parts: vec![cond],
            }),
        }
    }

    fn rule(&mut self, file: &str, item: &Node) {
        let id_node = item.get("rule").expect("checked");
        let Some(id) = id_node.as_str().map(str::to_string) else {
            return self.error(file, id_node.at(), "a rule's id is a plain value");
        };
        let append = self.append(file, item);
        let existing = self.rules.iter().position(|r| r.id == id);
        let idx = match (existing, append) {
            (Some(i), true) => i,
            (None, true) => {
                return self.error(
                    file,
                    id_node.at(),
                    format!("`append` to rule `{id}`, which no earlier file defines"),
                )
            }
            (Some(_), false) => {
                return self.error(
                    file,
                    id_node.at(),
                    format!("rule `{id}` is defined twice (to change it, use `append: true`)"),
                )
            }
            (None, false) => {
                self.rules.push(RawRule {
                    id: id.clone(),
                    file: file.to_string(),
                    line: id_node.at().line,
                    enabled: true,
                    ..Default::default()
                });
                self.rules.len() - 1
            }
        };
        let fp = fingerprint(file, item);
        let mut r = std::mem::take(&mut self.rules[idx]);
        r.fingerprint = r.fingerprint.rotate_left(7) ^ fp;
        let new = !append;
        if let Some(n) = item.get("description") {
            r.description = n.as_str().unwrap_or_default().to_string();
        }
        if let Some(n) = item.get("action") {
            match n.as_str().and_then(Action::from_name) {
                Some(a) if new => r.action = Some(a),
                Some(_) => self.error(file, n.at(), "an append cannot change `action`"),
                None => self.error(
                    file,
                    n.at(),
                    format!("`action` is one of {}", Action::NAMES.join(", ")),
                ),
            }
        }
        if let Some(n) = item.get("mode") {
            match n.as_str() {
                Some("monitor") => r.mode = Some(Mode::Monitor),
                Some("enforce") => r.mode = Some(Mode::Enforce),
                _ => self.error(file, n.at(), "`mode` is monitor or enforce"),
            }
        }
        if let Some(n) = item.get("allow_broad") {
            match n.as_str() {
                Some("true") => r.allow_broad = true,
                Some("false") => r.allow_broad = false,
                _ => self.error(file, n.at(), "`allow_broad` is true or false"),
            }
        }
        match item.get("events") {
            Some(n) if !append => match strings(n) {
                Some(names) => {
                    for name in names {
                        match Kind::from_name(&name) {
                            Some(k) if !r.kinds.contains(&k) => r.kinds.push(k),
                            Some(_) => {}
                            None => {
                                let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                                self.error(
                                    file,
                                    n.at(),
                                    format!(
                                        "no event kind is called `{name}` (kinds: {})",
                                        all.join(", ")
                                    ),
                                );
                            }
                        }
                    }
                }
                None => self.error(file, n.at(), "`events` is a list of event kinds"),
            },
            Some(n) => self.error(file, n.at(), "an append cannot change `events`"),
            None if new && r.action.is_some_and(|a| a != Action::KillUserspace) => {
                r.kinds = match r.action {
                    Some(Action::Kill) => vec![Kind::Exec],
                    _ => vec![Kind::Connect, Kind::Udp],
                }
            }
            None if new => self.error(
                file,
                id_node.at(),
                format!("rule `{id}` has no `events` (the kinds it applies to)"),
            ),
            None => {}
        }
        match item.get("condition") {
            Some(n) => {
                if let Some(c) = self.cond(file, n, "condition") {
                    r.conds.push(c);
                }
            }
            None if new => self.error(
                file,
                id_node.at(),
                format!("rule `{id}` has no `condition`"),
            ),
            None => {}
        }
        match item.get("severity") {
            Some(n) => match n.as_str().and_then(Severity::from_name) {
                Some(s) => r.severity = Some(s),
                None => self.error(
                    file,
                    n.at(),
                    format!("`severity` is one of {}", Severity::NAMES.join(", ")),
                ),
            },
            None if new => self.error(file, id_node.at(), format!("rule `{id}` has no `severity`")),
            None => {}
        }
        if let Some(n) = item.get("tags") {
            match strings(n) {
                Some(t) => r.tags.extend(t),
                None => self.error(file, n.at(), "`tags` is a list of strings"),
            }
        }
        match item.get("output") {
            Some(n) => r.output = self.cond(file, n, "output"),
            None if new => self.error(file, id_node.at(), format!("rule `{id}` has no `output`")),
            None => {}
        }
        if let Some(n) = item.get("enabled") {
            match n.as_str() {
                Some("true") => r.enabled = true,
                Some("false") => r.enabled = false,
                _ => self.error(file, n.at(), "`enabled` is true or false"),
            }
        }
        match item.get("exceptions") {
            Some(Node::Seq { items, .. }) => r
                .exceptions
                .extend(items.iter().map(|e| (file.to_string(), e.clone()))),
            Some(n) => self.error(file, n.at(), "`exceptions` is a list"),
            None => {}
        }
        for (key, slot) in [("dedup", &mut r.dedup), ("threshold", &mut r.threshold)] {
            if let Some(n) = item.get(key) {
                *slot = Some((file.to_string(), n.clone()));
            }
        }
        match item.get("tests") {
            Some(Node::Seq { items, .. }) => r
                .tests
                .extend(items.iter().map(|t| (file.to_string(), t.clone()))),
            Some(n) => self.error(file, n.at(), "`tests` is a list"),
            None => {}
        }
        self.rules[idx] = r;
    }

    fn finish(&mut self) -> RuleSet {
        // macros: each part parsed; appended parts are alternatives
        let mut macros = HashMap::new();
        for m in std::mem::take(&mut self.macros) {
            let mut exprs = Vec::new();
            for part in &m.parts {
                match parse(&part.text) {
                    Ok(e) => exprs.push(e),
                    Err(e) => self.cond_error(part, &e),
                }
            }
            let first = &m.parts[0];
            let expr = if exprs.len() == 1 {
                exprs.pop().expect("one")
            } else {
                Expr::Or(exprs)
            };
            macros.insert(
                m.name.clone(),
                MacroDef {
                    expr,
                    origin: format!("{}:{}:{}", first.file, first.at.line, first.at.col),
                },
            );
        }
        let lists = std::mem::take(&mut self.lists);
        let slots = std::cell::RefCell::new(crate::compile::Slots::default());
        let mut set = RuleSet {
            rules: Vec::new(),
            by_kind: vec![Vec::new(); Kind::ALL.len()],
            slots: Default::default(),
            enforcement_rule: registry().field("enforcement.rule"),
        };
        for r in std::mem::take(&mut self.rules) {
            if let Some(rule) = self.compile_rule(r, &lists, &macros, &slots) {
                if rule.enabled {
                    // the kernel decides an action rule: live, it fires on
                    // the enforcement events the kernel wrote for it
                    let live = match rule.enforce {
                        Some(_) => vec![Kind::Enforcement],
                        None => rule.kinds.clone(),
                    };
                    for k in live {
                        set.by_kind[k as usize].push(set.rules.len());
                    }
                }
                set.rules.push(rule);
            }
        }
        let acting = set
            .rules
            .iter()
            .filter(|r| r.enabled && r.enforce.is_some())
            .count();
        if acting > ksight_core::enforce::MAX_RULES {
            self.error(
                "rules",
                Pos { line: 0, col: 0 },
                format!(
                    "{acting} enabled rules have an action; the kernel applies at most {}",
                    ksight_core::enforce::MAX_RULES
                ),
            );
        }
        set.slots = slots.into_inner();
        set
    }

    fn compile_rule(
        &mut self,
        r: RawRule,
        lists: &HashMap<String, Vec<String>>,
        macros: &HashMap<String, MacroDef>,
        slots: &std::cell::RefCell<crate::compile::Slots>,
    ) -> Option<Rule> {
        let errors = self.errors.len();
        let here = Pos {
            line: r.line,
            col: 1,
        };
        if r.kinds.is_empty() {
            return None; // said above
        }
        let scope = Scope {
            kinds: &r.kinds,
            lists,
            macros,
            expanding: Default::default(),
            slots,
        };
        let mut parts = Vec::new();
        let mut exprs = Vec::new();
        for c in &r.conds {
            match parse(&c.text).and_then(|e| {
                let p = compile(&e, &scope)?;
                exprs.push(e);
                Ok(p)
            }) {
                Ok(p) => parts.push(p),
                Err(e) => self.cond_error(c, &e),
            }
        }
        let enforce = match r.action {
            Some(Action::KillUserspace) => None,
            Some(action) if self.errors.len() == errors => {
                self.enforced(&r, action, &exprs, lists, macros)
            }
            _ => None,
        };
        // an action rule's alerts come from enforcement events: its output
        // and grouping read fields both kinds have
        let out_kinds: Vec<Kind> = match r.action {
            Some(Action::KillUserspace) | None => r.kinds.clone(),
            Some(_) => r.kinds.iter().copied().chain([Kind::Enforcement]).collect(),
        };
        let cond: Pred = if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Box::new(move |at| parts.iter().all(|p| p(at)))
        };
        let mut exceptions = Vec::new();
        for (file, n) in &r.exceptions {
            if let Some(e) = self.exception(file, n, &scope) {
                exceptions.push(e);
            }
        }
        let exception: Option<Pred> = match exceptions.len() {
            0 => None,
            _ => Some(Box::new(move |at| exceptions.iter().any(|p| p(at)))),
        };
        let output = match &r.output {
            Some(o) => match Template::parse(&o.text, &out_kinds) {
                Ok(t) => Some(t),
                Err((off, msg)) => {
                    let e = LangError {
                        span: Span {
                            start: off,
                            end: off,
                        },
                        msg: format!("in the output: {msg}"),
                    };
                    self.cond_error(o, &e);
                    None
                }
            },
            None => None,
        };
        let dedup = r.dedup.as_ref().and_then(|(file, n)| {
            let (by, window_ns, _) = self.grouping(file, n, &out_kinds, false)?;
            Some(Dedup { by, window_ns })
        });
        let threshold = r.threshold.as_ref().and_then(|(file, n)| {
            let (by, window_ns, count) = self.grouping(file, n, &out_kinds, true)?;
            Some(Threshold {
                count,
                window_ns,
                by,
            })
        });
        let mut tests = Vec::new();
        for (file, n) in &r.tests {
            if let Some(t) = self.test(file, n) {
                tests.push(t);
            }
        }
        if r.severity.is_none() {
            self.error(
                &r.file,
                here,
                format!("rule `{}` has no valid severity", r.id),
            );
        }
        if self.errors.len() > errors {
            return None;
        }
        Some(Rule {
            id: r.id.into(),
            description: r.description,
            kinds: r.kinds,
            severity: r.severity?,
            tags: r.tags.into(),
            enabled: r.enabled,
            cond,
            exception,
            output: output?,
            dedup,
            threshold,
            tests,
            origin: format!("{}:{}", r.file, r.line),
            fingerprint: r.fingerprint,
            enforce,
            userspace_kill: r.action == Some(Action::KillUserspace),
            mode: r.mode,
        })
    }

    /// An action rule's kernel form; its errors point at its condition.
    fn enforced(
        &mut self,
        r: &RawRule,
        action: Action,
        exprs: &[Expr],
        lists: &HashMap<String, Vec<String>>,
        macros: &HashMap<String, MacroDef>,
    ) -> Option<PolicyRule> {
        let here = Pos {
            line: r.line,
            col: 1,
        };
        let allowed: &[Kind] = match action {
            Action::Kill => &[Kind::Exec],
            _ => &[Kind::Connect, Kind::Udp],
        };
        if let Some(k) = r.kinds.iter().find(|k| !allowed.contains(k)) {
            let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
            self.error(
                &r.file,
                here,
                format!(
                    "rule `{}`: a {} rule applies to {} events, not {}",
                    r.id,
                    action.name(),
                    names.join(" and "),
                    k.name()
                ),
            );
            return None;
        }
        if !r.exceptions.is_empty() {
            self.error(
                &r.file,
                here,
                format!(
                    "rule `{}`: the kernel decides an action rule, and it has no exceptions: \
                     narrow the condition instead",
                    r.id
                ),
            );
            return None;
        }
        let mut pr =
            match crate::enforce::kernel_rule(r.id.as_str().into(), action, exprs, lists, macros) {
                Ok(p) => p,
                Err(e) => {
                    // one condition (appends add more): point at the first
                    match r.conds.first() {
                        Some(c) => self.cond_error(c, &e),
                        None => self.error(&r.file, here, e.msg),
                    }
                    return None;
                }
            };
        pr.protocols.tcp &= r.kinds.contains(&Kind::Connect);
        pr.protocols.udp &= r.kinds.contains(&Kind::Udp);
        pr.mode = r.mode;
        pr.allow_broad = r.allow_broad;
        if let Err(e) = pr.check() {
            self.error(&r.file, here, format!("rule `{}`: {e}", r.id));
            return None;
        }
        Some(pr)
    }

    /// `{name, fields: [...], comps: [...], values: [[...], ...]}`: the rule
    /// does not fire when, for one of the value tuples, every field compares
    /// true with its value.
    fn exception(&mut self, file: &str, n: &Node, scope: &Scope<'_>) -> Option<Pred> {
        let at = n.at();
        let fields = match n.get("fields").and_then(strings) {
            Some(f) if !f.is_empty() => f,
            _ => {
                self.error(file, at, "an exception has `fields`: a list of field names");
                return None;
            }
        };
        let comps = match n.get("comps") {
            None => vec!["=".to_string(); fields.len()],
            Some(c) => match strings(c) {
                Some(c) if c.len() == fields.len() => c,
                _ => {
                    self.error(file, c.at(), "`comps` lists one comparison per field");
                    return None;
                }
            },
        };
        let Some(Node::Seq { items: rows, .. }) = n.get("values") else {
            self.error(
                file,
                at,
                "an exception has `values`: a list of value tuples",
            );
            return None;
        };
        let span = Span::default();
        let mut alts = Vec::new();
        for row in rows {
            let values = match row {
                Node::Seq { items, .. } if items.len() == fields.len() => items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>(),
                Node::Scalar { text, .. } if fields.len() == 1 => vec![text.clone()],
                _ => {
                    self.error(
                        file,
                        row.at(),
                        format!(
                            "each value tuple has {} values, one per field",
                            fields.len()
                        ),
                    );
                    return None;
                }
            };
            let mut all = Vec::new();
            for ((field, comp), value) in fields.iter().zip(&comps).zip(values) {
                let lit = Lit {
                    text: value,
                    quoted: true,
                    span,
                };
                let test = match comp.as_str() {
                    "=" | "==" => Test::Cmp(CmpOp::Eq, lit),
                    "!=" => Test::Cmp(CmpOp::Ne, lit),
                    "startswith" => Test::Str(StrOp::StartsWith, lit),
                    "endswith" => Test::Str(StrOp::EndsWith, lit),
                    "contains" => Test::Str(StrOp::Contains, lit),
                    "glob" => Test::Str(StrOp::Glob, lit),
                    "in" => Test::InList(Lit {
                        quoted: false,
                        ..lit
                    }),
                    other => {
                        self.error(file, row.at(), format!("unknown comparison `{other}` (=, !=, startswith, endswith, contains, glob, in)"));
                        return None;
                    }
                };
                all.push(Expr::Test {
                    field: field.clone(),
                    fspan: span,
                    test,
                });
            }
            alts.push(Expr::And(all));
        }
        match compile(&Expr::Or(alts), scope) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(file, at, format!("in an exception: {}", e.msg));
                None
            }
        }
    }

    /// `{by: [fields], window: 60s, count: N}` (count for thresholds).
    fn grouping(
        &mut self,
        file: &str,
        n: &Node,
        kinds: &[Kind],
        count: bool,
    ) -> Option<(Vec<&'static Field>, u64, u64)> {
        let at = n.at();
        let mut by = Vec::new();
        if let Some(list) = n.get("by") {
            let Some(names) = strings(list) else {
                self.error(file, list.at(), "`by` is a list of field names");
                return None;
            };
            for name in names {
                match registry().field(&name) {
                    Some(f) if kinds.iter().all(|k| f.has(*k)) => by.push(f),
                    Some(_) => {
                        self.error(
                            file,
                            list.at(),
                            format!("`{name}` is not a field of every kind of this rule"),
                        );
                        return None;
                    }
                    None => {
                        self.error(file, list.at(), format!("unknown field `{name}`"));
                        return None;
                    }
                }
            }
        }
        let window = match n
            .get("window")
            .and_then(Node::as_str)
            .map(humantime::parse_duration)
        {
            Some(Ok(d)) if !d.is_zero() => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            _ => {
                self.error(file, at, "`window` is a duration such as 60s");
                return None;
            }
        };
        let n_count = if count {
            match n.get("count").and_then(Node::as_str).map(str::parse::<u64>) {
                Some(Ok(c)) if c > 0 => c,
                _ => {
                    self.error(
                        file,
                        at,
                        "a threshold has `count`: how many matches fire it",
                    );
                    return None;
                }
            }
        } else {
            if n.get("count").is_some() {
                self.error(file, at, "`count` belongs to `threshold`, not `dedup`");
                return None;
            }
            0
        };
        Some((by, window, n_count))
    }

    /// `{expect: match | no match, event: {...} | events: [...] | file: x.jsonl}`.
    fn test(&mut self, file: &str, n: &Node) -> Option<RuleTest> {
        let at = n.at();
        let origin = format!("{file}:{}", at.line);
        let expect_match = match n.get("expect").and_then(Node::as_str) {
            Some("match") => true,
            Some("no match") | Some("no_match") => false,
            _ => {
                self.error(file, at, "a test has `expect: match` or `expect: no match`");
                return None;
            }
        };
        let mut trees = Vec::new();
        if let Some(e) = n.get("event") {
            trees.push(to_json(e));
        }
        if let Some(Node::Seq { items, .. }) = n.get("events") {
            trees.extend(items.iter().map(to_json));
        }
        let mut events = Vec::new();
        for t in trees {
            let raw: Arc<str> = serde_json::to_string(&t).unwrap_or_default().into();
            match JsonEvent::from_tree(t, raw) {
                Ok(e) => events.push(e),
                Err(msg) => self.error(file, at, format!("a test event: {msg}")),
            }
        }
        if let Some(path) = n.get("file").and_then(Node::as_str) {
            let full = Path::new(file).parent().unwrap_or(Path::new("")).join(path);
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    for (i, line) in text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                    {
                        match JsonEvent::parse(line) {
                            Ok(e) => events.push(e),
                            Err(msg) => {
                                self.error(file, at, format!("{}:{}: {msg}", full.display(), i + 1))
                            }
                        }
                    }
                }
                Err(e) => self.error(file, at, format!("test file {}: {e}", full.display())),
            }
        }
        if events.is_empty() {
            self.error(file, at, "a test has `event:`, `events:` or `file:`");
            return None;
        }
        Some(RuleTest {
            expect_match,
            events,
            origin,
        })
    }
}

/// A YAML node as JSON: plain scalars that read as numbers, booleans or null
/// become those; everything else is a string.
fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match n {
        Node::Scalar {
            text, plain: true, ..
        } => match text.as_str() {
            "true" => J::Bool(true),
            "false" => J::Bool(false),
            "null" | "~" => J::Null,
            t => t
                .parse::<i64>()
                .map(J::from)
                .unwrap_or_else(|_| J::String(t.to_string())),
        },
        Node::Scalar { text, .. } => J::String(text.clone()),
        Node::Seq { items, .. } => J::Array(items.iter().map(to_json).collect()),
        Node::Map { entries, .. } => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load1(text: &str) -> Result<RuleSet, Vec<RuleError>> {
        load(&[("r.yaml".into(), text.into())])
    }

    fn errors(text: &str) -> Vec<String> {
        load1(text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const GOOD: &str = r#"
- list: shells
  items: [sh, bash]
- macro: is_shell
  condition: process.comm in shells
- rule: shell
  description: a shell ran
  events: [exec]
  condition: is_shell and exec.cwd startswith "/tmp"
  severity: low
  tags: [T1059]
  output: "{process.comm} in {exec.cwd}"
"#;

    #[test]
    fn a_good_file_loads() {
        let set = load1(GOOD).unwrap();
        assert_eq!(set.rules.len(), 1);
        assert_eq!(set.kinds(), [Kind::from_name("exec").unwrap()]);
        assert_eq!(&*set.rules[0].id, "shell");
    }

    #[test]
    fn errors_say_file_line_and_column() {
        let e = errors(&GOOD.replace("exec.cwd startswith", "exec.cwdd startswith"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("r.yaml:9:27: unknown field `exec.cwdd` (did you mean `exec.cwd`?)"),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("events: [exec]", "events: [dns]"));
        assert!(
            e.iter()
                .any(|e| e.contains("`exec.cwd` is not a field of dns events")),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("severity: low", "severity: urgent"));
        assert!(e[0].contains("r.yaml:10:13"), "{e:?}");
        let e = errors(&GOOD.replace("tags:", "tagz:"));
        assert!(e[0].contains("unknown key `tagz`"), "{e:?}");
        let e = errors(&GOOD.replace("in shells", "in shellz"));
        assert!(
            e[0].contains("no list named `shellz`") && e[0].contains("in macro `is_shell`"),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("{exec.cwd}", "{exec.cwdx}"));
        assert!(e[0].contains("in the output: unknown field"), "{e:?}");
        let e = errors(&GOOD.replace("process.comm in shells", "process.pid == x"));
        assert!(e[0].contains("`x` is not an integer"), "{e:?}");
    }

    #[test]
    fn appends_extend_lists_and_rules() {
        let extra = r#"
- list: shells
  items: [zsh]
  append: true
- rule: shell
  condition: process.uid == 0
  append: true
  exceptions:
    - name: root_cron
      fields: [process.exe]
      values: [[/usr/sbin/cron]]
"#;
        let set = load(&[
            ("a.yaml".into(), GOOD.into()),
            ("b.yaml".into(), extra.into()),
        ])
        .unwrap();
        assert!(set.rules[0].exception.is_some());
        let e = load(&[("b.yaml".into(), extra.into())]).unwrap_err();
        assert!(
            e[0].to_string().contains("which no earlier file defines"),
            "{e:?}"
        );
    }

    #[test]
    fn a_macro_that_uses_itself_is_refused() {
        let e = errors("- macro: m\n  condition: m\n- rule: r\n  events: [exec]\n  condition: m\n  severity: low\n  output: x\n");
        assert!(e[0].contains("uses itself"), "{e:?}");
    }
}
