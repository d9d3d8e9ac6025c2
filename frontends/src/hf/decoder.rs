//! Decoder-only language models: the Llama family (Llama 2/3, TinyLlama, SmolLM,
//! Mistral, Qwen2, with the Mixtral and Qwen2-MoE mixtures of experts) and GPT-2.
//!
//! Every decoder is built twice over the same weights, with two interfaces
//! ([`Interface`]):
//!
//! - **Forward** (what `kiln run`, `kiln inspect` and the Python package see):
//!   transformers' `model(input_ids, attention_mask, position_ids, use_cache=False)`.
//!   Inputs `input_ids`, `attention_mask` (1 = token, 0 = padding) and
//!   `position_ids`, all i64 `[batch, seq]`; output `logits` f32
//!   `[batch, seq, vocab]`. The graph builds the bool mask
//!   `[batch, 1, seq, seq]` itself, as transformers' `create_causal_mask` does:
//!   key j is seen by query i when `j ≤ i`, `attention_mask[j] ≠ 0` and (with a
//!   sliding window `w`) `i − j < w`. A query row that sees no key at all (a
//!   left-padding position) attends to nothing and its attention output is 0,
//!   which is what transformers' default `sdpa` attention returns for it
//!   (`eager` returns the mean of the values instead).
//! - **KvCache** (what the generator drives), for a cache of fixed capacity
//!   (see [`DecoderInfo`]): inputs `input_ids` i64 `[batch, seq]`, `position_ids`
//!   i64 `[batch, seq]`, `attention_mask` bool `[batch, 1, seq, cache + seq]`
//!   (true where query i may see key j: the cache slots come first, then the new
//!   tokens), and per layer `l` `past_key.l` / `past_value.l` f32
//!   `[batch, kv_heads, cache, head_dim]`; outputs `logits` f32
//!   `[batch, seq, vocab]` and per layer `present_key.l` / `present_value.l` f32
//!   `[batch, kv_heads, seq, head_dim]`, the new tokens' keys (rotated) and
//!   values, which the caller writes into its cache. Attention is
//!   `Attention(q, concat(past, new), mask)`: with the mask supplied by the
//!   caller, a prefill (cache empty, causal mask) and a decode step (one token,
//!   the filled cache slots visible) are the same graph at different shapes.

use kiln_ir::limits::ROPE_TABLE_MAX_ELEMENTS;
use kiln_ir::op::{
    BinaryOp, CompositeOp, LayoutOp, QkOutput, ReduceKind, ReduceOp, ScatterReduction, UnaryOp,
};
use kiln_ir::{BrickKind, DType, Dim, Op, Tensor, ValueId};

use super::builder::{Bias, Builder, WeightSource};
use super::config::Config;
use super::lora::AdapterSet;
use super::rope::Rope;
use super::HfError;

/// Positions a Llama-family config without `max_position_embeddings` covers.
const DEFAULT_MAX_POSITIONS: usize = 2048;

/// The decoder families kiln builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `LlamaForCausalLM` (and TinyLlama, SmolLM, Llama 3 with its RoPE scaling).
    Llama,
    /// `MistralForCausalLM`.
    Mistral,
    /// `Qwen2ForCausalLM` (biases on q, k and v).
    Qwen2,
    /// `MixtralForCausalLM` (top-k mixture of SwiGLU experts).
    Mixtral,
    /// `Qwen2MoeForCausalLM` (experts plus a gated shared expert).
    Qwen2Moe,
    /// `GPT2LMHeadModel`.
    Gpt2,
}

impl Family {
    /// The family of an `architectures` entry.
    pub fn of(arch: &str) -> Option<Family> {
        Some(match arch {
            "LlamaForCausalLM" | "llama" => Family::Llama,
            "MistralForCausalLM" | "mistral" => Family::Mistral,
            "Qwen2ForCausalLM" | "qwen2" => Family::Qwen2,
            "MixtralForCausalLM" | "mixtral" => Family::Mixtral,
            "Qwen2MoeForCausalLM" | "qwen2_moe" => Family::Qwen2Moe,
            "GPT2LMHeadModel" | "gpt2" => Family::Gpt2,
            _ => return None,
        })
    }
}

/// What a caller needs to drive a decoder graph with a KV cache.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderInfo {
    /// The family.
    pub family: Family,
    /// Number of layers (one `past_key.l`/`past_value.l` pair each).
    pub layers: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Vocabulary size (the last dim of `logits`).
    pub vocab_size: usize,
    /// The longest sequence the position embeddings cover.
    pub max_positions: usize,
    /// Keys further back than this are not attended to (Mistral's sliding window).
    pub sliding_window: Option<usize>,
    /// The config's beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// The config's end-of-sequence tokens.
    pub eos_token_ids: Vec<u32>,
    /// The dtype the weights are stored in (`f32`, `f16`, `bf16`).
    pub weight_dtype: DType,
}

/// Names of the per-layer cache inputs and outputs.
pub fn past_key(l: usize) -> String {
    format!("past_key.{l}")
}
/// See [`past_key`].
pub fn past_value(l: usize) -> String {
    format!("past_value.{l}")
}
/// See [`past_key`].
pub fn present_key(l: usize) -> String {
    format!("present_key.{l}")
}
/// See [`past_key`].
pub fn present_value(l: usize) -> String {
    format!("present_value.{l}")
}

