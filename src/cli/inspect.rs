//! `adjoint inspect`: the Hessian's extreme eigenvalues at a point, and on request the Hessian
//! itself and its leading eigenvectors.

use super::*;

pub(super) struct InspectOptions<'a> {
    pub data: Option<&'a Path>,
    /// Train as the model file says first.
    pub trained: bool,
    pub checkpoint: Option<&'a Path>,
    pub seed: u64,
    /// Write the dense Hessian here (.npy).
    pub hessian: Option<&'a Path>,
    /// Print the eigenvectors of this many largest eigenvalues.
    pub eigenvectors: Option<usize>,
    /// The Hessian of the loss over the data's first this many rows only (`--rows`); training
    /// (`trained`) still uses all of them.
    pub rows: Option<usize>,
}

/// The most parameters whose dense Hessian is written: 4096² f64 are 128 MiB.
const MAX_WRITTEN: usize = 4096;
/// The most parameters whose eigenvectors are computed: Jacobi's rotations cost n³ a sweep.
const MAX_EIGENVECTORS: usize = 1000;
/// Up to this many parameters, the eigenvalues come from the dense Hessian.
const MAX_DENSE_SPECTRUM: usize = 64;

pub(super) fn inspect(path: &Path, opts: &InspectOptions) -> Result<(), CliError> {
    let (file, model, dataset) = model_and_data(path, opts.data)?;
    let n: usize = model
        .graph()
        .params
        .iter()
        .map(|p| p.shape.as_fixed().unwrap().iter().product::<usize>())
        .sum();
    check_requests(opts, n)?;
    let inspected = opts
        .rows
        .map(|n| first_rows(dataset.as_ref(), n))
        .transpose()?;
    let compiled = compile_model(model.clone(), &file)?;
    let h = crate::inspect::hvp_graph(&compiled.graphs.forward);
    check_memory(opts, &compiled, &h, dataset.as_ref(), inspected.as_ref())?;
    let mut trainer = Trainer::new(&compiled, opts.seed);
    if let Some(c) = opts.checkpoint {
        crate::resume::load_params(&mut trainer, c).map_err(bad_input)?;
    }
    if opts.trained {
        trainer
            .fit(dataset.as_ref(), &model.train, |_| {})
            .map_err(bad_input)?;
    }
    let point = point_of(&trainer, &model, inspected.as_ref().or(dataset.as_ref()));
    let dense = (n <= MAX_DENSE_SPECTRUM || opts.hessian.is_some() || opts.eigenvectors.is_some())
        .then(|| crate::inspect::hessian(&h, &point));
    let spectrum = match (&dense, opts.eigenvectors) {
        (Some(d), Some(_)) => Some(crate::inspect::symmetric_eigen(d)),
        _ => None,
    };
    let (lo, hi, how) = match (&dense, &spectrum) {
        (_, Some(s)) => (s[0].0, s[s.len() - 1].0, "full Hessian".to_string()),
        (Some(d), None) if n <= MAX_DENSE_SPECTRUM => {
            let ev = crate::inspect::symmetric_eigenvalues(d);
            (ev[0], ev[ev.len() - 1], "full Hessian".to_string())
        }
        _ => {
            let mut rng = crate::init::rng(opts.seed);
            let (lo, hi) = crate::inspect::lanczos_extremes(&h, &point, 40, &mut rng);
            (lo, hi, "Lanczos, 40 Hessian-vector products".to_string())
        }
    };
    let at = match (opts.trained, opts.checkpoint) {
        (true, _) => "the trained point".to_string(),
        (_, Some(c)) => format!("the point in {}", c.display()),
        _ => "the initial point".to_string(),
    };
    say!("inspect {} at {at} ({n} parameters; {how})", file.name);
    say!("  largest eigenvalue   λmax = {hi:.6e}");
    say!("  smallest eigenvalue  λmin = {lo:.6e}");
    if lo > 0.0 {
        say!("  condition number     κ = λmax/λmin = {:.6e}", hi / lo);
    } else {
        say!(
            "  condition number     κ = ∞ (λmin ≤ 0: the Hessian is not positive definite here; a saddle or a flat direction)"
        );
    }
    if hi > 0.0 {
        say!(
            "  largest stable gradient-descent step 2/λmax = {:.6e}",
            2.0 / hi
        );
    }
    if let (Some(out), Some(d)) = (opts.hessian, &dense) {
        let flat: Vec<f64> = d.iter().flatten().copied().collect();
        std::fs::write(out, crate::data::npy_bytes(&[n, n], &flat))
            .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", out.display())))?;
        say!("hessian: {} ({n} × {n} f64)", out.display());
    }
    if let (Some(k), Some(s)) = (opts.eigenvectors, &spectrum) {
        print_eigenvectors(&model, s, k);
    }
    Ok(())
}

