//! The parts waiting for one backend, and how parts that wait together leave as one request.
//!
//! An OTLP export request is a single repeated field, so the concatenation of encoded requests is the request of
//! all their items: parts bound for the same backend and signal leave as one request whose message is their
//! bytes one after another (compressed as one stream where they lie, never copied into one body first). One
//! request instead of many saves a stream, a compression context and a reply on both sides of the connection.
//! The backend's answer is shared out again: a failure fails every part of the request (each is then retried on
//! its own), and a partial success's rejected count is attributed to the parts in order, never more to a part
//! than it carried.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use tonic::Status;

use super::reply::Reply;

/// A part waiting to be sent, and where its outcome goes.
pub struct Waiting {
    pub body: Bytes,
    pub items: u64,
    /// What it counts for in the queue (`sending_queue.sizer` units).
    pub units: usize,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Reply, Status>>,
}

/// The parts of one signal waiting for a backend's sending slot, oldest first: a backend's sending queue is one
/// line per signal.
#[derive(Default)]
pub struct Line {
    parts: VecDeque<Waiting>,
    /// Whether a task is on its way to send what waits; parts added meanwhile join its next request.
    flushing: bool,
}

impl Line {
    /// Adds a part; true when no task is on its way to send it yet and the caller must start one.
    pub fn push(&mut self, part: Waiting) -> bool {
        self.parts.push_back(part);
        !std::mem::replace(&mut self.flushing, true)
    }

    /// Takes the parts of the next request: the oldest part still awaited, then the parts after it while the
    /// request stays within `max_bytes` (a larger part goes alone). Parts nobody awaits any more (their request
    /// gave up at its deadline) are dropped on the way. Also returns the queue units the removed parts held, and
    /// ends the flush when nothing is left.
    pub fn take(&mut self, max_bytes: usize) -> (Vec<Waiting>, usize) {
        let mut batch = Vec::new();
        let (mut bytes, mut units) = (0usize, 0usize);
        while let Some(next) = self.parts.front() {
            if next.reply.is_closed() {
                units += next.units;
                self.parts.pop_front();
                continue;
            }
            if !batch.is_empty() && bytes + next.body.len() > max_bytes {
                break;
            }
            let Some(part) = self.parts.pop_front() else { break };
            bytes += part.body.len();
            units += part.units;
            batch.push(part);
        }
        if self.parts.is_empty() {
            self.flushing = false;
        }
        (batch, units)
    }

