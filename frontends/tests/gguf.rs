//! Tests of the GGUF reader: small files written by hand here (header, metadata
//! of every type, tensors of every supported type, alignment padding), the
//! Llama-family Hugging Face mapping, the errors of damaged files, and the real
//! SmolLM2 file when it is installed.

use std::path::PathBuf;

use kiln_frontends::gguf::llama::{hf_tensor_name, permute_qk, unpermute_qk};
use kiln_frontends::gguf::{
    GgmlType, GgufError, GgufFile, MetaValue, DEFAULT_ALIGNMENT, MAX_TENSORS, PARALLEL_MIN_BLOCKS,
};
use kiln_ir::half::{bf16, f16};
use kiln_ir::{DType, Tensor};

// ---------------------------------------------------------------------------
// A tiny GGUF writer.

/// A metadata value to write.
#[derive(Clone, Debug)]
enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type id, elements.
    Arr(u32, Vec<V>),
    U64(u64),
    I64(i64),
    F64(f64),
}

const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_I16: u32 = 3;

fn s(v: &str) -> V {
    V::Str(v.to_owned())
}

fn strs(v: &[&str]) -> V {
    V::Arr(T_STRING, v.iter().map(|x| s(x)).collect())
}

impl V {
    fn type_id(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            V::U8(v) => out.extend(v.to_le_bytes()),
            V::I8(v) => out.extend(v.to_le_bytes()),
            V::U16(v) => out.extend(v.to_le_bytes()),
            V::I16(v) => out.extend(v.to_le_bytes()),
            V::U32(v) => out.extend(v.to_le_bytes()),
            V::I32(v) => out.extend(v.to_le_bytes()),
            V::F32(v) => out.extend(v.to_le_bytes()),
            V::Bool(v) => out.push(*v as u8),
            V::Str(v) => put_str(out, v),
            V::Arr(ty, items) => {
                out.extend(ty.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    assert_eq!(item.type_id(), *ty, "array element type");
                    item.write(out);
                }
            }
            V::U64(v) => out.extend(v.to_le_bytes()),
            V::I64(v) => out.extend(v.to_le_bytes()),
            V::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

fn put_str(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

/// A tensor to write: its row-major shape (the writer reverses it), ggml type
/// id and data bytes.
struct T {
    name: String,
    shape: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

/// A GGUF file to write.
struct Gguf {
    version: u32,
    kv: Vec<(String, V)>,
    tensors: Vec<T>,
    /// The alignment the writer pads to (it writes `general.alignment` itself
    /// only when told to, through `kv`).
    alignment: usize,
}

impl Gguf {
    fn new() -> Gguf {
        Gguf {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT as usize,
        }
    }

    fn kv(mut self, key: &str, value: V) -> Gguf {
        self.kv.push((key.to_owned(), value));
        self
    }

    fn tensor(mut self, name: &str, shape: &[u64], ty: GgmlType, data: Vec<u8>) -> Gguf {
        self.tensors.push(T {
            name: name.to_owned(),
            shape: shape.to_vec(),
            ty: ty.id(),
            data,
        });
        self
    }

    fn f32_tensor(self, name: &str, shape: &[u64], values: &[f32]) -> Gguf {
        assert_eq!(shape.iter().product::<u64>() as usize, values.len());
        self.tensor(name, shape, GgmlType::F32, f32_bytes(values))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            put_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            value.write(&mut out);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend((t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + t.data.len()).next_multiple_of(self.alignment);
        }
        // Padding before each tensor's data, none after the last: a file ends
        // where its last tensor (or its metadata) does.
        for t in &self.tensors {
            out.resize(out.len().next_multiple_of(self.alignment), 0);
            out.extend(&t.data);
        }
        out
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// Writes `bytes` to a fresh file in a temporary folder (kept alive by the guard).
fn write_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).expect("write file");
    (dir, path)
}

fn open(bytes: &[u8]) -> (tempfile::TempDir, GgufFile) {
    let (dir, path) = write_file(bytes);
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, file)
}

fn open_err(bytes: &[u8]) -> String {
    let (_dir, path) = write_file(bytes);
    let err = GgufFile::open(&path).expect_err("the file must be refused");
    let message = err.to_string();
    assert!(
        message.contains("model.gguf"),
        "the error names the file: {message}"
    );
    message
}

// ---------------------------------------------------------------------------
// Quantized blocks built by hand, and their values by the formulas.

/// A `Q8_0` block of scale `d` and quants `q`; `x = d·q`.
fn q8_0(d: f32, q: &[i8; 32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = f16_bytes(d).to_vec();
    bytes.extend(q.iter().map(|&v| v as u8));
    let d = f16::from_f32(d).to_f32();
    (bytes, q.iter().map(|&v| d * f32::from(v)).collect())
}

/// A `Q4_0` block of scale `d` and 4-bit quants `q`; `x = d·(q − 8)`, the low
/// nibble of byte `j` element `j` and its high nibble element `j + 16`.
fn q4_0(d: f32, q: &[u8; 32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = f16_bytes(d).to_vec();
    bytes.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    let d = f16::from_f32(d).to_f32();
    (bytes, q.iter().map(|&v| d * (f32::from(v) - 8.0)).collect())
}

/// A `Q4_1` block of scale `d`, minimum `m` and 4-bit quants `q`; `x = d·q + m`.
fn q4_1(d: f32, m: f32, q: &[u8; 32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = f16_bytes(d).to_vec();
    bytes.extend(f16_bytes(m));
    bytes.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    let (d, m) = (f16::from_f32(d).to_f32(), f16::from_f32(m).to_f32());
    (bytes, q.iter().map(|&v| d * f32::from(v) + m).collect())
}

fn nibbles(seed: usize) -> [u8; 32] {
    std::array::from_fn(|i| ((i * 7 + seed * 3) % 16) as u8)
}

fn bytes_i8(seed: usize) -> [i8; 32] {
    std::array::from_fn(|i| ((i * 37 + seed * 11) % 256) as u8 as i8)
}

/// Concatenated blocks: (file bytes, expected values).
fn blocks(parts: Vec<(Vec<u8>, Vec<f32>)>) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut values = Vec::new();
    for (b, v) in parts {
        bytes.extend(b);
        values.extend(v);
    }
    (bytes, values)
}

// ---------------------------------------------------------------------------
// Parsing.

fn every_type_metadata() -> Gguf {
    Gguf::new()
        .kv("t.u8", V::U8(200))
        .kv("t.i8", V::I8(-100))
        .kv("t.u16", V::U16(60_000))
        .kv("t.i16", V::I16(-30_000))
        .kv("t.u32", V::U32(4_000_000_000))
        .kv("t.i32", V::I32(-2_000_000_000))
        .kv("t.f32", V::F32(1.5))
        .kv("t.bool", V::Bool(true))
        .kv("t.string", s("héllo"))
        .kv("t.u64", V::U64(u64::MAX))
        .kv("t.i64", V::I64(i64::MIN))
        .kv("t.f64", V::F64(-2.25))
        .kv(
            "t.u32s",
            V::Arr(T_U32, vec![V::U32(1), V::U32(2), V::U32(3)]),
        )
        .kv("t.i32s", V::Arr(T_I32, vec![V::I32(-1), V::I32(7)]))
        .kv("t.f32s", V::Arr(T_F32, vec![V::F32(0.5), V::F32(-4.0)]))
        .kv("t.strings", strs(&["a", "", "ĠΩ"]))
        .kv("t.empty", V::Arr(T_STRING, vec![]))
        .kv(
            "t.nested",
            V::Arr(
                T_ARRAY,
                vec![
                    V::Arr(T_I16, vec![V::I16(1), V::I16(-2)]),
                    V::Arr(T_I16, vec![]),
                ],
            ),
        )
}

#[test]
fn metadata_of_every_value_type() {
    let (_dir, file) = open(&every_type_metadata().bytes());
    let m = file.metadata();
    assert_eq!(m.len(), 18);
    assert_eq!(m["t.u8"], MetaValue::U8(200));
    assert_eq!(m["t.i8"], MetaValue::I8(-100));
    assert_eq!(m["t.u16"], MetaValue::U16(60_000));
    assert_eq!(m["t.i16"], MetaValue::I16(-30_000));
    assert_eq!(m["t.u32"], MetaValue::U32(4_000_000_000));
    assert_eq!(m["t.i32"], MetaValue::I32(-2_000_000_000));
    assert_eq!(m["t.f32"], MetaValue::F32(1.5));
    assert_eq!(m["t.bool"], MetaValue::Bool(true));
    assert_eq!(m["t.string"], MetaValue::String("héllo".into()));
    assert_eq!(m["t.u64"], MetaValue::U64(u64::MAX));
    assert_eq!(m["t.i64"], MetaValue::I64(i64::MIN));
    assert_eq!(m["t.f64"], MetaValue::F64(-2.25));

    // Accessors convert between widths where the value fits.
    assert_eq!(file.get_u64("t.u8"), Some(200));
    assert_eq!(file.get_u64("t.u64"), Some(u64::MAX));
    assert_eq!(file.get_u64("t.i8"), None, "negative");
    assert_eq!(file.get_u64("t.f32"), None, "not an integer");
    assert_eq!(m["t.i64"].as_i64(), Some(i64::MIN));
    assert_eq!(m["t.u64"].as_i64(), None, "does not fit");
    assert_eq!(file.get_f32("t.f32"), Some(1.5));
    assert_eq!(file.get_f32("t.u16"), Some(60_000.0));
    assert_eq!(m["t.f64"].as_f64(), Some(-2.25));
    assert_eq!(file.get_bool("t.bool"), Some(true));
    assert_eq!(file.get_str("t.string"), Some("héllo"));
    assert_eq!(file.get_str("t.u8"), None);
    assert_eq!(file.get_str("absent"), None);

    assert_eq!(m["t.u32s"].as_u64_array(), Some(vec![1, 2, 3]));
    assert_eq!(file.get_i32_array("t.i32s"), Some(vec![-1, 7]));
    assert_eq!(file.get_i32_array("t.u32s"), Some(vec![1, 2, 3]));
    assert_eq!(file.get_f32_array("t.f32s"), Some(vec![0.5, -4.0]));
    assert_eq!(file.get_str_array("t.strings"), Some(vec!["a", "", "ĠΩ"]));
    assert_eq!(file.get_str_array("t.u32s"), None);
    assert_eq!(file.get_str_array("t.empty"), Some(vec![]));
    assert_eq!(m["t.empty"].type_name(), "array of string");
    let nested = m["t.nested"].as_array().expect("array");
    assert_eq!(nested.len(), 2);
    assert_eq!(nested[0].as_i32_array(), Some(vec![1, -2]));
    assert_eq!(nested[1].as_array().map(<[_]>::len), Some(0));
    assert_eq!(m["t.nested"].type_name(), "array of array");

    assert!(file.tensors().is_empty());
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), DEFAULT_ALIGNMENT);
}

#[test]
fn version_2_files_are_read() {
    let mut gguf = Gguf::new()
        .kv("general.name", s("v2"))
        .f32_tensor("x", &[2], &[1.0, 2.0]);
    gguf.version = 2;
    let (_dir, file) = open(&gguf.bytes());
    assert_eq!(file.version(), 2);
    assert_eq!(file.tensor("x").unwrap().to_vec::<f32>(), vec![1.0, 2.0]);
}

#[test]
fn tensor_infos_reverse_the_dims_and_data_is_aligned() {
    // Two tensors, the first 12 bytes long, so the second's offset is padded.
    let gguf = Gguf::new()
        .kv("general.name", s("x"))
        .f32_tensor("a", &[3], &[1.0, 2.0, 3.0])
        .f32_tensor("b", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (_dir, file) = open(&gguf.bytes());
    let infos = file.tensors();
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].name(), "a");
    assert_eq!(infos[1].shape(), &[2, 3], "row-major: GGUF dims reversed");
    assert_eq!(infos[1].ggml_type(), GgmlType::F32);
    assert_eq!(infos[1].offset(), 32, "12 bytes padded to the alignment");
    assert_eq!(file.data_start() % DEFAULT_ALIGNMENT, 0);
    assert_eq!(infos[1].file_range().start as u64, file.data_start() + 32);
    let b = file.tensor("b").unwrap();
    assert_eq!(b.shape(), &[2, 3]);
    assert_eq!(b.to_vec::<f32>(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn general_alignment_is_honored() {
    let mut gguf = Gguf::new()
        .kv("general.alignment", V::U32(64))
        .f32_tensor("a", &[3], &[1.0, 2.0, 3.0])
        .f32_tensor("b", &[1], &[9.0]);
    gguf.alignment = 64;
    let (_dir, file) = open(&gguf.bytes());
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_start() % 64, 0);
    assert_eq!(file.tensor_info("b").unwrap().offset(), 64);
    assert_eq!(file.tensor("b").unwrap().to_vec::<f32>(), vec![9.0]);

    // A file padded to 32 while claiming 64 puts the data where the reader does
    // not look: its offsets are not multiples of 64.
    let mut wrong = gguf;
    wrong.alignment = 32;
    let message = open_err(&wrong.bytes());
    assert!(
        message.contains("not a multiple of the alignment 64"),
        "{message}"
    );
}

#[test]
fn f32_f16_bf16_are_zero_copy_views_of_the_mapping() {
    let f16s: Vec<u8> = [1.0f32, -0.5, 65504.0, 0.1]
        .iter()
        .flat_map(|&v| f16_bytes(v))
        .collect();
    let bf16s: Vec<u8> = [3.0f32, -1e30, 0.125]
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let gguf = Gguf::new()
        .f32_tensor("f32", &[2, 2], &[1.0, -2.0, 3.5, f32::MIN_POSITIVE])
        .tensor("f16", &[4], GgmlType::F16, f16s)
        .tensor("bf16", &[3, 1], GgmlType::BF16, bf16s);
    let (_dir, file) = open(&gguf.bytes());
    for (name, dtype) in [
        ("f32", DType::F32),
        ("f16", DType::F16),
        ("bf16", DType::BF16),
    ] {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.dtype(), dtype, "{name}");
        let range = file.tensor_info(name).unwrap().file_range();
        assert_eq!(
            t.bytes().as_ptr(),
            file.bytes()[range.start..].as_ptr(),
            "{name} views the mapping"
        );
    }
    let f32s = file.tensor("f32").unwrap();
    assert_eq!(f32s.shape(), &[2, 2]);
    assert_eq!(
        f32s.to_vec::<f32>(),
        vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE]
    );
    assert_eq!(
        file.tensor("f16").unwrap().to_f32_vec(),
        vec![1.0, -0.5, 65504.0, f16::from_f32(0.1).to_f32()]
    );
    let b = file.tensor("bf16").unwrap();
    assert_eq!(b.shape(), &[3, 1]);
    assert_eq!(
        b.to_vec::<bf16>(),
        [3.0f32, -1e30, 0.125].map(bf16::from_f32).to_vec()
    );
}

#[test]
fn q8_0_q4_0_q4_1_dequantize_by_their_formulas() {
    // Two rows of two blocks each: blocks run along a row.
    let (q8, q8_values) = blocks(vec![
        q8_0(0.5, &bytes_i8(0)),
        q8_0(-0.031, &bytes_i8(1)),
        q8_0(0.0, &bytes_i8(2)),
        q8_0(1024.0, &bytes_i8(3)),
    ]);
    let (q40, q40_values) = blocks(vec![
        q4_0(0.25, &nibbles(0)),
        q4_0(-1.5, &nibbles(1)),
        q4_0(0.001, &nibbles(2)),
        q4_0(3.0, &nibbles(3)),
    ]);
    let (q41, q41_values) = blocks(vec![
        q4_1(0.5, -1.0, &nibbles(4)),
        q4_1(0.01, 2.5, &nibbles(5)),
        q4_1(-0.2, 0.0, &nibbles(6)),
        q4_1(7.0, -100.0, &nibbles(7)),
    ]);
    let gguf = Gguf::new()
        .tensor("q8", &[2, 64], GgmlType::Q8_0, q8)
        .tensor("q40", &[2, 64], GgmlType::Q4_0, q40)
        .tensor("q41", &[2, 64], GgmlType::Q4_1, q41);
    let (_dir, file) = open(&gguf.bytes());
    for (name, expected) in [("q8", q8_values), ("q40", q40_values), ("q41", q41_values)] {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.dtype(), DType::F32, "{name}");
        assert_eq!(t.shape(), &[2, 64], "{name}");
        assert_eq!(t.to_vec::<f32>(), expected, "{name}");
    }

    // One hand-written block, to pin the nibble order: byte j = (low j, high 15 − j).
    let mut block = f16_bytes(0.25).to_vec();
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let gguf = Gguf::new().tensor("q", &[32], GgmlType::Q4_0, block);
    let (_dir, file) = open(&gguf.bytes());
    let values = file.tensor("q").unwrap().to_vec::<f32>();
    for j in 0..16 {
        assert_eq!(values[j], 0.25 * (j as f32 - 8.0), "element {j}");
        assert_eq!(
            values[j + 16],
            0.25 * (7.0 - j as f32),
            "element {}",
            j + 16
        );
    }
}

#[test]
fn large_tensors_dequantize_in_parallel_with_the_same_values() {
    let n_blocks = PARALLEL_MIN_BLOCKS + 37;
    let (bytes, expected) = blocks(
        (0..n_blocks)
            .map(|b| q4_1(0.001 * (b % 97) as f32, -0.5, &nibbles(b)))
            .collect(),
    );
    let gguf = Gguf::new().tensor("big", &[n_blocks as u64, 32], GgmlType::Q4_1, bytes);
    let (_dir, file) = open(&gguf.bytes());
    let t = file.tensor("big").unwrap();
    assert_eq!(t.shape(), &[n_blocks, 32]);
    assert_eq!(t.to_vec::<f32>(), expected);
}

#[test]
fn other_quantized_types_are_an_error_naming_the_tensor_and_type() {
    let gguf = Gguf::new()
        .tensor(
            "blk.0.ffn_down.weight",
            &[256],
            GgmlType::Iq2Xxs,
            vec![0; 66],
        )
        .tensor("q8_1", &[32], GgmlType::Q8_1, vec![0; 40]);
    let (_dir, file) = open(&gguf.bytes());
    assert_eq!(
        file.tensor_info("blk.0.ffn_down.weight")
            .unwrap()
            .ggml_type()
            .name(),
        "IQ2_XXS"
    );
    let err = file.tensor("blk.0.ffn_down.weight").unwrap_err();
    assert!(matches!(err, GgufError::UnsupportedTensorType { .. }));
    let message = err.to_string();
    assert!(
        message.contains(
            "unsupported GGUF tensor type IQ2_XXS for tensor blk.0.ffn_down.weight; supported: F32, F16, BF16"
        ),
        "{message}"
    );
    assert!(message.contains("Q6_K"), "{message}");
    let message = file.tensor("q8_1").unwrap_err().to_string();
    assert!(message.contains("type Q8_1 for tensor q8_1"), "{message}");
    let message = file.tensor("absent").unwrap_err().to_string();
    assert!(message.contains("no tensor `absent`"), "{message}");
}

/// The 5-bit and K-quant block types against gguf-py's dequantization of the
/// same random blocks (`fixtures/gguf-quant-vectors.bin`, written by
/// `scripts/make_gguf_quant_vectors.py`): the same f32 values.
#[test]
fn k_quants_and_5_bit_blocks_dequantize_as_gguf_py_does() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-quant-vectors.bin");
    let bytes = std::fs::read(&path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 0;
    let mut seen = Vec::new();
    while at < bytes.len() {
        let (id, blocks, len) = (u32_at(at), u32_at(at + 4), u32_at(at + 8));
        at += 12;
        let ty = GgmlType::from_id(id as u32).unwrap();
        let data = bytes[at..at + len].to_vec();
        at += len;
        let n = blocks * ty.block_size();
        let want: Vec<f32> = bytes[at..at + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        at += 4 * n;
        let gguf = Gguf::new().tensor("t", &[n as u64], ty, data);
        let (_dir, file) = open(&gguf.bytes());
        let got = file.tensor("t").unwrap().to_vec::<f32>();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{}: element {i}: {g} vs gguf-py's {w}",
                ty.name()
            );
        }
        assert_eq!(got.len(), want.len());
        seen.push(ty.name());
    }
    assert_eq!(
        seen,
        ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
    );
}

