//! The SIMT interpreter: runs a [`GpuKernel`] on the CPU the way a GPU would, so
//! that GPU kernels are tested without a GPU.
//!
//! Blocks run one after another; inside a block every thread executes each
//! statement before any thread executes the next (lockstep), under an *active
//! mask*: an `if` runs its branches with the threads that took each, a loop keeps
//! the threads whose own bounds still hold. Stores of one statement are computed
//! by every thread before any lands, as on hardware.
//!
//! What a GPU would do silently wrong is an error here ([`SimErrorKind`]):
//! out-of-bounds and misaligned accesses, reads of shared memory no thread wrote,
//! a barrier that not every thread of the block reaches, a shuffle in a warp whose
//! lanes do not all take part, integer division by zero, and **races** — two
//! accesses to one address, at least one a write, unordered by a barrier (see
//! [`race`]), which lockstep execution would otherwise hide.

mod race;
pub mod value;

pub use value::Value;

use super::{GExpr, GStmt, GpuKernel, Mem, Scalar, ShuffleMode, Special, VarId, WARP_SIZE};
use race::{Accessor, Kind, Race, Tracker};
use value::ArithError;

/// The contents of one global buffer on the simulated device.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBuffer {
    /// Element type.
    pub scalar: Scalar,
    /// The elements.
    pub data: Vec<Value>,
}

impl SimBuffer {
    /// `len` zeros of type `scalar`.
    pub fn zeros(scalar: Scalar, len: usize) -> SimBuffer {
        SimBuffer {
            scalar,
            data: vec![Value::zero(scalar); len],
        }
    }

    /// `values` converted to type `scalar` (rounded as a cast would).
    pub fn from_f64(scalar: Scalar, values: &[f64]) -> SimBuffer {
        SimBuffer {
            scalar,
            data: values.iter().map(|&x| Value::from_f64(scalar, x)).collect(),
        }
    }

    /// The elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data.iter().map(|v| v.as_f64()).collect()
    }

    /// Elements of type `scalar` read from their little-endian bytes (the layout
    /// of kiln's tensors and of device memory).
    pub fn from_le_bytes(scalar: Scalar, bytes: &[u8]) -> SimBuffer {
        let data = bytes
            .chunks_exact(scalar.size())
            .map(|b| {
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(b);
                let bits = u64::from_le_bytes(w);
                match scalar {
                    Scalar::F32 => Value::Float(f32::from_bits(bits as u32) as f64),
                    Scalar::F64 => Value::Float(f64::from_bits(bits)),
                    Scalar::F16 => Value::Float(half::f16::from_bits(bits as u16).to_f64()),
                    Scalar::BF16 => Value::Float(half::bf16::from_bits(bits as u16).to_f64()),
                    Scalar::I8 => Value::Int(bits as u8 as i8 as i64),
                    Scalar::I16 => Value::Int(bits as u16 as i16 as i64),
                    Scalar::I32 => Value::Int(bits as u32 as i32 as i64),
                    Scalar::I64 => Value::Int(bits as i64),
                    Scalar::U8 | Scalar::U16 | Scalar::U32 | Scalar::U64 => Value::Uint(bits),
                    Scalar::Bool => Value::Bool(bits != 0),
                }
            })
            .collect();
        SimBuffer { scalar, data }
    }

    /// Writes the elements as little-endian bytes into `out` (`len × size` bytes).
    pub fn write_le_bytes(&self, out: &mut [u8]) {
        let size = self.scalar.size();
        for (v, b) in self.data.iter().zip(out.chunks_exact_mut(size)) {
            let bits: u64 = match (self.scalar, *v) {
                (Scalar::F32, x) => (x.as_f64() as f32).to_bits() as u64,
                (Scalar::F64, x) => x.as_f64().to_bits(),
                (Scalar::F16, x) => half::f16::from_f64(x.as_f64()).to_bits() as u64,
                (Scalar::BF16, x) => half::bf16::from_f64(x.as_f64()).to_bits() as u64,
                (Scalar::Bool, x) => x.as_bool() as u64,
                (_, Value::Uint(n)) => n,
                (_, x) => x.as_i64() as u64,
            };
            b.copy_from_slice(&bits.to_le_bytes()[..size]);
        }
    }
}

