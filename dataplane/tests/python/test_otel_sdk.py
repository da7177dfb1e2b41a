"""The OpenTelemetry Python SDK's OTLP exporters (gRPC and HTTP) as real clients of otlp-lb: every span of a
trace lands on exactly one backend, and every span and log record arrives exactly once."""

import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACES = 60
SPANS_PER_TRACE = 5


def emit_traces(provider: TracerProvider, prefix: str) -> set:
    """TRACES traces of SPANS_PER_TRACE spans; the batch processor mixes traces in each export request."""
    tracer = provider.get_tracer("sdk-test")
    ids = set()
    for t in range(TRACES):
        with tracer.start_as_current_span(f"{prefix}-root-{t}") as root:
            ids.add(format(root.get_span_context().trace_id, "032x"))
            for c in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(f"{prefix}-child-{t}-{c}"):
                    pass
    provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    return ids


def check_placement(stack, ids: set) -> None:
    reports = stack.reports()
    homes = {}
    for i, r in enumerate(reports):
        for trace_id, counts in r["trace_ids"].items():
            if trace_id in ids:
                homes.setdefault(trace_id, []).append((i, counts["spans"]))
    assert set(homes) == ids, "every trace reached a backend"
    split = {t: h for t, h in homes.items() if len(h) > 1}
    assert not split, f"traces split across backends: {split}"
    assert all(h[0][1] == SPANS_PER_TRACE for h in homes.values()), "every span of every trace arrived once"
    assert all(r["traces"]["duplicate_spans"] == 0 for r in reports)
    used = {h[0][0] for h in homes.values()}
    assert len(used) == 3, f"60 traces spread over the 3 backends, got {used}"


def provider_with(exporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64, schedule_delay_millis=100))
    return provider


def test_grpc_exporter_traces_stay_whole(stack):
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{stack.grpc}", insecure=True)
    ids = emit_traces(provider_with(exporter, "py-grpc"), "grpc")
    check_placement(stack, ids)


def test_http_exporter_traces_and_logs(stack):
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{stack.http}/v1/traces")
    provider = provider_with(exporter, "py-http")
    tracer = provider.get_tracer("sdk-test")
    log_provider = LoggerProvider(resource=Resource.create({"service.name": "py-http"}))
    log_provider.add_log_record_processor(BatchLogRecordProcessor(HttpLogExporter(endpoint=f"http://127.0.0.1:{stack.http}/v1/logs")))
    logger = logging.getLogger("sdk-test")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=log_provider))
    logger.setLevel(logging.INFO)
    ids = set()
    for t in range(TRACES):
        with tracer.start_as_current_span(f"http-root-{t}") as root:
            ids.add(format(root.get_span_context().trace_id, "032x"))
            logger.info("inside trace %d", t)  # carries the trace id
            for c in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(f"http-child-{t}-{c}"):
                    pass
    provider.force_flush(timeout_millis=20_000)
    log_provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    log_provider.shutdown()
    check_placement(stack, ids)
    reports = stack.reports()
    assert sum(r["logs"]["log_records"] for r in reports) == TRACES, "every log record exactly once"
    for r in reports:
        for trace_id, counts in r["trace_ids"].items():
            if counts["log_records"]:
                assert counts["spans"] == SPANS_PER_TRACE, f"log of {trace_id} sits with its trace's spans"
