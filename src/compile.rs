//! The pipeline driver: source text to native code, stage by stage.
//!
//! parse → check → differentiate → simplify → plan → Cranelift. Does no IO; the CLI and the
//! library both go through it.

use crate::diagnostics::{Diagnostic, SourceFile};
use crate::ir::{DType, Graph, NodeId, Op};
use crate::jit::{CodeOwner, CodegenError, Jit, NativeFn};
use crate::limits::Limits;
use crate::lower;
use crate::model::{GraphFn, Model};
use crate::optim::OptimizerSpec;
use crate::runtime::{Executable, TrainLoop, UpdateFn};
use crate::simplify::{self, SimplifyReport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The source has errors; each diagnostic points at its place.
    #[error("the model has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Diagnostics(Vec<Diagnostic>),
    /// Cranelift could not generate code.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
}

/// Parses and checks a model file against `limits`: the front end alone.
pub fn check_source(
    file: &SourceFile,
    limits: &Limits,
) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
    with_big_stack(|| {
        let (module, parse_errors) = crate::syntax::parse(&file.text);
        if !parse_errors.is_empty() {
            return Err(parse_errors);
        }
        crate::check::check(&module, limits)
    })
}

/// Runs the recursive stages (the syntax tree is a tree) on a thread with a large stack, so
/// that deep but legal input, such as a sum of ten thousand terms, cannot overflow the caller's.
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let planted = crate::autodiff::planted_rule();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, move || {
                crate::autodiff::plant_wrong_rule(planted);
                f()
            })
            .map(|h| h.join())
            .unwrap_or_else(|_| panic!("adjoint internal error: cannot start the compiler thread"))
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Time spent in each stage of one compilation.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub stages: Vec<(&'static str, Duration)>,
}

impl Timings {
    fn lap(&mut self, stage: &'static str, since: &mut Instant) {
        let now = Instant::now();
        self.stages.push((stage, now - *since));
        *since = now;
    }
}

/// The simplified forward and gradient graphs of a model, before code generation.
#[derive(Clone, Debug)]
pub struct Graphs {
    pub forward: GraphFn,
    pub gradient: GraphFn,
    /// The model's `output` values, when it declares some.
    pub predict: Option<GraphFn>,
    pub forward_report: SimplifyReport,
    pub gradient_report: SimplifyReport,
    /// The training step's graphs where they differ from the evaluation graphs above (a model
    /// with `dropout`).
    pub training: Option<TrainingGraphs>,
}

/// The simplified forward graph of a training step and its gradient.
#[derive(Clone, Debug)]
pub struct TrainingGraphs {
    pub forward: GraphFn,
    pub gradient: GraphFn,
}

impl Graphs {
    /// The graph training steps compute: the loss and its gradient as a step takes them.
    pub fn step_gradient(&self) -> &GraphFn {
        self.training
            .as_ref()
            .map_or(&self.gradient, |t| &t.gradient)
    }
}

/// Simplifies a forward graph and its derivative: the derivative is taken of the simplified
/// graph (so of the numerically stable forms), then simplified in turn.
fn simplified_with_gradient(f: &GraphFn) -> (GraphFn, SimplifyReport, GraphFn, SimplifyReport) {
    let (forward, forward_report) = simplify::run(f);
    let raw = crate::autodiff::grad(&forward);
    let (gradient, gradient_report) = simplify::run(&raw);
    (forward, forward_report, gradient, gradient_report)
}

/// The training step's graphs: the simplified forward graph and its gradient, whose outputs
/// after the gradients are the next values of the model's state tensors (the forward graph's
/// last outputs, one per `Graph::states`), which each step stores.
fn training_graphs(t: &GraphFn) -> TrainingGraphs {
    let (forward, _) = simplify::run(t);
    let mut raw = crate::autodiff::grad(&forward);
    let n_states = forward.graph.states.len();
    let updates = &forward.outputs[forward.outputs.len() - n_states..];
    // `grad` extends a copy of the forward graph, so its nodes keep their ids.
    raw.outputs.extend(updates.iter().cloned());
    let (gradient, _) = simplify::run(&raw);
    TrainingGraphs { forward, gradient }
}