/// What went wrong in a simulated launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimErrorKind {
    /// The kernel fails [`GpuKernel::check`].
    IllFormed,
    /// The buffers passed do not match the kernel's.
    Arguments,
    /// An access outside its memory.
    OutOfBounds,
    /// A vector access at an index that is not a multiple of its width.
    Misaligned,
    /// A load of shared memory that no thread of the block stored.
    Uninitialized,
    /// A barrier that some threads of the block do not reach.
    BarrierDivergence,
    /// A shuffle that some lanes of a warp do not take part in.
    ShuffleDivergence,
    /// Two unordered accesses to one address, at least one a write.
    Race,
    /// Integer division or remainder by zero.
    DivisionByZero,
    /// A loop step that is not positive.
    LoopStep,
}

/// An error of a simulated launch, with where it happened.
#[derive(Clone, Debug, thiserror::Error)]
#[error("GPU kernel `{kernel}`, block {block:?}{}: {message}", thread.map(|t| format!(", thread {t}")).unwrap_or_default())]
pub struct SimError {
    /// The kernel's name.
    pub kernel: String,
    /// The block's index.
    pub block: [u32; 3],
    /// The thread, where one thread is at fault.
    pub thread: Option<u32>,
    /// What kind of error.
    pub kind: SimErrorKind,
    /// What happened, naming the memory and index.
    pub message: String,
}

/// Runs `kernel` over `buffers` (one per kernel buffer, of its type and length),
/// block by block, updating the buffers the kernel writes.
pub fn launch(kernel: &GpuKernel, buffers: &mut [SimBuffer]) -> Result<(), SimError> {
    let fail = |kind, message: String| SimError {
        kernel: kernel.name.clone(),
        block: [0; 3],
        thread: None,
        kind,
        message,
    };
    kernel
        .check()
        .map_err(|e| fail(SimErrorKind::IllFormed, e.message))?;
    if buffers.len() != kernel.buffers.len() {
        return Err(fail(
            SimErrorKind::Arguments,
            format!(
                "{} buffers passed for {} parameters",
                buffers.len(),
                kernel.buffers.len()
            ),
        ));
    }
    for (i, (b, p)) in buffers.iter().zip(&kernel.buffers).enumerate() {
        if b.scalar != p.scalar || b.data.len() != p.len {
            return Err(fail(
                SimErrorKind::Arguments,
                format!(
                    "buffer b{i} `{}` is {}[{}], the kernel takes {}[{}]",
                    p.name,
                    b.scalar,
                    b.data.len(),
                    p.scalar,
                    p.len
                ),
            ));
        }
    }
    let mut global = Global {
        buffers,
        races: kernel.buffers.iter().map(|b| Tracker::new(b.len)).collect(),
    };
    let [gx, gy, gz] = kernel.launch.grid;
    let mut linear = 0u32;
    for z in 0..gz {
        for y in 0..gy {
            for x in 0..gx {
                let mut block = BlockRun::new(kernel, [x, y, z], linear);
                let all = vec![true; kernel.launch.block as usize];
                block.exec(&mut global, &kernel.body, &all)?;
                linear += 1;
            }
        }
    }
    Ok(())
}

/// Global memory of a launch and its access history.
struct Global<'b> {
    buffers: &'b mut [SimBuffer],
    races: Vec<Tracker>,
}

/// One block being run.
struct BlockRun<'k> {
    k: &'k GpuKernel,
    block: [u32; 3],
    linear: u32,
    threads: usize,
    /// Registers, `threads × vars`, thread-major.
    regs: Vec<Value>,
    /// Shared arrays (`None` until stored).
    shared: Vec<Vec<Option<Value>>>,
    shared_races: Vec<Tracker>,
    /// Barriers passed.
    interval: u32,
}

