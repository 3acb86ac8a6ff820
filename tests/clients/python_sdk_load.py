"""A real application instrumented with the OpenTelemetry Python SDK and its defaults.

Creates spans, log records and counter increments at a steady rate for a while, through the
SDK's default batch processors and OTLP exporters, then shuts the SDK down (which flushes)
and prints what it created as JSON, so a test can count what arrived.

usage: python_sdk_load.py PROTOCOL ENDPOINT RATE SECONDS RUN_ID
  PROTOCOL  grpc | http
  ENDPOINT  e.g. http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 (http)
  RATE      spans (and log records, and counter increments) per second
"""

import json
import logging
import sys
import time

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
            OTLPLogExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
    )


def main():
    protocol, endpoint, rate, seconds, run_id = sys.argv[1:6]
    rate, seconds = int(rate), float(seconds)
    resource = Resource.create({"service.name": "sdk-load", "sluice.test.run": run_id})
    span_exporter, metric_exporter, log_exporter = exporters(protocol, endpoint)

    # The SDKs' defaults: one export in flight per signal, 2048-item queues, 512-item batches.
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
    )
    metrics.set_meter_provider(meter_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    set_logger_provider(logger_provider)
    logger = logging.getLogger("sdk-load")
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    logger.setLevel(logging.INFO)

    tracer = trace.get_tracer("sdk-load")
    counter = metrics.get_meter("sdk-load").create_counter("sdk_load_increments")

    created = 0
    start = time.monotonic()
    total = int(rate * seconds)
    while created < total:
        # Paced: never ahead of the rate, as an application serving requests would be.
        due = start + created / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        with tracer.start_as_current_span(f"op-{created}"):
            logger.info("event %d", created)
        counter.add(1)
        created += 1
    elapsed = time.monotonic() - start

    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()
    print(json.dumps({"created": created, "seconds": round(elapsed, 3)}))


if __name__ == "__main__":
    main()
