//! AST to a shape-checked forward graph: resolves names, checks shapes, desugars conveniences
//! (`mean`, `-`) into primitives, and reads the training settings.
//!
//! Invariant: reports every error it can find in one run, never only the first; the graph it
//! returns passes `ir::verify`.

use crate::diagnostics::{Diagnostic, Span};
use crate::init::Init;
use crate::ir::{DType, Dim, Graph, InputInfo, NodeId, Op, ParamInfo, Shape};
use crate::limits::Limits;
use crate::model::{GraphFn, InputBinding, Model, TextWindows, TrainSettings};
use crate::optim::{Dialect, LrSchedule, OptimizerKind, OptimizerSpec, Schedule};
use crate::syntax::ast::{self, BinOp, ExprKind, Item};
use std::collections::HashMap;

mod builtins;
mod conv;
mod declarations;
mod einsum;
mod expressions;
mod indexing;
mod lints;
mod literal;
mod params;
mod reroll;
mod settings;
mod shaping;

/// Checks a parsed module against `limits`. On success returns the model and its warnings.
///
/// The file is checked for evaluation; when it uses a function that behaves differently while
/// training (`dropout`, `batch_norm`), it is lowered a second time for training steps
/// (`Model::training`).
/// Both passes see the same source, so the second finds no error the first did not.
pub fn check(
    module: &ast::Module,
    limits: &Limits,
) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Checker::default();
    let (mut model, mut warnings) = cx.run(module, limits)?;
    if cx.modes.dropout_sites > 0 || !model.graph().states.is_empty() {
        let mut training = Checker {
            modes: Modes {
                mode: Mode::Training,
                ..Modes::default()
            },
            ..Checker::default()
        };
        let (trained, _) = training.run(module, limits)?;
        model.training = Some(trained.forward);
    }
    let steps = model.training.as_ref().unwrap_or(&model.forward);
    warnings.extend(lints::symmetry_warnings(
        &steps.graph,
        steps.outputs[0].1,
        &model.inits,
        &model.param_spans,
    ));
    Ok((model, warnings))
}

/// Which graph the checker builds: they differ where the model has `dropout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    /// `eval`, `predict`, validation, `gradcheck`, `inspect`, exports: dropout is the identity.
    #[default]
    Evaluation,
    /// A training step: dropout draws its masks.
    Training,
}

/// The mode being built and what the model has that depends on it.
#[derive(Default)]
struct Modes {
    mode: Mode,
    /// `dropout` calls with p > 0 lowered so far: the next one's site number.
    dropout_sites: u32,
    /// A training graph's extra outputs: the next value of each state tensor
    /// (`state.<name>`), in state order, after the loss and the metrics.
    state_updates: Vec<(String, NodeId)>,
}

#[derive(Clone, Copy)]
enum Binding {
    Input(u32),
    Param(u32),
    Value(NodeId),
    /// A name whose definition failed to check: known, so that its uses add no errors of
    /// their own (the definition's error already rejects the model).
    Failed,
}

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
    syms: Vec<String>,
    names: HashMap<String, (Binding, Span)>,
    /// User functions by name.
    fns: HashMap<String, UserFn>,
    /// Arguments of the user functions being inlined, innermost last.
    frames: Vec<HashMap<String, NodeId>>,
    /// Names of the user functions being inlined, to refuse recursion.
    call_stack: Vec<String>,
    /// Each call already inlined, by function and argument nodes: a body sees only its
    /// arguments and the model's names, so the same call gives the same node (or the same
    /// error, reported once). Without it, `f(x) + f(x)` nested n deep lowers 2^n bodies.
    inlined: HashMap<(String, Vec<NodeId>), Option<NodeId>>,
    /// How many function bodies were lowered: the work inlining did.
    bodies_lowered: usize,
    /// The graph being built (training or evaluation) and what depends on it.
    modes: Modes,
    /// The runs of like terms checked as sums over arrays so far (`reroll`).
    rerolled: Vec<crate::model::RerolledSum>,
}

#[derive(Clone)]
struct UserFn {
    name: ast::Ident,
    params: Vec<ast::Ident>,
    body: ast::Expr,
}

/// Where an input's values come from, as far as its shape is concerned.
#[derive(Clone, Copy, PartialEq)]
enum InputSource {
    /// CSV columns: rank 1 or 2, batched by rows.
    Table,
    /// A `.npy` array: any rank, batched by rows when its first axis is the row dimension.
    Array,
    /// Windows of a text: `[n, T]` token indices.
    Text,
}

