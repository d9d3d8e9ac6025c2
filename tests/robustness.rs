//! Malformed models never panic the importer: real models from the ONNX test data,
//! mutated at random (flipped bytes, truncations, insertions), must either import or
//! fail with an error. A fixed seed list keeps the run reproducible; one fresh seed
//! per run (printed) widens the search over time.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiln_frontends::onnx::{self, proto};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutants per model and seed.
const MUTANTS: usize = 12;
/// Every how many-th node-test model the importer tests mutate.
const IMPORT_STEP: usize = 10;
/// Every how many-th node-test model the interpreter test mutates and runs.
const INTERP_STEP: usize = 4;

fn models(step: usize) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/demo/tiny-bert.onnx")];
    if let Some(data) = kiln_test_support::require(
        kiln_test_support::Resource::OnnxTestData,
        "robustness (mutated ONNX node tests)",
    )
    .map(|data| data.join("node"))
    {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(data)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("model.onnx"))
            .collect();
        cases.sort();
        // A spread of op types: every `step`-th case.
        v.extend(cases.into_iter().step_by(step));
    }
    v
}

fn mutate(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
        }
        1 => b.truncate(rng.random_range(0..b.len())),
        2 => {
            let i = rng.random_range(0..b.len());
            let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            b.splice(i..i, junk);
        }
        _ => {
            // Small integers are where dims, types and attribute values live.
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] = *[0u8, 1, 2, 0x7f, 0x80, 0xff]
                    .get(rng.random_range(0..6))
                    .unwrap();
            }
        }
    }
    b
}

/// A structural mutation of a decoded model: attribute values, dims, inputs and
/// types set to small or out-of-range values, where converters must check.
fn mutate_structure(rng: &mut StdRng, model: &mut proto::ModelProto, big: bool) {
    let Some(g) = model.graph.as_mut() else {
        return;
    };
    // `big` adds a huge value: fine for import, but a model that then runs with it
    // may legitimately compute gigabytes, which a test should not.
    let n = if big { 8 } else { 7 };
    let small = move |rng: &mut StdRng| [-2i64, -1, 0, 1, 2, 3, 7, 1 << 20][rng.random_range(0..n)];
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..6) {
            0 if !g.node.is_empty() => {
                let n = rng.random_range(0..g.node.len());
                if let Some(a) = g.node[n].attribute.iter_mut().next() {
                    if a.i.is_some() {
                        a.i = Some(small(rng));
                    }
                    if !a.ints.is_empty() {
                        let i = rng.random_range(0..a.ints.len());
                        a.ints[i] = small(rng);
                    }
                    if rng.random_bool(0.3) {
                        a.ints.pop();
                    }
                }
            }
            1 if !g.node.is_empty() => {
                let n = rng.random_range(0..g.node.len());
                if rng.random_bool(0.5) {
                    g.node[n].input.pop();
                } else {
                    g.node[n].input.push(String::new());
                }
            }
            2 => {
                if let Some(vi) = g.input.first_mut() {
                    if let Some(proto::type_proto::Value::TensorType(t)) =
                        vi.r#type.as_mut().and_then(|t| t.value.as_mut())
                    {
                        if rng.random_bool(0.5) {
                            t.elem_type = rng.random_range(0..17);
                        } else if let Some(s) = t.shape.as_mut() {
                            s.dim.pop();
                        }
                    }
                }
            }
            3 if !g.initializer.is_empty() => {
                let i = rng.random_range(0..g.initializer.len());
                let t = &mut g.initializer[i];
                if t.dims.is_empty() || rng.random_bool(0.3) {
                    t.dims.push(small(rng));
                } else {
                    let d = rng.random_range(0..t.dims.len());
                    t.dims[d] = small(rng);
                }
            }
            4 if g.node.len() > 1 => {
                let n = rng.random_range(0..g.node.len());
                g.node.remove(n);
            }
            _ => {
                if let Some(o) = model.opset_import.first_mut() {
                    o.version = rng.random_range(1..26);
                }
                return;
            }
        }
    }
}

/// Runs `trial` on `MUTANTS` mutants per model and seed (fixed seeds plus one fresh,
/// printed seed), counting trials that succeed or fail with an error, and fails the
/// test listing every mutant that panicked. `trial` gets the model path and an RNG
/// seeded from the seed and the path, and says whether the mutant went through.
fn fuzz(
    what: &str,
    paths: Vec<PathBuf>,
    fixed_seeds: &[u64],
    trial: impl Fn(&Path, &mut StdRng) -> bool,
) {
    let fresh: u64 = rand::random();
    println!("{what}: fresh seed {fresh}");
    let (mut panics, mut ok, mut rejected) = (Vec::new(), 0, 0);
    for path in paths {
        for &seed in fixed_seeds.iter().chain([&fresh]) {
            let mut rng = StdRng::seed_from_u64(seed ^ path.as_os_str().len() as u64);
            for k in 0..MUTANTS {
                let mut mutant_rng = StdRng::seed_from_u64(rng.random());
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    trial(&path, &mut mutant_rng)
                })) {
                    Ok(true) => ok += 1,
                    Ok(false) => rejected += 1,
                    Err(_) => panics.push(format!("{} seed {seed} mutant {k}", path.display())),
                }
            }
        }
    }
    println!(
        "{what}: {ok} mutants went through, {rejected} failed with an error, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "{what} panicked on: {panics:#?}");
}

#[test]
fn structurally_mutated_models_never_panic_the_importer() {
    fuzz(
        "import (structural mutants)",
        models(IMPORT_STEP),
        &[11, 12, 13],
        |path, rng| {
            let mut m = proto::decode_model(Bytes::from(std::fs::read(path).unwrap())).unwrap();
            mutate_structure(rng, &mut m, true);
            onnx::import(&m).is_ok()
        },
    );
}

#[test]
fn mutated_models_never_panic_the_importer() {
    fuzz(
        "import (byte mutants)",
        models(IMPORT_STEP),
        &[1, 2, 3],
        |path, rng| {
            let m = mutate(rng, &std::fs::read(path).unwrap());
            proto::decode_model(Bytes::from(m)).is_ok_and(|model| onnx::import(&model).is_ok())
        },
    );
}

/// Runs a structurally mutated node-test model on its own test inputs: import and
/// evaluation may fail, but with an error, never a panic.
#[test]
fn mutated_models_never_panic_the_interpreter() {
    let paths = models(INTERP_STEP).into_iter().skip(1).collect();
    // 4833036370371754363: a fresh seed that once found a Col2Im panic.
    fuzz(
        "import + interpreter",
        paths,
        &[21, 22, 4833036370371754363],
        |path, rng| {
            let dir = path.parent().unwrap().join("test_data_set_0");
            let inputs: Vec<kiln::Tensor> = (0..)
                .map(|k| dir.join(format!("input_{k}.pb")))
                .take_while(|p| p.exists())
                .map(|p| onnx::read_tensor_file(&p))
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            let mut m = proto::decode_model(Bytes::from(std::fs::read(path).unwrap())).unwrap();
            mutate_structure(rng, &mut m, false);
            let Ok(g) = onnx::import(&m) else {
                return false;
            };
            let named: Vec<(String, kiln::Tensor)> = g
                .inputs
                .iter()
                .zip(&inputs)
                .map(|(&i, t)| (g.value(i).name.clone(), t.clone()))
                .collect();
            kiln::ir::verify(&g).is_ok() && kiln::ir::interp::run(&g, &named).is_ok()
        },
    );
}