/// The interface a decoder graph is built with (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    /// transformers' forward with `use_cache=False`: `input_ids`, an i64
    /// `attention_mask [batch, seq]`, `position_ids` → `logits`.
    #[default]
    Forward,
    /// The fixed-capacity KV-cache interface the generator drives.
    KvCache,
}

/// A decoder built with both interfaces over the same weights.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// [`Interface::Forward`].
    pub forward: kiln_ir::Graph,
    /// [`Interface::KvCache`].
    pub kv_cache: kiln_ir::Graph,
    /// What drives them.
    pub info: DecoderInfo,
}

/// Builds the decoder graphs of `family` from `cfg` and `weights`, one per
/// [`Interface`] (the weights and rotary tables are shared, not copied).
pub fn build(
    family: Family,
    cfg: &Config,
    weights: &dyn WeightSource,
    adapters: &AdapterSet,
) -> Result<Decoder, HfError> {
    let (forward, kv_cache, info) = if family == Family::Gpt2 {
        let (forward, info) = build_gpt2(cfg, weights, adapters, Interface::Forward)?;
        let (kv_cache, _) = build_gpt2(cfg, weights, adapters, Interface::KvCache)?;
        (forward, kv_cache, info)
    } else {
        let p = LlamaParams::read(family, cfg)?;
        let tables = p.rope.tables(p.max_pos);
        let (forward, info) = build_llama(&p, cfg, &tables, weights, adapters, Interface::Forward)?;
        let (kv_cache, _) = build_llama(&p, cfg, &tables, weights, adapters, Interface::KvCache)?;
        (forward, kv_cache, info)
    };
    Ok(Decoder {
        forward,
        kv_cache,
        info,
    })
}

/// What a caller of the forward graph may leave out, and the ranges of its
/// inputs' values: token ids index the embedding, positions the rotary tables
/// or position embeddings.
pub fn input_rules(info: &DecoderInfo) -> Vec<super::InputRule> {
    use super::{Bound, InputDefault, InputRule};
    let mut rules = vec![
        InputRule {
            name: "input_ids".into(),
            default: None,
            below: Some(Bound {
                limit: info.vocab_size,
                what: format!("the vocabulary has {} tokens", info.vocab_size),
            }),
            max_len: None,
        },
        InputRule {
            name: "attention_mask".into(),
            default: Some(InputDefault::Ones),
            below: None,
            max_len: None,
        },
        InputRule {
            name: "position_ids".into(),
            default: Some(InputDefault::Positions),
            below: Some(Bound {
                limit: info.max_positions,
                what: format!("the model has {} positions", info.max_positions),
            }),
            max_len: None,
        },
    ];
    if info.family == Family::Gpt2 {
        rules.push(InputRule {
            name: "token_type_ids".into(),
            default: Some(InputDefault::Absent),
            below: Some(Bound {
                limit: info.vocab_size,
                what: format!(
                    "GPT-2's token types index its {} token embeddings",
                    info.vocab_size
                ),
            }),
            max_len: None,
        });
    }
    rules
}

