//! The inline f32 elementary functions of `kiln_codegen::llvm::math` (and the
//! libm calls), each compiled (O3 → ELF object → ORC, as the CPU backend does) in a loop kernel `void f(float* in, float*
//! out, i64 n)` at O3 for the host CPU, against f64 references: edge cases,
//! then 100k random inputs with a fixed seed and 100k with a fresh one
//! (printed). Run with `--nocapture` to see the measured errors.

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, FloatType};
use inkwell::values::FloatValue;
use inkwell::{AddressSpace, IntPredicate};
use kiln_codegen::llvm::math::{
    erf_f32, exp_f32, libm_call, libm_call2, log_f32, sigmoid_f32, tanh_f32,
};
use kiln_codegen::llvm::object::{emit_object, LoadedObject};
use kiln_codegen::llvm::{host_target_machine, optimize, target_host_cpu, LlvmError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The fixed seed of the reproducible half of the random inputs.
const FIXED_SEED: u64 = 0x6b69_6c6e_6d61_7468;
/// Random inputs per function and seed.
const RANDOM_COUNT: usize = 100_000;
/// Kernel name inside each test module.
const KERNEL: &str = "f";

type UnaryFn<T> = unsafe extern "C" fn(*const T, *mut T, i64);
type BinaryFn<T> = unsafe extern "C" fn(*const T, *const T, *mut T, i64);

/// A compiled kernel applying one function elementwise, linked into the process
/// the way the CPU backend links its kernels (an ELF object through ORC).
struct Kernel<'ctx, F: Copy + 'static> {
    _object: LoadedObject,
    function: F,
    ir: String,
    _context: std::marker::PhantomData<&'ctx Context>,
}

/// Builds `void f(T* in_0, …, T* in_{arity-1}, T* out, i64 n)` writing
/// `out[i] = emit(in_0[i], …)`, optimizes it for the host and links it.
fn compile<'ctx, F: Copy + 'static>(
    context: &'ctx Context,
    elem: FloatType<'ctx>,
    arity: u32,
    emit: impl Fn(
        &Builder<'ctx>,
        &Module<'ctx>,
        &[FloatValue<'ctx>],
    ) -> Result<FloatValue<'ctx>, LlvmError>,
) -> Kernel<'ctx, F> {
    let machine = host_target_machine().expect("host target machine");
    let module = context.create_module("kiln_math_test");
    let i64_ty = context.i64_type();
    let ptr_ty = context.ptr_type(AddressSpace::default());
    let mut params: Vec<BasicMetadataTypeEnum> = vec![ptr_ty.into(); arity as usize + 1];
    params.push(i64_ty.into());
    let function = module.add_function(
        KERNEL,
        context.void_type().fn_type(&params, false),
        Some(Linkage::External),
    );
    let noalias = context.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
    for param in 0..=arity {
        function.add_attribute(AttributeLoc::Param(param), noalias);
    }
    let inputs: Vec<_> = (0..arity)
        .map(|i| function.get_nth_param(i).unwrap().into_pointer_value())
        .collect();
    let out = function.get_nth_param(arity).unwrap().into_pointer_value();
    let n = function.get_nth_param(arity + 1).unwrap().into_int_value();

    let entry = context.append_basic_block(function, "entry");
    let body = context.append_basic_block(function, "loop");
    let exit = context.append_basic_block(function, "exit");
    let b = context.create_builder();
    b.position_at_end(entry);
    let zero = i64_ty.const_zero();
    let nonempty = b
        .build_int_compare(IntPredicate::SGT, n, zero, "nonempty")
        .unwrap();
    b.build_conditional_branch(nonempty, body, exit).unwrap();

    b.position_at_end(body);
    let i = b.build_phi(i64_ty, "i").unwrap();
    let index = i.as_basic_value().into_int_value();
    let args: Vec<FloatValue> = inputs
        .iter()
        .map(|&p| {
            // SAFETY (of the IR): index < n, callers pass n elements.
            let p = unsafe { b.build_in_bounds_gep(elem, p, &[index], "p") }.unwrap();
            b.build_load(elem, p, "x").unwrap().into_float_value()
        })
        .collect();
    let y = emit(&b, &module, &args).expect("emit");
    // SAFETY (of the IR): as above.
    let po = unsafe { b.build_in_bounds_gep(elem, out, &[index], "po") }.unwrap();
    b.build_store(po, y).unwrap();
    let next = b
        .build_int_nuw_add(index, i64_ty.const_int(1, false), "next")
        .unwrap();
    i.add_incoming(&[(&zero, entry), (&next, body)]);
    let done = b
        .build_int_compare(IntPredicate::EQ, next, n, "done")
        .unwrap();
    b.build_conditional_branch(done, exit, body).unwrap();
    b.position_at_end(exit);
    b.build_return(None).unwrap();

    target_host_cpu(function, &machine);
    optimize(&module, &machine).expect("optimize");
    let ir = module.print_to_string().to_string();
    let object = LoadedObject::load(&emit_object(&module, &machine).expect("object"))
        .expect("link the object");
    let address = object.symbol(KERNEL).expect("kernel symbol");
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: `F` is the function pointer type of the signature built above
    // (checked by the callers' types), and the address is the kernel's entry.
    let function = unsafe { std::mem::transmute_copy::<usize, F>(&address) };
    Kernel {
        _object: object,
        function,
        ir,
        _context: std::marker::PhantomData,
    }
}

type F32Emit = for<'ctx> fn(
    &Builder<'ctx>,
    &Module<'ctx>,
    FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, LlvmError>;

fn compile_f32<'ctx>(context: &'ctx Context, emit: F32Emit) -> Kernel<'ctx, UnaryFn<f32>> {
    compile(context, context.f32_type(), 1, move |b, m, x| {
        emit(b, m, x[0])
    })
}

