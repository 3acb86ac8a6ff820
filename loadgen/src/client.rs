//! Sending pre-built request bodies over hyper: HTTP/2 for gRPC (frames are built in advance,
//! so no codec runs per request) and HTTP/1.1 keep-alive for OTLP/HTTP.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::{Compression, Config, Encoding, Protocol};

/// What the receiver said about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// Refused, with a label such as `http 413` or `grpc RESOURCE_EXHAUSTED`.
    Refused(String),
}

/// A connection able to send requests.
pub enum Connection {
    Grpc(http2::SendRequest<Full<Bytes>>),
    /// HTTP/1.1 carries one request at a time, so each stream owns its connection.
    Http(http1::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Another handle on the same connection, for protocols that multiplex streams (gRPC).
    pub fn share(&self) -> Option<Connection> {
        match self {
            Connection::Grpc(sender) => Some(Connection::Grpc(sender.clone())),
            Connection::Http(_) => None,
        }
    }
}

/// The fixed parts of every request.
#[derive(Clone)]
pub struct Target {
    pub authority: String,
    pub protocol: Protocol,
    pub compression: Compression,
    uri: http::Uri,
}

impl Target {
    pub fn new(config: &Config) -> Result<Target, String> {
        let authority = config.authority().to_string();
        let path = config.request_path().to_string();
        let uri = if config.protocol == Protocol::Grpc {
            format!("http://{authority}{path}")
        } else {
            path.clone()
        };
        let uri = uri
            .parse()
            .map_err(|e| format!("invalid endpoint or path `{authority}{path}`: {e}"))?;
        Ok(Target {
            authority,
            protocol: config.protocol,
            compression: config.compression,
            uri,
        })
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::post(self.uri.clone());
        match self.protocol {
            Protocol::Grpc => {
                builder = builder
                    .header(CONTENT_TYPE, "application/grpc")
                    .header("te", "trailers");
                if let Some(c) = self.compression.header() {
                    builder = builder.header("grpc-encoding", c);
                }
            }
            Protocol::HttpProto | Protocol::HttpJson => {
                let content_type = match self.protocol.encoding() {
                    Encoding::Proto => "application/x-protobuf",
                    Encoding::Json => "application/json",
                };
                builder = builder
                    .header(HOST, self.authority.as_str())
                    .header(CONTENT_TYPE, content_type);
                if let Some(c) = self.compression.header() {
                    builder = builder.header(CONTENT_ENCODING, c);
                }
            }
        }
        builder.body(Full::new(body)).map_err(|e| e.to_string())
    }
}

/// Opens a connection for the target's protocol.
pub async fn connect(target: &Target) -> Result<Connection, String> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| e.to_string())?;
    // Requests are written whole; waiting to coalesce them only adds latency.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    match target.protocol {
        Protocol::Grpc => {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Connection::Grpc(sender))
        }
        Protocol::HttpProto | Protocol::HttpJson => {
            let (sender, connection) = http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Connection::Http(sender))
        }
    }
}

/// Sends one request. `Err` means the connection failed and must be replaced.
pub async fn send(
    connection: &mut Connection,
    target: &Target,
    body: Bytes,
) -> Result<Answer, String> {
    let request = target.request(body)?;
    match connection {
        Connection::Grpc(sender) => {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            if parts.status != StatusCode::OK {
                // Read the body so the stream is finished cleanly, but the status says it all.
                let _ = body.collect().await;
                return Ok(Answer::Refused(format!("http {}", parts.status.as_u16())));
            }
            // A trailers-only response carries the status in its headers.
            if let Some(code) = grpc_status(&parts.headers) {
                let _ = body.collect().await;
                return Ok(grpc_answer(code));
            }
            let collected = body.collect().await.map_err(|e| e.to_string())?;
            match collected.trailers().and_then(grpc_status) {
                Some(code) => Ok(grpc_answer(code)),
                None => Ok(Answer::Refused("grpc no status".into())),
            }
        }
        Connection::Http(sender) => {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // The body must be read before the connection can carry the next request.
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(Answer::Accepted)
            } else {
                Ok(Answer::Refused(format!("http {}", status.as_u16())))
            }
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn grpc_answer(code: i32) -> Answer {
    if code == 0 {
        Answer::Accepted
    } else {
        Answer::Refused(format!("grpc {}", grpc_code_name(code)))
    }
}

/// gRPC status code names as the gRPC specification spells them.
pub fn grpc_code_name(code: i32) -> String {
    let name = match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        other => return format!("code {other}"),
    };
    name.to_string()
}
