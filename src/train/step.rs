//! One training step and runs of them: the gradient, the optimizer's update, steps checked for
//! non-finite values, and native chunks of steps that a stop request interrupts in time.

use super::*;

/// The workspaces of a trainer's training steps: those of the evaluation gradient unless the
/// model has a training graph of its own. A macro, so that the borrow is of the one field.
macro_rules! step_workspaces {
    ($t:expr) => {
        match $t.compiled.graphs.training {
            Some(_) => &mut $t.step_ws,
            None => &mut $t.grad_ws,
        }
    };
}

/// Every gradient the last training step computed on `rows` rows, in parameter order.
fn step_gradients(t: &Trainer, rows: usize) -> Option<Vec<&Buffer>> {
    let ws = match t.compiled.graphs.training {
        Some(_) => t.step_ws.get(&t.syms(rows))?,
        None => t.grad_ws.get(&t.syms(rows))?,
    };
    let plan = &t.compiled.step.plan;
    Some(
        (0..t.params.len())
            .map(|i| ws.output(plan, i + 1))
            .collect(),
    )
}

/// The values of one training step, not taken (`Trainer::step_values`).
pub struct StepValues {
    pub loss: f64,
    /// In parameter order.
    pub grads: Vec<Vec<f64>>,
    /// The model state tensors' next values, in `Graph::states` order.
    pub states: Vec<Vec<f64>>,
}

impl Trainer {
    /// Computes the loss and every parameter's gradient on a batch; returns the loss.
    /// The gradients are then in `gradient(i)`.
    pub fn value_and_grad(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, RunError> {
        let syms = self.syms(rows);
        let exe = &self.compiled.gradient;
        let ws = workspace(&mut self.grad_ws, exe, &syms)?;
        exe.run_with_state(ws, inputs, &self.params, &self.model_state, 0)?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }

    /// The gradient of parameter `i` from the last `value_and_grad` on a batch of `rows` rows.
    pub fn gradient(&self, i: usize, rows: usize) -> Option<&Buffer> {
        let ws = self.grad_ws.get(&self.syms(rows))?;
        Some(ws.output(&self.compiled.gradient.plan, i + 1))
    }

    /// The key of the run's dropout masks: from the seed of the data stream, which checkpoints
    /// keep, so a resumed run draws the masks the uninterrupted run would have.
    pub(super) fn dropout_run_key(&self) -> u64 {
        crate::ir::dropout::run_key(&self.data_rng.get_seed())
    }

    /// The loss and every gradient of the next training step (`step + 1`) on a batch, as the
    /// training graph computes them: its dropout masks are that step's. The gradients are then
    /// in `step_gradient(i)`.
    pub(super) fn step_value_and_grad(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<f64, RunError> {
        let syms = self.syms(rows);
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step + 1);
        let exe = &self.compiled.step;
        let ws = workspace(step_workspaces!(self), exe, &syms)?;
        exe.run_with_state(ws, inputs, &self.params, &self.model_state, key)?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }

    /// What the next training step (`step + 1`) computes on a batch, without taking it: the
    /// loss, every parameter's gradient and the model state tensors' next values, with that
    /// step's dropout masks and the batch's own statistics (`export --values`).
    pub fn step_values(&mut self, inputs: &[Buffer], rows: usize) -> Result<StepValues, RunError> {
        let loss = self.step_value_and_grad(inputs, rows)?;
        let grads = (0..self.params.len())
            .map(|i| self.step_gradient(i, rows).expect("just computed").to_f64())
            .collect();
        let first = 1 + self.params.len();
        let syms = self.syms(rows);
        let ws = &step_workspaces!(self)[&syms];
        let plan = &self.compiled.step.plan;
        let states = (0..self.model_state.len())
            .map(|k| ws.output(plan, first + k).to_f64())
            .collect();
        Ok(StepValues {
            loss,
            grads,
            states,
        })
    }

    /// The gradient of parameter `i` from the last `step_value_and_grad` on `rows` rows.
    pub(super) fn step_gradient(&self, i: usize, rows: usize) -> Option<&Buffer> {
        step_gradients(self, rows)?.get(i).copied()
    }

    /// The floating-point modes a step runs in, until the returned guard is dropped.
    pub(super) fn step_modes(&self) -> Option<FlushSubnormals> {
        FlushSubnormals::when(self.flush_subnormals)
    }

    /// Advances the optimizer's step state; returns the new step's learning rate.
    pub(super) fn next_lr(&mut self) -> f64 {
        let model = &self.compiled.model;
        self.opt_step = OptimizerSpec::advance_with(&self.constants, &self.opt_step);
        self.step = self.opt_step.t;
        if model.schedule.is_constant() {
            self.base_lr
        } else {
            model
                .schedule
                .lr(self.base_lr, self.opt_step.t, self.total_steps)
        }
    }

    /// Advances the optimizer's step state; returns that step's scalars.
    pub(super) fn next_scalars(&mut self) -> Vec<f64> {
        let lr = self.next_lr();
        let s = &self.opt_step;
        self.step_scalars.iter().map(|x| x.eval(lr, s)).collect()
    }

    /// One optimizer step on a batch through separate native calls (value-and-gradient, then
    /// the update); returns the loss before the step.
    pub fn train_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, RunError> {
        let _modes = self.step_modes();
        let loss = self.step_value_and_grad(inputs, rows)?;
        self.apply_gradients(rows)?;
        Ok(loss)
    }

    /// Stores the next values of the model's state tensors, which the last
    /// `step_value_and_grad` on `rows` rows computed (the step graph's outputs after the
    /// gradients), as the fused loop stores them after each step's update.
    pub(super) fn store_model_state(&mut self, rows: usize) {
        if self.model_state.is_empty() {
            return;
        }
        let first = 1 + self.params.len();
        let syms = self.syms(rows);
        let ws = &step_workspaces!(self)[&syms];
        let plan = &self.compiled.step.plan;
        for (k, state) in self.model_state.iter_mut().enumerate() {
            state.copy_from(ws.output(plan, first + k));
        }
    }

    /// One full-batch step of the model's optimizer as `fit` takes it (Newton's method through
    /// `newton_step`, the others through their compiled update); returns the loss before it.
    pub fn optimizer_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        if self.compiled.model.optimizer.kind == crate::optim::OptimizerKind::Newton {
            self.newton_step(inputs, rows)
        } else {
            Ok(self.train_step(inputs, rows)?)
        }
    }

