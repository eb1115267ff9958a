//! `adjoint bench`: the benchmark workloads W1–W9 and the batched products' rate (`MM`), measured exactly as the peer scripts
//! measure them, optionally beside the peers themselves (JAX, numpy, C) run in the same session,
//! reported as ratios.
//!
//! Each workload is a model source text plus data generated here from fixed seeds (same sizes,
//! distributions, initial values and optimizer as the peers; not numpy's random streams).

use crate::compile::CompiledModel;
use crate::data::Dataset;
use crate::diagnostics::SourceFile;
use crate::init::{rng, std_normal};
use crate::ir::DType;
use crate::runtime::Buffer;
use crate::train::Trainer;
use rand::RngExt;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod peers;
pub use peers::check_peers;
use peers::*;

pub const W1: &str = "dtype f64
param x = -1.2
param y = 1.0
loss (1 - x)^2 + 100 * (y - x^2)^2
optimizer adam(lr = 0.01)
";

pub const W2: &str = "input A[n, 16]
input z[n]
param w[16] ~ zeros
loss mean((A @ w - z)^2)
optimizer sgd(lr = 0.1)
";

pub const W3: &str = "dtype f64
input x[n]
param a = 0
param mu1 = -1
param mu2 = 1
param ls1 = 0
param ls2 = 0
fn log_normal(x, mu, ls) = -0.5 * ((x - mu) / exp(ls))^2 - ls - 0.5 * log(2 * pi)
let l1 = log(sigmoid(a)) + log_normal(x, mu1, ls1)
let l2 = log(1 - sigmoid(a)) + log_normal(x, mu2, ls2)
loss -mean(log(exp(l1) + exp(l2)))
optimizer adam(lr = 0.05)
";

pub const W4: &str = "input pixels[n, 64] from p0..p63
input label[n]: int
param W1[64, 128] ~ xavier_uniform
param b1[128] ~ zeros
param W2[128, 10] ~ xavier_uniform
param b2[10] ~ zeros
let h = tanh(pixels / 16 @ W1 + b1)
let logits = h @ W2 + b2
loss cross_entropy(logits, label)
metric accuracy = mean(argmax(logits, axis=1) == label)
optimizer adam(lr = 0.001)
train epochs = 50, batch = 32, drop_last = 1
";

pub const W5: &str = "input X[n, 784]
input y[n]: int
param W1[784, 512] ~ xavier_uniform
param b1[512] ~ zeros
param W2[512, 512] ~ xavier_uniform
param b2[512] ~ zeros
param W3[512, 10] ~ xavier_uniform
param b3[10] ~ zeros
let h1 = relu(X @ W1 + b1)
let h2 = relu(h1 @ W2 + b2)
loss cross_entropy(h2 @ W3 + b3, y)
metric accuracy = mean(argmax(h2 @ W3 + b3, axis=1) == y)
optimizer adam(lr = 0.001)
train epochs = 1, batch = 128
";

/// LeNet-5 on 28×28 images, as the peers' `w7_lenet.py`: Glorot-uniform weights (a kernel's
/// fans are `in·25` and `out·25`), zero biases, Adam 1e-3, batches of 64 in data order.
pub const W7: &str = "input X[n, 784]
input y[n]: int
param k1[6, 1, 5, 5] ~ xavier_uniform
param c1[6] ~ zeros
param k2[16, 6, 5, 5] ~ xavier_uniform
param c2[16] ~ zeros
param W3[256, 120] ~ xavier_uniform
param b3[120] ~ zeros
param W4[120, 84] ~ xavier_uniform
param b4[84] ~ zeros
param W5[84, 10] ~ xavier_uniform
param b5[10] ~ zeros
let img = reshape(X, (n, 1, 28, 28))
let h1 = max_pool2d(relu(conv2d(img, k1) + c1[:, None, None]), 2)
let h2 = max_pool2d(relu(conv2d(h1, k2) + c2[:, None, None]), 2)
let h3 = relu(reshape(h2, (n, 256)) @ W3 + b3)
let h4 = relu(h3 @ W4 + b4)
loss cross_entropy(h4 @ W5 + b5, y)
optimizer adam(lr = 0.001)
train epochs = 1, batch = 64
";

/// W7's multiply-adds per step, twice (flop), as the peers count them: forward, weight
/// gradients, and input gradients of every layer but the first (97.09 MFLOP).
const W7_FLOP_PER_STEP: f64 = 1_517_040.0 * 64.0;

