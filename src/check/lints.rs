//! Warnings about a model that checks: parameters that start symmetric, names never used.

use super::*;

/// How long the units of a layer that starts symmetric stay tied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tie {
    /// The next layer's weights are constant and nothing between treats the units apart.
    Forever,
    /// A dropout between the layer and the next gives each unit its own mask, so their
    /// gradients differ a little from the first step.
    UntilDropout,
}

/// The symmetry warnings of a checked model, read from the graph its training steps run:
/// there a `dropout` is a product with a mask (in the evaluation graph it is the identity),
/// and a mask between two layers is what separates their tied units.
pub(super) fn symmetry_warnings(
    graph: &Graph,
    loss: NodeId,
    inits: &[Init],
    spans: &[Span],
) -> Vec<Diagnostic> {
    let live = graph.reachable(&[loss]);
    let mut warnings = Vec::new();
    for (i, (init, span)) in inits.iter().zip(spans).enumerate() {
        let shape = &graph.params[i].shape;
        if !init.is_constant() || shape.rank() < 2 {
            continue;
        }
        let name = &graph.params[i].name;
        // The first layer weighted by `i` whose output, through any ops, feeds a layer with
        // constant weights.
        let tied = graph
            .ids()
            .filter(|id| live[id.index()])
            .filter(|&id| layer_weight(graph, id).map(|(k, _)| k) == Some(i as u32))
            .find_map(|id| tie(graph, &live, id, inits).map(|t| (id, t)));
        let Some((layer, tie)) = tied else {
            continue;
        };
        let Some(units) = layer_units(graph, layer) else {
            continue;
        };
        if units < 2 {
            continue;
        }
        let (kind, what, all) = if shape.rank() >= 3 {
            ("channels", "channel", "channels")
        } else {
            ("hidden units", "unit (column)", "units")
        };
        let how = match tie {
            Tie::Forever => format!(
                "every {what} computes the same value and, with the next layer's weights also constant, receives the same gradient, so the {all} stay equal for the whole of training"
            ),
            Tie::UntilDropout => format!(
                "every {what} computes the same value and, with the next layer's weights also constant, would receive the same gradient; only the dropout between the two layers gives each its own mask, so the {all} start equal and drift apart slowly, and the start still wastes training"
            ),
        };
        warnings.push(
            Diagnostic::warning(format!("the {units} {kind} fed by `{name}` start identical"))
                .with_label(*span, format!("`{name}` starts constant"))
                .with_note(how)
                .with_note(format!("break the symmetry with a random initializer, e.g. `param {name}[…] ~ xavier_uniform`")),
        );
    }
    warnings
}

/// Whether the units of `layer` stay tied: its output reaches, through any ops, the data
/// operand of a layer whose weights start constant (random ones give each unit its own
/// gradient). A dropout on any path to such a layer separates them; one past it does not (the
/// next layer's gradient stays the same for every unit it reads).
fn tie(graph: &Graph, live: &[bool], layer: NodeId, inits: &[Init]) -> Option<Tie> {
    let mut reach = vec![false; graph.len()];
    let mut dropped = vec![false; graph.len()];
    reach[layer.index()] = true;
    let mut found = None;
    for d in graph.ids().skip(layer.index() + 1) {
        if !live[d.index()] {
            continue;
        }
        let n = graph.node(d);
        if !n.inputs.iter().any(|a| reach[a.index()]) {
            continue;
        }
        if let Some((k, data)) = layer_weight(graph, d)
            && reach[n.inputs[data].index()]
            && inits[k as usize].is_constant()
        {
            let t = if dropped[n.inputs[data].index()] {
                Tie::UntilDropout
            } else {
                Tie::Forever
            };
            if found.is_none() || t == Tie::UntilDropout {
                found = Some(t);
            }
            continue;
        }
        reach[d.index()] = true;
        dropped[d.index()] = n.inputs.iter().any(|a| dropped[a.index()])
            || (n.op == Op::Mul
                && n.inputs
                    .iter()
                    .any(|a| matches!(graph.op(*a), Op::DropMask { .. })));
    }
    found
}

impl Checker {
    pub(super) fn unused_warnings(&mut self, module: &ast::Module, graph: &Graph, loss: NodeId) {
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
}

/// The parameter that weights a layer's product `id`, and which operand is the layer's data:
/// `x @ W` (a dense layer, `W` or a view of it: a slice, a transpose) or `reshape(w) @ patches`
/// with a kernel `w` of rank 3 or more (a convolution, as `conv1d` and `conv2d` build it).
fn layer_weight(graph: &Graph, id: NodeId) -> Option<(u32, usize)> {
    let node = graph.node(id);
    if node.op != Op::MatMul {
        return None;
    }
    if let Some(k) = param_behind_views(graph, node.inputs[1]) {
        return Some((k, 0));
    }
    match param_behind_views(graph, node.inputs[0]) {
        Some(k) if graph.params[k as usize].shape.rank() >= 3 => Some((k, 1)),
        _ => None,
    }
}

/// The parameter `id` reads through slices, transposes and reshapes: a constant one gives
/// every view of it constant too.
fn param_behind_views(graph: &Graph, mut id: NodeId) -> Option<u32> {
    loop {
        match graph.op(id) {
            Op::Param(k) => return Some(*k),
            Op::Slice { .. } | Op::Transpose { .. } | Op::Reshape(_) => {
                id = graph.node(id).inputs[0]
            }
            _ => return None,
        }
    }
}

/// How many units the layer `id` has: the columns of a dense layer's output, the rows
/// (output channels) of a convolution's.
fn layer_units(graph: &Graph, id: NodeId) -> Option<u64> {
    let (_, data) = layer_weight(graph, id)?;
    let dims = &graph.shape(id).0;
    let axis = match data {
        0 => dims.len().checked_sub(1)?,
        _ => dims.len().checked_sub(2)?,
    };
    match dims[axis] {
        Dim::Fixed(k) => Some(k),
        _ => None,
    }
}
