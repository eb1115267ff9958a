//! Optimizers: update rules as data, their hyperparameters and defaults, and the per-step
//! scalars (learning rate, bias corrections) the compiled update loops read.
//!
//! Each optimizer is a short program of per-element assignments over the parameter `p`, its
//! gradient `g`, per-element state arrays and per-step scalars. The JIT compiles the program
//! into one fused (vectorized) loop per parameter; `reference_step` interprets the same program
//! in plain Rust. The test suite checks both against trajectories computed by hand.
//!
//! Rules (lecture form, the default; `defaults = pytorch | keras | optax` selects a framework's
//! rule and defaults):
//!
//! | optimizer | lecture | pytorch | keras | optax |
//! |---|---|---|---|---|
//! | `sgd` | p −= lr·g | same | same | same |
//! | `momentum` | v ← μv − lr·g; p += v | b ← μb + g; p −= lr·b | as lecture | t ← g + μt; p −= lr·t |
//! | `nesterov` | v ← μv − lr·g; p += μv − lr·g | b ← μb + g; p −= lr·(g + μb) | as lecture | as pytorch |
//! | `adagrad` | r += g²; p −= lr·g/(ε + √r) | same, ε 1e-10 | r₀ = 0.1; p −= lr·g/√(r + ε) | as keras |
//! | `rmsprop` | r ← ρr + (1−ρ)g²; p −= lr·g/√(ε + r) | ε outside √ | ε inside √ | ε inside √ |
//! | `adam` | m̂/(√v̂ + ε) | same | lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v + ε) | as lecture |
//! | `adamw` | p −= lr·λ·p, then adam | same | same, keras adam | p −= lr·(adam + λp) |
//!
//! Every optimizer also takes `weight_decay` (L2: g += λ·p before the rule; for `adamw` λ is
//! decoupled as above) and `clip_norm` (gradients scaled so their global norm is at most this).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    Sgd,
    Momentum,
    Nesterov,
    Adagrad,
    RmsProp,
    Adam,
    AdamW,
    /// Newton's method with the exact Hessian of the symbolic graph (full batch, small models):
    /// θ ← θ − lr·(H + λI)⁻¹g.
    Newton,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Lecture,
    PyTorch,
    Keras,
    Optax,
}

impl Dialect {
    pub const ALL: &[Dialect] = &[
        Dialect::Lecture,
        Dialect::PyTorch,
        Dialect::Keras,
        Dialect::Optax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Lecture => "lecture",
            Dialect::PyTorch => "pytorch",
            Dialect::Keras => "keras",
            Dialect::Optax => "optax",
        }
    }

    pub fn from_name(s: &str) -> Option<Dialect> {
        Self::ALL.iter().copied().find(|d| d.name() == s)
    }
}

