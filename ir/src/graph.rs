//! The graph: SSA dataflow of nodes over typed values, grouped in bricks.

use std::collections::HashMap;

use crate::op::InferInputs;
use crate::{Brick, BrickId, BrickKind, ErrorKind, Op, OpError, Tensor, TensorType};

/// Index of a value in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input (fed at run time).
    Input,
    /// Output `index` of a node.
    Node {
        /// The producing node.
        node: NodeId,
        /// Which of its outputs.
        index: usize,
    },
    /// A constant known at compile time: a weight (usually a view of a mapped file)
    /// or a small literal.
    Const(Tensor),
}

/// A tensor value of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Unique name (the source model's name where it had one).
    pub name: String,
    /// Type.
    pub ty: TensorType,
    /// Producer.
    pub def: ValueDef,
}

/// One operation applied to values.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name (the source model's node name, for messages and reports).
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Operands.
    pub inputs: Vec<ValueId>,
    /// Results.
    pub outputs: Vec<ValueId>,
    /// The innermost brick the node belongs to.
    pub brick: Option<BrickId>,
}

/// A model as a graph of nodes in topological order.
///
/// **Invariants** (checked by [`crate::verify`]): every value has exactly one
/// definition; nodes appear after the nodes defining their inputs; value names are
/// unique; every node's output types are what its op infers from its input types.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The model's name.
    pub name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    /// Inputs, in order.
    pub inputs: Vec<ValueId>,
    /// Outputs, in order.
    pub outputs: Vec<ValueId>,
    /// Bricks; a parent always comes before its children.
    pub bricks: Vec<Brick>,
    names: HashMap<String, ValueId>,
    suffixes: SuffixHints,
}

/// The next numeric suffix worth trying per base name in [`Graph::fresh_name`], so
/// that many values asking for one name (inlined calls of an unnamed node) take
/// linear, not quadratic, time. A cache: it takes no part in equality. Boxed and
/// allocated on first use, so a graph stays small.
#[derive(Clone, Debug, Default)]
#[allow(clippy::box_collection)] // boxed to keep `Graph` (and enums holding one) small
struct SuffixHints(Option<Box<HashMap<String, usize>>>);

impl PartialEq for SuffixHints {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why a node could not be added.
#[derive(Debug, thiserror::Error)]
#[error("node `{node}` ({op}): {message}")]
pub struct NodeError {
    /// The node's name.
    pub node: String,
    /// The op's name.
    pub op: &'static str,
    /// What kind of failure (inference's, or [`ErrorKind::Shape`] for a node
    /// asking for outputs its op does not have).
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// All values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One value.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// The value with this name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    /// The constant value of `id`, if it is a constant.
    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        match &self.value(id).def {
            ValueDef::Const(t) => Some(t),
            _ => None,
        }
    }

    /// The types of the graph's outputs when its inputs have `input_types`
    /// (in input order): every node's inference run again from them. What
    /// control-flow ops type their subgraphs with; a failing node is named in
    /// the error.
    pub fn infer_with(&self, input_types: &[TensorType]) -> Result<Vec<TensorType>, OpError> {
        if input_types.len() != self.inputs.len() {
            return Err(OpError::shape(format!(
                "subgraph `{}` takes {} inputs, {} given",
                self.name,
                self.inputs.len(),
                input_types.len()
            )));
        }
        let mut types: Vec<TensorType> = self.values.iter().map(|v| v.ty.clone()).collect();
        for (&id, t) in self.inputs.iter().zip(input_types) {
            types[id.0 as usize] = t.clone();
        }
        for node in &self.nodes {
            let ins: Vec<TensorType> = node
                .inputs
                .iter()
                .map(|&v| types[v.0 as usize].clone())
                .collect();
            let consts: Vec<Option<&Tensor>> =
                node.inputs.iter().map(|&v| self.constant(v)).collect();
            let outs = node
                .op
                .infer(&InferInputs {
                    types: &ins,
                    consts: &consts,
                })
                .map_err(|e| {
                    OpError::new(
                        e.kind,
                        format!(
                            "in subgraph `{}`, node `{}` ({}): {}",
                            self.name,
                            node.name,
                            node.op.name(),
                            e.message
                        ),
                    )
                })?;
            if outs.len() < node.outputs.len() {
                return Err(OpError::shape(format!(
                    "in subgraph `{}`, node `{}` produces {} outputs, {} used",
                    self.name,
                    node.name,
                    outs.len(),
                    node.outputs.len()
                )));
            }
            for (&o, t) in node.outputs.iter().zip(outs) {
                types[o.0 as usize] = t;
            }
        }
        Ok(self
            .outputs
            .iter()
            .map(|&o| types[o.0 as usize].clone())
            .collect())
    }

