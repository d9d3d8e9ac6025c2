//! The text form: printed graphs parse back to equal graphs, the printed text is
//! pinned by snapshots, and the parser reports bad text without panicking.

mod common;

use common::*;
use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, NnOp, QkOutput, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::text::{self, parse, parse_with_weights, print, print_with, PrintOptions};
use kiln_ir::{verify, Brick, BrickKind, DType, Graph, Op, Tensor, ValueId};
use rand::{Rng, SeedableRng};

/// Prints `g`, parses it back and checks both the graph and the text are unchanged.
fn round_trip(g: &Graph) -> String {
    let text = print(g);
    let back =
        parse_with_weights(&text, &text::weights(g)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back, g, "{text}");
    assert_eq!(print(&back), text);
    // Everything inline: no weight map needed.
    let all = print_with(
        g,
        &PrintOptions {
            max_inline: usize::MAX,
        },
    );
    assert_eq!(&parse(&all).unwrap_or_else(|e| panic!("{e}\n{all}")), g);
    text
}

#[test]
fn hand_built_graphs_round_trip() {
    for g in [
        mlp(),
        bert_layer(),
        nested_bricks(),
        symbolic_dims(),
        every_dtype(),
        multi_output(),
    ] {
        verify(&g).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        round_trip(&g);
    }
}

#[test]
fn display_is_the_text_form() {
    let g = mlp();
    assert_eq!(g.to_string(), print(&g));
}

#[test]
fn snapshot_bert_layer() {
    insta::assert_snapshot!(round_trip(&bert_layer()));
}

#[test]
fn snapshot_mlp() {
    insta::assert_snapshot!(round_trip(&mlp()));
}

#[test]
fn snapshot_every_dtype() {
    insta::assert_snapshot!(round_trip(&every_dtype()));
}

#[test]
fn snapshot_nested_bricks_and_multi_output() {
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}",
        round_trip(&nested_bricks()),
        round_trip(&multi_output()),
        round_trip(&symbolic_dims())
    ));
}

/// Graphs the builder API allows but no frontend makes still print and read back.
#[test]
fn unusual_graphs_round_trip() {
    let mut g = Graph::new("odd \"names\"\n\t\u{1}é");
    let a = g.add_input("", f32_ty(&["n"]));
    let b = g.add_input("with space", f32_ty(&["n"]));
    let c = g.add_input("%\"\\", f32_ty(&["n"]));
    // Inputs listed in another order than declared, and one listed twice.
    g.inputs = vec![c, a, b, a];
    g.add_const(
        "odd bool",
        Tensor::from_bytes(DType::Bool, vec![2], vec![2u8, 255].into()).unwrap(),
    );
    // A constant whose declared type is not its tensor's (the verifier rejects it).
    let k = g.add_const("k", Tensor::from_vec(vec![2], vec![1i64, 2]));
    g.set_value_type(k, TensorType::new(DType::I32, shape(&["m"])));
    // A node without outputs, one without a name, one without inputs.
    g.add_node_typed(
        "sink".into(),
        Op::Unary(UnaryOp::Relu),
        vec![a],
        &[],
        vec![],
        None,
    )
    .unwrap();
    g.add_node_typed(
        String::new(),
        Op::Binary(BinaryOp::Add),
        vec![a, b],
        &["s".into()],
        vec![f32_ty(&["n"])],
        None,
    )
    .unwrap();
    g.add_node_typed(
        "nullary".into(),
        Op::Layout(LayoutOp::Range),
        vec![],
        &["r".into()],
        vec![f32_ty(&["?"])],
        None,
    )
    .unwrap();
    // Use before definition and a brick before its parent: ill-formed, but printable.
    let later = ValueId(g.values().len() as u32 + 1);
    g.add_node_typed(
        "early".into(),
        Op::Unary(UnaryOp::Neg),
        vec![later],
        &["e".into()],
        vec![f32_ty(&["n"])],
        None,
    )
    .unwrap();
    g.push_brick(Brick {
        kind: BrickKind::Lora,
        name: "child".into(),
        parent: Some(kiln_ir::BrickId(1)),
    });
    g.push_brick(Brick {
        kind: BrickKind::Head,
        name: "parent".into(),
        parent: None,
    });
    let f = g
        .add_node_typed(
            "late".into(),
            Op::Unary(UnaryOp::Abs),
            vec![b],
            &["f".into()],
            vec![f32_ty(&["n"])],
            Some(kiln_ir::BrickId(0)),
        )
        .unwrap();
    g.add_node_typed(
        "sink2".into(),
        Op::Unary(UnaryOp::Relu),
        vec![f[0]],
        &[],
        vec![],
        None,
    )
    .unwrap();
    g.outputs = vec![f[0], f[0]];
    assert!(verify(&g).is_err());
    let text = round_trip(&g);
    insta::assert_snapshot!(text);
}

