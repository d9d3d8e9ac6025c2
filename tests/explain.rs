//! The optimizer's command line: `kiln explain` (text, JSON, Graphviz), `kiln
//! compile --emit-graph/--dump-after` (the emitted graph re-parses and computes what
//! the source does on random inputs) and `kiln rules list/check`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use kiln::ir::Tensor;
use kiln_frontends::onnx::proto::AttributeProto;
use kiln_ir::{interp, Graph};
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Tolerance of the differential comparisons: `|a − b| <= RTOL · (1 + |a|)`.
const RTOL: f64 = 1e-4;
/// Every symbolic dim of the random inputs is bound to this size.
const SYMBOLIC_SIZE: usize = 3;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx/bert_torchscript_fixed/model.onnx")
}

fn perm(p: &[i64]) -> AttributeProto {
    AttributeProto {
        name: "perm".into(),
        ints: p.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

/// `y = relu(neg(neg((xᵀ)ᵀ)) + w)` with x: f32[2, 3], in two TorchScript-named
/// scopes (`attn`, `head`), so rules fire in a known brick.
fn tiny_model(dir: &Path) -> PathBuf {
    let mut t1 = node("Transpose", "/attn/Transpose", &["x"], &["t1"]);
    t1.attribute.push(perm(&[1, 0]));
    let mut t2 = node("Transpose", "/attn/Transpose_1", &["t1"], &["t2"]);
    t2.attribute.push(perm(&[1, 0]));
    let m = model(
        vec![
            t1,
            t2,
            node("Neg", "/attn/Neg", &["t2"], &["n1"]),
            node("Neg", "/attn/Neg_1", &["n1"], &["n2"]),
            node("Add", "/head/Add", &["n2", "w"], &["s"]),
            node("Relu", "/head/Relu", &["s"], &["y"]),
        ],
        vec![value_info("x", FLOAT, &[2, 3])],
        vec![value_info("y", FLOAT, &[2, 3])],
        vec![f32_init("w", &[3], &[0.5, -1.0, 2.0])],
    );
    write_model(dir, "tiny.onnx", &m)
}

/// More e-nodes than `--egraph-dot` draws: `concat(x + c_i)` over distinct
/// constants (wide, not deep: extraction of a deep chain is slow).
fn wide_model(dir: &Path) -> PathBuf {
    let n = kiln::cli::explain::DOT_NODE_LIMIT / 2 + 1;
    let (sums, consts): (Vec<String>, Vec<String>) =
        (0..n).map(|i| (format!("a{i}"), format!("c{i}"))).unzip();
    let mut nodes: Vec<_> = (0..n)
        .map(|i| node("Add", &format!("add{i}"), &["x", &consts[i]], &[&sums[i]]))
        .collect();
    let refs: Vec<&str> = sums.iter().map(String::as_str).collect();
    let mut cat = node("Concat", "cat", &refs, &["y"]);
    cat.attribute.push(attr_int("axis", 0));
    nodes.push(cat);
    let m = model(
        nodes,
        vec![value_info("x", FLOAT, &[2])],
        vec![value_info("y", FLOAT, &[2 * n as i64])],
        (0..n)
            .map(|i| f32_init(&consts[i], &[1], &[i as f32 + 1.0]))
            .collect(),
    );
    write_model(dir, "wide.onnx", &m)
}

fn ok(args: &[&str]) -> (String, String) {
    let r = kiln(args);
    let (out, err) = (
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    );
    assert!(r.status.success(), "kiln {args:?} failed: {err}\n{out}");
    (out, err)
}

/// `a` and `b` compute the same outputs on random inputs (a fresh seed, printed).
fn same_outputs(a: &Graph, b: &Graph) {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let inputs = random_inputs(
        a,
        &mut StdRng::seed_from_u64(seed),
        &InputDims::uniform(SYMBOLIC_SIZE),
    );
    let want = interp::run(a, &inputs).unwrap();
    let got = interp::run(b, &inputs).unwrap();
    assert_close(&format!("{} (seed {seed})", a.name), &want, &got, RTOL);
}

/// Compiles `model` with `--emit-graph FILE`, re-parses the file (weights bound from
/// the source) and checks it against the source on random inputs.
fn emitted_graph_matches_source(model: &Path, dir: &Path) {
    let out = dir.join("opt.kir");
    ok(&["compile", s(model), "--emit-graph", s(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    let source = kiln_frontends::onnx::load(model).unwrap();
    let weights: HashMap<String, Tensor> = kiln_ir::text::weights(&source);
    let parsed = kiln_ir::text::parse_with_weights(&text, &weights).unwrap();
    kiln_ir::verify(&parsed).unwrap();
    same_outputs(&source, &parsed);
}

#[test]
fn explain_attributes_rules_to_bricks() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let (out, _) = ok(&["explain", s(&m), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["target"], "h200");
    let bricks = v["bricks"].as_array().unwrap();
    let attn = bricks
        .iter()
        .find(|b| b["name"] == "attn")
        .unwrap_or_else(|| panic!("no brick `attn` in {out}"));
    assert_eq!(attn["rules"]["transpose-transpose-2d"], 1, "{out}");
    assert_eq!(attn["rules"]["neg-neg"], 1, "{out}");
    assert_eq!(attn["nodes_before"], 4);
    assert_eq!(attn["nodes_after"], 0);
    assert!(attn["cost_before_us"].as_f64().unwrap() > 0.0);
    assert_eq!(attn["cost_after_us"].as_f64().unwrap(), 0.0);
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["simplify", "bricks", "fusion", "regions"]);
    assert!(v["cost_after_us"].as_f64().unwrap() < v["cost_before_us"].as_f64().unwrap());

    let (text, _) = ok(&["explain", s(&m), "--target", "cpu"]);
    assert!(text.contains("on cpu-default"), "{text}");
    assert!(text.contains("transpose-transpose-2d×1"), "{text}");
    assert!(text.contains("saturated"), "{text}");
}

#[test]
fn explain_bert_text_and_json() {
    let (text, _) = ok(&["explain", s(&bert())]);
    for word in ["brick", "phase", "simplify", "regions", "total:"] {
        assert!(text.contains(word), "`{word}` missing:\n{text}");
    }
    let (json, _) = ok(&["explain", s(&bert()), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bricks = v["bricks"].as_array().unwrap();
    assert!(bricks.len() > 3, "{json}");
    let before: f64 = bricks
        .iter()
        .map(|b| b["cost_before_us"].as_f64().unwrap())
        .sum();
    let total = v["cost_before_us"].as_f64().unwrap();
    assert!(
        (before - total).abs() <= 1e-6 * total,
        "bricks {before} vs total {total}"
    );
}

#[test]
fn explain_target_profile_file_and_bad_target() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let profile = dir.path().join("slow.toml");
    std::fs::write(
        &profile,
        "name = \"slow\"\npeak_flops_f32 = 1e9\npeak_flops_f16 = 2e9\n\
         mem_bandwidth = 1e9\nlaunch_overhead = 1e-5\n",
    )
    .unwrap();
    let (json, _) = ok(&["explain", s(&m), "--json", "--target", s(&profile)]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["target"], "slow");
    let err = kiln_fails(&["explain", s(&m), "--target", "tpu"]);
    assert!(
        err.contains("unknown target `tpu`") && err.contains("h200"),
        "{err}"
    );
}

#[test]
fn egraph_dot_is_written_for_small_graphs_and_refused_for_large() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let dot = dir.path().join("g.dot");
    ok(&["explain", s(&m), "--egraph-dot", s(&dot)]);
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph"), "{text}");
    // The e-graph of the last phase (regions start from the best program, so the
    // cancelled transposes of earlier phases are gone from it).
    assert!(
        text.contains("subgraph cluster_") && text.contains(" x "),
        "{text}"
    );
    for line in text.lines() {
        let quotes = line
            .replace("\\\\", "")
            .replace("\\\"", "")
            .matches('"')
            .count();
        assert_eq!(quotes % 2, 0, "unbalanced quotes: {line}");
    }
    let big = dir.path().join("big.dot");
    let err = kiln_fails(&[
        "explain",
        s(&wide_model(dir.path())),
        "--egraph-dot",
        s(&big),
    ]);
    assert!(err.contains("e-nodes, over the limit"), "{err}");
    assert!(!big.exists());
}

#[test]
fn emitted_graph_reparses_and_matches_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    emitted_graph_matches_source(&m, dir.path());
    for name in ["bert", "gpt2", "llama", "vit"] {
        let m = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
            "tests/fixtures/onnx/{name}_torchscript_fixed/model.onnx"
        ));
        emitted_graph_matches_source(&m, dir.path());
    }
    // `-` (and no PATH) write to stdout.
    let (out, _) = ok(&["compile", s(&m), "--emit-graph", "-"]);
    let g = kiln_ir::text::parse(&out).unwrap();
    assert!(g.nodes().len() <= 2, "{out}");
    let (out2, _) = ok(&["compile", s(&m), "--emit-graph"]);
    assert_eq!(out, out2);
}

#[test]
fn dump_after_prints_the_phase_graph_and_names_the_phases() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let (out, _) = ok(&[
        "compile",
        s(&m),
        "--dump-after",
        "simplify",
        "--dump-after",
        "regions",
    ]);
    assert!(out.contains("// graph after phase simplify"), "{out}");
    assert!(out.contains("// graph after phase regions"), "{out}");
    let first = out.split("// graph after phase regions").next().unwrap();
    kiln_ir::text::parse(first).unwrap();
    let err = kiln_fails(&["compile", s(&m), "--dump-after", "fuse"]);
    assert!(
        err.contains("unknown phase `fuse`") && err.contains("simplify, bricks, fusion, regions"),
        "{err}"
    );
}

