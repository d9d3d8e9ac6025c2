//! Synthetic models of real shapes, for benchmarks and tests of the optimizer:
//! graphs the size of the models kiln must handle, written node for node as the
//! ONNX exporters emit them (decomposed LayerNorm, erf GELU, RMSNorm, RoPE, GQA), so
//! the optimizer has to recognize every composite itself.
//!
//! Weights are either zero tensors shared per shape ([`Weights::Shared`]: one buffer
//! each, for full-size graphs the optimizer never evaluates) or small random values
//! ([`Weights::Seeded`]: for small configurations run on the reference interpreter).

mod bert;
mod llama;

use std::collections::HashMap;

use kiln_ir::{BrickId, Dim, Graph, Op, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use bert::{bert, bert_base_like, BertConfig};
pub use llama::{llama, tinyllama_like, LlamaConfig};

/// The name of the symbolic sequence dimension of [`SeqLen::Symbolic`] models.
pub const SEQ_DIM: &str = "sequence";

/// The value of every element of a bias or norm scale in [`Weights::Shared`] mode: not
/// 0 or 1, so `x + 0` and `x · 1` rules do not fire on what are real weights in the
/// models imitated.
pub const SHARED_VECTOR_FILL: f32 = 0.5;

/// The value of every element of a matrix or embedding table in [`Weights::Shared`]
/// mode: not zero, so zero-weight rules (dead experts and neurons) do not fire on
/// what are real weights in the models imitated.
pub const SHARED_MATRIX_FILL: f32 = 0.01;

/// Half-width of the uniform distribution of seeded bias and norm offsets.
const SEEDED_BIAS_SCALE: f32 = 0.1;

/// How a synthetic model's weights are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// One buffer per shape shared by every weight of that shape (full-size graphs
    /// cost one copy of each shape): matrices and embedding tables are
    /// [`SHARED_MATRIX_FILL`], biases and norm scales [`SHARED_VECTOR_FILL`].
    Shared,
    /// Small random weights from this seed (use small configurations only: every
    /// weight is materialized).
    Seeded(u64),
}

/// The sequence length of a synthetic model's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqLen {
    /// A fixed length (shape constants spell it out, as TorchScript exports fixed
    /// shapes).
    Fixed(usize),
    /// The symbolic dim [`SEQ_DIM`] (shape constants copy it with `0`).
    Symbolic,
}

impl SeqLen {
    /// The dim of the sequence axis.
    pub fn dim(self) -> Dim {
        match self {
            SeqLen::Fixed(n) => Dim::Known(n),
            SeqLen::Symbolic => Dim::sym(SEQ_DIM),
        }
    }
}

/// How a weight is initialized in [`Weights::Seeded`] mode.
#[derive(Clone, Copy, Debug)]
enum Init {
    /// A projection `[fan_in, fan_out]`: uniform in ±1/√fan_in.
    Matrix,
    /// A bias: uniform in ±[`SEEDED_BIAS_SCALE`].
    Bias,
    /// A norm scale: 1 ± [`SEEDED_BIAS_SCALE`].
    Scale,
    /// An embedding table: uniform in ±1.
    Embedding,
}

/// A graph under construction with exporter-style names: node `N` defines value
/// `N_output_0`.
struct Builder {
    g: Graph,
    weights: Weights,
    rng: StdRng,
    zeros: HashMap<Vec<usize>, Tensor>,
}

impl Builder {
    fn new(name: &str, weights: Weights) -> Builder {
        let seed = match weights {
            Weights::Seeded(s) => s,
            Weights::Shared => 0,
        };
        Builder {
            g: Graph::new(name),
            weights,
            rng: StdRng::seed_from_u64(seed),
            zeros: HashMap::new(),
        }
    }

    /// A float weight of these dims.
    fn weight(&mut self, name: &str, dims: &[usize], init: Init) -> ValueId {
        let t = match self.weights {
            Weights::Shared => self
                .zeros
                .entry(dims.to_vec())
                .or_insert_with(|| match init {
                    Init::Bias | Init::Scale => {
                        let n = dims.iter().product();
                        Tensor::from_vec(dims.to_vec(), vec![SHARED_VECTOR_FILL; n])
                    }
                    Init::Matrix | Init::Embedding => {
                        let n = dims.iter().product();
                        Tensor::from_vec(dims.to_vec(), vec![SHARED_MATRIX_FILL; n])
                    }
                })
                .clone(),
            Weights::Seeded(_) => {
                let n: usize = dims.iter().product();
                let (center, half) = match init {
                    Init::Matrix => (0.0, 1.0 / (dims[0] as f32).sqrt()),
                    Init::Bias => (0.0, SEEDED_BIAS_SCALE),
                    Init::Scale => (1.0, SEEDED_BIAS_SCALE),
                    Init::Embedding => (0.0, 1.0),
                };
                let data = (0..n)
                    .map(|_| center + self.rng.random_range(-half..=half))
                    .collect();
                Tensor::from_vec(dims.to_vec(), data)
            }
        };
        self.g.add_const(name, t)
    }

    /// An f32 scalar constant (exponents, epsilons, scales).
    fn scalar(&mut self, name: &str, v: f32) -> ValueId {
        self.g.add_const(name, Tensor::scalar(v))
    }

    /// An f32 constant of shape `[1]` (the exporters' `Where` operands).
    fn f32_1(&mut self, name: &str, v: f32) -> ValueId {
        self.g.add_const(name, Tensor::from_vec(vec![1], vec![v]))
    }

    /// An i64 vector constant (shapes, slice bounds, axes).
    fn ints(&mut self, name: &str, v: &[i64]) -> ValueId {
        self.g
            .add_const(name, Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    /// Node `name` computing `op` (IR text) of `inputs`; its output `name_output_0`.
    fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: Vec<ValueId>,
        brick: Option<BrickId>,
    ) -> ValueId {
        let op = Op::from_text(op).expect("valid synthetic op text");
        self.g
            .add_node(name, op, inputs, &[format!("{name}_output_0")], brick)
            .unwrap_or_else(|e| panic!("synthetic node {name}: {e}"))[0]
    }

    /// Records the type an exporter's shape inference gives a value where kiln's
    /// inference stays vaguer (a `-1` reshape over a symbolic dim).
    fn set_type(&mut self, v: ValueId, ty: TensorType) {
        self.g.set_value_type(v, ty);
    }
}
