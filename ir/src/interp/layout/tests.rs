//! Reference evaluation of layout ops on hand-checked cases.

use super::*;
use crate::op::{PadMode, ScatterReduction};
use crate::DType;
use shape::reshape_dims;

fn ev(op: LayoutOp, inputs: &[&Tensor]) -> Vec<Tensor> {
    eval(&op, inputs, 1).unwrap()
}

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec())
}

#[test]
fn unique_sorted_unsorted_and_axis() {
    let x = Tensor::from_vec(vec![6], vec![2.0f32, 1.0, f32::NAN, 1.0, f32::NAN, -0.0]);
    let out = eval(
        &LayoutOp::Unique {
            axis: None,
            sorted: true,
        },
        &[&x],
        4,
    )
    .unwrap();
    let y = out[0].to_vec::<f32>();
    assert_eq!(&y[..3], &[-0.0, 1.0, 2.0]);
    assert!(y[3].is_nan());
    assert_eq!(out[1].to_vec::<i64>(), vec![5, 1, 0, 2]);
    assert_eq!(out[2].to_vec::<i64>(), vec![2, 1, 3, 1, 3, 0]);
    assert_eq!(out[3].to_vec::<i64>(), vec![1, 2, 1, 2]);
    let x = Tensor::from_vec(vec![4], vec![3i64, 1, 3, 0]);
    let out = eval(
        &LayoutOp::Unique {
            axis: None,
            sorted: false,
        },
        &[&x],
        4,
    )
    .unwrap();
    assert_eq!(out[0].to_vec::<i64>(), vec![3, 1, 0]);
    assert_eq!(out[1].to_vec::<i64>(), vec![0, 1, 3]);
    assert_eq!(out[2].to_vec::<i64>(), vec![0, 1, 0, 2]);
    assert_eq!(out[3].to_vec::<i64>(), vec![2, 1, 1]);
    // Columns of [[1, 0, 1], [2, 5, 2]]: (1, 2) twice and (0, 5).
    let x = Tensor::from_vec(vec![2, 3], vec![1u8, 0, 1, 2, 5, 2]);
    let out = eval(
        &LayoutOp::Unique {
            axis: Some(1),
            sorted: true,
        },
        &[&x],
        4,
    )
    .unwrap();
    assert_eq!(out[0].shape(), &[2, 2]);
    assert_eq!(out[0].to_vec::<u8>(), vec![0, 1, 5, 2]);
    assert_eq!(out[2].to_vec::<i64>(), vec![1, 0, 1]);
}

#[test]
fn bitcast_reinterprets_bytes() {
    let x = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]);
    let y = &ev(LayoutOp::BitCast { to: DType::I32 }, &[&x])[0];
    assert_eq!(y.to_vec::<i32>(), vec![0x3f80_0000, 0xc000_0000u32 as i32]);
    let b = Tensor::from_vec(vec![1], vec![2u8]);
    assert!(eval(&LayoutOp::BitCast { to: DType::Bool }, &[&b], 1).is_err());
    assert!(eval(&LayoutOp::BitCast { to: DType::I64 }, &[&x], 1).is_err());
}

#[test]
fn slice_negative_step_and_clamping() {
    let x = Tensor::from_vec(vec![2, 5], (0..10).map(|v| v as f32).collect());
    let y = &ev(
        LayoutOp::Slice,
        &[&x, &ints(&[-1]), &ints(&[-100]), &ints(&[1]), &ints(&[-2])],
    )[0];
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(y.to_vec::<f32>(), vec![4., 2., 0., 9., 7., 5.]);
    let y = &ev(
        LayoutOp::Slice,
        &[
            &x,
            &ints(&[1, 1000]),
            &ints(&[1000, 1000]),
            &ints(&[0, 1]),
            &ints(&[1, 1]),
        ],
    )[0];
    assert_eq!(y.shape(), &[1, 0]);
}