impl<T: Copy + Default> Kernel<'_, UnaryFn<T>> {
    fn run(&self, input: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); input.len()];
        let n = i64::try_from(input.len()).unwrap();
        // SAFETY: both buffers hold n elements and do not overlap.
        unsafe { (self.function)(input.as_ptr(), out.as_mut_ptr(), n) };
        out
    }
}

impl<T: Copy + Default> Kernel<'_, BinaryFn<T>> {
    fn run2(&self, a: &[T], b: &[T]) -> Vec<T> {
        assert_eq!(a.len(), b.len());
        let mut out = vec![T::default(); a.len()];
        let n = i64::try_from(a.len()).unwrap();
        // SAFETY: all buffers hold n elements and do not overlap.
        unsafe { (self.function)(a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), n) };
        out
    }
}

// ---------------------------------------------------------------------------
// References.

/// erf in f64 to ~1e-15 relative: erf(x) = 2/√π·e^{−x²}·Σ 2ⁿx^{2n+1}/(1·3·…·(2n+1))
/// (all terms positive, so no cancellation) for |x| < 6; ±1 beyond, where
/// erfc(6) ≈ 2e-17 is below f64's resolution at 1.
fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a >= 6.0 {
        return 1.0f64.copysign(x);
    }
    let z = 2.0 * a * a;
    let mut term = a;
    let mut sum = a;
    let mut k = 1.0;
    while term > sum * 1e-18 {
        term *= z / (2.0 * k + 1.0);
        sum += term;
        k += 1.0;
    }
    (std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum).copysign(x)
}

fn sigmoid_f64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let t = x.exp();
        t / (1.0 + t)
    }
}

// ---------------------------------------------------------------------------
// Error measurement.

/// The spacing of f32 values at magnitude |r| (2^-149 in the subnormals).
fn ulp_f32_at(r: f64) -> f64 {
    let a = r.abs();
    if a < f64::from(f32::MIN_POSITIVE) {
        return 2f64.powi(-149);
    }
    let exponent = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    2f64.powi(exponent.min(127) - 23)
}

/// Running maxima of one function's errors against its reference.
#[derive(Default)]
struct Errors {
    count: usize,
    max_ulp: f64,
    ulp_at: f32,
    /// Relative error, over results in f32's normal range.
    max_rel: f64,
    rel_at: f32,
    /// Absolute error, over all results.
    max_abs: f64,
    abs_at: f32,
}

