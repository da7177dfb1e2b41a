//! The live status page at `/` and the JSON behind it, `/api/v1/status` (documented in `docs/status-api.md`):
//! every backend with its share of the ring, health, load and latency; the ring version and the recent pool
//! changes; items accepted and refused per signal per second. The page (HTML, CSS and JavaScript) is compiled
//! into the binary and loads nothing from elsewhere.

mod rates;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use crate::pool::changes::{ChangeLog, ChangeRecord};
pub use view::{API_VERSION, StatusView};

use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::route::affinity::Affinity;

/// Where the status comes from.
pub struct Status {
    pools: watch::Receiver<Arc<Pool>>,
    changes: Arc<ChangeLog>,
    affinity: Arc<Affinity>,
    rates: rates::Rates,
}

impl Status {
    pub fn new(
        pools: watch::Receiver<Arc<Pool>>,
        changes: Arc<ChangeLog>,
        affinity: Arc<Affinity>,
        metrics: Metrics,
    ) -> Status {
        Status { pools, changes, affinity, rates: rates::Rates::new(metrics) }
    }

    /// The pool in use.
    pub fn pool(&self) -> Arc<Pool> {
        self.pools.borrow().clone()
    }

    /// Samples the counters behind the rates every second until `stop`.
    pub async fn sample(self: Arc<Self>, stop: watch::Receiver<bool>) {
        self.rates.run(stop).await
    }

    /// The status now.
    pub fn view(&self) -> StatusView {
        view::build(&self.pool(), &self.changes.recent(), &self.affinity, &self.rates.window())
    }
}

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// `/`, its style and script, and `/api/v1/status`.
pub fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", PAGE) }))
        .route("/status.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/status.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/api/v1/status", get(api))
        .with_state(status)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn api(State(status): State<Arc<Status>>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(status.view())).into_response()
}
