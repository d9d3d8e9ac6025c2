//! The tokenizer files of a Hugging Face model folder: `tokenizer.json` and the
//! optional `tokenizer_config.json`, `special_tokens_map.json`,
//! `chat_template.jinja`, `generation_config.json` and `config.json`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::TokenizerError;

/// `tokenizer.json`, the serialized `tokenizers` tokenizer (required).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// `tokenizer_config.json`: special tokens, chat template, `add_bos_token`...
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// `special_tokens_map.json`: the named special tokens (older folders).
pub const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";
/// `chat_template.jinja`: the chat template, in newer folders.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// `generation_config.json`: the stop tokens generation uses.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// `config.json`: the model's configuration (BOS/EOS ids).
pub const MODEL_CONFIG_FILE: &str = "config.json";

pub use kiln_ir::limits::TOKENIZER_MAX_BYTES as MAX_TOKENIZER_BYTES;
pub use kiln_ir::limits::TOKENIZER_MAX_CONFIG_BYTES as MAX_CONFIG_BYTES;

/// The name of the default template in a list of named chat templates.
const DEFAULT_TEMPLATE_NAME: &str = "default";

/// The named special tokens transformers knows, in its order; each is a chat
/// template variable.
pub(crate) const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// What the optional files of a folder say about its tokenizer.
#[derive(Debug, Default)]
pub(crate) struct FolderConfig {
    /// The named special tokens (by [`SPECIAL_TOKEN_NAMES`]) that are set.
    pub special_tokens: Vec<(&'static str, String)>,
    /// Further special tokens (`additional_special_tokens`, `extra_special_tokens`).
    pub extra_special_tokens: Vec<String>,
    /// `add_bos_token`, if set.
    pub add_bos_token: Option<bool>,
    /// `add_eos_token`, if set.
    pub add_eos_token: Option<bool>,
    /// The (default) chat template.
    pub chat_template: Option<String>,
    /// `model_max_length`, unless absent or transformers' "no limit" (a huge float).
    pub model_max_length: Option<u64>,
    /// `clean_up_tokenization_spaces`.
    pub clean_up_tokenization_spaces: bool,
    /// EOS ids of `generation_config.json`, then of `config.json`.
    pub eos_token_ids: Vec<u32>,
    /// BOS id of `generation_config.json`, else of `config.json`.
    pub bos_token_id: Option<u32>,
}

impl FolderConfig {
    /// The special token named `name` (`"bos_token"`...), if set.
    pub fn special(&self, name: &str) -> Option<&str> {
        self.special_tokens
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_str())
    }
}

/// Reads a file of at most `limit` bytes; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, TokenizerError> {
    let io = |source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > limit {
        return Err(TokenizerError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
            limit,
        });
    }
    std::fs::read(path).map(Some).map_err(io)
}

/// Parses an optional JSON file that must hold an object.
fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>, TokenizerError> {
    let Some(bytes) = read_optional(path, MAX_CONFIG_BYTES)? else {
        return Ok(None);
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| TokenizerError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        other => Err(TokenizerError::Json {
            path: path.to_owned(),
            message: format!("expected a JSON object, found {}", json_kind(&other)),
        }),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad_field(path: &Path, field: &str, reason: String) -> TokenizerError {
    TokenizerError::BadField {
        path: path.to_owned(),
        field: field.to_owned(),
        reason,
    }
}

/// A special token written as a string or as `{"content": "..."}`; `None` for null.
fn token_text(path: &Path, field: &str, value: &Value) -> Result<Option<String>, TokenizerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(obj) => match obj.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad_field(
                path,
                field,
                "an object without a string `content`".to_owned(),
            )),
        },
        other => Err(bad_field(
            path,
            field,
            format!(
                "expected a string or {{\"content\": ...}}, found {}",
                json_kind(other)
            ),
        )),
    }
}

fn optional_bool(
    path: &Path,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, TokenizerError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad_field(
            path,
            field,
            format!("expected a boolean, found {}", json_kind(other)),
        )),
    }
}

/// A token id, or a list of them (`eos_token_id` may be either).
fn token_ids(path: &Path, field: &str, value: &Value) -> Result<Vec<u32>, TokenizerError> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                bad_field(
                    path,
                    field,
                    format!("expected a token id (a non-negative integer), found {v}"),
                )
            })
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// The special tokens listed under `field` (strings or `{"content": ...}`, as a
/// list, or as a map of names to tokens).
fn token_list(path: &Path, field: &str, value: &Value) -> Result<Vec<String>, TokenizerError> {
    let items: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) if !map.contains_key("content") => map.values().collect(),
        v => vec![v],
    };
    let mut tokens = Vec::new();
    for item in items {
        tokens.extend(token_text(path, field, item)?);
    }
    Ok(tokens)
}

