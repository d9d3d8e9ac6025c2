//! The on-disk cache of compiled GPU modules: NVRTC's output (a cubin, or PTX)
//! keyed by a hash of the CUDA C source, the architecture asked for and NVRTC's
//! version, so a model whose kernels were compiled before starts without
//! NVRTC's seconds.
//!
//! **Where:** `$KILN_CACHE_DIR/kernels`, else `$XDG_CACHE_HOME/kiln/kernels`,
//! else `~/.cache/kiln/kernels`; `KILN_CACHE_DIR=off` turns the cache off.
//! Entries are written to a temporary file and renamed, so a reader never sees
//! half an entry; a cache that cannot be written only costs the next compile.

use std::path::{Path, PathBuf};

use super::nvrtc::{Arch, Form, Nvrtc, NvrtcError};

/// Environment variable naming the cache folder (`off`: no cache).
pub const CACHE_ENV: &str = "KILN_CACHE_DIR";
/// Bumped when the entries' meaning changes.
const FORMAT: &str = "kiln-kernel-cache-1";

/// A compiled module, from NVRTC or the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedModule {
    /// A cubin, or PTX text.
    pub image: Vec<u8>,
    /// Which of the two.
    pub form: Form,
    /// Whether it came from the cache.
    pub hit: bool,
}

/// A folder of compiled modules (or none: every compile runs NVRTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCache {
    dir: Option<PathBuf>,
}

impl KernelCache {
    /// The cache in its usual place (see the [module docs](self)).
    pub fn default_location() -> KernelCache {
        let dir = match std::env::var_os(CACHE_ENV) {
            Some(v) if v == "off" => None,
            Some(v) if !v.is_empty() => Some(PathBuf::from(v).join("kernels")),
            _ => std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("kiln").join("kernels")),
        };
        KernelCache { dir }
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> KernelCache {
        KernelCache {
            dir: Some(dir.into()),
        }
    }

    /// No cache.
    pub fn disabled() -> KernelCache {
        KernelCache { dir: None }
    }

    /// The folder, if caching.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The entry name for `source` compiled for `arch` by NVRTC `version`.
    pub fn key(source: &str, arch: Arch, version: (i32, i32)) -> String {
        let text = format!(
            "{FORMAT}\0{}\0{}.{}\0{source}",
            arch.sm(),
            version.0,
            version.1
        );
        format!("{:032x}", fnv1a_128(text.as_bytes()))
    }

    /// `source` compiled for a GPU of architecture `arch`
    /// ([`Nvrtc::compile_for`]), from the cache when it holds it.
    pub fn compile_for(
        &self,
        nvrtc: &Nvrtc,
        source: &str,
        arch: Arch,
    ) -> Result<CachedModule, NvrtcError> {
        let key = KernelCache::key(source, arch, nvrtc.version());
        if let Some(dir) = &self.dir {
            for (form, ext) in [(Form::Cubin, "cubin"), (Form::Ptx, "ptx")] {
                if let Ok(image) = std::fs::read(dir.join(format!("{key}.{ext}"))) {
                    if !image.is_empty() {
                        return Ok(CachedModule {
                            image,
                            form,
                            hit: true,
                        });
                    }
                }
            }
        }
        let compiled = nvrtc.compile_for(source, arch)?;
        let (image, ext) = match (compiled.form, compiled.cubin) {
            (Form::Cubin, Some(cubin)) => (cubin, "cubin"),
            _ => (compiled.ptx.into_bytes(), "ptx"),
        };
        if let Some(dir) = &self.dir {
            // A failed write only means the next run compiles again.
            let _ = write_atomically(dir, &format!("{key}.{ext}"), &image);
        }
        Ok(CachedModule {
            image,
            form: compiled.form,
            hit: false,
        })
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// The 128-bit FNV-1a hash (stable across builds and platforms, unlike the
/// standard library's hasher).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ b as u128).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_source_arch_and_version() {
        let k = KernelCache::key("a", Arch::SM_90A, (13, 0));
        assert_eq!(k.len(), 32);
        assert_eq!(k, KernelCache::key("a", Arch::SM_90A, (13, 0)));
        assert_ne!(k, KernelCache::key("b", Arch::SM_90A, (13, 0)));
        assert_ne!(k, KernelCache::key("a", Arch::SM_80, (13, 0)));
        assert_ne!(k, KernelCache::key("a", Arch::SM_90A, (13, 1)));
    }

    #[test]
    fn fnv_matches_the_published_test_vector() {
        // FNV-1a 128 of the empty string is the offset basis; of "a" it is
        // d228cb696f1a8caf78912b704e4a8964 (the reference implementation's).
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
