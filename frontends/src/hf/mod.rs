//! Hugging Face model folders: `config.json` names the architecture, the weights
//! come from `model.safetensors` (or the shards of `model.safetensors.index.json`)
//! by memory map, and the graph is built as bricks — embedding, per-layer
//! attention, FFN or mixture of experts with its router and experts, norms, head.
//!
//! Decoder graphs take a KV cache of fixed capacity ([`decoder`]); encoder graphs
//! return hidden states and, for sentence-transformers folders, sentence
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
pub use decoder::{DecoderInfo, Family};
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

/// A model built from a folder.
#[derive(Clone, Debug)]
pub struct HfModel {
    /// The graph.
    pub graph: kiln_ir::Graph,
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
    let (graph, kind) = if let Some(family) = Family::of(&arch) {
        let (g, info) = decoder::build(family, cfg, weights, adapters)?;
        (g, ModelKind::Decoder(info))
    } else if matches!(arch.as_str(), "BertModel" | "BertForMaskedLM" | "bert") {
        let (g, info) = bert::build(path, cfg, weights, adapters)?;
        (g, ModelKind::Encoder(info))
    } else {
        return Err(HfError::UnknownArchitecture {
            path: cfg.path().to_owned(),
            name: arch,
            known: ARCHITECTURES.join(", "),
        });
    };
    kiln_ir::verify(&graph).map_err(|e| HfError::Build {
        arch: cfg.architecture().unwrap_or_default(),
        message: e.to_string(),
    })?;
    Ok(HfModel {
        graph,
        kind,
        path: path.to_owned(),
    })
}
