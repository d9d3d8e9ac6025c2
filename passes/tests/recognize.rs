//! Composite-op recognition (`fusion` rules): on each fixed-shape ONNX fixture the
//! standard pipeline finds the expected softmax, norm, GELU and attention composites,
//! and the optimized graph computes what the source graph does on random inputs
//! (fixed seeds plus a fresh one). Decompositions the fixtures do not contain
//! (opset-17 exports keep LayerNorm and Softmax whole) are built here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_ir::op::CompositeOp;
use kiln_ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tolerance of the comparison: `|a − b| <= TOL · (1 + |a|)`.
const TOL: f64 = 1e-4;

/// How many nodes of each op name `g` has, counting the steps of fused regions
/// (a recognized composite may end up inside a region with its neighbours).
fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for n in g.nodes() {
        match &n.op {
            kiln_ir::Op::Fused(f) => {
                for s in &f.steps {
                    *m.entry(s.op.name()).or_insert(0) += 1;
                }
            }
            op => *m.entry(op.name()).or_insert(0) += 1,
        }
    }
    m
}

/// Optimizes `g` with the standard pipeline, checks the optimized graph against
/// `g` on random inputs and returns it.
fn optimize_and_compare(name: &str, g: &Graph) -> Graph {
    let (opt, report) = Pipeline::standard()
        .run(g, &TargetProfile::h200())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    kiln_ir::verify(&opt).unwrap_or_else(|e| panic!("{name}: optimized graph: {e}"));
    let fusion: BTreeMap<&String, &usize> = report
        .phases
        .iter()
        .filter(|p| p.name == "fusion")
        .flat_map(|p| p.applied.iter())
        .collect();
    println!(
        "{name}: {} → {} nodes, modelled {:.3e} → {:.3e} s, fusion rewrites {fusion:?}",
        g.nodes().len(),
        opt.nodes().len(),
        report.cost_before,
        report.cost_after
    );
    assert!(
        report.cost_after <= report.cost_before * (1.0 + 1e-9),
        "{name}: cost rose"
    );
    let fresh: u64 = rand::random();
    for seed in [7u64, fresh] {
        let inputs = random_inputs(g, &mut StdRng::seed_from_u64(seed), &InputDims::default());
        let want = interp::run(g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = interp::run(&opt, &inputs).unwrap_or_else(|e| panic!("{name}: optimized: {e}"));
        assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
    }
    opt
}

/// Asserts the op counts of `g` named in `want` (other ops unchecked).
fn assert_counts(name: &str, g: &Graph, want: &[(&str, usize)]) {
    let counts = op_counts(g);
    for &(op, n) in want {
        assert_eq!(
            counts.get(op).copied().unwrap_or(0),
            n,
            "{name}: {op} count; all ops: {counts:?}"
        );
    }
}

fn fixture(name: &str) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/onnx")
        .join(name)
        .join("model.onnx");
    kiln_frontends::onnx::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn bert_attention_gelu_and_layernorm() {
    for name in ["bert_torchscript_fixed", "bert_dynamo_fixed"] {
        let opt = optimize_and_compare(name, &fixture(name));
        assert_counts(
            name,
            &opt,
            &[
                ("Attention", 2),
                ("Gelu", 2),
                ("LayerNorm", 5),
                ("Softmax", 0),
                ("Erf", 0),
            ],
        );
        assert!(opt
            .nodes()
            .iter()
            .all(|n| !matches!(&n.op, Op::Composite(CompositeOp::Gelu { tanh: true }))));
    }
}

#[test]
fn gpt2_attention_and_tanh_gelu() {
    for name in ["gpt2_torchscript_fixed", "gpt2_dynamo_fixed"] {
        let opt = optimize_and_compare(name, &fixture(name));
        assert_counts(
            name,
            &opt,
            &[
                ("Attention", 2),
                ("Gelu", 2),
                ("LayerNorm", 5),
                ("Softmax", 0),
                ("Tanh", 0),
                ("Pow", 0),
            ],
        );
        assert!(opt
            .nodes()
            .iter()
            .all(|n| !matches!(&n.op, Op::Composite(CompositeOp::Gelu { tanh: false }))));
    }
}

#[test]
fn llama_gqa_attention_and_rmsnorm() {
    for name in ["llama_torchscript_fixed", "llama_dynamo_fixed"] {
        let g = fixture(name);
        let opt = optimize_and_compare(name, &g);
        // The K/V head repetition (unsqueeze, expand, reshape) goes into the GQA
        // attention; the mask's expand stays.
        let expands = op_counts(&g)["Expand"] - 4;
        assert_counts(
            name,
            &opt,
            &[
                ("Attention", 2),
                ("RmsNorm", 5),
                ("Softmax", 0),
                ("Pow", 0),
                ("Sqrt", 0),
                ("Expand", expands),
            ],
        );
    }
}

/// Builds small graphs node by node.
struct Builder {
    g: Graph,
    n: usize,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            g: Graph::new("decomposed"),
            n: 0,
        }
    }

    fn name(&mut self) -> String {
        self.n += 1;
        format!("v{}", self.n)
    }

    fn input(&mut self, dims: &[usize]) -> ValueId {
        let name = self.name();
        self.g
            .add_input(name, TensorType::new(DType::F32, Shape::known(dims)))
    }

    fn konst(&mut self, dims: &[usize], rng: &mut StdRng) -> ValueId {
        let n: usize = dims.iter().product();
        let t = Tensor::from_vec(
            dims.to_vec(),
            (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        );
        let name = self.name();
        self.g.add_const(name, t)
    }

    fn scalar(&mut self, v: f32) -> ValueId {
        let name = self.name();
        self.g.add_const(name, Tensor::from_vec(vec![], vec![v]))
    }

    fn op(&mut self, text: &str, inputs: Vec<ValueId>) -> ValueId {
        let (node, out) = (self.name(), self.name());
        let op = Op::from_text(text).unwrap();
        self.g.add_node(node, op, inputs, &[out], None).unwrap()[0]
    }
}

