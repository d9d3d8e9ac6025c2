//! `kiln inspect`: what a model is made of — inputs and outputs, the brick tree
//! with parameter counts, op histograms, and every unsupported op at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use kiln_frontends::onnx::{self, proto};
use kiln_ir::Graph;
use serde::Serialize;

use crate::Error;

/// A graph input or output.
#[derive(Debug, Serialize)]
pub struct ValueReport {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Shape with symbolic dims.
    pub shape: String,
    /// For an input a caller may leave out (Hugging Face models): what kiln
    /// fills it with, as transformers does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One brick of the tree.
#[derive(Debug, Serialize)]
pub struct BrickReport {
    /// Path in the model.
    pub name: String,
    /// Kind (attention, ffn, ...).
    pub kind: String,
    /// Nesting depth (0 for top-level bricks).
    pub depth: usize,
    /// The enclosing brick.
    pub parent: Option<String>,
    /// Parameters of the weights it uses (nested bricks included).
    pub parameters: usize,
    /// Bytes of those weights.
    pub bytes: usize,
    /// kiln nodes inside it (nested bricks included).
    pub nodes: usize,
}

/// An unsupported op type and the nodes that use it.
#[derive(Debug, Serialize)]
pub struct UnsupportedReport {
    /// The op type (with its domain when not the default one).
    pub op: String,
    /// Nodes using it.
    pub nodes: Vec<String>,
}

/// Everything `kiln inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model file.
    pub model: String,
    /// The tool that wrote it.
    pub producer: String,
    /// Imported opsets (domain, version).
    pub opsets: Vec<(String, i64)>,
    /// Inputs fed at run time.
    pub inputs: Vec<ValueReport>,
    /// Outputs.
    pub outputs: Vec<ValueReport>,
    /// Total parameters (elements of the float weights of rank ≥ 1, see `is_parameter`).
    pub parameters: usize,
    /// Total bytes of those weights.
    pub weight_bytes: usize,
    /// The brick tree, parents before children.
    pub bricks: Vec<BrickReport>,
    /// ONNX op types and how many nodes use each.
    pub onnx_ops: BTreeMap<String, usize>,
    /// kiln IR ops after import and how many nodes use each.
    pub kiln_ops: BTreeMap<String, usize>,
    /// Unsupported ops (empty when the model imports).
    pub unsupported: Vec<UnsupportedReport>,
    /// Why import failed, when it did for another reason.
    pub import_error: Option<String>,
}

