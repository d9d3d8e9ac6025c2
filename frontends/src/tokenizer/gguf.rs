//! Tokenizers from a GGUF file's tokenizer metadata (`tokenizer.ggml.*`).
//!
//! A GGUF file has no `tokenizer.json`: it stores the vocabulary, the merges and
//! the special token ids under llama.cpp's key names. This module rebuilds the
//! tokenizer exactly as transformers does in `AutoTokenizer.from_pretrained(dir,
//! gguf_file=...)` (transformers 5, `integrations/gguf/gguf_tokenizer_mapping.py`):
//!
//! - `gpt2`: byte-level BPE. Tokens not written in the GPT-2 byte alphabet are
//!   respelled into it; the merges come from the file (or, without them, are
//!   derived from the vocabulary and scores); a `ByteLevel` pre-tokenizer (GPT-2
//!   split regex, or the regex [`split_regex`] gives for the file's `pre`), a
//!   `ByteLevel` decoder; no BOS unless the file asks for it.
//! - `llama`: SentencePiece BPE with byte fallback: merges from the file or
//!   derived from the scores (best first), a `▁` `Metaspace` pre-tokenizer that
//!   prepends a space to the first word only, a decoder that turns `▁` back into
//!   spaces, fuses byte tokens and strips the first leading space; BOS added
//!   unless the file says otherwise.
//!
//! In both, control tokens (type 3; in a byte-level vocabulary only those written
//! in the byte alphabet) become special added tokens and user-defined tokens
//! (type 4) plain added tokens, so that `<|im_start|>` or `<think>` stay whole.
//! The BOS/EOS/unknown/padding tokens become special too.
//!
//! Where transformers would append a token that is not in the file's vocabulary
//! (its class defaults, like GPT-2's `<|endoftext|>` for a vocabulary without
//! one), kiln does not: such an id lies past the model's embedding table.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::error::TokenizerError;

/// GGUF token type of an ordinary token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// GGUF token type of the unknown token.
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
/// GGUF token type of a control token (`<|im_start|>`, `</s>`): a special token.
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token (`<think>`): always matched whole.
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// GGUF token type of an unused token.
pub const TOKEN_TYPE_UNUSED: i32 = 5;
/// GGUF token type of a byte token (`<0x0A>`).
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// `tokenizer.ggml.model` of byte-level BPE vocabularies (GPT-2, Llama 3, Qwen, SmolLM...).
pub const MODEL_GPT2: &str = "gpt2";
/// `tokenizer.ggml.model` of SentencePiece vocabularies (Llama 1/2, Mistral...).
pub const MODEL_LLAMA: &str = "llama";

/// The SentencePiece word boundary, standing for a space.
const METASPACE: char = '▁';

/// The special tokens transformers' `GPT2Tokenizer` names by default.
const GPT2_DEFAULT_SPECIAL: &[&str] = &["<|endoftext|>"];
/// The special tokens transformers' `LlamaTokenizer` names by default (BOS, EOS, unknown).
const LLAMA_DEFAULT_SPECIAL: &[&str] = &["<s>", "</s>", "<unk>"];

/// Llama 3's split regex (also Falcon 3, LFM2, DBRX, Pixtral...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken split regex.
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's split regex (also Llama 4, MiniMax-M2...).
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split regex (single digits).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5's split regex (marks join letters).
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer metadata of a GGUF file (`tokenizer.ggml.*` and
/// `tokenizer.chat_template`) as [`crate::gguf`] reads it. `add_space_prefix`
/// is not used: transformers' conversion ignores it too.
pub type GgufVocab = crate::gguf::GgufTokenizerData;

/// What [`build`] makes of a [`GgufVocab`].
pub(crate) struct GgufTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The BOS token, if the file names one.
    pub bos_token: Option<String>,
    /// The EOS token, if the file names one.
    pub eos_token: Option<String>,
    /// The unknown token, if the file names one.
    pub unk_token: Option<String>,
    /// The padding token, if the file names one.
    pub pad_token: Option<String>,
}

/// The split regex transformers uses for a byte-level vocabulary whose
/// `tokenizer.ggml.pre` is `pre`, or `None` for GPT-2's (the `ByteLevel`
/// pre-tokenizer's own; SmolLM's `smollm` is one of those).
pub fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

fn unsupported_model(model: &str) -> TokenizerError {
    bad(format!(
        "tokenizer model `{model}` is not supported (only `{MODEL_GPT2}` and `{MODEL_LLAMA}`)"
    ))
}

fn bad(reason: impl Into<String>) -> TokenizerError {
    TokenizerError::BadGgufVocab {
        reason: reason.into(),
    }
}

