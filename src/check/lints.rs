//! Warnings about a model that checks: parameters that start symmetric, names never used.

use super::*;

impl Checker {
    /// A hidden layer whose incoming and outgoing weights both start constant never breaks
    /// symmetry: every unit computes the same value, gets the same gradient, and stays equal to
    /// the others. A layer is a dense `x @ W` (units: `W`'s columns) or a convolution's
    /// product `reshape(w) @ patches` (units: the kernel's output channels, its first axis).
    pub(super) fn symmetry_warnings(
        &mut self,
        graph: &Graph,
        loss: NodeId,
        inits: &[Init],
        spans: &[Span],
    ) {
        let live = graph.reachable(&[loss]);
        for (i, (init, span)) in inits.iter().zip(spans).enumerate() {
            let shape = &graph.params[i].shape;
            if !init.is_constant() || shape.rank() < 2 {
                continue;
            }
            let name = &graph.params[i].name;
            // Layers whose output, through elementwise ops and views, feeds another layer.
            let hidden = graph.ids().filter(|id| live[id.index()]).find(|&id| {
                if layer_weight(graph, id).map(|(k, _)| k) != Some(i as u32) {
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
                        // The units stay tied only if the next layer treats them alike too: its
                        // weights start constant as well (random ones give each unit its own
                        // gradient).
                        if from
                            && let Some((k, data)) = layer_weight(graph, d)
                            && reach[n.inputs[data].index()]
                            && inits[k as usize].is_constant()
                        {
                            return true;
                        }
                        reach[d.index()] = from;
                        false
                    })
            });
            let Some(units) = hidden.and_then(|layer| layer_units(graph, layer)) else {
                continue;
            };
            if units >= 2 {
                let kind = if shape.rank() >= 3 {
                    "channels"
                } else {
                    "hidden units"
                };
                let (what, all) = if shape.rank() >= 3 {
                    ("channel", "channels")
                } else {
                    ("unit (column)", "units")
                };
                self.diags.push(
                    Diagnostic::warning(format!("the {units} {kind} fed by `{name}` start identical"))
                        .with_label(*span, format!("`{name}` starts constant"))
                        .with_note(format!("every {what} computes the same value and, with the next layer's weights also constant, receives the same gradient, so the {all} stay equal for the whole of training"))
                        .with_note(format!("break the symmetry with a random initializer, e.g. `param {name}[…] ~ xavier_uniform`")),
                );
            }
        }
    }

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
