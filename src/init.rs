//! Parameter initializers: seeded, reproducible, with the fan-based scalings of the literature.
//!
//! Convention: a weight `W[in, out]` is applied as `x @ W`, so fan-in is the first axis and
//! fan-out the second. Vectors have fan-in = fan-out = their length. An array of rank 3 or
//! more is a convolution kernel `[out, in, k…]`, with PyTorch's fans (`fans`).

mod normal;

pub use normal::std_normal;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    Normal {
        mean: f64,
        std: f64,
    },
    Uniform {
        low: f64,
        high: f64,
    },
    /// Normal redrawn until within two standard deviations of the mean.
    TruncatedNormal {
        mean: f64,
        std: f64,
    },
    /// Glorot and Bengio (2010): U(±gain·√(6/(fan_in+fan_out))).
    XavierUniform {
        gain: f64,
    },
    /// N(0, gain²·2/(fan_in+fan_out)).
    XavierNormal {
        gain: f64,
    },
    /// He et al. (2015): U(±gain·√(3/fan_in)), gain √2 for relu.
    HeUniform {
        gain: f64,
    },
    /// N(0, gain²/fan_in), gain √2 for relu.
    HeNormal {
        gain: f64,
    },
    /// LeCun (1998): U(±√(3/fan_in)).
    LecunUniform,
    /// N(0, 1/fan_in).
    LecunNormal,
    /// Orthogonal rows or columns (QR of a Gaussian matrix, signs fixed), times `gain`.
    Orthogonal {
        gain: f64,
    },
    /// Martens (2010): each unit gets exactly `k` non-zero N(0,1) incoming weights.
    Sparse {
        k: u64,
    },
    /// From the training data's marginal statistics of an input (set by `Trainer::init_from_data`):
    /// the best constant predictor, so the initial loss is that of the marginals.
    FromData {
        stat: DataStat,
        input: String,
    },
}

/// Which marginal statistic a data-driven bias takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataStat {
    /// The mean target, for squared loss.
    Mean,
    /// log of each class's frequency, for softmax cross-entropy (a `[k]` bias).
    LogPrior,
    /// log(p / (1 − p)) of the mean of 0/1 targets, for a sigmoid output.
    LogOdds,
}

impl DataStat {
    /// The bias values for a parameter of `len` elements from one input column.
    pub fn compute(self, values: &[f64], len: usize) -> Vec<f64> {
        let n = values.len().max(1) as f64;
        match self {
            DataStat::Mean => vec![values.iter().sum::<f64>() / n; len],
            DataStat::LogOdds => {
                let p = (values.iter().sum::<f64>() / n).clamp(1e-12, 1.0 - 1e-12);
                vec![(p / (1.0 - p)).ln(); len]
            }
            DataStat::LogPrior => {
                let mut counts = vec![0.0f64; len];
                for &v in values {
                    if v >= 0.0 && (v as usize) < len {
                        counts[v as usize] += 1.0;
                    }
                }
                // A class absent from the data gets a small prior instead of log 0.
                counts.iter().map(|c| (c.max(0.5) / n).ln()).collect()
            }
        }
    }
}

/// Names and parameter names, for diagnostics and docs.
pub const NAMES: &[&str] = &[
    "zeros",
    "ones",
    "constant",
    "normal",
    "uniform",
    "truncated_normal",
    "xavier_uniform",
    "xavier_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "sparse",
    "mean",
    "log_prior",
    "log_odds",
];