fn proto_values(vs: &[proto::ValueInfoProto], skip: &[String]) -> Vec<ValueReport> {
    vs.iter()
        .filter(|v| !skip.contains(&v.name))
        .map(|v| {
            let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(proto::type_proto::Value::TensorType(t)) => {
                    let dims = t.shape.as_ref().map(|s| {
                        s.dim
                            .iter()
                            .map(|d| match &d.value {
                                Some(proto::tensor_shape_proto::dimension::Value::DimValue(n)) => {
                                    n.to_string()
                                }
                                Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                                    p.clone()
                                }
                                None => "?".into(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    });
                    (
                        onnx::tensor::onnx_type_name(t.elem_type).to_lowercase(),
                        format!("[{}]", dims.unwrap_or_else(|| "?".into())),
                    )
                }
                _ => ("non-tensor".into(), String::new()),
            };
            ValueReport {
                name: v.name.clone(),
                dtype,
                shape,
                default: None,
            }
        })
        .collect()
}

fn graph_values(g: &Graph, ids: &[kiln_ir::ValueId]) -> Vec<ValueReport> {
    ids.iter()
        .map(|&i| {
            let v = g.value(i);
            ValueReport {
                name: v.name.clone(),
                dtype: v.ty.dtype.to_string(),
                shape: v.ty.shape.to_string(),
                default: None,
            }
        })
        .collect()
}

/// Inspects an ONNX model file.
pub fn inspect(path: &Path) -> Result<Report, Error> {
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if path.is_dir() || is_gguf {
        let model = crate::Model::load(path)?;
        let arch = match model.kind() {
            Some(kiln_frontends::hf::ModelKind::Decoder(d)) => format!("{:?} decoder", d.family),
            Some(kiln_frontends::hf::ModelKind::Encoder(_)) => "BERT encoder".to_string(),
            None => "model".to_string(),
        };
        let mut report = Report {
            model: path.display().to_string(),
            producer: if is_gguf {
                format!("GGUF file ({arch})")
            } else {
                format!("Hugging Face folder ({arch})")
            },
            opsets: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            parameters: 0,
            weight_bytes: 0,
            bricks: vec![],
            onnx_ops: BTreeMap::new(),
            kiln_ops: BTreeMap::new(),
            unsupported: Vec::new(),
            import_error: None,
        };
        fill_from_graph(&mut report, model.graph());
        for v in &mut report.inputs {
            v.default = model
                .input_rules()
                .iter()
                .find(|r| r.name == v.name)
                .and_then(|r| r.default)
                .map(|d| d.describe().to_string());
        }
        return Ok(report);
    }
    let model = onnx::read_model(path)?;
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Onnx(onnx::OnnxError::Malformed("the model has no graph".into())))?;
    let mut onnx_ops = BTreeMap::new();
    for n in &g.node {
        *onnx_ops.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    let unsupported: Vec<UnsupportedReport> = onnx::unsupported_ops(&model)
        .into_iter()
        .map(|(op, nodes)| UnsupportedReport { op, nodes })
        .collect();
    let initializers: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    let mut report = Report {
        model: path.display().to_string(),
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        opsets: model
            .opset_import
            .iter()
            .map(|o| {
                (
                    if o.domain.is_empty() {
                        "ai.onnx".into()
                    } else {
                        o.domain.clone()
                    },
                    o.version,
                )
            })
            .collect(),
        inputs: proto_values(&g.input, &initializers),
        outputs: proto_values(&g.output, &[]),
        parameters: 0,
        weight_bytes: 0,
        bricks: vec![],
        onnx_ops,
        kiln_ops: BTreeMap::new(),
        unsupported,
        import_error: None,
    };
    if !report.unsupported.is_empty() {
        return Ok(report);
    }
    let graph = match onnx::import_from(&model, path) {
        Ok(g) => g,
        Err(e) => {
            report.import_error = Some(e.to_string());
            return Ok(report);
        }
    };
    fill_from_graph(&mut report, &graph);
    Ok(report)
}

/// The inputs, outputs, parameter counts, ops and bricks of an imported graph.
fn fill_from_graph(report: &mut Report, graph: &kiln_ir::Graph) {
    report.inputs = graph_values(graph, &graph.inputs);
    report.outputs = graph_values(graph, &graph.outputs);
    (report.parameters, report.weight_bytes) = graph.params();
    for n in graph.nodes() {
        *report.kiln_ops.entry(n.op.name().to_string()).or_insert(0) += 1;
    }
    report.bricks = bricks_of(graph);
}

/// The bricks of `graph`, outermost first, with their sizes.
pub fn bricks_of(graph: &kiln_ir::Graph) -> Vec<BrickReport> {
    let mut bricks = Vec::new();
    for (i, b) in graph.bricks.iter().enumerate() {
        let id = kiln_ir::BrickId(i as u32);
        let (parameters, bytes) = graph.brick_params(id);
        let mut depth = 0;
        let mut p = b.parent;
        while let Some(q) = p {
            depth += 1;
            p = graph.bricks[q.0 as usize].parent;
        }
        bricks.push(BrickReport {
            name: b.name.clone(),
            kind: b.kind.to_string(),
            depth,
            parent: b.parent.map(|p| graph.bricks[p.0 as usize].name.clone()),
            parameters,
            bytes,
            nodes: graph.brick_nodes(id).len(),
        });
    }
    bricks
}

/// A count with a metric suffix (`1.2M`).
fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Renders a report for people.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model     {}", r.model);
    if !r.producer.is_empty() {
        let _ = writeln!(s, "producer  {}", r.producer);
    }
    let ops: Vec<String> = r.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    if !ops.is_empty() {
        let _ = writeln!(s, "opsets    {}", ops.join(", "));
    }
    if r.import_error.is_none() && r.unsupported.is_empty() {
        let _ = writeln!(
            s,
            "weights   {} parameters, {}",
            human(r.parameters),
            bytes(r.weight_bytes)
        );
    }
    let width = r
        .inputs
        .iter()
        .chain(&r.outputs)
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(s, "\ninputs");
    for v in &r.inputs {
        let optional = match &v.default {
            Some(d) => format!("  (optional: {d})"),
            None => String::new(),
        };
        let _ = writeln!(s, "  {:width$}  {}{}{optional}", v.name, v.dtype, v.shape);
    }
    let _ = writeln!(s, "outputs");
    for v in &r.outputs {
        let _ = writeln!(s, "  {:width$}  {}{}", v.name, v.dtype, v.shape);
    }
    if !r.bricks.is_empty() {
        let labels: Vec<String> = r
            .bricks
            .iter()
            .map(|b| format!("{}{} ({})", "  ".repeat(b.depth + 1), b.name, b.kind))
            .collect();
        let w = labels.iter().map(String::len).max().unwrap_or(0).max(6);
        let _ = writeln!(
            s,
            "\n{:<w$}  {:>8}  {:>10}  {:>6}",
            "bricks", "params", "bytes", "nodes"
        );
        for (label, b) in labels.iter().zip(&r.bricks) {
            let _ = writeln!(
                s,
                "{label:<w$}  {:>8}  {:>10}  {:>6}",
                human(b.parameters),
                bytes(b.bytes),
                b.nodes
            );
        }
    }
    let hist = |m: &BTreeMap<String, usize>| {
        let mut v: Vec<(&String, &usize)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "\nonnx ops  {}", hist(&r.onnx_ops));
    if !r.kiln_ops.is_empty() {
        let _ = writeln!(s, "kiln ops  {}", hist(&r.kiln_ops));
    }
    if r.unsupported.is_empty() {
        if r.import_error.is_none() {
            let _ = writeln!(s, "\nunsupported ops: none");
        }
    } else {
        let _ = writeln!(s, "\nunsupported ops ({}):", r.unsupported.len());
        for u in &r.unsupported {
            let _ = writeln!(
                s,
                "  {}  ({} node{}: {})",
                u.op,
                u.nodes.len(),
                if u.nodes.len() == 1 { "" } else { "s" },
                name_list(&u.nodes)
            );
        }
    }
    s
}

/// At most this many node names are printed per unsupported op in text output.
const MAX_NODE_NAMES: usize = 6;

fn name_list(nodes: &[String]) -> String {
    let shown: Vec<&str> = nodes
        .iter()
        .take(MAX_NODE_NAMES)
        .map(String::as_str)
        .collect();
    match nodes.len().saturating_sub(MAX_NODE_NAMES) {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}
