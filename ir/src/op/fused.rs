//! Fused regions: several ops computed by one kernel.
//!
//! A [`FusedOp`] is a small straight-line program of steps over the node's inputs.
//! Its value is the last step's. It is what the optimizer's region rules build and
//! what backends turn into one loop nest: intermediates stay in registers, only the
//! region's inputs and its output cross memory.
//!
//! **Legality** (checked by type inference, so an illegal region never exists in a
//! graph): a region has at most one *anchor* step (a matmul, a convolution, a
//! reduction, a softmax or a norm); every other step is elementwise. Steps before the anchor form
//! its *prologue* and compute values shaped like the anchor's first operand (only
//! anchors that read their operand in one pass accept a prologue: reductions,
//! softmax and norms, not matmuls, whose operands are re-read per output tile) and
//! broadcast into it.
//! Steps after it form the *epilogue* and compute values that broadcast into the
//! region's output (a norm's per-row statistics, then the full-size rows). Without
//! an anchor every step broadcasts into the output. Every step is
//! used by a later one, every input by some step.

use crate::error::OpError;
use serde::{Deserialize, Serialize};

use super::{InferInputs, Op, OpFamily};
use crate::TensorType;

/// Most steps in one region: keeps kernels (and the e-graph's region e-nodes) small.
pub const MAX_FUSED_STEPS: usize = 32;

/// An operand of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FusedArg {
    /// The region's input `i`.
    Input(usize),
    /// The value of step `j` (an earlier step).
    Step(usize),
}

/// One step of a region: an op applied to inputs and earlier steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedStep {
    /// The op (single-output; elementwise or the region's anchor).
    pub op: Op,
    /// Its operands.
    pub args: Vec<FusedArg>,
}

/// A fused region (see the module documentation for what is legal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Fused")]
pub struct FusedOp {
    /// The steps in evaluation order; the region's value is the last one's.
    pub steps: Vec<FusedStep>,
}

/// How an op can take part in a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedRole {
    /// Elementwise (with broadcasting): may appear any number of times.
    Elementwise,
    /// The region's one anchor; `prologue` when elementwise steps may feed it.
    Anchor {
        /// The anchor accepts an elementwise prologue on its first operand.
        prologue: bool,
    },
}

impl FusedOp {
    /// The region's anchor step, if it has one.
    pub fn anchor(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.op.is_anchor())
    }

    /// How many inputs the region reads (one more than the largest input index).
    pub fn arity(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.args)
            .filter_map(|a| match a {
                FusedArg::Input(i) => Some(i + 1),
                FusedArg::Step(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// A short readable form: `MatMul→Add→Gelu`.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.steps.iter().map(|s| s.op.name()).collect();
        names.join("→")
    }

    /// The type of every step's value for these input types, checking legality.
    pub fn step_types(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        if self.steps.is_empty() {
            return Err(OpError::value("a fused region needs at least one step"));
        }
        if self.steps.len() > MAX_FUSED_STEPS {
            return Err(OpError::value(format!(
                "{} steps (at most {MAX_FUSED_STEPS})",
                self.steps.len()
            )));
        }
        let mut used_inputs = vec![false; inputs.len()];
        let mut used_steps = vec![false; self.steps.len()];
        let mut anchor = None;
        let mut types: Vec<TensorType> = Vec::with_capacity(self.steps.len());
        for (j, step) in self.steps.iter().enumerate() {
            let role = step.op.fused_role().ok_or_else(|| {
                OpError::value(format!("step {j}: {} cannot be fused", step.op.name()))
            })?;
            let mut arg_types = Vec::with_capacity(step.args.len());
            let mut arg_consts = Vec::with_capacity(step.args.len());
            for a in &step.args {
                match *a {
                    FusedArg::Input(i) => {
                        arg_types.push(inputs.ty(i)?.clone());
                        arg_consts.push(inputs.constant(i));
                        used_inputs[i] = true;
                    }
                    FusedArg::Step(k) if k < j => {
                        arg_types.push(types[k].clone());
                        arg_consts.push(None);
                        used_steps[k] = true;
                    }
                    FusedArg::Step(k) => {
                        return Err(OpError::value(format!(
                            "step {j} reads step {k}, which is not earlier"
                        )))
                    }
                }
            }
            if let FusedRole::Anchor { prologue } = role {
                if anchor.is_some() {
                    return Err(OpError::value(format!(
                        "step {j}: a region has at most one anchor"
                    )));
                }
                anchor = Some(j);
                let reads_step = step.args.iter().any(|a| matches!(a, FusedArg::Step(_)));
                if reads_step && !prologue {
                    return Err(OpError::value(format!(
                        "step {j}: {} takes no elementwise prologue",
                        step.op.name()
                    )));
                }
                if step
                    .args
                    .iter()
                    .skip(1)
                    .any(|a| matches!(a, FusedArg::Step(_)))
                {
                    return Err(OpError::shape(format!(
                        "step {j}: only the anchor's first operand may come from a step"
                    )));
                }
            }
            let out = step.op.infer(&InferInputs {
                types: &arg_types,
                consts: &arg_consts,
            })?;
            if out.len() != 1 {
                return Err(OpError::shape(format!(
                    "step {j}: {} has several outputs",
                    step.op.name()
                )));
            }
            types.push(out.into_iter().next().expect("one output"));
        }
        if let Some(i) = used_inputs.iter().position(|u| !u) {
            return Err(OpError::value(format!("input {i} is not used by any step")));
        }
        if let Some(j) = used_steps[..self.steps.len() - 1].iter().position(|u| !u) {
            return Err(OpError::value(format!(
                "step {j} is not used by a later step"
            )));
        }
        // One loop nest per side of the anchor: every step's value broadcasts into
        // the anchor's operand (prologue) or the region's output (epilogue), so a
        // backend computes it inside that nest (smaller values once per broadcast).
        let last = types.last().expect("non-empty").shape.clone();
        let prologue_shape = anchor.and_then(|a| match self.steps[a].args.first() {
            Some(FusedArg::Step(k)) => Some(types[*k].shape.clone()),
            _ => None,
        });
        for (j, t) in types.iter().enumerate() {
            let nest = match anchor {
                Some(a) if j < a => prologue_shape.as_ref().unwrap_or(&last),
                Some(a) if j == a => continue,
                _ => &last,
            };
            if crate::Shape::broadcast(&t.shape, nest).as_ref() != Some(nest) {
                return Err(OpError::shape(format!(
                    "step {j} ({}) computes {} but its loop nest is {}",
                    self.steps[j].op.name(),
                    t.shape,
                    nest
                )));
            }
        }
        Ok(types)
    }
}

impl OpFamily for FusedOp {
    fn name(&self) -> &'static str {
        "Fused"
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let mut types = self.step_types(inputs)?;
        Ok(vec![types.pop().expect("non-empty")])
    }
}
