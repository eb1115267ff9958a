//! Evaluation and prediction: the loss, metrics and outputs of a model on given rows.

use super::*;

impl Trainer {
    /// The model's `output` values on a batch: one array per output, a row per data row.
    pub fn predict(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<(String, crate::ir::Tensor)>, RunError> {
        let syms = self.syms(rows);
        let Some(exe) = &self.compiled.predict else {
            return Ok(vec![]);
        };
        let ws = workspace(&mut self.pred_ws, exe, &syms)?;
        exe.run_with_state(ws, inputs, &self.params, &self.model_state, 0)?;
        let outputs = &self
            .compiled
            .graphs
            .predict
            .as_ref()
            .expect("compiled with its graph")
            .outputs;
        Ok(outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| {
                let shape = self
                    .compiled
                    .graphs
                    .predict
                    .as_ref()
                    .unwrap()
                    .graph
                    .shape(*id)
                    .concrete(&syms);
                (
                    name.clone(),
                    crate::ir::Tensor::new(shape, ws.output(&exe.plan, k).to_f64()),
                )
            })
            .collect())
    }

    /// The loss and each metric on a batch, with their names; a vector metric's elements are
    /// entries of their own, `name[i]`.
    pub fn evaluate(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<(String, f64)>, RunError> {
        Ok(self
            .evaluate_metrics(inputs, rows)?
            .into_iter()
            .flat_map(|m| match m.values[..] {
                [v] if !m.is_vector => vec![(m.name, v)],
                _ => m
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{}[{i}]", m.name), *v))
                    .collect(),
            })
            .collect())
    }

    /// The loss and each metric on a batch, a vector metric as one entry with all its values.
    /// Many rows are evaluated in chunks of bounded workspace (`chunks`), combined exactly.
    pub fn evaluate_metrics(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<Metric>, RunError> {
        match crate::chunks::chunking(&self.compiled, rows, |r| self.syms(r)) {
            Some(chunking) => self.evaluate_in_chunks(inputs, rows, &chunking),
            None => self.evaluate_once(inputs, rows),
        }
    }

    /// `evaluate_metrics` one chunk of rows at a time, each row input's rows copied out in turn.
    pub fn evaluate_in_chunks(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
        chunking: &crate::chunks::Chunking,
    ) -> Result<Vec<Metric>, RunError> {
        let dtype = self.compiled.model.graph().dtype;
        let is_rows: Vec<bool> = (0..inputs.len())
            .map(|k| self.compiled.model.is_row_input(k))
            .collect();
        let mut part: Vec<Buffer> = inputs
            .iter()
            .zip(&is_rows)
            .map(|(b, &by_rows)| match by_rows {
                true => Buffer::zeros(dtype, 0),
                false => b.clone(),
            })
            .collect();
        let mut combined = crate::chunks::Combined::default();
        let mut metrics = vec![];
        let mut order = Vec::with_capacity(chunking.rows);
        for start in (0..rows).step_by(chunking.rows) {
            let stop = (start + chunking.rows).min(rows);
            order.clear();
            order.extend(start..stop);
            for (k, input) in inputs.iter().enumerate() {
                if is_rows[k] {
                    input.gather_rows(input.len() / rows, &order, &mut part[k]);
                }
            }
            metrics = self.evaluate_once(&part, stop - start)?;
            let values: Vec<Vec<f64>> = metrics.iter().map(|m| m.values.clone()).collect();
            combined.add(&chunking.rules, &values, stop - start, rows);
        }
        for (m, values) in metrics.iter_mut().zip(combined.values) {
            m.values = values;
        }
        Ok(metrics)
    }

    /// The loss and each metric on a batch, in one pass.
    pub fn evaluate_once(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<Metric>, RunError> {
        let syms = self.syms(rows);
        let exe = &self.compiled.forward;
        let ws = workspace(&mut self.fwd_ws, exe, &syms)?;
        exe.run_with_state(ws, inputs, &self.params, &self.model_state, 0)?;
        let f = &self.compiled.graphs.forward;
        Ok(f.outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| Metric {
                name: name.clone(),
                values: ws.output(&exe.plan, k).to_f64(),
                is_vector: !f.graph.shape(*id).is_scalar(),
            })
            .collect())
    }
}