// ---------------------------------------------------------------------------
// Damaged and hostile files.

/// A header: magic, version, tensor count, metadata entry count.
fn header(version: u32, tensors: u64, entries: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend(tensors.to_le_bytes());
    out.extend(entries.to_le_bytes());
    out
}

#[test]
fn bad_magic() {
    let mut bytes = Gguf::new().bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let message = open_err(&bytes);
    assert!(message.contains("not a GGUF file"), "{message}");
    assert!(message.contains("magic"), "{message}");
    let message = open_err(b"");
    assert!(
        message.contains("truncated") && message.contains("magic"),
        "{message}"
    );
    let message = open_err(b"{\"a\": 1}");
    assert!(message.contains("not a GGUF file"), "{message}");
}

#[test]
fn version_1_and_unknown_versions_are_refused() {
    let message = open_err(&header(1, 0, 0));
    assert!(
        message.contains("GGUF version 1 is not supported"),
        "{message}"
    );
    assert!(message.contains("versions 2 and 3"), "{message}");
    let message = open_err(&header(4, 0, 0));
    assert!(
        message.contains("GGUF version 4 is not supported"),
        "{message}"
    );
    let message = open_err(&header(3u32.swap_bytes(), 0, 0));
    assert!(message.contains("big-endian"), "{message}");
}

