//! The complex parsers: `json_parser`, `regex_parser`, `key_value_parser`, `csv_parser`.
//! Each reads `parse_from` (default `body`), writes a map to `parse_to` (default
//! `attributes`, merged into what is there), then runs its embedded blocks.

use std::collections::{HashMap, VecDeque};

use regex::Regex;
use serde::Deserialize;
use sluice_config::{Diagnostic, Node};

use super::embedded::{EMBEDDED_KEYS, Embedded};
use super::entry::{Entry, Map, Value};
use super::field::Field;
use super::{Transform, decode, problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParserKeys {
    /// Default `body`.
    #[serde(default)]
    parse_from: Option<Field>,
    /// Default `attributes`.
    #[serde(default)]
    parse_to: Option<Field>,
    /// A field to make the body once parsed.
    #[serde(default)]
    body: Option<Field>,
    /// Remove `parse_from` once parsed (default false).
    #[serde(default)]
    drop_field: bool,
}

const PARSER_KEYS: &[&str] = &["parse_from", "parse_to", "body", "drop_field"];

/// What every complex parser shares.
struct Common {
    parse_from: Field,
    parse_to: Field,
    body: Option<Field>,
    drop_field: bool,
    embedded: Embedded,
}

/// Splits an operator section into the common parser part and the parser's own keys.
fn split(node: &Node, path: &str) -> Result<(Common, Node), Vec<Diagnostic>> {
    let mut shared = node.clone();
    let mut own = node.clone();
    if let (Some(s), Some(o)) = (shared.as_map_mut(), own.as_map_mut()) {
        s.entries
            .retain(|(k, _)| PARSER_KEYS.contains(&k.name.as_str()));
        o.entries.retain(|(k, _)| {
            !PARSER_KEYS.contains(&k.name.as_str()) && !EMBEDDED_KEYS.contains(&k.name.as_str())
        });
    }
    let mut errors = Vec::new();
    let keys: Option<ParserKeys> = decode(&shared, path)
        .map_err(|mut e| errors.append(&mut e))
        .ok();
    let embedded = Embedded::build(node, path)
        .map_err(|mut e| errors.append(&mut e))
        .ok();
    let (Some(keys), Some(embedded)) = (keys, embedded) else {
        return Err(errors);
    };
    let parse_from = keys.parse_from.unwrap_or_else(Field::body);
    let parse_to = keys.parse_to.unwrap_or_else(Field::attributes);
    if keys.body.is_some() && parse_to == Field::body() {
        errors.push(problem(
            node,
            path,
            "parse_to",
            "`parse_to: body` is not allowed when `body` is set",
        ));
    }
    if keys.drop_field {
        if parse_from.is_root() {
            errors.push(problem(
                node,
                path,
                "drop_field",
                format!("`drop_field: true` cannot be used when `parse_from` is `{parse_from}`"),
            ));
        } else if parse_from.root == parse_to.root && parse_to.keys.starts_with(&parse_from.keys) {
            errors.push(problem(
                node,
                path,
                "drop_field",
                "`parse_to` cannot be `parse_from` or inside it when `drop_field: true`",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((
        Common {
            parse_from,
            parse_to,
            body: keys.body,
            drop_field: keys.drop_field,
            embedded,
        },
        own,
    ))
}

/// A complex parser: its common part and its own way of turning a value into a map.
struct Parser<P> {
    common: Common,
    parse: P,
}

trait Parse: Send {
    fn parse(&mut self, value: &Value, entry: &Entry) -> Result<Value, String>;
}

impl<P: Parse> Transform for Parser<P> {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        let c = &self.common;
        let value = c
            .parse_from
            .get(entry)
            .ok_or_else(|| format!("the entry has no {} to parse", c.parse_from))?;
        let parsed = self.parse.parse(value, entry)?;
        if c.drop_field {
            c.parse_from.delete(entry);
        }
        c.parse_to.set(entry, parsed);
        if let Some(body) = &c.body
            && let Some(value) = body.get(entry)
        {
            entry.body = value.clone();
        }
        c.embedded.apply(entry)
    }
}

fn text(value: &Value) -> Result<&str, String> {
    match value {
        Value::Str(s) => Ok(s),
        Value::Bytes(b) => {
            std::str::from_utf8(b).map_err(|_| "the value is not UTF-8 text".to_string())
        }
        _ => Err("the value to parse is not a string".to_string()),
    }
}

// ---- json_parser ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonConfig {
    /// Keep whole numbers as integers instead of doubles (default false, as upstream).
    #[serde(default)]
    parse_ints: bool,
}

struct Json {
    parse_ints: bool,
}

fn json_value(value: serde_json::Value, ints: bool) -> Value {
    match value {
        serde_json::Value::Number(n) if ints && (n.is_i64() || n.is_u64()) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0)), Value::Int),
        serde_json::Value::Array(a) if ints => {
            Value::Array(a.into_iter().map(|v| json_value(v, ints)).collect())
        }
        serde_json::Value::Object(o) if ints => Value::Map(
            o.into_iter()
                .map(|(k, v)| (k, json_value(v, ints)))
                .collect(),
        ),
        other => Value::from_json(other),
    }
}

