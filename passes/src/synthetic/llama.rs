//! A Llama decoder as the TorchScript exporter writes it (the
//! `llama_torchscript_*` fixtures, node for node): embedding `Gather`, RMSNorm as
//! Cast/Pow/ReduceMean/Add/Sqrt/Div/Mul/Cast/Mul, rotary embeddings computed from
//! the positions and applied with Slice/Neg/Concat/Mul/Add, grouped-query attention
//! by Unsqueeze/Expand/Reshape, SDPA-style scaling, additive causal mask, softmax
//! with the NaN guard, SiLU as Sigmoid·Mul, gate/up/down MLP and the `lm_head`.

use kiln_ir::{BrickId, BrickKind, DType, Graph, Shape, TensorType, ValueId};

use super::{Builder, Init, SeqLen, Weights};

/// The `ends` the exporter gives an open-ended `Slice` (`i64::MAX`).
const SLICE_TO_END: i64 = i64::MAX;

/// The shape of a Llama decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads (`hidden` must be a multiple).
    pub heads: usize,
    /// Key/value heads (`heads` must be a multiple).
    pub kv_heads: usize,
    /// MLP (intermediate) size.
    pub intermediate: usize,
    /// Vocabulary size (embedding rows, `lm_head` columns).
    pub vocab: usize,
    /// Sequence length (batch is 1).
    pub seq: SeqLen,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// RoPE base θ.
    pub rope_theta: f32,
}

impl LlamaConfig {
    /// TinyLlama 1.1B: hidden 2048, 32 query heads, 4 KV heads (head dim 64), MLP
    /// 5632, vocabulary 32000, 128 tokens.
    pub fn tinyllama(layers: usize) -> LlamaConfig {
        LlamaConfig {
            layers,
            hidden: 2048,
            heads: 32,
            kv_heads: 4,
            intermediate: 5632,
            vocab: 32000,
            seq: SeqLen::Fixed(128),
            eps: 1e-5,
            rope_theta: 10000.0,
        }
    }

    /// A small decoder of the same structure (hidden 32, 4 query and 2 KV heads of
    /// dim 8, MLP 48, vocabulary 64, 8 tokens) for differential tests.
    pub fn tiny(layers: usize) -> LlamaConfig {
        LlamaConfig {
            layers,
            hidden: 32,
            heads: 4,
            kv_heads: 2,
            intermediate: 48,
            vocab: 64,
            seq: SeqLen::Fixed(8),
            eps: 1e-5,
            rope_theta: 10000.0,
        }
    }

    /// The dim of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// A TinyLlama-1.1B-shaped decoder ([`LlamaConfig::tinyllama`], 22 layers in the
/// real model) with zero weights.
pub fn tinyllama_like(layers: usize) -> Graph {
    llama(&LlamaConfig::tinyllama(layers), Weights::Shared)
}

/// A Llama decoder of shape `cfg`. Inputs: `input_ids: i64[1, S]`,
/// `position_ids: i64[1, S]` and `attention_mask: f32[1, 1, S, S]` (the prepared
/// causal mask, added to the scores); output `logits: f32[1, S, vocab]`.
pub fn llama(cfg: &LlamaConfig, weights: Weights) -> Graph {
    let mut b = Builder::new("llama_synthetic", weights);
    let s = cfg.seq.dim();
    let ids_ty = TensorType::new(DType::I64, Shape(vec![1.into(), s.clone()]));
    let ids = b.g.add_input("input_ids", ids_ty.clone());
    let positions = b.g.add_input("position_ids", ids_ty);
    let mask_ty = TensorType::new(DType::F32, Shape(vec![1.into(), 1.into(), s.clone(), s]));
    let mask = b.g.add_input("attention_mask", mask_ty);
    let embed = b.g.brick("model.embed_tokens", BrickKind::Embedding);
    let table = b.weight(
        "model.embed_tokens.weight",
        &[cfg.vocab, cfg.hidden],
        Init::Embedding,
    );
    let mut x = b.node(
        "/model/embed_tokens/Gather",
        "Gather(axis: 0)",
        vec![table, ids],
        Some(embed),
    );
    let (cos, sin) = rotary(&mut b, cfg, positions);
    for l in 0..cfg.layers {
        x = layer(&mut b, cfg, l, x, (cos, sin), mask);
    }
    let norm = b.g.brick("model.norm", BrickKind::Norm);
    let (_, h) = rms_norm(&mut b, cfg, "/model/norm", "model.norm", x, norm);
    let head = b.g.brick("lm_head", BrickKind::Head);
    let w = b.weight("lm_head.weight", &[cfg.hidden, cfg.vocab], Init::Matrix);
    let logits = b.node("/lm_head/MatMul", "MatMul", vec![h, w], Some(head));
    b.g.rename_value(logits, "logits".to_string());
    b.g.outputs = vec![logits];
    b.g
}

/// `cos` and `sin` `[1, S, d]` of the positions (the `rotary_emb` subgraph).
fn rotary(b: &mut Builder, cfg: &LlamaConfig, positions: ValueId) -> (ValueId, ValueId) {
    let d = cfg.head_dim();
    let p = "/model/rotary_emb";
    let u = b.node(
        &format!("{p}/Unsqueeze"),
        "Unsqueeze(axes: [2])",
        vec![positions],
        None,
    );
    let t = b.node(&format!("{p}/Cast"), "Cast(to: F32)", vec![u], None);
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f32 / d as f32))
        .collect();
    let inv = b.g.add_const(
        format!("{p}/Constant_1_output_0"),
        kiln_ir::Tensor::from_vec(vec![d / 2], inv_freq),
    );
    let f = b.node(&format!("{p}/Mul"), "Mul", vec![t, inv], None);
    let e = b.node(&format!("{p}/Concat"), "Concat(axis: 2)", vec![f, f], None);
    let trig = |b: &mut Builder, name: &str, k: usize| {
        let v = b.node(&format!("{p}/{name}"), name, vec![e], None);
        let one = b.scalar(&format!("{p}/Constant_{}_output_0", k + 1), 1.0);
        let v = b.node(&format!("{p}/Mul_{k}"), "Mul", vec![v, one], None);
        b.node(&format!("{p}/Cast_{k}"), "Cast(to: F32)", vec![v], None)
    };
    let cos = trig(b, "Cos", 1);
    let sin = trig(b, "Sin", 2);
    (cos, sin)
}