/// The first input read from a text, which the others must agree with.
struct FirstText {
    input: String,
    span: Span,
    window: u64,
    file: String,
}

/// A call's constant arguments: positional, then named.
type ConstArgs = (Vec<f64>, Vec<(String, f64)>);

impl Checker {
    /// Records an error once: a function is checked again at every call, and an error in
    /// its body that does not depend on the arguments would otherwise repeat at each.
    fn error(&mut self, d: Diagnostic) {
        if !self.diags.contains(&d) {
            self.diags.push(d);
        }
    }

    fn run(
        &mut self,
        module: &ast::Module,
        limits: &Limits,
    ) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
        let dtype = self.dtype(module);
        self.functions(module);
        let (inputs, bindings, row_dim) = self.inputs(module);
        let (params, inits, param_spans) = self.params(module, dtype, limits);
        for (init, span) in inits.iter().zip(&param_spans) {
            if let Init::FromData { input, .. } = init
                && !inputs.iter().any(|i| &i.name == input)
            {
                self.error(
                    Diagnostic::error(format!("no input named `{input}` to initialize from"))
                        .with_label(*span, "in this parameter"),
                );
            }
        }
        let mut graph = Graph::new(dtype, self.syms.clone(), inputs, params);
        let mut loss: Option<(String, NodeId, Span)> = None;
        let mut metrics: Vec<(String, NodeId)> = Vec::new();
        let mut outputs: Vec<(String, NodeId)> = Vec::new();
        let row_dim_sym = row_dim;
        let mut optimizer: Option<OptimizerSpec> = None;
        let mut optimizer_span = None;
        let mut train = TrainSettings::default();
        let mut data = None;
        let mut saw_train = false;
        let mut schedule: Option<LrSchedule> = None;
        for item in &module.items {
            match item {
                Item::Let { name, value } => match self.expr(&mut graph, value) {
                    Some(id) => {
                        graph.set_name(id, &name.name);
                        self.define(name, Binding::Value(id));
                    }
                    None => self.define(name, Binding::Failed),
                },
                Item::LetParts { names, value } => match self.let_parts(&mut graph, names, value) {
                    Some(ids) => {
                        for (name, id) in names.iter().zip(ids) {
                            graph.set_name(id, &name.name);
                            self.define(name, Binding::Value(id));
                        }
                    }
                    None => names
                        .iter()
                        .for_each(|name| self.define(name, Binding::Failed)),
                },
                Item::Loss { name, value, span } => {
                    let Some(id) = self.expr(&mut graph, value) else {
                        if let Some(n) = name {
                            self.define(n, Binding::Failed);
                        }
                        continue;
                    };
                    if let Some((_, _, first)) = &loss {
                        self.error(
                            Diagnostic::error("a model has one loss")
                                .with_label(*span, "second loss")
                                .with_label(*first, "first loss here"),
                        );
                        continue;
                    }
                    if !graph.shape(id).is_scalar() {
                        self.error(
                            Diagnostic::error("the loss must be a scalar")
                                .with_label(
                                    value.span,
                                    format!("has shape {}", graph.shape_text(graph.shape(id))),
                                )
                                .with_note("reduce it with `sum(...)` or `mean(...)`"),
                        );
                        continue;
                    }
                    let loss_name = name.as_ref().map_or("loss".to_string(), |n| n.name.clone());
                    if let Some(n) = name {
                        self.define(n, Binding::Value(id));
                    }
                    loss = Some((loss_name, id, *span));
                }
                Item::Output { name, value } => {
                    let Some(id) = self.expr(&mut graph, value) else {
                        self.define(name, Binding::Failed);
                        continue;
                    };
                    let shape = graph.shape(id).clone();
                    let per_row = row_dim_sym.is_some()
                        && shape.0.first() == row_dim_sym.map(Dim::Sym).as_ref();
                    if !per_row {
                        self.error(
                            Diagnostic::error("an output holds one value (or one row of values) per data row")
                                .with_label(value.span, format!("has shape {}", graph.shape_text(&shape)))
                                .with_note("outputs are written by `adjoint predict`, one CSV row per data row"),
                        );
                        self.define(name, Binding::Failed);
                        continue;
                    }
                    self.define(name, Binding::Value(id));
                    outputs.push((name.name.clone(), id));
                }
                Item::Metric { name, value } => {
                    let Some(id) = self.expr(&mut graph, value) else {
                        self.define(name, Binding::Failed);
                        continue;
                    };
                    // A scalar, or a vector of fixed length (one value per class, say).
                    let shape = graph.shape(id);
                    if shape.0.len() > 1 || shape.as_fixed().is_none() {
                        self.error(
                            Diagnostic::error(
                                "a metric must be a scalar or a vector of fixed length",
                            )
                            .with_label(
                                value.span,
                                format!("has shape {}", graph.shape_text(shape)),
                            ),
                        );
                        self.define(name, Binding::Failed);
                        continue;
                    }
                    self.define(name, Binding::Value(id));
                    metrics.push((name.name.clone(), id));
                }
                Item::Optimizer { name, args, span } => {
                    if optimizer.is_some() {
                        self.error(
                            Diagnostic::error("optimizer declared twice")
                                .with_label(*span, "second declaration"),
                        );
                    }
                    optimizer = self.optimizer(name, args);
                    optimizer_span = Some(*span);
                }
                Item::Train { settings, span } => {
                    if saw_train {
                        self.error(
                            Diagnostic::error("`train` settings given twice")
                                .with_label(*span, "second `train`"),
                        );
                    }
                    saw_train = true;
                    self.train_settings(settings, &mut train);
                }
                Item::Schedule { name, args, span } => {
                    if schedule.is_some() {
                        self.error(
                            Diagnostic::error("`schedule` given twice")
                                .with_label(*span, "second schedule"),
                        );
                    }
                    schedule = self.schedule(name, args);
                }
                Item::Data { path, span } => {
                    if data.is_some() {
                        self.error(
                            Diagnostic::error("`data` given twice")
                                .with_label(*span, "second `data`"),
                        );
                    }
                    data = Some(path.clone());
                }
                Item::Input { .. }
                | Item::Param { .. }
                | Item::Dtype { .. }
                | Item::Fn { .. }
                | Item::Error => {}
            }
        }
        let Some((loss_name, loss, _)) = loss else {
            if self.diags.iter().all(|d| !d.is_error()) {
                self.error(
                    Diagnostic::error("the model has no `loss`")
                        .with_note("add a line such as `loss mean((y - p)^2)`"),
                );
            }
            return Err(std::mem::take(&mut self.diags));
        };
        if self.diags.iter().any(|d| d.is_error()) {
            return Err(std::mem::take(&mut self.diags));
        }
        self.unused_warnings(module, &graph, loss);
        let predict = (!outputs.is_empty()).then(|| GraphFn {
            graph: graph.clone(),
            outputs,
        });
        let mut outputs = vec![(loss_name.clone(), loss)];
        let metric_names = metrics.iter().map(|m| m.0.clone()).collect();
        outputs.extend(metrics);
        outputs.extend(std::mem::take(&mut self.modes.state_updates));
        let index_limits = crate::ir::indices::index_limits(&graph);
        let model = Model {
            index_limits,
            forward: GraphFn { graph, outputs },
            rerolled: std::mem::take(&mut self.rerolled),
            predict,
            loss_name,
            metric_names,
            inits,
            param_spans,
            bindings,
            row_dim,
            optimizer: optimizer.unwrap_or_else(|| OptimizerSpec::new(OptimizerKind::Adam)),
            optimizer_span,
            schedule: schedule.unwrap_or_default(),
            train,
            data,
            training: None,
        };
        Ok((model, std::mem::take(&mut self.diags)))
    }

    fn define(&mut self, name: &ast::Ident, binding: Binding) {
        if let Some((_, first)) = self.names.get(&name.name) {
            let first = *first;
            self.error(
                Diagnostic::error(format!("`{}` is defined twice", name.name))
                    .with_label(name.span, "redefined here")
                    .with_label(first, "first defined here"),
            );
            return;
        }
        self.names.insert(name.name.clone(), (binding, name.span));
        // A body that read this name before it was defined reads it now.
        if !self.inlined.is_empty() {
            self.inlined = HashMap::new();
        }
    }
}