/// Simplifies the forward graph, differentiates the simplified graph (so the derivative is
/// taken of the numerically stable forms), and simplifies the gradient; the same for the
/// training graph where the model has one.
pub fn graphs(model: &Model) -> Graphs {
    let (forward, forward_report, gradient, gradient_report) =
        simplified_with_gradient(&model.forward);
    let predict = model.predict.as_ref().map(|p| simplify::run(p).0);
    let training = model.training.as_ref().map(training_graphs);
    Graphs {
        forward,
        gradient,
        predict,
        forward_report,
        gradient_report,
        training,
    }
}

/// A model compiled to native code: forward, value-and-gradient, the optimizer update, and the
/// fused training loop.
///
/// Cloning is cheap (the compiled parts are shared), and a compiled model can be used from many
/// threads at once: its native code is immutable once finalized, and all mutable state (params,
/// optimizer state, workspaces) lives in each thread's own `Trainer` or `Session`.
#[derive(Clone)]
pub struct CompiledModel {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub model: Model,
    pub graphs: Graphs,
    pub forward: Executable,
    pub gradient: Executable,
    /// The training step's value-and-gradient: `gradient` itself unless the model has a
    /// training graph of its own (`Graphs::training`).
    pub step: Executable,
    pub update: UpdateFn,
    /// Value-and-gradient and update fused, looped K times per call.
    pub train_loop: TrainLoop,
    /// The `output` values, when the model declares some.
    pub predict: Option<Executable>,
    pub timings: Timings,
    /// True when the native code came from the process-wide cache.
    pub cached: bool,
    /// Owns the machine code the executables point into.
    _code: Arc<CodeOwner>,
}

/// The compiler's own view of a compiled model (its graphs and native functions), for the
/// stages, the command line and the tests; not part of the supported API, so hidden from its
/// documentation like the module `Inner` lives in.
#[doc(hidden)]
impl std::ops::Deref for CompiledModel {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// A graph function's native code, compiled on first use.
fn lazy_graph(f: &GraphFn, plan: &lower::Plan) -> NativeFn {
    let (f, plan) = (f.clone(), plan.clone());
    NativeFn::lazy(move || {
        with_big_stack(move || {
            let mut jit = Jit::new()?;
            let id = jit.compile_graph(&f, &plan)?;
            Ok((jit.finalize(&[id])?[0], jit))
        })
    })
}

/// The standalone optimizer update, compiled on first use.
fn lazy_update(spec: &OptimizerSpec, sizes: &[usize], dtype: DType) -> NativeFn {
    let (spec, sizes) = (spec.clone(), sizes.to_vec());
    NativeFn::lazy(move || {
        let mut jit = Jit::new()?;
        let id = jit.compile_update(&spec, &sizes, dtype)?;
        Ok((jit.finalize(&[id])?[0], jit))
    })
}

/// Native code of one model, shared by every compilation with the same graphs and optimizer.
#[derive(Clone)]
struct NativeParts {
    forward: Executable,
    gradient: Executable,
    step: Executable,
    update: UpdateFn,
    train_loop: TrainLoop,
    predict: Option<Executable>,
    code: Weak<CodeOwner>,
}

type Cache = Mutex<HashMap<String, NativeParts>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Everything that determines the generated code: every graph's text (which includes every
/// shape and the dtype) and the optimizer with its hyperparameters.
fn cache_key(graphs: &Graphs, model: &Model) -> String {
    let p = graphs
        .predict
        .as_ref()
        .map(|p| p.text())
        .unwrap_or_default();
    let t = graphs
        .training
        .as_ref()
        .map(|t| format!("training\n{}", t.gradient.text()))
        .unwrap_or_default();
    format!(
        "{}\n{}\n{p}\n{t}\n{}\n{}",
        graphs.forward.text(),
        graphs.gradient.text(),
        model.optimizer,
        model.graph().dtype.name()
    )
}

impl CompiledModel {
    /// Checks a source file against `limits` and compiles it (the API's `compile` wraps this).
    #[doc(hidden)]
    pub fn compile(
        file: &SourceFile,
        limits: &Limits,
    ) -> Result<(CompiledModel, Vec<Diagnostic>), CompileError> {
        let mut timings = Timings::default();
        let mut t = Instant::now();
        // One thread for every stage: each thread of this size costs a mapping of its stack.
        with_big_stack(|| {
            let (module, parse_errors) = crate::syntax::parse(&file.text);
            timings.lap("parse", &mut t);
            if !parse_errors.is_empty() {
                return Err(CompileError::Diagnostics(parse_errors));
            }
            let checked = crate::check::check(&module, limits).map_err(CompileError::Diagnostics);
            timings.lap("check", &mut t);
            let (model, warnings) = checked?;
            Ok((CompiledModel::build(model, timings)?, warnings))
        })
    }

