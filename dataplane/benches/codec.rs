//! Codec micro-benchmarks on the same 100-span request as `route`: OTLP/JSON decode (the HTTP receiver's
//! `json_to_protobuf`), and for comparison what a decode-everything balancer pays with prost and the
//! opentelemetry-proto types — a full decode + re-encode, and a decode + regroup per backend + encode of each
//! part — plus gzip at tonic's level 6, the default exporter compression of both otlp-lb and the Collector: with a
//! new encoder per message as tonic does, with one reused zlib-rs compressor, and with libdeflate as otlp-lb's
//! exporter does, on the request and on one backend's part of it; and gzip of an empty message (the per-message
//! set-up cost alone).
//!
//! `cargo bench -p dataplane --bench codec`. Throughput is per span.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::receive::http::json_to_protobuf;
use dataplane::route::key::hash_key;
use dataplane::signal::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

mod common;

/// Decode, move every span into its backend's copy of its resource and scope, encode each backend's request.
fn decode_regroup_encode(body: &[u8], ring: &dataplane::route::ring::Ring) -> Vec<Vec<u8>> {
    let req = ExportTraceServiceRequest::decode(body).expect("decode");
    let mut parts: Vec<ExportTraceServiceRequest> = vec![ExportTraceServiceRequest::default(); ring.len()];
    for rs in req.resource_spans {
        let mut per: Vec<Option<ResourceSpans>> = vec![None; ring.len()];
        for ss in rs.scope_spans {
            let mut scoped: Vec<Option<ScopeSpans>> = vec![None; ring.len()];
            for span in ss.spans {
                let b = ring.lookup(hash_key(&span.trace_id));
                scoped[b]
                    .get_or_insert_with(|| ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    })
                    .spans
                    .push(span);
            }
            for (b, s) in scoped.into_iter().enumerate() {
                if let Some(s) = s {
                    per[b]
                        .get_or_insert_with(|| ResourceSpans {
                            resource: rs.resource.clone(),
                            scope_spans: Vec::new(),
                            schema_url: rs.schema_url.clone(),
                        })
                        .scope_spans
                        .push(s);
                }
            }
        }
        for (b, r) in per.into_iter().enumerate() {
            if let Some(r) = r {
                parts[b].resource_spans.push(r);
            }
        }
    }
    parts.into_iter().filter(|p| !p.resource_spans.is_empty()).map(|p| p.encode_to_vec()).collect()
}

fn codec(c: &mut Criterion) {
    let req = common::traces_request(1);
    let body = req.encode_to_vec();
    let json = serde_json::to_vec(&req).expect("OTLP/JSON");
    let back = json_to_protobuf(Signal::Traces, &json).expect("json_to_protobuf");
    assert_eq!(ExportTraceServiceRequest::decode(&back[..]).expect("decode"), req, "OTLP/JSON round trip");
    let ring = common::ring(common::BACKENDS);
    assert!(decode_regroup_encode(&body, &ring).len() > 1);

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(u64::from(common::SPANS)));
    g.bench_function("json_to_protobuf_traces", |b| {
        b.iter(|| json_to_protobuf(Signal::Traces, black_box(&json)).expect("json"))
    });
    g.bench_function("prost_decode_encode_traces", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&body[..])).expect("decode").encode_to_vec())
    });
    g.bench_function("prost_decode_regroup_encode_traces", |b| {
        b.iter(|| decode_regroup_encode(black_box(&body), &ring))
    });
    g.bench_function("gzip6_traces", |b| {
        b.iter(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len()), flate2::Compression::new(6));
            enc.write_all(black_box(&body)).expect("gzip");
            enc.finish().expect("gzip")
        })
    });
    // What reusing one compressor would cost instead: raw deflate level 6 with `Compress::reset` between messages
    // (gzip adds a 10-byte header and a CRC-32 trailer).
    let mut deflate = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(body.len() + 1024);
    g.bench_function("deflate6_reused_compressor_traces", |b| {
        b.iter(|| {
            deflate.reset();
            out.clear();
            deflate.compress_vec(black_box(&body), &mut out, flate2::FlushCompress::Finish).expect("deflate");
            out.len()
        })
    });
    // What otlp-lb's exporter sends: libdeflate's whole-buffer gzip at the same level, one compressor per thread.
    let mut libdeflate = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).expect("level 6"));
    let mut gz = vec![0u8; libdeflate.gzip_compress_bound(body.len())];
    g.bench_function("gzip6_libdeflate_traces", |b| {
        b.iter(|| libdeflate.gzip_compress(black_box(&body), &mut gz).expect("libdeflate"))
    });
    // One backend's part of the request split over 4: the per-message costs weigh four times as much per span.
    let part = &body[..body.len() / common::BACKENDS];
    g.bench_function("deflate6_reused_compressor_part", |b| {
        b.iter(|| {
            deflate.reset();
            out.clear();
            deflate.compress_vec(black_box(part), &mut out, flate2::FlushCompress::Finish).expect("deflate");
            out.len()
        })
    });
    g.bench_function("gzip6_libdeflate_part", |b| {
        b.iter(|| libdeflate.gzip_compress(black_box(part), &mut gz).expect("libdeflate"))
    });
    deflate.reset();
    out.clear();
    deflate.compress_vec(&body, &mut out, flate2::FlushCompress::Finish).expect("deflate");
    let sizes = (out.len() + 18, libdeflate.gzip_compress(&body, &mut gz).expect("libdeflate"));
    g.finish();

    // The fixed cost of gzip on one message whatever its size: an ExportTraceServiceResponse without partial
    // success encodes to 0 bytes, and tonic builds a new encoder for it when the receiver sends compressed.
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gzip6_empty_message", |b| {
        b.iter(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(64), flate2::Compression::new(6));
            enc.write_all(black_box(&[])).expect("gzip");
            enc.finish().expect("gzip")
        })
    });
    g.finish();
    eprintln!("codec: request {} bytes protobuf, {} bytes OTLP/JSON", body.len(), json.len());
    eprintln!("codec: gzip level 6 of the request: zlib-rs {} bytes, libdeflate {} bytes", sizes.0, sizes.1);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
