//! The expr-lang (antonmedv/expr) expressions of legacy `metrics` blocks with
//! `match_type: expr`, translated into data point conditions.
//!
//! The OTel Collector evaluates each expression against every data point with `MetricName`,
//! `MetricType` (`Gauge`, `Sum`, `Histogram`, `ExponentialHistogram`, `Summary`),
//! `Label(name)` (the point attribute's string, `""` when absent or not a string) and
//! `HasLabel(name)`. The part of expr-lang people write there is read here: those four, string
//! and boolean literals, `==`, `!=`, `matches`, `startsWith`, `endsWith`, `contains`, `in`,
//! `not in`, `&&`/`and`, `||`/`or`, `!`/`not` and parentheses. Anything else is refused with
//! a message saying what is supported, rather than guessed at.

use std::fmt;

use regex::Regex;

use super::lexer::CmpOp;
use super::parser::{Expr, Key, Literal, Operand, Path, ValueType, compile_regex};
use super::paths::Field;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Eq,
    Ne,
    AndAnd,
    OrOr,
    Bang,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "the string {s:?}"),
            Tok::Eq => f.write_str("'=='"),
            Tok::Ne => f.write_str("'!='"),
            Tok::AndAnd => f.write_str("'&&'"),
            Tok::OrOr => f.write_str("'||'"),
            Tok::Bang => f.write_str("'!'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::End => f.write_str("the end of the expression"),
        }
    }
}

const SUPPORTED: &str = "sluice reads MetricName, MetricType, Label(\"name\"), \
    HasLabel(\"name\"), string and boolean literals, ==, !=, matches, startsWith, endsWith, \
    contains, in, not in, &&, ||, !, and, or, not and parentheses";