impl Errors {
    /// Records `got = f(x)` against the f64 reference `want`; special values
    /// (NaN, infinities, the sign of zero) must match exactly.
    fn record(&mut self, name: &str, x: f32, got: f32, want: f64) {
        self.count += 1;
        if want.is_nan() {
            assert!(got.is_nan(), "{name}({x:e}) = {got:e}, want NaN");
            return;
        }
        assert!(!got.is_nan(), "{name}({x:e}) = NaN, want {want:e}");
        if want.is_infinite() {
            assert_eq!(f64::from(got), want, "{name}({x:e})");
            return;
        }
        if want == 0.0 {
            assert_eq!(
                got.to_bits(),
                (want as f32).to_bits(),
                "{name}({x:e}) = {got:e}, want {want:e} (sign of zero)"
            );
        }
        // +inf stands for 2^128, the value after f32::MAX in ulp terms, and
        // so does any reference beyond f32's range.
        let beyond = 2f64.powi(128);
        let got64 = if got.is_infinite() {
            beyond.copysign(f64::from(got))
        } else {
            f64::from(got)
        };
        let want = want.clamp(-beyond, beyond);
        let abs = (got64 - want).abs();
        let ulp = abs / ulp_f32_at(want);
        if ulp > self.max_ulp {
            self.max_ulp = ulp;
            self.ulp_at = x;
        }
        if abs > self.max_abs {
            self.max_abs = abs;
            self.abs_at = x;
        }
        if want.abs() >= f64::from(f32::MIN_POSITIVE) {
            let rel = abs / want.abs();
            if rel > self.max_rel {
                self.max_rel = rel;
                self.rel_at = x;
            }
        }
    }

    /// Folds `other`'s maxima into these.
    fn merge(&mut self, other: &Errors) {
        self.count += other.count;
        if other.max_ulp > self.max_ulp {
            (self.max_ulp, self.ulp_at) = (other.max_ulp, other.ulp_at);
        }
        if other.max_rel > self.max_rel {
            (self.max_rel, self.rel_at) = (other.max_rel, other.rel_at);
        }
        if other.max_abs > self.max_abs {
            (self.max_abs, self.abs_at) = (other.max_abs, other.abs_at);
        }
    }

    fn report(&self, name: &str, what: &str) {
        println!(
            "{name:>8} {what:<22} n={:<7} max ulp {:.3} (x={:e})  max rel {:.3e} (x={:e})  max abs {:.3e} (x={:e})",
            self.count, self.max_ulp, self.ulp_at, self.max_rel, self.rel_at, self.max_abs, self.abs_at
        );
    }
}

/// One inline f32 function under test.
struct Case {
    name: &'static str,
    emit: F32Emit,
    reference: fn(f64) -> f64,
    /// Edge cases: specials, boundaries, tiny values.
    edges: &'static [f32],
    /// Random inputs: uniform over the function's interesting range, plus
    /// (other half) uniformly random bit patterns of non-NaN floats.
    range: (f32, f32),
    /// Random bit patterns only of positive floats (log's domain).
    positive_bits: bool,
    check: fn(&Errors),
}

const EXP_EDGES: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1.0,
    -1.0,
    0.346_573_6, // ln2/2: the edge of the reduced range
    -0.346_573_6,
    std::f32::consts::LN_2,
    1e-30,
    -1e-30,
    1e-45,
    88.722_83, // largest x with a finite result
    88.722_84, // smallest x overflowing
    88.8,
    89.0,
    100.0,
    1e30,
    f32::MAX,
    -87.336_54, // result near the smallest normal
    -87.336_55,
    -100.0,
    -103.972_08, // result near the smallest subnormal
    -103.972_1,
    -103.98,
    -104.0,
    -110.0,
    -1e30,
    f32::MIN,
];