impl OptimizerKind {
    pub const ALL: &[OptimizerKind] = &[
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::Adagrad,
        OptimizerKind::RmsProp,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::Newton,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::Nesterov => "nesterov",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::RmsProp => "rmsprop",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Newton => "newton",
        }
    }

    pub fn from_name(name: &str) -> Option<OptimizerKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Hyperparameters with their defaults in a dialect, in the order the rule reads them;
    /// every optimizer ends with `weight_decay` and `clip_norm` (0: off).
    pub fn hyperparameters(self, dialect: Dialect) -> &'static [(&'static str, f64)] {
        use Dialect::*;
        use OptimizerKind::*;
        const WD: (&str, f64) = ("weight_decay", 0.0);
        const CLIP: (&str, f64) = ("clip_norm", 0.0);
        match (self, dialect) {
            (Sgd, PyTorch) => &[("lr", 1e-3), WD, CLIP],
            (Sgd, _) => &[("lr", 0.01), WD, CLIP],
            (Momentum | Nesterov, PyTorch) => &[("lr", 1e-3), ("momentum", 0.9), WD, CLIP],
            (Momentum | Nesterov, _) => &[("lr", 0.01), ("momentum", 0.9), WD, CLIP],
            (Adagrad, Lecture) => &[
                ("lr", 0.01),
                ("eps", 1e-7),
                ("initial_accumulator", 0.0),
                WD,
                CLIP,
            ],
            (Adagrad, PyTorch) => &[
                ("lr", 0.01),
                ("eps", 1e-10),
                ("initial_accumulator", 0.0),
                WD,
                CLIP,
            ],
            (Adagrad, Keras) => &[
                ("lr", 1e-3),
                ("eps", 1e-7),
                ("initial_accumulator", 0.1),
                WD,
                CLIP,
            ],
            (Adagrad, Optax) => &[
                ("lr", 0.01),
                ("eps", 1e-7),
                ("initial_accumulator", 0.1),
                WD,
                CLIP,
            ],
            (RmsProp, Lecture) => &[("lr", 1e-3), ("rho", 0.9), ("eps", 1e-7), WD, CLIP],
            (RmsProp, PyTorch) => &[("lr", 0.01), ("rho", 0.99), ("eps", 1e-8), WD, CLIP],
            (RmsProp, Keras) => &[("lr", 1e-3), ("rho", 0.9), ("eps", 1e-7), WD, CLIP],
            (RmsProp, Optax) => &[("lr", 1e-3), ("rho", 0.9), ("eps", 1e-8), WD, CLIP],
            (Adam, Keras) => &[
                ("lr", 1e-3),
                ("beta1", 0.9),
                ("beta2", 0.999),
                ("eps", 1e-7),
                WD,
                CLIP,
            ],
            (Adam, _) => &[
                ("lr", 1e-3),
                ("beta1", 0.9),
                ("beta2", 0.999),
                ("eps", 1e-8),
                WD,
                CLIP,
            ],
            (AdamW, Keras) => &[
                ("lr", 1e-3),
                ("beta1", 0.9),
                ("beta2", 0.999),
                ("eps", 1e-7),
                ("decay", 0.004),
                WD,
                CLIP,
            ],
            (AdamW, Optax) => &[
                ("lr", 1e-3),
                ("beta1", 0.9),
                ("beta2", 0.999),
                ("eps", 1e-8),
                ("decay", 1e-4),
                WD,
                CLIP,
            ],
            (AdamW, _) => &[
                ("lr", 1e-3),
                ("beta1", 0.9),
                ("beta2", 0.999),
                ("eps", 1e-8),
                ("decay", 0.01),
                WD,
                CLIP,
            ],
            (Newton, _) => &[("lr", 1.0), ("damping", 0.0), WD, CLIP],
        }
    }

    /// Names of the per-element state arrays.
    pub fn state_names(self) -> &'static [&'static str] {
        match self {
            OptimizerKind::Sgd | OptimizerKind::Newton => &[],
            OptimizerKind::Momentum | OptimizerKind::Nesterov => &["velocity"],
            OptimizerKind::Adagrad | OptimizerKind::RmsProp => &["accumulator"],
            OptimizerKind::Adam | OptimizerKind::AdamW => &["m", "v"],
        }
    }

    pub fn state_arrays(self) -> usize {
        self.state_names().len()
    }
}

/// An expression of the per-element update language.
#[derive(Clone, Debug, PartialEq)]
pub enum E {
    /// The parameter element (as updated so far).
    P,
    /// The gradient element, after weight decay and clipping.
    G,
    /// A state element (as updated so far).
    S(usize),
    /// A per-step scalar.
    K(usize),
    Add(Box<E>, Box<E>),
    Sub(Box<E>, Box<E>),
    Mul(Box<E>, Box<E>),
    Div(Box<E>, Box<E>),
    Sqrt(Box<E>),
}

/// Where an assignment stores its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    P,
    S(usize),
}

fn add(a: E, b: E) -> E {
    E::Add(Box::new(a), Box::new(b))
}
fn sub(a: E, b: E) -> E {
    E::Sub(Box::new(a), Box::new(b))
}
fn mul(a: E, b: E) -> E {
    E::Mul(Box::new(a), Box::new(b))
}
fn div(a: E, b: E) -> E {
    E::Div(Box::new(a), Box::new(b))
}
fn sqrt(a: E) -> E {
    E::Sqrt(Box::new(a))
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub dialect: Dialect,
    /// Values in the order of `kind.hyperparameters(dialect)`.
    pub values: Vec<f64>,
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hs: Vec<String> = self
            .kind
            .hyperparameters(self.dialect)
            .iter()
            .zip(&self.values)
            .filter(|((n, _), v)| !((*n == "weight_decay" || *n == "clip_norm") && **v == 0.0))
            .map(|((n, _), v)| format!("{n}={}", crate::ir::print::fmt_number(*v)))
            .collect();
        let dialect = if self.dialect == Dialect::Lecture {
            String::new()
        } else {
            format!(", defaults={}", self.dialect.name())
        };
        write!(f, "{}({}{dialect})", self.kind.name(), hs.join(", "))
    }
}

