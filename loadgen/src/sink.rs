//! An OTLP endpoint that answers every request with success without decoding it: a receiver
//! that costs next to nothing, to measure how fast the load generator itself can go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::LoadgenError;

/// A running sink. Dropping it stops accepting connections.
pub struct Sink {
    pub address: SocketAddr,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `address` (HTTP/1.1 and cleartext HTTP/2 on the same port): gRPC requests get
/// a trailers-only OK, others `200` with an empty protobuf body.
pub async fn sink(address: &str) -> Result<Sink, LoadgenError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| LoadgenError::Listen {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().map_err(|e| LoadgenError::Listen {
        address: address.to_string(),
        reason: e.to_string(),
    })?;
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let grpc = request
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                        // Read the whole body: that is what a receiver must do at least.
                        let _ = request.into_body().collect().await;
                        counter.fetch_add(1, Ordering::Relaxed);
                        let mut response = Response::builder().status(StatusCode::OK);
                        response = if grpc {
                            response
                                .header(http::header::CONTENT_TYPE, "application/grpc")
                                .header("grpc-status", "0")
                        } else {
                            response.header(http::header::CONTENT_TYPE, "application/x-protobuf")
                        };
                        response.body(Full::new(Bytes::new()))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Sink {
        address: bound,
        requests,
        task,
    })
}