#[test]
fn rules_list_and_check_builtin() {
    let (list, _) = ok(&["rules", "list"]);
    assert!(list.contains("algebra"), "{list}");
    assert!(list.contains("add-zero"), "{list}");
    assert!(list.contains("x + 0 = x"), "{list}");
    let (out, _) = ok(&["rules", "check"]);
    assert!(out.contains("0 unsound, 0 cannot be instantiated"), "{out}");
    let (out, _) = ok(&["rules", "check", "add-zero", "neg-neg", "--seeds", "3"]);
    assert!(out.contains("2 rules checked with 3 seeds"), "{out}");
}

#[test]
fn rules_check_fails_on_a_wrong_rule_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wrong.rules");
    std::fs::write(
        &f,
        ";; wrong on purpose: x − y = y − x\n(rule sub-swap (Sub ?x ?y) (Sub ?y ?x))\n",
    )
    .unwrap();
    let r = kiln(&["rules", "check", "sub-swap", "--rules", s(&f)]);
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{out}");
    assert!(out.contains("UNSOUND") && out.contains("sub-swap"), "{out}");
    let (list, _) = ok(&["rules", "list", "--rules", s(&f)]);
    assert!(
        list.contains("wrong") && list.contains("sub-swap"),
        "{list}"
    );
    let err = kiln_fails(&["rules", "check", "add-zeros"]);
    assert!(err.contains("no rule named `add-zeros`"), "{err}");
    assert!(err.contains("did you mean add-zero"), "{err}");
}

