//! Snapshots of the scheduled program (buffers, steps, kernel IR) of a few small
//! graphs at fixed shapes, so changes to the generated loops show up in review.
//! Graphs are scheduled as built (no optimizer), so only the scheduler shapes
//! the text.

use kiln::ir::op::{BinaryOp, CompositeOp, FusedArg, FusedOp, FusedStep, NnOp, UnaryOp};
use kiln::ir::{DType, Graph, Op, Shape, TensorType, ValueId};

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
    g.add_input(name, TensorType::new(DType::F32, Shape::known(shape)))
}

/// The program text of `g` at its declared input shapes.
fn program_text(g: &Graph) -> String {
    kiln::ir::verify(g).unwrap();
    let shapes: Vec<Vec<usize>> = g
        .inputs
        .iter()
        .map(|&i| g.value(i).ty.shape.as_known().unwrap())
        .collect();
    let (program, _) = kiln::cpu::program_for(g, &shapes)
        .unwrap()
        .unwrap_or_else(|(_, reason)| panic!("not schedulable: {reason}"));
    assert!(program.host_ops().is_empty(), "{:?}", program.host_ops());
    program.to_text()
}

fn step(op: Op, args: &[FusedArg]) -> FusedStep {
    FusedStep {
        op,
        args: args.to_vec(),
    }
}

/// y = GELU(x·w + bias): a GEMM into y, then one in-place epilogue kernel over
/// y's [2, 4] elements reading bias[j].
#[test]
fn fused_matmul_bias_gelu_epilogue() {
    let mut g = Graph::new("gemm_gelu");
    let x = input(&mut g, "x", &[2, 3]);
    let w = input(&mut g, "w", &[3, 4]);
    let bias = input(&mut g, "bias", &[4]);
    let region = FusedOp {
        steps: vec![
            step(
                Op::Nn(NnOp::MatMul),
                &[FusedArg::Input(0), FusedArg::Input(1)],
            ),
            step(
                Op::Binary(BinaryOp::Add),
                &[FusedArg::Step(0), FusedArg::Input(2)],
            ),
            step(
                Op::Composite(CompositeOp::Gelu { tanh: false }),
                &[FusedArg::Step(1)],
            ),
        ],
    };
    let y = g
        .add_node(
            "dense",
            Op::Fused(region),
            vec![x, w, bias],
            &["y".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(y);
    insta::assert_snapshot!("fused_matmul_bias_gelu", program_text(&g));
}

/// softmax over axis 1 of [2, 5]: one parallel loop over the 2 rows, three
/// passes over the 5 columns (max, Σ e^(x − max), normalized store).
#[test]
fn softmax_rows() {
    let mut g = Graph::new("softmax");
    let x = input(&mut g, "x", &[2, 5]);
    let y = g
        .add_node(
            "softmax",
            Op::Composite(CompositeOp::Softmax { axis: 1 }),
            vec![x],
            &["y".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(y);
    insta::assert_snapshot!("softmax_axis1", program_text(&g));
}

/// Softmax over the *leading* axis of [3, 4]: rows are strided (stride 4).
#[test]
fn softmax_leading_axis() {
    let mut g = Graph::new("softmax0");
    let x = input(&mut g, "x", &[3, 4]);
    let y = g
        .add_node(
            "softmax",
            Op::Composite(CompositeOp::Softmax { axis: 0 }),
            vec![x],
            &["y".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(y);
    insta::assert_snapshot!("softmax_axis0", program_text(&g));
}

/// LayerNorm over the last axis of [2, 6] with scale and bias [6], all three
/// outputs: mean pass, centred variance pass, normalized store, statistics.
#[test]
fn layer_norm_rows() {
    let mut g = Graph::new("layer_norm");
    let x = input(&mut g, "x", &[2, 6]);
    let scale = input(&mut g, "scale", &[6]);
    let bias = input(&mut g, "bias", &[6]);
    let outs = g
        .add_node(
            "ln",
            Op::Composite(CompositeOp::LayerNorm {
                axis: 1,
                epsilon: 1e-5,
            }),
            vec![x, scale, bias],
            &["y".into(), "mean".into(), "inv_std".into()],
            None,
        )
        .unwrap();
    g.outputs.extend(outs);
    insta::assert_snapshot!("layer_norm_last_axis", program_text(&g));
}

/// tanh((a + b)·c) with a [2, 3, 4], b [3, 1], c [4] as one region: one nest over
/// the output, b read with stride 0 along the last axis and c along the first two.
#[test]
fn broadcast_elementwise_chain() {
    let mut g = Graph::new("chain");
    let a = input(&mut g, "a", &[2, 3, 4]);
    let b = input(&mut g, "b", &[3, 1]);
    let c = input(&mut g, "c", &[4]);
    let region = FusedOp {
        steps: vec![
            step(
                Op::Binary(BinaryOp::Add),
                &[FusedArg::Input(0), FusedArg::Input(1)],
            ),
            step(
                Op::Binary(BinaryOp::Mul),
                &[FusedArg::Step(0), FusedArg::Input(2)],
            ),
            step(Op::Unary(UnaryOp::Tanh), &[FusedArg::Step(1)]),
        ],
    };
    let y = g
        .add_node(
            "chain",
            Op::Fused(region),
            vec![a, b, c],
            &["y".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(y);
    insta::assert_snapshot!("broadcast_chain", program_text(&g));
}

/// The step list of the repository's tiny BERT (optimized as `--target cpu`
/// does, batch 1, 8 tokens): which kernels, GEMMs and checks run, in order,
/// with the kernels' names saying what each computes (bodies left out: the
/// graph-level snapshots above pin the loops).
#[test]
fn tiny_bert_step_list() {
    let model = kiln::Model::load("models/demo/tiny-bert.onnx").unwrap();
    let exe = model
        .compile_with(
            &kiln::Target::Cpu,
            &kiln::CompileOptions {
                threads: Some(1),
                optimize: true,
                isa: None,
            },
        )
        .unwrap();
    let build = exe
        .cpu_build(&[vec![1, 8], vec![1, 8], vec![1, 8]])
        .unwrap()
        .unwrap();
    let kiln::cpu::Build::Native(native) = &*build else {
        panic!("tiny BERT must compile natively");
    };
    let program = native.program();
    assert!(program.host_ops().is_empty(), "{:?}", program.host_ops());
    let text: String = program
        .to_text()
        .lines()
        .filter(|l| l.starts_with("launch") || l.starts_with("gemm") || l.starts_with("check"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("tiny_bert_steps", text);
}
