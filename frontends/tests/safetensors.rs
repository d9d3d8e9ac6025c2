//! Tests of the memory-mapped safetensors reader.

use std::path::{Path, PathBuf};

use ::safetensors::tensor::TensorView;
use ::safetensors::{Dtype, SafeTensors};
use kiln_frontends::safetensors::{load, load_sharded, SafetensorsError, Weights};
use kiln_ir::half::{bf16, f16};
use kiln_ir::{DType, Tensor};

/// The safetensors dtype of a kiln dtype, for the dtypes the reader supports.
fn st_dtype(dtype: DType) -> Dtype {
    match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
        other => panic!("no test mapping for {other}"),
    }
}

/// Serializes named kiln tensors into safetensors bytes.
fn serialize(tensors: &[(&str, &Tensor)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let view = TensorView::new(st_dtype(t.dtype()), t.shape().to_vec(), t.bytes())
                .expect("valid view");
            (name.to_string(), view)
        })
        .collect();
    ::safetensors::serialize(views, None).expect("serialize")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}

/// A small file of three tensors.
fn small_model() -> Vec<(&'static str, Tensor)> {
    vec![
        (
            "a",
            Tensor::from_vec(vec![2, 3], vec![1.0f32, 2., 3., 4., 5., 6.]),
        ),
        ("b", Tensor::from_vec(vec![4], vec![7i64, -8, 9, 10])),
        ("c", Tensor::from_vec(vec![3], vec![1u8, 2, 3])),
    ]
}

fn small_bytes() -> Vec<u8> {
    let model = small_model();
    let refs: Vec<(&str, &Tensor)> = model.iter().map(|(n, t)| (*n, t)).collect();
    serialize(&refs)
}

fn every_dtype() -> Vec<(&'static str, Tensor)> {
    vec![
        (
            "f32",
            Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.25, f32::MAX, f32::MIN_POSITIVE]),
        ),
        (
            "f16",
            Tensor::from_vec(
                vec![3],
                vec![f16::from_f32(0.5), f16::from_f32(-3.0), f16::MAX],
            ),
        ),
        (
            "bf16",
            Tensor::from_vec(
                vec![3],
                vec![bf16::from_f32(1.0), bf16::from_f32(-7.5), bf16::MIN],
            ),
        ),
        (
            "f64",
            Tensor::from_vec(vec![2], vec![std::f64::consts::PI, -1e300]),
        ),
        (
            "i64",
            Tensor::from_vec(vec![3], vec![i64::MIN, 0, i64::MAX]),
        ),
        (
            "i32",
            Tensor::from_vec(vec![1, 3], vec![i32::MIN, -1, i32::MAX]),
        ),
        (
            "i16",
            Tensor::from_vec(vec![3], vec![i16::MIN, 42, i16::MAX]),
        ),
        ("i8", Tensor::from_vec(vec![3], vec![i8::MIN, 0, i8::MAX])),
        ("u8", Tensor::from_vec(vec![2, 2], vec![0u8, 1, 128, 255])),
        (
            "bool",
            Tensor::from_vec(vec![4], vec![true, false, false, true]),
        ),
        ("scalar", Tensor::from_vec(vec![], vec![3.0f32])),
        ("empty", Tensor::from_vec(vec![0, 4], Vec::<f32>::new())),
    ]
}

#[test]
fn round_trips_every_supported_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let model = every_dtype();
    let refs: Vec<(&str, &Tensor)> = model.iter().map(|(n, t)| (*n, t)).collect();
    let path = write(dir.path(), "model.safetensors", &serialize(&refs));

    let weights = load(&path).unwrap();
    assert_eq!(weights.len(), model.len());
    assert!(!weights.is_empty());
    assert_eq!(weights.path(), path);
    let mut expected_names: Vec<&str> = model.iter().map(|(n, _)| *n).collect();
    expected_names.sort_unstable();
    assert_eq!(weights.names().collect::<Vec<_>>(), expected_names);
    for (name, original) in &model {
        let loaded = weights
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(loaded.dtype(), original.dtype(), "{name}");
        assert_eq!(loaded.shape(), original.shape(), "{name}");
        assert_eq!(loaded, original, "{name}");
        let (a, b) = (loaded.to_f64_vec(), original.to_f64_vec());
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.to_bits(), y.to_bits(), "{name}");
        }
    }
    assert_eq!(weights.get("f32").unwrap().to_vec::<f32>()[0], 1.5);
    assert_eq!(
        weights.get("i64").unwrap().to_vec::<i64>(),
        vec![i64::MIN, 0, i64::MAX]
    );
    assert_eq!(
        weights.get("bool").unwrap().to_vec::<bool>(),
        vec![true, false, false, true]
    );
    assert!(weights.get("nope").is_none());
}