#[test]
fn pad_modes() {
    let x = Tensor::from_vec(vec![3], vec![1i32, 2, 3]);
    let p = ints(&[2, 2]);
    let run = |mode| ev(LayoutOp::Pad { mode }, &[&x, &p])[0].to_vec::<i32>();
    assert_eq!(run(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
    assert_eq!(run(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
    assert_eq!(run(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
    assert_eq!(run(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
    let crop = ev(
        LayoutOp::Pad {
            mode: PadMode::Constant,
        },
        &[&x, &ints(&[-1, 1])],
    );
    assert_eq!(crop[0].to_vec::<i32>(), vec![2, 3, 0]);
}

#[test]
fn gather_rejects_out_of_range() {
    let x = Tensor::from_vec(vec![3], vec![1.0f32, 2., 3.]);
    let y = ev(LayoutOp::Gather { axis: 0 }, &[&x, &ints(&[-1, 0])]);
    assert_eq!(y[0].to_vec::<f32>(), vec![3., 1.]);
    assert!(eval(&LayoutOp::Gather { axis: 0 }, &[&x, &ints(&[3])], 1).is_err());
}

#[test]
fn scatter_elements_reduces() {
    let x = Tensor::from_vec(vec![1, 5], vec![1i64, 2, 3, 4, 5]);
    let i = Tensor::from_vec(vec![1, 2], vec![1i64, 1]);
    let u = Tensor::from_vec(vec![1, 2], vec![10i64, 20]);
    let y = ev(
        LayoutOp::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        &[&x, &i, &u],
    );
    assert_eq!(y[0].to_vec::<i64>(), vec![1, 32, 3, 4, 5]);
}

#[test]
fn gather_nd_with_batch_dims() {
    let x = Tensor::from_vec(vec![2, 2, 2], (0..8).collect());
    let i = Tensor::from_vec(vec![2, 1], vec![1i64, 0]);
    let y = ev(LayoutOp::GatherND { batch_dims: 1 }, &[&x, &i]);
    assert_eq!(y[0].shape(), &[2, 2]);
    assert_eq!(y[0].to_vec::<i32>(), vec![2, 3, 4, 5]);
}

#[test]
fn one_hot_and_depth_to_space() {
    let ind = Tensor::from_vec(vec![2], vec![1i64, -1]);
    let y = ev(
        LayoutOp::OneHot { axis: -1 },
        &[
            &ind,
            &Tensor::scalar(3i64),
            &Tensor::from_vec(vec![2], vec![0f32, 5.]),
        ],
    );
    assert_eq!(y[0].to_vec::<f32>(), vec![0., 5., 0., 0., 0., 5.]);
    let x = Tensor::from_vec(vec![1, 4, 1, 1], vec![0u8, 1, 2, 3]);
    let d = ev(
        LayoutOp::DepthToSpace {
            blocksize: 2,
            crd: false,
        },
        &[&x],
    );
    assert_eq!(d[0].shape(), &[1, 1, 2, 2]);
    let s = ev(LayoutOp::SpaceToDepth { blocksize: 2 }, &[&d[0]]);
    assert_eq!(s[0], x);
}

#[test]
fn reshape_and_runtime_axes() {
    assert_eq!(
        reshape_dims(&[2, 3, 4], &[0, -1], false).unwrap(),
        vec![2, 12]
    );
    assert_eq!(reshape_dims(&[0, 3], &[0, 3], true).unwrap(), vec![0, 3]);
    assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
    let x = Tensor::from_vec(vec![3], vec![1u8, 2, 3]);
    let u = ev(LayoutOp::Unsqueeze { axes: vec![] }, &[&x, &ints(&[-1, 0])]);
    assert_eq!(u[0].shape(), &[1, 3, 1]);
    let s = ev(
        LayoutOp::Squeeze {
            axes: vec![],
            not_one: vec![],
        },
        &[&u[0], &ints(&[2])],
    );
    assert_eq!(s[0].shape(), &[1, 3]);
    let parts = eval(
        &LayoutOp::Split {
            axis: 0,
            sizes: vec![],
        },
        &[&x, &ints(&[2, 1])],
        2,
    )
    .unwrap();
    assert_eq!(parts[1].to_vec::<u8>(), vec![3]);
}

#[test]
fn tensor_scatter_writes_each_batch_row_at_its_index() {
    // Cache [2, 4] (batch, max_seq), update [2, 2], rows written from 1 and 2.
    let cache = Tensor::from_vec(vec![2, 4], vec![0i32; 8]);
    let update = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]);
    let linear = LayoutOp::TensorScatter {
        axis: 1,
        circular: false,
    };
    let y = &ev(linear.clone(), &[&cache, &update, &ints(&[1, 2])])[0];
    assert_eq!(y.to_vec::<i32>(), vec![0, 1, 2, 0, 0, 0, 3, 4]);
    // Without write indices every row starts at 0.
    let y = &ev(linear.clone(), &[&cache, &update])[0];
    assert_eq!(y.to_vec::<i32>(), vec![1, 2, 0, 0, 3, 4, 0, 0]);
    // Past the end: an error in linear mode, a wrap in circular mode.
    let err = eval(&linear, &[&cache, &update, &ints(&[3, 0])], 1).unwrap_err();
    assert!(err.to_string().contains("position 4"), "{err}");
    let circular = LayoutOp::TensorScatter {
        axis: 1,
        circular: true,
    };
    let y = &ev(circular, &[&cache, &update, &ints(&[3, -1])])[0];
    assert_eq!(y.to_vec::<i32>(), vec![2, 0, 0, 1, 4, 0, 0, 3]);
}

#[test]
fn tensor_scatter_inner_dims_empty_updates_and_bad_shapes() {
    // Cache [1, 3, 2] with the sequence on axis 1 and an inner dim of 2.
    let cache = Tensor::from_vec(vec![1, 3, 2], vec![0.0f32; 6]);
    let update = Tensor::from_vec(vec![1, 1, 2], vec![5.0f32, 6.0]);
    let op = LayoutOp::TensorScatter {
        axis: 1,
        circular: false,
    };
    let y = &ev(op.clone(), &[&cache, &update, &ints(&[2])])[0];
    assert_eq!(y.to_vec::<f32>(), vec![0.0, 0.0, 0.0, 0.0, 5.0, 6.0]);
    // An update of length 0 leaves the cache as it is.
    let empty = Tensor::from_vec(vec![1, 0, 2], Vec::<f32>::new());
    assert_eq!(&ev(op.clone(), &[&cache, &empty, &ints(&[3])])[0], &cache);
    // A zero batch is an empty cache.
    let none = Tensor::from_vec(vec![0, 3, 2], Vec::<f32>::new());
    let none_u = Tensor::from_vec(vec![0, 1, 2], Vec::<f32>::new());
    assert_eq!(ev(op.clone(), &[&none, &none_u])[0].shape(), &[0, 3, 2]);
    // Updates longer than the cache, other dims that differ, axis 0, a bad dtype.
    let long = Tensor::from_vec(vec![1, 4, 2], vec![0.0f32; 8]);
    assert!(eval(&op, &[&cache, &long], 1).is_err());
    let wide = Tensor::from_vec(vec![1, 1, 3], vec![0.0f32; 3]);
    assert!(eval(&op, &[&cache, &wide], 1).is_err());
    let axis0 = LayoutOp::TensorScatter {
        axis: 0,
        circular: false,
    };
    assert!(eval(&axis0, &[&cache, &update], 1).is_err());
    let float_idx = Tensor::from_vec(vec![1], vec![0.0f32]);
    assert!(eval(&op, &[&cache, &update, &float_idx], 1).is_err());
    let ints_update = Tensor::from_vec(vec![1, 1, 2], vec![1i32, 2]);
    assert!(eval(&op, &[&cache, &ints_update], 1).is_err());
}

#[test]
fn squeeze_refuses_a_kept_dim_of_size_one() {
    // Built for [?, 1, 3] → [?, 3]: a first dim of 2 passes, of 1 is refused.
    let op = LayoutOp::Squeeze {
        axes: vec![1],
        not_one: vec![0],
    };
    let x = Tensor::from_vec(vec![2, 1, 3], vec![0.0f32; 6]);
    assert_eq!(ev(op.clone(), &[&x])[0].shape(), &[2, 3]);
    let one = Tensor::from_vec(vec![1, 1, 3], vec![0.0f32; 3]);
    let err = eval(&op, &[&one], 1).unwrap_err();
    assert!(err.to_string().contains("dim 0"), "{err}");
    // Inference at specialization refuses it the same way.
    let ty = |dims: Vec<usize>| crate::TensorType::new(DType::F32, crate::Shape::known(&dims));
    let infer = |t: crate::TensorType| {
        crate::op::OpFamily::infer(
            &op,
            &crate::op::InferInputs {
                types: &[t],
                consts: &[None],
            },
        )
    };
    assert!(infer(ty(vec![2, 1, 3])).is_ok());
    assert!(infer(ty(vec![1, 1, 3])).is_err());
}