/// W8: the character transformer of WORKLOADS.md (vocab 96, context 64, d 128, 4 heads of 32,
/// 2 pre-LayerNorm blocks, MLP 512 with tanh GELU, Adam 3e-4), trained on windows of 16.
pub const W8: &str = "input x[n, 64]: int
input y[n, 64]: int
param wte[96, 128] ~ normal(0, 0.02)
param wpe[64, 128] ~ normal(0, 0.02)
param ln1g0[128] ~ ones
param ln1b0[128] ~ zeros
param wqkv0[128, 384] ~ normal(0, 0.02)
param bqkv0[384] ~ zeros
param wo0[128, 128] ~ normal(0, 0.02)
param bo0[128] ~ zeros
param ln2g0[128] ~ ones
param ln2b0[128] ~ zeros
param w10[128, 512] ~ normal(0, 0.02)
param b10[512] ~ zeros
param w20[512, 128] ~ normal(0, 0.02)
param b20[128] ~ zeros
param ln1g1[128] ~ ones
param ln1b1[128] ~ zeros
param wqkv1[128, 384] ~ normal(0, 0.02)
param bqkv1[384] ~ zeros
param wo1[128, 128] ~ normal(0, 0.02)
param bo1[128] ~ zeros
param ln2g1[128] ~ ones
param ln2b1[128] ~ zeros
param w11[128, 512] ~ normal(0, 0.02)
param b11[512] ~ zeros
param w21[512, 128] ~ normal(0, 0.02)
param b21[128] ~ zeros
param lnfg[128] ~ ones
param lnfb[128] ~ zeros
param whead[128, 96] ~ normal(0, 0.02)
param bhead[96] ~ zeros
fn heads(t) = transpose(reshape(t, (n, 64, 4, 32)), (0, 2, 1, 3))
fn attention(q, k, v) = softmax(where(causal_mask(64), q @ transpose(k, (0, 1, 3, 2)) / sqrt(32), -inf)) @ v
fn merge(o) = reshape(transpose(o, (0, 2, 1, 3)), (n, 64, 128))
fn block(h, g1, b1, wqkv, bqkv, wo, bo, g2, b2, w1, c1, w2, c2) = attend(h, layer_norm(h, g1, b1) @ wqkv + bqkv, wo, bo, g2, b2, w1, c1, w2, c2)
fn attend(h, qkv, wo, bo, g2, b2, w1, c1, w2, c2) = mlp(h + merge(attention(heads(qkv[:, :, :128]), heads(qkv[:, :, 128:256]), heads(qkv[:, :, 256:]))) @ wo + bo, g2, b2, w1, c1, w2, c2)
fn mlp(a, g2, b2, w1, c1, w2, c2) = a + gelu(layer_norm(a, g2, b2) @ w1 + c1, approximate=true) @ w2 + c2
let h0 = wte[x] + wpe
let h1 = block(h0, ln1g0, ln1b0, wqkv0, bqkv0, wo0, bo0, ln2g0, ln2b0, w10, b10, w20, b20)
let h2 = block(h1, ln1g1, ln1b1, wqkv1, bqkv1, wo1, bo1, ln2g1, ln2b1, w11, b11, w21, b21)
loss cross_entropy(layer_norm(h2, lnfg, lnfb) @ whead + bhead, y)
optimizer adam(lr = 0.0003)
";

/// W8's batches: 200,000 tokens uniform in 0..96 and 100 steps of 16 windows at seeded offsets,
/// each step's inputs and next-token labels gathered before any timing, as the peers do.
pub fn w8_batches() -> Vec<[Vec<f64>; 2]> {
    let (tokens, steps, batch, window) = (200_000usize, 100, 16, 64);
    let mut r = rng(8);
    let text: Vec<f64> = (0..tokens)
        .map(|_| r.random_range(0..96u32) as f64)
        .collect();
    let mut offsets = rng(9);
    (0..steps)
        .map(|_| {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for _ in 0..batch {
                let o = offsets.random_range(0..tokens - window);
                x.extend_from_slice(&text[o..o + window]);
                y.extend_from_slice(&text[o + 1..o + window + 1]);
            }
            [x, y]
        })
        .collect()
}

/// Multiply-adds of W8's products per token, forward (WORKLOADS.md: 438,272), and the
/// floating-point operations of one step: forward, input and weight gradients, 2 per
/// multiply-add, 1,024 tokens.
const W8_FLOP_PER_STEP: f64 = 6.0 * 438_272.0 * 1024.0;

/// Runs W8's 100 steps from fresh parameters; the time of the run and the last step's loss.
fn w8_run(c: &CompiledModel, batches: &[Vec<Buffer>]) -> Result<(f64, f64), String> {
    let mut t = Trainer::new(c, 0);
    let start = Instant::now();
    let mut loss = f64::NAN;
    for b in batches {
        loss = t.train_steps(b, 16, 1).map_err(|e| e.to_string())?;
    }
    Ok((start.elapsed().as_secs_f64(), loss))
}

