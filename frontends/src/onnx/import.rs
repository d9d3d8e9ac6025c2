//! Graph import: values, initializers, the node loop, subgraph and function inlining.

use std::collections::HashMap;

use kiln_ir::{Dim, Graph, Op, Shape, TensorType, ValueDef, ValueId};

use super::bricks::BrickNamer;
use super::lists::{info_of_type, ListInfo};
use super::node_ctx::ImportedSubgraph;
use super::node_ctx::{ImportScope, NodeCtx};
use super::proto::{self, FunctionProto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use super::registry::Registry;
use super::symbolic::ShapeValues;
use super::tensor::{dtype_of, onnx_type_name, tensor_from_proto, DataDir};
use super::OnnxError;

pub use kiln_ir::limits::FOLD_MAX_ELEMENTS;
use kiln_ir::limits::{MAX_GRAPH_NODES, MAX_INLINE_DEPTH};

/// Opset assumed when a model does not import the default domain.
const DEFAULT_OPSET: i64 = 21;

pub(crate) struct Importer<'m> {
    graph: Graph,
    names: HashMap<String, ValueId>,
    opsets: HashMap<String, i64>,
    dir: DataDir,
    registry: Registry,
    functions: &'m [FunctionProto],
    bricks: BrickNamer,
    shapes: ShapeValues,
    /// How many `If` branches and function calls enclose the node being converted.
    inline_depth: usize,
    /// What each list value (sequence, optional) holds.
    lists: HashMap<ValueId, ListInfo>,
    /// `If` outputs whose branches disagreed in rank, with the rank given and the
    /// `If` node's name ([`ImportScope::note_rank_unified`]).
    rank_unified: Vec<(ValueId, usize, String)>,
}

impl ImportScope for Importer<'_> {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    fn lookup(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    fn bind(&mut self, name: String, v: ValueId) {
        self.names.insert(name, v);
    }

    fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    fn after_node(&mut self, op: &Op, inputs: &[ValueId], outs: &[ValueId]) {
        self.shapes.after_node(&mut self.graph, op, inputs, outs);
    }

    fn import_subgraph(
        &mut self,
        g: &GraphProto,
        node: &str,
        leading: &[TensorType],
        leading_lists: &[Option<ListInfo>],
    ) -> Result<ImportedSubgraph, OnnxError> {
        self.enter_inlined(node)?;
        let result = self.import_subgraph_at_depth(g, node, leading, leading_lists);
        self.inline_depth -= 1;
        result
    }

    fn list_info(&self, v: ValueId) -> Option<ListInfo> {
        self.lists.get(&v).cloned()
    }

    fn set_list_info(&mut self, v: ValueId, info: ListInfo) {
        self.lists.insert(v, info);
    }

    fn note_rank_unified(&mut self, v: ValueId, rank: usize, node: &str) {
        self.rank_unified.push((v, rank, node.to_string()));
    }

    fn is_rank_unified(&self, v: ValueId) -> bool {
        self.rank_unified.iter().any(|(u, ..)| *u == v)
    }

    fn inline_subgraph(&mut self, g: &GraphProto, node: &str) -> Result<Vec<ValueId>, OnnxError> {
        self.enter_inlined(node)?;
        self.add_initializers(g)?;
        for n in &g.node {
            self.convert_node(n)?;
        }
        self.inline_depth -= 1;
        g.output.iter().map(|o| self.find(&o.name, node)).collect()
    }
}

impl<'m> Importer<'m> {
    /// Checks every `If` output given a higher rank than one branch's value
    /// ([`ImportScope::note_rank_unified`]): exact when each consumer is a
    /// broadcasting elementwise op with another operand of at least that rank
    /// (numpy broadcasting pads the lower rank with leading 1s itself), so the
    /// result is the same whichever rank the value has. A graph output, a
    /// captured value or any other consumer would observe the rank: refused.
    fn check_rank_unified(&self) -> Result<(), OnnxError> {
        for (v, rank, node) in &self.rank_unified {
            let refuse = |why: String| {
                OnnxError::Malformed(format!(
                    "node `{node}` (If): its branches return values of different ranks, \
                     which kiln can only give rank {rank}, but {why} would observe it"
                ))
            };
            if self.graph.outputs.contains(v) {
                return Err(refuse("the graph output".into()));
            }
            for n in self.graph.nodes() {
                if !n.inputs.contains(v) {
                    continue;
                }
                let wide_peer = n
                    .inputs
                    .iter()
                    .any(|u| u != v && self.graph.value(*u).ty.shape.rank() >= *rank);
                if !(n.op.is_elementwise() && wide_peer) {
                    return Err(refuse(format!("node `{}` ({})", n.name, n.op.name())));
                }
            }
        }
        Ok(())
    }

