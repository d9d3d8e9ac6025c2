//! Library GEMM steps inside captured graphs: on a device whose library runs
//! on its stream (as cuBLAS does on a real GPU), a program with library steps
//! is captured at its second run and replayed, the library calls with it; on
//! the simulated device, whose library steps run on the host, it never is.
//!
//! The stand-in device is the simulated GPU plus a "library" that executes the
//! cuBLAS plan of each step ([`kiln_runtime::cuda::cublas_plan`]) with cuBLAS's
//! column-major semantics on the device's memory, and records it while a
//! graph is being captured, as a stream would. So the scheduler's own GEMM
//! steps also go through the plan end to end.

use std::sync::{Arc, Mutex};

use kiln::cpu::Build;
use kiln::ir::op::{CompositeOp, NnOp};
use kiln::ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_codegen::gpu::program::{GpuProgram, LowerOptions};
use kiln_codegen::program::GemmStep;
use kiln_runtime::cuda::cublas_plan::{plan, CublasPlan, Trans};
use kiln_runtime::cuda::{DevicePtr, GpuDevice, GpuExecutable, GraphId, SimDevice};
use kiln_runtime::RunError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a stream would hold: kernel launches and library GEMMs.
#[derive(Clone)]
enum Work {
    Launch(usize, Vec<DevicePtr>),
    Gemm(GemmStep, [DevicePtr; 3]),
}

#[derive(Default)]
struct Log {
    capturing: Option<Vec<Work>>,
    graphs: Vec<Vec<Work>>,
    gemms_run: usize,
    gemms_captured: usize,
}

/// The simulated GPU with an on-stream GEMM library.
struct LibraryDevice {
    sim: SimDevice,
    log: Arc<Mutex<Log>>,
}

/// Elements an operand addressed with these sizes and strides spans.
fn extent(sizes: &[usize], strides: &[isize]) -> usize {
    1 + sizes
        .iter()
        .zip(strides)
        .map(|(&s, &t)| (s - 1) * t as usize)
        .sum::<usize>()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

impl LibraryDevice {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    /// Runs `g`'s cuBLAS plan on the device memory, column-major, as cuBLAS
    /// would (`A` is the step's b, `B` its a).
    fn run_gemm(&self, g: &GemmStep, [a, b, c]: [DevicePtr; 3]) -> Result<(), RunError> {
        assert_eq!(g.dtype, DType::F32, "the stand-in library is f32 only");
        let Some(CublasPlan::Calls { call, alpha, bases }) = plan(g) else {
            panic!("the scheduler's GEMMs here all take cuBLAS calls")
        };
        let mut sizes = g.batch.clone();
        sizes.extend([g.m, g.k]);
        let mut strides = g.a_batch_strides.clone();
        strides.extend(g.a_strides);
        let mut am = vec![0u8; 4 * extent(&sizes, &strides)];
        self.sim.download(a, &mut am)?;
        let mut sizes = g.batch.clone();
        sizes.extend([g.k, g.n]);
        let mut strides = g.b_batch_strides.clone();
        strides.extend(g.b_strides);
        let mut bm = vec![0u8; 4 * extent(&sizes, &strides)];
        self.sim.download(b, &mut bm)?;
        let (ma, mb) = (f32s(&bm), f32s(&am));
        let mut out = vec![0f32; g.batch_count() * g.m * g.n];
        for at in &bases {
            for p in 0..call.batch_count as i64 {
                let ba = (at.b + p * call.stride_a) as usize;
                let bb = (at.a + p * call.stride_b) as usize;
                let bc = (at.c + p * call.stride_c) as usize;
                for i in 0..call.m as usize {
                    for j in 0..call.n as usize {
                        let mut s = 0f32;
                        for l in 0..call.k as usize {
                            let x = match call.transa {
                                Trans::N => ma[ba + i + l * call.lda as usize],
                                Trans::T => ma[ba + l + i * call.lda as usize],
                            };
                            let y = match call.transb {
                                Trans::N => mb[bb + l + j * call.ldb as usize],
                                Trans::T => mb[bb + j + l * call.ldb as usize],
                            };
                            s += x * y;
                        }
                        out[bc + i + j * call.ldc as usize] = alpha as f32 * s;
                    }
                }
            }
        }
        let bytes: Vec<u8> = out.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.sim.upload(c, &bytes)?;
        self.lock().gemms_run += 1;
        Ok(())
    }

    fn no_copies_while_capturing(&self) -> Result<(), RunError> {
        match self.lock().capturing {
            Some(_) => Err(RunError::Internal("a copy inside a capture".into())),
            None => Ok(()),
        }
    }
}

impl GpuDevice for LibraryDevice {
    fn describe(&self) -> String {
        "cuda-sim with an on-stream GEMM library".into()
    }
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RunError> {
        self.sim.alloc(bytes)
    }
    fn free(&self, ptr: DevicePtr) {
        self.sim.free(ptr)
    }
    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RunError> {
        self.no_copies_while_capturing()?;
        self.sim.upload(dst, src)
    }
    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), RunError> {
        self.no_copies_while_capturing()?;
        self.sim.download(src, dst)
    }
    fn launch(&self, kernel: usize, args: &[DevicePtr]) -> Result<(), RunError> {
        if let Some(recorded) = &mut self.lock().capturing {
            recorded.push(Work::Launch(kernel, args.to_vec()));
            return Ok(());
        }
        self.sim.launch(kernel, args)
    }
    fn library_gemm(
        &self,
        step: &GemmStep,
        a: DevicePtr,
        b: DevicePtr,
        c: DevicePtr,
    ) -> Result<bool, RunError> {
        if plan(step).is_none() {
            return Ok(false);
        }
        let mut log = self.lock();
        if let Some(recorded) = &mut log.capturing {
            recorded.push(Work::Gemm(step.clone(), [a, b, c]));
            log.gemms_captured += 1;
            return Ok(true);
        }
        drop(log);
        self.run_gemm(step, [a, b, c])?;
        Ok(true)
    }
    fn library_captures(&self, step: &GemmStep) -> bool {
        plan(step).is_some()
    }
    fn synchronize(&self) -> Result<(), RunError> {
        Ok(())
    }
    fn begin_capture(&self) -> Result<bool, RunError> {
        let mut log = self.lock();
        assert!(log.capturing.is_none(), "one capture at a time");
        log.capturing = Some(Vec::new());
        Ok(true)
    }
    fn end_capture(&self) -> Result<GraphId, RunError> {
        let mut log = self.lock();
        let work = log.capturing.take().expect("a capture is open");
        log.graphs.push(work);
        Ok(GraphId(log.graphs.len() - 1))
    }
    fn replay(&self, graph: GraphId) -> Result<(), RunError> {
        let work = self.lock().graphs[graph.0].clone();
        for w in work {
            match w {
                Work::Launch(k, args) => self.sim.launch(k, &args)?,
                Work::Gemm(g, ptrs) => self.run_gemm(&g, ptrs)?,
            }
        }
        Ok(())
    }
}