impl Init {
    /// Builds an initializer from its name and arguments (positional values in the documented
    /// order, or by name). Returns an error message naming what is wrong.
    pub fn from_call(
        name: &str,
        positional: &[f64],
        named: &[(String, f64)],
    ) -> Result<Init, String> {
        let params: &[(&str, f64)] = match name {
            "zeros" | "ones" | "lecun_uniform" | "lecun_normal" => &[],
            "constant" => &[("value", f64::NAN)],
            "normal" | "truncated_normal" => &[("mean", 0.0), ("std", 1.0)],
            "uniform" => &[("low", -1.0), ("high", 1.0)],
            "xavier_uniform" | "xavier_normal" | "glorot_uniform" | "glorot_normal"
            | "orthogonal" => &[("gain", 1.0)],
            "he_uniform" | "he_normal" => &[("gain", std::f64::consts::SQRT_2)],
            "sparse" => &[("k", 15.0)],
            _ => {
                return Err(format!(
                    "unknown initializer `{name}`; known: {}",
                    NAMES.join(", ")
                ));
            }
        };
        if positional.len() > params.len() {
            return Err(format!(
                "`{name}` takes {} argument(s), found {}",
                params.len(),
                positional.len()
            ));
        }
        let mut values: Vec<f64> = params.iter().map(|p| p.1).collect();
        values[..positional.len()].copy_from_slice(positional);
        for (key, v) in named {
            let Some(i) = params.iter().position(|p| p.0 == key) else {
                let known: Vec<_> = params.iter().map(|p| format!("`{}`", p.0)).collect();
                return Err(format!(
                    "`{name}` has no argument `{key}`; it takes {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            values[i] = *v;
        }
        if let Some(i) = values.iter().position(|v| v.is_nan()) {
            return Err(format!("`{name}` needs a value for `{}`", params[i].0));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "`{}` of `{name}` must be finite, found {}",
                params[i].0, values[i]
            ));
        }
        for (i, (key, _)) in params.iter().enumerate() {
            if matches!(*key, "std" | "gain") && values[i] < 0.0 {
                return Err(format!(
                    "`{key}` of `{name}` must be ≥ 0, found {}",
                    values[i]
                ));
            }
        }
        if name == "uniform" && values[0] > values[1] {
            return Err(format!(
                "`uniform` needs `low` ≤ `high`, found low = {} and high = {}",
                values[0], values[1]
            ));
        }
        Ok(match name {
            "zeros" => Init::Zeros,
            "ones" => Init::Ones,
            "constant" => Init::Constant(values[0]),
            "normal" => Init::Normal {
                mean: values[0],
                std: values[1],
            },
            "truncated_normal" => Init::TruncatedNormal {
                mean: values[0],
                std: values[1],
            },
            "uniform" => Init::Uniform {
                low: values[0],
                high: values[1],
            },
            "xavier_uniform" | "glorot_uniform" => Init::XavierUniform { gain: values[0] },
            "xavier_normal" | "glorot_normal" => Init::XavierNormal { gain: values[0] },
            "he_uniform" => Init::HeUniform { gain: values[0] },
            "he_normal" => Init::HeNormal { gain: values[0] },
            "lecun_uniform" => Init::LecunUniform,
            "lecun_normal" => Init::LecunNormal,
            "orthogonal" => Init::Orthogonal { gain: values[0] },
            "sparse" if values[0] >= 1.0 && values[0].fract() == 0.0 => Init::Sparse {
                k: values[0] as u64,
            },
            "sparse" => return Err("`sparse` needs a whole number k ≥ 1".into()),
            _ => unreachable!(),
        })
    }

    /// True when every element starts equal, so units fed by it cannot differ (symmetry).
    pub fn is_constant(&self) -> bool {
        matches!(self, Init::Zeros | Init::Ones | Init::Constant(_))
    }

    /// Fills a parameter of the given shape.
    pub fn sample(&self, shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<f64> {
        let n: usize = shape.iter().product();
        let (fan_in, fan_out) = fans(shape);
        let uniform = |rng: &mut ChaCha8Rng, a: f64| {
            (0..n).map(|_| rng.random_range(-a..=a)).collect::<Vec<_>>()
        };
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
            (0..n).map(|_| mean + std * std_normal(rng)).collect()
        };
        match *self {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(v) => vec![v; n],
            Init::Normal { mean, std } => normal(rng, mean, std),
            Init::Uniform { low, high } => (0..n)
                .map(|_| low + (high - low) * rng.random::<f64>())
                .collect(),
            Init::TruncatedNormal { mean, std } => (0..n)
                .map(|_| {
                    loop {
                        let z = std_normal(rng);
                        if z.abs() <= 2.0 {
                            break mean + std * z;
                        }
                    }
                })
                .collect(),
            Init::XavierUniform { gain } => {
                uniform(rng, gain * (6.0 / (fan_in + fan_out) as f64).sqrt())
            }
            Init::XavierNormal { gain } => {
                normal(rng, 0.0, gain * (2.0 / (fan_in + fan_out) as f64).sqrt())
            }
            Init::HeUniform { gain } => uniform(rng, gain * (3.0 / fan_in as f64).sqrt()),
            Init::HeNormal { gain } => normal(rng, 0.0, gain / (fan_in as f64).sqrt()),
            Init::LecunUniform => uniform(rng, (3.0 / fan_in as f64).sqrt()),
            Init::LecunNormal => normal(rng, 0.0, (1.0 / fan_in as f64).sqrt()),
            Init::Orthogonal { gain } => orthogonal(shape, gain, rng),
            Init::Sparse { k } => sparse(shape, k as usize, rng),
            Init::FromData { .. } => vec![0.0; n],
        }
    }
}

/// The gain recommended for an activation (as in PyTorch's `calculate_gain`): √2 for relu,
/// √(2/(1+0.01²)) for leaky_relu with its default slope, 5/3 for tanh, 3/4 for selu, 1 otherwise.
pub fn gain_for(nonlinearity: &str) -> Option<f64> {
    Some(match nonlinearity {
        "linear" | "identity" | "sigmoid" => 1.0,
        "tanh" => 5.0 / 3.0,
        "relu" => std::f64::consts::SQRT_2,
        "leaky_relu" => (2.0f64 / (1.0 + 0.01 * 0.01)).sqrt(),
        "selu" => 0.75,
        _ => return None,
    })
}

/// (fan_in, fan_out) of a parameter shape. An array of rank 3 or more is a convolution
/// kernel `[out, in, k…]` (PyTorch's rule): each output reads `in·Πk` inputs and each input
/// feeds `out·Πk` outputs.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [a, b] => (*a, *b),
        [out, inp, kernel @ ..] => {
            let taps: usize = kernel.iter().product();
            (inp * taps, out * taps)
        }
    }
}

