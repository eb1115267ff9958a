//! Graph nodes as readable expressions, in the model language or in LaTeX.
//!
//! Named values (`let h = ...`) stay atoms, so a derivative reads in the user's own terms; the
//! definitions of the names it uses are printed after it. Broadcasts are implicit in the
//! notation, as in numpy; a reduction whose axis is kept for broadcasting is printed with
//! `keepdims=true`, so that the model-language form reads back as the same computation.

use super::graph::{Graph, NodeId};
use super::op::Op;
use super::print::fmt_number;
use super::shape::{Dim, Shape, reverses_axes};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Dsl,
    Latex,
}

// Binding strength, loosest first.
const CMP: u8 = 0;
const ADD: u8 = 1;
const MUL: u8 = 2;
const NEG: u8 = 3;
const POW: u8 = 4;
const ATOM: u8 = 5;

pub struct Printer<'g> {
    pub graph: &'g Graph,
    pub style: Style,
    /// Named nodes used by what was printed, in order of first use.
    pub used_names: Vec<NodeId>,
    /// Names given by the printer's caller to nodes the model did not name (repeated
    /// subterms), printed like the model's own.
    pub given_names: HashMap<NodeId, String>,
}

/// The reduction `x` is, with its axis, when `reshape` to `to` puts the reduced axis back as a
/// unit axis: `reduce(y, axis=k)` reshaped is `reduce(y, axis=k, keepdims=true)`.
pub fn kept_axis_reduction(g: &Graph, x: NodeId, to: &Shape) -> Option<u32> {
    let axis = match g.op(x) {
        Op::Sum { axis }
        | Op::LogSumExp { axis }
        | Op::ReduceMax { axis }
        | Op::ReduceMin { axis } => (*axis)?,
        _ => return None,
    };
    let mut kept = g.shape(g.node(x).inputs[0]).clone();
    kept.0[axis as usize] = Dim::Fixed(1);
    (kept == *to).then_some(axis)
}

/// A permutation as the language writes it: `(0, 2, 1)`.
fn axes_tuple(perm: &[u32]) -> String {
    let axes: Vec<String> = perm.iter().map(u32::to_string).collect();
    format!("({})", axes.join(", "))
}

