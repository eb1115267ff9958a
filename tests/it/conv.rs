//! Convolutions and pooling against direct loops written here, in f64, across strides,
//! paddings, dilations and groups. The loss is `sum(f(x, w) * m)`: its gradient with respect
//! to `m` is `f(x, w)` itself, and with respect to `x` and `w` the transposed loops with `m` as
//! the cotangent, so the interpreter's and the native code's values, forward and backward,
//! are all read from one gradient function.

use crate::support::*;
use adjoint::compile::CompiledModel;

/// A 2-d convolution's sizes: input `[n, c, h, w]`, kernel `[o, c/groups, kh, kw]`.
#[derive(Clone, Copy, Debug)]
struct Conv {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pad: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
}

impl Conv {
    fn out(&self) -> (usize, usize) {
        let along = |len: usize, pad: usize, k: usize, d: usize, s: usize| {
            (len + 2 * pad - d * (k - 1) - 1) / s + 1
        };
        (
            along(self.h, self.pad.0, self.kh, self.dilation.0, self.stride.0),
            along(self.w, self.pad.1, self.kw, self.dilation.1, self.stride.1),
        )
    }

    fn source(&self) -> String {
        let (oh, ow) = self.out();
        format!(
            "dtype f64\nparam x[{}, {}, {}, {}] ~ normal(0, 1)\nparam w[{}, {}, {}, {}] ~ normal(0, 1)\nparam m[{}, {}, {oh}, {ow}] ~ normal(0, 1)\nloss sum(conv2d(x, w, stride=({}, {}), padding=({}, {}), dilation=({}, {}), groups={}) * m)\n",
            self.n,
            self.c,
            self.h,
            self.w,
            self.o,
            self.c / self.groups,
            self.kh,
            self.kw,
            self.n,
            self.o,
            self.stride.0,
            self.stride.1,
            self.pad.0,
            self.pad.1,
            self.dilation.0,
            self.dilation.1,
            self.groups
        )
    }

    /// The output, and the gradients for `x` and `w` with cotangent `m`, by direct loops.
    fn direct(&self, x: &[f64], w: &[f64], m: &[f64]) -> [Vec<f64>; 3] {
        let (oh, ow) = self.out();
        let cg = self.c / self.groups;
        let og = self.o / self.groups;
        let mut y = vec![0.0; self.n * self.o * oh * ow];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..self.n {
            for o in 0..self.o {
                let group = o / og;
                for (p, q) in (0..oh).flat_map(|p| (0..ow).map(move |q| (p, q))) {
                    let at = ((n * self.o + o) * oh + p) * ow + q;
                    for ci in 0..cg {
                        let c = group * cg + ci;
                        for (i, j) in (0..self.kh).flat_map(|i| (0..self.kw).map(move |j| (i, j))) {
                            let r = (p * self.stride.0 + i * self.dilation.0) as isize
                                - self.pad.0 as isize;
                            let s = (q * self.stride.1 + j * self.dilation.1) as isize
                                - self.pad.1 as isize;
                            if r < 0 || s < 0 || r >= self.h as isize || s >= self.w as isize {
                                continue;
                            }
                            let xi = ((n * self.c + c) * self.h + r as usize) * self.w + s as usize;
                            let wi = ((o * cg + ci) * self.kh + i) * self.kw + j;
                            y[at] += x[xi] * w[wi];
                            dx[xi] += m[at] * w[wi];
                            dw[wi] += m[at] * x[xi];
                        }
                    }
                }
            }
        }
        [y, dx, dw]
    }
}

/// The gradient outputs named `d…/dx`, `d…/dw`, `d…/dm` of a compiled model, from the
/// interpreter and from native code.
fn gradients(compiled: &CompiledModel, p: &Point) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let f = &compiled.graphs.gradient;
    let interp: Vec<Vec<f64>> = interp_outputs(f, p).into_iter().map(|t| t.data).collect();
    let native = jit_gradient_outputs(compiled, p);
    let pick = |all: &[Vec<f64>]| -> Vec<Vec<f64>> {
        ["x", "w", "m"]
            .iter()
            .map(|name| {
                let k = f
                    .outputs
                    .iter()
                    .position(|(o, _)| o.ends_with(&format!("/d{name}")))
                    .unwrap_or_else(|| panic!("no gradient for `{name}`"));
                all[k].clone()
            })
            .collect()
    };
    (pick(&interp), pick(&native))
}

fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    assert!(
        actual.iter().all(|v| v.is_finite()),
        "{what}: non-finite values {}",
        head(actual)
    );
    let err = normwise_err(actual, expected, 1e-12);
    assert!(
        err <= tol,
        "{what}: off by {err:e}\n  got      {}\n  expected {}",
        head(actual),
        head(expected)
    );
}

#[test]
fn conv2d_and_its_derivatives_match_direct_loops() {
    let base = Conv {
        n: 2,
        c: 4,
        h: 7,
        w: 6,
        o: 6,
        kh: 3,
        kw: 2,
        stride: (1, 1),
        pad: (0, 0),
        dilation: (1, 1),
        groups: 1,
    };
    let cases = [
        base,
        Conv {
            stride: (2, 3),
            ..base
        },
        Conv {
            pad: (2, 1),
            ..base
        },
        Conv {
            dilation: (2, 3),
            ..base
        },
        Conv { groups: 2, ..base },
        Conv {
            groups: 2,
            stride: (2, 1),
            pad: (1, 1),
            dilation: (2, 1),
            ..base
        },
        Conv {
            c: 3,
            o: 3,
            groups: 3,
            kh: 1,
            kw: 1,
            ..base
        },
        Conv {
            n: 1,
            c: 1,
            h: 5,
            w: 5,
            o: 1,
            kh: 5,
            kw: 5,
            ..base
        },
    ];
    for (k, case) in cases.iter().enumerate() {
        let src = case.source();
        let model = model_of_source("conv.dsl", &src);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = random_point(compiled.model.graph(), 1, k as u64);
        let [x, w, m] = [0, 1, 2].map(|i| p.params[i].data.clone());
        let expected = case.direct(&x, &w, &m);
        let (interp, native) = gradients(&compiled, &p);
        // Output, input gradient, kernel gradient.
        let order = [(2, "output"), (0, "d/dx"), (1, "d/dw")];
        for (e, (i, what)) in order.iter().enumerate() {
            let at = format!("{case:?} {what}");
            assert_close(
                &format!("interpreter {at}"),
                &interp[*i],
                &expected[e],
                1e-13,
            );
            assert_close(&format!("native {at}"), &native[*i], &expected[e], 1e-12);
        }
    }
}

/// A pooling's sizes on `[n, c, h, w]` with a square kernel.
#[derive(Clone, Copy, Debug)]
struct Pool {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Pool {
    fn out(&self) -> (usize, usize) {
        let along = |len: usize| (len + 2 * self.pad - self.k) / self.stride + 1;
        (along(self.h), along(self.w))
    }

    fn source(&self, func: &str) -> String {
        let (oh, ow) = self.out();
        format!(
            "dtype f64\nparam x[{}, {}, {}, {}] ~ normal(0, 1)\nparam w[1, 1, 1, 1] ~ normal(0, 1)\nparam m[{}, {}, {oh}, {ow}] ~ normal(0, 1)\nloss sum({func}(x, {}, stride={}, padding={}) * m) + sum(w)\n",
            self.n, self.c, self.h, self.w, self.n, self.c, self.k, self.stride, self.pad
        )
    }

