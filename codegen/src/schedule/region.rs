//! Loop nests for elementwise ops, fused regions, reductions, softmax and norms.
//!
//! A region is evaluated at one position of a nest by binding each step's value
//! to a variable ([`StepEval`]). Without an anchor the nest is the output's
//! (dims merged where every operand allows). With a reduction, softmax or norm
//! anchor, the kernel runs one parallel loop over the *kept* positions (the
//! anchor operand's dims that are not reduced) and, inside, passes over the
//! reduced dims: statistics first (max and sum for softmax, the sum of squares
//! for RMS norm, the accumulator for a reduction), then the normalized values
//! with the epilogue. The prologue is recomputed in every pass (it is
//! elementwise and cheap; it never crosses memory).

use kiln_ir::op::{
    CompositeOp, FusedArg, FusedOp, FusedRole, FusedStep, InferInputs, NnOp, ReduceKind, ReduceOp,
};
use kiln_ir::{DType, Node, Op, TensorType, ValueId};

use super::elementwise::{compute, konst, load_compute, op_expr, to_storage};
use super::nest::{broadcast_strides, collapse, dense_strides, nest, offset};
use super::Scheduler;
use crate::kernel::build::{add, bin, fc, idx, un, var};
use crate::kernel::{Access, BinOp, Expr, Kernel, KernelError, LoopKind, Scalar, Stmt, UnOp};
use crate::program::BufferId;

/// Lowers a single elementwise node as a one-step region.
pub fn lower_elementwise(s: &mut Scheduler, node: &Node) -> Result<bool, KernelError> {
    if node.outputs.len() != 1 {
        return Ok(false);
    }
    let f = single_step(node);
    lower_fused(s, node, &f)
}

/// Lowers a convolution node as a one-step region (its bias, if any, is the
/// epilogue).
pub fn lower_conv(s: &mut Scheduler, node: &Node) -> Result<bool, KernelError> {
    if node.outputs.len() != 1 {
        return Ok(false);
    }
    let f = single_step(node);
    lower_fused(s, node, &f)
}

/// Lowers a reduction or composite (softmax, log-softmax, RMS norm, layer norm)
/// node as a region with that op as its anchor.
pub fn lower_row_op(s: &mut Scheduler, node: &Node) -> Result<bool, KernelError> {
    match &node.op {
        Op::Composite(CompositeOp::LayerNorm { axis, epsilon }) => {
            super::region::layer_norm(s, node, *axis, *epsilon)
        }
        Op::Reduce(ReduceOp::Reduce { .. })
        | Op::Composite(
            CompositeOp::Softmax { .. }
            | CompositeOp::LogSoftmax { .. }
            | CompositeOp::RmsNorm { .. },
        ) if node.outputs.len() == 1 => {
            let f = single_step(node);
            lower_fused(s, node, &f)
        }
        _ => Ok(false),
    }
}

fn single_step(node: &Node) -> FusedOp {
    FusedOp {
        steps: vec![FusedStep {
            op: node.op.clone(),
            args: (0..node.inputs.len()).map(FusedArg::Input).collect(),
        }],
    }
}

/// Lowers a fused region node (or a one-step region made of a plain node).
pub fn lower_fused(s: &mut Scheduler, node: &Node, f: &FusedOp) -> Result<bool, KernelError> {
    if node.outputs.len() != 1 {
        return Ok(false);
    }
    let types: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&i| s.graph.value(i).ty.clone())
        .collect();
    let consts: Vec<Option<&kiln_ir::Tensor>> =
        node.inputs.iter().map(|&i| s.graph.constant(i)).collect();
    let step_types = if f.steps.len() == 1 {
        match f.steps[0].op.infer(&InferInputs {
            types: &types,
            consts: &consts,
        }) {
            Ok(t) => t,
            Err(_) => return Ok(false),
        }
    } else {
        match f.step_types(&InferInputs {
            types: &types,
            consts: &consts,
        }) {
            Ok(t) => t,
            Err(_) => return Ok(false),
        }
    };
    let Some(step_types) = step_types
        .iter()
        .map(|t| t.shape.as_known().map(|sh| (t.dtype, sh)))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(false);
    };
    let anchor = f
        .steps
        .iter()
        .position(|st| matches!(FusedRole::of(&st.op), Some(FusedRole::Anchor { .. })));
    let ctx = Region {
        node,
        steps: &f.steps,
        step_types,
        inputs: node.inputs.clone(),
        input_types: node
            .inputs
            .iter()
            .map(|&i| (s.graph.value(i).ty.dtype, s.shape(i)))
            .collect(),
    };
    match anchor {
        None => ctx.elementwise(s),
        Some(a) => match &f.steps[a].op {
            Op::Nn(NnOp::MatMul | NnOp::Conv { .. }) => ctx.matmul_epilogue(s, a),
            Op::Reduce(ReduceOp::Reduce { .. })
            | Op::Composite(
                CompositeOp::Softmax { .. }
                | CompositeOp::LogSoftmax { .. }
                | CompositeOp::RmsNorm { .. },
            ) => ctx.row(s, a),
            _ => Ok(false),
        },
    }
}

