use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric, number_data_point};

use super::relabel::Labels;
use super::text::{self, Format, Sample};
use super::translate::{self, Scrape, Settings, TargetState};

fn target() -> Labels {
    vec![
        ("env".into(), "prod".into()),
        ("instance".into(), "host-a:9100".into()),
        ("job".into(), "node".into()),
    ]
}

fn settings() -> Settings {
    Settings {
        trim_metric_suffixes: false,
        track_timestamps_staleness: false,
        start_time_metric: None,
    }
}

fn scrape(state: &mut TargetState, body: &str, format: Format, time_ns: u64) -> ResourceMetrics {
    let e = text::parse(body, format).unwrap();
    let samples: Vec<Sample> = e
        .samples
        .into_iter()
        .map(|mut s| {
            for (k, v) in target() {
                super::relabel::set(&mut s.labels, &k, v);
            }
            s
        })
        .collect();
    let none = |_: usize| Vec::new();
    translate::translate(
        state,
        &settings(),
        &target(),
        "http",
        Scrape {
            samples,
            metadata: &e.metadata,
            time_ns,
        },
        &none,
    )
    .0
}

fn metrics(r: &ResourceMetrics) -> HashMap<String, Metric> {
    r.scope_metrics
        .iter()
        .flat_map(|s| s.metrics.iter().cloned())
        .map(|m| (m.name.clone(), m))
        .collect()
}

fn attr(r: &ResourceMetrics, key: &str) -> Option<String> {
    r.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

const BODY: &str = "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 10\n# TYPE temp gauge\ntemp 21.5\n# TYPE latency histogram\nlatency_bucket{le=\"0.1\"} 2\nlatency_bucket{le=\"1\"} 5\nlatency_bucket{le=\"+Inf\"} 6\nlatency_sum 3.5\nlatency_count 6\n# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.2\nrpc{quantile=\"0.99\"} 0.9\nrpc_sum 12\nrpc_count 40\nuntyped_thing 3\ntarget_info{team=\"db\",region=\"eu\"} 1\n";

#[test]
fn types_resources_and_attributes_follow_the_collector() {
    let mut state = TargetState::default();
    let r = scrape(&mut state, BODY, Format::Text, 1_000_000_000);
    assert_eq!(attr(&r, "service.name").as_deref(), Some("node"));
    assert_eq!(
        attr(&r, "service.instance.id").as_deref(),
        Some("host-a:9100")
    );
    assert_eq!(attr(&r, "server.address").as_deref(), Some("host-a"));
    assert_eq!(attr(&r, "server.port").as_deref(), Some("9100"));
    assert_eq!(attr(&r, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        attr(&r, "team").as_deref(),
        Some("db"),
        "target_info becomes resource attributes"
    );
    let m = metrics(&r);
    assert!(!m.contains_key("target_info"));
    let Some(metric::Data::Sum(sum)) = &m["requests_total"].data else {
        panic!()
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2);
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsDouble(10.0)));
    let keys: Vec<&str> = p.attributes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(
        keys,
        ["code", "env"],
        "job and instance are not point attributes"
    );
    assert_eq!(
        p.start_time_unix_nano, 1_000_000_000,
        "first scrape starts the series"
    );
    assert!(matches!(m["temp"].data, Some(metric::Data::Gauge(_))));
    assert!(matches!(
        m["untyped_thing"].data,
        Some(metric::Data::Gauge(_))
    ));
    let Some(metric::Data::Histogram(h)) = &m["latency"].data else {
        panic!()
    };
    let hp = &h.data_points[0];
    assert_eq!(hp.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(hp.bucket_counts, vec![2, 3, 1]);
    assert_eq!((hp.count, hp.sum), (6, Some(3.5)));
    let Some(metric::Data::Summary(s)) = &m["rpc"].data else {
        panic!()
    };
    assert_eq!(s.data_points[0].count, 40);
    assert_eq!(s.data_points[0].quantile_values.len(), 2);
}

#[test]
fn start_times_hold_until_a_reset_and_come_from_created() {
    let mut state = TargetState::default();
    scrape(
        &mut state,
        "# TYPE c counter\nc 5\n",
        Format::Text,
        1_000_000_000,
    );
    let r = scrape(
        &mut state,
        "# TYPE c counter\nc 7\n",
        Format::Text,
        2_000_000_000,
    );
    let Some(metric::Data::Sum(s)) = &metrics(&r)["c"].data else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 1_000_000_000);
    let r = scrape(
        &mut state,
        "# TYPE c counter\nc 1\n",
        Format::Text,
        3_000_000_000,
    );
    let Some(metric::Data::Sum(s)) = &metrics(&r)["c"].data else {
        panic!()
    };
    assert_eq!(
        s.data_points[0].start_time_unix_nano, 3_000_000_000,
        "a reset restarts the series"
    );
    let om = "# TYPE c counter\nc_total 9\nc_created 1700000000.5\n# EOF\n";
    let r = scrape(
        &mut TargetState::default(),
        om,
        Format::OpenMetrics,
        4_000_000_000,
    );
    let Some(metric::Data::Sum(s)) = &metrics(&r)["c"].data else {
        panic!()
    };
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_700_000_000_500_000_000
    );
}

