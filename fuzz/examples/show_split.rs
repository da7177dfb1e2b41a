//! Prints what `split` makes of a `split_request` input (a reproducer): the request as prost decodes it, then each
//! part's backend, count and decoded content. Triage aid for `regressions/split_request/`.
//!
//! `CARGO_TARGET_DIR=target cargo run --manifest-path fuzz/Cargo.toml --example show_split -- FILE`

use bytes::Bytes;
use dataplane::route::split::split;
use fuzz_support::{Request, policy, signal_keys};

fn main() {
    let path = std::env::args().nth(1).expect("usage: show_split FILE");
    let data = std::fs::read(&path).expect("read input");
    let [sel, n, body @ ..] = &data[..] else { panic!("input shorter than 2 bytes") };
    let pairs = signal_keys();
    let (signal, key) = pairs[*sel as usize % pairs.len()];
    let n = (*n % 8) as u64 + 1;
    println!("signal {signal}, key {key}, {n} backends, request {} bytes", body.len());
    let req = Request::decode(signal, body);
    println!("request (prost, {} items): {req:#?}", req.as_ref().map_or(0, Request::items));
    match split(signal, &Bytes::copy_from_slice(body), &policy(signal, key), |h| (h % n) as usize) {
        Err(e) => println!("split: {e}"),
        Ok(s) => {
            println!("split: {} items in {} parts", s.items, s.parts.len());
            for p in &s.parts {
                let decoded = Request::decode(signal, &p.body);
                println!(
                    "part for backend {}: counted {}, prost counts {}: {decoded:#?}",
                    p.backend,
                    p.items,
                    decoded.as_ref().map_or(0, Request::items)
                );
            }
        }
    }
}
