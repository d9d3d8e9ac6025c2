//! The LLVM chain end to end: an add kernel built with inkwell, optimized at
//! O3 for the host CPU and JIT-compiled, matches Rust on random inputs, and
//! the optimizer vectorized its loop.

use inkwell::context::Context;
use kiln_codegen::llvm::add::CompiledAdd;
use rand::Rng;

/// Lengths around typical vector widths (4, 8, 16 lanes, unrolled by up to
/// 4), including 0 and remainders that leave a scalar epilogue.
const LENGTHS: [usize; 10] = [0, 1, 3, 4, 7, 8, 17, 63, 100, 1031];

#[test]
fn jit_add_matches_rust() {
    let context = Context::create();
    let add = CompiledAdd::compile(&context).expect("compile add_f32");
    let seed: u64 = rand::rng().random();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    for &n in &LENGTHS {
        let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1e3..1e3)).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1e3..1e3)).collect();
        // A sentinel that a missed element would leave behind.
        let mut out = vec![f32::NAN; n];
        add.run(&a, &b, &mut out);
        for i in 0..n {
            // Addition is exact per element, vectorized or not.
            assert_eq!(
                out[i].to_bits(),
                (a[i] + b[i]).to_bits(),
                "seed {seed}, n {n}, element {i}"
            );
        }
    }
}

#[test]
fn jit_add_is_vectorized() {
    let context = Context::create();
    let add = CompiledAdd::compile(&context).expect("compile add_f32");
    let ir = add.optimized_ir();
    let vectorized = [2, 4, 8, 16]
        .iter()
        .any(|lanes| ir.contains(&format!("<{lanes} x float>")));
    assert!(vectorized, "no float vector type in optimized IR:\n{ir}");
}