#[test]
fn a_series_that_disappears_is_marked_stale() {
    let mut state = TargetState::default();
    scrape(
        &mut state,
        "# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"2\"} 2\n",
        Format::Text,
        1_000_000_000,
    );
    let r = scrape(
        &mut state,
        "# TYPE g gauge\ng{a=\"1\"} 1\n",
        Format::Text,
        2_000_000_000,
    );
    let points: Vec<_> = r
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "g")
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.clone(),
            _ => vec![],
        })
        .collect();
    assert_eq!(points.len(), 2);
    let stale: Vec<_> = points.iter().filter(|p| p.flags & 1 == 1).collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        stale[0]
            .attributes
            .iter()
            .find(|a| a.key == "a")
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value),
        Some(any_value::Value::StringValue("2".into()))
    );
    assert!(stale[0].value.is_none());
    // A failed scrape marks every remaining series stale.
    let r = translate::failed(&mut state, &target(), "http", 3_000_000_000, vec![]);
    let flagged: usize = r
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => {
                g.data_points.iter().filter(|p| p.flags & 1 == 1).count()
            }
            _ => 0,
        })
        .sum();
    assert_eq!(flagged, 1);
    assert!(translate::tracked(&state).is_empty());
}

#[test]
fn scope_labels_become_the_instrumentation_scope() {
    let body = "# TYPE x counter\nx_total{otel_scope_name=\"lib\",otel_scope_version=\"1.2\"} 1\notel_scope_info{otel_scope_name=\"lib\",otel_scope_version=\"1.2\",owner=\"me\"} 1\n";
    let r = scrape(&mut TargetState::default(), body, Format::Text, 1);
    let scope = r
        .scope_metrics
        .iter()
        .find(|s| s.scope.as_ref().is_some_and(|s| s.name == "lib"))
        .expect("scope from otel_scope_name");
    let sc = scope.scope.as_ref().unwrap();
    assert_eq!(sc.version, "1.2");
    assert!(sc.attributes.iter().any(|a| a.key == "owner"));
    let keys: Vec<&str> = match &scope.metrics[0].data {
        Some(metric::Data::Gauge(g)) => g.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect(),
        Some(metric::Data::Sum(s)) => s.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect(),
        _ => vec![],
    };
    assert!(!keys.contains(&"otel_scope_name"));
}

#[test]
fn trim_metric_suffixes_removes_units_and_total() {
    use super::text::MetricType;
    assert_eq!(
        translate::trim_suffixes("singing_duration_seconds_total", MetricType::Counter, ""),
        "singing_duration"
    );
    assert_eq!(
        translate::trim_suffixes("mem_bytes", MetricType::Gauge, ""),
        "mem"
    );
    assert_eq!(
        translate::trim_suffixes("cpu_ratio", MetricType::Gauge, ""),
        "cpu"
    );
}

#[test]
fn stale_markers_carry_the_trimmed_name_of_their_series() {
    let trimmed = Settings {
        trim_metric_suffixes: true,
        ..settings()
    };
    let run = |state: &mut TargetState, body: &str, time_ns: u64| {
        let e = text::parse(body, Format::Text).unwrap();
        let none = |_: usize| Vec::new();
        translate::translate(
            state,
            &trimmed,
            &target(),
            "http",
            Scrape {
                samples: e.samples,
                metadata: &e.metadata,
                time_ns,
            },
            &none,
        )
        .0
    };
    let mut state = TargetState::default();
    let first = run(
        &mut state,
        "# TYPE sent_bytes_total counter\nsent_bytes_total 5\n",
        1_000_000_000,
    );
    assert!(metrics(&first).contains_key("sent"), "the series is `sent`");
    let gone = run(&mut state, "", 2_000_000_000);
    let names: Vec<String> = metrics(&gone).into_keys().collect();
    assert_eq!(
        names,
        ["sent"],
        "the marker must name the series it ends, not the exposed name"
    );
}

