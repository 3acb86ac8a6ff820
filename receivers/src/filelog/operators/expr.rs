//! The part of the expression language (expr-lang, as stanza uses it) that log configs use:
//! `body matches "^\\{"`, `attributes.level == "error"`, `attributes["log.iostream"] in
//! ["stdout", "stderr"]`, `body.msg contains "x" and not (resource.env == "dev")`,
//! `env("STAGE")`, `body.key1 + "_suffix"`, `a ?? "default"`, `c ? x : y`. Anything outside
//! it is refused when the config is loaded, naming what is not supported, instead of being
//! misread at run time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;

use super::entry::{Entry, Value, format_float};
use super::field::{Field, Root};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expression `{source_text}`: {message}")]
pub struct ExprError {
    pub source_text: String,
    pub message: String,
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    source: String,
    root: Node,
}

#[derive(Debug)]
enum Node {
    Literal(Value),
    /// A field of the entry: `body.x`, `attributes["y"]`.
    Field(Field),
    Timestamp,
    Array(Vec<Node>),
    /// `x.y` / `x["y"]` / `x[0]` on a computed value.
    Index(Box<Node>, Box<Node>),
    Unary(UnaryOp, Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    /// `matches` with a literal pattern, compiled once.
    MatchesLiteral(Box<Node>, Regex),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    Call(Function, Vec<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnaryOp {
    Not,
    Negate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryOp {
    Or,
    And,
    Coalesce,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Function {
    Env,
    Len,
    Lower,
    Upper,
    Trim,
    String,
}

const FUNCTIONS: &[(&str, Function)] = &[
    ("env", Function::Env),
    ("len", Function::Len),
    ("lower", Function::Lower),
    ("upper", Function::Upper),
    ("trim", Function::Trim),
    ("string", Function::String),
    ("toString", Function::String),
];

/// What an expression gives when evaluated: a value of the entry (borrowed) or a computed one.
pub type Eval<'a> = Cow<'a, Value>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl Expr {
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        let error = |message: String| ExprError {
            source_text: source.to_string(),
            message,
        };
        let tokens = lex(source).map_err(error)?;
        let mut parser = Parser { tokens, at: 0 };
        let root = parser.expression(0).map_err(error)?;
        if let Some(extra) = parser.tokens.get(parser.at) {
            return Err(error(format!("unexpected {}", extra.describe())));
        }
        Ok(Expr {
            source: source.to_string(),
            root,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn eval<'a>(&'a self, entry: &'a Entry) -> Result<Eval<'a>, EvalError> {
        eval(&self.root, entry)
    }

    /// For `if`, `expr` and `is_first_entry`: a boolean, where nil (an absent field) is false.
    pub fn eval_bool(&self, entry: &Entry) -> Result<bool, EvalError> {
        match self.eval(entry)?.as_ref() {
            Value::Bool(b) => Ok(*b),
            Value::Null => Ok(false),
            other => Err(EvalError(format!(
                "`{}` gave {} where true or false was expected",
                self.source,
                kind(other)
            ))),
        }
    }
}

/// A config string that may embed expressions: `EXPR(env("STAGE"))`, `prefix-EXPR(body.x)`.
/// A value that is exactly one `EXPR(...)` keeps the expression's type; mixed text renders
/// to a string.
#[derive(Debug)]
pub struct ExprString {
    literals: Vec<String>,
    exprs: Vec<Expr>,
}

impl ExprString {
    pub fn compile(text: &str) -> Result<ExprString, ExprError> {
        const START: &str = "EXPR(";
        let mut literals = Vec::new();
        let mut exprs = Vec::new();
        let mut rest = text;
        loop {
            let Some(start) = rest.find(START) else {
                literals.push(rest.to_string());
                break;
            };
            let after = &rest[start + START.len()..];
            // The expression runs to the last `)` before the next `EXPR(` (as stanza reads it).
            let window_end = after.find(START).unwrap_or(after.len());
            let Some(end) = after[..window_end].rfind(')') else {
                literals.push(rest.to_string());
                break;
            };
            literals.push(rest[..start].to_string());
            exprs.push(Expr::compile(&after[..end])?);
            rest = &after[end + 1..];
        }
        Ok(ExprString { literals, exprs })
    }

    pub fn is_constant(&self) -> bool {
        self.exprs.is_empty()
    }

    pub fn render(&self, entry: &Entry) -> Result<Value, EvalError> {
        if self.exprs.len() == 1 && self.literals.iter().all(String::is_empty) {
            return Ok(self.exprs[0].eval(entry)?.into_owned());
        }
        let mut out = String::new();
        for (i, literal) in self.literals.iter().enumerate() {
            out.push_str(literal);
            if let Some(expr) = self.exprs.get(i) {
                match expr.eval(entry)?.as_ref() {
                    Value::Str(s) => out.push_str(s),
                    other => {
                        return Err(EvalError(format!(
                            "embedded expression `{}` gave {}, not a string",
                            expr.source,
                            kind(other)
                        )));
                    }
                }
            }
        }
        Ok(Value::Str(out))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nil",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
    }
}

// ---- lexing ----

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Punct(&'static str),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("`{s}`"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Int(i) => format!("number {i}"),
            Token::Float(f) => format!("number {f}"),
            Token::Punct(p) => format!("`{p}`"),
        }
    }
}

const PUNCTUATION: &[&str] = &[
    "?.", "??", "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", ",", ".", "!", "<", ">",
    "+", "-", "*", "/", "%", "?", ":",
];

fn lex(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            let (text, next) = lex_string(source, i)?;
            tokens.push(Token::Str(text));
            i = next;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            let mut float = false;
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text = source[start..i].replace('_', "");
            tokens.push(if float {
                Token::Float(text.parse().map_err(|_| format!("bad number `{text}`"))?)
            } else {
                Token::Int(text.parse().map_err(|_| format!("bad number `{text}`"))?)
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token::Ident(source[start..i].to_string()));
            continue;
        }
        let Some(p) = PUNCTUATION.iter().find(|p| source[i..].starts_with(**p)) else {
            return Err(format!(
                "unexpected character `{}`",
                source[i..].chars().next().unwrap_or(' ')
            ));
        };
        tokens.push(Token::Punct(p));
        i += p.len();
    }
    Ok(tokens)
}

fn lex_string(source: &str, start: usize) -> Result<(String, usize), String> {
    let quote = source.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = source[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + offset + 1));
        }
        if c == '\\' && quote != '`' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '0')) => out.push('\0'),
                Some((_, c)) => out.push(c),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err("unclosed string".to_string())
}

