//! The condition language on its own: lexing, parsing, precedence, path checks and the
//! column of every error.

use super::lexer::CmpOp;
use super::parser::{Expr, Key, Literal, Operand, parse};
use super::paths::{Context, Field, enum_value};

/// A compact rendering that makes grouping visible: `(or (and a b) c)`.
fn show(e: &Expr) -> String {
    match e {
        Expr::Or(terms) => format!("(or {})", join(terms)),
        Expr::And(terms) => format!("(and {})", join(terms)),
        Expr::Not(a) => format!("(not {})", show(a)),
        Expr::Cmp(a, op, b) => format!("({} {} {})", op.symbol(), operand(a), operand(b)),
        Expr::Truth(a) => operand(a),
    }
}

fn join(terms: &[Expr]) -> String {
    terms.iter().map(show).collect::<Vec<_>>().join(" ")
}

fn operand(o: &Operand) -> String {
    match o {
        Operand::Lit(Literal::Nil) => "nil".into(),
        Operand::Lit(Literal::Bool(b)) => b.to_string(),
        Operand::Lit(Literal::Int(i)) => format!("{i}i"),
        Operand::Lit(Literal::Double(x)) => format!("{x:?}d"),
        Operand::Lit(Literal::Str(s)) => format!("{s:?}"),
        Operand::Lit(Literal::Bytes(b)) => format!("0x{}", hex::encode(b)),
        Operand::Path(p) => {
            let mut s = format!("{:?}", p.field);
            for k in &p.keys {
                match k {
                    Key::Str(k) => s.push_str(&format!("[{k:?}]")),
                    Key::Int(i) => s.push_str(&format!("[{i}]")),
                }
            }
            s
        }
        Operand::IsMatch(t, r) => format!("IsMatch({}, {:?})", operand(t), r.as_str()),
        Operand::IsType(t, ty) => format!("Is{ty:?}({})", operand(t)),
        Operand::AnyDataPoint(e) => format!("AnyDataPoint{}", show(e)),
        Operand::Lit(Literal::Composite(v)) => format!("{v:?}"),
    }
}

fn ok(src: &str, ctx: Context) -> String {
    match parse(src, ctx) {
        Ok(e) => show(&e),
        Err(e) => panic!("{src:?} should parse: {e}"),
    }
}

fn span(src: &str) -> String {
    ok(src, Context::Span)
}

fn err(src: &str, ctx: Context) -> String {
    match parse(src, ctx) {
        Ok(e) => panic!("{src:?} should not parse, got {}", show(&e)),
        Err(e) => e.to_string(),
    }
}

