//! Control steps: compiled subgraph programs run per branch or iteration over
//! the enclosing program's buffers.
//!
//! A body binds its inputs and outputs to pointers, not tensors: captures are
//! the enclosing buffers themselves, scan slices along axis 0 are offsets
//! into them, and loop-carried values alternate between the step's result
//! buffers and one scratch set (the body reads one set and writes the other),
//! so an iteration copies nothing it does not have to. Each body keeps a
//! pool of arenas, so iterations allocate nothing.

use std::sync::Mutex;

use kiln_codegen::program::{ControlStep, Program, ProgramBuffer};
use kiln_ir::op::{ControlOp, MAX_LOOP_ITERATIONS};
use kiln_ir::{DType, ErrorKind, Op};

use super::{AlignedBuf, CpuBackend};
use crate::backend::Backend;
use crate::plan::{Location, Plan};
use crate::RunError;

/// One compiled subgraph: its backend, memory plan and spare arenas.
pub(crate) struct Body {
    pub(super) backend: CpuBackend,
    plan: Plan,
    /// For each output memory of the plan, the program output written there.
    out_slot: Vec<usize>,
    arenas: Mutex<Vec<AlignedBuf>>,
}

/// What one execution of a body reuses between iterations.
struct Scratch {
    arena: AlignedBuf,
    table: Vec<*mut u8>,
}

impl Body {
    pub(super) fn new(backend: CpuBackend) -> Body {
        let prog = &backend.program;
        let plan = Plan::new(prog);
        let out_slot = plan
            .outputs
            .iter()
            .map(|&r| {
                prog.outputs
                    .iter()
                    .position(|&(_, b)| prog.root(b) == r)
                    .expect("every output memory holds an output")
            })
            .collect();
        Body {
            backend,
            plan,
            out_slot,
            arenas: Mutex::new(Vec::new()),
        }
    }

    fn program(&self) -> &Program {
        &self.backend.program
    }

    fn scratch(&self) -> Result<Scratch, RunError> {
        let arena = match self.arenas.lock().map(|mut a| a.pop()) {
            Ok(Some(a)) => a,
            _ => AlignedBuf::zeroed(self.plan.arena_bytes)?,
        };
        Ok(Scratch {
            arena,
            table: Vec::with_capacity(self.plan.locations.len()),
        })
    }

    fn give_back(&self, s: Scratch) {
        if let Ok(mut a) = self.arenas.lock() {
            a.push(s.arena);
        }
    }

    /// Runs the body once: input `i` is read at `ins[i]`, output `j` written
    /// at `outs[j]` (neither may overlap the other's bytes).
    fn run(&self, ins: &[*mut u8], outs: &[*mut u8], s: &mut Scratch) -> Result<(), RunError> {
        let prog = self.program();
        let base = s.arena.as_ptr();
        s.table.clear();
        for l in &self.plan.locations {
            s.table.push(match *l {
                // SAFETY: offsets are inside the arena (the plan sized it).
                Location::Arena(off) => unsafe { base.add(off) },
                Location::Input(i) => ins[i],
                Location::Const(c) => self.backend.constants[c].ptr(),
                Location::Output(k) => outs[self.out_slot[k]],
            });
        }
        for i in 0..prog.steps.len() {
            self.backend.launch(i, &s.table)?;
        }
        // Outputs not computed in place (an input or constant returned as is,
        // one buffer returned twice) are copied.
        for (j, &(_, b)) in prog.outputs.iter().enumerate() {
            let src = s.table[b];
            if src != outs[j] {
                // SAFETY: both address the buffer's bytes; `copy` allows overlap.
                unsafe { std::ptr::copy(src, outs[j], prog.buffers[b].bytes()) };
            }
        }
        Ok(())
    }
}

