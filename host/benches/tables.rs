//! Lookup tables: building a 1,000,000-line source, and lookups per second
//! from 20 threads (as 20 sessions would ask) while the same table is
//! rebuilt and swapped in underneath them, against the same lookups with
//! no rebuild going on.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailgate::table::{Kind, Tables};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LINES: usize = 1_000_000;

fn source(tag: &str) -> Vec<u8> {
    let mut s = String::with_capacity(LINES * 40);
    for i in 0..LINES {
        s.push_str(&format!("user{i}@domain{}.test: {tag} {i}\n", i % 1000));
    }
    s.into_bytes()
}

/// Lookups done by `threads` threads in `d`, each asking for addresses
/// spread over the table (hits) and one miss in ten.
fn lookups(t: &Arc<Tables>, threads: usize, d: Duration) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let (t, stop) = (Arc::clone(t), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut i = n * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 104_729) % LINES;
                    let addr = if i % 10 == 0 {
                        format!("nobody{i}@nowhere.test")
                    } else {
                        format!("user{i}@domain{}.test", i % 1000)
                    };
                    let v = t.address("big", &addr).unwrap();
                    assert_eq!(v.is_some(), i % 10 != 0);
                    done += 1;
                }
                done
            })
        })
        .collect();
    std::thread::sleep(d);
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn tables(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(Tables::new(dir.path()));
    let text = source("v1");
    let mut g = c.benchmark_group("tables");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("build 1,000,000 lines", |b| {
        b.iter(|| t.build("big", Kind::Keys, &text, "bench").unwrap())
    });
    g.finish();

    // Lookups per second, measured by hand: criterion times one call at
    // a time, a rate from 20 threads needs a wall-clock window.
    let window = Duration::from_secs(5);
    let quiet = lookups(&t, 20, window);
    let rebuilding = Arc::new(AtomicBool::new(true));
    let builder = {
        let (t, go) = (Arc::clone(&t), Arc::clone(&rebuilding));
        let text = source("v2");
        std::thread::spawn(move || {
            let mut n = 0;
            while go.load(Ordering::Relaxed) {
                t.build("big", Kind::Keys, &text, "bench").unwrap();
                n += 1;
            }
            n
        })
    };
    let start = Instant::now();
    let busy = lookups(&t, 20, window);
    rebuilding.store(false, Ordering::Relaxed);
    let builds = builder.join().unwrap();
    println!(
        "tables/lookups from 20 threads: {:.0}/s with no rebuild, {:.0}/s while {builds} rebuild(s) were swapped in ({:.1} s)",
        quiet as f64 / window.as_secs_f64(),
        busy as f64 / window.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
}

criterion_group!(benches, tables);
criterion_main!(benches);
