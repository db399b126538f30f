//! What encryption alone costs per value, with no PostgreSQL around it: the floor under
//! benchmark W4 (see docs/benchmarks.md). Run with
//! `cargo run --release -p pgshard-core --example envelope_speed [values] [bytes]`.

use std::hint::black_box;
use std::time::Instant;

use pgshard_core::envelope::{self, DataKey, Kind, MasterKey};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("a count"));
    let bytes: usize = args.next().map_or(14, |a| a.parse().expect("a length"));
    let master = MasterKey::from_file_contents(&[7u8; 32]).expect("32 bytes");
    let index_key = master.blind_index_key();
    let key = DataKey::generate();
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("{i:0>bytes$}").into_bytes()[..bytes].to_vec())
        .collect();

    // Each value is dropped as soon as it is made, as a backend frees it with the row's memory:
    // collecting millions of fresh envelopes would time the kernel faulting in their pages.
    let started = Instant::now();
    for v in &values {
        black_box(index_key.tag(Kind::Text, black_box(v)));
    }
    let tagging = started.elapsed();
    let tags: Vec<_> = values
        .iter()
        .map(|v| index_key.tag(Kind::Text, v))
        .collect();

    let started = Instant::now();
    for (v, tag) in values.iter().zip(&tags) {
        black_box(envelope::seal(Kind::Text, 1, &key, *tag, black_box(v)));
    }
    let sealing = started.elapsed();
    let sealed: Vec<Vec<u8>> = values
        .iter()
        .zip(&tags)
        .map(|(v, tag)| envelope::seal(Kind::Text, 1, &key, *tag, v))
        .collect();

    let started = Instant::now();
    for envelope in &sealed {
        black_box(envelope::open(black_box(envelope), Kind::Text, &key).expect("authentic"));
    }
    let opening = started.elapsed();

    let per_value = |d: std::time::Duration| d.as_nanos() as f64 / count as f64;
    println!("{count} values of {bytes} bytes, nanoseconds per value:");
    println!(
        "  blind-index tag (HMAC-SHA256)  {:7.0}",
        per_value(tagging)
    );
    println!(
        "  seal (AES-256-GCM, nonce)      {:7.0}",
        per_value(sealing)
    );
    println!(
        "  open (AES-256-GCM)             {:7.0}",
        per_value(opening)
    );
    println!(
        "  all three                      {:7.0}",
        per_value(tagging + sealing + opening)
    );
}