    /// [`ImportScope::import_subgraph`] once the depth is counted: a child
    /// importer builds the closed subgraph; this scope supplies its captures.
    fn import_subgraph_at_depth(
        &mut self,
        g: &GraphProto,
        node: &str,
        leading: &[TensorType],
        leading_lists: &[Option<ListInfo>],
    ) -> Result<ImportedSubgraph, OnnxError> {
        if g.input.len() != leading.len() {
            return Err(OnnxError::Malformed(format!(
                "node `{node}`: subgraph `{}` declares {} inputs, the op gives it {}",
                g.name,
                g.input.len(),
                leading.len()
            )));
        }
        let name = if g.name.is_empty() {
            format!("{node}/body")
        } else {
            g.name.clone()
        };
        let mut child = Importer {
            graph: Graph::new(name),
            names: HashMap::new(),
            opsets: self.opsets.clone(),
            dir: self.dir.clone(),
            registry: Registry::standard(),
            functions: self.functions,
            bricks: self.bricks.clone(),
            shapes: ShapeValues::default(),
            inline_depth: self.inline_depth,
            lists: HashMap::new(),
            rank_unified: Vec::new(),
        };
        for (i, (vi, ty)) in g.input.iter().zip(leading).enumerate() {
            let v = child.graph.add_input(vi.name.clone(), ty.clone());
            child.names.insert(vi.name.clone(), v);
            let declared = vi.r#type.as_ref().and_then(info_of_type);
            if let Some(info) = leading_lists.get(i).cloned().flatten().or(declared) {
                child.lists.insert(v, info);
            }
        }
        let mut captures = Vec::new();
        for init in &g.initializer {
            let t = tensor_from_proto(init, &self.dir)?;
            if t.numel() <= MAX_SUBGRAPH_CONST_ELEMENTS {
                let v = child.graph.add_const(init.name.clone(), t);
                child.names.insert(init.name.clone(), v);
            } else {
                // A weight of the body: a constant of this graph the body captures,
                // so the subgraph's text stays small.
                let outer = self.graph.fresh_name(&init.name);
                let c = self.graph.add_const(outer, t);
                let ty = self.graph.value(c).ty.clone();
                let v = child.graph.add_input(init.name.clone(), ty);
                child.names.insert(init.name.clone(), v);
                captures.push(c);
            }
        }
        for free in free_names(g) {
            let outer = self.find(&free, node)?;
            let value = self.graph.value(outer);
            match &value.def {
                ValueDef::Const(t) if t.numel() <= MAX_SUBGRAPH_CONST_ELEMENTS => {
                    let v = child.graph.add_const(free.clone(), t.clone());
                    child.names.insert(free, v);
                }
                _ => {
                    let v = child.graph.add_input(free.clone(), value.ty.clone());
                    child.names.insert(free, v);
                    if let Some(info) = self.lists.get(&outer) {
                        child.lists.insert(v, info.clone());
                    }
                    captures.push(outer);
                }
            }
        }
        for n in &g.node {
            child.convert_node(n)?;
        }
        let mut output_lists = Vec::with_capacity(g.output.len());
        for o in &g.output {
            let v = child.find(&o.name, node)?;
            child.graph.outputs.push(v);
            let declared = o.r#type.as_ref().and_then(info_of_type);
            output_lists.push(child.lists.get(&v).cloned().or(declared));
        }
        child.check_rank_unified()?;
        child.graph.prune();
        Ok(ImportedSubgraph {
            graph: child.graph,
            captures,
            output_lists,
        })
    }

