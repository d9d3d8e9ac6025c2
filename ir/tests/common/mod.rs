//! Graphs built by hand, shared by the text and verifier tests.
#![allow(dead_code)]

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, NnOp, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{BrickId, BrickKind, DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};

/// `dims` of known and symbolic sizes: `"batch"` or `"64"`.
pub fn shape(dims: &[&str]) -> Shape {
    Shape(
        dims.iter()
            .map(|d| match d.parse::<usize>() {
                Ok(n) => Dim::Known(n),
                Err(_) if *d == "?" => Dim::Any,
                Err(_) => Dim::sym(d),
            })
            .collect(),
    )
}

/// An f32 tensor type.
pub fn f32_ty(dims: &[&str]) -> TensorType {
    TensorType::new(DType::F32, shape(dims))
}

/// A deterministic f32 weight (values don't matter to these tests, but keep them
/// distinct so a swapped weight shows).
pub fn weight(g: &mut Graph, name: &str, dims: &[usize]) -> ValueId {
    let n: usize = dims.iter().product();
    let seed = name.len() as f32;
    let v: Vec<f32> = (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect();
    g.add_const(name, Tensor::from_vec(dims.to_vec(), v))
}

/// Adds a one-output node, panicking with the node's error (a bug in the test).
pub fn node(
    g: &mut Graph,
    name: &str,
    op: Op,
    inputs: &[ValueId],
    out: &str,
    brick: Option<BrickId>,
) -> ValueId {
    g.add_node(name, op, inputs.to_vec(), &[out.to_string()], brick)
        .unwrap_or_else(|e| panic!("{e}"))[0]
}

/// `x·w + b` as the ONNX exporter writes a linear layer.
pub fn linear(
    g: &mut Graph,
    prefix: &str,
    x: ValueId,
    n_in: usize,
    n_out: usize,
    brick: Option<BrickId>,
) -> ValueId {
    let w = weight(g, &format!("{prefix}.weight"), &[n_in, n_out]);
    let b = weight(g, &format!("{prefix}.bias"), &[n_out]);
    let onnx = format!("/{}", prefix.replace('.', "/"));
    let mm = node(
        g,
        &format!("{onnx}/MatMul"),
        Op::Nn(NnOp::MatMul),
        &[x, w],
        &format!("{onnx}/MatMul_output_0"),
        brick,
    );
    node(
        g,
        &format!("{onnx}/Add"),
        Op::Binary(BinaryOp::Add),
        &[mm, b],
        &format!("{onnx}/Add_output_0"),
        brick,
    )
}

/// A two-layer perceptron on `[batch, 8]` inputs.
pub fn mlp() -> Graph {
    let mut g = Graph::new("mlp");
    let x = g.add_input("x", f32_ty(&["batch", "8"]));
    let ffn = g.brick("mlp", BrickKind::Ffn);
    let h = linear(&mut g, "fc1", x, 8, 32, Some(ffn));
    let h = node(
        &mut g,
        "relu",
        Op::Unary(UnaryOp::Relu),
        &[h],
        "h",
        Some(ffn),
    );
    let y = linear(&mut g, "fc2", h, 32, 4, Some(ffn));
    g.outputs.push(y);
    g
}

/// One BERT encoder layer (hidden 64, 4 heads of 16, FFN 256), as the ONNX exporter
/// names things, with attention and FFN bricks inside a layer brick.
pub fn bert_layer() -> Graph {
    let mut g = Graph::new("bert");
    let x = g.add_input("hidden_states", f32_ty(&["batch", "seq", "64"]));
    let mask = g.add_input("attention_mask", f32_ty(&["batch", "1", "1", "seq"]));
    let layer = g.brick("encoder.layer.0", BrickKind::Layer);
    let attn = g.brick("encoder.layer.0.attention", BrickKind::Attention);
    let p = "encoder.layer.0.attention.self";
    let heads = g.add_const("/Constant", Tensor::from_vec(vec![4], vec![0i64, 0, 4, 16]));
    let merge = g.add_const("/Constant_1", Tensor::from_vec(vec![3], vec![0i64, 0, 64]));
    let scale = g.add_const("/Constant_2", Tensor::scalar(0.25f32));
    let split_heads = |g: &mut Graph, v: ValueId, which: &str, perm: Vec<usize>| {
        let r = node(
            g,
            &format!("/{which}/Reshape"),
            Op::Layout(LayoutOp::Reshape { allowzero: false }),
            &[v, heads],
            &format!("/{which}/Reshape_output_0"),
            Some(attn),
        );
        node(
            g,
            &format!("/{which}/Transpose"),
            Op::Layout(LayoutOp::Transpose { perm }),
            &[r],
            &format!("/{which}/Transpose_output_0"),
            Some(attn),
        )
    };
    let q = linear(&mut g, &format!("{p}.query"), x, 64, 64, Some(attn));
    let k = linear(&mut g, &format!("{p}.key"), x, 64, 64, Some(attn));
    let v = linear(&mut g, &format!("{p}.value"), x, 64, 64, Some(attn));
    let q = split_heads(&mut g, q, "q", vec![0, 2, 1, 3]);
    let k = split_heads(&mut g, k, "k", vec![0, 2, 3, 1]);
    let v = split_heads(&mut g, v, "v", vec![0, 2, 1, 3]);
    let s = node(
        &mut g,
        "/scores/MatMul",
        Op::Nn(NnOp::MatMul),
        &[q, k],
        "/scores/MatMul_output_0",
        Some(attn),
    );
    let s = node(
        &mut g,
        "/scores/Mul",
        Op::Binary(BinaryOp::Mul),
        &[s, scale],
        "/scores/Mul_output_0",
        Some(attn),
    );
    let s = node(
        &mut g,
        "/scores/Add",
        Op::Binary(BinaryOp::Add),
        &[s, mask],
        "/scores/Add_output_0",
        Some(attn),
    );
    let probs = node(
        &mut g,
        "/Softmax",
        Op::Composite(CompositeOp::Softmax { axis: 3 }),
        &[s],
        "/Softmax_output_0",
        Some(attn),
    );
    let ctx = node(
        &mut g,
        "/context/MatMul",
        Op::Nn(NnOp::MatMul),
        &[probs, v],
        "/context/MatMul_output_0",
        Some(attn),
    );
    let ctx = node(
        &mut g,
        "/context/Transpose",
        Op::Layout(LayoutOp::Transpose {
            perm: vec![0, 2, 1, 3],
        }),
        &[ctx],
        "/context/Transpose_output_0",
        Some(attn),
    );
    let ctx = node(
        &mut g,
        "/context/Reshape",
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[ctx, merge],
        "/context/Reshape_output_0",
        Some(attn),
    );
    let o = linear(
        &mut g,
        "encoder.layer.0.attention.output.dense",
        ctx,
        64,
        64,
        Some(attn),
    );
    let r = node(
        &mut g,
        "/attention/residual",
        Op::Binary(BinaryOp::Add),
        &[o, x],
        "/attention/residual_output_0",
        Some(layer),
    );
    let ln = layer_norm(&mut g, "encoder.layer.0.attention.output.LayerNorm", r);
    let ffn = g.brick("encoder.layer.0.ffn", BrickKind::Ffn);
    let h = linear(
        &mut g,
        "encoder.layer.0.intermediate.dense",
        ln,
        64,
        256,
        Some(ffn),
    );
    let h = node(
        &mut g,
        "/intermediate/Gelu",
        Op::Composite(CompositeOp::Gelu { tanh: false }),
        &[h],
        "/intermediate/Gelu_output_0",
        Some(ffn),
    );
    let h = linear(
        &mut g,
        "encoder.layer.0.output.dense",
        h,
        256,
        64,
        Some(ffn),
    );
    let r = node(
        &mut g,
        "/output/residual",
        Op::Binary(BinaryOp::Add),
        &[h, ln],
        "/output/residual_output_0",
        Some(layer),
    );
    let y = layer_norm(&mut g, "encoder.layer.0.output.LayerNorm", r);
    g.rename_value(y, "last_hidden_state".into());
    g.outputs.push(y);
    g
}

/// A layer norm over the last axis in a `norm` brick (nested by its dotted name).
pub fn layer_norm(g: &mut Graph, prefix: &str, x: ValueId) -> ValueId {
    let b = g.brick(prefix, BrickKind::Norm);
    let gamma = weight(g, &format!("{prefix}.weight"), &[64]);
    let beta = weight(g, &format!("{prefix}.bias"), &[64]);
    let onnx = format!("/{}", prefix.replace('.', "/"));
    node(
        g,
        &format!("{onnx}/LayerNormalization"),
        Op::Composite(CompositeOp::LayerNorm {
            axis: 2,
            epsilon: 1e-12,
        }),
        &[x, gamma, beta],
        &format!("{onnx}/LayerNormalization_output_0"),
        Some(b),
    )
}

/// Bricks nested four deep (model > layer > moe > expert), nodes in the innermost.
pub fn nested_bricks() -> Graph {
    let mut g = Graph::new("moe");
    let x = g.add_input("x", f32_ty(&["tokens", "16"]));
    let model = g.brick("model", BrickKind::Module);
    let layer = g.brick("model.layers.0", BrickKind::Layer);
    let moe = g.brick("model.layers.0.moe", BrickKind::Moe);
    let router = g.brick("model.layers.0.moe.gate", BrickKind::Router);
    let e0 = g.brick("model.layers.0.moe.experts.0", BrickKind::Expert);
    let e1 = g.brick("model.layers.0.moe.experts.1", BrickKind::Expert);
    assert_eq!(g.bricks[e0.0 as usize].parent, Some(moe));
    assert_eq!(g.bricks[moe.0 as usize].parent, Some(layer));
    assert_eq!(g.bricks[layer.0 as usize].parent, Some(model));
    let logits = linear(&mut g, "model.layers.0.moe.gate", x, 16, 2, Some(router));
    let probs = node(
        &mut g,
        "gate/softmax",
        Op::Composite(CompositeOp::Softmax { axis: 1 }),
        &[logits],
        "gate_probs",
        Some(router),
    );
    let a = linear(
        &mut g,
        "model.layers.0.moe.experts.0.w",
        x,
        16,
        16,
        Some(e0),
    );
    let b = linear(
        &mut g,
        "model.layers.0.moe.experts.1.w",
        x,
        16,
        16,
        Some(e1),
    );
    let s = node(
        &mut g,
        "mix",
        Op::Binary(BinaryOp::Add),
        &[a, b],
        "mixed",
        Some(moe),
    );
    let m = node(
        &mut g,
        "gate/mean",
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::Mean,
            axes: vec![1],
            keepdims: true,
        }),
        &[probs],
        "gate_mean",
        Some(moe),
    );
    let y = node(
        &mut g,
        "scale",
        Op::Binary(BinaryOp::Mul),
        &[s, m],
        "y",
        Some(layer),
    );
    g.outputs.push(y);
    g
}