#[test]
fn tensors_view_the_mapping_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let model = every_dtype();
    let refs: Vec<(&str, &Tensor)> = model.iter().map(|(n, t)| (*n, t)).collect();
    let bytes = serialize(&refs);
    let path = write(dir.path(), "model.safetensors", &bytes);
    let weights = load(&path).unwrap();

    // Where the header puts each tensor, relative to the start of the file.
    let (header_len, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let data_start = 8 + header_len;
    let mut placed: Vec<(usize, usize, &Tensor)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (s, e) = info.data_offsets;
            (data_start + s, data_start + e, weights.get(&name).unwrap())
        })
        // An empty tensor has no bytes whose address could be checked.
        .filter(|&(s, e, _)| e > s)
        .collect();
    placed.sort_by_key(|&(s, _, _)| s);

    // If every tensor views one mapping of the file, the distance between any two
    // tensors' data equals the distance between their offsets in the file, and the
    // implied file start places every tensor inside the file. A copy into separate
    // allocations would not keep these distances.
    let (first_offset, _, first) = placed[0];
    let file_start = first.bytes().as_ptr() as usize - first_offset;
    for &(s, e, tensor) in &placed {
        let ptr = tensor.bytes().as_ptr() as usize;
        assert_eq!(ptr - file_start, s, "tensor at file offset {s}");
        assert_eq!(tensor.bytes().len(), e - s);
        assert!(ptr + tensor.bytes().len() <= file_start + bytes.len());
    }
    // The data seen through the mapping is the file's.
    for &(s, e, tensor) in &placed {
        assert_eq!(&tensor.bytes()[..], &bytes[s..e]);
    }
    // Cloning shares the data.
    let a = weights.get("f32").unwrap();
    assert_eq!(a.clone().bytes().as_ptr(), a.bytes().as_ptr());
    // The map outlives the Weights it came from.
    let kept = a.clone();
    drop(weights);
    assert_eq!(kept.to_vec::<f32>()[1], -2.25);
}

/// Writes a two-shard model and returns the index path.
fn write_sharded(dir: &Path, index: &str) -> PathBuf {
    let w1 = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]);
    let w2 = Tensor::from_vec(vec![2, 2], vec![3i32, 4, 5, 6]);
    let w3 = Tensor::from_vec(vec![1], vec![f16::from_f32(7.0)]);
    write(
        dir,
        "model-00001-of-00002.safetensors",
        &serialize(&[("layer.0.weight", &w1), ("layer.0.bias", &w2)]),
    );
    write(
        dir,
        "model-00002-of-00002.safetensors",
        &serialize(&[("layer.1.weight", &w3)]),
    );
    write(dir, "model.safetensors.index.json", index.as_bytes())
}

const GOOD_INDEX: &str = r#"{
  "metadata": {"total_size": 26},
  "weight_map": {
    "layer.0.weight": "model-00001-of-00002.safetensors",
    "layer.0.bias": "model-00001-of-00002.safetensors",
    "layer.1.weight": "model-00002-of-00002.safetensors"
  }
}"#;

