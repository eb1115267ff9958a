//! Non-finite values: the last finite state kept to fall back on, and the node where a
//! non-finite value first appeared, traced through the reference interpreter.

use super::*;

impl Trainer {
    /// Names the first parameter, or else state tensor (a running statistic, which a batch of
    /// one element per channel makes NaN), holding a non-finite value, with the value.
    pub(super) fn non_finite_param(&self) -> Option<String> {
        let g = self.compiled.model.graph();
        let param = self.params.iter().zip(&g.params).find_map(|(p, info)| {
            let v = p.first_non_finite()?;
            Some(format!("parameter `{}` {v}", info.name))
        });
        param.or_else(|| {
            self.model_state
                .iter()
                .zip(&g.states)
                .find_map(|(s, info)| {
                    let v = s.first_non_finite()?;
                    Some(format!("state tensor `{}` {v}", info.name))
                })
        })
    }

    pub(super) fn finite_state(&self, loss: Option<(u64, f64)>) -> FiniteState {
        FiniteState {
            params: self.params.clone(),
            state: self.state.clone(),
            model_state: self.model_state.clone(),
            opt_step: self.opt_step.clone(),
            step: self.step,
            cursor: self.cursor.clone(),
            data_rng: copy_rng(&self.data_rng),
            loss,
        }
    }

    pub(super) fn restore(&mut self, s: FiniteState) {
        self.params = s.params;
        self.state = s.state;
        self.model_state = s.model_state;
        self.opt_step = s.opt_step;
        self.step = s.step;
        self.cursor = s.cursor;
        self.data_rng = s.data_rng;
    }

    pub(super) fn locate_non_finite(
        &self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Option<NonFiniteOrigin> {
        let f = self.compiled.graphs.step_gradient();
        let g = &f.graph;
        let syms = self.syms(rows);
        let tensors = |bufs: &[Buffer], shapes: Vec<crate::ir::Shape>| -> Vec<crate::ir::Tensor> {
            bufs.iter()
                .zip(shapes)
                .map(|(b, s)| crate::ir::Tensor::new(s.concrete(&syms), b.to_f64()))
                .collect()
        };
        let ins = tensors(inputs, g.inputs.iter().map(|i| i.shape.clone()).collect());
        let params = tensors(
            &self.params,
            g.params.iter().map(|p| p.shape.clone()).collect(),
        );
        let states = tensors(
            &self.model_state,
            g.states.iter().map(|s| s.shape.clone()).collect(),
        );
        let roots: Vec<crate::ir::NodeId> = f.outputs.iter().map(|o| o.1).collect();
        let rounding = crate::ir::interp::Rounding {
            dtype: g.dtype,
            flush_subnormals: self.flush_subnormals,
        };
        // The step being replayed is the next one (`checked_step` has not advanced).
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step + 1);
        let leaves = (&ins[..], &params[..], &states[..]);
        let values = crate::ir::interp::eval_rounded(g, leaves, &syms, &roots, Some(rounding), key);
        let bad = |id: crate::ir::NodeId| {
            values[id.index()]
                .as_ref()
                .and_then(|t| t.data.iter().copied().find(|v| !v.is_finite()))
        };
        g.ids().find_map(|id| {
            let v = bad(id)?;
            if g.node(id).inputs.iter().any(|&a| bad(a).is_some()) {
                return None;
            }
            Some(NonFiniteOrigin {
                op: g.op(id).name(),
                span: g.span(id),
                rule: g.rule(id),
                value: v,
            })
        })
    }
}

pub(super) fn last_finite_text(last: Option<(u64, f64)>) -> String {
    match last {
        Some((step, loss)) => format!(" (the last finite loss, {loss:e}, was at step {step})"),
        None => String::new(),
    }
}

/// Where the first non-finite value of a step came from.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFiniteOrigin {
    /// The op that produced it from finite operands.
    pub op: &'static str,
    /// Where that op is in the source (for the backward pass: the forward op whose rule built it).
    pub span: Option<crate::diagnostics::Span>,
    /// For the backward pass, the op whose derivative rule produced it.
    pub rule: Option<&'static str>,
    /// The value it produced, e.g. NaN or inf.
    pub value: f64,
}

impl NonFiniteOrigin {
    pub fn describe(&self) -> String {
        match self.rule {
            None => format!("`{}` in the forward pass produced {}", self.op, self.value),
            Some(r) => format!(
                "the derivative rule of `{r}` (its `{}`) produced {} in the backward pass",
                self.op, self.value
            ),
        }
    }
}

/// Everything a step changes, kept at each log point: a run that turns non-finite goes back to
/// it and replays, checking every step, up to the step that did.
pub(super) struct FiniteState {
    pub(super) params: Vec<Buffer>,
    pub(super) state: Vec<Buffer>,
    pub(super) model_state: Vec<Buffer>,
    pub(super) opt_step: StepState,
    pub(super) step: u64,
    pub(super) cursor: Cursor,
    pub(super) data_rng: ChaCha8Rng,
    /// The step and loss of the log point it was taken at.
    pub(super) loss: Option<(u64, f64)>,
}