pub fn w8(repeats: usize) -> Result<Vec<Figure>, String> {
    let c = compile(W8);
    let dtype = c.model.graph().dtype;
    let batches: Vec<Vec<Buffer>> = w8_batches()
        .iter()
        .map(|b| b.iter().map(|v| Buffer::from_f64(dtype, v)).collect())
        .collect();
    // One untimed run first, as the peers warm up with one.
    w8_run(&c, &batches)?;
    let (mut per_step, mut tokens, mut gflops) = (Vec::new(), Vec::new(), Vec::new());
    let mut result = String::new();
    for _ in 0..repeats.max(1) {
        let (secs, loss) = w8_run(&c, &batches)?;
        if !loss.is_finite() {
            return Err(format!("W8's loss became {loss}"));
        }
        let step = secs / batches.len() as f64;
        per_step.push(step * 1e3);
        tokens.push(1024.0 / step);
        gflops.push(W8_FLOP_PER_STEP / step / 1e9);
        result = format!("loss at step 100 {loss:.4}");
    }
    Ok(vec![
        figure(
            "W8",
            "character transformer, 16×64 tokens, Adam, f32",
            "ms/step",
            per_step,
            result,
        ),
        figure(
            "W8",
            "character transformer",
            "tokens/s",
            tokens,
            String::new(),
        ),
        figure(
            "W8",
            "character transformer products (2.693 GFLOP/step)",
            "GFLOP/s",
            gflops,
            String::new(),
        ),
    ])
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    pub workload: &'static str,
    pub what: String,
    pub unit: &'static str,
    /// One value per timed repeat.
    pub samples: Vec<f64>,
    /// Final loss or parameters, for comparing results across frameworks.
    pub result: String,
}

impl Figure {
    /// The median over the repeats, and the spread (smallest, largest).
    pub fn summary(&self) -> (f64, f64, f64) {
        median(self.samples.clone())
    }
}

fn compile(src: &str) -> CompiledModel {
    let file = SourceFile::new("bench.dsl", src);
    CompiledModel::compile(&file, &crate::limits::Limits::of_host())
        .map(|c| c.0)
        .expect("benchmark models compile")
}

/// The median (the mean of the middle two for an even count), smallest and largest.
fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mid = if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    };
    (mid, v[0], v[n - 1])
}

fn figure(
    workload: &'static str,
    what: &str,
    unit: &'static str,
    samples: Vec<f64>,
    result: String,
) -> Figure {
    Figure {
        workload,
        what: what.into(),
        unit,
        samples,
        result,
    }
}

fn buffers(c: &CompiledModel, d: &Dataset) -> Vec<Buffer> {
    crate::train::in_dtype(&d.inputs, c.model.graph().dtype).into_owned()
}

pub fn w1(repeats: usize) -> Vec<Figure> {
    let c = compile(W1);
    let mut samples = Vec::new();
    let mut result = String::new();
    for _ in 0..repeats {
        let mut t = Trainer::new(&c, 0);
        let mut s = c.model.train.clone();
        s.steps = Some(100_000);
        s.log_every = 100_000;
        let start = Instant::now();
        t.fit(None, &s, |_| {}).expect("W1 trains");
        samples.push(start.elapsed().as_secs_f64() * 1e9 / 100_000.0);
        result = format!(
            "(x, y) = ({:.6}, {:.6})",
            t.params[0].get(0),
            t.params[1].get(0)
        );
    }
    vec![figure(
        "W1",
        "Rosenbrock + Adam, 100k steps, f64",
        "ns/step",
        samples,
        result,
    )]
}

/// W2's data, held in f32 as the loaders hold an f32 model's data, so that the timed region is
/// the training alone: a conversion inside it costs a copy of 6.4 MB per repeat, and its time
/// would follow where the allocator happens to place that copy.
pub fn w2_data() -> Dataset {
    let mut r = rng(2);
    let (n, d) = (100_000, 16);
    let a: Vec<f64> = (0..n * d).map(|_| std_normal(&mut r)).collect();
    let w_true: Vec<f64> = (0..d).map(|_| std_normal(&mut r)).collect();
    let z: Vec<f64> = (0..n)
        .map(|i| (0..d).map(|j| a[i * d + j] * w_true[j]).sum::<f64>() + 0.1 * std_normal(&mut r))
        .collect();
    Dataset {
        n_rows: n,
        inputs: vec![
            Buffer::from_f64(DType::F32, &a),
            Buffer::from_f64(DType::F32, &z),
        ],
        widths: vec![d, 1],
        dims: vec![],
        source: None,
        ..Dataset::default()
    }
}

