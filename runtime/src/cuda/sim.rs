//! The simulated GPU: device memory in host memory, every launch run by the
//! SIMT interpreter ([`kiln_codegen::gpu::sim`]), graphs recorded and replayed.
//!
//! It enforces what a real device would: addresses must fall inside a live
//! allocation, copies are refused while a graph is being captured, a kernel's
//! argument must hold the kernel's buffer, and the interpreter's own checks
//! (out-of-bounds accesses, divergent barriers, races) become errors. An error
//! here is a bug in kiln's GPU lowering or runtime.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kiln_codegen::gpu::sim::{self, SimBuffer};
use kiln_codegen::gpu::{Access, GpuKernel};

use super::device::{DevicePtr, GpuDevice, GraphId};
use crate::RunError;

/// Alignment of every simulated allocation (CUDA's is 256 bytes).
pub const SIM_ALIGN: u64 = 256;
/// The first simulated address (non-zero, so 0 stays "no memory").
const SIM_BASE: u64 = 1 << 32;

/// Counts of what a simulated device did (for tests of the runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Kernels run (directly or inside a replayed graph).
    pub launches: usize,
    /// Graphs captured.
    pub captures: usize,
    /// Graph replays.
    pub replays: usize,
    /// Bytes copied to the device.
    pub uploaded: usize,
    /// Bytes copied from the device.
    pub downloaded: usize,
    /// Live allocations.
    pub live_allocations: usize,
}

struct State {
    /// Allocations by base address.
    memory: BTreeMap<DevicePtr, Vec<u8>>,
    next: DevicePtr,
    /// Launches being recorded, if a capture is open.
    capturing: Option<Vec<(usize, Vec<DevicePtr>)>>,
    graphs: Vec<Vec<(usize, Vec<DevicePtr>)>>,
    stats: SimStats,
}

/// A GPU simulated on the CPU, with one program's kernels loaded.
pub struct SimDevice {
    kernels: Vec<GpuKernel>,
    state: Mutex<State>,
}

impl SimDevice {
    /// A device with `kernels` loaded; each must pass the kernel checker.
    pub fn new(kernels: Vec<GpuKernel>) -> Result<SimDevice, RunError> {
        for k in &kernels {
            k.check()
                .map_err(|e| RunError::Load(format!("cuda-sim: {e}")))?;
        }
        Ok(SimDevice {
            kernels,
            state: Mutex::new(State {
                memory: BTreeMap::new(),
                next: SIM_BASE,
                capturing: None,
                graphs: Vec::new(),
                stats: SimStats::default(),
            }),
        })
    }