#[test]
fn truncated_header() {
    let full = header(3, 0, 0);
    for len in [5, 8, 12, 20, full.len() - 1] {
        let message = open_err(&full[..len]);
        assert!(message.contains("truncated"), "{len} bytes: {message}");
    }
    let message = open_err(&full[..10]);
    assert!(message.contains("the tensor count"), "{message}");
    let message = open_err(&full[..20]);
    assert!(message.contains("the metadata entry count"), "{message}");

    // The metadata stops in the middle of an entry's value.
    let bytes = every_type_metadata().bytes();
    let message = open_err(&bytes[..bytes.len() - 3]);
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("`t.nested`"), "{message}");
}

#[test]
fn string_length_beyond_the_file() {
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "general.name");
    bytes.extend(T_STRING.to_le_bytes());
    bytes.extend(1_000_000u64.to_le_bytes());
    bytes.extend(b"abc");
    let message = open_err(&bytes);
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("metadata `general.name`"), "{message}");
    assert!(message.contains("1000000 bytes"), "{message}");

    // Beyond the limit, the limit is what is reported.
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "general.name");
    bytes.extend(T_STRING.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    let message = open_err(&bytes);
    assert!(message.contains("MAX_STRING_LEN"), "{message}");
    assert!(message.contains("beyond the limit"), "{message}");

    // A key whose length runs past the file.
    let mut bytes = header(3, 0, 1);
    bytes.extend(40_000u64.to_le_bytes());
    bytes.extend(b"general");
    let message = open_err(&bytes);
    assert!(message.contains("the key of metadata entry 0"), "{message}");
}