impl Parse for Json {
    fn parse(&mut self, value: &Value, _entry: &Entry) -> Result<Value, String> {
        let parsed: serde_json::Value = match value {
            Value::Map(_) => return Ok(value.clone()),
            other => serde_json::from_str(text(other)?).map_err(|e| format!("not JSON: {e}"))?,
        };
        match json_value(parsed, self.parse_ints) {
            map @ Value::Map(_) => Ok(map),
            _ => Err("the JSON is not an object".to_string()),
        }
    }
}

pub fn json(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let (common, own) = split(node, path)?;
    let config: JsonConfig = decode(&own, path)?;
    Ok(Box::new(Parser {
        common,
        parse: Json {
            parse_ints: config.parse_ints,
        },
    }))
}

// ---- regex_parser ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheConfig {
    /// Entries kept (default 0: no cache).
    #[serde(default)]
    size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexConfig {
    /// A regular expression with named groups; required.
    regex: String,
    /// Keep results of recent inputs (for values that repeat, such as file paths).
    #[serde(default)]
    cache: Option<CacheConfig>,
}

struct RegexParse {
    regex: Regex,
    names: Vec<(usize, String)>,
    cache: Option<Cache>,
}

/// First in, first out, as upstream's cache.
struct Cache {
    size: usize,
    map: HashMap<String, Map>,
    order: VecDeque<String>,
}

impl RegexParse {
    fn matches(&self, text: &str) -> Result<Map, String> {
        let captures = self
            .regex
            .captures(text)
            .ok_or_else(|| "the regex does not match".to_string())?;
        Ok(self
            .names
            .iter()
            .map(|(i, name)| {
                let value = captures.get(*i).map_or("", |m| m.as_str());
                (name.clone(), Value::Str(value.to_string()))
            })
            .collect())
    }
}

impl Parse for RegexParse {
    fn parse(&mut self, value: &Value, _entry: &Entry) -> Result<Value, String> {
        let text = text(value)?;
        let Some(cache) = &self.cache else {
            return self.matches(text).map(Value::Map);
        };
        if let Some(hit) = cache.map.get(text) {
            return Ok(Value::Map(hit.clone()));
        }
        let parsed = self.matches(text)?;
        if let Some(cache) = &mut self.cache {
            if cache.map.len() >= cache.size
                && let Some(oldest) = cache.order.pop_front()
            {
                cache.map.remove(&oldest);
            }
            cache.map.insert(text.to_string(), parsed.clone());
            cache.order.push_back(text.to_string());
        }
        Ok(Value::Map(parsed))
    }
}

pub fn regex(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let (common, own) = split(node, path)?;
    let config: RegexConfig = decode(&own, path)?;
    let regex = Regex::new(&config.regex)
        .map_err(|e| vec![problem(node, path, "regex", format!("invalid regex: {e}"))])?;
    let names: Vec<(usize, String)> = regex
        .capture_names()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n.to_string())))
        .collect();
    if names.is_empty() {
        return Err(vec![problem(
            node,
            path,
            "regex",
            "the regex has no named groups such as (?P<name>...), so it would extract nothing",
        )]);
    }
    let cache = config.cache.filter(|c| c.size > 0).map(|c| Cache {
        size: c.size,
        map: HashMap::new(),
        order: VecDeque::new(),
    });
    Ok(Box::new(Parser {
        common,
        parse: RegexParse {
            regex,
            names,
            cache,
        },
    }))
}

