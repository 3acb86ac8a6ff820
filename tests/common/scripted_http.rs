//! A scripted HTTP server for exporter tests: records every request (headers and decompressed
//! body) and answers from a per-path script, then 200.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;

use super::Collector;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The body as sent.
    pub raw: Vec<u8>,
    /// The body after undoing its Content-Encoding.
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(self, content_type: &str, body: Vec<u8>) -> Reply {
        let mut reply = self.header("content-type", content_type);
        reply.body = body;
        reply
    }
}

#[derive(Default)]
pub struct Shared {
    pub requests: Vec<Recorded>,
    /// Answers per path, in order; once a path's script is used up (or it has none), 200.
    pub scripts: HashMap<String, VecDeque<Reply>>,
}

pub struct HttpServer {
    pub port: u16,
    pub shared: Arc<Mutex<Shared>>,
    pub _runtime: tokio::runtime::Runtime,
}

pub fn decompress(encoding: Option<&str>, raw: &[u8]) -> Vec<u8> {
    match encoding {
        None | Some("identity") => raw.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .expect("body is not valid gzip");
            out
        }
        Some("zstd") => zstd::decode_all(raw).expect("body is not valid zstd"),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let encoding = parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let recorded = Recorded {
        at: Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        body: decompress(encoding.as_deref(), &raw),
        headers: parts.headers,
        raw,
    };
    let reply = {
        let mut shared = shared.lock().unwrap();
        let reply = shared
            .scripts
            .get_mut(&recorded.path)
            .and_then(|s| s.pop_front())
            .unwrap_or_else(|| Reply::status(200));
        shared.requests.push(recorded);
        reply
    };
    let mut response = axum::response::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = shared.clone();
        let app = axum::Router::new()
            .fallback(move |request: axum::extract::Request| handle(state.clone(), request));
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        HttpServer {
            port,
            shared,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.shared
            .lock()
            .unwrap()
            .scripts
            .insert(path.into(), replies.into());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (generously) until at least `n` requests have arrived.
    pub fn wait_for(&self, n: usize, c: &Collector) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} requests, got {}: {:?}\ncollector log:\n{}",
                    requests.len(),
                    requests.iter().map(|r| &r.path).collect::<Vec<_>>(),
                    c.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------------