impl<'g> Printer<'g> {
    pub fn new(graph: &'g Graph, style: Style) -> Printer<'g> {
        Printer {
            graph,
            style,
            used_names: Vec::new(),
            given_names: HashMap::new(),
        }
    }

    /// The name a node is printed by: the model's, or one given by the caller.
    pub fn name_of(&self, id: NodeId) -> Option<&str> {
        self.graph
            .name(id)
            .or_else(|| self.given_names.get(&id).map(String::as_str))
    }

    /// The expression of `id`, expanding through named nodes only at the root.
    pub fn expr(&mut self, id: NodeId) -> String {
        self.go(id, true).0
    }

    fn atom_name(&self, name: &str) -> String {
        match self.style {
            Style::Dsl => name.to_string(),
            Style::Latex if name.chars().count() == 1 => name.to_string(),
            Style::Latex => format!("\\mathrm{{{}}}", name.replace('_', "\\_")),
        }
    }

    fn wrap(&self, (s, p): (String, u8), min: u8) -> String {
        if p >= min {
            s
        } else if self.style == Style::Latex {
            format!("\\left({s}\\right)")
        } else {
            format!("({s})")
        }
    }

    fn call(&self, name: &str, args: &[String]) -> (String, u8) {
        match self.style {
            Style::Dsl => (format!("{name}({})", args.join(", ")), ATOM),
            Style::Latex => {
                let f = match name {
                    "exp" | "log" | "tanh" | "sin" | "cos" => format!("\\{name}"),
                    "sigmoid" => "\\sigma".into(),
                    "sum" => "\\textstyle\\sum".into(),
                    other => format!("\\operatorname{{{}}}", other.replace('_', "\\_")),
                };
                (format!("{f}\\left({}\\right)", args.join(", ")), ATOM)
            }
        }
    }

    /// A reduction as a call: `sum(x, axis=1)`, with `keepdims=true` when `keep`.
    fn reduction(&mut self, id: NodeId, keep: bool) -> (String, u8) {
        let node = self.graph.node(id);
        let (name, axis) = match node.op {
            Op::Sum { axis } => ("sum", axis),
            Op::LogSumExp { axis } => ("logsumexp", axis),
            Op::ReduceMax { axis } => ("max", axis),
            Op::ReduceMin { axis } => ("min", axis),
            ref other => unreachable!("`{}` is not a reduction", other.name()),
        };
        let x = node.inputs[0];
        let mut args = vec![self.go(x, false).0];
        args.extend(axis.map(|k| format!("axis={k}")));
        if keep {
            args.push("keepdims=true".into());
        }
        self.call(name, &args)
    }

    /// A reshape that only adds or removes unit axes. A reduction's axis put back is
    /// `keepdims=true`; another added axis is `expand_dims`, except leading ones where
    /// broadcasting adds them (`leading` false: not an operand of `@`); a removed unit axis is
    /// a sum over it (exact: it has one element).
    fn reshape(&mut self, x: NodeId, to: &Shape, leading: bool) -> (String, u8) {
        let g = self.graph;
        if g.shape(x).squeezed() != to.squeezed() {
            let a = self.go(x, false);
            let a = self.broadcast_written(x, a).0;
            let shape = self.shape_tuple(to);
            return self.call("reshape", &[a, shape]);
        }
        if self.name_of(x).is_none() && kept_axis_reduction(g, x, to).is_some() {
            return self.reduction(x, true);
        }
        let from = g.shape(x).clone();
        // Leading axes of `x` that its printed form leaves to broadcasting (a broadcast prints
        // as its operand): axes are counted in the printed form, without them.
        let mut elided = from.rank().saturating_sub(self.printed_shape(x).rank());
        let mut text = self.go(x, false);
        let (removed, added) = unit_axis_changes(&from, to);
        for k in removed.into_iter().rev() {
            if k < elided {
                elided -= 1;
                continue;
            }
            text = self.call("sum", &[text.0, format!("axis={}", k - elided)]);
        }
        // `elided` is now the number of leading axes of the result left to broadcasting: an
        // added axis before them, or right before the first written one where broadcasting
        // may add leading axes (not an operand of `@`), joins them.
        for k in added {
            if k < elided || (!leading && k == elided) {
                elided += 1;
                continue;
            }
            text = self.call("expand_dims", &[text.0, format!("axis={}", k - elided)]);
        }
        text
    }

    /// The indices of a gather or a scatter-add, with every axis they have: their shape is
    /// the result's, where an elementwise operand's leading unit axes could be left to
    /// broadcasting.
    fn indices(&mut self, i: NodeId) -> String {
        let g = self.graph;
        match g.op(i) {
            Op::Reshape(to) if self.name_of(i).is_none() => {
                let to = to.clone();
                self.reshape(g.node(i).inputs[0], &to, true).0
            }
            _ => self.go(i, false).0,
        }
    }

    /// `M @ c` or `c @ M` with a constant broadcast to a vector or matrix (the derivative of a
    /// sum of products multiplies by one), which the language cannot write as an operand: `c`
    /// times the sums of `M` over the contracted axis. Where the product has an axis of the
    /// constant's own, the sum keeps it as a unit axis, which broadcasts to the product's.
    fn product_with_constant(&mut self, a: NodeId, b: NodeId) -> Option<(String, u8)> {
        let g = self.graph;
        let constant = |x: NodeId| match g.op(x) {
            Op::Expand(_) => g.const_value(g.node(x).inputs[0]),
            _ => None,
        };
        // A batched product with a constant is left as a product.
        if g.shape(a).rank() > 2 || g.shape(b).rank() > 2 {
            return None;
        }
        let (c, m, axis, keep) = match (constant(a), constant(b)) {
            (_, Some(c)) => (c, a, g.shape(a).rank() - 1, g.shape(b).rank() == 2),
            (Some(c), None) => (c, b, 0, g.shape(a).rank() == 2),
            (None, None) => return None,
        };
        let mut args = vec![self.product_operand(m).0, format!("axis={axis}")];
        if keep {
            args.push("keepdims=true".into());
        }
        let sum = self.call("sum", &args);
        if c == 1.0 {
            return Some(sum);
        }
        let factor = (fmt_number(c), if c < 0.0 { NEG } else { ATOM });
        let sym = if self.style == Style::Latex {
            " \\cdot "
        } else {
            " * "
        };
        Some((
            format!("{}{sym}{}", self.wrap(factor, MUL), self.wrap(sum, MUL + 1)),
            MUL,
        ))
    }

    /// An operand of `@` or `transpose`, which do not broadcast: its reshapes are all written
    /// out.
    fn product_operand(&mut self, x: NodeId) -> (String, u8) {
        match &self.graph.node(x).op {
            Op::Reshape(to) if self.name_of(x).is_none() => {
                let to = to.clone();
                self.reshape(self.graph.node(x).inputs[0], &to, true)
            }
            _ => self.go(x, false),
        }
    }

    /// `text`, the printed form of `x`, broadcast to `x`'s shape where printing left that to
    /// the expression around it.
    fn broadcast_written(&mut self, x: NodeId, text: (String, u8)) -> (String, u8) {
        let shape = self.graph.shape(x).clone();
        if self.printed_shape(x) == shape {
            return text;
        }
        let dims = self.shape_tuple(&shape);
        self.call("broadcast_to", &[text.0, dims])
    }

    /// `x`'s text at `x`'s own shape, for an operand that does not broadcast (`windows`,
    /// `unwindows`): also where a broadcast is hidden under the unit axes a reshape adds, which
    /// `printed_shape` counts as written.
    fn written_whole(&mut self, x: NodeId, text: (String, u8)) -> (String, u8) {
        if !self.hides_broadcast(x) {
            return self.broadcast_written(x, text);
        }
        let dims = self.shape_tuple(&self.graph.shape(x).clone());
        self.call("broadcast_to", &[text.0, dims])
    }

    /// Whether `id` is printed through unnamed reshapes as a broadcast's smaller operand.
    fn hides_broadcast(&self, id: NodeId) -> bool {
        let g = self.graph;
        let node = g.node(id);
        if self.name_of(id).is_some() {
            return false;
        }
        match &node.op {
            Op::Expand(_) => self.printed_shape(node.inputs[0]) != node.shape,
            Op::Reshape(_) => self.hides_broadcast(node.inputs[0]),
            _ => false,
        }
    }

    /// A shape as the language writes one: `(2, n, 3)`, `(4,)`.
    fn shape_tuple(&self, shape: &Shape) -> String {
        let dims: Vec<String> = shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Fixed(k) => k.to_string(),
                Dim::Sym(s) => self.atom_name(&self.graph.syms[*s as usize]),
            })
            .collect();
        match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        }
    }

    /// `sum_to(x, target)`. Leading (batch) axes are summed away, then the axes broadcast from
    /// 1 are summed with their unit axis kept. An axis the printed operand does not have (it
    /// comes from a broadcast, which prints as its operand) is not summed but counted: the
    /// sum of n copies of a value is n times it.
    fn sum_to(&mut self, x: NodeId, target: &Shape) -> (String, u8) {
        let xs = self.graph.shape(x).clone();
        let printed = self.printed_shape(x);
        let offset = xs.rank() - printed.rank();
        // Whether the printed operand lacks axis `i` of `xs`, or has it as a unit axis.
        let broadcast = |i: usize| i < offset || printed.0[i - offset] == Dim::Fixed(1);
        let lead = xs.rank() - target.rank();
        let mut text = self.go(x, false);
        let mut count: Vec<Dim> = Vec::new();
        if target.is_scalar() {
            count.extend((0..xs.rank()).filter(|&i| broadcast(i)).map(|i| xs.0[i]));
            count.retain(|d| *d != Dim::Fixed(1));
            if printed.rank() > 0 {
                text = self.call("sum", &[text.0]);
            }
            return self.counted(count, text);
        }
        for i in 0..lead {
            if broadcast(i) && xs.0[i] != Dim::Fixed(1) {
                count.push(xs.0[i]);
            }
            if i >= offset {
                text = self.call("sum", &[text.0, "axis=0".into()]);
            }
        }
        for (k, (t, s)) in target.0.iter().zip(&xs.0[lead..]).enumerate() {
            let i = lead + k;
            if *t != Dim::Fixed(1) || *s == Dim::Fixed(1) {
                continue;
            }
            if broadcast(i) {
                count.push(*s);
            } else {
                let axis = i - offset.max(lead);
                let args = [text.0, format!("axis={axis}"), "keepdims=true".into()];
                text = self.call("sum", &args);
            }
        }
        self.counted(count, text)
    }

    /// `text` times the sizes in `count`.
    fn counted(&self, count: Vec<Dim>, text: (String, u8)) -> (String, u8) {
        if count.is_empty() {
            return text;
        }
        let sym = if self.style == Style::Latex {
            " \\cdot "
        } else {
            " * "
        };
        let factors: Vec<String> = count
            .iter()
            .map(|d| match d {
                Dim::Fixed(k) => k.to_string(),
                Dim::Sym(s) => self.atom_name(&self.graph.syms[*s as usize]),
            })
            .collect();
        (
            format!("{}{sym}{}", factors.join(sym), self.wrap(text, MUL + 1)),
            MUL,
        )
    }

    /// The shape of `id`'s printed expression, which is smaller than its shape in the graph
    /// where a broadcast (printed as its operand) is not widened again by an operand beside it.
    /// How many leading axes of `reshape(x, to)` (unit axes only) its printed form leaves to
    /// broadcasting, as `reshape` writes it.
    fn elided_after_reshape(&self, x: NodeId, to: &Shape, leading: bool) -> usize {
        let from = self.graph.shape(x);
        let mut elided = from.rank().saturating_sub(self.printed_shape(x).rank());
        let (removed, added) = unit_axis_changes(from, to);
        for k in removed.into_iter().rev() {
            if k < elided {
                elided -= 1;
            }
        }
        for k in added {
            if k < elided || (!leading && k == elided) {
                elided += 1;
            }
        }
        elided
    }

    fn printed_shape(&self, id: NodeId) -> Shape {
        let g = self.graph;
        let node = g.node(id);
        match &node.op {
            Op::Expand(_) => self.printed_shape(node.inputs[0]),
            // Leading unit axes a reshape adds are left to broadcasting (`reshape`).
            Op::Reshape(to)
                if self.name_of(id).is_none()
                    && kept_axis_reduction(g, node.inputs[0], to).is_none()
                    && g.shape(node.inputs[0]).squeezed() == to.squeezed() =>
            {
                let elided = self.elided_after_reshape(node.inputs[0], to, false);
                Shape(to.0[elided..].to_vec())
            }
            op if op.is_elementwise() && !node.inputs.is_empty() => node
                .inputs
                .iter()
                .map(|&a| self.printed_shape(a))
                .reduce(|a, b| crate::ir::shape::broadcast(&a, &b).unwrap_or(b))
                .unwrap_or_else(|| node.shape.clone()),
            _ => node.shape.clone(),
        }
    }

    fn go(&mut self, id: NodeId, root: bool) -> (String, u8) {
        let g = self.graph;
        if !root && let Some(name) = self.name_of(id) {
            let atom = self.atom_name(name);
            if !self.used_names.contains(&id) {
                self.used_names.push(id);
            }
            return (atom, ATOM);
        }
        let node = g.node(id);
        let ins = node.inputs.clone();
        let latex = self.style == Style::Latex;
        match &node.op {
            Op::Input(i) => (self.atom_name(&g.inputs[*i as usize].name), ATOM),
            Op::Param(i) => (self.atom_name(&g.params[*i as usize].name), ATOM),
            // The language has no name for a state tensor: written as an identifier
            // (`batch_norm0_running_mean`), which a model reading the derivative back declares.
            Op::State(i) => {
                let name = g.states[*i as usize].name.replace('.', "_");
                (self.atom_name(&name), ATOM)
            }
            Op::DimSize(s) => (self.atom_name(&g.syms[*s as usize]), ATOM),
            Op::Iota(len) => (format!("arange({})", super::print::dim_text(g, *len)), ATOM),
            Op::Literal(data) => (super::print::literal_text(data), ATOM),
            Op::DropMask { p, site, .. } => (
                format!(
                    "dropout_mask({}, site={site})",
                    fmt_number(f64::from_bits(*p))
                ),
                ATOM,
            ),
            Op::Const(_) => {
                let v = node.op.const_value().unwrap();
                let text = fmt_number(v);
                (text, if v < 0.0 { NEG } else { ATOM })
            }
            Op::Expand(_) => self.go(ins[0], false),
            Op::Reshape(to) => self.reshape(ins[0], to, false),
            Op::Add | Op::Sub => {
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
                let sym = if node.op == Op::Add { "+" } else { "-" };
                (
                    format!("{} {sym} {}", self.wrap(a, ADD), self.wrap(b, ADD + 1)),
                    ADD,
                )
            }
            Op::Mul => {
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
                let sym = if latex { " \\cdot " } else { " * " };
                (
                    format!("{}{sym}{}", self.wrap(a, MUL), self.wrap(b, MUL + 1)),
                    MUL,
                )
            }
            Op::Div => {
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
                if latex {
                    (format!("\\frac{{{}}}{{{}}}", a.0, b.0), ATOM)
                } else {
                    (
                        format!("{} / {}", self.wrap(a, MUL), self.wrap(b, MUL + 1)),
                        MUL,
                    )
                }
            }
            Op::MatMul => {
                if let Some(text) = self.product_with_constant(ins[0], ins[1]) {
                    return text;
                }
                let a = self.product_operand(ins[0]);
                let b = self.product_operand(ins[1]);
                let sym = if latex { " \\, " } else { " @ " };
                (
                    format!("{}{sym}{}", self.wrap(a, MUL), self.wrap(b, MUL + 1)),
                    MUL,
                )
            }
            Op::Pow => {
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
                if latex {
                    (format!("{{{}}}^{{{}}}", self.wrap(a, ATOM), b.0), POW)
                } else {
                    (format!("{}^{}", self.wrap(a, ATOM), self.wrap(b, POW)), POW)
                }
            }
            Op::Neg => {
                let a = self.go(ins[0], false);
                (format!("-{}", self.wrap(a, NEG + 1)), NEG)
            }
            Op::Transpose { perm } => {
                let a = self.product_operand(ins[0]);
                if *perm == [1, 0] && latex {
                    (format!("{}^{{\\top}}", self.wrap(a, ATOM)), ATOM)
                } else if reverses_axes(perm) {
                    self.call("transpose", &[a.0])
                } else {
                    self.call("transpose", &[a.0, axes_tuple(perm)])
                }
            }
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
                let sym = match (&node.op, latex) {
                    (Op::Eq, _) => "==",
                    (Op::Ne, false) => "!=",
                    (Op::Ne, true) => "\\neq",
                    (Op::Lt, _) => "<",
                    (Op::Le, false) => "<=",
                    (Op::Le, true) => "\\le",
                    (Op::Gt, _) => ">",
                    (Op::Ge, false) => ">=",
                    _ => "\\ge",
                };
                (
                    format!("{} {sym} {}", self.wrap(a, ADD), self.wrap(b, ADD)),
                    CMP,
                )
            }
            Op::Step => {
                let a = self.go(ins[0], false);
                (format!("({} > 0)", a.0), ATOM)
            }
            Op::Sum { .. } | Op::LogSumExp { .. } | Op::ReduceMax { .. } | Op::ReduceMin { .. } => {
                self.reduction(id, false)
            }
            Op::SumTo(target) => {
                let target = target.clone();
                self.sum_to(ins[0], &target)
            }
            Op::ArgMax { axis } => {
                let a = self.go(ins[0], false).0;
                self.call("argmax", &[a, format!("axis={axis}")])
            }
            Op::OneHot { classes } => {
                let a = self.go(ins[0], false).0;
                self.call("one_hot", &[a, classes.to_string()])
            }
            Op::Take { axis, index } => {
                // Indexed at its own rank: leading axes left to broadcasting are written out.
                let a = self.go(ins[0], false);
                let a = self.broadcast_written(ins[0], a);
                let rank = g.shape(ins[0]).rank();
                let idx: Vec<String> = (0..rank)
                    .map(|k| {
                        if k == *axis as usize {
                            index.to_string()
                        } else {
                            ":".into()
                        }
                    })
                    .collect();
                (format!("{}[{}]", self.wrap(a, ATOM), idx.join(", ")), ATOM)
            }
            Op::Put { axis, index, size } => {
                // where(e, v, 0), with `e` the unit vector of `index` along `axis` and `v` the
                // values with that axis put back: exact, as embedding into zeros is.
                let rank = g.shape(id).rank();
                // The axis is put back at its own rank: a broadcast operand is written out.
                let a = self.go(ins[0], false);
                let a = self.broadcast_written(ins[0], a).0;
                let v = self.call("expand_dims", &[a, format!("axis={axis}")]).0;
                let mut e = self
                    .call("one_hot", &[index.to_string(), size.to_string()])
                    .0;
                for _ in *axis as usize + 1..rank {
                    e = self.call("expand_dims", &[e, "axis=-1".into()]).0;
                }
                self.call("where", &[e, v, "0".into()])
            }
            Op::Slice {
                axis,
                start,
                step,
                len,
            } => {
                let a = self.go(ins[0], false);
                let xs = g.shape(ins[0]);
                let size = match xs.0[*axis as usize] {
                    Dim::Fixed(k) => k,
                    Dim::Sym(_) => unreachable!("a slice needs a fixed axis"),
                };
                // A broadcast operand printed without the sliced axis is the slice already,
                // broadcast where it is used.
                let printed = self.printed_shape(ins[0]);
                let offset = xs.rank() - printed.rank();
                let Some(at) = (*axis as usize).checked_sub(offset) else {
                    return a;
                };
                if printed.0[at] != xs.0[*axis as usize] {
                    return a;
                }
                let idx: Vec<String> = (0..printed.rank())
                    .map(|k| {
                        if k == at {
                            slice_text(*start, *step, *len, size)
                        } else {
                            ":".into()
                        }
                    })
                    .collect();
                (format!("{}[{}]", self.wrap(a, ATOM), idx.join(", ")), ATOM)
            }
            Op::Unslice {
                axis,
                start,
                step,
                size,
            } => {
                // Its operand is written at its own shape: an embedding does not broadcast.
                let a = self.go(ins[0], false);
                let a = self.broadcast_written(ins[0], a).0;
                let mut args = vec![a, size.to_string()];
                if *start != 0 {
                    args.push(format!("start={start}"));
                }
                if *step != 1 {
                    args.push(format!("step={step}"));
                }
                args.push(format!("axis={axis}"));
                self.call("unslice", &args)
            }
            // A constant index would read as one element's index: it prints as `take`.
            Op::Gather { axis: 0 } if g.const_value(ins[1]).is_none() => {
                let a = self.go(ins[0], false);
                let i = self.indices(ins[1]);
                (format!("{}[{i}]", self.wrap(a, ATOM)), ATOM)
            }
            Op::Gather { axis } => {
                let a = self.go(ins[0], false).0;
                let i = self.indices(ins[1]);
                self.call("take", &[a, i, format!("axis={axis}")])
            }
            Op::ScatterAdd { axis, size } => {
                let v = self.go(ins[0], false).0;
                let i = self.indices(ins[1]);
                self.call(
                    "scatter_add",
                    &[v, i, size.to_string(), format!("axis={axis}")],
                )
            }
            Op::Windows {
                kernel,
                stride,
                dilation,
            } => {
                // Its operand is written at its own shape: windows do not broadcast.
                let a = self.go(ins[0], false);
                let a = self.written_whole(ins[0], a).0;
                let mut args = vec![a, tuple_text(kernel)];
                args.extend(window_options(stride, dilation));
                self.call("windows", &args)
            }
            Op::Unwindows {
                kernel,
                stride,
                dilation,
                size,
            } => {
                let a = self.go(ins[0], false);
                let a = self.written_whole(ins[0], a).0;
                let mut args = vec![a, tuple_text(size), tuple_text(kernel)];
                args.extend(window_options(stride, dilation));
                self.call("unwindows", &args)
            }
            Op::Select => {
                let c = self.go(ins[0], false).0;
                let a = self.go(ins[1], false).0;
                let b = self.go(ins[2], false).0;
                self.call("where", &[c, a, b])
            }
            Op::Max | Op::Min => {
                let a = self.go(ins[0], false).0;
                let b = self.go(ins[1], false).0;
                self.call(
                    if node.op == Op::Max {
                        "maximum"
                    } else {
                        "minimum"
                    },
                    &[a, b],
                )
            }
            Op::Sqrt if latex => {
                let a = self.go(ins[0], false).0;
                (format!("\\sqrt{{{a}}}"), ATOM)
            }
            // Written as the language's function of the same name.
            op @ (Op::Exp
            | Op::Log
            | Op::Sqrt
            | Op::Tanh
            | Op::Sigmoid
            | Op::Relu
            | Op::Log1p
            | Op::Expm1
            | Op::Abs
            | Op::Sign
            | Op::Sin
            | Op::Cos
            | Op::Softplus
            | Op::Erf
            | Op::Erfc) => {
                let args: Vec<String> = ins.iter().map(|&i| self.go(i, false).0).collect();
                self.call(op.name(), &args)
            }
        }
    }
}