// ---- parsing ----

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// Binding strength of infix operators (higher binds tighter).
fn infix(token: &Token, next: Option<&Token>) -> Option<(u8, BinaryOp, usize)> {
    let word = |w: &str| matches!(token, Token::Ident(s) if s == w);
    let punct = |p: &str| matches!(token, Token::Punct(s) if *s == p);
    Some(if punct("??") {
        (1, BinaryOp::Coalesce, 1)
    } else if word("or") || punct("||") {
        (2, BinaryOp::Or, 1)
    } else if word("and") || punct("&&") {
        (3, BinaryOp::And, 1)
    } else if punct("==") {
        (4, BinaryOp::Eq, 1)
    } else if punct("!=") {
        (4, BinaryOp::Ne, 1)
    } else if punct("<") {
        (5, BinaryOp::Lt, 1)
    } else if punct("<=") {
        (5, BinaryOp::Le, 1)
    } else if punct(">") {
        (5, BinaryOp::Gt, 1)
    } else if punct(">=") {
        (5, BinaryOp::Ge, 1)
    } else if word("in") {
        (5, BinaryOp::In, 1)
    } else if word("not") && matches!(next, Some(Token::Ident(s)) if s == "in") {
        (5, BinaryOp::NotIn, 2)
    } else if word("matches") {
        (5, BinaryOp::Matches, 1)
    } else if word("contains") {
        (5, BinaryOp::Contains, 1)
    } else if word("startsWith") {
        (5, BinaryOp::StartsWith, 1)
    } else if word("endsWith") {
        (5, BinaryOp::EndsWith, 1)
    } else if punct("+") {
        (6, BinaryOp::Add, 1)
    } else if punct("-") {
        (6, BinaryOp::Sub, 1)
    } else if punct("*") {
        (7, BinaryOp::Mul, 1)
    } else if punct("/") {
        (7, BinaryOp::Div, 1)
    } else if punct("%") {
        (7, BinaryOp::Mod, 1)
    } else {
        return None;
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(s)) if *s == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(t) => format!("expected `{p}`, found {}", t.describe()),
                None => format!("expected `{p}` at the end"),
            })
        }
    }

    fn expression(&mut self, min: u8) -> Result<Node, String> {
        let mut left = self.unary()?;
        loop {
            if min == 0 && self.eat("?") {
                let then = self.expression(0)?;
                self.expect(":")?;
                let otherwise = self.expression(0)?;
                left = Node::Ternary(Box::new(left), Box::new(then), Box::new(otherwise));
                continue;
            }
            let Some(token) = self.peek() else { break };
            let Some((power, op, width)) = infix(token, self.tokens.get(self.at + 1)) else {
                break;
            };
            if power <= min {
                break;
            }
            self.at += width;
            let right = self.expression(power)?;
            left = match (op, &right) {
                (BinaryOp::Matches, Node::Literal(Value::Str(pattern))) => {
                    let regex = Regex::new(pattern)
                        .map_err(|e| format!("bad regular expression {pattern:?}: {e}"))?;
                    Node::MatchesLiteral(Box::new(left), regex)
                }
                _ => Node::Binary(op, Box::new(left), Box::new(right)),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, String> {
        let negated = if self.eat("!") {
            true
        } else if matches!(self.peek(), Some(Token::Ident(s)) if s == "not") {
            self.at += 1;
            true
        } else {
            false
        };
        if negated {
            let operand = self.expression(4)?;
            return Ok(Node::Unary(UnaryOp::Not, Box::new(operand)));
        }
        if self.eat("-") {
            let operand = self.unary()?;
            return Ok(Node::Unary(UnaryOp::Negate, Box::new(operand)));
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Result<Node, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Node::Literal(Value::Str(s))),
            Some(Token::Int(i)) => Ok(Node::Literal(Value::Int(i))),
            Some(Token::Float(f)) => Ok(Node::Literal(Value::Float(f))),
            Some(Token::Punct("(")) => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Punct("[")) => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.expression(0)?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Node::Array(items))
            }
            Some(Token::Ident(name)) => self.identifier(name),
            Some(other) => Err(format!("unexpected {}", other.describe())),
            None => Err("unexpected end of the expression".to_string()),
        }
    }

    fn identifier(&mut self, name: String) -> Result<Node, String> {
        if self.eat("(") {
            let Some(&(_, function)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "function `{name}` is not supported by sluice (supported: {})",
                    known.join(", ")
                ));
            };
            let mut args = Vec::new();
            if !self.eat(")") {
                loop {
                    args.push(self.expression(0)?);
                    if self.eat(")") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            if args.len() != 1 {
                return Err(format!("`{name}` takes one argument"));
            }
            return Ok(Node::Call(function, args));
        }
        Ok(match name.as_str() {
            "true" => Node::Literal(Value::Bool(true)),
            "false" => Node::Literal(Value::Bool(false)),
            "nil" => Node::Literal(Value::Null),
            "body" | "$" | "$body" | "$record" => Node::Field(Field::body()),
            "attributes" | "$attributes" | "$labels" => Node::Field(Field::attributes()),
            "resource" | "$resource" => Node::Field(Field {
                root: Root::Resource,
                keys: Vec::new(),
            }),
            "timestamp" | "$timestamp" => Node::Timestamp,
            // expr-lang resolves unknown names to nil with AllowUndefinedVariables, as stanza
            // compiles: keep that.
            _ => Node::Literal(Value::Null),
        })
    }

    fn postfix(&mut self, mut node: Node) -> Result<Node, String> {
        loop {
            let key = if self.eat(".") || self.eat("?.") {
                match self.next() {
                    Some(Token::Ident(name)) => Node::Literal(Value::Str(name)),
                    Some(other) => {
                        return Err(format!(
                            "expected a name after `.`, found {}",
                            other.describe()
                        ));
                    }
                    None => return Err("expected a name after `.`".to_string()),
                }
            } else if self.eat("[") {
                let key = self.expression(0)?;
                self.expect("]")?;
                key
            } else {
                return Ok(node);
            };
            node = match (node, key) {
                (Node::Field(mut field), Node::Literal(Value::Str(k))) => {
                    field.keys.push(k);
                    Node::Field(field)
                }
                (base, key) => Node::Index(Box::new(base), Box::new(key)),
            };
        }
    }
}

