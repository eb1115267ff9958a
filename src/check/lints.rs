//! Warnings about a model that checks: parameters that start symmetric, names never used.

use super::*;

impl Checker {
    /// A hidden layer whose incoming and outgoing weight matrices both start constant never
    /// breaks symmetry: every unit computes the same value, gets the same gradient, and stays
    /// equal to the others.
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
