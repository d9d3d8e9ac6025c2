//! The exported transformer fixtures (`tests/fixtures/onnx/`, made by
//! `scripts/make_onnx_fixtures.py`): where they are, their `.npy` inputs and
//! outputs, and the comparison with onnxruntime's outputs every runner uses.

use std::path::{Path, PathBuf};

use kiln::ir::Tensor;

/// Allowed relative error against onnxruntime.
pub const REL_TOL: f64 = 1e-4;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

pub fn read_dir_npys(dir: &Path) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                kiln::io::npy::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Max |a − b| relative to max |b| (and each element within REL_TOL·|b| + a small floor).
pub fn check_close(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    let mut worst = 0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let d = (a - b).abs();
        assert!(
            d <= REL_TOL * b.abs() + REL_TOL * 1e-2 * scale,
            "{what}: element {i} is {a}, onnxruntime {b}"
        );
        worst = worst.max(d / scale);
    }
    assert!(worst <= REL_TOL, "{what}: relative error {worst}");
    worst
}
