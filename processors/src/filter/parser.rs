//! Recursive-descent parser for the OTTL condition subset, resolving paths against the
//! condition's context as it goes so an invalid path is reported at its own column.
//!
//! ```text
//! condition  := or_expr END
//! or_expr    := and_expr ( "or" and_expr )*
//! and_expr   := term ( "and" term )*
//! term       := "not" term | "(" or_expr ")" | operand [ cmp_op operand ]
//! operand    := STRING | INT | FLOAT | BYTES | "true" | "false" | "nil" | ENUM
//!             | path | FUNC "(" [ operand ( "," operand )* ] ")"
//! path       := NAME ( "." NAME )* ( "[" ( STRING | INT ) "]" )*
//! cmp_op     := "==" | "!=" | "<" | "<=" | ">" | ">="
//! ```
//! An operand without a comparison must be boolean (`true`, `false`, `IsMatch(...)`).

use std::fmt;

use regex::Regex;

use super::lexer::{CmpOp, Tok, Token, lex};
use super::paths::{Context, Field, enum_value, listing, resolve};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based character column in the condition string.
    pub col: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(col: usize, message: impl Into<String>) -> Self {
        ParseError {
            col,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.col, self.message)
    }
}

/// `and`/`or` chains are kept flat (not nested pairs), so a long chain costs no stack depth
/// when evaluated.
#[derive(Clone, Debug)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    /// A boolean operand standing alone: `true`, `IsMatch(...)`.
    Truth(Operand),
}

#[derive(Clone, Debug)]
pub enum Operand {
    Lit(Literal),
    Path(Path),
    IsMatch(Box<Operand>, Regex),
    /// OTTL's `IsString(x)`, `IsInt(x)`, ...: whether the value has that type.
    IsType(Box<Operand>, ValueType),
    /// Whether any data point of the metric satisfies the condition, which reads the data
    /// point context: the filter's `HasAttrOnDatapoint` family, and the legacy `expr` blocks
    /// (evaluated per data point, matching the metric when one point matches).
    AnyDataPoint(Box<Expr>),
}

impl Operand {
    fn is_boolean(&self) -> bool {
        matches!(
            self,
            Operand::Lit(Literal::Bool(_))
                | Operand::IsMatch(..)
                | Operand::IsType(..)
                | Operand::AnyDataPoint(_)
        )
    }
}

/// The value types OTTL's `Is<Type>` converters test for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Int,
    Double,
    Bool,
    Map,
    List,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// A list or map value, compared for equality as a whole (what the legacy blocks'
    /// strict attribute values may be; OTTL writes these as `[...]` and `{...}` literals).
    Composite(sluice_pipeline::proto::common::v1::AnyValue),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub field: Field,
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64),
}

/// Parses one condition for `ctx`.
pub fn parse(src: &str, ctx: Context) -> Result<Expr, ParseError> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        at: 0,
        ctx,
        depth: 0,
    };
    if p.peek().tok == Tok::End {
        return Err(ParseError::new(1, "the condition is empty"));
    }
    let expr = p.or_expr()?;
    let next = p.peek();
    if next.tok != Tok::End {
        let msg = if next.tok == Tok::RParen {
            "')' without a matching '('".to_string()
        } else {
            format!(
                "expected 'and', 'or' or the end of the condition, found {}",
                next.tok
            )
        };
        return Err(ParseError::new(next.col, msg));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    ctx: Context,
    /// Open `(`, `not` and call levels; bounded so a hostile condition cannot exhaust the stack.
    depth: usize,
}

const MAX_DEPTH: usize = 100;

fn flat(mut terms: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1
        && let Some(only) = terms.pop()
    {
        return only;
    }
    join(terms)
}

const END: Token = Token {
    tok: Tok::End,
    col: 0,
};