/// What a pass over the reduced dims does with the anchor operand's value at
/// one position: (kernel, statements, value, position).
type PassBody<'a> = dyn FnMut(&mut Kernel, &mut Vec<Stmt>, Expr, &[Expr]) + 'a;

/// A region being lowered.
struct Region<'a> {
    node: &'a Node,
    steps: &'a [FusedStep],
    /// Dtype and shape of each step's value.
    step_types: Vec<(DType, Vec<usize>)>,
    /// The IR values of the region's inputs.
    inputs: Vec<ValueId>,
    /// Dtype and shape of each region input.
    input_types: Vec<(DType, Vec<usize>)>,
}

/// How one region input is read at a nest position: its kernel buffer, and for
/// each use mode (plain, or a batch-norm parameter indexed by channel) its strides
/// over the nest's dims.
struct Reader<'a> {
    /// Kernel buffer of each region input.
    bufs: Vec<usize>,
    /// Shape of each region input.
    shapes: Vec<Vec<usize>>,
    /// Dtype of each region input.
    dtypes: Vec<DType>,
    /// Dims of the nest positions are given in.
    nest: &'a [usize],
}

impl Reader<'_> {
    fn strides(&self, input: usize, channel: bool) -> Vec<i64> {
        let shape = &self.shapes[input];
        if channel && shape.len() == 1 && self.nest.len() >= 2 {
            // A batch-norm parameter `[C]` follows axis 1 of its `[N, C, ...]`
            // operand (the nest's last `rank` dims; here the whole nest).
            let mut st = vec![0i64; self.nest.len()];
            if shape[0] != 1 {
                st[1] = 1;
            }
            return st;
        }
        broadcast_strides(shape, self.nest)
    }

    fn load(&self, input: usize, channel: bool, pos: &[Expr]) -> Expr {
        let st = self.strides(input, channel);
        load_compute(
            self.bufs[input],
            offset(pos, &st, idx(0)),
            self.dtypes[input],
        )
    }
}

/// Evaluates steps at one position, binding each value to a variable.
struct StepEval<'r> {
    region: &'r Region<'r>,
    /// The value of each step evaluated so far at this position.
    vals: Vec<Option<Expr>>,
}

impl<'r> StepEval<'r> {
    fn new(region: &'r Region<'r>) -> Self {
        StepEval {
            region,
            vals: vec![None; region.steps.len()],
        }
    }

    /// Binds steps `range` (all elementwise) at `pos`, loading inputs with `load`.
    /// `None` when a step has no kernel expression.
    fn eval(
        &mut self,
        k: &mut Kernel,
        out: &mut Vec<Stmt>,
        range: std::ops::Range<usize>,
        load: &dyn Fn(usize, bool) -> Expr,
    ) -> Option<()> {
        for j in range {
            let step = &self.region.steps[j];
            let channel = matches!(step.op, Op::Nn(NnOp::BatchNorm { .. }));
            let mut args = Vec::new();
            let mut dtypes = Vec::new();
            for (ai, a) in step.args.iter().enumerate() {
                match *a {
                    FusedArg::Input(i) => {
                        args.push(load(i, channel && ai > 0));
                        dtypes.push(self.region.input_dtype(i));
                    }
                    FusedArg::Step(p) => {
                        args.push(self.vals[p].clone()?);
                        dtypes.push(self.region.step_types[p].0);
                    }
                }
            }
            let out_dt = self.region.step_types[j].0;
            let e = op_expr(&step.op, args, &dtypes, out_dt)?;
            let v = k.var(compute(out_dt));
            out.push(Stmt::Let { var: v, value: e });
            self.vals[j] = Some(var(v));
        }
        Some(())
    }
}

