//! Hugging Face model folders: `config.json` names the architecture, the weights
//! come from `model.safetensors` (or the shards of `model.safetensors.index.json`)
//! by memory map, and the graph is built as bricks — embedding, per-layer
//! attention, FFN or mixture of experts with its router and experts, norms, head.
//!
//! Every folder's graph has transformers' forward signature (`use_cache=False`):
//! `input_ids` and an int64 `attention_mask [batch, seq]` (1 = token, 0 = padding),
//! with `position_ids` (decoders) or `token_type_ids` (BERT), some of which a caller
//! may leave out ([`InputRule`]). Decoders also get a second graph with the
//! KV-cache interface the generator drives ([`decoder`], [`Interface`]); encoder
//! graphs return hidden states and, for sentence-transformers folders, sentence
//! embeddings ([`bert`]). PEFT LoRA adapters attach to their linear layers as
//! LoRA bricks ([`lora`]).

pub mod bert;
pub mod builder;
pub mod config;
pub mod decoder;
mod error;
pub mod lora;
pub mod rope;

use std::path::{Path, PathBuf};

pub use bert::{EncoderInfo, Pooling};
pub use builder::{TensorMap, WeightSource};
pub use config::Config;
pub use decoder::{DecoderInfo, Family, Interface};
pub use error::HfError;
pub use lora::{Adapter, AdapterSet};

use crate::safetensors;

/// The architectures kiln builds, as `architectures` names them.
pub const ARCHITECTURES: [&str; 7] = [
    "BertModel",
    "GPT2LMHeadModel",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "MixtralForCausalLM",
    "Qwen2MoeForCausalLM",
];

/// What kind of model a folder holds, with what its caller needs to drive it.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelKind {
    /// A decoder-only language model (KV-cache interface).
    Decoder(DecoderInfo),
    /// An encoder (hidden states, maybe sentence embeddings).
    Encoder(EncoderInfo),
}

/// What a caller may leave out of an input of a folder's graph, and the range
/// its values must lie in: transformers' defaults and index checks, which a graph
/// of required inputs cannot state by itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputRule {
    /// The input.
    pub name: String,
    /// What it is when left out, shaped like `input_ids` (`None`: required).
    pub default: Option<InputDefault>,
    /// Its values must be below this (and at least 0): the table it indexes.
    pub below: Option<Bound>,
    /// Its last dim (the sequence) may be at most this long.
    pub max_len: Option<usize>,
}

/// An upper bound on an input's values and what the bound is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    /// Values must be below it.
    pub limit: usize,
    /// What it counts, for messages ("the vocabulary has 512 tokens").
    pub what: String,
}

/// The value transformers gives an input the caller left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputDefault {
    /// All ones (`attention_mask`: every token seen).
    Ones,
    /// All zeros (`token_type_ids`: one segment).
    Zeros,
    /// `0, 1, …, seq − 1` in every row (`position_ids` without a cache).
    Positions,
    /// Left out, the input adds nothing (GPT-2's `token_type_ids`): filled
    /// with −1, which the graph reads as "not given" (a value the caller
    /// cannot pass: the input's range starts at 0).
    Absent,
}

impl InputDefault {
    /// The i64 tensor of shape `[batch, seq]`.
    pub fn tensor(self, batch: usize, seq: usize) -> kiln_ir::Tensor {
        let data: Vec<i64> = (0..batch * seq)
            .map(|i| match self {
                InputDefault::Ones => 1,
                InputDefault::Zeros => 0,
                InputDefault::Positions => (i % seq.max(1)) as i64,
                InputDefault::Absent => -1,
            })
            .collect();
        kiln_ir::Tensor::from_vec(vec![batch, seq], data)
    }

    /// How `kiln inspect` says it.
    pub fn describe(self) -> &'static str {
        match self {
            InputDefault::Ones => "all ones",
            InputDefault::Zeros => "all zeros",
            InputDefault::Positions => "0..seq in each row",
            InputDefault::Absent => "none (adds nothing)",
        }
    }
}

/// A model built from a folder.
#[derive(Clone, Debug)]
pub struct HfModel {
    /// The graph with transformers' forward signature.
    pub graph: kiln_ir::Graph,
    /// What callers may leave out of `graph`'s inputs and the ranges of their values.
    pub inputs: Vec<InputRule>,
    /// Decoders: the same model with the KV-cache interface ([`Interface::KvCache`]).
    pub kv_cache: Option<kiln_ir::Graph>,
    /// Its kind and interface.
    pub kind: ModelKind,
    /// The folder (or GGUF file) it came from.
    pub path: PathBuf,
}

/// Whether `dir` looks like a Hugging Face model folder.
pub fn is_model_folder(dir: &Path) -> bool {
    dir.is_dir() && dir.join("config.json").is_file()
}

/// Loads the model in `dir` with the PEFT adapters in `adapter_dirs` (in order).
pub fn load_folder(dir: &Path, adapter_dirs: &[PathBuf]) -> Result<HfModel, HfError> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(HfError::MissingConfig {
            dir: dir.to_owned(),
        });
    }
    let cfg = Config::read(&config_path)?;
    let weights = load_weights(dir)?;
    let adapters = load_adapters(adapter_dirs)?;
    build(dir, &cfg, &weights, &adapters)
}

/// Loads adapters, giving each a distinct name.
pub fn load_adapters(dirs: &[PathBuf]) -> Result<AdapterSet, HfError> {
    let mut set = AdapterSet::default();
    for dir in dirs {
        let mut a = lora::load_adapter(dir)?;
        let base = a.name.clone();
        let mut i = 1;
        while set.adapters.iter().any(|b| b.name == a.name) {
            i += 1;
            a.name = format!("{base}_{i}");
        }
        set.adapters.push(a);
    }
    Ok(set)
}

/// The weights of `dir`: one file or a sharded index, memory-mapped.
pub fn load_weights(dir: &Path) -> Result<safetensors::Weights, HfError> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        Ok(safetensors::load(&single)?)
    } else if index.is_file() {
        Ok(safetensors::load_sharded(&index)?)
    } else {
        Err(HfError::MissingWeights {
            dir: dir.to_owned(),
        })
    }
}

/// Builds the graph `cfg` describes over `weights`.
pub fn build(
    path: &Path,
    cfg: &Config,
    weights: &dyn WeightSource,
    adapters: &AdapterSet,
) -> Result<HfModel, HfError> {
    let arch = cfg.architecture()?;
    let (graph, kv_cache, inputs, kind) = if let Some(family) = Family::of(&arch) {
        let built = decoder::build(family, cfg, weights, adapters)?;
        let inputs = decoder::input_rules(&built.info);
        (
            built.forward,
            Some(built.kv_cache),
            inputs,
            ModelKind::Decoder(built.info),
        )
    } else if matches!(arch.as_str(), "BertModel" | "BertForMaskedLM" | "bert") {
        let (g, info, inputs) = bert::build(path, cfg, weights, adapters)?;
        (g, None, inputs, ModelKind::Encoder(info))
    } else {
        return Err(HfError::UnknownArchitecture {
            path: cfg.path().to_owned(),
            name: arch,
            known: ARCHITECTURES.join(", "),
        });
    };
    for g in std::iter::once(&graph).chain(&kv_cache) {
        kiln_ir::verify(g).map_err(|e| HfError::Build {
            arch: cfg.architecture().unwrap_or_default(),
            message: e.to_string(),
        })?;
    }
    Ok(HfModel {
        graph,
        inputs,
        kv_cache,
        kind,
        path: path.to_owned(),
    })
}
