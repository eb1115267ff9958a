//! Compiled optimizer update loops against the plain-Rust reference trajectory.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::runtime::Buffer;

fn check_trajectory(optimizer: &str) {
    let src = format!("dtype f64\nparam a[3, 2] ~ normal(0, 1)\nparam b ~ normal(0, 1)\nloss sum(a^2) + b^2\noptimizer {optimizer}\n");
    let compiled = CompiledModel::from_model(model_of_source("opt.dsl", &src)).unwrap();
    let spec = compiled.model.optimizer.clone();
    let n_state = spec.kind.state_arrays();
    let sizes = [6usize, 1];
    let mut params: Vec<Buffer> = sizes.iter().enumerate().map(|(i, &n)| Buffer::F64((0..n).map(|j| 0.3 * j as f64 - 0.5 + i as f64).collect())).collect();
    let mut state: Vec<Buffer> = sizes.iter().flat_map(|&n| (0..n_state).map(move |_| Buffer::F64(vec![0.0; n]))).collect();
    let mut ref_params: Vec<Vec<f64>> = params.iter().map(|p| p.to_f64()).collect();
    let mut ref_state: Vec<Vec<Vec<f64>>> = sizes.iter().map(|&n| vec![vec![0.0; n]; n_state]).collect();
    for t in 1..=7u64 {
        // Gradients that change sign and scale from step to step.
        let grads: Vec<Vec<f64>> = sizes.iter().map(|&n| (0..n).map(|j| ((t * 7 + j as u64) as f64).sin() * 10f64.powi(t as i32 % 3 - 1)).collect()).collect();
        let gbufs: Vec<Buffer> = grads.iter().map(|g| Buffer::F64(g.clone())).collect();
        let grefs: Vec<&Buffer> = gbufs.iter().collect();
        compiled.update.run(&mut params, &grefs, &mut state, &spec.step_scalars(t)).unwrap();
        for i in 0..sizes.len() {
            spec.reference_step(t, &mut ref_params[i], &grads[i], &mut ref_state[i]);
            let err = max_rel_err(&params[i].to_f64(), &ref_params[i], 1e-300);
            assert!(err <= 1e-12, "{optimizer} step {t}: param {i} differs from the reference by {err:e}");
        }
    }
}

#[test]
fn sgd_update_matches_reference() {
    check_trajectory("sgd(lr = 0.05)");
}

#[test]
fn adam_update_matches_reference_with_bias_correction() {
    check_trajectory("adam(lr = 0.1, beta1 = 0.8, beta2 = 0.99, eps = 1e-6)");
    check_trajectory("adam");
}

#[test]
fn adam_first_step_moves_each_coordinate_by_lr() {
    // With bias correction, the first Adam step is lr · g/|g| (up to ε) whatever the scale of g.
    let src = "dtype f64\nparam x[2] ~ zeros\nloss sum(x * 0)\noptimizer adam(lr = 0.5, eps = 1e-12)\n";
    let compiled = CompiledModel::from_model(model_of_source("a.dsl", src)).unwrap();
    let mut params = vec![Buffer::F64(vec![0.0, 0.0])];
    let mut state = vec![Buffer::F64(vec![0.0; 2]), Buffer::F64(vec![0.0; 2])];
    let g = Buffer::F64(vec![1e-4, -300.0]);
    compiled.update.run(&mut params, &[&g], &mut state, &compiled.model.optimizer.step_scalars(1)).unwrap();
    let p = params[0].to_f64();
    assert!((p[0] + 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-9, "{p:?}");
}

#[test]
fn f32_update_tracks_the_reference() {
    let src = "param a[4] ~ zeros\nloss sum(a^2)\noptimizer adam(lr = 0.01)\n";
    let compiled = CompiledModel::from_model(model_of_source("a.dsl", src)).unwrap();
    assert_eq!(compiled.model.graph().dtype, DType::F32);
    let mut params = vec![Buffer::F32(vec![1.0, -2.0, 3.0, 0.5])];
    let mut state = vec![Buffer::F32(vec![0.0; 4]), Buffer::F32(vec![0.0; 4])];
    let mut reference = params[0].to_f64();
    let mut ref_state = vec![vec![0.0; 4]; 2];
    for t in 1..=20 {
        let g: Vec<f64> = reference.iter().map(|x| 2.0 * x).collect();
        let gb = Buffer::F32(params[0].to_f64().iter().map(|x| 2.0 * *x as f32).collect());
        compiled.update.run(&mut params, &[&gb], &mut state, &compiled.model.optimizer.step_scalars(t)).unwrap();
        compiled.model.optimizer.reference_step(t, &mut reference, &g, &mut ref_state);
    }
    assert!(max_rel_err(&params[0].to_f64(), &reference, 1e-3) < 1e-5);
}
