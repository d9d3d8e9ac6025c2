//! BERT encoders (`BertModel`, and sentence-transformers folders around one).
//!
//! Inputs `input_ids`, `attention_mask`, `token_type_ids` and `position_ids`,
//! all i64 `[batch, seq]` (transformers' `BertModel.forward`; a caller may leave
//! out the mask, all ones, the token types, all zeros, and the positions,
//! `0..seq` in every row, see [`super::InputRule`]);
//! outputs `last_hidden_state` `[batch, seq, hidden]`,
//! `pooler_output` `[batch, hidden]` when the weights have a pooler, and for
//! sentence-transformers folders `sentence_embedding` `[batch, hidden]`: the
//! pooling of `1_Pooling/config.json` (mean, CLS or max over the unmasked tokens),
//! L2-normalized when `modules.json` lists a `Normalize` module.

use std::path::Path;

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, QkOutput, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{BrickKind, DType, Dim, Op, ValueId};

use super::builder::{Bias, Builder, WeightSource};
use super::config::{read_json, Config};
use super::lora::AdapterSet;
use super::{Bound, HfError, InputDefault, InputRule};

/// How token embeddings become one sentence embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the unmasked tokens.
    Mean,
    /// The first token's embedding.
    Cls,
    /// Element-wise maximum over the unmasked tokens.
    Max,
}

/// What a caller needs to drive an encoder graph.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderInfo {
    /// Positions the position embeddings cover.
    pub max_positions: usize,
    /// Hidden size (the embedding width).
    pub hidden: usize,
    /// The sentence-transformers pooling, when the folder is one.
    pub pooling: Option<Pooling>,
    /// Whether sentence embeddings are L2-normalized.
    pub normalize: bool,
    /// Longest input the sentence-transformers config allows (tokens beyond are cut).
    pub max_seq_length: Option<usize>,
}

/// The sentence-transformers modules of `dir`, if it is such a folder.
fn sentence_modules(dir: &Path) -> Result<Option<(Pooling, bool, Option<usize>)>, HfError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        return Ok(None);
    }
    let modules = read_json(&modules_path)?;
    let list = modules.as_array().ok_or_else(|| HfError::BadJson {
        path: modules_path.clone(),
        message: "expected a list of modules".into(),
    })?;
    let mut pooling = None;
    let mut normalize = false;
    for m in list {
        let ty = m.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        let sub = m.get("path").and_then(|t| t.as_str()).unwrap_or_default();
        if ty.ends_with("models.Pooling") {
            let cfg_path = dir.join(sub).join("config.json");
            let cfg = read_json(&cfg_path)?;
            let flag = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            pooling = Some(if flag("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else if flag("pooling_mode_cls_token") {
                Pooling::Cls
            } else if flag("pooling_mode_max_tokens") {
                Pooling::Max
            } else {
                return Err(HfError::BadConfig {
                    path: cfg_path,
                    message: "no supported pooling mode set (mean, cls or max tokens)".into(),
                });
            });
        } else if ty.ends_with("models.Normalize") {
            normalize = true;
        } else if !ty.ends_with("models.Transformer") {
            return Err(HfError::BadJson {
                path: modules_path.clone(),
                message: format!("sentence-transformers module {ty:?} is not supported"),
            });
        }
    }
    let max_len = read_json(&dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|c| c.get("max_seq_length").and_then(|v| v.as_u64()))
        .map(|v| v as usize);
    Ok(pooling.map(|p| (p, normalize, max_len)))
}

