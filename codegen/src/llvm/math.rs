//! Elementary functions emitted as LLVM IR, for use inside generated kernels.
//!
//! The f32 functions ([`exp_f32`], [`log_f32`], [`tanh_f32`], [`erf_f32`],
//! [`sigmoid_f32`]) are inline and branch-free: range reduction through bit
//! casts and integer arithmetic, polynomials evaluated with `llvm.fma`, and
//! every special case (overflow, NaN, the sign of zero) resolved with
//! `select`. A loop calling them therefore stays a single basic block that
//! LLVM's loop vectorizer turns into host-width vector code. No fast-math
//! flags are set: results are the same whether a lane runs vectorized or in
//! the scalar epilogue.
//!
//! Everything else (trigonometric and hyperbolic functions and their
//! inverses, f64 versions, `pow`) goes through [`libm_call`] and
//! [`libm_call2`], plain calls to the C library.
//!
//! Accuracies quoted below are the maxima measured by
//! `codegen/tests/llvm_math.rs` against f64 references over every f32 input
//! (its ignored exhaustive test; the default tests check edge cases and 2 ×
//! 100k random inputs per function).

// Coefficients are written with the digits their source publishes (Cephes) or
// the fit printed, so they can be checked against it; each is rounded to the
// nearest f32 by the compiler.
#![allow(clippy::excessive_precision)]

use inkwell::builder::Builder;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, FloatType, IntType};
use inkwell::values::{BasicMetadataValueEnum, FloatValue, FunctionValue, IntValue};
use inkwell::FloatPredicate;

use super::LlvmError;

// ---------------------------------------------------------------------------
// exp: Cephes `expf` (S. L. Moshier, Cephes Math Library, single precision).

