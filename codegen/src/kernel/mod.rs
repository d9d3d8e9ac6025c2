//! The kernel IR: small loop nests over flat buffers, shared by the CPU (LLVM)
//! and future CUDA backends.
//!
//! A [`Kernel`] reads and writes numbered [`Buffer`]s (flat arrays of one scalar
//! type) with a body of [`Stmt`]s: counted loops, immutable bindings, mutable
//! scalar variables (accumulators), and stores. Expressions ([`Expr`]) are pure
//! scalar computations over loads, variables and constants. Indices are `i64`
//! element offsets.
//!
//! **Parallelism.** A kernel's outermost statement may be a loop marked
//! [`LoopKind::Parallel`]; the runtime splits its range into chunks and runs the
//! chunks on a thread pool, so iterations of that loop must write disjoint
//! elements. The generated function takes the chunk `[begin, end)` of that loop
//! (`[0, 1)` for kernels without one).
//!
//! **Typing.** Every variable has one type, recorded in [`Kernel::vars`]. Loads
//! yield their buffer's storage type; `bool` is stored as one byte (0 or 1) and
//! computed as a 1-bit value; `f16`/`bf16` are storage types only (cast them to
//! `f32` to compute). [`Kernel::check`] verifies all of it, so a backend may
//! assume a well-typed kernel.

pub(crate) mod check;
pub(crate) mod print;

pub use check::KernelError;

use std::fmt;

use kiln_ir::DType;
use serde::{Deserialize, Serialize};

/// The scalar types kernels compute with and store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scalar {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// IEEE half (storage only).
    F16,
    /// bfloat16 (storage only).
    BF16,
    /// Signed integers.
    I8,
    /// 16-bit signed.
    I16,
    /// 32-bit signed.
    I32,
    /// 64-bit signed (also every index).
    I64,
    /// Unsigned integers.
    U8,
    /// 16-bit unsigned.
    U16,
    /// 32-bit unsigned.
    U32,
    /// 64-bit unsigned.
    U64,
    /// Truth value (one byte in memory).
    Bool,
}

impl Scalar {
    /// The kernel scalar for an IR dtype (every IR dtype has one).
    pub fn of(dtype: DType) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32,
            DType::F64 => Scalar::F64,
            DType::F16 => Scalar::F16,
            DType::BF16 => Scalar::BF16,
            DType::I8 => Scalar::I8,
            DType::I16 => Scalar::I16,
            DType::I32 => Scalar::I32,
            DType::I64 => Scalar::I64,
            DType::U8 => Scalar::U8,
            DType::U16 => Scalar::U16,
            DType::U32 => Scalar::U32,
            DType::U64 => Scalar::U64,
            DType::Bool => Scalar::Bool,
            // Storage only, one opaque byte per element: the scheduler lowers no
            // node that reads or writes these (`DType::is_low_precision`), so only
            // host steps' buffers and aliases have them.
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
            | DType::List => Scalar::U8,
        }
    }

    /// Bytes per element in memory.
    pub fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 | Scalar::Bool => 1,
            Scalar::F16 | Scalar::BF16 | Scalar::I16 | Scalar::U16 => 2,
            Scalar::F32 | Scalar::I32 | Scalar::U32 => 4,
            Scalar::F64 | Scalar::I64 | Scalar::U64 => 8,
        }
    }

    /// A float type kernels compute with (f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, Scalar::F32 | Scalar::F64)
    }

    /// A storage-only float (f16, bf16).
    pub fn is_half(self) -> bool {
        matches!(self, Scalar::F16 | Scalar::BF16)
    }

    /// A signed integer type.
    pub fn is_signed_int(self) -> bool {
        matches!(self, Scalar::I8 | Scalar::I16 | Scalar::I32 | Scalar::I64)
    }

    /// An unsigned integer type.
    pub fn is_unsigned_int(self) -> bool {
        matches!(self, Scalar::U8 | Scalar::U16 | Scalar::U32 | Scalar::U64)
    }

    /// Any integer type (not bool).
    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    /// The lower-case name used in the text form (`f32`, `i64`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
            Scalar::F16 => "f16",
            Scalar::BF16 => "bf16",
            Scalar::I8 => "i8",
            Scalar::I16 => "i16",
            Scalar::I32 => "i32",
            Scalar::I64 => "i64",
            Scalar::U8 => "u8",
            Scalar::U16 => "u16",
            Scalar::U32 => "u32",
            Scalar::U64 => "u64",
            Scalar::Bool => "bool",
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a kernel uses a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Only loaded from.
    Read,
    /// Only stored to.
    Write,
    /// Loaded and stored (an in-place epilogue, an accumulator).
    ReadWrite,
}

