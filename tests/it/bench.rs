//! The benchmark workloads are the models the benchmark definition describes: W8's parameter
//! count and products, and a first step near the loss of random tokens.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::{Dim, Op};
use adjoint::runtime::Buffer;
use adjoint::train::Trainer;

fn w8() -> CompiledModel {
    CompiledModel::from_model(model_of_source("w8.dsl", adjoint::bench::W8)).unwrap()
}

#[test]
fn w8_has_the_parameters_and_products_of_the_definition() {
    let c = w8();
    let g = c.model.graph();
    let params: u64 = g
        .params
        .iter()
        .map(|p| p.shape.fixed_elements().unwrap() as u64)
        .sum();
    assert_eq!(params, 429_664);
    // Multiply-adds of the forward products for one window of 64 tokens (n = 1).
    let f = &c.graphs.forward.graph;
    let mut macs = 0u64;
    for id in f.ids() {
        if *f.op(id) != Op::MatMul {
            continue;
        }
        let of = |d: &Dim| match d {
            Dim::Fixed(v) => *v,
            Dim::Sym(_) => 1,
        };
        let out: u64 = f.shape(id).0.iter().map(of).product();
        let a = f.shape(f.node(id).inputs[0]);
        macs += out * of(a.0.last().unwrap());
    }
    assert_eq!(macs / 64, 438_272);
}

#[test]
fn w8_starts_near_the_loss_of_random_tokens() {
    let c = w8();
    let batches = adjoint::bench::w8_batches();
    assert_eq!((batches.len(), batches[0][0].len()), (100, 16 * 64));
    // Labels are the next tokens of the same windows.
    assert_eq!(batches[0][0][1..64], batches[0][1][..63]);
    let mut t = Trainer::new(&c, 0);
    for b in &batches[..2] {
        let inputs: Vec<Buffer> = b
            .iter()
            .map(|v| Buffer::from_f64(adjoint::ir::DType::F32, v))
            .collect();
        let loss = t.train_steps(&inputs, 16, 1).unwrap();
        assert!((loss - 96f64.ln()).abs() < 0.1, "{loss}");
    }
}
