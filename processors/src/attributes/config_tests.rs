//! Every configuration error, with the key path and position it is reported at.

use super::tests::component;
use super::*;
use sluice_config::Diagnostic;

fn build_err(factory: &dyn ProcessorFactory, signal: SignalKind, yaml: &str) -> Vec<Diagnostic> {
    struct Sink;
    #[async_trait]
    impl<S: Signal> Consumer<S> for Sink {
        async fn consume(&self, _batch: Batch<S>) {}
    }
    let next = match signal {
        SignalKind::Traces => AnyConsumer::Traces(Arc::new(Sink)),
        SignalKind::Metrics => AnyConsumer::Metrics(Arc::new(Sink)),
        SignalKind::Logs => AnyConsumer::Logs(Arc::new(Sink)),
    };
    let c = component(factory.info().type_name, yaml);
    match factory.build(&c, next, &BuildContext::default()) {
        Ok(_) => panic!("expected a config error for:\n{yaml}"),
        Err(e) => e.0,
    }
}

fn attr_errors(yaml: &str) -> Vec<Diagnostic> {
    build_err(&AttributesProcessorFactory, SignalKind::Traces, yaml)
}

/// Exactly one error, at `path`, whose message contains `needle`.
fn one(errors: Vec<Diagnostic>, path: &str, needle: &str) -> Diagnostic {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let d = errors.into_iter().next().unwrap();
    assert_eq!(d.path, path, "{d}");
    assert!(d.message.contains(needle), "`{needle}` not in: {d}");
    assert!(d.pos.is_some());
    d
}

const A: &str = "processors.attributes/x";

#[test]
fn unknown_action_suggests_the_closest() {
    let d = one(
        attr_errors("actions:\n  - {key: a, action: upsret, value: 1}\n"),
        &format!("{A}.actions[0].action"),
        "unknown value `upsret`",
    );
    assert_eq!(d.suggestion.as_deref(), Some("upsert"));
}

#[test]
fn missing_action() {
    one(
        attr_errors("actions: [{key: a, value: 1}]"),
        &format!("{A}.actions[0]"),
        "missing required key `action`",
    );
}

#[test]
fn unknown_key_in_an_action() {
    let d = one(
        attr_errors("actions: [{key: a, action: insert, value: 1, from_atribute: b}]"),
        &format!("{A}.actions[0].from_atribute"),
        "unknown key",
    );
    assert_eq!(d.suggestion.as_deref(), Some("from_attribute"));
}

#[test]
fn actions_that_need_a_key() {
    for (action, extra) in [
        ("insert", "value: 1"),
        ("update", "value: 1"),
        ("upsert", "from_attribute: b"),
        ("extract", "pattern: '(?P<x>.)'"),
        ("convert", "converted_type: int"),
    ] {
        let yaml = format!(
            "actions:\n  - {{key: ok, action: delete}}\n  - {{action: {action}, {extra}}}\n"
        );
        one(
            attr_errors(&yaml),
            &format!("{A}.actions[1]"),
            &format!("the `{action}` action needs `key`"),
        );
    }
}

#[test]
fn empty_key() {
    one(
        attr_errors("actions: [{key: '', action: delete}]"),
        &format!("{A}.actions[0].key"),
        "must not be empty",
    );
}

#[test]
fn delete_and_hash_need_key_or_pattern() {
    for action in ["delete", "hash"] {
        one(
            attr_errors(&format!("actions: [{{action: {action}}}]")),
            &format!("{A}.actions[0]"),
            "needs `key` or `pattern`",
        );
    }
}

#[test]
fn value_and_from_attribute_together() {
    one(
        attr_errors("actions: [{key: a, action: upsert, value: 1, from_attribute: b}]"),
        &format!("{A}.actions[0].from_attribute"),
        "not several",
    );
}

#[test]
fn setting_actions_need_a_source() {
    for action in ["insert", "update", "upsert"] {
        one(
            attr_errors(&format!("actions: [{{key: a, action: {action}}}]")),
            &format!("{A}.actions[0]"),
            "needs `value`, `from_attribute` or `from_context`",
        );
    }
}

#[test]
fn empty_from_attribute() {
    one(
        attr_errors("actions: [{key: a, action: insert, from_attribute: ''}]"),
        &format!("{A}.actions[0].from_attribute"),
        "must not be empty",
    );
}