    /// Max and average pooling and their gradients for `x` with cotangent `m`, by direct loops
    /// (inputs without ties: a window's maximum is one element).
    fn direct(&self, x: &[f64], m: &[f64], max: bool) -> [Vec<f64>; 2] {
        let (oh, ow) = self.out();
        let mut y = vec![0.0; self.n * self.c * oh * ow];
        let mut dx = vec![0.0; x.len()];
        let area = (self.k * self.k) as f64;
        for nc in 0..self.n * self.c {
            for (p, q) in (0..oh).flat_map(|p| (0..ow).map(move |q| (p, q))) {
                let at = (nc * oh + p) * ow + q;
                let mut best = (f64::NEG_INFINITY, None);
                let mut sum = 0.0;
                for (i, j) in (0..self.k).flat_map(|i| (0..self.k).map(move |j| (i, j))) {
                    let r = (p * self.stride + i) as isize - self.pad as isize;
                    let s = (q * self.stride + j) as isize - self.pad as isize;
                    if r < 0 || s < 0 || r >= self.h as isize || s >= self.w as isize {
                        continue;
                    }
                    let xi = (nc * self.h + r as usize) * self.w + s as usize;
                    sum += x[xi];
                    if x[xi] > best.0 {
                        best = (x[xi], Some(xi));
                    }
                    if !max {
                        dx[xi] += m[at] / area;
                    }
                }
                if max {
                    y[at] = best.0;
                    dx[best.1.expect("a window holds an element")] += m[at];
                } else {
                    y[at] = sum / area;
                }
            }
        }
        [y, dx]
    }
}

#[test]
fn pooling_and_its_derivatives_match_direct_loops() {
    let base = Pool {
        n: 2,
        c: 3,
        h: 7,
        w: 6,
        k: 2,
        stride: 2,
        pad: 0,
    };
    let cases = [
        base,
        Pool { stride: 1, ..base },
        Pool {
            k: 3,
            stride: 2,
            pad: 1,
            ..base
        },
        Pool {
            k: 3,
            stride: 1,
            pad: 1,
            ..base
        },
        Pool {
            k: 4,
            stride: 3,
            pad: 2,
            ..base
        },
    ];
    for (k, case) in cases.iter().enumerate() {
        for max in [true, false] {
            let func = if max { "max_pool2d" } else { "avg_pool2d" };
            let model = model_of_source("pool.dsl", &case.source(func));
            let compiled = CompiledModel::from_model(model).unwrap();
            let p = random_point(compiled.model.graph(), 1, k as u64);
            let (x, m) = (p.params[0].data.clone(), p.params[2].data.clone());
            let expected = case.direct(&x, &m, max);
            let (interp, native) = gradients(&compiled, &p);
            for (e, (i, what)) in [(2, "output"), (0, "d/dx")].iter().enumerate() {
                let at = format!("{func} {case:?} {what}");
                assert_close(
                    &format!("interpreter {at}"),
                    &interp[*i],
                    &expected[e],
                    1e-13,
                );
                assert_close(&format!("native {at}"), &native[*i], &expected[e], 1e-12);
            }
        }
    }
}

/// Ties in a max pooling window share the derivative equally, as `max` does.
#[test]
fn max_pooling_ties_share_the_derivative() {
    let src =
        "dtype f64\nparam x[1, 1, 2, 4] ~ zeros\nloss sum(max_pool2d(x, 2) * [[[[1, 10]]]])\n";
    let model = model_of_source("ties.dsl", src);
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut p = random_point(compiled.model.graph(), 1, 0);
    // First window: two elements tie at 3; second: all four tie at 1.
    p.params[0].data = vec![3.0, 1.0, 1.0, 1.0, 3.0, 2.0, 1.0, 1.0];
    let f = &compiled.graphs.gradient;
    let expected = [0.5, 0.0, 2.5, 2.5, 0.5, 0.0, 2.5, 2.5];
    let interp = interp_outputs(f, &p);
    let native = jit_gradient_outputs(&compiled, &p);
    let k = f
        .outputs
        .iter()
        .position(|(o, _)| o.ends_with("/dx"))
        .unwrap();
    assert_eq!(interp[k].data, expected);
    assert_eq!(native[k], expected);
}

/// Pooling and convolution on rows wide enough for the native loops' vectors and their
/// tails (output rows of 7 to 27 elements): the maximum along a pooling's kept axis and the
/// adjoint of stride-1 windows run as vectors, the strided copies of windows and the adjoint
/// of strided windows row by row. Native code against the interpreter in f64 (1e-12) and f32
/// (1e-5), across strides, paddings and dilations.
#[test]
fn wide_pooling_and_convolution_loops_match_the_interpreter() {
    let pool = Pool {
        n: 2,
        c: 3,
        h: 14,
        w: 27,
        k: 2,
        stride: 2,
        pad: 0,
    };
    let pools = [
        pool,
        Pool {
            k: 3,
            stride: 1,
            pad: 1,
            ..pool
        },
        Pool {
            k: 3,
            stride: 2,
            pad: 1,
            ..pool
        },
    ];
    let conv = Conv {
        n: 2,
        c: 3,
        h: 12,
        w: 26,
        o: 4,
        kh: 5,
        kw: 5,
        stride: (1, 1),
        pad: (0, 0),
        dilation: (1, 1),
        groups: 1,
    };
    let convs = [
        conv,
        Conv {
            pad: (2, 1),
            ..conv
        },
        Conv {
            stride: (2, 2),
            dilation: (1, 2),
            ..conv
        },
    ];
    let mut sources: Vec<(String, String)> = Vec::new();
    for p in pools {
        for func in ["max_pool2d", "avg_pool2d"] {
            sources.push((format!("{func} {p:?}"), p.source(func)));
        }
    }
    for c in convs {
        sources.push((format!("{c:?}"), c.source()));
    }
    for (k, (name, src)) in sources.iter().enumerate() {
        let model = model_of_source("wide.dsl", src);
        for dtype in [adjoint::ir::DType::F64, adjoint::ir::DType::F32] {
            crate::jit::check_jit(name, &model, dtype, 1, k as u64);
        }
    }
}

/// The maximum over a pooling's window axis runs a vector of outputs at a time (a vector
/// comparison against the outputs loaded as vectors), and the adjoint of stride-1 windows
/// (a convolution's input gradient) adds a vector of patch elements into a contiguous row of
/// its output at a time. Before, both were scalar loops over rank-5 and rank-6 views.
#[test]
fn pooling_maxima_and_the_adjoint_of_windows_run_as_vectors() {
    let pool = clif_of_one_step(
        "pool.dsl",
        "param x[2, 3, 8, 24] ~ normal(0, 1)\nparam m[2, 3, 4, 12] ~ normal(0, 1)\n\
         loss sum(max_pool2d(x, 2) * m)\n",
    );
    let vectors = VectorUses::of(&pool, "f32x4");
    assert!(vectors.compares_greater > 0, "{pool}");
    // The kernel is a constant: the input's gradient is the only sum into memory.
    let conv = clif_of_one_step(
        "conv.dsl",
        "param x[2, 1, 6, 20] ~ normal(0, 1)\nparam m[2, 1, 4, 18] ~ normal(0, 1)\n\
         loss sum(conv2d(x, [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]]) * m)\n",
    );
    assert!(VectorUses::of(&conv, "f32x4").accumulates > 0, "{conv}");
}

/// What a function's Cranelift text does with vectors loaded from memory: `>` comparisons
/// of them, and sums with them stored back where one of them was loaded from.
struct VectorUses {
    compares_greater: usize,
    accumulates: usize,
}

impl VectorUses {
    fn of(clif: &str, vector: &str) -> VectorUses {
        use std::collections::{HashMap, HashSet};
        let load = format!("load.{vector} ");
        let mut loaded: HashMap<&str, &str> = HashMap::new();
        let mut sums: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut uses = VectorUses {
            compares_greater: 0,
            accumulates: 0,
        };
        for line in clif.lines().map(str::trim) {
            let code = line.split(" ;").next().unwrap_or(line);
            if let Some((value, rhs)) = code.split_once(" = ") {
                let args = |op: &str| {
                    rhs.strip_prefix(op)
                        .map(|a| a.split(", ").collect::<Vec<_>>())
                };
                if rhs.starts_with(&load) {
                    loaded.insert(value, rhs.rsplit(' ').next().unwrap());
                } else if let Some(args) = args("fadd ") {
                    let from = args.iter().filter_map(|a| loaded.get(a).copied());
                    sums.insert(value, from.collect());
                } else if let Some(args) = args("fcmp gt ") {
                    uses.compares_greater +=
                        usize::from(args.iter().any(|a| loaded.contains_key(a)));
                }
            } else if let Some(operands) = code.strip_prefix("store notrap ")
                && let Some((value, at)) = operands.split_once(", ")
            {
                uses.accumulates += usize::from(sums.get(value).is_some_and(|s| s.contains(at)));
            }
        }
        uses
    }
}