/// Hyperparameters read by the per-step scalars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConstants {
    pub momentum: f64,
    pub eps: f64,
    pub rho: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub decay: f64,
}

/// βᵗ⁺¹ from βᵗ, flushed to zero below the normal range. Left alone, β1ᵗ sinks into the
/// subnormals after about 6,700 steps (β1 = 0.9) and stays at the smallest one for good (0.9
/// times it rounds back to it), and every multiplication by a subnormal costs a hundred cycles
/// or more. 1 − βᵗ is exactly 1 either way.
pub fn next_power(p: f64, beta: f64) -> f64 {
    let q = p * beta;
    if q < f64::MIN_POSITIVE { 0.0 } else { q }
}

/// One per-step scalar of an update rule, as a function of the step's learning rate and the
/// β powers after the step's advance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepScalar {
    Lr,
    Const(f64),
    /// lr · c
    LrTimes(f64),
    /// 1 / (1 − β1ᵗ)
    InvBias1,
    /// 1 / (1 − β2ᵗ)
    InvBias2,
    /// lr · √(1 − β2ᵗ) / (1 − β1ᵗ), Keras' step size with both corrections folded in.
    KerasLr,
}

impl StepScalar {
    pub fn eval(self, lr: f64, s: &StepState) -> f64 {
        match self {
            StepScalar::Lr => lr,
            StepScalar::Const(c) => c,
            StepScalar::LrTimes(c) => lr * c,
            StepScalar::InvBias1 => 1.0 / (1.0 - s.pow1),
            StepScalar::InvBias2 => 1.0 / (1.0 - s.pow2),
            StepScalar::KerasLr => lr * (1.0 - s.pow2).sqrt() / (1.0 - s.pow1),
        }
    }
}

/// Per-step quantities that change with the step count, advanced by multiplication so that
/// every path (per-step calls, fused loops, resumed runs) computes them identically.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    /// Steps taken so far.
    pub t: u64,
    /// β1ᵗ and β2ᵗ for the Adam family (1 otherwise).
    pub pow1: f64,
    pub pow2: f64,
}

impl Default for StepState {
    fn default() -> Self {
        StepState {
            t: 0,
            pow1: 1.0,
            pow2: 1.0,
        }
    }
}

/// The values a hyperparameter may take, as a phrase for a message; `None` when `v` is one of
/// them. A learning rate or ε of 0, a β of 1 or more, or anything infinite makes the update
/// diverge or stand still, so the model file is refused as `--lr` is.
fn out_of_range(name: &str, v: f64) -> Option<&'static str> {
    let (ok, range) = match name {
        "lr" | "eps" => (v.is_finite() && v > 0.0, "a positive finite number"),
        "beta1" | "beta2" | "momentum" | "rho" => ((0.0..1.0).contains(&v), "in [0, 1)"),
        "decay" | "initial_accumulator" | "damping" | "weight_decay" | "clip_norm" => {
            (v.is_finite() && v >= 0.0, "a finite number ≥ 0")
        }
        // An unknown name is refused by the caller before its value is looked at.
        _ => (v.is_finite(), "a finite number"),
    };
    (!ok).then_some(range)
}

impl OptimizerSpec {
    pub fn new(kind: OptimizerKind) -> OptimizerSpec {
        OptimizerSpec::with_dialect(kind, Dialect::Lecture)
    }

    pub fn with_dialect(kind: OptimizerKind, dialect: Dialect) -> OptimizerSpec {
        OptimizerSpec {
            kind,
            dialect,
            values: kind.hyperparameters(dialect).iter().map(|h| h.1).collect(),
        }
    }

    /// This optimizer switched to `kind`: the same optimizer keeps its hyperparameters (a flag
    /// that names the model's own optimizer changes nothing); another takes its defaults in the
    /// same dialect.
    pub fn with_kind(&self, kind: OptimizerKind) -> OptimizerSpec {
        if kind == self.kind {
            self.clone()
        } else {
            OptimizerSpec::with_dialect(kind, self.dialect)
        }
    }

    pub fn get(&self, name: &str) -> f64 {
        let i = self
            .kind
            .hyperparameters(self.dialect)
            .iter()
            .position(|h| h.0 == name)
            .expect("known hyperparameter");
        self.values[i]
    }

