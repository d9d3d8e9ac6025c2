//! The graph builder the architectures share: weights bound by name with their
//! expected shapes, linear layers (with their LoRA adapters), bricks, and a node
//! naming scheme that follows the model's module paths.

use std::collections::BTreeMap;

use kiln_ir::op::{BinaryOp, LayoutOp, NnOp, UnaryOp};
use kiln_ir::{BrickId, BrickKind, DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};

use super::lora::AdapterSet;
use super::HfError;

/// Named tensors an architecture binds its weights from.
pub trait WeightSource {
    /// The tensor called `name`, if present (a view: cloning never copies data).
    fn tensor(&self, name: &str) -> Option<Tensor>;
    /// Where the tensors come from, for error messages.
    fn describe(&self) -> String;
}

impl WeightSource for crate::safetensors::Weights {
    fn tensor(&self, name: &str) -> Option<Tensor> {
        self.get(name).cloned()
    }
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

/// Tensors held in a map (GGUF files, tests).
#[derive(Clone, Debug, Default)]
pub struct TensorMap {
    /// What they are, for error messages.
    pub name: String,
    /// The tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
}

impl WeightSource for TensorMap {
    fn tensor(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(name).cloned()
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Builds one architecture's graph.
pub struct Builder<'w> {
    /// The graph being built.
    pub graph: Graph,
    weights: &'w dyn WeightSource,
    adapters: &'w AdapterSet,
    arch: String,
    brick: Option<BrickId>,
    counter: usize,
    /// Weights already bound, so a tied weight is one constant.
    bound: BTreeMap<String, ValueId>,
    /// Module paths of the linear layers built (where adapters may attach).
    linears: Vec<String>,
}

/// The dtype every activation is computed in.
pub const COMPUTE: DType = DType::F32;

impl<'w> Builder<'w> {
    /// A builder for architecture `arch` over `weights`, attaching `adapters`.
    pub fn new(arch: &str, weights: &'w dyn WeightSource, adapters: &'w AdapterSet) -> Self {
        Builder {
            graph: Graph::new(arch),
            weights,
            adapters,
            arch: arch.to_owned(),
            brick: None,
            counter: 0,
            bound: BTreeMap::new(),
            linears: Vec::new(),
        }
    }

    /// Whether the weights hold `name`.
    pub fn has(&self, name: &str) -> bool {
        self.weights.tensor(name).is_some()
    }

    /// Enters the brick `name` (a child of the current one); returns the brick to
    /// restore with [`Builder::leave`].
    pub fn enter(&mut self, name: &str, kind: BrickKind) -> Option<BrickId> {
        let prev = self.brick;
        let id = self.graph.brick(name, kind);
        self.brick = Some(id);
        prev
    }