    /// What the device has done so far.
    pub fn stats(&self) -> SimStats {
        let s = self.lock();
        SimStats {
            live_allocations: s.memory.len(),
            ..s.stats
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run_kernel(&self, s: &mut State, kernel: usize, args: &[DevicePtr]) -> Result<(), RunError> {
        let k = self
            .kernels
            .get(kernel)
            .ok_or_else(|| RunError::Internal(format!("cuda-sim: no kernel {kernel}")))?;
        if args.len() != k.buffers.len() {
            return Err(RunError::Internal(format!(
                "cuda-sim: kernel `{}` takes {} buffers, {} passed",
                k.name,
                k.buffers.len(),
                args.len()
            )));
        }
        let bytes = |i: usize| k.buffers[i].len * k.buffers[i].scalar.size();
        let mut buffers = Vec::with_capacity(args.len());
        for (i, &p) in args.iter().enumerate() {
            let src = slice(&s.memory, p, bytes(i))?;
            buffers.push(SimBuffer::from_le_bytes(k.buffers[i].scalar, src));
        }
        sim::launch(k, &mut buffers).map_err(|e| RunError::Internal(format!("cuda-sim: {e}")))?;
        for (i, b) in buffers.iter().enumerate() {
            if k.buffers[i].access != Access::Read {
                b.write_le_bytes(slice_mut(&mut s.memory, args[i], bytes(i))?);
            }
        }
        s.stats.launches += 1;
        Ok(())
    }
}

/// The allocation holding `[ptr, ptr + len)`: its base and bytes.
fn find(
    memory: &BTreeMap<DevicePtr, Vec<u8>>,
    ptr: DevicePtr,
    len: usize,
) -> Result<(DevicePtr, usize), RunError> {
    let fail = || {
        RunError::Internal(format!(
            "cuda-sim: {len} bytes at {ptr:#x} are not inside one live allocation"
        ))
    };
    let (&base, mem) = memory.range(..=ptr).next_back().ok_or_else(fail)?;
    let start = (ptr - base) as usize;
    if start.checked_add(len).is_none_or(|end| end > mem.len()) {
        return Err(fail());
    }
    Ok((base, start))
}

fn slice(
    memory: &BTreeMap<DevicePtr, Vec<u8>>,
    ptr: DevicePtr,
    len: usize,
) -> Result<&[u8], RunError> {
    if len == 0 {
        return Ok(&[]);
    }
    let (base, start) = find(memory, ptr, len)?;
    Ok(&memory[&base][start..start + len])
}

fn slice_mut(
    memory: &mut BTreeMap<DevicePtr, Vec<u8>>,
    ptr: DevicePtr,
    len: usize,
) -> Result<&mut [u8], RunError> {
    if len == 0 {
        return Ok(&mut []);
    }
    let (base, start) = find(memory, ptr, len)?;
    let mem = memory.get_mut(&base).expect("found above");
    Ok(&mut mem[start..start + len])
}

fn no_copies_while_capturing(s: &State) -> Result<(), RunError> {
    if s.capturing.is_some() {
        return Err(RunError::Internal(
            "cuda-sim: a copy was submitted while a graph was being captured".into(),
        ));
    }
    Ok(())
}

impl GpuDevice for SimDevice {
    fn describe(&self) -> String {
        "cuda-sim (the SIMT interpreter on this CPU)".into()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RunError> {
        if bytes == 0 {
            return Ok(0);
        }
        let mut s = self.lock();
        let base = s.next;
        let size = (bytes as u64).div_ceil(SIM_ALIGN) * SIM_ALIGN;
        s.next = base.checked_add(size).ok_or(RunError::OutOfMemory(bytes))?;
        let mut mem = Vec::new();
        mem.try_reserve_exact(bytes)
            .map_err(|_| RunError::OutOfMemory(bytes))?;
        mem.resize(bytes, 0);
        s.memory.insert(base, mem);
        Ok(base)
    }

    fn free(&self, ptr: DevicePtr) {
        if ptr != 0 {
            self.lock().memory.remove(&ptr);
        }
    }

    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RunError> {
        let mut s = self.lock();
        no_copies_while_capturing(&s)?;
        slice_mut(&mut s.memory, dst, src.len())?.copy_from_slice(src);
        s.stats.uploaded += src.len();
        Ok(())
    }

    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), RunError> {
        let mut s = self.lock();
        no_copies_while_capturing(&s)?;
        dst.copy_from_slice(slice(&s.memory, src, dst.len())?);
        s.stats.downloaded += dst.len();
        Ok(())
    }

    fn launch(&self, kernel: usize, args: &[DevicePtr]) -> Result<(), RunError> {
        let mut s = self.lock();
        if let Some(recorded) = &mut s.capturing {
            recorded.push((kernel, args.to_vec()));
            return Ok(());
        }
        self.run_kernel(&mut s, kernel, args)
    }

    fn synchronize(&self) -> Result<(), RunError> {
        Ok(())
    }

    fn begin_capture(&self) -> Result<bool, RunError> {
        let mut s = self.lock();
        if s.capturing.is_some() {
            return Err(RunError::Internal(
                "cuda-sim: a capture is already open".into(),
            ));
        }
        s.capturing = Some(Vec::new());
        Ok(true)
    }

    fn end_capture(&self) -> Result<GraphId, RunError> {
        let mut s = self.lock();
        let recorded = s
            .capturing
            .take()
            .ok_or_else(|| RunError::Internal("cuda-sim: no capture is open".into()))?;
        s.graphs.push(recorded);
        s.stats.captures += 1;
        Ok(GraphId(s.graphs.len() - 1))
    }

    fn replay(&self, graph: GraphId) -> Result<(), RunError> {
        let mut s = self.lock();
        let launches = s
            .graphs
            .get(graph.0)
            .cloned()
            .ok_or_else(|| RunError::Internal(format!("cuda-sim: no graph {}", graph.0)))?;
        for (kernel, args) in &launches {
            self.run_kernel(&mut s, *kernel, args)?;
        }
        s.stats.replays += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_codegen::gpu::build::{bin, global_thread, idx, load};
    use kiln_codegen::gpu::{BinOp, Buffer, GStmt, Launch, Mem, Scalar};

    /// `out[i] = in[i] + in[i]` over `n` elements, one thread each.
    fn doubler(n: usize) -> GpuKernel {
        let mut k = GpuKernel::new("double", Launch::linear(1, 32));
        let buffer = |name: &str, access| Buffer {
            name: name.into(),
            scalar: Scalar::F32,
            len: n,
            access,
        };
        k.buffers = vec![buffer("x", Access::Read), buffer("y", Access::Write)];
        let i = global_thread();
        let x = load(Mem::Global(0), i.clone());
        k.body = vec![GStmt::If {
            cond: bin(BinOp::Lt, i.clone(), idx(n as i64)),
            then: vec![GStmt::Store {
                mem: Mem::Global(1),
                index: i,
                value: bin(BinOp::Add, x.clone(), x),
            }],
            otherwise: vec![],
        }];
        k
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn memory_is_bounds_checked_and_zero_sized_allocations_are_address_zero() {
        let d = SimDevice::new(vec![]).unwrap();
        assert_eq!(d.alloc(0).unwrap(), 0);
        let p = d.alloc(10).unwrap();
        assert_eq!(p % SIM_ALIGN, 0);
        d.upload(p + 2, &[1, 2, 3]).unwrap();
        let mut out = [0u8; 5];
        d.download(p, &mut out).unwrap();
        assert_eq!(out, [0, 0, 1, 2, 3]);
        assert!(d.upload(p + 8, &[0; 3]).is_err(), "past the end");
        assert!(d.download(p - 1, &mut out).is_err(), "before the start");
        d.free(p);
        assert!(d.download(p, &mut out).is_err(), "after free");
        assert_eq!(d.stats().live_allocations, 0);
    }

    #[test]
    fn captured_launches_run_only_when_replayed_and_see_new_inputs() {
        let d = SimDevice::new(vec![doubler(4)]).unwrap();
        let (x, y) = (d.alloc(16).unwrap(), d.alloc(16).unwrap());
        d.upload(x, &f32s(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert!(d.begin_capture().unwrap());
        d.launch(0, &[x, y]).unwrap();
        assert!(d.upload(x, &[0; 4]).is_err(), "no copies while capturing");
        let g = d.end_capture().unwrap();
        let mut out = [0u8; 16];
        d.download(y, &mut out).unwrap();
        assert_eq!(out, [0; 16], "capturing does not run the kernel");
        d.replay(g).unwrap();
        d.download(y, &mut out).unwrap();
        assert_eq!(out.to_vec(), f32s(&[2.0, 4.0, 6.0, 8.0]));
        d.upload(x, &f32s(&[-1.0, 0.5, 0.0, 10.0])).unwrap();
        d.replay(g).unwrap();
        d.download(y, &mut out).unwrap();
        assert_eq!(out.to_vec(), f32s(&[-2.0, 1.0, 0.0, 20.0]));
        let s = d.stats();
        assert_eq!((s.launches, s.captures, s.replays), (2, 1, 2));
    }

    #[test]
    fn a_launch_over_too_little_memory_is_an_error() {
        let d = SimDevice::new(vec![doubler(4)]).unwrap();
        let (x, y) = (d.alloc(16).unwrap(), d.alloc(8).unwrap());
        let e = d.launch(0, &[x, y]).unwrap_err().to_string();
        assert!(e.contains("not inside one live allocation"), "{e}");
        assert!(d.launch(0, &[x]).is_err(), "too few arguments");
        assert!(d.launch(1, &[x, y]).is_err(), "no such kernel");
    }
}