    /// Compiles a checked model (whose settings may have been changed since checking).
    #[doc(hidden)]
    pub fn from_model(model: Model) -> Result<CompiledModel, CompileError> {
        with_big_stack(|| CompiledModel::build(model, Timings::default()))
    }

    fn build(model: Model, mut timings: Timings) -> Result<CompiledModel, CompileError> {
        let mut t = Instant::now();
        let (forward, forward_report) = simplify::run(&model.forward);
        timings.lap("simplify", &mut t);
        let raw = crate::autodiff::grad(&forward);
        timings.lap("differentiate", &mut t);
        let (gradient, gradient_report) = simplify::run(&raw);
        let predict = model.predict.as_ref().map(|p| simplify::run(p).0);
        let training = model.training.as_ref().map(training_graphs);
        timings.lap("simplify", &mut t);
        let graphs = Graphs {
            forward,
            gradient,
            predict,
            forward_report,
            gradient_report,
            training,
        };
        let key = cache_key(&graphs, &model);
        let hit = {
            let map = cache().lock().unwrap_or_else(|e| e.into_inner());
            map.get(&key)
                .and_then(|parts| parts.code.upgrade().map(|code| (parts.clone(), code)))
        };
        let (parts, code, cached) = match hit {
            Some((parts, code)) => (parts, code, true),
            None => {
                let (forward, gradient, predict) =
                    (&graphs.forward, &graphs.gradient, &graphs.predict);
                let step_graph = graphs.step_gradient();
                let fplan = lower::plan(forward);
                let gplan = lower::plan(gradient);
                // Without a training graph of its own, the step is the gradient's plan.
                let splan = match graphs.training {
                    Some(_) => lower::plan(step_graph),
                    None => gplan.clone(),
                };
                let pplan = predict.as_ref().map(lower::plan);
                // Every plan the tests compile is verified; release builds trust `lower`.
                if cfg!(debug_assertions) {
                    for (f, p) in [(forward, &fplan), (gradient, &gplan), (step_graph, &splan)] {
                        if let Err(e) = lower::verify(f, p) {
                            panic!("adjoint internal error: lowering broke an invariant: {e}");
                        }
                    }
                }
                timings.lap("lower", &mut t);
                let dtype = model.graph().dtype;
                let sizes: Vec<usize> = model
                    .graph()
                    .params
                    .iter()
                    .map(|p| p.shape.fixed_elements().unwrap())
                    .collect();
                // Only the fused train loop is compiled now; the rest waits for first use.
                let mut jit = Jit::new()?;
                let lid = jit.compile_train_loop(step_graph, &splan, &model.optimizer, &sizes)?;
                let train_loop = jit.finalize(&[lid])?[0];
                timings.lap("cranelift", &mut t);
                let code = Arc::new(CodeOwner::new(jit));
                let n_state = model.optimizer.kind.state_arrays();
                let gradient = Executable {
                    func: lazy_graph(gradient, &gplan),
                    plan: gplan,
                    dtype,
                };
                let parts = NativeParts {
                    forward: Executable {
                        func: lazy_graph(forward, &fplan),
                        plan: fplan,
                        dtype,
                    },
                    step: match graphs.training {
                        Some(_) => Executable {
                            func: lazy_graph(step_graph, &splan),
                            plan: splan,
                            dtype,
                        },
                        None => gradient.clone(),
                    },
                    gradient,
                    update: UpdateFn {
                        func: lazy_update(&model.optimizer, &sizes, dtype),
                        sizes,
                        n_state,
                        dtype,
                    },
                    train_loop: TrainLoop {
                        func: train_loop,
                        n_state,
                    },
                    predict: predict.as_ref().zip(pplan).map(|(p, plan)| Executable {
                        func: lazy_graph(p, &plan),
                        plan,
                        dtype,
                    }),
                    code: Arc::downgrade(&code),
                };
                let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, p| p.code.strong_count() > 0);
                map.insert(key, parts.clone());
                (parts, code, false)
            }
        };
        Ok(CompiledModel {
            inner: Arc::new(Inner {
                forward: parts.forward,
                gradient: parts.gradient,
                step: parts.step,
                update: parts.update,
                train_loop: parts.train_loop,
                predict: parts.predict,
                graphs,
                model,
                timings,
                cached,
                _code: code,
            }),
        })
    }
}

