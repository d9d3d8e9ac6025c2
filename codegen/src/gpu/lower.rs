//! The GPU lowering of a CPU kernel: the specialized lowerings where they
//! apply, the general one otherwise.

use super::elementwise::lower_elementwise;
use super::from_cpu::from_cpu_kernel;
use super::rows::lower_rows;
use super::GpuKernel;
use crate::kernel::Kernel;

/// The GPU kernel computing what `k` computes, by the best lowering that
/// applies: a block per row for kernels with inner loops over a row
/// ([`super::rows`]), vectorized grid-stride loops for elementwise kernels
/// ([`super::elementwise`]), else one parallel iteration per thread
/// ([`super::from_cpu`]). Always correct: each specialized lowering proves its
/// conditions or declines (float sums of row kernels may be reassociated, see
/// [`super::rows`]).
pub fn lower_kernel(k: &Kernel) -> GpuKernel {
    lower_rows(k)
        .or_else(|| lower_elementwise(k))
        .unwrap_or_else(|| from_cpu_kernel(k))
}
