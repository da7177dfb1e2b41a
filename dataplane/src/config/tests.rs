//! Configuration tests: the documented example parses; invalid files fail naming the field.

use super::*;
use crate::route::key::RoutingKey;

const EXAMPLE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 0.0.0.0:4317, max_recv_msg_size_mib: 16, max_connection_age: 0s}
      http: {endpoint: 0.0.0.0:4318}
loadbalancing:
  routing_key: traceID
  routing_attributes: []
  protocol:
    otlp: {timeout: 5s, compression: gzip, headers: {}, tls: {insecure: true}}
  resolver:
    static: {hostnames: [backend-1:4317, backend-2:4317]}
routing:
  traces: traceID
  metrics: service
  logs: traceID
telemetry:
  metrics: {address: 0.0.0.0:8888}
"#;

fn err(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn minimal(extra: &str) -> String {
    format!("loadbalancing:\n  resolver:\n    static: {{hostnames: [a:4317]}}\n{extra}")
}

#[test]
fn documented_example_parses() {
    let c = Config::parse(EXAMPLE).expect("example is valid");
    let p = c.routing_policy().expect("policy");
    assert_eq!((p.traces, p.metrics, p.logs), (RoutingKey::TraceId, RoutingKey::Service, RoutingKey::TraceId));
    assert_eq!(c.receivers.otlp.protocols.grpc.as_ref().map(|g| g.max_recv_msg_size_mib), Some(16));
    let members = c.loadbalancing.resolver.static_.as_ref().expect("static").members().expect("members");
    assert_eq!(members, vec![("backend-1:4317".to_string(), 1), ("backend-2:4317".to_string(), 1)]);
    assert!(c.warnings().is_empty());
}

#[test]
fn defaults_and_empty_keys() {
    let c = Config::parse(&minimal("receivers:\n  otlp:\n    protocols:\n      grpc:\n")).expect("valid");
    let grpc = c.receivers.otlp.protocols.grpc.as_ref().expect("an empty grpc: key enables it");
    assert_eq!(grpc.endpoint.port(), 4317);
    assert!(c.receivers.otlp.protocols.http.is_none(), "only grpc listed");
    assert_eq!(c.loadbalancing.protocol.otlp.timeout, Dur::secs(5));
    assert_eq!(c.routing_policy().expect("policy"), crate::route::key::RoutingPolicy::default());
}

#[test]
fn single_routing_key_applies_where_valid() {
    let c = Config::parse(&minimal("").replace("loadbalancing:\n", "loadbalancing:\n  routing_key: service\n"))
        .expect("valid");
    let p = c.routing_policy().expect("policy");
    assert_eq!((p.traces, p.metrics, p.logs), (RoutingKey::Service, RoutingKey::Service, RoutingKey::Service));
    let c = Config::parse(&minimal("").replace("loadbalancing:\n", "loadbalancing:\n  routing_key: streamID\n"))
        .expect("valid");
    let p = c.routing_policy().expect("policy");
    assert_eq!((p.traces, p.metrics), (RoutingKey::TraceId, RoutingKey::StreamId));
}

#[test]
fn compression_level_fits_the_compression() {
    let with = |otlp: &str| {
        minimal("").replace("loadbalancing:\n", &format!("loadbalancing:\n  protocol:\n    otlp: {otlp}\n"))
    };
    let level =
        |otlp: &str| Config::parse(&with(otlp)).expect("valid").loadbalancing.protocol.otlp.compression_params.level;
    assert_eq!(level("{}"), None, "unset: the method's default");
    assert_eq!(level("{compression: gzip, compression_params: {level: 9}}"), Some(9));
    assert_eq!(level("{compression: gzip, compression_params: {level: -1}}"), Some(-1));
    assert_eq!(level("{compression: zstd, compression_params: {level: 19}}"), Some(19));
    for (otlp, allowed) in [
        ("{compression: gzip, compression_params: {level: 10}}", "gzip takes 1 (fastest) to 9"),
        ("{compression: gzip, compression_params: {level: 0}}", "gzip takes 1 (fastest) to 9"),
        ("{compression: zstd, compression_params: {level: 23}}", "zstd takes 1 to 22"),
        ("{compression: none, compression_params: {level: 1}}", "compression none takes no level"),
    ] {
        let e = err(&with(otlp));
        assert!(e.starts_with("loadbalancing.protocol.otlp.compression_params.level:") && e.contains(allowed), "{e}");
    }
    let e = err(&with("{compression_params: {levl: 1}}"));
    assert!(e.contains("levl"), "{e}");
}

#[test]
fn invalid_files_name_the_field() {
    let e = err(&minimal("bogus: 1\n"));
    assert!(e.contains("bogus"), "{e}");
    let e = err(&minimal("routing:\n  traces: streamID\n"));
    assert!(e.starts_with("routing.traces:") && e.contains("not a key for traces"), "{e}");
    let e = err(&minimal("routing:\n  metrics: traceid\n"));
    assert!(e.starts_with("routing.metrics:"), "{e}");
    let e = err(&minimal("receivers:\n  otlp:\n    protocols:\n      grpc: {max_connection_age: soon}\n"));
    assert!(e.contains("receivers.otlp.protocols.grpc.max_connection_age") && e.contains("invalid duration"), "{e}");
    let e = err("loadbalancing:\n  resolver:\n    static: {hostnames: []}\n");
    assert!(e.starts_with("loadbalancing.resolver.static.hostnames:") && e.contains("empty"), "{e}");
    let e = err("loadbalancing:\n  resolver: {}\n");
    assert!(e.contains("configure one of static, dns, k8s"), "{e}");
    let e = err(&minimal("").replace("static: {hostnames: [a:4317]}", "static: {hostnames: [a:4317, a]}"));
    assert!(e.contains("hostnames[1]") && e.contains("listed twice"), "{e}");
    let e = err(&minimal("").replace("loadbalancing:\n", "loadbalancing:\n  protocol:\n    otlp: {tmeout: 5s}\n"));
    assert!(e.contains("loadbalancing.protocol.otlp") && e.contains("tmeout"), "{e}");
    let e = err(&minimal("routing:\n  traces: attributes\n"));
    assert!(e.starts_with("loadbalancing.routing_attributes:"), "{e}");
    let e = err("receivers: [\n");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn pasted_collector_block_warns_by_name() {
    let text = r#"
loadbalancing:
  routing_key: traceID
  protocol:
    otlp:
      timeout: 1s
      tls: {insecure: true}
      sending_queue: {enabled: true, queue_size: 1000, storage: file_storage}
      keepalive: {time: 10s}
  resolver:
    static:
      hostnames: [backend-1:4317, backend-2:4317]
"#;
    let c = Config::parse(text).expect("a Collector block is accepted");
    let w = c.warnings().join("\n");
    assert!(w.contains("loadbalancing.protocol.otlp.sending_queue.storage"), "{w}");
    assert_eq!(c.loadbalancing.protocol.otlp.sending_queue.queue_size, 1000, "supported queue keys are used");
    assert!(w.contains("loadbalancing.protocol.otlp.keepalive"), "{w}");
    assert_eq!(c.warnings().len(), 2);
}

#[test]
fn static_weights_and_default_port() {
    let c = Config::parse("loadbalancing:\n  resolver:\n    static:\n      hostnames: [a, 'b:4000', '[::1]:4317']\n      weights: {a: 2}\n")
        .expect("valid");
    let m = c.loadbalancing.resolver.static_.as_ref().expect("static").members().expect("members");
    assert_eq!(m, vec![("a:4317".into(), 2), ("b:4000".into(), 1), ("[::1]:4317".into(), 1)]);
    let e = err("loadbalancing:\n  resolver:\n    static:\n      hostnames: [a]\n      weights: {c: 2}\n");
    assert!(e.contains("weights.c"), "{e}");
}

#[test]
fn queued_acknowledgement_needs_storage() {
    let e = err(&minimal("").replace("loadbalancing:\n", "loadbalancing:\n  sending_queue: {ack: queued}\n"));
    assert!(e.starts_with("loadbalancing.sending_queue.storage:"), "{e}");
    let c = Config::parse(&minimal("").replace(
        "loadbalancing:\n",
        "loadbalancing:\n  sending_queue: {ack: queued, storage: /var/lib/otlp-lb, fsync: interval}\n",
    ))
    .expect("valid");
    assert_eq!(c.loadbalancing.sending_queue.ack, AckMode::Queued);
    let e = err(&minimal("").replace("loadbalancing:\n", "loadbalancing:\n  sending_queue: {ack: sometimes}\n"));
    assert!(e.contains("loadbalancing.sending_queue.ack"), "{e}");
}

#[test]
fn aws_cloud_map_resolver() {
    let block = "loadbalancing:\n  resolver:\n    aws_cloud_map:\n";
    let c = Config::parse(&format!("{block}      namespace: ns\n      service_name: collectors\n")).expect("valid");
    let m = c.loadbalancing.resolver.aws_cloud_map.as_ref().expect("aws_cloud_map");
    assert_eq!(m.health_status, HealthStatusFilter::Healthy, "the Collector's default");
    assert_eq!((m.interval, m.timeout, m.port), (None, None, None));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let c = Config::parse(&format!(
        "{block}      namespace: ns\n      service_name: s\n      health_status: HEALTHY_OR_ELSE_ALL\n      \
         interval: 10s\n      timeout: 2s\n      port: 4317\n      owner_account: '123456789012'\n"
    ))
    .expect("every Collector key");
    let m = c.loadbalancing.resolver.aws_cloud_map.as_ref().expect("aws_cloud_map");
    assert_eq!(
        (m.health_status, m.interval, m.port),
        (HealthStatusFilter::HealthyOrElseAll, Some(Dur::secs(10)), Some(4317))
    );

    let e = err(&format!("{block}      service_name: s\n"));
    assert!(e.starts_with("loadbalancing.resolver.aws_cloud_map.namespace:") && e.contains("required"), "{e}");
    let e = err(&format!("{block}      namespace: ns\n"));
    assert!(e.starts_with("loadbalancing.resolver.aws_cloud_map.service_name:") && e.contains("required"), "{e}");
    let e = err(&format!("{block}      namespace: ns\n      service_name: s\n      health_status: healthy\n"));
    assert!(
        e.starts_with("loadbalancing.resolver.aws_cloud_map.health_status:") && e.contains("HEALTHY_OR_ELSE_ALL"),
        "{e}"
    );
    let e = err(&format!("{block}      namespace: ns\n      service_name: s\n      owner_account: me\n"));
    assert!(e.starts_with("loadbalancing.resolver.aws_cloud_map.owner_account:"), "{e}");
    let e = err(&format!("{block}      namespace: ns\n      service_name: s\n      region: eu-west-1\n"));
    assert!(e.contains("loadbalancing.resolver.aws_cloud_map") && e.contains("region"), "{e}");
    let e = err(&format!("{block}      namespace: ns\n      service_name: s\n    static: {{hostnames: [a]}}\n"));
    assert!(e.contains("configure only one of"), "{e}");
}
