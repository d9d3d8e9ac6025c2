//! One [`GpuKernel`] as a CUDA C `__global__` function: the signature, shared
//! arrays, the thread-position values it reads, and its statements and
//! expressions with the kernel IR's semantics.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ctype::{self, is_narrow, mem_type, reg_type, sanitize};
use super::helpers::Helper;
use crate::gpu::{Access, Axis, GExpr, GStmt, GpuKernel, Mem, ShuffleMode, Special};
use crate::kernel::{BinOp, Literal, Scalar, UnOp};

/// What the kernels of one translation unit need besides themselves: helper
/// functions and vector types, each defined once (sorted by name, so the
/// unit does not depend on which kernel asked first).
#[derive(Debug, Default)]
pub(super) struct Support {
    /// Helper name → definition.
    pub(super) helpers: BTreeMap<String, String>,
    /// Vector type name → definition.
    pub(super) vectors: BTreeMap<String, String>,
}

impl Support {
    /// Records `h` as used and returns its name.
    fn helper(&mut self, h: Helper) -> String {
        let name = h.name();
        self.helpers
            .entry(name.clone())
            .or_insert_with(|| h.definition());
        name
    }

    /// The aligned struct of `width` elements of type `s` one vector access
    /// moves, recorded as used; returns its name.
    fn vector(&mut self, s: Scalar, width: usize) -> String {
        let name = format!("kiln_{s}x{width}");
        let bytes = width * s.size();
        let def = format!(
            "struct __align__({bytes}) {name} {{\n    {} v[{width}];\n}};\n",
            mem_type(s)
        );
        self.vectors.entry(name.clone()).or_insert(def);
        name
    }
}

/// The thread-position values, in the order their declarations are printed.
const SPECIALS: [Special; 10] = [
    Special::Thread,
    Special::Lane,
    Special::Warp,
    Special::Block(Axis::X),
    Special::Block(Axis::Y),
    Special::Block(Axis::Z),
    Special::BlockDim,
    Special::GridDim(Axis::X),
    Special::GridDim(Axis::Y),
    Special::GridDim(Axis::Z),
];

/// The local constant a thread-position value is read through, and its
/// definition.
fn special(s: Special) -> (String, String) {
    match s {
        Special::Thread => ("thread_idx".into(), "threadIdx.x".into()),
        Special::Lane => ("lane".into(), "threadIdx.x & 31u".into()),
        Special::Warp => ("warp".into(), "threadIdx.x >> 5".into()),
        Special::Block(a) => (
            format!("block_idx_{}", a.name()),
            format!("blockIdx.{}", a.name()),
        ),
        Special::BlockDim => ("block_dim".into(), "blockDim.x".into()),
        Special::GridDim(a) => (
            format!("grid_dim_{}", a.name()),
            format!("gridDim.{}", a.name()),
        ),
    }
}

/// `k` as a `__global__` function (the kernel has passed [`GpuKernel::check`]).
pub(super) fn kernel(k: &GpuKernel, support: &mut Support) -> String {
    let mut e = Emitter {
        k,
        support,
        specials: [false; SPECIALS.len()],
        names: Names::of(k),
    };
    let mut body = String::new();
    e.block(&k.body, 1, &mut body);

    let mut out = String::new();
    let l = k.launch;
    let _ = writeln!(
        out,
        "// {}<<<{:?}, {}>>>, {} bytes of shared memory per block",
        k.name,
        l.grid,
        l.block,
        k.shared_bytes()
    );
    let bounds = match k.min_blocks {
        Some(n) => format!("{}, {n}", l.block),
        None => l.block.to_string(),
    };
    let _ = write!(
        out,
        "extern \"C\" __global__ void __launch_bounds__({bounds}) {}(",
        k.name
    );
    for (i, b) in k.buffers.iter().enumerate() {
        let konst = if b.access == Access::Read {
            "const "
        } else {
            ""
        };
        let sep = if i + 1 < k.buffers.len() { "," } else { "" };
        let _ = write!(
            out,
            "\n    {konst}{}* __restrict__ {}{sep}",
            mem_type(b.scalar),
            e.names.buffers[i]
        );
    }
    out.push_str(")\n{\n");
    for (i, s) in k.shared.iter().enumerate() {
        // 16-byte aligned, so any vector access at a multiple of its width is;
        // at least one element (C has no empty arrays).
        let _ = writeln!(
            out,
            "    __shared__ __align__(16) {} {}[{}];",
            mem_type(s.scalar),
            e.names.shared[i],
            s.len.max(1)
        );
    }
    for (i, s) in SPECIALS.iter().enumerate() {
        if e.specials[i] {
            let (name, def) = special(*s);
            let _ = writeln!(out, "    const long long {name} = {def};");
        }
    }
    out.push_str(&body);
    out.push_str("}\n");
    out
}