/// The largest count a training setting takes (steps, epochs, a batch): 10^18, which no run
/// reaches and which a `u64` holds exactly.
const MAX_COUNT: f64 = 1e18;

/// A count as a message shows it: `1e20` rather than twenty-one digits.
fn count_text(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// 1 / (product of dims), folded for fixed sizes, as a graph scalar for symbolic ones.
pub fn reciprocal_count(g: &mut Graph, dims: &[Dim]) -> NodeId {
    let fixed: u64 = dims
        .iter()
        .map(|d| if let Dim::Fixed(k) = d { *k } else { 1 })
        .product();
    let mut count = g.constant(fixed as f64);
    for d in dims {
        if let Dim::Sym(s) = d {
            let size = g.build(Op::DimSize(*s), &[]);
            count = if fixed == 1 && g.const_value(count) == Some(1.0) {
                size
            } else {
                g.build(Op::Mul, &[count, size])
            };
        }
    }
    let one = g.constant(1.0);
    match g.const_value(count) {
        Some(c) => g.constant(1.0 / c),
        None => g.build(Op::Div, &[one, count]),
    }
}

/// Evaluates a constant expression (numbers and arithmetic on them).
pub fn const_eval(e: &ast::Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Number(v) => Some(*v),
        ExprKind::Neg(x) => const_eval(x).map(|v| -v),
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (const_eval(a)?, const_eval(b)?);
            match op {
                BinOp::Add => Some(a + b),
                BinOp::Sub => Some(a - b),
                BinOp::Mul => Some(a * b),
                BinOp::Div => Some(a / b),
                BinOp::Pow => Some(a.powf(b)),
                BinOp::MatMul
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge => None,
            }
        }
        _ => None,
    }
}

