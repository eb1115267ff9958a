//! Settings: the element type, the optimizer and its schedule, and the training settings.

use super::*;

impl Checker {
    pub(super) fn dtype(&mut self, module: &ast::Module) -> DType {
        let mut dtype = DType::F32;
        let mut first: Option<Span> = None;
        for item in &module.items {
            if let Item::Dtype { name } = item {
                if let Some(first) = first {
                    self.error(
                        Diagnostic::error("a model has one `dtype`")
                            .with_label(name.span, "second dtype")
                            .with_label(first, "first dtype here"),
                    );
                    continue;
                }
                first = Some(name.span);
                dtype = match name.name.as_str() {
                    "f32" => DType::F32,
                    "f64" => DType::F64,
                    other => {
                        self.error(
                            Diagnostic::error(format!("unknown dtype `{other}`"))
                                .with_label(name.span, "expected `f32` or `f64`"),
                        );
                        dtype
                    }
                };
            }
        }
        dtype
    }

    pub(super) fn optimizer(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Arg],
    ) -> Option<OptimizerSpec> {
        let Some(kind) = OptimizerKind::from_name(&name.name) else {
            let known: Vec<_> = OptimizerKind::ALL
                .iter()
                .map(|k| format!("`{}`", k.name()))
                .collect();
            self.error(
                Diagnostic::error(format!("unknown optimizer `{}`", name.name))
                    .with_label(name.span, "not an optimizer")
                    .with_note(format!("known optimizers: {}", known.join(", "))),
            );
            return None;
        };
        // `defaults = pytorch` chooses the rule and the defaults; it is read first.
        let mut dialect = Dialect::Lecture;
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "defaults") {
                match &a.value.kind {
                    ExprKind::Name(d) if Dialect::from_name(d).is_some() => {
                        dialect = Dialect::from_name(d).unwrap()
                    }
                    _ => {
                        let known: Vec<_> = Dialect::ALL
                            .iter()
                            .map(|d| format!("`{}`", d.name()))
                            .collect();
                        self.error(
                            Diagnostic::error("unknown defaults")
                                .with_label(a.value.span, "not a known framework")
                                .with_note(format!("choose one of {}", known.join(", "))),
                        );
                        return None;
                    }
                }
            }
        }
        let mut spec = OptimizerSpec::with_dialect(kind, dialect);
        let hypers = kind.hyperparameters(dialect);
        let mut positional = 0;
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "defaults") {
                continue;
            }
            let Some(v) = self.const_value(&a.value) else {
                continue;
            };
            let key = match &a.name {
                Some(n) => n.name.clone(),
                None if positional < hypers.len() => {
                    positional += 1;
                    hypers[positional - 1].0.to_string()
                }
                None => {
                    self.error(
                        Diagnostic::error("too many optimizer arguments")
                            .with_label(a.value.span, "extra"),
                    );
                    continue;
                }
            };
            if let Err(msg) = spec.set(&key, v) {
                self.error(
                    Diagnostic::error(msg)
                        .with_label(a.name.as_ref().map_or(a.value.span, |n| n.span), "here"),
                );
            }
        }
        Some(spec)
    }

    pub(super) fn schedule(&mut self, name: &ast::Ident, args: &[ast::Arg]) -> Option<LrSchedule> {
        let (positional, named) = self.const_args(args)?;
        if !positional.is_empty() {
            self.error(
                Diagnostic::error("schedule arguments are given by name")
                    .with_label(name.span, "in this schedule"),
            );
            return None;
        }
        let params: &[(&str, f64)] = match name.name.as_str() {
            "constant" => &[],
            "step" => &[("every", f64::NAN), ("gamma", 0.1)],
            "exponential" => &[("gamma", f64::NAN)],
            "cosine" => &[("min", 0.0)],
            other => {
                self.error(
                    Diagnostic::error(format!("unknown schedule `{other}`"))
                        .with_label(name.span, "not a schedule")
                        .with_note("schedules: constant, step(every, gamma), exponential(gamma), cosine(min); each takes warmup = steps"),
                );
                return None;
            }
        };
        let mut values: Vec<f64> = params.iter().map(|p| p.1).collect();
        let mut warmup = 0.0;
        for (key, v) in &named {
            if key == "warmup" {
                warmup = *v;
                continue;
            }
            match params.iter().position(|p| p.0 == key) {
                Some(i) => values[i] = *v,
                None => {
                    self.error(
                        Diagnostic::error(format!("`{}` has no argument `{key}`", name.name))
                            .with_label(name.span, "in this schedule"),
                    );
                    return None;
                }
            }
        }
        if let Some(i) = values.iter().position(|v| v.is_nan()) {
            self.error(
                Diagnostic::error(format!("`{}` needs `{}`", name.name, params[i].0))
                    .with_label(name.span, "here"),
            );
            return None;
        }
        if warmup < 0.0 || warmup.fract() != 0.0 {
            self.error(
                Diagnostic::error("`warmup` must be a whole number of steps")
                    .with_label(name.span, "here"),
            );
            return None;
        }
        let schedule = match name.name.as_str() {
            "constant" => Schedule::Constant,
            "step" if values[0] >= 1.0 => Schedule::Step {
                every: values[0] as u64,
                gamma: values[1],
            },
            "step" => {
                self.error(
                    Diagnostic::error("`every` must be at least 1").with_label(name.span, "here"),
                );
                return None;
            }
            "exponential" => Schedule::Exponential { gamma: values[0] },
            _ => Schedule::Cosine { min: values[0] },
        };
        Some(LrSchedule {
            schedule,
            warmup: warmup as u64,
        })
    }

    pub(super) fn train_settings(&mut self, settings: &[ast::Setting], train: &mut TrainSettings) {
        for s in settings {
            let Some(v) = self.const_value(&s.value) else {
                continue;
            };
            if s.name.name == "validation" {
                if (0.0..1.0).contains(&v) {
                    train.validation = v;
                } else {
                    self.error(
                        Diagnostic::error(
                            "`validation` is the fraction of rows held out, in [0, 1)",
                        )
                        .with_label(s.value.span, "here"),
                    );
                }
                continue;
            }
            let name = s.name.name.as_str();
            let (least, most) = match name {
                "batch" => (1.0, MAX_COUNT),
                "drop_last" => (0.0, 1.0),
                _ => (0.0, MAX_COUNT),
            };
            if !(v >= least && v.fract() == 0.0 && v <= most) {
                let range = if v > most {
                    format!("at most {}", count_text(most))
                } else {
                    format!("a whole number ≥ {least}")
                };
                self.error(
                    Diagnostic::error(format!("`{name}` must be {range}, found {}", count_text(v)))
                        .with_label(s.value.span, "here"),
                );
                continue;
            }
            let v = v as u64;
            match name {
                "steps" => train.steps = Some(v),
                "epochs" => train.epochs = Some(v),
                "batch" => train.batch = Some(v),
                "seed" => train.seed = v,
                "log_every" => train.log_every = v,
                "drop_last" => train.drop_last = v == 1,
                "patience" => train.patience = v,
                other => self.error(
                    Diagnostic::error(format!("unknown training setting `{other}`"))
                        .with_label(s.name.span, "not a setting")
                        .with_note("settings: steps, epochs, batch, seed, log_every, drop_last, validation, patience"),
                ),
            }
        }
        if train.steps.is_some() && train.epochs.is_some() {
            let span = settings
                .iter()
                .find(|s| s.name.name == "epochs")
                .map(|s| s.name.span)
                .unwrap_or_default();
            self.error(
                Diagnostic::error("give `steps` or `epochs`, not both").with_label(span, "here"),
            );
        }
    }
}
