//! `einsum(spec, a)` and `einsum(spec, a, b)`: the spec is checked against the operands here,
//! with every error pointing into the string, and the call is desugared into transposes,
//! unit-axis reshapes, sums and one batched `@`, so that its derivative is printable graph.
//!
//! For two operands, each letter is one of: a batch letter (in both operands and the output),
//! contracted (in both, not in the output), kept from one operand (in it and the output), or
//! summed out of one operand before the product (in it alone). The product runs as
//! `[batch…, m, k] @ [batch…, k, n]`, each of `m`, `k` and `n` one axis holding its group's
//! letters (reshaped together; a unit axis where the group is empty), and the result is
//! reshaped back and permuted into the output's order. A group holding a length known only at
//! run time cannot be merged into one axis: then one letter of each group is the matrix axis,
//! further letters become batch axes of the product (broadcast against a unit axis of the
//! other operand), and further contracted letters are summed after it.

use super::Checker;
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{Dim, Graph, NodeId, Op, Shape};

/// One letter of a spec and where it is in the source.
#[derive(Clone, Copy)]
struct Letter {
    name: char,
    span: Span,
}

/// A comma-separated part of a spec: the axes of one operand, or of the result.
struct Term {
    letters: Vec<Letter>,
    span: Span,
}

impl Term {
    fn names(&self) -> Vec<char> {
        self.letters.iter().map(|l| l.name).collect()
    }

    fn text(&self) -> String {
        self.names().into_iter().collect()
    }
}

struct Spec {
    inputs: Vec<Term>,
    /// `None` in the implicit form (no `->`): the letters that appear once, in alphabetical
    /// order, as numpy's.
    output: Option<Term>,
}

/// The spec's text starts one byte after the opening quote of `span`.
fn parse(cx: &mut Checker, text: &str, span: Span) -> Option<Spec> {
    let at = |i: usize, len: usize| Span::new(span.start + 1 + i, span.start + 1 + i + len);
    let (inputs_text, output_text) = match text.find("->") {
        Some(p) => (&text[..p], Some((p + 2, &text[p + 2..]))),
        None => (text, None),
    };
    let term = |cx: &mut Checker, start: usize, part: &str| -> Option<Term> {
        let mut letters = Vec::new();
        for (i, c) in part.char_indices() {
            let place = at(start + i, c.len_utf8());
            if c.is_ascii_alphabetic() {
                letters.push(Letter {
                    name: c,
                    span: place,
                });
            } else if c != ' ' {
                let why = match c {
                    '.' => "an ellipsis (`...`) is not supported: name every axis with a letter",
                    '-' | '>' => "the output follows one `->`",
                    _ => {
                        "a spec is letters, one per axis, `,` between operands and `->` before the output"
                    }
                };
                cx.error(
                    Diagnostic::error(format!("unexpected `{c}` in the spec of `einsum`"))
                        .with_label(place, "here")
                        .with_note(why),
                );
                return None;
            }
        }
        let trimmed = part.trim_end().len();
        let lead = part.len() - part.trim_start().len();
        Some(Term {
            letters,
            span: at(start + lead, trimmed.saturating_sub(lead)),
        })
    };
    let mut inputs = Vec::new();
    let mut start = 0;
    for part in inputs_text.split(',') {
        inputs.push(term(cx, start, part)?);
        start += part.len() + 1;
    }
    let output = match output_text {
        Some((start, part)) => Some(term(cx, start, part)?),
        None => None,
    };
    Some(Spec { inputs, output })
}

/// Checks the spec against the operands and builds the graph of the call.
pub(super) fn einsum(
    cx: &mut Checker,
    g: &mut Graph,
    text: &str,
    spec_span: Span,
    operands: &[(NodeId, Span)],
) -> Option<NodeId> {
    let spec = parse(cx, text, spec_span)?;
    if spec.inputs.len() != operands.len() {
        let terms = spec.inputs.iter().map(|t| t.span).reduce(Span::join);
        let mut d = Diagnostic::error(format!(
            "the spec of `einsum` names {} operand(s), but {} are given",
            spec.inputs.len(),
            operands.len()
        ))
        .with_label(terms.unwrap_or(spec_span), "operands' terms")
        .with_note("`einsum` takes one or two operands, one comma-separated term each");
        for &(_, s) in operands {
            d = d.with_label(s, "operand");
        }
        cx.error(d);
        return None;
    }
    let sizes = letter_sizes(cx, g, &spec, operands)?;
    let output = output_letters(cx, &spec, &sizes)?;
    let ids: Vec<NodeId> = operands.iter().map(|&(id, _)| id).collect();
    let terms: Vec<Vec<char>> = spec.inputs.iter().map(Term::names).collect();
    Some(lower(g, &ids, &terms, &output))
}