impl Region<'_> {
    fn input_dtype(&self, i: usize) -> DType {
        self.input_types[i].0
    }

    fn out_type(&self) -> &(DType, Vec<usize>) {
        self.step_types.last().expect("non-empty")
    }

    /// Adds one read-only kernel buffer per region input; returns the kernel
    /// buffers and the program buffers to pass.
    fn input_buffers(&self, s: &mut Scheduler, k: &mut Kernel) -> (Vec<usize>, Vec<BufferId>) {
        self.used_input_buffers(s, k, &vec![true; self.inputs.len()])
    }

    /// Like [`Region::input_buffers`] for the inputs marked in `used` only (the
    /// others get the id `usize::MAX`, never read): an epilogue must not hold on
    /// to the operands its GEMM consumed, or their producers stay alive.
    fn used_input_buffers(
        &self,
        s: &mut Scheduler,
        k: &mut Kernel,
        used: &[bool],
    ) -> (Vec<usize>, Vec<BufferId>) {
        let mut kb = Vec::new();
        let mut pb = Vec::new();
        for (i, &v) in self.inputs.iter().enumerate() {
            if !used[i] {
                kb.push(usize::MAX);
                continue;
            }
            let (dt, shape) = &self.input_types[i];
            kb.push(k.buffer(
                s.graph.value(v).name.clone(),
                Scalar::of(*dt),
                shape.iter().product(),
                Access::Read,
            ));
            pb.push(s.buf(v));
        }
        (kb, pb)
    }

    fn reader<'n>(&self, bufs: Vec<usize>, nest: &'n [usize]) -> Reader<'n> {
        Reader {
            bufs,
            shapes: self.input_types.iter().map(|t| t.1.clone()).collect(),
            dtypes: self.input_types.iter().map(|t| t.0).collect(),
            nest,
        }
    }

    /// No anchor: one nest over the output, dims merged where every access allows.
    fn elementwise(&self, s: &mut Scheduler) -> Result<bool, KernelError> {
        let (out_dt, out_shape) = self.out_type().clone();
        let mut k = Kernel::new(format!("ew_{}", self.node.name));
        let (in_bufs, mut args) = self.input_buffers(s, &mut k);
        let out_buf = k.buffer(
            s.graph.value(self.node.outputs[0]).name.clone(),
            Scalar::of(out_dt),
            out_shape.iter().product(),
            Access::Write,
        );
        args.push(s.buf(self.node.outputs[0]));
        let reader = self.reader(in_bufs, &out_shape);
        // Every access pattern (input × channel mode) and the output's, merged.
        let mut patterns: Vec<(usize, bool)> = Vec::new();
        for st in self.steps {
            let channel = matches!(st.op, Op::Nn(NnOp::BatchNorm { .. }));
            for (ai, a) in st.args.iter().enumerate() {
                if let FusedArg::Input(i) = *a {
                    let p = (i, channel && ai > 0);
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
            }
        }
        let mut strides: Vec<Vec<i64>> = vec![dense_strides(&out_shape)];
        strides.extend(patterns.iter().map(|&(i, c)| reader.strides(i, c)));
        let (extents, merged) = collapse(&out_shape, &strides);
        let mut failed = false;
        let body = nest(&mut k, &extents, true, |k, vars| {
            let mut stmts = Vec::new();
            let mut eval = StepEval::new(self);
            let load = |i: usize, c: bool| {
                let p = patterns
                    .iter()
                    .position(|&q| q == (i, c))
                    .expect("collected");
                load_compute(
                    reader.bufs[i],
                    offset(vars, &merged[p + 1], idx(0)),
                    reader.dtypes[i],
                )
            };
            if eval
                .eval(k, &mut stmts, 0..self.steps.len(), &load)
                .is_none()
            {
                failed = true;
                return stmts;
            }
            store_result(
                &eval,
                &mut stmts,
                out_buf,
                offset(vars, &merged[0], idx(0)),
                out_dt,
            );
            stmts
        });
        finish(s, k, body, failed, args)
    }

    /// A matmul anchor: the GEMM writes the product, then one kernel applies the
    /// epilogue in place (or from a scratch buffer when the output differs in
    /// dtype from the product).
    fn matmul_epilogue(&self, s: &mut Scheduler, a: usize) -> Result<bool, KernelError> {
        let anchor = &self.steps[a];
        let (FusedArg::Input(x), FusedArg::Input(w)) = (anchor.args[0], anchor.args[1]) else {
            return Ok(false);
        };
        let (out_dt, out_shape) = self.out_type().clone();
        let (mm_dt, mm_shape) = self.step_types[a].clone();
        if out_shape != mm_shape {
            return Ok(false);
        }
        let out = s.buf(self.node.outputs[0]);
        let product = if mm_dt == out_dt {
            out
        } else {
            s.scratch(
                &format!("{}.product", self.node.name),
                mm_dt,
                mm_shape.clone(),
            )
        };
        let (xv, wv) = (self.inputs[x], self.inputs[w]);
        let bias = match anchor.args.get(2) {
            Some(FusedArg::Input(b)) => Some(*b),
            Some(FusedArg::Step(_)) => return Ok(false),
            None => None,
        };
        let emitted = match &anchor.op {
            Op::Nn(NnOp::Conv { .. }) => {
                super::conv::emit_conv(s, &anchor.op, xv, wv, product, mm_dt, &mm_shape)?
            }
            _ => bias.is_none() && super::matmul::emit_gemm(s, xv, wv, product, mm_dt, &mm_shape),
        };
        if !emitted {
            return Ok(false);
        }
        if a + 1 == self.steps.len() && product == out && bias.is_none() {
            return Ok(true);
        }
        let mut k = Kernel::new(format!("epi_{}", self.node.name));
        let mut used = vec![false; self.inputs.len()];
        for st in &self.steps[a + 1..] {
            for arg in &st.args {
                if let FusedArg::Input(i) = arg {
                    used[*i] = true;
                }
            }
        }
        if let Some(b) = bias {
            used[b] = true;
        }
        let (in_bufs, mut args) = self.used_input_buffers(s, &mut k, &used);
        let numel: usize = out_shape.iter().product();
        let (prod_buf, out_buf) = if product == out {
            let b = k.buffer("out", Scalar::of(out_dt), numel, Access::ReadWrite);
            args.push(out);
            (b, b)
        } else {
            let p = k.buffer("product", Scalar::of(mm_dt), numel, Access::Read);
            let o = k.buffer("out", Scalar::of(out_dt), numel, Access::Write);
            args.push(product);
            args.push(out);
            (p, o)
        };
        let reader = self.reader(in_bufs, &out_shape);
        let dense = dense_strides(&out_shape);
        let mut failed = false;
        let body = nest(&mut k, &out_shape, true, |k, pos| {
            let mut stmts = Vec::new();
            let mut eval = StepEval::new(self);
            let at = offset(pos, &dense, idx(0));
            let pv = k.var(compute(mm_dt));
            let mut product = load_compute(prod_buf, at.clone(), mm_dt);
            if let Some(b) = bias {
                // A convolution's bias is per output channel (dim 1).
                let bv = load_compute(reader.bufs[b], pos[1].clone(), mm_dt);
                product = bin(BinOp::Add, product, bv);
            }
            stmts.push(Stmt::Let {
                var: pv,
                value: product,
            });
            eval.vals[a] = Some(var(pv));
            let load = |i: usize, c: bool| reader.load(i, c, pos);
            if eval
                .eval(k, &mut stmts, a + 1..self.steps.len(), &load)
                .is_none()
            {
                failed = true;
                return stmts;
            }
            store_result(&eval, &mut stmts, out_buf, at, out_dt);
            stmts
        });
        finish(s, k, body, failed, args)
    }

    /// A reduction, softmax or RMS-norm anchor: a parallel loop over kept
    /// positions, passes over the reduced dims inside.
    fn row(&self, s: &mut Scheduler, a: usize) -> Result<bool, KernelError> {
        let anchor = &self.steps[a];
        let x_shape = match anchor.args[0] {
            FusedArg::Input(i) => self.input_types[i].1.clone(),
            FusedArg::Step(p) => self.step_types[p].1.clone(),
        };
        let x_dt = match anchor.args[0] {
            FusedArg::Input(i) => self.input_types[i].0,
            FusedArg::Step(p) => self.step_types[p].0,
        };
        let cs = compute(x_dt);
        if !cs.is_float() {
            return Ok(false);
        }
        let rank = x_shape.len();
        let reduced: Vec<usize> = match &anchor.op {
            Op::Composite(CompositeOp::Softmax { axis } | CompositeOp::LogSoftmax { axis }) => {
                vec![*axis]
            }
            Op::Composite(CompositeOp::RmsNorm { axis, .. }) => (*axis..rank).collect(),
            Op::Reduce(ReduceOp::Reduce { axes, .. }) => axes.clone(),
            _ => return Ok(false),
        };
        if reduced.is_empty() || reduced.iter().any(|&d| d >= rank || x_shape[d] == 0) {
            return Ok(false);
        }
        let (out_dt, out_shape) = self.out_type().clone();
        let anchor_shape = self.step_types[a].1.clone();
        if anchor_shape != out_shape {
            return Ok(false);
        }
        let kept: Vec<usize> = (0..rank).filter(|d| !reduced.contains(d)).collect();
        let kept_ext: Vec<usize> = kept.iter().map(|&d| x_shape[d]).collect();
        let red_ext: Vec<usize> = reduced.iter().map(|&d| x_shape[d]).collect();
        let n_rows: usize = kept_ext.iter().product();
        let row_len: usize = red_ext.iter().product();
        let reducing = matches!(anchor.op, Op::Reduce(_));

        let mut k = Kernel::new(format!("row_{}", self.node.name));
        let (in_bufs, mut args) = self.input_buffers(s, &mut k);
        // A bare softmax stores its exponentials and scales them in place
        // (one exp per element instead of two).
        let in_place_softmax = matches!(anchor.op, Op::Composite(CompositeOp::Softmax { .. }))
            && a + 1 == self.steps.len()
            && Scalar::of(out_dt) == cs;
        let out_buf = k.buffer(
            s.graph.value(self.node.outputs[0]).name.clone(),
            Scalar::of(out_dt),
            out_shape.iter().product(),
            if in_place_softmax {
                Access::ReadWrite
            } else {
                Access::Write
            },
        );
        args.push(s.buf(self.node.outputs[0]));
        let x_reader = self.reader(in_bufs.clone(), &x_shape);
        let out_reader = self.reader(in_bufs, &out_shape);

        let o = k.var(Scalar::I64);
        let mut body = Vec::new();
        // Kept indices from the flat row number.
        let mut kept_idx = Vec::new();
        let mut inner = 1i64;
        for (j, &e) in kept_ext.iter().enumerate().rev() {
            let v = k.var(Scalar::I64);
            let q = bin(BinOp::Div, var(o), idx(inner));
            let value = if j == 0 {
                q
            } else {
                bin(BinOp::Rem, q, idx(e as i64))
            };
            body.push(Stmt::Let { var: v, value });
            kept_idx.push((kept[j], var(v)));
            inner *= e as i64;
        }
        // The prologue and anchor operand at a position given by reduced loop vars.
        let x_pos = |red_vars: &[Expr]| -> Vec<Expr> {
            let mut pos = vec![idx(0); rank];
            for (d, e) in &kept_idx {
                pos[*d] = e.clone();
            }
            for (j, &d) in reduced.iter().enumerate() {
                pos[d] = red_vars[j].clone();
            }
            pos
        };
        let mut failed = false;
        // Emits a pass over the reduced dims; `f` gets the anchor operand's value.
        let mut pass = |k: &mut Kernel, f: &mut PassBody| -> Vec<Stmt> {
            nest(k, &red_ext, false, |k, rv| {
                let pos = x_pos(rv);
                let mut stmts = Vec::new();
                let mut eval = StepEval::new(self);
                let load = |i: usize, c: bool| x_reader.load(i, c, &pos);
                let xv = match anchor.args[0] {
                    FusedArg::Input(i) => load(i, false),
                    FusedArg::Step(p) => {
                        if eval.eval(k, &mut stmts, 0..p + 1, &load).is_none() {
                            failed = true;
                            return stmts;
                        }
                        eval.vals[p].clone().expect("evaluated")
                    }
                };
                let xvar = k.var(cs);
                stmts.push(Stmt::Let {
                    var: xvar,
                    value: xv,
                });
                f(k, &mut stmts, var(xvar), &pos);
                stmts
            })
        };
        let n = fc(row_len as f64, cs);
        let epilogue = |k: &mut Kernel,
                        stmts: &mut Vec<Stmt>,
                        y: Expr,
                        pos: &[Expr],
                        store_at: Expr|
         -> bool {
            let mut eval = StepEval::new(self);
            let yv = k.var(compute(self.step_types[a].0));
            stmts.push(Stmt::Let { var: yv, value: y });
            eval.vals[a] = Some(var(yv));
            let load = |i: usize, c: bool| out_reader.load(i, c, pos);
            if eval
                .eval(k, stmts, a + 1..self.steps.len(), &load)
                .is_none()
            {
                return false;
            }
            store_result(&eval, stmts, out_buf, store_at, out_dt);
            true
        };
        let anchor_arg = |j: usize, pos: &[Expr]| -> Option<Expr> {
            match anchor.args.get(j)? {
                FusedArg::Input(i) => Some(x_reader.load(*i, false, pos)),
                FusedArg::Step(_) => None,
            }
        };
        let out_dense = dense_strides(&out_shape);
        match &anchor.op {
            Op::Composite(CompositeOp::Softmax { .. } | CompositeOp::LogSoftmax { .. }) => {
                let log = matches!(anchor.op, Op::Composite(CompositeOp::LogSoftmax { .. }));
                let m = k.var(cs);
                body.push(Stmt::Decl {
                    var: m,
                    init: fc(f64::NEG_INFINITY, cs),
                });
                body.extend(pass(&mut k, &mut |_, st, x, _| {
                    st.push(Stmt::Assign {
                        var: m,
                        value: bin(BinOp::Max, var(m), x),
                    });
                }));
                let sum = k.var(cs);
                body.push(Stmt::Decl {
                    var: sum,
                    init: fc(0.0, cs),
                });
                body.extend(pass(&mut k, &mut |k, st, x, pos| {
                    let e = un(UnOp::Exp, bin(BinOp::Sub, x, var(m)));
                    if in_place_softmax {
                        let ev = k.var(cs);
                        st.push(Stmt::Let { var: ev, value: e });
                        st.push(Stmt::Store {
                            buf: out_buf,
                            index: offset(pos, &out_dense, idx(0)),
                            value: var(ev),
                        });
                        st.push(Stmt::Assign {
                            var: sum,
                            value: bin(BinOp::Add, var(sum), var(ev)),
                        });
                    } else {
                        st.push(Stmt::Assign {
                            var: sum,
                            value: bin(BinOp::Add, var(sum), e),
                        });
                    }
                }));
                let scale = k.var(cs);
                body.push(Stmt::Let {
                    var: scale,
                    value: if log {
                        add_f(var(m), un(UnOp::Log, var(sum)))
                    } else {
                        bin(BinOp::Div, fc(1.0, cs), var(sum))
                    },
                });
                let mut ok = true;
                if in_place_softmax {
                    body.extend(nest(&mut k, &red_ext, false, |_, rv| {
                        let at = offset(&x_pos(rv), &out_dense, idx(0));
                        vec![Stmt::Store {
                            buf: out_buf,
                            index: at.clone(),
                            value: bin(BinOp::Mul, load_compute(out_buf, at, out_dt), var(scale)),
                        }]
                    }));
                } else {
                    body.extend(pass(&mut k, &mut |k, st, x, pos| {
                        let y = if log {
                            bin(BinOp::Sub, x, var(scale))
                        } else {
                            bin(
                                BinOp::Mul,
                                un(UnOp::Exp, bin(BinOp::Sub, x, var(m))),
                                var(scale),
                            )
                        };
                        ok &= epilogue(k, st, y, pos, offset(pos, &out_dense, idx(0)));
                    }));
                }
                failed |= !ok;
            }
            Op::Composite(CompositeOp::RmsNorm { epsilon, .. }) => {
                let ss = k.var(cs);
                body.push(Stmt::Decl {
                    var: ss,
                    init: fc(0.0, cs),
                });
                body.extend(pass(&mut k, &mut |_, st, x, _| {
                    st.push(Stmt::Assign {
                        var: ss,
                        value: bin(BinOp::Add, var(ss), bin(BinOp::Mul, x.clone(), x)),
                    });
                }));
                let inv = k.var(cs);
                body.push(Stmt::Let {
                    var: inv,
                    value: bin(
                        BinOp::Div,
                        fc(1.0, cs),
                        un(
                            UnOp::Sqrt,
                            add_f(bin(BinOp::Div, var(ss), n.clone()), fc(*epsilon as f64, cs)),
                        ),
                    ),
                });
                let mut ok = true;
                body.extend(pass(&mut k, &mut |k, st, x, pos| {
                    let Some(scale) = anchor_arg(1, pos) else {
                        ok = false;
                        return;
                    };
                    let y = bin(BinOp::Mul, bin(BinOp::Mul, x, var(inv)), scale);
                    ok &= epilogue(k, st, y, pos, offset(pos, &out_dense, idx(0)));
                }));
                failed |= !ok;
            }
            Op::Reduce(ReduceOp::Reduce { kind, .. }) => {
                let kind = *kind;
                let acc = k.var(cs);
                let mut lse_max = None;
                if kind == ReduceKind::LogSumExp {
                    let m = k.var(cs);
                    body.push(Stmt::Decl {
                        var: m,
                        init: fc(f64::NEG_INFINITY, cs),
                    });
                    body.extend(pass(&mut k, &mut |_, st, x, _| {
                        st.push(Stmt::Assign {
                            var: m,
                            value: bin(BinOp::Max, var(m), x),
                        });
                    }));
                    // An infinite maximum: subtract 0 instead (ln Σ e^−∞ = −∞ and
                    // a row holding +∞ sums to +∞, where ∞ − ∞ would be NaN).
                    let safe = k.var(cs);
                    body.push(Stmt::Let {
                        var: safe,
                        value: crate::kernel::build::select(
                            bin(BinOp::Eq, un(UnOp::Abs, var(m)), fc(f64::INFINITY, cs)),
                            fc(0.0, cs),
                            var(m),
                        ),
                    });
                    lse_max = Some(safe);
                }
                let init = match kind {
                    ReduceKind::Max => f64::NEG_INFINITY,
                    ReduceKind::Min => f64::INFINITY,
                    ReduceKind::Prod => 1.0,
                    _ => 0.0,
                };
                body.push(Stmt::Decl {
                    var: acc,
                    init: fc(init, cs),
                });
                body.extend(pass(&mut k, &mut |_, st, x, _| {
                    let value = match kind {
                        ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => {
                            bin(BinOp::Add, var(acc), x)
                        }
                        ReduceKind::L1 => bin(BinOp::Add, var(acc), un(UnOp::Abs, x)),
                        ReduceKind::L2 | ReduceKind::SumSquare => {
                            bin(BinOp::Add, var(acc), bin(BinOp::Mul, x.clone(), x))
                        }
                        ReduceKind::Max => bin(BinOp::Max, var(acc), x),
                        ReduceKind::Min => bin(BinOp::Min, var(acc), x),
                        ReduceKind::Prod => bin(BinOp::Mul, var(acc), x),
                        ReduceKind::LogSumExp => bin(
                            BinOp::Add,
                            var(acc),
                            un(UnOp::Exp, bin(BinOp::Sub, x, var(lse_max.expect("set")))),
                        ),
                    };
                    st.push(Stmt::Assign { var: acc, value });
                }));
                let y = match kind {
                    ReduceKind::Mean => bin(BinOp::Div, var(acc), n.clone()),
                    ReduceKind::L2 => un(UnOp::Sqrt, var(acc)),
                    ReduceKind::LogSum => un(UnOp::Log, var(acc)),
                    ReduceKind::LogSumExp => {
                        add_f(var(lse_max.expect("set")), un(UnOp::Log, var(acc)))
                    }
                    _ => var(acc),
                };
                // The output position: kept indices (size-1 reduced dims when kept).
                let out_pos: Vec<Expr> = if out_shape.len() == rank {
                    let mut p = vec![idx(0); rank];
                    for (d, e) in &kept_idx {
                        p[*d] = e.clone();
                    }
                    p
                } else {
                    let mut ki = kept_idx.clone();
                    ki.sort_by_key(|(d, _)| *d);
                    ki.into_iter().map(|(_, e)| e).collect()
                };
                if out_pos.len() != out_shape.len() {
                    return Ok(false);
                }
                let mut st = Vec::new();
                failed |= !epilogue(&mut k, &mut st, y, &out_pos, var(o));
                body.extend(st);
            }
            _ => return Ok(false),
        }
        let _ = reducing;
        if failed {
            return Ok(false);
        }
        k.body = vec![Stmt::For {
            var: o,
            extent: n_rows as i64,
            kind: LoopKind::Parallel,
            body,
        }];
        s.launch(k, args)?;
        Ok(true)
    }
}

