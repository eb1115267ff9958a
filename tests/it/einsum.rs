//! `einsum` against its definition: for each spec, the interpreter running the desugared graph
//! against a written-out sum over every assignment of the letters.

use crate::support::*;
use adjoint::ir::Tensor;

/// Specs and operand shapes: attention's two products, a batch letter in one operand only, an
/// outer product, contractions over one and two letters, sums, permutations, the implicit form
/// and a scalar operand.
const CASES: &[(&str, &[&[usize]])] = &[
    ("bhqd,bhkd->bhqk", &[&[2, 3, 4, 5], &[2, 3, 6, 5]]),
    ("bhqk,bhkd->bhqd", &[&[2, 3, 4, 6], &[2, 3, 6, 5]]),
    ("bhqd,dk->bhqk", &[&[2, 2, 3, 4], &[4, 5]]),
    ("i,j->ij", &[&[3], &[4]]),
    ("ij,kl->ijkl", &[&[2, 3], &[2, 2]]),
    ("ijk,jkl->il", &[&[2, 3, 4], &[3, 4, 5]]),
    ("xyz,zyw->wx", &[&[2, 3, 4], &[4, 3, 2]]),
    ("ij,jk->ik", &[&[3, 4], &[4, 2]]),
    ("ij,jk->ki", &[&[3, 4], &[4, 2]]),
    ("ij,jk", &[&[3, 4], &[4, 2]]),
    ("ij,ij->i", &[&[3, 4], &[3, 4]]),
    ("i,i->", &[&[5], &[5]]),
    ("ijk,ikl->ijl", &[&[2, 3, 4], &[2, 4, 5]]),
    ("bij,bjk->bk", &[&[2, 3, 4], &[2, 4, 5]]),
    ("abc,cd->abd", &[&[2, 3, 4], &[4, 5]]),
    ("i,->i", &[&[4], &[]]),
    ("ij->ji", &[&[3, 4]]),
    ("ijk->kj", &[&[2, 3, 4]]),
    ("ij->", &[&[3, 4]]),
];

fn dims_text(dims: &[usize]) -> String {
    if dims.is_empty() {
        return String::new();
    }
    let d: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", d.join(", "))
}

/// The output letters: as written, or numpy's implicit ones (appearing once, sorted).
fn output_of(spec: &str) -> String {
    match spec.split_once("->") {
        Some((_, out)) => out.to_string(),
        None => {
            let mut once: Vec<char> = spec
                .chars()
                .filter(|c| c.is_ascii_alphabetic() && spec.matches(*c).count() == 1)
                .collect();
            once.sort_unstable();
            once.into_iter().collect()
        }
    }
}

/// The sum the spec stands for, over every assignment of its letters.
fn written_out(spec: &str, operands: &[&Tensor]) -> (Vec<usize>, Vec<f64>) {
    let inputs: Vec<&str> = spec.split("->").next().unwrap().split(',').collect();
    let out = output_of(spec);
    let mut letters: Vec<char> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    for (term, t) in inputs.iter().zip(operands) {
        for (c, &n) in term.chars().zip(&t.shape) {
            if !letters.contains(&c) {
                letters.push(c);
                sizes.push(n);
            }
        }
    }
    let size_of = |c: char| sizes[letters.iter().position(|&l| l == c).unwrap()];
    let out_shape: Vec<usize> = out.chars().map(size_of).collect();
    let mut result = vec![0.0; out_shape.iter().product()];
    let offset = |term: &str, shape: &[usize], at: &[usize]| {
        term.chars().zip(shape).fold(0, |acc, (c, &n)| {
            acc * n + at[letters.iter().position(|&l| l == c).unwrap()]
        })
    };
    let total: usize = sizes.iter().product();
    let mut at = vec![0usize; letters.len()];
    for _ in 0..total {
        let product: f64 = inputs
            .iter()
            .zip(operands)
            .map(|(term, t)| t.data[offset(term, &t.shape, &at)])
            .product();
        result[offset(&out, &out_shape, &at)] += product;
        for d in (0..at.len()).rev() {
            at[d] += 1;
            if at[d] < sizes[d] {
                break;
            }
            at[d] = 0;
        }
    }
    (out_shape, result)
}

/// The value of `einsum(spec, …)` under the interpreter: the gradient of
/// `sum(einsum(spec, …) * E)` with respect to `E`.
#[test]
fn einsum_matches_the_written_out_sum() {
    for (seed, &(spec, shapes)) in (0..).zip(CASES) {
        let names = ["A", "B"];
        let mut src = String::from("dtype f64\n");
        for (name, dims) in names.iter().zip(shapes.iter()) {
            src += &format!("param {name}{} ~ normal(0, 1)\n", dims_text(dims));
        }
        let model0 = model_of_source("einsum.dsl", &format!("{src}loss sum(A)\n"));
        let operands: Vec<&str> = names[..shapes.len()].to_vec();
        let call = format!("einsum(\"{spec}\", {})", operands.join(", "));
        let p0 = random_point(model0.graph(), 1, seed);
        let want = written_out(spec, &p0.params.iter().collect::<Vec<_>>());
        src += &format!(
            "param E{} ~ normal(0, 1)\nloss sum({call} * E)\n",
            dims_text(&want.0)
        );
        let model = model_of_source("einsum.dsl", &src);
        let mut p = random_point(model.graph(), 1, seed);
        p.params.truncate(shapes.len());
        p.params.push(Tensor::new(
            want.0.clone(),
            vec![1.0; want.0.iter().product()],
        ));
        let grads = interp_outputs(&adjoint::compile::graphs(&model).gradient, &p);
        let got = &grads[1 + shapes.len()];
        assert_eq!(got.shape, want.0, "{spec}: shape");
        let err = normwise_err(&got.data, &want.1, 1e-300);
        assert!(
            err <= 1e-12,
            "{spec}: differs from the written-out sum by {err:e}\n  got  {:?}\n  want {:?}",
            head(&got.data),
            head(&want.1)
        );
    }
}
