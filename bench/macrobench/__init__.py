"""`make bench`: otlp-lb against the OpenTelemetry Collector's loadbalancing exporter, same workload, same sinks.

For each signal (traces routed by traceID, metrics routed by service) and each balancer (the Collector, otlp-lb,
and otlp-lb in front of a single sink as a pass-through baseline) the driver starts the balancer pinned to one
core, sweeps offered rates with `otlp-lb-tools loadgen` (pinned with the sinks to the other core), and per step
measures the balancer's CPU time (its process CPU-time clock, all threads), what reached the sinks (their /report),
the client's rate, errors and latency. Then it runs half of the Collector's capacity against both balancers for
latency, runs the criterion micro-benchmarks, optionally profiles otlp-lb under callgrind and samples it with
perf at a light load, and writes bench/results.md. See bench/README.md.

Stdlib only. Every process started here is killed on exit, error or Ctrl-C; every wait is bounded.

Modules: `cli` (settings and the order of the runs), `procs` (child processes, ports, readiness), `measure`
(/proc readings), `balancers` (sinks, otlp-lb, the Collector), `workload` (loadgen, steps, sweeps), `profiles`
(criterion, callgrind, perf, flame graphs), `tables` and `report` (bench/results.md), `fmt`.
"""
