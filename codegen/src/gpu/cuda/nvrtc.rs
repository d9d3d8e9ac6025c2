//! NVRTC, CUDA's run-time compiler, through `cudarc`: CUDA C → cubin for a named
//! architecture (`sm_90a`, `sm_80`), or PTX for the driver to compile when the
//! GPU is newer than NVRTC knows ([`Nvrtc::compile_for`]).
//!
//! NVRTC needs no GPU, so kiln compiles its kernels on any machine that has the
//! library. **Finding it** ([`Nvrtc::load`]): the library file or folder named
//! by `KILN_NVRTC_LIB`, then the folders the caller passes, then
//! `$VIRTUAL_ENV`'s `site-packages/nvidia/cu13/lib` (the PyPI wheel
//! `nvidia-cuda-nvrtc`), `$CUDA_HOME/lib64` and `/usr/local/cuda/lib64`, then
//! the dynamic loader's own search (`LD_LIBRARY_PATH`, the system's library
//! cache). A library found in a folder is opened by its path together with the
//! `libnvrtc-builtins` beside it, so neither needs `LD_LIBRARY_PATH`: `cudarc`,
//! which opens `libnvrtc.so.13` by name, then gets the library already loaded
//! (the loader matches the name against loaded libraries' sonames). The first
//! library loaded serves the whole process.
//!
//! A missing library is an error ([`NvrtcError::NotFound`]), never a panic
//! (`cudarc` panics when it cannot find a library, so nothing reaches it before
//! the library is known to be there).
//!
//! **Headers.** `cuda_fp16.h`/`cuda_bf16.h` are not built into NVRTC: they are
//! found in `KILN_CUDA_INCLUDE`, or in the `include` folder beside the library's
//! `lib` (where the `nvidia-cuda-runtime` wheel puts them), or in
//! `$CUDA_HOME/include` and `/usr/local/cuda/include`, and passed with `-I`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cudarc::nvrtc::result as nv;
use cudarc::nvrtc::sys;

/// Environment variable naming the NVRTC library file or its folder.
pub const LIB_ENV: &str = "KILN_NVRTC_LIB";
/// Environment variable naming the folder holding `cuda_fp16.h`.
pub const INCLUDE_ENV: &str = "KILN_CUDA_INCLUDE";
/// The library's file name (CUDA 13).
const LIB_NAME: &str = "libnvrtc.so.13";
/// The start of the file name of the library NVRTC opens at compile time.
const BUILTINS_PREFIX: &str = "libnvrtc-builtins.so";
/// The program name NVRTC's messages cite.
const PROGRAM_NAME: &CStr = c"kiln.cu";

/// Why NVRTC could not compile.
#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    /// libnvrtc is not installed where kiln looks.
    #[error(
        "NVRTC (libnvrtc.so.13) not found; looked in {}{}. Install it with \
         `bash scripts/setup-python.sh` (PyPI nvidia-cuda-nvrtc) or name it with {LIB_ENV}",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if searched.is_empty() { "the loader's path" } else { " and the loader's path" }
    )]
    NotFound {
        /// The folders and files tried before the loader's own search.
        searched: Vec<PathBuf>,
    },
    /// A library file exists but could not be opened.
    #[error("cannot load {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// An architecture name kiln does not understand.
    #[error("`{0}` is not a GPU architecture (sm_80, sm_90a, …)")]
    Arch(String),
    /// NVRTC cannot compile for the architecture.
    #[error("NVRTC {}.{} cannot compile for {arch}; it supports {}", version.0, version.1,
        supported.iter().map(|a| format!("sm_{a}")).collect::<Vec<_>>().join(", "))]
    Unsupported {
        /// The architecture asked for.
        arch: Arch,
        /// NVRTC's version.
        version: (i32, i32),
        /// The architectures it supports (`90` for `sm_90`).
        supported: Vec<u32>,
    },
    /// The source has an interior NUL byte.
    #[error("CUDA source holds a NUL byte at {0}")]
    Nul(usize),
    /// The program did not compile; `log` is NVRTC's.
    #[error("NVRTC could not compile for {arch}:\n{log}{}",
        if *missing_headers { "\n(no CUDA include folder was found: set KILN_CUDA_INCLUDE \
            or install the nvidia-cuda-runtime wheel)" } else { "" })]
    Compile {
        /// The target architecture.
        arch: Arch,
        /// NVRTC's log.
        log: String,
        /// No include folder was passed (a missing `cuda_fp16.h` is then the
        /// likely cause).
        missing_headers: bool,
    },
    /// An NVRTC call failed.
    #[error("{call} failed: {message}")]
    Api {
        /// The function.
        call: &'static str,
        /// NVRTC's description of the result code.
        message: String,
    },
}

