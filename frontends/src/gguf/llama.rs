//! Llama-family GGUF models (`llama`, `mistral`, `qwen2`) in Hugging Face terms:
//! the `config.json` of the matching `*ForCausalLM`, the weights under their
//! Hugging Face names and in their Hugging Face layout, and the tokenizer data.
//!
//! GGUF stores a linear layer's weight with dimensions `[in, out]` innermost
//! first, so its row-major shape is already Hugging Face's `[out, in]`. The one
//! layout difference is in the query and key projections of `llama` and `mistral`
//! files: llama.cpp's converter permutes their rows from Hugging Face's rotary
//! layout (the two halves of each head's dimensions) to GGML's (interleaved
//! pairs); [`unpermute_qk`] undoes it. `qwen2` files are not permuted.

use std::collections::BTreeMap;

use kiln_ir::{DType, Tensor};
use serde_json::{json, Map, Value};

use super::{GgufError, GgufFile, GgufTokenizerData, MetaValue};

/// Default `rope_theta` when a file has no `{arch}.rope.freq_base` (llama.cpp's).
pub const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// Llama 3's rope-scaling constants as llama.cpp's converter assumes them when it
/// writes `rope_freqs.weight`: low and high frequency factors and the original
/// context length.
const LLAMA3_ROPE: (f64, f64, f64) = (1.0, 4.0, 8192.0);

/// Relative tolerance when matching a file's `rope_freqs.weight` against Llama 3
/// rope scaling (the file stores f32 factors computed in f64).
const LLAMA3_ROPE_TOLERANCE: f64 = 1e-4;

/// A Llama-family model in Hugging Face terms.
#[derive(Clone, Debug)]
pub struct HfLlama {
    /// The `config.json` of a Hugging Face `LlamaForCausalLM` (or
    /// `MistralForCausalLM`, `Qwen2ForCausalLM`) equivalent to the file.
    pub config: Value,
    /// The weights under their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`),
    /// shaped `[out_features, in_features]`. Plain tensors view the mapped file;
    /// quantized ones are dequantized to f32; query and key projections are
    /// un-permuted copies for `llama` and `mistral`.
    pub tensors: BTreeMap<String, Tensor>,
    /// The tokenizer's data.
    pub tokenizer: GgufTokenizerData,
}

/// The model families the Hugging Face mapping knows, by `general.architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlamaFamily {
    /// `llama`: `LlamaForCausalLM`.
    Llama,
    /// `mistral`: `MistralForCausalLM`.
    Mistral,
    /// `qwen2`: `Qwen2ForCausalLM`.
    Qwen2,
}

impl LlamaFamily {
    /// The family of a `general.architecture` value, if it is one of them.
    pub fn from_architecture(architecture: &str) -> Option<LlamaFamily> {
        Some(match architecture {
            "llama" => LlamaFamily::Llama,
            "mistral" => LlamaFamily::Mistral,
            "qwen2" => LlamaFamily::Qwen2,
            _ => return None,
        })
    }

    /// The Hugging Face class name (`LlamaForCausalLM`...).
    pub fn hf_architecture(self) -> &'static str {
        match self {
            LlamaFamily::Llama => "LlamaForCausalLM",
            LlamaFamily::Mistral => "MistralForCausalLM",
            LlamaFamily::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The Hugging Face `model_type` (`llama`...).
    pub fn model_type(self) -> &'static str {
        match self {
            LlamaFamily::Llama => "llama",
            LlamaFamily::Mistral => "mistral",
            LlamaFamily::Qwen2 => "qwen2",
        }
    }

    /// Whether llama.cpp's converter permuted the query and key rows of this
    /// family's files (see [`unpermute_qk`]).
    pub fn rotary_permuted(self) -> bool {
        matches!(self, LlamaFamily::Llama | LlamaFamily::Mistral)
    }
}

/// llama.cpp's permutation of a query or key projection (weight or bias) from
/// Hugging Face's rotary layout to GGML's, over the rows (the first dimension):
/// `w.reshape(n_head, 2, rows/n_head/2, ...).swapaxes(1, 2).reshape(w.shape)`.
///
/// `None` when `n_head` is zero or the rows are not a multiple of `2·n_head`.
pub fn permute_qk(t: &Tensor, n_head: usize) -> Option<Tensor> {
    reorder_rows(t, n_head, false)
}