/// The length each letter stands for, checking each term against its operand's rank, that no
/// letter repeats within a term, and that a letter has one length everywhere.
fn letter_sizes(
    cx: &mut Checker,
    g: &Graph,
    spec: &Spec,
    operands: &[(NodeId, Span)],
) -> Option<Vec<(char, Dim, Span)>> {
    let mut sizes: Vec<(char, Dim, Span)> = Vec::new();
    for (term, &(id, ospan)) in spec.inputs.iter().zip(operands) {
        let shape = g.shape(id);
        if term.letters.len() != shape.rank() {
            cx.error(
                Diagnostic::error(format!(
                    "the term `{}` names {} axes, but its operand has rank {}",
                    term.text(),
                    term.letters.len(),
                    shape.rank()
                ))
                .with_label(term.span, format!("{} axes", term.letters.len()))
                .with_label(ospan, format!("has shape {}", g.shape_text(shape))),
            );
            return None;
        }
        for (i, l) in term.letters.iter().enumerate() {
            if let Some(first) = term.letters[..i].iter().find(|f| f.name == l.name) {
                cx.error(
                    Diagnostic::error(format!(
                        "letter `{}` appears twice in one operand's term",
                        l.name
                    ))
                    .with_label(l.span, "again here")
                    .with_label(first.span, "first here")
                    .with_note("diagonals and traces are not supported: each axis of an operand needs a letter of its own"),
                );
                return None;
            }
            let dim = shape.0[i];
            match sizes.iter().find(|(c, _, _)| *c == l.name) {
                Some(&(_, d, first)) if d != dim => {
                    let len = |d: Dim| match d {
                        Dim::Fixed(n) => n.to_string(),
                        Dim::Sym(s) => g.syms[s as usize].clone(),
                    };
                    cx.error(
                        Diagnostic::error(format!(
                            "letter `{}` stands for axes of different lengths",
                            l.name
                        ))
                        .with_label(first, format!("length {}", len(d)))
                        .with_label(l.span, format!("length {}", len(dim)))
                        .with_label(ospan, format!("has shape {}", g.shape_text(shape))),
                    );
                    return None;
                }
                Some(_) => {}
                None => sizes.push((l.name, dim, l.span)),
            }
        }
    }
    Some(sizes)
}

/// The output's letters: the written ones, each once and each in an operand, or in the
/// implicit form those that appear in exactly one place, in alphabetical order.
fn output_letters(cx: &mut Checker, spec: &Spec, sizes: &[(char, Dim, Span)]) -> Option<Vec<char>> {
    let Some(out) = &spec.output else {
        let count = |c: char| {
            spec.inputs
                .iter()
                .filter(|t| t.names().contains(&c))
                .count()
        };
        let mut once: Vec<char> = sizes
            .iter()
            .map(|s| s.0)
            .filter(|&c| count(c) == 1)
            .collect();
        once.sort_unstable();
        return Some(once);
    };
    for (i, l) in out.letters.iter().enumerate() {
        if let Some(first) = out.letters[..i].iter().find(|f| f.name == l.name) {
            cx.error(
                Diagnostic::error(format!("letter `{}` appears twice in the output", l.name))
                    .with_label(l.span, "again here")
                    .with_label(first.span, "first here"),
            );
            return None;
        }
        if !sizes.iter().any(|s| s.0 == l.name) {
            cx.error(
                Diagnostic::error(format!(
                    "letter `{}` of the output is in no operand's term",
                    l.name
                ))
                .with_label(l.span, "unknown letter"),
            );
            return None;
        }
    }
    Some(out.names())
}

/// `x` with the axes of the letters not in `keep` summed away, and its remaining letters.
fn sum_out(g: &mut Graph, mut x: NodeId, letters: &[char], keep: &[char]) -> (NodeId, Vec<char>) {
    let mut left = letters.to_vec();
    for i in (0..letters.len()).rev() {
        if !keep.contains(&letters[i]) {
            x = g.build(
                Op::Sum {
                    axis: Some(i as u32),
                },
                &[x],
            );
            left.remove(i);
        }
    }
    (x, left)
}

