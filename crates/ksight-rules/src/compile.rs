//! Conditions type-checked against the field registry and compiled to a tree
//! of closures. Every field must exist on every kind the rule applies to,
//! every operator must suit the field's type, every value must parse as that
//! type (an IP, a duration, one of an enum's names), every regex must compile:
//! a rule that loads never fails at run time. Evaluation reads fields through
//! [`Source`], which is a live event or a replayed line of JSON alike.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;

use ksight_core::event::Kind;
use ksight_core::registry::{registry, Field, FieldType, Value};
use regex::bytes::Regex;

use crate::lang::{CmpOp, Expr, LangError, Lit, Span, StrOp, Test};

/// Where a condition reads its fields.
pub trait Source {
    fn kind(&self) -> Kind;
    fn get(&self, f: &'static Field) -> Value<'_>;
}

/// What a predicate sees: the event, what was already worked out about it
/// (each field is read and each macro decided at most once per event: rules
/// that share them share the work), and inside `any(...)`/`all(...)` the
/// element.
pub struct At<'a, 'v> {
    pub src: &'v dyn Source,
    pub memo: &'a Memo<'v>,
    pub slots: &'a Slots,
    pub elem: Option<&'a Value<'v>>,
}

impl<'a, 'v> At<'a, 'v> {
    /// A field's value in this event, read on first use.
    pub fn field(&self, slot: usize) -> &'a Value<'v> {
        self.memo.fields[slot].get_or_init(|| self.src.get(self.slots.fields[slot]))
    }
}

/// What a rule set reads from an event: its fields and its macros (outside
/// any quantifier), each in one slot of [`Memo`].
#[derive(Default)]
pub struct Slots {
    pub fields: Vec<&'static Field>,
    pub macros: Vec<String>,
}

/// One event's worked-out fields and macros. Emptied and refilled for each
/// event; its buffers are kept, so evaluation allocates nothing for it.
pub struct Memo<'v> {
    fields: Vec<OnceCell<Value<'v>>>,
    macros: Vec<OnceCell<bool>>,
}

impl Memo<'static> {
    pub fn new() -> Self {
        Memo {
            fields: Vec::new(),
            macros: Vec::new(),
        }
    }
}

impl Default for Memo<'static> {
    fn default() -> Self {
        Memo::new()
    }
}

impl Memo<'_> {
    /// This memo's buffers, empty, for an event of another lifetime.
    pub fn reuse<'w>(self, slots: &Slots) -> Memo<'w> {
        let mut fields = recycle(self.fields);
        fields.resize_with(slots.fields.len(), OnceCell::new);
        let mut macros = self.macros;
        macros.clear();
        macros.resize_with(slots.macros.len(), OnceCell::new);
        Memo { fields, macros }
    }
}

/// An emptied vector with another lifetime in its elements, in the same
/// allocation (std collects a mapped `IntoIter` in place when the layouts
/// match; were it not to, this would allocate, never misbehave).
fn recycle<'w>(mut v: Vec<OnceCell<Value<'_>>>) -> Vec<OnceCell<Value<'w>>> {
    v.clear();
    v.into_iter().map(|_| OnceCell::new()).collect()
}

pub type Pred = Box<dyn for<'a, 'v> Fn(&At<'a, 'v>) -> bool + Send + Sync>;

/// A named sub-condition, parsed.
pub struct MacroDef {
    pub expr: Expr,
    /// Where it is defined, for errors inside it: `file:line:col`.
    pub origin: String,
}

/// What a condition may refer to.
pub struct Scope<'a> {
    /// The kinds the rule applies to: each field must exist on all of them.
    pub kinds: &'a [Kind],
    /// Named value lists.
    pub lists: &'a HashMap<String, Vec<String>>,
    pub macros: &'a HashMap<String, MacroDef>,
    /// The macros being expanded (a macro that uses itself is an error).
    pub expanding: RefCell<Vec<String>>,
    /// What the rule set reads, slot by slot (shared by its rules).
    pub slots: &'a RefCell<Slots>,
}