/// What the checker and the simplifier did, for people: each stability rewrite with its source
/// location, each long sum checked as a sum over an array (`check::reroll`), then how often
/// each algebraic rule fired.
pub fn explain(model: &Model, graphs: &Graphs, file: &SourceFile) -> String {
    use std::fmt::Write;
    let mut out = String::from("\n# stability rewrites\n");
    let forward = &graphs.forward_report;
    if forward.stability.is_empty() {
        out.push_str("(none)\n");
    }
    for (rule, span) in &forward.stability {
        let (what, location) = match span {
            Some(s) => {
                let (line, col) = file.line_col(s.start);
                (
                    file.snippet(*s).to_string(),
                    format!("{}:{line}:{col}", file.name),
                )
            }
            None => (String::new(), "(generated)".to_string()),
        };
        let _ = writeln!(out, "{rule:<22} {location}  {what}");
    }
    out.push_str("\n# long sums checked as sums over arrays (terms added in sum's order)\n");
    if model.rerolled.is_empty() {
        out.push_str("(none)\n");
    }
    for r in &model.rerolled {
        let (line, col) = file.line_col(r.span.start);
        let first = file.snippet(r.span).split(" + ").next().unwrap_or_default();
        let terms = format!("{} like terms", r.terms);
        let _ = writeln!(out, "{terms:<22} {}:{line}:{col}  {first} + …", file.name);
    }
    for (title, report) in [("forward", forward), ("gradient", &graphs.gradient_report)] {
        let _ = writeln!(
            out,
            "\n# {title} simplification: {} → {} nodes in {} round(s)",
            report.nodes_before, report.nodes_after, report.rounds
        );
        for (rule, n) in &report.fired {
            let _ = writeln!(out, "{rule:<22} ×{n}");
        }
    }
    out
}

/// Subterms of at least this many operations (views not counted) get a name when a printed
/// derivative would repeat them; smaller ones (`1 / n`, `y - x^2`) read better written out.
const NAMED_SUBTERM_SIZE: usize = 3;

/// Names for the subterms that printing `roots` would otherwise write out more than once: the
/// derivative of a named value `h` is `d<loss>_dh`; the others are `t1`, `t2`, … in order of
/// definition, skipping names the model uses.
///
/// Node ids are topological, so walking them downwards visits every user before its operands:
/// each node's count is then final when it is reached, and a node that gets a name passes one
/// occurrence, its definition's, down to its operands.
fn repeated_subterm_names(g: &Graph, roots: &[NodeId], loss_name: &str) -> HashMap<NodeId, String> {
    let Some(top) = roots.iter().max() else {
        return HashMap::new();
    };
    let mut count = vec![0usize; top.index() + 1];
    for r in roots {
        count[r.index()] += 1;
    }
    let mut size = vec![None; top.index() + 1];
    let mut chosen = Vec::new();
    for id in (0..=top.index()).rev().map(|i| NodeId(i as u32)) {
        if count[id.index()] == 0 {
            continue;
        }
        let node = g.node(id);
        let named = g.name(id).is_some()
            || (count[id.index()] > 1
                && !is_view(&node.op)
                && subterm_size(g, id, &mut size) >= NAMED_SUBTERM_SIZE);
        if named && g.name(id).is_none() {
            chosen.push(id);
        }
        let passed = if named { 1 } else { count[id.index()] };
        let operands: Vec<NodeId> = match &node.op {
            // Printed as one call with `keepdims=true`: the reduction is not a subterm of its own.
            Op::Reshape(to)
                if crate::ir::pretty::kept_axis_reduction(g, node.inputs[0], to).is_some() =>
            {
                g.node(node.inputs[0]).inputs.clone()
            }
            _ => node.inputs.clone(),
        };
        for x in operands {
            count[x.index()] = count[x.index()].saturating_add(passed);
        }
    }
    chosen.sort();
    let taken: std::collections::HashSet<&str> = g
        .params
        .iter()
        .map(|p| p.name.as_str())
        .chain(g.inputs.iter().map(|i| i.name.as_str()))
        .chain(g.syms.iter().map(String::as_str))
        .chain(g.ids().filter_map(|id| g.name(id)))
        .collect();
    let mut names = HashMap::new();
    let mut k = 0;
    for id in chosen {
        let derivative = g
            .derivative_of(id)
            .map(|of| format!("d{loss_name}_d{of}"))
            .filter(|n| !taken.contains(n.as_str()) && !names.values().any(|v| v == n));
        if let Some(name) = derivative {
            names.insert(id, name);
            continue;
        }
        let name = loop {
            k += 1;
            let candidate = format!("t{k}");
            if !taken.contains(candidate.as_str()) {
                break candidate;
            }
        };
        names.insert(id, name);
    }
    names
}