#[test]
fn attribution_accounts_for_every_application_and_node() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let pipeline = kiln_passes::pipeline::Pipeline::standard();
    let profile = kiln_passes::cost::TargetProfile::h200();
    let cost = kiln_passes::cost::CostModel::new(profile.clone()).with_dims(pipeline.dims.clone());
    for name in [
        "bert_torchscript_fixed",
        "llama_dynamo_dynamic",
        "gpt2_torchscript_dynamic",
    ] {
        let g = kiln_frontends::onnx::load(&root.join(name).join("model.onnx")).unwrap();
        let (opt, report) = pipeline.run(&g, &profile).unwrap();
        for p in &report.phases {
            let by_brick: usize = p.applied_by_brick.values().sum();
            let total: usize = p.applied.values().sum();
            assert_eq!(by_brick, total, "{name}: phase {}", p.name);
        }
        let e = kiln_passes::explain::explain(&g, &opt, &report, &cost);
        let sum = |f: fn(&kiln_passes::explain::BrickReport) -> f64| -> f64 {
            e.bricks.iter().map(f).sum()
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        assert!(close(sum(|b| b.cost_before_us), e.cost_before_us), "{name}");
        assert!(
            close(sum(|b| b.cost_after_us), cost.graph_cost(&opt) * 1e6),
            "{name}"
        );
        let nodes: usize = e.bricks.iter().map(|b| b.nodes_after).sum();
        assert_eq!(nodes, opt.nodes().len(), "{name}");
        let nodes: usize = e.bricks.iter().map(|b| b.nodes_before).sum();
        assert_eq!(nodes, g.nodes().len(), "{name}");
    }
}

