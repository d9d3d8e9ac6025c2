//! General `Einsum`: any number of operands, repeated letters (diagonals),
//! ellipsis with broadcasting, implicit output — one f64 loop over the index space.

use crate::error::OpError;
use rayon::prelude::*;

use crate::op::parse_einsum;
use crate::Tensor;

/// Evaluates `equation` on `inputs`.
pub(super) fn einsum(equation: &str, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let first = inputs
        .first()
        .ok_or(OpError::shape("Einsum without operands"))?;
    let dtype = first.dtype();
    if inputs.iter().any(|t| t.dtype() != dtype) || dtype == crate::DType::Bool {
        return Err(OpError::dtype(
            "Einsum operands must share one numeric dtype",
        ));
    }
    let ranks: Vec<usize> = inputs.iter().map(|t| t.rank()).collect();
    let (ins, out) = parse_einsum(equation, &ranks)?;
    // Size of every letter (size-1 dims broadcast).
    let mut letters: Vec<char> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    for (t, subs) in inputs.iter().zip(&ins) {
        for (&c, &d) in subs.iter().zip(t.shape()) {
            match letters.iter().position(|&l| l == c) {
                None => {
                    letters.push(c);
                    sizes.push(d);
                }
                Some(i) if sizes[i] == 1 => sizes[i] = d,
                Some(i) if d != 1 && sizes[i] != d => {
                    return Err(OpError::shape(format!(
                        "Einsum `{equation}`: letter `{c}` is {} and {d}",
                        sizes[i]
                    )))
                }
                Some(_) => {}
            }
        }
    }
    for c in &out {
        if !letters.contains(c) {
            return Err(OpError::shape(format!(
                "Einsum `{equation}`: output letter `{c}` not in inputs"
            )));
        }
    }
    // Loop order: output letters, then the summed ones.
    let mut order: Vec<usize> = out
        .iter()
        .map(|c| letters.iter().position(|l| l == c).expect("checked"))
        .collect();
    let summed: Vec<usize> = (0..letters.len()).filter(|i| !order.contains(i)).collect();
    order.extend(&summed);
    // Stride of each operand along each loop letter (0 for absent/broadcast letters).
    let op_strides: Vec<Vec<usize>> = inputs
        .iter()
        .zip(&ins)
        .map(|(t, subs)| {
            let sh = t.shape();
            let mut st = vec![0usize; sh.len()];
            for i in (0..sh.len()).rev() {
                st[i] = if i + 1 < sh.len() {
                    st[i + 1] * sh[i + 1]
                } else {
                    1
                };
            }
            order
                .iter()
                .map(|&li| {
                    subs.iter()
                        .enumerate()
                        .filter(|&(j, &c)| c == letters[li] && sh[j] != 1)
                        .map(|(j, _)| st[j])
                        .sum()
                })
                .collect()
        })
        .collect();
    let data: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64_vec()).collect();
    let out_dims: Vec<usize> = order[..out.len()].iter().map(|&i| sizes[i]).collect();
    let sum_dims: Vec<usize> = summed.iter().map(|&i| sizes[i]).collect();
    let n_out: usize = out_dims.iter().product();
    let n_sum: usize = sum_dims.iter().product();
    let no = out.len();
    let y: Vec<f64> = (0..n_out)
        .into_par_iter()
        .map(|flat| {
            // Base offsets of the output index.
            let mut base = vec![0usize; inputs.len()];
            let mut rem = flat;
            for ax in (0..no).rev() {
                let i = rem % out_dims[ax];
                rem /= out_dims[ax];
                for (b, st) in base.iter_mut().zip(&op_strides) {
                    *b += i * st[ax];
                }
            }
            let mut acc = 0.0;
            let mut idx = vec![0usize; sum_dims.len()];
            let mut offs = base.clone();
            for _ in 0..n_sum {
                acc += offs.iter().zip(&data).map(|(&o, d)| d[o]).product::<f64>();
                for ax in (0..sum_dims.len()).rev() {
                    idx[ax] += 1;
                    for (o, st) in offs.iter_mut().zip(&op_strides) {
                        *o += st[no + ax];
                    }
                    if idx[ax] < sum_dims[ax] {
                        break;
                    }
                    for (o, st) in offs.iter_mut().zip(&op_strides) {
                        *o -= st[no + ax] * sum_dims[ax];
                    }
                    idx[ax] = 0;
                }
            }
            acc
        })
        .collect();
    Ok(Tensor::from_f64(dtype, out_dims, &y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn diagonal_trace_transpose_and_matmul() {
        assert_eq!(
            einsum("ii", &[&t(&[3, 3])]).unwrap().to_f64_vec(),
            vec![12.0]
        );
        assert_eq!(
            einsum("ii->i", &[&t(&[3, 3])]).unwrap().to_f64_vec(),
            vec![0.0, 4.0, 8.0]
        );
        assert_eq!(
            einsum("ij->ji", &[&t(&[2, 3])]).unwrap().to_f64_vec(),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let r = einsum("...ij,...jk", &[&t(&[2, 2, 3]), &t(&[3, 1])]).unwrap();
        assert_eq!(r.shape(), &[2, 2, 1]);
        assert_eq!(r.to_f64_vec(), vec![5.0, 14.0, 23.0, 32.0]);
    }
}
