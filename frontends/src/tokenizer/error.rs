//! The errors of [`crate::tokenizer`].

use std::path::PathBuf;

/// Why a tokenizer could not be loaded, or a text not encoded, decoded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required file is absent.
    #[error("{path}: missing: {what}")]
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
        /// What it is needed for.
        what: &'static str,
    },
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is larger than its kind ever is (so likely not what its name says).
    #[error("{path}: {len} bytes, more than the limit of {limit} for this file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The largest length accepted.
        limit: u64,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: invalid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON parser's message (with line and column).
        message: String,
    },
    /// `tokenizer.json` is JSON but not a tokenizer the `tokenizers` library can build.
    #[error("{path}: not a valid tokenizer: {message}")]
    BadTokenizer {
        /// The file.
        path: PathBuf,
        /// The `tokenizers` library's message.
        message: String,
    },
    /// A configuration file has a field of the wrong type or value.
    #[error("{path}: field `{field}`: {reason}")]
    BadField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF file's tokenizer metadata does not describe a tokenizer kiln can build.
    #[error("GGUF tokenizer metadata: {reason}")]
    BadGgufVocab {
        /// What is wrong or unsupported.
        reason: String,
    },
    /// The `tokenizers` library failed to encode a text.
    #[error("cannot encode text: {message}")]
    Encode {
        /// The library's message.
        message: String,
    },
    /// The `tokenizers` library failed to decode ids (an id outside the vocabulary, say).
    #[error("cannot decode ids: {message}")]
    Decode {
        /// The library's message.
        message: String,
    },
    /// A chat template was asked for, but the tokenizer has none.
    #[error("the tokenizer has no chat template")]
    NoChatTemplate,
    /// The chat template is not valid Jinja, or failed while rendering.
    #[error("chat template: {message}")]
    Template {
        /// The template engine's message (with the line where it failed).
        message: String,
    },
    /// The chat template called `raise_exception(message)`: it refuses these messages.
    #[error("chat template refused the conversation: {message}")]
    TemplateRaised {
        /// The message the template raised.
        message: String,
    },
}