/// RMSNorm as exported: returns the input after its `Cast` (the residual the
/// exporter reuses) and the normalized, scaled output.
fn rms_norm(
    b: &mut Builder,
    cfg: &LlamaConfig,
    path: &str,
    module: &str,
    x: ValueId,
    brick: BrickId,
) -> (ValueId, ValueId) {
    let br = Some(brick);
    let c = b.node(&format!("{path}/Cast"), "Cast(to: F32)", vec![x], br);
    let two = b.scalar(&format!("{path}/Constant_output_0"), 2.0);
    let p = b.node(&format!("{path}/Pow"), "Pow", vec![c, two], br);
    let mean_op = "Reduce(kind: Mean, axes: [2], keepdims: true)";
    let m = b.node(&format!("{path}/ReduceMean"), mean_op, vec![p], br);
    let eps = b.scalar(&format!("{path}/Constant_1_output_0"), cfg.eps);
    let a = b.node(&format!("{path}/Add"), "Add", vec![m, eps], br);
    let r = b.node(&format!("{path}/Sqrt"), "Sqrt", vec![a], br);
    let one = b.scalar(&format!("{path}/Constant_2_output_0"), 1.0);
    let inv = b.node(&format!("{path}/Div"), "Div", vec![one, r], br);
    let n = b.node(&format!("{path}/Mul"), "Mul", vec![c, inv], br);
    let n = b.node(&format!("{path}/Cast_1"), "Cast(to: F32)", vec![n], br);
    let w = b.weight(&format!("{module}.weight"), &[cfg.hidden], Init::Scale);
    (c, b.node(&format!("{path}/Mul_1"), "Mul", vec![w, n], br))
}

/// Names `{path}/{op}` or `{path}/{op}_{k}` as the exporter numbers repeated ops.
struct Counter {
    path: String,
    seen: std::collections::HashMap<String, usize>,
}

impl Counter {
    fn name(&mut self, op: &str) -> String {
        let k = self.seen.entry(op.to_string()).or_insert(0);
        let name = if *k == 0 {
            format!("{}/{op}", self.path)
        } else {
            format!("{}/{op}_{k}", self.path)
        };
        *k += 1;
        name
    }
}

