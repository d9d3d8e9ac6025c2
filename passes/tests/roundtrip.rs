//! Graph → e-graph → graph round trips: the exported test models and a synthetic
//! BERT-base-sized graph.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use egg::{Pattern, RecExpr};
use kiln_ir::{DType, Graph, Tensor};
use kiln_passes::{extract, to_egraph, KilnLang, OpKey};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx")
}

/// A minimal `.npy` reader (C order, little-endian): enough for the fixture inputs.
fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(!header.contains("'fortran_order': True"), "{header}");
    let descr = header
        .split("'descr':")
        .nth(1)
        .unwrap()
        .split('\'')
        .nth(1)
        .unwrap();
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i8" => DType::I64,
        "<i4" => DType::I32,
        "|b1" => DType::Bool,
        d => panic!("dtype {d} in {}", path.display()),
    };
    let dims = header.split("'shape':").nth(1).unwrap();
    let dims = &dims[dims.find('(').unwrap() + 1..dims.find(')').unwrap()];
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = bytes[start + hlen..].to_vec();
    Tensor::from_bytes(dtype, shape, data.into()).unwrap()
}

fn read_inputs(dir: &Path) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, read_npy(&p))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Node name → brick name, for the nodes in a brick.
fn brick_of_nodes(g: &Graph) -> HashMap<String, String> {
    g.nodes()
        .iter()
        .filter_map(|n| Some((n.name.clone(), g.bricks[n.brick?.0 as usize].name.clone())))
        .collect()
}

/// `back` computes exactly what `g` computes on `inputs`.
fn same_outputs(name: &str, g: &Graph, back: &Graph, inputs: &[(String, Tensor)]) {
    let want = kiln_ir::interp::run(g, inputs).unwrap();
    let got = kiln_ir::interp::run(back, inputs).unwrap();
    assert_eq!(want.len(), got.len());
    for (i, (w, o)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.dtype(), o.dtype(), "{name} output {i}");
        assert_eq!(w.shape(), o.shape(), "{name} output {i}");
        let (w, o) = (w.to_f64_vec(), o.to_f64_vec());
        for (a, b) in w.iter().zip(&o) {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{name} output {i}: {a} vs {b}"
            );
        }
    }
}