/// A GPU architecture: compute capability `major.minor` and an optional
/// suffix (`a`: architecture-specific features such as Hopper's wgmma; `f`:
/// family-specific).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    /// `major · 10 + minor` (`90` for sm_90).
    pub number: u32,
    /// `Some('a')` for `sm_90a`.
    pub suffix: Option<char>,
}

impl Arch {
    /// Ampere (A100).
    pub const SM_80: Arch = Arch {
        number: 80,
        suffix: None,
    };
    /// Hopper (H100, H200) with its architecture-specific instructions.
    pub const SM_90A: Arch = Arch {
        number: 90,
        suffix: Some('a'),
    };

    /// Parses `sm_90a`, `compute_90a` or `90a`.
    pub fn parse(name: &str) -> Result<Arch, NvrtcError> {
        let bad = || NvrtcError::Arch(name.to_string());
        let rest = name
            .strip_prefix("sm_")
            .or_else(|| name.strip_prefix("compute_"))
            .unwrap_or(name);
        let (digits, suffix) = match rest.char_indices().last() {
            Some((i, c @ ('a' | 'f'))) => (&rest[..i], Some(c)),
            _ => (rest, None),
        };
        let number: u32 = digits.parse().map_err(|_| bad())?;
        if !(10..1000).contains(&number) || digits.starts_with('0') {
            return Err(bad());
        }
        Ok(Arch { number, suffix })
    }

    /// `sm_90a`: the real architecture a cubin is for.
    pub fn sm(&self) -> String {
        format!(
            "sm_{}{}",
            self.number,
            self.suffix.map(String::from).unwrap_or_default()
        )
    }

    /// `compute_90a`: the virtual architecture PTX is for.
    pub fn compute(&self) -> String {
        format!(
            "compute_{}{}",
            self.number,
            self.suffix.map(String::from).unwrap_or_default()
        )
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sm())
    }
}

/// What a compilation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Machine code for one real architecture (`sm_XX`), plus the PTX it was
    /// assembled from.
    Cubin,
    /// PTX for a virtual architecture (`compute_XX`), which the driver compiles
    /// for whatever GPU of that capability or later loads it.
    Ptx,
}

/// A compiled program.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The architecture compiled for.
    pub arch: Arch,
    /// Cubin or PTX.
    pub form: Form,
    /// The PTX (for [`Form::Cubin`], the PTX NVRTC assembled the cubin from).
    pub ptx: String,
    /// The cubin ([`Form::Cubin`] only).
    pub cubin: Option<Vec<u8>>,
    /// NVRTC's log (warnings; empty when there are none).
    pub log: String,
    /// Wall-clock time NVRTC took.
    pub elapsed: Duration,
}

/// A loaded NVRTC and the CUDA include folder compilations pass it.
#[derive(Clone, Debug)]
pub struct Nvrtc {
    library: Option<PathBuf>,
    include: Option<PathBuf>,
    version: (i32, i32),
}

/// The NVRTC files opened by path, kept open for the process's lifetime
/// (`cudarc` resolves its symbols from the library at any later time).
struct Loaded {
    /// The library opened by path (`None`: found by the loader's own search).
    path: Option<PathBuf>,
    _handles: Vec<libloading::Library>,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

impl Nvrtc {
    /// Finds and loads NVRTC in the usual places (see the [module docs](self)).
    pub fn load() -> Result<Nvrtc, NvrtcError> {
        Nvrtc::load_from(&[])
    }

    /// Finds and loads NVRTC, trying the folders (or library files) `dirs`
    /// after `KILN_NVRTC_LIB` and before the usual places. Once a library is
    /// loaded, later calls return it whatever `dirs` say.
    pub fn load_from(dirs: &[PathBuf]) -> Result<Nvrtc, NvrtcError> {
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.is_none() {
            *loaded = Some(open(dirs)?);
        }
        let path = loaded.as_ref().and_then(|l| l.path.clone());
        drop(loaded);
        let version = version()?;
        let include = find_include(path.as_deref());
        Ok(Nvrtc {
            library: path,
            include,
            version,
        })
    }

    /// The library file, when it was opened by path.
    pub fn library(&self) -> Option<&Path> {
        self.library.as_deref()
    }

    /// The folder passed to NVRTC with `-I` (holding `cuda_fp16.h`), if any.
    pub fn include_dir(&self) -> Option<&Path> {
        self.include.as_deref()
    }

    /// Uses `dir` as the include folder.
    pub fn with_include_dir(mut self, dir: impl Into<PathBuf>) -> Nvrtc {
        self.include = Some(dir.into());
        self
    }

