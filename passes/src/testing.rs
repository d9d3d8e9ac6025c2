//! Helpers for differential tests of passes and backends: random inputs for a
//! graph (symbolic dims bound to chosen sizes, integer inputs as small ids) and an
//! element-wise comparison of two graphs' outputs.

use kiln_ir::{DType, Dim, Graph, Shape, Tensor, TensorType};
use rand::rngs::StdRng;
use rand::Rng;

/// Default size of a symbolic first axis (the batch).
pub const DEFAULT_BATCH: usize = 2;
/// Default size of every other symbolic axis (the sequence).
pub const DEFAULT_SEQ: usize = 5;
/// Default bound of integer inputs: ids, masks and token types are drawn from
/// `0..DEFAULT_ID_RANGE`, valid for any vocabulary and as a 0/1 mask.
pub const DEFAULT_ID_RANGE: i64 = 2;
/// Float inputs are drawn uniformly from `-FLOAT_RANGE..FLOAT_RANGE`.
pub const FLOAT_RANGE: f32 = 1.0;

/// How [`random_inputs`] binds symbolic dims and draws integer inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputDims {
    /// Size of a symbolic first axis.
    pub batch: usize,
    /// Size of every other symbolic axis.
    pub seq: usize,
    /// Integer inputs are drawn from `0..ids` (keep it at most the vocabulary size).
    pub ids: i64,
}

impl Default for InputDims {
    /// [`DEFAULT_BATCH`], [`DEFAULT_SEQ`] and [`DEFAULT_ID_RANGE`].
    fn default() -> Self {
        InputDims::batch_seq(DEFAULT_BATCH, DEFAULT_SEQ)
    }
}

impl InputDims {
    /// A symbolic first axis is `batch`, other symbolic axes `seq`; default ids.
    pub const fn batch_seq(batch: usize, seq: usize) -> Self {
        InputDims {
            batch,
            seq,
            ids: DEFAULT_ID_RANGE,
        }
    }

    /// Every symbolic axis is `size`; default ids.
    pub const fn uniform(size: usize) -> Self {
        InputDims::batch_seq(size, size)
    }

    /// The same binding with integer inputs drawn from `0..ids`.
    pub const fn with_ids(self, ids: i64) -> Self {
        InputDims { ids, ..self }
    }

    /// The concrete dims of `shape`: known dims as they are, symbolic ones bound.
    pub fn bind(&self, shape: &Shape) -> Vec<usize> {
        shape
            .0
            .iter()
            .enumerate()
            .map(|(k, d)| match d {
                Dim::Known(n) => *n,
                _ if k == 0 => self.batch,
                _ => self.seq,
            })
            .collect()
    }
}

/// A random tensor of type `ty`: `i64` elements from `0..dims.ids`, anything else
/// uniform in ±[`FLOAT_RANGE`] (drawn as `f32`) and cast to `ty.dtype`.
pub fn random_tensor(ty: &TensorType, rng: &mut StdRng, dims: &InputDims) -> Tensor {
    let shape = dims.bind(&ty.shape);
    let n: usize = shape.iter().product();
    match ty.dtype {
        DType::I64 => Tensor::from_vec(
            shape,
            (0..n).map(|_| rng.random_range(0..dims.ids)).collect(),
        ),
        dtype => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| rng.random_range(-FLOAT_RANGE..FLOAT_RANGE))
                .collect(),
        )
        .cast(dtype),
    }
}

/// A random tensor for each input of `g`, by name, in input order (see
/// [`random_tensor`]).
pub fn random_inputs(g: &Graph, rng: &mut StdRng, dims: &InputDims) -> Vec<(String, Tensor)> {
    g.inputs
        .iter()
        .map(|&i| {
            let v = g.value(i);
            (v.name.clone(), random_tensor(&v.ty, rng, dims))
        })
        .collect()
}

/// Asserts `got` matches `want` output by output: as many outputs, equal shapes and
/// every element within `|a − b| <= tol · (1 + |a|)` of the wanted `a` (NaN matches
/// NaN). `name` (the model, and e.g. the seed) leads every failure message.
pub fn assert_close(name: &str, want: &[Tensor], got: &[Tensor], tol: f64) {
    assert_eq!(want.len(), got.len(), "{name}: number of outputs");
    for (k, (w, o)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.shape(), o.shape(), "{name}: output {k} shape");
        for (i, (a, b)) in w.to_f64_vec().iter().zip(o.to_f64_vec()).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + a.abs()) || (a.is_nan() && b.is_nan()),
                "{name}: output {k} element {i}: {a} vs {b}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::TensorType;
    use rand::SeedableRng;

    #[test]
    fn symbolic_dims_are_bound_and_ids_stay_in_range() {
        let mut g = Graph::new("g");
        let shape = Shape(vec![Dim::Sym("b".into()), 3.into(), Dim::Sym("s".into())]);
        g.add_input("ids", TensorType::new(DType::I64, shape.clone()));
        g.add_input("x", TensorType::new(DType::F16, shape));
        let dims = InputDims::batch_seq(2, 5).with_ids(7);
        let inputs = random_inputs(&g, &mut StdRng::seed_from_u64(1), &dims);
        assert_eq!(inputs[0].1.shape(), &[2, 3, 5]);
        assert!(inputs[0]
            .1
            .to_i64_vec()
            .iter()
            .all(|&i| (0..7).contains(&i)));
        assert_eq!(inputs[1].1.dtype(), DType::F16);
        assert!(inputs[1].1.to_f64_vec().iter().all(|x| x.abs() <= 1.0));
    }

    #[test]
    fn close_values_and_nans_pass_and_others_fail() {
        let t = |v: Vec<f32>| Tensor::from_vec(vec![v.len()], v);
        let want = [t(vec![1.0, f32::NAN])];
        assert_close("m", &want, &[t(vec![1.00001, f32::NAN])], 1e-4);
        let far =
            std::panic::catch_unwind(|| assert_close("m", &want, &[t(vec![1.1, f32::NAN])], 1e-4));
        assert!(far.is_err());
    }
}
