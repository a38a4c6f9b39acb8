//! Per-stage CPU cost of the backup pipeline on one core: `cargo run --release --example stages FILE [MiB]`.
//! Used to decide where optimisation pays (see DESIGN.md); not part of the product.
use std::io::Read;
use std::time::Instant;

use bunker_engine::chunker::{Chunker, ChunkerParams};
use bunker_engine::crypto::{Crypto, MasterKey};

fn main() {
    let path = std::env::args().nth(1).expect("FILE");
    let mib: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(512);
    let mut data = vec![0u8; mib << 20];
    let n = std::fs::File::open(path).unwrap().read(&mut data).unwrap();
    data.truncate(n);
    let mb = data.len() as f64 / 1e6;
    raw_fastcdc(&data);
    alloc_cost(&data);
    let crypto = Crypto::new(&MasterKey::generate());
    let rate = |what: &str, t: Instant| println!("{what:<28} {:>8.0} MB/s", mb / t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut chunker = Chunker::new(&data[..], ChunkerParams::default(), crypto.chunker_seed());
    let mut lengths = Vec::new();
    while let Some(c) = chunker.next_chunk().unwrap() {
        lengths.push(c.len());
    }
    rate("chunk (fastcdc)", t);
    let mut at = 0;
    let chunks: Vec<&[u8]> = lengths
        .iter()
        .map(|&n| {
            at += n;
            &data[at - n..at]
        })
        .collect();
    let t = Instant::now();
    for c in &chunks {
        std::hint::black_box(crypto.blob_id(c));
    }
    rate("keyed blake3", t);
    let t = Instant::now();
    let mut zc = zstd::bulk::Compressor::new(3).unwrap();
    let mut compressed = Vec::new();
    for c in &chunks {
        compressed.push(zc.compress(c).unwrap());
    }
    rate("zstd -3", t);
    let t = Instant::now();
    for c in &compressed {
        std::hint::black_box(crypto.seal(c, b"x"));
    }
    rate("seal (compressed bytes)", t);
    let t = Instant::now();
    std::hint::black_box(blake3::hash(&data));
    rate("plain blake3 (pack name)", t);
    println!(
        "{} chunks, compressed to {:.0} MB",
        chunks.len(),
        compressed.iter().map(|c| c.len()).sum::<usize>() as f64 / 1e6
    );
}

#[allow(dead_code)]
fn raw_fastcdc(data: &[u8]) {
    let t = Instant::now();
    let n = fastcdc::v2020::FastCDC::with_level_and_seed(
        data,
        262144,
        1 << 20,
        4 << 20,
        fastcdc::v2020::Normalization::Level1,
        7,
    )
    .count();
    println!("raw fastcdc iterator: {n} chunks {:>8.0} MB/s", data.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = fastcdc::v2020::FastCDC::with_level(data, 262144, 1 << 20, 4 << 20, fastcdc::v2020::Normalization::Level1)
        .count();
    println!("raw fastcdc no seed: {n} chunks {:>8.0} MB/s", data.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
}

#[allow(dead_code)]
fn alloc_cost(data: &[u8]) {
    let t = Instant::now();
    let mut off = 0;
    let mut keep = Vec::new();
    while off < data.len() {
        let mut b = bytes::BytesMut::with_capacity(16 << 20);
        b.resize(16 << 20, 0);
        let n = (data.len() - off).min(12 << 20);
        b[..n].copy_from_slice(&data[off..off + n]);
        off += n;
        keep.push(b.freeze());
        if keep.len() > 2 {
            keep.remove(0);
        }
    }
    println!("alloc+zero+copy per 12 MiB: {:>8.0} MB/s", data.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
}
