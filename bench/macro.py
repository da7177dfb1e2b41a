#!/usr/bin/env python3
"""`make bench`: otlp-lb against the OpenTelemetry Collector's loadbalancing exporter (the `macrobench` package
beside this file; see its documentation and bench/README.md)."""

from macrobench.cli import main

if __name__ == "__main__":
    main()
