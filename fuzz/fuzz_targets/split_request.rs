//! `dataplane::route::split::split` on arbitrary bytes.
//!
//! Input: byte 0 chooses the (signal, routing key) pair among every key valid for each signal (the `attributes`
//! key looks up `service.name` and `tenant`), byte 1 the number of backends (1..=8), the rest is the request.
//! Must not panic. On Ok: parts go to distinct backends of the ring, their item counts add up to the request's;
//! with one backend the request is forwarded as it is. When the request also decodes with prost: every part decodes
//! as the signal's export request, each part's count is what prost counts in it, the request's count is what prost
//! counts in the request, and the parts together hold exactly the request's items, each with its resource and scope
//! (data points are compared one by one, inside their metric). With a canonical encoding, spans routed by trace id
//! sit on their trace id's owner.
//!
//! `regressions/split_request/`: a metric whose data is on the wire twice (fixed; replayed by `scripts/fuzz.sh`).
#![no_main]

use bytes::Bytes;
use dataplane::route::key::{RoutingKey, hash_key};
use dataplane::route::split::split;
use dataplane::signal::Signal;
use fuzz_support::{Request, policy, signal_keys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, n, body @ ..] = data else { return };
    let pairs = signal_keys();
    let (signal, key) = pairs[*sel as usize % pairs.len()];
    let n = (*n % 8) as usize + 1;
    let owner = |h: u64| (h % n as u64) as usize;
    let body = Bytes::copy_from_slice(body);
    let Ok(s) = split(signal, &body, &policy(signal, key), owner) else { return };

    let mut seen = [false; 8];
    for p in &s.parts {
        assert!(p.backend < n, "backend {} of {n}", p.backend);
        assert!(!std::mem::replace(&mut seen[p.backend], true), "two parts for backend {}", p.backend);
    }
    assert_eq!(s.parts.iter().map(|p| p.items).sum::<u64>(), s.items, "parts' items add up to the request's");
    if n == 1 {
        assert!(s.parts.len() <= 1);
        if let Some(p) = s.parts.first() {
            assert_eq!(p.body, body, "one backend: the request as it is");
        }
    }

    let Some(req) = Request::decode(signal, &body) else { return };
    assert_eq!(s.items, req.items(), "split counts what prost counts");
    let mut placed = Vec::new();
    for p in &s.parts {
        let part = Request::decode(signal, &p.body).expect("every part decodes");
        assert_eq!(p.items, part.items(), "a part's count is what prost counts in it");
        placed.extend(part.placed());
    }
    placed.sort();
    assert!(placed == req.placed(), "the parts hold exactly the request's items, with their resources and scopes");

    if signal == Signal::Traces && key == RoutingKey::TraceId && req.encode() == body {
        for p in &s.parts {
            let Some(Request::Traces(t)) = Request::decode(signal, &p.body) else { unreachable!() };
            for sp in t.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                assert_eq!(owner(hash_key(&sp.trace_id)), p.backend, "span on its trace id's owner");
            }
        }
    }
});