/// Builds the tokenizer `vocab` describes, as transformers does.
pub(crate) fn build(vocab: &GgufVocab) -> Result<GgufTokenizer, TokenizerError> {
    if vocab.tokens.is_empty() {
        return Err(bad("`tokenizer.ggml.tokens` is empty"));
    }
    let n = vocab.tokens.len();
    if let Some(types) = &vocab.token_types {
        if types.len() != n {
            return Err(bad(format!("{} token types for {n} tokens", types.len())));
        }
    }
    if let Some(scores) = &vocab.scores {
        if scores.len() != n {
            return Err(bad(format!("{} scores for {n} tokens", scores.len())));
        }
    }
    let named = |what: &str, id: Option<u32>| -> Result<Option<String>, TokenizerError> {
        id.map(|id| {
            vocab.tokens.get(id as usize).cloned().ok_or_else(|| {
                bad(format!(
                    "{what} token id {id} is outside the vocabulary of {n} tokens"
                ))
            })
        })
        .transpose()
    };
    let bos_token = named("BOS", vocab.bos_token_id)?;
    let eos_token = named("EOS", vocab.eos_token_id)?;
    let unk_token = named("unknown", vocab.unknown_token_id)?;
    let pad_token = named("padding", vocab.padding_token_id)?;

    let byte_level = match vocab.model.as_str() {
        MODEL_GPT2 => true,
        MODEL_LLAMA => false,
        other => return Err(unsupported_model(other)),
    };
    let (mut tokenizer, defaults, default_add_bos) = if byte_level {
        (byte_level_tokenizer(vocab)?, GPT2_DEFAULT_SPECIAL, false)
    } else {
        (sentencepiece_tokenizer(vocab)?, LLAMA_DEFAULT_SPECIAL, true)
    };

    // The added tokens, in the order transformers adds them (a token added twice
    // keeps what the `tokenizers` library makes of the sequence of calls).
    // 1. The class's default special tokens.
    let defaults: Vec<AddedToken> = defaults
        .iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer.add_tokens(&defaults);
    // 2. Control tokens as special tokens, user-defined ones as plain added tokens.
    if let Some(types) = &vocab.token_types {
        let alphabet: HashSet<char> = byte_alphabet().into_iter().collect();
        let control: Vec<AddedToken> = vocab
            .tokens
            .iter()
            .zip(types)
            .filter(|(token, ty)| {
                **ty == TOKEN_TYPE_CONTROL
                    && (!byte_level || token.chars().all(|c| alphabet.contains(&c)))
            })
            .map(|(token, _)| AddedToken::from(token.as_str(), true).normalized(false))
            .collect();
        if !control.is_empty() {
            tokenizer.add_special_tokens(&control);
        }
        let known = tokenizer.get_vocab(true);
        let user_defined: Vec<AddedToken> = vocab
            .tokens
            .iter()
            .zip(types)
            .filter(|(token, ty)| **ty == TOKEN_TYPE_USER_DEFINED && known.contains_key(*token))
            .map(|(token, _)| AddedToken::from(token.as_str(), false).normalized(false))
            .collect();
        if !user_defined.is_empty() {
            tokenizer.add_tokens(&user_defined);
        }
    }
    // 3. The file's BOS, EOS, unknown and padding tokens, unless already added.
    let added: HashSet<String> = tokenizer
        .get_added_tokens_decoder()
        .into_values()
        .map(|t| t.content)
        .collect();
    let mut named_tokens: Vec<AddedToken> = Vec::new();
    for token in [&bos_token, &eos_token, &unk_token, &pad_token]
        .into_iter()
        .flatten()
    {
        if !added.contains(token)
            && tokenizer.token_to_id(token).is_some()
            && !named_tokens.iter().any(|t| &t.content == token)
        {
            named_tokens.push(AddedToken::from(token.as_str(), true));
        }
    }
    if !named_tokens.is_empty() {
        tokenizer.add_tokens(&named_tokens);
    }

    if let Some(regex) = vocab.pre.as_deref().and_then(split_regex) {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| {
            bad(format!(
                "split regex of `{}`: {e}",
                vocab.pre.as_deref().unwrap_or("")
            ))
        })?;
        let sequence = PreTokenizerSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ]);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(sequence)));
    }

    let add_bos = vocab.add_bos_token.unwrap_or(default_add_bos);
    let add_eos = vocab.add_eos_token.unwrap_or(false);
    // The id the vocabulary gives the token (the file's id if it was respelled).
    fn with_id<'t>(
        tokenizer: &Tokenizer,
        token: &'t Option<String>,
        file_id: Option<u32>,
    ) -> Option<(&'t str, u32)> {
        let token = token.as_deref()?;
        Some((token, tokenizer.token_to_id(token).or(file_id)?))
    }
    let post = template_processing(
        with_id(&tokenizer, &bos_token, vocab.bos_token_id).filter(|_| add_bos),
        with_id(&tokenizer, &eos_token, vocab.eos_token_id).filter(|_| add_eos),
    )?;
    tokenizer.with_post_processor(Some(post));

    Ok(GgufTokenizer {
        tokenizer,
        bos_token,
        eos_token,
        unk_token,
        pad_token,
    })
}

