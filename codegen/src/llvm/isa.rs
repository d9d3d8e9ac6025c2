//! x86-64 instruction-set levels: which vector instructions generated code may
//! use, what this CPU runs, and the user's cap on it.
//!
//! kiln never assumes an instruction set. The JIT compiles for the host's CPU
//! with every feature it reports, unless [`ISA_ENV`] caps it at a lower
//! [`IsaLevel`] (to run the AVX2 code on an AVX-512 machine, in tests or to
//! compare). Portable artifacts carry one object per level
//! ([`ARTIFACT_LEVELS`]) and the loader picks the best one the CPU runs.

use std::fmt;

/// Environment variable capping the instruction set of JIT-compiled code:
/// `avx2` (x86-64-v3), `avx512` (x86-64-v4) or `native` (no cap, the default).
/// Artifacts honour it too when picking among their objects.
pub const ISA_ENV: &str = "KILN_CPU_ISA";

/// A psABI microarchitecture level of x86-64 that kiln generates code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IsaLevel {
    /// x86-64-v3: AVX2, FMA, F16C, BMI1/2 (every x86 server CPU since 2015).
    V3,
    /// x86-64-v4: v3 plus AVX-512 F, BW, CD, DQ and VL.
    V4,
}

/// The levels a portable (`--cpu generic`) artifact holds an object for,
/// lowest first; the first is the one every supported CPU runs.
pub const ARTIFACT_LEVELS: [IsaLevel; 2] = [IsaLevel::V3, IsaLevel::V4];

/// CPU features each level adds to the one below, as `is_x86_feature_detected!`
/// and LLVM spell them (v3 lists the ones x86-64-v2 and v1 do not have that
/// generated code may use).
const V3_FEATURES: [&str; 6] = ["avx", "avx2", "fma", "f16c", "bmi1", "bmi2"];
const V4_FEATURES: [&str; 5] = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];

/// LLVM feature-name prefixes that [`IsaLevel::V3`] turns off in the host's
/// feature string: everything with 512-bit registers or tiles.
const ABOVE_V3_PREFIXES: [&str; 4] = ["avx512", "amx", "avx10", "evex512"];

impl IsaLevel {
    /// The LLVM CPU name for code of exactly this level.
    pub fn llvm_cpu(self) -> &'static str {
        match self {
            IsaLevel::V3 => "x86-64-v3",
            IsaLevel::V4 => "x86-64-v4",
        }
    }

    /// The level an LLVM CPU name stands for, if it is one of the level names.
    pub fn from_llvm_cpu(cpu: &str) -> Option<Self> {
        ARTIFACT_LEVELS.into_iter().find(|l| l.llvm_cpu() == cpu)
    }

    /// The short name users write ([`ISA_ENV`], reports): `avx2` or `avx512`.
    pub fn short_name(self) -> &'static str {
        match self {
            IsaLevel::V3 => "avx2",
            IsaLevel::V4 => "avx512",
        }
    }

    /// The features this level needs (cumulative), as `is_x86_feature_detected!` names them.
    pub fn required_features(self) -> Vec<&'static str> {
        let mut f = V3_FEATURES.to_vec();
        if self == IsaLevel::V4 {
            f.extend(V4_FEATURES);
        }
        f
    }

    /// The features of this level the running CPU lacks (empty when it runs it).
    pub fn missing_here(self) -> Vec<&'static str> {
        self.required_features()
            .into_iter()
            .filter(|f| !cpu_has(f))
            .collect()
    }

    /// The best level this CPU runs, if any (before the user's cap).
    pub fn detect() -> Option<Self> {
        ARTIFACT_LEVELS
            .into_iter()
            .rev()
            .find(|l| l.missing_here().is_empty())
    }
}

impl fmt::Display for IsaLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.llvm_cpu(), self.short_name())
    }
}

/// Whether LLVM's view of the host CPU turns `feature` on.
fn llvm_host_has(feature: &str) -> bool {
    let features = inkwell::targets::TargetMachine::get_host_cpu_features().to_string();
    features
        .split(',')
        .any(|f| f.strip_prefix('+') == Some(feature))
}

/// Whether the running CPU reports `feature` (as `is_x86_feature_detected!`
/// or, for names it does not know, LLVM spells it; false off x86-64).
pub fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match feature {
            "avx" => has!("avx"),
            "avx2" => has!("avx2"),
            "fma" => has!("fma"),
            "f16c" => has!("f16c"),
            "bmi1" => has!("bmi1"),
            "bmi2" => has!("bmi2"),
            "avx512f" => has!("avx512f"),
            "avx512bw" => has!("avx512bw"),
            "avx512cd" => has!("avx512cd"),
            "avx512dq" => has!("avx512dq"),
            "avx512vl" => has!("avx512vl"),
            "avx512bf16" => has!("avx512bf16"),
            "avx512fp16" => has!("avx512fp16"),
            "avx512vnni" => has!("avx512vnni"),
            // AMX detection is unstable in std; LLVM's host feature list knows it.
            other => llvm_host_has(other),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// The features a report names: the vector extensions beyond x86-64-v3 this
/// CPU has, in a fixed order.
pub const REPORTED_FEATURES: [&str; 11] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512vnni",
    "avx512bf16",
    "avx512fp16",
    "amx-tile",
    "amx-bf16",
    "amx-int8",
];

