//! A stand-in OTLP/HTTP backend on a chosen port: records the body of every log record it
//! receives (uncompressed protobuf), so tests can count what arrived and how often.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

pub struct OtlpSink {
    bodies: Arc<Mutex<Vec<String>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl OtlpSink {
    /// Listens on 127.0.0.1:`port` and answers every valid `/v1/logs` request with 200.
    pub fn start_on(port: u16) -> OtlpSink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        let app = axum::Router::new().route(
            "/v1/logs",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                let counted = counted.clone();
                async move {
                    let Ok(request) = ExportLogsServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut seen = seen.lock().unwrap();
                    for r in request.resource_logs {
                        for s in r.scope_logs {
                            for l in s.log_records {
                                if let Some(Value::StringValue(text)) = l.body.and_then(|b| b.value)
                                {
                                    seen.push(text);
                                }
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        OtlpSink {
            bodies,
            requests,
            _runtime: runtime,
        }
    }

    /// Every log body received so far, duplicates included.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Valid requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}