#[test]
fn absurd_arrays_are_refused_before_allocating() {
    // An array claiming 2^40 elements.
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "tokenizer.ggml.tokens");
    bytes.extend(T_ARRAY.to_le_bytes());
    bytes.extend(T_STRING.to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    let message = open_err(&bytes);
    assert!(message.contains("MAX_METADATA_VALUES"), "{message}");

    // A million elements the file does not have.
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "tokenizer.ggml.scores");
    bytes.extend(T_ARRAY.to_le_bytes());
    bytes.extend(T_F32.to_le_bytes());
    bytes.extend(1_000_000u64.to_le_bytes());
    bytes.extend([0; 16]);
    let message = open_err(&bytes);
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("an array of 1000000 f32"), "{message}");

    // Arrays nested deeper than any real file.
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "deep");
    bytes.extend(T_ARRAY.to_le_bytes());
    for _ in 0..100 {
        bytes.extend(T_ARRAY.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
    }
    let message = open_err(&bytes);
    assert!(message.contains("MAX_ARRAY_DEPTH"), "{message}");

    // An unknown value type.
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "odd");
    bytes.extend(13u32.to_le_bytes());
    bytes.extend([0; 8]);
    let message = open_err(&bytes);
    assert!(
        message.contains("`odd` has unknown value type 13"),
        "{message}"
    );
}

#[test]
fn absurd_tensor_count() {
    let message = open_err(&header(3, u64::MAX, 0));
    assert!(message.contains("the tensor count"), "{message}");
    assert!(message.contains(&MAX_TENSORS.to_string()), "{message}");
    let message = open_err(&header(3, 0, 1 << 40));
    assert!(message.contains("the metadata entry count"), "{message}");
    // Under the limit, but more than the file could describe.
    let message = open_err(&header(3, 1000, 0));
    assert!(message.contains("1000 tensor infos"), "{message}");
}

