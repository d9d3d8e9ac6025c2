//! The fused attention kernel (`gpu::attention`): graphs with one `Attention`
//! node are scheduled (three steps and their record), lowered for the GPU with
//! the fused kernel and with the three steps, and both run on the SIMT
//! interpreter. The fused result matches the reference interpreter (rows it
//! leaves finite) and the three-step path everywhere, NaN for NaN, on random
//! shapes: 1, 7, 64, 65 and 130 queries and keys, head dims 8..64, GQA groups
//! 1, 2 and 4, causal or not, float and bool masks broadcast and narrow, soft
//! cap, transposed operands, fully masked rows. The kernel's text form is
//! pinned, and it compiles with NVRTC for `sm_90a` and `sm_80` without spills.

mod common;

use common::{nvrtc, seed};
use kiln_codegen::gpu::attention::{shape, AttentionShape};
use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form};
use kiln_codegen::gpu::cuda::{module_source, ptxas};
use kiln_codegen::gpu::program::{GpuProgram, GpuStep, LowerOptions};
use kiln_codegen::gpu::sim::{launch, SimBuffer};
use kiln_codegen::gpu::{GpuKernel, Scalar, MAX_SHARED_BYTES};
use kiln_codegen::program::{BufferKind, Program};
use kiln_codegen::schedule::{schedule, step_io};
use kiln_ir::op::{CompositeOp, LayoutOp, QkOutput};
use kiln_ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln_test_support::{require, Resource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Query and key counts the random cases draw from: decode, odd, one tile of
/// 64, one past it, past two.
const SEQS: [usize; 5] = [1, 7, 64, 65, 130];
/// Most multiply-adds of one case (scores and `P·V`): the interpreter does a
/// few million a second, and each case runs twice (fused, three steps).
const MAX_WORK: usize = 250_000;
/// Random cases per run.
const CASES: usize = 24;

/// One attention problem.
#[derive(Clone, Debug)]
struct Case {
    batch: Vec<usize>,
    hq: usize,
    hkv: usize,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
    causal: bool,
    softcap: Option<f32>,
    scale: Option<f32>,
    /// Mask dtype and shape.
    mask: Option<(DType, Vec<usize>)>,
    /// Bool masks: the probability a key is kept (key 0 is always kept unless
    /// `masked_rows`).
    keep: f64,
    /// Some bool mask rows keep no key at all.
    masked_rows: bool,
    /// Q, K and V stored `[.., s, h, d]`, read through transposes.
    transposed: bool,
}

impl Case {
    fn work(&self) -> usize {
        self.batch.iter().product::<usize>() * self.hq * self.sq * self.skv * (self.d + self.dv)
    }

    fn random(rng: &mut StdRng) -> Case {
        let group = [1, 2, 4][rng.random_range(0..3)];
        let hkv = rng.random_range(1..=2);
        let mut c = Case {
            batch: if rng.random_bool(0.3) {
                vec![]
            } else {
                vec![rng.random_range(1..=2)]
            },
            hq: hkv * group,
            hkv,
            sq: SEQS[rng.random_range(0..5)],
            skv: SEQS[rng.random_range(0..5)],
            d: rng.random_range(8..=64),
            dv: if rng.random_bool(0.7) {
                0
            } else {
                rng.random_range(8..=64)
            },
            causal: rng.random_bool(0.5),
            softcap: rng.random_bool(0.25).then_some(3.0),
            scale: rng.random_bool(0.3).then_some(0.3),
            mask: None,
            keep: 0.6,
            masked_rows: false,
            transposed: rng.random_bool(0.3),
        };
        if c.dv == 0 {
            c.dv = c.d;
        }
        while c.work() > MAX_WORK {
            if c.d > 8 {
                c.d = (c.d / 2).max(8);
                c.dv = (c.dv / 2).max(8);
            } else if !c.batch.is_empty() && c.batch[0] > 1 {
                c.batch[0] = 1;
            } else if c.hkv > 1 {
                c.hkv = 1;
                c.hq = group;
            } else if c.sq > c.skv {
                c.sq = SEQS[SEQS.iter().position(|&s| s == c.sq).unwrap() - 1];
            } else {
                c.skv = SEQS[SEQS.iter().position(|&s| s == c.skv).unwrap() - 1];
            }
        }
        let lead = c.batch.len();
        // A mask broadcast along some dims, sometimes narrower than the keys.
        if rng.random_bool(0.6) {
            let dt = if rng.random_bool(0.5) {
                DType::Bool
            } else {
                DType::F32
            };
            let width = if rng.random_bool(0.2) {
                rng.random_range(1..=c.skv)
            } else {
                c.skv
            };
            let mut dims: Vec<usize> = c.batch.clone();
            dims.extend([c.hq, c.sq, width]);
            for d in dims.iter_mut().take(lead + 2) {
                if rng.random_bool(0.5) {
                    *d = 1;
                }
            }
            let drop = rng.random_range(0..=lead + 1).min(dims.len() - 1);
            if rng.random_bool(0.3) {
                dims.drain(..drop);
            }
            c.masked_rows = dt == DType::Bool && rng.random_bool(0.3);
            c.mask = Some((dt, dims));
        }
        c
    }

    fn dims(&self, h: usize, s: usize, d: usize) -> Vec<usize> {
        let mut v = self.batch.clone();
        v.extend([h, s, d]);
        v
    }
}

fn uniform(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..n)
            .map(|_| rng.random_range(lo..hi))
            .collect::<Vec<f32>>(),
    )
}