pub fn w2(repeats: usize) -> Vec<Figure> {
    let c = compile(W2);
    let data = w2_data();
    let mut samples = Vec::new();
    let mut result = String::new();
    for _ in 0..repeats {
        let mut t = Trainer::new(&c, 0);
        let mut s = c.model.train.clone();
        s.steps = Some(200);
        s.log_every = 200;
        let start = Instant::now();
        t.fit(Some(&data), &s, |_| {}).expect("W2 trains");
        samples.push(start.elapsed().as_secs_f64() * 1e3 / 200.0);
        let loss = t
            .evaluate(&buffers(&c, &data), data.n_rows)
            .expect("W2 evaluates")[0]
            .1;
        result = format!("final loss {loss:.6}");
    }
    vec![figure(
        "W2",
        "least squares 100,000×16, GD 200 steps, f32",
        "ms/step",
        samples,
        result,
    )]
}

pub fn w3_data() -> Dataset {
    let mut r = rng(3);
    let x: Vec<f64> = (0..1_000_000)
        .map(|_| {
            if r.random::<f64>() < 0.3 {
                -2.0 + 0.5 * std_normal(&mut r)
            } else {
                1.5 + std_normal(&mut r)
            }
        })
        .collect();
    Dataset {
        n_rows: x.len(),
        inputs: vec![Buffer::F64(x)],
        widths: vec![1],
        dims: vec![],
        source: None,
        ..Dataset::default()
    }
}