    /// Enters an inlined `If` branch or function body, refusing nesting deeper than
    /// [`MAX_INLINE_DEPTH`] (a function calling itself) and graphs over
    /// [`MAX_GRAPH_NODES`] nodes (calls nested to blow up exponentially).
    fn enter_inlined(&mut self, node: &str) -> Result<(), OnnxError> {
        if self.inline_depth >= MAX_INLINE_DEPTH {
            return Err(OnnxError::Malformed(format!(
                "node `{node}`: `If` branches and function calls nest deeper than {MAX_INLINE_DEPTH} (MAX_INLINE_DEPTH; a function calling itself?)"
            )));
        }
        if self.graph.nodes().len() > MAX_GRAPH_NODES {
            return Err(OnnxError::Malformed(format!(
                "node `{node}`: the model has more than {MAX_GRAPH_NODES} nodes once inlined (MAX_GRAPH_NODES)"
            )));
        }
        self.inline_depth += 1;
        Ok(())
    }

    fn find(&self, name: &str, node: &str) -> Result<ValueId, OnnxError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| OnnxError::MissingValue {
                node: node.to_string(),
                value: name.to_string(),
            })
    }

    fn add_initializers(&mut self, g: &GraphProto) -> Result<(), OnnxError> {
        for init in &g.initializer {
            let t = tensor_from_proto(init, &self.dir)?;
            let v = self.graph.add_const(init.name.clone(), t);
            self.names.insert(init.name.clone(), v);
        }
        if !g.sparse_initializer.is_empty() {
            return Err(OnnxError::Malformed(
                "sparse initializers are not supported".into(),
            ));
        }
        Ok(())
    }

    fn convert_node(&mut self, node: &NodeProto) -> Result<(), OnnxError> {
        let domain = canonical_domain(&node.domain);
        if let Some(f) = self
            .functions
            .iter()
            .find(|f| f.name == node.op_type && canonical_domain(&f.domain) == domain)
        {
            return self.inline_function(node, f);
        }
        let opset = self.opsets.get(domain).copied().unwrap_or(DEFAULT_OPSET);
        let conv = self.registry.get(domain, &node.op_type).ok_or_else(|| {
            OnnxError::Unsupported(vec![(node.op_type.clone(), vec![node_name(node)])])
        })?;
        let name = node_name(node);
        let brick = self.bricks.brick_for(&mut self.graph, node);
        let mut cx = NodeCtx::new(self, node, opset, name, brick);
        conv(&mut cx)?;
        for (i, o) in node.output.iter().enumerate() {
            if !o.is_empty() && !cx.is_bound(o) {
                return Err(cx.err(format!("converter did not produce output {i} (`{o}`)")));
            }
        }
        Ok(())
    }

    /// Inlines a call of a model-local function: its body's names are prefixed by the
    /// call node's name, formal inputs bound to the actual ones, attribute references
    /// replaced by the call's attributes.
    fn inline_function(&mut self, call: &NodeProto, f: &FunctionProto) -> Result<(), OnnxError> {
        let prefix = node_name(call);
        self.enter_inlined(&prefix)?;
        let scoped = |n: &str| {
            if n.is_empty() {
                String::new()
            } else {
                format!("{prefix}/{n}")
            }
        };
        for (formal, actual) in f.input.iter().zip(&call.input) {
            if actual.is_empty() {
                continue;
            }
            let v = self.find(actual, &prefix)?;
            self.names.insert(scoped(formal), v);
        }
        let saved: Vec<(String, i64)> = f
            .opset_import
            .iter()
            .map(|o| (canonical_domain(&o.domain).to_string(), o.version))
            .collect();
        let mut previous = Vec::new();
        for (d, v) in &saved {
            previous.push((d.clone(), self.opsets.insert(d.clone(), *v)));
        }
        for n in &f.node {
            let mut n = n.clone();
            n.name = scoped(if n.name.is_empty() {
                &n.op_type
            } else {
                &n.name
            });
            n.input = n.input.iter().map(|i| scoped(i)).collect();
            n.output = n.output.iter().map(|o| scoped(o)).collect();
            let mut attrs = Vec::new();
            for a in n.attribute {
                if a.ref_attr_name.is_empty() {
                    attrs.push(a);
                } else if let Some(actual) =
                    call.attribute.iter().find(|c| c.name == a.ref_attr_name)
                {
                    let mut actual = actual.clone();
                    actual.name = a.name.clone();
                    attrs.push(actual);
                } else if let Some(default) =
                    f.attribute_proto.iter().find(|d| d.name == a.ref_attr_name)
                {
                    let mut d = default.clone();
                    d.name = a.name.clone();
                    attrs.push(d);
                }
            }
            n.attribute = attrs;
            self.convert_node(&n)?;
        }
        self.inline_depth -= 1;
        for (d, v) in previous {
            match v {
                Some(v) => self.opsets.insert(d, v),
                None => self.opsets.remove(&d),
            };
        }
        for (formal, actual) in f.output.iter().zip(&call.output) {
            if actual.is_empty() {
                continue;
            }
            let v = self.find(&scoped(formal), &prefix)?;
            self.names.insert(actual.clone(), v);
        }
        Ok(())
    }
}

