//! Synthetic models of real shapes, for benchmarks and tests of the optimizer:
//! graphs the size of the models kiln must handle, without shipping their weights
//! (weights are zero tensors sharing one buffer each; the optimizer never reads them).

use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType};

/// A 12-layer BERT-base-shaped encoder (hidden 768, 12 heads, FFN 3072) over
/// `[1, 128]` tokens, written with decomposed attention as exporters emit it.
pub fn bert_base_like(layers: usize) -> Graph {
    let (seq, hidden, heads, ffn) = (128usize, 768usize, 12usize, 3072usize);
    let op = |s: &str| Op::from_text(s).expect("valid op text");
    let mut g = Graph::new("bert_base_synthetic");
    let f32s = |dims: &[usize]| TensorType::new(DType::F32, Shape::known(dims));
    let mut x = g.add_input("hidden_states", f32s(&[1, seq, hidden]));
    let mask = g.add_input("mask", f32s(&[1, 1, 1, seq]));
    // Weights share their bytes (a refcounted buffer): the e-graph never looks at them.
    let w_hh = Tensor::zeros(DType::F32, vec![hidden, hidden]);
    let w_hf = Tensor::zeros(DType::F32, vec![hidden, ffn]);
    let w_fh = Tensor::zeros(DType::F32, vec![ffn, hidden]);
    let b_h = Tensor::zeros(DType::F32, vec![hidden]);
    let b_f = Tensor::zeros(DType::F32, vec![ffn]);
    let split = g.add_const(
        "split_shape",
        Tensor::from_vec(
            vec![4],
            vec![1i64, seq as i64, heads as i64, (hidden / heads) as i64],
        ),
    );
    let merge = g.add_const(
        "merge_shape",
        Tensor::from_vec(vec![3], vec![1i64, seq as i64, hidden as i64]),
    );
    let scale = g.add_const("scale", Tensor::scalar(8.0f32));
    for l in 0..layers {
        let p = format!("layer.{l}");
        let layer = g.brick(&p, kiln_ir::BrickKind::Layer);
        let attn = g.brick(&format!("{p}.attention"), kiln_ir::BrickKind::Attention);
        let ffn_b = g.brick(&format!("{p}.ffn"), kiln_ir::BrickKind::Ffn);
        let _ = layer;
        let node = |g: &mut Graph, name: &str, o: &str, inputs: Vec<kiln_ir::ValueId>, brick| {
            let n = format!("{p}.{name}");
            g.add_node(n.clone(), op(o), inputs, &[n], Some(brick))
                .expect("well-typed synthetic node")[0]
        };
        let linear = |g: &mut Graph, name: &str, x, w: &Tensor, b: &Tensor, brick| {
            let wv = g.add_const(format!("{p}.{name}.weight"), w.clone());
            let bv = g.add_const(format!("{p}.{name}.bias"), b.clone());
            let m = node(g, &format!("{name}.matmul"), "MatMul", vec![x, wv], brick);
            node(g, &format!("{name}.add"), "Add", vec![m, bv], brick)
        };
        let heads_of = |g: &mut Graph, name: &str, x, perm: &str| {
            let r = node(
                g,
                &format!("{name}.split"),
                "Reshape(allowzero: false)",
                vec![x, split],
                attn,
            );
            node(
                g,
                &format!("{name}.perm"),
                &format!("Transpose(perm: {perm})"),
                vec![r],
                attn,
            )
        };
        let q = linear(&mut g, "q", x, &w_hh, &b_h, attn);
        let k = linear(&mut g, "k", x, &w_hh, &b_h, attn);
        let v = linear(&mut g, "v", x, &w_hh, &b_h, attn);
        let q = heads_of(&mut g, "q", q, "[0, 2, 1, 3]");
        let k = heads_of(&mut g, "k", k, "[0, 2, 3, 1]");
        let v = heads_of(&mut g, "v", v, "[0, 2, 1, 3]");
        let s = node(&mut g, "scores", "MatMul", vec![q, k], attn);
        let s = node(&mut g, "scaled", "Div", vec![s, scale], attn);
        let s = node(&mut g, "masked", "Add", vec![s, mask], attn);
        let s = node(&mut g, "softmax", "Softmax(axis: 3)", vec![s], attn);
        let c = node(&mut g, "context", "MatMul", vec![s, v], attn);
        let c = node(
            &mut g,
            "context.perm",
            "Transpose(perm: [0, 2, 1, 3])",
            vec![c],
            attn,
        );
        let c = node(
            &mut g,
            "context.merge",
            "Reshape(allowzero: false)",
            vec![c, merge],
            attn,
        );
        let o = linear(&mut g, "o", c, &w_hh, &b_h, attn);
        let r = node(&mut g, "attn.residual", "Add", vec![o, x], attn);
        let (gamma, beta) = (
            g.add_const(format!("{p}.ln1.weight"), b_h.clone()),
            g.add_const(format!("{p}.ln1.bias"), b_h.clone()),
        );
        let h = node(
            &mut g,
            "ln1",
            "LayerNorm(axis: 2, epsilon: 1e-12)",
            vec![r, gamma, beta],
            attn,
        );
        let u = linear(&mut g, "up", h, &w_hf, &b_f, ffn_b);
        let u = node(&mut g, "gelu", "Gelu(tanh: false)", vec![u], ffn_b);
        let d = linear(&mut g, "down", u, &w_fh, &b_h, ffn_b);
        let r = node(&mut g, "ffn.residual", "Add", vec![d, h], ffn_b);
        let (gamma, beta) = (
            g.add_const(format!("{p}.ln2.weight"), b_h.clone()),
            g.add_const(format!("{p}.ln2.bias"), b_h.clone()),
        );
        x = node(
            &mut g,
            "ln2",
            "LayerNorm(axis: 2, epsilon: 1e-12)",
            vec![r, gamma, beta],
            ffn_b,
        );
    }
    g.outputs = vec![x];
    g
}