/// What to write instead of Python's `True`, `False` and `None`.
pub(crate) fn python_literal_note(name: &str) -> Option<String> {
    let lower = match name {
        "True" => "true",
        "False" => "false",
        "None" => return Some("adjoint has no `None`: leave the argument out".into()),
        _ => return None,
    };
    let number = if lower == "true" { 1 } else { 0 };
    Some(format!(
        "`{name}` is Python's: adjoint writes `{lower}` for a flag (`keepdims={lower}`) and `{number}` elsewhere"
    ))
}

/// `p0..p63` → p0, p1, …, p63.
fn column_range(first: &str, last: &str) -> Option<Vec<String>> {
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, num) = s.split_at(s.len() - digits);
        Some((prefix.to_string(), num.parse::<u64>().ok()?))
    };
    let (p1, a) = split(first)?;
    let (p2, b) = split(last)?;
    if p1 != p2 || a > b || b - a > 1_000_000 {
        return None;
    }
    Some((a..=b).map(|i| format!("{p1}{i}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f_i(a) = f_{i-1}(a) + f_{i-1}(a)`, `depth` levels deep, and a loss of the last.
    fn doubling_source(depth: usize) -> String {
        let mut src = String::from("dtype f64\nparam a = 1\nfn f0(x) = x\n");
        for i in 1..=depth {
            src += &format!("fn f{i}(x) = f{}(x) + f{}(x)\n", i - 1, i - 1);
        }
        src + &format!("loss l = f{depth}(a)\n")
    }

    fn checker_after(src: &str) -> Checker {
        let (module, errors) = crate::syntax::parse(src);
        assert!(errors.is_empty());
        let mut cx = Checker::default();
        cx.run(&module, &Limits::of_host())
            .expect("the model checks");
        cx
    }

    #[test]
    fn each_distinct_call_is_inlined_once() {
        for depth in [1, 12, 40] {
            let cx = checker_after(&doubling_source(depth));
            assert_eq!(cx.bodies_lowered, depth + 1, "depth {depth}");
        }
    }

    #[test]
    fn calls_with_other_arguments_are_inlined_again() {
        let cx = checker_after(
            "param a = 1\nparam b = 2\nfn sq(x) = x * x\nloss l = sq(a) + sq(b) + sq(a)\n",
        );
        assert_eq!(cx.bodies_lowered, 2);
    }

    #[test]
    fn an_error_in_a_body_called_twice_is_reported_once() {
        let (module, errors) =
            crate::syntax::parse("param a = 1\nfn f(x) = x + nope\nloss l = f(a) + f(a)\n");
        assert!(errors.is_empty());
        let Err(errors) = Checker::default().run(&module, &Limits::of_host()) else {
            panic!("the undefined name is an error");
        };
        assert_eq!(errors.iter().filter(|d| d.is_error()).count(), 1);
    }
}