    pub fn set(&mut self, name: &str, value: f64) -> Result<(), String> {
        match self
            .kind
            .hyperparameters(self.dialect)
            .iter()
            .position(|h| h.0 == name)
        {
            Some(i) => {
                if let Some(range) = out_of_range(name, value) {
                    return Err(format!(
                        "`{name}` of `{}` must be {range}, found {value}",
                        self.kind.name()
                    ));
                }
                self.values[i] = value;
                Ok(())
            }
            None => {
                let known: Vec<_> = self
                    .kind
                    .hyperparameters(self.dialect)
                    .iter()
                    .map(|h| format!("`{}`", h.0))
                    .collect();
                Err(format!(
                    "`{}` has no hyperparameter `{name}`; it takes {}",
                    self.kind.name(),
                    known.join(", ")
                ))
            }
        }
    }

    /// Initial value of the state arrays (Adagrad's accumulator may start above zero).
    pub fn initial_state(&self) -> f64 {
        match self.kind {
            OptimizerKind::Adagrad => self.get("initial_accumulator"),
            _ => 0.0,
        }
    }

    /// Advances the step counter and the powers of β.
    pub fn advance(&self, s: &StepState) -> StepState {
        Self::advance_with(&self.constants(), s)
    }

    /// As `advance`, with the constants already read.
    pub fn advance_with(c: &StepConstants, s: &StepState) -> StepState {
        StepState {
            t: s.t + 1,
            pow1: next_power(s.pow1, c.beta1),
            pow2: next_power(s.pow2, c.beta2),
        }
    }

    /// Number of per-step scalars the rule reads.
    pub fn n_scalars(&self) -> usize {
        self.step_scalars(&self.constants()).len()
    }

    /// The per-step scalars for a step whose state (after `advance`) is `s`, at learning rate
    /// `lr` (the schedule's value).
    pub fn scalars(&self, lr: f64, s: &StepState) -> Vec<f64> {
        let c = self.constants();
        self.step_scalars(&c)
            .iter()
            .map(|x| x.eval(lr, s))
            .collect()
    }

    /// The hyperparameters the per-step scalars need, read once.
    pub fn constants(&self) -> StepConstants {
        let find = |n: &str| {
            self.kind
                .hyperparameters(self.dialect)
                .iter()
                .position(|h| h.0 == n)
                .map(|i| self.values[i])
        };
        StepConstants {
            momentum: find("momentum").unwrap_or(0.0),
            eps: find("eps").unwrap_or(0.0),
            rho: find("rho").unwrap_or(0.0),
            beta1: find("beta1").unwrap_or(1.0),
            beta2: find("beta2").unwrap_or(1.0),
            decay: if self.kind == OptimizerKind::AdamW {
                find("decay").unwrap_or(0.0)
            } else {
                0.0
            },
        }
    }

    /// How each per-step scalar of the rule follows from the step's learning rate and the β
    /// powers. Both the per-call path (`scalars`, `Trainer`) and the fused training loop, which
    /// computes them natively, evaluate this one list, with the same operations in the same
    /// order, so the two paths agree to the bit.
    pub fn step_scalars(&self, c: &StepConstants) -> Vec<StepScalar> {
        use Dialect::*;
        use OptimizerKind::*;
        use StepScalar::*;
        match (self.kind, self.dialect) {
            (Sgd | Newton, _) => vec![Lr],
            (Momentum | Nesterov, _) => vec![Lr, Const(c.momentum)],
            (Adagrad, _) => vec![Lr, Const(c.eps)],
            (RmsProp, _) => vec![Lr, Const(c.rho), Const(1.0 - c.rho), Const(c.eps)],
            (Adam | AdamW, Keras) => vec![
                KerasLr,
                Const(c.beta1),
                Const(1.0 - c.beta1),
                Const(c.beta2),
                Const(1.0 - c.beta2),
                Const(c.eps),
                LrTimes(c.decay),
            ],
            (Adam | AdamW, _) => vec![
                Lr,
                Const(c.beta1),
                Const(1.0 - c.beta1),
                Const(c.beta2),
                Const(1.0 - c.beta2),
                Const(c.eps),
                // Reciprocals of the bias corrections: the loop multiplies instead of dividing.
                InvBias1,
                InvBias2,
                LrTimes(c.decay),
                Const(c.decay),
            ],
        }
    }

