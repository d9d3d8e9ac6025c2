//! The roofline cost model: what a program costs on a target.
//!
//! Every op that is not free becomes one kernel, whose modelled time is
//!
//! ```text
//! time = max(flops / peak_flops(dtype), bytes / mem_bandwidth) + launch_overhead
//! ```
//!
//! - **bytes** = the bytes of every input plus every output (a constant input is
//!   a weight read from memory, counted the same way); nothing is assumed to stay
//!   in cache between kernels, which is what makes fusion pay.
//! - **flops** per op kind:
//!   - `MatMul` `[.., M, K] × [.., K, N]`: `2·numel(out)·K` (= 2·M·N·K per batch);
//!   - `Conv`: `2·numel(out)·(Cin/g)·k₁·k₂…` (the weight is `[Cout, Cin/g, k…]`);
//!     `ConvTranspose`: `2·numel(x)·(Cout/g)·k…`;
//!   - pooling: `numel(out)·k₁·k₂…`;
//!   - `Attention` (fused, scores never stored): with `S = numel(q)/d · s_kv` scores,
//!     `2·S·d + 2·S·d_v + 5·S`;
//!   - softmax, norms, GELU: 5 per element of the first input;
//!   - reductions and scans: 1 per input element;
//!   - everything else (elementwise, data movement): 1 per output element.
//! - **free ops** (no kernel, no launch): `Shape`, `Size`, `Reshape`, `Squeeze`,
//!   `Unsqueeze`, `Flatten`, `Identity` (metadata only), projections, inputs and
//!   constants, and any op whose operands are all constant (folded at compile time:
//!   its result is then a weight, paid for by whoever reads it).
//! - in the e-graph, an e-node's outputs other than output 0 are priced only when
//!   some `proj` e-node uses them.
//! - **control flow** (`If`, `Loop`, `Scan`) costs its subgraphs, priced as
//!   graphs of their own: an `If` its dearer branch (the condition is a value
//!   the model does not see), a `Scan` its body times the scan axis's length, a
//!   `Loop` its body times the rows of its stacked outputs when their count is
//!   known, else [`ASSUMED_LOOP_ITERATIONS`] times.
//! - **symbolic dims** take the size [`DimBindings`] gives them (`batch = 1`,
//!   `seq = 128`…), unknown ones a default; a value whose type is unknown counts
//!   zero elements, so its op costs the launch overhead only.
//!
//! The peak is chosen by the dtype of the op's first operand: f16 and bf16 use
//! `peak_flops_f16` (tensor cores), f64 half the f32 peak, everything else the f32
//! peak.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use egg::{CostFunction, Id, Language};
use kiln_ir::op::{BinaryOp, CompositeOp, ControlOp, LayoutOp, NnOp, UnaryOp};
use kiln_ir::{DType, Dim, Graph, Op, Shape, TensorType, ValueDef};
use serde::Deserialize;

use crate::{KilnEGraph, KilnLang};

/// A target's roofline parameters, read from a TOML file (`passes/targets/*.toml`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TargetProfile {
    /// The target's name (`h200`, `cpu-default`).
    pub name: String,
    /// Peak f32 arithmetic, FLOP/s.
    pub peak_flops_f32: f64,
    /// Peak f16 / bf16 arithmetic, FLOP/s.
    pub peak_flops_f16: f64,
    /// Memory bandwidth, bytes/s.
    pub mem_bandwidth: f64,
    /// Fixed cost of launching one kernel, seconds.
    pub launch_overhead: f64,
}

/// The profiles shipped with kiln, by name: `(name, TOML text)`.
pub const BUILTIN_TARGETS: &[(&str, &str)] = &[
    ("h200", include_str!("../targets/h200.toml")),
    ("cpu-default", include_str!("../targets/cpu-default.toml")),
];

/// The calibrated CPU profile's path under kiln's configuration directory.
pub const CALIBRATED_CPU_FILE: &str = "targets/cpu.toml";
/// The calibrated GPU profile's path under kiln's configuration directory
/// (`kiln calibrate --target cuda`).
pub const CALIBRATED_CUDA_FILE: &str = "targets/cuda.toml";

