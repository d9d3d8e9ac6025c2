//! Reading and writing numpy `.npy` files (format versions 1, 2 and 3).

use std::path::Path;

use kiln_ir::{DType, Tensor};

use crate::Error;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The numpy dtype descriptor of a kiln dtype (little-endian).
fn descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I16 => "<i2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        // numpy has no such dtype (ml_dtypes' are not in the .npy format).
        DType::BF16
        | DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1
        | DType::I4
        | DType::U4
        | DType::I2
        | DType::U2
        // A sequence or optional is no array.
        | DType::List => return None,
    })
}

fn dtype_of_descr(s: &str) -> Option<DType> {
    let s = s.replace('=', "<");
    DType::ALL.into_iter().find(|&d| {
        descr(d).is_some_and(|x| x == s || (x.starts_with('|') && x.get(1..) == s.get(1..)))
    })
}

/// Parses the Python dict literal of a `.npy` header into (descr, fortran_order, shape).
fn parse_header(h: &str) -> Option<(String, bool, Vec<usize>)> {
    let field = |key: &str| -> Option<&str> {
        let at = h.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = h[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let d = field("descr")?;
    // A Python string literal: quoted by ' or " (ASCII, so the slice below is on a
    // character boundary).
    let q = d.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let descr = d[1..].split(q).next()?.to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let s = field("shape")?.strip_prefix('(')?;
    let s = &s[..s.find(')')?];
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((descr, fortran, shape))
}

/// Reads a `.npy` file into a tensor.
pub fn read(path: &Path) -> Result<Tensor, Error> {
    let bad = |m: &str| Error::Input(format!("`{}`: {m}", path.display()));
    let bytes = kiln_ir::map_file(path)
        .map_err(|e| Error::Input(format!("cannot read `{}`: {e}", path.display())))?;
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let (d, fortran, shape) =
        parse_header(header).ok_or_else(|| bad(&format!("malformed header {header:?}")))?;
    let dtype = dtype_of_descr(&d).ok_or_else(|| bad(&format!("unsupported dtype `{d}` (kiln reads f32, f16, f64, i64, i32, i16, i8, u8, u16, u32, u64, bool)")))?;
    let need = kiln_ir::checked_product(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| bad(&format!("shape {shape:?} is too large")))?;
    if bytes.len() - end != need {
        return Err(bad(&format!(
            "holds {} data bytes, {d}{shape:?} needs {need} (truncated?)",
            bytes.len() - end
        )));
    }
    let t = Tensor::from_bytes(dtype, shape.clone(), bytes.slice(end..))
        .map_err(|e| bad(&e.to_string()))?;
    if fortran && shape.len() > 1 {
        // Column-major data: reverse the dims, then transpose back.
        let rev: Vec<usize> = shape.iter().rev().copied().collect();
        let t = t.reshaped(rev).map_err(|e| bad(&e.to_string()))?;
        let perm: Vec<usize> = (0..shape.len()).rev().collect();
        return Ok(transpose(&t, &perm));
    }
    Ok(t)
}

fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape = t.shape();
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        // Saturating: only an empty tensor's dims multiply past a usize.
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
    }
    let size = t.dtype().size();
    let src = t.bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..t.numel() {
        let off: usize = idx.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum();
        out.extend_from_slice(&src[off * size..(off + 1) * size]);
        for ax in (0..idx.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < out_shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Tensor::from_bytes(t.dtype(), out_shape, out.into()).expect("same byte count")
}

/// Serializes a tensor as a version-1 `.npy` file.
pub fn to_bytes(t: &Tensor) -> Result<Vec<u8>, Error> {
    let d = descr(t.dtype())
        .ok_or_else(|| Error::Input(format!("{} cannot be stored in .npy", t.dtype())))?;
    let shape = match t.shape() {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.bytes().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numpy_dtype_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        for d in DType::ALL
            .into_iter()
            .filter(|&d| d != DType::BF16 && !d.is_low_precision() && d != DType::List)
        {
            let t = Tensor::from_f64(d, vec![2, 2], &[1.0, 0.0, 3.0, 1.0]);
            std::fs::write(&p, to_bytes(&t).unwrap()).unwrap();
            assert_eq!(read(&p).unwrap(), t, "{d}");
        }
        // Formats numpy lacks are refused, naming the dtype.
        let f8 = Tensor::from_f64(DType::F8E4M3FN, vec![1], &[1.0]);
        assert!(to_bytes(&f8).unwrap_err().to_string().contains("f8e4m3fn"));
        let list = kiln_ir::list::encode(kiln_ir::list::ListKind::Sequence, &[]);
        assert!(to_bytes(&list).unwrap_err().to_string().contains("list"));
        // numpy writes bool as `|b1` and f16 as `<f2`; a scalar has shape `()`.
        let h = half::f16::from_f32(0.5);
        let t = Tensor::scalar(h);
        std::fs::write(&p, to_bytes(&t).unwrap()).unwrap();
        assert_eq!(read(&p).unwrap().to_vec::<half::f16>(), vec![h]);
        assert!(
            String::from_utf8_lossy(&to_bytes(&Tensor::scalar(true)).unwrap())
                .contains("'descr': '|b1'")
        );
    }

    #[test]
    fn round_trips_and_reads_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::from_vec(vec![2, 3], vec![1i64, 2, 3, 4, 5, 6]);
        let p = dir.path().join("a.npy");
        std::fs::write(&p, to_bytes(&t).unwrap()).unwrap();
        assert_eq!(read(&p).unwrap(), t);
        // The same data written column-major.
        let mut f = to_bytes(&Tensor::from_vec(vec![3, 2], vec![1i64, 4, 2, 5, 3, 6])).unwrap();
        let h = String::from_utf8_lossy(&f[10..]).replace(
            "'fortran_order': False, 'shape': (3, 2)",
            "'fortran_order': True , 'shape': (2, 3)",
        );
        f.truncate(10);
        f.extend_from_slice(h.as_bytes());
        std::fs::write(&p, &f).unwrap();
        assert_eq!(read(&p).unwrap().to_vec::<i64>(), vec![1, 2, 3, 4, 5, 6]);
    }
}
