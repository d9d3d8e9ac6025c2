//! Chat templates: Jinja templates that turn a conversation into the prompt text
//! a chat model was trained on, rendered with minijinja the way transformers
//! renders them with Jinja2.
//!
//! transformers' environment is mirrored: `trim_blocks` and `lstrip_blocks` on,
//! loop controls (`{% break %}`, `{% continue %}`), the globals
//! `raise_exception(message)` and `strftime_now(format)`, a `tojson` filter that
//! writes JSON as Python's `json.dumps` does (no HTML escaping; `indent`,
//! `separators`, `sort_keys` and `ensure_ascii` arguments), and Python's string,
//! list and dict methods (`.strip()`, `.startswith()`, `.items()`...) through
//! minijinja-contrib's `pycompat`. The variables are `messages`,
//! `add_generation_prompt`, `tools` and `documents` (none), and the tokenizer's
//! named special tokens (`bos_token`, `eos_token`, ...). `{{ true }}` and
//! `{{ none }}` print as Python prints them (`True`, `None`).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

use super::error::TokenizerError;

/// The name chat templates carry in the template engine's error messages.
const TEMPLATE_NAME: &str = "chat_template";

/// Item and key separators of `tojson` without `indent` (Python's defaults).
const COMPACT_SEPARATORS: (&str, &str) = (", ", ": ");

/// Item and key separators of `tojson` with `indent` (Python's defaults).
const INDENTED_SEPARATORS: (&str, &str) = (",", ": ");

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who speaks: `system`, `user`, `assistant` (or whatever the template knows).
    pub role: String,
    /// What they say.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The error `raise_exception` attaches to the template engine's error, so that
/// the caller can tell a deliberate refusal from a broken template.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

/// Renders `template` for `messages`; `special_tokens` are the template
/// variables naming special tokens (`("bos_token", "<s>")`...).
pub(crate) fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    special_tokens: &[(&'static str, String)],
) -> Result<String, TokenizerError> {
    let env = environment()?;
    let compiled = env
        .template_from_named_str(TEMPLATE_NAME, template)
        .map_err(template_error)?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            Value::from_pairs([
                ("role", Value::from(m.role.as_str())),
                ("content", Value::from(m.content.as_str())),
            ])
        })
        .collect();
    let mut variables: Vec<(&str, Value)> = special_tokens
        .iter()
        .map(|(name, token)| (*name, Value::from(token.as_str())))
        .collect();
    variables.extend([
        ("messages", Value::from(messages)),
        ("add_generation_prompt", Value::from(add_generation_prompt)),
        ("tools", Value::from(())),
        ("documents", Value::from(())),
    ]);
    compiled
        .render(Value::from_pairs(variables))
        .map_err(template_error)
}

/// The environment transformers renders chat templates in.
fn environment() -> Result<Environment<'static>, TokenizerError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(template_error)?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    Ok(env)
}

/// Writes `{{ value }}` as Jinja2 does: booleans and none as Python spells them
/// (`True`, `False`, `None`), everything else as minijinja does.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    let python = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(python).map_err(Error::from)
}

/// The template's way to refuse a conversation (a role it does not know, say).
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// The local time formatted by a C `strftime` format, like Python's
/// `datetime.now().strftime(format)`.
fn strftime_now(format: String) -> Result<String, Error> {
    jiff::fmt::strtime::format(format.as_str(), &jiff::ZonedDateTime::now()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now({format:?}): {e}"),
        )
    })
}

/// A template engine error as a [`TokenizerError`]: [`TokenizerError::TemplateRaised`]
/// when the template called `raise_exception`.
fn template_error(error: Error) -> TokenizerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(Raised(message)) = e.downcast_ref::<Raised>() {
            return TokenizerError::TemplateRaised {
                message: message.clone(),
            };
        }
        source = e.source();
    }
    TokenizerError::Template {
        message: error.to_string(),
    }
}

/// `value | tojson(indent=None, separators=None, sort_keys=False, ensure_ascii=False)`:
/// JSON text as Python's `json.dumps` writes it.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(if let Some(s) = v.as_str() {
            s.to_owned()
        } else if let Some(n) = v.as_i64() {
            " ".repeat(usize::try_from(n).unwrap_or(0))
        } else {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: indent must be an integer or a string, not {}",
                    v.kind()
                ),
            ));
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => match (a.as_str(), b.as_str()) {
                    (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                    _ => return Err(bad_separators()),
                },
                _ => return Err(bad_separators()),
            }
        }
        _ => {
            let (a, b) = if indent.is_some() {
                INDENTED_SEPARATORS
            } else {
                COMPACT_SEPARATORS
            };
            (a.to_owned(), b.to_owned())
        }
    };
    let writer = JsonWriter {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    writer.value(&value, 0, &mut out)?;
    Ok(Value::from(out))
}

fn bad_separators() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "tojson: separators must be a pair of strings",
    )
}

/// Python's `json.dumps` options.
struct JsonWriter {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonWriter {
    fn value(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&number_text(value)?),
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, out, |i, out| {
                    self.value(&items[i], depth + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((key_text(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container('{', '}', entries.len(), depth, out, |i, out| {
                    self.string(&entries[i].0, out);
                    out.push_str(&self.key_sep);
                    self.value(&entries[i].1, depth + 1, out)
                })?;
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    /// A list or object of `len` items, each written by `item`.
    fn container(
        &self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            if let Some(indent) = &self.indent {
                out.push('\n');
                out.push_str(&indent.repeat(depth + 1));
            }
            item(i, out)?;
        }
        if let Some(indent) = &self.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
        out.push(close);
        Ok(())
    }

    /// A JSON string literal, escaped as Python escapes it.
    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A map key as Python's `json.dumps` writes it (keys become strings).
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Number => number_text(key),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::None => Ok("null".to_owned()),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: keys must be strings, not {kind}"),
        )),
    }
}

/// A number as Python writes it: integers in full, floats as `repr` does.
fn number_text(value: &Value) -> Result<String, Error> {
    if value.is_integer() {
        return Ok(i128::try_from(value.clone())
            .map(|n| n.to_string())
            .unwrap_or_else(|_| value.to_string()));
    }
    let x = f64::try_from(value.clone())?;
    Ok(python_float_repr(x))
}

/// Python's `repr(float)` (and `json.dumps` of a float): the shortest digits that
/// round-trip, in positional notation for exponents -4 to 15, else as `1e+16`.
pub(crate) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.5e-7", "-1e20", "0e0".
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::python_float_repr;

    #[test]
    fn floats_print_as_python_repr() {
        for (x, text) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float_repr(x), text, "{x}");
        }
    }
}