impl TargetProfile {
    /// Parses a profile from TOML text.
    pub fn from_toml(text: &str) -> Result<TargetProfile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads a profile from a TOML file.
    pub fn load(path: &Path) -> Result<TargetProfile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A built-in profile by name (see [`BUILTIN_TARGETS`]).
    pub fn builtin(name: &str) -> Option<TargetProfile> {
        BUILTIN_TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| Self::from_toml(text).expect("built-in profiles parse"))
    }

    /// The NVIDIA H200 profile.
    pub fn h200() -> TargetProfile {
        Self::builtin("h200").expect("built in")
    }

    /// The conservative 2-core x86 CPU profile.
    pub fn cpu_default() -> TargetProfile {
        Self::builtin("cpu-default").expect("built in")
    }

    /// The profile as TOML text in the format of `passes/targets/*.toml`, after
    /// `comment` (each of its lines becomes a `#` comment line).
    pub fn to_toml(&self, comment: &str) -> String {
        let mut out: String = comment.lines().map(|l| format!("# {l}\n")).collect();
        out += &format!("name = {:?}\n", self.name);
        out += &format!("peak_flops_f32 = {:.4e}\n", self.peak_flops_f32);
        out += &format!("peak_flops_f16 = {:.4e}\n", self.peak_flops_f16);
        out += &format!("mem_bandwidth = {:.4e}\n", self.mem_bandwidth);
        out += &format!("launch_overhead = {:.4e}\n", self.launch_overhead);
        out
    }

    /// Writes the profile ([`TargetProfile::to_toml`]) to `path` atomically: into a
    /// temporary file beside it, then renamed over it, so a reader never sees half a
    /// profile. Creates missing parent directories. Every number must be finite and
    /// positive.
    pub fn save(&self, path: &Path, comment: &str) -> Result<(), String> {
        let numbers = [
            self.peak_flops_f32,
            self.peak_flops_f16,
            self.mem_bandwidth,
            self.launch_overhead,
        ];
        if numbers.iter().any(|x| !x.is_finite() || *x <= 0.0) {
            return Err(format!("profile `{}` has a non-positive number", self.name));
        }
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let file = path
            .file_name()
            .ok_or_else(|| format!("{}: not a file path", path.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            file.to_string_lossy(),
            std::process::id()
        ));
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_toml(comment).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    /// kiln's configuration directory: `$XDG_CONFIG_HOME/kiln`, else
    /// `$HOME/.config/kiln` (`None` when neither variable is set).
    pub fn config_dir() -> Option<PathBuf> {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        nonempty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("kiln"))
    }

    /// Where `kiln calibrate` writes the measured CPU profile by default, under a
    /// configuration directory (see [`TargetProfile::config_dir`]).
    pub fn calibrated_cpu_path(config_dir: &Path) -> PathBuf {
        config_dir.join(CALIBRATED_CPU_FILE)
    }

    /// The calibrated GPU profile's path under kiln's configuration directory.
    pub fn calibrated_cuda_path(config_dir: &Path) -> PathBuf {
        config_dir.join(CALIBRATED_CUDA_FILE)
    }

    /// The profile `--target` names, with kiln's configuration directory
    /// ([`TargetProfile::config_dir`]): see [`TargetProfile::resolve_in`].
    pub fn resolve(name_or_path: &str) -> Result<TargetProfile, String> {
        Self::resolve_in(name_or_path, Self::config_dir().as_deref())
    }

    /// The profile `name_or_path` names: `cpu` is the calibrated profile under
    /// `config_dir` ([`TargetProfile::calibrated_cpu_path`]) when there is one, else
    /// `cpu-default`; `cuda` likewise the calibrated GPU profile, else `h200`;
    /// any other built-in name ([`BUILTIN_TARGETS`]) is that profile; anything
    /// else is read as the path of a TOML profile.
    pub fn resolve_in(
        name_or_path: &str,
        config_dir: Option<&Path>,
    ) -> Result<TargetProfile, String> {
        if name_or_path == "cuda" {
            if let Some(path) = config_dir
                .map(Self::calibrated_cuda_path)
                .filter(|p| p.is_file())
            {
                return Self::load(&path).map_err(|e| {
                    format!("calibrated profile {e} (re-run `kiln calibrate --target cuda`)")
                });
            }
            return Self::builtin("h200").ok_or_else(|| "no built-in h200 profile".into());
        }
        if name_or_path == "cpu" {
            if let Some(path) = config_dir
                .map(Self::calibrated_cpu_path)
                .filter(|p| p.is_file())
            {
                return Self::load(&path)
                    .map_err(|e| format!("calibrated profile {e} (re-run `kiln calibrate`)"));
            }
            return Ok(Self::cpu_default());
        }
        if let Some(p) = Self::builtin(name_or_path) {
            return Ok(p);
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            return Self::load(path);
        }
        let names: Vec<&str> = BUILTIN_TARGETS.iter().map(|(n, _)| *n).collect();
        Err(format!(
            "unknown target `{name_or_path}`: not cpu, {} nor a profile file",
            names.join(", ")
        ))
    }

    /// Peak FLOP/s for arithmetic in `dtype`.
    pub fn peak_flops(&self, dtype: DType) -> f64 {
        match dtype {
            DType::F16 | DType::BF16 => self.peak_flops_f16,
            DType::F64 => self.peak_flops_f32 / 2.0,
            _ => self.peak_flops_f32,
        }
    }
}

