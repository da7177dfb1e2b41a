//! The peer API, served on `peers.endpoint`; every request carries the shared bearer token (401 otherwise), and
//! bodies are protobuf ([`super::wire`]):
//! - `POST /peer/v1/proposal` ([`Proposal`]): a switch time for a ring;
//! - `POST /peer/v1/held` ([`Held`]): a peer's table at its switch;
//! - `GET /peer/v1/held`: this replica's table, for a starting peer.
//!
//! Each answers with an [`Ack`] (or the table) naming the replica that answered.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;

use super::Coordinator;
use super::client::MAX_BODY;
use super::wire::{Held, Proposal};

pub const PROPOSAL: &str = "/peer/v1/proposal";
pub const HELD: &str = "/peer/v1/held";

pub fn router(coordinator: Arc<Coordinator>) -> Router {
    Router::new()
        .route(PROPOSAL, post(proposal))
        .route(HELD, post(push_held).get(pull_held))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(coordinator)
}

fn protobuf(message: &impl Message) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], message.encode_to_vec()).into_response()
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// The 401 of a request without the shared token.
fn unauthenticated(c: &Coordinator, headers: &HeaderMap) -> Option<Response> {
    c.bearer().check(headers).err().map(|e| refused(StatusCode::UNAUTHORIZED, e))
}

async fn proposal(State(c): State<Arc<Coordinator>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthenticated(&c, &headers) {
        return r;
    }
    match Proposal::decode(body) {
        Ok(p) => protobuf(&c.on_proposal(&p)),
        Err(e) => refused(StatusCode::BAD_REQUEST, format!("undecodable proposal: {e}")),
    }
}

async fn push_held(State(c): State<Arc<Coordinator>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthenticated(&c, &headers) {
        return r;
    }
    let held = match Held::decode(body) {
        Ok(h) => h,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("undecodable table: {e}")),
    };
    match tokio::task::spawn_blocking(move || c.on_held(&held)).await {
        Ok(Ok(ack)) => protobuf(&ack),
        Ok(Err(e)) => refused(StatusCode::BAD_REQUEST, format!("invalid table: {e}")),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn pull_held(State(c): State<Arc<Coordinator>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthenticated(&c, &headers) {
        return r;
    }
    match tokio::task::spawn_blocking(move || c.current_table()).await {
        Ok(held) => protobuf(&held),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
