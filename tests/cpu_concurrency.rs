//! One CPU `Executable` shared between threads: concurrent runs give exactly
//! the results of single-threaded runs of the same inputs, also while
//! different threads make it compile builds for different input shapes.

use std::sync::Arc;

use kiln::ir::Tensor;
use kiln::{CompileOptions, Executable, Model, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 8;
const RUNS: usize = 20;

/// `Executable` can be shared between threads (a compile-time check).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Executable>();
    send_sync::<Arc<Executable>>();
};

fn model() -> Model {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo/tiny-bert.onnx");
    Model::load(path).unwrap()
}

fn cpu(model: &Model, threads: usize) -> Executable {
    model
        .compile_with(
            &Target::Cpu,
            &CompileOptions {
                threads: Some(threads),
                optimize: true,
                isa: None,
            },
        )
        .unwrap()
}

/// Random BERT inputs: ids < 1000 (the vocabulary), a padding mask with at least
/// one real token per row, token types 0/1.
fn inputs(seed: u64, batch: usize, seq: usize) -> Vec<(String, Tensor)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = batch * seq;
    let ids: Vec<i64> = (0..n).map(|_| rng.random_range(0..1000)).collect();
    let mut mask = vec![1i64; n];
    for b in 0..batch {
        let len = rng.random_range(1..=seq);
        for m in &mut mask[b * seq + len..(b + 1) * seq] {
            *m = 0;
        }
    }
    let types: Vec<i64> = (0..n).map(|_| rng.random_range(0..2)).collect();
    vec![
        ("input_ids".into(), Tensor::from_vec(vec![batch, seq], ids)),
        (
            "attention_mask".into(),
            Tensor::from_vec(vec![batch, seq], mask),
        ),
        (
            "token_type_ids".into(),
            Tensor::from_vec(vec![batch, seq], types),
        ),
    ]
}

type Outputs = Vec<(String, Tensor)>;

fn assert_same(what: &str, got: &Outputs, want: &Outputs) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for ((gn, g), (wn, w)) in got.iter().zip(want) {
        assert_eq!(gn, wn, "{what}: output names");
        assert_eq!(g.shape(), w.shape(), "{what}/{gn}: shape");
        assert_eq!(g.dtype(), w.dtype(), "{what}/{gn}: dtype");
        // Bit-identical: the same program on the same data.
        assert!(
            g.bytes() == w.bytes(),
            "{what}/{gn}: differs from the single-threaded run"
        );
    }
}

/// Max relative difference (to the largest |w|) between two runs' outputs.
fn max_rel_diff(got: &Outputs, want: &Outputs) -> f64 {
    let mut worst = 0f64;
    for ((_, g), (_, w)) in got.iter().zip(want) {
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        let scale = w.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        for (a, b) in g.iter().zip(&w) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    worst
}

fn seed(thread: usize, run: usize) -> u64 {
    (thread * 1000 + run) as u64
}

/// Expected outputs of every (thread, run) input, computed one after another.
fn sequential(exe: &Executable, batch: usize, seq: usize) -> Vec<Vec<Outputs>> {
    (0..THREADS)
        .map(|t| {
            (0..RUNS)
                .map(|r| exe.run(&inputs(seed(t, r), batch, seq)).unwrap())
                .collect()
        })
        .collect()
}

/// 8 threads share the executable through an `Arc`, 20 runs each, all inputs
/// different; every result equals the single-threaded run's.
#[test]
fn arc_shared_executable_matches_sequential_runs() {
    let model = model();
    let exe = Arc::new(cpu(&model, 4));
    let want = Arc::new(sequential(&exe, 2, 16));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let exe = Arc::clone(&exe);
            let want = Arc::clone(&want);
            std::thread::spawn(move || {
                for r in 0..RUNS {
                    let got = exe.run(&inputs(seed(t, r), 2, 16)).unwrap();
                    assert_same(&format!("thread {t}, run {r}"), &got, &want[t][r]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a runner thread panicked");
    }
    // A one-thread executable computes the same (up to GEMM summation order).
    let one = cpu(&model, 1);
    let d = max_rel_diff(&one.run(&inputs(seed(3, 7), 2, 16)).unwrap(), &want[3][7]);
    assert!(d <= 1e-5, "1 vs 4 threads: relative difference {d}");
    // And so does the reference interpreter.
    let reference = model.compile(&Target::Reference).unwrap();
    let d = max_rel_diff(
        &want[3][7],
        &reference.run(&inputs(seed(3, 7), 2, 16)).unwrap(),
    );
    assert!(d <= 1e-4, "CPU vs reference: relative difference {d}");
}

/// The same through `std::thread::scope`, borrowing the executable; the
/// single-threaded pool (threads: 1) is shared as well.
#[test]
fn scoped_threads_borrowing_the_executable() {
    let model = model();
    for pool in [1, 3] {
        let exe = cpu(&model, pool);
        let want = sequential(&exe, 2, 16);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (exe, want) = (&exe, &want);
                s.spawn(move || {
                    // Each thread walks its runs in a different order.
                    for k in 0..RUNS {
                        let r = (k * 7 + t) % RUNS;
                        let got = exe.run(&inputs(seed(t, r), 2, 16)).unwrap();
                        assert_same(
                            &format!("pool {pool}, thread {t}, run {r}"),
                            &got,
                            &want[t][r],
                        );
                    }
                });
            }
        });
    }
}

/// Threads run different input shapes at once: the symbolic dims make the
/// executable compile one build per shape, concurrently requested. Results
/// equal single-threaded runs afterwards and the reference interpreter.
#[test]
fn different_shapes_from_different_threads() {
    let model = model();
    let exe = cpu(&model, 2);
    let shapes: [(usize, usize); THREADS] = [
        (1, 4),
        (2, 16),
        (3, 7),
        (1, 1),
        (2, 16),
        (4, 33),
        (1, 64),
        (3, 7),
    ];
    let runs = 6;
    let got: Vec<Vec<Outputs>> = std::thread::scope(|s| {
        let handles: Vec<_> = shapes
            .iter()
            .enumerate()
            .map(|(t, &(b, q))| {
                let exe = &exe;
                s.spawn(move || {
                    (0..runs)
                        .map(|r| exe.run(&inputs(seed(t, r), b, q)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reference = model.compile(&Target::Reference).unwrap();
    for (t, (&(b, q), runs)) in shapes.iter().zip(&got).enumerate() {
        for (r, out) in runs.iter().enumerate() {
            let feed = inputs(seed(t, r), b, q);
            let what = format!("thread {t}, shape [{b}, {q}], run {r}");
            assert_eq!(out[0].1.shape(), &[b, q, 64], "{what}");
            assert_same(&what, out, &exe.run(&feed).unwrap());
            let d = max_rel_diff(out, &reference.run(&feed).unwrap());
            assert!(
                d <= 1e-4,
                "{what}: CPU vs reference: relative difference {d}"
            );
        }
    }
}
