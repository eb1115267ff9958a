//! Shared helpers: compiling fixtures, random points, finite differences, comparisons.

use adjoint::compile::CompiledModel;
use adjoint::ir::interp::{self, Tensor};
use adjoint::ir::{DType, Graph};
use adjoint::model::{GraphFn, Model};
use adjoint::runtime::{Buffer, Workspace};
use adjoint::{SourceFile, check_source};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.dsl` file in a folder of the repository, sorted.
pub fn dsl_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dsl"))
        .collect();
    files.sort();
    files
}

pub fn model_of(path: &Path) -> Model {
    let text = std::fs::read_to_string(path).unwrap();
    model_of_source(&path.display().to_string(), &text)
}

pub fn model_of_source(name: &str, text: &str) -> Model {
    let file = SourceFile::new(name, text);
    match check_source(&file, &adjoint::Limits::of_host()) {
        Ok((m, _)) => m,
        Err(d) => panic!(
            "{name} does not compile:\n{}",
            adjoint::diagnostics::render_all(&d, &file)
        ),
    }
}

/// A random point: params near their scale, inputs standard normal (class labels in range).
pub struct Point {
    pub rows: usize,
    pub inputs: Vec<Tensor>,
    pub params: Vec<Tensor>,
}

impl Point {
    pub fn syms(&self, g: &Graph) -> Vec<u64> {
        vec![self.rows as u64; g.syms.len()]
    }

    pub fn rounded_to(&self, dtype: DType) -> Point {
        let round = |t: &Tensor| {
            Tensor::new(
                t.shape.clone(),
                t.data
                    .iter()
                    .map(|&v| {
                        if dtype == DType::F32 {
                            v as f32 as f64
                        } else {
                            v
                        }
                    })
                    .collect(),
            )
        };
        Point {
            rows: self.rows,
            inputs: self.inputs.iter().map(round).collect(),
            params: self.params.iter().map(round).collect(),
        }
    }
}

pub fn random_point(g: &Graph, rows: usize, seed: u64) -> Point {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let syms = vec![rows as u64; g.syms.len()];
    let normal = |rng: &mut ChaCha8Rng, n: usize| {
        (0..n)
            .map(|_| adjoint::init::std_normal(rng))
            .collect::<Vec<f64>>()
    };
    let inputs = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let shape = info.shape.concrete(&syms);
            let n = shape.iter().product();
            let data = if info.is_int {
                let k = classes_of(g, i as u32).unwrap_or(3);
                (0..n).map(|_| rng.random_range(0..k) as f64).collect()
            } else {
                normal(&mut rng, n)
            };
            Tensor::new(shape, data)
        })
        .collect();
    let params = g
        .params
        .iter()
        .map(|p| {
            let shape = p.shape.concrete(&syms);
            let n = shape.iter().product();
            Tensor::new(shape, normal(&mut rng, n).iter().map(|v| 0.7 * v).collect())
        })
        .collect();
    Point {
        rows,
        inputs,
        params,
    }
}

/// The range an int input's values must lie in: the classes of a `one_hot` or the length of
/// a gathered axis that reads it.
fn classes_of(g: &Graph, input: u32) -> Option<u32> {
    adjoint::ir::indices::index_limits(g)[input as usize].map(|l| l.len as u32)
}

/// Every output of a graph function under the interpreter.
pub fn interp_outputs(f: &GraphFn, p: &Point) -> Vec<Tensor> {
    interp_outputs_keyed(f, p, 0)
}

/// As `interp_outputs`, with the dropout masks of the training step whose key is `step_key`.
/// The model's state tensors hold their initial values.
pub fn interp_outputs_keyed(f: &GraphFn, p: &Point, step_key: u64) -> Vec<Tensor> {
    let roots: Vec<_> = f.outputs.iter().map(|o| o.1).collect();
    let syms = p.syms(&f.graph);
    let states = interp::initial_states(&f.graph);
    let leaves = (&p.inputs[..], &p.params[..], &states[..]);
    let values = interp::eval_keyed(&f.graph, leaves, &syms, &roots, step_key);
    roots
        .iter()
        .map(|r| values[r.index()].clone().unwrap())
        .collect()
}

pub fn interp_loss(f: &GraphFn, p: &Point) -> f64 {
    interp_outputs(f, p)[0].item()
}

/// Central differences of the loss with respect to every element of every parameter.
pub fn finite_difference_grads(f: &GraphFn, p: &Point) -> Vec<Vec<f64>> {
    let mut q = Point {
        rows: p.rows,
        inputs: p.inputs.clone(),
        params: p.params.clone(),
    };
    let mut res = Vec::new();
    for i in 0..p.params.len() {
        let mut g = Vec::new();
        for j in 0..p.params[i].len() {
            let x = p.params[i].data[j];
            let h = 1e-5 * x.abs().max(1.0);
            q.params[i].data[j] = x + h;
            let up = interp_loss(f, &q);
            q.params[i].data[j] = x - h;
            let down = interp_loss(f, &q);
            q.params[i].data[j] = x;
            g.push((up - down) / (2.0 * h));
        }
        res.push(g);
    }
    res
}

/// |a − b| / max(|a|, |b|, floor): relative error, absolute near zero.
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

pub fn max_rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| rel_err(*x, *y, floor))
        .fold(0.0, f64::max)
}

/// Runs the compiled gradient function at a point; returns every output as f64.
pub fn jit_gradient_outputs(c: &CompiledModel, p: &Point) -> Vec<Vec<f64>> {
    jit_outputs(c, &c.gradient, c.graphs.gradient.outputs.len(), p, 0)
}

/// Every output of the native training step (`CompiledModel::step`) at `p`, with the dropout
/// masks of the step whose key is `step_key`.
pub fn jit_step_outputs(c: &CompiledModel, p: &Point, step_key: u64) -> Vec<Vec<f64>> {
    let n = c.graphs.step_gradient().outputs.len();
    jit_outputs(c, &c.step, n, p, step_key)
}

fn jit_outputs(
    c: &CompiledModel,
    exe: &adjoint::runtime::Executable,
    n_outputs: usize,
    p: &Point,
    step_key: u64,
) -> Vec<Vec<f64>> {
    let dtype = c.model.graph().dtype;
    let inputs: Vec<Buffer> = p
        .inputs
        .iter()
        .map(|t| Buffer::from_f64(dtype, &t.data))
        .collect();
    let params: Vec<Buffer> = p
        .params
        .iter()
        .map(|t| Buffer::from_f64(dtype, &t.data))
        .collect();
    let states: Vec<Buffer> = interp::initial_states(c.model.graph())
        .iter()
        .map(|t| Buffer::from_f64(dtype, &t.data))
        .collect();
    let syms = p.syms(c.model.graph());
    let mut ws = Workspace::new(&exe.plan, dtype, &syms).unwrap();
    exe.run_with_state(&mut ws, &inputs, &params, &states, step_key)
        .unwrap();
    (0..n_outputs)
        .map(|k| ws.output(&exe.plan, k).to_f64())
        .collect()
}

pub fn with_dtype(mut m: Model, dtype: DType) -> Model {
    m.set_dtype(dtype);
    m
}

/// max |a − b| / max(max |b|, floor): the error relative to the size of the whole array.
pub fn normwise_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(0.0, f64::max)
        / scale
}

/// The first few values, for failure messages.
pub fn head(v: &[f64]) -> String {
    let shown: Vec<String> = v.iter().take(6).map(|x| format!("{x:.6e}")).collect();
    format!(
        "[{}{}] ({} values)",
        shown.join(", "),
        if v.len() > 6 { ", …" } else { "" },
        v.len()
    )
}

/// The Cranelift text of every function a one-step run of `src` compiles: the command line in
/// a process of its own (`ADJOINT_DUMP_CLIF`), so that no other test's functions are counted.
pub fn clif_of_one_step(name: &str, src: &str) -> String {
    let dir = std::env::temp_dir().join(format!("adjoint-clif-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join(name);
    std::fs::write(&model, src).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", model.to_str().unwrap(), "--steps", "1"])
        .env("ADJOINT_DUMP_CLIF", "1")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Runs the `adjoint` binary in the repository with `args`, requires it to succeed (its
/// standard error is the failure's message), and returns its standard output.
pub fn adjoint_succeeds<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