impl Parser {
    fn peek(&self) -> &Token {
        // lex always ends with End, so running past it is only a guard.
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .unwrap_or(&END)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.tokens
            .get(self.at + ahead)
            .map_or(&Tok::End, |t| &t.tok)
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w == word)
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.is_word("or") {
            self.bump();
            terms.push(self.and_expr_after("or")?);
        }
        Ok(flat(terms, Expr::Or))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.term()?];
        while self.is_word("and") {
            self.bump();
            terms.push(self.term_after("and")?);
        }
        Ok(flat(terms, Expr::And))
    }

    fn and_expr_after(&mut self, word: &str) -> Result<Expr, ParseError> {
        self.expect_condition_after(word)?;
        self.and_expr()
    }

    fn term_after(&mut self, word: &str) -> Result<Expr, ParseError> {
        self.expect_condition_after(word)?;
        self.term()
    }

    /// Gives "expected a condition after 'and'" rather than a message about values.
    fn expect_condition_after(&self, word: &str) -> Result<(), ParseError> {
        let t = self.peek();
        let ends = matches!(
            t.tok,
            Tok::End | Tok::RParen | Tok::Comma | Tok::RBracket | Tok::Op(_)
        ) || self.is_word("and")
            || self.is_word("or");
        if ends {
            return Err(ParseError::new(
                t.col,
                format!("expected a condition after '{word}', found {}", t.tok),
            ));
        }
        Ok(())
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let nests = self.is_word("not") || self.peek().tok == Tok::LParen;
        if !nests {
            return self.comparison();
        }
        self.enter()?;
        let term = self.nested();
        self.depth -= 1;
        term
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.peek().col,
                format!("nested deeper than {MAX_DEPTH} levels of '(', 'not' and calls"),
            ));
        }
        Ok(())
    }

    fn nested(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") {
            self.bump();
            let inner = self.term_after("not")?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        let open = self.bump();
        self.expect_condition_after("(")?;
        let inner = self.or_expr()?;
        let close = self.peek();
        if close.tok != Tok::RParen {
            return Err(ParseError::new(
                close.col,
                format!(
                    "expected ')' to close the '(' at column {}, found {}",
                    open.col, close.tok
                ),
            ));
        }
        self.bump();
        Ok(inner)
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let first = self.peek().clone();
        let left = self.operand(None)?;
        let next = self.peek().clone();
        if let Tok::Op(op) = next.tok {
            self.bump();
            let right = self.operand(Some(op))?;
            return Ok(Expr::Cmp(left, op, right));
        }
        if left.is_boolean() {
            return Ok(Expr::Truth(left));
        }
        Err(ParseError::new(
            next.col,
            format!(
                "expected a comparison operator (==, !=, <, <=, >, >=) after the value at column {}, found {}",
                first.col, next.tok
            ),
        ))
    }

    /// A value; `after` is the operator before it, for the message when it is missing.
    fn operand(&mut self, after: Option<CmpOp>) -> Result<Operand, ParseError> {
        let t = self.peek().clone();
        let missing = || {
            let what = match after {
                Some(op) => format!("expected a value after '{}'", op.symbol()),
                None => "expected a condition".to_string(),
            };
            if t.tok == Tok::End {
                ParseError::new(t.col, what)
            } else {
                ParseError::new(t.col, format!("{what}, found {}", t.tok))
            }
        };
        let lit = match &t.tok {
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(i) => Literal::Int(*i),
            Tok::Float(x) => Literal::Double(*x),
            Tok::Bytes(b) => Literal::Bytes(b.clone()),
            Tok::Ident(word) => match word.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nil" => Literal::Nil,
                "and" | "or" | "not" => return Err(missing()),
                _ if *self.peek_at(1) == Tok::LParen => {
                    self.enter()?;
                    let call = self.call();
                    self.depth -= 1;
                    return call;
                }
                w if w.starts_with(|c: char| c.is_ascii_uppercase()) => match enum_value(w) {
                    Some(v) => Literal::Int(v),
                    None => {
                        return Err(ParseError::new(
                            t.col,
                            format!(
                                "unknown name '{w}': not an enum constant (SPAN_KIND_*, STATUS_CODE_*, SEVERITY_NUMBER_*, METRIC_DATA_TYPE_*, AGGREGATION_TEMPORALITY_*) and not followed by '(' as a function call"
                            ),
                        ));
                    }
                },
                _ => return self.path().map(Operand::Path),
            },
            _ => return Err(missing()),
        };
        self.bump();
        Ok(Operand::Lit(lit))
    }

    fn path(&mut self) -> Result<Path, ParseError> {
        let start = self.bump();
        let Tok::Ident(first) = start.tok else {
            return Err(ParseError::new(start.col, "expected a path"));
        };
        let mut dotted = first;
        while self.peek().tok == Tok::Dot {
            let dot = self.bump();
            match self.bump().tok {
                Tok::Ident(seg) => {
                    dotted.push('.');
                    dotted.push_str(&seg);
                }
                other => {
                    return Err(ParseError::new(
                        dot.col + 1,
                        format!("expected a field name after '.', found {other}"),
                    ));
                }
            }
        }
        let Some((field, indexable)) = resolve(self.ctx, &dotted) else {
            return Err(ParseError::new(
                start.col,
                format!(
                    "unknown path '{dotted}' in a {} condition; paths here: {}",
                    self.ctx,
                    listing(self.ctx)
                ),
            ));
        };
        let mut keys = Vec::new();
        while self.peek().tok == Tok::LBracket {
            let open = self.bump();
            if !indexable && keys.is_empty() {
                return Err(ParseError::new(
                    open.col,
                    format!("'{dotted}' is not a map and cannot take a [key]"),
                ));
            }
            let key = self.bump();
            keys.push(match key.tok {
                Tok::Str(s) => Key::Str(s),
                Tok::Int(i) => Key::Int(i),
                other => {
                    return Err(ParseError::new(
                        key.col,
                        format!(
                            "expected a string key or an integer index after '[', found {other}"
                        ),
                    ));
                }
            });
            let close = self.bump();
            if close.tok != Tok::RBracket {
                return Err(ParseError::new(
                    close.col,
                    format!("expected ']' after the key, found {}", close.tok),
                ));
            }
        }
        Ok(Path { field, keys })
    }

    fn call(&mut self) -> Result<Operand, ParseError> {
        let name_tok = self.bump();
        let Tok::Ident(name) = name_tok.tok else {
            return Err(ParseError::new(name_tok.col, "expected a function name"));
        };
        let function = Function::named(&name).ok_or_else(|| {
            ParseError::new(
                name_tok.col,
                format!(
                    "unknown function '{name}'; supported: {}",
                    Function::ALL
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if function.metric_only() && self.ctx != Context::Metric {
            return Err(ParseError::new(
                name_tok.col,
                format!("{name} can only be used in metric conditions"),
            ));
        }
        self.bump(); // '(': the lookahead that made this a call
        let mut args: Vec<(usize, Operand)> = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.bump();
        } else {
            loop {
                let col = self.peek().col;
                let arg = self.operand(None).map_err(|e| {
                    if e.col == col && e.message.starts_with("expected a condition") {
                        ParseError::new(
                            e.col,
                            e.message
                                .replacen("expected a condition", "expected an argument", 1),
                        )
                    } else {
                        e
                    }
                })?;
                args.push((col, arg));
                let sep = self.bump();
                match sep.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    other => {
                        return Err(ParseError::new(
                            sep.col,
                            format!(
                                "expected ',' or ')' in the arguments of {name}, found {other}"
                            ),
                        ));
                    }
                }
            }
        }
        if args.len() != function.arity() {
            return Err(ParseError::new(name_tok.col, function.usage()));
        }
        let mut args = args.into_iter();
        let mut next = || {
            args.next()
                .unwrap_or((name_tok.col, Operand::Lit(Literal::Nil)))
        };
        Ok(match function {
            Function::IsMatch => {
                let (_, target) = next();
                let (pattern_col, pattern) = next();
                let Operand::Lit(Literal::Str(pattern)) = pattern else {
                    return Err(ParseError::new(
                        pattern_col,
                        "the pattern of IsMatch must be a string literal",
                    ));
                };
                let regex = compile_regex(&pattern).map_err(|why| {
                    ParseError::new(
                        pattern_col,
                        format!("invalid regular expression {pattern:?}: {why}"),
                    )
                })?;
                Operand::IsMatch(Box::new(target), regex)
            }
            Function::Is(ty) => Operand::IsType(Box::new(next().1), ty),
            Function::HasAttrKeyOnDatapoint => {
                let key = string_arg(next(), &name)?;
                Operand::AnyDataPoint(Box::new(Expr::Cmp(
                    point_attribute(key),
                    CmpOp::Ne,
                    Operand::Lit(Literal::Nil),
                )))
            }
            Function::HasAttrOnDatapoint => {
                let key = string_arg(next(), &name)?;
                let value = string_arg(next(), &name)?;
                Operand::AnyDataPoint(Box::new(Expr::Cmp(
                    point_attribute(key),
                    CmpOp::Eq,
                    Operand::Lit(Literal::Str(value)),
                )))
            }
        })
    }
}

/// The functions conditions may call.
#[derive(Clone, Copy)]
enum Function {
    IsMatch,
    Is(ValueType),
    HasAttrKeyOnDatapoint,
    HasAttrOnDatapoint,
}

impl Function {
    const ALL: [Function; 9] = [
        Function::IsMatch,
        Function::Is(ValueType::String),
        Function::Is(ValueType::Int),
        Function::Is(ValueType::Double),
        Function::Is(ValueType::Bool),
        Function::Is(ValueType::Map),
        Function::Is(ValueType::List),
        Function::HasAttrKeyOnDatapoint,
        Function::HasAttrOnDatapoint,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::IsMatch => "IsMatch",
            Function::Is(ValueType::String) => "IsString",
            Function::Is(ValueType::Int) => "IsInt",
            Function::Is(ValueType::Double) => "IsDouble",
            Function::Is(ValueType::Bool) => "IsBool",
            Function::Is(ValueType::Map) => "IsMap",
            Function::Is(ValueType::List) => "IsList",
            Function::HasAttrKeyOnDatapoint => "HasAttrKeyOnDatapoint",
            Function::HasAttrOnDatapoint => "HasAttrOnDatapoint",
        }
    }

    fn named(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    fn arity(self) -> usize {
        match self {
            Function::Is(_) | Function::HasAttrKeyOnDatapoint => 1,
            Function::IsMatch | Function::HasAttrOnDatapoint => 2,
        }
    }

    fn metric_only(self) -> bool {
        matches!(
            self,
            Function::HasAttrKeyOnDatapoint | Function::HasAttrOnDatapoint
        )
    }

    fn usage(self) -> String {
        match self {
            Function::IsMatch => "IsMatch takes two arguments: IsMatch(target, \"regex\")".into(),
            Function::Is(_) => {
                format!("{} takes one argument: {}(value)", self.name(), self.name())
            }
            Function::HasAttrKeyOnDatapoint => {
                "HasAttrKeyOnDatapoint takes one argument: HasAttrKeyOnDatapoint(\"key\")".into()
            }
            Function::HasAttrOnDatapoint => {
                "HasAttrOnDatapoint takes two arguments: HasAttrOnDatapoint(\"key\", \"value\")"
                    .into()
            }
        }
    }
}

fn string_arg((col, arg): (usize, Operand), function: &str) -> Result<String, ParseError> {
    match arg {
        Operand::Lit(Literal::Str(s)) => Ok(s),
        _ => Err(ParseError::new(
            col,
            format!("the arguments of {function} must be string literals"),
        )),
    }
}

fn point_attribute(key: String) -> Operand {
    Operand::Path(Path {
        field: Field::PointAttributes,
        keys: vec![Key::Str(key)],
    })
}

/// Compiles a regular expression; on failure, the reason in one line (the regex crate's
/// message draws the pattern over several lines, its last line says why).
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid")
            .trim()
            .trim_start_matches("error: ")
            .to_string()
    })
}
