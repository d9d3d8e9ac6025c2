//! A BERT encoder as the TorchScript exporter writes it at opset 14: linear layers
//! as `MatMul` + `Add(bias, ·)`, SDPA-style scaling of Q and Kᵀ by `d^-¼`, additive
//! mask, softmax with the NaN guard, LayerNorm decomposed
//! (ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β) and erf GELU
//! (Div √2, Erf, Add 1, Mul x, Mul ½).

use kiln_ir::{BrickId, BrickKind, DType, Graph, Shape, TensorType, ValueId};

use super::{Builder, Init, SeqLen, Weights};

/// The shape of a BERT encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (`hidden` must be a multiple).
    pub heads: usize,
    /// FFN (intermediate) size.
    pub intermediate: usize,
    /// Sequence length (batch is 1).
    pub seq: SeqLen,
    /// LayerNorm epsilon.
    pub eps: f32,
}

impl BertConfig {
    /// BERT-base: hidden 768, 12 heads, FFN 3072, 128 tokens.
    pub fn base(layers: usize) -> BertConfig {
        BertConfig {
            layers,
            hidden: 768,
            heads: 12,
            intermediate: 3072,
            seq: SeqLen::Fixed(128),
            eps: 1e-12,
        }
    }

    /// A small encoder of the same structure (hidden 32, 4 heads, FFN 64, 8 tokens)
    /// for differential tests on the reference interpreter.
    pub fn tiny(layers: usize) -> BertConfig {
        BertConfig {
            layers,
            hidden: 32,
            heads: 4,
            intermediate: 64,
            seq: SeqLen::Fixed(8),
            eps: 1e-12,
        }
    }
}

/// A BERT-base-shaped encoder ([`BertConfig::base`]) with zero weights, over
/// `hidden_states: f32[1, 128, 768]` and an additive `mask: f32[1, 1, 1, 128]`.
pub fn bert_base_like(layers: usize) -> Graph {
    bert(&BertConfig::base(layers), Weights::Shared)
}

/// A BERT encoder of shape `cfg`: inputs `hidden_states: f32[1, S, hidden]` and
/// `mask: f32[1, 1, 1, S]` (added to the scores), output the last hidden state.
pub fn bert(cfg: &BertConfig, weights: Weights) -> Graph {
    let mut b = Builder::new("bert_synthetic", weights);
    let f32_ty = |dims: Vec<kiln_ir::Dim>| TensorType::new(DType::F32, Shape(dims));
    let s = cfg.seq.dim();
    let mut x = b.g.add_input(
        "hidden_states",
        f32_ty(vec![1.into(), s.clone(), cfg.hidden.into()]),
    );
    let mask =
        b.g.add_input("mask", f32_ty(vec![1.into(), 1.into(), 1.into(), s]));
    for l in 0..cfg.layers {
        x = layer(&mut b, cfg, l, x, mask);
    }
    b.g.outputs = vec![x];
    b.g
}

/// `Add(bias, MatMul(x, W))` as the exporter writes `nn.Linear`.
fn linear(
    b: &mut Builder,
    path: &str,
    module: &str,
    x: ValueId,
    dims: [usize; 2],
    brick: BrickId,
) -> ValueId {
    let w = b.weight(&format!("{module}.weight"), &dims, Init::Matrix);
    let bias = b.weight(&format!("{module}.bias"), &dims[1..], Init::Bias);
    let m = b.node(&format!("{path}/MatMul"), "MatMul", vec![x, w], Some(brick));
    b.node(&format!("{path}/Add"), "Add", vec![bias, m], Some(brick))
}

