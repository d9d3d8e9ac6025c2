//! Deterministic compilation: the same model compiled twice, once on an idle
//! machine and once with every core busy, gives byte-identical artifacts (the
//! program, the object code and the folded weights). Only counts (e-nodes,
//! iterations) may decide what the optimizer keeps; wall-clock time may only
//! turn a runaway phase into an error (`kiln_passes::pipeline::PHASE_DEADLINE`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::kiln;

/// Threads of busy work per available core while the loaded compile runs.
const LOAD_THREADS_PER_CORE: usize = 2;

/// Compiles `model` with `dims` to `out`, returning the artifact's bytes.
fn compile(model: &str, dims: &[&str], out: &std::path::Path) -> Vec<u8> {
    let mut args = vec!["compile", model, "--target", "cpu", "--threads", "1"];
    for d in dims {
        args.extend(["--dim", d]);
    }
    args.extend(["-o", out.to_str().unwrap()]);
    let r = kiln(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::read(out).unwrap()
}

/// Runs `f` while every core is kept busy by spinning threads.
fn under_load<T>(f: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores * LOAD_THREADS_PER_CORE)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let out = f();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    out
}

fn assert_same_artifact(model: &str, dims: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let idle = compile(model, dims, &dir.path().join("idle.kiln"));
    let loaded = under_load(|| compile(model, dims, &dir.path().join("loaded.kiln")));
    assert!(
        idle == loaded,
        "{model}: artifacts differ ({} vs {} bytes; first difference at byte {:?})",
        idle.len(),
        loaded.len(),
        idle.iter().zip(&loaded).position(|(a, b)| a != b)
    );
}

#[test]
fn an_onnx_model_compiles_byte_identically_under_load() {
    assert_same_artifact("models/demo/tiny-bert.onnx", &["batch=2", "sequence=16"]);
}

#[test]
fn a_decoder_folder_compiles_byte_identically_under_load() {
    assert_same_artifact("tests/fixtures/hf/llama", &["batch=1", "seq=4"]);
}
