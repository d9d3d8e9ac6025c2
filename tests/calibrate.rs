//! `kiln calibrate --quick`: writes a loadable profile (to `--out` or to the
//! configuration directory, where `--target cpu` resolution finds it), reports
//! progress on stderr, refuses bad arguments with one clean line; and
//! `TargetProfile::resolve_in` for built-in names, paths and unknown names.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::kiln_fails;
use kiln_passes::cost::TargetProfile;

fn calibrate(args: &[&str], config_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("calibrate")
        .arg("--quick")
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .output()
        .unwrap()
}

fn assert_positive(p: &TargetProfile) {
    for x in [
        p.peak_flops_f32,
        p.peak_flops_f16,
        p.mem_bandwidth,
        p.launch_overhead,
    ] {
        assert!(x.is_finite() && x > 0.0, "{p:?}");
    }
}

fn assert_measured(p: &TargetProfile) {
    assert_eq!(p.name, "cpu-calibrated");
    assert_positive(p);
    // Loose sanity bounds: any CPU this runs on is within them.
    assert!(p.peak_flops_f32 > 1e7 && p.peak_flops_f32 < 1e15, "{p:?}");
    assert!(p.mem_bandwidth > 1e7 && p.mem_bandwidth < 1e13, "{p:?}");
    assert!(p.launch_overhead < 1.0, "{p:?}");
}

#[test]
fn calibrate_writes_a_profile_to_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/profile.toml");
    let r = calibrate(
        &["--out", out.to_str().unwrap(), "--threads", "1"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("calibrate: f32 GEMM"), "{stderr}");
    assert!(stderr.contains("calibrate: copy"), "{stderr}");
    assert!(String::from_utf8_lossy(&r.stdout).contains("wrote cpu-calibrated"));
    let p = TargetProfile::load(&out).unwrap();
    assert_measured(&p);
    // Written atomically: nothing but the profile is left in its directory.
    let names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["profile.toml"]);
    // The profile file is also a `--target` path.
    assert_eq!(
        TargetProfile::resolve_in(out.to_str().unwrap(), None).unwrap(),
        p
    );
}

#[test]
fn calibrate_writes_to_the_config_dir_where_cpu_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln");
    // Before calibration, `cpu` is the conservative default.
    assert_eq!(
        TargetProfile::resolve_in("cpu", Some(&config)).unwrap(),
        TargetProfile::cpu_default()
    );
    let r = calibrate(&[], dir.path());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let path = TargetProfile::calibrated_cpu_path(&config);
    assert!(path.is_file(), "{}", path.display());
    let p = TargetProfile::resolve_in("cpu", Some(&config)).unwrap();
    assert_measured(&p);
    assert_eq!(p, TargetProfile::load(&path).unwrap());
    // Re-running replaces the profile in place.
    let r = calibrate(&["--threads", "2"], dir.path());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_measured(&TargetProfile::resolve_in("cpu", Some(&config)).unwrap());
    // A broken calibrated profile is an error, not a silent fallback.
    std::fs::write(&path, "name = 3").unwrap();
    let e = TargetProfile::resolve_in("cpu", Some(&config)).unwrap_err();
    assert!(e.contains("kiln calibrate"), "{e}");
}

#[test]
fn builtin_names_and_unknown_targets_resolve() {
    assert_eq!(
        TargetProfile::resolve_in("h200", None).unwrap(),
        TargetProfile::h200()
    );
    assert_eq!(
        TargetProfile::resolve_in("cpu-default", None).unwrap(),
        TargetProfile::cpu_default()
    );
    assert_eq!(
        TargetProfile::resolve_in("cpu", None).unwrap(),
        TargetProfile::cpu_default()
    );
    let e = TargetProfile::resolve_in("tpu9", None).unwrap_err();
    assert!(
        e.contains("unknown target `tpu9`") && e.contains("h200"),
        "{e}"
    );
}

#[test]
fn calibrate_refuses_zero_threads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.toml");
    let e = kiln_fails(&[
        "calibrate",
        "--quick",
        "--threads",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("--threads"), "{e}");
    assert!(!out.exists());
}

#[test]
fn an_unwritable_out_path_is_one_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("p.toml");
    let e = kiln_fails(&["calibrate", "--quick", "--out", out.to_str().unwrap()]);
    assert!(e.contains("p.toml") || e.contains("file"), "{e}");
}

/// `--target cuda-sim` runs the GPU calibration on the simulated GPU (every
/// measurement through the GPU runtime) and writes a profile that `cuda`
/// resolves to; `--target cuda` without a driver is one clean line.
#[test]
fn gpu_calibration_writes_the_profile_cuda_resolves_to() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("kiln").join("targets").join("cuda.toml");
    let out = calibrate(
        &["--target", "cuda-sim", "--out", path.to_str().unwrap()],
        home.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = TargetProfile::resolve_in("cuda", Some(&home.path().join("kiln"))).unwrap();
    assert_eq!(p.name, "cuda-sim-calibrated");
    assert_positive(&p);
    // Without a calibration, `cuda` prices for the h200.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        TargetProfile::resolve_in("cuda", Some(empty.path()))
            .unwrap()
            .name,
        "h200"
    );
    if !kiln_runtime::cuda::driver_present() {
        let out = calibrate(&["--target", "cuda"], home.path());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: no CUDA driver found"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
