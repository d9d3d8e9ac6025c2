//! Reference evaluation of neural-network ops.
//!
//! Heavy ops (matmul, convolutions) go through one blocked, rayon-parallel f64
//! GEMM ([`gemm`]) so that whole CNNs run through the oracle in seconds.

use crate::error::OpError;
mod conv;
mod einsum;
mod gemm;
mod matmul;
mod norm;
mod pool;
mod resize;

use crate::op::NnOp;
use crate::Tensor;

use pool::PoolKind;

fn arg<'a>(inputs: &[&'a Tensor], i: usize) -> Result<&'a Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| OpError::value(format!("missing input {i}")))
}

/// Evaluates an nn-family op.
pub(super) fn eval(
    op: &NnOp,
    inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let one = |t: Tensor| vec![t];
    match op {
        NnOp::MatMul => matmul::matmul(arg(inputs, 0)?, arg(inputs, 1)?).map(one),
        NnOp::Conv(attrs) => conv::conv(
            arg(inputs, 0)?,
            arg(inputs, 1)?,
            inputs.get(2).copied(),
            attrs,
        )
        .map(one),
        NnOp::ConvTranspose {
            conv,
            output_padding,
            output_shape,
        } => conv::conv_transpose(
            arg(inputs, 0)?,
            arg(inputs, 1)?,
            inputs.get(2).copied(),
            conv,
            output_padding,
            output_shape.as_deref(),
        )
        .map(one),
        NnOp::MaxPool {
            window,
            storage_order,
        } => pool::pool(
            arg(inputs, 0)?,
            window,
            PoolKind::Max {
                col_major: *storage_order == 1,
            },
        ),
        NnOp::AveragePool {
            window,
            count_include_pad,
        } => pool::pool(
            arg(inputs, 0)?,
            window,
            PoolKind::Avg {
                count_include_pad: *count_include_pad,
            },
        ),
        NnOp::LpPool { window, p } => pool::pool(arg(inputs, 0)?, window, PoolKind::Lp(*p)),
        NnOp::BatchNorm { epsilon } => norm::batch_norm(inputs, *epsilon).map(one),
        NnOp::InstanceNorm { epsilon } => norm::instance_norm(inputs, *epsilon).map(one),
        NnOp::GroupNorm {
            epsilon,
            num_groups,
        } => norm::group_norm(inputs, *epsilon, *num_groups).map(one),
        NnOp::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => norm::lrn(arg(inputs, 0)?, *size, *alpha, *beta, *bias).map(one),
        NnOp::LpNormalization { axis, p } => {
            norm::lp_normalization(arg(inputs, 0)?, *axis, *p).map(one)
        }
        NnOp::MeanVarianceNormalization { axes } => {
            norm::mean_variance(arg(inputs, 0)?, axes).map(one)
        }
        NnOp::Resize(attrs) => resize::resize(
            arg(inputs, 0)?,
            arg(inputs, 1)?,
            inputs.get(2).copied(),
            attrs,
        )
        .map(one),
        NnOp::Einsum { equation } => einsum::einsum(equation, inputs).map(one),
    }
}
