//! List values: ONNX sequences and optionals, carried as 1-D tensors of
//! [`DType::List`] whose bytes encode their elements.
//!
//! Every path that moves tensors (the interpreter's environment, graph inputs
//! and outputs, loop-carried values, host steps) moves a list unchanged; only
//! the list ops ([`crate::op::ListOp`]) look inside. A list's length and its
//! elements' shapes are known only at run time, so its shape is `[?]` and a
//! graph holding lists runs on the interpreter.
//!
//! Encoding (little-endian): a kind byte (0 sequence, 1 optional), a `u32`
//! element count (0 or 1 for an optional), then per element its dtype (the
//! index in [`DType::ALL`]), its rank (`u8`), its dims (`u64` each) and its
//! bytes. A list inside a list (an optional sequence) is an element of
//! dtype [`DType::List`].

use crate::error::OpError;
use crate::{DType, Tensor};

/// Most dims an element of a list may have (a hostile encoding cannot ask
/// for more).
pub const MAX_ELEMENT_RANK: usize = 64;

/// What a list value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// An ONNX sequence: any number of tensors (or lists).
    Sequence,
    /// An ONNX optional: none or one element.
    Optional,
}

/// Encodes `items` as a list value of `kind`.
pub fn encode(kind: ListKind, items: &[Tensor]) -> Tensor {
    let mut out = vec![match kind {
        ListKind::Sequence => 0u8,
        ListKind::Optional => 1u8,
    }];
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for t in items {
        let code = DType::ALL
            .iter()
            .position(|&d| d == t.dtype())
            .expect("every dtype is in ALL");
        out.push(code as u8);
        out.push(t.rank() as u8);
        for &d in t.shape() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(t.bytes());
    }
    let n = out.len();
    Tensor::from_bytes(DType::List, vec![n], out.into()).expect("sized from the bytes")
}

/// The kind and elements of a list value (elements view its bytes).
pub fn decode(t: &Tensor) -> Result<(ListKind, Vec<Tensor>), OpError> {
    if t.dtype() != DType::List {
        return Err(OpError::dtype(format!(
            "a sequence or optional was expected, got a {} tensor",
            t.dtype()
        )));
    }
    let bytes = t.bytes();
    let bad = || OpError::value("malformed list value");
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<bytes::Bytes, OpError> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(bad)?;
        let s = bytes.slice(at..end);
        at = end;
        Ok(s)
    };
    let kind = match take(1)?[0] {
        0 => ListKind::Sequence,
        1 => ListKind::Optional,
        _ => return Err(bad()),
    };
    let count = u32::from_le_bytes(take(4)?[..].try_into().map_err(|_| bad())?) as usize;
    let mut items = Vec::new();
    for _ in 0..count {
        let code = take(1)?[0] as usize;
        let dtype = *DType::ALL.get(code).ok_or_else(bad)?;
        let rank = take(1)?[0] as usize;
        if rank > MAX_ELEMENT_RANK {
            return Err(bad());
        }
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = u64::from_le_bytes(take(8)?[..].try_into().map_err(|_| bad())?);
            dims.push(usize::try_from(d).map_err(|_| bad())?);
        }
        let len = crate::checked_product(&dims)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(bad)?;
        let data = take(len)?;
        items.push(Tensor::from_bytes(dtype, dims, data).map_err(|_| bad())?);
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok((kind, items))
}

/// The elements of a sequence (an error for an optional or a tensor).
pub fn sequence(t: &Tensor) -> Result<Vec<Tensor>, OpError> {
    match decode(t)? {
        (ListKind::Sequence, items) => Ok(items),
        (ListKind::Optional, _) => Err(OpError::dtype("a sequence was expected, got an optional")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_nested_and_empty() {
        let a = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = Tensor::scalar(7i64);
        let seq = encode(ListKind::Sequence, &[a.clone(), b.clone()]);
        assert_eq!(seq.dtype(), DType::List);
        let (kind, items) = decode(&seq).unwrap();
        assert_eq!(kind, ListKind::Sequence);
        assert_eq!(items, vec![a, b]);
        let opt = encode(ListKind::Optional, std::slice::from_ref(&seq));
        let (kind, items) = decode(&opt).unwrap();
        assert_eq!((kind, items.len()), (ListKind::Optional, 1));
        assert_eq!(decode(&items[0]).unwrap().1.len(), 2);
        let none = encode(ListKind::Optional, &[]);
        assert_eq!(decode(&none).unwrap(), (ListKind::Optional, vec![]));
    }

    #[test]
    fn malformed_encodings_are_errors() {
        let seq = encode(ListKind::Sequence, &[Tensor::scalar(1.0f32)]);
        let bytes = seq.bytes().to_vec();
        for cut in [0, 1, 5, bytes.len() - 1] {
            let t =
                Tensor::from_bytes(DType::List, vec![cut], bytes[..cut].to_vec().into()).unwrap();
            assert!(decode(&t).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let t = Tensor::from_bytes(DType::List, vec![huge.len()], huge.into()).unwrap();
        assert!(decode(&t).is_err());
        assert!(decode(&Tensor::scalar(1.0f32)).is_err());
    }
}
