//! Resource limits a hostile file cannot exceed, all in one place.
//!
//! Every reader of a user's file (ONNX, safetensors, GGUF, `.npy`, `.kiln`, IR text,
//! tokenizers) checks sizes, counts and depths against these constants before it
//! allocates or recurses, and reports a file over a limit with an error naming
//! the limit, never an allocation failure, a stack overflow or a hang. The modules
//! that enforce them re-export them under their local names. The fuzz harnesses
//! (`kiln::fuzz`) run every format under a memory limit to keep it so.
//!
//! | limit | value | bounds | enforced by |
//! |---|---|---|---|
//! | [`MAX_TENSOR_BYTES`] | 8 GiB | one tensor the reference interpreter creates | `interp::run` |
//! | [`FOLD_MAX_ELEMENTS`] | 65,536 | elements of a value folded at import or specialization | ONNX import, `codegen::specialize` |
//! | [`MAX_GRAPH_NODES`] | 1,000,000 | nodes of one model after inlining | ONNX import |
//! | [`MAX_INLINE_DEPTH`] | 64 | nesting of `If` branches and model-local functions | ONNX import |
//! | [`MAX_PROTOBUF_DEPTH`] | 100 | nesting of protobuf messages | `prost`'s decoder |
//! | [`ROPE_TABLE_MAX_ELEMENTS`] | 8,388,608 | one rotary cos/sin table a decoder builds (positions × rotary dim / 2) | `frontends::hf` |
//! | [`SAFETENSORS_MAX_HEADER_BYTES`] | 100 MB | a safetensors JSON header | `frontends::safetensors` |
//! | [`SAFETENSORS_MAX_INDEX_BYTES`] | 64 MiB | a shard index (`model.safetensors.index.json`) | `frontends::safetensors` |
//! | [`GGUF_MAX_ALIGNMENT`] | 65,536 | `general.alignment` | `frontends::gguf` |
//! | [`GGUF_MAX_TENSORS`] | 65,536 | tensors one GGUF file declares | `frontends::gguf` |
//! | [`GGUF_MAX_METADATA_ENTRIES`] | 65,536 | metadata entries | `frontends::gguf` |
//! | [`GGUF_MAX_METADATA_VALUES`] | 4,194,304 | array elements in all metadata together | `frontends::gguf` |
//! | [`GGUF_MAX_ARRAY_DEPTH`] | 8 | nesting of metadata arrays | `frontends::gguf` |
//! | [`GGUF_MAX_STRING_LEN`] | 16 MiB | one metadata string | `frontends::gguf` |
//! | [`GGUF_MAX_KEY_LEN`] | 65,535 | one metadata key | `frontends::gguf` |
//! | [`GGUF_MAX_TENSOR_NAME_LEN`] | 1,024 | one tensor name | `frontends::gguf` |
//! | [`GGUF_MAX_DIMS`] | 4 | a GGUF tensor's rank | `frontends::gguf` |
//! | [`TOKENIZER_MAX_BYTES`] | 1 GiB | `tokenizer.json` | `frontends::tokenizer` |
//! | [`TOKENIZER_MAX_CONFIG_BYTES`] | 64 MiB | tokenizer configuration and template files | `frontends::tokenizer` |
//! | [`ARTIFACT_MAX_MANIFEST_BYTES`] | 16 MiB | a `.kiln` manifest | `runtime::artifact` |
//! | [`ARTIFACT_MAX_SECTIONS`] | 65,536 | sections of a `.kiln` file | `runtime::artifact` |
//! | [`ARTIFACT_MAX_SECTION_NAME_BYTES`] | 256 | one section name | `runtime::artifact` |
//!
//! Data sizes themselves are bounded by the file: tensors are views of the
//! memory-mapped file (their byte count is checked against it), so no declared
//! length is allocated before it is known to be there.

/// The largest tensor the interpreter will create. A model (or input) asking for
/// more gets an error instead of an allocation failure that would abort the process.
pub const MAX_TENSOR_BYTES: u64 = 1 << 33;

