//! `kiln._kiln`: the native half of kiln's Python package (`python/kiln`
//! holds the Python half: `kiln.InferenceSession`, the docs and stubs).
//!
//! Every call that compiles or runs releases the GIL; models and executables
//! are shared between Python threads safely. Errors arrive as the classes of
//! [`errors`], all under `kiln.KilnError`.

mod arrays;
mod errors;
mod model;
mod text;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _kiln(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyExecutable>()?;
    m.add_class::<model::ValueInfo>()?;
    m.add_class::<model::Brick>()?;
    m.add_class::<text::TextStream>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(model::compile_file, m)?)?;
    m.add_function(wrap_pyfunction!(text::generate, m)?)?;
    m.add_function(wrap_pyfunction!(text::embed, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(available_targets, m)?)?;
    Ok(())
}

/// The targets this machine can run: `cpu`, `ref` and `cuda-sim` always,
/// `cuda` when a GPU with its driver is present.
#[pyfunction]
fn available_targets(py: Python<'_>) -> Vec<&'static str> {
    let mut targets = vec!["cpu", "ref", "cuda-sim"];
    if py.detach(|| kiln::gpu::open_gpu().is_ok()) {
        targets.push("cuda");
    }
    targets
}