    /// The compiled update, with the gradients `step_value_and_grad` left for a batch of `rows`
    /// rows.
    pub(super) fn apply_gradients(&mut self, rows: usize) -> Result<(), RunError> {
        let scalars = self.next_scalars();
        let syms = self.syms(rows);
        let ws = match self.compiled.graphs.training {
            Some(_) => &self.step_ws[&syms],
            None => &self.grad_ws[&syms],
        };
        let plan = &self.compiled.step.plan;
        let grads: Vec<&Buffer> = (0..self.params.len())
            .map(|i| ws.output(plan, i + 1))
            .collect();
        self.compiled
            .update
            .run(&mut self.params, &grads, &mut self.state, &scalars)?;
        self.store_model_state(rows);
        Ok(())
    }

    /// One step that checks everything it computes; a non-finite loss, gradient or parameter is
    /// traced to the op that first produced it, by replaying the step in the interpreter.
    /// With `check_finite` set, the value is traced to the op that first produced it, by
    /// replaying the step in the interpreter. On an error the state is as before the step.
    pub fn checked_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        // The replay that locates a non-finite value runs in the same modes as the step.
        let _modes = self.step_modes();
        let before = (
            self.params.clone(),
            self.state.clone(),
            self.opt_step.clone(),
            self.step,
            self.model_state.clone(),
        );
        let loss = self.step_value_and_grad(inputs, rows)?;
        let names = &self.compiled.model.graph().params;
        let bad_gradient = (0..self.params.len()).find_map(|i| {
            let v = self.step_gradient(i, rows)?.first_non_finite()?;
            Some(format!("the gradient of `{}` became {v}", names[i].name))
        });
        let step = self.step + 1;
        let bad = match bad_gradient {
            _ if !loss.is_finite() => Some(format!("the loss became {loss}")),
            other => other,
        };
        if let Some(what) = bad {
            let origin = self
                .check_finite
                .then(|| self.locate_non_finite(inputs, rows))
                .flatten();
            return Err(match origin {
                Some(origin) => TrainError::NonFiniteAt { step, origin },
                None => TrainError::Diverged {
                    step,
                    what,
                    last_loss: None,
                    located: self.check_finite,
                },
            });
        }
        self.apply_gradients(rows)?;
        if let Some(what) = self.non_finite_param() {
            (
                self.params,
                self.state,
                self.opt_step,
                self.step,
                self.model_state,
            ) = before;
            return Err(TrainError::Diverged {
                step,
                what: format!("the optimizer update made {what} (its gradients were finite)"),
                last_loss: None,
                located: true,
            });
        }
        Ok(loss)
    }

    /// `k` steps on the same batch through the fused native loop; returns the loss computed
    /// by the last step, before its update.
    pub fn train_steps(&mut self, inputs: &[Buffer], rows: usize, k: u64) -> Result<f64, RunError> {
        // Each step's learning rate goes through a table; chunks keep it small and in cache.
        const CHUNK: u64 = 2048;
        let mut loss = f64::NAN;
        let mut left = k;
        while left > 0 {
            let n = left.min(CHUNK);
            loss = self.train_chunk(inputs, rows, n)?;
            left -= n;
        }
        Ok(loss)
    }

    pub(super) fn train_chunk(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
        k: u64,
    ) -> Result<f64, RunError> {
        let _modes = self.step_modes();
        let mut table = std::mem::take(&mut self.table);
        table.clear();
        table.push(0.0); // the step count, filled in by the loop's runner
        // The dropout key of the step before the first: the loop adds γ a step.
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step);
        table.push(f64::from_bits(key));
        table.push(self.opt_step.pow1);
        table.push(self.opt_step.pow2);
        for _ in 0..k {
            let lr = self.next_lr();
            table.push(lr);
        }
        // The dimensions into a buffer kept between steps: no allocation per step.
        let mut syms = std::mem::take(&mut self.syms_buf);
        self.fill_syms(rows, &mut syms);
        let exe = &self.compiled.step;
        let ws = workspace(step_workspaces!(self), exe, &syms)?;
        self.syms_buf = syms;
        let res = self.compiled.train_loop.run(
            exe,
            ws,
            inputs,
            &mut self.params,
            &mut self.state,
            &mut self.model_state,
            &mut table,
            k,
        );
        self.table = table;
        res?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }
}