/// The graph of `c` and its inputs.
fn graph(rng: &mut StdRng, c: &Case) -> (Graph, Vec<(String, Tensor)>) {
    let mut g = Graph::new("attention");
    let mut inputs = Vec::new();
    let mut add_input = |g: &mut Graph, name: &str, t: Tensor| -> ValueId {
        let id = g.add_input(name, TensorType::new(t.dtype(), Shape::known(t.shape())));
        inputs.push((name.to_string(), t));
        id
    };
    let mut operands = Vec::new();
    for (name, h, s, d) in [
        ("q", c.hq, c.sq, c.d),
        ("k", c.hkv, c.skv, c.d),
        ("v", c.hkv, c.skv, c.dv),
    ] {
        let v = if c.transposed {
            let l = c.batch.len();
            let mut stored = c.batch.clone();
            stored.extend([s, h, d]);
            let raw = add_input(
                &mut g,
                &format!("{name}_bshd"),
                uniform(rng, &stored, -2.0, 2.0),
            );
            let mut perm: Vec<usize> = (0..l).collect();
            perm.extend([l + 1, l, l + 2]);
            g.add_node(
                format!("t_{name}"),
                Op::Layout(LayoutOp::Transpose { perm }),
                vec![raw],
                &[name.to_string()],
                None,
            )
            .unwrap()[0]
        } else {
            add_input(&mut g, name, uniform(rng, &c.dims(h, s, d), -2.0, 2.0))
        };
        operands.push(v);
    }
    if let Some((dt, ms)) = &c.mask {
        let t = if *dt == DType::Bool {
            let w = *ms.last().unwrap();
            let n: usize = ms.iter().product();
            let rows_masked = c.masked_rows;
            let v: Vec<bool> = (0..n)
                .map(|i| {
                    let row = i / w;
                    if rows_masked && row % 3 == 1 {
                        false
                    } else {
                        i % w == 0 || rng.random_bool(c.keep)
                    }
                })
                .collect();
            Tensor::from_vec(ms.clone(), v)
        } else {
            uniform(rng, ms, -4.0, 1.0)
        };
        operands.push(add_input(&mut g, "mask", t));
    }
    let op = Op::Composite(CompositeOp::Attention {
        scale: c.scale,
        causal: c.causal,
        softcap: c.softcap,
        mask: c.mask.is_some(),
        past: false,
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    });
    let y = g
        .add_node("attn", op, operands, &["y".to_string()], None)
        .unwrap()[0];
    g.outputs.push(y);
    (g, inputs)
}