#[test]
fn tensor_data_beyond_the_file() {
    let gguf = Gguf::new()
        .f32_tensor("a", &[4], &[1.0; 4])
        .f32_tensor("b", &[8], &[2.0; 8]);
    let bytes = gguf.bytes();
    let message = open_err(&bytes[..bytes.len() - 4]);
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("the data of tensor `b`"), "{message}");

    // An offset far past the end (aligned, so only the bounds are wrong).
    let mut bytes = Gguf::new().f32_tensor("a", &[4], &[1.0; 4]).bytes();
    let at = 24 + 8 + 1 + 4 + 8 + 4; // header, name, dims, dim, type
    assert_eq!(&bytes[at..at + 8], &0u64.to_le_bytes(), "the offset field");
    bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let message = open_err(&bytes);
    assert!(message.contains("the data of tensor `a`"), "{message}");
    bytes[at..at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    let message = open_err(&bytes);
    assert!(message.contains("tensor `a`"), "{message}");

    // Dimensions whose product overflows.
    let gguf = Gguf::new().tensor("huge", &[1 << 32, 1 << 32, 1 << 32], GgmlType::F32, vec![]);
    let message = open_err(&gguf.bytes());
    assert!(
        message.contains("tensor `huge`") && message.contains("overflows"),
        "{message}"
    );
}

#[test]
fn malformed_tensor_infos() {
    let message = open_err(
        &Gguf::new()
            .tensor("x", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
            .bytes(),
    );
    assert!(message.contains("MAX_DIMS"), "{message}");
    let mut gguf = Gguf::new().f32_tensor("x", &[1], &[1.0]);
    gguf.tensors[0].ty = 99;
    let message = open_err(&gguf.bytes());
    assert!(
        message.contains("tensor `x` has unknown ggml type id 99"),
        "{message}"
    );
    let message = open_err(
        &Gguf::new()
            .tensor("q", &[2, 48], GgmlType::Q8_0, vec![0; 102])
            .bytes(),
    );
    assert!(
        message.contains("not a multiple of its block size 32"),
        "{message}"
    );
    let message = open_err(
        &Gguf::new()
            .f32_tensor("x", &[1], &[1.0])
            .f32_tensor("x", &[1], &[1.0])
            .bytes(),
    );
    assert!(message.contains("tensor `x` appears twice"), "{message}");
    let message = open_err(&Gguf::new().kv("k", V::U8(1)).kv("k", V::U8(2)).bytes());
    assert!(
        message.contains("metadata key `k` appears twice"),
        "{message}"
    );
    let message = open_err(&Gguf::new().kv("general.alignment", V::U32(48)).bytes());
    assert!(message.contains("not a power of two"), "{message}");
    let message = open_err(&Gguf::new().kv("general.alignment", s("32")).bytes());
    assert!(
        message.contains("`general.alignment` is string"),
        "{message}"
    );
}

#[test]
fn no_prefix_of_a_valid_file_panics() {
    let bytes = every_type_metadata()
        .f32_tensor("a", &[3], &[1.0, 2.0, 3.0])
        .tensor("q", &[32], GgmlType::Q4_1, q4_1(1.0, 0.0, &nibbles(0)).0)
        .bytes();
    let (_dir, path) = write_file(&[]);
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        // The last tensor's data ends at the file's end: any shorter prefix fails.
        let err = GgufFile::open(&path).expect_err("a prefix is refused");
        assert!(err.to_string().contains("model.gguf"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// The rotary permutation.

fn column(values: &[f32]) -> Tensor {
    Tensor::from_vec(vec![values.len(), 1], values.to_vec())
}

#[test]
fn permutation_by_hand() {
    let rows: Vec<f32> = (0..8).map(|i| i as f32).collect();
    // llama.cpp: w.reshape(n_head, 2, 8/n_head/2, 1).swapaxes(1, 2).reshape(8, 1).
    let one_head = permute_qk(&column(&rows), 1).unwrap();
    assert_eq!(
        one_head.to_vec::<f32>(),
        vec![0., 4., 1., 5., 2., 6., 3., 7.]
    );
    let two_heads = permute_qk(&column(&rows), 2).unwrap();
    assert_eq!(
        two_heads.to_vec::<f32>(),
        vec![0., 2., 1., 3., 4., 6., 5., 7.]
    );
    assert_eq!(unpermute_qk(&one_head, 1).unwrap().to_vec::<f32>(), rows);
    assert_eq!(unpermute_qk(&two_heads, 2).unwrap().to_vec::<f32>(), rows);
    assert!(
        permute_qk(&column(&rows), 3).is_none(),
        "8 rows are not 3 heads of pairs"
    );
    assert!(unpermute_qk(&column(&rows), 0).is_none());
}

#[test]
fn unpermute_inverts_permute() {
    for (rows, cols, heads) in [(12, 5, 3), (16, 3, 2), (16, 3, 4), (64, 7, 4), (6, 1, 1)] {
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w = Tensor::from_vec(vec![rows, cols], values.clone());
        let p = permute_qk(&w, heads).unwrap();
        assert_ne!(
            p.to_vec::<f32>(),
            values,
            "{rows}x{cols}/{heads} moves rows"
        );
        assert_eq!(unpermute_qk(&p, heads).unwrap(), w, "{rows}x{cols}/{heads}");
        assert_eq!(
            permute_qk(&unpermute_qk(&w, heads).unwrap(), heads).unwrap(),
            w
        );
    }
    // Any dtype; a 1-D bias too.
    let bias = Tensor::from_vec(vec![8], (0..8).map(|i| f16::from_f32(i as f32)).collect());
    let p = permute_qk(&bias, 2).unwrap();
    assert_eq!(p.dtype(), DType::F16);
    assert_eq!(unpermute_qk(&p, 2).unwrap(), bias);
}

/// llama.cpp's permutation written out independently of the crate: with
/// `w` as `[n_head, 2, half, cols]`, `out[h, j, t, :] = w[h, t, j, :]`.
fn llama_cpp_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let half = rows / n_head / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                let dst = ((h * half + j) * 2 + t) * cols;
                let src = ((h * 2 + t) * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The Llama-family Hugging Face mapping.

const HIDDEN: usize = 32;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 64;
const LAYERS: usize = 2;
const VOCAB: usize = 6;

/// Tensors by name: (name, shape, values).
type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Distinct values for a tensor, from a seed.
fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| (seed * 1000 + i) as f32 * 0.001).collect()
}

/// The Hugging Face weights of a tiny model, by Hugging Face name, with shapes.
fn hf_weights(with_bias: bool, with_lm_head: bool) -> Named {
    let mut out = vec![
        ("model.embed_tokens.weight".to_owned(), vec![VOCAB, HIDDEN]),
        ("model.norm.weight".to_owned(), vec![HIDDEN]),
    ];
    if with_lm_head {
        out.push(("lm_head.weight".to_owned(), vec![VOCAB, HIDDEN]));
    }
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![HIDDEN]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN]));
        out.push((
            format!("{p}.self_attn.q_proj.weight"),
            vec![HEADS * HEAD_DIM, HIDDEN],
        ));
        out.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, HIDDEN],
        ));
        out.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, HIDDEN],
        ));
        out.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![HIDDEN, HEADS * HEAD_DIM],
        ));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![FFN, HIDDEN]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![FFN, HIDDEN]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![HIDDEN, FFN]));
        if with_bias {
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![HEADS * HEAD_DIM]));
            out.push((
                format!("{p}.self_attn.k_proj.bias"),
                vec![KV_HEADS * HEAD_DIM],
            ));
            out.push((
                format!("{p}.self_attn.v_proj.bias"),
                vec![KV_HEADS * HEAD_DIM],
            ));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            (name, shape, values(i + 1, n))
        })
        .collect()
}

