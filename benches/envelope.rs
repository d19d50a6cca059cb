//! The envelope around every L2 value: encode and decode (with every check a
//! read makes: magic, version, header, checksum, fingerprint) for a small
//! (100 B) and a large (100 KB) value, with and without compression, beside
//! the raw postcard encode/decode of the same value.

use std::hint::black_box;
use std::time::Duration;

use acgs_cache::__private::{decode_envelope, encode_envelope, Codec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Text-like bytes: compressible, as cached documents usually are.
fn value(len: usize) -> String {
    "policy 7 permits alice to read ledger entries; "
        .chars()
        .cycle()
        .take(len)
        .collect()
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for (label, len) in [("100B", 100), ("100KB", 100 * 1024)] {
        let v = value(len);
        for (mode, compress_above) in [("plain", usize::MAX), ("lz4", 64)] {
            let bytes = encode_envelope(&v, Codec::Postcard, compress_above).unwrap();
            group.bench_function(BenchmarkId::new(format!("encode_{mode}"), label), |b| {
                b.iter(|| encode_envelope(black_box(&v), Codec::Postcard, compress_above).unwrap())
            });
            group.bench_function(BenchmarkId::new(format!("decode_{mode}"), label), |b| {
                b.iter(|| decode_envelope::<String>(black_box(&bytes)).unwrap())
            });
        }
        let raw = postcard::to_allocvec(&v).unwrap();
        group.bench_function(BenchmarkId::new("raw_postcard_encode", label), |b| {
            b.iter(|| postcard::to_allocvec(black_box(&v)).unwrap())
        });
        group.bench_function(BenchmarkId::new("raw_postcard_decode", label), |b| {
            b.iter(|| postcard::from_bytes::<String>(black_box(&raw)).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = envelope
}
criterion_main!(benches);