/// Builds a BERT encoder graph, with the rules of its inputs.
pub fn build(
    dir: &Path,
    cfg: &Config,
    weights: &dyn WeightSource,
    adapters: &AdapterSet,
) -> Result<(kiln_ir::Graph, EncoderInfo, Vec<InputRule>), HfError> {
    let hidden = cfg.usize("hidden_size")?;
    let heads = cfg.usize("num_attention_heads")?;
    let layers = cfg.usize("num_hidden_layers")?;
    let inter = cfg.usize("intermediate_size")?;
    let vocab = cfg.usize("vocab_size")?;
    let max_pos = cfg.usize("max_position_embeddings")?;
    let types = cfg.opt_usize("type_vocab_size")?.unwrap_or(2);
    let eps = cfg.opt_f64("layer_norm_eps")?.unwrap_or(1e-12) as f32;
    cfg.check(
        hidden % heads == 0,
        format!("hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})"),
    )?;
    let pos_type = cfg
        .opt_str("position_embedding_type")?
        .unwrap_or_else(|| "absolute".into());
    cfg.check(
        pos_type == "absolute",
        format!("position_embedding_type {pos_type:?} is not supported"),
    )?;
    let act = cfg.opt_str("hidden_act")?.unwrap_or_else(|| "gelu".into());
    let head_dim = hidden / heads;
    let prefix = if weights
        .tensor("bert.embeddings.word_embeddings.weight")
        .is_some()
    {
        "bert."
    } else {
        ""
    };
    let sentence = sentence_modules(dir)?;

    let mut b = Builder::new(&cfg.architecture()?, weights, adapters);
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let ids = b.input("input_ids", DType::I64, vec![batch.clone(), seq.clone()]);
    let mask = b.input(
        "attention_mask",
        DType::I64,
        vec![batch.clone(), seq.clone()],
    );
    let type_ids = b.input(
        "token_type_ids",
        DType::I64,
        vec![batch.clone(), seq.clone()],
    );
    let position_ids = b.input("position_ids", DType::I64, vec![batch, seq]);

    let emb = format!("{prefix}embeddings");
    let prev = b.enter(&emb, BrickKind::Embedding);
    let word = b.raw_weight(&format!("{emb}.word_embeddings.weight"), &[vocab, hidden])?;
    let x = b.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[word, ids])?;
    let x = b.to_compute(x)?;
    let tt = b.raw_weight(
        &format!("{emb}.token_type_embeddings.weight"),
        &[types, hidden],
    )?;
    let t = b.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[tt, type_ids])?;
    let t = b.to_compute(t)?;
    let x = b.bin(BinaryOp::Add, x, t)?;
    let pe = b.raw_weight(
        &format!("{emb}.position_embeddings.weight"),
        &[max_pos, hidden],
    )?;
    let p = b.op(
        Op::Layout(LayoutOp::Gather { axis: 0 }),
        &[pe, position_ids],
    )?;
    let p = b.to_compute(p)?;
    let x = b.bin(BinaryOp::Add, x, p)?;
    let mut x = b.layer_norm(x, &format!("{emb}.LayerNorm"), hidden, eps)?;
    b.leave(prev);

    // Keep-where-true mask [batch, 1, 1, seq]. A row of padding only sees
    // nothing: it sees everything instead (no NaN) and `seen` [batch, 1, 1, 1]
    // zeroes its attention output, as transformers' sdpa attention does.
    let keep = b.op(Op::Layout(LayoutOp::cast(DType::Bool)), &[mask])?;
    let keep = b.op(
        Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 2] }),
        &[keep],
    )?;
    let as_float = b.op(Op::Layout(LayoutOp::cast(DType::F32)), &[keep])?;
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
    let keep = b.bin(BinaryOp::Or, keep, blind)?;

    for l in 0..layers {
        let layer = format!("{prefix}encoder.layer.{l}");
        let prev = b.enter(&layer, BrickKind::Layer);
        let attn = format!("{layer}.attention");
        let prev_a = b.enter(&attn, BrickKind::Attention);
        let sa = format!("{attn}.self");
        let q = b.linear(x, &format!("{sa}.query"), hidden, hidden, Bias::Required)?;
        let k = b.linear(x, &format!("{sa}.key"), hidden, hidden, Bias::Required)?;
        let v = b.linear(x, &format!("{sa}.value"), hidden, hidden, Bias::Required)?;
        let heads_of = |b: &mut Builder, t| -> Result<ValueId, HfError> {
            let t = b.reshape(t, &[0, 0, heads as i64, head_dim as i64])?;
            b.transpose(t, &[0, 2, 1, 3])
        };
        let (q, k, v) = (
            heads_of(&mut b, q)?,
            heads_of(&mut b, k)?,
            heads_of(&mut b, v)?,
        );
        let y = b.op(
            Op::Composite(CompositeOp::Attention {
                scale: None,
                causal: false,
                softcap: None,
                mask: true,
                past: false,
                kv_lengths: false,
                qk_output: QkOutput::Raw,
            }),
            &[q, k, v, keep],
        )?;
        let y = b.bin(BinaryOp::Mul, y, seen)?;
        let y = b.transpose(y, &[0, 2, 1, 3])?;
        let y = b.reshape(y, &[0, 0, hidden as i64])?;
        let y = b.linear(
            y,
            &format!("{attn}.output.dense"),
            hidden,
            hidden,
            Bias::Required,
        )?;
        let y = b.bin(BinaryOp::Add, y, x)?;
        let h = b.layer_norm(y, &format!("{attn}.output.LayerNorm"), hidden, eps)?;
        b.leave(prev_a);
        let ffn = format!("{layer}.intermediate");
        let prev_f = b.enter(&format!("{layer}.ffn"), BrickKind::Ffn);
        let u = b.linear(h, &format!("{ffn}.dense"), hidden, inter, Bias::Required)?;
        let u = activation(&mut b, cfg, &act, u)?;
        let y = b.linear(
            u,
            &format!("{layer}.output.dense"),
            inter,
            hidden,
            Bias::Required,
        )?;
        let y = b.bin(BinaryOp::Add, y, h)?;
        x = b.layer_norm(y, &format!("{layer}.output.LayerNorm"), hidden, eps)?;
        b.leave(prev_f);
        b.leave(prev);
    }
    b.output(x, "last_hidden_state");

    let pooler = format!("{prefix}pooler.dense");
    if b.has(&format!("{pooler}.weight")) {
        let prev = b.enter(&format!("{prefix}pooler"), BrickKind::Head);
        let idx = b.konst("cls_index", kiln_ir::Tensor::scalar(0i64));
        let cls = b.op(Op::Layout(LayoutOp::Gather { axis: 1 }), &[x, idx])?;
        let y = b.linear(cls, &pooler, hidden, hidden, Bias::Required)?;
        let y = b.un(UnaryOp::Tanh, y)?;
        b.output(y, "pooler_output");
        b.leave(prev);
    }

    let (pooling, normalize, max_seq_length) = match sentence {
        Some((p, n, m)) => (Some(p), n, m),
        None => (None, false, None),
    };
    if let Some(pool) = pooling {
        let prev = b.enter("pooling", BrickKind::Head);
        let e = sentence_pool(&mut b, x, mask, pool, normalize)?;
        b.output(e, "sentence_embedding");
        b.leave(prev);
    }
    let info = EncoderInfo {
        max_positions: max_pos,
        hidden,
        pooling,
        normalize,
        max_seq_length,
    };
    let rules = vec![
        InputRule {
            name: "input_ids".into(),
            default: None,
            below: Some(Bound {
                limit: vocab,
                what: format!("the vocabulary has {vocab} tokens"),
            }),
            max_len: Some(max_pos),
        },
        InputRule {
            name: "attention_mask".into(),
            default: Some(InputDefault::Ones),
            below: None,
            max_len: None,
        },
        InputRule {
            name: "token_type_ids".into(),
            default: Some(InputDefault::Zeros),
            below: Some(Bound {
                limit: types,
                what: format!("the model has {types} token types"),
            }),
            max_len: None,
        },
        InputRule {
            name: "position_ids".into(),
            default: Some(InputDefault::Positions),
            below: Some(Bound {
                limit: max_pos,
                what: format!("the model has {max_pos} positions"),
            }),
            max_len: None,
        },
    ];
    Ok((b.finish()?, info, rules))
}

