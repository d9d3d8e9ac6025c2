//! Each composite op equals its decomposition into primitive ops (the equality the
//! optimizer will rely on), checked on the reference interpreter with random inputs:
//! fixed seeds plus one fresh, printed seed per run.

use kiln::ir::op::{BinaryOp, CompositeOp, NnOp, QkOutput, ReduceKind, ReduceOp, UnaryOp};
use kiln::ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Allowed difference between a composite op and its decomposition.
const TOL: f64 = 1e-5;

fn seeds() -> Vec<u64> {
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    vec![1, 2, fresh]
}

fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect(),
    )
}

/// A small builder over `Graph` for writing decompositions.
struct B {
    g: Graph,
    n: usize,
}

impl B {
    fn new() -> B {
        B {
            g: Graph::new("t"),
            n: 0,
        }
    }
    fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
        self.g
            .add_input(name, TensorType::new(DType::F32, Shape::known(shape)))
    }
    fn konst(&mut self, v: f32) -> ValueId {
        self.n += 1;
        self.g.add_const(format!("c{}", self.n), Tensor::scalar(v))
    }
    fn op(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        self.n += 1;
        let name = format!("v{}", self.n);
        self.g
            .add_node(name.clone(), op, inputs.to_vec(), &[name], None)
            .unwrap()[0]
    }
    fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Binary(op), &[a, b])
    }
    fn un(&mut self, op: UnaryOp, a: ValueId) -> ValueId {
        self.op(Op::Unary(op), &[a])
    }
    fn reduce(&mut self, kind: ReduceKind, axes: Vec<usize>, a: ValueId) -> ValueId {
        self.op(
            Op::Reduce(ReduceOp::Reduce {
                kind,
                axes,
                keepdims: true,
            }),
            &[a],
        )
    }
    fn finish(mut self, out: ValueId) -> Graph {
        self.g.outputs.push(out);
        kiln::ir::verify(&self.g).unwrap();
        self.g
    }
}

fn run(g: &Graph, inputs: &[(&str, Tensor)]) -> Vec<f64> {
    let named: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    interp::run(g, &named).unwrap()[0].to_f64_vec()
}

fn assert_same(what: &str, seed: u64, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= TOL * (1.0 + y.abs()),
            "{what} (seed {seed}): element {i}: composite {x}, decomposition {y}"
        );
    }
}

#[test]
fn softmax_is_exp_over_sum_of_exp() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = random(&mut rng, &[3, 5, 7]);
        let mut c = B::new();
        let i = c.input("x", &[3, 5, 7]);
        let y = c.op(Op::Composite(CompositeOp::Softmax { axis: 1 }), &[i]);
        let composite = c.finish(y);
        let mut d = B::new();
        let i = d.input("x", &[3, 5, 7]);
        let m = d.reduce(ReduceKind::Max, vec![1], i);
        let s = d.bin(BinaryOp::Sub, i, m);
        let e = d.un(UnaryOp::Exp, s);
        let z = d.reduce(ReduceKind::Sum, vec![1], e);
        let y = d.bin(BinaryOp::Div, e, z);
        let decomposed = d.finish(y);
        assert_same(
            "softmax",
            seed,
            &run(&composite, &[("x", x.clone())]),
            &run(&decomposed, &[("x", x)]),
        );
    }
}

#[test]
fn layer_norm_is_centered_over_root_variance() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let (x, g, b) = (
            random(&mut rng, &[2, 4, 16]),
            random(&mut rng, &[16]),
            random(&mut rng, &[16]),
        );
        let mut c = B::new();
        let (i, gi, bi) = (
            c.input("x", &[2, 4, 16]),
            c.input("g", &[16]),
            c.input("b", &[16]),
        );
        let y = c.op(
            Op::Composite(CompositeOp::LayerNorm {
                axis: 2,
                epsilon: 1e-5,
            }),
            &[i, gi, bi],
        );
        let composite = c.finish(y);
        let mut d = B::new();
        let (i, gi, bi) = (
            d.input("x", &[2, 4, 16]),
            d.input("g", &[16]),
            d.input("b", &[16]),
        );
        let mean = d.reduce(ReduceKind::Mean, vec![2], i);
        let xc = d.bin(BinaryOp::Sub, i, mean);
        let sq = d.bin(BinaryOp::Mul, xc, xc);
        let var = d.reduce(ReduceKind::Mean, vec![2], sq);
        let eps = d.konst(1e-5);
        let ve = d.bin(BinaryOp::Add, var, eps);
        let sd = d.un(UnaryOp::Sqrt, ve);
        let n = d.bin(BinaryOp::Div, xc, sd);
        let s = d.bin(BinaryOp::Mul, n, gi);
        let y = d.bin(BinaryOp::Add, s, bi);
        let decomposed = d.finish(y);
        let inputs = [("x", x), ("g", g), ("b", b)];
        assert_same(
            "layer norm",
            seed,
            &run(&composite, &inputs),
            &run(&decomposed, &inputs),
        );
    }
}

