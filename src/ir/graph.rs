//! The graph arena: nodes addressed by `NodeId`, born in one place, hash-consed.
//!
//! Invariants: operands have smaller ids than their users, so `0..n` is a forward (topological)
//! order and the reverse is a backward order; structurally equal nodes are one node.

use super::op::Op;
use super::shape::{self, DType, Shape, ShapeError};
use crate::diagnostics::Span;
use rustc_hash::FxHashMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Shape,
}

/// A declared input: a named array fed from data.
#[derive(Clone, Debug, PartialEq)]
pub struct InputInfo {
    pub name: String,
    pub shape: Shape,
    /// Integer-valued (class labels); stored as floats of the model's dtype.
    pub is_int: bool,
}

/// A declared trainable parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Shape,
}

/// A state tensor of the model (a batch normalization's running statistic): read by graphs
/// as `Op::State`, updated by training steps, never by the optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct StateInfo {
    /// Its name in checkpoints and `eval` (`batch_norm0.running_mean`).
    pub name: String,
    /// A fixed shape (`[C]`).
    pub shape: Shape,
    /// Every element's value before the first training step.
    pub initial: f64,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub dtype: DType,
    /// Names of the symbolic dimensions, indexed by `Dim::Sym`.
    pub syms: Vec<String>,
    pub inputs: Vec<InputInfo>,
    pub params: Vec<ParamInfo>,
    /// The model's state tensors, in the order `Op::State` numbers them: the same in the
    /// training and the evaluation graph of a model.
    pub states: Vec<StateInfo>,
    nodes: Vec<Node>,
    /// Source location each node was first written at, when it came from the source.
    spans: Vec<Option<Span>>,
    /// The user's name for a node (`let h = ...`), kept as an atom when derivatives are printed.
    names: Vec<Option<String>>,
    /// For nodes built by a derivative rule: the op whose rule built them.
    rules: Vec<Option<&'static str>>,
    /// For a gradient node: the name of the value (`let logits = ...`) whose derivative it is,
    /// so that a printed derivative can call it `dloss_dlogits`.
    derivative_of: Vec<Option<String>>,
    memo: FxHashMap<(Op, Vec<NodeId>), NodeId>,
}

impl Graph {
    pub fn new(
        dtype: DType,
        syms: Vec<String>,
        inputs: Vec<InputInfo>,
        params: Vec<ParamInfo>,
    ) -> Graph {
        Graph {
            dtype,
            syms,
            inputs,
            params,
            states: Vec::new(),
            nodes: Vec::new(),
            spans: Vec::new(),
            names: Vec::new(),
            rules: Vec::new(),
            derivative_of: Vec::new(),
            memo: FxHashMap::default(),
        }
    }

    /// A graph with the same declarations and no nodes.
    pub fn empty_like(&self) -> Graph {
        let mut g = Graph::new(
            self.dtype,
            self.syms.clone(),
            self.inputs.clone(),
            self.params.clone(),
        );
        g.states = self.states.clone();
        g
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn ids(&self) -> impl DoubleEndedIterator<Item = NodeId> + use<> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn op(&self, id: NodeId) -> &Op {
        &self.nodes[id.index()].op
    }

    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.nodes[id.index()].shape
    }

    pub fn span(&self, id: NodeId) -> Option<Span> {
        self.spans[id.index()]
    }

    pub fn const_value(&self, id: NodeId) -> Option<f64> {
        self.op(id).const_value()
    }

    /// Adds a node, or returns the existing node that is structurally equal.
    pub fn add(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId, ShapeError> {
        debug_assert_eq!(op.arity(), inputs.len(), "arity of {}", op.name());
        let key = (op, inputs.to_vec());
        if let Some(&id) = self.memo.get(&key) {
            return Ok(id);
        }
        let (op, inputs) = key;
        let shape = match &op {
            Op::Input(i) => self.inputs[*i as usize].shape.clone(),
            Op::Param(i) => self.params[*i as usize].shape.clone(),
            Op::State(i) => self.states[*i as usize].shape.clone(),
            _ => {
                let shapes: Vec<&Shape> = inputs.iter().map(|&i| self.shape(i)).collect();
                shape::infer(&op, &shapes)?
            }
        };
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            op: op.clone(),
            inputs: inputs.clone(),
            shape,
        });
        self.spans.push(None);
        self.names.push(None);
        self.rules.push(None);
        self.derivative_of.push(None);
        self.memo.insert((op, inputs), id);
        Ok(id)
    }

    /// Adds a node whose shapes are correct by construction (derivative rules, rewrites).
    /// A failure here is a bug in adjoint, not in the user's model.
    pub fn build(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        let name = op.name();
        self.add(op, inputs).unwrap_or_else(|e| {
            panic!("adjoint internal error: ill-shaped `{name}`: {}", e.message)
        })
    }

    /// Records where a node came from, unless it already has a location.
    pub fn set_span(&mut self, id: NodeId, span: Span) {
        let slot = &mut self.spans[id.index()];
        if slot.is_none() {
            *slot = Some(span);
        }
    }

    pub fn name(&self, id: NodeId) -> Option<&str> {
        self.names[id.index()].as_deref()
    }

    /// Names a node, unless it already has a name.
    pub fn set_name(&mut self, id: NodeId, name: &str) {
        let slot = &mut self.names[id.index()];
        if slot.is_none() {
            *slot = Some(name.to_string());
        }
    }

    /// The name of the value whose derivative node `id` is, if it is one.
    pub fn derivative_of(&self, id: NodeId) -> Option<&str> {
        self.derivative_of[id.index()].as_deref()
    }

    /// Records that `id` is the derivative of the value named `name`, unless it is already
    /// recorded as another's.
    pub fn set_derivative_of(&mut self, id: NodeId, name: &str) {
        let slot = &mut self.derivative_of[id.index()];
        if slot.is_none() {
            *slot = Some(name.to_string());
        }
    }

    pub fn rule(&self, id: NodeId) -> Option<&'static str> {
        self.rules[id.index()]
    }

    /// Records which op's derivative rule built a node, unless already recorded.
    pub fn set_rule(&mut self, id: NodeId, rule: &'static str) {
        let slot = &mut self.rules[id.index()];
        if slot.is_none() {
            *slot = Some(rule);
        }
    }

    pub fn constant(&mut self, value: f64) -> NodeId {
        self.build(Op::constant(value), &[])
    }

    pub fn shape_text(&self, shape: &Shape) -> String {
        shape.display(&self.syms).to_string()
    }

    /// All nodes that `roots` depend on, as a mask indexed by node.
    pub fn reachable(&self, roots: &[NodeId]) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        for r in roots {
            live[r.index()] = true;
        }
        for id in self.ids().rev() {
            if live[id.index()] {
                for &i in &self.nodes[id.index()].inputs {
                    live[i.index()] = true;
                }
            }
        }
        live
    }

    /// Number of users of each node among the nodes marked live.
    pub fn use_counts(&self, live: &[bool]) -> Vec<u32> {
        let mut uses = vec![0u32; self.nodes.len()];
        for id in self.ids() {
            if live[id.index()] {
                for &i in &self.nodes[id.index()].inputs {
                    uses[i.index()] += 1;
                }
            }
        }
        uses
    }
}
