//! G.711 encode/decode throughput on one 20 ms frame and on one second of audio.
use ccorch_media::Law;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn sine(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 12000.0) as i16)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("g711");
    for &n in &[160usize, 8000] {
        let pcm = sine(n);
        let mut codes = vec![0u8; n];
        let mut back = vec![0i16; n];
        g.throughput(Throughput::Elements(n as u64));
        for law in [Law::Pcmu, Law::Pcma] {
            g.bench_with_input(
                BenchmarkId::new(format!("{law:?}/encode"), n),
                &pcm,
                |b, pcm| b.iter(|| law.encode(black_box(pcm), &mut codes)),
            );
            law.encode(&pcm, &mut codes).expect("same length");
            let codes_in = codes.clone();
            g.bench_with_input(
                BenchmarkId::new(format!("{law:?}/decode"), n),
                &codes_in,
                |b, codes| b.iter(|| law.decode(black_box(codes), &mut back)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