#[test]
fn emit_graph_to_an_unwritable_place_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let out = dir.path().join("missing").join("opt.kir");
    let err = kiln_fails(&["compile", s(&m), "--emit-graph", s(&out)]);
    assert!(err.contains("cannot write"), "{err}");
    assert!(!out.exists());
    // An existing file is replaced whole.
    let out = dir.path().join("opt.kir");
    std::fs::write(&out, "old").unwrap();
    ok(&["compile", s(&m), "--emit-graph", s(&out)]);
    kiln_ir::text::parse(&std::fs::read_to_string(&out).unwrap()).unwrap();
}

#[test]
fn explain_names_each_host_fallback_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "div.onnx", &int_div_model(2));
    let (out, _) = ok(&["explain", s(&m), "--target", "cpu"]);
    assert!(
        out.contains("host fallbacks: 1 of 1 steps run on the reference interpreter"),
        "{out}"
    );
    assert!(out.contains(INT_DIV_FALLBACK), "{out}");
    let (json, _) = ok(&["explain", s(&m), "--target", "cpu", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let h = &v["host_fallbacks"];
    assert_eq!(h["status"], "scheduled", "{json}");
    assert_eq!(h["shapes"], serde_json::json!([[2, 3]]));
    assert_eq!(h["host"][0]["node"], "div");
    assert_eq!(h["host"][0]["op"], "Div");
    assert_eq!(
        h["host"][0]["reason"],
        "`Div` has no kernel expression for i64"
    );
    // A model without fallbacks says so.
    let (out, _) = ok(&["explain", s(&tiny_model(dir.path())), "--target", "cpu"]);
    assert!(out.contains("host fallbacks: none of"), "{out}");
}

#[test]
fn explain_schedules_symbolic_inputs_only_with_their_dims() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "div.onnx", &int_div_model(-1));
    let (out, _) = ok(&["explain", s(&m), "--target", "cpu"]);
    assert!(
        out.contains("host fallbacks: not scheduled (input `x` has symbolic dim `d0`: give its size with --dim d0=SIZE)"),
        "{out}"
    );
    let (out, _) = ok(&["explain", s(&m), "--target", "cpu", "--dim", "d0=5"]);
    assert!(out.contains("(scheduled for inputs [[5, 3]])"), "{out}");
    assert!(out.contains(INT_DIV_FALLBACK), "{out}");
    let err = kiln_fails(&["explain", s(&m), "--dim", "d0"]);
    assert!(err.contains("--dim `d0`: expected NAME=SIZE"), "{err}");
}
