//! Control flow: each subgraph of an `If`, `Loop` or `Scan` is specialized to
//! the shapes it sees at this node and scheduled as a program of its own
//! ([`ControlStep`]); the runtime runs it per branch or iteration. A subgraph
//! that cannot be compiled (a data-dependent shape inside it) leaves the whole
//! node to the interpreter.

use kiln_ir::op::ControlOp;
use kiln_ir::{Graph, Node, Op};

use super::{host, schedule_with, Lowered, NotLowered, ScheduleError, Scheduler};
use crate::program::{ControlStep, HostReason, Program, Step};
use crate::specialize::specialize;

/// One shape per value.
type Shapes = Vec<Vec<usize>>;

/// Lowers a control-flow node to a [`Step::Control`].
pub(super) fn lower(s: &mut Scheduler, node: &Node, op: &ControlOp) -> Lowered {
    let shapes: Vec<Vec<usize>> = node.inputs.iter().map(|&v| s.shape(v)).collect();
    let outputs: Vec<Vec<usize>> = node.outputs.iter().map(|&v| s.shape(v)).collect();
    let lead = op.leading_operands();
    let captures = &shapes[lead..];
    // The shapes each subgraph's inputs take, and the shapes its outputs must
    // have for the runtime to bind them (per iteration, a slice of a result).
    let mut plans: Vec<(Shapes, Shapes)> = Vec::new();
    match op {
        ControlOp::If {
            then_branch,
            else_branch,
        } => {
            for _ in [then_branch, else_branch] {
                plans.push((captures.to_vec(), outputs.clone()));
            }
        }
        ControlOp::Loop {
            body,
            has_trip_count,
            has_cond,
            num_carried,
        } => {
            let g = body.graph();
            let single = |i: usize| g.value(g.inputs[i]).ty.shape.as_known().unwrap_or_default();
            let k = *has_trip_count as usize + *has_cond as usize;
            let carried = &shapes[k..k + num_carried];
            let mut ins = vec![single(0), single(1)];
            ins.extend(carried.iter().cloned());
            ins.extend(captures.iter().cloned());
            let mut outs = vec![single(1)];
            outs.extend(carried.iter().cloned());
            outs.extend(
                outputs
                    .get(*num_carried..)
                    .unwrap_or_default()
                    .iter()
                    .map(|o| o[1..].to_vec()),
            );
            plans.push((ins, outs));
        }
        ControlOp::Scan {
            num_state,
            num_scan_inputs,
            input_axes,
            output_axes,
            ..
        } => {
            let mut ins: Vec<Vec<usize>> = shapes[..*num_state].to_vec();
            for (j, &axis) in input_axes.iter().enumerate().take(*num_scan_inputs) {
                let mut d = shapes[num_state + j].clone();
                let Ok(a) = axis_of(axis, d.len()) else {
                    return host(HostReason::Inference("scan input axis out of range".into()));
                };
                d.remove(a);
                ins.push(d);
            }
            ins.extend(captures.iter().cloned());
            let mut outs: Vec<Vec<usize>> = shapes[..*num_state].to_vec();
            for (o, &axis) in outputs
                .get(*num_state..)
                .unwrap_or_default()
                .iter()
                .zip(output_axes)
            {
                let mut d = o.clone();
                let Ok(a) = axis_of(axis, d.len()) else {
                    return host(HostReason::Inference(
                        "scan output axis out of range".into(),
                    ));
                };
                d.remove(a);
                outs.push(d);
            }
            plans.push((ins, outs));
        }
    }
    let mut specialized: Vec<Graph> = Vec::new();
    let mut bodies: Vec<Program> = Vec::new();
    let step = s.prog.steps.len();
    for (i, (sub, (ins, outs))) in op.subgraphs().into_iter().zip(plans).enumerate() {
        let g = sub.graph();
        let spec = match specialize(g, &ins) {
            Ok(spec) => spec,
            Err(e) => return host(HostReason::Subgraph(e.to_string())),
        };
        for (k, (&o, want)) in spec.outputs.iter().zip(&outs).enumerate() {
            let got = spec.value(o).ty.shape.as_known();
            if got.as_ref() != Some(want) {
                return host(HostReason::Subgraph(format!(
                    "output {k} of `{}` has shape {}, {want:?} expected (a shape that changes between iterations)",
                    g.name,
                    spec.value(o).ty.shape
                )));
            }
        }
        let mut prog = match schedule_with(&spec, s.options) {
            Ok(p) => p,
            Err(ScheduleError::Bug { source, .. }) => return Err(NotLowered::Bug(source)),
            Err(e) => return host(HostReason::Subgraph(e.to_string())),
        };
        prefix_kernels(&mut prog, &format!("c{step}b{i}_"));
        specialized.push(spec);
        bodies.push(prog);
    }
    let mut graphs = specialized.into_iter();
    let op = op
        .map_subgraphs(|_| Ok::<_, ()>(graphs.next().expect("one per subgraph")))
        .expect("infallible");
    let inputs = node.inputs.iter().map(|&v| s.buf(v)).collect();
    let outputs = node.outputs.iter().map(|&v| s.buf(v)).collect();
    s.prog.steps.push(Step::Control(ControlStep {
        node: node.name.clone(),
        op: Op::Control(op),
        inputs,
        outputs,
        bodies,
    }));
    Ok(())
}

/// `axis` (negative counts from the end) as an index into `rank` dims.
fn axis_of(axis: i64, rank: usize) -> Result<usize, ()> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank).ok_or(())
}

/// Prefixes the names of every kernel of `prog` and of its bodies, so kernels
/// of different subgraphs stay distinct symbols in one object.
fn prefix_kernels(prog: &mut Program, prefix: &str) {
    for k in &mut prog.kernels {
        k.name = format!("{prefix}{}", k.name);
    }
    for st in &mut prog.steps {
        if let Step::Control(c) = st {
            for b in &mut c.bodies {
                prefix_kernels(b, prefix);
            }
        }
    }
}
