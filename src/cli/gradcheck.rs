//! `adjoint gradcheck`: the compiled gradient against central differences.

use super::*;

pub(super) fn gradcheck(
    path: &Path,
    data: Option<&Path>,
    points: usize,
    tolerance: f64,
    seed: u64,
) -> Result<(), CliError> {
    let (file, model, dataset) = model_and_data(path, data)?;
    let compiled = compile_model(model.clone(), &file)?;
    let mut rng = crate::init::rng(seed);
    let mut trainer = Trainer::new(&compiled, seed);
    let rows = dataset.as_ref().map_or(0, |d| d.n_rows);
    let inputs: Vec<crate::runtime::Buffer> = dataset.as_ref().map_or(vec![], |d| {
        d.inputs
            .iter()
            .map(|v| crate::runtime::Buffer::F64(v.clone()))
            .collect()
    });
    println!(
        "gradcheck {}: the compiled gradient (f64) against central differences of the loss",
        file.name
    );
    let mut worst: f64 = 0.0;
    let mut failed_point = None;
    for k in 0..=points {
        if k > 0 {
            // A random point near the initial one, on the scale of each parameter.
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
        trainer.value_and_grad(&inputs, rows).map_err(failed)?;
        let grads: Vec<Vec<f64>> = (0..model.graph().params.len())
            .map(|i| trainer.gradient(i, rows).unwrap().to_f64())
            .collect();
        let checks =
            crate::inspect::gradcheck(&compiled.graphs.forward, &grads, &point, &mut rng, 32);
        let label = if k == 0 {
            "initial point".to_string()
        } else {
            format!("random point {k}")
        };
        for c in &checks {
            println!(
                "  {label:<16} {:<16} worst relative error {:.2e}",
                c.name, c.worst
            );
            worst = worst.max(c.worst);
        }
        if checks.iter().any(|c| c.worst > tolerance) && failed_point.is_none() {
            failed_point = Some(point);
        }
    }
    match failed_point {
        None => {
            println!("ok: worst relative error {worst:.2e} (tolerance {tolerance:.0e})");
            Ok(())
        }
        Some(point) => {
            println!("FAILED: worst relative error {worst:.2e} exceeds {tolerance:.0e}");
            match crate::inspect::blame(&compiled.graphs.forward, &point, &mut rng, tolerance) {
                Some(b) => println!("{}", crate::inspect::describe_blame(&b, &file)),
                None => println!(
                    "no single derivative rule disagrees on its own; the error comes from their combination"
                ),
            }
            Err(CliError::CheckFailed)
        }
    }
}
