//! numpy `matmul`: broadcast batch dims, 1-D operands promoted then squeezed.

use crate::error::OpError;
use rayon::prelude::*;

use super::gemm::{gemm, PackedB};
use crate::interp::broadcast::{broadcast_shapes, BroadcastIndex};
use crate::{with_dtype, Element, Tensor};

/// Shapes of a matmul after 1-D promotion: (batch of a, batch of b, m, k, n).
struct Plan {
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> Result<Plan, OpError> {
    if a.is_empty() || b.is_empty() {
        return Err(OpError::shape("matmul of a scalar"));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    if k != k2 {
        return Err(OpError::shape(format!(
            "matmul inner dims differ: {a:?} × {b:?}"
        )));
    }
    let a_batch = a2[..ra - 2].to_vec();
    let b_batch = b2[..rb - 2].to_vec();
    let batch = broadcast_shapes(&[&a_batch, &b_batch]).ok_or_else(|| {
        OpError::shape(format!("matmul batch dims do not broadcast: {a:?} × {b:?}"))
    })?;
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    Ok(Plan {
        a_batch,
        b_batch,
        batch,
        m,
        k,
        n,
        out_shape,
    })
}

/// `a · b` with numpy `matmul` semantics, for every numeric dtype (floats through
/// f64 accumulation, integers with wrapping i64 arithmetic).
pub(super) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::dtype(format!(
            "matmul of {} and {}",
            a.dtype(),
            b.dtype()
        )));
    }
    let p = plan(a.shape(), b.shape())?;
    let ia = BroadcastIndex::new(&p.a_batch, &p.batch).indices();
    let ib = BroadcastIndex::new(&p.b_batch, &p.batch).indices();
    let (m, k, n) = (p.m, p.k, p.n);
    if a.dtype().is_float() {
        let av = a.to_f64_vec();
        let bv = b.to_f64_vec();
        let nb_b = p.b_batch.iter().product::<usize>();
        let packed: Vec<PackedB> = (0..nb_b)
            .into_par_iter()
            .map(|j| PackedB::from_row_major(k, n, &bv[j * k * n..(j + 1) * k * n]))
            .collect();
        let parts: Vec<Vec<f64>> = ia
            .par_iter()
            .zip(ib.par_iter())
            .map(|(&i, &j)| gemm(&av[i * m * k..(i + 1) * m * k], m, &packed[j]))
            .collect();
        let out: Vec<f64> = parts.concat();
        Ok(Tensor::from_f64(a.dtype(), p.out_shape, &out))
    } else if a.dtype().is_int() {
        let av = a.to_i64_vec();
        let bv = b.to_i64_vec();
        let mut out = vec![0i64; ia.len() * m * n];
        for (t, (&i, &j)) in ia.iter().zip(&ib).enumerate() {
            let (ao, bo, oo) = (i * m * k, j * k * n, t * m * n);
            for r in 0..m {
                for p2 in 0..k {
                    let x = av[ao + r * k + p2];
                    for c in 0..n {
                        out[oo + r * n + c] =
                            out[oo + r * n + c].wrapping_add(x.wrapping_mul(bv[bo + p2 * n + c]));
                    }
                }
            }
        }
        Ok(with_dtype!(a.dtype(), T => Tensor::from_vec::<T>(
            p.out_shape,
            out.into_iter().map(T::from_i64).collect()
        )))
    } else {
        Err(OpError::dtype(format!("matmul of {}", a.dtype())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn promotes_and_broadcasts() {
        // 1-D · 1-D is a scalar.
        let r = matmul(&f(&[3]), &f(&[3])).unwrap();
        assert_eq!(r.shape(), &[] as &[usize]);
        assert_eq!(r.to_f64_vec(), vec![5.0]);
        // [2,1,2,3] · [4,3,2] → [2,4,2,2].
        let r = matmul(&f(&[2, 1, 2, 3]), &f(&[4, 3, 2])).unwrap();
        assert_eq!(r.shape(), &[2, 4, 2, 2]);
        // 2-D · 1-D squeezes the last axis.
        let r = matmul(&f(&[2, 3]), &f(&[3])).unwrap();
        assert_eq!(r.to_f64_vec(), vec![5.0, 14.0]);
        assert!(matmul(&f(&[2, 3]), &f(&[2, 3])).is_err());
    }

    #[test]
    fn integers_wrap() {
        let a = Tensor::from_vec(vec![1, 2], vec![i32::MAX, 1]);
        let b = Tensor::from_vec(vec![2, 1], vec![2i32, 3]);
        let r = matmul(&a, &b).unwrap();
        assert_eq!(
            r.to_vec::<i32>(),
            vec![i32::MAX.wrapping_mul(2).wrapping_add(3)]
        );
    }
}