const LOG_EDGES: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    2.0,
    0.5,
    std::f32::consts::E,
    1.000_000_1,
    0.999_999_94,
    // Around √½, the fold point, and √2.
    f32::from_bits(std::f32::consts::FRAC_1_SQRT_2.to_bits() - 1),
    std::f32::consts::FRAC_1_SQRT_2,
    f32::from_bits(std::f32::consts::FRAC_1_SQRT_2.to_bits() + 1),
    std::f32::consts::SQRT_2,
    1e-30,
    1e30,
    f32::MIN_POSITIVE,
    1e-40, // subnormal
    1e-45, // smallest subnormal
    f32::MAX,
    -1e-30,
    f32::MIN,
];

const TANH_EDGES: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1e-30,
    -1e-30,
    1e-45,
    -1e-45,
    1e-4,
    0.1,
    0.624_999_94, // around the switch point
    0.625,
    0.625_000_06,
    -0.625,
    1.0,
    -1.0,
    2.0,
    5.0,
    9.0,
    9.1,
    -9.1,
    20.0,
    44.0,
    45.0,
    89.0,
    -89.0,
    1e30,
    f32::MAX,
    f32::MIN,
];

const ERF_EDGES: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1e-30,
    -1e-30,
    1e-40,
    1e-45,
    -1e-45,
    1e-4,
    0.5,
    -0.5,
    0.999_999_94, // around the switch point
    1.0,
    1.000_000_1,
    -1.0,
    2.0,
    3.0,
    3.9,
    3.92,
    4.0,
    4.000_000_5,
    6.0,
    10.0,
    1e30,
    f32::MAX,
    f32::MIN,
];

const SIGMOID_EDGES: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1e-30,
    -1e-30,
    1.0,
    -1.0,
    10.0,
    -10.0,
    17.0,
    20.0,
    -20.0,
    87.0,
    -87.0,
    88.0,
    -88.0,
    88.8,
    -88.8, // subnormal results from here
    -89.0,
    -100.0,
    -103.0,
    -104.0,
    -110.0,
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "exp",
            emit: exp_f32,
            reference: f64::exp,
            edges: EXP_EDGES,
            range: (-104.0, 89.0),
            positive_bits: false,
            check: |e| assert!(e.max_ulp <= 2.0, "exp: {} ulp", e.max_ulp),
        },
        Case {
            name: "log",
            emit: log_f32,
            reference: f64::ln,
            edges: LOG_EDGES,
            range: (0.5, 2.0),
            positive_bits: true,
            check: |e| assert!(e.max_ulp <= 2.0, "log: {} ulp", e.max_ulp),
        },
        Case {
            name: "tanh",
            emit: tanh_f32,
            reference: f64::tanh,
            edges: TANH_EDGES,
            range: (-10.0, 10.0),
            positive_bits: false,
            check: |e| {
                assert!(e.max_rel <= 1e-6, "tanh: relative {:e}", e.max_rel);
                // Subnormal results (tanh(x) = x) are exact.
                assert!(e.max_ulp <= 3.0, "tanh: {} ulp", e.max_ulp);
            },
        },
        Case {
            name: "erf",
            emit: erf_f32,
            reference: erf_f64,
            edges: ERF_EDGES,
            range: (-5.0, 5.0),
            positive_bits: false,
            check: |e| {
                assert!(e.max_rel <= 2e-6, "erf: relative {:e}", e.max_rel);
                assert!(e.max_ulp <= 3.0, "erf: {} ulp", e.max_ulp);
            },
        },
        Case {
            name: "sigmoid",
            emit: sigmoid_f32,
            reference: sigmoid_f64,
            edges: SIGMOID_EDGES,
            range: (-90.0, 90.0),
            positive_bits: false,
            check: |e| {
                assert!(e.max_rel <= 1e-6, "sigmoid: relative {:e}", e.max_rel);
                assert!(e.max_ulp <= 3.0, "sigmoid: {} ulp", e.max_ulp);
            },
        },
    ]
}