/// The config's activation.
fn activation(b: &mut Builder, cfg: &Config, act: &str, x: ValueId) -> Result<ValueId, HfError> {
    match act {
        "gelu" => b.op(Op::Composite(CompositeOp::Gelu { tanh: false }), &[x]),
        "gelu_new" | "gelu_pytorch_tanh" => {
            b.op(Op::Composite(CompositeOp::Gelu { tanh: true }), &[x])
        }
        "relu" => b.un(UnaryOp::Relu, x),
        other => Err(HfError::BadConfig {
            path: cfg.path().to_owned(),
            message: format!("hidden_act {other:?} is not supported (gelu, gelu_new, relu)"),
        }),
    }
}

/// Smallest token count a mean divides by (sentence-transformers' clamp).
const MEAN_MIN_COUNT: f32 = 1e-9;
/// Smallest norm a normalization divides by (`torch.nn.functional.normalize`).
const NORMALIZE_MIN_NORM: f32 = 1e-12;

/// Pools `[batch, seq, hidden]` over the tokens `mask` keeps.
fn sentence_pool(
    b: &mut Builder,
    x: ValueId,
    mask: ValueId,
    pool: Pooling,
    normalize: bool,
) -> Result<ValueId, HfError> {
    let m = b.op(Op::Layout(LayoutOp::cast(DType::F32)), &[mask])?;
    let m = b.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![2] }), &[m])?;
    let sum_over = |b: &mut Builder, kind, v| {
        b.op(
            Op::Reduce(ReduceOp::Reduce {
                kind,
                axes: vec![1],
                keepdims: false,
            }),
            &[v],
        )
    };
    let mut e = match pool {
        Pooling::Mean => {
            let xm = b.bin(BinaryOp::Mul, x, m)?;
            let total = sum_over(b, ReduceKind::Sum, xm)?;
            let count = sum_over(b, ReduceKind::Sum, m)?;
            let floor = b.scalar(MEAN_MIN_COUNT);
            let count = b.bin(BinaryOp::Max, count, floor)?;
            b.bin(BinaryOp::Div, total, count)?
        }
        Pooling::Cls => {
            let idx = b.konst("cls_index", kiln_ir::Tensor::scalar(0i64));
            b.op(Op::Layout(LayoutOp::Gather { axis: 1 }), &[x, idx])?
        }
        Pooling::Max => {
            // Masked tokens become −1e9, as sentence-transformers does.
            let one = b.scalar(1.0);
            let inv = b.bin(BinaryOp::Sub, one, m)?;
            let big = b.scalar(-1e9);
            let penalty = b.bin(BinaryOp::Mul, inv, big)?;
            let xm = b.bin(BinaryOp::Add, x, penalty)?;
            sum_over(b, ReduceKind::Max, xm)?
        }
    };
    if normalize {
        let norm = b.op(
            Op::Reduce(ReduceOp::Reduce {
                kind: ReduceKind::L2,
                axes: vec![1],
                keepdims: true,
            }),
            &[e],
        )?;
        let floor = b.scalar(NORMALIZE_MIN_NORM);
        let norm = b.bin(BinaryOp::Max, norm, floor)?;
        e = b.bin(BinaryOp::Div, e, norm)?;
    }
    Ok(e)
}