    /// NVRTC's version (`(13, 0)`).
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// The real architectures NVRTC compiles for (`[75, 80, …, 90, …]`),
    /// ascending.
    pub fn supported_archs(&self) -> Result<Vec<u32>, NvrtcError> {
        let mut n: c_int = 0;
        // SAFETY: the library is loaded (an `Nvrtc` exists only then); `n` is
        // a valid out-pointer.
        check("nvrtcGetNumSupportedArchs", unsafe {
            sys::nvrtcGetNumSupportedArchs(&mut n)
        })?;
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: `archs` has room for the `n` entries NVRTC writes.
        check("nvrtcGetSupportedArchs", unsafe {
            sys::nvrtcGetSupportedArchs(archs.as_mut_ptr())
        })?;
        let mut archs: Vec<u32> = archs.into_iter().map(|a| a as u32).collect();
        archs.sort_unstable();
        Ok(archs)
    }

    /// Compiles `source` for `arch` into `form`. The options are kiln's
    /// defaults: C++17, the include folder, and NVRTC's IEEE float semantics
    /// (no fast math: the IR's NaN and rounding rules hold).
    pub fn compile(&self, source: &str, arch: Arch, form: Form) -> Result<Compiled, NvrtcError> {
        if let Some(i) = source.find('\0') {
            return Err(NvrtcError::Nul(i));
        }
        let src = CString::new(source).map_err(|e| NvrtcError::Nul(e.nul_position()))?;
        let target = match form {
            Form::Cubin => arch.sm(),
            Form::Ptx => arch.compute(),
        };
        let mut options = vec![format!("--gpu-architecture={target}"), "--std=c++17".into()];
        if let Some(dir) = &self.include {
            options.push(format!("-I{}", dir.display()));
        }
        let start = Instant::now();
        let program = Program::new(&src)?;
        // SAFETY: `program` is live until it drops at the end of this function.
        let compiled = unsafe { nv::compile_program(program.0, &options) };
        let log = program.log()?;
        if compiled.is_err() {
            return Err(NvrtcError::Compile {
                arch,
                log,
                missing_headers: self.include.is_none(),
            });
        }
        let ptx = program.ptx()?;
        let cubin = match form {
            Form::Cubin => Some(program.cubin()?),
            Form::Ptx => None,
        };
        Ok(Compiled {
            arch,
            form,
            ptx,
            cubin,
            log,
            elapsed: start.elapsed(),
        })
    }

    /// Compiles `source` for a GPU of architecture `arch`: a cubin when NVRTC
    /// knows `arch`, else PTX for the newest architecture NVRTC knows below it
    /// (the driver compiles PTX for newer GPUs). Only when NVRTC knows nothing
    /// at or below `arch` is it an error.
    pub fn compile_for(&self, source: &str, arch: Arch) -> Result<Compiled, NvrtcError> {
        let supported = self.supported_archs()?;
        if supported.contains(&arch.number) {
            return self.compile(source, arch, Form::Cubin);
        }
        match supported.iter().rev().find(|&&a| a < arch.number) {
            Some(&number) => self.compile(
                source,
                Arch {
                    number,
                    suffix: None,
                },
                Form::Ptx,
            ),
            None => Err(NvrtcError::Unsupported {
                arch,
                version: self.version,
                supported,
            }),
        }
    }
}

/// An NVRTC program, destroyed when dropped.
struct Program(sys::nvrtcProgram);

impl Program {
    fn new(src: &CStr) -> Result<Program, NvrtcError> {
        nv::create_program(src, Some(PROGRAM_NAME))
            .map(Program)
            .map_err(|e| api("nvrtcCreateProgram", e.0))
    }

    fn log(&self) -> Result<String, NvrtcError> {
        // SAFETY: the program is live.
        let log =
            unsafe { nv::get_program_log(self.0) }.map_err(|e| api("nvrtcGetProgramLog", e.0))?;
        Ok(c_text(&log).trim_end().to_string())
    }

    fn ptx(&self) -> Result<String, NvrtcError> {
        // SAFETY: the program is live and compiled.
        let ptx = unsafe { nv::get_ptx(self.0) }.map_err(|e| api("nvrtcGetPTX", e.0))?;
        Ok(c_text(&ptx))
    }