/// A Llama-family graph with `interface`.
fn build_llama(
    p: &LlamaParams,
    cfg: &Config,
    tables: &(Tensor, Tensor),
    weights: &dyn WeightSource,
    adapters: &AdapterSet,
    interface: Interface,
) -> Result<(kiln_ir::Graph, DecoderInfo), HfError> {
    let family = p.family;
    let mut b = Builder::new(&cfg.architecture()?, weights, adapters);
    let mut io = Io::declare(
        &mut b,
        interface,
        p.layers,
        p.kv_heads,
        p.head_dim,
        p.sliding_window,
    )?;

    let prev = b.enter("model.embed_tokens", BrickKind::Embedding);
    let embed_name = "model.embed_tokens.weight";
    let embed = b.raw_weight(embed_name, &[p.vocab, p.hidden])?;
    let weight_dtype = b.graph.value(embed).ty.dtype;
    let x = b.op(
        Op::Layout(LayoutOp::Gather { axis: 0 }),
        &[embed, io.input_ids],
    )?;
    let mut x = b.to_compute(x)?;
    b.leave(prev);

    let cos = b.konst("rope.cos", tables.0.clone());
    let sin = b.konst("rope.sin", tables.1.clone());
    for l in 0..p.layers {
        let layer = format!("model.layers.{l}");
        let prev = b.enter(&layer, BrickKind::Layer);
        let n = rms_norm(
            &mut b,
            x,
            &format!("{layer}.input_layernorm"),
            p.hidden,
            p.eps,
        )?;
        let attn = format!("{layer}.self_attn");
        let prev_attn = b.enter(&attn, BrickKind::Attention);
        let qkv_bias = if p.qkv_bias {
            Bias::Required
        } else {
            Bias::None
        };
        let (hq, hkv, hd) = (p.heads, p.kv_heads, p.head_dim);
        let q = b.linear(n, &format!("{attn}.q_proj"), p.hidden, hq * hd, qkv_bias)?;
        let k = b.linear(n, &format!("{attn}.k_proj"), p.hidden, hkv * hd, qkv_bias)?;
        let v = b.linear(n, &format!("{attn}.v_proj"), p.hidden, hkv * hd, qkv_bias)?;
        let q = split_heads(&mut b, q, hq, hd)?;
        let k = split_heads(&mut b, k, hkv, hd)?;
        let v = split_heads(&mut b, v, hkv, hd)?;
        let q = rotary(&mut b, q, cos, sin, io.position_ids)?;
        let k = rotary(&mut b, k, cos, sin, io.position_ids)?;
        let y = attend(&mut b, &mut io, l, q, k, v, None)?;
        let y = merge_heads(&mut b, y, hq * hd)?;
        let o_bias = if p.o_bias { Bias::Required } else { Bias::None };
        let y = b.linear(y, &format!("{attn}.o_proj"), hq * hd, p.hidden, o_bias)?;
        b.leave(prev_attn);
        let h = b.bin(BinaryOp::Add, x, y)?;

        let n = rms_norm(
            &mut b,
            h,
            &format!("{layer}.post_attention_layernorm"),
            p.hidden,
            p.eps,
        )?;
        let y = match &p.moe {
            Some(moe) if moe.is_sparse_layer(l) => moe_block(&mut b, p, moe, n, &layer)?,
            _ => {
                let mlp = format!("{layer}.mlp");
                let prev = b.enter(&mlp, BrickKind::Ffn);
                let y = swiglu(&mut b, n, &mlp, p.hidden, p.intermediate, p.mlp_bias)?;
                b.leave(prev);
                y
            }
        };
        x = b.bin(BinaryOp::Add, h, y)?;
        b.leave(prev);
    }
    let x = rms_norm(&mut b, x, "model.norm", p.hidden, p.eps)?;
    let prev = b.enter("lm_head", BrickKind::Head);
    let head = if p.tie && !b.has("lm_head.weight") {
        embed_name
    } else {
        "lm_head.weight"
    };
    let w = b.weight(head, &[p.vocab, p.hidden])?;
    let wt = b.transpose2(w)?;
    let logits = b.matmul(x, wt)?;
    b.output(logits, "logits");
    b.leave(prev);
    io.finish(&mut b);

    let info = DecoderInfo {
        family,
        layers: p.layers,
        kv_heads: p.kv_heads,
        head_dim: p.head_dim,
        vocab_size: p.vocab,
        max_positions: p.max_pos,
        sliding_window: p.sliding_window,
        bos_token_id: cfg.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: cfg.token_ids("eos_token_id")?,
        weight_dtype,
    };
    Ok((b.finish()?, info))
}

/// A decoder graph's inputs, and what its attention reads from them.
struct Io {
    input_ids: ValueId,
    position_ids: ValueId,
    /// The bool mask `[batch, 1, seq, keys]` attention takes.
    mask: ValueId,
    /// Forward: 1.0 where a query row sees some key, 0.0 where it sees none
    /// (`[batch, 1, seq, 1]`), multiplied into the attention output.
    seen: Option<ValueId>,
    /// KvCache: each layer's `past_key.l` / `past_value.l` (empty for Forward).
    past: Vec<(ValueId, ValueId)>,
    present: Vec<(Option<ValueId>, Option<ValueId>)>,
}

impl Io {
    fn declare(
        b: &mut Builder,
        interface: Interface,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        sliding_window: Option<usize>,
    ) -> Result<Io, HfError> {
        let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
        let input_ids = b.input("input_ids", DType::I64, vec![batch.clone(), seq.clone()]);
        if interface == Interface::Forward {
            let padding = b.input(
                "attention_mask",
                DType::I64,
                vec![batch.clone(), seq.clone()],
            );
            let position_ids = b.input("position_ids", DType::I64, vec![batch, seq]);
            let (mask, seen) = forward_mask(b, input_ids, padding, sliding_window)?;
            return Ok(Io {
                input_ids,
                position_ids,
                mask,
                seen: Some(seen),
                past: Vec::new(),
                present: vec![(None, None); layers],
            });
        }
        let position_ids = b.input("position_ids", DType::I64, vec![batch.clone(), seq.clone()]);
        let mask = b.input(
            "attention_mask",
            DType::Bool,
            vec![batch.clone(), Dim::Known(1), seq, Dim::sym("total")],
        );
        let past = (0..layers)
            .map(|l| {
                let dims = vec![
                    batch.clone(),
                    Dim::Known(kv_heads),
                    Dim::sym("cache"),
                    Dim::Known(head_dim),
                ];
                (
                    b.input(&past_key(l), DType::F32, dims.clone()),
                    b.input(&past_value(l), DType::F32, dims),
                )
            })
            .collect();
        Ok(Io {
            input_ids,
            position_ids,
            mask,
            seen: None,
            past,
            present: vec![(None, None); layers],
        })
    }

    /// Adds the cache outputs after `logits` (KvCache only).
    fn finish(&self, b: &mut Builder) {
        if self.past.is_empty() {
            return;
        }
        for (l, &(k, v)) in self.present.iter().enumerate() {
            let (k, v) = (
                k.expect("every layer attends"),
                v.expect("every layer attends"),
            );
            b.output(k, &present_key(l));
            b.output(v, &present_value(l));
        }
    }
}

