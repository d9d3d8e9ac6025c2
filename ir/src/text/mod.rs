//! The text form of the IR: printed for people and snapshots, parsed back exactly.
//!
//! [`print`] writes a [`Graph`] as text and [`parse`] (or [`parse_with_weights`])
//! reads it back: `parse(&print(g)) == g` for every graph the builder API makes,
//! down to value ids, node order, op attributes and the bits of every constant.
//!
//! ```text
//! graph "bert" {
//!   input %input_ids: i64[batch, seq]
//!   const %"embeddings.word_embeddings.weight": f32[1000, 64] = weight
//!   const %"/Constant_1": i64[2] = [0, -1]
//!   brick #0 layer "encoder.layer.0"
//!   brick #1 attention "encoder.layer.0.attention" in #0
//!   %q: f32[batch, seq, 64] = MatMul(%x, %w) @#1 "/encoder/layer.0/attention/self/query/MatMul"
//!   %a: f32[batch, 2], %b: i64[batch, 2] = TopK(axis: 1, largest: true, sorted: true)(%x, %k) "topk"
//!   output %last_hidden_state
//! }
//! ```
//!
//! The statements, one per line (whitespace is not significant; `//` starts a comment):
//! - `input %name: TYPE` — a graph input.
//! - `const %name: TYPE = VALUE` — a constant. `VALUE` is a literal (`[e0, e1, ...]`
//!   flat in row-major order, or a bare element for a scalar) when the constant has at
//!   most [`PrintOptions::max_inline`] elements, and `weight` otherwise: the tensor is
//!   then taken from the map given to [`parse_with_weights`], under the value's name.
//!   Floats print as the shortest decimal that reads back to the same bits (`nan`,
//!   `inf`, `-inf`, `-0.0`; a NaN other than the canonical one prints its bits as
//!   `nan(0x7fc00001)`); bools print as `true`/`false`. When the tensor's own type
//!   differs from the value's declared type (an ill-formed graph), it is written
//!   before the value: `= i64[2] [1, 2]`.
//! - `brick #N KIND "name" [in #P]` — brick `N` (numbered from 0 in order) with its
//!   parent `P`.
//! - `%out: TYPE, ... = Op(attributes)(%in, ...) [@#B] "node name"` — a node, its
//!   outputs, op and attributes (the RON form of [`crate::Op::to_text`]), inputs,
//!   brick and name. A node without outputs writes `_` for them.
//! - `inputs [%a, %b]` — the graph inputs, printed only when their order is not the
//!   order of the `input` statements.
//! - `output %a, %b` — the graph outputs.
//!
//! `TYPE` is a dtype and a shape: `f32[batch, seq, 64]`, `i64[]` for a scalar. Dims
//! are numbers, symbolic names (quoted when not identifiers) or `?` for an unknown
//! dim. Value names follow `%` bare when they are made of letters, digits and `_`,
//! and quoted otherwise (ONNX names hold `/ . : #`). Value definitions come in the
//! order of their ids; a value may be used before its definition (the verifier,
//! not the parser, rejects that), so ill-formed graphs print and parse too.

mod literal;
mod parse;
mod print;

use std::collections::HashMap;
use std::fmt;

use crate::{Graph, Tensor, ValueDef};

pub use parse::{parse, parse_with_weights};
pub use print::{print, print_with};

/// How [`print_with`] writes a graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// Constants with at most this many elements print their values; larger ones
    /// print as `weight` references.
    pub max_inline: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions {
            max_inline: DEFAULT_MAX_INLINE,
        }
    }
}

/// Constants of at most this many elements print inline by default.
pub const DEFAULT_MAX_INLINE: usize = 16;

/// Why text could not be parsed as a graph.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Line of the error, from 1.
    pub line: usize,
    /// Column of the error in characters, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The constants of a graph by value name: the map [`parse_with_weights`] needs to
/// read back what [`print`] wrote as `weight` references. Tensors are shared, not
/// copied.
pub fn weights(graph: &Graph) -> HashMap<String, Tensor> {
    graph
        .values()
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(t) => Some((v.name.clone(), t.clone())),
            _ => None,
        })
        .collect()
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}
