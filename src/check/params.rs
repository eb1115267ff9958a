//! Parameters and their initializers, with the constant arguments those take.

use super::*;

impl Checker {
    pub(super) fn params(
        &mut self,
        module: &ast::Module,
        dtype: DType,
        limits: &Limits,
    ) -> (Vec<ParamInfo>, Vec<Init>, Vec<Span>) {
        let (mut infos, mut inits, mut spans) = (Vec::new(), Vec::new(), Vec::new());
        let memory_limit = limits.memory_budget as u128;
        for item in &module.items {
            let Item::Param {
                name,
                shape,
                init,
                span,
            } = item
            else {
                continue;
            };
            let mut dims = Vec::new();
            let mut ok = true;
            for d in shape {
                match d {
                    ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                    other => {
                        self.error(
                            Diagnostic::error(
                                "parameter dimensions must be positive whole numbers",
                            )
                            .with_label(other.span(), "not a fixed size"),
                        );
                        ok = false;
                    }
                }
            }
            let init = match init {
                ast::Init::Value(v, _) => Some(Init::Constant(*v)),
                ast::Init::Named { name: iname, args } => self.init(iname, args),
            };
            if !ok {
                continue;
            }
            let bytes = dims
                .iter()
                .map(|d| if let Dim::Fixed(k) = d { *k as u128 } else { 1 })
                .product::<u128>()
                * dtype.size() as u128;
            if bytes > memory_limit {
                // Still defined, so its uses do not cascade into "unknown name" errors.
                self.error(
                    Diagnostic::error(format!(
                        "parameter `{}` would take {}, more than this machine's memory allows",
                        name.name,
                        crate::runtime::human_bytes(bytes.min(u64::MAX as u128) as u64),
                    ))
                    .with_label(name.span, "too large"),
                );
            }
            // A parameter whose initializer is wrong is still defined, so its uses do not
            // cascade into "unknown name" errors; the model is rejected anyway.
            let init = init.unwrap_or(Init::Zeros);
            let index = infos.len() as u32;
            infos.push(ParamInfo {
                name: name.name.clone(),
                shape: Shape(dims),
            });
            inits.push(init);
            spans.push(*span);
            self.define(name, Binding::Param(index));
        }
        (infos, inits, spans)
    }

    pub(super) fn init(&mut self, name: &ast::Ident, args: &[ast::Arg]) -> Option<Init> {
        let stat = match name.name.as_str() {
            "mean" => Some(crate::init::DataStat::Mean),
            "log_prior" => Some(crate::init::DataStat::LogPrior),
            "log_odds" => Some(crate::init::DataStat::LogOdds),
            _ => None,
        };
        if let Some(stat) = stat {
            // `~ log_prior(label)`: the statistic of an input, computed when data arrives.
            let input = match args {
                [
                    ast::Arg {
                        name: None,
                        value:
                            ast::Expr {
                                kind: ExprKind::Name(n),
                                ..
                            },
                    },
                ] => n.clone(),
                _ => {
                    self.error(
                        Diagnostic::error(format!("`{}` takes the name of an input", name.name))
                            .with_label(name.span, "e.g. `~ log_prior(label)`"),
                    );
                    return None;
                }
            };
            return Some(Init::FromData { stat, input });
        }
        // `he_normal(nonlinearity = relu)`: the gain recommended for that activation.
        let mut rest = Vec::new();
        let mut gain_from: Option<(String, f64)> = None;
        for a in args {
            match (&a.name, &a.value.kind) {
                (Some(n), ExprKind::Name(act)) if n.name == "nonlinearity" => {
                    match crate::init::gain_for(act) {
                        Some(g) => gain_from = Some(("gain".into(), g)),
                        None => {
                            self.error(
                                Diagnostic::error(format!("no recommended gain for `{act}`"))
                                    .with_label(a.value.span, "unknown nonlinearity")
                                    .with_note(
                                        "known: linear, sigmoid, tanh, relu, leaky_relu, selu",
                                    ),
                            );
                            return None;
                        }
                    }
                }
                _ => rest.push(a.clone()),
            }
        }
        let (positional, mut named) = self.const_args(&rest)?;
        named.extend(gain_from);
        match Init::from_call(&name.name, &positional, &named) {
            Ok(init) => Some(init),
            Err(msg) => {
                self.error(Diagnostic::error(msg).with_label(name.span, "in this initializer"));
                None
            }
        }
    }

    pub(super) fn const_args(&mut self, args: &[ast::Arg]) -> Option<ConstArgs> {
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let Some(v) = self.const_value(&a.value) else {
                continue;
            };
            match &a.name {
                Some(n) => named.push((n.name.clone(), v)),
                None => positional.push(v),
            }
        }
        if args.len() == positional.len() + named.len() {
            Some((positional, named))
        } else {
            None
        }
    }

    pub(super) fn const_value(&mut self, e: &ast::Expr) -> Option<f64> {
        match const_eval(e) {
            None => {
                let mut d =
                    Diagnostic::error("expected a number").with_label(e.span, "must be a constant");
                if let ExprKind::Name(n) = &e.kind {
                    d.notes.extend(python_literal_note(n));
                }
                self.error(d);
                None
            }
            Some(v) if !v.is_finite() => {
                self.error(
                    Diagnostic::error("this constant is not a finite number")
                        .with_label(e.span, format!("evaluates to {v}")),
                );
                None
            }
            v => v,
        }
    }
}