/// `count` inputs: half uniform over `range`, half random bit patterns of
/// non-NaN floats (positive ones only where `positive`).
fn random_inputs(rng: &mut StdRng, count: usize, range: (f32, f32), positive: bool) -> Vec<f32> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                rng.random_range(range.0..=range.1)
            } else {
                let magnitude = rng.random_range(0..=0x7f80_0000u32);
                let sign = if positive {
                    0
                } else {
                    rng.random::<u32>() & 0x8000_0000
                };
                f32::from_bits(magnitude | sign)
            }
        })
        .collect()
}

fn measure(case: &Case, kernel: &Kernel<'_, UnaryFn<f32>>, inputs: &[f32]) -> Errors {
    let got = kernel.run(inputs);
    let mut errors = Errors::default();
    for (&x, &y) in inputs.iter().zip(&got) {
        errors.record(case.name, x, y, (case.reference)(f64::from(x)));
    }
    errors
}

#[test]
fn reference_erf_is_accurate() {
    // erf values from mpmath at 40 digits, rounded to f64.
    let known = [
        (1e-10, 1.128_379_167_095_512_6e-10),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.5, 0.999_999_256_901_627_6),
        (5.0, 0.999_999_999_998_462_6),
    ];
    for (x, want) in known {
        let got = erf_f64(x);
        assert!(
            ((got - want) / want).abs() < 1e-15,
            "erf_f64({x}) = {got:e}, want {want:e}"
        );
        assert_eq!(erf_f64(-x), -got);
    }
}

#[test]
fn inline_f32_functions_match_f64_references() {
    let context = Context::create();
    let fresh_seed: u64 = rand::rng().random();
    println!("fixed seed {FIXED_SEED:#x}, fresh seed {fresh_seed:#x}");
    for case in cases() {
        let kernel = compile_f32(&context, case.emit);

        // Edges alone (the scalar epilogue) and repeated 17 times (lanes of
        // the vector body at every offset): both must agree bit for bit.
        let edges = measure(&case, &kernel, case.edges);
        let single: Vec<f32> = case.edges.iter().flat_map(|&x| kernel.run(&[x])).collect();
        let repeated: Vec<f32> = case
            .edges
            .iter()
            .copied()
            .cycle()
            .take(case.edges.len() * 17)
            .collect();
        let bulk = kernel.run(&repeated);
        for (i, &y) in bulk.iter().enumerate() {
            let k = i % case.edges.len();
            assert_eq!(
                y.to_bits(),
                single[k].to_bits(),
                "{}({:e}): vector lane {i} gives {y:e}, scalar {:e}",
                case.name,
                case.edges[k],
                single[k]
            );
        }
        edges.report(case.name, "edge cases");

        let mut all = Errors::default();
        all.merge(&edges);
        for (label, seed) in [("fixed seed", FIXED_SEED), ("fresh seed", fresh_seed)] {
            let mut rng = StdRng::seed_from_u64(seed);
            // An odd length leaves a scalar remainder after the vector loop.
            let inputs = random_inputs(&mut rng, RANDOM_COUNT + 3, case.range, case.positive_bits);
            let errors = measure(&case, &kernel, &inputs);
            errors.report(case.name, &format!("random, {label}"));
            all.merge(&errors);
        }
        all.report(case.name, "all");
        (case.check)(&all);
    }
}

/// Around zero the functions must keep relative accuracy: dense samples of
/// |x| over [1e-30, 1] on a log scale.
#[test]
fn inline_f32_functions_are_accurate_near_zero() {
    let context = Context::create();
    let inputs: Vec<f32> = (0..20_001)
        .map(|i| {
            let x = 10f64.powf(-30.0 + 30.0 * f64::from(i) / 20_000.0) as f32;
            if i % 2 == 0 {
                x
            } else {
                -x
            }
        })
        .collect();
    for case in cases() {
        if case.name == "log" {
            continue;
        }
        let kernel = compile_f32(&context, case.emit);
        let errors = measure(&case, &kernel, &inputs);
        errors.report(case.name, "near zero");
        (case.check)(&errors);
    }
}