use kiln_ir::TensorType;

/// Every op family's attributes survive the trip (and no two families share a
/// spelling that would make `Op::from_text` pick the wrong one).
#[test]
fn op_attributes_round_trip() {
    let ops = [
        Op::Unary(UnaryOp::LeakyRelu { alpha: 0.01 }),
        Op::Unary(UnaryOp::IsInf {
            pos: true,
            neg: false,
        }),
        Op::Binary(BinaryOp::Max),
        Op::Binary(BinaryOp::Mod { fmod: true }),
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::Max,
            axes: vec![0, 2],
            keepdims: false,
        }),
        Op::Reduce(ReduceOp::CumSum {
            axis: 0,
            exclusive: true,
            reverse: false,
        }),
        Op::Layout(LayoutOp::Shape {
            start: -2,
            end: None,
        }),
        Op::Layout(LayoutOp::cast(DType::BF16)),
        Op::Layout(LayoutOp::ConstantOfShape {
            dtype: DType::I8,
            value: -0.0,
        }),
        Op::Layout(LayoutOp::Identity),
        Op::Nn(NnOp::MatMul),
        Op::Composite(CompositeOp::Attention {
            scale: Some(0.125),
            causal: true,
            softcap: Some(30.0),
            mask: true,
            past: false,
            kv_lengths: false,
            qk_output: QkOutput::Softmax,
        }),
        Op::Composite(CompositeOp::LayerNorm {
            axis: 1,
            epsilon: 1e-5,
        }),
    ];
    for op in ops {
        let mut g = Graph::new("op");
        let x = g.add_input("x", f32_ty(&["4"]));
        let y = g
            .add_node_typed(
                "n".into(),
                op.clone(),
                vec![x],
                &["y".into()],
                vec![f32_ty(&["4"])],
                None,
            )
            .unwrap();
        g.outputs = y;
        let back = parse(&print(&g)).unwrap_or_else(|e| panic!("{op:?}: {e}\n{}", print(&g)));
        assert_eq!(back.nodes()[0].op, op, "{}", print(&g));
    }
}