/// LayerNorm over the last axis, decomposed as TorchScript exports it below opset 17.
fn layer_norm(
    b: &mut Builder,
    cfg: &BertConfig,
    path: &str,
    module: &str,
    x: ValueId,
    brick: BrickId,
) -> ValueId {
    let br = Some(brick);
    let mean_op = "Reduce(kind: Mean, axes: [2], keepdims: true)";
    let mean = b.node(&format!("{path}/ReduceMean"), mean_op, vec![x], br);
    let d = b.node(&format!("{path}/Sub"), "Sub", vec![x, mean], br);
    let two = b.scalar(&format!("{path}/Constant_output_0"), 2.0);
    let sq = b.node(&format!("{path}/Pow"), "Pow", vec![d, two], br);
    let var = b.node(&format!("{path}/ReduceMean_1"), mean_op, vec![sq], br);
    let eps = b.scalar(&format!("{path}/Constant_1_output_0"), cfg.eps);
    let ve = b.node(&format!("{path}/Add"), "Add", vec![var, eps], br);
    let std = b.node(&format!("{path}/Sqrt"), "Sqrt", vec![ve], br);
    let n = b.node(&format!("{path}/Div"), "Div", vec![d, std], br);
    let gamma = b.weight(&format!("{module}.weight"), &[cfg.hidden], Init::Scale);
    let beta = b.weight(&format!("{module}.bias"), &[cfg.hidden], Init::Bias);
    let m = b.node(&format!("{path}/Mul"), "Mul", vec![n, gamma], br);
    b.node(&format!("{path}/Add_1"), "Add", vec![m, beta], br)
}

/// GELU in the erf form: `x · (erf(x / √2) + 1) · ½`.
fn gelu(b: &mut Builder, path: &str, x: ValueId, brick: BrickId) -> ValueId {
    let br = Some(brick);
    let sqrt2 = b.scalar(
        &format!("{path}/Constant_output_0"),
        std::f32::consts::SQRT_2,
    );
    let d = b.node(&format!("{path}/Div"), "Div", vec![x, sqrt2], br);
    let e = b.node(&format!("{path}/Erf"), "Erf", vec![d], br);
    let one = b.scalar(&format!("{path}/Constant_1_output_0"), 1.0);
    let a = b.node(&format!("{path}/Add"), "Add", vec![e, one], br);
    let m = b.node(&format!("{path}/Mul"), "Mul", vec![x, a], br);
    let half = b.scalar(&format!("{path}/Constant_2_output_0"), 0.5);
    b.node(&format!("{path}/Mul_1"), "Mul", vec![m, half], br)
}