/// `x` (axes named by `letters`) permuted into the order of `order`, a permutation of them.
fn permute(g: &mut Graph, x: NodeId, letters: &[char], order: &[char]) -> NodeId {
    let perm: Vec<u32> = order
        .iter()
        .map(|c| letters.iter().position(|l| l == c).unwrap() as u32)
        .collect();
    if perm.iter().enumerate().all(|(i, &a)| a as usize == i) {
        x
    } else {
        g.build(Op::Transpose { perm }, &[x])
    }
}

/// `x` (axes named by `letters`, in the order of `layout`'s letters) reshaped to `layout`,
/// where `None` is a unit axis.
fn with_unit_axes(g: &mut Graph, x: NodeId, layout: &[Option<char>]) -> NodeId {
    if layout.iter().all(Option::is_some) {
        return x;
    }
    let dims = g.shape(x).0.clone();
    let mut next = dims.iter();
    let shape: Vec<Dim> = layout
        .iter()
        .map(|l| match l {
            Some(_) => *next.next().unwrap(),
            None => Dim::Fixed(1),
        })
        .collect();
    g.build(Op::Reshape(Shape(shape)), &[x])
}

/// The graph of a checked call: operands `ids` with letters `terms`, result letters `output`.
fn lower(g: &mut Graph, ids: &[NodeId], terms: &[Vec<char>], output: &[char]) -> NodeId {
    if ids.len() == 1 {
        let (x, left) = sum_out(g, ids[0], &terms[0], output);
        return permute(g, x, &left, output);
    }
    let (ta, tb) = (&terms[0], &terms[1]);
    let in_both = |c: &char| ta.contains(c) && tb.contains(c);
    // Letters of one operand that the output does not keep are summed out first; letters of
    // both that it does not keep are contracted.
    let keep_a: Vec<char> = ta
        .iter()
        .copied()
        .filter(|c| output.contains(c) || tb.contains(c))
        .collect();
    let keep_b: Vec<char> = tb
        .iter()
        .copied()
        .filter(|c| output.contains(c) || ta.contains(c))
        .collect();
    let (a, ta) = sum_out(g, ids[0], ta, &keep_a);
    let (b, tb) = sum_out(g, ids[1], tb, &keep_b);
    if ta.is_empty() || tb.is_empty() {
        // A scalar operand scales the other.
        let (x, tx) = if ta.is_empty() { (b, &tb) } else { (a, &ta) };
        let s = if ta.is_empty() { a } else { b };
        let x = permute(g, x, tx, output);
        return g.build(Op::Mul, &[s, x]);
    }
    let batch: Vec<char> = output.iter().copied().filter(|c| in_both(c)).collect();
    let kept_a: Vec<char> = ta.iter().copied().filter(|c| !tb.contains(c)).collect();
    let kept_b: Vec<char> = tb.iter().copied().filter(|c| !ta.contains(c)).collect();
    let contracted: Vec<char> = ta
        .iter()
        .copied()
        .filter(|c| tb.contains(c) && !output.contains(c))
        .collect();
    let dims = letter_dims(g, &[(a, &ta), (b, &tb)]);
    let groups = [&kept_a, &kept_b, &contracted];
    if groups.iter().all(|grp| merged_length(grp, &dims).is_some()) {
        let p = merged_product(g, (a, &ta), (b, &tb), &batch, groups, &dims);
        let letters = [&batch[..], &kept_a, &kept_b].concat();
        return permute(g, p, &letters, output);
    }
    // A group with a length known only at run time cannot be merged into one axis: one
    // letter of each group is a matrix axis of the product and the rest are batch axes.
    let (m, extra_m) = last_and_rest(&kept_a);
    let (n, extra_n) = last_and_rest(&kept_b);
    let (k, extra_k) = last_and_rest(&contracted);
    let product_batch: Vec<char> = [&batch[..], extra_m, extra_n, extra_k].concat();
    let layout = |own: &[char], rows: Option<char>, cols: Option<char>| -> Vec<Option<char>> {
        let mut l: Vec<Option<char>> = product_batch
            .iter()
            .map(|c| own.contains(c).then_some(*c))
            .collect();
        l.extend([rows, cols]);
        l
    };
    let la = layout(&ta, m, k);
    let lb = layout(&tb, k, n);
    let order = |l: &[Option<char>]| -> Vec<char> { l.iter().flatten().copied().collect() };
    let a = permute(g, a, &ta, &order(&la));
    let a = with_unit_axes(g, a, &la);
    let b = permute(g, b, &tb, &order(&lb));
    let b = with_unit_axes(g, b, &lb);
    let mut p = g.build(Op::MatMul, &[a, b]);
    // The product's axes: its batch letters, then m and n (units where absent).
    let mut letters: Vec<Option<char>> = product_batch.iter().copied().map(Some).collect();
    letters.extend([m, n]);
    for i in (0..letters.len()).rev() {
        let contracted_here = letters[i].is_some_and(|c| extra_k.contains(&c));
        if contracted_here {
            p = g.build(
                Op::Sum {
                    axis: Some(i as u32),
                },
                &[p],
            );
            letters.remove(i);
        }
    }
    if letters.iter().any(Option::is_none) {
        let shape: Vec<Dim> = g
            .shape(p)
            .0
            .iter()
            .zip(&letters)
            .filter(|(_, l)| l.is_some())
            .map(|(d, _)| *d)
            .collect();
        p = g.build(Op::Reshape(Shape(shape)), &[p]);
    }
    let letters: Vec<char> = letters.into_iter().flatten().collect();
    permute(g, p, &letters, output)
}