    /// Empties the queue and ends the flush (the backend left the pool); returns the parts and their units.
    pub fn take_all(&mut self) -> (Vec<Waiting>, usize) {
        self.flushing = false;
        let parts: Vec<Waiting> = self.parts.drain(..).collect();
        let units = parts.iter().map(|p| p.units).sum();
        (parts, units)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The bodies of `parts`, in order: one request carrying them all has their concatenation as its message.
pub fn bodies(parts: &[Waiting]) -> Vec<&[u8]> {
    parts.iter().map(|p| &p.body[..]).collect()
}

/// Each part's share of a reply to the request that carried them all (part sizes in `items`, in order).
pub fn share(reply: &Reply, items: &[u64]) -> Vec<Reply> {
    let mut rejected = reply.rejected;
    items
        .iter()
        .map(|&n| {
            let mine = rejected.min(n);
            rejected -= mine;
            let message = if mine > 0 || reply.rejected == 0 { reply.message.clone() } else { String::new() };
            Reply { rejected: mine, message }
        })
        .collect()
}

/// Hands every part the same outcome.
pub fn answer_all(parts: Vec<Waiting>, outcome: &Result<Reply, Status>) {
    match outcome {
        Ok(reply) => {
            let items: Vec<u64> = parts.iter().map(|p| p.items).collect();
            for (part, mine) in parts.into_iter().zip(share(reply, &items)) {
                let _ = part.reply.send(Ok(mine));
            }
        }
        Err(status) => {
            for part in parts {
                let _ = part.reply.send(Err(status.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn part(body: Bytes, items: u64) -> (Waiting, oneshot::Receiver<Result<Reply, Status>>) {
        let (tx, rx) = oneshot::channel();
        (Waiting { body, units: 1, items, deadline: Instant::now(), reply: tx }, rx)
    }

    fn request(names: &[&str]) -> Bytes {
        let spans = names.iter().map(|n| Span {
            name: n.to_string(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        });
        let rs = ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: spans.collect(), ..Default::default() }],
            ..Default::default()
        };
        Bytes::from(ExportTraceServiceRequest { resource_spans: vec![rs] }.encode_to_vec())
    }

    #[test]
    fn concatenated_requests_are_the_request_of_all_their_items() {
        let (a, _ra) = part(request(&["a1", "a2"]), 2);
        let (b, _rb) = part(request(&["b1"]), 1);
        let merged = ExportTraceServiceRequest::decode(&bodies(&[a, b]).concat()[..]).expect("a valid request");
        let names: Vec<String> = merged
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["a1", "a2", "b1"]);
    }

    #[test]
    fn takes_parts_in_order_within_the_size_bound_and_a_large_part_alone() {
        let mut q = Line::default();
        let mut receivers = Vec::new();
        for len in [40, 40, 30, 100, 10] {
            let (w, rx) = part(Bytes::from(vec![0u8; len]), 1);
            receivers.push(rx);
            let first = q.is_empty();
            assert_eq!(q.push(w), first, "only the first push starts a flush");
        }
        let sizes = |b: &[Waiting]| b.iter().map(|p| p.body.len()).collect::<Vec<_>>();
        let (b, units) = q.take(100);
        assert_eq!((sizes(&b), units), (vec![40, 40], 2), "40 + 40 + 30 would exceed 100");
        let (b, _) = q.take(100);
        assert_eq!(sizes(&b), [30]);
        let (b, _) = q.take(50);
        assert_eq!(sizes(&b), [100], "a part over the bound goes alone");
        let (w, _rx) = part(Bytes::new(), 0);
        assert!(!q.push(w), "the flush still runs: the queue was not empty");
        let (b, _) = q.take(100);
        assert_eq!(sizes(&b), [10, 0]);
        let (w, _rx) = part(Bytes::new(), 0);
        assert!(q.is_empty() && q.push(w), "an emptied queue needs a new flush");
    }

    #[test]
    fn parts_nobody_awaits_are_dropped_and_their_units_freed() {
        let mut q = Line::default();
        let (a, ra) = part(Bytes::from_static(b"a"), 1);
        let (b, _rb) = part(Bytes::from_static(b"b"), 1);
        q.push(a);
        q.push(b);
        drop(ra);
        let (batch, units) = q.take(1 << 20);
        assert_eq!((batch.len(), units), (1, 2));
        assert_eq!(&batch[0].body[..], b"b");
    }

    #[test]
    fn a_partial_success_is_shared_out_in_order_and_failures_reach_every_part() {
        let reply = Reply { rejected: 5, message: "bad spans".into() };
        let shares = share(&reply, &[3, 4, 2]);
        assert_eq!(shares.iter().map(|r| r.rejected).collect::<Vec<_>>(), [3, 2, 0]);
        assert_eq!(shares.iter().map(|r| r.rejected).sum::<u64>(), 5);
        assert_eq!((shares[1].message.as_str(), shares[2].message.as_str()), ("bad spans", ""));
        let warning = share(&Reply { rejected: 0, message: "slow down".into() }, &[1, 1]);
        assert!(warning.iter().all(|r| r.rejected == 0 && r.message == "slow down"));

        let (a, mut ra) = part(Bytes::new(), 1);
        let (b, mut rb) = part(Bytes::new(), 1);
        answer_all(vec![a, b], &Err(Status::unavailable("down")));
        for rx in [&mut ra, &mut rb] {
            let outcome = rx.try_recv().expect("answered");
            assert_eq!(outcome.expect_err("failed").code(), tonic::Code::Unavailable);
        }
    }
}
