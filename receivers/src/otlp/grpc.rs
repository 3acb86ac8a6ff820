//! OTLP/gRPC: the three collector services on one tonic server.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sluice_pipeline::{DeliveryError, Signal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{GrpcConfig, Outputs, SignalSink, Transport, retry_after, stopped};

/// OTLP's mapping of delivery errors to gRPC codes: throttling is RESOURCE_EXHAUSTED with
/// RetryInfo (the only form of it a client retries), transient failures UNAVAILABLE,
/// permanent ones INVALID_ARGUMENT.
fn status_for(error: &DeliveryError) -> Status {
    let message = error.to_string();
    match error {
        DeliveryError::Throttled { .. } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(retry_after(error)),
        ),
        DeliveryError::Retryable { .. } => match retry_after(error) {
            Some(delay) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => Status::new(Code::Unavailable, message),
        },
        DeliveryError::Permanent { .. } => Status::new(Code::InvalidArgument, message),
    }
}

async fn export<S: Signal>(sink: &SignalSink<S>, request: S::Request) -> Result<(), Status> {
    let bytes = request.encoded_len();
    sink.accept(S::from_request(request), bytes, Transport::Grpc)
        .await
        .map_err(|e| status_for(&e))
}

struct Service<S: Signal>(Arc<SignalSink<S>>);

macro_rules! grpc_service {
    ($trait:ident, $signal:ty, $request:ty, $response:ty) => {
        #[tonic::async_trait]
        impl $trait for Service<$signal> {
            async fn export(
                &self,
                request: Request<$request>,
            ) -> Result<Response<$response>, Status> {
                export::<$signal>(&self.0, request.into_inner()).await?;
                Ok(Response::new(<$response>::default()))
            }
        }
    };
}
grpc_service!(
    TraceService,
    sluice_pipeline::Traces,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse
);
grpc_service!(
    MetricsService,
    sluice_pipeline::Metrics,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse
);
grpc_service!(
    LogsService,
    sluice_pipeline::Logs,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse
);

pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: &GrpcConfig,
    outputs: &Outputs,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let limit = usize::try_from(config.max_recv_msg_size_mib.saturating_mul(1024 * 1024))
        .unwrap_or(usize::MAX);
    // Only the signals some pipeline takes are served; the others answer UNIMPLEMENTED.
    let traces = outputs.traces.clone().map(|s| {
        TraceServiceServer::new(Service(s))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit)
    });
    let metrics = outputs.metrics.clone().map(|s| {
        MetricsServiceServer::new(Service(s))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit)
    });
    let logs = outputs.logs.clone().map(|s| {
        LogsServiceServer::new(Service(s))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit)
    });
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_concurrent_streams.max(1)))
        .add_optional_service(traces)
        .add_optional_service(metrics)
        .add_optional_service(logs);
    tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                let incoming = crate::tls::incoming(crate::tls::TlsListener::new(listener, tls));
                router
                    .serve_with_incoming_shutdown(incoming, stopped(stop))
                    .await
            }
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router
                    .serve_with_incoming_shutdown(incoming, stopped(stop))
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "OTLP/gRPC server failed");
        }
    })
}
