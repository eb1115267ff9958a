//! Optimizers: their hyperparameters and defaults, and a plain-Rust reference of each update
//! against which the JIT-compiled update loops are tested.
//!
//! The update of one element, with gradient g and step t = 1, 2, …:
//! - `sgd`:  θ ← θ − lr·g
//! - `adam`: m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
//!           θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)   (ε outside the root, as in PyTorch)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

impl OptimizerKind {
    pub const ALL: &[OptimizerKind] = &[OptimizerKind::Sgd, OptimizerKind::Adam];

    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }

    pub fn from_name(name: &str) -> Option<OptimizerKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Hyperparameters in the order the compiled update reads them, with their defaults.
    pub fn hyperparameters(self) -> &'static [(&'static str, f64)] {
        match self {
            OptimizerKind::Sgd => &[("lr", 0.01)],
            OptimizerKind::Adam => &[("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8)],
        }
    }

    /// Per-element state arrays (Adam's first and second moments).
    pub fn state_arrays(self) -> usize {
        match self {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Adam => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    /// Values in the order of `kind.hyperparameters()`.
    pub values: Vec<f64>,
}

impl OptimizerSpec {
    pub fn new(kind: OptimizerKind) -> OptimizerSpec {
        OptimizerSpec { kind, values: kind.hyperparameters().iter().map(|h| h.1).collect() }
    }

    pub fn get(&self, name: &str) -> f64 {
        let i = self.kind.hyperparameters().iter().position(|h| h.0 == name).expect("known hyperparameter");
        self.values[i]
    }

    pub fn set(&mut self, name: &str, value: f64) -> Result<(), String> {
        match self.kind.hyperparameters().iter().position(|h| h.0 == name) {
            Some(i) => {
                self.values[i] = value;
                Ok(())
            }
            None => {
                let known: Vec<_> = self.kind.hyperparameters().iter().map(|h| format!("`{}`", h.0)).collect();
                Err(format!("`{}` has no hyperparameter `{name}`; it takes {}", self.kind.name(), known.join(", ")))
            }
        }
    }

    /// The per-step scalars the compiled update reads, for step `t` (1-based).
    /// Bias corrections are computed here once per step, not per element.
    pub fn step_scalars(&self, t: u64) -> Vec<f64> {
        match self.kind {
            OptimizerKind::Sgd => vec![self.get("lr")],
            OptimizerKind::Adam => {
                let (b1, b2) = (self.get("beta1"), self.get("beta2"));
                vec![
                    self.get("lr"),
                    b1,
                    b2,
                    self.get("eps"),
                    1.0 - b1.powi(t.min(i32::MAX as u64) as i32),
                    1.0 - b2.powi(t.min(i32::MAX as u64) as i32),
                ]
            }
        }
    }

    /// The reference update of one parameter array, in f64.
    pub fn reference_step(&self, t: u64, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let s = self.step_scalars(t);
        match self.kind {
            OptimizerKind::Sgd => {
                for (p, g) in param.iter_mut().zip(grad) {
                    *p -= s[0] * g;
                }
            }
            OptimizerKind::Adam => {
                let (lr, b1, b2, eps, c1, c2) = (s[0], s[1], s[2], s[3], s[4], s[5]);
                let (m, v) = state.split_at_mut(1);
                for i in 0..param.len() {
                    let g = grad[i];
                    m[0][i] = b1 * m[0][i] + (1.0 - b1) * g;
                    v[0][i] = b2 * v[0][i] + (1.0 - b2) * g * g;
                    param[i] -= lr * (m[0][i] / c1) / ((v[0][i] / c2).sqrt() + eps);
                }
            }
        }
    }
}