/// Sizes assumed for symbolic dimensions when pricing.
#[derive(Clone, Debug, PartialEq)]
pub struct DimBindings {
    /// Size of each named dimension.
    pub sizes: HashMap<String, usize>,
    /// Size of a symbolic dimension not in `sizes`, and of unknown (`?`) dims.
    pub default: usize,
}

impl Default for DimBindings {
    /// `batch = 1`, `seq = sequence = 128`, everything else 128.
    fn default() -> DimBindings {
        DimBindings::new(128)
            .bind("batch", 1)
            .bind("batch_size", 1)
            .bind("seq", 128)
            .bind("sequence", 128)
    }
}

impl DimBindings {
    /// No named dimensions; every symbolic dim is `default`.
    pub fn new(default: usize) -> DimBindings {
        DimBindings {
            sizes: HashMap::new(),
            default,
        }
    }

    /// Binds `name` to `size`.
    pub fn bind(mut self, name: &str, size: usize) -> DimBindings {
        self.sizes.insert(name.to_string(), size);
        self
    }

    /// The assumed size of `d`.
    pub fn size(&self, d: &Dim) -> usize {
        match d {
            Dim::Known(n) => *n,
            Dim::Sym(s) => self.sizes.get(&**s).copied().unwrap_or(self.default),
            Dim::Any => self.default,
        }
    }

    /// The assumed element count of `shape`.
    pub fn numel(&self, shape: &Shape) -> f64 {
        shape.0.iter().map(|d| self.size(d) as f64).product()
    }
}

/// The modelled work and time of one kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelCost {
    /// Floating-point (or integer) operations.
    pub flops: f64,
    /// Bytes read and written.
    pub bytes: f64,
    /// Modelled seconds (zero for a free op).
    pub seconds: f64,
}

/// The roofline model of one target under some dimension bindings.
#[derive(Clone, Debug)]
pub struct CostModel {
    /// The target.
    pub profile: TargetProfile,
    /// Sizes of symbolic dimensions.
    pub dims: DimBindings,
}

/// Iterations a `Loop` is priced at when its types do not say how many it
/// runs (the trip count is a value; only a scan output's leading dim shows it).
pub const ASSUMED_LOOP_ITERATIONS: f64 = 16.0;

/// The fraction of the shorter of compute and memory time that does not overlap
/// with the longer one. Real kernels overlap them imperfectly; the term also makes
/// the model prefer the program doing less work among equally memory-bound ones
/// (a recognized softmax over its decomposition in one region).
pub const OVERLAP_LOSS: f64 = 0.1;

/// What a division, square root or transcendental function costs in
/// multiply-adds: the units that compute them have a fraction of the FMA
/// throughput (and a softmax or norm built from them should not look cheaper than
/// the composite that computes the same thing with fewer of them).
pub const TRANSCENDENTAL_FLOPS: f64 = 4.0;