pub fn w3(repeats: usize) -> Vec<Figure> {
    let c = compile(W3);
    let data = w3_data();
    let inputs = buffers(&c, &data);
    let mut evals = Vec::new();
    let mut runs = Vec::new();
    let mut result = String::new();
    for _ in 0..repeats {
        let mut t = Trainer::new(&c, 0);
        t.value_and_grad(&inputs, data.n_rows)
            .expect("W3 evaluates");
        for _ in 0..10 {
            let start = Instant::now();
            t.value_and_grad(&inputs, data.n_rows)
                .expect("W3 evaluates");
            evals.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let mut s = c.model.train.clone();
        s.steps = Some(200);
        s.log_every = 200;
        let start = Instant::now();
        t.fit(Some(&data), &s, |_| {}).expect("W3 trains");
        runs.push(start.elapsed().as_secs_f64());
        let p: Vec<f64> = t.params.iter().map(|p| p.get(0)).collect();
        result = format!(
            "θ = [{:.4}, {:.4}, {:.4}, {:.4}, {:.4}]",
            p[0], p[1], p[2], p[3], p[4]
        );
    }
    vec![
        figure(
            "W3",
            "GMM NLL n=10^6 value+gradient, f64",
            "ms/eval",
            evals,
            String::new(),
        ),
        figure("W3", "GMM 200 Adam steps, f64", "s/200 steps", runs, result),
    ]
}

pub fn w4_data(root: &Path) -> Result<Dataset, String> {
    let file = root.join("examples/data/digits.csv");
    let table = crate::data::Table::load(&file).map_err(|e| e.to_string())?;
    let c = compile(W4);
    crate::data::bind(&c.model, &table).map_err(|e| e.to_string())
}

pub fn w4(repeats: usize, root: &Path) -> Result<Vec<Figure>, String> {
    let c = compile(W4);
    let data = w4_data(root)?;
    let mut per_step = Vec::new();
    let mut result = String::new();
    for rep in 0..repeats {
        let mut t = Trainer::new(&c, rep as u64);
        let mut s = c.model.train.clone();
        s.log_every = u64::MAX;
        // One epoch of warm-up, as the peers exclude their first epoch.
        let mut warm = s.clone();
        warm.epochs = Some(1);
        t.fit(Some(&data), &warm, |_| {})
            .map_err(|e| e.to_string())?;
        let mut t = Trainer::new(&c, rep as u64);
        let start = Instant::now();
        t.fit(Some(&data), &s, |_| {}).map_err(|e| e.to_string())?;
        per_step.push(start.elapsed().as_secs_f64() * 1e6 / t.step as f64);
        let m = t
            .evaluate(&buffers(&c, &data), data.n_rows)
            .map_err(|e| e.to_string())?;
        result = format!("train accuracy {:.4}, loss {:.4}", m[1].1, m[0].1);
    }
    Ok(vec![figure(
        "W4",
        "digits MLP 64-128-10, batch 32, Adam",
        "µs/step",
        per_step,
        result,
    )])
}

/// W5's data, in f32 (as W2's, for the same reason).
pub fn w5_data() -> Dataset {
    let mut r = rng(5);
    let n = 60_000;
    let x: Vec<f64> = (0..n * 784)
        .map(|_| std_normal(&mut r) as f32 as f64)
        .collect();
    let y: Vec<f64> = (0..n).map(|_| r.random_range(0..10u32) as f64).collect();
    Dataset {
        n_rows: n,
        inputs: vec![
            Buffer::from_f64(DType::F32, &x),
            Buffer::from_f64(DType::F32, &y),
        ],
        widths: vec![784, 1],
        dims: vec![],
        source: None,
        ..Dataset::default()
    }
}

pub fn w5(repeats: usize) -> Vec<Figure> {
    let c = compile(W5);
    let data = w5_data();
    let n_params: usize = c
        .model
        .graph()
        .params
        .iter()
        .map(|p| p.shape.fixed_elements().unwrap())
        .sum();
    let mut per_step = Vec::new();
    let mut gflops = Vec::new();
    let mut result = String::new();
    for rep in 0..repeats.max(1) {
        let mut t = Trainer::new(&c, rep as u64);
        let mut s = c.model.train.clone();
        s.log_every = u64::MAX;
        let start = Instant::now();
        t.fit(Some(&data), &s, |_| {}).expect("W5 trains");
        let secs = start.elapsed().as_secs_f64();
        per_step.push(secs * 1e3 / t.step as f64);
        gflops.push(6.0 * n_params as f64 * data.n_rows as f64 / secs / 1e9);
        result = format!("{} steps", t.step);
    }
    vec![
        figure(
            "W5",
            "MLP 784-512-512-10, batch 128, Adam, f32",
            "ms/step",
            per_step,
            result,
        ),
        figure(
            "W5",
            "MLP 784-512-512-10 throughput",
            "GFLOP/s",
            gflops,
            String::new(),
        ),
    ]
}

/// W7's data: 6,400 standard normal 28×28 images and uniform labels 0..9, from a fixed seed, in
/// f32 (as W2's, for the same reason).
pub fn w7_data() -> Dataset {
    let mut r = rng(7);
    let n = 6_400;
    let x: Vec<f64> = (0..n * 784)
        .map(|_| std_normal(&mut r) as f32 as f64)
        .collect();
    let y: Vec<f64> = (0..n).map(|_| r.random_range(0..10u32) as f64).collect();
    Dataset {
        n_rows: n,
        inputs: vec![
            Buffer::from_f64(DType::F32, &x),
            Buffer::from_f64(DType::F32, &y),
        ],
        widths: vec![784, 1],
        dims: vec![],
        source: None,
        ..Dataset::default()
    }
}

/// The rows of the first `rows` samples of a dataset, as buffers of the model's dtype.
fn first_rows(c: &CompiledModel, data: &Dataset, rows: usize) -> Vec<Buffer> {
    data.inputs
        .iter()
        .zip(&data.widths)
        .map(|(v, w)| {
            v.head(rows * w)
                .in_dtype(c.model.graph().dtype)
                .into_owned()
        })
        .collect()
}

/// LeNet-5, one epoch of 100 steps of 64 images per repeat.
pub fn w7(repeats: usize) -> Result<Vec<Figure>, String> {
    let c = compile(W7);
    let data = w7_data();
    let mut per_step = Vec::new();
    let mut gflops = Vec::new();
    let mut result = String::new();
    for rep in 0..repeats.max(1) {
        let mut t = Trainer::new(&c, rep as u64);
        let mut s = c.model.train.clone();
        s.log_every = u64::MAX;
        let start = Instant::now();
        t.fit(Some(&data), &s, |_| {}).map_err(|e| e.to_string())?;
        let secs = start.elapsed().as_secs_f64();
        let ms = secs * 1e3 / t.step as f64;
        per_step.push(ms);
        gflops.push(W7_FLOP_PER_STEP / (ms * 1e-3) / 1e9);
        result = format!("{} steps", t.step);
    }
    Ok(vec![
        figure(
            "W7",
            "LeNet-5 28×28, batch 64, Adam, f32",
            "ms/step",
            per_step,
            result,
        ),
        figure(
            "W7",
            "LeNet-5 throughput (97.09 MFLOP/step)",
            "GFLOP/s",
            gflops,
            String::new(),
        ),
    ])
}

/// Source text to the end of W7's first training step, minus one steady step.
pub fn w9(repeats: usize) -> Result<Vec<Figure>, String> {
    let data = w7_data();
    // Compiled here for its dtype only, and dropped: a live model would lend the timed
    // compilations its code (`compile`'s process-wide cache).
    let batch = first_rows(&compile(W7), &data, 64);
    latency(
        "compile latency of W7's train step (source to first step)",
        W7,
        &batch,
        64,
        repeats,
    )
}

/// W9 for the model `src` on one batch of `rows`: per repeat, the time from source text to the
/// end of the first training step, minus one steady step (WORKLOADS.md). The result column
/// splits the medians by stage: compiling (Cranelift's share apart), initializing the
/// parameters and optimizer state, and what the first step costs beyond a steady one (its
/// workspace's first touch of memory).
fn latency(
    what: &str,
    src: &str,
    batch: &[Buffer],
    rows: usize,
    repeats: usize,
) -> Result<Vec<Figure>, String> {
    let (mut samples, mut compiling, mut cranelift, mut init, mut extra) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let c = compile(src);
        let compiled = start.elapsed();
        let mut t = Trainer::new(&c, 0);
        let initialized = start.elapsed();
        t.train_steps(batch, rows, 1).map_err(|e| e.to_string())?;
        let first = start.elapsed();
        let s = Instant::now();
        t.train_steps(batch, rows, 1).map_err(|e| e.to_string())?;
        let steady = s.elapsed();
        samples.push(ms(first) - ms(steady));
        compiling.push(ms(compiled));
        let stages = c.timings.stages.iter();
        cranelift.push(stages.filter(|s| s.0 == "cranelift").map(|s| ms(s.1)).sum());
        init.push(ms(initialized - compiled));
        extra.push(ms(first - initialized) - ms(steady));
    }
    let result = format!(
        "compile {:.1} ms (Cranelift {:.1}), initialize {:.1}, first step beyond a steady one {:.1}",
        median(compiling).0,
        median(cranelift).0,
        median(init).0,
        median(extra).0
    );
    Ok(vec![figure("W9", what, "ms", samples, result)])
}

