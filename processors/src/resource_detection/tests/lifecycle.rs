//! The processor's own behaviour around detectors: retries within the budget, a start that
//! silent metadata services cannot hold up, `refresh_interval`, `fail_on_missing_metadata`,
//! and the deprecated `attributes` filter.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::metadata_server::{Answer, MetadataServer};
use super::*;

/// An ECS task metadata endpoint whose task revision is the number of task requests so far;
/// it answers 500 while `failing` is above zero (counting down).
async fn counting_tmde(failing: Arc<AtomicUsize>) -> (MetadataServer, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let server = MetadataServer::start(move |req| {
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Answer::new(500, "internal error");
        }
        match req.route() {
            "/v4/t/task" => {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                Answer::json(serde_json::json!({
                    "Cluster": "c", "TaskARN": "arn:aws:ecs:us-east-1:1:task/c/abc",
                    "Family": "f", "Revision": n.to_string()
                }))
            }
            "/v4/t" => Answer::json(serde_json::json!({"DockerId": "me"})),
            _ => Answer::not_found(),
        }
    })
    .await;
    (server, served)
}

fn ecs_host(server: &MetadataServer) -> Host {
    let base = format!("{}/v4/t", server.url());
    host_with(&[("ECS_CONTAINER_METADATA_URI_V4", base.as_str())], None)
}

#[tokio::test]
async fn a_failing_detector_is_retried_within_the_budget() {
    let failing = Arc::new(AtomicUsize::new(2));
    let (server, _) = counting_tmde(failing.clone()).await;
    let mut c = quick();
    c.retry.enabled = true;
    c.retry.initial_interval = Duration::from_millis(20);
    c.retry.max_elapsed_time = Duration::from_secs(60);
    let found = run_detector(
        DetectorKind::Ecs,
        c,
        ecs_host(&server),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("aws.ecs.task.family"), Some("f"));
    assert_eq!(server.count("/v4/t/task"), 3, "two failures, then success");

    // Without retries the first failure is the outcome.
    failing.store(1, Ordering::SeqCst);
    let err = run_detector(
        DetectorKind::Ecs,
        quick(),
        ecs_host(&server),
        Endpoints::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("500"), "{err}");
}

/// Accepts connections and never answers: a metadata address that black-holes requests.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

#[tokio::test]
async fn silent_metadata_services_cannot_hold_up_start_and_the_rest_is_kept() {
    let (url, task) = black_hole().await;
    let host = host_with(
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod",
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str()),
            ("SLUICE_AZURE_METADATA_ENDPOINT", url.as_str()),
            ("GCE_METADATA_HOST", url.trim_start_matches("http://")),
        ],
        None,
    );
    let mut c = cfg(&[
        DetectorKind::Env,
        DetectorKind::Ec2,
        DetectorKind::Gcp,
        DetectorKind::Azure,
    ]);
    c.timeout = Duration::from_millis(500);
    let detection = Arc::new(Detection::new("rd", c, host, Endpoints::all_at(&url)));
    // Bounds only how long the test waits for the outcome; the budget is the processor's.
    let started = tokio::time::timeout(StdDuration::from_secs(60), detection.start()).await;
    assert!(matches!(started, Ok(Ok(()))), "{started:?}");
    let attrs = detection.attributes().await;
    let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, vec!["deployment.environment.name"]);
    task.abort();
}

#[tokio::test]
async fn refresh_interval_applies_new_findings_and_keeps_them_through_an_outage() {
    let failing = Arc::new(AtomicUsize::new(0));
    let (server, _) = counting_tmde(failing.clone()).await;
    let mut c = cfg(&[DetectorKind::Ecs]);
    c.refresh_interval = Duration::from_millis(50);
    c.retry.enabled = false;
    let (stage, capture) = started::<Logs>(c, ecs_host(&server)).await;
    let revision = |out: &[ResourceLogs]| {
        attr(out[0].resource.as_ref(), "aws.ecs.task.revision").map(str::to_string)
    };
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    assert_eq!(revision(&capture.last()).as_deref(), Some("1"));
    // Later batches see what a refresh found.
    let mut later = None;
    for _ in 0..400 {
        tokio::time::sleep(StdDuration::from_millis(25)).await;
        stage
            .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
            .await;
        let r = revision(&capture.last());
        if r.as_deref() != Some("1") {
            later = r;
            break;
        }
    }
    let later: usize = later.expect("no refresh seen").parse().unwrap();
    assert!(later > 1);
    // The metadata service fails from now on: the last answer stays.
    failing.store(usize::MAX, Ordering::SeqCst);
    let before = server.requests().len();
    for _ in 0..400 {
        tokio::time::sleep(StdDuration::from_millis(25)).await;
        if server.requests().len() > before + 6 {
            break;
        }
    }
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    let kept = revision(&capture.last()).expect("attributes dropped during the outage");
    assert!(kept.parse::<usize>().unwrap() >= later);
}

#[tokio::test]
async fn fail_on_missing_metadata_stops_start_off_the_platform() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let host = host_with(
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", refused.as_str())],
        None,
    );
    let mut c = cfg(&[DetectorKind::Ec2]);
    c.fail_on_missing_metadata = true;
    c.timeout = Duration::from_secs(2);
    c.retry.initial_interval = Duration::from_millis(50);
    let err = stage_for_logs(c.clone(), host.clone())
        .lifecycle
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ec2"), "{err}");
    // The default: off EC2 is not a failure.
    c.fail_on_missing_metadata = false;
    stage_for_logs(c, host)
        .lifecycle
        .unwrap()
        .start()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_deprecated_attributes_list_keeps_only_its_keys() {
    let host = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,b=2,c=3")], None);
    let mut c = cfg(&[DetectorKind::Env]);
    c.attributes = Some(vec!["a".into(), "c".into()]);
    let (stage, capture) = started::<Logs>(c, host).await;
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    let keys: Vec<String> = capture.last()[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(keys, vec!["a", "c"]);
}
