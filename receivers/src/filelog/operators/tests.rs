//! Every operator on cases written after upstream's documentation examples.

use std::time::Instant;

use sluice_config::parse_yaml;

use super::entry::{Entry, Map, Origin, Span, Value};
use super::{Operators, build};

fn operators(yaml: &str) -> Operators {
    let node = parse_yaml("ops.yaml", yaml).unwrap();
    match build(Some(&node), "operators") {
        Ok(o) => o,
        Err(e) => panic!("{e:?}"),
    }
}

fn build_error(yaml: &str) -> String {
    let node = parse_yaml("ops.yaml", yaml).unwrap();
    match build(Some(&node), "operators") {
        Ok(_) => String::new(),
        Err(e) => e
            .iter()
            .map(|d| format!("{}: {}\n", d.path, d.message))
            .collect(),
    }
}

fn json(text: &str) -> Value {
    Value::from_json(serde_json::from_str(text).unwrap())
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn body(value: Value) -> Entry {
    Entry::new(value, 1)
}

fn run(ops: &mut Operators, entries: Vec<Entry>) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in entries {
        ops.process(e, &mut out);
    }
    out
}

fn run_one(yaml: &str, entry: Entry) -> Vec<Entry> {
    run(&mut operators(yaml), vec![entry])
}

