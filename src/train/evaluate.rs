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
        exe.run(ws, inputs, &self.params)?;
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
    pub fn evaluate_metrics(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<Metric>, RunError> {
        let syms = self.syms(rows);
        let exe = &self.compiled.forward;
        let ws = workspace(&mut self.fwd_ws, exe, &syms)?;
        exe.run(ws, inputs, &self.params)?;
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