/// Refuses, before any work, an inspection that would not fit in memory: the Hessian's products
/// over the inspected rows, after training on all of them when `--trained` says so.
fn check_memory(
    opts: &InspectOptions,
    compiled: &crate::compile::CompiledModel,
    hvp: &crate::model::GraphFn,
    dataset: Option<&data::Dataset>,
    inspected: Option<&data::Dataset>,
) -> Result<(), CliError> {
    use crate::memory::{Rows, Run, check};
    let batch = compiled.model.train.batch;
    let Some(subset) = inspected else {
        let run = Run::Inspection {
            hvp,
            trained: opts.trained,
        };
        return check(run, compiled, Rows::of(dataset, batch))
            .map(drop)
            .map_err(|e| fewer_rows_hint(e, "inspect", dataset));
    };
    if opts.trained {
        check(Run::Training, compiled, Rows::of(dataset, batch)).map_err(bad_input)?;
    }
    let run = Run::Inspection {
        hvp,
        trained: false,
    };
    check(run, compiled, Rows::of(Some(subset), batch))
        .map(drop)
        .map_err(bad_input)
}

/// Refuses, before any work, what cannot be done for a model of `n` parameters.
fn check_requests(opts: &InspectOptions, n: usize) -> Result<(), CliError> {
    if let Some(out) = opts.hessian {
        if out.extension().is_none_or(|e| e != "npy") {
            return Err(CliError::BadInput(format!(
                "--hessian {}: the Hessian is written as a NumPy array; name a .npy file",
                out.display()
            )));
        }
        if n > MAX_WRITTEN {
            return Err(CliError::BadInput(format!(
                "--hessian: the model has {n} parameters; the dense Hessian is written for at most {MAX_WRITTEN}"
            )));
        }
    }
    if let Some(k) = opts.eigenvectors {
        if k == 0 || k > n {
            return Err(CliError::BadInput(format!(
                "--eigenvectors takes a count from 1 to the number of parameters ({n}); found {k}"
            )));
        }
        if n > MAX_EIGENVECTORS {
            return Err(CliError::BadInput(format!(
                "--eigenvectors: the model has {n} parameters; eigenvectors are computed for at most {MAX_EIGENVECTORS}"
            )));
        }
    }
    Ok(())
}

/// The eigenvectors of the `k` largest eigenvalues, largest first, with their entries in
/// parameter order.
fn print_eigenvectors(model: &crate::model::Model, spectrum: &[(f64, Vec<f64>)], k: usize) {
    let layout: Vec<String> = model
        .graph()
        .params
        .iter()
        .map(|p| match p.shape.as_fixed().unwrap()[..] {
            [] => p.name.clone(),
            ref dims => format!("{}{dims:?}", p.name),
        })
        .collect();
    say!(
        "eigenvectors of the {k} largest eigenvalues (unit length; entries in the order {}):",
        layout.join(", ")
    );
    for (lambda, v) in spectrum.iter().rev().take(k) {
        let entries: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
        say!("  λ = {lambda:.6e}: [{}]", entries.join(", "));
    }
}