/// Runs every step of `gpu` on the SIMT interpreter (all launches or skips);
/// returns the graph outputs.
fn run(gpu: &GpuProgram, inputs: &[(String, Tensor)]) -> Vec<Vec<f64>> {
    let prog = &gpu.program;
    let mut bufs: Vec<Option<SimBuffer>> = prog
        .buffers
        .iter()
        .map(|b| {
            let scalar = Scalar::of(b.dtype);
            Some(match b.kind {
                BufferKind::Input(i) => SimBuffer::from_le_bytes(scalar, inputs[i].1.bytes()),
                _ => SimBuffer::zeros(scalar, b.numel()),
            })
        })
        .collect();
    for step in &gpu.steps {
        match step {
            GpuStep::Launch { kernel, args } => {
                let k = &gpu.kernels[*kernel];
                let roots: Vec<usize> = args.iter().map(|&a| prog.root(a)).collect();
                let mut local: Vec<SimBuffer> =
                    roots.iter().map(|&r| bufs[r].clone().unwrap()).collect();
                launch(k, &mut local).unwrap_or_else(|e| panic!("{}: {e}", k.name));
                for (r, b) in roots.iter().zip(local) {
                    bufs[*r] = Some(b);
                }
            }
            GpuStep::Skip => {}
            other => panic!("unexpected step {other:?}"),
        }
    }
    prog.outputs
        .iter()
        .map(|&(_, b)| bufs[prog.root(b)].as_ref().unwrap().to_f64_vec())
        .collect()
}

/// The fused kernel of `gpu`, checking the program has exactly one attention
/// and that its GEMMs are skipped.
fn fused_kernel(gpu: &GpuProgram) -> &GpuKernel {
    let a = &gpu.program.attentions;
    assert_eq!(a.len(), 1, "one attention record");
    let [s0, s1, s2] = a[0].steps;
    assert_eq!(gpu.steps[s0], GpuStep::Skip);
    assert_eq!(gpu.steps[s2], GpuStep::Skip);
    let GpuStep::Launch { kernel, .. } = &gpu.steps[s1] else {
        panic!("the softmax step launches the fused kernel")
    };
    let k = &gpu.kernels[*kernel];
    assert!(k.name.starts_with("attention"), "{}", k.name);
    k
}

fn program(g: &Graph) -> Program {
    schedule(g).unwrap()
}

/// The softmax step (where the fused kernel runs) reads Q, K, V and the mask
/// and writes Y in the program's own accounting, so the memory plan, made
/// from the steps, never places Y over an operand it reads.
fn plan_keeps_operands_live(prog: &Program) {
    let a = &prog.attentions[0];
    let (reads, writes) = step_io(prog, &prog.steps[a.steps[1]]);
    for b in [a.q.buf, a.k.buf, a.v.buf]
        .into_iter()
        .chain(a.mask.as_ref().map(|m| m.buf))
    {
        assert!(
            reads.contains(&b),
            "buffer {b} not read at the softmax step"
        );
    }
    assert!(
        writes.contains(&a.out),
        "output not written at the softmax step"
    );
}

/// Compares fused with the three steps (NaN for NaN) and with the reference
/// (where it is finite); errors relative to max |V| (outputs are convex
/// combinations of V's rows).
fn compare(what: &str, fused: &[f64], three: &[f64], want: &[f64]) {
    assert_eq!(fused.len(), want.len(), "{what}");
    let tol = 2e-5 * 2.0 * 8.0;
    for (i, ((&f, &t), &w)) in fused.iter().zip(three).zip(want).enumerate() {
        assert_eq!(
            f.is_nan(),
            t.is_nan(),
            "{what}[{i}]: fused {f}, three steps {t}"
        );
        if !t.is_nan() {
            assert!(
                (f - t).abs() <= tol,
                "{what}[{i}]: fused {f}, three steps {t}"
            );
        }
        if !w.is_nan() {
            assert!(
                (f - w).abs() <= tol,
                "{what}[{i}]: fused {f}, reference {w}"
            );
        }
    }
}