/// The inverse of [`permute_qk`]: GGML's rotary row layout back to Hugging Face's,
/// `w.reshape(n_head, rows/n_head/2, 2, ...).swapaxes(1, 2).reshape(w.shape)`.
///
/// `None` when `n_head` is zero or the rows are not a multiple of `2·n_head`.
pub fn unpermute_qk(t: &Tensor, n_head: usize) -> Option<Tensor> {
    reorder_rows(t, n_head, true)
}

fn reorder_rows(t: &Tensor, n_head: usize, to_hf: bool) -> Option<Tensor> {
    let rows = *t.shape().first()?;
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return None;
    }
    if rows == 0 {
        return Some(t.clone());
    }
    let src = t.bytes();
    let row_bytes = src.len() / rows;
    let head_rows = rows / n_head;
    let half = head_rows / 2;
    let mut out = vec![0u8; src.len()];
    for h in 0..n_head {
        for pair in 0..2 {
            for j in 0..half {
                // Row `pair·half + j` of head `h` in Hugging Face's layout is row
                // `2·j + pair` of that head in GGML's.
                let hf = h * head_rows + pair * half + j;
                let ggml = h * head_rows + 2 * j + pair;
                let (from, to) = if to_hf { (ggml, hf) } else { (hf, ggml) };
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&src[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    Tensor::from_bytes(t.dtype(), t.shape().to_vec(), out.into()).ok()
}

/// The Hugging Face name of a Llama-family GGUF tensor name, if it has one
/// (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`).
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    let global = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return Some(name.to_owned());
    }
    let (layer, rest) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let index: usize = layer.parse().ok()?;
    if index.to_string() != layer {
        return None; // `blk.01.` or `blk.+1.`: not a name llama.cpp writes
    }
    let (base, kind) = rest.rsplit_once('.')?;
    let module = match base {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    let is_norm = base.ends_with("_norm");
    match kind {
        "weight" => {}
        "bias" if !is_norm => {}
        _ => return None,
    }
    Some(format!("model.layers.{index}.{module}.{kind}"))
}

/// The model's sizes, from the metadata.
struct Dims {
    layers: usize,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// `x` as the f64 whose shortest decimal is that of the f32 (`1e-5`, not
/// `9.999999747378752e-6`): what the converter read from `config.json`.
fn decimal(value: &MetaValue) -> Option<f64> {
    match *value {
        MetaValue::F32(x) => x.to_string().parse().ok(),
        _ => value.as_f64(),
    }
}

fn number_json(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Builds the Hugging Face view of `file`; see [`HfLlama`].
pub(crate) fn to_hf_llama(file: &GgufFile) -> Result<HfLlama, GgufError> {
    let bad = |reason: String| GgufError::BadModel {
        path: file.path.clone(),
        reason,
    };
    let architecture: &str = file.require("general.architecture", "a string", MetaValue::as_str)?;
    let family = LlamaFamily::from_architecture(architecture).ok_or_else(|| {
        GgufError::UnsupportedArchitecture {
            path: file.path.clone(),
            architecture: architecture.to_owned(),
        }
    })?;
    let key = |suffix: &str| format!("{architecture}.{suffix}");
    let size = |suffix: &str| -> Result<Option<usize>, GgufError> {
        file.optional(&key(suffix), "a non-negative integer", |v| {
            v.as_u64().and_then(|v| usize::try_from(v).ok())
        })
    };
    let required_size = |suffix: &str| -> Result<usize, GgufError> {
        size(suffix)?.ok_or_else(|| GgufError::MissingMetadata {
            path: file.path.clone(),
            key: key(suffix),
        })
    };
    let float = |suffix: &str| file.optional(&key(suffix), "a number", decimal);

    let layers = required_size("block_count")?;
    let hidden = required_size("embedding_length")?;
    let intermediate = required_size("feed_forward_length")?;
    let heads = required_size("attention.head_count")?;
    let kv_heads = size("attention.head_count_kv")?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(bad(format!(
            "{heads} attention heads cannot be shared by {kv_heads} key/value heads"
        )));
    }
    let head_dim = match size("attention.key_length")? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(bad(format!(
                "hidden size {hidden} is not a multiple of the {heads} attention heads"
            )))
        }
    };
    if let Some(v) = size("attention.value_length")? {
        if v != head_dim {
            return Err(bad(format!(
                "value heads of {v} dimensions differ from key heads of {head_dim}"
            )));
        }
    }
    if let Some(rope) = size("rope.dimension_count")? {
        if rope != head_dim {
            return Err(bad(format!(
                "rotary embedding over {rope} of the {head_dim} head dimensions (partial rotary) has no {} equivalent",
                family.hf_architecture()
            )));
        }
    }
    let eps =
        float("attention.layer_norm_rms_epsilon")?.ok_or_else(|| GgufError::MissingMetadata {
            path: file.path.clone(),
            key: key("attention.layer_norm_rms_epsilon"),
        })?;
    let rope_theta = float("rope.freq_base")?.unwrap_or(DEFAULT_ROPE_THETA);
    let dims = Dims {
        layers,
        hidden,
        intermediate,
        heads,
        kv_heads,
        head_dim,
    };

    let tokenizer = file.tokenizer_data()?;
    let (tensors, rope_freqs) = hf_tensors(file, family, &dims)?;
    let embed = &tensors["model.embed_tokens.weight"];
    let vocab = embed.shape()[0];
    if tokenizer.tokens.len() > vocab {
        return Err(bad(format!(
            "the tokenizer has {} tokens but the embedding only {vocab} rows",
            tokenizer.tokens.len()
        )));
    }
    let torch_dtype = match embed.dtype() {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    };

    let mut rope_scaling = rope_scaling(file, architecture)?;
    if let Some(freqs) = rope_freqs {
        if rope_scaling.is_some() {
            return Err(bad(
                "both rope scaling metadata and a `rope_freqs.weight` tensor".to_owned(),
            ));
        }
        rope_scaling = Some(llama3_rope_scaling(file, &freqs, rope_theta, head_dim)?);
    }

    let mut config = Map::new();
    config.insert("architectures".into(), json!([family.hf_architecture()]));
    config.insert("model_type".into(), json!(family.model_type()));
    config.insert("hidden_act".into(), json!("silu"));
    config.insert("vocab_size".into(), json!(vocab));
    config.insert("hidden_size".into(), json!(hidden));
    config.insert("intermediate_size".into(), json!(intermediate));
    config.insert("num_hidden_layers".into(), json!(layers));
    config.insert("num_attention_heads".into(), json!(heads));
    config.insert("num_key_value_heads".into(), json!(kv_heads));
    config.insert("head_dim".into(), json!(head_dim));
    config.insert("rms_norm_eps".into(), number_json(eps));
    config.insert("rope_theta".into(), number_json(rope_theta));
    config.insert(
        "rope_scaling".into(),
        rope_scaling.map_or(Value::Null, Value::Object),
    );
    if let Some(context) = size("context_length")? {
        config.insert("max_position_embeddings".into(), json!(context));
    }
    let tied = !tensors.contains_key("lm_head.weight");
    config.insert("tie_word_embeddings".into(), json!(tied));
    config.insert("bos_token_id".into(), json!(tokenizer.bos_token_id));
    config.insert("eos_token_id".into(), json!(tokenizer.eos_token_id));
    config.insert("torch_dtype".into(), json!(torch_dtype));
    match family {
        LlamaFamily::Llama => {
            let bias = tensors.contains_key("model.layers.0.self_attn.q_proj.bias");
            config.insert("attention_bias".into(), json!(bias));
            config.insert("mlp_bias".into(), json!(false));
            config.insert("pretraining_tp".into(), json!(1));
        }
        LlamaFamily::Mistral | LlamaFamily::Qwen2 => {
            let window = size("attention.sliding_window")?;
            if family == LlamaFamily::Qwen2 {
                config.insert("use_sliding_window".into(), json!(window.is_some()));
            }
            config.insert("sliding_window".into(), json!(window));
        }
    }
    Ok(HfLlama {
        config: Value::Object(config),
        tensors,
        tokenizer,
    })
}

/// The tensors under Hugging Face names, checked against `dims` (every layer
/// complete, every shape right), and the `rope_freqs.weight` tensor if any.
fn hf_tensors(
    file: &GgufFile,
    family: LlamaFamily,
    dims: &Dims,
) -> Result<(BTreeMap<String, Tensor>, Option<Tensor>), GgufError> {
    let bad = |reason: String| GgufError::BadModel {
        path: file.path.clone(),
        reason,
    };
    let Dims {
        layers,
        hidden,
        intermediate,
        heads,
        kv_heads,
        head_dim,
    } = *dims;
    let product = |a: usize, b: usize| {
        a.checked_mul(b)
            .ok_or_else(|| bad(format!("{a} heads of {b} dimensions overflow")))
    };
    let q_rows = product(heads, head_dim)?;
    let kv_rows = product(kv_heads, head_dim)?;

    let mut out = BTreeMap::new();
    let mut rope_freqs = None;
    for info in file.tensors() {
        let name = info.name();
        if name == "rope_freqs.weight" {
            rope_freqs = Some(file.tensor(name)?);
            continue;
        }
        let hf = hf_tensor_name(name).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has no {} equivalent",
                family.hf_architecture()
            ))
        })?;
        // (expected shape, heads of a rotary permutation to undo)
        let (expected, permuted_heads): (Vec<usize>, Option<usize>) = match hf.as_str() {
            "model.embed_tokens.weight" | "lm_head.weight" => (
                vec![info.shape().first().copied().unwrap_or(0), hidden],
                None,
            ),
            "model.norm.weight" => (vec![hidden], None),
            _ => {
                let index: usize = hf["model.layers.".len()..]
                    .split('.')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX);
                if index >= layers {
                    return Err(bad(format!(
                        "tensor `{name}` is in layer {index}, but the model has {layers} layers"
                    )));
                }
                let module = hf.splitn(4, '.').nth(3).unwrap_or_default();
                let (module, kind) = module.rsplit_once('.').unwrap_or_default();
                let (out_f, in_f, heads_to_undo) = match module {
                    "input_layernorm" | "post_attention_layernorm" => (hidden, 0, None),
                    "self_attn.q_proj" => (q_rows, hidden, Some(heads)),
                    "self_attn.k_proj" => (kv_rows, hidden, Some(kv_heads)),
                    "self_attn.v_proj" => (kv_rows, hidden, None),
                    "self_attn.o_proj" => (hidden, q_rows, None),
                    "mlp.gate_proj" | "mlp.up_proj" => (intermediate, hidden, None),
                    _ => (hidden, intermediate, None), // mlp.down_proj
                };
                let shape = if in_f == 0 || kind == "bias" {
                    vec![out_f]
                } else {
                    vec![out_f, in_f]
                };
                (shape, heads_to_undo.filter(|_| family.rotary_permuted()))
            }
        };
        if info.shape() != expected.as_slice() {
            return Err(bad(format!(
                "tensor `{name}` ({hf}) has shape {:?}, expected {expected:?}",
                info.shape()
            )));
        }
        let mut tensor = file.tensor(name)?;
        if let Some(n_head) = permuted_heads {
            tensor = unpermute_qk(&tensor, n_head).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has {} rows, not a multiple of twice its {n_head} heads",
                    expected[0]
                ))
            })?;
        }
        out.insert(hf, tensor);
    }

    // Checked one by one (not listed first): an absurd layer count then fails
    // at its first missing layer instead of building an absurd list.
    let missing = |name: &str| -> Result<(), GgufError> {
        if out.contains_key(name) {
            Ok(())
        } else {
            Err(bad(format!("no tensor for `{name}`")))
        }
    };
    missing("model.embed_tokens.weight")?;
    missing("model.norm.weight")?;
    for i in 0..layers {
        for module in [
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            missing(&format!("model.layers.{i}.{module}.weight"))?;
        }
    }
    if let Some(lm_head) = out.get("lm_head.weight") {
        let embed = &out["model.embed_tokens.weight"];
        if lm_head.shape() != embed.shape() {
            return Err(bad(format!(
                "`output.weight` has shape {:?} but `token_embd.weight` {:?}",
                lm_head.shape(),
                embed.shape()
            )));
        }
    }
    Ok((out, rope_freqs))
}

