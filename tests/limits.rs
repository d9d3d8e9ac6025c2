//! One test per resource limit of `kiln_ir::limits`: a file over the limit gets a
//! clear error naming it (its constant's name or value), never an abort, a stack
//! overflow or an allocation failure. Limits tested beside their reader are noted
//! at the end.

mod common;

use std::path::{Path, PathBuf};

use common::{model, node, value_info, write_model, FLOAT, INT64};
use kiln::ir::limits;
use kiln_frontends::onnx::proto::{
    attribute_proto, AttributeProto, FunctionProto, GraphProto, NodeProto, OperatorSetIdProto,
    TensorProto,
};

fn load_err(m: &kiln_frontends::onnx::proto::ModelProto) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), "m.onnx", m);
    match kiln::Model::load(&path) {
        Ok(_) => panic!("the model loaded"),
        Err(e) => e.to_string(),
    }
}

fn i64_init(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: INT64,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// `y = Expand(x, shape)` with x: f32[1].
fn expand_model(shape: &[i64]) -> kiln_frontends::onnx::proto::ModelProto {
    model(
        vec![node("Expand", "expand", &["x", "shape"], &["y"])],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[])],
        vec![i64_init("shape", shape)],
    )
}

#[test]
fn max_tensor_bytes_bounds_every_interpreted_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let huge = (limits::MAX_TENSOR_BYTES / 4 + 1) as i64;
    let path = write_model(dir.path(), "m.onnx", &expand_model(&[huge]));
    let m = kiln::Model::load(&path).unwrap();
    let x = kiln::Tensor::from_vec(vec![1], vec![1.0f32]);
    let err = m.run(&[("x".into(), x.clone())]).unwrap_err().to_string();
    assert!(err.contains("MAX_TENSOR_BYTES"), "{err}");
    assert!(err.contains(&limits::MAX_TENSOR_BYTES.to_string()), "{err}");
    // The fuzz harnesses' smaller budget is the same check.
    let small = write_model(dir.path(), "s.onnx", &expand_model(&[1024]));
    let g = kiln::Model::load(&small).unwrap();
    let err = kiln::ir::interp::run_limited(g.graph(), &[("x".into(), x)], 1024).unwrap_err();
    assert!(err.to_string().contains("over the limit of 1024"), "{err}");
}