/// Whether the one-element condition at `p` (of `dtype`) holds.
fn truth(p: *const u8, dtype: DType) -> bool {
    // SAFETY: `p` addresses one element of `dtype`, aligned (a plan buffer).
    unsafe {
        match dtype {
            DType::Bool | DType::U8 | DType::I8 => *p != 0,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => {
                // Non-zero bits, except a half-precision -0.0.
                let v = *(p as *const u16);
                v & 0x7fff != 0 || (v != 0 && matches!(dtype, DType::I16 | DType::U16))
            }
            DType::I32 | DType::U32 => *(p as *const u32) != 0,
            DType::F32 => *(p as *const f32) != 0.0,
            DType::I64 | DType::U64 => *(p as *const u64) != 0,
            DType::F64 => *(p as *const f64) != 0.0,
            // Low-precision floats and sub-byte integers (one byte each):
            // decoded as the interpreter decodes them.
            _ => {
                let byte = bytes::Bytes::copy_from_slice(std::slice::from_raw_parts(p, 1));
                kiln_ir::Tensor::from_bytes(dtype, vec![], byte)
                    .ok()
                    .and_then(|t| t.scalar_f64())
                    .is_some_and(|v| v != 0.0)
            }
        }
    }
}

/// The one-element integer trip count at `p` (of `dtype`; the importer casts
/// ONNX's to i64, graphs built otherwise may use any integer type).
fn trip_count(p: *const u8, dtype: DType) -> i64 {
    // SAFETY: `p` addresses one element of `dtype`, aligned (a plan buffer).
    unsafe {
        match dtype {
            DType::I64 => *(p as *const i64),
            DType::U64 => (*(p as *const u64)).min(i64::MAX as u64) as i64,
            DType::I32 => *(p as *const i32) as i64,
            DType::U32 => *(p as *const u32) as i64,
            DType::I16 => *(p as *const i16) as i64,
            DType::U16 => *(p as *const u16) as i64,
            DType::I8 => *(p as *const i8) as i64,
            _ => *p as i64,
        }
    }
}

/// Where a loop's carried values (or a scan's states) live: the step's
/// results and one spare set, which iterations alternate between, and
/// scratch memory for every result the node does not list (ONNX lets
/// trailing outputs go; the body still writes them).
struct CarriedMemory {
    /// Carried value `j`'s result: the step's output, or scratch when unlisted.
    results: Vec<*mut u8>,
    /// The other set iterations write to.
    spares: Vec<*mut u8>,
    /// Scratch for the unlisted results after the carried ones, in order.
    unlisted: Vec<*mut u8>,
    /// Owns the spare and scratch memory the pointers address.
    _memory: Vec<AlignedBuf>,
}

impl CarriedMemory {
    /// Memory for carried values of `carried_bytes` and for the unlisted
    /// results after them, of `rest_bytes`.
    fn new(
        c: &ControlStep,
        ptrs: &[*mut u8],
        carried_bytes: &[usize],
        rest_bytes: &[usize],
    ) -> Result<CarriedMemory, RunError> {
        let mut memory = Vec::new();
        let mut scratch = |bytes: usize| -> Result<*mut u8, RunError> {
            let b = AlignedBuf::zeroed(bytes)?;
            let p = b.as_ptr();
            memory.push(b);
            Ok(p)
        };
        let spares = carried_bytes
            .iter()
            .map(|&b| scratch(b))
            .collect::<Result<_, _>>()?;
        let results = carried_bytes
            .iter()
            .enumerate()
            .map(|(j, &b)| match c.outputs.get(j) {
                Some(&o) => Ok(ptrs[o]),
                None => scratch(b),
            })
            .collect::<Result<_, _>>()?;
        let unlisted = rest_bytes
            .iter()
            .map(|&b| scratch(b))
            .collect::<Result<_, _>>()?;
        Ok(CarriedMemory {
            results,
            spares,
            unlisted,
            _memory: memory,
        })
    }
}