/// The forward graph's attention mask from the i64 padding mask `[batch, seq]`,
/// built from ops so that it holds at any `seq`: `[batch, 1, seq, seq]`, true
/// where key j ≤ query i, `padding[j] ≠ 0` and (sliding window `w`) `i − j < w`;
/// rows that would see nothing see everything instead (no NaN), and `seen`
/// (`[batch, 1, seq, 1]`, 0.0 on those rows, else 1.0) zeroes their output.
fn forward_mask(
    b: &mut Builder,
    input_ids: ValueId,
    padding: ValueId,
    sliding_window: Option<usize>,
) -> Result<(ValueId, ValueId), HfError> {
    let prev = b.enter("attention_mask", BrickKind::Module);
    // Indices 0..seq per row: an exclusive running sum of ones shaped like the ids
    // (keeps the symbolic dims, unlike Range).
    let same = b.bin(BinaryOp::Equal, input_ids, input_ids)?;
    let ones = b.op(Op::Layout(LayoutOp::cast(DType::I64)), &[same])?;
    let idx = b.op(
        Op::Reduce(ReduceOp::CumSum {
            axis: 1,
            exclusive: true,
            reverse: false,
        }),
        &[ones],
    )?;
    let query = b.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 3] }), &[idx])?;
    let key = b.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 2] }), &[idx])?;
    // [batch, 1, seq, seq]
    let mut mask = b.bin(BinaryOp::LessOrEqual, key, query)?;
    if let Some(w) = sliding_window {
        let back = b.bin(BinaryOp::Sub, query, key)?;
        let w = b.konst("sliding_window", Tensor::scalar(w as i64));
        let near = b.bin(BinaryOp::Less, back, w)?;
        mask = b.bin(BinaryOp::And, mask, near)?;
    }
    let keep = b.op(Op::Layout(LayoutOp::cast(DType::Bool)), &[padding])?;
    let keep = b.op(
        Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 2] }),
        &[keep],
    )?;
    let mask = b.bin(BinaryOp::And, mask, keep)?;
    let as_float = b.op(Op::Layout(LayoutOp::cast(DType::F32)), &[mask])?;
    let seen = b.op(
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::Max,
            axes: vec![3],
            keepdims: true,
        }),
        &[as_float],
    )?;
    let zero = b.scalar(0.0);
    let blind = b.bin(BinaryOp::Equal, seen, zero)?;
    let mask = b.bin(BinaryOp::Or, mask, blind)?;
    b.leave(prev);
    Ok((mask, seen))
}

/// `[b, s, h·d]` → `[b, h, s, d]`.
fn split_heads(b: &mut Builder, x: ValueId, heads: usize, dim: usize) -> Result<ValueId, HfError> {
    let x = b.reshape(x, &[0, 0, heads as i64, dim as i64])?;
    b.transpose(x, &[0, 2, 1, 3])
}

/// `[b, h, s, d]` → `[b, s, h·d]`.
fn merge_heads(b: &mut Builder, x: ValueId, width: usize) -> Result<ValueId, HfError> {
    let x = b.transpose(x, &[0, 2, 1, 3])?;
    b.reshape(x, &[0, 0, width as i64])
}

/// Rotates the halves of each head by the tables at `position_ids`.
fn rotary(
    b: &mut Builder,
    x: ValueId,
    cos: ValueId,
    sin: ValueId,
    positions: ValueId,
) -> Result<ValueId, HfError> {
    b.op(
        Op::Composite(CompositeOp::RotaryEmbedding {
            interleaved: false,
            rotary_dim: None,
            num_heads: None,
            position_ids: true,
        }),
        &[x, cos, sin, positions],
    )
}

/// Attention of layer `l` over its cache followed by the new keys; records the new
/// keys and values as the layer's `present` outputs.
fn attend(
    b: &mut Builder,
    io: &mut Io,
    l: usize,
    q: ValueId,
    k: ValueId,
    v: ValueId,
    scale: Option<f32>,
) -> Result<ValueId, HfError> {
    let (k_all, v_all) = match io.past.get(l) {
        Some(&(pk, pv)) => {
            let cat = Op::Layout(LayoutOp::Concat { axis: 2 });
            (b.op(cat.clone(), &[pk, k])?, b.op(cat, &[pv, v])?)
        }
        None => (k, v),
    };
    let y = b.op(
        Op::Composite(CompositeOp::Attention {
            scale,
            causal: false,
            softcap: None,
            mask: true,
            past: false,
            kv_lengths: false,
            qk_output: QkOutput::Raw,
        }),
        &[q, k_all, v_all, io.mask],
    )?;
    let y = match io.seen {
        Some(seen) => b.bin(BinaryOp::Mul, y, seen)?,
        None => y,
    };
    io.present[l] = (Some(k), Some(v));
    Ok(y)
}

/// `x / √(mean(x²) + ε) · weight` over the last axis.
fn rms_norm(
    b: &mut Builder,
    x: ValueId,
    module: &str,
    hidden: usize,
    eps: f32,
) -> Result<ValueId, HfError> {
    let prev = b.enter(module, BrickKind::Norm);
    let w = b.weight(&format!("{module}.weight"), &[hidden])?;
    let y = b.op(
        Op::Composite(CompositeOp::RmsNorm {
            axis: 2,
            epsilon: eps,
        }),
        &[x, w],
    );
    b.leave(prev);
    y
}

