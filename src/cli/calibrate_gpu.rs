//! `kiln calibrate --target cuda`: measures the GPU's roofline parameters as
//! kiln runs them and writes a target profile that `--target cuda` (the
//! optimizer's cost model) then uses.
//!
//! Every figure is a step of a GPU program timed by the runtime's profiled run
//! (the device synchronized after the step, the median over repetitions):
//! - **memory bandwidth**: an elementwise kernel over a 256 MiB f32 buffer
//!   (bytes read plus bytes written);
//! - **peak FLOP/s**: square f32 and f16 GEMM steps (2·n³ per product);
//! - **launch overhead**: the same elementwise kernel over 32 elements.
//!
//! `--target cuda-sim` measures the simulated GPU the same way (a meaningless
//! profile, but it exercises every step here, where no GPU is).

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_ir::op::{BinaryOp, NnOp};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::cost::TargetProfile;

use crate::{CompileOptions, Error, Model, Target};

/// Sizes of one calibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuPlan {
    /// Elements of the bandwidth kernel's buffer.
    pub copy_elements: usize,
    /// Square GEMM size.
    pub gemm_size: usize,
    /// Timed repetitions per figure.
    pub reps: usize,
}

impl GpuPlan {
    /// The full calibration: 256 MiB of f32, 4096² GEMMs.
    pub fn full() -> GpuPlan {
        GpuPlan {
            copy_elements: 1 << 26,
            gemm_size: 4096,
            reps: 10,
        }
    }

    /// Tiny sizes (for the simulated GPU and tests).
    pub fn quick() -> GpuPlan {
        GpuPlan {
            copy_elements: 1 << 12,
            gemm_size: 32,
            reps: 2,
        }
    }
}

/// `y = x + x` over `n` elements of `dtype`.
fn elementwise(n: usize) -> (Graph, Vec<(String, Tensor)>) {
    let mut g = Graph::new("calibrate-bandwidth");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::known(&[n])));
    let y = g
        .add_node(
            "add",
            Op::Binary(BinaryOp::Add),
            vec![x, x],
            &["y".into()],
            None,
        )
        .expect("a valid graph")[0];
    g.outputs.push(y);
    let t = Tensor::from_f64(DType::F32, vec![n], &vec![0.5; n]);
    (g, vec![("x".into(), t)])
}

/// `c = a · b`, `n × n` of `dtype`.
fn gemm(n: usize, dtype: DType) -> (Graph, Vec<(String, Tensor)>) {
    let mut g = Graph::new("calibrate-gemm");
    let ty = TensorType::new(dtype, Shape::known(&[n, n]));
    let a = g.add_input("a", ty.clone());
    let b = g.add_input("b", ty);
    let c = g
        .add_node("mm", Op::Nn(NnOp::MatMul), vec![a, b], &["c".into()], None)
        .expect("a valid graph")[0];
    g.outputs.push(c);
    let v: Vec<f64> = (0..n * n).map(|i| ((i * 7) % 13) as f64 / 13.0).collect();
    let inputs = vec![
        ("a".into(), Tensor::from_f64(dtype, vec![n, n], &v)),
        ("b".into(), Tensor::from_f64(dtype, vec![n, n], &v)),
    ];
    (g, inputs)
}

/// The median time of the program's steps (summed) for `graph` on `target`.
fn step_seconds(
    graph: Graph,
    inputs: &[(String, Tensor)],
    target: Target,
    reps: usize,
) -> Result<f64, Error> {
    let options = CompileOptions {
        threads: Some(1),
        optimize: false,
        isa: None,
    };
    let exe = Model::from_graph(graph).compile_with(&target, &options)?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|(_, t)| t.shape().to_vec()).collect();
    let build = exe
        .cpu_build(&shapes)?
        .ok_or_else(|| Error::Internal("a GPU target has builds".into()))?;
    let ordered: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    let mut samples = Vec::with_capacity(reps);
    for i in 0..=reps {
        let mut times: Vec<Duration> = Vec::new();
        build
            .run_profiled(&ordered, &mut times)
            .ok_or_else(|| Error::Internal("the calibration graph was not compiled".into()))??;
        if i > 0 {
            samples.push(times.iter().map(Duration::as_secs_f64).sum::<f64>());
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// `kiln calibrate --target cuda|cuda-sim`: measures and writes the profile to
/// `out` (or the calibrated CUDA profile's place).
pub fn run(out: Option<&Path>, target: Target, quick: bool) -> Result<i32, Error> {
    let path = super::calibrate::profile_path(out, TargetProfile::calibrated_cuda_path)?;
    // The GPU first: no driver is one line before any work.
    let device = match target {
        Target::Cuda => Some(crate::gpu::open_gpu()?),
        _ => None,
    };
    let plan = if quick || target == Target::CudaSim {
        GpuPlan::quick()
    } else {
        GpuPlan::full()
    };
    let t = Instant::now();
    let n = plan.copy_elements;
    let (g, inputs) = elementwise(n);
    let copy_s = step_seconds(g, &inputs, target, plan.reps)?;
    let bandwidth = 2.0 * (n * 4) as f64 / copy_s;
    eprintln!(
        "calibrate: elementwise kernel over {} MiB: {:.1} GB/s (read + write)",
        (n * 4) >> 20,
        bandwidth / 1e9
    );
    let (g, inputs) = elementwise(32);
    let launch = step_seconds(g, &inputs, target, plan.reps)?;
    eprintln!("calibrate: a 32-element kernel: {:.2} µs", launch * 1e6);
    let m = plan.gemm_size;
    let flops = 2.0 * (m as f64).powi(3);
    let mut peaks = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        let (g, inputs) = gemm(m, dtype);
        let s = step_seconds(g, &inputs, target, plan.reps)?;
        eprintln!(
            "calibrate: {dtype} GEMM {m}³: {:.1} GFLOP/s",
            flops / s / 1e9
        );
        peaks.push(flops / s);
    }
    let profile = TargetProfile {
        name: format!("{target}-calibrated"),
        peak_flops_f32: peaks[0],
        peak_flops_f16: peaks[1],
        mem_bandwidth: bandwidth,
        launch_overhead: launch,
    };
    let mut comment = format!(
        "Measured by `kiln calibrate --target {target}{}` in {:.1} s",
        if quick { " --quick" } else { "" },
        t.elapsed().as_secs_f64()
    );
    if let Some(gpu) = &device {
        comment += &format!("\nGPU: {} ({})", gpu.name(), gpu.arch());
    }
    comment += "\nFigures are kiln's own kernels and library steps, timed step by step.";
    profile.save(&path, &comment).map_err(Error::Output)?;
    println!(
        "wrote {} to {}: f32 {:.1} GFLOP/s, f16 {:.1} GFLOP/s, bandwidth {:.1} GB/s, launch {:.2} µs",
        profile.name,
        path.display(),
        profile.peak_flops_f32 / 1e9,
        profile.peak_flops_f16 / 1e9,
        profile.mem_bandwidth / 1e9,
        profile.launch_overhead * 1e6
    );
    Ok(0)
}