#[test]
fn loads_a_sharded_model() {
    let dir = tempfile::tempdir().unwrap();
    let index = write_sharded(dir.path(), GOOD_INDEX);
    let weights = load_sharded(&index).unwrap();
    assert_eq!(weights.len(), 3);
    assert_eq!(weights.path(), index);
    assert_eq!(
        weights.names().collect::<Vec<_>>(),
        ["layer.0.bias", "layer.0.weight", "layer.1.weight"]
    );
    assert_eq!(
        weights
            .require("layer.0.weight", &[2])
            .unwrap()
            .to_vec::<f32>(),
        vec![1.0, 2.0]
    );
    assert_eq!(
        weights
            .require("layer.0.bias", &[2, 2])
            .unwrap()
            .to_vec::<i32>(),
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        weights
            .require("layer.1.weight", &[1])
            .unwrap()
            .to_f64_vec(),
        vec![7.0]
    );
    assert_eq!(weights.iter().count(), 3);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_bytes();
    assert!(load(&write(dir.path(), "whole.safetensors", &bytes)).is_ok());
    for cut in 0..bytes.len() {
        let path = write(dir.path(), "cut.safetensors", &bytes[..cut]);
        let err = load(&path).expect_err(&format!("cut at {cut} of {}", bytes.len()));
        assert!(err.to_string().contains("cut.safetensors"), "{err}");
    }
    // Cut inside the data: the message says how much is missing.
    let path = write(dir.path(), "cut.safetensors", &bytes[..bytes.len() - 3]);
    let err = load(&path).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::DataSizeMismatch { .. }),
        "{err}"
    );
    // Shorter than the length field.
    let err = load(&write(dir.path(), "tiny.safetensors", &bytes[..5])).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::TooShort { len: 5, .. }),
        "{err}"
    );
    // Trailing bytes are an error too.
    let mut longer = bytes.clone();
    longer.push(0);
    let err = load(&write(dir.path(), "long.safetensors", &longer)).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::DataSizeMismatch { .. }),
        "{err}"
    );
}

#[test]
fn corrupted_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_bytes();
    let path = dir.path().join("flip.safetensors");
    for at in 0..bytes.len() {
        for value in [0x00u8, 0x22, 0x5d, 0x7f, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[at] = value;
            std::fs::write(&path, &corrupt).unwrap();
            // Either loads (a byte of tensor data, or a harmless header change) or
            // gives an error; never panics.
            if let Ok(weights) = load(&path) {
                for (_, t) in weights.iter() {
                    let _ = t.to_f64_vec();
                }
            }
        }
    }
}

#[test]
fn header_length_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = small_bytes();
    let file_len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&(file_len + 1000).to_le_bytes());
    let path = write(dir.path(), "long_header.safetensors", &bytes);
    let err = load(&path).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::HeaderBeyondFile { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("long_header.safetensors") && msg.contains(&(file_len + 1000).to_string()),
        "{msg}"
    );

    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = load(&write(dir.path(), "huge.safetensors", &bytes)).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::HeaderTooLarge { .. }),
        "{err}"
    );
}