/// The TorchScript opset-16 layer norm: ReduceMean, Sub, Pow 2, ReduceMean, Add ε,
/// Sqrt, Div, Mul γ, Add β; with and without γ and β.
#[test]
fn opset16_layernorm_decomposition_becomes_layernorm() {
    let mut rng = StdRng::seed_from_u64(rand::random());
    for (with_gamma, with_beta) in [(true, true), (true, false), (false, false)] {
        let mut b = Builder::new();
        let x = b.input(&[2, 5, 8]);
        let mean = "Reduce(kind: Mean, axes: [2], keepdims: true)";
        let mu = b.op(mean, vec![x]);
        let d = b.op("Sub", vec![x, mu]);
        let two = b.scalar(2.0);
        let sq = b.op("Pow", vec![d, two]);
        let var = b.op(mean, vec![sq]);
        let eps = b.scalar(1e-5);
        let ve = b.op("Add", vec![var, eps]);
        let den = b.op("Sqrt", vec![ve]);
        let mut y = b.op("Div", vec![d, den]);
        if with_gamma {
            let g = b.konst(&[8], &mut rng);
            y = b.op("Mul", vec![y, g]);
        }
        if with_beta {
            let beta = b.konst(&[8], &mut rng);
            y = b.op("Add", vec![y, beta]);
        }
        b.g.outputs = vec![y];
        let name = format!("layernorm γ {with_gamma} β {with_beta}");
        let opt = optimize_and_compare(&name, &b.g);
        assert_counts(
            &name,
            &opt,
            &[
                ("LayerNorm", 1),
                ("Reduce", 0),
                ("Sqrt", 0),
                ("Add", 0),
                ("Mul", 0),
            ],
        );
        let ln = opt
            .nodes()
            .iter()
            .find(|n| n.op.name() == "LayerNorm")
            .unwrap();
        assert_eq!(ln.inputs.len(), 2 + with_beta as usize, "{name}");
        let eps = match ln.op {
            Op::Composite(CompositeOp::LayerNorm { axis: 2, epsilon }) => epsilon,
            _ => panic!("{}", ln.op.to_text()),
        };
        assert_eq!(eps, 1e-5, "{name}");
    }
}

/// exp(x − max x)/Σexp(x − max x) and exp(x)/Σexp(x) along a middle axis.
#[test]
fn softmax_decompositions_become_softmax() {
    for stable in [true, false] {
        let mut b = Builder::new();
        let x = b.input(&[3, 4, 6]);
        let u = if stable {
            let m = b.op("Reduce(kind: Max, axes: [1], keepdims: true)", vec![x]);
            b.op("Sub", vec![x, m])
        } else {
            x
        };
        let e = b.op("Exp", vec![u]);
        let s = b.op("Reduce(kind: Sum, axes: [1], keepdims: true)", vec![e]);
        let y = b.op("Div", vec![e, s]);
        b.g.outputs = vec![y];
        let name = format!("softmax (max subtracted: {stable})");
        let opt = optimize_and_compare(&name, &b.g);
        assert_counts(&name, &opt, &[("Softmax", 1), ("Exp", 0), ("Reduce", 0)]);
        assert_eq!(opt.nodes()[0].op.to_text(), "Softmax(axis: 1)");
    }
}

/// The dynamic-shape exports: the elementwise and norm rules work on symbolic dims
/// (attention needs known sizes, so it is not recognized there), and the optimized
/// graph still computes the same.
#[test]
fn dynamic_fixtures_attention_gelu_and_rmsnorm() {
    // Symbolic batch and sequence dims: attention is matched by symbol names (the
    // masks get their dims from `Range` over shape values).
    let expected: [(&str, &[(&str, usize)]); 6] = [
        (
            "bert_torchscript_dynamic",
            &[("Gelu", 2), ("Erf", 0), ("Attention", 2)],
        ),
        ("bert_dynamo_dynamic", &[("Gelu", 2), ("Attention", 2)]),
        (
            "gpt2_torchscript_dynamic",
            &[("Gelu", 2), ("Tanh", 0), ("Attention", 2)],
        ),
        (
            "gpt2_dynamo_dynamic",
            &[("Gelu", 2), ("Tanh", 0), ("Attention", 2)],
        ),
        ("llama_torchscript_dynamic", &[("RmsNorm", 5), ("Sqrt", 0)]),
        (
            "llama_dynamo_dynamic",
            &[("RmsNorm", 5), ("Sqrt", 0), ("Attention", 2)],
        ),
    ];
    for (name, want) in expected {
        let opt = optimize_and_compare(name, &fixture(name));
        assert_counts(name, &opt, want);
    }
}
