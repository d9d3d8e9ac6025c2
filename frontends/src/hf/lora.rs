//! LoRA adapters from PEFT folders (`adapter_config.json` + `adapter_model.safetensors`).
//!
//! An adapter adds `scale · (x·Aᵀ)·Bᵀ` to each linear layer it targets, with
//! `A: [r, in]`, `B: [out, r]` and `scale = lora_alpha / r` (`lora_alpha / √r` with
//! `use_rslora`). The builder attaches each as a LoRA brick beside its layer; the
//! optimizer decides whether to merge it into the weight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_ir::Tensor;
use serde_json::Value;

use super::config::read_json;
use super::HfError;
use crate::safetensors;

/// One low-rank update of one linear layer.
#[derive(Clone, Debug)]
pub struct LoraWeights {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
}

/// One PEFT adapter.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// Its name (the folder's name), used in brick and constant names.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// `lora_alpha / r` (or `/ √r` with rsLoRA).
    pub scale: f64,
    /// The rank.
    pub rank: usize,
    /// The updates by the module path of their layer (`model.layers.0.self_attn.q_proj`).
    pub modules: BTreeMap<String, LoraWeights>,
}

/// The adapters loaded for a model, in the order given.
#[derive(Clone, Debug, Default)]
pub struct AdapterSet {
    /// The adapters.
    pub adapters: Vec<Adapter>,
}

impl AdapterSet {
    /// The updates targeting `module`, with their adapter.
    pub fn for_module<'a>(
        &'a self,
        module: &'a str,
    ) -> impl Iterator<Item = (&'a Adapter, &'a LoraWeights)> + 'a {
        self.adapters
            .iter()
            .filter_map(move |a| a.modules.get(module).map(|l| (a, l)))
    }

    /// Module paths some adapter targets that are not in `known` (a typo or an
    /// adapter made for another model).
    pub fn unmatched<'a>(&'a self, known: &'a [String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for a in &self.adapters {
            for m in a.modules.keys() {
                if !known.iter().any(|k| k == m) {
                    out.push((a.name.clone(), m.clone()));
                }
            }
        }
        out
    }
}

/// Prefixes PEFT puts before the base model's module paths.
const PEFT_PREFIXES: [&str; 2] = ["base_model.model.", "base_model."];

/// Loads the PEFT adapter in `dir`.
pub fn load_adapter(dir: &Path) -> Result<Adapter, HfError> {
    let bad = |message: String| HfError::BadAdapter {
        dir: dir.to_owned(),
        message,
    };
    let config_path = dir.join("adapter_config.json");
    if !config_path.is_file() {
        return Err(bad(
            "no adapter_config.json (expected a PEFT adapter folder)".into(),
        ));
    }
    let config = read_json(&config_path)?;
    let peft_type = config
        .get("peft_type")
        .and_then(Value::as_str)
        .unwrap_or("LORA");
    if !peft_type.eq_ignore_ascii_case("lora") {
        return Err(bad(format!(
            "peft_type is {peft_type:?}; kiln loads LORA adapters"
        )));
    }
    let rank = config
        .get("r")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .ok_or_else(|| bad("adapter_config.json: `r` must be a positive integer".into()))?
        as usize;
    let alpha = config
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .unwrap_or(rank as f64);
    let rslora = config
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if config
        .get("use_dora")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(bad("DoRA adapters (use_dora) are not supported".into()));
    }
    let has_rank_pattern = config
        .get("rank_pattern")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
        || config
            .get("alpha_pattern")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty());
    if has_rank_pattern {
        return Err(bad(
            "per-module rank_pattern/alpha_pattern is not supported".into(),
        ));
    }
    let scale = if rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    };
    let weights_path = dir.join("adapter_model.safetensors");
    if !weights_path.is_file() {
        return Err(bad(
            "no adapter_model.safetensors (only safetensors adapters are read)".into(),
        ));
    }
    let weights = safetensors::load(&weights_path)?;
    let mut a_parts: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut b_parts: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in weights.iter() {
        let stripped = PEFT_PREFIXES
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        // `...q_proj.lora_A.weight` or, with a named adapter, `...lora_A.NAME.weight`.
        let (module, which) = if let Some(i) = stripped.find(".lora_A.") {
            (&stripped[..i], 'A')
        } else if let Some(i) = stripped.find(".lora_B.") {
            (&stripped[..i], 'B')
        } else if stripped.contains("lora_embedding") || stripped.contains("lora_magnitude") {
            return Err(bad(format!(
                "tensor {name}: only LoRA on linear layers is supported"
            )));
        } else {
            // Extra saved modules (modules_to_save) are not LoRA updates.
            return Err(bad(format!(
                "tensor {name} is not a lora_A/lora_B weight (modules_to_save is not supported)"
            )));
        };
        if t.rank() != 2
            || !matches!(
                t.dtype(),
                kiln_ir::DType::F32 | kiln_ir::DType::F16 | kiln_ir::DType::BF16
            )
        {
            return Err(bad(format!(
                "tensor {name} is {} {:?}; expected a float matrix",
                t.dtype().name(),
                t.shape()
            )));
        }
        let map = if which == 'A' {
            &mut a_parts
        } else {
            &mut b_parts
        };
        map.insert(module.to_owned(), t.clone());
    }
    let mut modules = BTreeMap::new();
    for (module, a) in a_parts {
        let b = b_parts
            .remove(&module)
            .ok_or_else(|| bad(format!("{module} has lora_A but no lora_B")))?;
        if a.shape()[0] != rank || b.shape()[1] != rank {
            return Err(bad(format!(
                "{module}: lora_A is {:?} and lora_B {:?}, but r = {rank}",
                a.shape(),
                b.shape()
            )));
        }
        modules.insert(module, LoraWeights { a, b });
    }
    if let Some(module) = b_parts.keys().next() {
        return Err(bad(format!("{module} has lora_B but no lora_A")));
    }
    if modules.is_empty() {
        return Err(bad("adapter_model.safetensors holds no LoRA weights".into()));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "adapter".into());
    Ok(Adapter {
        name: name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        dir: dir.to_owned(),
        scale,
        rank,
        modules,
    })
}