#[test]
fn from_context_sources_sluice_cannot_fill_are_refused_with_the_reason() {
    one(
        attr_errors("actions: [{key: a, action: insert, from_context: client.address}]"),
        &format!("{A}.actions[0].from_context"),
        "`client.address` is not carried",
    );
    one(
        attr_errors("actions: [{key: a, action: insert, from_context: auth.subject}]"),
        &format!("{A}.actions[0].from_context"),
        "server authenticators",
    );
    one(
        attr_errors("actions: [{key: a, action: insert, value: x, from_context: metadata.t}]"),
        &format!("{A}.actions[0].from_context"),
        "give one of `value`, `from_attribute` and `from_context`",
    );
    one(
        attr_errors("actions: [{key: a, action: delete, from_context: metadata.t}]"),
        &format!("{A}.actions[0].from_context"),
        "",
    );
}

#[test]
fn keys_an_action_does_not_use() {
    for (yaml, field, action) in [
        (
            "{key: a, action: insert, value: 1, pattern: x}",
            "pattern",
            "insert",
        ),
        (
            "{key: a, action: update, value: 1, converted_type: int}",
            "converted_type",
            "update",
        ),
        ("{key: a, action: delete, value: 1}", "value", "delete"),
        (
            "{key: a, action: hash, from_attribute: b}",
            "from_attribute",
            "hash",
        ),
        (
            "{key: a, action: extract, pattern: '(?P<b>.)', value: 1}",
            "value",
            "extract",
        ),
        (
            "{key: a, action: convert, converted_type: int, pattern: x}",
            "pattern",
            "convert",
        ),
        (
            "{key: a, action: convert, converted_type: int, value: 1}",
            "value",
            "convert",
        ),
    ] {
        one(
            attr_errors(&format!("actions: [{yaml}]")),
            &format!("{A}.actions[0].{field}"),
            &format!("`{field}` is not used by the `{action}` action"),
        );
    }
}

#[test]
fn bad_regex_in_pattern() {
    for action in ["delete", "hash", "extract"] {
        one(
            attr_errors(&format!(
                "actions: [{{key: a, action: {action}, pattern: '(unclosed'}}]"
            )),
            &format!("{A}.actions[0].pattern"),
            "invalid regular expression `(unclosed`",
        );
    }
}

#[test]
fn regex_errors_are_one_line_with_the_reason() {
    let d = one(
        attr_errors("actions: [{key: a, action: delete, pattern: '(unclosed'}]"),
        &format!("{A}.actions[0].pattern"),
        "unclosed group",
    );
    assert!(!d.message.contains('\n'), "{d}");
}

#[test]
fn readme_examples_build() {
    let attributes = r#"
actions:
  - {key: deployment.environment, value: prod, action: insert}
  - {key: db.statement, action: delete}
  - {pattern: '^http\.request\.header\.', action: delete}
  - {key: user.email, action: hash}
  - key: url.full
    pattern: '^(?P<url.scheme>[a-z]+)://(?P<server.address>[^/:]+)'
    action: extract
  - {key: http.response.status_code, action: convert, converted_type: int}
  - {key: peer.service, from_attribute: server.address, action: upsert}
include:
  match_type: regexp
  services: ['^checkout']
exclude:
  match_type: strict
  span_names: [health]
"#;
    let c = component("attributes", attributes);
    let built = AttributesProcessorFactory.build(
        &c,
        AnyConsumer::Traces(Arc::new(NullTraces)),
        &BuildContext::default(),
    );
    assert!(built.is_ok(), "{:?}", built.err());
    let resource = r#"
attributes:
  - {key: deployment.environment, value: staging, action: upsert}
  - {pattern: '^k8s\.pod\.', action: delete}
  - {key: host.ip, action: hash}
"#;
    let c = component("resource", resource);
    let built = ResourceProcessorFactory.build(&c, continue_with_logs(), &BuildContext::default());
    assert!(built.is_ok(), "{:?}", built.err());
}

#[test]
fn extract_needs_a_pattern_with_named_groups() {
    one(
        attr_errors("actions: [{key: a, action: extract}]"),
        &format!("{A}.actions[0]"),
        "needs `pattern`",
    );
    one(
        attr_errors("actions: [{key: a, action: extract, pattern: '^(\\w+)-(\\d+)$'}]"),
        &format!("{A}.actions[0].pattern"),
        "no named groups",
    );
}