#[test]
fn inline_f32_functions_vectorize_without_libm_calls() {
    let context = Context::create();
    for case in cases() {
        let kernel = compile_f32(&context, case.emit);
        let ir = &kernel.ir;
        let vectorized = [8, 16]
            .iter()
            .any(|lanes| ir.contains(&format!("<{lanes} x float>")));
        assert!(
            vectorized,
            "{}: no <8 x float> or <16 x float> in optimized IR:\n{ir}",
            case.name
        );
        for libm in ["@expf", "@logf", "@tanhf", "@erff", "@exp(", "@log("] {
            assert!(!ir.contains(libm), "{}: calls {libm}:\n{ir}", case.name);
        }
        let width = [16, 8]
            .into_iter()
            .find(|lanes| ir.contains(&format!("<{lanes} x float>")))
            .unwrap();
        println!("{:>8}: vectorized, <{width} x float>", case.name);
    }
}

#[test]
fn libm_calls_match_rust_std() {
    // The calls only need to reach the right C function at the right type:
    // the f64 results must agree with Rust's to 1e-13 (Rust's inverse
    // hyperbolics are its own, a few ulp off glibc's), the f32 ones with the
    // f64 reference to 4 f32 ulp.
    type Unary = (&'static str, fn(f64) -> f64, (f64, f64));
    let functions: [Unary; 15] = [
        ("sin", f64::sin, (-10.0, 10.0)),
        ("cos", f64::cos, (-10.0, 10.0)),
        ("tan", f64::tan, (-1.5, 1.5)),
        ("asin", f64::asin, (-1.0, 1.0)),
        ("acos", f64::acos, (-1.0, 1.0)),
        ("atan", f64::atan, (-100.0, 100.0)),
        ("sinh", f64::sinh, (-20.0, 20.0)),
        ("cosh", f64::cosh, (-20.0, 20.0)),
        ("asinh", f64::asinh, (-100.0, 100.0)),
        ("acosh", f64::acosh, (1.0, 100.0)),
        ("atanh", f64::atanh, (-0.99, 0.99)),
        ("exp", f64::exp, (-50.0, 50.0)),
        ("log", f64::ln, (1e-3, 1e3)),
        ("tanh", f64::tanh, (-10.0, 10.0)),
        ("erf", erf_f64, (-5.0, 5.0)),
    ];
    let context = Context::create();
    let mut rng = StdRng::seed_from_u64(FIXED_SEED);
    for (name, reference, (lo, hi)) in functions {
        let xs64: Vec<f64> = (0..1001).map(|_| rng.random_range(lo..=hi)).collect();
        let xs32: Vec<f32> = xs64.iter().map(|&x| x as f32).collect();

        let k64: Kernel<UnaryFn<f64>> = compile(&context, context.f64_type(), 1, |b, m, x| {
            libm_call(b, m, name, x[0])
        });
        assert!(
            k64.ir.contains(&format!("@{name}(")),
            "{name}: no call to {name}"
        );
        for (&x, y) in xs64.iter().zip(k64.run(&xs64)) {
            let want = reference(x);
            let tolerance = 1e-13 * want.abs().max(f64::MIN_POSITIVE);
            assert!(
                (y - want).abs() <= tolerance,
                "{name}({x:e}) = {y:e}, want {want:e}"
            );
        }

        let k32: Kernel<UnaryFn<f32>> = compile(&context, context.f32_type(), 1, |b, m, x| {
            libm_call(b, m, name, x[0])
        });
        assert!(
            k32.ir.contains(&format!("@{name}f(")),
            "{name}: no call to {name}f"
        );
        for (&x, y) in xs32.iter().zip(k32.run(&xs32)) {
            let want = reference(f64::from(x));
            let tolerance = 4.0 * ulp_f32_at(want);
            assert!(
                (f64::from(y) - want).abs() <= tolerance,
                "{name}f({x:e}) = {y:e}, want {want:e}"
            );
        }
    }

    let xs: Vec<f64> = (0..1001).map(|_| rng.random_range(0.0..=10.0)).collect();
    let ys: Vec<f64> = (0..1001).map(|_| rng.random_range(-5.0..=5.0)).collect();
    let pow64: Kernel<BinaryFn<f64>> = compile(&context, context.f64_type(), 2, |b, m, v| {
        libm_call2(b, m, "pow", v[0], v[1])
    });
    for ((&x, &y), z) in xs.iter().zip(&ys).zip(pow64.run2(&xs, &ys)) {
        let want = x.powf(y);
        assert!(
            (z - want).abs() <= 1e-13 * want.abs(),
            "pow({x}, {y}) = {z:e}, want {want:e}"
        );
    }
    let (xs, ys): (Vec<f32>, Vec<f32>) = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| (x as f32, y as f32))
        .unzip();
    let pow32: Kernel<BinaryFn<f32>> = compile(&context, context.f32_type(), 2, |b, m, v| {
        libm_call2(b, m, "pow", v[0], v[1])
    });
    assert!(pow32.ir.contains("@powf("), "no call to powf");
    for ((&x, &y), z) in xs.iter().zip(&ys).zip(pow32.run2(&xs, &ys)) {
        let want = f64::from(x).powf(f64::from(y));
        assert!(
            (f64::from(z) - want).abs() <= 4.0 * ulp_f32_at(want),
            "powf({x}, {y}) = {z:e}, want {want:e}"
        );
    }
}

