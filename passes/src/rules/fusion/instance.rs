//! Shared helpers for the fusion natives' checker instances: a graph builder and
//! random shapes.

use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

/// Builds instance graphs node by node.
pub(super) struct GraphBuilder {
    /// The graph built so far.
    pub(super) g: Graph,
    /// How many names were made (the suffix of the next one).
    n: usize,
}

impl GraphBuilder {
    /// An empty graph named `name`.
    pub(super) fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            g: Graph::new(name),
            n: 0,
        }
    }

    /// A fresh name starting with `what`.
    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    /// A new f32 input of shape `dims`.
    pub(super) fn input(&mut self, dims: &[usize]) -> ValueId {
        let name = self.fresh("x");
        self.g
            .add_input(name, TensorType::new(DType::F32, Shape::known(dims)))
    }

    /// A new f32 scalar constant.
    pub(super) fn scalar(&mut self, v: f32) -> ValueId {
        let name = self.fresh("c");
        self.g.add_const(name, Tensor::from_vec(vec![], vec![v]))
    }

    /// A new constant.
    pub(super) fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh("c");
        self.g.add_const(name, t)
    }

    /// The output of a new one-output node `text` (IR text form) of `inputs`.
    pub(super) fn op(&mut self, text: &str, inputs: Vec<ValueId>) -> ValueId {
        self.op_outputs(text, inputs, 1)
    }

    /// Output 0 of a node declared with `outputs` outputs (a LayerNorm with its
    /// statistics is read through `proj0` in the e-graph, as after `norm-scale`).
    pub(super) fn op_outputs(
        &mut self,
        text: &str,
        inputs: Vec<ValueId>,
        outputs: usize,
    ) -> ValueId {
        let op = Op::from_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let node = self.fresh("n");
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh("v")).collect();
        self.g
            .add_node(node, op, inputs, &outs, None)
            .unwrap_or_else(|e| panic!("{text}: {e}"))[0]
    }

    /// `a ∘ b` or `b ∘ a` at random (for commutative ops).
    pub(super) fn either(
        &mut self,
        rng: &mut StdRng,
        text: &str,
        a: ValueId,
        b: ValueId,
    ) -> ValueId {
        if rng.random_bool(0.5) {
            self.op(text, vec![a, b])
        } else {
            self.op(text, vec![b, a])
        }
    }
}

/// `rank` random dims of 1 to 5.
pub(super) fn random_dims(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=5)).collect()
}

/// The IR text of a `Reduce{kind, axes, keepdims:true}`.
pub(super) fn reduce_text(kind: &str, axes: &[usize]) -> String {
    format!("Reduce(kind: {kind}, axes: {axes:?}, keepdims: true)")
}