    /// Copies `sub`'s constants and nodes into this graph, its inputs bound to
    /// `args` (values of this graph of the same types), each name made unique
    /// under `prefix/` and each node put in `brick`; returns the values of
    /// `sub`'s outputs. What inlining a branch or a mapped body does.
    pub fn splice(
        &mut self,
        sub: &Graph,
        args: &[ValueId],
        prefix: &str,
        brick: Option<BrickId>,
    ) -> Result<Vec<ValueId>, NodeError> {
        let scoped = |g: &Graph, name: &str| {
            if prefix.is_empty() {
                g.fresh_name(name)
            } else {
                g.fresh_name(&format!("{prefix}/{name}"))
            }
        };
        let mut map: Vec<Option<ValueId>> = vec![None; sub.values.len()];
        for (&i, &a) in sub.inputs.iter().zip(args) {
            map[i.0 as usize] = Some(a);
        }
        for (i, v) in sub.values.iter().enumerate() {
            if let ValueDef::Const(t) = &v.def {
                let name = scoped(self, &v.name);
                map[i] = Some(self.add_const(name, t.clone()));
            }
        }
        for n in &sub.nodes {
            let inputs: Vec<ValueId> = n
                .inputs
                .iter()
                .map(|i| map[i.0 as usize].expect("topological order"))
                .collect();
            let mut names = Vec::with_capacity(n.outputs.len());
            for (k, &o) in n.outputs.iter().enumerate() {
                let mut name = scoped(self, &sub.value(o).name);
                if names.contains(&name) {
                    name = self.fresh_name(&format!("{name}#{k}"));
                }
                names.push(name);
            }
            let types: Vec<TensorType> =
                n.outputs.iter().map(|&o| sub.value(o).ty.clone()).collect();
            let node_name = scoped(self, &n.name);
            let new = self.add_node_typed(node_name, n.op.clone(), inputs, &names, types, brick)?;
            for (&o, v) in n.outputs.iter().zip(new) {
                map[o.0 as usize] = Some(v);
            }
        }
        Ok(sub
            .outputs
            .iter()
            .map(|o| map[o.0 as usize].expect("defined"))
            .collect())
    }