/// One decoder layer.
fn layer(
    b: &mut Builder,
    cfg: &LlamaConfig,
    l: usize,
    x: ValueId,
    (cos, sin): (ValueId, ValueId),
    mask: ValueId,
) -> ValueId {
    let (h, heads, kv, d) = (cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim());
    let m = format!("model.layers.{l}");
    let p = format!("/model/layers.{l}");
    let layer = b.g.brick(&m, BrickKind::Layer);
    let in_norm = b.g.brick(&format!("{m}.input_layernorm"), BrickKind::Norm);
    let attn = b.g.brick(&format!("{m}.self_attn"), BrickKind::Attention);
    let post_norm =
        b.g.brick(&format!("{m}.post_attention_layernorm"), BrickKind::Norm);
    let mlp = b.g.brick(&format!("{m}.mlp"), BrickKind::Ffn);
    let (residual, hn) = rms_norm(
        b,
        cfg,
        &format!("{p}/input_layernorm"),
        &format!("{m}.input_layernorm"),
        x,
        in_norm,
    );

    let a = Some(attn);
    let mut n = Counter {
        path: format!("{p}/self_attn"),
        seen: Default::default(),
    };
    let konst = |n: &mut Counter, b: &mut Builder, v: &[i64]| {
        let name = n.name("Constant");
        b.ints(&format!("{name}_output_0"), v)
    };
    let sym = cfg.seq == SeqLen::Symbolic;
    let s = match cfg.seq {
        SeqLen::Fixed(s) => s as i64,
        SeqLen::Symbolic => 1,
    };
    let proj = |b: &mut Builder, name: &str, x: ValueId, cols: usize| {
        let w = b.weight(
            &format!("{m}.self_attn.{name}.weight"),
            &[h, cols],
            Init::Matrix,
        );
        b.node(
            &format!("{p}/self_attn/{name}/MatMul"),
            "MatMul",
            vec![x, w],
            a,
        )
    };
    let q = proj(b, "q_proj", hn, h);
    let k = proj(b, "k_proj", hn, kv * d);
    let v = proj(b, "v_proj", hn, kv * d);
    let split = |n: &mut Counter, b: &mut Builder, x: ValueId, nh: usize| {
        let dims = if sym {
            vec![0, 0, nh as i64, d as i64]
        } else {
            vec![1, s, -1, d as i64]
        };
        let shape = konst(n, b, &dims);
        let r = b.node(
            &n.name("Reshape"),
            "Reshape(allowzero: false)",
            vec![x, shape],
            a,
        );
        b.node(
            &n.name("Transpose"),
            "Transpose(perm: [0, 2, 1, 3])",
            vec![r],
            a,
        )
    };
    let q = split(&mut n, b, q, heads);
    let k = split(&mut n, b, k, kv);
    let v = split(&mut n, b, v, kv);
    let cos = b.node(&n.name("Unsqueeze"), "Unsqueeze(axes: [1])", vec![cos], a);
    let sin = b.node(&n.name("Unsqueeze"), "Unsqueeze(axes: [1])", vec![sin], a);
    let half = (d / 2) as i64;
    let rope = |n: &mut Counter, b: &mut Builder, x: ValueId| {
        let xc = b.node(&n.name("Mul"), "Mul", vec![x, cos], a);
        let lo = [
            konst(n, b, &[3]),
            konst(n, b, &[0]),
            konst(n, b, &[half]),
            konst(n, b, &[1]),
        ];
        let x1 = b.node(
            &n.name("Slice"),
            "Slice",
            vec![x, lo[1], lo[2], lo[0], lo[3]],
            a,
        );
        let hi = [
            konst(n, b, &[3]),
            konst(n, b, &[half]),
            konst(n, b, &[SLICE_TO_END]),
            konst(n, b, &[1]),
        ];
        let x2 = b.node(
            &n.name("Slice"),
            "Slice",
            vec![x, hi[1], hi[2], hi[0], hi[3]],
            a,
        );
        let x2 = b.node(&n.name("Neg"), "Neg", vec![x2], a);
        let rot = b.node(&n.name("Concat"), "Concat(axis: 3)", vec![x2, x1], a);
        let rs = b.node(&n.name("Mul"), "Mul", vec![rot, sin], a);
        b.node(&n.name("Add"), "Add", vec![xc, rs], a)
    };
    let q = rope(&mut n, b, q);
    let k = rope(&mut n, b, k);
    // repeat_kv: [1, kv, S, d] → [1, kv, rep, S, d] → [1, heads, S, d].
    let rep = heads / kv;
    let seq_dim = cfg.seq.dim();
    let repeat = |n: &mut Counter, b: &mut Builder, x: ValueId| {
        let u = b.node(&n.name("Unsqueeze"), "Unsqueeze(axes: [2])", vec![x], a);
        let to = b.ints(
            &format!("{}_output_0", n.name("Where")),
            &[1, kv as i64, rep as i64, s, d as i64],
        );
        let e = b.node(&n.name("Expand"), "Expand", vec![u, to], a);
        let shape = konst(n, b, &[1, heads as i64, if sym { -1 } else { s }, d as i64]);
        let r = b.node(
            &n.name("Reshape"),
            "Reshape(allowzero: false)",
            vec![e, shape],
            a,
        );
        if sym {
            let ty = Shape(vec![1.into(), heads.into(), seq_dim.clone(), d.into()]);
            b.set_type(r, TensorType::new(DType::F32, ty));
        }
        r
    };
    let k = repeat(&mut n, b, k);
    let v = repeat(&mut n, b, v);
    let kt = b.node(
        &n.name("Transpose"),
        "Transpose(perm: [0, 1, 3, 2])",
        vec![k],
        a,
    );
    let scale = (1.0 / (d as f32).sqrt()).sqrt();
    let scaled = |n: &mut Counter, b: &mut Builder, x: ValueId| {
        let c = n.name("Constant");
        let c = b.scalar(&format!("{c}_output_0"), scale);
        b.node(&n.name("Mul"), "Mul", vec![x, c], a)
    };
    let qs = scaled(&mut n, b, q);
    let ks = scaled(&mut n, b, kt);
    let sc = b.node(&n.name("MatMul"), "MatMul", vec![qs, ks], a);
    let sc = b.node(&n.name("Add"), "Add", vec![sc, mask], a);
    let pr = b.node(&n.name("Softmax"), "Softmax(axis: 3)", vec![sc], a);
    let nan = b.node(&n.name("IsNaN"), "IsNaN", vec![pr], a);
    let c = n.name("Constant");
    let zero = b.f32_1(&format!("{c}_output_0"), 0.0);
    let pr = b.node(&n.name("Where"), "Where", vec![nan, zero, pr], a);
    let ctx = b.node(&n.name("MatMul"), "MatMul", vec![pr, v], a);
    let back = if sym {
        vec![0, heads as i64, 0, d as i64]
    } else {
        vec![1, -1, s, d as i64]
    };
    let back = konst(&mut n, b, &back);
    let ctx = b.node(
        &n.name("Reshape"),
        "Reshape(allowzero: false)",
        vec![ctx, back],
        a,
    );
    let ctx = b.node(
        &n.name("Transpose"),
        "Transpose(perm: [0, 2, 1, 3])",
        vec![ctx],
        a,
    );
    let merge = if sym {
        vec![0, 0, h as i64]
    } else {
        vec![1, s, -1]
    };
    let merge = konst(&mut n, b, &merge);
    let ctx = b.node(
        &n.name("Reshape"),
        "Reshape(allowzero: false)",
        vec![ctx, merge],
        a,
    );
    let o = proj(b, "o_proj", ctx, h);
    let x = b.node(&format!("{p}/Add"), "Add", vec![residual, o], Some(layer));

    let (residual, hn) = rms_norm(
        b,
        cfg,
        &format!("{p}/post_attention_layernorm"),
        &format!("{m}.post_attention_layernorm"),
        x,
        post_norm,
    );
    let f = Some(mlp);
    let mp = format!("{p}/mlp");
    let mw = |b: &mut Builder, name: &str, dims: [usize; 2]| {
        b.weight(&format!("{m}.mlp.{name}.weight"), &dims, Init::Matrix)
    };
    let ff = cfg.intermediate;
    let (wg, wu, wd) = (
        mw(b, "gate_proj", [h, ff]),
        mw(b, "up_proj", [h, ff]),
        mw(b, "down_proj", [ff, h]),
    );
    let g = b.node(&format!("{mp}/gate_proj/MatMul"), "MatMul", vec![hn, wg], f);
    let sg = b.node(&format!("{mp}/act_fn/Sigmoid"), "Sigmoid", vec![g], f);
    let act = b.node(&format!("{mp}/act_fn/Mul"), "Mul", vec![g, sg], f);
    let u = b.node(&format!("{mp}/up_proj/MatMul"), "MatMul", vec![hn, wu], f);
    let gu = b.node(&format!("{mp}/Mul"), "Mul", vec![act, u], f);
    let dn = b.node(&format!("{mp}/down_proj/MatMul"), "MatMul", vec![gu, wd], f);
    b.node(
        &format!("{p}/Add_1"),
        "Add",
        vec![residual, dn],
        Some(layer),
    )
}
