//! Brick recognition from the module scopes exporters leave in node names.
//!
//! The TorchScript exporter names nodes by module path (`/encoder/layer.0/attention/self/query/MatMul`);
//! the dynamo exporter records the path in node metadata (`pkg.torch.onnx.name_scopes`).
//! Each prefix of the path whose last component says what the module is becomes a
//! brick: `layer.0` a layer, `attention` an attention, `mlp` an FFN, and so on.

use kiln_ir::{BrickId, BrickKind, Graph};

use super::proto::{ModelProto, NodeProto};

/// Node metadata key under which the dynamo exporter records module scopes.
const NAME_SCOPES_KEY: &str = "pkg.torch.onnx.name_scopes";

/// Assigns nodes to bricks, creating bricks as new scopes appear.
#[derive(Clone)]
pub(crate) struct BrickNamer;

impl BrickNamer {
    pub(crate) fn new(_model: &ModelProto) -> BrickNamer {
        BrickNamer
    }

    /// The innermost brick of a node, if its scope names one.
    pub(crate) fn brick_for(&mut self, graph: &mut Graph, node: &NodeProto) -> Option<BrickId> {
        let path = module_path(node)?;
        let mut innermost = None;
        let parts: Vec<&str> = path.split('.').collect();
        for end in 1..=parts.len() {
            let prefix = parts[..end].join(".");
            if let Some(kind) = classify(&parts[..end]) {
                innermost = Some(graph.brick(&prefix, kind));
            }
        }
        innermost
    }
}

/// The dotted module path of a node (`encoder.layer.0.attention.self.query`).
pub(crate) fn module_path(node: &NodeProto) -> Option<String> {
    if let Some(md) = node
        .metadata_props
        .iter()
        .find(|m| m.key == NAME_SCOPES_KEY)
    {
        // A Python list literal of module paths, outermost first:
        // ['', 'model', 'model.layers.0', 'model.layers.0.self_attn', 'linear'].
        // Each path extends the previous one; the chain ends at the first entry that
        // does not (there the list names the called function, not a module).
        let mut path: Option<&str> = None;
        for scope in md.value.trim_matches(|c| c == '[' || c == ']').split(',') {
            let scope = scope.trim().trim_matches(|c| c == '\'' || c == '"');
            if scope.is_empty() || scope.starts_with('_') {
                continue;
            }
            match path {
                Some(p) if !scope.starts_with(&format!("{p}.")) => break,
                _ => path = Some(scope),
            }
        }
        return path.map(str::to_string);
    }
    let name = node.name.strip_prefix('/')?;
    let mut segs: Vec<&str> = name.split('/').collect();
    segs.pop(); // the op itself
    (!segs.is_empty()).then(|| segs.join("."))
}

/// What the module at the end of `path` is, when its name says.
fn classify(path: &[&str]) -> Option<BrickKind> {
    let last = path.last()?.to_ascii_lowercase();
    let parent = if path.len() >= 2 {
        path[path.len() - 2].to_ascii_lowercase()
    } else {
        String::new()
    };
    let is_index = last.chars().all(|c| c.is_ascii_digit());
    if is_index {
        // `layers.3` split as [.., "layers", "3"]: the index names the repeated block.
        return match parent.as_str() {
            "layer" | "layers" | "h" | "blocks" | "block" | "encoder_layers" | "decoder_layers" => {
                Some(BrickKind::Layer)
            }
            "experts" => Some(BrickKind::Expert),
            _ => None,
        };
    }
    Some(match last.as_str() {
        "attention" | "attn" | "self_attn" | "self_attention" | "cross_attn"
        | "encdecattention" => BrickKind::Attention,
        "mlp" | "ffn" | "feed_forward" | "feedforward" | "intermediate" => BrickKind::Ffn,
        "output" if parent.chars().all(|c| c.is_ascii_digit()) => BrickKind::Ffn,
        "embeddings"
        | "embed_tokens"
        | "wte"
        | "wpe"
        | "word_embeddings"
        | "position_embeddings"
        | "token_type_embeddings"
        | "patch_embeddings"
        | "embed_positions" => BrickKind::Embedding,
        "moe" | "block_sparse_moe" | "sparse_moe" => BrickKind::Moe,
        "router" => BrickKind::Router,
        "gate" if parent.contains("moe") => BrickKind::Router,
        "lora_a" | "lora_b" => BrickKind::Lora,
        "lm_head" | "pooler" | "classifier" | "head" | "score" => BrickKind::Head,
        l if l.contains("norm") || l.starts_with("ln_") || l == "ln" => BrickKind::Norm,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeProto {
        NodeProto {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn torchscript_scopes_become_bricks() {
        let mut g = Graph::new("m");
        let mut namer = BrickNamer;
        let b = namer
            .brick_for(
                &mut g,
                &node("/encoder/layer.0/attention/self/query/MatMul"),
            )
            .unwrap();
        assert_eq!(g.bricks[b.0 as usize].name, "encoder.layer.0.attention");
        assert_eq!(g.bricks[b.0 as usize].kind, BrickKind::Attention);
        let layer = g.bricks[b.0 as usize].parent.unwrap();
        assert_eq!(g.bricks[layer.0 as usize].name, "encoder.layer.0");
        let f = namer
            .brick_for(&mut g, &node("/model/layers.1/mlp/down_proj/MatMul"))
            .unwrap();
        assert_eq!(g.bricks[f.0 as usize].kind, BrickKind::Ffn);
        assert_eq!(namer.brick_for(&mut g, &node("Add_3")), None);
        let mut n = node("node_linear_7");
        n.metadata_props.push(crate::onnx::proto::StringStringEntryProto {
            key: NAME_SCOPES_KEY.into(),
            value: "['', 'model', 'model.layers.0', 'model.layers.0.self_attn', 'model.layers.0.self_attn.q_proj', 'linear']".into(),
        });
        let a = namer.brick_for(&mut g, &n).unwrap();
        assert_eq!(g.bricks[a.0 as usize].name, "model.layers.0.self_attn");
    }
}