impl Scope<'_> {
    fn slot(&self, f: &'static Field) -> usize {
        let fields = &mut self.slots.borrow_mut().fields;
        fields
            .iter()
            .position(|s| std::ptr::eq(*s, f))
            .unwrap_or_else(|| {
                fields.push(f);
                fields.len() - 1
            })
    }

    fn macro_slot(&self, name: &str) -> usize {
        let macros = &mut self.slots.borrow_mut().macros;
        macros.iter().position(|m| m == name).unwrap_or_else(|| {
            macros.push(name.to_string());
            macros.len() - 1
        })
    }
}

/// The element type of the enclosing quantifier, if any.
#[derive(Clone, Copy)]
enum Elem {
    None,
    Value(FieldType),
    Record(&'static [(&'static str, FieldType)]),
}

fn err<T>(span: Span, msg: impl Into<String>) -> Result<T, LangError> {
    Err(LangError {
        span,
        msg: msg.into(),
    })
}

/// Compile a macro-free condition.
pub fn compile(e: &Expr, scope: &Scope<'_>) -> Result<Pred, LangError> {
    compile_in(e, scope, Elem::None)
}

fn compile_in(e: &Expr, scope: &Scope<'_>, elem: Elem) -> Result<Pred, LangError> {
    Ok(match e {
        Expr::Const(b) => {
            let b = *b;
            Box::new(move |_| b)
        }
        Expr::Not(inner) => {
            let p = compile_in(inner, scope, elem)?;
            Box::new(move |at| !p(at))
        }
        Expr::And(parts) => {
            let ps = parts
                .iter()
                .map(|p| compile_in(p, scope, elem))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(move |at| ps.iter().all(|p| p(at)))
        }
        Expr::Or(parts) => {
            let mut ps = Vec::new();
            // `f regex a or f regex b`: one automaton for the field, not one per pattern.
            let mut regexes: Vec<(&str, Span, Vec<&str>)> = Vec::new();
            for p in parts {
                let compiled = compile_in(p, scope, elem)?; // checks each alone
                if let Expr::Test {
                    field,
                    fspan,
                    test: Test::Str(StrOp::Regex, l),
                } = p
                {
                    if !field.starts_with('.') {
                        match regexes.iter_mut().find(|(f, ..)| f == field) {
                            Some((.., pats)) => pats.push(&l.text),
                            None => regexes.push((field, *fspan, vec![&l.text])),
                        }
                        continue;
                    }
                }
                ps.push(compiled);
            }
            for (field, fspan, pats) in regexes {
                let f = event_field(field, fspan, scope)?;
                let alt: Vec<String> = pats.iter().map(|p| format!("(?:{p})")).collect();
                let re = Regex::new(&alt.join("|"))
                    .or_else(|e| err(fspan, format!("bad regex: {e}")))?;
                let slot = scope.slot(f);
                ps.push(Box::new(move |at| {
                    at.field(slot).as_bytes().is_some_and(|b| re.is_match(b))
                }));
            }
            if ps.len() == 1 {
                return Ok(ps.pop().expect("one"));
            }
            Box::new(move |at| ps.iter().any(|p| p(at)))
        }
        Expr::Macro { name, span } => {
            let Some(m) = scope.macros.get(name) else {
                return err(
                    *span,
                    format!("`{name}` is neither a field followed by a test nor a macro"),
                );
            };
            if scope.expanding.borrow().contains(name) {
                return err(*span, format!("macro `{name}` uses itself"));
            }
            scope.expanding.borrow_mut().push(name.clone());
            let compiled = compile_in(&m.expr, scope, elem);
            scope.expanding.borrow_mut().pop();
            let p = compiled.map_err(|e| LangError {
                span: *span,
                msg: format!(
                    "in macro `{name}` ({}, column {} of its condition): {}",
                    m.origin,
                    e.span.start + 1,
                    e.msg
                ),
            })?;
            if !matches!(elem, Elem::None) {
                return Ok(p); // depends on the element: decided per element
            }
            let slot = scope.macro_slot(name);
            Box::new(move |at| *at.memo.macros[slot].get_or_init(|| p(at)))
        }
        Expr::Quant {
            all,
            field,
            fspan,
            pred,
        } => {
            let f = event_field(field, *fspan, scope)?;
            let inner = match f.ty {
                FieldType::List(t) => Elem::Value(*t),
                FieldType::Records(fields) => Elem::Record(fields),
                other => {
                    return err(
                        *fspan,
                        format!("`{field}` is {other}, not a list: any()/all() take a list field"),
                    )
                }
            };
            let p = compile_in(pred, scope, inner)?;
            let all = *all;
            let slot = scope.slot(f);
            Box::new(move |at| match at.field(slot) {
                Value::List(items) => {
                    let mut each = items.iter().map(|v| {
                        p(&At {
                            src: at.src,
                            memo: at.memo,
                            slots: at.slots,
                            elem: Some(v),
                        })
                    });
                    if all {
                        each.all(|x| x)
                    } else {
                        each.any(|x| x)
                    }
                }
                _ => all,
            })
        }
        Expr::Test { field, fspan, test } => {
            if let Some(sub) = field.strip_prefix('.') {
                let (ty, index) = match (elem, sub) {
                    (Elem::None, _) => {
                        return err(
                            *fspan,
                            format!("`{field}` means an element: only inside any(...) or all(...)"),
                        )
                    }
                    (Elem::Value(t), "") => (t, None),
                    (Elem::Value(t), _) => {
                        return err(
                            *fspan,
                            format!("the elements here are {t}: refer to them as `.`"),
                        )
                    }
                    (Elem::Record(fields), "") => {
                        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                        return err(
                            *fspan,
                            format!("an element here has fields: use .{}", names.join(", .")),
                        );
                    }
                    (Elem::Record(fields), s) => match fields.iter().position(|(n, _)| *n == s) {
                        Some(i) => (fields[i].1, Some(i)),
                        None => {
                            let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                            return err(
                                *fspan,
                                format!(
                                    "an element here has no field `{s}`: it has .{}",
                                    names.join(", .")
                                ),
                            );
                        }
                    },
                };
                let check = value_test(ty, test, scope, field)?;
                Box::new(move |at| match (at.elem, index) {
                    (Some(v), None) => check(v),
                    (Some(Value::Record(fields)), Some(i)) => fields.get(i).is_some_and(&check),
                    _ => false,
                })
            } else {
                let f = event_field(field, *fspan, scope)?;
                let check = value_test(f.ty, test, scope, field)?;
                let slot = scope.slot(f);
                Box::new(move |at| check(at.field(slot)))
            }
        }
    })
}

