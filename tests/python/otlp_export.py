"""Exports two spans with the Python OpenTelemetry SDK over OTLP/gRPC and OTLP/HTTP.

Usage: otlp_export.py GRPC_ENDPOINT HTTP_ENDPOINT
  e.g. otlp_export.py http://127.0.0.1:4317 http://127.0.0.1:4318/v1/traces

For each transport (gzip on), a provider with service.name `py-grpc` or
`py-http` records a producer span `shop.events publish` (messaging.system,
messaging.destination.name) and a consumer span `shop.events process` linked to
it, then the OTLP exporter of that transport sends both. Prints one JSON line
per transport with the ids it sent; exits 1 when an export fails.
"""

import json
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind
from grpc import Compression as GrpcCompression


def record_spans(service):
    """Records the two spans under `service`; returns them, finished."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("flowscope.tests.python")
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": "shop.events",
    }
    with tracer.start_as_current_span(
        "shop.events publish", kind=SpanKind.PRODUCER, attributes=attributes
    ) as producer:
        producer_context = producer.get_span_context()
    with tracer.start_as_current_span(
        "shop.events process",
        kind=SpanKind.CONSUMER,
        attributes={**attributes, "messaging.operation.type": "process"},
        links=[Link(producer_context, {"link.kind": "message"})],
    ):
        pass
    provider.shutdown()
    return memory.get_finished_spans()


def export(exporter, service):
    spans = record_spans(service)
    result = exporter.export(spans)
    exporter.shutdown()
    print(
        json.dumps(
            {
                "service": service,
                "result": result.name,
                "spans": [
                    {
                        "name": s.name,
                        "trace_id": format(s.context.trace_id, "032x"),
                        "span_id": format(s.context.span_id, "016x"),
                    }
                    for s in spans
                ],
            }
        ),
        flush=True,
    )
    return result == SpanExportResult.SUCCESS


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    grpc_endpoint, http_endpoint = sys.argv[1], sys.argv[2]
    ok = export(
        GrpcSpanExporter(
            endpoint=grpc_endpoint,
            insecure=True,
            compression=GrpcCompression.Gzip,
            timeout=10,
        ),
        "py-grpc",
    )
    ok &= export(
        HttpSpanExporter(
            endpoint=http_endpoint, compression=HttpCompression.Gzip, timeout=10
        ),
        "py-http",
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