/// The `rope_scaling` object from `{arch}.rope.scaling.*` (or the older
/// `{arch}.rope.scale_linear`), if the file scales rotary positions.
fn rope_scaling(
    file: &GgufFile,
    architecture: &str,
) -> Result<Option<Map<String, Value>>, GgufError> {
    let key = |suffix: &str| format!("{architecture}.rope.{suffix}");
    let float = |suffix: &str| file.optional(&key(suffix), "a number", decimal);
    let kind = file.optional(&key("scaling.type"), "a string", MetaValue::as_str)?;
    let factor = float("scaling.factor")?;
    let mut out = Map::new();
    match kind {
        None | Some("none") => {
            let Some(linear) = float("scale_linear")?.filter(|&f| f != 1.0) else {
                return Ok(None);
            };
            out.insert("rope_type".into(), json!("linear"));
            out.insert("factor".into(), number_json(linear));
        }
        Some(kind @ ("linear" | "yarn")) => {
            let factor = factor.ok_or_else(|| GgufError::MissingMetadata {
                path: file.path.clone(),
                key: key("scaling.factor"),
            })?;
            out.insert("rope_type".into(), json!(kind));
            out.insert("factor".into(), number_json(factor));
            if kind == "yarn" {
                let original = file.optional(
                    &key("scaling.original_context_length"),
                    "a non-negative integer",
                    MetaValue::as_u64,
                )?;
                if let Some(original) = original {
                    out.insert("original_max_position_embeddings".into(), json!(original));
                }
                for (gguf, hf) in [
                    ("scaling.yarn_beta_fast", "beta_fast"),
                    ("scaling.yarn_beta_slow", "beta_slow"),
                    ("scaling.attn_factor", "attention_factor"),
                ] {
                    if let Some(v) = float(gguf)? {
                        out.insert(hf.into(), number_json(v));
                    }
                }
            }
        }
        Some(other) => {
            return Err(GgufError::BadModel {
                path: file.path.clone(),
                reason: format!("rope scaling type `{other}` has no Hugging Face mapping here"),
            })
        }
    }
    Ok(Some(out))
}