fn test_target(name: &str) -> super::discovery::Target {
    super::discovery::Target {
        labels: vec![("instance".into(), name.into())],
        url: format!("http://{name}/metrics"),
        scheme: "http".into(),
        interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
    }
}

#[tokio::test]
async fn targets_scrape_again_once_the_job_is_back_under_target_limit() {
    use std::cell::RefCell;
    let started: RefCell<Vec<(String, Option<String>)>> = RefCell::new(Vec::new());
    let mut spawn = |t: &super::discovery::Target, forced: Option<String>| {
        started.borrow_mut().push((t.url.clone(), forced));
        tokio::spawn(async {})
    };
    let (a, b) = (test_target("a:1"), test_target("b:1"));
    let mut running = HashMap::new();
    super::reconcile(&mut running, &[a.clone(), b.clone()], 1, &mut spawn);
    assert!(
        started.borrow().iter().all(|(_, f)| f.is_some()),
        "over the limit every target fails"
    );
    started.borrow_mut().clear();
    super::reconcile(&mut running, std::slice::from_ref(&a), 1, &mut spawn);
    assert_eq!(
        *started.borrow(),
        vec![(a.url.clone(), None)],
        "back under the limit the target is restarted to scrape"
    );
    assert_eq!(running.len(), 1);
    assert!(running.values().all(|t| !t.forced));
    started.borrow_mut().clear();
    // Unchanged healthy targets keep their task (and its staleness state).
    super::reconcile(&mut running, std::slice::from_ref(&a), 1, &mut spawn);
    assert!(started.borrow().is_empty());
}

mod http_sd {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
    use sluice_pipeline::{
        Batch, BuildContext, Consumer, DynConsumer, Metrics, ReceiverFactory, ReceiverOutputs,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::PrometheusReceiverFactory;

    fn component(yaml: &str) -> ComponentConfig {
        ComponentConfig {
            kind: ComponentKind::Receiver,
            id: ComponentId::new("prometheus"),
            pos: Pos::new("test.yaml", 1, 1),
            path: "receivers.prometheus".into(),
            node: parse_yaml("test.yaml", yaml).unwrap(),
        }
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<String>>);

    #[async_trait]
    impl Consumer<Metrics> for Sink {
        async fn consume(&self, batch: Batch<Metrics>) {
            let mut names = self.0.lock().unwrap();
            for rm in batch.resources() {
                for sm in &rm.scope_metrics {
                    names.extend(sm.metrics.iter().map(|m| m.name.clone()));
                }
            }
        }
    }

    /// One local server answering as an HTTP proxy would for the discovery URL (with the
    /// targets: itself) and as a target for `/metrics`.
    async fn proxy_and_target() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request).to_string();
                    let body = if head.starts_with("GET http://sd.invalid/") {
                        format!("[{{\"targets\": [\"127.0.0.1:{port}\"]}}]")
                    } else {
                        "# TYPE from_target gauge\nfrom_target 1\n".to_string()
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn discovery_uses_its_own_client_settings() {
        let port = proxy_and_target().await;
        let yaml = format!(
            "config:\n  scrape_configs:\n    - job_name: j\n      scrape_interval: 200ms\n      scrape_timeout: 200ms\n      http_sd_configs:\n        - url: http://sd.invalid/targets\n          proxy_url: http://127.0.0.1:{port}\n"
        );
        let sink = Arc::new(Sink::default());
        let consumer: DynConsumer<Metrics> = sink.clone();
        let receiver = PrometheusReceiverFactory
            .build(
                &component(&yaml),
                ReceiverOutputs {
                    metrics: Some(consumer),
                    ..Default::default()
                },
                &BuildContext::default(),
            )
            .unwrap();
        receiver.start().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !sink.0.lock().unwrap().iter().any(|n| n == "from_target") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the target found through the discovery proxy was never scraped"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        receiver
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
    }

    #[test]
    fn a_discovery_tls_config_that_cannot_load_is_a_config_error() {
        let yaml = "config:\n  scrape_configs:\n    - job_name: j\n      http_sd_configs:\n        - url: https://sd.example/targets\n          tls_config:\n            ca_file: /nonexistent/sluice/ca.pem\n";
        let consumer: DynConsumer<Metrics> = Arc::new(Sink::default());
        let Err(errors) = PrometheusReceiverFactory.build(
            &component(yaml),
            ReceiverOutputs {
                metrics: Some(consumer),
                ..Default::default()
            },
            &BuildContext::default(),
        ) else {
            panic!("the discovery's own CA file must be read");
        };
        let text = format!("{errors:?}");
        assert!(
            text.contains("http_sd_configs[0]") && text.contains("ca_file"),
            "{text}"
        );
    }
}
