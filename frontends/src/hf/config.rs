//! `config.json`: typed access to the keys an architecture reads, with errors that
//! name the key.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::HfError;

/// A parsed `config.json` (or the equivalent built from GGUF metadata).
#[derive(Clone, Debug)]
pub struct Config {
    path: PathBuf,
    json: Value,
}

impl Config {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Config, HfError> {
        let json = read_json(path)?;
        Config::from_value(path, json)
    }

    /// Wraps an already-parsed JSON object; `path` names it in errors.
    pub fn from_value(path: &Path, json: Value) -> Result<Config, HfError> {
        if !json.is_object() {
            return Err(HfError::BadConfig {
                path: path.to_owned(),
                message: "the config is not a JSON object".into(),
            });
        }
        Ok(Config {
            path: path.to_owned(),
            json,
        })
    }

    /// Where it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The raw value of `key`, treating `null` as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, message: String) -> HfError {
        HfError::BadConfig {
            path: self.path.clone(),
            message,
        }
    }

    /// The first entry of `architectures` (or `model_type` when that list is absent).
    pub fn architecture(&self) -> Result<String, HfError> {
        if let Some(a) = self.get("architectures") {
            return a
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| self.bad("`architectures` is not a list of names".into()));
        }
        self.opt_str("model_type")?
            .ok_or_else(|| self.bad("neither `architectures` nor `model_type` is set".into()))
    }

    /// A required non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize, HfError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.bad(format!("missing key `{key}` (a positive integer)")))
    }

    /// An optional non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|u| Some(u as usize)).ok_or_else(|| {
                self.bad(format!("`{key}` is {v}, expected a non-negative integer"))
            }),
        }
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(format!("`{key}` is {v}, expected a number"))),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(format!("`{key}` is {v}, expected true or false"))),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.bad(format!("`{key}` is {v}, expected a string"))),
        }
    }

    /// The token ids of `key`, which may be one integer or a list of them.
    pub fn token_ids(&self, key: &str) -> Result<Vec<u32>, HfError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|u| u as u32)
                        .ok_or_else(|| self.bad(format!("`{key}` holds {v}, expected token ids")))
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .map(|u| vec![u as u32])
                .ok_or_else(|| self.bad(format!("`{key}` is {v}, expected a token id"))),
        }
    }

    /// Fails naming `key` unless `ok`.
    pub fn check(&self, ok: bool, message: impl Into<String>) -> Result<(), HfError> {
        if ok {
            Ok(())
        } else {
            Err(self.bad(message.into()))
        }
    }
}

/// Reads and parses a JSON file, naming it in errors.
pub fn read_json(path: &Path) -> Result<Value, HfError> {
    let text = std::fs::read_to_string(path).map_err(|e| HfError::BadJson {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| HfError::BadJson {
        path: path.to_owned(),
        message: format!("not valid JSON: {e}"),
    })
}
