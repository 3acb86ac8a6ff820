//! The small HTTP/1.1 client the network detectors use: one request per connection, over TCP,
//! TLS or a Unix socket, bounded in time and in how much of an answer it keeps. Metadata
//! services answer a handful of short requests once at start, so a pool buys nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Metadata documents are a few kilobytes; anything much larger is not one.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL `{url}`: {why}")]
    Url { url: String, why: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("TLS with {host}: {why}")]
    Tls { host: String, why: String },
    #[error("{url}: {why}")]
    Protocol { url: String, why: String },
    #[error("proxy {proxy} refused the tunnel to {target}: {why}")]
    Proxy {
        proxy: String,
        target: String,
        why: String,
    },
}

/// An answer, whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_ok(&self) -> bool {
        self.status == 200
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("not the JSON expected: {e}"))
    }
}

/// Where a request goes besides what its URL says.
#[derive(Clone, Default)]
pub struct Client {
    /// For `https` URLs; `None` means the system's roots.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// An HTTP proxy (`http://host:port`) for everything this client sends.
    proxy: Option<Uri>,
    /// Extra headers on every request.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A Unix socket to send every request to, whatever the URL's authority says.
    unix_socket: Option<std::path::PathBuf>,
    /// Longest wait for a TCP connection, within the request's timeout.
    connect_timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .field("unix_socket", &self.unix_socket)
            .finish()
    }
}

/// One request.
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

impl Request {
    pub fn get(url: impl Into<String>, timeout: Duration) -> Request {
        Request {
            method: Method::GET,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout,
        }
    }

    pub fn put(url: impl Into<String>, timeout: Duration) -> Request {
        Request {
            method: Method::PUT,
            ..Request::get(url, timeout)
        }
    }

    pub fn post(url: impl Into<String>, body: Vec<u8>, timeout: Duration) -> Request {
        Request {
            method: Method::POST,
            body,
            ..Request::get(url, timeout)
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }
}

impl Client {
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Client {
        self.tls = Some(tls);
        self
    }

    pub fn with_proxy(mut self, proxy: Uri) -> Client {
        self.proxy = Some(proxy);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Client {
        self.headers.push((name, value));
        self
    }

    pub fn over_unix_socket(mut self, path: impl Into<std::path::PathBuf>) -> Client {
        self.unix_socket = Some(path.into());
        self
    }

    pub fn with_connect_timeout(mut self, wait: Duration) -> Client {
        self.connect_timeout = Some(wait);
        self
    }

    /// Sends `request` and reads the whole answer, all within the request's timeout.
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let url = request.url.clone();
        let after = request.timeout;
        match tokio::time::timeout(after, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout { url, after }),
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response, HttpError> {
        let uri: Uri = request.url.parse().map_err(|e| HttpError::Url {
            url: request.url.clone(),
            why: format!("{e}"),
        })?;
        let target = Target::of(&uri, &request.url)?;
        if let Some(socket) = &self.unix_socket {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|source| HttpError::Connect {
                    addr: socket.display().to_string(),
                    source,
                })?;
            return self.over(stream, &uri, &target, request, false).await;
        }
        let (connect_host, connect_port) = match &self.proxy {
            Some(proxy) => {
                let p = Target::of(proxy, &proxy.to_string())?;
                (p.host, p.port)
            }
            None => (target.host.clone(), target.port),
        };
        let addr = format!("{connect_host}:{connect_port}");
        let connecting = tokio::net::TcpStream::connect((connect_host.as_str(), connect_port));
        let connected = match self.connect_timeout {
            Some(wait) => match tokio::time::timeout(wait, connecting).await {
                Ok(connected) => connected,
                Err(_) => {
                    return Err(HttpError::Timeout {
                        url: request.url.clone(),
                        after: wait,
                    });
                }
            },
            None => connecting.await,
        };
        let mut stream = connected.map_err(|source| HttpError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        if target.tls {
            if self.proxy.is_some() {
                tunnel(&mut stream, &addr, &target).await?;
            }
            let tls = match &self.tls {
                Some(c) => c.clone(),
                None => super::tls::system_roots().map_err(|why| HttpError::Tls {
                    host: target.host.clone(),
                    why,
                })?,
            };
            let name =
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
                    HttpError::Tls {
                        host: target.host.clone(),
                        why: e.to_string(),
                    }
                })?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, stream)
                .await
                .map_err(|e| HttpError::Tls {
                    host: target.host.clone(),
                    why: e.to_string(),
                })?;
            return self.over(stream, &uri, &target, request, false).await;
        }
        // Plain HTTP through a proxy is sent to the proxy in absolute form.
        let absolute = self.proxy.is_some();
        self.over(stream, &uri, &target, request, absolute).await
    }

    async fn over<S>(
        &self,
        stream: S,
        uri: &Uri,
        target: &Target,
        request: Request,
        absolute_form: bool,
    ) -> Result<Response, HttpError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let url = request.url.clone();
        let protocol = |why: String| HttpError::Protocol {
            url: url.clone(),
            why,
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| protocol(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = if absolute_form {
            uri.to_string()
        } else {
            uri.path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".to_string())
        };
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(path)
            .header(http::header::HOST, target.host_header.as_str())
            .header(http::header::USER_AGENT, "sluice");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| protocol(e.to_string()))?;
        let answer = sender
            .send_request(outgoing)
            .await
            .map_err(|e| protocol(e.to_string()));
        let result = match answer {
            Ok(answer) => {
                let (parts, body) = answer.into_parts();
                match Limited::new(body, MAX_BODY_BYTES).collect().await {
                    Ok(collected) => Ok(Response {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body: collected.to_bytes(),
                    }),
                    Err(e) => Err(protocol(format!("reading the answer: {e}"))),
                }
            }
            Err(e) => Err(e),
        };
        driver.abort();
        result
    }
}

