//! kiln's errors as Python exceptions: one base class, `kiln.KilnError`, and a
//! subclass per kind of fault a caller handles differently.

use kiln::Error;
use kiln_frontends::onnx::OnnxError;
use kiln_ir::interp::EvalError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

pyo3::create_exception!(
    kiln,
    KilnError,
    PyException,
    "Base class of every error kiln raises."
);
pyo3::create_exception!(
    kiln,
    InvalidModelError,
    KilnError,
    "The model file or folder is missing, malformed or inconsistent."
);
pyo3::create_exception!(
    kiln,
    UnsupportedOpError,
    InvalidModelError,
    "The model uses operators kiln does not implement; `ops` lists every one as \
     (op_type, [node names])."
);
pyo3::create_exception!(
    kiln,
    InputError,
    KilnError,
    "An input or argument is wrong: an unknown or missing input name, a dtype or \
     shape the model does not take, a bad option value. The message names it."
);
pyo3::create_exception!(
    kiln,
    TargetUnavailableError,
    KilnError,
    "The target (e.g. `cuda`) cannot run here: no GPU, no driver, no NVRTC."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KilnError", py.get_type::<KilnError>())?;
    m.add("InvalidModelError", py.get_type::<InvalidModelError>())?;
    m.add("UnsupportedOpError", py.get_type::<UnsupportedOpError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add(
        "TargetUnavailableError",
        py.get_type::<TargetUnavailableError>(),
    )?;
    Ok(())
}

/// An input error with this message.
pub fn input_error(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}

/// The Python exception for a kiln error.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Onnx(OnnxError::Unsupported(ops)) => Python::attach(|py| {
            let err = UnsupportedOpError::new_err(message);
            let listed: PyResult<Bound<'_, PyList>> = ops
                .iter()
                .map(|(op, nodes)| {
                    PyTuple::new(
                        py,
                        [
                            op.into_pyobject(py)?.into_any(),
                            PyList::new(py, nodes)?.into_any(),
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()
                .and_then(|items| PyList::new(py, items));
            if let Ok(list) = listed {
                let _ = err.value(py).setattr("ops", list);
            }
            err
        }),
        Error::Onnx(_) | Error::HuggingFace(_) | Error::IllFormed(_) | Error::UnknownModel(_) => {
            InvalidModelError::new_err(message)
        }
        Error::Input(_)
        | Error::Eval(
            EvalError::MissingInput(_)
            | EvalError::UnknownInput { .. }
            | EvalError::InputMismatch { .. },
        )
        | Error::Run(kiln_runtime::RunError::Input(_)) => InputError::new_err(message),
        Error::TargetUnavailable(_)
        | Error::Gpu(_)
        | Error::Run(kiln_runtime::RunError::NoDevice(_)) => {
            TargetUnavailableError::new_err(message)
        }
        _ => KilnError::new_err(message),
    }
}

/// `Result<T, kiln::Error>` into a Python result.
pub trait IntoPyResult<T> {
    /// The value, or the matching Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