    /// The per-element program: assignments in order, each seeing the ones before it.
    pub fn rule(&self) -> Vec<(Target, E)> {
        use Dialect::*;
        use E::*;
        use OptimizerKind::*;
        let k = K;
        match (self.kind, self.dialect) {
            // Newton's update receives the Newton direction in place of the gradient.
            (Sgd | Newton, _) => vec![(Target::P, sub(P, mul(k(0), G)))],
            (Momentum, Lecture | Keras) => {
                vec![
                    (Target::S(0), sub(mul(k(1), S(0)), mul(k(0), G))),
                    (Target::P, add(P, S(0))),
                ]
            }
            (Momentum, PyTorch | Optax) => vec![
                (Target::S(0), add(mul(k(1), S(0)), G)),
                (Target::P, sub(P, mul(k(0), S(0)))),
            ],
            (Nesterov, Lecture | Keras) => vec![
                (Target::S(0), sub(mul(k(1), S(0)), mul(k(0), G))),
                (Target::P, sub(add(P, mul(k(1), S(0))), mul(k(0), G))),
            ],
            (Nesterov, PyTorch | Optax) => vec![
                (Target::S(0), add(mul(k(1), S(0)), G)),
                (Target::P, sub(P, mul(k(0), add(G, mul(k(1), S(0)))))),
            ],
            (Adagrad, Lecture | PyTorch) => vec![
                (Target::S(0), add(S(0), mul(G, G))),
                (Target::P, sub(P, div(mul(k(0), G), add(k(1), sqrt(S(0)))))),
            ],
            (Adagrad, Keras | Optax) => vec![
                (Target::S(0), add(S(0), mul(G, G))),
                (Target::P, sub(P, div(mul(k(0), G), sqrt(add(S(0), k(1)))))),
            ],
            (RmsProp, Lecture) => vec![
                (Target::S(0), add(mul(k(1), S(0)), mul(mul(k(2), G), G))),
                (Target::P, sub(P, div(mul(k(0), G), sqrt(add(k(3), S(0)))))),
            ],
            (RmsProp, PyTorch) => vec![
                (Target::S(0), add(mul(k(1), S(0)), mul(mul(k(2), G), G))),
                (Target::P, sub(P, div(mul(k(0), G), add(sqrt(S(0)), k(3))))),
            ],
            (RmsProp, Keras | Optax) => vec![
                (Target::S(0), add(mul(k(1), S(0)), mul(mul(k(2), G), G))),
                (Target::P, sub(P, div(mul(k(0), G), sqrt(add(S(0), k(3)))))),
            ],
            (Adam | AdamW, Keras) => {
                let mut r = vec![];
                if self.kind == AdamW {
                    r.push((Target::P, sub(P, mul(k(6), P))));
                }
                r.push((Target::S(0), add(mul(k(1), S(0)), mul(k(2), G))));
                r.push((Target::S(1), add(mul(k(3), S(1)), mul(mul(k(4), G), G))));
                r.push((
                    Target::P,
                    sub(P, div(mul(k(0), S(0)), add(sqrt(S(1)), k(5)))),
                ));
                r
            }
            (Adam | AdamW, d) => {
                let mut r = vec![];
                if self.kind == AdamW && d != Optax {
                    r.push((Target::P, sub(P, mul(k(8), P))));
                }
                r.push((Target::S(0), add(mul(k(1), S(0)), mul(k(2), G))));
                r.push((Target::S(1), add(mul(k(3), S(1)), mul(mul(k(4), G), G))));
                // m̂/(√v̂ + ε) with m̂ = m·(1/(1−β1ᵗ)), v̂ = v·(1/(1−β2ᵗ)): one division per element.
                let adam = div(mul(S(0), k(6)), add(sqrt(mul(S(1), k(7))), k(5)));
                if self.kind == AdamW && d == Optax {
                    r.push((Target::P, sub(P, mul(k(0), add(adam, mul(k(9), P))))));
                } else {
                    r.push((Target::P, sub(P, mul(k(0), adam))));
                }
                r
            }
        }
    }

    /// Interprets the rule on one parameter array in f64 (gradients already decayed and clipped).
    pub fn apply_rule(
        &self,
        scalars: &[f64],
        param: &mut [f64],
        grad: &[f64],
        state: &mut [Vec<f64>],
    ) {
        let rule = self.rule();
        for i in 0..param.len() {
            let mut p = param[i];
            let mut s: Vec<f64> = state.iter().map(|a| a[i]).collect();
            for (target, e) in &rule {
                let v = eval(e, p, grad[i], &s, scalars);
                match target {
                    Target::P => p = v,
                    Target::S(k) => s[*k] = v,
                }
            }
            param[i] = p;
            for (a, v) in state.iter_mut().zip(s) {
                a[i] = v;
            }
        }
    }

