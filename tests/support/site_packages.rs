//! Files the test venv's packages ship (real models installed by
//! `scripts/setup-python.sh`).

use std::path::{Path, PathBuf};

/// `rel` under `.venv/lib/python3.*/site-packages/`, if installed.
pub fn site_package(rel: &str) -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join("site-packages").join(rel))
        .find(|p| p.exists())
}