fn round_trip(name: &str) {
    let dir = fixtures().join(name);
    let g = kiln_frontends::onnx::load(&dir.join("model.onnx")).unwrap();
    let t = Instant::now();
    let model = to_egraph(&g);
    let to = t.elapsed();
    let t = Instant::now();
    let back = extract(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let from = t.elapsed();
    println!(
        "{name}: {} nodes -> {} e-classes, {} e-nodes -> {} nodes; to e-graph {to:?}, extract {from:?}",
        g.nodes().len(),
        model.egraph.number_of_classes(),
        model.egraph.total_number_of_nodes(),
        back.nodes().len()
    );
    kiln_ir::verify(&back).unwrap_or_else(|e| panic!("{name}: {e}"));

    // Same outputs on the fixture inputs.
    for set in ["inputs", "inputs_alt"] {
        if dir.join(set).exists() {
            same_outputs(name, &g, &back, &read_inputs(&dir.join(set)));
        }
    }

    // Names and bricks survive: same bricks, and every node kept in its brick.
    let names = |g: &Graph| {
        g.bricks
            .iter()
            .map(|b| b.name.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(names(&g), names(&back), "{name}: bricks");
    let used = |m: &HashMap<String, String>| m.values().cloned().collect::<BTreeSet<_>>();
    let (before, after) = (brick_of_nodes(&g), brick_of_nodes(&back));
    assert_eq!(used(&before), used(&after), "{name}: bricks holding nodes");
    let orig: BTreeSet<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
    for n in back.nodes() {
        assert!(
            orig.contains(n.name.as_str()),
            "{name}: new node {}",
            n.name
        );
        assert_eq!(
            before.get(&n.name),
            after.get(&n.name),
            "{name}: node {}",
            n.name
        );
    }
    for (a, b) in g.outputs.iter().zip(&back.outputs) {
        assert_eq!(
            g.value(*a).name,
            back.value(*b).name,
            "{name}: output names"
        );
    }
    // Every op's pattern form parses back to the same key.
    for n in g.nodes() {
        let key = OpKey::new(&n.op);
        assert_eq!(OpKey::parse(&key.to_string()).unwrap(), key, "{}", n.op);
    }
}

macro_rules! fixtures {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { round_trip($name); })*
    };
}

fixtures! {
    bert_dynamo_dynamic => "bert_dynamo_dynamic",
    bert_dynamo_fixed => "bert_dynamo_fixed",
    bert_torchscript_dynamic => "bert_torchscript_dynamic",
    bert_torchscript_fixed => "bert_torchscript_fixed",
    gpt2_dynamo_dynamic => "gpt2_dynamo_dynamic",
    gpt2_dynamo_fixed => "gpt2_dynamo_fixed",
    gpt2_torchscript_dynamic => "gpt2_torchscript_dynamic",
    gpt2_torchscript_fixed => "gpt2_torchscript_fixed",
    llama_dynamo_dynamic => "llama_dynamo_dynamic",
    llama_dynamo_fixed => "llama_dynamo_fixed",
    llama_torchscript_dynamic => "llama_torchscript_dynamic",
    llama_torchscript_fixed => "llama_torchscript_fixed",
    vit_dynamo_dynamic => "vit_dynamo_dynamic",
    vit_dynamo_fixed => "vit_dynamo_fixed",
    vit_torchscript_dynamic => "vit_torchscript_dynamic",
    vit_torchscript_fixed => "vit_torchscript_fixed",
}

#[test]
fn every_fixture_has_a_round_trip_test() {
    let mut dirs: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs.len(),
        16,
        "{dirs:?}: add the new fixture to `fixtures!`"
    );
}

#[test]
fn patterns_and_expressions_read_as_s_expressions() {
    // Printing may quote atoms holding brackets; what is printed parses back.
    let p: Pattern<KilnLang> = "(MatMul ?a (Transpose{perm:[1,0]} ?b))".parse().unwrap();
    let again: Pattern<KilnLang> = p.to_string().parse().unwrap();
    assert_eq!(again.ast, p.ast);
    let e: RecExpr<KilnLang> =
        "(Softmax{axis:1} (proj0 (\"TopK(axis: 1, largest: true, sorted: true)\" input:x const:k)))"
            .parse()
            .unwrap();
    let again: RecExpr<KilnLang> = e.to_string().parse().unwrap();
    assert_eq!(again, e);
    let names: Vec<String> = e.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        names,
        [
            "input:x",
            "const:k",
            "TopK{axis:1,largest:true,sorted:true}",
            "proj0",
            "Softmax{axis:1}"
        ]
    );
    assert!("(NoSuchOp ?a)".parse::<Pattern<KilnLang>>().is_err());
}

#[test]
fn bert_base_sized_graph_converts_both_ways() {
    let g = kiln_passes::synthetic::bert_base_like(12);
    kiln_ir::verify(&g).unwrap();
    let t = Instant::now();
    let model = to_egraph(&g);
    let to = t.elapsed();
    let t = Instant::now();
    let back = extract(&model).unwrap();
    let from = t.elapsed();
    println!(
        "12-layer BERT-base: {} nodes, {} values -> {} e-classes, {} e-nodes; to e-graph {to:?}, extract {from:?}; back: {} nodes",
        g.nodes().len(),
        g.values().len(),
        model.egraph.number_of_classes(),
        model.egraph.total_number_of_nodes(),
        back.nodes().len()
    );
    kiln_ir::verify(&back).unwrap();
    assert_eq!(back.nodes().len(), g.nodes().len());
    assert_eq!(model.egraph.number_of_classes(), g.values().len());
}