/// `silu(x)` = x·σ(x).
fn silu(b: &mut Builder, x: ValueId) -> Result<ValueId, HfError> {
    let s = b.un(UnaryOp::Sigmoid, x)?;
    b.bin(BinaryOp::Mul, x, s)
}

/// `down(silu(gate(x)) ⊙ up(x))`, the gated FFN of module `mlp`.
fn swiglu(
    b: &mut Builder,
    x: ValueId,
    mlp: &str,
    hidden: usize,
    inter: usize,
    bias: bool,
) -> Result<ValueId, HfError> {
    let bias = if bias { Bias::Required } else { Bias::None };
    let g = b.linear(x, &format!("{mlp}.gate_proj"), hidden, inter, bias)?;
    let u = b.linear(x, &format!("{mlp}.up_proj"), hidden, inter, bias)?;
    let g = silu(b, g)?;
    let h = b.bin(BinaryOp::Mul, g, u)?;
    b.linear(h, &format!("{mlp}.down_proj"), inter, hidden, bias)
}

/// A SwiGLU expert from explicit weights (`gate`, `up`: `[inter, hidden]`, `down`:
/// `[hidden, inter]`).
fn expert_ffn(
    b: &mut Builder,
    x: ValueId,
    gate: ValueId,
    up: ValueId,
    down: ValueId,
) -> Result<ValueId, HfError> {
    let gt = b.transpose2(gate)?;
    let ut = b.transpose2(up)?;
    let dt = b.transpose2(down)?;
    let g = b.matmul(x, gt)?;
    let u = b.matmul(x, ut)?;
    let g = silu(b, g)?;
    let h = b.bin(BinaryOp::Mul, g, u)?;
    b.matmul(h, dt)
}

/// A mixture-of-experts block: `Σₑ wₑ(x)·expertₑ(x)` where `w` is the softmax of the
/// router's logits kept at the top k experts (renormalized for Mixtral and where
/// `norm_topk_prob`), plus Qwen2-MoE's shared expert gated by `σ(gate(x))`.
///
/// Every expert runs on every token and the routing weight zeroes the others'
/// contributions: exact, and simple to schedule; a sparse gather is a later kernel.
fn moe_block(
    b: &mut Builder,
    p: &LlamaParams,
    moe: &MoeParams,
    x: ValueId,
    layer: &str,
) -> Result<ValueId, HfError> {
    let module =
        if p.family == Family::Mixtral && b.has(&format!("{layer}.block_sparse_moe.gate.weight")) {
            format!("{layer}.block_sparse_moe")
        } else {
            format!("{layer}.mlp")
        };
    let prev = b.enter(&module, BrickKind::Moe);
    let (e_count, hidden, inter) = (moe.experts, p.hidden, moe.intermediate);

    let prev_router = b.enter(&format!("{module}.gate"), BrickKind::Router);
    let logits = b.linear(x, &format!("{module}.gate"), hidden, e_count, Bias::None)?;
    let probs = b.op(Op::Composite(CompositeOp::Softmax { axis: 2 }), &[logits])?;
    let k = b.ints(&[moe.top_k as i64]);
    let top = b.op_n(
        Op::Reduce(ReduceOp::TopK {
            axis: 2,
            largest: true,
            sorted: true,
        }),
        &[probs, k],
        2,
    )?;
    let (mut values, indices) = (top[0], top[1]);
    if moe.normalize {
        let sum = b.op(
            Op::Reduce(ReduceOp::Reduce {
                kind: ReduceKind::Sum,
                axes: vec![2],
                keepdims: true,
            }),
            &[values],
        )?;
        values = b.bin(BinaryOp::Div, values, sum)?;
    }
    let zero = b.scalar(0.0);
    let zeros = b.bin(BinaryOp::Mul, probs, zero)?;
    let weights = b.op(
        Op::Layout(LayoutOp::ScatterElements {
            axis: 2,
            reduction: ScatterReduction::None,
        }),
        &[zeros, indices, values],
    )?;
    b.leave(prev_router);

    let fused_gate_up = format!("{module}.experts.gate_up_proj");
    let fused = b.has(&fused_gate_up);
    let (gate_up_all, down_all) = if fused {
        (
            Some(weight_tensor(
                b,
                &fused_gate_up,
                &[e_count, 2 * inter, hidden],
            )?),
            Some(weight_tensor(
                b,
                &format!("{module}.experts.down_proj"),
                &[e_count, hidden, inter],
            )?),
        )
    } else {
        (None, None)
    };
    let mut out: Option<ValueId> = None;
    for e in 0..e_count {
        let expert = format!("{module}.experts.{e}");
        let prev_e = b.enter(&expert, BrickKind::Expert);
        let y = if let (Some(gu), Some(dn)) = (&gate_up_all, &down_all) {
            let gate = slice_rows(gu, e, 0, inter, hidden);
            let up = slice_rows(gu, e, inter, inter, hidden);
            let down = slice_rows(dn, e, 0, hidden, inter);
            let gate = b.konst(&format!("{expert}.gate_proj.weight"), gate);
            let up = b.konst(&format!("{expert}.up_proj.weight"), up);
            let down = b.konst(&format!("{expert}.down_proj.weight"), down);
            let (gate, up, down) = (b.to_compute(gate)?, b.to_compute(up)?, b.to_compute(down)?);
            expert_ffn(b, x, gate, up, down)?
        } else if module.ends_with("block_sparse_moe") {
            // Mixtral's original names: w1 = gate, w3 = up, w2 = down.
            let g = b.linear(x, &format!("{expert}.w1"), hidden, inter, Bias::None)?;
            let u = b.linear(x, &format!("{expert}.w3"), hidden, inter, Bias::None)?;
            let g = silu(b, g)?;
            let h = b.bin(BinaryOp::Mul, g, u)?;
            b.linear(h, &format!("{expert}.w2"), inter, hidden, Bias::None)?
        } else {
            swiglu(b, x, &expert, hidden, inter, false)?
        };
        let idx = b.konst("expert_index", Tensor::from_vec(vec![1], vec![e as i64]));
        let w = b.op(Op::Layout(LayoutOp::Gather { axis: 2 }), &[weights, idx])?;
        let contribution = b.bin(BinaryOp::Mul, y, w)?;
        out = Some(match out {
            None => contribution,
            Some(acc) => b.bin(BinaryOp::Add, acc, contribution)?,
        });
        b.leave(prev_e);
    }
    let mut out = out.expect("at least one expert");
    if let Some(shared) = moe.shared_intermediate {
        let se = format!("{module}.shared_expert");
        let prev_s = b.enter(&se, BrickKind::Expert);
        let y = swiglu(b, x, &se, hidden, shared, false)?;
        let gate = b.linear(
            x,
            &format!("{module}.shared_expert_gate"),
            hidden,
            1,
            Bias::None,
        )?;
        let gate = b.un(UnaryOp::Sigmoid, gate)?;
        let y = b.bin(BinaryOp::Mul, y, gate)?;
        out = b.bin(BinaryOp::Add, out, y)?;
        b.leave(prev_s);
    }
    b.leave(prev);
    Ok(out)
}

