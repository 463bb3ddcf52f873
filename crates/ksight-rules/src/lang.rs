//! The condition language: text -> syntax tree, by a small recursive-descent
//! parser. Every node keeps its byte span in the condition, so that errors
//! (here and when the tree is type-checked) point at the column.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | "true" | "false"
//!          | ("any" | "all") "(" FIELD "," expr ")"    inside: .sub or . for the element
//!          | FIELD test
//!          | MACRO
//! test    := ("==" | "!=" | "<" | "<=" | ">" | ">=") value
//!          | ("contains" | "startswith" | "endswith" | "glob" | "regex") value
//!          | "in" ( "(" value ("," value)* ")" | LIST | "cidr" "(" value ("," value)* ")" )
//!          | "exists"
//! value   := "quoted string" | 'quoted string' | word (a number, 5s, /usr/bin/x, a list name)
//! ```
//!
//! No loops, no assignments, no calls but the quantifiers and `cidr`: a
//! condition is evaluated by a root agent on every event of its kinds.

use std::fmt;

/// A byte range in the condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangError {
    pub span: Span,
    pub msg: String,
}

impl fmt::Display for LangError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

fn err<T>(span: Span, msg: impl Into<String>) -> Result<T, LangError> {
    Err(LangError {
        span,
        msg: msg.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
    Glob,
    Regex,
}

/// A value as written: typed later, by the field it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lit {
    pub text: String,
    /// Quoted: a string, never a list name.
    pub quoted: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Cmp(CmpOp, Lit),
    Str(StrOp, Lit),
    /// `in (a, b, list)` (unquoted words that name a list are expanded later).
    In(Vec<Lit>),
    /// `in list`: a list by name.
    InList(Lit),
    /// `in cidr(10.0.0.0/8, ...)`.
    Cidr(Vec<Lit>),
    Exists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Const(bool),
    /// `field test`. Inside a quantifier the field may be `.` (the element)
    /// or `.name` (one of its fields).
    Test {
        field: String,
        fspan: Span,
        test: Test,
    },
    /// `any(field, expr)` / `all(field, expr)` over a list field.
    Quant {
        all: bool,
        field: String,
        fspan: Span,
        pred: Box<Expr>,
    },
    /// A macro by name (expanded before type checking).
    Macro {
        name: String,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Cmp(CmpOp),
}

fn lex(src: &str) -> Result<Vec<(Tok, Span)>, LangError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', _) => CmpOp::Eq,
                    (b'!', true) => CmpOp::Ne,
                    (b'<', true) => CmpOp::Le,
                    (b'<', false) => CmpOp::Lt,
                    (b'>', true) => CmpOp::Ge,
                    (b'>', false) => CmpOp::Gt,
                    _ => {
                        return err(
                            Span { start, end: i + 1 },
                            "`!` alone is not an operator: use `not` or `!=`",
                        )
                    }
                };
                i += if two { 2 } else { 1 };
                Tok::Cmp(op)
            }
            b'"' | b'\'' => {
                let quote = c;
                i += 1;
                let mut s = Vec::new();
                loop {
                    match b.get(i) {
                        None => {
                            return err(Span { start, end: i }, "this string is not closed");
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if quote == b'"' => {
                            let e = b.get(i + 1).copied();
                            s.push(match e {
                                Some(b'n') => b'\n',
                                Some(b't') => b'\t',
                                Some(b'\\') => b'\\',
                                Some(b'"') => b'"',
                                _ => {
                                    return err(
                                        Span {
                                            start: i,
                                            end: i + 2,
                                        },
                                        "unknown escape: \\n, \\t, \\\\ and \\\" are known",
                                    )
                                }
                            });
                            i += 2;
                        }
                        Some(&x) => {
                            s.push(x);
                            i += 1;
                        }
                    }
                }
                Tok::Str(String::from_utf8(s).expect("a slice of a str between ASCII quotes"))
            }
            _ => {
                while i < b.len()
                    && !b[i].is_ascii_whitespace()
                    && !matches!(
                        b[i],
                        b'(' | b')' | b',' | b'=' | b'!' | b'<' | b'>' | b'"' | b'\''
                    )
                {
                    i += 1;
                }
                Tok::Word(src[start..i].to_string())
            }
        };
        out.push((tok, Span { start, end: i }));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    i: usize,
    end: usize,
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "contains",
    "startswith",
    "endswith",
    "glob",
    "regex",
    "exists",
    "cidr",
    "any",
    "all",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn span(&self) -> Span {
        self.toks.get(self.i).map(|(_, s)| *s).unwrap_or(Span {
            start: self.end,
            end: self.end,
        })
    }

    fn word(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.word() == Some(w) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Span, LangError> {
        let span = self.span();
        if self.peek() == Some(&want) {
            self.i += 1;
            Ok(span)
        } else {
            err(span, format!("expected {what}"))
        }
    }

    fn or(&mut self) -> Result<Expr, LangError> {
        let mut parts = vec![self.and()?];
        while self.eat_word("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, LangError> {
        let mut parts = vec![self.unary()?];
        while self.eat_word("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, LangError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, LangError> {
        let span = self.span();
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.i += 1;
                let e = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Some(Tok::Word(w)) if w == "true" || w == "false" => {
                self.i += 1;
                Ok(Expr::Const(w == "true"))
            }
            Some(Tok::Word(w))
                if (w == "any" || w == "all")
                    && self.toks.get(self.i + 1).map(|t| &t.0) == Some(&Tok::LParen) =>
            {
                self.i += 2;
                let fspan = self.span();
                let field = match self.peek() {
                    Some(Tok::Word(f)) if !KEYWORDS.contains(&f.as_str()) => f.clone(),
                    _ => return err(fspan, format!("`{w}(` takes a list field first")),
                };
                self.i += 1;
                self.expect(Tok::Comma, "`,` after the list field")?;
                let pred = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Quant {
                    all: w == "all",
                    field,
                    fspan,
                    pred: Box::new(pred),
                })
            }
            Some(Tok::Word(w)) if !KEYWORDS.contains(&w.as_str()) => {
                self.i += 1;
                match self.test()? {
                    Some(test) => Ok(Expr::Test {
                        field: w,
                        fspan: span,
                        test,
                    }),
                    None => Ok(Expr::Macro { name: w, span }),
                }
            }
            Some(_) => err(
                span,
                "expected a field, a macro, `not`, `(` or `any(`/`all(`",
            ),
            None => err(span, "the condition ends too soon"),
        }
    }

    /// The test after a field, or `None` when none follows (then the word was a macro).
    fn test(&mut self) -> Result<Option<Test>, LangError> {
        let test = match self.peek().cloned() {
            Some(Tok::Cmp(op)) => {
                self.i += 1;
                Test::Cmp(op, self.value()?)
            }
            Some(Tok::Word(w)) => {
                let op = match w.as_str() {
                    "contains" => StrOp::Contains,
                    "startswith" => StrOp::StartsWith,
                    "endswith" => StrOp::EndsWith,
                    "glob" => StrOp::Glob,
                    "regex" => StrOp::Regex,
                    "exists" => {
                        self.i += 1;
                        return Ok(Some(Test::Exists));
                    }
                    "in" => {
                        self.i += 1;
                        return self.in_().map(Some);
                    }
                    _ => return Ok(None),
                };
                self.i += 1;
                Test::Str(op, self.value()?)
            }
            _ => return Ok(None),
        };
        Ok(Some(test))
    }

    fn in_(&mut self) -> Result<Test, LangError> {
        if self.eat_word("cidr") {
            self.expect(Tok::LParen, "`(` after `cidr`")?;
            return Ok(Test::Cidr(self.values()?));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.i += 1;
            return Ok(Test::In(self.values()?));
        }
        let v = self.value()?;
        if v.quoted {
            return err(
                v.span,
                "`in` takes a list: `in (a, b)`, `in list_name` or `in cidr(...)`",
            );
        }
        Ok(Test::InList(v))
    }

    /// Values up to and including `)`.
    fn values(&mut self) -> Result<Vec<Lit>, LangError> {
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.i += 1;
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            match self.peek() {
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::RParen) => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return err(self.span(), "expected `,` or `)`"),
            }
        }
    }

    fn value(&mut self) -> Result<Lit, LangError> {
        let span = self.span();
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Lit {
                    text: s,
                    quoted: true,
                    span,
                })
            }
            Some(Tok::Word(w)) if !KEYWORDS.contains(&w.as_str()) => {
                self.i += 1;
                Ok(Lit {
                    text: w,
                    quoted: false,
                    span,
                })
            }
            _ => err(span, "expected a value: a \"string\", a number, a word"),
        }
    }
}