/// Views are printed as their operand (or folded into a call), never named on their own.
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Expand(_) | Op::Reshape(_) | Op::Transpose { .. })
}

/// Operations in the printed form of `id` down to named nodes, views not counted (memoized
/// in `size`). Saturating: a graph of shared subterms, such as nested `f(x) + f(x)`, has
/// printed forms of 2^depth operations.
fn subterm_size(g: &Graph, id: NodeId, size: &mut [Option<usize>]) -> usize {
    if let Some(n) = size[id.index()] {
        return n;
    }
    let node = g.node(id);
    let own = usize::from(!is_view(&node.op) && !node.inputs.is_empty());
    let total = node
        .inputs
        .iter()
        .filter(|x| g.name(**x).is_none())
        .map(|&x| subterm_size(g, x, size))
        .fold(own, usize::saturating_add);
    size[id.index()] = Some(total);
    total
}

/// The simplified derivative of the loss with respect to each parameter (or only `wrt`), as
/// expressions in the model language or LaTeX, followed by the definitions of the named values
/// they use.
pub fn derivatives(
    graphs: &Graphs,
    loss_name: &str,
    wrt: Option<&str>,
    style: crate::ir::pretty::Style,
) -> Result<String, String> {
    use crate::ir::pretty::{Printer, Style};
    use std::fmt::Write;
    let g = &graphs.gradient.graph;
    if let Some(w) = wrt
        && !g.params.iter().any(|p| p.name == w)
    {
        let known: Vec<_> = g.params.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "the model has no parameter `{w}`; it has: {}",
            known.join(", ")
        ));
    }
    let printed: Vec<(usize, NodeId)> = g
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| wrt.is_none_or(|w| w == p.name))
        .map(|(i, _)| (i, graphs.gradient.outputs[i + 1].1))
        .collect();
    let mut printer = Printer::new(g, style);
    let roots: Vec<NodeId> = printed.iter().map(|p| p.1).collect();
    printer.given_names = repeated_subterm_names(g, &roots, loss_name);
    let mut out = String::new();
    for (i, id) in printed {
        let p = &g.params[i];
        let e = printer.expr(id);
        match style {
            Style::Dsl => {
                let _ = writeln!(out, "d{loss_name}/d{} = {e}", p.name);
            }
            Style::Latex => {
                let _ = writeln!(
                    out,
                    "\\frac{{\\partial {loss_name}}}{{\\partial {}}} = {e} \\\\",
                    p.name
                );
            }
        }
    }
    // Definitions of the named values used, including those used by other definitions.
    let mut defined = Vec::new();
    let mut k = 0;
    while k < printer.used_names.len() {
        let id = printer.used_names[k];
        let def = printer.expr(id);
        defined.push((id, def));
        k += 1;
    }
    defined.sort_by_key(|(id, _)| *id);
    if !defined.is_empty() {
        out.push_str(if style == Style::Dsl {
            "where\n"
        } else {
            "\\text{where} \\\\\n"
        });
        for (id, def) in defined {
            let name = printer.name_of(id).unwrap_or("?");
            match style {
                Style::Dsl => {
                    let _ = writeln!(out, "  {name} = {def}");
                }
                Style::Latex => {
                    let _ = writeln!(
                        out,
                        "\\quad \\mathrm{{{}}} = {def} \\\\",
                        name.replace('_', "\\_")
                    );
                }
            }
        }
    }
    Ok(out)
}