fn span_err(src: &str) -> String {
    err(src, Context::Span)
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        span(r#"name == "a" or name == "b" and kind == 2"#),
        r#"(or (== SpanName "a") (and (== SpanName "b") (== SpanKind 2i)))"#
    );
    assert_eq!(
        span(r#"name == "a" and name == "b" or kind == 2"#),
        r#"(or (and (== SpanName "a") (== SpanName "b")) (== SpanKind 2i))"#
    );
}

#[test]
fn not_negates_the_comparison_that_follows_and_binds_tighter_than_and() {
    assert_eq!(
        span(r#"not name == "a" and kind == 2"#),
        r#"(and (not (== SpanName "a")) (== SpanKind 2i))"#
    );
    assert_eq!(
        span(r#"not not name == "a""#),
        r#"(not (not (== SpanName "a")))"#
    );
}

#[test]
fn chains_stay_flat_in_order() {
    assert_eq!(
        span("kind == 1 or kind == 2 or kind == 3"),
        "(or (== SpanKind 1i) (== SpanKind 2i) (== SpanKind 3i))"
    );
    assert_eq!(
        span("kind == 1 and kind == 2 and kind == 3 or kind == 4"),
        "(or (and (== SpanKind 1i) (== SpanKind 2i) (== SpanKind 3i)) (== SpanKind 4i))"
    );
    // A long chain parses and evaluates without deep recursion.
    let long = vec!["kind == 1"; 20_000].join(" or ");
    assert!(parse(&long, Context::Span).is_ok());
}

#[test]
fn nesting_is_bounded() {
    let ok_depth = format!("{}kind == 1{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&ok_depth, Context::Span).is_ok());
    let deep = format!("{}kind == 1{}", "(".repeat(101), ")".repeat(101));
    assert_eq!(
        span_err(&deep),
        "column 101: nested deeper than 100 levels of '(', 'not' and calls"
    );
    let nots = format!("{}true", "not ".repeat(200));
    assert!(span_err(&nots).contains("nested deeper than 100 levels"));
    let calls = format!("{}name{}", "IsMatch(".repeat(200), ", \"x\")".repeat(200));
    assert!(span_err(&calls).contains("nested deeper than 100 levels"));
}

#[test]
fn parentheses_override_precedence() {
    assert_eq!(
        span(r#"(name == "a" or name == "b") and kind == 2"#),
        r#"(and (or (== SpanName "a") (== SpanName "b")) (== SpanKind 2i))"#
    );
    assert_eq!(
        span(r#"not (name == "a" or ((kind == 2)))"#),
        r#"(not (or (== SpanName "a") (== SpanKind 2i)))"#
    );
}

#[test]
fn every_comparison_operator() {
    for (src, op) in [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        assert_eq!(
            span(&format!("kind {src} 1")),
            format!("({} SpanKind 1i)", op.symbol())
        );
        // Spaces around operators are optional.
        assert_eq!(
            span(&format!("kind{src}1")),
            format!("({} SpanKind 1i)", op.symbol())
        );
    }
}

#[test]
fn every_literal_kind() {
    let cases = [
        (r#""text""#, r#""text""#),
        (
            r#""quote \" backslash \\ nl \n tab \t""#,
            "\"quote \\\" backslash \\\\ nl \\n tab \\t\"",
        ),
        ("42", "42i"),
        ("-7", "-7i"),
        ("+7", "7i"),
        ("1.5", "1.5d"),
        ("-0.25", "-0.25d"),
        ("2e3", "2000.0d"),
        ("true", "true"),
        ("false", "false"),
        ("nil", "nil"),
        ("0x0aFF", "0x0aff"),
        ("SPAN_KIND_SERVER", "2i"),
    ];
    for (lit, shown) in cases {
        assert_eq!(
            span(&format!("attributes[\"k\"] == {lit}")),
            format!("(== SpanAttributes[\"k\"] {shown})"),
            "{lit}"
        );
    }
    // Non-ASCII text survives, and literals may stand on either side.
    assert_eq!(span(r#""héllo" == name"#), r#"(== "héllo" SpanName)"#);
}

#[test]
fn enum_constants() {
    for (name, v) in [
        ("SPAN_KIND_UNSPECIFIED", 0),
        ("SPAN_KIND_INTERNAL", 1),
        ("SPAN_KIND_SERVER", 2),
        ("SPAN_KIND_CLIENT", 3),
        ("SPAN_KIND_PRODUCER", 4),
        ("SPAN_KIND_CONSUMER", 5),
        ("STATUS_CODE_UNSET", 0),
        ("STATUS_CODE_OK", 1),
        ("STATUS_CODE_ERROR", 2),
        ("SEVERITY_NUMBER_UNSPECIFIED", 0),
        ("SEVERITY_NUMBER_TRACE", 1),
        ("SEVERITY_NUMBER_TRACE4", 4),
        ("SEVERITY_NUMBER_DEBUG", 5),
        ("SEVERITY_NUMBER_INFO", 9),
        ("SEVERITY_NUMBER_INFO2", 10),
        ("SEVERITY_NUMBER_WARN", 13),
        ("SEVERITY_NUMBER_ERROR", 17),
        ("SEVERITY_NUMBER_ERROR3", 19),
        ("SEVERITY_NUMBER_FATAL", 21),
        ("SEVERITY_NUMBER_FATAL4", 24),
        ("METRIC_DATA_TYPE_NONE", 0),
        ("METRIC_DATA_TYPE_GAUGE", 1),
        ("METRIC_DATA_TYPE_SUM", 2),
        ("METRIC_DATA_TYPE_HISTOGRAM", 3),
        ("METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM", 4),
        ("METRIC_DATA_TYPE_SUMMARY", 5),
        ("AGGREGATION_TEMPORALITY_DELTA", 1),
        ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
    ] {
        assert_eq!(enum_value(name), Some(v), "{name}");
    }
    for bad in [
        "SEVERITY_NUMBER_WARN5",
        "SEVERITY_NUMBER_WARN1",
        "SEVERITY_NUMBER_LOUD",
        "SPAN_KIND",
    ] {
        assert_eq!(enum_value(bad), None, "{bad}");
    }
}

#[test]
fn paths_per_context() {
    assert_eq!(
        span(r#"resource.attributes["service.name"] == "x""#),
        r#"(== ResourceAttributes["service.name"] "x")"#
    );
    assert_eq!(
        span("status.code == STATUS_CODE_ERROR"),
        "(== SpanStatusCode 2i)"
    );
    assert_eq!(span(r#"span.name == "x""#), r#"(== SpanName "x")"#);
    assert_eq!(
        span(r#"instrumentation_scope.name == "lib""#),
        r#"(== ScopeName "lib")"#
    );
    assert_eq!(
        span(r#"attributes["m"]["inner"][0] == 1"#),
        r#"(== SpanAttributes["m"]["inner"][0] 1i)"#
    );
    assert_eq!(
        ok(r#"name == "ev" and span.name == "s""#, Context::SpanEvent),
        r#"(and (== EventName "ev") (== SpanName "s"))"#
    );
    assert_eq!(
        ok(r#"attributes["k"] == 1"#, Context::SpanEvent),
        r#"(== EventAttributes["k"] 1i)"#
    );
    assert_eq!(
        ok("metric.type == METRIC_DATA_TYPE_SUM", Context::Metric),
        "(== MetricType 2i)"
    );
    assert_eq!(
        ok(r#"name == "m""#, Context::Metric),
        r#"(== MetricName "m")"#
    );
    assert_eq!(
        ok(
            r#"metric.name == "m" and value_double > 0.5 and value_int < 3"#,
            Context::DataPoint
        ),
        r#"(and (== MetricName "m") (> PointValueDouble 0.5d) (< PointValueInt 3i))"#
    );
    assert_eq!(
        ok(r#"attributes["k"] == nil"#, Context::DataPoint),
        r#"(== PointAttributes["k"] nil)"#
    );
    assert_eq!(
        ok("severity_number >= SEVERITY_NUMBER_WARN", Context::Log),
        "(>= LogSeverityNumber 13i)"
    );
    assert_eq!(
        ok(
            r#"severity_text == "DEBUG" or body == "x" or body["msg"] == "y""#,
            Context::Log
        ),
        r#"(or (== LogSeverityText "DEBUG") (== LogBody "x") (== LogBody["msg"] "y"))"#
    );
    assert_eq!(
        ok("trace_id.string == \"ab\"", Context::Log),
        "(== LogTraceIdString \"ab\")"
    );
    // A field of the field table still resolves to the same variant under its context prefix.
    assert_eq!(ok("log.body == nil", Context::Log), "(== LogBody nil)");
    let _ = Field::SpanKind;
}

#[test]
fn is_match_and_boolean_constants() {
    assert_eq!(
        span(r#"IsMatch(name, "^GET /health")"#),
        r#"IsMatch(SpanName, "^GET /health")"#
    );
    assert_eq!(
        span(r#"not IsMatch(attributes["http.route"], ".*") or true"#),
        r#"(or (not IsMatch(SpanAttributes["http.route"], ".*")) true)"#
    );
    assert_eq!(
        span(r#"IsMatch(name, "a") == false"#),
        r#"(== IsMatch(SpanName, "a") false)"#
    );
    assert_eq!(span("false"), "false");
    assert_eq!(
        ok(r#"IsMatch(body, "password=")"#, Context::Log),
        r#"IsMatch(LogBody, "password=")"#
    );
}

#[test]
fn parse_errors_name_their_column() {
    let cases: &[(&str, &str)] = &[
        (
            r#"attributes["k"] =="#,
            "column 19: expected a value after '=='",
        ),
        (
            r#"name == )"#,
            "column 9: expected a value after '==', found ')'",
        ),
        (
            r#"name = "x""#,
            "column 6: '=' is not an operator; use '=='",
        ),
        (
            r#"name ! "x""#,
            "column 6: '!' is not an operator; use '!=' or 'not'",
        ),
        (
            r#"name == "x"#,
            "column 9: string is not closed: expected '\"'",
        ),
        (
            r#"name == "a\qb""#,
            "column 11: unknown escape '\\q' in a string (known: \\\" \\\\ \\n \\t \\r)",
        ),
        (
            r#"name == "x" and"#,
            "column 16: expected a condition after 'and', found the end of the condition",
        ),
        (
            r#"name == "x" or or kind == 1"#,
            "column 16: expected a condition after 'or', found 'or'",
        ),
        (
            r#"not"#,
            "column 4: expected a condition after 'not', found the end of the condition",
        ),
        (
            r#"(name == "x""#,
            "column 13: expected ')' to close the '(' at column 1, found the end of the condition",
        ),
        (r#"name == "x")"#, "column 12: ')' without a matching '('"),
        (
            r#"()"#,
            "column 2: expected a condition after '(', found ')'",
        ),
        (
            r#"name == "x" kind == 1"#,
            "column 13: expected 'and', 'or' or the end of the condition, found 'kind'",
        ),
        (
            r#"name"#,
            "column 5: expected a comparison operator (==, !=, <, <=, >, >=) after the value at column 1, found the end of the condition",
        ),
        (
            r#"name == "a" and 1"#,
            "column 18: expected a comparison operator (==, !=, <, <=, >, >=) after the value at column 17, found the end of the condition",
        ),
        (
            r#"severity_number == 1"#,
            "column 1: unknown path 'severity_number' in a span condition; paths here:",
        ),
        (
            r#"kind == SPAN_KIND_SERVR"#,
            "column 9: unknown name 'SPAN_KIND_SERVR'",
        ),
        (
            r#"kind == 12345678901234567890"#,
            "column 9: number 12345678901234567890 is out of range",
        ),
        (
            r#"kind == 12ab"#,
            "column 11: a number must not run into a name",
        ),
        (
            r#"trace_id == 0xabc"#,
            "column 13: bytes literal needs an even number of hex digits after '0x'",
        ),
        (
            r#"name == "x" # comment"#,
            "column 13: unexpected character '#'",
        ),
        (
            r#"name["k"] == 1"#,
            "column 5: 'name' is not a map and cannot take a [key]",
        ),
        (
            r#"attributes[k] == 1"#,
            "column 12: expected a string key or an integer index after '[', found 'k'",
        ),
        (
            r#"attributes["k" == 1"#,
            "column 16: expected ']' after the key, found '=='",
        ),
        (
            r#"status. == 1"#,
            "column 8: expected a field name after '.', found '=='",
        ),
        (
            r#"Contains(name, "x")"#,
            "column 1: unknown function 'Contains'; supported: IsMatch",
        ),
        (
            r#"IsMatch(name)"#,
            "column 1: IsMatch takes two arguments: IsMatch(target, \"regex\")",
        ),
        (
            r#"IsMatch(name, "a", "b")"#,
            "column 1: IsMatch takes two arguments",
        ),
        (
            r#"IsMatch(name, kind)"#,
            "column 15: the pattern of IsMatch must be a string literal",
        ),
        (
            r#"IsMatch(name, "(unclosed")"#,
            "column 15: invalid regular expression \"(unclosed\": unclosed group",
        ),
        (
            r#"IsMatch(name "x")"#,
            "column 14: expected ',' or ')' in the arguments of IsMatch, found the string \"x\"",
        ),
        (
            r#"IsMatch(, "x")"#,
            "column 9: expected an argument, found ','",
        ),
        (r#""#, "column 1: the condition is empty"),
        (r#"   "#, "column 1: the condition is empty"),
        (
            r#"and name == "x""#,
            "column 1: expected a condition, found 'and'",
        ),
    ];
    for (src, want) in cases {
        let got = span_err(src);
        assert!(got.starts_with(want), "{src:?}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        span_err(r#"name == "é" and =="#),
        "column 17: expected a condition after 'and', found '=='"
    );
}

#[test]
fn a_path_valid_elsewhere_is_an_error_in_the_wrong_context() {
    assert!(
        span_err(r#"body == "x""#).starts_with("column 1: unknown path 'body' in a span condition")
    );
    assert!(
        err(r#"kind == 1"#, Context::Log)
            .starts_with("column 1: unknown path 'kind' in a log_record condition")
    );
    assert!(
        err(r#"value_int == 1"#, Context::Metric)
            .starts_with("column 1: unknown path 'value_int' in a metric condition")
    );
    assert!(
        err(r#"span.name == "x""#, Context::Log).starts_with("column 1: unknown path 'span.name'")
    );
    // The listing names what is valid, so the user can pick the right path.
    let msg = err(r#"x == 1"#, Context::DataPoint);
    for path in [
        "value_double",
        "metric.name",
        "attributes[\"key\"]",
        "resource.attributes[\"key\"]",
    ] {
        assert!(msg.contains(path), "{msg}");
    }
}