/// A flat array a kernel reads or writes. Buffers of one launch never overlap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffer {
    /// A readable name (the IR value it holds).
    pub name: String,
    /// Element type.
    pub scalar: Scalar,
    /// Number of elements.
    pub len: usize,
    /// Read, write or both.
    pub access: Access,
}

/// Index of a buffer in [`Kernel::buffers`].
pub type BufId = usize;

/// Index of a variable in [`Kernel::vars`].
pub type VarId = usize;

/// Whether a loop's iterations may run on several threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoopKind {
    /// One iteration after another.
    Serial,
    /// Split across threads by the runtime (outermost loop only).
    Parallel,
}

/// A statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// `for var in 0..extent { body }` (`var` is an `i64` variable).
    For {
        /// The induction variable.
        var: VarId,
        /// Trip count (iterations `0..extent`).
        extent: i64,
        /// Serial or parallel.
        kind: LoopKind,
        /// The loop body.
        body: Vec<Stmt>,
    },
    /// Binds an immutable variable for the rest of the enclosing block.
    Let {
        /// The variable.
        var: VarId,
        /// Its value.
        value: Expr,
    },
    /// Declares a mutable variable with an initial value (an accumulator).
    Decl {
        /// The variable.
        var: VarId,
        /// Its initial value.
        init: Expr,
    },
    /// Updates a variable declared by [`Stmt::Decl`].
    Assign {
        /// The variable.
        var: VarId,
        /// Its new value.
        value: Expr,
    },
    /// `buffer[index] = value`.
    Store {
        /// The buffer (of `value`'s storage type).
        buf: BufId,
        /// Element index (`i64`).
        index: Expr,
        /// The stored value.
        value: Expr,
    },
}

/// A pure operation of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// √x
    Sqrt,
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// tanh x
    Tanh,
    /// erf x
    Erf,
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tan x
    Tan,
    /// asin x
    Asin,
    /// acos x
    Acos,
    /// atan x
    Atan,
    /// sinh x
    Sinh,
    /// cosh x
    Cosh,
    /// asinh x
    Asinh,
    /// acosh x
    Acosh,
    /// atanh x
    Atanh,
    /// ⌊x⌋
    Floor,
    /// ⌈x⌉
    Ceil,
    /// Round half to even.
    Round,
    /// Logical not (bool) or bitwise not (integers).
    Not,
    /// x is NaN (bool).
    IsNan,
}

/// A pure operation of two operands of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b (integers: truncating; the scheduler guards division by zero)
    Div,
    /// Remainder with the dividend's sign (C `fmod`/`%`).
    Rem,
    /// max(a, b), NaN if either is NaN
    Max,
    /// min(a, b), NaN if either is NaN
    Min,
    /// aᵇ (floats)
    Pow,
    /// a == b (bool)
    Eq,
    /// a ≠ b (bool)
    Ne,
    /// a < b (bool)
    Lt,
    /// a ≤ b (bool)
    Le,
    /// a > b (bool)
    Gt,
    /// a ≥ b (bool)
    Ge,
    /// Logical/bitwise and.
    And,
    /// Logical/bitwise or.
    Or,
    /// Logical/bitwise exclusive or.
    Xor,
    /// a << b (integers)
    Shl,
    /// a >> b (integers; logical for unsigned)
    Shr,
}

impl BinOp {
    /// Comparisons produce bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// A literal: its value as f64 or i64 plus its type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    /// A float of type f32 or f64 (serialized as its bits: ±∞ and NaN are
    /// common literals and JSON has no spelling for them).
    Float(#[serde(with = "f64_bits")] f64, Scalar),
    /// An integer of an integer type, or bool (0/1).
    Int(i64, Scalar),
}

/// Serde of an f64 as its IEEE bits.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(x.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

impl Literal {
    /// The literal's type.
    pub fn scalar(&self) -> Scalar {
        match *self {
            Literal::Float(_, s) | Literal::Int(_, s) => s,
        }
    }
}

/// A pure scalar expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// A constant.
    Lit(Literal),
    /// A variable's current value.
    Var(VarId),
    /// `buffer[index]`.
    Load {
        /// The buffer.
        buf: BufId,
        /// Element index (`i64`).
        index: Box<Expr>,
    },
    /// One operand.
    Unary(UnOp, Box<Expr>),
    /// Two operands.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `if cond { a } else { b }` (both evaluated).
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Conversion (ONNX `Cast` semantics: floats round to nearest, float → int
    /// truncates, anything → bool is `≠ 0`).
    Cast(Scalar, Box<Expr>),
}

/// A kernel: one function the runtime launches over its buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// Symbol name (unique in a program).
    pub name: String,
    /// The buffers it reads and writes, in argument order.
    pub buffers: Vec<Buffer>,
    /// The type of every variable.
    pub vars: Vec<Scalar>,
    /// The statements.
    pub body: Vec<Stmt>,
}

