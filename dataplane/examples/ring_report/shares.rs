//! `ring_report --shares ENDPOINT,...`: what each ring predicts for one endpoint set, for a check
//! against the running balancers (`bench/ring_shares.py`).
//!
//! Reads hex trace ids from stdin, one a line, and prints one JSON object: the endpoints as given,
//! and for otlp-lb's ring and the Collector replay the exact share of each endpoint and the owner
//! (an index into the endpoints) of every trace id, in input order.

use std::io::BufRead;

use dataplane::route::key::hash_key;
use dataplane::route::ring::{Member, Ring};
use serde_json::json;

use crate::collector::CollectorRing;

/// Decodes 32 hex digits.
fn trace_id(line: &str) -> Option<[u8; 16]> {
    let line = line.trim();
    if line.len() != 32 || !line.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&line[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

fn fail(message: &str) -> ! {
    eprintln!("ring_report --shares: {message}");
    std::process::exit(2);
}

pub fn run(list: &str) {
    let endpoints: Vec<String> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
    let mut sorted = endpoints.clone();
    sorted.sort();
    sorted.dedup();
    if endpoints.is_empty() || sorted.len() != endpoints.len() {
        fail("give distinct endpoints, comma-separated");
    }
    let mut ids = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.unwrap_or_else(|err| fail(&format!("reading stdin: {err}")));
        if line.trim().is_empty() {
            continue;
        }
        ids.push(trace_id(&line).unwrap_or_else(|| fail(&format!("line {}: not 32 hex digits", n + 1))));
    }

    let ours = Ring::new(endpoints.iter().map(|a| Member { address: a.clone(), weight: 1 }))
        .unwrap_or_else(|err| fail(&err.to_string()));
    // Ring indices follow its own (sorted) order; report them in the given order.
    let given: Vec<usize> =
        ours.members().iter().map(|m| endpoints.iter().position(|e| *e == m.address).unwrap_or(0)).collect();
    let our_shares: Vec<f64> = endpoints.iter().map(|e| ours.index_of(e).map_or(0.0, |i| ours.share(i))).collect();
    let our_owners: Vec<usize> = ids.iter().map(|id| given[ours.lookup(hash_key(id))]).collect();

    let theirs = CollectorRing::new(&endpoints);
    let their_owners: Vec<usize> = ids.iter().map(|id| theirs.owner_of(id)).collect();

    let out = json!({
        "endpoints": endpoints,
        "otlp_lb": {"shares": our_shares, "owners": our_owners},
        "collector": {"shares": theirs.shares(), "owners": their_owners},
    });
    println!("{out}");
}