#[test]
fn convert_needs_a_known_type() {
    one(
        attr_errors("actions: [{key: a, action: convert}]"),
        &format!("{A}.actions[0]"),
        "needs `converted_type`",
    );
    let d = one(
        attr_errors("actions: [{key: a, action: convert, converted_type: dobule}]"),
        &format!("{A}.actions[0].converted_type"),
        "unknown value `dobule`",
    );
    assert_eq!(d.suggestion.as_deref(), Some("double"));
}

#[test]
fn integer_values_must_fit_int64() {
    one(
        attr_errors("actions: [{key: a, action: insert, value: 9223372036854775808}]"),
        &format!("{A}.actions[0].value"),
        "too large",
    );
    one(
        attr_errors("actions: [{key: a, action: insert, value: [1, 18446744073709551615]}]"),
        &format!("{A}.actions[0].value[1]"),
        "too large",
    );
}

#[test]
fn no_actions() {
    one(
        attr_errors("include: {match_type: strict, services: [a]}"),
        &format!("{A}.actions"),
        "no actions",
    );
    one(
        attr_errors("actions: []"),
        &format!("{A}.actions"),
        "no actions",
    );
    one(attr_errors(""), &format!("{A}.actions"), "no actions");
}

#[test]
fn every_broken_action_is_reported_at_once() {
    let errors = attr_errors(
        "actions:\n  - {key: a, action: insert}\n  - {key: b, action: delete}\n  - {action: hash}\n",
    );
    let paths: Vec<&str> = errors.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [format!("{A}.actions[0]"), format!("{A}.actions[2]")]
    );
}

#[test]
fn errors_point_at_the_line_of_the_offending_key() {
    let yaml = "actions:\n  - key: a\n    action: delete\n  - key: b\n    action: extract\n    pattern: '(x)'\n";
    let d = one(
        attr_errors(yaml),
        &format!("{A}.actions[1].pattern"),
        "no named groups",
    );
    let pos = d.pos.unwrap();
    assert_eq!((pos.line, pos.col), (6, 14), "{pos}");
}

// ---- include / exclude ----

const DEL: &str = "actions: [{key: a, action: delete}]\n";

#[test]
fn match_type_is_required_and_known() {
    one(
        attr_errors(&format!("{DEL}include: {{services: [a]}}")),
        &format!("{A}.include"),
        "missing required key `match_type`",
    );
    let d = one(
        attr_errors(&format!(
            "{DEL}exclude: {{match_type: regex, services: [a]}}"
        )),
        &format!("{A}.exclude.match_type"),
        "unknown value `regex`",
    );
    assert_eq!(d.suggestion.as_deref(), Some("regexp"));
}

#[test]
fn a_match_block_needs_a_property() {
    one(
        attr_errors(&format!("{DEL}include: {{match_type: strict}}")),
        &format!("{A}.include"),
        "nothing to match on",
    );
}

#[test]
fn unknown_match_property() {
    let d = one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: strict, span_name: [a]}}"
        )),
        &format!("{A}.include.span_name"),
        "unknown key",
    );
    assert_eq!(d.suggestion.as_deref(), Some("span_names"));
}

#[test]
fn bad_regexes_in_match_lists() {
    for field in ["services", "span_names"] {
        one(
            attr_errors(&format!(
                "{DEL}include: {{match_type: regexp, {field}: [ok, '[bad']}}"
            )),
            &format!("{A}.include.{field}[1]"),
            "invalid regular expression `[bad`",
        );
    }
    one(
        attr_errors(&format!(
            "{DEL}exclude: {{match_type: regexp, attributes: [{{key: k, value: '(bad'}}]}}"
        )),
        &format!("{A}.exclude.attributes[0].value"),
        "invalid regular expression",
    );
    one(
        attr_errors(&format!(
            "{DEL}exclude: {{match_type: regexp, resources: [{{key: k, value: '*'}}]}}"
        )),
        &format!("{A}.exclude.resources[0].value"),
        "invalid regular expression",
    );
    // The same text is fine under strict matching: nothing is compiled.
    assert!(
        AttributesProcessorFactory
            .build(
                &component(
                    "attributes",
                    &format!("{DEL}include: {{match_type: strict, span_names: ['[bad']}}")
                ),
                AnyConsumer::Traces(Arc::new(NullTraces)),
                &BuildContext::default(),
            )
            .is_ok()
    );
}