/// A registry field that every kind of the rule has.
fn event_field(path: &str, span: Span, scope: &Scope<'_>) -> Result<&'static Field, LangError> {
    let reg = registry();
    let Some(f) = reg.field(path) else {
        let hint = suggest(path)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return err(span, format!("unknown field `{path}`{hint}"));
    };
    let missing: Vec<&str> = scope
        .kinds
        .iter()
        .filter(|k| !f.has(**k))
        .map(|k| k.name())
        .collect();
    if !missing.is_empty() {
        let has: Vec<&str> = f.kinds().map(|k| k.name()).collect();
        return err(
            span,
            format!(
                "`{path}` is not a field of {} events (it is one of {})",
                missing.join(", "),
                has.join(", ")
            ),
        );
    }
    Ok(f)
}

/// The registry's closest field name, for a misspelled one.
fn suggest(path: &str) -> Option<&'static str> {
    registry()
        .fields()
        .map(|f| (distance(path, f.path), f.path))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, p)| p)
}

fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

type Check = Box<dyn for<'v> Fn(&Value<'v>) -> bool + Send + Sync>;

/// A check from a closure (gives the closure its higher-ranked signature).
fn check(f: impl for<'v> Fn(&Value<'v>) -> bool + Send + Sync + 'static) -> Check {
    Box::new(f)
}