    /// A name not used yet, derived from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) {
            return base.to_string();
        }
        let hint = self.suffixes.0.as_ref().and_then(|h| h.get(base));
        let start = hint.copied().unwrap_or(1);
        (start..)
            .map(|i| format!("{base}.{i}"))
            .find(|n| !self.names.contains_key(n))
            .expect("unbounded")
    }

    fn push_value(&mut self, name: String, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        let fresh = self.fresh_name(&name);
        if fresh != name {
            let next = fresh[name.len() + 1..]
                .parse::<usize>()
                .map_or(1, |i| i + 1);
            self.suffixes.0.get_or_insert_default().insert(name, next);
        }
        let name = fresh;
        self.names.insert(name.clone(), id);
        self.values.push(Value { name, ty, def });
        id
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = self.push_value(name.into(), ty, ValueDef::Input);
        self.inputs.push(id);
        id
    }

    /// Adds a constant (a weight or a literal).
    pub fn add_const(&mut self, name: impl Into<String>, value: Tensor) -> ValueId {
        let ty = TensorType::new(value.dtype(), value.ir_shape());
        self.push_value(name.into(), ty, ValueDef::Const(value))
    }

    /// Adds a node whose output types are inferred from its op; output `i` is named
    /// `output_names[i]` (made unique if taken).
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        output_names: &[String],
        brick: Option<BrickId>,
    ) -> Result<Vec<ValueId>, NodeError> {
        let name = name.into();
        let types: Vec<TensorType> = inputs.iter().map(|&v| self.value(v).ty.clone()).collect();
        let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&v| self.constant(v)).collect();
        let err = |e: OpError| NodeError {
            node: name.clone(),
            op: op.name(),
            kind: e.kind,
            message: e.message,
        };
        let mut out_types = op
            .infer(&InferInputs {
                types: &types,
                consts: &consts,
            })
            .map_err(err)?;
        if out_types.len() < output_names.len() {
            return Err(err(OpError::shape(format!(
                "produces {} outputs, {} requested",
                out_types.len(),
                output_names.len()
            ))));
        }
        out_types.truncate(output_names.len());
        self.add_node_typed(name, op, inputs, output_names, out_types, brick)
    }

    /// Adds a node with given output types (used by the text parser, which reads them).
    pub fn add_node_typed(
        &mut self,
        name: String,
        op: Op,
        inputs: Vec<ValueId>,
        output_names: &[String],
        out_types: Vec<TensorType>,
        brick: Option<BrickId>,
    ) -> Result<Vec<ValueId>, NodeError> {
        let node = NodeId(self.nodes.len() as u32);
        let outputs: Vec<ValueId> = output_names
            .iter()
            .zip(out_types)
            .enumerate()
            .map(|(index, (n, ty))| self.push_value(n.clone(), ty, ValueDef::Node { node, index }))
            .collect();
        self.nodes.push(Node {
            name,
            op,
            inputs,
            outputs: outputs.clone(),
            brick,
        });
        Ok(outputs)
    }

    /// Replaces the definition of a node output by a constant (constant folding).
    pub fn set_value_type(&mut self, id: ValueId, ty: TensorType) {
        self.values[id.0 as usize].ty = ty;
    }

    /// Finds or creates the brick with this path (creating its parents from the
    /// dotted prefixes as `Module` bricks unless they exist).
    pub fn brick(&mut self, name: &str, kind: BrickKind) -> BrickId {
        if let Some(i) = self.bricks.iter().position(|b| b.name == name) {
            return BrickId(i as u32);
        }
        let parent = name.rfind('.').map(|i| &name[..i]).and_then(|p| {
            // Parents are prefixes that are existing bricks; `layers.3` has no brick `layers`.
            let mut p = p;
            loop {
                if let Some(i) = self.bricks.iter().position(|b| b.name == p) {
                    return Some(BrickId(i as u32));
                }
                p = &p[..p.rfind('.')?];
            }
        });
        self.bricks.push(Brick {
            kind,
            name: name.to_string(),
            parent,
        });
        BrickId(self.bricks.len() as u32 - 1)
    }

    /// Adds a brick with an explicit parent (the text parser's path).
    pub fn push_brick(&mut self, brick: Brick) -> BrickId {
        self.bricks.push(brick);
        BrickId(self.bricks.len() as u32 - 1)
    }

    /// True when `b` is `ancestor` or nested inside it.
    pub fn brick_within(&self, mut b: BrickId, ancestor: BrickId) -> bool {
        loop {
            if b == ancestor {
                return true;
            }
            match self.bricks[b.0 as usize].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
    }

    /// The nodes of a brick (its own and its descendants').
    pub fn brick_nodes(&self, brick: BrickId) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .brick
                    .is_some_and(|b| self.brick_within(b, brick))
            })
            .map(|i| NodeId(i as u32))
            .collect()
    }

    /// The interface of a brick: values used inside but defined outside (inputs and
    /// weights), and values defined inside but used outside or graph outputs.
    pub fn brick_interface(&self, brick: BrickId) -> BrickInterface {
        let nodes = self.brick_nodes(brick);
        let inside: std::collections::HashSet<ValueId> = nodes
            .iter()
            .flat_map(|&n| self.node(n).outputs.iter().copied())
            .collect();
        let mut iface = BrickInterface::default();
        for &n in &nodes {
            for &v in &self.node(n).inputs {
                if !inside.contains(&v) {
                    let list = if matches!(self.value(v).def, ValueDef::Const(_)) {
                        &mut iface.weights
                    } else {
                        &mut iface.inputs
                    };
                    if !list.contains(&v) {
                        list.push(v);
                    }
                }
            }
        }
        let node_set: std::collections::HashSet<NodeId> = nodes.iter().copied().collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if node_set.contains(&NodeId(i as u32)) {
                continue;
            }
            for v in &node.inputs {
                if inside.contains(v) && !iface.outputs.contains(v) {
                    iface.outputs.push(*v);
                }
            }
        }
        for v in &self.outputs {
            if inside.contains(v) && !iface.outputs.contains(v) {
                iface.outputs.push(*v);
            }
        }
        iface
    }

    /// Removes nodes and constants no output depends on, and renumbers what is left
    /// (dead code left by constant folding in a frontend).
    pub fn prune(&mut self) {
        let mut live_v = vec![false; self.values.len()];
        let mut live_n = vec![false; self.nodes.len()];
        for &o in &self.outputs {
            live_v[o.0 as usize] = true;
        }
        for &i in &self.inputs {
            live_v[i.0 as usize] = true;
        }
        for (ni, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| live_v[o.0 as usize]) {
                live_n[ni] = true;
                for i in &n.inputs {
                    live_v[i.0 as usize] = true;
                }
            }
        }
        // Outputs of live nodes stay (a node's unused second output is still its output).
        for (ni, n) in self.nodes.iter().enumerate() {
            if live_n[ni] {
                for o in &n.outputs {
                    live_v[o.0 as usize] = true;
                }
            }
        }
        let mut vmap = vec![None; self.values.len()];
        let mut nmap = vec![None; self.nodes.len()];
        let mut k = 0u32;
        for (i, &l) in live_n.iter().enumerate() {
            if l {
                nmap[i] = Some(NodeId(k));
                k += 1;
            }
        }
        let old_values = std::mem::take(&mut self.values);
        self.names.clear();
        for (i, mut v) in old_values.into_iter().enumerate() {
            if !live_v[i] {
                continue;
            }
            if let ValueDef::Node { node, .. } = &mut v.def {
                *node = nmap[node.0 as usize].expect("live value of a live node");
            }
            let id = ValueId(self.values.len() as u32);
            vmap[i] = Some(id);
            self.names.insert(v.name.clone(), id);
            self.values.push(v);
        }
        let remap = |v: &mut ValueId| *v = vmap[v.0 as usize].expect("live value");
        let old_nodes = std::mem::take(&mut self.nodes);
        for (i, mut n) in old_nodes.into_iter().enumerate() {
            if !live_n[i] {
                continue;
            }
            n.inputs.iter_mut().for_each(remap);
            n.outputs.iter_mut().for_each(remap);
            self.nodes.push(n);
        }
        self.inputs.iter_mut().for_each(remap);
        self.outputs.iter_mut().for_each(remap);
    }

    /// Parameter count and bytes of all the graph's weights (see [`is_parameter`]).
    pub fn params(&self) -> (usize, usize) {
        self.values
            .iter()
            .filter_map(|v| match &v.def {
                ValueDef::Const(t) if is_parameter(t) => Some(t),
                _ => None,
            })
            .fold((0, 0), |(n, b), t| (n + t.numel(), b + t.bytes().len()))
    }

    /// Parameter count and bytes of the weights a brick's nodes use (nested bricks
    /// included; a weight shared by two bricks counts in both). See [`is_parameter`].
    pub fn brick_params(&self, brick: BrickId) -> (usize, usize) {
        let iface = self.brick_interface(brick);
        iface
            .weights
            .iter()
            .filter_map(|&w| self.constant(w).filter(|t| is_parameter(t)))
            .fold((0, 0), |(n, b), t| (n + t.numel(), b + t.bytes().len()))
    }
}