/// The tensor `name` of shape `shape` (for fused expert weights, sliced per expert).
fn weight_tensor(b: &mut Builder, name: &str, shape: &[usize]) -> Result<Tensor, HfError> {
    let v = b.raw_weight(name, shape)?;
    Ok(b.graph.constant(v).expect("a weight is a constant").clone())
}

/// Rows `start..start + rows` of matrix `e` of a `[E, R, cols]` tensor, as a view.
fn slice_rows(t: &Tensor, e: usize, start: usize, rows: usize, cols: usize) -> Tensor {
    let per_matrix = t.shape()[1] * cols;
    let size = t.dtype().size();
    let begin = (e * per_matrix + start * cols) * size;
    let bytes = t.bytes().slice(begin..begin + rows * cols * size);
    Tensor::from_bytes(t.dtype(), vec![rows, cols], bytes)
        .expect("the slice has rows·cols elements")
}

/// The mixture-of-experts part of a config.
#[derive(Clone, Debug)]
struct MoeParams {
    experts: usize,
    top_k: usize,
    intermediate: usize,
    normalize: bool,
    shared_intermediate: Option<usize>,
    sparse_step: usize,
    mlp_only_layers: Vec<usize>,
}

impl MoeParams {
    fn is_sparse_layer(&self, l: usize) -> bool {
        !self.mlp_only_layers.contains(&l)
            && self.experts > 0
            && (l + 1).is_multiple_of(self.sparse_step)
    }
}

/// The Llama-family hyperparameters.
#[derive(Clone, Debug)]
struct LlamaParams {
    family: Family,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    vocab: usize,
    max_pos: usize,
    eps: f32,
    rope: Rope,
    tie: bool,
    qkv_bias: bool,
    o_bias: bool,
    mlp_bias: bool,
    sliding_window: Option<usize>,
    moe: Option<MoeParams>,
}