    /// The factor that scales every gradient so their global norm is at most `clip_norm`.
    pub fn clip_scale(&self, sum_of_squares: f64) -> f64 {
        let c = self.get("clip_norm");
        let norm = sum_of_squares.sqrt();
        if c > 0.0 && norm > c { c / norm } else { 1.0 }
    }

    /// One reference step over all parameters: weight decay, clipping, then the rule.
    pub fn reference_step(
        &self,
        lr: f64,
        step: &StepState,
        params: &mut [Vec<f64>],
        grads: &[Vec<f64>],
        state: &mut [Vec<Vec<f64>>],
    ) {
        let wd = self.get("weight_decay");
        let decayed: Vec<Vec<f64>> = params
            .iter()
            .zip(grads)
            .map(|(p, g)| {
                g.iter()
                    .zip(p)
                    .map(|(g, p)| if wd != 0.0 { g + wd * p } else { *g })
                    .collect()
            })
            .collect();
        let scale = self.clip_scale(decayed.iter().flatten().map(|g| g * g).sum());
        let scalars = self.scalars(lr, step);
        for i in 0..params.len() {
            let g: Vec<f64> = decayed[i]
                .iter()
                .map(|g| if scale != 1.0 { g * scale } else { *g })
                .collect();
            self.apply_rule(&scalars, &mut params[i], &g, &mut state[i]);
        }
    }
}

fn eval(e: &E, p: f64, g: f64, s: &[f64], k: &[f64]) -> f64 {
    match e {
        E::P => p,
        E::G => g,
        E::S(i) => s[*i],
        E::K(i) => k[*i],
        E::Add(a, b) => eval(a, p, g, s, k) + eval(b, p, g, s, k),
        E::Sub(a, b) => eval(a, p, g, s, k) - eval(b, p, g, s, k),
        E::Mul(a, b) => eval(a, p, g, s, k) * eval(b, p, g, s, k),
        E::Div(a, b) => eval(a, p, g, s, k) / eval(b, p, g, s, k),
        E::Sqrt(a) => eval(a, p, g, s, k).sqrt(),
    }
}

/// Learning-rate schedules: the rate at step t (1-based) of a run of `total` steps.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// lr · γ^⌊(t−1)/every⌋
    Step {
        every: u64,
        gamma: f64,
    },
    /// lr · γ^(t−1)
    Exponential {
        gamma: f64,
    },
    /// min + (lr − min)·(1 + cos(π·(t−1)/total))/2
    Cosine {
        min: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub schedule: Schedule,
    /// Linear warm-up from lr/warmup to lr over the first `warmup` steps.
    pub warmup: u64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            schedule: Schedule::Constant,
            warmup: 0,
        }
    }
}

/// The schedule as the model language writes it.
impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::ir::print::fmt_number as num;
        let mut args = match self.schedule {
            Schedule::Constant => vec![],
            Schedule::Step { every, gamma } => {
                vec![
                    format!("every = {every}"),
                    format!("gamma = {}", num(gamma)),
                ]
            }
            Schedule::Exponential { gamma } => vec![format!("gamma = {}", num(gamma))],
            Schedule::Cosine { min } => vec![format!("min = {}", num(min))],
        };
        if self.warmup > 0 {
            args.push(format!("warmup = {}", self.warmup));
        }
        let name = match self.schedule {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Exponential { .. } => "exponential",
            Schedule::Cosine { .. } => "cosine",
        };
        if args.is_empty() {
            write!(f, "{name}")
        } else {
            write!(f, "{name}({})", args.join(", "))
        }
    }
}

impl LrSchedule {
    pub fn is_constant(&self) -> bool {
        self.schedule == Schedule::Constant && self.warmup == 0
    }

    pub fn lr(&self, base: f64, t: u64, total: u64) -> f64 {
        let t = t.max(1);
        let lr = match self.schedule {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                base * gamma.powi(((t - 1) / every.max(1)).min(i32::MAX as u64) as i32)
            }
            Schedule::Exponential { gamma } => base * gamma.powf((t - 1) as f64),
            Schedule::Cosine { min } => {
                let frac = ((t - 1) as f64 / total.max(1) as f64).min(1.0);
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        };
        if t <= self.warmup {
            lr * t as f64 / self.warmup as f64
        } else {
            lr
        }
    }
}