/// True for a constant that counts as a model parameter: a float tensor of rank ≥ 1.
/// Scalars (epsilons, exponents) and integer tensors (shapes, indices) are literals.
pub fn is_parameter(t: &Tensor) -> bool {
    t.dtype().is_float() && t.rank() >= 1
}

/// The values crossing a brick's boundary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrickInterface {
    /// Non-constant values used inside, defined outside.
    pub inputs: Vec<ValueId>,
    /// Constants (weights) used inside.
    pub weights: Vec<ValueId>,
    /// Values defined inside and used outside (or graph outputs).
    pub outputs: Vec<ValueId>,
}

impl Graph {
    /// Moves a node to another brick (or out of every brick).
    pub fn set_node_brick(&mut self, id: NodeId, brick: Option<BrickId>) {
        self.nodes[id.0 as usize].brick = brick;
    }

    /// Replaces a node's op by an equivalent one with the same operands and
    /// result types (a control-flow op whose subgraphs were optimized); the
    /// verifier checks the types still hold.
    pub fn set_node_op(&mut self, id: NodeId, op: Op) {
        self.nodes[id.0 as usize].op = op;
    }

    /// Renames a value (the new name must be unused).
    pub fn rename_value(&mut self, id: ValueId, name: String) {
        let old = std::mem::replace(&mut self.values[id.0 as usize].name, name.clone());
        self.names.remove(&old);
        self.names.insert(name, id);
    }
}
