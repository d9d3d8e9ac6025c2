//! GGUF files as models: metadata to config, tensors to Hugging Face names, then
//! the same builder as Hugging Face folders.

use std::path::{Path, PathBuf};

use kiln_frontends::gguf::GgufFile;
use kiln_frontends::hf::{self, Config, HfModel, TensorMap};
use kiln_frontends::tokenizer::GgufVocab;

use crate::Error;

/// Loads a Llama-family GGUF file as a decoder, with its vocabulary.
pub fn load(path: &Path, adapters: &[PathBuf]) -> Result<(HfModel, GgufVocab), Error> {
    let file = GgufFile::open(path).map_err(|e| Error::UnknownModel(e.to_string()))?;
    let llama = file
        .to_hf_llama()
        .map_err(|e| Error::UnknownModel(e.to_string()))?;
    let config = Config::from_value(path, llama.config)?;
    let weights = TensorMap {
        name: path.display().to_string(),
        tensors: llama.tensors,
    };
    let adapters = hf::load_adapters(adapters)?;
    let model = hf::build(path, &config, &weights, &adapters)?;
    Ok((model, llama.tokenizer))
}