/// Batched products (`MM`): an attention-sized batched product, 16×4 heads of
/// 64×32 @ 32×64 in f32 as `[16, 4, 64, 32] @ [16, 4, 32, 64]` runs, beside a 2048³ f32 GEMM
/// through the same kernels, so the small products' rate reads as a share of the large one's.
pub fn mm(repeats: usize) -> Vec<Figure> {
    use crate::kernels::gemm::{BatchAxis, batched_gemm, gemm};
    let (heads, m, k, n) = ([16usize, 4], 64usize, 32usize, 64usize);
    let count = heads[0] * heads[1];
    let values = |len: usize, seed: u64| -> Vec<f32> {
        let mut r = rng(seed);
        (0..len).map(|_| std_normal(&mut r) as f32).collect()
    };
    let (a, b) = (values(count * m * k, 1), values(count * k * n, 2));
    let mut c = vec![0f32; count * m * n];
    let batch = [
        BatchAxis {
            len: heads[0],
            strides: [
                (heads[1] * m * k) as isize,
                (heads[1] * k * n) as isize,
                (heads[1] * m * n) as isize,
            ],
        },
        BatchAxis {
            len: heads[1],
            strides: [(m * k) as isize, (k * n) as isize, (m * n) as isize],
        },
    ];
    let batched = |c: &mut [f32]| {
        // SAFETY: every batch index's product lies inside `a`, `b` and `c`, which are
        // contiguous arrays of the shapes the strides describe, and the outputs are disjoint.
        unsafe {
            batched_gemm(
                &batch,
                m,
                k,
                n,
                a.as_ptr(),
                [k as isize, 1],
                b.as_ptr(),
                [n as isize, 1],
                c.as_mut_ptr(),
                [n as isize, 1],
            )
        }
    };
    let calls = 200;
    batched(&mut c);
    let mut small = Vec::new();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        for _ in 0..calls {
            batched(&mut c);
        }
        let secs = start.elapsed().as_secs_f64();
        small.push(2.0 * (count * m * k * n * calls) as f64 / secs / 1e9);
    }
    let checksum: f64 = c.iter().map(|&v| v as f64).sum();
    let size = 2048;
    let (x, y) = (values(size * size, 3), values(size * size, 4));
    let mut z = vec![0f32; size * size];
    let mut large = Vec::new();
    for rep in 0..=repeats.max(1) {
        let start = Instant::now();
        // SAFETY: the three arrays are contiguous 2048×2048 matrices, and `z` is neither input.
        unsafe {
            gemm(
                size,
                size,
                size,
                x.as_ptr(),
                [size as isize, 1],
                y.as_ptr(),
                [size as isize, 1],
                z.as_mut_ptr(),
                [size as isize, 1],
            )
        };
        // The first product warms the caches and the pool; it is not counted.
        if rep > 0 {
            let secs = start.elapsed().as_secs_f64();
            large.push(2.0 * (size * size * size) as f64 / secs / 1e9);
        }
    }
    vec![
        figure(
            "MM",
            "batched product [16, 4, 64, 32] @ [16, 4, 32, 64], f32",
            "GFLOP/s",
            small,
            format!("checksum {checksum:.3}"),
        ),
        figure(
            "MM",
            "GEMM 2048×2048 @ 2048×2048, f32",
            "GFLOP/s",
            large,
            format!("z[0] = {}", z[0]),
        ),
    ]
}