/// True for the unary ops priced at [`TRANSCENDENTAL_FLOPS`] per element.
fn is_transcendental(u: &UnaryOp) -> bool {
    !matches!(
        u,
        UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sign
            | UnaryOp::Not
            | UnaryOp::BitwiseNot
            | UnaryOp::IsNaN
            | UnaryOp::IsInf { .. }
            | UnaryOp::LeakyRelu { .. }
            | UnaryOp::HardSigmoid { .. }
            | UnaryOp::HardSwish
            | UnaryOp::ThresholdedRelu { .. }
            | UnaryOp::Shrink { .. }
    )
}

/// Work per input element of a composite op, counted as its best direct
/// implementation does it (one transcendental per element at most).
fn composite_flops_per_element(c: &CompositeOp) -> f64 {
    match c {
        // max, subtract, exp, sum, scale by the reciprocal
        CompositeOp::Softmax { .. } | CompositeOp::LogSoftmax { .. } => 4.0 + TRANSCENDENTAL_FLOPS,
        CompositeOp::Hardmax { .. } => 2.0,
        // mean, subtract, square, sum, normalize, scale, shift
        CompositeOp::LayerNorm { .. } => 7.0,
        // square, sum, normalize, scale
        CompositeOp::RmsNorm { .. } => 4.0,
        // the polynomial around one erf or tanh
        CompositeOp::Gelu { .. } => 4.0 + TRANSCENDENTAL_FLOPS,
        _ => 5.0,
    }
}

/// True for ops that only change metadata and never launch a kernel. A `Split`
/// with static sizes is free too: its pieces are strided views of its input (the
/// concatenated QKV or gate/up projection), read in place by their consumers.
pub fn is_free(op: &Op) -> bool {
    matches!(
        op,
        Op::Layout(
            LayoutOp::Split { .. }
                | LayoutOp::Shape { .. }
                | LayoutOp::Size
                | LayoutOp::Reshape { .. }
                | LayoutOp::Squeeze { .. }
                | LayoutOp::Unsqueeze { .. }
                | LayoutOp::Flatten { .. }
                | LayoutOp::Identity
        )
    )
}

impl CostModel {
    /// The model of `profile` with the default [`DimBindings`].
    pub fn new(profile: TargetProfile) -> CostModel {
        CostModel {
            profile,
            dims: DimBindings::default(),
        }
    }

    /// The model with these dimension bindings.
    pub fn with_dims(mut self, dims: DimBindings) -> CostModel {
        self.dims = dims;
        self
    }

    fn bytes_of(&self, t: &TensorType) -> f64 {
        self.dims.numel(&t.shape) * t.dtype.size() as f64
    }

    fn dim(&self, t: Option<&TensorType>, from_end: usize) -> f64 {
        t.and_then(|t| {
            let r = t.shape.rank();
            (r >= from_end).then(|| self.dims.size(&t.shape.0[r - from_end]) as f64)
        })
        .unwrap_or(1.0)
    }

    /// The work of `op` on operands of types `inputs` producing `outputs`.
    pub fn flops(&self, op: &Op, inputs: &[TensorType], outputs: &[TensorType]) -> f64 {
        let numel = |t: Option<&TensorType>| t.map_or(0.0, |t| self.dims.numel(&t.shape));
        let (x, out) = (inputs.first(), outputs.first());
        let w = inputs.get(1);
        let tail = |t: Option<&TensorType>| {
            t.map_or(1.0, |t| {
                t.shape
                    .0
                    .iter()
                    .skip(1)
                    .map(|d| self.dims.size(d) as f64)
                    .product()
            })
        };
        match op {
            Op::Fused(f) => self.region_flops(f, inputs),
            Op::Nn(NnOp::MatMul) => 2.0 * numel(out) * self.dim(x, 1),
            Op::Nn(NnOp::Conv { .. }) => 2.0 * numel(out) * tail(w),
            Op::Nn(NnOp::ConvTranspose { .. }) => 2.0 * numel(x) * tail(w),
            Op::Nn(
                NnOp::MaxPool { window, .. }
                | NnOp::AveragePool { window, .. }
                | NnOp::LpPool { window, .. },
            ) => numel(out) * window.kernel.iter().product::<usize>() as f64,
            Op::Composite(CompositeOp::Attention { .. }) => {
                let d = self.dim(x, 1);
                let s_kv = self.dim(inputs.get(1), 2);
                let d_v = self.dim(inputs.get(2), 1);
                let scores = numel(x) / d.max(1.0) * s_kv;
                2.0 * scores * d + 2.0 * scores * d_v + (4.0 + TRANSCENDENTAL_FLOPS) * scores
            }
            Op::Composite(c) => composite_flops_per_element(c) * numel(x),
            Op::Nn(
                NnOp::BatchNorm { .. }
                | NnOp::InstanceNorm { .. }
                | NnOp::GroupNorm { .. }
                | NnOp::Lrn { .. }
                | NnOp::LpNormalization { .. }
                | NnOp::MeanVarianceNormalization { .. },
            ) => 5.0 * numel(x),
            Op::Unary(u) if is_transcendental(u) => TRANSCENDENTAL_FLOPS * numel(out),
            Op::Binary(BinaryOp::Div | BinaryOp::Pow) => TRANSCENDENTAL_FLOPS * numel(out),
            Op::Reduce(_) => numel(x),
            _ => numel(out),
        }
    }