#[test]
fn non_float_arguments_are_errors() {
    let context = Context::create();
    let module = context.create_module("kiln_math_errors");
    let f64_ty = context.f64_type();
    let function = module.add_function("g", f64_ty.fn_type(&[f64_ty.into()], false), None);
    let b = context.create_builder();
    b.position_at_end(context.append_basic_block(function, "entry"));
    let x = function.get_nth_param(0).unwrap().into_float_value();
    // The inline functions are f32 only.
    for emit in [exp_f32, log_f32, tanh_f32, erf_f32, sigmoid_f32] as [F32Emit; 5] {
        assert!(matches!(emit(&b, &module, x), Err(LlvmError::Verify(_))));
    }
    // libm has no f16 functions; mixed types are refused.
    let h = context.f16_type().const_float(1.0);
    assert!(libm_call(&b, &module, "sin", h).is_err());
    let single = context.f32_type().const_float(1.0);
    assert!(libm_call2(&b, &module, "pow", x, single).is_err());
    // A second call reuses the declaration.
    libm_call(&b, &module, "sin", x).unwrap();
    libm_call(&b, &module, "sin", x).unwrap();
    assert!(module.get_function("sin").is_some());
}

/// Every f32 bit pattern through each inline function (about a minute per
/// function on two cores): `cargo test --release -p kiln-codegen --test
/// llvm_math -- --ignored --nocapture`.
#[test]
#[ignore = "exhaustive: minutes; run with --ignored"]
fn inline_f32_functions_exhaustive() {
    const CHUNK: u64 = 1 << 20;
    let context = Context::create();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    for case in cases() {
        let kernel = compile_f32(&context, case.emit);
        // `kernel` (and its linked object) outlives the scoped threads.
        let raw = kernel.function;
        let chunks = (1u64 << 32) / CHUNK;
        let partial: Vec<Errors> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let case = &case;
                    scope.spawn(move || {
                        let mut errors = Errors::default();
                        let mut out = vec![0f32; CHUNK as usize];
                        for chunk in (t..chunks).step_by(threads as usize) {
                            let inputs: Vec<f32> = (chunk * CHUNK..(chunk + 1) * CHUNK)
                                .map(|bits| f32::from_bits(bits as u32))
                                .collect();
                            // SAFETY: both buffers hold CHUNK elements.
                            unsafe { raw(inputs.as_ptr(), out.as_mut_ptr(), CHUNK as i64) };
                            for (&x, &y) in inputs.iter().zip(&out) {
                                errors.record(case.name, x, y, (case.reference)(f64::from(x)));
                            }
                        }
                        errors
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all = Errors::default();
        for e in &partial {
            all.merge(e);
        }
        all.report(case.name, "every f32");
        (case.check)(&all);
    }
}