/// The Llama 3 `rope_scaling` whose frequency factors llama.cpp's converter
/// stored as `rope_freqs.weight`, recognized by recomputing them with the
/// converter's constants ([`LLAMA3_ROPE`]) and the largest factor as `factor`.
fn llama3_rope_scaling(
    file: &GgufFile,
    freqs: &Tensor,
    rope_theta: f64,
    head_dim: usize,
) -> Result<Map<String, Value>, GgufError> {
    let factors = freqs.to_f64_vec();
    let unrecognized = |why: &str| {
        GgufError::BadModel {
        path: file.path.clone(),
        reason: format!(
            "tensor `rope_freqs.weight` is not Llama 3 rope scaling with the converter's constants ({why})"
        ),
    }
    };
    if factors.len() * 2 != head_dim {
        return Err(unrecognized(&format!(
            "{} factors for heads of {head_dim} dimensions",
            factors.len()
        )));
    }
    let factor = factors.iter().copied().fold(f64::NAN, f64::max);
    if !(factor.is_finite() && factor >= 1.0) {
        return Err(unrecognized("no finite factor of at least 1"));
    }
    let (low, high, original) = LLAMA3_ROPE;
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    for (i, &got) in factors.iter().enumerate() {
        let freq = 1.0 / rope_theta.powf((2 * i) as f64 / head_dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let want = if wavelen < high_wavelen {
            1.0
        } else if wavelen > low_wavelen {
            factor
        } else {
            let smooth = (original / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        };
        if (got - want).abs() > LLAMA3_ROPE_TOLERANCE * want.abs() {
            return Err(unrecognized(&format!(
                "factor {i} is {got}, expected {want}"
            )));
        }
    }
    let mut out = Map::new();
    out.insert("rope_type".into(), json!("llama3"));
    out.insert("factor".into(), number_json(factor));
    out.insert("low_freq_factor".into(), number_json(low));
    out.insert("high_freq_factor".into(), number_json(high));
    out.insert(
        "original_max_position_embeddings".into(),
        json!(original as u64),
    );
    Ok(out)
}