/// The length of each letter, from the operands' shapes.
fn letter_dims(g: &Graph, operands: &[(NodeId, &Vec<char>)]) -> Vec<(char, Dim)> {
    let mut dims = Vec::new();
    for &(x, letters) in operands {
        for (&c, &d) in letters.iter().zip(&g.shape(x).0) {
            if !dims.iter().any(|(l, _)| *l == c) {
                dims.push((c, d));
            }
        }
    }
    dims
}

fn dim_of(dims: &[(char, Dim)], c: char) -> Dim {
    dims.iter().find(|(l, _)| *l == c).unwrap().1
}

/// The length of one axis holding a group's letters (1 for none): the group's one length, or
/// the product of fixed lengths; `None` when a symbolic length would be merged.
fn merged_length(group: &[char], dims: &[(char, Dim)]) -> Option<Dim> {
    match group {
        [c] => Some(dim_of(dims, *c)),
        _ => group
            .iter()
            .map(|&c| match dim_of(dims, c) {
                Dim::Fixed(n) => Some(n),
                Dim::Sym(_) => None,
            })
            .product::<Option<u64>>()
            .map(Dim::Fixed),
    }
}

/// `[batch…, m, k] @ [batch…, k, n]` with each of `groups` (kept from `a`, kept from `b`,
/// contracted) merged into one axis, and the result's merged axes split again: the result
/// has the batch letters, then `a`'s kept letters, then `b`'s.
fn merged_product(
    g: &mut Graph,
    (a, ta): (NodeId, &[char]),
    (b, tb): (NodeId, &[char]),
    batch: &[char],
    [kept_a, kept_b, contracted]: [&Vec<char>; 3],
    dims: &[(char, Dim)],
) -> NodeId {
    let batch_dims: Vec<Dim> = batch.iter().map(|&c| dim_of(dims, c)).collect();
    let len = |grp: &[char]| merged_length(grp, dims).expect("a mergeable group");
    let operand = |g: &mut Graph, x: NodeId, letters: &[char], rows: &[char], cols: &[char]| {
        let order = [batch, rows, cols].concat();
        let x = permute(g, x, letters, &order);
        let mut shape = batch_dims.clone();
        shape.extend([len(rows), len(cols)]);
        reshaped(g, x, Shape(shape))
    };
    let x = operand(g, a, ta, kept_a, contracted);
    let y = operand(g, b, tb, contracted, kept_b);
    let p = g.build(Op::MatMul, &[x, y]);
    let mut shape = batch_dims.clone();
    shape.extend(kept_a.iter().chain(kept_b).map(|&c| dim_of(dims, c)));
    reshaped(g, p, Shape(shape))
}

/// `x` reshaped to `to`, or `x` itself when it has that shape.
fn reshaped(g: &mut Graph, x: NodeId, to: Shape) -> NodeId {
    if *g.shape(x) == to {
        x
    } else {
        g.build(Op::Reshape(to), &[x])
    }
}

/// The last letter of a group (the matrix axis), if any, and the others.
fn last_and_rest(group: &[char]) -> (Option<char>, &[char]) {
    match group.split_last() {
        Some((last, rest)) => (Some(*last), rest),
        None => (None, group),
    }
}