/// Symbolic, unknown and oddly named dims.
pub fn symbolic_dims() -> Graph {
    let mut g = Graph::new("dynamic shapes");
    let x = g.add_input(
        "input.1",
        TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::sym("batch_size"),
                Dim::Any,
                Dim::sym("unk__3"),
                Dim::sym("2*seq"),
                Dim::Known(3),
            ]),
        ),
    );
    let y = g.add_input(
        "y",
        TensorType::new(DType::F32, Shape(vec![Dim::sym("?"), Dim::sym("12")])),
    );
    let s = node(
        &mut g,
        "exp",
        Op::Unary(UnaryOp::Exp),
        &[x],
        "onnx::Exp_5",
        None,
    );
    let sh = node(
        &mut g,
        "shape",
        Op::Layout(LayoutOp::Shape {
            start: 0,
            end: Some(-1),
        }),
        &[s],
        "shape",
        None,
    );
    let z = node(&mut g, "neg", Op::Unary(UnaryOp::Neg), &[y], "z", None);
    g.outputs.extend([s, sh, z]);
    g
}

/// One constant of every dtype with its edge values, inline and as a weight.
pub fn every_dtype() -> Graph {
    use kiln_ir::half::{bf16, f16};
    let mut g = Graph::new("constants");
    let small: Vec<(&str, Tensor)> = vec![
        (
            "f32",
            Tensor::from_vec(
                vec![3, 3],
                vec![
                    0.1f32,
                    -0.0,
                    1e-30,
                    f32::MAX,
                    f32::MIN_POSITIVE,
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::from_bits(1),
                ],
            ),
        ),
        (
            "f64",
            Tensor::from_vec(
                vec![6],
                vec![
                    0.1f64,
                    -0.0,
                    1e300,
                    f64::from_bits(1),
                    f64::NAN,
                    -f64::INFINITY,
                ],
            ),
        ),
        (
            "f16",
            Tensor::from_vec(
                vec![5],
                vec![
                    f16::from_f32(0.1),
                    f16::NEG_ZERO,
                    f16::MAX,
                    f16::MIN_POSITIVE_SUBNORMAL,
                    f16::NAN,
                ],
            ),
        ),
        (
            "bf16",
            Tensor::from_vec(
                vec![4],
                vec![
                    bf16::from_f32(0.1),
                    bf16::MAX,
                    bf16::INFINITY,
                    bf16::from_bits(0xffc1),
                ],
            ),
        ),
        (
            "i64",
            Tensor::from_vec(vec![3], vec![i64::MIN, -1, i64::MAX]),
        ),
        ("i32", Tensor::from_vec(vec![2], vec![i32::MIN, i32::MAX])),
        ("i16", Tensor::from_vec(vec![2], vec![i16::MIN, i16::MAX])),
        ("i8", Tensor::from_vec(vec![2], vec![i8::MIN, i8::MAX])),
        ("u8", Tensor::from_vec(vec![2], vec![0u8, u8::MAX])),
        ("u16", Tensor::from_vec(vec![2], vec![0u16, u16::MAX])),
        ("u32", Tensor::from_vec(vec![2], vec![0u32, u32::MAX])),
        ("u64", Tensor::from_vec(vec![2], vec![0u64, u64::MAX])),
        ("bool", Tensor::from_vec(vec![2, 1], vec![true, false])),
        ("scalar", Tensor::scalar(-2.5f32)),
        ("empty", Tensor::from_vec::<i64>(vec![0, 3], vec![])),
        (
            "f32_x16",
            Tensor::from_vec(vec![16], (0..16).map(|i| i as f32 / 3.0).collect()),
        ),
    ];
    // The low-precision formats: rounding, the largest value, -0, NaN, a subnormal.
    let low = [0.1, -0.0, 1e9, f64::NAN, 2f64.powi(-16), -2.5];
    let small = small.into_iter().chain(
        DType::ALL
            .into_iter()
            .filter(|d| d.is_low_precision())
            .map(|d| (d.name(), Tensor::from_f64(d, vec![6], &low))),
    );
    for (name, t) in small {
        let c = g.add_const(format!("small_{name}"), t);
        g.outputs.push(c);
    }
    for d in DType::ALL {
        let t = Tensor::from_i64(d, vec![17], &(0..17).collect::<Vec<_>>());
        let c = g.add_const(format!("large_{d}"), t);
        g.outputs.push(c);
    }
    g
}

/// Nodes of two and three outputs, one of them unused.
pub fn multi_output() -> Graph {
    let mut g = Graph::new("multi");
    let x = g.add_input("x", f32_ty(&["batch", "12"]));
    let k = g.add_const("k", Tensor::from_vec(vec![1], vec![3i64]));
    let outs = g
        .add_node(
            "topk",
            Op::Reduce(ReduceOp::TopK {
                axis: 1,
                largest: true,
                sorted: true,
            }),
            vec![x, k],
            &["values".into(), "indices".into()],
            None,
        )
        .unwrap();
    let parts = g
        .add_node(
            "split",
            Op::Layout(LayoutOp::Split {
                axis: 1,
                sizes: vec![4, 4, 4],
            }),
            vec![x],
            &["a".into(), "b".into(), "c".into()],
            None,
        )
        .unwrap();
    let s = node(
        &mut g,
        "sum",
        Op::Binary(BinaryOp::Add),
        &[parts[0], parts[2]],
        "s",
        None,
    );
    g.outputs.extend([outs[1], outs[0], s]);
    g
}
