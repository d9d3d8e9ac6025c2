//! The IR text form on imported models: every exported transformer and a spread of
//! ONNX node models print and parse back to the same graph, and the lowering of a
//! small model is pinned by a snapshot.

mod common;

use std::path::PathBuf;

use common::*;
use kiln::ir::{text, verify, Graph};

fn round_trip(name: &str, g: &Graph) {
    verify(g).unwrap_or_else(|e| panic!("{name}: {e}"));
    let printed = text::print(g);
    let parsed = text::parse_with_weights(&printed, &text::weights(g))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(parsed == *g, "{name}: parsed graph differs");
    assert_eq!(text::print(&parsed), printed, "{name}");
}

#[test]
fn imported_models_round_trip_through_text() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/onnx"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.exists())
        .collect();
    if let Some(node) = kiln_test_support::require(
        kiln_test_support::Resource::OnnxTestData,
        "imported_models_round_trip_through_text",
    )
    .map(|data| data.join("node"))
    {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(node)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("model.onnx"))
            .collect();
        cases.sort();
        paths.extend(cases.into_iter().step_by(7));
    }
    let mut checked = 0;
    for p in paths {
        // Unsupported models are the conformance suite's business.
        if let Ok(g) = kiln_frontends::onnx::load(&p) {
            round_trip(&p.display().to_string(), &g);
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} models checked");
}

#[test]
fn snapshot_of_an_imported_gemm_layer_norm_model() {
    let mut gemm = node("Gemm", "/layer/fc/Gemm", &["x", "w", "b"], &["h"]);
    gemm.attribute.push(attr_int("transB", 1));
    let mut ln = node(
        "LayerNormalization",
        "/layer/norm/LayerNormalization",
        &["h", "g", "beta"],
        &["y"],
    );
    ln.attribute.push(attr_int("axis", -1));
    let m = model(
        vec![gemm, ln, node("Relu", "/layer/act/Relu", &["y"], &["z"])],
        vec![value_info("x", FLOAT, &[-1, 3])],
        vec![value_info("z", FLOAT, &[-1, 2])],
        vec![
            f32_init("w", &[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.5, 0.25]),
            f32_init("b", &[2], &[0.1, -0.2]),
            f32_init("g", &[2], &[1.0, 1.5]),
            f32_init("beta", &[2], &[0.0, 0.5]),
        ],
    );
    let g = kiln_frontends::onnx::import(&m).unwrap();
    round_trip("gemm-ln", &g);
    insta::assert_snapshot!(text::print(&g));
}
