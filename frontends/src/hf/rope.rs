//! Rotary position embedding tables: `cos`/`sin` of `position · inv_freq`, with the
//! frequency scalings of `rope_scaling` (`default`, `linear`, `llama3`).
//!
//! Computed the way transformers does, in f32: `inv_freq[i] = 1 / θ^(2i/d)`, then
//! `angle = f32(position) · inv_freq[i]`, so tables agree to the last bit or two.

use kiln_ir::Tensor;

use super::config::Config;
use super::HfError;

/// How rotary frequencies are derived from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// Rotated features per head (even).
    pub dim: usize,
    /// The base θ.
    pub theta: f64,
    /// The frequency scaling.
    pub scaling: RopeScaling,
}

/// `rope_scaling` of the config.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain frequencies.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The factor.
        factor: f64,
    },
    /// Llama 3.1's band-wise scaling.
    Llama3 {
        /// Divides low frequencies.
        factor: f64,
        /// Wavelengths longer than `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained with.
        original_max_position_embeddings: f64,
    },
}

impl Rope {
    /// Reads `rope_theta` and `rope_scaling` (or `rope_parameters`) for heads of
    /// `head_dim` features, rotating `partial_rotary_factor` of them.
    pub fn from_config(cfg: &Config, head_dim: usize) -> Result<Rope, HfError> {
        // transformers 5 may nest the parameters under `rope_parameters`.
        let params = cfg.get("rope_parameters").cloned();
        let scaling_json = cfg.get("rope_scaling").cloned().or_else(|| params.clone());
        let theta = match cfg.opt_f64("rope_theta")? {
            Some(t) => t,
            None => params
                .as_ref()
                .and_then(|p| p.get("rope_theta"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0),
        };
        let partial = cfg.opt_f64("partial_rotary_factor")?.unwrap_or(1.0);
        let dim = ((head_dim as f64 * partial) as usize) & !1;
        cfg.check(
            dim > 0,
            format!("rotary dimension of {head_dim}-feature heads is 0"),
        )?;
        let scaling = match scaling_json {
            None => RopeScaling::None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("default");
                let num = |key: &str| -> Result<f64, HfError> {
                    s.get(key)
                        .and_then(|v| v.as_f64())
                        .ok_or_else(|| HfError::BadConfig {
                            path: cfg.path().to_owned(),
                            message: format!("rope_scaling of type {kind:?} needs `{key}`"),
                        })
                };
                match kind {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num("factor")?,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: num("factor")?,
                        low_freq_factor: num("low_freq_factor")?,
                        high_freq_factor: num("high_freq_factor")?,
                        original_max_position_embeddings: num(
                            "original_max_position_embeddings",
                        )?,
                    },
                    other => {
                        return Err(HfError::BadConfig {
                            path: cfg.path().to_owned(),
                            message: format!(
                                "rope_scaling type {other:?} is not supported (supported: default, linear, llama3)"
                            ),
                        })
                    }
                }
            }
        };
        Ok(Rope {
            dim,
            theta,
            scaling,
        })
    }

    /// The inverse frequencies, `dim / 2` of them, in f32.
    pub fn inv_freq(&self) -> Vec<f32> {
        let half = self.dim / 2;
        let base: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / self.dim as f32;
                (1.0 / (self.theta as f32 as f64).powf(exponent as f64)) as f32
            })
            .collect();
        match self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => {
                base.iter().map(|&f| (f as f64 / factor) as f32).collect()
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let f = f as f64;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    })
                    .collect()
            }
        }
    }

    /// `cos` and `sin` tables `[positions, dim / 2]`.
    pub fn tables(&self, positions: usize) -> (Tensor, Tensor) {
        let inv = self.inv_freq();
        let half = inv.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &inv {
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (
            Tensor::from_vec(vec![positions, half], cos),
            Tensor::from_vec(vec![positions, half], sin),
        )
    }
}