/// Rows of the result are orthonormal when rows ≤ columns, columns otherwise.
fn orthogonal(shape: &[usize], gain: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let (rows, cols) = match shape {
        [] => (1, 1),
        [n] => (1, *n),
        [r, rest @ ..] => (*r, rest.iter().product()),
    };
    // Orthonormalise the shorter side's vectors: work on the transpose when rows > cols.
    let (short, long) = (rows.min(cols), rows.max(cols));
    let mut q: Vec<Vec<f64>> = (0..short)
        .map(|_| (0..long).map(|_| std_normal(rng)).collect())
        .collect();
    // Modified Gram–Schmidt equals QR with a positive-diagonal R, the sign correction of
    // Saxe et al. (2014), which makes the result uniformly distributed.
    for i in 0..short {
        for j in 0..i {
            let d: f64 = (0..long).map(|t| q[i][t] * q[j][t]).sum();
            for t in 0..long {
                q[i][t] -= d * q[j][t];
            }
        }
        let norm = q[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        for x in &mut q[i] {
            *x /= norm;
        }
    }
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = gain * if rows <= cols { q[r][c] } else { q[c][r] };
        }
    }
    out
}

/// Column `j` of `W[in, out]` is unit `j`'s incoming weights; exactly `k` of them are non-zero.
fn sparse(shape: &[usize], k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let (fan_in, units) = match shape {
        [] => (1, 1),
        [n] => (*n, 1),
        [a, rest @ ..] => (*a, rest.iter().product()),
    };
    let k = k.min(fan_in);
    let mut out = vec![0.0; fan_in * units];
    let mut rows: Vec<usize> = (0..fan_in).collect();
    for unit in 0..units {
        // Partial Fisher–Yates: the first k entries become a uniform random k-subset.
        for i in 0..k {
            let j = rng.random_range(i..fan_in);
            rows.swap(i, j);
        }
        for &r in &rows[..k] {
            out[r * units + unit] = std_normal(rng);
        }
    }
    out
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
