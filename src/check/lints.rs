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
            let units = match shape.0.as_slice() {
                [_, Dim::Fixed(k)] => *k,
                [Dim::Fixed(k), _, _, ..] => *k,
                _ => continue,
            };
            if !init.is_constant() || units < 2 {
                continue;
            }
            let name = &graph.params[i].name;
            // Layers whose output, through elementwise ops and views, feeds another layer.
            let hidden = graph.ids().filter(|id| live[id.index()]).any(|id| {
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
            if hidden {
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
/// `x @ W` (a dense layer) or `reshape(w) @ patches` with a kernel `w` of rank 3 or more (a
/// convolution, as `conv1d` and `conv2d` build it).
fn layer_weight(graph: &Graph, id: NodeId) -> Option<(u32, usize)> {
    let node = graph.node(id);
    if node.op != Op::MatMul {
        return None;
    }
    if let Op::Param(k) = graph.op(node.inputs[1]) {
        return Some((*k, 0));
    }
    let kernel = node.inputs[0];
    if let Op::Reshape(_) = graph.op(kernel)
        && let Op::Param(k) = graph.op(graph.node(kernel).inputs[0])
        && graph.params[*k as usize].shape.rank() >= 3
    {
        return Some((*k, 1));
    }
    None
}