/// Largest constant a subgraph holds itself (copied from the enclosing graph
/// or its own initializer): shape operands stay constants the body's
/// inference and folding see; bigger tensors (weights) are captured as inputs
/// so a subgraph's text form stays small.
pub const MAX_SUBGRAPH_CONST_ELEMENTS: usize = 1024;

/// The names a subgraph reads from enclosing scopes, in first-use order: used
/// by its nodes (or nested subgraphs) or returned, and defined by none of its
/// inputs, initializers and nodes.
pub(crate) fn free_names(g: &GraphProto) -> Vec<String> {
    let mut defined: std::collections::HashSet<&str> = g
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(g.initializer.iter().map(|i| i.name.as_str()))
        .collect();
    let mut free: Vec<String> = Vec::new();
    let use_name = |n: &str, defined: &std::collections::HashSet<&str>, free: &mut Vec<String>| {
        if !n.is_empty() && !defined.contains(n) && !free.iter().any(|f| f == n) {
            free.push(n.to_string());
        }
    };
    for n in &g.node {
        for i in &n.input {
            use_name(i, &defined, &mut free);
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                for f in free_names(sub) {
                    use_name(&f, &defined, &mut free);
                }
            }
        }
        for o in &n.output {
            defined.insert(o.as_str());
        }
    }
    for o in &g.output {
        use_name(&o.name, &defined, &mut free);
    }
    free
}

fn canonical_domain(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

/// A node's name, or `op_type` plus its first output when the model left it empty.
pub(crate) fn node_name(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        format!(
            "{}({})",
            n.op_type,
            n.output.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// The declared type of a graph input or output.
fn value_type(vi: &ValueInfoProto, sym_names: &mut usize) -> Result<TensorType, OnnxError> {
    let tp = vi
        .r#type
        .as_ref()
        .ok_or_else(|| OnnxError::Malformed(format!("`{}` has no type", vi.name)))?;
    if info_of_type(tp).is_some() {
        return Ok(kiln_ir::op::list_type());
    }
    let proto::type_proto::Value::TensorType(tt) = tp
        .value
        .as_ref()
        .ok_or_else(|| OnnxError::Malformed(format!("`{}` has no type", vi.name)))?
    else {
        return Err(OnnxError::Unsupported(vec![(
            "non-tensor value (sequence/map/optional)".into(),
            vec![vi.name.clone()],
        )]));
    };
    let dtype = dtype_of(tt.elem_type).ok_or_else(|| OnnxError::UnsupportedDtype {
        tensor: vi.name.clone(),
        dtype: onnx_type_name(tt.elem_type),
    })?;
    let shape = match &tt.shape {
        None => {
            return Err(OnnxError::Malformed(format!(
                "`{}` has no shape (unknown rank is not supported)",
                vi.name
            )))
        }
        Some(s) => Shape(
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                        Dim::Known(*v as usize)
                    }
                    Some(proto::tensor_shape_proto::dimension::Value::DimParam(p))
                        if !is_placeholder_dim(p) =>
                    {
                        Dim::sym(p)
                    }
                    _ => {
                        *sym_names += 1;
                        Dim::sym(&format!("{}_dim{}", vi.name, *sym_names))
                    }
                })
                .collect(),
        ),
    };
    Ok(TensorType::new(dtype, shape))
}