impl Kernel {
    /// An empty kernel named `name`.
    pub fn new(name: impl Into<String>) -> Kernel {
        Kernel {
            name: name.into(),
            buffers: Vec::new(),
            vars: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a buffer and returns its id.
    pub fn buffer(
        &mut self,
        name: impl Into<String>,
        scalar: Scalar,
        len: usize,
        access: Access,
    ) -> BufId {
        self.buffers.push(Buffer {
            name: name.into(),
            scalar,
            len,
            access,
        });
        self.buffers.len() - 1
    }

    /// Adds a variable of type `scalar` and returns its id.
    pub fn var(&mut self, scalar: Scalar) -> VarId {
        self.vars.push(scalar);
        self.vars.len() - 1
    }

    /// The trip count of the outermost parallel loop (1 when there is none): the
    /// range the runtime splits across threads.
    pub fn parallel_extent(&self) -> i64 {
        match self.body.as_slice() {
            [Stmt::For {
                extent,
                kind: LoopKind::Parallel,
                ..
            }] => *extent,
            _ => 1,
        }
    }

    /// The type of `e` (assuming the kernel is well typed; see [`Kernel::check`]).
    pub fn type_of(&self, e: &Expr) -> Scalar {
        match e {
            Expr::Lit(l) => l.scalar(),
            Expr::Var(v) => self.vars[*v],
            Expr::Load { buf, .. } => self.buffers[*buf].scalar,
            Expr::Unary(UnOp::IsNan, _) => Scalar::Bool,
            Expr::Unary(_, x) => self.type_of(x),
            Expr::Binary(op, a, _) if op.is_comparison() => {
                let _ = a;
                Scalar::Bool
            }
            Expr::Binary(_, a, _) => self.type_of(a),
            Expr::Select(_, a, _) => self.type_of(a),
            Expr::Cast(s, _) => *s,
        }
    }

    /// Checks the kernel is well formed and well typed (see [`check`]).
    pub fn check(&self) -> Result<(), KernelError> {
        check::check(self)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::print(self, f)
    }
}

/// Expression builders, so schedulers read like the math they emit.
pub mod build {
    use super::{BinOp, Expr, Literal, LoopKind, Scalar, Stmt, UnOp, VarId};

    /// The parallel loop of `var` over `0..extent` around `body`: a kernel's
    /// outermost loop, whose range the runtime splits between threads.
    pub fn parallel(var: VarId, extent: usize, body: Vec<Stmt>) -> Stmt {
        Stmt::For {
            var,
            extent: extent as i64,
            kind: LoopKind::Parallel,
            body,
        }
    }

    /// An `i64` constant (an index).
    pub fn idx(n: i64) -> Expr {
        Expr::Lit(Literal::Int(n, Scalar::I64))
    }

    /// An f32 constant.
    pub fn f32c(x: f32) -> Expr {
        Expr::Lit(Literal::Float(x as f64, Scalar::F32))
    }

    /// A float constant of type `s` (f32 or f64).
    pub fn fc(x: f64, s: Scalar) -> Expr {
        Expr::Lit(Literal::Float(x, s))
    }

    /// A variable.
    pub fn var(v: VarId) -> Expr {
        Expr::Var(v)
    }

    /// `buf[index]`.
    pub fn load(buf: usize, index: Expr) -> Expr {
        Expr::Load {
            buf,
            index: Box::new(index),
        }
    }

    /// `op(a, b)`.
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    /// `op(x)`.
    pub fn un(op: UnOp, x: Expr) -> Expr {
        Expr::Unary(op, Box::new(x))
    }

    /// `a + b`, folding zeros (index arithmetic stays readable).
    pub fn add(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Lit(Literal::Int(0, _)), _) => b,
            (_, Expr::Lit(Literal::Int(0, _))) => a,
            _ => bin(BinOp::Add, a, b),
        }
    }

    /// `a · b`, folding ones and zeros of integer constants.
    pub fn mul(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Lit(Literal::Int(1, _)), _) => b,
            (_, Expr::Lit(Literal::Int(1, _))) => a,
            (Expr::Lit(Literal::Int(0, s)), _) | (_, Expr::Lit(Literal::Int(0, s))) => {
                Expr::Lit(Literal::Int(0, *s))
            }
            _ => bin(BinOp::Mul, a, b),
        }
    }

    /// `cond ? a : b`.
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }

    /// `x as s`.
    pub fn cast(s: Scalar, x: Expr) -> Expr {
        Expr::Cast(s, Box::new(x))
    }
}