/// A test on one value of type `ty`.
fn value_test(
    ty: FieldType,
    test: &Test,
    scope: &Scope<'_>,
    field: &str,
) -> Result<Check, LangError> {
    if *test == Test::Exists {
        return Ok(check(|v| !matches!(v, Value::Null)));
    }
    let values = |lits: &[Lit]| -> Result<Vec<Lit>, LangError> {
        let mut out = Vec::new();
        for l in lits {
            match (l.quoted, scope.lists.get(&l.text)) {
                (false, Some(items)) => out.extend(items.iter().map(|t| Lit {
                    text: t.clone(),
                    quoted: true,
                    span: l.span,
                })),
                _ => out.push(l.clone()),
            }
        }
        Ok(out)
    };
    let in_list = |l: &Lit| -> Result<Vec<Lit>, LangError> {
        match scope.lists.get(&l.text) {
            Some(_) => values(std::slice::from_ref(l)),
            None => err(l.span, format!("no list named `{}`", l.text)),
        }
    };
    let cant = |what: &str| -> Result<Check, LangError> {
        err(
            Span::default(),
            format!("`{field}` is {ty}: {what} does not apply to it"),
        )
    };
    match ty {
        FieldType::Int | FieldType::Duration => {
            let num = |l: &Lit| parse_int(l, ty == FieldType::Duration);
            match test {
                Test::Cmp(op, l) => {
                    let (op, n) = (*op, num(l)?);
                    Ok(check(move |v| matches!(v, Value::Int(x) if cmp(op, *x, n))))
                }
                Test::In(ls) => in_ints(values(ls)?.iter().map(num).collect::<Result<_, _>>()?),
                Test::InList(l) => in_ints(in_list(l)?.iter().map(num).collect::<Result<_, _>>()?),
                _ => cant("a text or address test"),
            }
        }
        FieldType::Text => match test {
            Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), l) => {
                let (want, eq) = (l.text.clone().into_bytes(), *op == CmpOp::Eq);
                Ok(check(move |v| v.as_bytes().is_some_and(|b| (b == want.as_slice()) == eq)))
            }
            Test::Cmp(_, l) => err(l.span, format!("`{field}` is text: compare it with == or !=")),
            Test::Str(op, l) => text_test(*op, l),
            Test::In(ls) => in_texts(values(ls)?),
            Test::InList(l) => in_texts(in_list(l)?),
            Test::Cidr(_) => cant("cidr()"),
            Test::Exists => unreachable!("handled above"),
        },
        FieldType::Enum(names) => {
            let name = |l: &Lit| -> Result<Vec<u8>, LangError> {
                if names.contains(&l.text.as_str()) {
                    Ok(l.text.clone().into_bytes())
                } else {
                    err(l.span, format!("`{field}` is one of {}, not `{}`", names.join(", "), l.text))
                }
            };
            enum_test(test, &values, &in_list, name, field)
        }
        FieldType::Kind => {
            let name = |l: &Lit| -> Result<Vec<u8>, LangError> {
                match Kind::from_name(&l.text) {
                    Some(k) => Ok(k.name().as_bytes().to_vec()),
                    None => err(l.span, format!("no event kind is called `{}`", l.text)),
                }
            };
            enum_test(test, &values, &in_list, name, field)
        }
        FieldType::Bool => match test {
            Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), l) => {
                let want = match l.text.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return err(l.span, "a boolean is `true` or `false`"),
                };
                let eq = *op == CmpOp::Eq;
                Ok(check(move |v| matches!(v, Value::Bool(b) if (*b == want) == eq)))
            }
            _ => cant("only == and != (and exists)"),
        },
        FieldType::Ip => {
            let ip = |l: &Lit| -> Result<IpAddr, LangError> {
                l.text
                    .parse::<IpAddr>()
                    .map(|a| a.to_canonical())
                    .or_else(|_| err(l.span, format!("`{}` is not an IP address", l.text)))
            };
            match test {
                Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), l) => {
                    let (want, eq) = (ip(l)?, *op == CmpOp::Eq);
                    Ok(check(move |v| matches!(v, Value::Ip(a) if (a.to_canonical() == want) == eq)))
                }
                Test::In(ls) => {
                    let set = values(ls)?.iter().map(ip).collect::<Result<Vec<_>, _>>()?;
                    Ok(check(move |v| matches!(v, Value::Ip(a) if set.contains(&a.to_canonical()))))
                }
                Test::InList(l) => {
                    let set = in_list(l)?.iter().map(ip).collect::<Result<Vec<_>, _>>()?;
                    Ok(check(move |v| matches!(v, Value::Ip(a) if set.contains(&a.to_canonical()))))
                }
                Test::Cidr(ls) => {
                    let nets = values(ls)?.iter().map(cidr).collect::<Result<Vec<_>, _>>()?;
                    Ok(check(move |v| match v {
                        Value::Ip(a) => {
                            let a = a.to_canonical();
                            nets.iter().any(|n| n.contains(a))
                        }
                        _ => false,
                    }))
                }
                _ => cant("only ==, !=, in (...) and in cidr(...)"),
            }
        }
        FieldType::Time => match test {
            Test::Cmp(op, l) => {
                let t = humantime::parse_rfc3339(&l.text)
                    .or_else(|_| err(l.span, format!("`{}` is not an RFC 3339 time", l.text)))?;
                let ns = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                let op = *op;
                Ok(check(move |v| {
                    matches!(v, Value::Time(t) if cmp(op, i64::try_from(t.0).unwrap_or(i64::MAX), ns))
                }))
            }
            _ => cant("only comparisons"),
        },
        FieldType::List(elem) => match test {
            Test::Str(StrOp::Contains, l) => {
                let one = value_test(*elem, &Test::Cmp(CmpOp::Eq, l.clone()), scope, field)?;
                Ok(check(move |v| match v {
                    Value::List(items) => items.iter().any(&one),
                    _ => false,
                }))
            }
            _ => err(
                Span::default(),
                format!("`{field}` is a list: test it with `contains` (an element equal to the value) or any(...)/all(...)"),
            ),
        },
        FieldType::Records(_) => cant("a test on the whole list: use any(...) or all(...)"),
    }
    .map_err(|mut e: LangError| {
        if e.span == Span::default() {
            e.span = match test {
                Test::Cmp(_, l) | Test::Str(_, l) | Test::InList(l) => l.span,
                Test::In(ls) | Test::Cidr(ls) => ls.first().map(|l| l.span).unwrap_or_default(),
                Test::Exists => Span::default(),
            };
        }
        e
    })
}

