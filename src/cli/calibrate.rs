//! `kiln calibrate`: measures this CPU's roofline parameters and writes them as a
//! target profile (the format of `passes/targets/cpu-default.toml`).
//!
//! - **peak FLOP/s**: every thread of a pool of `--threads` runs its own f32 GEMM
//!   (`matrixmultiply::sgemm`) on square matrices of a few sizes; per size the
//!   median of several repetitions of the aggregate rate, the best size wins. There
//!   is no fast half-precision arithmetic on a CPU, so the f16 peak is the f32 one.
//! - **memory bandwidth**: the threads copy disjoint chunks of a buffer much larger
//!   than the caches into another; bytes read plus bytes written (as the cost model
//!   counts them) over the median time.
//! - **launch overhead**: the median time of one empty task broadcast to every
//!   thread of the pool and joined (what dispatching one kernel costs at least).
//!
//! The profile is written atomically to `--out` or to the calibrated CPU profile's
//! place ([`TargetProfile::calibrated_cpu_path`]: `$XDG_CONFIG_HOME/kiln/targets/
//! cpu.toml`, else `~/.config/kiln/targets/cpu.toml`), where `--target cpu` finds it.
//! Progress goes to stderr; `--quick` uses small sizes and few repetitions (for
//! tests: well under a second, and a rough profile).

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_passes::cost::TargetProfile;
use rayon::ThreadPool;

use crate::Error;

/// Name of the written profile.
pub const PROFILE_NAME: &str = "cpu-calibrated";

/// How much work one calibration does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Square GEMM sizes tried.
    pub gemm_sizes: Vec<usize>,
    /// FLOPs one GEMM repetition should do at least (small sizes loop to reach it).
    pub gemm_flops_per_rep: f64,
    /// Repetitions per GEMM size (the median counts).
    pub gemm_reps: usize,
    /// Bytes of the copied buffer (the destination is as large).
    pub copy_bytes: usize,
    /// Repetitions of the copy.
    pub copy_reps: usize,
    /// Repetitions of the empty broadcast.
    pub launch_reps: usize,
}

impl Plan {
    /// The full calibration: GEMMs up to 1024², a 256 MiB copy (beyond any L3).
    pub fn full() -> Plan {
        Plan {
            gemm_sizes: vec![256, 512, 1024],
            gemm_flops_per_rep: 4e9,
            gemm_reps: 5,
            copy_bytes: 256 << 20,
            copy_reps: 7,
            launch_reps: 1000,
        }
    }

    /// A quick, rough calibration (small sizes, few repetitions).
    pub fn quick() -> Plan {
        Plan {
            gemm_sizes: vec![64, 128],
            gemm_flops_per_rep: 2e7,
            gemm_reps: 3,
            copy_bytes: 8 << 20,
            copy_reps: 3,
            launch_reps: 50,
        }
    }
}

/// What one calibration measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Threads used.
    pub threads: usize,
    /// Median aggregate f32 GEMM rate per size, FLOP/s.
    pub gemm: Vec<(usize, f64)>,
    /// Median copy bandwidth, bytes/s (read + written).
    pub bandwidth: f64,
    /// Median empty broadcast time, seconds.
    pub launch: f64,
}

