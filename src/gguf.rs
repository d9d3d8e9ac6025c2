//! GGUF files as models: metadata to config, tensors to Hugging Face names.

use std::path::{Path, PathBuf};

use kiln_frontends::hf::HfModel;
use kiln_frontends::tokenizer::GgufVocab;

use crate::Error;

/// Loads a Llama-family GGUF file as a decoder, with its vocabulary.
pub fn load(path: &Path, adapters: &[PathBuf]) -> Result<(HfModel, GgufVocab), Error> {
    let _ = adapters;
    Err(Error::UnknownModel(format!(
        "{}: GGUF loading is not wired yet",
        path.display()
    )))
}
