//! The status page in a real browser (headless Chromium): otlp-lb in front of three sinks under load, the page
//! open while a fourth sink joins the pool (the static file rewritten, then SIGHUP). The page must show the new
//! backend with its share and the change in its list without being reloaded, and the API must say the same.
//! A screenshot at 1280x800 is kept in `target/test-artifacts/`.

mod common;

use std::time::Duration;

use common::browser::{self, Browser};
use common::lb::{Opts, config};
use common::procs::{LbAddrs, LbProc, Loadgen, Sink};
use serde_json::Value;

/// What the page shows, read from its DOM (`null` for what is missing, so that a wrong page fails an assertion
/// that says what it shows).
const READ_PAGE: &str = r#"
const rows = [...document.querySelectorAll('#backends tbody tr')].map((tr) => ({
  address: tr.dataset.address,
  share: tr.querySelector('.share-value')?.textContent ?? null,
  health: tr.querySelector('.badge')?.textContent ?? null,
}));
const changes = [...document.querySelectorAll('#changes tbody tr')].map((tr) => ({
  version: Number(tr.dataset.version),
  added: [...tr.querySelectorAll('.added')].map((e) => e.textContent),
  removed: [...tr.querySelectorAll('.removed')].map((e) => e.textContent),
  moved: tr.querySelector('.moved')?.textContent ?? null,
}));
const traces = document.querySelector('[data-signal="traces"] .accepted .value');
return {
  rows, changes,
  ring_version: document.getElementById('ring-version')?.textContent ?? null,
  traces_accepted_per_s: traces ? Number(traces.dataset.rate) : null,
  connection: document.getElementById('connection')?.dataset.state ?? null,
  title: document.title,
};
"#;

fn percent(text: &Value) -> f64 {
    let t = text.as_str().unwrap_or_default();
    t.trim_end_matches('%').parse().unwrap_or_else(|_| panic!("not a percentage: {t:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_pool_growing_live() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let sinks: Vec<Sink> = (0..4).map(|i| Sink::start(dir.path(), &format!("sink-{i}"), &[])).collect();
    let hosts: Vec<String> = sinks.iter().map(|s| s.grpc.clone()).collect();
    let addrs = LbAddrs::stable();
    let lb = LbProc::start(dir.path(), "lb", addrs, &hosts[..3], Opts::default());
    let _load = Loadgen::spawn(
        dir.path(),
        "load",
        &[
            "--endpoint",
            &lb.grpc(),
            "--rate",
            "2000",
            "--duration",
            "120s",
            "--traces",
            "1000000",
            "--connections",
            "2",
            "--retry",
        ],
    );

    browser.open(&format!("http://{}/", addrs.telemetry)).await;
    let before = browser
        .wait_for("three backends and spans accepted", READ_PAGE, Duration::from_secs(20), |v| {
            v["rows"].as_array().is_some_and(|r| r.len() == 3)
                && v["traces_accepted_per_s"].as_f64().is_some_and(|r| r > 0.0)
        })
        .await;
    for row in before["rows"].as_array().expect("rows") {
        let share = percent(&row["share"]);
        assert!((30.0..37.0).contains(&share), "a third of the ring each: {row}");
        assert_eq!(row["health"], "healthy", "{row}");
    }
    assert_eq!(before["ring_version"], "1");

    // A fourth sink joins: the file is rewritten and the pool reloaded, while the page stays open.
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, config(addrs.grpc, addrs.http, addrs.telemetry, &hosts, Opts::default())).expect("rewrite");
    lb.proc.signal("HUP");
    let new = hosts[3].clone();
    let after = browser
        .wait_for("the fourth backend and the pool change", READ_PAGE, Duration::from_secs(20), |v| {
            v["rows"].as_array().is_some_and(|r| r.len() == 4)
                && v["changes"].as_array().is_some_and(|c| c.first().is_some_and(|c| c["version"] == 2))
        })
        .await;
    let rows = after["rows"].as_array().expect("rows");
    let joined = rows.iter().find(|r| r["address"] == new.as_str()).unwrap_or_else(|| panic!("{new} in {rows:?}"));
    let share = percent(&joined["share"]);
    assert!((21.0..29.0).contains(&share), "the new backend owns about a quarter of the ring: {joined}");
    let total: f64 = rows.iter().map(|r| percent(&r["share"])).sum();
    assert!((total - 100.0).abs() < 0.5, "the shares add up to 100%: {rows:?}");
    let change = &after["changes"][0];
    assert_eq!(change["added"], serde_json::json!([format!("+{new}")]), "{change}");
    assert_eq!(change["removed"], serde_json::json!([]), "{change}");
    let moved = percent(&change["moved"]);
    assert!((21.0..29.0).contains(&moved), "about a quarter of the keys moved: {change}");
    assert_eq!(after["ring_version"], "2");
    assert_eq!(after["connection"], "live");

    // The API behind the page says the same.
    let (code, body) = lb.get("/api/v1/status").expect("api reachable");
    assert_eq!(code, 200, "{body}");
    let api: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(api["version"], 1);
    assert_eq!(api["ring"]["version"], 2);
    let last = &api["changes"][0];
    assert_eq!(last["added"], serde_json::json!([new]));
    assert!(last["affinity_held_traces"].as_u64().is_some(), "traces held by affinity are counted: {last}");
    let spans = &api["signals"][0];
    assert_eq!(spans["signal"], "traces");
    assert!(spans["accepted_total"].as_u64().is_some_and(|n| n > 0), "{spans}");

    // The new backend takes its share of the traffic; the screenshot shows it busy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot = browser::artifacts_dir().join("status-page.png");
    browser.screenshot(&shot).await;
    println!("status page screenshot: {}", shot.canonicalize().unwrap_or(shot).display());
    let (_, body) = lb.get("/api/v1/status").expect("api reachable");
    let api: Value = serde_json::from_str(&body).expect("JSON");
    let busy = api["backends"].as_array().and_then(|b| b.iter().find(|b| b["address"] == new.as_str())).cloned();
    let busy = busy.unwrap_or_else(|| panic!("{new} in {body}"));
    assert!(busy["requests_per_s"].as_f64().is_some_and(|r| r > 0.0), "{busy}");
    assert!(busy["latency_p99_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{busy}");
}