impl<'k> BlockRun<'k> {
    fn new(k: &'k GpuKernel, block: [u32; 3], linear: u32) -> BlockRun<'k> {
        let threads = k.launch.block as usize;
        BlockRun {
            k,
            block,
            linear,
            threads,
            regs: vec![Value::Int(0); threads * k.vars.len()],
            shared: k.shared.iter().map(|s| vec![None; s.len]).collect(),
            shared_races: k.shared.iter().map(|s| Tracker::new(s.len)).collect(),
            interval: 0,
        }
    }

    fn error(&self, thread: Option<usize>, kind: SimErrorKind, message: String) -> SimError {
        SimError {
            kernel: self.k.name.clone(),
            block: self.block,
            thread: thread.map(|t| t as u32),
            kind,
            message,
        }
    }

    fn reg(&self, t: usize, v: VarId) -> Value {
        self.regs[t * self.k.vars.len() + v]
    }

    fn set(&mut self, t: usize, v: VarId, x: Value) {
        let n = self.k.vars.len();
        self.regs[t * n + v] = x;
    }

    fn who(&self, t: usize) -> Accessor {
        Accessor {
            block: self.linear,
            thread: t as u32,
            interval: self.interval,
        }
    }

    fn mem_name(&self, mem: Mem) -> String {
        match mem {
            Mem::Global(b) => format!("b{b} `{}`", self.k.buffers[b].name),
            Mem::Shared(s) => format!("s{s} `{}`", self.k.shared[s].name),
        }
    }

    /// Checks `index .. index + width` lies in `mem` and returns it as a usize.
    fn bounds(&self, t: usize, mem: Mem, index: Value, width: usize) -> Result<usize, SimError> {
        let i = index.as_i64();
        let len = self.k.mem_len(mem);
        match usize::try_from(i) {
            Ok(u) if u.checked_add(width).is_some_and(|e| e <= len) => Ok(u),
            _ => Err(self.error(
                Some(t),
                SimErrorKind::OutOfBounds,
                format!(
                    "index {i}{} outside {} of {len} elements",
                    if width > 1 {
                        format!(" (width {width})")
                    } else {
                        String::new()
                    },
                    self.mem_name(mem)
                ),
            )),
        }
    }

    fn race_error(&self, mem: Mem, index: usize, race: Race) -> SimError {
        let (a, ak) = race.first;
        let (b, bk) = race.second;
        let kind = |k: Kind| match k {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Atomic => "atomic add",
        };
        let place = |x: Accessor| {
            if x.block == self.linear {
                format!("thread {}", x.thread)
            } else {
                format!("thread {} of block #{}", x.thread, x.block)
            }
        };
        self.error(
            Some(b.thread as usize),
            SimErrorKind::Race,
            format!(
                "race on {}[{index}]: {} by {} and {} by {} with no barrier between",
                self.mem_name(mem),
                kind(ak),
                place(a),
                kind(bk),
                place(b)
            ),
        )
    }

    /// Records an access by thread `t` for race detection.
    fn track(
        &mut self,
        g: &mut Global<'_>,
        t: usize,
        mem: Mem,
        index: usize,
        kind: Kind,
    ) -> Result<(), SimError> {
        let who = self.who(t);
        let tracker = match mem {
            Mem::Global(b) => &mut g.races[b],
            Mem::Shared(s) => &mut self.shared_races[s],
        };
        tracker
            .record(index, who, kind)
            .map_err(|race| self.race_error(mem, index, race))
    }

    fn read(
        &mut self,
        g: &mut Global<'_>,
        t: usize,
        mem: Mem,
        i: usize,
    ) -> Result<Value, SimError> {
        self.track(g, t, mem, i, Kind::Read)?;
        match mem {
            Mem::Global(b) => Ok(g.buffers[b].data[i]),
            Mem::Shared(s) => self.shared[s][i].ok_or_else(|| {
                self.error(
                    Some(t),
                    SimErrorKind::Uninitialized,
                    format!(
                        "load of {}[{i}], which no thread stored",
                        self.mem_name(mem)
                    ),
                )
            }),
        }
    }

    fn write(
        &mut self,
        g: &mut Global<'_>,
        t: usize,
        mem: Mem,
        i: usize,
        x: Value,
        kind: Kind,
    ) -> Result<(), SimError> {
        self.track(g, t, mem, i, kind)?;
        match mem {
            Mem::Global(b) => g.buffers[b].data[i] = x,
            Mem::Shared(s) => self.shared[s][i] = Some(x),
        }
        Ok(())
    }

    fn special(&self, t: usize, s: Special) -> i64 {
        let l = self.k.launch;
        match s {
            Special::Thread => t as i64,
            Special::Block(a) => self.block[a.index()] as i64,
            Special::BlockDim => l.block as i64,
            Special::GridDim(a) => l.grid[a.index()] as i64,
            Special::Lane => (t as u32 % WARP_SIZE) as i64,
            Special::Warp => (t as u32 / WARP_SIZE) as i64,
        }
    }

    fn eval(&mut self, g: &mut Global<'_>, t: usize, e: &GExpr) -> Result<Value, SimError> {
        Ok(match e {
            GExpr::Lit(l) => Value::of_literal(l),
            GExpr::Var(v) => self.reg(t, *v),
            GExpr::Special(s) => Value::Int(self.special(t, *s)),
            GExpr::Load { mem, index } => {
                let i = self.eval(g, t, index)?;
                let i = self.bounds(t, *mem, i, 1)?;
                self.read(g, t, *mem, i)?
            }
            GExpr::Unary(op, x) => {
                let ty = self.k.type_of(x);
                let x = self.eval(g, t, x)?;
                value::unary(*op, ty, x)
            }
            GExpr::Binary(op, a, b) => {
                let ty = self.k.type_of(a);
                let a = self.eval(g, t, a)?;
                let b = self.eval(g, t, b)?;
                value::binary(*op, ty, a, b).map_err(|ArithError::DivisionByZero| {
                    self.error(
                        Some(t),
                        SimErrorKind::DivisionByZero,
                        format!("integer {op:?} by zero"),
                    )
                })?
            }
            GExpr::Select(c, a, b) => {
                let c = self.eval(g, t, c)?.as_bool();
                let a = self.eval(g, t, a)?;
                let b = self.eval(g, t, b)?;
                if c {
                    a
                } else {
                    b
                }
            }
            GExpr::Cast(to, x) => {
                let from = self.k.type_of(x);
                self.eval(g, t, x)?.cast(from, *to)
            }
        })
    }

    fn active(mask: &[bool]) -> impl Iterator<Item = usize> + '_ {
        mask.iter().enumerate().filter(|(_, &a)| a).map(|(t, _)| t)
    }