    /// The work of a fused region: the sum of its steps' (infinite for a region
    /// that is not legal for these operand types, so it is never chosen).
    fn region_flops(&self, f: &kiln_ir::op::FusedOp, inputs: &[TensorType]) -> f64 {
        use kiln_ir::op::{FusedArg, InferInputs};
        let consts = vec![None; inputs.len()];
        let Ok(types) = f.step_types(&InferInputs {
            types: inputs,
            consts: &consts,
        }) else {
            return f64::INFINITY;
        };
        f.steps
            .iter()
            .zip(&types)
            .map(|(s, t)| {
                let ins: Vec<TensorType> = s
                    .args
                    .iter()
                    .map(|a| match *a {
                        FusedArg::Input(i) => inputs[i].clone(),
                        FusedArg::Step(k) => types[k].clone(),
                    })
                    .collect();
                self.flops(&s.op, &ins, std::slice::from_ref(t))
            })
            .sum()
    }

    /// The cost of one kernel computing `op` (zero for a free op).
    pub fn kernel(&self, op: &Op, inputs: &[TensorType], outputs: &[TensorType]) -> KernelCost {
        if is_free(op) {
            return KernelCost::default();
        }
        if let Op::Control(c) = op {
            return self.control(c, inputs, outputs);
        }
        let flops = self.flops(op, inputs, outputs);
        let bytes: f64 = inputs.iter().chain(outputs).map(|t| self.bytes_of(t)).sum();
        let dtype = inputs
            .first()
            .or(outputs.first())
            .map_or(DType::F32, |t| t.dtype);
        let (compute, memory) = (
            flops / self.profile.peak_flops(dtype),
            bytes / self.profile.mem_bandwidth,
        );
        let seconds =
            compute.max(memory) + OVERLAP_LOSS * compute.min(memory) + self.profile.launch_overhead;
        KernelCost {
            flops,
            bytes,
            seconds,
        }
    }

    /// A control op: its subgraphs' costs, repeated as often as it iterates
    /// (see the module docs).
    fn control(&self, c: &ControlOp, inputs: &[TensorType], outputs: &[TensorType]) -> KernelCost {
        let body = |s: &kiln_ir::op::Subgraph| self.graph_kernels(s.graph());
        let (once, trips) = match c {
            ControlOp::If {
                then_branch,
                else_branch,
            } => {
                let (a, b) = (body(then_branch), body(else_branch));
                (if a.seconds >= b.seconds { a } else { b }, 1.0)
            }
            ControlOp::Loop {
                body: g,
                num_carried,
                ..
            } => {
                let trips = outputs
                    .get(*num_carried)
                    .and_then(|t| t.shape.0.first())
                    .map_or(ASSUMED_LOOP_ITERATIONS, |d| self.dims.size(d) as f64);
                (body(g), trips)
            }
            ControlOp::Scan {
                body: g,
                num_state,
                input_axes,
                ..
            } => {
                let trips = inputs.get(*num_state).map_or(1.0, |t| {
                    let rank = t.shape.0.len() as i64;
                    let axis = input_axes.first().copied().unwrap_or(0);
                    let axis = if axis < 0 { axis + rank } else { axis };
                    t.shape
                        .0
                        .get(axis.max(0) as usize)
                        .map_or(1.0, |d| self.dims.size(d) as f64)
                });
                (body(g), trips)
            }
        };
        KernelCost {
            flops: once.flops * trips,
            bytes: once.bytes * trips,
            seconds: once.seconds * trips + self.profile.launch_overhead,
        }
    }

