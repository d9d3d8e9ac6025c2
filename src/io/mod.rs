//! Tensor files: `.npy` and ONNX `.pb` inputs, `.safetensors` outputs.

pub mod npy;
pub mod safetensors_out;

use std::path::Path;

use kiln_ir::Tensor;

use crate::Error;

/// Reads an input tensor from a `.npy` file or an ONNX `TensorProto` (`.pb`) file.
pub fn read_tensor(path: &Path) -> Result<Tensor, Error> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy::read(path),
        Some("pb") => {
            kiln_frontends::onnx::read_tensor_file(path).map_err(|e| Error::Input(e.to_string()))
        }
        _ => Err(Error::Input(format!(
            "`{}`: unknown tensor file type (expected .npy or .pb)",
            path.display()
        ))),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a
/// rename, so a reader never sees a half-written file and an existing one is only
/// replaced once the new one is complete.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e: std::io::Error| Error::Output(format!("cannot write `{}`: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