// ---- key_value_parser ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValueConfig {
    /// Between a key and its value (default `=`).
    #[serde(default)]
    delimiter: Option<String>,
    /// Between pairs (default any whitespace).
    #[serde(default)]
    pair_delimiter: Option<String>,
}

struct KeyValue {
    delimiter: String,
    pair_delimiter: Option<String>,
}

/// Splits on `separator` (whitespace when `None`) outside double or single quotes.
fn split_outside_quotes<'a>(text: &'a str, separator: Option<&str>) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {
                let hit = match separator {
                    Some(sep) => text[i..].starts_with(sep).then_some(sep.len()),
                    None => c.is_whitespace().then_some(c.len_utf8()),
                };
                if let Some(width) = hit {
                    parts.push(&text[start..i]);
                    i += width;
                    start = i;
                    continue;
                }
            }
        }
        i += c.len_utf8();
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

impl Parse for KeyValue {
    fn parse(&mut self, value: &Value, _entry: &Entry) -> Result<Value, String> {
        let text = text(value)?;
        let mut out = Map::new();
        for pair in split_outside_quotes(text, self.pair_delimiter.as_deref()) {
            let Some((key, value)) = pair.split_once(self.delimiter.as_str()) else {
                return Err(format!(
                    "`{}` is not a key and a value separated by `{}`",
                    pair.trim(),
                    self.delimiter
                ));
            };
            out.insert(
                unquote(key).to_string(),
                Value::Str(unquote(value).to_string()),
            );
        }
        Ok(Value::Map(out))
    }
}

pub fn key_value(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let (common, own) = split(node, path)?;
    let config: KeyValueConfig = decode(&own, path)?;
    let delimiter = config.delimiter.unwrap_or_else(|| "=".to_string());
    let pair_delimiter = config.pair_delimiter.filter(|p| !p.is_empty());
    let mut errors = Vec::new();
    if delimiter.is_empty() {
        errors.push(problem(node, path, "delimiter", "must not be empty"));
    }
    if pair_delimiter.as_deref() == Some(delimiter.as_str()) {
        errors.push(problem(
            node,
            path,
            "pair_delimiter",
            "must differ from `delimiter`",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Parser {
        common,
        parse: KeyValue {
            delimiter,
            pair_delimiter,
        },
    }))
}

// ---- csv_parser ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvConfig {
    /// Field names, separated by `header_delimiter`.
    #[serde(default)]
    header: Option<String>,
    /// An attribute holding the field names (for files that say their own).
    #[serde(default)]
    header_attribute: Option<String>,
    /// One character between fields (default `,`).
    #[serde(default)]
    delimiter: Option<String>,
    /// One character between header names (default: `delimiter`).
    #[serde(default)]
    header_delimiter: Option<String>,
    /// Accept quotes inside unquoted fields and lone quotes inside quoted ones.
    #[serde(default)]
    lazy_quotes: bool,
    /// Treat quotes as ordinary characters.
    #[serde(default)]
    ignore_quotes: bool,
}

struct Csv {
    header: Option<Vec<String>>,
    header_attribute: Option<String>,
    delimiter: char,
    header_delimiter: char,
    lazy_quotes: bool,
    ignore_quotes: bool,
}

/// One CSV record, as Go's `encoding/csv` reads it (doubled quotes inside quoted fields).
fn csv_fields(
    line: &str,
    delimiter: char,
    lazy: bool,
    ignore_quotes: bool,
) -> Result<Vec<String>, String> {
    if ignore_quotes {
        return Ok(line.split(delimiter).map(str::to_string).collect());
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some(&c) if c == delimiter => break,
                        None => break,
                        Some(&c) => {
                            if lazy {
                                field.push('"');
                                field.push(c);
                                chars.next();
                            } else {
                                return Err(format!(
                                    "extraneous `\"` in a quoted field near `{field}`"
                                ));
                            }
                        }
                    },
                    Some(c) => field.push(c),
                    None => {
                        if lazy {
                            break;
                        }
                        return Err("a quoted field is not closed".to_string());
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == delimiter {
                    break;
                }
                if c == '"' && !lazy {
                    return Err(format!("bare `\"` in a non-quoted field near `{field}`"));
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            Some(c) if c == delimiter => continue,
            _ => break,
        }
    }
    Ok(fields)
}