fn unsupported(col: usize, what: impl fmt::Display) -> String {
    format!("column {col}: {what} is not supported in expressions; {SUPPORTED}")
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let (tok, len) = match (c, two.as_str()) {
            (_, "==") => (Tok::Eq, 2),
            (_, "!=") => (Tok::Ne, 2),
            (_, "&&") => (Tok::AndAnd, 2),
            (_, "||") => (Tok::OrOr, 2),
            ('!', _) => (Tok::Bang, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (',', _) => (Tok::Comma, 1),
            ('"' | '\'' | '`', _) => {
                let (s, len) = string(&chars[i..], col)?;
                (Tok::Str(s), len)
            }
            (c, _) if c.is_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .count();
                (Tok::Ident(chars[i..i + len].iter().collect()), len)
            }
            (c, _) => return Err(unsupported(col, format!("'{c}'"))),
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

/// A quoted string starting at `chars[0]`; its text and length in characters.
fn string(chars: &[char], col: usize) -> Result<(String, usize), String> {
    let quote = chars[0];
    let mut out = String::new();
    let mut i = 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((out, i + 1));
        }
        if c == '\\' && quote != '`' {
            let escaped = chars.get(i + 1).copied();
            out.push(match escaped {
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some(e @ ('\\' | '"' | '\'')) => e,
                _ => {
                    return Err(format!(
                        "column {}: unsupported escape in a string",
                        col + i
                    ));
                }
            });
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Err(format!("column {col}: the string is not closed"))
}

/// A value in an expression.
#[derive(Clone, Debug)]
enum Value {
    MetricName,
    MetricType,
    Label(String),
    HasLabel(String),
    Str(String),
    Bool(bool),
    List(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Matches,
    StartsWith,
    EndsWith,
    Contains,
    In,
    NotIn,
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 100;

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        self.tokens.get(self.at).unwrap_or(&(Tok::End, 0))
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn word(&self, w: &str) -> bool {
        matches!(&self.peek().0, Tok::Ident(x) if x == w)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.peek().0 == Tok::OrOr || self.word("or") {
            self.bump();
            terms.push(self.and()?);
        }
        Ok(join(terms, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.unary()?];
        while self.peek().0 == Tok::AndAnd || self.word("and") {
            self.bump();
            terms.push(self.unary()?);
        }
        Ok(join(terms, Expr::And))
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let nests = self.peek().0 == Tok::Bang || self.word("not") || self.peek().0 == Tok::LParen;
        if !nests {
            return self.comparison();
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "column {}: nested deeper than {MAX_DEPTH} levels",
                self.peek().1
            ));
        }
        let (tok, col) = self.bump();
        let inner = if tok == Tok::LParen {
            let inner = self.or()?;
            let (close, at) = self.bump();
            if close != Tok::RParen {
                return Err(format!(
                    "column {at}: expected ')' to close the '(' at column {col}, found {close}"
                ));
            }
            inner
        } else {
            Expr::Not(Box::new(self.unary()?))
        };
        self.depth -= 1;
        Ok(inner)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let col = self.peek().1;
        let left = self.value()?;
        let op = match &self.peek().0 {
            Tok::Eq => Some(Op::Eq),
            Tok::Ne => Some(Op::Ne),
            Tok::Ident(w) => match w.as_str() {
                "matches" => Some(Op::Matches),
                "startsWith" => Some(Op::StartsWith),
                "endsWith" => Some(Op::EndsWith),
                "contains" => Some(Op::Contains),
                "in" => Some(Op::In),
                "not" => Some(Op::NotIn),
                _ => None,
            },
            _ => None,
        };
        let Some(op) = op else {
            return condition_of(&left, col);
        };
        self.bump();
        if op == Op::NotIn {
            let (tok, at) = self.bump();
            if tok != Tok::Ident("in".into()) {
                return Err(format!(
                    "column {at}: expected 'in' after 'not', found {tok}"
                ));
            }
        }
        let right_col = self.peek().1;
        let right = self.value()?;
        compare(left, op, right, col, right_col)
    }

    fn value(&mut self) -> Result<Value, String> {
        let (tok, col) = self.bump();
        match tok {
            Tok::Str(s) => Ok(Value::Str(s)),
            Tok::LBracket => {
                let mut items = Vec::new();
                loop {
                    let (t, at) = self.bump();
                    match t {
                        Tok::RBracket if items.is_empty() => break,
                        Tok::Str(s) => items.push(s),
                        other => {
                            return Err(format!(
                                "column {at}: expected a string in the list, found {other}"
                            ));
                        }
                    }
                    match self.bump() {
                        (Tok::Comma, _) => {}
                        (Tok::RBracket, _) => break,
                        (other, at) => {
                            return Err(format!(
                                "column {at}: expected ',' or ']' in the list, found {other}"
                            ));
                        }
                    }
                }
                Ok(Value::List(items))
            }
            Tok::Ident(w) => match w.as_str() {
                "MetricName" => Ok(Value::MetricName),
                "MetricType" => Ok(Value::MetricType),
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "Label" | "HasLabel" => {
                    let open = self.bump();
                    let arg = self.bump();
                    let close = self.bump();
                    match (open.0, arg.0, close.0) {
                        (Tok::LParen, Tok::Str(k), Tok::RParen) if w == "Label" => {
                            Ok(Value::Label(k))
                        }
                        (Tok::LParen, Tok::Str(k), Tok::RParen) => Ok(Value::HasLabel(k)),
                        _ => Err(format!(
                            "column {col}: {w} takes one string argument: {w}(\"name\")"
                        )),
                    }
                }
                other => Err(unsupported(col, format!("'{other}'"))),
            },
            Tok::End => Err(format!("column {col}: the expression ends too early")),
            other => Err(unsupported(col, other)),
        }
    }
}

fn join(mut terms: Vec<Expr>, f: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1
        && let Some(t) = terms.pop()
    {
        return t;
    }
    f(terms)
}

fn constant(b: bool) -> Expr {
    Expr::Truth(Operand::Lit(Literal::Bool(b)))
}

fn label(key: &str) -> Operand {
    Operand::Path(Path {
        field: Field::PointAttributes,
        keys: vec![Key::Str(key.to_string())],
    })
}

fn metric_field(field: Field) -> Operand {
    Operand::Path(Path {
        field,
        keys: Vec::new(),
    })
}

fn is_string(a: Operand) -> Expr {
    Expr::Truth(Operand::IsType(Box::new(a), ValueType::String))
}

fn any_of(mut terms: Vec<Expr>) -> Expr {
    match terms.len() {
        0 => constant(false),
        1 => terms.pop().unwrap_or_else(|| constant(false)),
        _ => Expr::Or(terms),
    }
}

/// `MetricType`'s names, by the number `metric.type` reads.
const METRIC_TYPES: [(&str, i64); 5] = [
    ("Gauge", 1),
    ("Sum", 2),
    ("Histogram", 3),
    ("ExponentialHistogram", 4),
    ("Summary", 5),
];

/// A value standing alone as a condition.
fn condition_of(v: &Value, col: usize) -> Result<Expr, String> {
    match v {
        Value::Bool(b) => Ok(constant(*b)),
        Value::HasLabel(k) => Ok(Expr::Cmp(label(k), CmpOp::Ne, Operand::Lit(Literal::Nil))),
        _ => Err(format!(
            "column {col}: expected a condition (a comparison, HasLabel(...), true or false)"
        )),
    }
}

/// Whether the value's text equals `s`.
fn equals(subject: &Value, s: &str, col: usize) -> Result<Expr, String> {
    Ok(match subject {
        Value::MetricName => Expr::Cmp(
            metric_field(Field::MetricName),
            CmpOp::Eq,
            Operand::Lit(Literal::Str(s.to_string())),
        ),
        Value::MetricType => match METRIC_TYPES.iter().find(|(name, _)| *name == s) {
            Some((_, code)) => Expr::Cmp(
                metric_field(Field::MetricType),
                CmpOp::Eq,
                Operand::Lit(Literal::Int(*code)),
            ),
            None => constant(false),
        },
        // Label() is "" when the label is absent or not a string.
        Value::Label(k) if s.is_empty() => any_of(vec![
            Expr::Not(Box::new(is_string(label(k)))),
            Expr::Cmp(
                label(k),
                CmpOp::Eq,
                Operand::Lit(Literal::Str(String::new())),
            ),
        ]),
        Value::Label(k) => Expr::Cmp(label(k), CmpOp::Eq, Operand::Lit(Literal::Str(s.into()))),
        Value::Str(t) => constant(t == s),
        _ => return Err(unsupported(col, "comparing this value with a string")),
    })
}

/// Whether the value's text matches `re`.
fn text_matches(subject: &Value, re: Regex, col: usize) -> Result<Expr, String> {
    Ok(match subject {
        Value::MetricName => Expr::Truth(Operand::IsMatch(
            Box::new(metric_field(Field::MetricName)),
            re,
        )),
        Value::MetricType => any_of(
            METRIC_TYPES
                .iter()
                .filter(|(name, _)| re.is_match(name))
                .map(|(_, code)| {
                    Expr::Cmp(
                        metric_field(Field::MetricType),
                        CmpOp::Eq,
                        Operand::Lit(Literal::Int(*code)),
                    )
                })
                .collect(),
        ),
        Value::Label(k) => {
            let empty_matches = re.is_match("");
            let mut any = vec![Expr::And(vec![
                is_string(label(k)),
                Expr::Truth(Operand::IsMatch(Box::new(label(k)), re)),
            ])];
            if empty_matches {
                any.push(Expr::Not(Box::new(is_string(label(k)))));
            }
            any_of(any)
        }
        Value::Str(t) => constant(re.is_match(t)),
        _ => return Err(unsupported(col, "matching this value as text")),
    })
}

fn compare(
    left: Value,
    op: Op,
    right: Value,
    col: usize,
    right_col: usize,
) -> Result<Expr, String> {
    let text = |v: &Value| match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    };
    let truth = |v: &Value| matches!(v, Value::Bool(_) | Value::HasLabel(_));
    match op {
        Op::Eq | Op::Ne => {
            let same = if truth(&left) && truth(&right) {
                let (a, b) = (condition_of(&left, col)?, condition_of(&right, right_col)?);
                any_of(vec![
                    Expr::And(vec![a.clone(), b.clone()]),
                    Expr::And(vec![Expr::Not(Box::new(a)), Expr::Not(Box::new(b))]),
                ])
            } else if let Some(s) = text(&right) {
                equals(&left, &s, col)?
            } else if let Some(s) = text(&left) {
                equals(&right, &s, right_col)?
            } else {
                return Err(unsupported(
                    col,
                    "comparing two values that are not literals",
                ));
            };
            Ok(if op == Op::Ne {
                Expr::Not(Box::new(same))
            } else {
                same
            })
        }
        Op::In | Op::NotIn => {
            let Value::List(items) = right else {
                return Err(format!(
                    "column {right_col}: `in` takes a list: [\"a\", \"b\"]"
                ));
            };
            let any = any_of(
                items
                    .iter()
                    .map(|s| equals(&left, s, col))
                    .collect::<Result<_, _>>()?,
            );
            Ok(if op == Op::NotIn {
                Expr::Not(Box::new(any))
            } else {
                any
            })
        }
        Op::Matches | Op::StartsWith | Op::EndsWith | Op::Contains => {
            let Some(s) = text(&right) else {
                return Err(format!(
                    "column {right_col}: the right side must be a string literal"
                ));
            };
            let pattern = match op {
                Op::StartsWith => format!("^{}", regex::escape(&s)),
                Op::EndsWith => format!("{}$", regex::escape(&s)),
                Op::Contains => regex::escape(&s),
                _ => s.clone(),
            };
            let re = compile_regex(&pattern).map_err(|why| {
                format!("column {right_col}: invalid regular expression {s:?}: {why}")
            })?;
            text_matches(&left, re, col)
        }
    }
}

/// Translates one expression into a data point condition.
pub fn compile(src: &str) -> Result<Expr, String> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    if p.peek().0 == Tok::End {
        return Err("the expression is empty".into());
    }
    let expr = p.or()?;
    let (tok, col) = p.bump();
    if tok != Tok::End {
        return Err(format!(
            "column {col}: expected '&&', '||' or the end of the expression, found {tok}"
        ));
    }
    Ok(expr)
}
