//! Text tokenization for language models: Hugging Face model folders
//! ([`TextTokenizer::from_folder`]) and GGUF files
//! ([`TextTokenizer::from_gguf_parts`]), built on the `tokenizers` library.
//!
//! A [`TextTokenizer`] encodes text to ids and decodes ids to text, all at once
//! or one id at a time ([`TextTokenizer::stream`]), knows its BOS and stop
//! tokens, and renders conversations with the model's chat template
//! ([`TextTokenizer::apply_chat_template`]) as transformers does.
//!
//! The reference is transformers: the ids [`TextTokenizer::encode`] gives are
//! those of `AutoTokenizer.from_pretrained(...)(text)["input_ids"]`, and
//! [`TextTokenizer::encode_chat`] those of `apply_chat_template(messages,
//! add_generation_prompt=True, tokenize=True)`, which encodes the rendered
//! text without adding special tokens again.
//!
//! Every failure is a [`TokenizerError`] naming the file and what is wrong.

mod chat;
mod error;
mod folder;
mod gguf;
mod stream;
mod validate;

use std::fmt;
use std::path::Path;

use tokenizers::{AddedToken, ModelWrapper, Tokenizer};

pub use chat::ChatMessage;
pub use error::TokenizerError;
pub use folder::{
    CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE, MAX_CONFIG_BYTES, MAX_TOKENIZER_BYTES,
    MODEL_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};
pub use gguf::{
    byte_alphabet, generate_merges, split_regex, GgufVocab, MODEL_GPT2, MODEL_LLAMA,
    TOKEN_TYPE_BYTE, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_UNUSED,
    TOKEN_TYPE_USER_DEFINED,
};
pub use stream::DecodeStream;

/// End-of-turn tokens of common chat formats (ChatML, Llama 3, Phi-3, Gemma,
/// Command-R, gpt-oss). One that the chat template writes and that is a special
/// token of the vocabulary stops generation, like the EOS token.
pub const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_turn|>",
    "<|END_OF_TURN_TOKEN|>",
    "<|return|>",
    "<|call|>",
];

/// A text tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    /// The named special tokens that are set, as chat template variables
    /// (`("bos_token", "<s>")`...).
    special_tokens: Vec<(&'static str, String)>,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    chat_template: Option<String>,
    model_max_length: Option<u64>,
    /// transformers' `clean_up_tokenization_spaces` (never for BPE models).
    clean_up_tokenization_spaces: bool,
}

