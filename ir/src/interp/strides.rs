//! Row-major strides, the one place the interpreter computes them.

/// Row-major (C-order) strides of `shape`, in elements: the last dim is
/// contiguous, each earlier one steps over the product of the dims after it.
/// Saturating: only an empty tensor's dims can multiply past a `usize` (a zero dim
/// to the left of huge ones), and its strides are never used to address data.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::row_major_strides;

    #[test]
    fn strides_of_scalars_vectors_and_matrices() {
        assert_eq!(row_major_strides(&[]), Vec::<usize>::new());
        assert_eq!(row_major_strides(&[5]), [1]);
        assert_eq!(row_major_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(row_major_strides(&[2, 0, 4]), [0, 4, 1]);
        let huge = usize::MAX / 2;
        assert_eq!(row_major_strides(&[0, huge, huge]), [usize::MAX, huge, 1]);
    }
}
