//! `adjoint inspect`: the Hessian's extreme eigenvalues at a point.

use super::*;

pub(super) fn inspect(
    path: &Path,
    data: Option<&Path>,
    trained: bool,
    checkpoint: Option<&Path>,
    seed: u64,
) -> Result<(), CliError> {
    let (file, model, dataset) = model_and_data(path, data)?;
    let compiled = compile_model(model.clone(), &file)?;
    let mut trainer = Trainer::new(&compiled, seed);
    if let Some(c) = checkpoint {
        crate::resume::load_params(&mut trainer, c).map_err(bad_input)?;
    }
    if trained {
        trainer
            .fit(dataset.as_ref(), &model.train, |_| {})
            .map_err(bad_input)?;
    }
    let point = point_of(&trainer, &model, dataset.as_ref());
    let h = crate::inspect::hvp_graph(&compiled.graphs.forward);
    let n: usize = point.params.iter().map(|p| p.len()).sum();
    let (lo, hi, how) = if n <= 64 {
        let ev = crate::inspect::symmetric_eigenvalues(&crate::inspect::hessian(&h, &point));
        (ev[0], ev[ev.len() - 1], "full Hessian".to_string())
    } else {
        let mut rng = crate::init::rng(seed);
        let (lo, hi) = crate::inspect::lanczos_extremes(&h, &point, 40, &mut rng);
        (lo, hi, "Lanczos, 40 Hessian-vector products".to_string())
    };
    let at = match (trained, checkpoint) {
        (true, _) => "the trained point".to_string(),
        (_, Some(c)) => format!("the point in {}", c.display()),
        _ => "the initial point".to_string(),
    };
    println!("inspect {} at {at} ({n} parameters; {how})", file.name);
    println!("  largest eigenvalue   λmax = {hi:.6e}");
    println!("  smallest eigenvalue  λmin = {lo:.6e}");
    if lo > 0.0 {
        println!("  condition number     κ = λmax/λmin = {:.6e}", hi / lo);
    } else {
        println!(
            "  condition number     κ = ∞ (λmin ≤ 0: the Hessian is not positive definite here; a saddle or a flat direction)"
        );
    }
    if hi > 0.0 {
        println!(
            "  largest stable gradient-descent step 2/λmax = {:.6e}",
            2.0 / hi
        );
    }
    Ok(())
}