/// The chat template in `tokenizer_config.json`: a string, or a list of
/// `{name, template}` of which the one named `default` is used.
fn chat_template(path: &Path, value: &Value) -> Result<Option<String>, TokenizerError> {
    const FIELD: &str = "chat_template";
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(items) => {
            for item in items {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(DEFAULT_TEMPLATE_NAME), Some(t)) => return Ok(Some(t.to_owned())),
                    (Some(_), Some(_)) => {}
                    _ => {
                        return Err(bad_field(
                            path,
                            FIELD,
                            "a list entry is not {\"name\": ..., \"template\": ...}".to_owned(),
                        ))
                    }
                }
            }
            Ok(None)
        }
        other => Err(bad_field(
            path,
            FIELD,
            format!(
                "expected a string or a list of named templates, found {}",
                json_kind(other)
            ),
        )),
    }
}

/// Reads the optional files of the folder `dir`.
pub(crate) fn read_config(dir: &Path) -> Result<FolderConfig, TokenizerError> {
    let mut config = FolderConfig::default();
    let mut named: Vec<Option<String>> = vec![None; SPECIAL_TOKEN_NAMES.len()];

    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let tokenizer_config = read_json_object(&config_path)?;
    let has_added_tokens_decoder = tokenizer_config
        .as_ref()
        .is_some_and(|c| c.contains_key("added_tokens_decoder"));
    if let Some(obj) = &tokenizer_config {
        read_special_tokens(
            &config_path,
            obj,
            &mut named,
            &mut config.extra_special_tokens,
        )?;
        config.add_bos_token = optional_bool(&config_path, obj, "add_bos_token")?;
        config.add_eos_token = optional_bool(&config_path, obj, "add_eos_token")?;
        config.clean_up_tokenization_spaces =
            optional_bool(&config_path, obj, "clean_up_tokenization_spaces")?.unwrap_or(false);
        if let Some(value) = obj.get("chat_template") {
            config.chat_template = chat_template(&config_path, value)?;
        }
        config.model_max_length = match obj.get("model_max_length") {
            None | Some(Value::Null) => None,
            Some(v) => match (v.as_u64(), v.as_f64()) {
                (Some(n), _) => Some(n),
                // transformers writes "no limit" as int(1e30), which JSON keeps as a float.
                (None, Some(f)) if f >= 0.0 => None,
                _ => {
                    return Err(bad_field(
                        &config_path,
                        "model_max_length",
                        format!("expected a non-negative number, found {v}"),
                    ))
                }
            },
        };
    }

    // transformers reads special_tokens_map.json only for folders whose
    // tokenizer_config.json has no `added_tokens_decoder`; its tokens win.
    if !has_added_tokens_decoder {
        let map_path = dir.join(SPECIAL_TOKENS_MAP_FILE);
        if let Some(obj) = read_json_object(&map_path)? {
            read_special_tokens(
                &map_path,
                &obj,
                &mut named,
                &mut config.extra_special_tokens,
            )?;
        }
    }
    config.special_tokens = SPECIAL_TOKEN_NAMES
        .iter()
        .zip(named)
        .filter_map(|(name, token)| token.map(|t| (*name, t)))
        .collect();

    // A separate chat_template.jinja takes priority over the config's template.
    let template_path = dir.join(CHAT_TEMPLATE_FILE);
    if let Some(bytes) = read_optional(&template_path, MAX_CONFIG_BYTES)? {
        let text = String::from_utf8(bytes).map_err(|e| TokenizerError::BadField {
            path: template_path.clone(),
            field: "template".to_owned(),
            reason: format!("not UTF-8: {e}"),
        })?;
        config.chat_template = Some(text);
    }

    for file in [GENERATION_CONFIG_FILE, MODEL_CONFIG_FILE] {
        let path: PathBuf = dir.join(file);
        let Some(obj) = read_json_object(&path)? else {
            continue;
        };
        if let Some(v) = obj.get("eos_token_id") {
            config
                .eos_token_ids
                .extend(token_ids(&path, "eos_token_id", v)?);
        }
        if config.bos_token_id.is_none() {
            if let Some(v) = obj.get("bos_token_id") {
                config.bos_token_id = token_ids(&path, "bos_token_id", v)?.first().copied();
            }
        }
    }
    Ok(config)
}

/// Reads the named and extra special tokens of a `tokenizer_config.json` or
/// `special_tokens_map.json` object; a name it sets replaces the earlier value.
fn read_special_tokens(
    path: &Path,
    obj: &Map<String, Value>,
    named: &mut [Option<String>],
    extra: &mut Vec<String>,
) -> Result<(), TokenizerError> {
    for (slot, name) in named.iter_mut().zip(SPECIAL_TOKEN_NAMES) {
        if let Some(value) = obj.get(name) {
            *slot = token_text(path, name, value)?;
        }
    }
    for field in ["additional_special_tokens", "extra_special_tokens"] {
        if let Some(value) = obj.get(field) {
            for token in token_list(path, field, value)? {
                if !extra.contains(&token) {
                    extra.push(token);
                }
            }
        }
    }
    Ok(())
}