#[test]
fn fold_max_elements_bounds_import_folding() {
    let computed = |n: usize| {
        let m = model(
            vec![node("ConstantOfShape", "c", &["shape"], &["y"])],
            vec![],
            vec![value_info("y", FLOAT, &[])],
            vec![i64_init("shape", &[n as i64])],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(dir.path(), "m.onnx", &m);
        let model = kiln::Model::load(&path).unwrap();
        let graph = model.graph();
        graph
            .nodes()
            .iter()
            .any(|n| n.op.name() == "ConstantOfShape")
    };
    assert!(!computed(limits::FOLD_MAX_ELEMENTS));
    assert!(computed(limits::FOLD_MAX_ELEMENTS + 1));
}

/// A model calling model-local function `f`, whose body is `body`.
fn function_model(
    body: Vec<NodeProto>,
    extra: Vec<FunctionProto>,
) -> kiln_frontends::onnx::proto::ModelProto {
    let mut m = model(
        vec![NodeProto {
            domain: "local".into(),
            ..node("f", "call", &["x"], &["y"])
        }],
        vec![value_info("x", FLOAT, &[2])],
        vec![value_info("y", FLOAT, &[2])],
        vec![],
    );
    m.opset_import.push(OperatorSetIdProto {
        domain: "local".into(),
        version: 1,
    });
    let f = FunctionProto {
        name: "f".into(),
        domain: "local".into(),
        input: vec!["a".into()],
        output: vec!["b".into()],
        node: body,
        opset_import: m.opset_import.clone(),
        ..Default::default()
    };
    m.functions = std::iter::once(f).chain(extra).collect();
    m
}

#[test]
fn max_inline_depth_stops_a_function_calling_itself() {
    let recursive = NodeProto {
        domain: "local".into(),
        ..node("f", "again", &["a"], &["b"])
    };
    let err = load_err(&function_model(vec![recursive], vec![]));
    assert!(err.contains("MAX_INLINE_DEPTH"), "{err}");
    assert!(err.contains(&limits::MAX_INLINE_DEPTH.to_string()), "{err}");
}

#[test]
fn max_graph_nodes_stops_exponential_inlining() {
    // f calls g twice, g calls h twice, ...: 2^levels nodes from a tiny file.
    let levels = 21;
    let name = |i: usize| format!("f{i}");
    let call = |callee: &str, input: &str, output: &str| NodeProto {
        domain: "local".into(),
        ..node(callee, "", &[input], &[output])
    };
    let mut functions = Vec::new();
    for i in 1..levels {
        let body = if i + 1 == levels {
            vec![node("Relu", "", &["a"], &["b"])]
        } else {
            vec![call(&name(i + 1), "a", "t"), call(&name(i + 1), "t", "b")]
        };
        functions.push(FunctionProto {
            name: name(i),
            domain: "local".into(),
            input: vec!["a".into()],
            output: vec!["b".into()],
            node: body,
            ..Default::default()
        });
    }
    let body = vec![call(&name(1), "a", "t"), call(&name(1), "t", "b")];
    let err = load_err(&function_model(body, functions));
    assert!(err.contains("MAX_GRAPH_NODES"), "{err}");
    assert!(err.contains(&limits::MAX_GRAPH_NODES.to_string()), "{err}");
}

#[test]
fn max_protobuf_depth_bounds_message_nesting() {
    // Each `If` nests a node, an attribute and a graph: three messages a level.
    let mut graph = GraphProto {
        node: vec![node("Identity", "leaf", &["x"], &["y"])],
        output: vec![value_info("y", FLOAT, &[2])],
        ..Default::default()
    };
    for _ in 0..limits::MAX_PROTOBUF_DEPTH / 3 + 1 {
        let branch = AttributeProto {
            name: "then_branch".into(),
            r#type: attribute_proto::AttributeType::Graph as i32,
            g: Some(graph),
            ..Default::default()
        };
        graph = GraphProto {
            node: vec![NodeProto {
                attribute: vec![branch],
                ..node("If", "if", &["c"], &["y"])
            }],
            output: vec![value_info("y", FLOAT, &[2])],
            ..Default::default()
        };
    }
    let mut m = model(vec![], vec![value_info("x", FLOAT, &[2])], vec![], vec![]);
    m.graph = Some(graph);
    let err = load_err(&m);
    assert!(err.contains("recursion limit"), "{err}");
}

/// A file of `len` bytes that takes no disk space (sparse).
fn sparse(dir: &Path, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

#[test]
fn safetensors_max_header_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut bytes = (limits::SAFETENSORS_MAX_HEADER_BYTES + 1)
        .to_le_bytes()
        .to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let err = kiln_frontends::safetensors::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&limits::SAFETENSORS_MAX_HEADER_BYTES.to_string()),
        "{err}"
    );
}

#[test]
fn safetensors_max_index_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let index = sparse(
        dir.path(),
        "model.safetensors.index.json",
        limits::SAFETENSORS_MAX_INDEX_BYTES + 1,
    );
    let err = kiln_frontends::safetensors::load_sharded(&index)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&limits::SAFETENSORS_MAX_INDEX_BYTES.to_string()),
        "{err}"
    );
}

/// The start of a GGUF v3 file: magic, version, tensor and metadata counts.
fn gguf_header(tensors: u64, entries: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&tensors.to_le_bytes());
    b.extend_from_slice(&entries.to_le_bytes());
    b
}