/// Parse a condition.
pub fn parse(src: &str) -> Result<Expr, LangError> {
    let mut p = Parser {
        toks: lex(src)?,
        i: 0,
        end: src.len(),
    };
    let e = p.or()?;
    if p.i < p.toks.len() {
        return err(p.span(), "expected `and`, `or` or the end of the condition");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(e: &Expr) -> (&str, &Test) {
        match e {
            Expr::Test { field, test, .. } => (field, test),
            other => panic!("not a test: {other:?}"),
        }
    }

    #[test]
    fn precedence_and_tests() {
        let e = parse("a.b == 1 or not c.d contains \"x y\" and e.f exists").unwrap();
        let Expr::Or(parts) = &e else { panic!("{e:?}") };
        assert_eq!(test(&parts[0]).0, "a.b");
        let Expr::And(and) = &parts[1] else { panic!() };
        assert!(matches!(&and[0], Expr::Not(_)));
        assert_eq!(test(&and[1]).1, &Test::Exists);
    }

    #[test]
    fn lists_cidr_quantifiers_and_macros() {
        let e = parse("net.remote.addr in cidr(10.0.0.0/8, fd00::/8) and any(ancestors, .exe endswith \"/sshd\") and my_macro").unwrap();
        let Expr::And(p) = &e else { panic!() };
        let (_, t) = test(&p[0]);
        let Test::Cidr(nets) = t else { panic!() };
        assert_eq!(nets[1].text, "fd00::/8");
        let Expr::Quant {
            all, field, pred, ..
        } = &p[1]
        else {
            panic!()
        };
        assert!(!all);
        assert_eq!(field, "ancestors");
        assert_eq!(test(pred).0, ".exe");
        assert!(matches!(&p[2], Expr::Macro { name, .. } if name == "my_macro"));
        let e = parse("process.comm in (sh, 'ba sh', shells)").unwrap();
        let Test::In(v) = test(&e).1 else { panic!() };
        assert_eq!(v.len(), 3);
        assert!(v[1].quoted && !v[2].quoted);
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = parse("process.pid == ").unwrap_err();
        assert_eq!(e.span.start, 15);
        let e = parse("process.pid == 1 process.uid == 2").unwrap_err();
        assert_eq!(e.span.start, 17);
        let e = parse("(a == 1").unwrap_err();
        assert!(e.msg.contains("`)`"));
        let e = parse("a == \"open").unwrap_err();
        assert_eq!(e.span.start, 5);
        assert!(parse("a ! b").is_err());
        assert!(parse("").is_err());
    }
}