/// The post-processor transformers' `update_post_processor` writes: `bos` before
/// and `eos` after each sequence, when given (as token and id).
pub(crate) fn template_processing(
    bos: Option<(&str, u32)>,
    eos: Option<(&str, u32)>,
) -> Result<TemplateProcessing, TokenizerError> {
    let before = bos.map(|(t, _)| format!("{t}:0 ")).unwrap_or_default();
    let after = eos.map(|(t, _)| format!(" {t}:0")).unwrap_or_default();
    let single = format!("{before}$A:0{after}");
    let pair_bos = bos.map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let pair_eos = eos.map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let pair = format!("{single}{pair_bos} $B:1{pair_eos}");
    let special: Vec<(String, u32)> = bos
        .into_iter()
        .chain(eos)
        .map(|(t, id)| (t.to_owned(), id))
        .collect();
    let template_error = |e: String| bad(format!("post-processor template `{single}`: {e}"));
    TemplateProcessing::builder()
        .try_single(single.as_str())
        .map_err(template_error)?
        .try_pair(pair.as_str())
        .map_err(template_error)?
        .special_tokens(special)
        .build()
        .map_err(|e| template_error(e.to_string()))
}

/// transformers' `byte_level_tokenizer` (`GPT2Tokenizer` over the file's vocabulary).
fn byte_level_tokenizer(vocab: &GgufVocab) -> Result<Tokenizer, TokenizerError> {
    let alphabet = byte_alphabet();
    let spelled: HashSet<char> = alphabet.iter().copied().collect();
    // Collecting keeps the last id of a key listed twice, as a Python dict does.
    let ids: Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, token)| {
            let key = if token.chars().all(|c| spelled.contains(&c)) {
                token.clone()
            } else {
                token.bytes().map(|b| alphabet[b as usize]).collect()
            };
            (key, id as u32)
        })
        .collect();
    let merges = merges(vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| bad(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// transformers' `sentencepiece_tokenizer` (`LlamaTokenizer` over the file's vocabulary).
fn sentencepiece_tokenizer(vocab: &GgufVocab) -> Result<Tokenizer, TokenizerError> {
    let ids: Vocab = token_ids(&vocab.tokens).into_iter().collect();
    let merges = merges(vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| bad(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new(METASPACE, PrependScheme::First, false)));
    let replace =
        Replace::new(METASPACE.to_string(), " ").map_err(|e| bad(format!("decoder: {e}")))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
    ])));
    Ok(tokenizer)
}

/// Token → id, the last id winning for a token listed twice (as a Python dict
/// comprehension over the list does).
fn token_ids(tokens: &[String]) -> HashMap<String, u32> {
    let mut ids = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        ids.insert(token.clone(), id as u32);
    }
    ids
}

/// The file's merges, or (without them) the merges its vocabulary and scores imply.
fn merges(vocab: &GgufVocab) -> Result<Vec<(String, String)>, TokenizerError> {
    if let Some(merges) = &vocab.merges {
        return merges
            .iter()
            .map(|merge| {
                let mut parts = merge.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_owned(), b.to_owned())),
                    _ => Err(bad(format!(
                        "merge {merge:?} is not two tokens separated by one space"
                    ))),
                }
            })
            .collect();
    }
    let scores = vocab.scores.as_ref().ok_or_else(|| {
        bad("neither `tokenizer.ggml.merges` nor `tokenizer.ggml.scores`: no way to know the merges")
    })?;
    Ok(generate_merges(&vocab.tokens, scores))
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of every
/// token into two tokens of the vocabulary is a merge, ranked by the token's
/// score (best first), then by the lengths of the left and right parts (longest
/// first), then in vocabulary order.
pub fn generate_merges(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let ids = token_ids(tokens);
    // Tokens in order of first appearance, each with its last score (a Python dict).
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score_of: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    for (token, score) in tokens.iter().zip(scores) {
        if score_of.insert(token.as_str(), *score).is_none() {
            order.push(token.as_str());
        }
    }
    // (left, right, score, left chars, right chars)
    let mut merges: Vec<(&str, &str, f32, usize, usize)> = Vec::new();
    for merge in order {
        let score = score_of[merge];
        let mut local = Vec::new();
        let chars = merge.chars().count();
        for (split_chars, (at, _)) in merge.char_indices().enumerate().skip(1) {
            let (left, right) = merge.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) {
                local.push((left, right, score, split_chars, chars - split_chars));
            }
        }
        local.sort_by_key(|(l, r, ..)| (ids[*l], ids[*r]));
        merges.extend(local);
    }
    // Python's `sorted(..., reverse=True)` is stable: ties keep their order.
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.3.cmp(&a.3))
            .then(b.4.cmp(&a.4))
    });
    merges
        .into_iter()
        .map(|(l, r, ..)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// GPT-2's byte alphabet: the printable character standing for each byte
/// (`bytes_to_unicode`; a space is `Ġ`, a newline `Ċ`).
pub fn byte_alphabet() -> [char; 256] {
    let mut alphabet = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next += 1;
            next - 1
        };
        alphabet[byte as usize] = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    alphabet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[b'a' as usize], 'a');
        assert_eq!(a[0], 'Ā');
        let distinct: HashSet<char> = a.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn merges_follow_scores_then_lengths() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let merges = generate_merges(&tokens, &scores);
        let expected = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        let merges: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(merges, expected);
    }
}