fn check_case(rng: &mut StdRng, c: &Case) -> AttentionShape {
    let what = format!("{c:?}");
    let (g, inputs) = graph(rng, c);
    let want = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let want = want[0].to_f64_vec();
    let prog = program(&g);
    plan_keeps_operands_live(&prog);
    let fused_prog = GpuProgram::lower_with(prog.clone(), LowerOptions::default());
    let k = fused_kernel(&fused_prog);
    k.check().unwrap();
    assert!(k.shared_bytes() <= MAX_SHARED_BYTES);
    let three_prog = GpuProgram::lower_three_step(prog, LowerOptions::default());
    let fused = run(&fused_prog, &inputs);
    let three = run(&three_prog, &inputs);
    compare(&what, &fused[0], &three[0], &want);
    if !c.masked_rows {
        assert!(
            fused[0].iter().all(|x| x.is_finite()),
            "{what}: non-finite output"
        );
    }
    shape(&fused_prog.program.attentions[0])
}

#[test]
fn fused_attention_matches_the_three_steps_and_the_reference_on_random_shapes() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut shapes = Vec::new();
    for _ in 0..CASES {
        let c = Case::random(&mut rng);
        shapes.push(check_case(&mut rng, &c));
    }
    eprintln!("shapes: {shapes:?}");
}

/// Fixed forms every run covers: decode (split keys) with GQA, fully masked
/// rows in both shapes, a causal prefill longer than the queries, soft cap.
#[test]
fn fused_attention_fixed_forms() {
    let base = Case {
        batch: vec![1],
        hq: 2,
        hkv: 1,
        sq: 1,
        skv: 130,
        d: 16,
        dv: 16,
        causal: false,
        softcap: None,
        scale: None,
        mask: None,
        keep: 0.6,
        masked_rows: false,
        transposed: false,
    };
    let mut rng = StdRng::seed_from_u64(seed());
    let cases = [
        (base.clone(), AttentionShape::SplitKeys),
        (
            Case {
                hq: 4,
                mask: Some((DType::Bool, vec![1, 1, 1, 130])),
                keep: 0.1,
                ..base.clone()
            },
            AttentionShape::SplitKeys,
        ),
        (
            Case {
                hq: 4,
                sq: 7,
                skv: 65,
                mask: Some((DType::Bool, vec![1, 4, 7, 65])),
                masked_rows: true,
                ..base.clone()
            },
            AttentionShape::Rows,
        ),
        (
            Case {
                hq: 1,
                sq: 3,
                skv: 65,
                mask: Some((DType::Bool, vec![3, 65])),
                masked_rows: true,
                ..base.clone()
            },
            AttentionShape::SplitKeys,
        ),
        (
            Case {
                sq: 65,
                skv: 64,
                causal: true,
                softcap: Some(2.0),
                mask: Some((DType::F32, vec![65, 64])),
                d: 40,
                dv: 24,
                ..base.clone()
            },
            AttentionShape::Rows,
        ),
        (
            Case {
                hq: 4,
                hkv: 2,
                sq: 1,
                skv: 7,
                transposed: true,
                ..base.clone()
            },
            AttentionShape::Rows,
        ),
    ];
    for (c, want) in &cases {
        assert_eq!(check_case(&mut rng, c), *want, "{c:?}");
    }
}

/// A small case's fused kernel (rows shape, causal, bool mask, GQA).
fn small_kernel(split: bool) -> GpuKernel {
    let c = Case {
        batch: vec![1],
        hq: 2,
        hkv: 1,
        sq: if split { 1 } else { 5 },
        skv: if split { 40 } else { 9 },
        d: 8,
        dv: 8,
        causal: !split,
        softcap: None,
        scale: None,
        mask: Some((DType::Bool, vec![1, 1, 1, if split { 40 } else { 9 }])),
        keep: 0.6,
        masked_rows: false,
        transposed: false,
    };
    let (g, _) = graph(&mut StdRng::seed_from_u64(1), &c);
    let gpu = GpuProgram::lower_with(program(&g), LowerOptions::default());
    fused_kernel(&gpu).clone()
}

#[test]
fn the_fused_kernel_text_is_pinned() {
    insta::assert_snapshot!("attention_rows", small_kernel(false).to_string());
    insta::assert_snapshot!("attention_split_keys", small_kernel(true).to_string());
}