    fn exec(&mut self, g: &mut Global<'_>, body: &[GStmt], mask: &[bool]) -> Result<(), SimError> {
        for s in body {
            self.stmt(g, s, mask)?;
        }
        Ok(())
    }

    fn stmt(&mut self, g: &mut Global<'_>, s: &GStmt, mask: &[bool]) -> Result<(), SimError> {
        match s {
            GStmt::Let { var, value: e }
            | GStmt::Decl { var, init: e }
            | GStmt::Assign { var, value: e } => {
                for t in Self::active(mask) {
                    let x = self.eval(g, t, e)?;
                    self.set(t, *var, x);
                }
            }
            GStmt::Store { mem, index, value } => {
                let mut stores = Vec::new();
                for t in Self::active(mask) {
                    let i = self.eval(g, t, index)?;
                    let i = self.bounds(t, *mem, i, 1)?;
                    stores.push((t, i, self.eval(g, t, value)?));
                }
                for (t, i, x) in stores {
                    self.write(g, t, *mem, i, x, Kind::Write)?;
                }
            }
            GStmt::StoreVec { mem, index, values } => {
                let width = values.len();
                let mut stores = Vec::new();
                for t in Self::active(mask) {
                    let i = self.eval(g, t, index)?;
                    let i = self.aligned(t, *mem, i, width)?;
                    for (j, v) in values.iter().enumerate() {
                        stores.push((t, i + j, self.eval(g, t, v)?));
                    }
                }
                for (t, i, x) in stores {
                    self.write(g, t, *mem, i, x, Kind::Write)?;
                }
            }
            GStmt::LoadVec { dsts, mem, index } => {
                for t in Self::active(mask) {
                    let i = self.eval(g, t, index)?;
                    let i = self.aligned(t, *mem, i, dsts.len())?;
                    for (j, &d) in dsts.iter().enumerate() {
                        let x = self.read(g, t, *mem, i + j)?;
                        self.set(t, d, x);
                    }
                }
            }
            GStmt::AtomicAdd { mem, index, value } => {
                let ty = self.k.mem_scalar(*mem);
                for t in Self::active(mask) {
                    let i = self.eval(g, t, index)?;
                    let i = self.bounds(t, *mem, i, 1)?;
                    let x = self.eval(g, t, value)?;
                    let Mem::Global(b) = *mem else {
                        unreachable!("the checker refuses shared atomics")
                    };
                    let old = g.buffers[b].data[i];
                    let sum =
                        value::binary(super::BinOp::Add, ty, old, x).unwrap_or(Value::zero(ty));
                    self.write(g, t, *mem, i, sum, Kind::Atomic)?;
                }
            }
            GStmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let mut live = mask.to_vec();
                for t in Self::active(mask) {
                    let x = self.eval(g, t, start)?;
                    self.set(t, *var, x);
                }
                loop {
                    for (t, alive) in live.iter_mut().enumerate() {
                        if *alive {
                            let bound = self.eval(g, t, end)?.as_i64();
                            *alive = self.reg(t, *var).as_i64() < bound;
                        }
                    }
                    if !live.contains(&true) {
                        break;
                    }
                    self.exec(g, body, &live)?;
                    for (t, alive) in live.iter_mut().enumerate() {
                        if !*alive {
                            continue;
                        }
                        let inc = self.eval(g, t, step)?.as_i64();
                        if inc <= 0 {
                            return Err(self.error(
                                Some(t),
                                SimErrorKind::LoopStep,
                                format!("loop v{var} steps by {inc}"),
                            ));
                        }
                        match self.reg(t, *var).as_i64().checked_add(inc) {
                            Some(next) => self.set(t, *var, Value::Int(next)),
                            None => *alive = false,
                        }
                    }
                }
            }
            GStmt::If {
                cond,
                then,
                otherwise,
            } => {
                let mut taken = vec![false; self.threads];
                let mut not_taken = vec![false; self.threads];
                for t in Self::active(mask) {
                    if self.eval(g, t, cond)?.as_bool() {
                        taken[t] = true;
                    } else {
                        not_taken[t] = true;
                    }
                }
                if taken.contains(&true) {
                    self.exec(g, then, &taken)?;
                }
                if not_taken.contains(&true) {
                    self.exec(g, otherwise, &not_taken)?;
                }
            }
            GStmt::Barrier => {
                if let Some(missing) = mask.iter().position(|a| !a) {
                    let arrived = mask.iter().filter(|&&a| a).count();
                    return Err(self.error(
                        Some(missing),
                        SimErrorKind::BarrierDivergence,
                        format!(
                            "barrier reached by {arrived} of {} threads; thread {missing} \
                             does not reach it",
                            self.threads
                        ),
                    ));
                }
                self.interval += 1;
                for tracker in &mut self.shared_races {
                    tracker.clear();
                }
            }
            GStmt::Shuffle {
                dst,
                src,
                mode,
                arg,
            } => self.shuffle(g, mask, *dst, *src, *mode, arg)?,
        }
        Ok(())
    }

    fn aligned(&self, t: usize, mem: Mem, index: Value, width: usize) -> Result<usize, SimError> {
        let i = self.bounds(t, mem, index, width)?;
        if i % width != 0 {
            return Err(self.error(
                Some(t),
                SimErrorKind::Misaligned,
                format!(
                    "vector access of {width} at index {i} of {} (not a multiple of {width})",
                    self.mem_name(mem)
                ),
            ));
        }
        Ok(i)
    }

    fn shuffle(
        &mut self,
        g: &mut Global<'_>,
        mask: &[bool],
        dst: VarId,
        src: VarId,
        mode: ShuffleMode,
        arg: &GExpr,
    ) -> Result<(), SimError> {
        let warp = WARP_SIZE as usize;
        for base in (0..self.threads).step_by(warp) {
            let lanes = &mask[base..base + warp];
            if !lanes.contains(&true) {
                continue;
            }
            if let Some(off) = lanes.iter().position(|a| !a) {
                return Err(self.error(
                    Some(base + off),
                    SimErrorKind::ShuffleDivergence,
                    format!(
                        "shuffle of v{src} in warp {} without lane {off} (every lane must take part)",
                        base / warp
                    ),
                ));
            }
            let values: Vec<Value> = (0..warp).map(|l| self.reg(base + l, src)).collect();
            for l in 0..warp {
                let a = self.eval(g, base + l, arg)?.as_i64();
                let from = match mode {
                    ShuffleMode::Xor => l as i64 ^ a,
                    ShuffleMode::Down => l as i64 + a,
                    ShuffleMode::Up => l as i64 - a,
                    ShuffleMode::Index => a.rem_euclid(warp as i64),
                };
                let from = if (0..warp as i64).contains(&from) {
                    from as usize
                } else {
                    l
                };
                self.set(base + l, dst, values[from]);
            }
        }
        Ok(())
    }
}