/// log2(e), to pick n = rint(x·log2 e) in exp's range reduction.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// High part of ln 2 for the Cody–Waite reduction r = x − n·ln2 (Cephes
/// `expf`'s C1 = 355/512: 9 significant bits, so n·C1 is exact for |n| < 2^15).
const LN2_HI: f32 = 0.693_359_375;
/// Low part of ln 2: ln 2 − [`LN2_HI`] (Cephes `expf`'s C2).
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` minimax coefficients, highest degree first: e^r ≈ 1 + r +
/// r²·P(r) on |r| ≤ ln2/2.
const EXP_P: [f32; 6] = [
    1.987_569_15e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// Upper clamp of exp's argument. Any x above ln(f32::MAX) ≈ 88.7228 still
/// overflows to +inf through the scaling by 2^n; the clamp only keeps n (≤ 128)
/// inside the exponent arithmetic.
const EXP_CLAMP_HI: f32 = 89.0;
/// Lower clamp of exp's argument: e^-104 ≈ 6.8e-46 is below half the
/// smallest subnormal (7.0e-46), so every x below it rounds to 0 exactly as
/// the clamped value does (n ≥ −150 stays inside the exponent arithmetic).
const EXP_CLAMP_LO: f32 = -104.0;

// ---------------------------------------------------------------------------
// log: Cephes `logf`.

/// √½: the mantissa m ∈ [0.5, 1) is folded to [√½, √2) around 1.
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// Cephes `logf` minimax coefficients, highest degree first: log(1 + t) ≈
/// t − t²/2 + t³·P(t) on t ∈ [√½ − 1, √2 − 1].
const LOG_P: [f32; 9] = [
    7.037_683_629_2e-2,
    -1.151_461_031_0e-1,
    1.167_699_874_0e-1,
    -1.242_014_084_6e-1,
    1.424_932_278_7e-1,
    -1.666_805_766_5e-1,
    2.000_071_476_5e-1,
    -2.499_999_399_3e-1,
    3.333_333_117_4e-1,
];
/// Smallest normal f32, 2^-126: below it log's input is rescaled.
const MIN_NORMAL: f32 = f32::MIN_POSITIVE;
/// 2^23, the exact rescaling of subnormal inputs to normal ones.
const TWO_POW_23: f32 = 8_388_608.0;
/// Mask of the f32 mantissa field.
const MANTISSA_MASK: i32 = 0x007f_ffff;
/// Bits of 0.5: OR-ed onto a mantissa, gives m ∈ [0.5, 1).
const HALF_BITS: i32 = 0x3f00_0000;
/// Exponent bias of f32 minus one, so that x = m·2^e with m ∈ [0.5, 1).
const FREXP_BIAS: i32 = 126;

// ---------------------------------------------------------------------------
// tanh: Cephes `tanhf`.

/// Below this |x| tanh uses the odd polynomial, above it 1 − 2/(e^{2|x|} + 1)
/// (Cephes `tanhf`'s switch point).
const TANH_SMALL: f32 = 0.625;
/// Cephes `tanhf` minimax coefficients, highest degree first: tanh(x) ≈ x +
/// x·z·P(z), z = x², on |x| < 0.625.
const TANH_P: [f32; 5] = [
    -5.704_988_727_45e-3,
    2.063_908_879_54e-2,
    -5.373_971_555_31e-2,
    1.333_144_220_36e-1,
    -3.333_328_194_22e-1,
];

// ---------------------------------------------------------------------------
// erf: coefficients fitted for kiln (mpmath, 40 digits: Lawson-weighted least
// squares on 300 Chebyshev nodes, i.e. near-minimax, then rounded to f32).

/// Below this |x| erf is the odd polynomial [`ERF_SMALL_P`], above it
/// 1 − e^{−x²}·[`ERF_LARGE_P`].
const ERF_SMALL: f32 = 1.0;
/// erf(x) ≈ x + x·P(x²) on |x| ≤ 1, highest degree first (fitted for the
/// relative error of erf: 1.2e-9 before rounding to f32; the constant term is
/// 2/√π − 1, so the polynomial is a correction of at most 13% of x and its
/// rounding errors shrink accordingly).
const ERF_SMALL_P: [f32; 7] = [
    7.853_806_164e-5,
    -8.010_176_825e-4,
    5.188_325_886e-3,
    -2.685_381_100e-2,
    1.128_358_543e-1,
    -3.761_262_596e-1,
    1.283_791_661e-1,
];
/// erfc(x)·e^{x²} ≈ P(x − 1) on 1 ≤ x ≤ 4, highest degree first (fitted for
/// the absolute error of erf: 2.4e-9 before rounding to f32).
const ERF_LARGE_P: [f32; 9] = [
    1.068_325_728e-4,
    -1.056_984_300e-3,
    4.911_096_767e-3,
    -1.510_991_063e-2,
    3.687_481_582e-2,
    -7.905_328_274e-2,
    1.543_505_490e-1,
    -2.732_110_620e-1,
    4.275_835_752e-1,
];
/// erf's argument is clamped here: erfc(4) ≈ 1.5e-8 is below half an ulp of
/// 1 (3.0e-8), so erf rounds to ±1 from |x| ≈ 3.92 on.
const ERF_CLAMP: f32 = 4.0;

/// Emits f32 IR for one elementary function: the builder, the module (for
/// intrinsic declarations) and the types used.
struct F32<'a, 'ctx> {
    b: &'a Builder<'ctx>,
    module: &'a Module<'ctx>,
    f32: FloatType<'ctx>,
    i32: IntType<'ctx>,
}

impl<'a, 'ctx> F32<'a, 'ctx> {
    /// Checks that `x` is an f32 (`what` names the caller in the error).
    fn new(
        b: &'a Builder<'ctx>,
        module: &'a Module<'ctx>,
        x: FloatValue<'ctx>,
        what: &str,
    ) -> Result<Self, LlvmError> {
        let context = x.get_type().get_context();
        let f32 = context.f32_type();
        if x.get_type() != f32 {
            return Err(LlvmError::Verify(format!(
                "{what} takes an f32 value, got {}",
                x.get_type().print_to_string()
            )));
        }
        Ok(Self {
            b,
            module,
            f32,
            i32: context.i32_type(),
        })
    }

    fn c(&self, v: f32) -> FloatValue<'ctx> {
        self.f32.const_float(f64::from(v))
    }

    fn ci(&self, v: i32) -> IntValue<'ctx> {
        // `const_int` takes the two's-complement bits; sign-extend negatives.
        self.i32.const_int(v as u64, true)
    }

    /// Calls the f32 overload of the LLVM intrinsic `name`.
    fn intrinsic(
        &self,
        name: &str,
        args: &[FloatValue<'ctx>],
    ) -> Result<FloatValue<'ctx>, LlvmError> {
        let function = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[self.f32.into()]))
            .ok_or_else(|| LlvmError::Verify(format!("no f32 overload of intrinsic {name}")))?;
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        let call = self.b.build_call(function, &args, "")?;
        Ok(call.try_as_basic_value().unwrap_basic().into_float_value())
    }

    fn fma(
        &self,
        a: FloatValue<'ctx>,
        b: FloatValue<'ctx>,
        c: FloatValue<'ctx>,
    ) -> Result<FloatValue<'ctx>, LlvmError> {
        self.intrinsic("llvm.fma", &[a, b, c])
    }

    fn add(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_add(a, b, "")?)
    }

    fn sub(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_sub(a, b, "")?)
    }

    fn mul(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_mul(a, b, "")?)
    }

    fn neg(&self, a: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_neg(a, "")?)
    }

    fn div(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_div(a, b, "")?)
    }

    fn cmp(
        &self,
        predicate: FloatPredicate,
        a: FloatValue<'ctx>,
        b: FloatValue<'ctx>,
    ) -> Result<IntValue<'ctx>, LlvmError> {
        Ok(self.b.build_float_compare(predicate, a, b, "")?)
    }

    fn select(
        &self,
        condition: IntValue<'ctx>,
        then: FloatValue<'ctx>,
        otherwise: FloatValue<'ctx>,
    ) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self
            .b
            .build_select(condition, then, otherwise, "")?
            .into_float_value())
    }

    fn bits_of(&self, x: FloatValue<'ctx>) -> Result<IntValue<'ctx>, LlvmError> {
        Ok(self.b.build_bit_cast(x, self.i32, "")?.into_int_value())
    }

    fn float_from_bits(&self, bits: IntValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        Ok(self
            .b
            .build_bit_cast(bits, self.f32, "")?
            .into_float_value())
    }

    /// 2^k for an integer k in [−126, 127], built in the exponent field.
    fn pow2(&self, k: IntValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        let biased = self.b.build_int_add(k, self.ci(127), "")?;
        let bits = self.b.build_left_shift(biased, self.ci(23), "")?;
        self.float_from_bits(bits)
    }

    /// Horner's scheme with fused multiply-adds; `coefficients` highest
    /// degree first.
    fn horner(
        &self,
        x: FloatValue<'ctx>,
        coefficients: &[f32],
    ) -> Result<FloatValue<'ctx>, LlvmError> {
        let (first, rest) = coefficients
            .split_first()
            .expect("a polynomial has a coefficient");
        let mut p = self.c(*first);
        for &c in rest {
            p = self.fma(p, x, self.c(c))?;
        }
        Ok(p)
    }

    /// exp(x); see [`exp_f32`].
    fn exp(&self, x: FloatValue<'ctx>) -> Result<FloatValue<'ctx>, LlvmError> {
        // Clamp, sending NaN to the lower bound so that no NaN reaches the
        // float-to-int conversion (NaN is restored at the end).
        let below = self.cmp(FloatPredicate::ULT, x, self.c(EXP_CLAMP_LO))?;
        let xc = self.select(below, self.c(EXP_CLAMP_LO), x)?;
        let above = self.cmp(FloatPredicate::OGT, xc, self.c(EXP_CLAMP_HI))?;
        let xc = self.select(above, self.c(EXP_CLAMP_HI), xc)?;
        // x = n·ln2 + r, |r| ≲ ln2/2 (Cody–Waite: both products fused).
        let n = self.intrinsic("llvm.rint", &[self.mul(xc, self.c(LOG2E))?])?;
        let r = self.fma(n, self.c(-LN2_HI), xc)?;
        let r = self.fma(n, self.c(-LN2_LO), r)?;
        // e^r = 1 + r + r²·P(r).
        let p = self.horner(r, &EXP_P)?;
        let y = self.fma(p, self.mul(r, r)?, r)?;
        let y = self.add(y, self.c(1.0))?;
        // y·2^n as y·2^n1·2^n2 with n1 = ⌊n/2⌋, n2 = n − n1: both factors are
        // normal for n ∈ [−150, 128], the first product is exact, and the
        // second rounds once, to +inf on overflow and gradually into the
        // subnormals.
        let ni = self.b.build_float_to_signed_int(n, self.i32, "")?;
        let n1 = self.b.build_right_shift(ni, self.ci(1), true, "")?;
        let n2 = self.b.build_int_sub(ni, n1, "")?;
        let scaled = self.mul(self.mul(y, self.pow2(n1)?)?, self.pow2(n2)?)?;
        let nan = self.cmp(FloatPredicate::UNO, x, x)?;
        self.select(nan, x, scaled)
    }
}

/// f32: exp(x), inline and branch-free.
///
/// Method (Cephes `expf`): x = n·ln2 + r with n = rint(x·log2 e) and the
/// two-constant Cody–Waite ln2 (both products fused), e^r ≈ 1 + r + r²·P(r)
/// with a degree-5 minimax P, then scaling by 2^n through the exponent bits
/// in two steps so that overflow gives +inf above ≈ 88.7228 and underflow is
/// gradual (subnormal results are correctly scaled, 0 below ≈ −103.97).
/// ±inf → +inf / 0, NaN → NaN.
///
/// Measured accuracy: max 1.01 ulp (relative error ≤ 8.5e-8 for normal
/// results) over every f32, subnormal results included.
pub fn exp_f32<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    F32::new(b, module, x, "exp_f32")?.exp(x)
}

/// f32: natural logarithm, inline and branch-free.
///
/// Method (Cephes `logf`): subnormal inputs are first scaled by 2^23 (so
/// they are handled exactly, not flushed); x = m·2^e with m ∈ [√½, √2) read
/// from the bits; log(1 + t), t = m − 1 (exact), as t − t²/2 + t³·P(t) with
/// a degree-8 minimax P; plus e·ln2 with the two-constant ln2. x < 0 → NaN,
/// ±0 → −inf, +inf → +inf, NaN → NaN.
///
/// Measured accuracy: max 0.83 ulp over every f32, subnormal inputs
/// included.
pub fn log_f32<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    let e = F32::new(b, module, x, "log_f32")?;
    // Subnormals (and zero, replaced below) scaled up to the normal range.
    let subnormal = e.cmp(FloatPredicate::OLT, x, e.c(MIN_NORMAL))?;
    let xs = e.select(subnormal, e.mul(x, e.c(TWO_POW_23))?, x)?;
    let bias = e.select(subnormal, e.c(-23.0), e.c(0.0))?;
    // frexp: x = m·2^k, m ∈ [0.5, 1).
    let bits = e.bits_of(xs)?;
    let field = b.build_right_shift(bits, e.ci(23), false, "")?;
    let field = b.build_and(field, e.ci(0xff), "")?;
    let k = b.build_int_sub(field, e.ci(FREXP_BIAS), "")?;
    let k = b.build_signed_int_to_float(k, e.f32, "")?;
    let k = e.add(k, bias)?;
    let mantissa = b.build_and(bits, e.ci(MANTISSA_MASK), "")?;
    let m = e.float_from_bits(b.build_or(mantissa, e.ci(HALF_BITS), "")?)?;
    // Fold m into [√½, √2): below √½ use 2m and k − 1. t = m − 1 is exact.
    let low = e.cmp(FloatPredicate::OLT, m, e.c(SQRT_HALF))?;
    let k = e.sub(k, e.select(low, e.c(1.0), e.c(0.0))?)?;
    let t = e.sub(e.select(low, e.add(m, m)?, m)?, e.c(1.0))?;
    // log(1 + t) = t − t²/2 + t³·P(t), plus k·ln2 in two parts.
    let z = e.mul(t, t)?;
    let y = e.mul(e.mul(e.horner(t, &LOG_P)?, t)?, z)?;
    let y = e.fma(k, e.c(LN2_LO), y)?;
    let y = e.fma(e.c(-0.5), z, y)?;
    let r = e.add(t, y)?;
    let r = e.fma(k, e.c(LN2_HI), r)?;
    // Special cases: ±0 → −inf, +inf → +inf, x < 0 or NaN → NaN.
    let zero = e.cmp(FloatPredicate::OEQ, x, e.c(0.0))?;
    let r = e.select(zero, e.c(f32::NEG_INFINITY), r)?;
    let inf = e.cmp(FloatPredicate::OEQ, x, e.c(f32::INFINITY))?;
    let r = e.select(inf, x, r)?;
    let invalid = e.cmp(FloatPredicate::ULT, x, e.c(0.0))?;
    e.select(invalid, e.c(f32::NAN), r)
}

/// f32: tanh, inline and branch-free.
///
/// Method (Cephes `tanhf`): for |x| < 0.625 the odd minimax polynomial
/// x + x·z·P(z), z = x² (accurate for tiny |x|: tanh(x) = x there); otherwise
/// 1 − 2/(e^{2|x|} + 1) with the inline exp, which saturates to 1 as
/// e^{2|x|} overflows. The sign is restored with `copysign` (so tanh(−0) =
/// −0); ±inf → ±1, NaN → NaN.
///
/// Measured accuracy: relative error ≤ 1.5e-7 (max 1.33 ulp, near |x| =
/// 0.63 on the exp side) over every f32.
pub fn tanh_f32<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    let e = F32::new(b, module, x, "tanh_f32")?;
    let a = e.intrinsic("llvm.fabs", &[x])?;
    let z = e.mul(a, a)?;
    let small = e.fma(e.mul(e.horner(z, &TANH_P)?, z)?, a, a)?;
    let exp2a = e.exp(e.add(a, a)?)?;
    let large = e.sub(e.c(1.0), e.div(e.c(2.0), e.add(exp2a, e.c(1.0))?)?)?;
    let is_small = e.cmp(FloatPredicate::OLT, a, e.c(TANH_SMALL))?;
    let r = e.select(is_small, small, large)?;
    e.intrinsic("llvm.copysign", &[r, x])
}

/// f32: erf, inline and branch-free.
///
/// Method: for |x| < 1 the odd polynomial x + x·P(x²) (degree 6 in x², so the
/// relative error stays small down to tiny and subnormal x); for 1 ≤ |x| ≤ 4
/// 1 − e^{−x²}·Q(|x| − 1), Q a degree-8 fit of erfc(x)·e^{x²}, with the
/// inline exp; |x| is clamped to 4, beyond which erf rounds to ±1. Both
/// polynomials were fitted for kiln (near-minimax, see the constants). The
/// sign is restored with `copysign` (erf(−0) = −0); ±inf → ±1, NaN → NaN.
///
/// Measured accuracy: relative error ≤ 7.2e-8 for normal results (max
/// 1.00 ulp, subnormal results included) over every f32.
pub fn erf_f32<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    let e = F32::new(b, module, x, "erf_f32")?;
    let a = e.intrinsic("llvm.fabs", &[x])?;
    let small = e.fma(a, e.horner(e.mul(a, a)?, &ERF_SMALL_P)?, a)?;
    // NaN passes the clamp and propagates through exp.
    let above = e.cmp(FloatPredicate::OGT, a, e.c(ERF_CLAMP))?;
    let ac = e.select(above, e.c(ERF_CLAMP), a)?;
    let q = e.horner(e.sub(ac, e.c(1.0))?, &ERF_LARGE_P)?;
    let gauss = e.exp(e.neg(e.mul(ac, ac)?)?)?;
    let large = e.fma(e.neg(gauss)?, q, e.c(1.0))?;
    let is_small = e.cmp(FloatPredicate::OLT, a, e.c(ERF_SMALL))?;
    let r = e.select(is_small, small, large)?;
    e.intrinsic("llvm.copysign", &[r, x])
}

/// f32: the logistic function 1/(1 + e^{−x}), inline and branch-free.
///
/// Method: with t = e^{−|x|} ∈ (0, 1] (the inline exp, which cannot
/// overflow here), 1/(1 + t) for x ≥ 0 and t/(1 + t) for x < 0, so neither
/// side overflows and tiny results keep their relative accuracy (down to the
/// subnormals, where they are as exact as f32 allows). +inf → 1, −inf → 0,
/// NaN → NaN.
///
/// Measured accuracy: relative error ≤ 1.8e-7 for normal results (max 2.40
/// ulp, subnormal results included) over every f32.
pub fn sigmoid_f32<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    let e = F32::new(b, module, x, "sigmoid_f32")?;
    let a = e.intrinsic("llvm.fabs", &[x])?;
    let t = e.exp(e.neg(a)?)?;
    let negative = e.cmp(FloatPredicate::OLT, x, e.c(0.0))?;
    let numerator = e.select(negative, t, e.c(1.0))?;
    e.div(numerator, e.add(t, e.c(1.0))?)
}

/// The libm symbol for `name` at `x`'s type: `{name}f` for f32, `{name}` for
/// f64.
fn libm_symbol(name: &str, ty: FloatType<'_>) -> Result<String, LlvmError> {
    let context = ty.get_context();
    if ty == context.f32_type() {
        Ok(format!("{name}f"))
    } else if ty == context.f64_type() {
        Ok(name.to_string())
    } else {
        Err(LlvmError::Verify(format!(
            "libm has no {name} for {}",
            ty.print_to_string()
        )))
    }
}

/// Declares `symbol` of `arity` arguments of type `ty` returning `ty` in
/// `module`, or returns the existing declaration (which must have that type).
fn libm_function<'ctx>(
    module: &Module<'ctx>,
    symbol: &str,
    ty: FloatType<'ctx>,
    arity: usize,
) -> Result<FunctionValue<'ctx>, LlvmError> {
    let params: Vec<BasicMetadataTypeEnum<'ctx>> = vec![ty.into(); arity];
    let fn_ty = ty.fn_type(&params, false);
    match module.get_function(symbol) {
        Some(function) if function.get_type() == fn_ty => Ok(function),
        Some(function) => Err(LlvmError::Verify(format!(
            "{symbol} is already declared as {}",
            function.get_type().print_to_string()
        ))),
        None => Ok(module.add_function(symbol, fn_ty, Some(Linkage::External))),
    }
}

fn call_libm<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    name: &str,
    args: &[FloatValue<'ctx>],
) -> Result<FloatValue<'ctx>, LlvmError> {
    let ty = args[0].get_type();
    if let Some(other) = args.iter().find(|a| a.get_type() != ty) {
        return Err(LlvmError::Verify(format!(
            "{name}: arguments of types {} and {}",
            ty.print_to_string(),
            other.get_type().print_to_string()
        )));
    }
    let symbol = libm_symbol(name, ty)?;
    let function = libm_function(module, &symbol, ty, args.len())?;
    let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
    let call = b.build_call(function, &args, name)?;
    Ok(call.try_as_basic_value().unwrap_basic().into_float_value())
}

/// Calls the C library's one-argument function `name` (declared in `module`
/// if absent) at `x`'s type: `{name}f` for f32 (`"sin"` → `sinf`), `{name}`
/// for f64. Used for everything the inline f32 functions do not cover (sin,
/// cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, and the f64
/// exp, log, tanh, erf). Accuracy is the C library's (glibc: correctly
/// rounded or within a few ulp); such a call is opaque to the vectorizer.
/// Any type but f32 and f64 is an error.
pub fn libm_call<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    name: &str,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    call_libm(b, module, name, &[x])
}

/// Calls the C library's two-argument function `name` (e.g. `"pow"` →
/// `powf` / `pow`) like [`libm_call`]; `x` and `y` must have the same type.
pub fn libm_call2<'ctx>(
    b: &Builder<'ctx>,
    module: &Module<'ctx>,
    name: &str,
    x: FloatValue<'ctx>,
    y: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError> {
    call_libm(b, module, name, &[x, y])
}