impl fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special_tokens)
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("chat_template", &self.chat_template.is_some())
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Loads the tokenizer of the Hugging Face model folder `dir`.
    ///
    /// `tokenizer.json` is required. `tokenizer_config.json` and
    /// `special_tokens_map.json` may name special tokens (strings or
    /// `{"content": ...}`), `add_bos_token`/`add_eos_token` (which build the
    /// post-processor only where `tokenizer.json` has none: its own decides,
    /// as in transformers), the chat template (a string, or a list of
    /// `{name, template}` of which `default` is used; a `chat_template.jinja`
    /// file takes priority) and `model_max_length`. `generation_config.json` and
    /// `config.json` may give `eos_token_id` (one id or a list) and
    /// `bos_token_id`. Truncation and padding in `tokenizer.json` are dropped:
    /// transformers encodes without them unless asked.
    pub fn from_folder(dir: &Path) -> Result<TextTokenizer, TokenizerError> {
        let path = dir.join(TOKENIZER_FILE);
        let bytes = folder::read_optional(&path, MAX_TOKENIZER_BYTES)?.ok_or_else(|| {
            TokenizerError::MissingFile {
                path: path.clone(),
                what: "the serialized tokenizer every Hugging Face tokenizer folder has",
            }
        })?;
        // The whole file must be valid JSON (UTF-8 and escapes included, so it is
        // parsed into a value, not skipped over) before the `tokenizers` library
        // reads it: it panics instead of failing on syntax errors and invalid
        // strings inside the `decoder` object (found by fuzzing).
        let value = serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
            TokenizerError::Json {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        validate::tokenizer(&value).map_err(|message| TokenizerError::BadTokenizer {
            path: path.clone(),
            message,
        })?;
        drop(value);
        let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
            match e.downcast_ref::<serde_json::Error>() {
                Some(json) if json.is_syntax() || json.is_eof() => TokenizerError::Json {
                    path: path.clone(),
                    message: json.to_string(),
                },
                _ => TokenizerError::BadTokenizer {
                    path: path.clone(),
                    message: e.to_string(),
                },
            }
        })?;
        drop(bytes);
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenizerError::BadTokenizer {
                path: path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);

        let config = folder::read_config(dir)?;

        // Named and extra special tokens of the vocabulary that tokenizer.json
        // does not list as added tokens become special (transformers adds them).
        let added: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect();
        let mut new_special: Vec<AddedToken> = Vec::new();
        for token in config
            .special_tokens
            .iter()
            .map(|(_, t)| t)
            .chain(&config.extra_special_tokens)
        {
            if !added.contains(token)
                && tokenizer.token_to_id(token).is_some()
                && !new_special.iter().any(|t| &t.content == token)
            {
                new_special.push(AddedToken::from(token.as_str(), true));
            }
        }
        if !new_special.is_empty() {
            tokenizer.add_tokens(&new_special);
        }

        if tokenizer.get_post_processor().is_none() {
            let with_id = |name: &str, wanted: Option<bool>| {
                config
                    .special(name)
                    .filter(|_| wanted == Some(true))
                    .and_then(|t| tokenizer.token_to_id(t).map(|id| (t, id)))
            };
            let bos = with_id("bos_token", config.add_bos_token);
            let eos = with_id("eos_token", config.add_eos_token);
            if bos.is_some() || eos.is_some() {
                let post = gguf::template_processing(bos, eos).map_err(|e| {
                    TokenizerError::BadTokenizer {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
                tokenizer.with_post_processor(Some(post));
            }
        }

        let bos_id = config
            .special("bos_token")
            .and_then(|t| tokenizer.token_to_id(t))
            .or(config.bos_token_id);
        let mut eos_ids = config.eos_token_ids.clone();
        eos_ids.extend(
            config
                .special("eos_token")
                .and_then(|t| tokenizer.token_to_id(t)),
        );
        let clean_up = config.clean_up_tokenization_spaces
            && !matches!(tokenizer.get_model(), ModelWrapper::BPE(_));
        Ok(Self::assemble(
            tokenizer,
            config.special_tokens,
            bos_id,
            eos_ids,
            config.chat_template,
            config.model_max_length,
            clean_up,
        ))
    }

    /// Builds the tokenizer a GGUF file's tokenizer metadata describes, as
    /// transformers 5's `AutoTokenizer.from_pretrained(dir, gguf_file=...)` does:
    ///
    /// - `gpt2`: byte-level BPE over the file's merges (or, without them, merges
    ///   derived from the scores); tokens not written in GPT-2's byte alphabet
    ///   are respelled into it; GPT-2's split regex, or the one [`split_regex`]
    ///   gives for the file's `pre`; no BOS unless `add_bos_token` says so.
    /// - `llama`: SentencePiece BPE with byte fallback, merges derived from the
    ///   scores ([`generate_merges`]) unless the file lists them, a `▁` prefix on
    ///   the first word only, BOS added unless `add_bos_token` is false.
    ///
    /// Control tokens (type 3; in a byte-level vocabulary only those written in
    /// the byte alphabet) become special tokens and user-defined ones (type 4)
    /// plain added tokens, so `<|im_start|>` and `<think>` stay whole; so do the
    /// BOS/EOS/unknown/padding tokens. Unlike transformers, kiln never appends a
    /// token the file lacks (like GPT-2's default `<|endoftext|>`): every id is
    /// inside the model's vocabulary.
    pub fn from_gguf_parts(parts: GgufVocab) -> Result<TextTokenizer, TokenizerError> {
        let built = gguf::build(&parts)?;
        let special_tokens: Vec<(&'static str, String)> = [
            ("bos_token", built.bos_token),
            ("eos_token", built.eos_token),
            ("unk_token", built.unk_token),
            ("pad_token", built.pad_token),
        ]
        .into_iter()
        .filter_map(|(name, token)| token.map(|t| (name, t)))
        .collect();
        Ok(Self::assemble(
            built.tokenizer,
            special_tokens,
            parts.bos_token_id,
            parts.eos_token_id.into_iter().collect(),
            parts.chat_template,
            None,
            false,
        ))
    }

    /// The tokenizer with its stop tokens completed by the template's
    /// end-of-turn token and deduplicated.
    fn assemble(
        tokenizer: Tokenizer,
        special_tokens: Vec<(&'static str, String)>,
        bos_id: Option<u32>,
        mut eos_ids: Vec<u32>,
        chat_template: Option<String>,
        model_max_length: Option<u64>,
        clean_up_tokenization_spaces: bool,
    ) -> Self {
        if let Some(template) = &chat_template {
            let special = tokenizer.get_added_tokens_decoder();
            for token in END_OF_TURN_TOKENS {
                if !template.contains(token) {
                    continue;
                }
                let id = special
                    .iter()
                    .find(|(_, t)| t.special && t.content == *token)
                    .map(|(id, _)| *id);
                eos_ids.extend(id);
            }
        }
        let mut seen = std::collections::HashSet::new();
        eos_ids.retain(|id| seen.insert(*id));
        Self {
            tokenizer,
            special_tokens,
            bos_id,
            eos_ids,
            chat_template,
            model_max_length,
            clean_up_tokenization_spaces,
        }
    }

    /// The ids of `text`; with `add_special_tokens`, the post-processor's
    /// special tokens too (a BOS, or BERT's `[CLS]`/`[SEP]`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                message: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; with `skip_special_tokens`, special tokens are left
    /// out. Ids outside the vocabulary are left out too (as transformers does).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let text = self
            .tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                message: e.to_string(),
            })?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// An incremental decoder, for text as a model generates ids; special tokens
    /// are left out (see [`stream_with`](Self::stream_with)).
    pub fn stream(&self) -> DecodeStream<'_> {
        self.stream_with(true)
    }

    /// An incremental decoder; with `skip_special_tokens`, special tokens are left
    /// out. Its pieces concatenate to [`decode`](Self::decode) of the same ids
    /// (without transformers' `clean_up_tokenization_spaces`, which only BERT-like
    /// WordPiece folders ask for).
    pub fn stream_with(&self, skip_special_tokens: bool) -> DecodeStream<'_> {
        DecodeStream::new(&self.tokenizer, skip_special_tokens)
    }

    /// The BOS token's id: the tokenizer's BOS token, else the `bos_token_id` of
    /// `generation_config.json` or `config.json`. Whether
    /// [`encode`](Self::encode) adds it is the post-processor's business.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The ids that end generation: the EOS ids of `generation_config.json` and
    /// `config.json`, the EOS token's, and the chat template's end-of-turn token
    /// ([`END_OF_TURN_TOKENS`]) when it is a special token; without repeats.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation (is one of [`eos_ids`](Self::eos_ids)).
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// How many ids there are, added tokens included: every id
    /// [`encode`](Self::encode) returns is smaller.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of `token` (a vocabulary entry or an added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The token of `id`, as the vocabulary spells it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// The special token called `name` (`"bos_token"`, `"eos_token"`,
    /// `"unk_token"`, `"sep_token"`, `"pad_token"`, `"cls_token"`, `"mask_token"`).
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_str())
    }

    /// `model_max_length` of `tokenizer_config.json`, if it sets a real limit.
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }

    /// The chat template (Jinja), if the tokenizer has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The prompt text of `messages`, rendered by the chat template as
    /// transformers renders it; with `add_generation_prompt`, ending with the
    /// header of the assistant's reply.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        chat::render(
            template,
            messages,
            add_generation_prompt,
            &self.special_tokens,
        )
    }

    /// The ids of the prompt for the assistant's reply to `messages`: the chat
    /// template rendered with `add_generation_prompt`, encoded without adding
    /// special tokens again (the template writes them).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TokenizerError> {
        let text = self.apply_chat_template(messages, true)?;
        self.encode(&text, false)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// transformers' `clean_up_tokenization`: no space before punctuation and
/// English contractions (for WordPiece output like `hello , world`).
fn clean_up_tokenization(text: &str) -> String {
    const REPLACEMENTS: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    let mut text = text.to_owned();
    for (from, to) in REPLACEMENTS {
        text = text.replace(from, to);
    }
    text
}
