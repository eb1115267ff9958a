//! `adjoint race`: optimizers raced over a two-parameter loss, drawn over its contours.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn race(
    path: &Path,
    optimizers: &[String],
    lrs: &[f64],
    steps: u64,
    out: &Path,
    animate: Option<&Path>,
    xr: &[f64],
    yr: &[f64],
    minimum: &[f64],
) -> Result<(), CliError> {
    outputs::picture("--out", out)?;
    if let Some(a) = animate {
        outputs::animation("--animate", a)?;
    }
    let (file, model, _) = load_model(path)?;
    let g = model.graph();
    if g.params.len() != 2 || g.params.iter().any(|p| !p.shape.is_scalar()) || !g.inputs.is_empty()
    {
        return Err(CliError::BadInput(format!(
            "`race` needs a loss of exactly two scalar parameters and no data; {} has {} parameter(s)",
            file.name,
            g.params.len()
        )));
    }
    if !lrs.is_empty() && lrs.len() != 1 && lrs.len() != optimizers.len() {
        return Err(CliError::BadInput(format!(
            "give one learning rate, or one per optimizer ({})",
            optimizers.len()
        )));
    }
    // Every optimizer and rate is checked before the first one runs.
    let mut entrants = Vec::with_capacity(optimizers.len());
    for (i, name) in optimizers.iter().enumerate() {
        let Some(kind) = crate::optim::OptimizerKind::from_name(name) else {
            return Err(CliError::BadInput(format!("unknown optimizer `{name}`")));
        };
        let mut m = model.clone();
        m.optimizer = model.optimizer.with_kind(kind);
        if let Some(lr) = lrs.get(i).or(lrs.first()) {
            m.optimizer
                .set("lr", *lr)
                .map_err(|e| CliError::BadInput(format!("--lr: {e}")))?;
        }
        let label = format!("{name} (lr {})", fmt_number(m.optimizer.get("lr")));
        entrants.push((label, m));
    }
    let mut trajectories = Vec::new();
    let mut surface: Option<CompiledModel> = None;
    for (label, m) in entrants {
        let compiled = compile_model(m, &file)?;
        let rows = crate::memory::Rows::of(None, None);
        crate::memory::check(crate::memory::Run::Race, &compiled, rows).map_err(bad_input)?;
        let mut t = Trainer::new(&compiled, 0);
        t.total_steps = steps;
        let mut points = vec![(t.params[0].get(0), t.params[1].get(0))];
        for _ in 0..steps {
            if t.optimizer_step(&[], 0).is_err() {
                break;
            }
            points.push((t.params[0].get(0), t.params[1].get(0)));
        }
        let last = points[points.len() - 1];
        let dtype = compiled.model.graph().dtype;
        say!(
            "{label:<24} ends at ({}, {})",
            decimal::shortest(last.0, dtype),
            decimal::shortest(last.1, dtype)
        );
        trajectories.push(crate::plot::Trajectory {
            name: label,
            points,
        });
        surface.get_or_insert(compiled);
    }
    let Some(surface) = surface else {
        return Err(CliError::BadInput("no optimizers given".into()));
    };
    // The loss surface, evaluated by the compiled forward function.
    let trainer = std::cell::RefCell::new(Trainer::new(&surface, 0));
    let f = |x: f64, y: f64| {
        let mut t = trainer.borrow_mut();
        t.params[0].set(0, x);
        t.params[1].set(0, y);
        t.evaluate(&[], 0).map(|v| v[0].1).unwrap_or(f64::NAN)
    };
    // A diverging path is named, and cut at the frame: the axes fit the others.
    let diverged: Vec<bool> = trajectories
        .iter()
        .map(|t| match divergence(t, &f) {
            Some(why) => {
                eprintln!(
                    "warning: {} diverged ({why}); its path is cut at the edge of the plot",
                    t.name
                );
                true
            }
            None => false,
        })
        .collect();
    let range = |given: &[f64], k: usize| -> (f64, f64) {
        if let [lo, hi] = given {
            return (*lo, *hi);
        }
        let vals: Vec<f64> = trajectories
            .iter()
            .zip(&diverged)
            .flat_map(|(t, &away)| {
                let shown = if away { &t.points[..1] } else { &t.points[..] };
                shown.iter().map(move |p| if k == 0 { p.0 } else { p.1 })
            })
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.15).max(0.5);
        (lo - pad, hi + pad)
    };
    let (x, y) = (range(xr, 0), range(yr, 1));
    let min = match minimum {
        [a, b] => Some((*a, *b)),
        _ => None,
    };
    let title = format!(
        "{}: {} steps",
        file.name.rsplit('/').next().unwrap_or(&file.name),
        steps
    );
    crate::plot::race_still(out, &title, &f, x, y, &trajectories, min).map_err(bad_input)?;
    say!("plot: {}", out.display());
    if let Some(a) = animate {
        crate::plot::race_animation(a, &title, &f, x, y, &trajectories, min).map_err(bad_input)?;
        say!("animation: {}", a.display());
    }
    Ok(())
}

/// Why a path counts as diverged: it reached a non-finite point or loss, or it ended with a
/// higher loss than it started with.
fn divergence(t: &crate::plot::Trajectory, f: &dyn Fn(f64, f64) -> f64) -> Option<String> {
    let (first, last) = (t.points[0], t.points[t.points.len() - 1]);
    let steps = t.points.len() - 1;
    if let Some(k) = t
        .points
        .iter()
        .position(|p| !(p.0.is_finite() && p.1.is_finite()))
    {
        return Some(format!("a parameter became non-finite at step {k}"));
    }
    let (start, end) = (f(first.0, first.1), f(last.0, last.1));
    if !end.is_finite() {
        return Some(format!("the loss became {end} by step {steps}"));
    }
    (end > start).then(|| {
        format!(
            "the loss rose from {} at the start to {} at step {steps}",
            fmt_number(start),
            fmt_number(end)
        )
    })
}