    /// The summed cost of every kernel of `graph` (each node once).
    fn graph_kernels(&self, graph: &Graph) -> KernelCost {
        let mut total = KernelCost::default();
        for n in graph.nodes() {
            let ty = |v: &kiln_ir::ValueId| graph.value(*v).ty.clone();
            let inputs: Vec<TensorType> = n.inputs.iter().map(ty).collect();
            let outputs: Vec<TensorType> = n.outputs.iter().map(ty).collect();
            let k = self.kernel(&n.op, &inputs, &outputs);
            total.flops += k.flops;
            total.bytes += k.bytes;
            total.seconds += k.seconds;
        }
        total
    }

    /// The modelled seconds of e-node `enode` of e-class `class` alone (its operands
    /// not included): zero for leaves, projections, free ops and ops over constants.
    pub fn enode_cost(&self, egraph: &KilnEGraph, class: Id, enode: &KilnLang) -> f64 {
        let KilnLang::Op(key, children) = enode else {
            return 0.0;
        };
        if !children.is_empty() && children.iter().all(|&c| egraph[c].data.constant) {
            return 0.0;
        }
        let inputs: Vec<TensorType> = children
            .iter()
            .filter_map(|&c| egraph[c].data.ty().cloned())
            .collect();
        // Output 0 is the e-class's own value; another output is written only when
        // some e-node projects it (LayerNorm infers mean and inverse std outputs
        // that a single-output node never materializes).
        let outputs: Vec<TensorType> = egraph[class]
            .data
            .types
            .iter()
            .enumerate()
            .filter(|&(i, _)| i == 0 || egraph.lookup(KilnLang::Proj(i, [class])).is_some())
            .map(|(_, t)| t.clone())
            .collect();
        self.kernel(key.op(), &inputs, &outputs).seconds
    }

    /// The modelled seconds of running `graph` (every node once).
    pub fn graph_cost(&self, graph: &Graph) -> f64 {
        let constant: Vec<bool> = {
            let mut c: Vec<bool> = graph
                .values()
                .iter()
                .map(|v| matches!(v.def, ValueDef::Const(_)))
                .collect();
            for n in graph.nodes() {
                let k = !n.inputs.is_empty() && n.inputs.iter().all(|v| c[v.0 as usize]);
                for o in &n.outputs {
                    c[o.0 as usize] = k;
                }
            }
            c
        };
        graph
            .nodes()
            .iter()
            .filter(|n| n.inputs.is_empty() || !n.inputs.iter().all(|v| constant[v.0 as usize]))
            .map(|n| {
                let ty = |v: &kiln_ir::ValueId| graph.value(*v).ty.clone();
                let inputs: Vec<TensorType> = n.inputs.iter().map(ty).collect();
                let outputs: Vec<TensorType> = n.outputs.iter().map(ty).collect();
                self.kernel(&n.op, &inputs, &outputs).seconds
            })
            .sum()
    }
}

/// The roofline model as an egg [`CostFunction`] (tree cost: a shared operand is
/// counted once per use). Use [`crate::extract_dag`] for DAG cost.
pub struct RooflineCost<'a> {
    /// The e-graph whose e-nodes are priced (for operand and result types).
    pub egraph: &'a KilnEGraph,
    /// The model.
    pub model: &'a CostModel,
}

impl CostFunction<KilnLang> for RooflineCost<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &KilnLang, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = match self.egraph.lookup(enode.clone()) {
            Some(class) => self.model.enode_cost(self.egraph, class, enode),
            None => 0.0,
        };
        enode.children().iter().fold(own, |acc, &c| acc + costs(c))
    }
}