impl LlamaParams {
    fn read(family: Family, cfg: &Config) -> Result<LlamaParams, HfError> {
        let hidden = cfg.usize("hidden_size")?;
        let heads = cfg.usize("num_attention_heads")?;
        let kv_heads = cfg.opt_usize("num_key_value_heads")?.unwrap_or(heads);
        cfg.check(
            heads > 0 && kv_heads > 0,
            "attention head counts must be positive",
        )?;
        cfg.check(
            heads % kv_heads == 0,
            format!("num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})"),
        )?;
        let head_dim = match cfg.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                cfg.check(
                    hidden % heads == 0,
                    format!(
                        "hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})"
                    ),
                )?;
                hidden / heads
            }
        };
        let act = cfg.opt_str("hidden_act")?.unwrap_or_else(|| "silu".into());
        cfg.check(
            act == "silu" || act == "swish",
            format!("hidden_act {act:?} is not supported for {family:?} (expected silu)"),
        )?;
        let attention_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 | Family::Qwen2Moe => (true, false),
            Family::Llama => (attention_bias, attention_bias),
            _ => (false, false),
        };
        let sliding_window = match family {
            Family::Mistral | Family::Mixtral => cfg.opt_usize("sliding_window")?,
            // Qwen2 configs carry a window but only use it with use_sliding_window.
            Family::Qwen2 | Family::Qwen2Moe => {
                if cfg.opt_bool("use_sliding_window")?.unwrap_or(false) {
                    cfg.opt_usize("sliding_window")?
                } else {
                    None
                }
            }
            _ => None,
        };
        let moe = match family {
            Family::Mixtral => Some(MoeParams {
                experts: cfg.usize("num_local_experts")?,
                top_k: cfg.usize("num_experts_per_tok")?,
                intermediate: cfg.usize("intermediate_size")?,
                normalize: true,
                shared_intermediate: None,
                sparse_step: 1,
                mlp_only_layers: Vec::new(),
            }),
            Family::Qwen2Moe => Some(MoeParams {
                experts: cfg.usize("num_experts")?,
                top_k: cfg.usize("num_experts_per_tok")?,
                intermediate: cfg.usize("moe_intermediate_size")?,
                normalize: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
                shared_intermediate: cfg
                    .opt_usize("shared_expert_intermediate_size")?
                    .filter(|&s| s > 0),
                sparse_step: cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1),
                mlp_only_layers: cfg
                    .get("mlp_only_layers")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_u64().map(|u| u as usize))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        if let Some(m) = &moe {
            cfg.check(
                m.top_k >= 1 && m.top_k <= m.experts,
                format!(
                    "num_experts_per_tok ({}) must be between 1 and the number of experts ({})",
                    m.top_k, m.experts
                ),
            )?;
        }
        let intermediate = match (&moe, family) {
            (Some(_), Family::Mixtral) => 0,
            _ => cfg.usize("intermediate_size")?,
        };
        let rope = Rope::from_config(cfg, head_dim)?;
        Ok(LlamaParams {
            family,
            hidden,
            layers: cfg.usize("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            vocab: cfg.usize("vocab_size")?,
            max_pos: rope_positions(cfg, &rope)?,
            eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            rope,
            tie: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
            sliding_window,
            moe,
        })
    }
}

/// The positions a decoder's rotary tables cover: the declared context
/// (`max_position_embeddings`, 2048 when absent), capped so that one table holds
/// at most [`ROPE_TABLE_MAX_ELEMENTS`] values. The tables are computed at load,
/// and a file states its context length for free.
fn rope_positions(cfg: &Config, rope: &Rope) -> Result<usize, HfError> {
    let declared = cfg
        .opt_usize("max_position_embeddings")?
        .unwrap_or(DEFAULT_MAX_POSITIONS);
    let half = (rope.dim / 2).max(1);
    let fits = ROPE_TABLE_MAX_ELEMENTS / half;
    cfg.check(
        fits > 0,
        format!(
            "a rotary dim of {} is over the {ROPE_TABLE_MAX_ELEMENTS} values one \
             rotary table may hold (ROPE_TABLE_MAX_ELEMENTS)",
            rope.dim
        ),
    )?;
    if declared > fits {
        tracing::warn!(
            "the model declares {declared} positions; kiln builds rotary tables for \
             {fits} (ROPE_TABLE_MAX_ELEMENTS = {ROPE_TABLE_MAX_ELEMENTS} values per table) \
             and refuses to generate past them"
        );
    }
    Ok(declared.min(fits))
}

/// GPT-2: learned positions, pre-norm blocks with a fused QKV `Conv1D`, a GELU MLP,
/// and the head tied to the token embedding.
/// GPT-2's `token_type_ids`: transformers adds their token embeddings
/// (`wte`, the same table as the tokens) when the caller gives them. Left out
/// ([`super::InputDefault::Absent`]), they are filled with −1, which adds
/// nothing: `x + where(t ≥ 0, wte[max(t, 0)], 0)`.
fn add_token_types(b: &mut Builder, x: ValueId, wte: ValueId) -> Result<ValueId, HfError> {
    let types = b.input(
        "token_type_ids",
        DType::I64,
        vec![Dim::sym("batch"), Dim::sym("seq")],
    );
    let zero = b.ints(&[0]);
    let given = b.bin(BinaryOp::GreaterOrEqual, types, zero)?;
    let given = b.reshape(given, &[0, 0, 1])?;
    let index = b.bin(BinaryOp::Max, types, zero)?;
    let e = b.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[wte, index])?;
    let e = b.to_compute(e)?;
    let nothing = b.scalar(0.0);
    let e = b.op(Op::Layout(LayoutOp::Where), &[given, e, nothing])?;
    b.bin(BinaryOp::Add, x, e)
}

