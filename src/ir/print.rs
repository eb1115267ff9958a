//! The canonical text form of a graph: one node per line, operands before users.
//!
//! `%5 = mul %3, %4 : f32[n, 3]` is what snapshots show, what `adjoint graph` prints and what
//! the README quotes.

use super::graph::{Graph, NodeId};
use super::op::{LiteralData, Op};
use super::shape::Dim;
use std::fmt::Write;

/// Formats a float so that it reads back exactly and integers look like integers.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
            + if v == 0.0 && v.is_sign_negative() {
                ".0"
            } else {
                ""
            }
    } else {
        format!("{v:?}")
    }
}

/// A dimension as the source writes it: its size, or its symbol's name.
pub fn dim_text(graph: &Graph, d: Dim) -> String {
    match d {
        Dim::Fixed(n) => n.to_string(),
        Dim::Sym(s) => graph.syms[s as usize].clone(),
    }
}

/// An array literal as the source writes it, nested by axis: `[[1, 2], [3, 4]]`; a
/// rank-0 literal is its one number.
pub fn literal_text(data: &LiteralData) -> String {
    fn nest(out: &mut String, dims: &[u64], values: &mut dyn Iterator<Item = f64>) {
        let Some((&len, inner)) = dims.split_first() else {
            out.push_str(&fmt_number(
                values.next().expect("a literal holds its elements"),
            ));
            return;
        };
        out.push('[');
        for i in 0..len {
            if i > 0 {
                out.push_str(", ");
            }
            nest(out, inner, values);
        }
        out.push(']');
    }
    let dims: Vec<u64> = data
        .shape
        .0
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Sym(_) => unreachable!("a literal's shape is fixed"),
        })
        .collect();
    let mut out = String::new();
    nest(&mut out, &dims, &mut data.values());
    out
}

/// The text of the nodes reachable from `outputs`, followed by one line naming each output.
pub fn print(graph: &Graph, outputs: &[(String, NodeId)]) -> String {
    let roots: Vec<NodeId> = outputs.iter().map(|(_, id)| *id).collect();
    let live = graph.reachable(&roots);
    let mut out = String::new();
    for id in graph.ids().filter(|id| live[id.index()]) {
        let _ = writeln!(out, "{}", node_line(graph, id));
    }
    for (name, id) in outputs {
        let _ = writeln!(out, "{name} = {id}");
    }
    out
}

pub fn node_line(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    let mut line = format!("{id} = {}", op_text(graph, &node.op));
    for (i, input) in node.inputs.iter().enumerate() {
        line.push_str(if i == 0 { " " } else { ", " });
        line.push_str(&input.to_string());
    }
    let _ = write!(
        line,
        " : {}{}",
        graph.dtype.name(),
        graph.shape_text(&node.shape)
    );
    line
}

/// An op's name and its attributes, as the text form writes them: `sum axis=1`.
pub fn op_text(graph: &Graph, op: &Op) -> String {
    let mut line = op.name().to_string();
    let attr = match op {
        Op::Input(i) => Some(graph.inputs[*i as usize].name.clone()),
        Op::Param(i) => Some(graph.params[*i as usize].name.clone()),
        Op::State(i) => Some(graph.states[*i as usize].name.clone()),
        Op::Const(_) => Some(fmt_number(op.const_value().unwrap())),
        Op::DimSize(s) => Some(graph.syms[*s as usize].clone()),
        Op::Iota(len) => Some(format!("len={}", dim_text(graph, *len))),
        Op::Literal(data) => Some(literal_text(data)),
        Op::DropMask { p, site, .. } => {
            Some(format!("p={} site={site}", fmt_number(f64::from_bits(*p))))
        }
        Op::Sum { axis: Some(a) }
        | Op::LogSumExp { axis: Some(a) }
        | Op::ReduceMax { axis: Some(a) }
        | Op::ReduceMin { axis: Some(a) }
        | Op::ArgMax { axis: a } => Some(format!("axis={a}")),
        Op::Take { axis, index } => Some(format!("axis={axis} index={index}")),
        Op::Put { axis, index, size } => Some(format!("axis={axis} index={index} size={size}")),
        Op::Gather { axis } => Some(format!("axis={axis}")),
        Op::ScatterAdd { axis, size } => Some(format!("axis={axis} size={size}")),
        Op::Windows {
            kernel,
            stride,
            dilation,
        } => Some(format!(
            "kernel={} stride={} dilation={}",
            comma_list(kernel),
            comma_list(stride),
            comma_list(dilation)
        )),
        Op::Unwindows {
            kernel,
            stride,
            dilation,
            size,
        } => Some(format!(
            "kernel={} stride={} dilation={} size={}",
            comma_list(kernel),
            comma_list(stride),
            comma_list(dilation),
            comma_list(size)
        )),
        Op::OneHot { classes } => Some(format!("classes={classes}")),
        Op::Slice {
            axis,
            start,
            step,
            len,
        } => Some(format!("axis={axis} start={start} step={step} len={len}")),
        Op::Unslice {
            axis,
            start,
            step,
            size,
        } => Some(format!("axis={axis} start={start} step={step} size={size}")),
        // Reversing the axes is the default (and for a matrix the only) transpose.
        Op::Transpose { perm } if !super::shape::reverses_axes(perm) => {
            let axes: Vec<String> = perm.iter().map(u32::to_string).collect();
            Some(format!("perm={}", axes.join(",")))
        }
        _ => None,
    };
    if let Some(attr) = attr {
        line.push(' ');
        line.push_str(&attr);
    }
    line
}

/// Numbers joined by commas, as `perm=` prints its axes.
fn comma_list(values: &[u64]) -> String {
    let texts: Vec<String> = values.iter().map(u64::to_string).collect();
    texts.join(",")
}
