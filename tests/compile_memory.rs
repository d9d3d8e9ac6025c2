//! A long-running process that compiles many different models keeps a flat memory
//! footprint: nothing the optimizer keys e-nodes by (op texts, value names) or the
//! CPU target builds outlives the compile.
//!
//! Each model is a different random graph (shapes, op chains, attributes and value
//! names all drawn from its seed): recompiling one model would not show a table
//! that grows with every new name.
//!
//! Two measures: the bytes live on Rust's heap, counted exactly by a wrapping
//! global allocator (a table that keeps a few bytes per compile shows up here),
//! and the resident set, which also sees what LLVM allocates in C++.

use kiln::{Model, Target};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Models compiled in all.
const MODELS: usize = 200;
/// Models compiled before the baseline is read (allocator pools and caches warm up).
const WARM_UP: usize = 20;
/// Most the resident set may grow from the baseline to the end, as a fraction.
const MAX_GROWTH: f64 = 0.10;

/// Most the live Rust heap may grow per compile after the warm-up, in bytes. The
/// interned op texts and value names this test was written against kept about
/// 5 KiB per compile; nothing should stay.
const MAX_HEAP_GROWTH_PER_COMPILE: isize = 256;

/// The system allocator, counting the bytes currently allocated through it.
struct CountingAllocator;

/// Bytes allocated and not yet freed, over all threads.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is only
// arithmetic on the sizes the caller passes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Resident bytes of this process (`/proc/self/statm`, second field, in pages).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in statm");
    pages * 4096
}

fn op(text: &str) -> Op {
    Op::from_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn random_tensor(rng: &mut StdRng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
}

/// Builds nodes with exporter-like names unique to one model.
struct Builder {
    g: Graph,
    prefix: String,
    n: usize,
}

impl Builder {
    fn node(&mut self, what: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
        self.n += 1;
        let name = format!("{}/{what}_{}", self.prefix, self.n);
        self.g
            .add_node(
                name.clone(),
                op,
                inputs,
                &[format!("{name}_output_0")],
                None,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"))[0]
    }

    fn weight(&mut self, what: &str, t: Tensor) -> ValueId {
        self.n += 1;
        let name = format!("{}/{what}.weight_{}", self.prefix, self.n);
        self.g.add_const(name, t)
    }
}

/// Model `seed`: a chain of linear layers with random activations, scalings,
/// softmaxes and residuals over `[batch, features]`.
fn random_model(seed: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed as u64);
    let mut b = Builder {
        g: Graph::new(format!("random_{seed}")),
        prefix: format!("/model_{seed}/encoder"),
        n: 0,
    };
    let batch = rng.random_range(1..=4usize);
    let mut f = rng.random_range(4..=24usize);
    let mut x = b.g.add_input(
        format!("input_{seed}"),
        TensorType::new(DType::F32, Shape::known(&[batch, f])),
    );
    for layer in 0..rng.random_range(2..=5) {
        b.prefix = format!("/model_{seed}/encoder/layers.{layer}");
        let f2 = rng.random_range(4..=24usize);
        let w = b.weight("dense", random_tensor(&mut rng, &[f, f2]));
        let mut y = b.node("MatMul", op("MatMul"), vec![x, w]);
        let bias = b.weight("dense.bias", random_tensor(&mut rng, &[f2]));
        y = b.node("Add", op("Add"), vec![y, bias]);
        let act = match rng.random_range(0..5) {
            0 => "Relu".to_string(),
            1 => "Tanh".to_string(),
            2 => "Gelu(tanh: false)".to_string(),
            3 => format!("LeakyRelu(alpha: {})", rng.random_range(0.01f32..0.5)),
            _ => format!("Elu(alpha: {})", rng.random_range(0.5f32..2.0)),
        };
        y = b.node("act", op(&act), vec![y]);
        if rng.random_bool(0.5) {
            let s = b.weight(
                "scale",
                Tensor::from_vec(vec![1], vec![rng.random_range(0.5f32..2.0)]),
            );
            y = b.node("Mul", op("Mul"), vec![y, s]);
        }
        if f2 == f && rng.random_bool(0.5) {
            y = b.node("residual", op("Add"), vec![y, x]);
        }
        if rng.random_bool(0.3) {
            y = b.node("Softmax", op("Softmax(axis: 1)"), vec![y]);
        }
        x = y;
        f = f2;
    }
    b.g.outputs = vec![x];
    b.g
}

#[test]
fn compiling_many_different_models_keeps_memory_flat() {
    let mut baseline = 0;
    let mut heap_baseline = 0;
    for seed in 0..MODELS {
        let model = Model::from_graph(random_model(seed));
        let exe = model
            .compile(&Target::cpu())
            .unwrap_or_else(|e| panic!("model {seed}: {e}"));
        drop(exe);
        drop(model);
        if seed + 1 == WARM_UP {
            baseline = rss_bytes();
            heap_baseline = LIVE_BYTES.load(Ordering::Relaxed);
        }
    }
    let heap_end = LIVE_BYTES.load(Ordering::Relaxed);
    let end = rss_bytes();
    let measured = (MODELS - WARM_UP) as isize;
    let heap_per_compile = (heap_end - heap_baseline) / measured;
    eprintln!(
        "live Rust heap after {WARM_UP} compiles: {heap_baseline} B, after {MODELS}: \
         {heap_end} B ({heap_per_compile} B per compile)"
    );
    let growth = end as f64 / baseline as f64 - 1.0;
    eprintln!(
        "RSS after {WARM_UP} compiles: {} KiB, after {MODELS}: {} KiB ({:+.1}%)",
        baseline / 1024,
        end / 1024,
        growth * 100.0
    );
    assert!(
        heap_per_compile <= MAX_HEAP_GROWTH_PER_COMPILE,
        "the live Rust heap grew {heap_per_compile} B per compile from compile {WARM_UP} \
         to {MODELS} ({heap_baseline} → {heap_end} B): something outlives a compile"
    );
    assert!(
        growth <= MAX_GROWTH,
        "RSS grew {:.1}% from compile {WARM_UP} to {MODELS} ({} → {} KiB)",
        growth * 100.0,
        baseline / 1024,
        end / 1024
    );
}