/// Opens a `CONNECT` tunnel through the proxy `stream` is connected to.
async fn tunnel(
    stream: &mut tokio::net::TcpStream,
    proxy: &str,
    target: &Target,
) -> Result<(), HttpError> {
    let fail = |why: String| HttpError::Proxy {
        proxy: proxy.to_string(),
        target: target.host_header.clone(),
        why,
    };
    let authority = format!("{}:{}", target.host_for_authority(), target.port);
    let hello = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(hello.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    // The answer ends at the blank line; reading byte by byte keeps whatever follows (the
    // TLS handshake) in the socket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(fail("an answer header over 16 KiB".into()));
        }
        let mut byte = [0u8; 1];
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            return Err(fail("closed the connection".into()));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(fail(
            status_line.lines().next().unwrap_or("").trim().to_string(),
        ))
    }
}

/// Host, port and scheme of a URL, as needed to connect.
struct Target {
    host: String,
    port: u16,
    tls: bool,
    host_header: String,
}

impl Target {
    fn of(uri: &Uri, text: &str) -> Result<Target, HttpError> {
        let bad = |why: &str| HttpError::Url {
            url: text.to_string(),
            why: why.to_string(),
        };
        let tls = match uri.scheme_str() {
            Some("http") | Some("unix") => false,
            Some("https") => true,
            Some(other) => return Err(bad(&format!("unsupported scheme `{other}`"))),
            None => return Err(bad("no scheme (http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            host,
            port,
            tls,
            host_header: authority.as_str().to_string(),
        })
    }

    fn host_for_authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

#[cfg(test)]
impl Request {
    fn body_for_test(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::metadata_server::{Answer, MetadataServer};

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn sends_headers_and_reads_status_headers_and_body() {
        let server = MetadataServer::start(|req| {
            if req.header("x-probe") == Some("1") && req.method == "PUT" && req.body == b"ping" {
                Answer::new(201, "pong").header("X-Answer", "yes")
            } else {
                Answer::new(400, "wrong request")
            }
        })
        .await;
        let client = Client::default();
        let answer = client
            .send(
                Request::put(format!("{}/a/b?c=d", server.url()), WAIT)
                    .header("X-Probe", "1")
                    .body_for_test(b"ping"),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.header("x-answer"), Some("yes"));
        assert_eq!(answer.text(), "pong");
        let seen = server.requests();
        assert_eq!(seen[0].path, "/a/b?c=d");
    }

    #[tokio::test]
    async fn refused_and_silent_peers_are_unreachable_within_the_timeout() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = Client::default()
            .send(Request::get(format!("http://127.0.0.1:{port}/"), WAIT))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");

        // Accepts but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let err = Client::default()
            .send(Request::get(
                format!("http://{addr}/"),
                Duration::from_millis(200),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        drop(silent);
    }

    #[tokio::test]
    async fn bad_urls_are_errors_not_panics() {
        for url in ["", "no-scheme/x", "ftp://h/x", "http:///x"] {
            let err = Client::default()
                .send(Request::get(url, WAIT))
                .await
                .unwrap_err();
            assert!(matches!(err, HttpError::Url { .. }), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        let server =
            MetadataServer::start(|_| Answer::new(200, "x".repeat(MAX_BODY_BYTES + 10))).await;
        let err = Client::default()
            .send(Request::get(server.url(), WAIT))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reading the answer"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_through_a_proxy_uses_the_absolute_form() {
        let proxy = MetadataServer::start(|req| Answer::new(200, req.path.clone())).await;
        let client = Client::default().with_proxy(proxy.url().parse().unwrap());
        let answer = client
            .send(Request::get("http://metadata.internal/x?y=1", WAIT))
            .await
            .unwrap();
        assert_eq!(answer.text(), "http://metadata.internal/x?y=1");
    }
}
