//! ONNX control flow: `If` with a condition known at import time is inlined.

use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("If", convert_if);
}

fn convert_if(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let cond = cx.req(0)?;
    let Some(c) = cx.constant(cond).and_then(|t| t.scalar_f64()) else {
        return Err(cx.err("the condition is not known at import time (data-dependent control flow is not supported)"));
    };
    let branch = if c != 0.0 {
        "then_branch"
    } else {
        "else_branch"
    };
    let g = cx
        .attrs
        .graph(branch)
        .ok_or_else(|| cx.err(format!("missing attribute {branch}")))?;
    let outs = cx.inline_subgraph(g)?;
    cx.set_outputs(&outs);
    Ok(())
}
