//! Malformed models never panic the importer: real models from the ONNX test data,
//! mutated at random (flipped bytes, truncations, insertions), must either import or
//! fail with an error. A fixed seed list keeps the run reproducible; one fresh seed
//! per run (printed) widens the search over time.

use std::path::PathBuf;

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
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    if let Some(data) = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/onnx/backend/test/data/node"))
            .find(|p| p.is_dir())
    }) {
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

#[test]
fn structurally_mutated_models_never_panic_the_importer() {
    use prost::Message;
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    let (mut panics, mut imported, mut rejected) = (Vec::new(), 0, 0);
    for path in models(IMPORT_STEP) {
        let original = proto::decode_model(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
        for seed in [11u64, 12, 13, fresh] {
            let mut rng = StdRng::seed_from_u64(seed ^ original.encoded_len() as u64);
            for k in 0..MUTANTS {
                let mut m = original.clone();
                mutate_structure(&mut rng, &mut m, true);
                match std::panic::catch_unwind(|| onnx::import(&m).is_ok()) {
                    Ok(true) => imported += 1,
                    Ok(false) => rejected += 1,
                    Err(_) => panics.push(format!("{} seed {seed} mutant {k}", path.display())),
                }
            }
        }
    }
    println!(
        "{imported} mutants imported, {rejected} rejected with an error, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "the importer panicked on: {panics:#?}");
}

#[test]
fn mutated_models_never_panic_the_importer() {
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    let mut panics = Vec::new();
    let mut imported = 0;
    let mut rejected = 0;
    for path in models(IMPORT_STEP) {
        let original = std::fs::read(&path).unwrap();
        for seed in [1u64, 2, 3, fresh] {
            let mut rng = StdRng::seed_from_u64(seed ^ original.len() as u64);
            for k in 0..MUTANTS {
                let m = mutate(&mut rng, &original);
                let r = std::panic::catch_unwind(|| match proto::decode_model(Bytes::from(m)) {
                    Ok(model) => onnx::import(&model).is_ok(),
                    Err(_) => false,
                });
                match r {
                    Ok(true) => imported += 1,
                    Ok(false) => rejected += 1,
                    Err(_) => panics.push(format!("{} seed {seed} mutant {k}", path.display())),
                }
            }
        }
    }
    println!(
        "{imported} mutants imported, {rejected} rejected with an error, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "the importer panicked on: {panics:#?}");
}

/// Runs a structurally mutated node-test model on its own test inputs: import and
/// evaluation may fail, but with an error, never a panic.
#[test]
fn mutated_models_never_panic_the_interpreter() {
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    let (mut panics, mut ran, mut failed) = (Vec::new(), 0, 0);
    for path in models(INTERP_STEP).into_iter().skip(1) {
        let dir = path.parent().unwrap().join("test_data_set_0");
        let inputs: Vec<kiln::Tensor> = (0..)
            .map(|k| dir.join(format!("input_{k}.pb")))
            .take_while(|p| p.exists())
            .map(|p| onnx::read_tensor_file(&p))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let original = proto::decode_model(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
        for seed in [21u64, 22, fresh] {
            let mut rng = StdRng::seed_from_u64(seed ^ path.as_os_str().len() as u64);
            for k in 0..MUTANTS {
                let mut m = original.clone();
                mutate_structure(&mut rng, &mut m, false);
                let r = std::panic::catch_unwind(|| {
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
                });
                match r {
                    Ok(true) => ran += 1,
                    Ok(false) => failed += 1,
                    Err(_) => panics.push(format!("{} seed {seed} mutant {k}", path.display())),
                }
            }
        }
    }
    println!(
        "{ran} mutants ran, {failed} failed with an error, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "panicked on: {panics:#?}");
}