fn cmp(op: CmpOp, a: i64, b: i64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// An integer; for a duration field also `5s`, `250ms` (as ns).
fn parse_int(l: &Lit, duration: bool) -> Result<i64, LangError> {
    if let Ok(n) = l.text.parse::<i64>() {
        return Ok(n);
    }
    if duration {
        if let Ok(d) = humantime::parse_duration(&l.text) {
            return Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        }
        return err(
            l.span,
            format!("`{}` is not a duration (ns, or 5s, 250ms)", l.text),
        );
    }
    err(l.span, format!("`{}` is not an integer", l.text))
}

fn in_ints(set: Vec<i64>) -> Result<Check, LangError> {
    Ok(check(
        move |v| matches!(v, Value::Int(x) if set.contains(x)),
    ))
}

fn in_texts(lits: Vec<Lit>) -> Result<Check, LangError> {
    let set: Vec<Vec<u8>> = lits.into_iter().map(|l| l.text.into_bytes()).collect();
    Ok(check(move |v| {
        v.as_bytes()
            .is_some_and(|b| set.iter().any(|s| s.as_slice() == b))
    }))
}

/// Expands the list names among some values.
type Expand<'a, T> = &'a dyn Fn(&T) -> Result<Vec<Lit>, LangError>;

fn enum_test(
    test: &Test,
    values: Expand<'_, [Lit]>,
    in_list: Expand<'_, Lit>,
    name: impl Fn(&Lit) -> Result<Vec<u8>, LangError>,
    field: &str,
) -> Result<Check, LangError> {
    let set = |lits: Vec<Lit>| -> Result<Check, LangError> {
        let names = lits.iter().map(&name).collect::<Result<Vec<_>, _>>()?;
        Ok(check(move |v| {
            v.as_bytes()
                .is_some_and(|b| names.iter().any(|n| n.as_slice() == b))
        }))
    };
    match test {
        Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), l) => {
            let (want, eq) = (name(l)?, *op == CmpOp::Eq);
            Ok(check(move |v| {
                v.as_bytes().is_some_and(|b| (b == want.as_slice()) == eq)
            }))
        }
        Test::In(ls) => set(values(ls)?),
        Test::InList(l) => set(in_list(l)?),
        _ => err(
            Span::default(),
            format!("`{field}` takes one of a fixed set of names: compare with ==, != or in (...)"),
        ),
    }
}

