//! AST to a shape-checked forward graph: resolves names, checks shapes, desugars conveniences
//! (`mean`, `-`) into primitives, and reads the training settings.
//!
//! Invariant: reports every error it can find in one run, never only the first; the graph it
//! returns passes `ir::verify`.

use crate::diagnostics::{Diagnostic, Span};
use crate::init::Init;
use crate::ir::{DType, Dim, Graph, InputInfo, NodeId, Op, ParamInfo, Shape};
use crate::model::{GraphFn, InputBinding, Model, TextWindows, TrainSettings};
use crate::optim::{Dialect, LrSchedule, OptimizerKind, OptimizerSpec, Schedule};
use crate::syntax::ast::{self, BinOp, ExprKind, Item};
use std::collections::HashMap;

mod builtins;
mod einsum;
mod indexing;
mod literal;
mod shaping;

/// Checks a parsed module. On success returns the model and its warnings.
///
/// The file is checked for evaluation; when it uses a function that behaves differently while
/// training (`dropout`), it is lowered a second time for training steps (`Model::training`).
/// Both passes see the same source, so the second finds no error the first did not.
pub fn check(module: &ast::Module) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Checker::default();
    let (mut model, warnings) = cx.run(module)?;
    if cx.modes.dropout_sites > 0 {
        let mut training = Checker {
            modes: Modes {
                mode: Mode::Training,
                ..Modes::default()
            },
            ..Checker::default()
        };
        let (trained, _) = training.run(module)?;
        model.training = Some(trained.forward);
    }
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

    fn run(&mut self, module: &ast::Module) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
        let dtype = self.dtype(module);
        self.functions(module);
        let (inputs, bindings, row_dim) = self.inputs(module);
        let (params, inits, param_spans) = self.params(module, dtype);
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
        self.symmetry_warnings(&graph, loss, &inits, &param_spans);
        let predict = (!outputs.is_empty()).then(|| GraphFn {
            graph: graph.clone(),
            outputs,
        });
        let mut outputs = vec![(loss_name.clone(), loss)];
        let metric_names = metrics.iter().map(|m| m.0.clone()).collect();
        outputs.extend(metrics);
        let index_limits = crate::ir::indices::index_limits(&graph);
        let model = Model {
            index_limits,
            forward: GraphFn { graph, outputs },
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

    fn dtype(&mut self, module: &ast::Module) -> DType {
        let mut dtype = DType::F32;
        let mut first: Option<Span> = None;
        for item in &module.items {
            if let Item::Dtype { name } = item {
                if let Some(first) = first {
                    self.error(
                        Diagnostic::error("a model has one `dtype`")
                            .with_label(name.span, "second dtype")
                            .with_label(first, "first dtype here"),
                    );
                    continue;
                }
                first = Some(name.span);
                dtype = match name.name.as_str() {
                    "f32" => DType::F32,
                    "f64" => DType::F64,
                    other => {
                        self.error(
                            Diagnostic::error(format!("unknown dtype `{other}`"))
                                .with_label(name.span, "expected `f32` or `f64`"),
                        );
                        dtype
                    }
                };
            }
        }
        dtype
    }

    fn functions(&mut self, module: &ast::Module) {
        for item in &module.items {
            let Item::Fn { name, params, body } = item else {
                continue;
            };
            if let Some(first) = self.fns.get(&name.name) {
                let first = first.name.span;
                self.error(
                    Diagnostic::error(format!("function `{}` is defined twice", name.name))
                        .with_label(name.span, "redefined here")
                        .with_label(first, "first defined here"),
                );
                continue;
            }
            if builtins::is_builtin(&name.name) {
                self.error(
                    Diagnostic::error(format!("`{}` is a built-in function", name.name))
                        .with_label(name.span, "choose another name"),
                );
                continue;
            }
            for (i, p) in params.iter().enumerate() {
                if params[..i].iter().any(|q| q.name == p.name) {
                    self.error(
                        Diagnostic::error(format!("parameter `{}` appears twice", p.name))
                            .with_label(p.span, "repeated"),
                    );
                }
            }
            self.fns.insert(
                name.name.clone(),
                UserFn {
                    name: name.clone(),
                    params: params.clone(),
                    body: body.clone(),
                },
            );
        }
    }

    /// The symbolic dimension a name stands for, unless a value of that name hides it (the
    /// same order of lookup as `name`).
    fn dim_symbol(&self, name: &str) -> Option<u32> {
        let bound = self.frames.last().is_some_and(|f| f.contains_key(name))
            || self.names.contains_key(name);
        if bound {
            return None;
        }
        self.syms.iter().position(|s| s == name).map(|i| i as u32)
    }

    fn sym(&mut self, name: &str) -> u32 {
        match self.syms.iter().position(|s| s == name) {
            Some(i) => i as u32,
            None => {
                self.syms.push(name.to_string());
                (self.syms.len() - 1) as u32
            }
        }
    }

    fn inputs(&mut self, module: &ast::Module) -> (Vec<InputInfo>, Vec<InputBinding>, Option<u32>) {
        let mut infos = Vec::new();
        let mut bindings = Vec::new();
        let mut row_dim: Option<(u32, Span)> = None;
        // The first text-bound input (for messages) and the first input read from a table.
        let mut first_text: Option<FirstText> = None;
        let mut first_table: Option<Span> = None;
        for item in &module.items {
            let Item::Input {
                name,
                shape,
                is_int,
                columns,
                span,
            } = item
            else {
                continue;
            };
            let text = match columns {
                Some(ast::Columns::Text {
                    kind,
                    path,
                    path_span,
                    offset,
                }) => match self.text_windows(kind, path, *path_span, offset) {
                    Some(t) => Some(t),
                    None => continue,
                },
                _ => None,
            };
            let source = match (columns, &text) {
                (_, Some(_)) => InputSource::Text,
                (Some(ast::Columns::File(..)), _) => InputSource::Array,
                _ => InputSource::Table,
            };
            let dims = self.input_dims(name, shape, source, &mut row_dim);
            let Some(dims) = dims else { continue };
            if let Some(t) = &text
                && !self.text_input_ok(name, *is_int, &dims, t, *span, &mut first_text)
            {
                continue;
            }
            if text.is_none() && matches!(dims.first(), Some(Dim::Sym(_))) {
                first_table.get_or_insert(*span);
            }
            let width = match dims.get(1) {
                Some(Dim::Fixed(k)) => *k as usize,
                _ => 1,
            };
            let symbolic_width = matches!(dims.get(1), Some(Dim::Sym(_)));
            let file = match columns {
                Some(ast::Columns::File(path, _)) => Some(path.clone()),
                _ => None,
            };
            if symbolic_width && source == InputSource::Table && columns.is_some() {
                self.error(
                    Diagnostic::error("a column dimension given by name takes its size from the data; it cannot name its columns")
                        .with_label(*span, "remove `from …` or give the number of columns"),
                );
            }
            let columns = match columns {
                _ if symbolic_width || source != InputSource::Table => vec![],
                None if dims.len() == 1 => vec![name.name.clone()],
                None => (0..width).map(|j| format!("{}{j}", name.name)).collect(),
                Some(ast::Columns::List(list)) => list.iter().map(|c| c.name.clone()).collect(),
                Some(ast::Columns::File(..) | ast::Columns::Text { .. }) => {
                    unreachable!("handled above")
                }
                Some(ast::Columns::Range { first, last }) => {
                    match column_range(&first.name, &last.name) {
                        Some(cols) => cols,
                        None => {
                            self.error(
                            Diagnostic::error("column range must be `prefixA..prefixB` with whole numbers A ≤ B")
                                .with_label(first.span.join(last.span), "not a column range"),
                        );
                            continue;
                        }
                    }
                }
            };
            if columns.len() != width && !symbolic_width && source == InputSource::Table {
                self.error(
                    Diagnostic::error(format!(
                        "`{}` has {width} column(s) per row but {} are named",
                        name.name,
                        columns.len()
                    ))
                    .with_label(*span, "declared here"),
                );
                continue;
            }
            let index = infos.len() as u32;
            infos.push(InputInfo {
                name: name.name.clone(),
                shape: Shape(dims),
                is_int: *is_int,
            });
            let prefix =
                (symbolic_width && source == InputSource::Table).then(|| name.name.clone());
            bindings.push(InputBinding {
                columns,
                prefix,
                file,
                text,
                span: *span,
            });
            self.define(name, Binding::Input(index));
        }
        if let (Some(text), Some(table)) = (&first_text, first_table) {
            self.error(
                Diagnostic::error("a model's rows are either rows of data or windows of a text, not both")
                    .with_label(table, "rows of data")
                    .with_label(text.span, format!("windows of a text (`{}`)", text.input))
                    .with_note("inputs without the row dimension (`input K[3] from \"k.npy\"`) may join either"),
            );
        }
        (infos, bindings, row_dim.map(|r| r.0))
    }

    /// `from text "corpus.txt"` or `from text "corpus.txt" offset K`, checked.
    fn text_windows(
        &mut self,
        kind: &ast::Ident,
        path: &str,
        path_span: Span,
        offset: &Option<(ast::Ident, f64, Span)>,
    ) -> Option<TextWindows> {
        if kind.name != "text" {
            self.error(
                Diagnostic::error(format!("unknown data source `{}`", kind.name))
                    .with_label(kind.span, "expected `text` before the file name")
                    .with_note("`from text \"corpus.txt\"` reads windows of a text's characters; `from \"x.npy\"` reads an array"),
            );
            return None;
        }
        let offset = match offset {
            None => 0,
            Some((word, _, _)) if word.name != "offset" => {
                self.error(
                    Diagnostic::error(format!("unknown text setting `{}`", word.name))
                        .with_label(word.span, "expected `offset`"),
                );
                return None;
            }
            Some((_, k, span)) if k.fract() != 0.0 || !(0.0..1e9).contains(k) => {
                self.error(
                    Diagnostic::error(
                        "a text window's offset is a whole number of characters, 0 ≤ offset < 10⁹",
                    )
                    .with_label(*span, "here"),
                );
                return None;
            }
            Some((_, k, _)) => *k as u64,
        };
        if !path.ends_with(".txt") && path.ends_with(".npy") {
            self.error(
                Diagnostic::error("`from text` reads a plain-text file")
                    .with_label(path_span, "a NumPy array")
                    .with_note("an array is read with `from \"x.npy\"`"),
            );
            return None;
        }
        Some(TextWindows {
            file: path.to_string(),
            offset,
        })
    }

    /// A text-bound input holds token indices (`: int`) in windows `[n, T]` of a fixed length,
    /// and every text-bound input reads the same text with the same window length.
    fn text_input_ok(
        &mut self,
        name: &ast::Ident,
        is_int: bool,
        dims: &[Dim],
        text: &TextWindows,
        span: Span,
        first: &mut Option<FirstText>,
    ) -> bool {
        let window = match dims {
            [Dim::Sym(_), Dim::Fixed(t)] => *t,
            _ => {
                self.error(
                    Diagnostic::error(format!("input `{}` reads windows of a text: its shape is `[n, T]`", name.name))
                        .with_label(span, "declared here")
                        .with_note("n counts the windows, T (a whole number) is the characters in each: `input x[n, 64]: int from text \"corpus.txt\"`"),
                );
                return false;
            }
        };
        if !is_int {
            self.error(
                Diagnostic::error(format!(
                    "input `{}` reads a text's characters as token indices: declare it `: int`",
                    name.name
                ))
                .with_label(span, "declared here"),
            );
            return false;
        }
        let Some(first) = first else {
            *first = Some(FirstText {
                input: name.name.clone(),
                span,
                window,
                file: text.file.clone(),
            });
            return true;
        };
        if first.file != text.file {
            self.error(
                Diagnostic::error("a model reads one text")
                    .with_label(span, format!("reads \"{}\"", text.file))
                    .with_label(first.span, format!("but this reads \"{}\"", first.file)),
            );
            return false;
        }
        if first.window != window {
            self.error(
                Diagnostic::error("windows of one text have one length")
                    .with_label(span, format!("{window} characters"))
                    .with_label(first.span, format!("but {} here", first.window)),
            );
            return false;
        }
        true
    }

    /// An input batched by rows starts with the row dimension (`[n]`, `[n, k]`, and from a
    /// `.npy` file any rank: `[n, 1, 28, 28]`), the same symbolic `n` for all of them; an input
    /// without it (`[3]`, `[2, 3]`) is read whole from a `.npy` file.
    fn input_dims(
        &mut self,
        name: &ast::Ident,
        shape: &[ast::Dim],
        source: InputSource,
        row_dim: &mut Option<(u32, Span)>,
    ) -> Option<Vec<Dim>> {
        let Some(ast::Dim::Named(rows)) = shape.first() else {
            return self.whole_input_dims(name, shape, source);
        };
        if shape.len() > 2 && source == InputSource::Table {
            self.error(
                Diagnostic::error("inputs read from CSV columns have rank 1 or 2")
                    .with_label(shape[2].span(), "extra dimension")
                    .with_note("an array of any rank is read from a `.npy` file: `input img[n, 1, 28, 28] from \"x.npy\"`"),
            );
            return None;
        }
        let sym = self.sym(&rows.name);
        match row_dim {
            Some((s, first)) if *s != sym => {
                let first = *first;
                self.error(
                    Diagnostic::error("all inputs must share one row dimension")
                        .with_label(rows.span, format!("rows counted by `{}`", rows.name))
                        .with_label(first, "but here by another name"),
                );
                return None;
            }
            Some(_) => {}
            None => *row_dim = Some((sym, rows.span)),
        }
        let mut dims = vec![Dim::Sym(sym)];
        for d in &shape[1..] {
            match d {
                ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                // `input X[n, d]`: as many columns as the data has `X0, X1, …`.
                ast::Dim::Named(id) if id.name != rows.name => {
                    let s = self.sym(&id.name);
                    dims.push(Dim::Sym(s));
                }
                other => {
                    self.error(
                        Diagnostic::error(
                            "the column dimension must be a positive whole number or a name",
                        )
                        .with_label(other.span(), "here"),
                    );
                    return None;
                }
            }
        }
        Some(dims)
    }

    /// The fixed shape of an input read whole from a `.npy` file (rank 0 to any).
    fn whole_input_dims(
        &mut self,
        name: &ast::Ident,
        shape: &[ast::Dim],
        source: InputSource,
    ) -> Option<Vec<Dim>> {
        if source != InputSource::Array {
            self.error(
                Diagnostic::error(format!("input `{}` needs a row dimension", name.name))
                    .with_label(name.span, "declared here")
                    .with_note("inputs are rows of data: write `input x[n]` or `input X[n, 4]`; an input without rows is read whole from a `.npy` file: `input K[3] from \"k.npy\"`"),
            );
            return None;
        }
        let mut dims = Vec::with_capacity(shape.len());
        for d in shape {
            match d {
                ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                other => {
                    self.error(
                        Diagnostic::error(format!(
                            "input `{}` has no row dimension: its dimensions are positive whole numbers",
                            name.name
                        ))
                        .with_label(other.span(), "not a fixed size")
                        .with_note("the row dimension, a name such as `n`, comes first"),
                    );
                    return None;
                }
            }
        }
        Some(dims)
    }

    fn params(
        &mut self,
        module: &ast::Module,
        dtype: DType,
    ) -> (Vec<ParamInfo>, Vec<Init>, Vec<Span>) {
        let (mut infos, mut inits, mut spans) = (Vec::new(), Vec::new(), Vec::new());
        // Read once: it reads a file, which per parameter took most of checking 10,000 of them.
        let memory_limit = crate::runtime::memory_limit() as u128;
        for item in &module.items {
            let Item::Param {
                name,
                shape,
                init,
                span,
            } = item
            else {
                continue;
            };
            let mut dims = Vec::new();
            let mut ok = true;
            for d in shape {
                match d {
                    ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                    other => {
                        self.error(
                            Diagnostic::error(
                                "parameter dimensions must be positive whole numbers",
                            )
                            .with_label(other.span(), "not a fixed size"),
                        );
                        ok = false;
                    }
                }
            }
            let init = match init {
                ast::Init::Value(v, _) => Some(Init::Constant(*v)),
                ast::Init::Named { name: iname, args } => self.init(iname, args),
            };
            if !ok {
                continue;
            }
            let bytes = dims
                .iter()
                .map(|d| if let Dim::Fixed(k) = d { *k as u128 } else { 1 })
                .product::<u128>()
                * dtype.size() as u128;
            if bytes > memory_limit {
                // Still defined, so its uses do not cascade into "unknown name" errors.
                self.error(
                    Diagnostic::error(format!(
                        "parameter `{}` would take {}, more than this machine's memory allows",
                        name.name,
                        crate::runtime::human_bytes(bytes.min(u64::MAX as u128) as u64),
                    ))
                    .with_label(name.span, "too large"),
                );
            }
            // A parameter whose initializer is wrong is still defined, so its uses do not
            // cascade into "unknown name" errors; the model is rejected anyway.
            let init = init.unwrap_or(Init::Zeros);
            let index = infos.len() as u32;
            infos.push(ParamInfo {
                name: name.name.clone(),
                shape: Shape(dims),
            });
            inits.push(init);
            spans.push(*span);
            self.define(name, Binding::Param(index));
        }
        (infos, inits, spans)
    }

    fn init(&mut self, name: &ast::Ident, args: &[ast::Arg]) -> Option<Init> {
        let stat = match name.name.as_str() {
            "mean" => Some(crate::init::DataStat::Mean),
            "log_prior" => Some(crate::init::DataStat::LogPrior),
            "log_odds" => Some(crate::init::DataStat::LogOdds),
            _ => None,
        };
        if let Some(stat) = stat {
            // `~ log_prior(label)`: the statistic of an input, computed when data arrives.
            let input = match args {
                [
                    ast::Arg {
                        name: None,
                        value:
                            ast::Expr {
                                kind: ExprKind::Name(n),
                                ..
                            },
                    },
                ] => n.clone(),
                _ => {
                    self.error(
                        Diagnostic::error(format!("`{}` takes the name of an input", name.name))
                            .with_label(name.span, "e.g. `~ log_prior(label)`"),
                    );
                    return None;
                }
            };
            return Some(Init::FromData { stat, input });
        }
        // `he_normal(nonlinearity = relu)`: the gain recommended for that activation.
        let mut rest = Vec::new();
        let mut gain_from: Option<(String, f64)> = None;
        for a in args {
            match (&a.name, &a.value.kind) {
                (Some(n), ExprKind::Name(act)) if n.name == "nonlinearity" => {
                    match crate::init::gain_for(act) {
                        Some(g) => gain_from = Some(("gain".into(), g)),
                        None => {
                            self.error(
                                Diagnostic::error(format!("no recommended gain for `{act}`"))
                                    .with_label(a.value.span, "unknown nonlinearity")
                                    .with_note(
                                        "known: linear, sigmoid, tanh, relu, leaky_relu, selu",
                                    ),
                            );
                            return None;
                        }
                    }
                }
                _ => rest.push(a.clone()),
            }
        }
        let (positional, mut named) = self.const_args(&rest)?;
        named.extend(gain_from);
        match Init::from_call(&name.name, &positional, &named) {
            Ok(init) => Some(init),
            Err(msg) => {
                self.error(Diagnostic::error(msg).with_label(name.span, "in this initializer"));
                None
            }
        }
    }

    fn const_args(&mut self, args: &[ast::Arg]) -> Option<ConstArgs> {
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let Some(v) = self.const_value(&a.value) else {
                continue;
            };
            match &a.name {
                Some(n) => named.push((n.name.clone(), v)),
                None => positional.push(v),
            }
        }
        if args.len() == positional.len() + named.len() {
            Some((positional, named))
        } else {
            None
        }
    }

    fn const_value(&mut self, e: &ast::Expr) -> Option<f64> {
        match const_eval(e) {
            None => {
                let mut d =
                    Diagnostic::error("expected a number").with_label(e.span, "must be a constant");
                if let ExprKind::Name(n) = &e.kind {
                    d.notes.extend(python_literal_note(n));
                }
                self.error(d);
                None
            }
            Some(v) if !v.is_finite() => {
                self.error(
                    Diagnostic::error("this constant is not a finite number")
                        .with_label(e.span, format!("evaluates to {v}")),
                );
                None
            }
            v => v,
        }
    }

    fn optimizer(&mut self, name: &ast::Ident, args: &[ast::Arg]) -> Option<OptimizerSpec> {
        let Some(kind) = OptimizerKind::from_name(&name.name) else {
            let known: Vec<_> = OptimizerKind::ALL
                .iter()
                .map(|k| format!("`{}`", k.name()))
                .collect();
            self.error(
                Diagnostic::error(format!("unknown optimizer `{}`", name.name))
                    .with_label(name.span, "not an optimizer")
                    .with_note(format!("known optimizers: {}", known.join(", "))),
            );
            return None;
        };
        // `defaults = pytorch` chooses the rule and the defaults; it is read first.
        let mut dialect = Dialect::Lecture;
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "defaults") {
                match &a.value.kind {
                    ExprKind::Name(d) if Dialect::from_name(d).is_some() => {
                        dialect = Dialect::from_name(d).unwrap()
                    }
                    _ => {
                        let known: Vec<_> = Dialect::ALL
                            .iter()
                            .map(|d| format!("`{}`", d.name()))
                            .collect();
                        self.error(
                            Diagnostic::error("unknown defaults")
                                .with_label(a.value.span, "not a known framework")
                                .with_note(format!("choose one of {}", known.join(", "))),
                        );
                        return None;
                    }
                }
            }
        }
        let mut spec = OptimizerSpec::with_dialect(kind, dialect);
        let hypers = kind.hyperparameters(dialect);
        let mut positional = 0;
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "defaults") {
                continue;
            }
            let Some(v) = self.const_value(&a.value) else {
                continue;
            };
            let key = match &a.name {
                Some(n) => n.name.clone(),
                None if positional < hypers.len() => {
                    positional += 1;
                    hypers[positional - 1].0.to_string()
                }
                None => {
                    self.error(
                        Diagnostic::error("too many optimizer arguments")
                            .with_label(a.value.span, "extra"),
                    );
                    continue;
                }
            };
            if let Err(msg) = spec.set(&key, v) {
                self.error(
                    Diagnostic::error(msg)
                        .with_label(a.name.as_ref().map_or(a.value.span, |n| n.span), "here"),
                );
            }
        }
        Some(spec)
    }

    fn schedule(&mut self, name: &ast::Ident, args: &[ast::Arg]) -> Option<LrSchedule> {
        let (positional, named) = self.const_args(args)?;
        if !positional.is_empty() {
            self.error(
                Diagnostic::error("schedule arguments are given by name")
                    .with_label(name.span, "in this schedule"),
            );
            return None;
        }
        let params: &[(&str, f64)] = match name.name.as_str() {
            "constant" => &[],
            "step" => &[("every", f64::NAN), ("gamma", 0.1)],
            "exponential" => &[("gamma", f64::NAN)],
            "cosine" => &[("min", 0.0)],
            other => {
                self.error(
                    Diagnostic::error(format!("unknown schedule `{other}`"))
                        .with_label(name.span, "not a schedule")
                        .with_note("schedules: constant, step(every, gamma), exponential(gamma), cosine(min); each takes warmup = steps"),
                );
                return None;
            }
        };
        let mut values: Vec<f64> = params.iter().map(|p| p.1).collect();
        let mut warmup = 0.0;
        for (key, v) in &named {
            if key == "warmup" {
                warmup = *v;
                continue;
            }
            match params.iter().position(|p| p.0 == key) {
                Some(i) => values[i] = *v,
                None => {
                    self.error(
                        Diagnostic::error(format!("`{}` has no argument `{key}`", name.name))
                            .with_label(name.span, "in this schedule"),
                    );
                    return None;
                }
            }
        }
        if let Some(i) = values.iter().position(|v| v.is_nan()) {
            self.error(
                Diagnostic::error(format!("`{}` needs `{}`", name.name, params[i].0))
                    .with_label(name.span, "here"),
            );
            return None;
        }
        if warmup < 0.0 || warmup.fract() != 0.0 {
            self.error(
                Diagnostic::error("`warmup` must be a whole number of steps")
                    .with_label(name.span, "here"),
            );
            return None;
        }
        let schedule = match name.name.as_str() {
            "constant" => Schedule::Constant,
            "step" if values[0] >= 1.0 => Schedule::Step {
                every: values[0] as u64,
                gamma: values[1],
            },
            "step" => {
                self.error(
                    Diagnostic::error("`every` must be at least 1").with_label(name.span, "here"),
                );
                return None;
            }
            "exponential" => Schedule::Exponential { gamma: values[0] },
            _ => Schedule::Cosine { min: values[0] },
        };
        Some(LrSchedule {
            schedule,
            warmup: warmup as u64,
        })
    }

    fn train_settings(&mut self, settings: &[ast::Setting], train: &mut TrainSettings) {
        for s in settings {
            let Some(v) = self.const_value(&s.value) else {
                continue;
            };
            if s.name.name == "validation" {
                if (0.0..1.0).contains(&v) {
                    train.validation = v;
                } else {
                    self.error(
                        Diagnostic::error(
                            "`validation` is the fraction of rows held out, in [0, 1)",
                        )
                        .with_label(s.value.span, "here"),
                    );
                }
                continue;
            }
            let name = s.name.name.as_str();
            let (least, most) = match name {
                "batch" => (1.0, MAX_COUNT),
                "drop_last" => (0.0, 1.0),
                _ => (0.0, MAX_COUNT),
            };
            if !(v >= least && v.fract() == 0.0 && v <= most) {
                let range = if v > most {
                    format!("at most {}", count_text(most))
                } else {
                    format!("a whole number ≥ {least}")
                };
                self.error(
                    Diagnostic::error(format!("`{name}` must be {range}, found {}", count_text(v)))
                        .with_label(s.value.span, "here"),
                );
                continue;
            }
            let v = v as u64;
            match name {
                "steps" => train.steps = Some(v),
                "epochs" => train.epochs = Some(v),
                "batch" => train.batch = Some(v),
                "seed" => train.seed = v,
                "log_every" => train.log_every = v,
                "drop_last" => train.drop_last = v == 1,
                "patience" => train.patience = v,
                other => self.error(
                    Diagnostic::error(format!("unknown training setting `{other}`"))
                        .with_label(s.name.span, "not a setting")
                        .with_note("settings: steps, epochs, batch, seed, log_every, drop_last, validation, patience"),
                ),
            }
        }
        if train.steps.is_some() && train.epochs.is_some() {
            let span = settings
                .iter()
                .find(|s| s.name.name == "epochs")
                .map(|s| s.name.span)
                .unwrap_or_default();
            self.error(
                Diagnostic::error("give `steps` or `epochs`, not both").with_label(span, "here"),
            );
        }
    }

    /// A hidden layer whose incoming and outgoing weight matrices both start constant never
    /// breaks symmetry: every unit computes the same value, gets the same gradient, and stays
    /// equal to the others.
    fn symmetry_warnings(&mut self, graph: &Graph, loss: NodeId, inits: &[Init], spans: &[Span]) {
        let live = graph.reachable(&[loss]);
        for (i, (init, span)) in inits.iter().zip(spans).enumerate() {
            let shape = &graph.params[i].shape;
            let units = match shape.0.as_slice() {
                [_, Dim::Fixed(k)] => *k,
                _ => continue,
            };
            if !init.is_constant() || units < 2 {
                continue;
            }
            let name = &graph.params[i].name;
            // Layers `x @ W` whose output, through elementwise ops, feeds another product.
            let hidden = graph.ids().filter(|id| live[id.index()]).any(|id| {
                let node = graph.node(id);
                if node.op != Op::MatMul || *graph.op(node.inputs[1]) != Op::Param(i as u32) {
                    return false;
                }
                let mut reach = vec![false; graph.len()];
                reach[id.index()] = true;
                graph
                    .ids()
                    .skip(id.index() + 1)
                    .filter(|d| live[d.index()])
                    .any(|d| {
                        let n = graph.node(d);
                        let from = n.inputs.iter().any(|a| reach[a.index()]);
                        // The units stay tied only if the next layer treats them alike too: its weight
                        // matrix starts constant as well (a random one gives each unit its own gradient).
                        if from
                            && n.op == Op::MatMul
                            && reach[n.inputs[0].index()]
                            && let Op::Param(k) = graph.op(n.inputs[1])
                            && inits[*k as usize].is_constant()
                        {
                            return true;
                        }
                        reach[d.index()] = from;
                        false
                    })
            });
            if hidden {
                self.diags.push(
                    Diagnostic::warning(format!("the {units} hidden units fed by `{name}` start identical"))
                        .with_label(*span, format!("`{name}` starts constant"))
                        .with_note("every unit (column) computes the same value and, with the next layer's weights also constant, receives the same gradient, so the units stay equal for the whole of training")
                        .with_note(format!("break the symmetry with a random initializer, e.g. `param {name}[…] ~ xavier_uniform`")),
                );
            }
        }
    }

    fn unused_warnings(&mut self, module: &ast::Module, graph: &Graph, loss: NodeId) {
        let live = graph.reachable(&[loss]);
        let mut used_params = vec![false; graph.params.len()];
        let mut used_inputs = vec![false; graph.inputs.len()];
        for id in graph.ids().filter(|id| live[id.index()]) {
            match graph.op(id) {
                Op::Param(i) => used_params[*i as usize] = true,
                Op::Input(i) => used_inputs[*i as usize] = true,
                _ => {}
            }
        }
        for item in &module.items {
            match item {
                Item::Param { name, .. } => {
                    if let Some((Binding::Param(i), _)) = self.names.get(&name.name)
                        && !used_params[*i as usize]
                    {
                        self.diags.push(
                            Diagnostic::warning(format!(
                                "parameter `{}` does not affect the loss",
                                name.name
                            ))
                            .with_label(name.span, "its gradient is always zero"),
                        );
                    }
                }
                Item::Input { name, .. } => {
                    if let Some((Binding::Input(i), _)) = self.names.get(&name.name)
                        && !used_inputs[*i as usize]
                    {
                        self.diags.push(
                            Diagnostic::warning(format!(
                                "input `{}` is never used by the loss",
                                name.name
                            ))
                            .with_label(name.span, "declared here"),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// Lowers an expression; `None` when it has an error (already reported).
    fn expr(&mut self, g: &mut Graph, e: &ast::Expr) -> Option<NodeId> {
        let id = match &e.kind {
            ExprKind::Number(v) if !v.is_finite() => {
                self.error(
                    Diagnostic::error("this number is too large for a floating-point value")
                        .with_label(e.span, "overflows to infinity"),
                );
                return None;
            }
            ExprKind::Number(v) => g.constant(*v),
            ExprKind::Name(name) => self.name(g, name, e.span)?,
            ExprKind::Neg(x) => {
                let x = self.expr(g, x)?;
                g.build(Op::Neg, &[x])
            }
            ExprKind::Binary(op, a, b) => {
                let (x, y) = (self.expr(g, a), self.expr(g, b));
                let (x, y) = (x?, y?);
                let prim = match op {
                    BinOp::Add => Op::Add,
                    BinOp::Sub => Op::Sub,
                    BinOp::Mul => Op::Mul,
                    BinOp::Div => Op::Div,
                    BinOp::Pow => Op::Pow,
                    BinOp::MatMul => Op::MatMul,
                    BinOp::Eq => Op::Eq,
                    BinOp::Ne => Op::Ne,
                    BinOp::Lt => Op::Lt,
                    BinOp::Le => Op::Le,
                    BinOp::Gt => Op::Gt,
                    BinOp::Ge => Op::Ge,
                };
                self.node(g, prim, &[x, y], &[a.span, b.span], op.symbol(), e.span)?
            }
            ExprKind::Call { func, args } => match self.fns.get(&func.name).cloned() {
                Some(f) => self.call_user(g, &f, func, args, e.span)?,
                None => builtins::call(self, g, func, args, e.span)?,
            },
            ExprKind::Index { base, indices } => self.index(g, base, indices, e.span)?,
            ExprKind::Str(_) => {
                self.error(
                    Diagnostic::error("a string is not a value")
                        .with_label(e.span, "a string here")
                        .with_note(
                            "strings are `einsum`'s specs, as in `einsum(\"ij,jk->ik\", a, b)`",
                        ),
                );
                return None;
            }
            ExprKind::List(_) => literal::array(self, g, e)?,
            ExprKind::Tuple(_) => {
                self.error(
                    Diagnostic::error("a tuple is not a value")
                        .with_label(e.span, "a tuple here")
                        .with_note("tuples name axes or shapes, as in `transpose(x, (0, 2, 1))` or `reshape(x, (4, -1))`"),
                );
                return None;
            }
            ExprKind::Error => return None,
        };
        g.set_span(id, e.span);
        Some(id)
    }

    fn name(&mut self, g: &mut Graph, name: &str, span: Span) -> Option<NodeId> {
        if let Some(id) = self.frames.last().and_then(|f| f.get(name)) {
            return Some(*id);
        }
        match self.names.get(name) {
            Some((Binding::Input(i), _)) => Some(g.build(Op::Input(*i), &[])),
            Some((Binding::Param(i), _)) => Some(g.build(Op::Param(*i), &[])),
            Some((Binding::Value(id), _)) => Some(*id),
            Some((Binding::Failed, _)) => None,
            None => match name {
                // A symbolic dimension (`n` in `input X[n, 4]`) is its size: the number of rows.
                _ if self.syms.iter().any(|s| s == name) => {
                    let sym = self.sym(name);
                    Some(g.build(Op::DimSize(sym), &[]))
                }
                "pi" => Some(g.constant(std::f64::consts::PI)),
                "e" => Some(g.constant(std::f64::consts::E)),
                // For masks: `where(mask, scores, -inf)`.
                "inf" => Some(g.constant(f64::INFINITY)),
                _ => {
                    let mut d = Diagnostic::error(format!("unknown name `{name}`"))
                        .with_label(span, "not defined before this use");
                    if self.fns.contains_key(name) || builtins::is_builtin(name) {
                        d = d.with_note(format!("`{name}` is a function; call it with arguments"));
                    }
                    if let Some(note) = python_literal_note(name) {
                        d = d.with_note(note);
                    }
                    self.error(d);
                    None
                }
            },
        }
    }

    /// Inlines a user function: its parameters are bound to the argument values.
    fn call_user(
        &mut self,
        g: &mut Graph,
        f: &UserFn,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Option<NodeId> {
        if self.call_stack.contains(&f.name.name) {
            self.error(
                Diagnostic::error(format!("function `{}` calls itself", f.name.name))
                    .with_label(func.span, "recursive call")
                    .with_label(f.name.span, "defined here")
                    .with_note("functions are inlined, so recursion would never end"),
            );
            return None;
        }
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            self.error(
                Diagnostic::error(format!(
                    "`{}` takes its arguments by position, not by name",
                    f.name.name
                ))
                .with_label(named.span, "named argument")
                .with_label(f.name.span, "defined here"),
            );
            return None;
        }
        if args.len() != f.params.len() {
            self.error(
                Diagnostic::error(format!(
                    "`{}` takes {} argument(s), found {}",
                    f.name.name,
                    f.params.len(),
                    args.len()
                ))
                .with_label(span, "in this call")
                .with_label(f.name.span, "defined here"),
            );
            return None;
        }
        let values: Vec<Option<NodeId>> = args.iter().map(|a| self.expr(g, &a.value)).collect();
        let values: Vec<NodeId> = values.into_iter().collect::<Option<_>>()?;
        let key = (f.name.name.clone(), values);
        if let Some(&res) = self.inlined.get(&key) {
            return res;
        }
        // A function body sees its parameters and the model's global names, not the caller's
        // arguments.
        let frame = f
            .params
            .iter()
            .map(|p| p.name.clone())
            .zip(key.1.iter().copied())
            .collect();
        self.frames.push(frame);
        self.call_stack.push(f.name.name.clone());
        self.bodies_lowered += 1;
        let res = self.expr(g, &f.body);
        self.call_stack.pop();
        self.frames.pop();
        self.inlined.insert(key, res);
        res
    }

    /// Adds a node; a shape error becomes a diagnostic labelling each blamed operand.
    fn node(
        &mut self,
        g: &mut Graph,
        op: Op,
        args: &[NodeId],
        spans: &[Span],
        what: &str,
        span: Span,
    ) -> Option<NodeId> {
        match g.add(op, args) {
            Ok(id) => {
                g.set_span(id, span);
                Some(id)
            }
            Err(err) => {
                let shapes: Vec<String> = args.iter().map(|a| g.shape_text(g.shape(*a))).collect();
                let listed = shapes
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                let mut d = Diagnostic::error(format!("shape mismatch in `{what}`: {listed}"));
                for &k in &err.operands {
                    d = d.with_label(
                        spans[k.min(spans.len() - 1)],
                        format!("has shape {}", shapes[k]),
                    );
                }
                self.error(d.with_note(err.message));
                None
            }
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
        cx.run(&module).expect("the model checks");
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
        let Err(errors) = Checker::default().run(&module) else {
            panic!("the undefined name is an error");
        };
        assert_eq!(errors.iter().filter(|d| d.is_error()).count(), 1);
    }
}