// ---- evaluation ----

fn eval<'a>(node: &'a Node, entry: &'a Entry) -> Result<Eval<'a>, EvalError> {
    Ok(match node {
        Node::Literal(v) => Cow::Borrowed(v),
        Node::Field(field) => match field.root {
            Root::Attributes if field.keys.is_empty() => {
                Cow::Owned(Value::Map(entry.attributes.clone()))
            }
            Root::Resource if field.keys.is_empty() => {
                Cow::Owned(Value::Map(entry.resource.clone()))
            }
            _ => field
                .get(entry)
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
        },
        Node::Timestamp => Cow::Owned(Value::Int(entry.timestamp as i64)),
        Node::Array(items) => Cow::Owned(Value::Array(
            items
                .iter()
                .map(|n| eval(n, entry).map(Cow::into_owned))
                .collect::<Result<_, _>>()?,
        )),
        Node::Index(base, key) => {
            let base = eval(base, entry)?;
            let key = eval(key, entry)?;
            let found = match (base.as_ref(), key.as_ref()) {
                (Value::Map(m), Value::Str(k)) => m.get(k).cloned(),
                (Value::Array(a), Value::Int(i)) => {
                    usize::try_from(*i).ok().and_then(|i| a.get(i)).cloned()
                }
                _ => None,
            };
            Cow::Owned(found.unwrap_or(Value::Null))
        }
        Node::Unary(UnaryOp::Not, operand) => {
            Cow::Owned(Value::Bool(!truthy(eval(operand, entry)?.as_ref())?))
        }
        Node::Unary(UnaryOp::Negate, operand) => match eval(operand, entry)?.as_ref() {
            Value::Int(i) => Cow::Owned(Value::Int(-i)),
            Value::Float(f) => Cow::Owned(Value::Float(-f)),
            other => return Err(EvalError(format!("cannot negate {}", kind(other)))),
        },
        Node::MatchesLiteral(subject, regex) => match eval(subject, entry)?.as_ref() {
            Value::Str(s) => Cow::Owned(Value::Bool(regex.is_match(s))),
            Value::Null => Cow::Owned(Value::Bool(false)),
            other => {
                return Err(EvalError(format!(
                    "`matches` needs a string, found {}",
                    kind(other)
                )));
            }
        },
        Node::Ternary(cond, then, otherwise) => {
            if truthy(eval(cond, entry)?.as_ref())? {
                eval(then, entry)?
            } else {
                eval(otherwise, entry)?
            }
        }
        Node::Binary(op, left, right) => binary(*op, left, right, entry)?,
        Node::Call(function, args) => {
            let arg = eval(&args[0], entry)?;
            Cow::Owned(match (function, arg.as_ref()) {
                (Function::Env, Value::Str(name)) => {
                    Value::Str(std::env::var(name).unwrap_or_default())
                }
                (Function::Len, Value::Str(s)) => Value::Int(s.chars().count() as i64),
                (Function::Len, Value::Array(a)) => Value::Int(a.len() as i64),
                (Function::Len, Value::Map(m)) => Value::Int(m.len() as i64),
                (Function::Lower, Value::Str(s)) => Value::Str(s.to_lowercase()),
                (Function::Upper, Value::Str(s)) => Value::Str(s.to_uppercase()),
                (Function::Trim, Value::Str(s)) => Value::Str(s.trim().to_string()),
                (Function::String, v) => Value::Str(v.to_text()),
                (f, v) => {
                    return Err(EvalError(format!("{f:?} cannot take {}", kind(v))));
                }
            })
        }
    })
}