fn text_test(op: StrOp, l: &Lit) -> Result<Check, LangError> {
    let lit = l.text.clone().into_bytes();
    Ok(match op {
        StrOp::Contains => {
            let finder = memmem(lit);
            check(move |v| v.as_bytes().is_some_and(&finder))
        }
        StrOp::StartsWith => check(move |v| v.as_bytes().is_some_and(|b| b.starts_with(&lit))),
        StrOp::EndsWith => check(move |v| v.as_bytes().is_some_and(|b| b.ends_with(&lit))),
        StrOp::Glob => {
            let re = Regex::new(&glob_regex(&l.text))
                .or_else(|e| err(l.span, format!("bad glob: {e}")))?;
            check(move |v| v.as_bytes().is_some_and(|b| re.is_match(b)))
        }
        StrOp::Regex => {
            let re = Regex::new(&l.text).or_else(|e| err(l.span, format!("bad regex: {e}")))?;
            check(move |v| v.as_bytes().is_some_and(|b| re.is_match(b)))
        }
    })
}

/// Substring search, with a searcher built once.
fn memmem(needle: Vec<u8>) -> impl Fn(&[u8]) -> bool + Send + Sync {
    let finder = memchr::memmem::Finder::new(&needle).into_owned();
    move |hay: &[u8]| finder.find(hay).is_some()
}

/// A shell glob (`*`, `?`, `[...]`) as an anchored regex.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '^' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

struct Net {
    addr: IpAddr,
    bits: u32,
}

impl Net {
    fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn cidr(l: &Lit) -> Result<Net, LangError> {
    let bad = || LangError {
        span: l.span,
        msg: format!(
            "`{}` is not a network such as 10.0.0.0/8 or fd00::/8",
            l.text
        ),
    };
    let (addr, bits) = match l.text.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().map_err(|_| bad())?),
        None => (l.text.as_str(), u32::MAX),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let addr = addr.to_canonical();
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = if bits == u32::MAX { max } else { bits };
    if bits > max {
        return Err(bad());
    }
    Ok(Net { addr, bits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_networks() {
        let re = Regex::new(&glob_regex("/tmp/*.sh")).unwrap();
        assert!(re.is_match(b"/tmp/x.sh"));
        assert!(!re.is_match(b"/tmp/x.sha"));
        assert!(Regex::new(&glob_regex("[!a]?")).unwrap().is_match(b"bc"));
        let lit = |t: &str| Lit {
            text: t.into(),
            quoted: false,
            span: Span::default(),
        };
        let n = cidr(&lit("10.0.0.0/8")).unwrap();
        assert!(n.contains("10.2.3.4".parse().unwrap()));
        assert!(!n.contains("11.2.3.4".parse().unwrap()));
        let n6 = cidr(&lit("fd00::/8")).unwrap();
        assert!(n6.contains("fd12::1".parse().unwrap()));
        assert!(cidr(&lit("10.0.0.0/33")).is_err());
        assert_eq!(distance("process.exee", "process.exe"), 1);
        assert_eq!(suggest("process.exee"), Some("process.exe"));
    }

    #[test]
    fn patterns_on_one_field_or_macros_shared_by_rules_decide_alike() {
        let text = r#"
- macro: odd
  condition: process.comm regex "^ab" or process.exe == /x or process.comm regex "yz$"
- rule: a
  description: d
  events: [exec]
  condition: odd
  severity: low
  tags: [T1]
  output: o
  tests:
    - {expect: match, event: {type: exec, process: {comm: ab1, exe: /y}}}
    - {expect: match, event: {type: exec, process: {comm: 1yz, exe: /y}}}
    - {expect: match, event: {type: exec, process: {comm: q, exe: /x}}}
    - {expect: no match, event: {type: exec, process: {comm: b, exe: /y}}}
- rule: b
  description: d
  events: [exec]
  condition: not odd and process.comm == b
  severity: low
  tags: [T1]
  output: o
  tests:
    - {expect: match, event: {type: exec, process: {comm: b, exe: /y}}}
    - {expect: no match, event: {type: exec, process: {comm: ab, exe: /y}}}
"#;
        let set = crate::load(&[("t.yaml".into(), text.into())]).expect("loads");
        assert_eq!(set.slots.macros.len(), 1, "one memo for the shared macro");
        let report = crate::testing::run(set);
        assert!(report.failed.is_empty(), "{:#?}", report.failed);
    }
}
