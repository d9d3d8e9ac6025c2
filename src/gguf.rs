//! GGUF files as models: metadata to config, tensors to Hugging Face names.

use std::path::{Path, PathBuf};

use kiln_frontends::hf::HfModel;

use crate::Error;

/// Loads a Llama-family GGUF file as a decoder.
pub fn load(path: &Path, adapters: &[PathBuf]) -> Result<HfModel, Error> {
    let _ = adapters;
    Err(Error::UnknownModel(format!("{}: GGUF loading is not wired yet", path.display())))
}