/// C names of a kernel's memories: `b<i>_<name>` and `s<i>_<name>` (the index
/// keeps them unique whatever the IR names are).
struct Names {
    buffers: Vec<String>,
    shared: Vec<String>,
}

impl Names {
    fn of(k: &GpuKernel) -> Names {
        let name = |prefix: char, i: usize, n: &str| match sanitize(n) {
            s if s.is_empty() => format!("{prefix}{i}"),
            s => format!("{prefix}{i}_{s}"),
        };
        Names {
            buffers: (k.buffers.iter().enumerate())
                .map(|(i, b)| name('b', i, &b.name))
                .collect(),
            shared: (k.shared.iter().enumerate())
                .map(|(i, s)| name('s', i, &s.name))
                .collect(),
        }
    }
}

struct Emitter<'a> {
    k: &'a GpuKernel,
    support: &'a mut Support,
    /// Which of [`SPECIALS`] the body reads.
    specials: [bool; SPECIALS.len()],
    names: Names,
}

impl Emitter<'_> {
    fn mem(&self, m: Mem) -> &str {
        match m {
            Mem::Global(b) => &self.names.buffers[b],
            Mem::Shared(s) => &self.names.shared[s],
        }
    }

    fn block(&mut self, body: &[GStmt], depth: usize, out: &mut String) {
        for s in body {
            self.stmt(s, depth, out);
        }
    }

    fn stmt(&mut self, s: &GStmt, depth: usize, out: &mut String) {
        let pad = "    ".repeat(depth);
        let k = self.k;
        match s {
            GStmt::Let { var, value } => {
                let v = self.expr(value);
                let _ = writeln!(
                    out,
                    "{pad}const {} v{var} = {};",
                    reg_type(k.vars[*var]),
                    bare(&v)
                );
            }
            GStmt::Decl { var, init } => {
                let v = self.expr(init);
                let _ = writeln!(
                    out,
                    "{pad}{} v{var} = {};",
                    reg_type(k.vars[*var]),
                    bare(&v)
                );
            }
            GStmt::Assign { var, value } => {
                let v = self.expr(value);
                let _ = writeln!(out, "{pad}v{var} = {};", bare(&v));
            }
            GStmt::Store { mem, index, value } => {
                let i = self.expr(index);
                let v = self.stored(k.mem_scalar(*mem), value);
                let _ = writeln!(out, "{pad}{}[{}] = {};", self.mem(*mem), bare(&i), bare(&v));
            }
            GStmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let (a, b, c) = (self.expr(start), self.expr(end), self.expr(step));
                // The bound stays parenthesized: it is an operand of `<`.
                let _ = writeln!(
                    out,
                    "{pad}for (long long v{var} = {}; v{var} < {b}; v{var} += {}) {{",
                    bare(&a),
                    bare(&c)
                );
                self.block(body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            GStmt::If {
                cond,
                then,
                otherwise,
            } => {
                let c = self.expr(cond);
                let _ = writeln!(out, "{pad}if ({}) {{", bare(&c));
                self.block(then, depth + 1, out);
                if !otherwise.is_empty() {
                    let _ = writeln!(out, "{pad}}} else {{");
                    self.block(otherwise, depth + 1, out);
                }
                let _ = writeln!(out, "{pad}}}");
            }
            GStmt::Barrier => {
                let _ = writeln!(out, "{pad}__syncthreads();");
            }
            GStmt::Shuffle {
                dst,
                src,
                mode,
                arg,
            } => {
                let v = self.shuffle(*src, *mode, arg);
                let _ = writeln!(out, "{pad}const {} v{dst} = {v};", reg_type(k.vars[*dst]));
            }
            GStmt::LoadVec { dsts, mem, index } => {
                let s = k.mem_scalar(*mem);
                let i = self.expr(index);
                let m = self.mem(*mem).to_string();
                if let [d] = dsts.as_slice() {
                    let v = loaded(s, format!("{m}[{}]", bare(&i)));
                    let _ = writeln!(out, "{pad}const {} v{d} = {v};", reg_type(s));
                    return;
                }
                let vt = self.support.vector(s, dsts.len());
                let tmp = format!("vec_v{}", dsts[0]);
                let _ = writeln!(
                    out,
                    "{pad}const {vt} {tmp} = *reinterpret_cast<const {vt}*>({m} + {i});"
                );
                for (j, d) in dsts.iter().enumerate() {
                    let v = loaded(s, format!("{tmp}.v[{j}]"));
                    let _ = writeln!(out, "{pad}const {} v{d} = {v};", reg_type(s));
                }
            }
            GStmt::StoreVec { mem, index, values } => {
                let s = k.mem_scalar(*mem);
                let i = self.expr(index);
                let vs: Vec<String> = (values.iter())
                    .map(|v| bare(&self.stored(s, v)).to_string())
                    .collect();
                let m = self.mem(*mem).to_string();
                if let [v] = vs.as_slice() {
                    let _ = writeln!(out, "{pad}{m}[{i}] = {v};");
                    return;
                }
                let vt = self.support.vector(s, vs.len());
                let _ = writeln!(
                    out,
                    "{pad}*reinterpret_cast<{vt}*>({m} + {i}) = {vt}{{{{{}}}}};",
                    vs.join(", ")
                );
            }
            GStmt::AtomicAdd { mem, index, value } => {
                let i = self.expr(index);
                let v = self.expr(value);
                let v = bare(&v);
                let m = self.mem(*mem).to_string();
                // CUDA has no signed 64-bit atomicAdd; two's complement addition
                // is the same on the unsigned bits.
                let _ = if k.mem_scalar(*mem) == Scalar::I64 {
                    writeln!(
                        out,
                        "{pad}atomicAdd(reinterpret_cast<unsigned long long*>({m} + {i}), \
                         (unsigned long long){v});"
                    )
                } else {
                    writeln!(out, "{pad}atomicAdd({m} + {i}, {v});")
                };
            }
        }
    }

    /// A register value of type `s` as the memory type stores it.
    fn stored(&mut self, s: Scalar, value: &GExpr) -> String {
        let v = self.expr(value);
        if s == Scalar::Bool {
            format!("(unsigned char){v}")
        } else {
            v
        }
    }

    fn shuffle(&mut self, src: usize, mode: ShuffleMode, arg: &GExpr) -> String {
        const FULL: &str = "0xffffffffu";
        // A constant offset within the warp: CUDA's shuffle is the IR's (Down
        // and Up keep the lane's own value past the warp's end, as the IR does).
        if let GExpr::Lit(Literal::Int(n @ 0..=31, _)) = arg {
            let f = match mode {
                ShuffleMode::Xor => "__shfl_xor_sync",
                ShuffleMode::Down => "__shfl_down_sync",
                ShuffleMode::Up => "__shfl_up_sync",
                ShuffleMode::Index => "__shfl_sync",
            };
            return format!("{f}({FULL}, v{src}, {n})");
        }
        let a = self.expr(arg);
        let a = bare(&a);
        // Index: the lane mod 32, which CUDA's shuffle takes too.
        if mode == ShuffleMode::Index {
            return format!("__shfl_sync({FULL}, v{src}, (int)({a} & 31))");
        }
        // Any other operand: the IR's source lane, where a lane outside the warp
        // keeps its own value (CUDA would take the operand mod 32).
        let lane = self.expr(&GExpr::Special(Special::Lane));
        let from = match mode {
            ShuffleMode::Xor => format!("{lane} ^ {a}"),
            ShuffleMode::Down => {
                let add = self.support.helper(Helper::Wrap(BinOp::Add, Scalar::I64));
                format!("{add}({lane}, {a})")
            }
            _ => {
                let sub = self.support.helper(Helper::Wrap(BinOp::Sub, Scalar::I64));
                format!("{sub}({lane}, {a})")
            }
        };
        let f = self.support.helper(Helper::ShuffleLane);
        format!("{f}(v{src}, {from})")
    }

    fn expr(&mut self, e: &GExpr) -> String {
        match e {
            GExpr::Lit(l) => ctype::literal(l),
            GExpr::Var(v) => format!("v{v}"),
            GExpr::Special(s) => {
                let i = SPECIALS.iter().position(|x| x == s).unwrap_or(0);
                self.specials[i] = true;
                special(*s).0
            }
            GExpr::Load { mem, index } => {
                let i = self.expr(index);
                let place = format!("{}[{}]", self.mem(*mem), bare(&i));
                loaded(self.k.mem_scalar(*mem), place)
            }
            GExpr::Unary(op, x) => {
                let t = self.k.type_of(x);
                let x = self.expr(x);
                self.unary(*op, t, x)
            }
            GExpr::Binary(op, a, b) => {
                let t = self.k.type_of(a);
                let (a, b) = (self.expr(a), self.expr(b));
                self.binary(*op, t, a, b)
            }
            GExpr::Select(c, a, b) => {
                let (c, a, b) = (self.expr(c), self.expr(a), self.expr(b));
                format!("({c} ? {a} : {b})")
            }
            GExpr::Cast(to, x) => {
                let from = self.k.type_of(x);
                let x = self.expr(x);
                self.cast(from, *to, x)
            }
        }
    }

    fn unary(&mut self, op: UnOp, t: Scalar, x: String) -> String {
        if t.is_float() {
            let f = if t == Scalar::F32 { "f" } else { "" };
            let one = if t == Scalar::F32 { "1.0f" } else { "1.0" };
            let call = |name: &str| format!("{name}{f}({})", bare(&x));
            return match op {
                UnOp::Neg => format!("(-{x})"),
                UnOp::Abs => call("fabs"),
                UnOp::Sqrt => call("sqrt"),
                UnOp::Exp => call("exp"),
                UnOp::Log => call("log"),
                UnOp::Tanh => call("tanh"),
                UnOp::Erf => call("erf"),
                UnOp::Sigmoid => format!("({one} / ({one} + exp{f}(-{x})))"),
                UnOp::Sin => call("sin"),
                UnOp::Cos => call("cos"),
                UnOp::Tan => call("tan"),
                UnOp::Asin => call("asin"),
                UnOp::Acos => call("acos"),
                UnOp::Atan => call("atan"),
                UnOp::Sinh => call("sinh"),
                UnOp::Cosh => call("cosh"),
                UnOp::Asinh => call("asinh"),
                UnOp::Acosh => call("acosh"),
                UnOp::Atanh => call("atanh"),
                UnOp::Floor => call("floor"),
                UnOp::Ceil => call("ceil"),
                // Round half to even: rint under the default rounding mode.
                UnOp::Round => call("rint"),
                UnOp::IsNan => format!("isnan({})", bare(&x)),
                UnOp::Not => unreachable!("the checker refuses `not` of a float"),
            };
        }
        match op {
            UnOp::Not if t == Scalar::Bool => format!("(!{x})"),
            UnOp::Not => self.narrow_back(t, format!("(~{x})")),
            UnOp::Neg => format!("{}({})", self.support.helper(Helper::Neg(t)), bare(&x)),
            UnOp::Abs => format!("{}({})", self.support.helper(Helper::Abs(t)), bare(&x)),
            _ => unreachable!("the checker refuses {op:?} of a {t}"),
        }
    }

    /// `x`, an `int` computed from operands of narrow type `t`, converted back
    /// to `t` (other types are returned as they are).
    fn narrow_back(&self, t: Scalar, x: String) -> String {
        if is_narrow(t) {
            format!("({}){x}", reg_type(t))
        } else {
            x
        }
    }

    fn binary(&mut self, op: BinOp, t: Scalar, a: String, b: String) -> String {
        let infix = |o: &str| format!("({a} {o} {b})");
        if op.is_comparison() {
            let o = match op {
                BinOp::Eq => "==",
                BinOp::Ne => "!=",
                BinOp::Lt => "<",
                BinOp::Le => "<=",
                BinOp::Gt => ">",
                _ => ">=",
            };
            // C compares floats as IEEE does (NaN unequal to everything).
            return infix(o);
        }
        let call = |name: String| format!("{name}({}, {})", bare(&a), bare(&b));
        if t.is_float() {
            let f = if t == Scalar::F32 { "f" } else { "" };
            return match op {
                BinOp::Add => infix("+"),
                BinOp::Sub => infix("-"),
                BinOp::Mul => infix("*"),
                BinOp::Div => infix("/"),
                BinOp::Rem => call(format!("fmod{f}")),
                BinOp::Pow => call(format!("pow{f}")),
                BinOp::Max => call(self.support.helper(Helper::FloatMax(t))),
                BinOp::Min => call(self.support.helper(Helper::FloatMin(t))),
                _ => unreachable!("the checker refuses {op:?} of floats"),
            };
        }
        if t == Scalar::Bool {
            return match op {
                BinOp::And => infix("&&"),
                BinOp::Or => infix("||"),
                BinOp::Xor => infix("!="),
                _ => unreachable!("the checker refuses {op:?} of bools"),
            };
        }
        let wide_unsigned = matches!(t, Scalar::U32 | Scalar::U64);
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul if wide_unsigned => infix(match op {
                BinOp::Add => "+",
                BinOp::Sub => "-",
                _ => "*",
            }),
            BinOp::Add | BinOp::Sub | BinOp::Mul => call(self.support.helper(Helper::Wrap(op, t))),
            BinOp::Div if t.is_signed_int() => call(self.support.helper(Helper::Div(t))),
            BinOp::Rem if t.is_signed_int() => call(self.support.helper(Helper::Rem(t))),
            BinOp::Div => self.narrow_back(t, infix("/")),
            BinOp::Rem => self.narrow_back(t, infix("%")),
            BinOp::Max => call(self.support.helper(Helper::IntMax(t))),
            BinOp::Min => call(self.support.helper(Helper::IntMin(t))),
            BinOp::And => self.narrow_back(t, infix("&")),
            BinOp::Or => self.narrow_back(t, infix("|")),
            BinOp::Xor => self.narrow_back(t, infix("^")),
            BinOp::Shl => call(self.support.helper(Helper::Shl(t))),
            BinOp::Shr => call(self.support.helper(Helper::Shr(t))),
            _ => unreachable!("the checker refuses {op:?} of a {t}"),
        }
    }

    /// `x` of type `from` converted to `to` with ONNX `Cast` semantics (see
    /// [`crate::gpu::sim::Value::cast`]): floats round to nearest even,
    /// float → integer saturates (NaN → 0), integers wrap, → bool is `≠ 0`.
    fn cast(&mut self, from: Scalar, to: Scalar, x: String) -> String {
        if from == to {
            return x;
        }
        // Halves widen exactly to f32 first (every conversion from them is
        // then one rounding at most).
        if from.is_half() {
            let f = if from == Scalar::F16 {
                "__half2float"
            } else {
                "__bfloat162float"
            };
            let f = format!("{f}({})", bare(&x));
            return self.cast(Scalar::F32, to, f);
        }
        match to {
            Scalar::Bool if from.is_float() => {
                let zero = if from == Scalar::F32 { "0.0f" } else { "0.0" };
                format!("({x} != {zero})")
            }
            Scalar::Bool => format!("({x} != 0)"),
            Scalar::F32 if from == Scalar::F64 => format!("__double2float_rn({})", bare(&x)),
            Scalar::F32 | Scalar::F64 => format!("({}){x}", reg_type(to)),
            Scalar::F16 | Scalar::BF16 => half_from(from, to, x),
            _ if from.is_float() => {
                let f = self.support.helper(Helper::FloatToInt(from, to));
                format!("{f}({})", bare(&x))
            }
            // Integer and bool → integer: C's conversion wraps (modulo 2ⁿ; CUDA
            // defines the signed case as C++20 does).
            _ => format!("({}){x}", reg_type(to)),
        }
    }
}