struct NullTraces;
#[async_trait]
impl Consumer<Traces> for NullTraces {
    async fn consume(&self, _batch: Batch<Traces>) {}
}

#[test]
fn regexp_attribute_values_must_be_scalars() {
    one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: regexp, attributes: [{{key: k, value: [a, b]}}]}}"
        )),
        &format!("{A}.include.attributes[0].value"),
        "not a list or map",
    );
}

#[test]
fn match_attribute_key_is_required_and_not_empty() {
    one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: strict, attributes: [{{value: 1}}]}}"
        )),
        &format!("{A}.include.attributes[0]"),
        "missing required key `key`",
    );
    one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: strict, resources: [{{key: ''}}]}}"
        )),
        &format!("{A}.include.resources[0].key"),
        "must not be empty",
    );
}

#[test]
fn properties_of_another_signal_are_rejected() {
    let cases = [
        (SignalKind::Logs, "span_names", "traces"),
        (SignalKind::Metrics, "span_names", "traces"),
        (SignalKind::Traces, "log_bodies", "logs"),
        (SignalKind::Metrics, "log_severity_texts", "logs"),
        (SignalKind::Logs, "metric_names", "metrics"),
        (SignalKind::Traces, "metric_names", "metrics"),
    ];
    for (pipeline, field, only) in cases {
        let yaml = format!("{DEL}exclude: {{match_type: strict, {field}: [a]}}");
        one(
            build_err(&AttributesProcessorFactory, pipeline, &yaml),
            &format!("{A}.exclude.{field}"),
            &format!(
                "`{field}` applies only to {only}, and this processor is in a {} pipeline",
                pipeline.as_str()
            ),
        );
    }
}

#[test]
fn properties_are_checked_per_signal_as_the_collector_does() {
    let cases = [
        (SignalKind::Logs, "services", "traces"),
        (SignalKind::Metrics, "services", "traces"),
        (SignalKind::Metrics, "span_kinds", "traces"),
        (SignalKind::Traces, "log_severity_texts", "logs"),
    ];
    for (pipeline, field, only) in cases {
        let yaml = format!("{DEL}exclude: {{match_type: strict, {field}: [Server]}}");
        one(
            build_err(&AttributesProcessorFactory, pipeline, &yaml),
            &format!("{A}.exclude.{field}"),
            &format!("`{field}` applies only to {only}"),
        );
    }
    for (pipeline, yaml) in [
        (SignalKind::Metrics, "attributes: [{key: k}]"),
        (SignalKind::Metrics, "libraries: [{name: l}]"),
        (SignalKind::Traces, "log_severity_number: {min: 9}"),
    ] {
        let errors = build_err(
            &AttributesProcessorFactory,
            pipeline,
            &format!("{DEL}include: {{match_type: strict, {yaml}}}"),
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].message.contains("applies only to"), "{errors:#?}");
    }
    // `resources` works everywhere, but selects nothing for metrics: said with a warning.
    for signal in SignalKind::ALL {
        let c = component(
            "attributes",
            &format!("{DEL}include: {{match_type: strict, resources: [{{key: r}}]}}"),
        );
        let next = match signal {
            SignalKind::Traces => AnyConsumer::Traces(Arc::new(NullTraces)),
            SignalKind::Metrics => continue_with_metrics(),
            SignalKind::Logs => continue_with_logs(),
        };
        let ctx = BuildContext::default();
        assert!(
            AttributesProcessorFactory.build(&c, next, &ctx).is_ok(),
            "{signal:?}"
        );
        let warned = ctx.warnings.take();
        assert_eq!(
            warned.len(),
            usize::from(signal == SignalKind::Metrics),
            "{signal:?}"
        );
        if let Some(w) = warned.first() {
            assert_eq!(w.path, format!("{A}.include.resources"));
            assert!(w.message.contains("metric_names"), "{}", w.message);
        }
    }
}

