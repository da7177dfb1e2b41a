//! Configuration tests: the documented example parses; invalid files fail naming the field.

use otlp_lb_config::*;

fn static_pool(r: &Resolver) -> &StaticResolver {
    match r {
        Resolver::Static(s) => s,
        other => panic!("not static: {other:?}"),
    }
}

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
    let members = static_pool(&c.loadbalancing.resolver).members().expect("members");
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
    assert_eq!(c.routing_policy().expect("policy"), RoutingPolicy::default());
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
    let m = static_pool(&c.loadbalancing.resolver).members().expect("members");
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

/// `minimal("")` with `key: value` set at a dotted path under the document (intermediate maps created).
fn with_key(path: &str, value: serde_json::Value) -> String {
    let mut doc: serde_json::Value = serde_saphyr::from_str(&minimal("")).expect("yaml");
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("a key");
    let mut map = doc.as_object_mut().expect("a map");
    for key in keys {
        map = map.entry(key).or_insert_with(|| serde_json::json!({})).as_object_mut().expect("a map");
    }
    map.insert(last.to_string(), value);
    doc.to_string()
}

#[test]
fn every_collector_key_not_implemented_warns_or_is_refused_by_full_name() {
    assert!(compat::COLLECTOR_KEYS.len() >= 30);
    for (path, treatment) in compat::COLLECTOR_KEYS {
        let text = with_key(path, serde_json::json!("x"));
        match treatment {
            compat::Treatment::Ignored(what) => {
                let c = Config::parse(&text).unwrap_or_else(|e| panic!("{path} is accepted: {e}"));
                assert_eq!(c.warnings(), vec![compat::ignored_warning(path, what)], "{path}");
                assert!(c.warnings()[0].starts_with(&format!("{path} is not supported and is ignored")));
            }
            compat::Treatment::Refused(instead) => {
                let e = err(&text);
                assert!(e.starts_with(&format!("{path}: not supported")) && e.contains(instead), "{e}");
            }
        }
    }
    // The keys accepted and ignored outside the table, each named in full.
    for (path, value, extra) in [
        ("loadbalancing.sending_queue.storage", serde_json::json!("/var/lib/otlp-lb"), ""),
        ("loadbalancing.protocol.otlp.tls", serde_json::json!({"insecure": true, "cert_file": "c"}), ".cert_file"),
        ("loadbalancing.protocol.otlp.tls", serde_json::json!({"insecure": true, "key_file": "k"}), ".key_file"),
    ] {
        let c = Config::parse(&with_key(path, value)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let w = c.warnings();
        assert!(w.len() == 1 && w[0].starts_with(&format!("{path}{extra} is not supported and is ignored")), "{w:?}");
    }
}

#[test]
fn tls_is_on_unless_insecure_and_no_ca() {
    let tls = |v: serde_json::Value| {
        Config::parse(&with_key("loadbalancing.protocol.otlp.tls", v)).expect("valid").loadbalancing.protocol.otlp.tls
    };
    let pasted = tls(serde_json::json!({"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"}));
    assert!(!pasted.insecure && !pasted.plaintext(), "TLS with a client certificate, as in the Collector");
    let minimal = Config::parse(&minimal("")).expect("valid");
    assert!(!minimal.loadbalancing.protocol.otlp.tls.plaintext(), "no tls block: TLS");
    assert!(tls(serde_json::json!({"insecure": true})).plaintext());
    assert!(!tls(serde_json::json!({"insecure": true, "ca_file": "ca.pem"})).plaintext(), "a CA turns TLS on");
    assert_eq!(tls(serde_json::json!({"min_version": "1.3"})).protocol_versions(), Ok((false, true)));
    assert_eq!(
        tls(serde_json::json!({"min_version": "1.0", "max_version": "1.2"})).protocol_versions(),
        Ok((true, false))
    );
    for bad in [serde_json::json!({"min_version": "1.4"}), serde_json::json!({"max_version": "1.1"})] {
        let e = err(&with_key("loadbalancing.protocol.otlp.tls", bad));
        assert!(e.starts_with("loadbalancing.protocol.otlp.tls:"), "{e}");
    }
}

#[test]
fn collector_forms_of_weights_port_and_block_name() {
    let weights = |w: &str| {
        Config::parse(&format!("loadbalancing:\n  resolver:\n    static: {{hostnames: [a, b, c], weights: {w}}}\n"))
            .map(|c| static_pool(&c.loadbalancing.resolver).members().expect("members"))
    };
    let expected: Vec<(String, u32)> = vec![("a:4317".into(), 1), ("b:4317".into(), 2), ("c:4317".into(), 1)];
    assert_eq!(weights("[1, 2, 1]").expect("a list in hostname order"), expected);
    assert_eq!(weights("{b: 2}").expect("a map"), expected);
    let e = weights("[1, 2]").expect_err("too few").to_string();
    assert!(e.starts_with("loadbalancing.resolver.static.weights:") && e.contains("2 weights for 3 hostnames"), "{e}");
    let e = weights("[1, 0, 1]").expect_err("zero").to_string();
    assert!(e.starts_with("loadbalancing.resolver.static.weights[1]:"), "{e}");
    let e = weights("7").expect_err("a number").to_string();
    assert!(e.contains("a list of weights in the hostnames' order, or a map"), "{e}");

    let port = |p: &str| {
        Config::parse(&format!("loadbalancing:\n  resolver:\n    dns: {{hostname: pool, port: {p}}}\n")).map(
            |c| match c.loadbalancing.resolver {
                Resolver::Dns(d) => d.port,
                other => panic!("not dns: {other:?}"),
            },
        )
    };
    assert_eq!(port("\"4317\"").expect("a string"), Some(4317));
    assert_eq!(port("4318").expect("a number"), Some(4318));
    assert_eq!(port("\"\"").expect("empty: the default"), None);
    for bad in ["\"http\"", "0", "70000"] {
        let e = port(bad).expect_err(bad).to_string();
        assert!(e.starts_with("loadbalancing.resolver.dns.port:") && e.contains("is not a port"), "{e}");
    }

    for name in ["loadbalancing/east", "load_balancing", "load_balancing/x"] {
        let c = Config::parse(&minimal("").replace("loadbalancing:", &format!("{name}:"))).expect(name);
        assert_eq!(static_pool(&c.loadbalancing.resolver).hostnames, vec!["a:4317"]);
    }
    let two = format!("{}load_balancing/b:\n  resolver:\n    static: {{hostnames: [b:4317]}}\n", minimal(""));
    let e = err(&two);
    assert!(e.contains("one load-balancing block only") && e.contains("load_balancing/b"), "{e}");
}

#[test]
fn routing_keys_as_the_collector_spells_them() {
    let key = |k: &str| minimal("").replace("loadbalancing:\n", &format!("loadbalancing:\n  routing_key: {k}\n"));
    let p = Config::parse(&key("\"\"")).expect("empty: the defaults").routing_policy().expect("policy");
    assert_eq!(p, RoutingPolicy::default());
    for k in ["traceID", "service", "resource", "metric", "streamID"] {
        Config::parse(&key(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    for k in ["trace_id", "traceid", "TraceID", "service.name"] {
        let e = err(&key(k));
        assert!(e.starts_with("loadbalancing.routing_key: unknown key"), "{e}");
    }
    let e = err(&key("service").replace("routing_key:", "routing_attributes: [tenant]\n  routing_key:"));
    assert!(e.starts_with("loadbalancing.routing_attributes: only used with routing_key: attributes"), "{e}");
    Config::parse(&key("attributes").replace("routing_key:", "routing_attributes: [tenant]\n  routing_key:"))
        .expect("attributes with their list");
}

#[test]
fn a_storage_extension_is_never_read_as_a_path() {
    for id in ["file_storage", "file_storage/otc", "db_storage/x"] {
        let queue = format!("loadbalancing:\n  sending_queue: {{enabled: true, storage: {id}}}\n");
        let e = err(&minimal("").replace("loadbalancing:\n", &queue));
        assert!(e.starts_with("loadbalancing.sending_queue.storage:") && e.contains("storage extension"), "{e}");
        assert!(e.contains("ack: queued") && e.contains("absolute path"), "{e}");
    }
    let relative = "loadbalancing:\n  sending_queue: {ack: queued, storage: ./wal}\n";
    let e = err(&minimal("").replace("loadbalancing:\n", relative));
    assert!(e.starts_with("loadbalancing.sending_queue.storage:") && e.contains("absolute path"), "{e}");
}

#[test]
fn aws_cloud_map_resolver() {
    let block = "loadbalancing:\n  resolver:\n    aws_cloud_map:\n";
    let c = Config::parse(&format!("{block}      namespace: ns\n      service_name: collectors\n")).expect("valid");
    let Resolver::AwsCloudMap(m) = &c.loadbalancing.resolver else { panic!("not aws_cloud_map") };
    assert_eq!(m.health_status, HealthStatusFilter::Healthy, "the Collector's default");
    assert_eq!((m.interval, m.timeout, m.port), (None, None, None));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let c = Config::parse(&format!(
        "{block}      namespace: ns\n      service_name: s\n      health_status: HEALTHY_OR_ELSE_ALL\n      \
         interval: 10s\n      timeout: 2s\n      port: 4317\n      owner_account: '123456789012'\n"
    ))
    .expect("every Collector key");
    let Resolver::AwsCloudMap(m) = &c.loadbalancing.resolver else { panic!("not aws_cloud_map") };
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

#[test]
fn a_configuration_built_in_code_reads_back_as_written() {
    let resolver = K8sResolver { service: "pool.ns".into(), ports: vec![4317], ..K8sResolver::default() };
    let mut lb = LoadBalancing::new(Resolver::K8s(resolver));
    lb.routing_attributes = vec!["tenant".into()];
    lb.protocol.otlp.compression = Compression::Zstd;
    lb.protocol.otlp.compression_params.level = Some(19);
    lb.sending_queue =
        DurableQueue { ack: AckMode::Queued, storage: Some("/var/lib/otlp-lb".into()), ..DurableQueue::default() };
    let mut config = Config::new(lb);
    config.routing.traces = Some("attributes".into());
    let text = config.to_yaml().expect("writes");
    assert!(!text.contains("null"), "unset options are left out:\n{text}");
    let parsed = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.to_yaml().expect("writes"), text);
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    let policy = parsed.routing_policy().expect("policy");
    assert_eq!((policy.traces, policy.metrics), (RoutingKey::Attributes, RoutingKey::Service));
    assert!(matches!(parsed.loadbalancing.resolver, Resolver::K8s(ref k) if k.service == "pool.ns"));
}
