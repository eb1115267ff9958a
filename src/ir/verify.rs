//! Checks the invariants every pass must preserve.
//!
//! A well-formed graph: every operand id is smaller than its user's id; every op has its arity;
//! every node's shape is the one its shape rule gives; leaves refer to declared inputs, params
//! and symbols; no two nodes are structurally equal.

use super::graph::Graph;
use super::op::Op;
use super::shape;
use std::collections::HashSet;

pub fn verify(graph: &Graph) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if node.inputs.len() != node.op.arity() {
            errors.push(format!(
                "{id}: `{}` has {} operands",
                node.op.name(),
                node.inputs.len()
            ));
            continue;
        }
        if let Some(bad) = node.inputs.iter().find(|i| **i >= id) {
            errors.push(format!("{id}: operand {bad} does not precede its user"));
            continue;
        }
        if !seen.insert((&node.op, &node.inputs)) {
            errors.push(format!("{id}: duplicate of an earlier node"));
        }
        let expected = match &node.op {
            Op::Input(i) => graph
                .inputs
                .get(*i as usize)
                .map(|d| d.shape.clone())
                .ok_or("unknown input".to_string()),
            Op::Param(i) => graph
                .params
                .get(*i as usize)
                .map(|d| d.shape.clone())
                .ok_or("unknown param".to_string()),
            Op::State(i) => graph
                .states
                .get(*i as usize)
                .map(|d| d.shape.clone())
                .ok_or("unknown state".to_string()),
            Op::DimSize(s) if *s as usize >= graph.syms.len() => Err("unknown symbol".to_string()),
            op => {
                let shapes: Vec<_> = node.inputs.iter().map(|&i| graph.shape(i)).collect();
                shape::infer(op, &shapes).map_err(|e| e.message)
            }
        };
        match expected {
            Ok(s) if s == node.shape => {}
            Ok(s) => errors.push(format!(
                "{id}: shape {} but its rule gives {}",
                graph.shape_text(&node.shape),
                graph.shape_text(&s)
            )),
            Err(e) => errors.push(format!("{id}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
