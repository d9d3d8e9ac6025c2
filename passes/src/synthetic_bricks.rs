//! Small synthetic layers with random weights for the brick rules: a linear layer
//! with a LoRA adapter, a tiny attention block (Q/K/V projections) and a dense-form
//! mixture-of-experts layer with one all-zero expert and one expert with dead
//! neurons. Names and [`BrickKind`]s follow the models they imitate (PEFT, Mixtral).

use kiln_ir::{BrickId, BrickKind, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The LoRA rank of [`lora_linear`].
pub const LORA_RANK: usize = 8;
/// The LoRA scaling (`alpha / r`) of [`lora_linear`].
pub const LORA_SCALING: f32 = 2.0;
/// Experts of [`moe_layer`].
pub const MOE_EXPERTS: usize = 4;
/// Experts each token is routed to in [`moe_layer`].
pub const MOE_TOP_K: usize = 2;
/// The expert of [`moe_layer`] whose weights are all zero.
pub const MOE_ZERO_EXPERT: usize = 3;
/// The expert of [`moe_layer`] with dead neurons (zero gate columns).
pub const MOE_PRUNABLE_EXPERT: usize = 1;
/// Dead neurons of expert [`MOE_PRUNABLE_EXPERT`].
pub const MOE_DEAD_NEURONS: usize = 3;

fn op(text: &str) -> Op {
    Op::from_text(text).expect("valid op text")
}

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

/// Uniform weights in `±1/√fan_in`, like PyTorch's default init.
fn weight(rng: &mut StdRng, dims: &[usize], fan_in: usize) -> Tensor {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = dims.iter().product();
    Tensor::from_vec(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
    )
}

/// Adds a one-output node named `name` (its value too) in `brick`.
fn node(g: &mut Graph, name: &str, text: &str, inputs: Vec<ValueId>, brick: BrickId) -> ValueId {
    g.add_node(
        name.to_string(),
        op(text),
        inputs,
        &[name.to_string()],
        Some(brick),
    )
    .unwrap_or_else(|e| panic!("synthetic node {name}: {e}"))[0]
}

/// `x·W + b` with named random constants `{name}.weight` `[k, n]`, `{name}.bias`.
fn linear(
    g: &mut Graph,
    rng: &mut StdRng,
    name: &str,
    x: ValueId,
    (k, n): (usize, usize),
    brick: BrickId,
) -> ValueId {
    let w = g.add_const(format!("{name}.weight"), weight(rng, &[k, n], k));
    let b = g.add_const(format!("{name}.bias"), weight(rng, &[n], k));
    let m = node(g, &format!("{name}.matmul"), "MatMul", vec![x, w], brick);
    node(g, &format!("{name}.add"), "Add", vec![m, b], brick)
}

/// A PEFT-style linear layer with a LoRA adapter over `x` `[1, tokens, hidden]`:
/// `(x·W + b) + ((x·A)·B)·s` with `A` `[hidden, r]`, `B` `[r, hidden]`, `r` =
/// [`LORA_RANK`], `s` = [`LORA_SCALING`]. Bricks: `layers.0.self_attn.q_proj`
/// (module) and its `lora` adapter.
pub fn lora_linear(seed: u64, tokens: usize, hidden: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new("lora_linear_synthetic");
    let x = g.add_input("hidden_states", f32s(&[1, tokens, hidden]));
    let p = "layers.0.self_attn.q_proj";
    let base = g.brick(p, BrickKind::Module);
    let lora = g.brick(&format!("{p}.lora"), BrickKind::Lora);
    let y = linear(
        &mut g,
        &mut rng,
        &format!("{p}.base_layer"),
        x,
        (hidden, hidden),
        base,
    );
    let a = g.add_const(
        format!("{p}.lora_A.weight"),
        weight(&mut rng, &[hidden, LORA_RANK], hidden),
    );
    let b = g.add_const(
        format!("{p}.lora_B.weight"),
        weight(&mut rng, &[LORA_RANK, hidden], LORA_RANK),
    );
    let s = g.add_const(format!("{p}.scaling"), Tensor::scalar(LORA_SCALING));
    let xa = node(&mut g, &format!("{p}.lora_A"), "MatMul", vec![x, a], lora);
    let xab = node(&mut g, &format!("{p}.lora_B"), "MatMul", vec![xa, b], lora);
    let scaled = node(
        &mut g,
        &format!("{p}.lora.scale"),
        "Mul",
        vec![xab, s],
        lora,
    );
    let out = node(
        &mut g,
        &format!("{p}.lora.add"),
        "Add",
        vec![y, scaled],
        lora,
    );
    g.outputs = vec![out];
    g
}

/// A tiny self-attention block over `x` `[1, tokens, hidden]` with `heads` heads:
/// Q, K, V projections (with biases), scaled dot-product attention written out as
/// exporters emit it, output projection. Bricks: `layers.0.attention`.
pub fn tiny_attention(seed: u64, tokens: usize, hidden: usize, heads: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new("tiny_attention_synthetic");
    let x = g.add_input("hidden_states", f32s(&[1, tokens, hidden]));
    let p = "layers.0.attention";
    let attn = g.brick(p, BrickKind::Attention);
    let d = hidden / heads;
    let split = g.add_const(
        "split_shape",
        Tensor::from_vec(vec![4], vec![1i64, tokens as i64, heads as i64, d as i64]),
    );
    let merge = g.add_const(
        "merge_shape",
        Tensor::from_vec(vec![3], vec![1i64, tokens as i64, hidden as i64]),
    );
    let scale = g.add_const("scale", Tensor::scalar((d as f32).sqrt()));
    let mut proj = |g: &mut Graph, name: &str, perm: &str| {
        let y = linear(
            g,
            &mut rng,
            &format!("{p}.{name}"),
            x,
            (hidden, hidden),
            attn,
        );
        let r = node(
            g,
            &format!("{p}.{name}.split"),
            "Reshape(allowzero: false)",
            vec![y, split],
            attn,
        );
        node(
            g,
            &format!("{p}.{name}.perm"),
            &format!("Transpose(perm: {perm})"),
            vec![r],
            attn,
        )
    };
    let q = proj(&mut g, "query", "[0, 2, 1, 3]");
    let k = proj(&mut g, "key", "[0, 2, 3, 1]");
    let v = proj(&mut g, "value", "[0, 2, 1, 3]");
    let s = node(&mut g, &format!("{p}.scores"), "MatMul", vec![q, k], attn);
    let s = node(&mut g, &format!("{p}.scaled"), "Div", vec![s, scale], attn);
    let s = node(
        &mut g,
        &format!("{p}.softmax"),
        "Softmax(axis: 3)",
        vec![s],
        attn,
    );
    let c = node(&mut g, &format!("{p}.context"), "MatMul", vec![s, v], attn);
    let c = node(
        &mut g,
        &format!("{p}.context.perm"),
        "Transpose(perm: [0, 2, 1, 3])",
        vec![c],
        attn,
    );
    let c = node(
        &mut g,
        &format!("{p}.context.merge"),
        "Reshape(allowzero: false)",
        vec![c, merge],
        attn,
    );
    let out = linear(
        &mut g,
        &mut rng,
        &format!("{p}.output"),
        c,
        (hidden, hidden),
        attn,
    );
    g.outputs = vec![out];
    g
}

/// A dense-form Mixtral-style MoE layer over `x` `[tokens, hidden]`: router
/// `softmax(x·W_r)`, top-[`MOE_TOP_K`] weights scattered back into a dense
/// `[tokens, experts]` gate matrix, [`MOE_EXPERTS`] SiLU-gated experts
/// `(silu(x·W₁) ⊙ (x·W₃))·W₂`, each weighted by its gate column and summed. Expert
/// [`MOE_ZERO_EXPERT`] has all-zero weights (it contributes nothing); expert
/// [`MOE_PRUNABLE_EXPERT`] has [`MOE_DEAD_NEURONS`] zero gate columns. Bricks:
/// `layers.0.block_sparse_moe` (moe), its `gate` (router) and `experts.{e}`
/// (expert).
pub fn moe_layer(seed: u64, tokens: usize, hidden: usize, ffn: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new("moe_layer_synthetic");
    let x = g.add_input("hidden_states", f32s(&[tokens, hidden]));
    let p = "layers.0.block_sparse_moe";
    let moe = g.brick(p, BrickKind::Moe);
    let router = g.brick(&format!("{p}.gate"), BrickKind::Router);
    let wr = g.add_const(
        format!("{p}.gate.weight"),
        weight(&mut rng, &[hidden, MOE_EXPERTS], hidden),
    );
    let logits = node(
        &mut g,
        &format!("{p}.gate.matmul"),
        "MatMul",
        vec![x, wr],
        router,
    );
    let probs = node(
        &mut g,
        &format!("{p}.gate.softmax"),
        "Softmax(axis: 1)",
        vec![logits],
        router,
    );
    let k = g.add_const("top_k", Tensor::from_vec(vec![1], vec![MOE_TOP_K as i64]));
    let top = g
        .add_node(
            format!("{p}.gate.topk"),
            op("TopK(axis: 1, largest: true, sorted: true)"),
            vec![probs, k],
            &[
                format!("{p}.gate.topk.values"),
                format!("{p}.gate.topk.indices"),
            ],
            Some(router),
        )
        .expect("top-k of the router probabilities");
    let dense = g.add_const(
        "gates_init",
        Tensor::zeros(DType::F32, vec![tokens, MOE_EXPERTS]),
    );
    let gates = node(
        &mut g,
        &format!("{p}.gate.scatter"),
        "ScatterElements(axis: 1, reduction: None)",
        vec![dense, top[1], top[0]],
        router,
    );
    let mut acc: Option<ValueId> = None;
    for e in 0..MOE_EXPERTS {
        let q = format!("{p}.experts.{e}");
        let expert = g.brick(&q, BrickKind::Expert);
        let w = |rng: &mut StdRng, dims: [usize; 2]| {
            if e == MOE_ZERO_EXPERT {
                Tensor::zeros(DType::F32, dims.to_vec())
            } else {
                weight(rng, &dims, dims[0])
            }
        };
        let mut t1 = w(&mut rng, [hidden, ffn]);
        if e == MOE_PRUNABLE_EXPERT {
            let mut v = t1.to_f32_vec();
            for r in 0..hidden {
                for c in 0..MOE_DEAD_NEURONS {
                    v[r * ffn + c * 2] = 0.0;
                }
            }
            t1 = Tensor::from_vec(vec![hidden, ffn], v);
        }
        let (t3, t2) = (w(&mut rng, [hidden, ffn]), w(&mut rng, [ffn, hidden]));
        let w1 = g.add_const(format!("{q}.w1.weight"), t1);
        let w3 = g.add_const(format!("{q}.w3.weight"), t3);
        let w2 = g.add_const(format!("{q}.w2.weight"), t2);
        let h1 = node(&mut g, &format!("{q}.w1"), "MatMul", vec![x, w1], expert);
        let sig = node(
            &mut g,
            &format!("{q}.act.sigmoid"),
            "Sigmoid",
            vec![h1],
            expert,
        );
        let act = node(&mut g, &format!("{q}.act"), "Mul", vec![h1, sig], expert);
        let h3 = node(&mut g, &format!("{q}.w3"), "MatMul", vec![x, w3], expert);
        let h = node(&mut g, &format!("{q}.gated"), "Mul", vec![act, h3], expert);
        let y = node(&mut g, &format!("{q}.w2"), "MatMul", vec![h, w2], expert);
        let idx = g.add_const(
            format!("{q}.index"),
            Tensor::from_vec(vec![1], vec![e as i64]),
        );
        let ge = node(
            &mut g,
            &format!("{q}.routing_weight"),
            "Gather(axis: 1)",
            vec![gates, idx],
            moe,
        );
        let weighted = node(&mut g, &format!("{q}.weighted"), "Mul", vec![ge, y], moe);
        acc = Some(match acc {
            None => weighted,
            Some(a) => node(&mut g, &format!("{q}.sum"), "Add", vec![a, weighted], moe),
        });
    }
    g.outputs = vec![acc.expect("at least one expert")];
    g
}
