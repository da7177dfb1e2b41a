//! The operator's HTTP endpoints: `/metrics` in the Prometheus text format with the reconcile
//! metrics, `/healthz` and `/readyz`.

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use operator::Error;
use operator::metrics::Metrics;
use tower::ServiceExt;

async fn get(router: axum::Router, path: &str) -> (StatusCode, String) {
    let response =
        router.oneshot(Request::get(path).body(axum::body::Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).expect("metrics");
    drop(metrics.start());
    metrics.failed(&Error::InvalidSpec("x".into()));
    let router = operator::server::router(registry);

    let (status, body) = get(router.clone(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("otlp_lb_operator_reconciliations_total 1"), "{body}");
    assert!(body.contains(r#"otlp_lb_operator_reconcile_failures_total{error="invalid_spec"} 1"#), "{body}");
    assert!(body.contains("otlp_lb_operator_reconcile_duration_seconds_count 1"), "{body}");
    assert!(body.contains("otlp_lb_operator_leader 0"), "{body}");

    assert_eq!(get(router.clone(), "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(router.clone(), "/readyz").await.0, StatusCode::OK);
    assert_eq!(get(router, "/nope").await.0, StatusCode::NOT_FOUND);
}
