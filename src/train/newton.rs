//! Newton's method with damping: the Hessian from the gradient graph differentiated again, and
//! the damped system solved by Cholesky.

use super::*;

impl Trainer {
    /// One Newton step: the exact Hessian H (the gradient graph differentiated again, evaluated
    /// in f64), the direction d solving (H + λI)d = g by Cholesky, then the compiled update
    /// θ ← θ − lr·d. When H + λI is not positive definite, λ grows tenfold (from
    /// 1e-8·mean |diag H|) until it is: a Levenberg–Marquardt safeguard.
    pub fn newton_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        const MAX_PARAMS: usize = 2000;
        if !self.model_state.is_empty() {
            // Its Hessian is of the evaluation graph, which normalizes with the running
            // statistics, while the step normalizes with the batch's.
            return Err(TrainError::Newton(
                "a model without `batch_norm`: the Hessian would not be the training step's".into(),
            ));
        }
        let _modes = self.step_modes();
        let loss = self.step_value_and_grad(inputs, rows)?;
        let g: Vec<f64> = (0..self.params.len())
            .flat_map(|i| self.step_gradient(i, rows).expect("just computed").to_f64())
            .collect();
        let n = g.len();
        if n > MAX_PARAMS {
            return Err(TrainError::Newton(format!(
                "at most {MAX_PARAMS} parameters for its dense Hessian; this model has {n}"
            )));
        }
        let graph = self.compiled.model.graph().clone();
        let syms = self.syms(rows);
        let point = crate::inspect::Point {
            inputs: inputs
                .iter()
                .zip(&graph.inputs)
                .map(|(b, i)| crate::ir::Tensor::new(i.shape.concrete(&syms), b.to_f64()))
                .collect(),
            params: self
                .params
                .iter()
                .zip(&graph.params)
                .map(|(b, p)| crate::ir::Tensor::new(p.shape.concrete(&syms), b.to_f64()))
                .collect(),
            // A model with state trains on a graph of its own, which Newton's method refuses.
            states: vec![],
            syms,
        };
        let h = self
            .hvp
            .get_or_insert_with(|| crate::inspect::hvp_graph(&self.compiled.graphs.forward));
        let hess = crate::inspect::hessian(h, &point);
        let mut damping = self.compiled.model.optimizer.get("damping");
        let scale = (0..n).map(|i| hess[i][i].abs()).sum::<f64>() / n.max(1) as f64;
        let d = loop {
            if let Some(d) = cholesky_solve(&hess, damping, &g) {
                break d;
            }
            damping = if damping == 0.0 {
                1e-8 * scale.max(1e-300)
            } else {
                damping * 10.0
            };
            if !damping.is_finite() {
                return Err(TrainError::Newton("a Hessian with finite entries".into()));
            }
        };
        let dtype = graph.dtype;
        let mut off = 0;
        let dirs: Vec<Buffer> = self
            .params
            .iter()
            .map(|p| {
                let b = Buffer::from_f64(dtype, &d[off..off + p.len()]);
                off += p.len();
                b
            })
            .collect();
        let scalars = self.next_scalars();
        let refs: Vec<&Buffer> = dirs.iter().collect();
        self.compiled
            .update
            .run(&mut self.params, &refs, &mut self.state, &scalars)?;
        Ok(loss)
    }
}

/// Solves (A + λI)x = b for symmetric A by Cholesky; `None` when A + λI is not positive definite.
pub(super) fn cholesky_solve(a: &[Vec<f64>], lambda: f64, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            // The Hessian is symmetric up to rounding; use its symmetric part.
            let aij = 0.5 * (a[i][j] + a[j][i]) + if i == j { lambda } else { 0.0 };
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = aij - s;
                // Not positive definite, or NaN: no factor.
                if !(d.is_finite() && d > 0.0) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (aij - s) / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}