impl Measured {
    /// The profile of these measurements.
    pub fn profile(&self) -> TargetProfile {
        let peak = self.gemm.iter().map(|&(_, r)| r).fold(0.0, f64::max);
        TargetProfile {
            name: PROFILE_NAME.to_string(),
            peak_flops_f32: peak,
            peak_flops_f16: peak,
            mem_bandwidth: self.bandwidth,
            launch_overhead: self.launch,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `f` `reps` times (after one warm-up run); the median seconds.
fn median_time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let times = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// One thread's operands of an `n × n` GEMM.
struct Gemm {
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Gemm {
    fn new(n: usize) -> Gemm {
        let fill = |k: usize| (0..n * n).map(|i| ((i * k) % 17) as f32 / 17.0).collect();
        Gemm {
            n,
            a: fill(3),
            b: fill(5),
            c: vec![0.0; n * n],
        }
    }

    /// `C = A·B`, row-major.
    fn run(&mut self) {
        let n = self.n;
        let s = n as isize;
        // SAFETY: the three buffers hold n·n elements each, row-major with row
        // stride n and column stride 1, and C does not alias A or B.
        unsafe {
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                self.a.as_ptr(),
                s,
                1,
                self.b.as_ptr(),
                s,
                1,
                0.0,
                self.c.as_mut_ptr(),
                s,
                1,
            );
        }
    }
}

/// Median aggregate GEMM FLOP/s of `n × n` products on every thread of `pool`.
fn gemm_rate(pool: &ThreadPool, n: usize, plan: &Plan) -> f64 {
    let threads = pool.current_num_threads();
    let per_product = 2.0 * (n as f64).powi(3);
    let loops = (plan.gemm_flops_per_rep / per_product).ceil().max(1.0) as usize;
    let mut work: Vec<std::sync::Mutex<Gemm>> = (0..threads)
        .map(|_| std::sync::Mutex::new(Gemm::new(n)))
        .collect();
    let seconds = median_time(plan.gemm_reps, || {
        pool.broadcast(|ctx| {
            let mut g = work[ctx.index()].lock().expect("one user per slot");
            for _ in 0..loops {
                g.run();
            }
        });
    });
    // Keep the products observable so the work is not optimized away.
    let checksum: f32 = work
        .iter_mut()
        .map(|g| g.get_mut().expect("not poisoned").c[0])
        .sum();
    std::hint::black_box(checksum);
    threads as f64 * loops as f64 * per_product / seconds
}

/// Median copy bandwidth (bytes read + written per second) on every thread of
/// `pool`, each copying its own chunk.
fn copy_bandwidth(pool: &ThreadPool, plan: &Plan) -> f64 {
    let threads = pool.current_num_threads();
    let words = (plan.copy_bytes / 8).max(threads);
    let chunk = words.div_ceil(threads);
    let src: Vec<u64> = (0..words as u64).collect();
    let mut dst: Vec<std::sync::Mutex<&mut [u64]>> = Vec::new();
    let mut buffer = vec![0u64; words];
    for part in buffer.chunks_mut(chunk) {
        dst.push(std::sync::Mutex::new(part));
    }
    let seconds = median_time(plan.copy_reps, || {
        pool.broadcast(|ctx| {
            if let Some(slot) = dst.get(ctx.index()) {
                let mut d = slot.lock().expect("one user per slot");
                let start = ctx.index() * chunk;
                let len = d.len();
                d.copy_from_slice(&src[start..start + len]);
                std::hint::black_box(&mut **d);
            }
        });
    });
    drop(dst);
    std::hint::black_box(&buffer);
    2.0 * (words * 8) as f64 / seconds
}

/// Median time of one empty broadcast to every thread of `pool`.
fn launch_overhead(pool: &ThreadPool, plan: &Plan) -> f64 {
    let times: Vec<f64> = (0..plan.launch_reps.max(1))
        .map(|_| {
            let t = Instant::now();
            pool.broadcast(|_| ());
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// Runs the measurements of `plan` on `threads` threads, reporting progress on
/// stderr.
pub fn measure(threads: usize, plan: &Plan) -> Result<Measured, Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Output(format!("thread pool: {e}")))?;
    let mut gemm = Vec::new();
    for &n in &plan.gemm_sizes {
        let rate = gemm_rate(&pool, n, plan);
        eprintln!(
            "calibrate: f32 GEMM {n}×{n} on {threads} thread(s): {:.1} GFLOP/s",
            rate / 1e9
        );
        gemm.push((n, rate));
    }
    let bandwidth = copy_bandwidth(&pool, plan);
    eprintln!(
        "calibrate: copy of {} MiB on {threads} thread(s): {:.1} GB/s (read + write)",
        plan.copy_bytes >> 20,
        bandwidth / 1e9
    );
    let launch = launch_overhead(&pool, plan);
    eprintln!(
        "calibrate: empty task on {threads} thread(s): {:.2} µs",
        launch * 1e6
    );
    Ok(Measured {
        threads,
        gemm,
        bandwidth,
        launch,
    })
}

/// This CPU's model name, when the system says.
fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Where a calibration writes its profile: `out`, else `default` under kiln's
/// configuration directory; its folder is created and a folder at the path
/// refused, before anything is measured.
pub fn profile_path(
    out: Option<&Path>,
    default: impl Fn(&Path) -> PathBuf,
) -> Result<PathBuf, Error> {
    let path: PathBuf = match out {
        Some(p) => p.to_path_buf(),
        None => TargetProfile::config_dir()
            .map(|d| default(&d))
            .ok_or_else(|| {
                Error::Output(
                    "no configuration directory (neither XDG_CONFIG_HOME nor HOME is set); \
                     pass --out PATH"
                        .into(),
                )
            })?,
    };
    if path.is_dir() {
        return Err(Error::Output(format!("{}: is a directory", path.display())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Output(format!("{}: {e}", dir.display())))?;
    }
    Ok(path)
}

/// `kiln calibrate`: measures, writes the profile to `out` (or the default place),
/// prints where it went and what it holds.
pub fn run(out: Option<&Path>, threads: Option<usize>, quick: bool) -> Result<i32, Error> {
    let threads = match threads {
        Some(0) => return Err(Error::Input("--threads must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let path = profile_path(out, TargetProfile::calibrated_cpu_path)?;
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let t = Instant::now();
    let measured = measure(threads, &plan)?;
    let profile = measured.profile();
    let mut comment = format!(
        "Measured by `kiln calibrate{}` on {threads} thread{} in {:.1} s",
        if quick { " --quick" } else { "" },
        if threads == 1 { "" } else { "s" },
        t.elapsed().as_secs_f64()
    );
    if let Some(cpu) = cpu_name() {
        comment += &format!("\nCPU: {cpu}");
    }
    comment += "\nf32 GEMM GFLOP/s by size:";
    for (n, r) in &measured.gemm {
        comment += &format!(" {n}: {:.1}", r / 1e9);
    }
    comment += "\nNo fast half precision on a CPU: peak_flops_f16 = peak_flops_f32.";
    profile.save(&path, &comment).map_err(Error::Output)?;
    println!(
        "wrote {} to {}: peak {:.1} GFLOP/s, bandwidth {:.1} GB/s, launch {:.2} µs",
        profile.name,
        path.display(),
        profile.peak_flops_f32 / 1e9,
        profile.mem_bandwidth / 1e9,
        profile.launch_overhead * 1e6
    );
    Ok(0)
}