fn build_gpt2(
    cfg: &Config,
    weights: &dyn WeightSource,
    adapters: &AdapterSet,
    interface: Interface,
) -> Result<(kiln_ir::Graph, DecoderInfo), HfError> {
    let hidden = cfg.usize("n_embd")?;
    let heads = cfg.usize("n_head")?;
    let layers = cfg.usize("n_layer")?;
    let vocab = cfg.usize("vocab_size")?;
    let max_pos = cfg.usize("n_positions")?;
    let inner = cfg.opt_usize("n_inner")?.unwrap_or(4 * hidden);
    let eps = cfg.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5) as f32;
    cfg.check(
        hidden % heads == 0,
        format!("n_embd ({hidden}) is not a multiple of n_head ({heads})"),
    )?;
    let head_dim = hidden / heads;
    let act = cfg
        .opt_str("activation_function")?
        .unwrap_or_else(|| "gelu_new".into());
    let gelu = match act.as_str() {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(true),
        "gelu" => Some(false),
        "relu" => None,
        other => {
            return Err(HfError::BadConfig {
                path: cfg.path().to_owned(),
                message: format!(
                    "activation_function {other:?} is not supported (gelu_new, gelu, relu)"
                ),
            })
        }
    };
    for (key, unsupported) in [
        ("scale_attn_by_inverse_layer_idx", true),
        ("reorder_and_upcast_attn", true),
    ] {
        cfg.check(
            cfg.opt_bool(key)?.unwrap_or(false) != unsupported,
            format!("`{key}` is not supported"),
        )?;
    }
    let scale_weights = cfg.opt_bool("scale_attn_weights")?.unwrap_or(true);
    let prefix = if weights.tensor("transformer.wte.weight").is_some() {
        "transformer."
    } else {
        ""
    };
    let mut b = Builder::new(&cfg.architecture()?, weights, adapters);
    let mut io = Io::declare(&mut b, interface, layers, heads, head_dim, None)?;
    let prev = b.enter(&format!("{prefix}wte"), BrickKind::Embedding);
    let wte_name = format!("{prefix}wte.weight");
    let wte = b.raw_weight(&wte_name, &[vocab, hidden])?;
    let weight_dtype = b.graph.value(wte).ty.dtype;
    let tok = b.op(
        Op::Layout(LayoutOp::Gather { axis: 0 }),
        &[wte, io.input_ids],
    )?;
    let tok = b.to_compute(tok)?;
    let wpe = b.raw_weight(&format!("{prefix}wpe.weight"), &[max_pos, hidden])?;
    let pos = b.op(
        Op::Layout(LayoutOp::Gather { axis: 0 }),
        &[wpe, io.position_ids],
    )?;
    let pos = b.to_compute(pos)?;
    let mut x = b.bin(BinaryOp::Add, tok, pos)?;
    if interface == Interface::Forward {
        x = add_token_types(&mut b, x, wte)?;
    }
    b.leave(prev);
    for l in 0..layers {
        let layer = format!("{prefix}h.{l}");
        let prev = b.enter(&layer, BrickKind::Layer);
        let n = b.layer_norm(x, &format!("{layer}.ln_1"), hidden, eps)?;
        let attn = format!("{layer}.attn");
        let prev_a = b.enter(&attn, BrickKind::Attention);
        let qkv = b.conv1d(n, &format!("{attn}.c_attn"), hidden, 3 * hidden)?;
        let parts = b.op_n(
            Op::Layout(LayoutOp::Split {
                axis: 2,
                sizes: vec![hidden; 3],
            }),
            &[qkv],
            3,
        )?;
        let q = split_heads(&mut b, parts[0], heads, head_dim)?;
        let k = split_heads(&mut b, parts[1], heads, head_dim)?;
        let v = split_heads(&mut b, parts[2], heads, head_dim)?;
        let scale = if scale_weights { None } else { Some(1.0) };
        let y = attend(&mut b, &mut io, l, q, k, v, scale)?;
        let y = merge_heads(&mut b, y, hidden)?;
        let y = b.conv1d(y, &format!("{attn}.c_proj"), hidden, hidden)?;
        b.leave(prev_a);
        let h = b.bin(BinaryOp::Add, x, y)?;
        let n = b.layer_norm(h, &format!("{layer}.ln_2"), hidden, eps)?;
        let mlp = format!("{layer}.mlp");
        let prev_m = b.enter(&mlp, BrickKind::Ffn);
        let u = b.conv1d(n, &format!("{mlp}.c_fc"), hidden, inner)?;
        let u = match gelu {
            Some(tanh) => b.op(Op::Composite(CompositeOp::Gelu { tanh }), &[u])?,
            None => b.un(UnaryOp::Relu, u)?,
        };
        let y = b.conv1d(u, &format!("{mlp}.c_proj"), inner, hidden)?;
        b.leave(prev_m);
        x = b.bin(BinaryOp::Add, h, y)?;
        b.leave(prev);
    }
    let x = b.layer_norm(x, &format!("{prefix}ln_f"), hidden, eps)?;
    let prev = b.enter("lm_head", BrickKind::Head);
    let head = if b.has("lm_head.weight") {
        "lm_head.weight".to_owned()
    } else {
        wte_name
    };
    let w = b.weight(&head, &[vocab, hidden])?;
    let wt = b.transpose2(w)?;
    let logits = b.matmul(x, wt)?;
    b.output(logits, "logits");
    b.leave(prev);
    io.finish(&mut b);
    let info = DecoderInfo {
        family: Family::Gpt2,
        layers,
        kv_heads: heads,
        head_dim,
        vocab_size: vocab,
        max_positions: max_pos,
        sliding_window: None,
        bos_token_id: cfg.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: cfg.token_ids("eos_token_id")?,
        weight_dtype,
    };
    Ok((b.finish()?, info))
}