#[test]
fn corrupt_json_header() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut broken = bytes.clone();
    broken[8..8 + n].fill(b'{');
    let err = load(&write(dir.path(), "json.safetensors", &broken)).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::CorruptHeader { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("json.safetensors") && msg.contains("JSON"),
        "{msg}"
    );

    let mut not_utf8 = bytes.clone();
    not_utf8[9] = 0xff;
    let err = load(&write(dir.path(), "utf8.safetensors", &not_utf8)).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");

    // A header whose offsets do not tile the data.
    let header = br#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 4]);
    let err = load(&write(dir.path(), "offsets.safetensors", &file)).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::CorruptHeader { .. }),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0u8; 4];
    let views = vec![(
        "odd.weight",
        TensorView::new(Dtype::U16, vec![2], &data).unwrap(),
    )];
    let bytes = ::safetensors::serialize(views, None).unwrap();
    let err = load(&write(dir.path(), "u16.safetensors", &bytes)).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::UnsupportedDtype { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("odd.weight") && msg.contains("U16") && msg.contains("u16.safetensors"),
        "{msg}"
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&dir.path().join("absent.safetensors")).unwrap_err();
    assert!(matches!(err, SafetensorsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}

fn sharded_err(index: &str) -> SafetensorsError {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sharded(dir.path(), index);
    load_sharded(&path).unwrap_err()
}

#[test]
fn tensor_missing_from_its_shard() {
    let err = sharded_err(
        r#"{"weight_map": {
            "layer.0.weight": "model-00001-of-00002.safetensors",
            "layer.0.bias": "model-00001-of-00002.safetensors",
            "layer.1.weight": "model-00001-of-00002.safetensors"
        }}"#,
    );
    assert!(
        matches!(err, SafetensorsError::MissingInShard { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("layer.1.weight") && msg.contains("model-00001-of-00002"),
        "{msg}"
    );

    let err = sharded_err(r#"{"weight_map": {"ghost": "model-00002-of-00002.safetensors"}}"#);
    assert!(err.to_string().contains("ghost"), "{err}");
}

#[test]
fn tensor_in_two_shards() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tensor::from_vec(vec![1], vec![1.0f32]);
    write(
        dir.path(),
        "one.safetensors",
        &serialize(&[("shared", &t), ("x", &t)]),
    );
    write(
        dir.path(),
        "two.safetensors",
        &serialize(&[("shared", &t), ("y", &t)]),
    );
    let index = write(
        dir.path(),
        "model.safetensors.index.json",
        br#"{"weight_map": {"x": "one.safetensors", "y": "two.safetensors", "shared": "one.safetensors"}}"#,
    );
    let err = load_sharded(&index).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::DuplicateTensor { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("shared")
            && msg.contains("one.safetensors")
            && msg.contains("two.safetensors"),
        "{msg}"
    );
}

#[test]
fn shards_must_stay_inside_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let inner = root.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    let t = Tensor::from_vec(vec![1], vec![1.0f32]);
    let outside = write(root.path(), "x.safetensors", &serialize(&[("w", &t)]));

    let check = |index: String, reason: &str| {
        let path = write(&inner, "model.safetensors.index.json", index.as_bytes());
        let err = load_sharded(&path).unwrap_err();
        assert!(
            matches!(err, SafetensorsError::ShardOutsideFolder { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(reason), "{msg}");
        assert!(msg.contains("model.safetensors.index.json"), "{msg}");
    };
    check(
        r#"{"weight_map": {"w": "../x.safetensors"}}"#.to_owned(),
        "`..`",
    );
    check(
        r#"{"weight_map": {"w": "sub/../../x.safetensors"}}"#.to_owned(),
        "`..`",
    );
    let absolute = serde_json_string(&outside);
    check(
        format!(r#"{{"weight_map": {{"w": {absolute}}}}}"#),
        "absolute",
    );

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, inner.join("link.safetensors")).unwrap();
        check(
            r#"{"weight_map": {"w": "link.safetensors"}}"#.to_owned(),
            "link",
        );
        // A link that stays inside is fine.
        std::fs::copy(&outside, inner.join("real.safetensors")).unwrap();
        std::os::unix::fs::symlink(inner.join("real.safetensors"), inner.join("ok.safetensors"))
            .unwrap();
        let path = write(
            &inner,
            "model.safetensors.index.json",
            br#"{"weight_map": {"w": "./ok.safetensors"}}"#,
        );
        assert_eq!(load_sharded(&path).unwrap().len(), 1);
    }
}

/// `path` as a JSON string literal.
fn serde_json_string(path: &Path) -> String {
    let s = path.to_str().unwrap();
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn bad_index_files() {
    for (index, reason) in [
        ("not json", "invalid JSON"),
        (r#"{"metadata": {}}"#, "no `weight_map`"),
        (r#"{"weight_map": []}"#, "not an object"),
        (r#"{"weight_map": {}}"#, "empty"),
        (r#"{"weight_map": {"w": 3}}"#, "`w`"),
    ] {
        let err = sharded_err(index);
        assert!(
            matches!(err, SafetensorsError::BadIndex { .. }),
            "{index}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(reason) && msg.contains("model.safetensors.index.json"),
            "{msg}"
        );
    }
    let err = sharded_err(r#"{"weight_map": {"w": "absent.safetensors"}}"#);
    assert!(
        matches!(err, SafetensorsError::Io { .. })
            && err.to_string().contains("absent.safetensors"),
        "{err}"
    );
}

#[test]
fn require_checks_presence_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "model.safetensors", &small_bytes());
    let weights: Weights = load(&path).unwrap();
    assert_eq!(weights.require("a", &[2, 3]).unwrap().shape(), &[2, 3]);

    let err = weights.require("a", &[3, 2]).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::ShapeMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`a`") && msg.contains("[3, 2]") && msg.contains("[2, 3]"),
        "{msg}"
    );

    let err = weights.require("lm_head.weight", &[1]).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::MissingTensor { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("lm_head.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}