/// Source text to the end of the first training step, minus one steady step.
pub fn w6(repeats: usize, root: &Path) -> Result<Vec<Figure>, String> {
    let data = w4_data(root)?;
    let mut samples = Vec::new();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let c = compile(W4);
        let mut t = Trainer::new(&c, 0);
        let rows = 32;
        let batch: Vec<Buffer> = data
            .inputs
            .iter()
            .zip(&data.widths)
            .map(|(v, w)| {
                v.head(rows * w)
                    .in_dtype(c.model.graph().dtype)
                    .into_owned()
            })
            .collect();
        t.train_steps(&batch, rows, 1).map_err(|e| e.to_string())?;
        let first = start.elapsed().as_secs_f64();
        let s = Instant::now();
        t.train_steps(&batch, rows, 1).map_err(|e| e.to_string())?;
        let steady = s.elapsed().as_secs_f64();
        samples.push((first - steady) * 1e3);
    }
    Ok(vec![figure(
        "W6",
        "compile latency of W4's train step (source to first step)",
        "ms",
        samples,
        String::new(),
    )])
}

/// Source text to the end of W8's first training step, minus one steady step.
pub fn w9_w8(repeats: usize) -> Result<Vec<Figure>, String> {
    let dtype = compile(W8).model.graph().dtype;
    let inputs: Vec<Buffer> = w8_batches()[0]
        .iter()
        .map(|v| Buffer::from_f64(dtype, v))
        .collect();
    latency(
        "compile latency of W8's train step (source to first step)",
        W8,
        &inputs,
        16,
        repeats,
    )
}

pub struct BenchConfig {
    pub workloads: Vec<String>,
    pub repeats: usize,
    pub root: PathBuf,
    /// A Python with the peers installed, and a writable copy of the anchor scripts.
    pub peers: Option<(PathBuf, PathBuf)>,
    /// Threads given to adjoint (`--threads`). Above one, the peers run with their own default
    /// threading (every core) instead of one thread, so the comparison stays like for like.
    pub threads: Option<usize>,
}

/// The workloads in the order they run.
pub const WORKLOADS: [&str; 10] = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "MM"];

/// The first of `names` that is not a workload (names are matched ignoring case).
pub fn unknown_workload(names: &[String]) -> Option<&str> {
    names
        .iter()
        .find(|n| !WORKLOADS.iter().any(|w| w.eq_ignore_ascii_case(n)))
        .map(String::as_str)
}

/// Whether workload `w` is among those `named` (every one when none is named).
fn chosen(named: &[String], w: &str) -> bool {
    named.is_empty() || named.iter().any(|x| x.eq_ignore_ascii_case(w))
}

/// adjoint's figures for workload `w`, over `repeats` timed repeats.
fn measure(w: &str, repeats: usize, root: &Path) -> Result<Vec<Figure>, String> {
    match w {
        "W1" => Ok(w1(repeats)),
        "W2" => Ok(w2(repeats)),
        "W3" => Ok(w3(repeats)),
        "W4" => w4(repeats, root),
        "W5" => Ok(w5(repeats)),
        "MM" => Ok(mm(repeats)),
        "W7" => w7(repeats),
        "W8" => w8(repeats),
        "W6" => w6(repeats.max(3), root),
        "W9" => {
            let mut figures = w9(repeats.max(3))?;
            figures.extend(w9_w8(repeats.max(3))?);
            Ok(figures)
        }
        other => Err(format!("no workload {other}")),
    }
}

