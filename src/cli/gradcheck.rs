//! `adjoint gradcheck`: the compiled gradient against central differences.

use super::*;

pub(super) struct GradcheckOptions<'a> {
    pub data: Option<&'a Path>,
    /// Check at the parameters saved here instead of the initial ones.
    pub checkpoint: Option<&'a Path>,
    pub points: usize,
    pub tolerance: f64,
    pub seed: u64,
    /// Only the first this many rows (`--rows`).
    pub rows: Option<usize>,
}

pub(super) fn gradcheck(path: &Path, opts: &GradcheckOptions) -> Result<(), CliError> {
    // A negative tolerance fails every check, and an infinite one passes every finite one.
    if !(opts.tolerance.is_finite() && opts.tolerance >= 0.0) {
        return Err(CliError::BadInput(format!(
            "--tolerance must be a finite number ≥ 0, found {}",
            opts.tolerance
        )));
    }
    let (file, model, dataset) = model_and_data(path, opts.data)?;
    let dataset = match opts.rows {
        Some(n) => Some(first_rows(dataset.as_ref(), n)?),
        None => dataset,
    };
    let compiled = compile_model(model.clone(), &file)?;
    let rows = crate::memory::Rows::of(dataset.as_ref(), None);
    crate::memory::check(crate::memory::Run::GradientCheck, &compiled, rows)
        .map_err(|e| fewer_rows_hint(e, "check", dataset.as_ref()))?;
    let mut rng = crate::init::rng(opts.seed);
    let mut trainer = Trainer::new(&compiled, opts.seed);
    if let Some(c) = opts.checkpoint {
        crate::resume::load_params(&mut trainer, c).map_err(bad_input)?;
    }
    let rows = dataset.as_ref().map_or(0, |d| d.n_rows);
    let inputs = match &dataset {
        Some(d) => crate::train::in_dtype(&d.inputs, crate::ir::DType::F64),
        None => std::borrow::Cow::Owned(vec![]),
    };
    say!(
        "gradcheck {}: the compiled gradient (f64) against central differences of the loss, by relative error beyond the differences' own rounding error",
        file.name
    );
    let tolerance = opts.tolerance;
    let mut worst: f64 = 0.0;
    let mut failed_point = None;
    let mut non_finite = Vec::new();
    for k in 0..=opts.points {
        if k > 0 {
            // A random point near the first one, on the scale of each parameter.
            for p in trainer.params.iter_mut() {
                for i in 0..p.len() {
                    let x = p.get(i);
                    p.set(
                        i,
                        x + 0.5 * crate::init::std_normal(&mut rng) * x.abs().max(0.1),
                    );
                }
            }
        }
        let point = point_of(&trainer, &model, dataset.as_ref());
        let loss = trainer.value_and_grad(&inputs, rows).map_err(failed)?;
        let grads: Vec<Vec<f64>> = (0..model.graph().params.len())
            .map(|i| trainer.gradient(i, rows).unwrap().to_f64())
            .collect();
        let label = match (k, opts.checkpoint) {
            (0, Some(_)) => "checkpoint".to_string(),
            (0, None) => "initial point".to_string(),
            _ => format!("random point {k}"),
        };
        let found = non_finite_values(&model, &label, loss, &grads, &point);
        if !found.is_empty() {
            for f in &found {
                say!("  {f}");
            }
            non_finite.extend(found);
            continue;
        }
        let checks =
            crate::inspect::gradcheck(&compiled.graphs.forward, &grads, &point, &mut rng, 32);
        for c in &checks {
            say!(
                "  {label:<16} {:<16} worst relative error beyond rounding {:.2e}",
                c.name,
                c.worst
            );
            worst = worst.max(c.worst);
        }
        if checks
            .iter()
            .any(|c| c.worst > tolerance || c.worst.is_nan())
            && failed_point.is_none()
        {
            failed_point = Some(point);
        }
    }
    if !non_finite.is_empty() {
        say!(
            "FAILED: {} non-finite value(s); a gradient cannot be checked where the loss or its derivative is not a number",
            non_finite.len()
        );
        return Err(CliError::CheckFailed);
    }
    match failed_point {
        None => {
            say!(
                "ok: worst relative error beyond rounding {worst:.2e} (tolerance {tolerance:.0e})"
            );
            Ok(())
        }
        Some(point) => {
            say!(
                "FAILED: worst relative error beyond rounding {worst:.2e} exceeds {tolerance:.0e}"
            );
            match crate::inspect::blame(&compiled.graphs.forward, &point, &mut rng, tolerance) {
                Some(b) => say!("{}", crate::inspect::describe_blame(&b, &file)),
                None => say!(
                    "no single derivative rule disagrees on its own; the error comes from their combination"
                ),
            }
            Err(CliError::CheckFailed)
        }
    }
}

/// One line for the loss, and one for each parameter's derivative, that is not finite at a
/// point; each names the point (with its scalar parameters' values) and the parameter.
fn non_finite_values(
    model: &crate::model::Model,
    label: &str,
    loss: f64,
    grads: &[Vec<f64>],
    point: &crate::inspect::Point,
) -> Vec<String> {
    let params = &model.graph().params;
    let at: Vec<String> = params
        .iter()
        .zip(&point.params)
        .filter(|(_, t)| t.len() == 1)
        .map(|(p, t)| format!("{} = {}", p.name, fmt_number(t.data[0])))
        .collect();
    let at = if at.is_empty() {
        label.to_string()
    } else {
        format!("{label} ({})", at.join(", "))
    };
    let loss_name = &model.loss_name;
    let mut lines = Vec::new();
    if !loss.is_finite() {
        lines.push(format!("{at}: the loss `{loss_name}` is {loss}"));
    }
    for (p, g) in params.iter().zip(grads) {
        if let Some((i, v)) = g.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let element = if g.len() == 1 {
                String::new()
            } else {
                format!(" (element {i})")
            };
            lines.push(format!(
                "{at}: the derivative of `{loss_name}` with respect to `{}` is {v}{element}",
                p.name
            ));
        }
    }
    lines
}