/// One encoder layer (bricks and node names as the TorchScript export of
/// `BertModel` has them).
fn layer(b: &mut Builder, cfg: &BertConfig, l: usize, x: ValueId, mask: ValueId) -> ValueId {
    let (h, heads, ffn) = (cfg.hidden, cfg.heads, cfg.intermediate);
    let d = h / heads;
    let m = format!("encoder.layer.{l}");
    let p = format!("/encoder/layer.{l}");
    let layer = b.g.brick(&m, BrickKind::Layer);
    let attn = b.g.brick(&format!("{m}.attention"), BrickKind::Attention);
    let attn_norm =
        b.g.brick(&format!("{m}.attention.output.LayerNorm"), BrickKind::Norm);
    let inter = b.g.brick(&format!("{m}.intermediate"), BrickKind::Ffn);
    let out = b.g.brick(&format!("{m}.output"), BrickKind::Ffn);
    let out_norm = b.g.brick(&format!("{m}.output.LayerNorm"), BrickKind::Norm);
    let _ = layer;
    let a = Some(attn);
    let sp = format!("{p}/attention/self");
    let sm = format!("{m}.attention.self");
    // `[1, S, heads, d]`: TorchScript spells a fixed sequence out; a symbolic one is copied.
    let split: Vec<i64> = match cfg.seq {
        SeqLen::Fixed(n) => vec![1, n as i64, -1, d as i64],
        SeqLen::Symbolic => vec![0, 0, heads as i64, d as i64],
    };
    let heads_of = |b: &mut Builder, x: ValueId, k: usize, perm: &str| {
        let sfx = if k == 0 {
            String::new()
        } else {
            format!("_{k}")
        };
        let shape = b.ints(&format!("{sp}/Constant{sfx}_output_0"), &split);
        let r = b.node(
            &format!("{sp}/Reshape{sfx}"),
            "Reshape(allowzero: false)",
            vec![x, shape],
            a,
        );
        let t = b.node(
            &format!("{sp}/Transpose{sfx}"),
            &format!("Transpose(perm: {perm})"),
            vec![r],
            a,
        );
        t
    };
    let q = linear(
        b,
        &format!("{sp}/query"),
        &format!("{sm}.query"),
        x,
        [h, h],
        attn,
    );
    let k = linear(
        b,
        &format!("{sp}/key"),
        &format!("{sm}.key"),
        x,
        [h, h],
        attn,
    );
    let v = linear(
        b,
        &format!("{sp}/value"),
        &format!("{sm}.value"),
        x,
        [h, h],
        attn,
    );
    let q = heads_of(b, q, 0, "[0, 2, 1, 3]");
    let v = heads_of(b, v, 2, "[0, 2, 1, 3]");
    let k = heads_of(b, k, 1, "[0, 2, 3, 1]");
    // SDPA-style scaling: Q · d^-¼ and Kᵀ · d^-¼.
    let scale = (1.0 / (d as f32).sqrt()).sqrt();
    let s3 = b.scalar(&format!("{sp}/Constant_3_output_0"), scale);
    let q = b.node(&format!("{sp}/Mul"), "Mul", vec![q, s3], a);
    let s4 = b.scalar(&format!("{sp}/Constant_4_output_0"), scale);
    let k = b.node(&format!("{sp}/Mul_1"), "Mul", vec![k, s4], a);
    let s = b.node(&format!("{sp}/MatMul"), "MatMul", vec![q, k], a);
    let s = b.node(&format!("{sp}/Add"), "Add", vec![s, mask], a);
    let s = b.node(&format!("{sp}/Softmax"), "Softmax(axis: 3)", vec![s], a);
    let nan = b.node(&format!("{sp}/IsNaN"), "IsNaN", vec![s], a);
    let zero = b.f32_1(&format!("{sp}/Constant_7_output_0"), 0.0);
    let s = b.node(&format!("{sp}/Where_1"), "Where", vec![nan, zero, s], a);
    let c = b.node(&format!("{sp}/MatMul_1"), "MatMul", vec![s, v], a);
    let c = b.node(
        &format!("{sp}/Transpose_3"),
        "Transpose(perm: [0, 2, 1, 3])",
        vec![c],
        a,
    );
    let merge: Vec<i64> = match cfg.seq {
        SeqLen::Fixed(n) => vec![1, n as i64, -1],
        SeqLen::Symbolic => vec![0, 0, h as i64],
    };
    let merge = b.ints(&format!("{sp}/Constant_9_output_0"), &merge);
    let c = b.node(
        &format!("{sp}/Reshape_4"),
        "Reshape(allowzero: false)",
        vec![c, merge],
        a,
    );
    let op = format!("{p}/attention/output");
    let om = format!("{m}.attention.output");
    let o = linear(
        b,
        &format!("{op}/dense"),
        &format!("{om}.dense"),
        c,
        [h, h],
        attn,
    );
    let r = b.node(&format!("{op}/Add"), "Add", vec![o, x], a);
    let x = layer_norm(
        b,
        cfg,
        &format!("{op}/LayerNorm"),
        &format!("{om}.LayerNorm"),
        r,
        attn_norm,
    );
    let ip = format!("{p}/intermediate");
    let u = linear(
        b,
        &format!("{ip}/dense"),
        &format!("{m}.intermediate.dense"),
        x,
        [h, ffn],
        inter,
    );
    let u = gelu(b, &format!("{ip}/intermediate_act_fn"), u, inter);
    let fp = format!("{p}/output");
    let dn = linear(
        b,
        &format!("{fp}/dense"),
        &format!("{m}.output.dense"),
        u,
        [ffn, h],
        out,
    );
    let r = b.node(&format!("{fp}/Add"), "Add", vec![dn, x], Some(out));
    layer_norm(
        b,
        cfg,
        &format!("{fp}/LayerNorm"),
        &format!("{m}.output.LayerNorm"),
        r,
        out_norm,
    )
}
