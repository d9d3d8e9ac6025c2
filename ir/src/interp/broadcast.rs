//! numpy broadcasting over concrete shapes.

/// The broadcast of concrete shapes, or `None` when they clash.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Maps flat output indices of a broadcast to flat indices of one operand.
pub struct BroadcastIndex {
    out_shape: Vec<usize>,
    strides: Vec<usize>,
    identity: bool,
}

impl BroadcastIndex {
    /// The map for an operand of `shape` broadcast to `out_shape`.
    pub fn new(shape: &[usize], out_shape: &[usize]) -> BroadcastIndex {
        let rank = out_shape.len();
        let mut strides = vec![0usize; rank];
        let mut acc = 1;
        for i in (0..shape.len()).rev() {
            let oi = rank - shape.len() + i;
            strides[oi] = if shape[i] == 1 { 0 } else { acc };
            acc *= shape[i];
        }
        let identity = shape == out_shape;
        BroadcastIndex {
            out_shape: out_shape.to_vec(),
            strides,
            identity,
        }
    }

    /// The operand indices for every output index, in order.
    pub fn indices(&self) -> Vec<usize> {
        let n: usize = self.out_shape.iter().product();
        if self.identity {
            return (0..n).collect();
        }
        let mut out = Vec::with_capacity(n);
        let rank = self.out_shape.len();
        let mut idx = vec![0usize; rank];
        let mut flat = 0usize;
        for _ in 0..n {
            out.push(flat);
            for ax in (0..rank).rev() {
                idx[ax] += 1;
                flat += self.strides[ax];
                if idx[ax] < self.out_shape[ax] {
                    break;
                }
                flat -= self.strides[ax] * idx[ax];
                idx[ax] = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_maps_indices() {
        let out = broadcast_shapes(&[&[2, 1], &[3]]).unwrap();
        assert_eq!(out, vec![2, 3]);
        assert_eq!(
            BroadcastIndex::new(&[2, 1], &out).indices(),
            vec![0, 0, 0, 1, 1, 1]
        );
        assert_eq!(
            BroadcastIndex::new(&[3], &out).indices(),
            vec![0, 1, 2, 0, 1, 2]
        );
    }
}