/// How many full-batch steps one native call may run while a stop request (Ctrl-C) is waited
/// for: sized from the measured step time so that a call takes about `TARGET`, so the request
/// is seen within that much work whatever the log interval. A call this long makes the checks
/// between calls cost nothing measurable.
pub(super) struct InterruptibleChunk {
    pub(super) steps: u64,
}

impl InterruptibleChunk {
    const TARGET: std::time::Duration = std::time::Duration::from_millis(40);

    /// The first call runs one step, to measure it.
    pub(super) fn new() -> InterruptibleChunk {
        InterruptibleChunk { steps: 1 }
    }

    /// Sizes the next chunk from a call of `k` steps that took `took`; it grows at most
    /// fourfold per call, so a call too short to time well cannot make the next one overshoot
    /// the target by much.
    pub(super) fn measured(&mut self, k: u64, took: std::time::Duration) {
        let per_step = took.as_secs_f64() / k.max(1) as f64;
        let fits = (Self::TARGET.as_secs_f64() / per_step.max(1e-12)) as u64;
        self.steps = fits.clamp(1, k.saturating_mul(4).max(4));
    }
}

/// The workspace for one binding of the dimensions, allocated on first use (after checking it
/// fits in memory) and reused after.
pub(super) fn workspace<'w>(
    map: &'w mut HashMap<Vec<u64>, Workspace>,
    exe: &crate::runtime::Executable,
    syms: &[u64],
) -> Result<&'w mut Workspace, RunError> {
    if !map.contains_key(syms) {
        let ws = Workspace::new(&exe.plan, exe.dtype, syms)?;
        map.insert(syms.to_vec(), ws);
    }
    Ok(map.get_mut(syms).expect("inserted above"))
}