fn one(yaml: &str, entry: Entry) -> Entry {
    let mut out = run_one(yaml, entry);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn map(pairs: &[(&str, Value)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn rfc3339(nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(nanos as i128)
        .unwrap()
        .to_string()
}

#[test]
fn add_values_and_expressions() {
    let e = one(
        "- type: add\n  field: body.key2\n  value: val2\n- type: add\n  field: body.key3\n  value: EXPR(body.key1 + \"_suffix\")\n- type: add\n  field: body.obj\n  value:\n    nestedkey: nestedvalue\n- type: add\n  field: attributes.n\n  value: 3\n- type: add\n  field: resource.key2\n  value: val2\n",
        body(json(r#"{"key1":"val1"}"#)),
    );
    assert_eq!(
        e.body,
        json(
            r#"{"key1":"val1","key2":"val2","key3":"val1_suffix","obj":{"nestedkey":"nestedvalue"}}"#
        )
    );
    assert_eq!(e.attributes["n"], Value::Int(3));
    assert_eq!(e.resource["key2"], s("val2"));
}

#[test]
fn copy_move_remove() {
    let e = one(
        "- type: copy\n  from: body.key\n  to: attributes.key\n",
        body(json(r#"{"key":"v"}"#)),
    );
    assert_eq!(e.body, json(r#"{"key":"v"}"#));
    assert_eq!(e.attributes["key"], s("v"));
    // Rename, to the resource, and the body replaced by a nested value.
    let e = one(
        "- type: move\n  from: body.key1\n  to: body.key3\n- type: move\n  from: body.uuid\n  to: resource.uuid\n- type: move\n  from: body.log\n  to: body\n",
        body(json(r#"{"key1":"val1","uuid":"u-1","log":"The log line"}"#)),
    );
    assert_eq!(e.body, s("The log line"));
    assert_eq!(e.resource["uuid"], s("u-1"));
    // A layer merged into the body.
    let e = one(
        "- type: move\n  from: body.object\n  to: body\n",
        body(json(
            r#"{"first":"a","object":{"apiVersion":"v1","name":"n"}}"#,
        )),
    );
    assert_eq!(
        e.body,
        json(r#"{"first":"a","apiVersion":"v1","name":"n"}"#)
    );
    let mut entry = body(json(
        r#"{"key1":"v","key2":{"nested_key1":"x","nested_key2":"y"}}"#,
    ));
    entry.attributes.insert("a".into(), s("b"));
    let e = one(
        "- type: remove\n  field: body.key2.nested_key1\n- type: remove\n  field: attributes\n",
        entry,
    );
    assert_eq!(e.body, json(r#"{"key1":"v","key2":{"nested_key2":"y"}}"#));
    assert!(e.attributes.is_empty());
    // A missing field is an error: with on_error drop the entry goes.
    assert!(
        run_one(
            "- type: remove\n  field: body.nope\n  on_error: drop\n",
            body(json("{}"))
        )
        .is_empty()
    );
    assert_eq!(
        run_one(
            "- type: move\n  from: body.nope\n  to: body.x\n",
            body(json("{}"))
        )
        .len(),
        1
    );
}

#[test]
fn flatten_and_retain() {
    let e = one(
        "- type: flatten\n  field: body.key1\n",
        body(json(
            r#"{"key1":{"nested1":"v1","nested2":"v2"},"key2":"val2"}"#,
        )),
    );
    assert_eq!(
        e.body,
        json(r#"{"nested1":"v1","nested2":"v2","key2":"val2"}"#)
    );
    let e = one(
        "- type: flatten\n  field: body.wrapper.key1\n",
        body(json(r#"{"wrapper":{"key1":{"n":"v"},"key2":"val2"}}"#)),
    );
    assert_eq!(e.body, json(r#"{"wrapper":{"n":"v","key2":"val2"}}"#));
    let mut entry = body(json(
        r#"{"key1":"v1","key2":"v2","key3":"v3","object":{"n":1}}"#,
    ));
    entry.attributes = map(&[("a", s("1")), ("b", s("2"))]);
    entry.resource = map(&[("r1", s("1")), ("r2", s("2"))]);
    let e = one(
        "- type: retain\n  fields:\n    - body.key1\n    - body.object\n    - resource.r1\n",
        entry,
    );
    assert_eq!(e.body, json(r#"{"key1":"v1","object":{"n":1}}"#));
    // No attributes named: all kept.
    assert_eq!(e.attributes.len(), 2);
    assert_eq!(e.resource, map(&[("r1", s("1"))]));
}

#[test]
fn json_parser() {
    let e = one(
        "- type: json_parser\n  parse_from: body.message\n  parse_to: body\n",
        body(json(r#"{"message":"{\"key\": \"val\"}"}"#)),
    );
    assert_eq!(
        e.body,
        json(r#"{"message":"{\"key\": \"val\"}","key":"val"}"#)
    );
    let e = one(
        "- type: json_parser\n  timestamp:\n    parse_from: attributes.seconds_since_epoch\n    layout_type: epoch\n    layout: s\n",
        body(s(r#"{"key": "val", "seconds_since_epoch": 1136214245}"#)),
    );
    assert_eq!(e.attributes["key"], s("val"));
    assert_eq!(
        e.attributes["seconds_since_epoch"],
        Value::Float(1136214245.0)
    );
    assert_eq!(e.timestamp, 1_136_214_245_000_000_000);
    // Only when the body looks like an object.
    let yaml = "- type: json_parser\n  if: 'body matches \"^\\\\{.*\\\\}$\"'\n";
    assert_eq!(one(yaml, body(s("notjson"))).body, s("notjson"));
    assert_eq!(one(yaml, body(s(r#"{"k":"v"}"#))).attributes["k"], s("v"));
    // parse_ints keeps whole numbers as integers.
    let e = one(
        "- type: json_parser\n  parse_ints: true\n",
        body(s(r#"{"n": 3}"#)),
    );
    assert_eq!(e.attributes["n"], Value::Int(3));
    // Not JSON: sent on as it was (on_error: send).
    assert_eq!(
        one("- type: json_parser\n", body(s("{oops"))).body,
        s("{oops")
    );
    // drop_field removes what was parsed.
    let e = one(
        "- type: json_parser\n  parse_from: body.raw\n  drop_field: true\n",
        body(json(r#"{"raw":"{\"a\":1}","keep":"x"}"#)),
    );
    assert_eq!(e.body, json(r#"{"keep":"x"}"#));
    assert!(build_error("- type: json_parser\n  drop_field: true\n").contains("drop_field"));
}

#[test]
fn regex_parser() {
    let e = one(
        "- type: regex_parser\n  parse_from: body.message\n  regex: '^Host=(?P<host>[^,]+), Type=(?P<type>.*)$'\n",
        body(json(r#"{"message":"Host=127.0.0.1, Type=HTTP"}"#)),
    );
    assert_eq!(
        e.attributes,
        map(&[("host", s("127.0.0.1")), ("type", s("HTTP"))])
    );
    let e = one(
        "- type: regex_parser\n  regex: '^Time=(?P<timestamp_field>\\d{4}-\\d{2}-\\d{2}), Host=(?P<host>[^,]+), Type=(?P<type>.*)$'\n  timestamp:\n    parse_from: attributes.timestamp_field\n    layout_type: strptime\n    layout: '%Y-%m-%d'\n    location: UTC\n",
        body(s("Time=2020-01-31, Host=127.0.0.1, Type=HTTP")),
    );
    assert_eq!(rfc3339(e.timestamp), "2020-01-31T00:00:00Z");
    let yaml = "- type: regex_parser\n  regex: '^Host=(?P<host>.*)$'\n  parse_from: body.message\n  if: 'body.type == \"hostname\"'\n";
    let e = one(
        yaml,
        body(json(r#"{"message":"Host=testhost","type":"hostname"}"#)),
    );
    assert_eq!(e.attributes["host"], s("testhost"));
    let e = one(
        yaml,
        body(json(r#"{"message":"Key=value","type":"keypair"}"#)),
    );
    assert!(e.attributes.is_empty());
    // A cache answers repeated values the same way.
    let mut ops = operators(
        "- type: regex_parser\n  regex: '^(?P<a>\\w+) (?P<b>\\w+)$'\n  cache:\n    size: 2\n",
    );
    let out = run(
        &mut ops,
        vec![
            body(s("x y")),
            body(s("x y")),
            body(s("p q")),
            body(s("r s")),
            body(s("x y")),
        ],
    );
    assert!(out.iter().all(|e| e.attributes.len() == 2));
    assert_eq!(out[4].attributes["b"], s("y"));
    assert!(build_error("- type: regex_parser\n  regex: 'no groups'\n").contains("named groups"));
}

#[test]
fn key_value_parser() {
    let e = one(
        "- type: key_value_parser\n  parse_from: body.message\n  parse_to: body\n",
        body(json(r#"{"message":"name=stanza"}"#)),
    );
    assert_eq!(e.body.as_map().unwrap()["name"], s("stanza"));
    let e = one(
        "- type: key_value_parser\n  delimiter: ':'\n",
        body(s("name:stanza")),
    );
    assert_eq!(e.attributes["name"], s("stanza"));
    let e = one(
        "- type: key_value_parser\n  pair_delimiter: '!'\n",
        body(s("name=stanza ! org=otel      ! group=dev")),
    );
    assert_eq!(
        e.attributes,
        map(&[
            ("name", s("stanza")),
            ("org", s("otel")),
            ("group", s("dev"))
        ])
    );
    let e = one(
        "- type: key_value_parser\n  timestamp:\n    parse_from: attributes.seconds_since_epoch\n    layout_type: epoch\n    layout: s\n",
        body(s("name=stanza seconds_since_epoch=1136214245")),
    );
    assert_eq!(e.timestamp, 1_136_214_245_000_000_000);
}

#[test]
fn csv_parser() {
    let e = one(
        "- type: csv_parser\n  header: id,severity,message\n",
        body(s("1,debug,Debug Message")),
    );
    assert_eq!(
        e.attributes,
        map(&[
            ("id", s("1")),
            ("severity", s("debug")),
            ("message", s("Debug Message"))
        ])
    );
    let e = one(
        "- type: csv_parser\n  parse_from: body.message\n  header: id,severity,message\n  header_delimiter: \",\"\n  delimiter: \"\\t\"\n",
        body(json(r#"{"message":"1\tdebug\tDebug Message"}"#)),
    );
    assert_eq!(e.attributes["message"], s("Debug Message"));
    let mut entry = body(s("1,debug,Hello"));
    entry
        .attributes
        .insert("Fields".into(), s("id,severity,message"));
    let e = one("- type: csv_parser\n  header_attribute: Fields\n", entry);
    assert_eq!(e.attributes["message"], s("Hello"));
    // Field count mismatch: an error, the entry goes on unparsed.
    let e = one("- type: csv_parser\n  header: a,b\n", body(s("1,2,3")));
    assert_eq!(e.attributes.len(), 0);
    assert!(
        build_error("- type: csv_parser\n  header: a\n  delimiter: ';;'\n").contains("delimiter")
    );
}

#[test]
fn time_parser() {
    let e = one(
        "- type: time_parser\n  parse_from: body.timestamp_field\n  layout_type: strptime\n  layout: '%a %b %e %H:%M:%S %Z %Y'\n",
        body(json(
            r#"{"timestamp_field":"Fri Jun  5 13:50:27 EST 2020"}"#,
        )),
    );
    assert_eq!(rfc3339(e.timestamp), "2020-06-05T18:50:27Z");
    let e = one(
        "- type: time_parser\n  parse_from: body.timestamp_field\n  layout_type: gotime\n  layout: Jan 2 15:04:05 MST 2006\n",
        body(json(r#"{"timestamp_field":"Jun 5 13:50:27 EST 2020"}"#)),
    );
    assert_eq!(rfc3339(e.timestamp), "2020-06-05T18:50:27Z");
    let e = one(
        "- type: time_parser\n  parse_from: body.t\n  layout_type: epoch\n  layout: s\n  drop_field: true\n",
        body(json(r#"{"t":1136214245,"k":1}"#)),
    );
    assert_eq!(rfc3339(e.timestamp), "2006-01-02T15:04:05Z");
    assert_eq!(e.body, json(r#"{"k":1}"#));
    assert!(build_error("- type: time_parser\n  parse_from: body.t\n").contains("layout"));
    assert!(
        build_error(
            "- type: time_parser\n  parse_from: body.t\n  layout: x\n  location: Nowhere/Land\n"
        )
        .contains("location")
    );
}

#[test]
fn severity_parser() {
    let sev = |yaml: &str, value: Value| {
        let e = one(yaml, body(Value::Map(map(&[("severity_field", value)]))));
        (e.severity, e.severity_text)
    };
    let plain = "- type: severity_parser\n  parse_from: body.severity_field\n";
    assert_eq!(sev(plain, s("ERROR")), (17, "ERROR".to_string()));
    assert_eq!(sev(plain, s("warning")), (13, "warning".to_string()));
    assert_eq!(sev(plain, s("unknown")), (0, "unknown".to_string()));
    let custom = "- type: severity_parser\n  parse_from: body.severity_field\n  mapping:\n    error:\n      - nooo!\n      - nooooooo\n    info: HEY\n    debug: 1234\n";
    assert_eq!(sev(custom, s("nooooooo")).0, 17);
    assert_eq!(sev(custom, s("hey")).0, 9);
    assert_eq!(sev(custom, Value::Int(1234)).0, 5);
    assert_eq!(sev(custom, Value::Float(1234.0)).0, 5);
    assert_eq!(sev(custom, s("ERROR")).0, 17);
    let ranges = "- type: severity_parser\n  parse_from: body.severity_field\n  mapping:\n    error:\n      - min: 1\n        max: 5\n    fatal:\n      - min: 6\n        max: 10\n";
    assert_eq!(sev(ranges, Value::Int(3)).0, 17);
    assert_eq!(sev(ranges, Value::Int(9)).0, 21);
    // 1..=24 are severity numbers in every preset but `none`.
    assert_eq!(sev(ranges, Value::Int(30)).0, 0);
    let http = "- type: severity_parser\n  parse_from: body.severity_field\n  mapping:\n    warn: 5xx\n    error: 4xx\n    info: 3xx\n    debug: 2xx\n";
    assert_eq!(sev(http, Value::Int(302)).0, 9);
    assert_eq!(sev(http, Value::Int(404)).0, 17);
    assert_eq!(sev(http, Value::Int(200)).0, 5);
    let none = "- type: severity_parser\n  parse_from: body.severity_field\n  preset: none\n  mapping:\n    error: nooo!\n";
    assert_eq!(sev(none, s("nooo!")).0, 17);
    assert_eq!(sev(none, s("ERROR")).0, 0);
    let overwrite = "- type: severity_parser\n  parse_from: body.severity_field\n  overwrite_text: true\n  mapping:\n    info3: medium\n";
    assert_eq!(sev(overwrite, s("medium")), (11, "INFO3".to_string()));
    assert!(
        build_error("- type: severity_parser\n  parse_from: body.x\n  mapping:\n    loud: x\n")
            .contains("loud")
    );
}

#[test]
fn trace_and_scope_name_parsers() {
    let e = one(
        "- type: regex_parser\n  regex: '^TraceID=(?P<trace_id>\\S*) SpanID=(?P<span_id>\\S*) TraceFlags=(?P<trace_flags>\\d*)'\n  trace:\n    trace_id:\n      parse_from: attributes.trace_id\n    span_id:\n      parse_from: attributes.span_id\n    trace_flags:\n      parse_from: attributes.trace_flags\n",
        body(s(
            "TraceID=480140f3d770a5ae32f0a22b6a812cff SpanID=92c3792d54ba94f3 TraceFlags=01",
        )),
    );
    assert_eq!(e.trace_id.len(), 16);
    assert_eq!(e.span_id, [0x92, 0xc3, 0x79, 0x2d, 0x54, 0xba, 0x94, 0xf3]);
    assert_eq!(e.trace_flags, [1]);
    let e = one(
        "- type: trace_parser\n",
        body(json(
            r#"{"trace_id":"480140f3d770a5ae32f0a22b6a812cff","span_id":"92c3792d54ba94f3"}"#,
        )),
    );
    assert_eq!(e.trace_id.len(), 16);
    // A bad id is an error; with on_error: drop the entry goes.
    assert!(
        run_one(
            "- type: trace_parser\n  on_error: drop\n",
            body(json(r#"{"trace_id":"zz"}"#))
        )
        .is_empty()
    );
    let e = one(
        "- type: regex_parser\n  regex: '^(?P<scope_name_field>\\S*)\\s-\\s(?P<message>.*)'\n  parse_to: body\n  scope_name:\n    parse_from: body.scope_name_field\n",
        body(s("com.example.Foo - some message")),
    );
    assert_eq!(e.scope_name, "com.example.Foo");
    let e = one(
        "- type: scope_name_parser\n  parse_from: attributes.logger\n",
        {
            let mut e = body(s("x"));
            e.attributes.insert("logger".into(), s("app.db"));
            e
        },
    );
    assert_eq!(e.scope_name, "app.db");
}

#[test]
fn router_and_filter() {
    let mut ops = operators(
        r#"
- type: router
  routes:
    - output: my_json_parser
      expr: 'body matches "^\\{"'
      attributes:
        format: json
    - output: my_kv_parser
      expr: 'body startsWith "k="'
  default: catchall
- type: json_parser
  id: my_json_parser
  output: end
- type: key_value_parser
  id: my_kv_parser
  output: end
- type: add
  id: catchall
  field: attributes.unrouted
  value: "yes"
- type: noop
  id: end
"#,
    );
    let out = run(
        &mut ops,
        vec![body(s(r#"{"a":"1"}"#)), body(s("k=v")), body(s("plain"))],
    );
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].attributes["a"], s("1"));
    assert_eq!(out[0].attributes["format"], s("json"));
    assert_eq!(out[1].attributes["k"], s("v"));
    assert_eq!(out[2].attributes["unrouted"], s("yes"));
    // Without a default, unmatched entries are dropped.
    let out = run_one(
        "- type: router\n  routes:\n    - output: keep\n      expr: 'body == \"x\"'\n- type: noop\n  id: keep\n",
        body(s("y")),
    );
    assert!(out.is_empty());
    let mut ops = operators("- type: filter\n  expr: 'attributes.env == \"production\"'\n");
    let mut prod = body(s("p"));
    prod.attributes.insert("env".into(), s("production"));
    let out = run(&mut ops, vec![prod.clone(), body(s("dev"))]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body, s("dev"));
    let mut keep_all = operators("- type: filter\n  expr: 'true'\n  drop_ratio: 0.0\n");
    assert_eq!(run(&mut keep_all, vec![prod]).len(), 1);
    let out = run_one(
        "- type: filter\n  expr: 'body == env(\"SLUICE_FILELOG_TEST_UNSET\")'\n",
        body(s("")),
    );
    assert!(out.is_empty());
}

#[test]
fn output_wiring_skips_and_ids_must_be_unique() {
    let e = one(
        "- type: add\n  field: attributes.a\n  value: 1\n  output: last\n- type: add\n  field: attributes.skipped\n  value: 1\n- type: add\n  id: last\n  field: attributes.b\n  value: 1\n",
        body(s("x")),
    );
    assert!(e.attributes.contains_key("a") && e.attributes.contains_key("b"));
    assert!(!e.attributes.contains_key("skipped"));
    let e = build_error("- type: noop\n  id: same\n- type: noop\n  id: same\n");
    assert!(e.contains("used twice"), "{e}");
    // Default ids of one type are numbered, as upstream does.
    assert_eq!(
        operators("- type: noop\n- type: noop\n- type: noop\n").ids(),
        ["noop", "noop1", "noop2"]
    );
    let e = build_error("- type: file_input\n");
    assert!(e.contains("outside the pipeline"), "{e}");
    let e = build_error("- type: regex_parse\n  regex: x\n");
    assert!(e.contains("known operator types: add, container"), "{e}");
    let e = build_error("- type: add\n  field: attributes.x\n  value: 1\n  color: red\n");
    assert!(e.contains("color"), "{e}");
}

fn file_entry(text: &str, path: &str, start: u64) -> Entry {
    let mut e = body(s(text));
    e.attributes.insert("log.file.path".into(), s(path));
    e.origin = Origin::One(Span {
        file: 1,
        start,
        end: start + text.len() as u64 + 1,
    });
    e
}

#[test]
fn recombine_cri_lines_and_stack_traces() {
    let mut ops = operators(
        "- type: regex_parser\n  regex: '^(?P<timestamp>[^\\s]+) (?P<stream>\\w+) (?P<logtag>\\w) (?P<message>.*)'\n  parse_to: body\n- type: recombine\n  combine_field: body.message\n  combine_with: \"\"\n  is_last_entry: \"body.logtag == 'F'\"\n  overwrite_with: newest\n",
    );
    let lines = [
        "2016-10-06T00:17:09.669794202Z stdout F Single entry log 1",
        "2016-10-06T00:17:10.113242941Z stdout P This is a very very long line th",
        "2016-10-06T00:17:10.113242941Z stdout P at is really really long and spa",
        "2016-10-06T00:17:10.113242941Z stdout F ns across multiple log entries",
    ];
    let out = run(&mut ops, lines.iter().map(|l| body(s(l))).collect());
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[1].body.as_map().unwrap()["message"],
        s(
            "This is a very very long line that is really really long and spans across multiple log entries"
        )
    );
    let mut ops = operators(
        "- type: recombine\n  combine_field: body\n  is_first_entry: body matches \"^[^\\\\s]\"\n",
    );
    let text = [
        "Log message 1",
        "Error: java.lang.Exception: Stack trace",
        "        at java.lang.Thread.dumpStack(Thread.java:1336)",
        "        at Main.demo3(Main.java:15)",
        "Another log message",
    ];
    let mut out = run(&mut ops, text.iter().map(|l| body(s(l))).collect());
    ops.flush(Instant::now(), true, &mut out);
    let bodies: Vec<Value> = out.into_iter().map(|e| e.body).collect();
    assert_eq!(
        bodies,
        [
            s("Log message 1"),
            s(
                "Error: java.lang.Exception: Stack trace\n        at java.lang.Thread.dumpStack(Thread.java:1336)\n        at Main.demo3(Main.java:15)"
            ),
            s("Another log message"),
        ]
    );
}

#[test]
fn recombine_unmatched_batch_sizes() {
    let combine = |yaml: &str, input: &[&str]| -> Vec<String> {
        let mut ops = operators(yaml);
        let mut out = run(&mut ops, input.iter().map(|l| body(s(l))).collect());
        ops.flush(Instant::now(), true, &mut out);
        out.into_iter()
            .map(|e| e.body.to_text().replace('\n', "\\n"))
            .collect()
    };
    let input = [
        "log2", "log3", "log4", "log1", "log5", "log6", "log7", "log1",
    ];
    let first = |n: usize| {
        format!(
            "- type: recombine\n  combine_field: body\n  is_first_entry: body == 'log1'\n  max_unmatched_batch_size: {n}\n"
        )
    };
    assert_eq!(
        combine(&first(0), &input),
        ["log2\\nlog3\\nlog4", "log1\\nlog5\\nlog6\\nlog7", "log1"]
    );
    assert_eq!(
        combine(&first(1), &input),
        ["log2", "log3", "log4", "log1\\nlog5\\nlog6\\nlog7", "log1"]
    );
    let input = [
        "log2", "log3", "log4", "log5", "log1", "log6", "log7", "log1", "log8", "log1",
    ];
    assert_eq!(
        combine(&first(3), &input),
        [
            "log2\\nlog3\\nlog4",
            "log5",
            "log1\\nlog6\\nlog7",
            "log1\\nlog8",
            "log1"
        ]
    );
    let last = "- type: recombine\n  combine_field: body\n  is_last_entry: body == 'log1'\n  max_unmatched_batch_size: 3\n";
    assert_eq!(
        combine(last, &input),
        [
            "log2\\nlog3\\nlog4",
            "log5\\nlog1",
            "log6\\nlog7\\nlog1",
            "log8\\nlog1"
        ]
    );
    assert!(build_error("- type: recombine\n  combine_field: body\n").contains("exactly one"));
}

#[test]
fn recombine_holds_positions_until_it_lets_go() {
    let mut ops = operators(
        "- type: recombine\n  combine_field: body\n  is_first_entry: body matches \"^[^ ]\"\n",
    );
    assert!(ops.holds());
    let out = run(
        &mut ops,
        vec![file_entry("first", "/a", 0), file_entry(" more", "/a", 6)],
    );
    assert!(out.is_empty());
    let mut starts = Vec::new();
    ops.held(&mut |e| starts.extend(e.origin.spans().iter().map(|s| s.start)));
    assert_eq!(starts, [0, 6]);
    let out = run(&mut ops, vec![file_entry("second", "/a", 12)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].origin.spans().len(), 2);
    let mut starts = Vec::new();
    ops.held(&mut |e| starts.extend(e.origin.spans().iter().map(|s| s.start)));
    assert_eq!(starts, [12]);
}

const POD_PATH: &str = "/var/log/pods/some_kube-controller-kind-control-plane_49cc7c1fd3702c40b2686ea7486091d6/kube-controller/1.log";

fn assert_pod(e: &Entry) {
    assert_eq!(
        e.resource["k8s.pod.name"],
        s("kube-controller-kind-control-plane")
    );
    assert_eq!(
        e.resource["k8s.pod.uid"],
        s("49cc7c1fd3702c40b2686ea7486091d6")
    );
    assert_eq!(e.resource["k8s.container.name"], s("kube-controller"));
    assert_eq!(e.resource["k8s.container.restart_count"], s("1"));
    assert_eq!(e.resource["k8s.namespace.name"], s("some"));
}

#[test]
fn container_formats() {
    let e = one(
        "- type: container\n  format: docker\n  add_metadata_from_filepath: true\n",
        file_entry(
            r#"{"log":"INFO: log line here","stream":"stdout","time":"2024-03-30T08:31:20.545192187Z"}"#,
            POD_PATH,
            0,
        ),
    );
    assert_eq!(e.body, s("INFO: log line here"));
    assert_eq!(rfc3339(e.timestamp), "2024-03-30T08:31:20.545192187Z");
    assert_eq!(e.attributes["log.iostream"], s("stdout"));
    assert!(!e.attributes.contains_key("time"));
    assert_pod(&e);
    let e = one(
        "- type: container\n",
        file_entry(
            "2024-04-13T07:59:37.505201169-05:00 stdout F standalone crio line which is awesome",
            POD_PATH,
            0,
        ),
    );
    assert_eq!(e.body, s("standalone crio line which is awesome"));
    assert_eq!(rfc3339(e.timestamp), "2024-04-13T12:59:37.505201169Z");
    assert_eq!(e.attributes["logtag"], s("F"));
    assert_pod(&e);
    let e = one(
        "- type: container\n",
        file_entry(
            "2023-06-22T10:27:25.813799277Z stdout F standalone containerd line that is super awesome",
            POD_PATH,
            0,
        ),
    );
    assert_eq!(
        e.body,
        s("standalone containerd line that is super awesome")
    );
    assert_eq!(rfc3339(e.timestamp), "2023-06-22T10:27:25.813799277Z");
    assert_pod(&e);
}

#[test]
fn container_joins_cri_partial_lines() {
    let mut ops = operators("- type: container\n");
    let out = run(
        &mut ops,
        vec![
            file_entry(
                "2023-06-22T10:27:25.813799277Z stdout P multiline containerd line that i",
                POD_PATH,
                0,
            ),
            file_entry(
                "2023-06-22T10:27:25.813799277Z stdout F s super awesomne",
                POD_PATH,
                80,
            ),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].body,
        s("multiline containerd line that is super awesomne")
    );
    assert_eq!(out[0].attributes["logtag"], s("F"));
    assert_pod(&out[0]);
    // Partial lines of two files are joined apart.
    let other = POD_PATH.replace("kube-controller/1", "kube-controller/2");
    let mut ops = operators("- type: container\n");
    let out = run(
        &mut ops,
        vec![
            file_entry("2023-06-22T10:27:25.813799277Z stdout P a-", POD_PATH, 0),
            file_entry("2023-06-22T10:27:25.813799277Z stderr P x-", &other, 0),
            file_entry("2023-06-22T10:27:25.813799277Z stdout F b", POD_PATH, 40),
            file_entry("2023-06-22T10:27:25.813799277Z stderr F y", &other, 40),
        ],
    );
    let bodies: Vec<Value> = out.into_iter().map(|e| e.body).collect();
    assert_eq!(bodies, [s("a-b"), s("x-y")]);
}

#[test]
fn container_needs_the_path_or_the_switch_off() {
    let e = one(
        "- type: container\n  add_metadata_from_filepath: false\n",
        body(s(
            r#"{"log":"x\n","stream":"stderr","time":"2024-03-30T08:31:20.5Z"}"#,
        )),
    );
    assert_eq!(e.body, s("x\n"));
    assert!(e.resource.is_empty());
    // Without the path the entry goes on (on_error: send), unparsed metadata reported.
    let out = run_one(
        "- type: container\n  on_error: drop\n",
        body(s(
            r#"{"log":"x","stream":"stdout","time":"2024-03-30T08:31:20.5Z"}"#,
        )),
    );
    assert!(out.is_empty());
    let out = run_one(
        "- type: container\n  on_error: drop\n",
        body(s("not a container line")),
    );
    assert!(out.is_empty());
    assert!(build_error("- type: container\n  format: podman\n").contains("podman"));
    // A severity block is applied too.
    let e = one(
        "- type: container\n  add_metadata_from_filepath: false\n  severity:\n    parse_from: attributes.stream\n    mapping:\n      error: stderr\n",
        body(s(
            r#"{"log":"boom","stream":"stderr","time":"2024-03-30T08:31:20.5Z"}"#,
        )),
    );
    assert_eq!(e.severity, 17);
}

#[test]
fn on_error_and_if() {
    let yaml = |on_error: &str| {
        format!("- type: regex_parser\n  regex: '^(?P<n>\\d+)$'\n  on_error: {on_error}\n")
    };
    for (choice, kept) in [
        ("send", 1),
        ("send_quiet", 1),
        ("drop", 0),
        ("drop_quiet", 0),
    ] {
        assert_eq!(
            run_one(&yaml(choice), body(s("abc"))).len(),
            kept,
            "{choice}"
        );
    }
    assert!(build_error(&yaml("ignore")).contains("on_error"));
    // `if` false: passed on untouched.
    let e = one(
        "- type: add\n  field: attributes.x\n  value: y\n  if: 'attributes.level == \"error\"'\n",
        body(s("b")),
    );
    assert!(e.attributes.is_empty());
}
