//! Graph nodes as readable expressions, in the model language or in LaTeX.
//!
//! Named values (`let h = ...`) stay atoms, so a derivative reads in the user's own terms; the
//! definitions of the names it uses are printed after it. Broadcasts and unit-axis reshapes are
//! implicit in the notation and not shown.

use super::graph::{Graph, NodeId};
use super::op::Op;
use super::print::fmt_number;
use super::shape::Dim;

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
}

impl<'g> Printer<'g> {
    pub fn new(graph: &'g Graph, style: Style) -> Printer<'g> {
        Printer {
            graph,
            style,
            used_names: Vec::new(),
        }
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

    fn go(&mut self, id: NodeId, root: bool) -> (String, u8) {
        let g = self.graph;
        if !root {
            if let Some(name) = g.name(id) {
                if !self.used_names.contains(&id) {
                    self.used_names.push(id);
                }
                return (self.atom_name(name), ATOM);
            }
        }
        let node = g.node(id);
        let ins = node.inputs.clone();
        let latex = self.style == Style::Latex;
        match &node.op {
            Op::Input(i) => (self.atom_name(&g.inputs[*i as usize].name), ATOM),
            Op::Param(i) => (self.atom_name(&g.params[*i as usize].name), ATOM),
            Op::DimSize(s) => (self.atom_name(&g.syms[*s as usize]), ATOM),
            Op::Const(_) => {
                let v = node.op.const_value().unwrap();
                let text = fmt_number(v);
                (text, if v < 0.0 { NEG } else { ATOM })
            }
            Op::Expand(_) | Op::Reshape(_) => self.go(ins[0], false),
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
                let a = self.go(ins[0], false);
                let b = self.go(ins[1], false);
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
            Op::Transpose => {
                let a = self.go(ins[0], false);
                if latex {
                    (format!("{}^{{\\top}}", self.wrap(a, ATOM)), ATOM)
                } else {
                    self.call("transpose", &[a.0])
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
            Op::Sum { axis }
            | Op::LogSumExp { axis }
            | Op::ReduceMax { axis }
            | Op::ReduceMin { axis } => {
                let name = match node.op {
                    Op::Sum { .. } => "sum",
                    Op::LogSumExp { .. } => "logsumexp",
                    Op::ReduceMax { .. } => "max",
                    _ => "min",
                };
                let a = self.go(ins[0], false).0;
                match axis {
                    None => self.call(name, &[a]),
                    Some(k) => self.call(name, &[a, format!("axis={k}")]),
                }
            }
            Op::SumTo(target) => {
                let x = g.shape(ins[0]).clone();
                let a = self.go(ins[0], false).0;
                // The common case, summing away leading (batch) axes, reads as a plain sum.
                let lead = x.rank() - target.rank();
                if target.is_scalar() {
                    self.call("sum", &[a])
                } else if lead == 1 && target.0.iter().zip(&x.0[1..]).all(|(t, s)| t == s) {
                    self.call("sum", &[a, "axis=0".into()])
                } else {
                    let dims: Vec<String> = target
                        .0
                        .iter()
                        .map(|d| match d {
                            Dim::Fixed(n) => n.to_string(),
                            Dim::Sym(s) => g.syms[*s as usize].clone(),
                        })
                        .collect();
                    self.call("sum_to", &[a, format!("[{}]", dims.join(", "))])
                }
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
                let a = self.go(ins[0], false);
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
                let a = self.go(ins[0], false).0;
                self.call(
                    "put",
                    &[
                        a,
                        format!("axis={axis}"),
                        format!("index={index}"),
                        format!("size={size}"),
                    ],
                )
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
            op => {
                let args: Vec<String> = ins.iter().map(|&i| self.go(i, false).0).collect();
                self.call(op.name(), &args)
            }
        }
    }
}