/// Runs a control step whose bodies are `bodies` over the enclosing
/// program's pointer table `ptrs`.
pub(super) fn run(
    parent: &Program,
    c: &ControlStep,
    bodies: &[Body],
    ptrs: &[*mut u8],
) -> Result<(), RunError> {
    let Op::Control(op) = &c.op else {
        return Err(RunError::Internal(
            "a control step without a control op".into(),
        ));
    };
    let fail = |kind: ErrorKind, message: String| RunError::Node {
        node: c.node.clone(),
        kind,
        message,
    };
    let input = |i: usize| ptrs[c.inputs[i]];
    let output = |i: usize| ptrs[c.outputs[i]];
    let lead = op.leading_operands();
    let captures: Vec<*mut u8> = (lead..c.inputs.len()).map(input).collect();
    match op {
        ControlOp::If { .. } => {
            let cond_dtype = parent.buffers[c.inputs[0]].dtype;
            let body = &bodies[if truth(input(0), cond_dtype) { 0 } else { 1 }];
            let outs: Vec<*mut u8> = (0..c.outputs.len()).map(output).collect();
            let mut s = body.scratch()?;
            let r = body.run(&captures, &outs, &mut s);
            body.give_back(s);
            r
        }
        ControlOp::Loop {
            has_trip_count,
            has_cond,
            num_carried,
            ..
        } => {
            let body = &bodies[0];
            let mut k = 0;
            let trips = if *has_trip_count {
                k += 1;
                Some(trip_count(input(0), parent.buffers[c.inputs[0]].dtype))
            } else {
                None
            };
            let mut cond = if *has_cond {
                k += 1;
                truth(input(k - 1), parent.buffers[c.inputs[k - 1]].dtype)
            } else {
                true
            };
            let n = *num_carried;
            let prog = body.program();
            let carried_bytes: Vec<usize> = (0..n)
                .map(|j| prog.buffers[prog.inputs[2 + j].1].bytes())
                .collect();
            // Results the node does not list (ONNX lets trailing ones go)
            // are written to scratch memory.
            let total_scans = prog.outputs.len() - 1 - n;
            let scans = c.outputs.len().saturating_sub(n).min(total_scans);
            let slice_bytes: Vec<usize> = (0..total_scans)
                .map(|j| prog.buffers[prog.outputs[1 + n + j].1].bytes())
                .collect();
            let iter = AlignedBuf::zeroed(8)?;
            let cond_in = AlignedBuf::zeroed(8)?;
            let cond_out = AlignedBuf::zeroed(8)?;
            // Iteration i reads `src` and writes `dst`; they alternate
            // between the step's results and the spare set.
            let memory = CarriedMemory::new(c, ptrs, &carried_bytes, &slice_bytes[scans..])?;
            let (results, spares, unbound_scans) =
                (&memory.results, &memory.spares, &memory.unlisted);
            let mut src: Vec<*mut u8> = (k..k + n).map(input).collect();
            let mut dst_is_results = true;
            let mut ins: Vec<*mut u8> = Vec::with_capacity(2 + n + captures.len());
            let mut outs: Vec<*mut u8> = Vec::with_capacity(1 + n + total_scans);
            let scan_base: Vec<*mut u8> = (n..n + scans).map(output).collect();
            let scan_capacity: Vec<usize> = (0..scans)
                .map(|j| parent.buffers[c.outputs[n + j]].bytes())
                .collect();
            let mut s = body.scratch()?;
            let mut i: i64 = 0;
            let result = (|| {
                while trips.is_none_or(|m| i < m) && cond {
                    if i as u64 >= MAX_LOOP_ITERATIONS {
                        return Err(fail(
                            ErrorKind::TooLarge,
                            format!("the loop ran {MAX_LOOP_ITERATIONS} iterations (MAX_LOOP_ITERATIONS) without ending"),
                        ));
                    }
                    let dst = if dst_is_results { results } else { spares };
                    // SAFETY: 8-byte scratch buffers.
                    unsafe {
                        *(iter.as_ptr() as *mut i64) = i;
                        *cond_in.as_ptr() = cond as u8;
                    }
                    ins.clear();
                    ins.push(iter.as_ptr());
                    ins.push(cond_in.as_ptr());
                    ins.extend(&src);
                    ins.extend(&captures);
                    outs.clear();
                    outs.push(cond_out.as_ptr());
                    outs.extend(dst);
                    for j in 0..scans {
                        let off = i as usize * slice_bytes[j];
                        if off + slice_bytes[j] > scan_capacity[j] {
                            return Err(fail(
                                ErrorKind::Shape,
                                format!("the loop ran more iterations than its scan output {j} has rows"),
                            ));
                        }
                        // SAFETY: within the result buffer (checked above).
                        outs.push(unsafe { scan_base[j].add(off) });
                    }
                    outs.extend(unbound_scans);
                    body.run(&ins, &outs, &mut s)?;
                    if *has_cond {
                        cond = truth(cond_out.as_ptr(), DType::Bool);
                    }
                    src.clear();
                    src.extend(dst);
                    dst_is_results = !dst_is_results;
                    i += 1;
                }
                Ok(())
            })();
            body.give_back(s);
            result?;
            for j in 0..scans {
                if i as usize * slice_bytes[j] != scan_capacity[j] {
                    return Err(fail(
                        ErrorKind::Shape,
                        format!(
                            "the loop ran {i} iterations but its scan output {j} was planned for {}",
                            scan_capacity[j] / slice_bytes[j].max(1)
                        ),
                    ));
                }
            }
            // The last values are in `src`: copy them to the results unless
            // they are there already.
            for j in 0..n {
                if src[j] != results[j] {
                    // SAFETY: distinct buffers of `carried_bytes[j]` bytes.
                    unsafe { std::ptr::copy(src[j], results[j], carried_bytes[j]) };
                }
            }
            Ok(())
        }
        ControlOp::Scan {
            num_state,
            num_scan_inputs,
            input_axes,
            input_reverse,
            output_axes,
            output_reverse,
            ..
        } => {
            let body = &bodies[0];
            let prog = body.program();
            let n = *num_state;
            let m = *num_scan_inputs;
            let state_bytes: Vec<usize> = (0..n)
                .map(|j| prog.buffers[prog.inputs[j].1].bytes())
                .collect();
            // Results the node does not list are written to scratch memory.
            let total_outs = prog.outputs.len() - n;
            let rest_bytes: Vec<usize> = (c.outputs.len().max(n) - n..total_outs)
                .map(|j| prog.buffers[prog.outputs[n + j].1].bytes())
                .collect();
            let memory = CarriedMemory::new(c, ptrs, &state_bytes, &rest_bytes)?;
            let (results, spares, unbound_outs) =
                (&memory.results, &memory.spares, &memory.unlisted);
            let mut src: Vec<*mut u8> = (0..n).map(input).collect();
            let mut dst_is_results = true;
            // Each scan input and output as (outer, length, inner bytes) around its axis.
            let in_geo: Vec<Geometry> = (0..m)
                .map(|j| Geometry::of(&parent.buffers[c.inputs[n + j]], input_axes[j]))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(ErrorKind::Shape, e))?;
            let outs_n = c.outputs.len().saturating_sub(n);
            let out_geo: Vec<Geometry> = (0..outs_n)
                .map(|j| Geometry::of(&parent.buffers[c.outputs[n + j]], output_axes[j]))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(ErrorKind::Shape, e))?;
            let length = in_geo.first().map_or(0, |g| g.len);
            // Slices that are not contiguous go through staging buffers.
            let in_stage: Vec<Option<AlignedBuf>> = in_geo
                .iter()
                .map(|g| {
                    (g.outer > 1)
                        .then(|| AlignedBuf::zeroed(g.outer * g.inner))
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            let out_stage: Vec<Option<AlignedBuf>> = out_geo
                .iter()
                .map(|g| {
                    (g.outer > 1)
                        .then(|| AlignedBuf::zeroed(g.outer * g.inner))
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            let mut ins: Vec<*mut u8> = Vec::with_capacity(n + m + captures.len());
            let mut outs: Vec<*mut u8> = Vec::with_capacity(n + outs_n);
            let mut s = body.scratch()?;
            let result = (|| {
                for t in 0..length {
                    let dst = if dst_is_results { results } else { spares };
                    ins.clear();
                    ins.extend(&src);
                    for j in 0..m {
                        let at = if input_reverse[j] { length - 1 - t } else { t };
                        let g = &in_geo[j];
                        ins.push(match &in_stage[j] {
                            // SAFETY: slice `at` of the input lies within it.
                            None => unsafe { input(n + j).add(at * g.inner) },
                            Some(stage) => {
                                g.gather(input(n + j), at, stage.as_ptr());
                                stage.as_ptr()
                            }
                        });
                    }
                    ins.extend(&captures);
                    outs.clear();
                    outs.extend(dst);
                    for j in 0..outs_n {
                        let at = if output_reverse[j] { length - 1 - t } else { t };
                        let g = &out_geo[j];
                        outs.push(match &out_stage[j] {
                            // SAFETY: slice `at` of the output lies within it.
                            None => unsafe { output(n + j).add(at * g.inner) },
                            Some(stage) => stage.as_ptr(),
                        });
                    }
                    outs.extend(unbound_outs);
                    body.run(&ins, &outs, &mut s)?;
                    for j in 0..outs_n {
                        if let Some(stage) = &out_stage[j] {
                            let at = if output_reverse[j] { length - 1 - t } else { t };
                            out_geo[j].scatter(stage.as_ptr(), at, output(n + j));
                        }
                    }
                    src.clear();
                    src.extend(dst);
                    dst_is_results = !dst_is_results;
                }
                Ok(())
            })();
            body.give_back(s);
            result?;
            for j in 0..n {
                if src[j] != results[j] {
                    // SAFETY: distinct buffers of `state_bytes[j]` bytes.
                    unsafe { std::ptr::copy(src[j], results[j], state_bytes[j]) };
                }
            }
            Ok(())
        }
    }
}

/// A tensor seen around one axis: `outer` blocks of `len` slices of `inner`
/// bytes (slice `t` of block `o` starts at `(o * len + t) * inner`).
struct Geometry {
    outer: usize,
    len: usize,
    inner: usize,
}

impl Geometry {
    fn of(b: &ProgramBuffer, axis: i64) -> Result<Geometry, String> {
        let rank = b.shape.len();
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        let a = usize::try_from(a)
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| format!("scan axis {axis} out of range for `{}`", b.name))?;
        Ok(Geometry {
            outer: b.shape[..a].iter().product(),
            len: b.shape[a],
            inner: b.shape[a + 1..].iter().product::<usize>() * b.dtype.size(),
        })
    }

    /// Copies slice `at` of the tensor at `src` into the dense `dst`.
    fn gather(&self, src: *const u8, at: usize, dst: *mut u8) {
        for o in 0..self.outer {
            // SAFETY: block `o`'s slice `at` lies within the tensor; `dst`
            // holds `outer * inner` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.add((o * self.len + at) * self.inner),
                    dst.add(o * self.inner),
                    self.inner,
                )
            };
        }
    }

    /// Copies the dense slice at `src` into slice `at` of the tensor at `dst`.
    fn scatter(&self, src: *const u8, at: usize, dst: *mut u8) {
        for o in 0..self.outer {
            // SAFETY: as in `gather`, the other way.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.add(o * self.inner),
                    dst.add((o * self.len + at) * self.inner),
                    self.inner,
                )
            };
        }
    }
}
