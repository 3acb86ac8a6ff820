//! The OTLP client that sends sluice's own metrics and logs (`service.telemetry` periodic
//! readers and log processors), built on the exporters' HTTP, gRPC and TLS code.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use sluice_pipeline::proto::collector::logs::v1::ExportLogsServiceResponse;
use sluice_pipeline::proto::collector::metrics::v1::ExportMetricsServiceResponse;
use sluice_pipeline::telemetry::{
    OtlpClient, OtlpProtocol, OtlpTarget, PushCompression, SelfExport,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use crate::http::{self, Compression, HeaderList, TlsSettings};
use crate::otlp_grpc::codec::{RawCodec, TlsConnector};

/// The client for one `exporter.otlp` section.
pub fn client(target: &OtlpTarget) -> Result<Arc<dyn OtlpClient>, String> {
    let tls = TlsSettings {
        ca_file: target.certificate.clone(),
        cert_file: target.client_certificate.clone(),
        key_file: target.client_key.clone(),
        ..TlsSettings::default()
    };
    let headers = HeaderList(target.all_headers());
    match target.protocol {
        OtlpProtocol::Grpc => grpc(target, &tls, &headers),
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let base = reqwest::Url::parse(&target.endpoint)
                .map_err(|e| format!("endpoint `{}`: {e}", target.endpoint))?;
            if !matches!(base.scheme(), "http" | "https") {
                return Err(format!(
                    "endpoint `{}`: the scheme must be http or https",
                    target.endpoint
                ));
            }
            Ok(Arc::new(HttpClient {
                client: http::client(&tls, target.timeout.0)?,
                headers: http::headers(&headers)?,
                base,
                json: target.protocol == OtlpProtocol::HttpJson,
                gzip: target.compression == PushCompression::Gzip,
            }))
        }
    }
}

struct HttpClient {
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    base: reqwest::Url,
    json: bool,
    gzip: bool,
}

impl HttpClient {
    /// The signal's path is added unless the endpoint names one, as the OTel SDKs do.
    fn url(&self, path: &str) -> reqwest::Url {
        if self.base.path().trim_matches('/').is_empty() {
            let mut url = self.base.clone();
            url.set_path(path);
            url
        } else {
            self.base.clone()
        }
    }
}

#[async_trait]
impl OtlpClient for HttpClient {
    async fn export(&self, request: SelfExport) -> Result<(), String> {
        let (path, body) = match &request {
            SelfExport::Metrics(r) if self.json => (
                "/v1/metrics",
                serde_json::to_vec(r).map_err(|e| e.to_string())?,
            ),
            SelfExport::Metrics(r) => ("/v1/metrics", r.encode_to_vec()),
            SelfExport::Logs(r) if self.json => (
                "/v1/logs",
                serde_json::to_vec(r).map_err(|e| e.to_string())?,
            ),
            SelfExport::Logs(r) => ("/v1/logs", r.encode_to_vec()),
        };
        let compression = if self.gzip {
            Compression::Gzip
        } else {
            Compression::None
        };
        let body = compression.compress(body).map_err(|e| e.to_string())?;
        let mut builder = self
            .client
            .post(self.url(path))
            .headers(self.headers.clone())
            .header(
                CONTENT_TYPE,
                if self.json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                },
            );
        if let Some(encoding) = compression.header() {
            builder = builder.header(CONTENT_ENCODING, encoding);
        }
        let response = builder.body(body).send().await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("server answered {status}"))
        }
    }
}

struct GrpcClient {
    channel: Channel,
    metadata: MetadataMap,
    gzip: bool,
}

fn grpc(
    target: &OtlpTarget,
    tls: &TlsSettings,
    headers: &HeaderList,
) -> Result<Arc<dyn OtlpClient>, String> {
    let (secure, address) = match target.endpoint.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (!target.insecure, rest),
        Some((other, _)) => {
            return Err(format!(
                "endpoint `{}`: the scheme must be http or https, not {other}",
                target.endpoint
            ));
        }
        None => (!target.insecure, target.endpoint.as_str()),
    };
    let address = address.trim_end_matches('/');
    let url = format!("{}://{address}", if secure { "https" } else { "http" });
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| format!("endpoint `{}`: {e}", target.endpoint))?
        .connect_timeout(Duration::from_secs(10));
    let channel = if secure {
        let mut config = tls.client_config()?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        endpoint.connect_with_connector_lazy(TlsConnector::new(config))
    } else {
        endpoint.connect_lazy()
    };
    let mut metadata = MetadataMap::new();
    for (name, value) in &headers.0 {
        let key = AsciiMetadataKey::from_str(&name.to_ascii_lowercase())
            .map_err(|e| format!("header name `{name}`: {e}"))?;
        let value =
            AsciiMetadataValue::from_str(value).map_err(|e| format!("header `{name}`: {e}"))?;
        metadata.insert(key, value);
    }
    Ok(Arc::new(GrpcClient {
        channel,
        metadata,
        gzip: target.compression == PushCompression::Gzip,
    }))
}

#[async_trait]
impl OtlpClient for GrpcClient {
    async fn export(&self, request: SelfExport) -> Result<(), String> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        grpc.ready()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let call = |body: Vec<u8>| {
            let mut call = tonic::Request::new(bytes::Bytes::from(body));
            *call.metadata_mut() = self.metadata.clone();
            call
        };
        let answered = match &request {
            SelfExport::Metrics(r) => grpc
                .unary(
                    call(r.encode_to_vec()),
                    ::http::uri::PathAndQuery::from_static(
                        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                    ),
                    RawCodec::<ExportMetricsServiceResponse>::default(),
                )
                .await
                .map(|_| ()),
            SelfExport::Logs(r) => grpc
                .unary(
                    call(r.encode_to_vec()),
                    ::http::uri::PathAndQuery::from_static(
                        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                    ),
                    RawCodec::<ExportLogsServiceResponse>::default(),
                )
                .await
                .map(|_| ()),
        };
        answered.map_err(|s| format!("server answered {:?}: {}", s.code(), s.message()))
    }
}
