//! The tokenizer data a GGUF file carries (`tokenizer.ggml.*`), as plain data
//! from which a tokenizer can be built.

use super::{GgufError, GgufFile, MetaValue};

/// The tokenizer of a GGUF model: vocabulary, merges or scores, special tokens
/// and chat template, as stored under `tokenizer.ggml.*` and
/// `tokenizer.chat_template`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufTokenizerData {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE with merges) or `llama`
    /// (SentencePiece with scores), or another llama.cpp tokenizer model name.
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name (`smollm`, `llama-bpe`,
    /// `qwen2`...), in newer files.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the vocabulary, by token id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: llama.cpp's token types, by token id
    /// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.scores`: SentencePiece scores, by token id.
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.merges`: BPE merges, `"left right"` each, by rank.
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos_token: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece's leading space).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`: the Jinja chat template.
    pub chat_template: Option<String>,
}

const MODEL: &str = "tokenizer.ggml.model";
const TOKENS: &str = "tokenizer.ggml.tokens";

/// Reads the tokenizer data of `file`; the model name and tokens are required,
/// the rest optional, and every present key must have the right type.
pub(crate) fn read(file: &GgufFile) -> Result<GgufTokenizerData, GgufError> {
    let string = |v: &MetaValue| v.as_str().map(str::to_owned);
    let strings = |v: &MetaValue| {
        v.as_str_array()
            .map(|a| a.into_iter().map(str::to_owned).collect::<Vec<_>>())
    };
    let id = |key: &str| {
        file.optional(key, "a token id (an unsigned 32-bit integer)", |v| {
            v.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    };
    let flag = |key: &str| file.optional(key, "a bool", MetaValue::as_bool);
    let tokens = file.require(TOKENS, "an array of strings", strings)?;
    let per_token = |key: &str, len: usize| -> Result<(), GgufError> {
        if len != tokens.len() {
            return Err(GgufError::BadModel {
                path: file.path.clone(),
                reason: format!(
                    "`{key}` has {len} entries but `{TOKENS}` has {} tokens",
                    tokens.len()
                ),
            });
        }
        Ok(())
    };
    let token_types = file.optional(
        "tokenizer.ggml.token_type",
        "an array of 32-bit integers",
        MetaValue::as_i32_array,
    )?;
    if let Some(t) = &token_types {
        per_token("tokenizer.ggml.token_type", t.len())?;
    }
    let scores = file.optional(
        "tokenizer.ggml.scores",
        "an array of numbers",
        MetaValue::as_f32_array,
    )?;
    if let Some(s) = &scores {
        per_token("tokenizer.ggml.scores", s.len())?;
    }
    Ok(GgufTokenizerData {
        model: file.require(MODEL, "a string", string)?,
        pre: file.optional("tokenizer.ggml.pre", "a string", string)?,
        token_types,
        scores,
        merges: file.optional("tokenizer.ggml.merges", "an array of strings", strings)?,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: id("tokenizer.ggml.eos_token_id")?,
        padding_token_id: id("tokenizer.ggml.padding_token_id")?,
        unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
        add_bos_token: flag("tokenizer.ggml.add_bos_token")?,
        add_eos_token: flag("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix")?,
        chat_template: file.optional("tokenizer.chat_template", "a string", string)?,
        tokens,
    })
}