fn parse_err(text: &str) -> String {
    parse(text)
        .map(|g| panic!("parsed:\n{g}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn parse_errors_say_where_and_what() {
    let cases = [
        ("", "line 1, column 1: expected `graph`, found the end of the text"),
        ("graph \"g\" {\n  input %x: f33[2]\n}", "line 2, column 13: expected a dtype (f32, i64, bool, ...), found `f33`"),
        ("graph \"g\" {\n  input %x: f32[2]\n  input %x: f32[3]\n}", "line 3, column 3: value `%x` is defined twice (first on line 2)"),
        ("graph \"g\" {\n  %y: f32[2] = Relu(%nope) \"relu\"\n}", "line 2, column 21: unknown value `%nope`"),
        ("graph \"g\" {\n  %y: f32[2] = Frobnicate(%y) \"f\"\n}", "line 2, column 16: unknown op or malformed attributes: `Frobnicate`"),
        ("graph \"g\" {\n  %y: f32[2] = Transpose(perm: [1, 0)(%y) \"t\"\n}", "line 2, column 16: unknown op or malformed attributes: `Transpose(perm: [1, 0)(%y) \"t\"\n}`"),
        ("graph \"g\" {\n  %y: f32[2] = Transpose(prem: [1, 0])(%y) \"t\"\n}", "line 2, column 16: unknown op or malformed attributes: `Transpose(prem: [1, 0])`"),
        ("graph \"g\" {\n  %y: f32[2] = Transpose(perm: [1, 0]", "line 2, column 25: unclosed `(`"),
        ("graph \"g\" {\n  %y: f32[2] = Relu(%y)\n}", "line 3, column 1: expected the node name (a quoted string), found `}`"),
        ("graph \"g\" {\n  %y: f32[2] = Relu(%y) @#0 \"r\"\n}", "line 2, column 26: unknown brick #0 (the graph has 0)"),
        ("graph \"g\" {\n  brick #1 layer \"l\"\n}", "line 2, column 9: brick #1 declared where #0 is next"),
        ("graph \"g\" {\n  brick #0 layr \"l\"\n}", "line 2, column 12: expected a brick kind"),
        ("graph \"g\" {\n  const %c: f32[2] = [1.0]\n}", "line 2, column 22: 1 elements given, the shape [2] holds 2"),
        ("graph \"g\" {\n  const %c: u8[1] = [256]\n}", "line 2, column 22: 256 is out of range for u8"),
        ("graph \"g\" {\n  const %c: f32[n] = [1.0]\n}", "line 2, column 13: constant `c` has dims that are not numbers in f32[n]"),
        ("graph \"g\" {\n  const %c: f32[20] = weight\n}", "line 2, column 23: missing weight `c` (parse with a weight map holding it)"),
        ("graph \"g\" {\n  output %x\n}", "line 2, column 10: unknown value `%x`"),
        ("graph \"g\" {\n  input %x: f32[2]\n", "line 3, column 1: unexpected end of text: missing `}`"),
        ("graph \"g\" {\n}\nextra", "line 3, column 1: unexpected text after the closing `}`"),
        ("graph \"g\" {\n  bogus\n}", "line 2, column 3: expected a statement"),
        ("graph \"g\" {\n  input %\"x: f32[2]\n}", "line 2, column 10: unterminated string"),
        ("graph \"é\" {\n  input %é: f32[2]\n}", "line 2, column 10: expected a value name after `%`, found `é`"),
    ];
    for (text, want) in cases {
        let got = parse_err(text);
        assert!(
            got.starts_with(want),
            "for\n{text}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn weights_are_bound_by_name_and_type_checked() {
    let g = mlp();
    let text = print(&g);
    assert!(
        text.contains("const %\"fc1.weight\": f32[8, 32] = weight"),
        "{text}"
    );
    let err = parse(&text).unwrap_err();
    assert_eq!(
        err.message,
        "missing weight `fc1.weight` (parse with a weight map holding it)"
    );
    let mut w = text::weights(&g);
    w.insert(
        "fc1.bias".into(),
        Tensor::from_vec(vec![2], vec![1.0f32, 2.0]),
    );
    let err = parse_with_weights(&text, &w).unwrap_err();
    assert_eq!(
        err.message,
        "weight `fc1.bias` is f32[2] but the text declares f32[32]"
    );
    // Extra entries in the map are ignored.
    let mut w = text::weights(&g);
    w.insert("unused".into(), Tensor::scalar(1u8));
    assert_eq!(parse_with_weights(&text, &w).unwrap(), g);
}

#[test]
fn comments_and_free_layout_are_accepted() {
    let text = "// an MLP\ngraph \"g\" { input %x : f32[ 2 ]  %y: f32[2] = Relu(%x) \"r\" // relu\n output %y }";
    let g = parse(text).unwrap();
    assert_eq!(g.nodes()[0].op, Op::Unary(UnaryOp::Relu));
    verify(&g).unwrap();
}

/// Truncated and mutated texts never panic the parser; when they parse, the graph
/// prints and parses again.
#[test]
fn parser_never_panics_on_damaged_text() {
    let mut graphs = vec![bert_layer(), every_dtype(), multi_output(), symbolic_dims()];
    graphs.push(nested_bricks());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    const SPICE: &[&str] = &[
        "%",
        "\"",
        "\\",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "=",
        "@",
        "#",
        "?",
        "-",
        ".",
        "0",
        "9999999999999999999999",
        "nan(",
        "é",
        "\n",
        " ",
        "_",
        "weight",
        "f16",
        "//",
        "\\u{",
        "in",
    ];
    for g in &graphs {
        let text = print(g);
        let w = text::weights(g);
        let check = |t: &str| {
            if let Ok(back) = parse_with_weights(t, &w) {
                let again = print(&back);
                assert_eq!(parse_with_weights(&again, &w).as_ref(), Ok(&back), "{t}");
            }
        };
        // Every prefix (every 7th char boundary keeps this fast).
        for (i, _) in text.char_indices().step_by(7) {
            check(&text[..i]);
        }
        for _ in 0..400 {
            let mut t = text.clone();
            for _ in 0..rng.random_range(1..4) {
                let mut at = rng.random_range(0..=t.len());
                while !t.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.random_range(0..3) {
                    0 => {
                        let mut end = (at + rng.random_range(1..8)).min(t.len());
                        while !t.is_char_boundary(end) {
                            end -= 1;
                        }
                        t.replace_range(at..end, "");
                    }
                    1 => t.insert_str(at, SPICE[rng.random_range(0..SPICE.len())]),
                    _ => {
                        let mut end = (at + 1).min(t.len());
                        while !t.is_char_boundary(end) {
                            end += 1;
                        }
                        t.replace_range(at..end, SPICE[rng.random_range(0..SPICE.len())]);
                    }
                }
            }
            check(&t);
        }
    }
}