/// Runs the chosen workloads (and their peers); returns a Markdown report.
///
/// With peers, a workload runs in rounds: adjoint once, then each of its peers once, `repeats`
/// times over. The machine's slow periods last minutes, so a ratio is taken within each round,
/// from measurements seconds apart, and the reported ratio is the median over the rounds.
pub fn run(cfg: &BenchConfig, mut progress: impl FnMut(&str)) -> Result<String, String> {
    if let Some(w) = unknown_workload(&cfg.workloads) {
        return Err(format!("no workload {w}"));
    }
    let r = cfg.repeats.max(1);
    let (rounds, per_round) = if cfg.peers.is_some() { (r, 1) } else { (1, r) };
    // One thread each, as adjoint's figures pinned to one core; every core when adjoint has
    // more than one thread.
    let every_core = cfg.threads.is_some_and(|t| t > 1);
    let mut figures: Vec<Figure> = Vec::new();
    let mut peer_runs: Vec<PeerRuns> = Vec::new();
    for w in WORKLOADS.into_iter().filter(|w| chosen(&cfg.workloads, w)) {
        let mut runs: Vec<PeerRuns> = match cfg.peers {
            Some(_) => PEERS.iter().filter(|p| p.workload == w).collect(),
            None => Vec::new(),
        }
        .into_iter()
        .map(|peer| PeerRuns {
            peer,
            rounds: Vec::new(),
        })
        .collect();
        let mut merged: Vec<Figure> = Vec::new();
        for round in 1..=rounds {
            progress(&format!("{w}{}", round_label(round, rounds)));
            let ours = measure(w, per_round, &cfg.root)?;
            if let Some((python, anchors)) = &cfg.peers {
                for run in &mut runs {
                    let p = run.peer;
                    progress(&format!(
                        "{w} peer {} ({}){}",
                        p.fw,
                        p.field,
                        round_label(round, rounds)
                    ));
                    let mine = counterpart(&ours, p).map(|f| f.summary().0);
                    let value = run_peer(python, anchors, p, per_round, every_core)
                        .and_then(|v| mine.map(|m| (v, m)).ok_or_else(|| "no figure".to_string()));
                    run.rounds.push(value);
                }
            }
            if merged.is_empty() {
                merged = ours;
            } else {
                for (m, f) in merged.iter_mut().zip(ours) {
                    m.samples.extend(f.samples);
                    m.result = f.result;
                }
            }
        }
        figures.extend(merged);
        peer_runs.extend(runs);
    }
    let mut out = String::new();
    let _ = writeln!(out, "| workload | adjoint | median | spread | result |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for f in &figures {
        let (median, min, max) = f.summary();
        let _ = writeln!(
            out,
            "| {} | {} | **{:.4} {}** | {:.4}–{:.4} | {} |",
            f.workload, f.what, median, f.unit, min, max, f.result
        );
    }
    if cfg.peers.is_some() {
        let threading = match cfg.threads {
            Some(t) if every_core => format!("adjoint on {t} threads, peers on every core"),
            _ => "peers on one thread".to_string(),
        };
        let _ = writeln!(
            out,
            "\n| workload | peer (same session; {threading}) | peer median | adjoint / peer, per round | median ratio |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for pr in &peer_runs {
            let p = pr.peer;
            let unit = counterpart(&figures, p).map_or("", |f| f.unit);
            let failed = pr.rounds.iter().find_map(|r| r.as_ref().err());
            if let Some(e) = failed {
                let _ = writeln!(
                    out,
                    "| {} | {} `{}` | failed: {} | | |",
                    p.workload,
                    p.fw,
                    p.field,
                    e.replace('|', "/")
                );
                let ours = counterpart(&figures, p).map(|f| f.summary().0);
                if let (Some(quoted), Some(ours)) = (p.quoted, ours) {
                    let _ = writeln!(
                        out,
                        "| {} | {} `{}` ({unit}), quoted from anchors/RESULTS.md (another run, one thread) | {quoted:.4} | | {:.2}× (not the same session) |",
                        p.workload,
                        p.fw,
                        p.field,
                        ours / quoted
                    );
                }
                continue;
            }
            let pairs: Vec<(f64, f64)> = pr.rounds.iter().flatten().copied().collect();
            let ratios: Vec<f64> = pairs.iter().map(|(v, m)| m / v).collect();
            let listed: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} `{}` ({}) | {:.4} | {} | **{:.2}×** |",
                p.workload,
                p.fw,
                p.field,
                unit,
                median(pairs.iter().map(|x| x.0).collect()).0,
                listed.join(", "),
                median(ratios).0
            );
        }
    }
    Ok(out)
}

fn round_label(round: usize, rounds: usize) -> String {
    if rounds > 1 {
        format!(", round {round} of {rounds}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), (2.5, 1.0, 4.0));
        assert_eq!(super::median(vec![5.0]), (5.0, 5.0, 5.0));
    }
}