/// Stores the region's value (its last step, bound by `eval`) at `index`.
fn store_result(eval: &StepEval, stmts: &mut Vec<Stmt>, buf: usize, index: Expr, dt: DType) {
    let value = eval
        .vals
        .last()
        .cloned()
        .flatten()
        .expect("every step evaluated");
    stmts.push(Stmt::Store {
        buf,
        index,
        value: to_storage(value, dt),
    });
}

/// Launches `k` with `body`, unless a step had no kernel expression (`failed`:
/// the node then runs on the host).
fn finish(
    s: &mut Scheduler,
    mut k: Kernel,
    body: Vec<Stmt>,
    failed: bool,
    args: Vec<BufferId>,
) -> Result<bool, KernelError> {
    if failed {
        return Ok(false);
    }
    k.body = body;
    s.launch(k, args)?;
    Ok(true)
}

fn add_f(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Add, a, b)
}

/// Layer norm `[x, scale, bias?]` over axes `axis..`, with its optional mean and
/// inverse-standard-deviation outputs: two passes (mean, then the centred sum of
/// squares, for accuracy), then the normalized rows.
pub fn layer_norm(
    s: &mut Scheduler,
    node: &Node,
    axis: usize,
    epsilon: f32,
) -> Result<bool, KernelError> {
    let x = node.inputs[0];
    let x_shape = s.shape(x);
    let x_dt = s.graph.value(x).ty.dtype;
    let cs = compute(x_dt);
    let rank = x_shape.len();
    if !cs.is_float() || axis >= rank || node.inputs.len() < 2 {
        return Ok(false);
    }
    let n_rows: usize = x_shape[..axis].iter().product();
    let row_len: usize = x_shape[axis..].iter().product();
    if row_len == 0 {
        return Ok(false);
    }
    let mut k = Kernel::new(format!("ln_{}", node.name));
    let mut args = Vec::new();
    let mut in_bufs = Vec::new();
    let mut shapes = Vec::new();
    let mut dtypes = Vec::new();
    for &v in &node.inputs {
        let dt = s.graph.value(v).ty.dtype;
        let sh = s.shape(v);
        in_bufs.push(k.buffer(
            s.graph.value(v).name.clone(),
            Scalar::of(dt),
            sh.iter().product(),
            Access::Read,
        ));
        args.push(s.buf(v));
        shapes.push(sh);
        dtypes.push(dt);
    }
    let mut outs = Vec::new();
    for &o in &node.outputs {
        let dt = s.graph.value(o).ty.dtype;
        let sh = s.shape(o);
        outs.push((
            k.buffer(
                s.graph.value(o).name.clone(),
                Scalar::of(dt),
                sh.iter().product(),
                Access::Write,
            ),
            dt,
        ));
        args.push(s.buf(o));
    }
    let row_shape = x_shape[axis..].to_vec();
    let param = |i: usize, r: &Expr| -> Expr {
        // scale and bias broadcast to x; rows repeat, so index them by the row part
        // when they span only the normalized axes (the usual case), else fully.
        let st = broadcast_strides(&shapes[i], &x_shape);
        let _ = &row_shape;
        if st[..axis].iter().all(|&z| z == 0) {
            let rs = broadcast_strides(&shapes[i], &x_shape)[axis..].to_vec();
            let dense_row = dense_strides(&row_shape);
            // Decompose the flat row offset `r` into row dims only when needed.
            if rs == dense_row {
                return load_compute(in_bufs[i], r.clone(), dtypes[i]);
            }
            let mut off = idx(0);
            let mut inner = 1i64;
            for d in (0..row_shape.len()).rev() {
                let q = bin(BinOp::Div, r.clone(), idx(inner));
                let id = bin(BinOp::Rem, q, idx(row_shape[d] as i64));
                if rs[d] != 0 {
                    off = add(off, crate::kernel::build::mul(id, idx(rs[d])));
                }
                inner *= row_shape[d] as i64;
            }
            return load_compute(in_bufs[i], off, dtypes[i]);
        }
        load_compute(in_bufs[i], r.clone(), dtypes[i]) // unreachable in practice
    };
    let full_params = (1..node.inputs.len()).all(|i| {
        broadcast_strides(&shapes[i], &x_shape)[..axis]
            .iter()
            .all(|&z| z == 0)
    });
    if !full_params {
        return Ok(false);
    }
    let o = k.var(Scalar::I64);
    let base = k.var(Scalar::I64);
    let mut body = vec![Stmt::Let {
        var: base,
        value: crate::kernel::build::mul(var(o), idx(row_len as i64)),
    }];
    let n = fc(row_len as f64, cs);
    let sum = k.var(cs);
    body.push(Stmt::Decl {
        var: sum,
        init: fc(0.0, cs),
    });
    body.extend(nest(&mut k, &[row_len], false, |_, r| {
        vec![Stmt::Assign {
            var: sum,
            value: bin(
                BinOp::Add,
                var(sum),
                load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt),
            ),
        }]
    }));
    let mean = k.var(cs);
    body.push(Stmt::Let {
        var: mean,
        value: bin(BinOp::Div, var(sum), n.clone()),
    });
    let sq = k.var(cs);
    body.push(Stmt::Decl {
        var: sq,
        init: fc(0.0, cs),
    });
    body.extend(nest(&mut k, &[row_len], false, |k, r| {
        let d = k.var(cs);
        vec![
            Stmt::Let {
                var: d,
                value: bin(
                    BinOp::Sub,
                    load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt),
                    var(mean),
                ),
            },
            Stmt::Assign {
                var: sq,
                value: bin(BinOp::Add, var(sq), bin(BinOp::Mul, var(d), var(d))),
            },
        ]
    }));
    let inv = k.var(cs);
    body.push(Stmt::Let {
        var: inv,
        value: bin(
            BinOp::Div,
            fc(1.0, cs),
            un(
                UnOp::Sqrt,
                bin(
                    BinOp::Add,
                    bin(BinOp::Div, var(sq), n),
                    fc(epsilon as f64, cs),
                ),
            ),
        ),
    });
    let (y_buf, y_dt) = outs[0];
    body.extend(nest(&mut k, &[row_len], false, |_, r| {
        let xv = load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt);
        let mut y = bin(
            BinOp::Mul,
            bin(BinOp::Mul, bin(BinOp::Sub, xv, var(mean)), var(inv)),
            param(1, &r[0]),
        );
        if node.inputs.len() > 2 {
            y = bin(BinOp::Add, y, param(2, &r[0]));
        }
        vec![Stmt::Store {
            buf: y_buf,
            index: add(var(base), r[0].clone()),
            value: to_storage(y, y_dt),
        }]
    }));
    for (j, stat) in [(1usize, mean), (2, inv)] {
        if let Some(&(b, dt)) = outs.get(j) {
            let v = crate::kernel::build::cast(Scalar::of(dt), var(stat));
            let v = if Scalar::of(dt) == cs { var(stat) } else { v };
            body.push(Stmt::Store {
                buf: b,
                index: var(o),
                value: v,
            });
        }
    }
    k.body = vec![Stmt::For {
        var: o,
        extent: n_rows as i64,
        kind: LoopKind::Parallel,
        body,
    }];
    s.launch(k, args)?;
    let _ = konst;
    Ok(true)
}