    /// Goes back to the brick `enter` returned.
    pub fn leave(&mut self, prev: Option<BrickId>) {
        self.brick = prev;
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> ValueId {
        self.graph
            .add_input(name, TensorType::new(dtype, Shape(dims)))
    }

    fn build_err(&self, message: String) -> HfError {
        HfError::Build {
            arch: self.arch.clone(),
            message,
        }
    }

    /// The weight `name` as stored, which must have shape `shape`.
    pub fn raw_weight(&mut self, name: &str, shape: &[usize]) -> Result<ValueId, HfError> {
        if let Some(&v) = self.bound.get(name) {
            let have = self.graph.constant(v).map(|t| t.shape().to_vec());
            if have.as_deref() == Some(shape) {
                return Ok(v);
            }
        }
        let t = self.checked(name, shape)?;
        let v = self.graph.add_const(name, t);
        self.bound.insert(name.to_owned(), v);
        Ok(v)
    }

    fn checked(&self, name: &str, shape: &[usize]) -> Result<Tensor, HfError> {
        let t = self
            .weights
            .tensor(name)
            .ok_or_else(|| HfError::MissingTensor {
                source_name: self.weights.describe(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
            })?;
        if t.shape() != shape {
            return Err(HfError::TensorShape {
                source_name: self.weights.describe(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
            });
        }
        if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(HfError::TensorDtype {
                source_name: self.weights.describe(),
                tensor: name.to_owned(),
                dtype: t.dtype().name().to_owned(),
            });
        }
        Ok(t)
    }

    /// The weight `name` (shape `shape`) in the compute dtype: half-precision
    /// weights are widened by a `Cast` node, which the optimizer may fold or fuse.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> Result<ValueId, HfError> {
        let w = self.raw_weight(name, shape)?;
        self.to_compute(w)
    }

    /// Casts `v` to the compute dtype unless it already is.
    pub fn to_compute(&mut self, v: ValueId) -> Result<ValueId, HfError> {
        if self.graph.value(v).ty.dtype == COMPUTE {
            return Ok(v);
        }
        self.op(Op::Layout(LayoutOp::cast(COMPUTE)), &[v])
    }

    /// An optional weight: present or absent, never mis-shaped.
    pub fn opt_weight(&mut self, name: &str, shape: &[usize]) -> Result<Option<ValueId>, HfError> {
        if self.has(name) {
            self.weight(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A constant (a table computed at load time, a literal).
    pub fn konst(&mut self, name: &str, t: Tensor) -> ValueId {
        self.graph.add_const(name, t)
    }

    /// An i64 vector literal.
    pub fn ints(&mut self, v: &[i64]) -> ValueId {
        let t = Tensor::from_vec(vec![v.len()], v.to_vec());
        self.graph.add_const("ints", t)
    }

    /// An f32 scalar literal.
    pub fn scalar(&mut self, v: f32) -> ValueId {
        self.graph.add_const("scalar", Tensor::scalar(v))
    }

    /// Adds a node with one output.
    pub fn op(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, HfError> {
        Ok(self.op_n(op, inputs, 1)?[0])
    }

    /// Adds a node with `n` outputs, named after the current brick.
    pub fn op_n(&mut self, op: Op, inputs: &[ValueId], n: usize) -> Result<Vec<ValueId>, HfError> {
        let scope = self
            .brick
            .map(|b| self.graph.bricks[b.0 as usize].name.clone())
            .unwrap_or_else(|| "model".into());
        self.counter += 1;
        let node = format!("{scope}/{}_{}", op.name(), self.counter);
        let names: Vec<String> = (0..n).map(|i| format!("{node}:{i}")).collect();
        self.graph
            .add_node(node, op, inputs.to_vec(), &names, self.brick)
            .map_err(|e| self.build_err(e.to_string()))
    }

    /// `a ⊙ b` for a binary op.
    pub fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId, HfError> {
        self.op(Op::Binary(op), &[a, b])
    }

    /// A unary op.
    pub fn un(&mut self, op: UnaryOp, x: ValueId) -> Result<ValueId, HfError> {
        self.op(Op::Unary(op), &[x])
    }

    /// `a · b` (matrix product, numpy broadcasting).
    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, HfError> {
        self.op(Op::Nn(NnOp::MatMul), &[a, b])
    }

    /// Swaps the two axes of a matrix.
    pub fn transpose2(&mut self, w: ValueId) -> Result<ValueId, HfError> {
        self.op(Op::Layout(LayoutOp::Transpose { perm: vec![1, 0] }), &[w])
    }

    /// Reshapes to `shape` (`0` copies the input's dim, `-1` is inferred).
    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId, HfError> {
        let s = self.ints(shape);
        self.op(Op::Layout(LayoutOp::Reshape { allowzero: false }), &[x, s])
    }

    /// Permutes axes.
    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId, HfError> {
        self.op(
            Op::Layout(LayoutOp::Transpose {
                perm: perm.to_vec(),
            }),
            &[x],
        )
    }

    /// A linear layer stored the PyTorch way (`weight` `[out, in]`, `y = x·Wᵀ + b`)
    /// under module path `module`, with every adapter attached to it.
    pub fn linear(
        &mut self,
        x: ValueId,
        module: &str,
        in_features: usize,
        out_features: usize,
        bias: Bias,
    ) -> Result<ValueId, HfError> {
        let w = self.weight(&format!("{module}.weight"), &[out_features, in_features])?;
        let wt = self.transpose2(w)?;
        let y = self.matmul(x, wt)?;
        let y = self.add_bias(y, module, out_features, bias)?;
        self.linears.push(module.to_owned());
        self.attach_adapters(x, y, module, in_features, out_features)
    }

    /// A GPT-2 style `Conv1D` (`weight` `[in, out]`, `y = x·W + b`).
    pub fn conv1d(
        &mut self,
        x: ValueId,
        module: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<ValueId, HfError> {
        let w = self.weight(&format!("{module}.weight"), &[in_features, out_features])?;
        let y = self.matmul(x, w)?;
        let y = self.add_bias(y, module, out_features, Bias::Required)?;
        self.linears.push(module.to_owned());
        self.attach_adapters(x, y, module, in_features, out_features)
    }

    fn add_bias(
        &mut self,
        y: ValueId,
        module: &str,
        out_features: usize,
        bias: Bias,
    ) -> Result<ValueId, HfError> {
        let name = format!("{module}.bias");
        let b = match bias {
            Bias::None => None,
            Bias::Optional => self.opt_weight(&name, &[out_features])?,
            Bias::Required => Some(self.weight(&name, &[out_features])?),
        };
        match b {
            Some(b) => self.bin(BinaryOp::Add, y, b),
            None => Ok(y),
        }
    }

    /// `y + Σ scale·(x·Aᵀ)·Bᵀ` over the adapters targeting `module`, each its own
    /// LoRA brick.
    fn attach_adapters(
        &mut self,
        x: ValueId,
        mut y: ValueId,
        module: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<ValueId, HfError> {
        let adapters = self.adapters;
        for (adapter, lora) in adapters.for_module(module) {
            let (r, a_in) = (lora.a.shape()[0], lora.a.shape()[1]);
            let (b_out, b_r) = (lora.b.shape()[0], lora.b.shape()[1]);
            if a_in != in_features || b_out != out_features || b_r != r {
                return Err(HfError::BadAdapter {
                    dir: adapter.dir.clone(),
                    message: format!(
                        "{module}: lora_A is {:?} and lora_B {:?}, but the layer is {in_features} → {out_features}",
                        lora.a.shape(),
                        lora.b.shape()
                    ),
                });
            }
            let prev = self.enter(&format!("{module}.lora.{}", adapter.name), BrickKind::Lora);
            let a = self.konst(&format!("{module}.lora_A.{}", adapter.name), lora.a.clone());
            let a = self.to_compute(a)?;
            let b = self.konst(&format!("{module}.lora_B.{}", adapter.name), lora.b.clone());
            let b = self.to_compute(b)?;
            let at = self.transpose2(a)?;
            let bt = self.transpose2(b)?;
            let down = self.matmul(x, at)?;
            let up = self.matmul(down, bt)?;
            let s = self.scalar(adapter.scale as f32);
            let scaled = self.bin(BinaryOp::Mul, up, s)?;
            y = self.bin(BinaryOp::Add, y, scaled)?;
            self.leave(prev);
        }
        Ok(y)
    }

    /// LayerNorm of module `module` over the last axis of a `[batch, seq, hidden]`
    /// value, with its scale and bias (`weight`/`bias`, or the old `gamma`/`beta`).
    pub fn layer_norm(
        &mut self,
        x: ValueId,
        module: &str,
        hidden: usize,
        eps: f32,
    ) -> Result<ValueId, HfError> {
        let prev = self.enter(module, BrickKind::Norm);
        let (wn, bn) = if self.has(&format!("{module}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        let w = self.weight(&format!("{module}.{wn}"), &[hidden])?;
        let bias = self.weight(&format!("{module}.{bn}"), &[hidden])?;
        let y = self.op(
            Op::Composite(kiln_ir::op::CompositeOp::LayerNorm {
                axis: 2,
                epsilon: eps,
            }),
            &[x, w, bias],
        );
        self.leave(prev);
        y
    }

    /// Marks `v` as a graph output called `name`.
    pub fn output(&mut self, v: ValueId, name: &str) {
        self.graph.rename_value(v, name.to_owned());
        self.graph.outputs.push(v);
    }

    /// The finished graph; an adapter targeting a module that is none of the
    /// linear layers built is an error (a typo, or an adapter for another model).
    pub fn finish(self) -> Result<Graph, HfError> {
        if let Some((adapter, module)) = self.adapters.unmatched(&self.linears).into_iter().next() {
            let dir = self
                .adapters
                .adapters
                .iter()
                .find(|a| a.name == adapter)
                .map(|a| a.dir.clone())
                .unwrap_or_default();
            return Err(HfError::BadAdapter {
                dir,
                message: format!(
                    "it targets {module}, which is not a linear layer kiln attaches adapters to in this model"
                ),
            });
        }
        Ok(self.graph)
    }
}

/// Whether a linear layer has a bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    /// It has none.
    None,
    /// It has one if the weights hold it.
    Optional,
    /// It must have one.
    Required,
}