fn truthy(value: &Value) -> Result<bool, EvalError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(EvalError(format!(
            "expected true or false, found {}",
            kind(other)
        ))),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Patterns given at run time (not literals), compiled once each.
static DYNAMIC_PATTERNS: Mutex<Option<HashMap<String, Regex>>> = Mutex::new(None);

fn dynamic_match(pattern: &str, subject: &str) -> Result<bool, EvalError> {
    let mut cache = DYNAMIC_PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(regex) = cache.get(pattern) {
        return Ok(regex.is_match(subject));
    }
    let regex = Regex::new(pattern)
        .map_err(|e| EvalError(format!("bad regular expression {pattern:?}: {e}")))?;
    let hit = regex.is_match(subject);
    // Bounded: patterns built from log content must not grow memory without end.
    if cache.len() < 256 {
        cache.insert(pattern.to_string(), regex);
    }
    Ok(hit)
}

fn binary<'a>(
    op: BinaryOp,
    left: &'a Node,
    right: &'a Node,
    entry: &'a Entry,
) -> Result<Eval<'a>, EvalError> {
    // Short-circuiting forms first.
    match op {
        BinaryOp::And => {
            let l = truthy(eval(left, entry)?.as_ref())?;
            return Ok(Cow::Owned(Value::Bool(
                l && truthy(eval(right, entry)?.as_ref())?,
            )));
        }
        BinaryOp::Or => {
            let l = truthy(eval(left, entry)?.as_ref())?;
            return Ok(Cow::Owned(Value::Bool(
                l || truthy(eval(right, entry)?.as_ref())?,
            )));
        }
        BinaryOp::Coalesce => {
            let l = eval(left, entry)?;
            return if matches!(l.as_ref(), Value::Null) {
                eval(right, entry)
            } else {
                Ok(l)
            };
        }
        _ => {}
    }
    let l = eval(left, entry)?;
    let r = eval(right, entry)?;
    let (l, r) = (l.as_ref(), r.as_ref());
    let bool_of = |b: bool| Ok(Cow::Owned(Value::Bool(b)));
    match op {
        BinaryOp::Eq => bool_of(equal(l, r)),
        BinaryOp::Ne => bool_of(!equal(l, r)),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ordering = match (number(l), number(r), l, r) {
                (Some(x), Some(y), _, _) => x.partial_cmp(&y),
                (_, _, Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                _ => None,
            };
            let Some(ordering) = ordering else {
                return Err(EvalError(format!(
                    "cannot compare {} with {}",
                    kind(l),
                    kind(r)
                )));
            };
            bool_of(match op {
                BinaryOp::Lt => ordering.is_lt(),
                BinaryOp::Le => ordering.is_le(),
                BinaryOp::Gt => ordering.is_gt(),
                _ => ordering.is_ge(),
            })
        }
        BinaryOp::In | BinaryOp::NotIn => {
            let found = match r {
                Value::Array(items) => items.iter().any(|i| equal(i, l)),
                Value::Map(m) => matches!(l, Value::Str(k) if m.contains_key(k)),
                Value::Null => false,
                other => {
                    return Err(EvalError(format!(
                        "`in` needs an array or a map, found {}",
                        kind(other)
                    )));
                }
            };
            bool_of(found == (op == BinaryOp::In))
        }
        BinaryOp::Matches => match (l, r) {
            (Value::Str(s), Value::Str(p)) => bool_of(dynamic_match(p, s)?),
            (Value::Null, _) => bool_of(false),
            _ => Err(EvalError("`matches` needs strings".to_string())),
        },
        BinaryOp::Contains | BinaryOp::StartsWith | BinaryOp::EndsWith => match (l, r) {
            (Value::Str(s), Value::Str(p)) => bool_of(match op {
                BinaryOp::Contains => s.contains(p.as_str()),
                BinaryOp::StartsWith => s.starts_with(p.as_str()),
                _ => s.ends_with(p.as_str()),
            }),
            (Value::Null, _) => bool_of(false),
            _ => Err(EvalError(format!(
                "`{op:?}` needs strings, found {} and {}",
                kind(l),
                kind(r)
            ))),
        },
        BinaryOp::Add => match (l, r) {
            (Value::Str(a), Value::Str(b)) => Ok(Cow::Owned(Value::Str(format!("{a}{b}")))),
            (Value::Int(a), Value::Int(b)) => Ok(Cow::Owned(Value::Int(a.wrapping_add(*b)))),
            _ => arithmetic(op, l, r),
        },
        BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => match (op, l, r) {
            (BinaryOp::Sub, Value::Int(a), Value::Int(b)) => {
                Ok(Cow::Owned(Value::Int(a.wrapping_sub(*b))))
            }
            (BinaryOp::Mul, Value::Int(a), Value::Int(b)) => {
                Ok(Cow::Owned(Value::Int(a.wrapping_mul(*b))))
            }
            (BinaryOp::Mod, Value::Int(a), Value::Int(b)) if *b != 0 => {
                Ok(Cow::Owned(Value::Int(a % b)))
            }
            _ => arithmetic(op, l, r),
        },
        BinaryOp::And | BinaryOp::Or | BinaryOp::Coalesce => unreachable!("handled above"),
    }
}

