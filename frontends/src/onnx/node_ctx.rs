//! `NodeCtx`: what a converter sees of one ONNX node, and the builder that adds
//! kiln nodes for it.
//!
//! It reaches the graph under construction only through [`ImportScope`], which
//! the importer implements, so the converters and the registry depend on this
//! module and not on the importer (which depends on the registry).

use std::collections::HashSet;

use kiln_ir::{BrickId, DType, Graph, Op, Tensor, TensorType, ValueId};

use super::attrs::Attrs;
use super::lists::ListInfo;
use super::proto::{GraphProto, NodeProto};
use super::tensor::DataDir;
use super::OnnxError;

/// The graph being imported, as a converter may touch it: values bound to ONNX
/// names, the graph's nodes and constants, shape tracking, subgraph inlining.
pub(crate) trait ImportScope {
    /// The graph built so far.
    fn graph(&self) -> &Graph;
    /// The graph built so far, to add to.
    fn graph_mut(&mut self) -> &mut Graph;
    /// The value bound to ONNX name `name`.
    fn lookup(&self, name: &str) -> Option<ValueId>;
    /// Binds ONNX name `name` to `v`.
    fn bind(&mut self, name: String, v: ValueId);
    /// The folder external tensor data is read from.
    fn data_dir(&self) -> &DataDir;
    /// Tracks shape values through a node just added (symbolic reshapes).
    fn after_node(&mut self, op: &Op, inputs: &[ValueId], outs: &[ValueId]);
    /// Converts the nodes of subgraph `g` into this graph, seeing this scope's
    /// values; returns its outputs. `node` names the node that owns it, for errors.
    fn inline_subgraph(&mut self, g: &GraphProto, node: &str) -> Result<Vec<ValueId>, OnnxError>;
    /// Imports subgraph `g` as a closed graph of its own: its declared inputs
    /// get the types `leading`, then one input per value it reads from this
    /// scope (small constants are copied in instead). Returns the graph and
    /// the captured values of this scope, in its capture-input order.
    fn import_subgraph(
        &mut self,
        g: &GraphProto,
        node: &str,
        leading: &[TensorType],
        leading_lists: &[Option<ListInfo>],
    ) -> Result<ImportedSubgraph, OnnxError>;
    /// What list value `v` holds (`None` for a tensor).
    fn list_info(&self, v: ValueId) -> Option<ListInfo>;
    /// Records what list value `v` holds.
    fn set_list_info(&mut self, v: ValueId, info: ListInfo);
    /// Records that `v`, an output of `If` node `node`, has rank `rank` only because
    /// one branch's lower-rank value was given leading 1s: the importer checks,
    /// once the graph is complete, that no consumer can observe the difference.
    fn note_rank_unified(&mut self, v: ValueId, rank: usize, node: &str);
    /// Whether `v` was recorded by [`ImportScope::note_rank_unified`] (its rank
    /// must not be read at import).
    fn is_rank_unified(&self, v: ValueId) -> bool;
}

/// A subgraph imported as a closed graph of its own.
pub(crate) struct ImportedSubgraph {
    /// The graph: its declared inputs, then one per capture.
    pub graph: Graph,
    /// The enclosing scope's values it captures, in capture-input order.
    pub captures: Vec<ValueId>,
    /// What each of its outputs holds when it is a list.
    pub output_lists: Vec<Option<ListInfo>>,
}

/// Everything a converter needs for one ONNX node: its attributes and inputs, and a
/// builder that adds kiln nodes (folding constant ones) into the graph.
pub struct NodeCtx<'a> {
    scope: &'a mut dyn ImportScope,
    /// The ONNX node.
    pub node: &'a NodeProto,
    /// Its attributes.
    pub attrs: Attrs<'a>,
    /// The opset version of the node's domain.
    pub opset: i64,
    name: String,
    brick: Option<BrickId>,
    created: HashSet<ValueId>,
    counter: usize,
    nodes_added: usize,
}