impl Parse for Csv {
    fn parse(&mut self, value: &Value, entry: &Entry) -> Result<Value, String> {
        let text = text(value)?;
        let dynamic;
        let header: &[String] = match (&self.header, &self.header_attribute) {
            (Some(h), _) => h,
            (None, Some(attribute)) => {
                let Some(Value::Str(h)) = entry.attributes.get(attribute) else {
                    return Err(format!(
                        "the entry has no `{attribute}` attribute with the header"
                    ));
                };
                dynamic = h
                    .split(self.header_delimiter)
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                &dynamic
            }
            (None, None) => return Err("no header".to_string()),
        };
        let values = csv_fields(text, self.delimiter, self.lazy_quotes, self.ignore_quotes)?;
        if values.len() != header.len() {
            return Err(format!(
                "wrong number of fields: the header has {}, the line {}",
                header.len(),
                values.len()
            ));
        }
        Ok(Value::Map(
            header
                .iter()
                .cloned()
                .zip(values.into_iter().map(Value::Str))
                .collect(),
        ))
    }
}

fn one_char(
    node: &Node,
    path: &str,
    key: &str,
    value: Option<String>,
    default: char,
) -> Result<char, Diagnostic> {
    let Some(value) = value else {
        return Ok(default);
    };
    let value = match value.as_str() {
        "\\t" => "\t".to_string(),
        _ => value,
    };
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c != '\n' && c != '\r' && c != '"' => Ok(c),
        _ => Err(problem(
            node,
            path,
            key,
            "must be one character, not `\"`, `\\r` or `\\n`",
        )),
    }
}

pub fn csv(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let (common, own) = split(node, path)?;
    let config: CsvConfig = decode(&own, path)?;
    let mut errors = Vec::new();
    let delimiter = one_char(node, path, "delimiter", config.delimiter, ',')
        .map_err(|e| errors.push(e))
        .unwrap_or(',');
    let header_delimiter = one_char(
        node,
        path,
        "header_delimiter",
        config.header_delimiter,
        delimiter,
    )
    .map_err(|e| errors.push(e))
    .unwrap_or(delimiter);
    if config.header.is_some() == config.header_attribute.is_some() {
        errors.push(problem(
            node,
            path,
            "",
            "set exactly one of `header` and `header_attribute`",
        ));
    }
    if config.lazy_quotes && config.ignore_quotes {
        errors.push(problem(
            node,
            path,
            "ignore_quotes",
            "cannot be used with `lazy_quotes`",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Parser {
        common,
        parse: Csv {
            header: config
                .header
                .map(|h| h.split(header_delimiter).map(str::to_string).collect()),
            header_attribute: config.header_attribute,
            delimiter,
            header_delimiter,
            lazy_quotes: config.lazy_quotes,
            ignore_quotes: config.ignore_quotes,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_quotes_as_go_does() {
        assert_eq!(
            csv_fields("a,\"b,c\",d", ',', false, false).unwrap(),
            ["a", "b,c", "d"]
        );
        assert_eq!(
            csv_fields("a,\"say \"\"hi\"\"\"", ',', false, false).unwrap(),
            ["a", "say \"hi\""]
        );
        assert!(csv_fields("a,b\"c", ',', false, false).is_err());
        assert_eq!(
            csv_fields("a,b\"c", ',', true, false).unwrap(),
            ["a", "b\"c"]
        );
        assert_eq!(
            csv_fields("a\t\tb", '\t', false, false).unwrap(),
            ["a", "", "b"]
        );
    }

    #[test]
    fn key_value_pairs_respect_quotes() {
        let mut kv = KeyValue {
            delimiter: "=".into(),
            pair_delimiter: None,
        };
        let parsed = kv
            .parse(
                &Value::Str("name=stanza msg=\"hello world\" n=1".into()),
                &Entry::default(),
            )
            .unwrap();
        let Value::Map(m) = parsed else { panic!() };
        assert_eq!(m["msg"], Value::Str("hello world".into()));
        assert_eq!(m["n"], Value::Str("1".into()));
        let mut kv = KeyValue {
            delimiter: "=".into(),
            pair_delimiter: Some("!".into()),
        };
        let Value::Map(m) = kv
            .parse(
                &Value::Str("name=stanza ! org=otel      ! group=dev".into()),
                &Entry::default(),
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(m.len(), 3);
        assert_eq!(m["org"], Value::Str("otel".into()));
    }
}