/// Outputs of at most this many elements are computed when every input of a node
/// is a constant: at ONNX import (shape computations, small literal arithmetic)
/// and at specialization (bigger results stay computations).
pub const FOLD_MAX_ELEMENTS: usize = 1 << 16;

/// Most nodes one imported model may have once `If` branches and functions are
/// inlined (the largest real exports have tens of thousands).
pub const MAX_GRAPH_NODES: usize = 1_000_000;

/// Deepest nesting of inlined `If` branches and model-local function calls (a
/// function calling itself would otherwise recurse until the stack overflows).
pub const MAX_INLINE_DEPTH: usize = 64;

/// Deepest nesting of protobuf messages (`prost`'s default recursion limit, kept
/// by not enabling its `no-recursion-limit` feature).
pub const MAX_PROTOBUF_DEPTH: usize = 100;

/// Most elements of one rotary-embedding cos (or sin) table a decoder computes at
/// load, positions × rotary dim / 2: 131,072 positions of a 128-wide head (32 MiB
/// each). A model declaring a longer context (the GGUF `context_length` or
/// `max_position_embeddings`, which cost the file nothing to state) gets its
/// positions capped here, with a warning, and generation past them is refused.
pub const ROPE_TABLE_MAX_ELEMENTS: usize = 1 << 23;

/// Largest safetensors JSON header accepted, in bytes (the `safetensors` crate's
/// own limit).
pub const SAFETENSORS_MAX_HEADER_BYTES: u64 = 100_000_000;

/// Largest shard index file accepted, in bytes (real ones are a few hundred KiB).
pub const SAFETENSORS_MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Largest GGUF `general.alignment` accepted (real files use 32 or 64).
pub const GGUF_MAX_ALIGNMENT: u64 = 1 << 16;

/// Most tensors a GGUF file may declare (a 405B-parameter Llama has about 1,100).
pub const GGUF_MAX_TENSORS: u64 = 1 << 16;

/// Most metadata entries a GGUF file may declare (real files have a few dozen).
pub const GGUF_MAX_METADATA_ENTRIES: u64 = 1 << 16;

/// Most array elements in all of a GGUF file's metadata together (a 256k-token
/// vocabulary with scores, types and merges is about a million).
pub const GGUF_MAX_METADATA_VALUES: u64 = 1 << 22;

/// Deepest nesting of GGUF metadata arrays (real files nest at most once).
pub const GGUF_MAX_ARRAY_DEPTH: u32 = 8;

/// Longest GGUF metadata string value, in bytes (chat templates reach tens of KiB).
pub const GGUF_MAX_STRING_LEN: u64 = 1 << 24;

/// Longest GGUF metadata key, in bytes (the GGUF specification's limit).
pub const GGUF_MAX_KEY_LEN: u64 = (1 << 16) - 1;

/// Longest GGUF tensor name, in bytes (ggml itself keeps 63).
pub const GGUF_MAX_TENSOR_NAME_LEN: u64 = 1 << 10;

/// Most dimensions of a GGUF tensor (ggml's `GGML_MAX_DIMS`).
pub const GGUF_MAX_DIMS: usize = 4;

/// Largest `tokenizer.json` accepted, in bytes (the largest real ones hold
/// 250k-token vocabularies in about 35 MB).
pub const TOKENIZER_MAX_BYTES: u64 = 1 << 30;

/// Largest tokenizer configuration or chat template file accepted, in bytes.
pub const TOKENIZER_MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Largest `.kiln` manifest accepted, in bytes (16 MiB). Bulk data belongs in
/// sections; the limit keeps a corrupt length field from making the reader parse
/// gigabytes.
pub const ARTIFACT_MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Largest number of sections in one `.kiln` artifact.
pub const ARTIFACT_MAX_SECTIONS: usize = 65_536;

/// Longest `.kiln` section name, in bytes of UTF-8.
pub const ARTIFACT_MAX_SECTION_NAME_BYTES: usize = 256;