/// The GGUF name of a Hugging Face name (the converter's direction).
fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return (*g).to_owned();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (module, kind) = rest.rsplit_once('.').unwrap();
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("{other}"),
    };
    format!("blk.{layer}.{g}.{kind}")
}

/// A tiny model as llama.cpp's converter would write it for `arch`: the q and k
/// projections permuted for `llama`, `ffn_up` stored as Q8_0 (dequantized on
/// load, so the expected values are the dequantized ones).
fn tiny_model(arch: &str, with_bias: bool, with_lm_head: bool) -> (Gguf, Named) {
    let permuted = arch != "qwen2";
    let tokens = ["<unk>", "<s>", "</s>", "a", "b", "ab"];
    let mut gguf = Gguf::new()
        .kv("general.architecture", s(arch))
        .kv("general.name", s("tiny"))
        .kv(&format!("{arch}.block_count"), V::U32(LAYERS as u32))
        .kv(&format!("{arch}.context_length"), V::U32(256))
        .kv(&format!("{arch}.embedding_length"), V::U32(HIDDEN as u32))
        .kv(&format!("{arch}.feed_forward_length"), V::U32(FFN as u32))
        .kv(
            &format!("{arch}.attention.head_count"),
            V::U32(HEADS as u32),
        )
        .kv(
            &format!("{arch}.attention.head_count_kv"),
            V::U32(KV_HEADS as u32),
        )
        .kv(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            V::F32(1e-5),
        )
        .kv(
            &format!("{arch}.rope.dimension_count"),
            V::U32(HEAD_DIM as u32),
        )
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.pre", s("smollm"))
        .kv("tokenizer.ggml.tokens", strs(&tokens))
        .kv(
            "tokenizer.ggml.token_type",
            V::Arr(T_I32, [2, 3, 3, 1, 1, 1].map(V::I32).to_vec()),
        )
        .kv("tokenizer.ggml.merges", strs(&["a b"]))
        .kv("tokenizer.ggml.bos_token_id", V::U32(1))
        .kv("tokenizer.ggml.eos_token_id", V::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", V::U32(0))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(false))
        .kv("tokenizer.chat_template", s("{{ messages }}"));
    let mut expected = Vec::new();
    for (hf, shape, vals) in hf_weights(with_bias, with_lm_head) {
        let g = gguf_name(&hf);
        let gguf_shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let heads = if hf.contains("q_proj") {
            HEADS
        } else {
            KV_HEADS
        };
        if permuted && (hf.contains("q_proj") || hf.contains("k_proj")) {
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            let stored = llama_cpp_permute(&vals, shape[0], cols, heads);
            gguf = gguf.f32_tensor(&g, &gguf_shape, &stored);
            expected.push((hf, shape, vals));
        } else if hf.contains("up_proj") {
            let parts: Vec<_> = (0..shape.iter().product::<usize>() / 32)
                .map(|b| q8_0(0.01, &bytes_i8(b)))
                .collect();
            let (bytes, dequantized) = blocks(parts);
            gguf = gguf.tensor(&g, &gguf_shape, GgmlType::Q8_0, bytes);
            expected.push((hf, shape, dequantized));
        } else {
            gguf = gguf.f32_tensor(&g, &gguf_shape, &vals);
            expected.push((hf, shape, vals));
        }
    }
    (gguf, expected)
}

#[test]
fn llama_maps_to_hugging_face_names_shapes_and_unpermuted_values() {
    let (gguf, expected) = tiny_model("llama", false, false);
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert_eq!(hf.tensors.len(), expected.len());
    for (name, shape, values) in &expected {
        let t = hf
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}`"));
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), DType::F32, "{name}");
        assert_eq!(&t.to_vec::<f32>(), values, "{name}");
    }
    // The stored q projection really is permuted: unpermuting changed it.
    let stored = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_ne!(stored, hf.tensors["model.layers.0.self_attn.q_proj.weight"]);

    let c = &hf.config;
    assert_eq!(c["architectures"], serde_json::json!(["LlamaForCausalLM"]));
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["hidden_act"], "silu");
    assert_eq!(c["num_hidden_layers"], LAYERS);
    assert_eq!(c["hidden_size"], HIDDEN);
    assert_eq!(c["intermediate_size"], FFN);
    assert_eq!(c["num_attention_heads"], HEADS);
    assert_eq!(c["num_key_value_heads"], KV_HEADS);
    assert_eq!(c["head_dim"], HEAD_DIM);
    assert_eq!(c["rms_norm_eps"], 1e-5, "the f32's shortest decimal");
    assert_eq!(c["rope_theta"], 10_000.0, "the default");
    assert_eq!(c["rope_scaling"], serde_json::Value::Null);
    assert_eq!(c["max_position_embeddings"], 256);
    assert_eq!(c["vocab_size"], VOCAB);
    assert_eq!(c["tie_word_embeddings"], true, "no output.weight");
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
    assert_eq!(c["torch_dtype"], "float32");
    assert_eq!(c["attention_bias"], false);

    let tok = &hf.tokenizer;
    assert_eq!(tok.model, "gpt2");
    assert_eq!(tok.pre.as_deref(), Some("smollm"));
    assert_eq!(tok.tokens, vec!["<unk>", "<s>", "</s>", "a", "b", "ab"]);
    assert_eq!(tok.token_types, Some(vec![2, 3, 3, 1, 1, 1]));
    assert_eq!(tok.merges, Some(vec!["a b".to_owned()]));
    assert_eq!(tok.scores, None);
    assert_eq!(tok.bos_token_id, Some(1));
    assert_eq!(tok.eos_token_id, Some(2));
    assert_eq!(tok.unknown_token_id, Some(0));
    assert_eq!(tok.padding_token_id, None);
    assert_eq!(tok.add_bos_token, Some(false));
    assert_eq!(tok.add_eos_token, None);
    assert_eq!(tok.chat_template.as_deref(), Some("{{ messages }}"));
}

#[test]
fn lm_head_unties_and_rope_keys_reach_the_config() {
    let (gguf, _) = tiny_model("llama", false, true);
    let gguf = gguf
        .kv("llama.rope.freq_base", V::F32(100_000.0))
        .kv("llama.rope.scaling.type", s("linear"))
        .kv("llama.rope.scaling.factor", V::F32(2.0));
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert!(hf.tensors.contains_key("lm_head.weight"));
    assert_eq!(hf.config["tie_word_embeddings"], false);
    assert_eq!(hf.config["rope_theta"], 100_000.0);
    assert_eq!(
        hf.config["rope_scaling"],
        serde_json::json!({"rope_type": "linear", "factor": 2.0})
    );
}

#[test]
fn llama3_rope_freqs_become_llama3_rope_scaling() {
    let theta = 500_000.0f64;
    let (factor, low, high, original) = (8.0f64, 1.0, 4.0, 8192.0);
    // The converter's computation, for heads of HEAD_DIM dimensions.
    let freqs: Vec<f32> = (0..HEAD_DIM / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf((2 * i) as f64 / HEAD_DIM as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor as f32
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect();
    assert!(freqs.contains(&8.0) && freqs.contains(&1.0), "{freqs:?}");
    let (gguf, _) = tiny_model("llama", false, false);
    let gguf = gguf
        .kv("llama.rope.freq_base", V::F32(theta as f32))
        .f32_tensor("rope_freqs.weight", &[(HEAD_DIM / 2) as u64], &freqs);
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert!(!hf.tensors.keys().any(|k| k.contains("rope")));
    assert_eq!(
        hf.config["rope_scaling"],
        serde_json::json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
        })
    );
}

#[test]
fn qwen2_is_not_unpermuted_and_keeps_its_biases() {
    let (gguf, expected) = tiny_model("qwen2", true, false);
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert_eq!(
        hf.config["architectures"],
        serde_json::json!(["Qwen2ForCausalLM"])
    );
    assert_eq!(hf.config["model_type"], "qwen2");
    for (name, shape, values) in &expected {
        let t = &hf.tensors[name];
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(&t.to_vec::<f32>(), values, "{name}");
    }
    assert!(hf
        .tensors
        .contains_key("model.layers.1.self_attn.k_proj.bias"));
    assert_eq!(
        file.tensor("blk.0.attn_q.weight").unwrap(),
        hf.tensors["model.layers.0.self_attn.q_proj.weight"],
        "stored as Hugging Face has it"
    );
}

#[test]
fn llama_biases_are_unpermuted_too() {
    let (gguf, expected) = tiny_model("llama", true, false);
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert_eq!(hf.config["attention_bias"], true);
    for (name, _, values) in &expected {
        assert_eq!(&hf.tensors[name].to_vec::<f32>(), values, "{name}");
    }
}

#[test]
fn mistral_maps_to_mistral_for_causal_lm() {
    let (gguf, expected) = tiny_model("mistral", false, false);
    let (_dir, file) = open(&gguf.bytes());
    let hf = file.to_hf_llama().unwrap();
    assert_eq!(
        hf.config["architectures"],
        serde_json::json!(["MistralForCausalLM"])
    );
    let q = "model.layers.1.self_attn.q_proj.weight";
    let (_, _, values) = expected.iter().find(|(n, _, _)| n == q).unwrap();
    assert_eq!(&hf.tensors[q].to_vec::<f32>(), values);
}

#[test]
fn hf_tensor_names() {
    for (gguf, hf) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        (
            "blk.0.attn_norm.weight",
            "model.layers.0.input_layernorm.weight",
        ),
        (
            "blk.11.ffn_norm.weight",
            "model.layers.11.post_attention_layernorm.weight",
        ),
        (
            "blk.2.attn_q.weight",
            "model.layers.2.self_attn.q_proj.weight",
        ),
        ("blk.2.attn_k.bias", "model.layers.2.self_attn.k_proj.bias"),
        (
            "blk.2.attn_v.weight",
            "model.layers.2.self_attn.v_proj.weight",
        ),
        (
            "blk.2.attn_output.weight",
            "model.layers.2.self_attn.o_proj.weight",
        ),
        (
            "blk.3.ffn_gate.weight",
            "model.layers.3.mlp.gate_proj.weight",
        ),
        ("blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"),
        (
            "blk.3.ffn_down.weight",
            "model.layers.3.mlp.down_proj.weight",
        ),
    ] {
        assert_eq!(hf_tensor_name(gguf).as_deref(), Some(hf), "{gguf}");
    }
    for odd in [
        "blk.01.attn_q.weight",
        "blk.0.attn_norm.bias",
        "blk.x.ffn_up.weight",
        "rope_freqs.weight",
        "blk.0.attn_q.scale",
    ] {
        assert_eq!(hf_tensor_name(odd), None, "{odd}");
    }
}

#[test]
fn mapping_errors_name_the_problem() {
    let map_err = |gguf: Gguf| {
        let (_dir, path) = write_file(&gguf.bytes());
        let file = GgufFile::open(&path).unwrap();
        let message = file.to_hf_llama().expect_err("refused").to_string();
        assert!(message.contains("model.gguf"), "{message}");
        message
    };
    let (gguf, _) = tiny_model("gemma", false, false);
    let message = map_err(gguf);
    assert!(
        message.contains("architecture `gemma` is not supported"),
        "{message}"
    );

    let (mut gguf, _) = tiny_model("llama", false, false);
    gguf.tensors.retain(|t| t.name != "blk.1.ffn_down.weight");
    let message = map_err(gguf);
    assert!(
        message.contains("model.layers.1.mlp.down_proj.weight"),
        "{message}"
    );

    let (mut gguf, _) = tiny_model("llama", false, false);
    gguf.kv.retain(|(k, _)| k != "llama.attention.head_count");
    let message = map_err(gguf);
    assert!(
        message.contains("no metadata key `llama.attention.head_count`"),
        "{message}"
    );

    let (mut gguf, _) = tiny_model("llama", false, false);
    let k = gguf
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_k.weight")
        .unwrap();
    k.shape = vec![HIDDEN as u64, HIDDEN as u64];
    k.data = f32_bytes(&vec![0.0; HIDDEN * HIDDEN]);
    let message = map_err(gguf);
    assert!(
        message.contains("tensor `blk.0.attn_k.weight`"),
        "{message}"
    );
    assert!(message.contains("expected [16, 32]"), "{message}");

    let (gguf, _) = tiny_model("llama", false, false);
    let message = map_err(gguf.f32_tensor(
        "blk.0.attn_q_norm.weight",
        &[HEAD_DIM as u64],
        &[1.0; HEAD_DIM],
    ));
    assert!(
        message.contains("tensor `blk.0.attn_q_norm.weight` has no LlamaForCausalLM equivalent"),
        "{message}"
    );

    let (gguf, _) = tiny_model("llama", false, false);
    let message =
        map_err(gguf.f32_tensor("blk.2.attn_norm.weight", &[HIDDEN as u64], &[1.0; HIDDEN]));
    assert!(
        message.contains("layer 2, but the model has 2 layers"),
        "{message}"
    );

    let (mut gguf, _) = tiny_model("llama", false, false);
    gguf.kv.retain(|(k, _)| k != "llama.block_count");
    let gguf = gguf.kv("llama.block_count", s("two"));
    let message = map_err(gguf);
    assert!(
        message.contains("`llama.block_count` is string, expected a non-negative integer"),
        "{message}"
    );

    let (mut gguf, _) = tiny_model("llama", false, false);
    gguf.kv.retain(|(k, _)| k != "tokenizer.ggml.tokens");
    let message = map_err(gguf);
    assert!(
        message.contains("no metadata key `tokenizer.ggml.tokens`"),
        "{message}"
    );
}

#[test]
fn damaged_headers_never_panic() {
    // Every byte of the header, metadata and tensor infos of a small model, set
    // to a few telling values: opening, decoding every tensor and mapping to
    // Hugging Face may fail, but only with an error.
    let (gguf, _) = tiny_model("llama", true, false);
    let good = gguf.bytes();
    let (_dir, file) = open(&good);
    let header_len = file.data_start() as usize;
    let (_dir, path) = write_file(&[]);
    let mut opened = 0;
    for at in 0..header_len {
        for value in [0x00, 0x01, 0x80, 0xff] {
            if good[at] == value {
                continue;
            }
            let mut bytes = good.clone();
            bytes[at] = value;
            std::fs::write(&path, &bytes).unwrap();
            let Ok(file) = GgufFile::open(&path) else {
                continue;
            };
            opened += 1;
            for info in file.tensors() {
                let _ = file.tensor(info.name());
            }
            let _ = file.to_hf_llama();
        }
    }
    assert!(opened > 0, "some damage (in values) still opens");
}

// ---------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct Q4_1 file, when installed.

#[test]
fn real_smollm2_q4_1() {
    let Some(path) = kiln_test_support::require(
        kiln_test_support::Resource::SmolLm2Gguf,
        "real_smollm2_q4_1",
    ) else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_str("general.architecture"), Some("llama"));
    assert_eq!(file.tensors().len(), 272);
    let count = |ty: GgmlType| {
        file.tensors()
            .iter()
            .filter(|t| t.ggml_type() == ty)
            .count()
    };
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );

    // Values as gguf-py's `dequantize` computes them.
    let near = |got: f64, want: f64| (got - want).abs() <= 1e-6 * want.abs().max(1.0);
    for (name, first, sum) in [
        (
            "token_embd.weight",
            [-0.106_544_494_628_906_25, 0.032_978_057_861_328_125],
            -15_353.044_494_152_07,
        ),
        (
            "blk.0.attn_q.weight",
            [-0.096_313_476_562_5, 0.157_348_632_812_5],
            59.223_220_825_195_31,
        ),
        (
            "blk.29.ffn_down.weight",
            [-0.273_315_429_687_5, 0.186_279_296_875],
            49.835_708_618_164_06,
        ),
    ] {
        let t = file.tensor(name).unwrap().to_f64_vec();
        assert_eq!(&t[..2], &first, "{name}");
        let total: f64 = t.iter().sum();
        assert!(near(total, sum), "{name}: sum {total}, gguf-py {sum}");
    }

    let hf = file.to_hf_llama().unwrap();
    let c = &hf.config;
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["head_dim"], 64);
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["rope_theta"], 100_000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
    assert_eq!(hf.tensors.len(), 2 + 9 * 30);
    assert_eq!(
        hf.tensors["model.layers.0.self_attn.k_proj.weight"].shape(),
        &[192, 576]
    );
    assert_eq!(
        hf.tensors["model.layers.7.mlp.down_proj.weight"].shape(),
        &[576, 1536]
    );
    for (name, t) in &hf.tensors {
        assert_eq!(t.dtype(), DType::F32, "{name}");
        assert!(
            t.to_vec::<f32>().iter().all(|v| v.is_finite()),
            "{name} is finite"
        );
    }
    // Unpermuting only moved rows.
    let stored = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        permute_qk(&hf.tensors["model.layers.0.self_attn.q_proj.weight"], 9).unwrap(),
        stored
    );

    let tok = &hf.tokenizer;
    assert_eq!(tok.model, "gpt2");
    assert_eq!(tok.pre.as_deref(), Some("smollm"));
    assert_eq!(tok.tokens.len(), 49152);
    assert_eq!(
        &tok.tokens[..3],
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    let merges = tok.merges.as_ref().expect("merges");
    assert_eq!(merges.len(), 48900);
    assert_eq!(merges[0], "Ġ t");
    assert_eq!(tok.token_types.as_ref().map(Vec::len), Some(49152));
    assert_eq!((tok.bos_token_id, tok.eos_token_id), (Some(1), Some(2)));
    assert_eq!(
        (tok.unknown_token_id, tok.padding_token_id),
        (Some(0), Some(2))
    );
    assert_eq!(tok.add_bos_token, Some(false));
    assert!(tok
        .chat_template
        .as_deref()
        .unwrap_or("")
        .contains("im_start"));
}