/// `softmax(x · w)` over a batch of `x` and one weight `w`.
fn graph() -> Graph {
    let mut g = Graph::new("gpu-library-capture");
    let f32_of = |s: &[usize]| TensorType::new(DType::F32, Shape::known(s));
    let x = g.add_input("x", f32_of(&[2, 6, 40]));
    let w = g.add_input("w", f32_of(&[40, 24]));
    let z = g
        .add_node("mm", Op::Nn(NnOp::MatMul), vec![x, w], &["mm".into()], None)
        .unwrap()[0];
    let s = g
        .add_node(
            "softmax",
            Op::Composite(CompositeOp::Softmax { axis: 2 }),
            vec![z],
            &["probs".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(s);
    g
}

fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(shape.to_vec(), v)
}

/// The graph's program lowered with every GEMM a library step.
fn library_program(g: &Graph, shapes: &[Vec<usize>]) -> GpuProgram {
    let options = LowerOptions {
        library_gemm_min_macs: Some(0),
    };
    let Build::Gpu(exe) = kiln::cpu::build_simulated_with(g, shapes, 1, options).unwrap() else {
        panic!("not a GPU build")
    };
    exe.gpu_program().clone()
}

#[test]
fn library_steps_the_device_captures_are_replayed_inside_the_graph() {
    let g = graph();
    let shapes = [vec![2, 6, 40], vec![40, 24]];
    let program = library_program(&g, &shapes);
    assert_eq!(program.step_counts().1, 1, "one library step");
    assert!(program.program.constants.is_empty());
    let log = Arc::new(Mutex::new(Log::default()));
    let device = LibraryDevice {
        sim: SimDevice::new(program.kernels.clone()).unwrap(),
        log: log.clone(),
    };
    let exe = GpuExecutable::new(program, Box::new(device), vec![], 1).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    for run in 0..4 {
        let x = random(&mut rng, &shapes[0]);
        let w = random(&mut rng, &shapes[1]);
        let want = interp::run(&g, &[("x".into(), x.clone()), ("w".into(), w.clone())]).unwrap();
        let got = exe.run(&[x, w]).unwrap();
        let (got, want) = (got[0].to_f64_vec(), want[0].to_f64_vec());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5, "run {run}, [{i}]: {a} vs {b}");
        }
        assert_eq!(
            exe.uses_graph(),
            run >= 1,
            "run {run}: captured from the second"
        );
    }
    let log = log.lock().unwrap();
    assert_eq!(log.gemms_captured, 1, "recorded once, at the second run");
    assert_eq!(log.gemms_run, 4, "and run in every run, replays included");
}

#[test]
fn on_the_simulated_device_library_steps_are_never_captured() {
    let g = graph();
    let shapes = [vec![2, 6, 40], vec![40, 24]];
    let options = LowerOptions {
        library_gemm_min_macs: Some(0),
    };
    let Build::Gpu(exe) = kiln::cpu::build_simulated_with(&g, &shapes, 1, options).unwrap() else {
        panic!("not a GPU build")
    };
    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..3 {
        exe.run(&[random(&mut rng, &shapes[0]), random(&mut rng, &shapes[1])])
            .unwrap();
    }
    assert!(!exe.uses_graph());
}