#[test]
fn rms_norm_is_x_over_root_mean_square() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let (x, g) = (random(&mut rng, &[3, 32]), random(&mut rng, &[32]));
        let mut c = B::new();
        let (i, gi) = (c.input("x", &[3, 32]), c.input("g", &[32]));
        let y = c.op(
            Op::Composite(CompositeOp::RmsNorm {
                axis: 1,
                epsilon: 1e-6,
            }),
            &[i, gi],
        );
        let composite = c.finish(y);
        let mut d = B::new();
        let (i, gi) = (d.input("x", &[3, 32]), d.input("g", &[32]));
        let sq = d.bin(BinaryOp::Mul, i, i);
        let ms = d.reduce(ReduceKind::Mean, vec![1], sq);
        let eps = d.konst(1e-6);
        let me = d.bin(BinaryOp::Add, ms, eps);
        let r = d.un(UnaryOp::Sqrt, me);
        let n = d.bin(BinaryOp::Div, i, r);
        let y = d.bin(BinaryOp::Mul, n, gi);
        let decomposed = d.finish(y);
        let inputs = [("x", x), ("g", g)];
        assert_same(
            "rms norm",
            seed,
            &run(&composite, &inputs),
            &run(&decomposed, &inputs),
        );
    }
}

#[test]
fn gelu_is_x_times_normal_cdf_in_both_forms() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = random(&mut rng, &[64]);
        for tanh in [false, true] {
            let mut c = B::new();
            let i = c.input("x", &[64]);
            let y = c.op(Op::Composite(CompositeOp::Gelu { tanh }), &[i]);
            let composite = c.finish(y);
            let mut d = B::new();
            let i = d.input("x", &[64]);
            let inner = if tanh {
                // tanh(√(2/π)·(x + 0.044715·x³))
                let x3 = d.bin(BinaryOp::Mul, i, i);
                let x3 = d.bin(BinaryOp::Mul, x3, i);
                let k = d.konst(0.044715);
                let t = d.bin(BinaryOp::Mul, x3, k);
                let t = d.bin(BinaryOp::Add, i, t);
                let s = d.konst((2.0f64 / std::f64::consts::PI).sqrt() as f32);
                let t = d.bin(BinaryOp::Mul, t, s);
                d.un(UnaryOp::Tanh, t)
            } else {
                // erf(x/√2)
                let s = d.konst(std::f32::consts::FRAC_1_SQRT_2);
                let t = d.bin(BinaryOp::Mul, i, s);
                d.un(UnaryOp::Erf, t)
            };
            let one = d.konst(1.0);
            let half = d.konst(0.5);
            let p = d.bin(BinaryOp::Add, inner, one);
            let p = d.bin(BinaryOp::Mul, p, half);
            let y = d.bin(BinaryOp::Mul, i, p);
            let decomposed = d.finish(y);
            let inputs = [("x", x.clone())];
            assert_same(
                &format!("gelu tanh={tanh}"),
                seed,
                &run(&composite, &inputs),
                &run(&decomposed, &inputs),
            );
        }
    }
}

#[test]
fn attention_is_softmax_of_scaled_scores_times_values() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let (q, k, v) = (
            random(&mut rng, &[2, 4, 5, 8]),
            random(&mut rng, &[2, 4, 6, 8]),
            random(&mut rng, &[2, 4, 6, 8]),
        );
        let mut c = B::new();
        let (qi, ki, vi) = (
            c.input("q", &[2, 4, 5, 8]),
            c.input("k", &[2, 4, 6, 8]),
            c.input("v", &[2, 4, 6, 8]),
        );
        let attention = CompositeOp::Attention {
            scale: None,
            causal: false,
            softcap: None,
            mask: false,
            past: false,
            kv_lengths: false,
            qk_output: QkOutput::Raw,
        };
        let y = c.op(Op::Composite(attention), &[qi, ki, vi]);
        let composite = c.finish(y);
        let mut d = B::new();
        let (qi, ki, vi) = (
            d.input("q", &[2, 4, 5, 8]),
            d.input("k", &[2, 4, 6, 8]),
            d.input("v", &[2, 4, 6, 8]),
        );
        let kt = d.op(
            Op::Layout(kiln::ir::op::LayoutOp::Transpose {
                perm: vec![0, 1, 3, 2],
            }),
            &[ki],
        );
        let s = d.op(Op::Nn(NnOp::MatMul), &[qi, kt]);
        let scale = d.konst(1.0 / 8f32.sqrt());
        let s = d.bin(BinaryOp::Mul, s, scale);
        let p = d.op(Op::Composite(CompositeOp::Softmax { axis: 3 }), &[s]);
        let y = d.op(Op::Nn(NnOp::MatMul), &[p, vi]);
        let decomposed = d.finish(y);
        let inputs = [("q", q), ("k", k), ("v", v)];
        assert_same(
            "attention",
            seed,
            &run(&composite, &inputs),
            &run(&decomposed, &inputs),
        );
    }
}