impl<'a> NodeCtx<'a> {
    /// The context of `node` (named `name`, in `brick`) converting into `scope`.
    pub(crate) fn new(
        scope: &'a mut dyn ImportScope,
        node: &'a NodeProto,
        opset: i64,
        name: String,
        brick: Option<BrickId>,
    ) -> NodeCtx<'a> {
        NodeCtx {
            scope,
            node,
            attrs: Attrs::new(node),
            opset,
            name,
            brick,
            created: HashSet::new(),
            counter: 0,
            nodes_added: 0,
        }
    }

    /// Whether ONNX value `name` has been bound (by an earlier node or this one).
    pub(crate) fn is_bound(&self, name: &str) -> bool {
        self.scope.lookup(name).is_some()
    }

    /// The node's name (or a generated one when the model left it empty).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error about this node.
    pub fn err(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.name.clone(),
            op_type: self.node.op_type.clone(),
            message: message.into(),
        }
    }

    /// Number of inputs listed (absent optional ones included).
    pub fn num_inputs(&self) -> usize {
        self.node.input.len()
    }

    /// Number of outputs the node lists.
    pub fn num_outputs(&self) -> usize {
        self.node.output.len()
    }

    /// True when output `i` is listed with a non-empty name.
    pub fn has_output(&self, i: usize) -> bool {
        self.node.output.get(i).is_some_and(|n| !n.is_empty())
    }

    /// Input `i`, or `None` when it is absent (optional input left out).
    pub fn input(&self, i: usize) -> Result<Option<ValueId>, OnnxError> {
        match self.node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self
                .scope
                .lookup(n)
                .map(Some)
                .ok_or_else(|| OnnxError::MissingValue {
                    node: self.name.clone(),
                    value: n.clone(),
                }),
        }
    }

    /// Input `i`, which must be present.
    pub fn req(&self, i: usize) -> Result<ValueId, OnnxError> {
        self.input(i)?
            .ok_or_else(|| self.err(format!("input {i} is required")))
    }

    /// All present inputs, in order.
    pub fn inputs(&self) -> Result<Vec<ValueId>, OnnxError> {
        (0..self.num_inputs())
            .filter_map(|i| self.input(i).transpose())
            .collect()
    }

    /// The type of a value.
    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.scope.graph().value(v).ty
    }

    /// The dtype of a value.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.ty(v).dtype
    }

    /// The rank of a value.
    pub fn rank(&self, v: ValueId) -> usize {
        self.ty(v).shape.rank()
    }

    /// The constant value of `v`, if it is known at import time.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.scope.graph().constant(v)
    }

    /// Input `i` as constant integers: `Ok(None)` when absent, an error when present
    /// but not a constant.
    pub fn const_ints(&self, i: usize) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.input(i)? {
            None => Ok(None),
            Some(v) => match self.constant(v) {
                Some(t) => Ok(Some(t.to_i64_vec())),
                None => Err(self.err(format!(
                    "input {i} (`{}`) must be a constant",
                    self.node.input[i]
                ))),
            },
        }
    }

    /// A tensor attribute.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<Tensor>, OnnxError> {
        self.attrs.tensor(name, self.scope.data_dir())
    }

    /// Normalizes a possibly negative axis attribute against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize, OnnxError> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        if a < 0 || a as usize >= rank {
            return Err(self.err(format!("axis {axis} out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    fn fresh(&mut self) -> String {
        self.counter += 1;
        format!("{}#{}", self.name, self.counter)
    }

    /// Adds a constant.
    pub fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh();
        let v = self.scope.graph_mut().add_const(name, t);
        self.created.insert(v);
        v
    }

    /// A 1-D i64 constant.
    pub fn ints(&mut self, v: &[i64]) -> ValueId {
        self.konst(Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> ValueId {
        self.konst(Tensor::from_f64(dtype, vec![], &[v]))
    }

    /// Adds a node with one output.
    pub fn op(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, OnnxError> {
        Ok(self.op_n(op, inputs, 1)?[0])
    }

    /// Adds a node with `n` outputs; evaluated now when all inputs are small constants.
    pub fn op_n(
        &mut self,
        op: Op,
        inputs: &[ValueId],
        n: usize,
    ) -> Result<Vec<ValueId>, OnnxError> {
        if let Some(folded) = self.try_fold(&op, inputs, n) {
            return Ok(folded);
        }
        let names: Vec<String> = (0..n).map(|_| self.fresh()).collect();
        // The first kiln node of a conversion carries the ONNX node's own name.
        let node_name = if self.nodes_added == 0 {
            self.name.clone()
        } else {
            names[0].clone()
        };
        let outs = self
            .scope
            .graph_mut()
            .add_node(node_name, op.clone(), inputs.to_vec(), &names, self.brick)
            .map_err(|e| self.err(format!("{}: {}", e.op, e.message)))?;
        self.nodes_added += 1;
        self.scope.after_node(&op, inputs, &outs);
        self.created.extend(outs.iter().copied());
        Ok(outs)
    }

    fn try_fold(&mut self, op: &Op, inputs: &[ValueId], n: usize) -> Option<Vec<ValueId>> {
        use kiln_ir::op::LayoutOp;
        // Control flow may loop for long: it runs when the model does.
        if matches!(op, Op::Control(_)) {
            return None;
        }
        // Shape and Size of a value whose shape is known need no data.
        if let Op::Layout(l @ (LayoutOp::Shape { .. } | LayoutOp::Size)) = op {
            // The node stays, so the importer's rank check sees it and refuses.
            if self.scope.is_rank_unified(inputs[0]) {
                return None;
            }
            let dims = self.ty(inputs[0]).shape.as_known()?;
            let t = match l {
                LayoutOp::Shape { start, end } => {
                    let (s, e) = kiln_ir::op::shape_range(dims.len(), *start, *end);
                    Tensor::from_vec(vec![e - s], dims[s..e].iter().map(|&d| d as i64).collect())
                }
                // An element count past i64 (a hostile shape) is not folded;
                // inference reports it.
                _ => Tensor::scalar(
                    dims.iter()
                        .try_fold(1i64, |n, &d| n.checked_mul(i64::try_from(d).ok()?))?,
                ),
            };
            return Some(vec![self.konst(t)]);
        }
        let args: Vec<&Tensor> = inputs
            .iter()
            .map(|&v| self.scope.graph().constant(v))
            .collect::<Option<_>>()?;
        if args.iter().map(|t| t.numel()).sum::<usize>() > 4 * super::import::FOLD_MAX_ELEMENTS {
            return None;
        }
        // Do not compute what would be discarded: skip outputs known to be too large.
        let types: Vec<TensorType> = inputs.iter().map(|&v| self.ty(v).clone()).collect();
        let consts: Vec<Option<&Tensor>> = args.iter().map(|&t| Some(t)).collect();
        let inferred = op
            .infer(&kiln_ir::op::InferInputs {
                types: &types,
                consts: &consts,
            })
            .ok()?;
        if inferred.iter().any(|t| {
            t.shape
                .numel()
                .is_some_and(|n| n > super::import::FOLD_MAX_ELEMENTS)
        }) {
            return None;
        }
        let outs = kiln_ir::interp::eval_op(op, &args, n).ok()?;
        if outs
            .iter()
            .any(|t| t.numel() > super::import::FOLD_MAX_ELEMENTS)
        {
            return None;
        }
        Some(outs.into_iter().map(|t| self.konst(t)).collect())
    }

    /// Binds ONNX output `i` of the node to `v`.
    pub fn set_output(&mut self, i: usize, v: ValueId) {
        let Some(name) = self.node.output.get(i).filter(|n| !n.is_empty()).cloned() else {
            return;
        };
        if self.created.contains(&v) && self.scope.graph().value_by_name(&name).is_none() {
            self.scope.graph_mut().rename_value(v, name.clone());
        }
        self.scope.bind(name, v);
    }

    /// Binds the node's outputs in order.
    pub fn set_outputs(&mut self, vs: &[ValueId]) {
        for (i, &v) in vs.iter().enumerate() {
            self.set_output(i, v);
        }
    }

    /// The name of value `v` of the graph being built.
    pub fn graph_value_name(&self, v: ValueId) -> String {
        self.scope.graph().value(v).name.clone()
    }

    /// Converts the nodes of a subgraph (an `If` branch) into this graph, the
    /// subgraph seeing this scope's values; returns its outputs.
    pub fn inline_subgraph(&mut self, g: &GraphProto) -> Result<Vec<ValueId>, OnnxError> {
        self.scope.inline_subgraph(g, &self.name)
    }

    /// See [`ImportScope::note_rank_unified`]; `v` is an output of this node.
    pub fn note_rank_unified(&mut self, v: ValueId, rank: usize) {
        self.scope.note_rank_unified(v, rank, &self.name);
    }

    /// Imports subgraph `g` as a closed graph whose declared inputs have the
    /// types `leading` (see [`ImportScope::import_subgraph`]); returns it and
    /// the values it captures.
    pub(crate) fn subgraph(
        &mut self,
        g: &GraphProto,
        leading: &[TensorType],
        leading_lists: &[Option<ListInfo>],
    ) -> Result<ImportedSubgraph, OnnxError> {
        self.scope
            .import_subgraph(g, &self.name, leading, leading_lists)
    }

    /// What list value `v` holds (`None` for a tensor).
    pub(crate) fn list_info(&self, v: ValueId) -> Option<ListInfo> {
        self.scope.list_info(v)
    }

    /// Records what list value `v` holds.
    pub(crate) fn set_list_info(&mut self, v: ValueId, info: ListInfo) {
        self.scope.set_list_info(v, info);
    }
}
