//! Checks on the parts of `tokenizer.json` that the `tokenizers` library accepts
//! when it reads the file but panics on when it encodes or decodes (found by
//! fuzzing): run on the file's JSON value before the library builds the tokenizer.
//! Objects are judged by their fields, not their `type` tag: the library also
//! reads objects whose tag is missing or wrong by their fields.

use serde_json::Value;

/// Nesting of `Sequence` post-processors and decoders followed before giving up
/// (real files nest one level).
const MAX_PROCESSOR_DEPTH: usize = 16;

/// Checks every part [`post_processor`] and [`decoder`] check.
pub fn tokenizer(value: &Value) -> Result<(), String> {
    post_processor(value)?;
    decoder(value)
}

/// Checks `decoder`: no `Strip` decoder (also inside a `Sequence`) strips from the
/// end (`stop` > 0): the library indexes past the start of a token shorter than
/// `stop` whose characters are all the stripped one (an empty token is enough).
pub fn decoder(tokenizer: &Value) -> Result<(), String> {
    match tokenizer.get("decoder") {
        None | Some(Value::Null) => Ok(()),
        Some(d) => decoder_part(d, 0),
    }
}

fn decoder_part(d: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_PROCESSOR_DEPTH {
        return Err(format!(
            "decoder: `Sequence` decoders nest deeper than {MAX_PROCESSOR_DEPTH}"
        ));
    }
    if let Some(inner) = d.get("decoders").and_then(Value::as_array) {
        inner.iter().try_for_each(|e| decoder_part(e, depth + 1))?;
    }
    let stop = d.get("stop").and_then(Value::as_u64).unwrap_or(0);
    if d.get("content").is_some() && stop > 0 {
        return Err(format!(
            "decoder: a `Strip` decoder with stop = {stop} is not supported (the tokenizers \
             library fails on tokens shorter than that)"
        ));
    }
    Ok(())
}

/// Checks `post_processor`: every `TemplateProcessing` (also inside a `Sequence`,
/// and whatever its `type` field says)
/// names only special tokens it defines, each with as many ids as tokens, and its
/// `single` template uses no second sequence (`$B`): the library indexes its
/// special-token map and its encodings without checking either.
pub fn post_processor(tokenizer: &Value) -> Result<(), String> {
    match tokenizer.get("post_processor") {
        None | Some(Value::Null) => Ok(()),
        Some(p) => processor(p, 0),
    }
}

fn processor(p: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_PROCESSOR_DEPTH {
        return Err(format!(
            "post_processor: `Sequence` processors nest deeper than {MAX_PROCESSOR_DEPTH}"
        ));
    }
    // Judged by the fields, not by `type`: the library also reads objects
    // without a valid `type` tag by their fields (found by fuzzing).
    if let Some(inner) = p.get("processors").and_then(Value::as_array) {
        inner.iter().try_for_each(|q| processor(q, depth + 1))?;
    }
    if ["single", "pair", "special_tokens"]
        .iter()
        .any(|k| p.get(k).is_some())
    {
        template_processing(p)?;
    }
    Ok(())
}

fn template_processing(p: &Value) -> Result<(), String> {
    let empty = serde_json::Map::new();
    let specials = p
        .get("special_tokens")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, token) in specials {
        let len = |key: &str| token.get(key).and_then(Value::as_array).map(Vec::len);
        if len("ids") != len("tokens") {
            return Err(format!(
                "post_processor: special token `{name}` has {} ids for {} tokens",
                len("ids").unwrap_or(0),
                len("tokens").unwrap_or(0)
            ));
        }
    }
    for template in ["single", "pair"] {
        let pieces = p
            .get(template)
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for piece in pieces {
            if let Some(id) = piece
                .get("SpecialToken")
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
            {
                if !specials.contains_key(id) {
                    return Err(format!(
                        "post_processor: the `{template}` template uses special token `{id}`, \
                         which `special_tokens` does not define"
                    ));
                }
            }
            let sequence = piece
                .get("Sequence")
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str);
            if template == "single" && sequence == Some("B") {
                return Err(
                    "post_processor: the `single` template uses the second sequence `$B`".into(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::post_processor;
    use serde_json::json;

    fn template(single: serde_json::Value, specials: serde_json::Value) -> serde_json::Value {
        json!({"post_processor": {"type": "Sequence", "processors": [{
            "type": "TemplateProcessing",
            "single": single,
            "pair": [],
            "special_tokens": specials,
        }]}})
    }

    #[test]
    fn a_consistent_template_passes() {
        let t = template(
            json!([{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}]),
            json!({"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}),
        );
        post_processor(&t).unwrap();
        post_processor(&json!({"post_processor": null})).unwrap();
    }

    #[test]
    fn what_the_library_would_panic_on_is_refused() {
        let undefined = template(
            json!([{"SpecialToken": {"id": "<s>", "type_id": 0}}]),
            json!({}),
        );
        assert!(post_processor(&undefined).unwrap_err().contains("`<s>`"));
        let uneven = template(
            json!([]),
            json!({"<s>": {"id": "<s>", "ids": [1, 2], "tokens": ["<s>"]}}),
        );
        assert!(post_processor(&uneven)
            .unwrap_err()
            .contains("2 ids for 1 tokens"));
        let second = template(json!([{"Sequence": {"id": "B", "type_id": 0}}]), json!({}));
        assert!(post_processor(&second).unwrap_err().contains("$B"));
        let untagged = json!({"post_processor": {"t~pe": "x", "single": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}}], "pair": [], "special_tokens": {}}});
        assert!(post_processor(&untagged).unwrap_err().contains("`[CLS]`"));
    }

    #[test]
    fn strip_decoders_may_only_strip_the_start() {
        let strip = |start: u64, stop: u64| {
            json!({"decoder": {"type": "Sequence", "decoders": [
                {"type": "Strip", "content": " ", "start": start, "stop": stop}]}})
        };
        super::decoder(&strip(1, 0)).unwrap();
        assert!(super::decoder(&strip(0, 2))
            .unwrap_err()
            .contains("stop = 2"));
    }
}