fn arithmetic<'a>(op: BinaryOp, l: &Value, r: &Value) -> Result<Eval<'a>, EvalError> {
    let (Some(a), Some(b)) = (number(l), number(r)) else {
        return Err(EvalError(format!(
            "cannot apply {op:?} to {} and {}",
            kind(l),
            kind(r)
        )));
    };
    let value = match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        _ => a % b,
    };
    Ok(Cow::Owned(Value::Float(value)))
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Float(x) => f.write_str(&format_float(*x)),
            other => f.write_str(&other.to_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filelog::operators::entry::Map;

    fn entry() -> Entry {
        let mut e = Entry::new(Value::Str("{\"a\":1}".into()), 0);
        e.attributes
            .insert("level".into(), Value::Str("error".into()));
        e.attributes
            .insert("log.iostream".into(), Value::Str("stderr".into()));
        e.attributes.insert("code".into(), Value::Float(404.0));
        let mut nested = Map::new();
        nested.insert("x".into(), Value::Str("y".into()));
        e.resource.insert("k8s".into(), Value::Map(nested));
        e
    }

    fn truth(source: &str) -> bool {
        Expr::compile(source).unwrap().eval_bool(&entry()).unwrap()
    }

    #[test]
    fn the_forms_configs_use() {
        assert!(truth(r#"body matches "^\\{""#));
        assert!(truth(r#"$ matches "^\\{""#));
        assert!(truth(r#"attributes.level == "error""#));
        assert!(truth(
            r#"attributes["log.iostream"] in ["stdout", "stderr"]"#
        ));
        assert!(truth(
            r#"attributes.level == 'error' and not (attributes.code < 400)"#
        ));
        assert!(truth(r#"attributes.code >= 400 && attributes.code != 500"#));
        assert!(truth(r#"resource.k8s.x == "y""#));
        assert!(truth(r#"attributes.missing == nil"#));
        assert!(!truth(r#"attributes.missing matches "x""#));
        assert!(truth(r#"attributes.level startsWith "err" || false"#));
        assert!(truth(r#"attributes.level not in ["info"]"#));
        assert!(truth(r#"(attributes.missing ?? "d") == "d""#));
        assert!(truth(r#"attributes.level contains "rr" ? true : false"#));
        assert!(truth(r#"lower("ABC") == "abc""#));
        assert!(truth(r#""level" in attributes"#));
    }

    #[test]
    fn unsupported_forms_are_refused_when_loading() {
        let e = Expr::compile("filter(attributes, true)").unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        assert!(Expr::compile("body matches \"(\"").is_err());
        assert!(Expr::compile("a ==").is_err());
        assert!(Expr::compile("a b").is_err());
    }

    #[test]
    fn embedded_expressions_render() {
        let s = ExprString::compile(r#"EXPR(attributes.level + "_x")"#).unwrap();
        assert_eq!(s.render(&entry()).unwrap(), Value::Str("error_x".into()));
        let s = ExprString::compile(r#"pre-EXPR(attributes.level)-post"#).unwrap();
        assert_eq!(
            s.render(&entry()).unwrap(),
            Value::Str("pre-error-post".into())
        );
        let s = ExprString::compile("EXPR(attributes.code)").unwrap();
        assert_eq!(s.render(&entry()).unwrap(), Value::Float(404.0));
        assert!(ExprString::compile("plain").unwrap().is_constant());
    }
}