    fn cubin(&self) -> Result<Vec<u8>, NvrtcError> {
        let mut size = 0usize;
        // SAFETY: the program is live and compiled for a real architecture;
        // `size` is a valid out-pointer.
        check("nvrtcGetCUBINSize", unsafe {
            sys::nvrtcGetCUBINSize(self.0, &mut size)
        })?;
        let mut cubin = vec![0u8; size];
        // SAFETY: `cubin` has the `size` bytes NVRTC writes.
        check("nvrtcGetCUBIN", unsafe {
            sys::nvrtcGetCUBIN(self.0, cubin.as_mut_ptr() as *mut c_char)
        })?;
        Ok(cubin)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `Program::new` and is destroyed
        // only here. A failure leaks it; nothing else can be done in a drop.
        let _ = unsafe { nv::destroy_program(self.0) };
    }
}

/// NUL-terminated C text as a string (bytes after the first NUL dropped).
fn c_text(bytes: &[c_char]) -> String {
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn api(call: &'static str, code: sys::nvrtcResult) -> NvrtcError {
    // SAFETY: the library is loaded; NVRTC returns a static string.
    let message = unsafe {
        let p = sys::nvrtcGetErrorString(code);
        if p.is_null() {
            format!("{code:?}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    NvrtcError::Api { call, message }
}

fn check(call: &'static str, code: sys::nvrtcResult) -> Result<(), NvrtcError> {
    code.result().map_err(|e| api(call, e.0))
}

fn version() -> Result<(i32, i32), NvrtcError> {
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: the library is loaded; both are valid out-pointers.
    check("nvrtcVersion", unsafe {
        sys::nvrtcVersion(&mut major, &mut minor)
    })?;
    Ok((major, minor))
}

/// The folders (or files) tried, in order, before the loader's own search.
fn candidates(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(LIB_ENV) {
        out.push(PathBuf::from(p));
    }
    out.extend(dirs.iter().cloned());
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let lib = Path::new(&venv).join("lib");
        let mut sites: Vec<PathBuf> = std::fs::read_dir(&lib)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/nvidia/cu13/lib"))
            .collect();
        sites.sort();
        out.extend(sites);
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        out.push(Path::new(&home).join("lib64"));
    }
    out.push(PathBuf::from("/usr/local/cuda/lib64"));
    out
}

/// Opens NVRTC: by path from the first candidate that holds it, else by the
/// loader's search; then checks `cudarc` sees it.
fn open(dirs: &[PathBuf]) -> Result<Loaded, NvrtcError> {
    let searched = candidates(dirs);
    let mut loaded = None;
    for c in &searched {
        let (dir, file) = if c.is_file() {
            (
                c.parent().unwrap_or(Path::new(".")).to_path_buf(),
                c.clone(),
            )
        } else {
            (c.clone(), c.join(LIB_NAME))
        };
        if file.is_file() {
            loaded = Some(open_files(&dir, &file)?);
            break;
        }
    }
    // SAFETY: `is_culib_present` only tries to open the library by its names
    // (finding the one opened above first, by its soname).
    if !unsafe { sys::is_culib_present() } {
        return Err(NvrtcError::NotFound { searched });
    }
    Ok(loaded.unwrap_or(Loaded {
        path: None,
        _handles: Vec::new(),
    }))
}

/// Opens `libnvrtc-builtins` from `dir` (NVRTC opens it by name when it
/// compiles, and would not find it outside the loader's path) and the library
/// `file`.
fn open_files(dir: &Path, file: &Path) -> Result<Loaded, NvrtcError> {
    let mut builtins: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(BUILTINS_PREFIX))
        })
        .collect();
    builtins.sort();
    let mut handles = Vec::new();
    for path in builtins.iter().take(1).chain([&file.to_path_buf()]) {
        // SAFETY: loading NVRTC's own libraries runs only their initializers,
        // which have no preconditions.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| NvrtcError::Load {
            path: path.clone(),
            message: e.to_string(),
        })?;
        handles.push(lib);
    }
    Ok(Loaded {
        path: Some(file.to_path_buf()),
        _handles: handles,
    })
}

/// The CUDA include folder: `KILN_CUDA_INCLUDE`, the `include` beside the
/// library's folder, `$CUDA_HOME/include`, `/usr/local/cuda/include`; the
/// first that holds `cuda_fp16.h`.
fn find_include(library: Option<&Path>) -> Option<PathBuf> {
    let mut tries: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(INCLUDE_ENV) {
        tries.push(PathBuf::from(p));
    }
    if let Some(root) = library.and_then(|l| l.parent()).and_then(|d| d.parent()) {
        tries.push(root.join("include"));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        tries.push(Path::new(&home).join("include"));
    }
    tries.push(PathBuf::from("/usr/local/cuda/include"));
    tries.into_iter().find(|d| d.join("cuda_fp16.h").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_parse() {
        assert_eq!(Arch::parse("sm_90a").unwrap(), Arch::SM_90A);
        assert_eq!(Arch::parse("compute_80").unwrap(), Arch::SM_80);
        assert_eq!(Arch::parse("100f").unwrap().sm(), "sm_100f");
        assert_eq!(Arch::SM_90A.compute(), "compute_90a");
        for bad in ["sm_", "sm_9x", "gfx90a", "sm_090", ""] {
            assert!(Arch::parse(bad).is_err(), "{bad}");
        }
    }
}