/// Prefill and decode kernels of head dims 8 to 128 (small ones matter too:
/// ptxas keeps a kernel that nearly fits in 32 registers there, spilling).
fn sized_kernels() -> Vec<GpuKernel> {
    let mut out = Vec::new();
    let shapes = [
        (256, 256, false),
        (1, 512, true),
        (64, 64, true),
        (1, 64, false),
    ];
    for (d, (sq, skv, mask)) in [8, 16, 32, 64, 128]
        .into_iter()
        .flat_map(|d| shapes.map(|s| (d, s)))
    {
        let c = Case {
            batch: vec![1],
            hq: 8,
            hkv: if sq == 1 { 2 } else { 8 },
            sq,
            skv,
            d,
            dv: d,
            causal: sq > 1,
            softcap: None,
            scale: None,
            mask: mask.then(|| (DType::Bool, vec![1, 1, sq, skv])),
            keep: 0.6,
            masked_rows: false,
            transposed: false,
        };
        let graph = shapes_graph(&c);
        let gpu = GpuProgram::lower_with(program(&graph), LowerOptions::default());
        let mut k = fused_kernel(&gpu).clone();
        k.name = format!("attention_d{d}_{sq}x{skv}");
        out.push(k);
    }
    out
}

/// `graph` without values (for kernels compiled, not run).
fn shapes_graph(c: &Case) -> Graph {
    let mut g = Graph::new("attention");
    let mut ops = Vec::new();
    for (name, h, s, d) in [
        ("q", c.hq, c.sq, c.d),
        ("k", c.hkv, c.skv, c.d),
        ("v", c.hkv, c.skv, c.dv),
    ] {
        ops.push(g.add_input(
            name,
            TensorType::new(DType::F32, Shape::known(&c.dims(h, s, d))),
        ));
    }
    if let Some((dt, ms)) = &c.mask {
        ops.push(g.add_input("mask", TensorType::new(*dt, Shape::known(ms))));
    }
    let op = Op::Composite(CompositeOp::Attention {
        scale: None,
        causal: c.causal,
        softcap: None,
        mask: c.mask.is_some(),
        past: false,
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    });
    let y = g
        .add_node("attn", op, ops, &["y".to_string()], None)
        .unwrap()[0];
    g.outputs.push(y);
    g
}

#[test]
fn fused_kernels_compile_and_assemble_without_spills() {
    let test = "fused_kernels_compile_and_assemble_without_spills";
    let Some(nvrtc) = nvrtc(test) else {
        return;
    };
    let Some(ptxas_path) = require(Resource::Ptxas, test) else {
        return;
    };
    let mut kernels = sized_kernels();
    let mut small = small_kernel(false);
    small.name = "attention_small_rows".into();
    let mut split = small_kernel(true);
    split.name = "attention_small_split".into();
    kernels.extend([small, split]);
    let source = module_source(&kernels).unwrap();
    for arch in [Arch::SM_90A, Arch::SM_80] {
        let c = nvrtc
            .compile(&source, arch, Form::Cubin)
            .unwrap_or_else(|e| panic!("{e}\n--- source ---\n{source}"));
        assert!(c.log.is_empty(), "{arch}: {}", c.log);
        let report = ptxas::resources(&ptxas_path, &c.ptx, arch).unwrap();
        for k in &kernels {
            let r = report.iter().find(|r| r.name == k.name).unwrap();
            eprintln!(
                "{arch} {}: {} registers, {} B spill stores, {} B spill loads, {} B stack, {} B shared",
                r.name, r.registers, r.spill_stores, r.spill_loads, r.stack_frame, r.shared_bytes
            );
            assert_eq!((r.spill_stores, r.spill_loads), (0, 0), "{arch}: {r:?}");
            assert_eq!(r.stack_frame, 0, "{arch}: {r:?}");
            assert_eq!(r.shared_bytes, k.shared_bytes() as u64, "{arch}: {r:?}");
            assert!(r.registers <= 65536 / k.launch.block, "{arch}: {r:?}");
        }
    }
}