#[test]
fn regexp_cache_keys_are_accepted_with_a_warning() {
    let c = component(
        "attributes",
        &format!(
            "{DEL}include: {{match_type: regexp, span_names: [a], regexp: {{cacheenabled: true, cachemaxnumentries: 10}}}}"
        ),
    );
    let ctx = BuildContext::default();
    AttributesProcessorFactory
        .build(&c, AnyConsumer::Traces(Arc::new(NullTraces)), &ctx)
        .unwrap();
    let paths: Vec<String> = ctx.warnings.take().into_iter().map(|d| d.path).collect();
    assert_eq!(
        paths,
        [
            format!("{A}.include.regexp.cacheenabled"),
            format!("{A}.include.regexp.cachemaxnumentries")
        ]
    );
}

#[test]
fn action_names_are_case_insensitive() {
    let c = component(
        "attributes",
        "actions: [{key: a, value: 1, action: INSERT}, {key: b, action: Delete}]",
    );
    assert!(
        AttributesProcessorFactory
            .build(
                &c,
                AnyConsumer::Traces(Arc::new(NullTraces)),
                &BuildContext::default()
            )
            .is_ok()
    );
}

#[test]
fn severity_numbers_are_checked() {
    let d = one(
        build_err(
            &AttributesProcessorFactory,
            SignalKind::Logs,
            &format!("{DEL}include: {{log_severity_number: {{min: 25}}}}"),
        ),
        &format!("{A}.include.log_severity_number.min"),
        "between 0 and 24",
    );
    assert!(d.pos.is_some());
    one(
        build_err(
            &AttributesProcessorFactory,
            SignalKind::Logs,
            &format!("{DEL}include: {{log_severity_number: {{min: LOUD}}}}"),
        ),
        &format!("{A}.include.log_severity_number.min"),
        "not a valid severity",
    );
}

fn continue_with_metrics() -> AnyConsumer {
    struct N;
    #[async_trait]
    impl Consumer<Metrics> for N {
        async fn consume(&self, _batch: Batch<Metrics>) {}
    }
    AnyConsumer::Metrics(Arc::new(N))
}

fn continue_with_logs() -> AnyConsumer {
    struct N;
    #[async_trait]
    impl Consumer<Logs> for N {
        async fn consume(&self, _batch: Batch<Logs>) {}
    }
    AnyConsumer::Logs(Arc::new(N))
}

// ---- resource processor ----

const R: &str = "processors.resource/x";

fn res_errors(yaml: &str) -> Vec<Diagnostic> {
    build_err(&ResourceProcessorFactory, SignalKind::Metrics, yaml)
}

#[test]
fn resource_errors_use_the_list_key_that_was_written() {
    one(
        res_errors("attributes: [{key: a, action: insert}]"),
        &format!("{R}.attributes[0]"),
        "needs `value`, `from_attribute` or `from_context`",
    );
    one(
        res_errors("actions: [{key: a, action: extract, pattern: '(a)'}]"),
        &format!("{R}.actions[0].pattern"),
        "no named groups",
    );
    one(res_errors(""), &format!("{R}.attributes"), "no actions");
}

#[test]
fn resource_takes_no_match_blocks() {
    one(
        res_errors(
            "attributes: [{key: a, action: delete}]\ninclude: {match_type: strict, services: [a]}",
        ),
        &format!("{R}.include"),
        "unknown key `include`",
    );
}

#[test]
fn resource_refuses_auth_context_too() {
    one(
        res_errors("attributes: [{key: a, action: upsert, from_context: auth.subject}]"),
        &format!("{R}.attributes[0].from_context"),
        "server authenticators",
    );
}

#[test]
fn unknown_span_kind_suggests_the_closest() {
    let d = one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: strict, span_kinds: [Server, Cleint]}}"
        )),
        &format!("{A}.include.span_kinds[1]"),
        "unknown span kind `Cleint`",
    );
    assert_eq!(d.suggestion.as_deref(), Some("Client"));
    one(
        build_err(
            &AttributesProcessorFactory,
            SignalKind::Logs,
            &format!("{DEL}include: {{match_type: regexp, span_kinds: [S]}}"),
        ),
        &format!("{A}.include.span_kinds"),
        "applies only to traces",
    );
}

#[test]
fn library_entries_are_checked() {
    one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: regexp, libraries: [{{name: a, version: '(x'}}]}}"
        )),
        &format!("{A}.include.libraries[0].version"),
        "invalid regular expression",
    );
    one(
        attr_errors(&format!(
            "{DEL}include: {{match_type: strict, libraries: [{{version: '1'}}]}}"
        )),
        &format!("{A}.include.libraries[0]"),
        "missing required key `name`",
    );
}