/// A memory element of type `s` (C expression `place`) as a register value.
fn loaded(s: Scalar, place: String) -> String {
    if s == Scalar::Bool {
        format!("({place} != 0)")
    } else {
        place
    }
}

/// `x` of type `from` (not a half) rounded to the half type `to` in one step.
fn half_from(from: Scalar, to: Scalar, x: String) -> String {
    let half = to == Scalar::F16;
    let x = bare(&x);
    let h = |f16: &'static str, bf16: &'static str| if half { f16 } else { bf16 };
    match from {
        Scalar::F32 => format!("{}({x})", h("__float2half_rn", "__float2bfloat16_rn")),
        Scalar::F64 => format!("{}({x})", h("__double2half", "__double2bfloat16")),
        Scalar::I64 => format!("{}({x})", h("__ll2half_rn", "__ll2bfloat16_rn")),
        Scalar::U64 => format!("{}({x})", h("__ull2half_rn", "__ull2bfloat16_rn")),
        Scalar::I32 => format!("{}({x})", h("__int2half_rn", "__int2bfloat16_rn")),
        Scalar::U32 => format!("{}({x})", h("__uint2half_rn", "__uint2bfloat16_rn")),
        // Narrow integers and bool are exact in f32.
        _ => format!(
            "{}((float){x})",
            h("__float2half_rn", "__float2bfloat16_rn")
        ),
    }
}

/// `s` without the parentheses around the whole of it, for places that take
/// a full expression (an initializer, a subscript, a call argument): every
/// compound expression the emitter builds is parenthesized, so it can be an
/// operand anywhere, and only these places may drop them.
fn bare(s: &str) -> &str {
    let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) else {
        return s;
    };
    // The first parenthesis must close at the end, not before (`(a) + (b)`).
    let mut depth = 0i32;
    for c in inner.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return s,
            ')' => depth -= 1,
            _ => {}
        }
    }
    inner
}

#[cfg(test)]
mod tests {
    use super::bare;

    #[test]
    fn only_enclosing_parentheses_are_dropped() {
        assert_eq!(bare("(a + b)"), "a + b");
        assert_eq!(bare("(a) + (b)"), "(a) + (b)");
        assert_eq!(bare("(float)x"), "(float)x");
        assert_eq!(bare("((a < b) ? c : (d))"), "(a < b) ? c : (d)");
        assert_eq!(bare("f(x)"), "f(x)");
    }
}
