//! `dataplane::receive::http::json_to_protobuf` on arbitrary bytes, for each of the three signals.
//!
//! Must not panic. On Ok the result decodes with prost (and is prost's own encoding of what it decodes to), the
//! splitter accepts it and counts what prost counts, and the request written back as OTLP/JSON decodes to the same
//! protobuf.
#![no_main]

use bytes::Bytes;
use dataplane::receive::http::json_to_protobuf;
use dataplane::route::key::RoutingPolicy;
use dataplane::route::split::split;
use dataplane::signal::Signal;
use fuzz_support::Request;
use libfuzzer_sys::fuzz_target;

fn to_json(req: &Request) -> Vec<u8> {
    match req {
        Request::Traces(r) => serde_json::to_vec(r),
        Request::Metrics(r) => serde_json::to_vec(r),
        Request::Logs(r) => serde_json::to_vec(r),
    }
    .expect("a decoded request serializes")
}

fuzz_target!(|data: &[u8]| {
    for signal in Signal::ALL {
        let Ok(pb) = json_to_protobuf(signal, data) else { continue };
        let req = Request::decode(signal, &pb).expect("json_to_protobuf's output decodes");
        assert!(req.encode() == pb, "json_to_protobuf writes prost's encoding");
        let s = split(signal, &Bytes::clone(&pb), &RoutingPolicy::default(), |h| (h % 3) as usize)
            .expect("the splitter accepts a request decoded from JSON");
        assert_eq!(s.items, req.items(), "split counts what prost counts");
        let again = json_to_protobuf(signal, &to_json(&req)).expect("our own JSON decodes");
        assert!(again == pb, "JSON round trip changes the request");
    }
});