/// A slice of an axis of length `size` as the language writes it (`1:`, `::-1`, `2:5:2`),
/// with each bound left out where its default gives the same elements.
pub fn slice_text(start: u64, step: i64, len: u64, size: u64) -> String {
    let (start, len, size) = (start as i128, len as i128, size as i128);
    let k = step as i128;
    let last = start + k * (len - 1);
    let (default_start, default_len) = if k > 0 {
        (0, (size - start + k - 1) / k)
    } else {
        (size - 1, start / -k + 1)
    };
    let mut text = String::new();
    if start != default_start {
        text += &start.to_string();
    }
    text.push(':');
    if len != default_len {
        // Past the last element by one; never negative here (a walk down to 0 is the default).
        text += &(last + k.signum()).to_string();
    }
    if k != 1 {
        text += &format!(":{k}");
    }
    text
}

/// The positions of the unit axes of `from` that `to` lacks, when `to` is `from` without them.
/// The unit axes a reshape between shapes of the same squeezed form removes (positions in
/// `from`) and adds (positions in `to`). A unit axis moved (`[n, 3, 1]` to `[n, 1, 3]`) is
/// every unit axis removed, then the target's added.
fn unit_axis_changes(from: &Shape, to: &Shape) -> (Vec<usize>, Vec<usize>) {
    if let Some(removed) = removed_unit_axes(from, to) {
        (removed, vec![])
    } else if let Some(added) = removed_unit_axes(to, from) {
        (vec![], added)
    } else {
        let squeezed = Shape(from.squeezed());
        (
            removed_unit_axes(from, &squeezed).expect("unit axes removed"),
            removed_unit_axes(to, &squeezed).expect("unit axes added"),
        )
    }
}

fn removed_unit_axes(from: &Shape, to: &Shape) -> Option<Vec<usize>> {
    let mut removed = Vec::new();
    let mut t = 0;
    for (k, d) in from.0.iter().enumerate() {
        if to.0.get(t) == Some(d) {
            t += 1;
        } else if *d == Dim::Fixed(1) {
            removed.push(k);
        } else {
            return None;
        }
    }
    (t == to.rank()).then_some(removed)
}

/// Lengths as a tuple the language reads back: `(3, 3)`, `(5,)` for one.
fn tuple_text(values: &[u64]) -> String {
    let texts: Vec<String> = values.iter().map(u64::to_string).collect();
    match texts.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", texts.join(", ")),
    }
}

/// A window's stride and dilation as keyword arguments, each left out where it is all ones
/// (the default).
fn window_options(stride: &[u64], dilation: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    if stride.iter().any(|&s| s != 1) {
        out.push(format!("stride={}", tuple_text(stride)));
    }
    if dilation.iter().any(|&d| d != 1) {
        out.push(format!("dilation={}", tuple_text(dilation)));
    }
    out
}
