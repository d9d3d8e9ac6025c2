//! `ptxas -v`: what each kernel of a PTX module costs on a GPU architecture
//! (registers, spills, stack, shared memory), read from the assembler's report.
//! The tests hold every generated kernel to no spills; `ptxas` comes from the
//! PyPI wheel `nvidia-cuda-nvcc` (`site-packages/nvidia/cu13/bin/ptxas`) or a
//! CUDA toolkit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use super::nvrtc::Arch;

/// The resources one kernel (an entry function) uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// The kernel's name.
    pub name: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of registers spilled to local memory, stored.
    pub spill_stores: u64,
    /// Bytes of spilled registers loaded back.
    pub spill_loads: u64,
    /// Bytes of per-thread stack (local arrays, spills).
    pub stack_frame: u64,
    /// Bytes of static shared memory per block.
    pub shared_bytes: u64,
    /// Barriers used.
    pub barriers: u32,
}

/// Why `ptxas` gave no report.
#[derive(Debug, thiserror::Error)]
pub enum PtxasError {
    /// It could not be run.
    #[error("cannot run {}: {message}", path.display())]
    Run {
        /// The executable.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// It refused the PTX.
    #[error("ptxas failed for {arch}:\n{stderr}")]
    Failed {
        /// The architecture assembled for.
        arch: Arch,
        /// Its messages.
        stderr: String,
    },
}

/// Assembles `ptx` for `arch` with `ptxas -v` (the executable at `ptxas`) and
/// returns each kernel's resources, in the report's order.
pub fn resources(ptxas: &Path, ptx: &str, arch: Arch) -> Result<Vec<KernelResources>, PtxasError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let run_err = |message: String| PtxasError::Run {
        path: ptxas.to_path_buf(),
        message,
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("kiln-ptxas-{}-{n}.ptx", std::process::id()));
    std::fs::write(&file, ptx).map_err(|e| run_err(format!("writing {}: {e}", file.display())))?;
    let out = Command::new(ptxas)
        .arg("-v")
        .arg(format!("-arch={}", arch.sm()))
        .args(["-o", "/dev/null"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| run_err(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(PtxasError::Failed { arch, stderr });
    }
    Ok(parse(&stderr))
}

/// Reads a `ptxas -v` report:
///
/// ```text
/// ptxas info    : Compiling entry function 'k' for 'sm_90a'
/// ptxas info    : Function properties for k
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 16 registers, used 1 barriers, 128 bytes smem
/// ```
pub fn parse(report: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    for line in report.lines() {
        let line = line.trim().trim_start_matches("ptxas info    :").trim();
        if let Some(rest) = line.strip_prefix("Compiling entry function '") {
            let name = rest.split('\'').next().unwrap_or_default();
            kernels.push(KernelResources {
                name: name.to_string(),
                ..KernelResources::default()
            });
            continue;
        }
        let Some(k) = kernels.last_mut() else {
            continue;
        };
        // "N bytes stack frame, N bytes spill stores, N bytes spill loads" and
        // "Used N registers, used N barriers, N bytes smem, …": numbers before
        // their labels.
        for part in line.split(',') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
            match words.as_slice() {
                ["Used", _, "registers"] => k.registers = number(1).unwrap_or(0) as u32,
                ["used", _, "barriers"] => k.barriers = number(1).unwrap_or(0) as u32,
                [_, "bytes", "stack", "frame"] => k.stack_frame = number(0).unwrap_or(0),
                [_, "bytes", "spill", "stores"] => k.spill_stores = number(0).unwrap_or(0),
                [_, "bytes", "spill", "loads"] => k.spill_loads = number(0).unwrap_or(0),
                [_, "bytes", "smem"] => k.shared_bytes = number(0).unwrap_or(0),
                _ => {}
            }
        }
    }
    kernels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let report = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'spill' for 'sm_80'\n\
            ptxas info    : Function properties for spill\n    \
            800 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 32 registers, used 1 barriers, 800 bytes cumulative stack size, \
            256 bytes smem, 360 bytes cmem[0]\n\
            ptxas info    : Compile time = 49.471 ms\n\
            ptxas info    : Compiling entry function 'k2' for 'sm_80'\n\
            ptxas info    : Used 8 registers, 360 bytes cmem[0]\n";
        let ks = parse(report);
        assert_eq!(
            ks[0],
            KernelResources {
                name: "spill".into(),
                registers: 32,
                spill_stores: 8,
                spill_loads: 4,
                stack_frame: 800,
                shared_bytes: 256,
                barriers: 1,
            }
        );
        assert_eq!((ks[1].name.as_str(), ks[1].registers), ("k2", 8));
    }
}