fn gguf_string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn gguf_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    match kiln_frontends::gguf::GgufFile::open(&path) {
        Ok(_) => panic!("the GGUF file opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gguf_max_metadata_entries() {
    let mut b = gguf_header(0, limits::GGUF_MAX_METADATA_ENTRIES + 1);
    b.resize(b.len() + 64, 0);
    let err = gguf_err(&b);
    assert!(
        err.contains(&limits::GGUF_MAX_METADATA_ENTRIES.to_string()),
        "{err}"
    );
}

#[test]
fn gguf_max_key_len() {
    let mut b = gguf_header(0, 1);
    b.extend_from_slice(&(limits::GGUF_MAX_KEY_LEN + 1).to_le_bytes());
    b.resize(b.len() + 64, b'k');
    let err = gguf_err(&b);
    assert!(err.contains("MAX_KEY_LEN"), "{err}");
}

#[test]
fn gguf_max_alignment() {
    let mut b = gguf_header(0, 1);
    gguf_string(&mut b, "general.alignment");
    b.extend_from_slice(&4u32.to_le_bytes()); // u32
    b.extend_from_slice(&((limits::GGUF_MAX_ALIGNMENT * 2) as u32).to_le_bytes());
    let err = gguf_err(&b);
    assert!(
        err.contains(&limits::GGUF_MAX_ALIGNMENT.to_string()),
        "{err}"
    );
}

#[test]
fn gguf_max_tensor_name_len() {
    let mut b = gguf_header(1, 0);
    b.extend_from_slice(&(limits::GGUF_MAX_TENSOR_NAME_LEN + 1).to_le_bytes());
    b.resize(b.len() + 64, b't');
    let err = gguf_err(&b);
    assert!(err.contains("MAX_TENSOR_NAME_LEN"), "{err}");
}

#[test]
fn rope_table_max_elements_caps_a_declared_context() {
    // The llama fixture (head_dim 16) declaring a context no table could hold: the
    // GGUF fuzz target once spent seconds and 512 MiB on a 2.4 KB file saying
    // `context_length = 67108880`.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama");
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&fixture).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let config = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["max_position_embeddings"] = (1u64 << 40).into();
    std::fs::write(&config, v.to_string()).unwrap();
    let model = kiln::Model::load(dir.path()).unwrap();
    let half = 16 / 2;
    let Some(kiln_frontends::hf::ModelKind::Decoder(info)) = model.kind() else {
        panic!("not a decoder");
    };
    assert_eq!(info.max_positions, limits::ROPE_TABLE_MAX_ELEMENTS / half);
    let g = model.graph();
    let cos = g.value_by_name("rope.cos").expect("rope.cos");
    assert_eq!(
        g.value(cos).ty.shape.to_string(),
        format!("[{}, {half}]", limits::ROPE_TABLE_MAX_ELEMENTS / half)
    );
}

fn tokenizer_err(dir: &Path) -> String {
    match kiln_frontends::tokenizer::TextTokenizer::from_folder(dir) {
        Ok(_) => panic!("the tokenizer loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tokenizer_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    sparse(
        dir.path(),
        "tokenizer.json",
        limits::TOKENIZER_MAX_BYTES + 1,
    );
    let err = tokenizer_err(dir.path());
    assert!(
        err.contains(&limits::TOKENIZER_MAX_BYTES.to_string()),
        "{err}"
    );
}

#[test]
fn tokenizer_max_config_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/bert/tokenizer.json");
    std::fs::copy(fixture, dir.path().join("tokenizer.json")).unwrap();
    sparse(
        dir.path(),
        "tokenizer_config.json",
        limits::TOKENIZER_MAX_CONFIG_BYTES + 1,
    );
    let err = tokenizer_err(dir.path());
    assert!(
        err.contains(&limits::TOKENIZER_MAX_CONFIG_BYTES.to_string()),
        "{err}"
    );
}

#[test]
fn artifact_max_sections() {
    let mut w = kiln_runtime::artifact::ArtifactWriter::new(serde_json::json!({}));
    for i in 0..limits::ARTIFACT_MAX_SECTIONS {
        w.add_section(&format!("s{i}"), Vec::new()).unwrap();
    }
    let err = w
        .add_section("one-more", Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&limits::ARTIFACT_MAX_SECTIONS.to_string()),
        "{err}"
    );
}

// Tested beside their readers: GGUF_MAX_TENSORS, GGUF_MAX_METADATA_VALUES,
// GGUF_MAX_ARRAY_DEPTH, GGUF_MAX_STRING_LEN and GGUF_MAX_DIMS in
// frontends/tests/gguf.rs; ARTIFACT_MAX_MANIFEST_BYTES and
// ARTIFACT_MAX_SECTION_NAME_BYTES in runtime/tests/artifact.rs.