/// The user's cap on the instruction set ([`ISA_ENV`]): `None` for no cap.
///
/// # Errors
/// A value that names no level, with the accepted spellings.
pub fn isa_cap() -> Result<Option<IsaLevel>, String> {
    match std::env::var(ISA_ENV) {
        Err(_) => Ok(None),
        Ok(v) => parse_isa(&v),
    }
}

/// Parses a cap as [`ISA_ENV`] spells it.
///
/// # Errors
/// A value that names no level.
pub fn parse_isa(value: &str) -> Result<Option<IsaLevel>, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "native" | "host" => Ok(None),
        "avx2" | "x86-64-v3" | "v3" => Ok(Some(IsaLevel::V3)),
        "avx512" | "avx-512" | "x86-64-v4" | "v4" => Ok(Some(IsaLevel::V4)),
        other => Err(format!(
            "{ISA_ENV}={other:?} names no instruction set; use avx2 (x86-64-v3), avx512 (x86-64-v4) or native"
        )),
    }
}

/// The level generated code runs at here: the best this CPU runs, lowered to
/// the user's cap (`None` off x86-64 or below x86-64-v3).
///
/// # Errors
/// A malformed [`ISA_ENV`].
pub fn effective_level() -> Result<Option<IsaLevel>, String> {
    let best = IsaLevel::detect();
    Ok(match (best, isa_cap()?) {
        (Some(b), Some(cap)) => Some(b.min(cap)),
        (b, _) => b,
    })
}

/// `features` (an LLVM feature string, `+a,-b,...`) with everything above
/// `level` turned off; unchanged for [`IsaLevel::V4`] and above.
pub fn cap_features(features: &str, level: IsaLevel) -> String {
    if level >= IsaLevel::V4 {
        return features.to_string();
    }
    features
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| match f.strip_prefix('+') {
            Some(name) if ABOVE_V3_PREFIXES.iter().any(|p| name.starts_with(p)) => {
                format!("-{name}")
            }
            _ => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One line naming the instruction set generated code uses here and the
/// relevant features of the CPU, for reports (`kiln bench`, `explain`).
pub fn describe_host() -> String {
    let level = match effective_level() {
        Ok(Some(l)) => l.to_string(),
        Ok(None) => "below x86-64-v3".into(),
        Err(e) => return e,
    };
    let feats: Vec<&str> = REPORTED_FEATURES
        .into_iter()
        .filter(|f| cpu_has(f))
        .collect();
    let capped = match isa_cap() {
        Ok(Some(c)) if Some(c) < IsaLevel::detect() => format!(" (capped by {ISA_ENV})"),
        _ => String::new(),
    };
    format!("{level}{capped}; CPU features: {}", feats.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capping_at_v3_turns_off_512_bit_features_only() {
        let host = "+avx2,+fma,+avx512f,-avx512fp16,+amx-tile,+evex512,+avxvnni,+avx10.1-512";
        assert_eq!(
            cap_features(host, IsaLevel::V3),
            "+avx2,+fma,-avx512f,-avx512fp16,-amx-tile,-evex512,+avxvnni,-avx10.1-512"
        );
        assert_eq!(cap_features(host, IsaLevel::V4), host);
    }

    #[test]
    fn cap_spellings_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(parse_isa("AVX2"), Ok(Some(IsaLevel::V3)));
        assert_eq!(parse_isa("x86-64-v4"), Ok(Some(IsaLevel::V4)));
        assert_eq!(parse_isa("native"), Ok(None));
        let e = parse_isa("sse9").unwrap_err();
        assert!(e.contains("avx2") && e.contains(ISA_ENV), "{e}");
    }

    #[test]
    fn level_names_round_trip_and_levels_nest() {
        for l in ARTIFACT_LEVELS {
            assert_eq!(IsaLevel::from_llvm_cpu(l.llvm_cpu()), Some(l));
        }
        let v3 = IsaLevel::V3.required_features();
        assert!(v3
            .iter()
            .all(|f| IsaLevel::V4.required_features().contains(f)));
        assert_eq!(IsaLevel::from_llvm_cpu("znver4"), None);
    }

    #[test]
    fn the_detected_level_runs_here() {
        if let Some(l) = IsaLevel::detect() {
            assert!(l.missing_here().is_empty());
        }
    }
}