/// Whether a `dim_param` is an exporter's "unknown" mark rather than a name
/// shared on purpose: PaddlePaddle's `?`, `-1`, `None`, TensorFlow's `unk__N`,
/// an empty string. Each such dim gets a symbol of its own, so two inputs
/// marked `?` may differ at run time (ONNX Runtime runs such models).
pub(crate) fn is_placeholder_dim(p: &str) -> bool {
    let p = p.trim();
    p.is_empty()
        || matches!(p, "?" | "-1" | "None" | "none" | "null" | "unk" | "unknown")
        || p.strip_prefix("unk__")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// Op types without a converter, each with the nodes that use it.
type Unsupported = Vec<(String, Vec<String>)>;

/// Op types a graph (its subgraphs, and the functions it calls) uses that have no converter.
pub(crate) fn collect_unsupported(
    reg: &Registry,
    g: &GraphProto,
    functions: &[FunctionProto],
) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let visit = |n: &NodeProto, out: &mut Vec<(String, Vec<String>)>| {
        let domain = canonical_domain(&n.domain);
        let is_function = functions
            .iter()
            .any(|f| f.name == n.op_type && canonical_domain(&f.domain) == domain);
        if !is_function && reg.get(domain, &n.op_type).is_none() {
            let op = if domain.is_empty() {
                n.op_type.clone()
            } else {
                format!("{domain}.{}", n.op_type)
            };
            match out.iter_mut().find(|(o, _)| *o == op) {
                Some((_, nodes)) => nodes.push(node_name(n)),
                None => out.push((op, vec![node_name(n)])),
            }
        }
    };
    fn walk(
        g: &GraphProto,
        visit: &dyn Fn(&NodeProto, &mut Unsupported),
        out: &mut Unsupported,
        depth: usize,
    ) {
        for n in &g.node {
            visit(n, out);
            if depth < MAX_INLINE_DEPTH {
                for a in &n.attribute {
                    for sub in a.g.iter().chain(&a.graphs) {
                        walk(sub, visit, out, depth + 1);
                    }
                }
            }
        }
    }
    walk(g, &visit, &mut out, 0);
    for f in functions {
        for n in &f.node {
            visit(n, &mut out);
        }
    }
    out
}

pub(crate) fn import_model(model: &ModelProto, dir: DataDir) -> Result<Graph, OnnxError> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Malformed("the model has no graph".into()))?;
    let registry = Registry::standard();
    let unsupported = collect_unsupported(&registry, g, &model.functions);
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported(unsupported));
    }
    let mut imp = Importer {
        graph: Graph::new(if g.name.is_empty() {
            "main"
        } else {
            g.name.as_str()
        }),
        names: HashMap::new(),
        opsets: model
            .opset_import
            .iter()
            .map(|o| (canonical_domain(&o.domain).to_string(), o.version))
            .collect(),
        dir,
        registry,
        functions: &model.functions,
        bricks: BrickNamer::new(model),
        shapes: ShapeValues::default(),
        inline_depth: 0,
        lists: HashMap::new(),
        rank_unified: Vec::new(),
    };
    imp.add_initializers(g)?;
    let mut unnamed = 0;
    for vi in &g.input {
        if imp.names.contains_key(&vi.name) {
            continue; // an initializer listed as an input (old exporters): a constant
        }
        let ty = value_type(vi, &mut unnamed)?;
        let v = imp.graph.add_input(vi.name.clone(), ty);
        imp.names.insert(vi.name.clone(), v);
        if let Some(info) = vi.r#type.as_ref().and_then(info_of_type) {
            imp.lists.insert(v, info);
        }
    }
    for n in &g.node {
        imp.convert_node(n)?;
    }
    for vo in &g.output {
        let v = imp.find(&vo.name, "<graph outputs>")?;
        let exposed = imp.graph.value(v).name != vo.name
            || imp.graph.outputs.contains(&v)
            || !matches!(imp.graph.value(v).def, ValueDef::Node { .. });
        let v = if exposed {
            if imp.graph.value(v).name == vo.name {
                let moved = imp.graph.fresh_name(&format!("{}#src", vo.name));
                imp.graph.rename_value(v, moved);
            }
            let name = imp.graph.fresh_name(&vo.name);
            imp.graph
                .add_node(
                    name.clone(),
                    Op::Layout(kiln_ir::op::LayoutOp::Identity),
                    vec![v],
                    &[name],
                    None,
                )
                .map_err(|e| OnnxError::Malformed(e.to_string()))?[0]
        } else {
            v
        };
        imp.graph.outputs.push(v);
    }
    imp.check_rank_unified()?;
    let mut graph = imp.graph;
    graph.prune();
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::is_placeholder_dim;

    #[test]
    fn exporters_unknown_marks_are_placeholders() {
        for p in ["", " ", "?", "-1", "None", "unk__0", "unk__123"] {
            assert!(is_placeholder_dim(p), "{p:?}");
        }
        for p in ["batch", "sequence", "N", "unk__x", "seq_len", "?batch"] {
            assert!(!is_placeholder_dim(p), "{p:?}");
        }
    }
}
