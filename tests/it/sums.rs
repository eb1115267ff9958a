//! Sums of many terms: added in blocks (`lower::sum_blocks`), so that an f32 sum's rounding
//! error grows with the block and the number of blocks, not with the number of terms.

use crate::support::{adjoint_succeeds, model_of_source, repo};
use adjoint::checkpoint::{Checkpoint, TensorData, load};
use adjoint::compile;
use adjoint::lower::sum_blocks::SUM_BLOCK;

const SUM: &str = "dtype f32\ninput x[n]\nparam w = 1\nloss sum(x) * w\n";

/// The loss of `SUM` on `x`, through the embedding API.
fn sum_of(source: &str, x: &[f64]) -> f64 {
    let model = compile(source).unwrap();
    let mut s = model.session(0).unwrap();
    s.set_input("x", x, &[x.len()]).unwrap();
    s.value_and_grad().unwrap().0
}

/// 2^20 copies of 0.1 (as f32): added in order, each lane of the f32x4 accumulator adds 2^18
/// of them, and once a lane's total passes 2^14 every addition rounds by up to half an ulp
/// there (2^-10) in the same direction: 0.25% too much. In blocks of b terms, the vector
/// accumulator adds b/4 terms per lane, the horizontal sum and the tail 2 more, and the
/// block's total joins the output in one of n/b additions, so the error is at most
/// (b/4 + 2 + n/b)·u·Σ|x| with u = 2^-24 the unit roundoff of f32 (1.3e-4 for b = 512).
#[test]
fn a_long_f32_sum_stays_within_the_bound_of_its_blocks() {
    let n = 1usize << 20;
    let x = vec![f64::from(0.1f32); n];
    let exact: f64 = x.iter().sum(); // exact: 2^20 times a 24-bit significand
    let got = sum_of(SUM, &x);
    let b = SUM_BLOCK as f64;
    let bound = (b / 4.0 + 2.0 + n as f64 / b) * 2f64.powi(-24) * exact;
    assert!(
        got.is_finite() && (got - exact).abs() <= bound,
        "sum {got}, exact {exact}: error {:.3e} over the bound {bound:.3e}",
        (got - exact).abs()
    );
    let f = adjoint::compile::graphs(&model_of_source("sum.dsl", SUM)).gradient;
    let plan = adjoint::lower::plan_text(&f, &adjoint::lower::plan(&f));
    assert!(plan.contains("in blocks of 512 along axis 0"), "{plan}");
}

/// The order the sum of a vector has always added its terms in: an f32x4 accumulator over
/// the whole vectors, its lanes added left to right, then the scalar tail's own accumulator.
fn in_order(x: &[f32]) -> f32 {
    let whole = x.len() / 4 * 4;
    let mut lanes = [0f32; 4];
    for v in x[..whole].chunks(4) {
        for (l, e) in lanes.iter_mut().zip(v) {
            *l += e;
        }
    }
    let tail = x[whole..].iter().fold(0f32, |a, e| a + e);
    0.0 + (((lanes[0] + lanes[1]) + lanes[2]) + lanes[3] + tail)
}

/// A sum of at most one block runs as it always did, bit for bit.
#[test]
fn a_sum_of_one_block_keeps_its_bits() {
    let block = SUM_BLOCK as usize;
    for len in [block, block - 5, 7] {
        let x: Vec<f32> = (0..len)
            .map(|i| (0.1 + 0.37 * (i % 11) as f64 - 1.3 * (i % 3) as f64) as f32)
            .collect();
        let wide: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(sum_of(SUM, &wide), f64::from(in_order(&x)), "{len} terms");
    }
}

fn values(c: &Checkpoint, name: &str) -> Vec<f64> {
    match &c.tensor(name).unwrap_or_else(|| panic!("no {name}")).data {
        TensorData::F64(v) => v.clone(),
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
    }
}

/// examples/cnn_digits.dsl's f32 training step on all 1,797 rows at its initial parameters
/// against its f64 copy's. Its batch norms sum each channel over N·H·W (115k and 29k
/// elements); added in order, the f32 channel means were 6.3e-7 from f64 and, through a
/// pre-activation within two ulps of zero, moved the gradient of `k2` by 1.8e-4 of the
/// gradient's norm. Each parameter's gradient is compared against the whole gradient's norm
/// (a component near 0 is not measured against its own rounding), at the f32
/// tolerance, 1e-5; the running means after the step, which no relu decides, at 4e-7.
#[test]
fn the_cnn_f32_batch_norm_gradient_is_its_f64_value() {
    let dir = std::env::temp_dir().join(format!("adjoint-sums-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let model = repo().join("examples/cnn_digits.dsl");
    let source = std::fs::read_to_string(&model).unwrap();
    std::fs::write(path("cnn64.dsl"), format!("dtype f64\n{source}")).unwrap();
    let data = repo().join("examples/data/digits.csv");
    let data = data.to_str().unwrap();
    let start = path("start.safetensors");
    let model = model.to_str().unwrap();
    adjoint_succeeds(&["train", model, "--steps", "0", "--save", &start]);
    let (f32_values, f64_values) = (path("f32.safetensors"), path("f64.safetensors"));
    adjoint_succeeds(&[
        "export",
        model,
        "--values",
        "--checkpoint",
        &start,
        "-o",
        &f32_values,
    ]);
    let copy = path("cnn64.dsl");
    let export = ["export", &copy, "--values", "--checkpoint", &start];
    adjoint_succeeds(&[&export[..], &["-o", &f64_values, "--data", data]].concat());
    let (got, want) = (
        load(std::path::Path::new(&f32_values)).unwrap(),
        load(std::path::Path::new(&f64_values)).unwrap(),
    );
    let params = ["k1", "g1", "c1", "k2", "g2", "c2", "W", "b"];
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff =
        |a: &[f64], b: &[f64]| norm(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>());
    let whole: f64 = params
        .iter()
        .map(|p| norm(&values(&want, &format!("train/grad/{p}"))).powi(2))
        .sum::<f64>()
        .sqrt();
    for p in params {
        let name = format!("train/grad/{p}");
        let err = diff(&values(&got, &name), &values(&want, &name)) / whole;
        assert!(err <= 1e-5, "{name}: {err:.3e} of the gradient's norm");
    }
    for s in ["batch_norm0.running_mean", "batch_norm1.running_mean"] {
        let name = format!("train/state.{s}");
        let (a, b) = (values(&got, &name), values(&want, &name));
        let err = diff(&a, &b) / norm(&b);
        assert!(err <= 4e-7, "{name}: {err:.3e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
