use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{MetricsRegistry, PromOptions};

/// Serves `/metrics` in the Prometheus text format, written per `options`.
pub fn serve_metrics(
    listener: TcpListener,
    registry: Arc<MetricsRegistry>,
    options: PromOptions,
) -> JoinHandle<()> {
    let options = Arc::new(options);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            let options = options.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    registry.render_with(&options),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    })
}
