//! `adjoint export --to onnx`: the `output` and `metric` values as one standard ONNX model
//! (opset 17), the parameters as initializers, the row dimension a symbolic batch dimension.
//!
//! Invariant: one ONNX node (or a fixed handful) per graph node, chosen in one exhaustive
//! `match` over `Op` (`Emitter::op`); an op ONNX has no exact operator for (log1p, expm1) or that
//! only training needs (the adjoints) is a located error naming it.

use super::{Identifiers, Source, unsupported};
use crate::diagnostics::Diagnostic;
use crate::ir::{DType, Dim, Graph, NodeId, Op, Shape};
use crate::model::GraphFn;
use prost::Message;
use std::collections::HashMap;

/// The opset the operators are taken from (ReduceMax and friends still take `axes` as an
/// attribute there).
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

// The few ONNX messages written, with their field numbers from onnx/onnx.proto. A `oneof` of
// one member and an optional field are the same on the wire.

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto.AttributeType`.
const ATTRIBUTE_INT: i32 = 2;
const ATTRIBUTE_INTS: i32 = 7;

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto.DataType`.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<DimensionProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DimensionProto {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ints: vec![],
        r#type: ATTRIBUTE_INT,
    }
}

fn ints_attr(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: 0,
        ints,
        r#type: ATTRIBUTE_INTS,
    }
}

fn elem_type(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => FLOAT,
        DType::F64 => DOUBLE,
    }
}

fn float_bytes(dtype: DType, values: &[f64]) -> Vec<u8> {
    match dtype {
        DType::F32 => values
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect(),
        DType::F64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The ONNX model of a model's outputs and metrics, with `params` (in declaration order) as
/// its initializers: the encoded bytes, or the errors for what has no exact ONNX operator.
pub fn model(
    src: &Source,
    params: &[Vec<f64>],
    states: &[Vec<f64>],
) -> Result<Vec<u8>, Vec<Diagnostic>> {
    let m = src.model;
    let g = m.graph();
    let mut e = Emitter {
        dtype: g.dtype,
        nodes: vec![],
        inits: vec![],
        names: Identifiers::new(&[]),
        inputs: HashMap::new(),
        graph_inputs: vec![],
        params,
        params_written: vec![false; params.len()],
        states,
        states_written: vec![false; states.len()],
        errors: vec![],
    };
    // Graph inputs, parameters and outputs keep their own names.
    let mut outputs: Vec<(String, &GraphFn, NodeId)> = vec![];
    if let Some(p) = &src.graphs.predict {
        outputs.extend(p.outputs.iter().map(|(n, id)| (n.clone(), p, *id)));
    }
    let f = &src.graphs.forward;
    outputs.extend(f.outputs[1..].iter().map(|(n, id)| (n.clone(), f, *id)));
    for i in &g.inputs {
        e.names.fresh(&i.name);
    }
    for p in &g.params {
        e.names.fresh(&p.name);
    }
    let out_names: Vec<String> = outputs.iter().map(|(n, _, _)| e.names.fresh(n)).collect();

    let mut graph_outputs = vec![];
    let mut by_graph: Vec<(*const GraphFn, HashMap<NodeId, String>)> = vec![];
    for ((_, f, id), name) in outputs.iter().zip(&out_names) {
        let key = *f as *const GraphFn;
        let pos = match by_graph.iter().position(|(k, _)| *k == key) {
            Some(p) => p,
            None => {
                by_graph.push((key, HashMap::new()));
                by_graph.len() - 1
            }
        };
        let mut values = std::mem::take(&mut by_graph[pos].1);
        let value = e.value(&f.graph, *id, &mut values);
        by_graph[pos].1 = values;
        if let Some(v) = value {
            e.node("Identity", vec![v], vec![name.clone()], vec![]);
            graph_outputs.push(e.value_info(name, f.graph.shape(*id), &f.graph));
        }
    }
    if !e.errors.is_empty() {
        return Err(e.errors);
    }
    let graph = GraphProto {
        node: e.nodes,
        name: src.file_name().trim_end_matches(".dsl").to_string(),
        initializer: e.inits,
        input: e.graph_inputs,
        output: graph_outputs,
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "adjoint".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{}: the outputs and metrics of the simplified forward graph",
            src.file_name()
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
    }
    .encode_to_vec())
}

struct Emitter<'a> {
    dtype: DType,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    names: Identifiers,
    /// The graph inputs declared so far, by input index.
    inputs: HashMap<u32, String>,
    graph_inputs: Vec<ValueInfoProto>,
    /// The parameters' values, written as initializers where the graphs first read them (an
    /// initializer nothing reads is a warning in onnxruntime).
    params: &'a [Vec<f64>],
    params_written: Vec<bool>,
    /// The model's state tensors (batch normalization's running statistics), constants of the
    /// evaluation graph, written as initializers the same way.
    states: &'a [Vec<f64>],
    states_written: Vec<bool>,
    errors: Vec<Diagnostic>,
}

impl Emitter<'_> {
    fn node(
        &mut self,
        op_type: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input,
            output,
            name,
            op_type: op_type.into(),
            attribute,
            doc_string: String::new(),
        });
    }

    /// A node with one fresh output, named after its operator.
    fn op1(&mut self, op_type: &str, input: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        let out = self
            .names
            .fresh(&format!("{}_{}", op_type.to_lowercase(), self.nodes.len()));
        self.node(op_type, input, vec![out.clone()], attrs);
        out
    }

    fn initializer(&mut self, name: &str, dims: Vec<i64>, values: &[f64]) {
        self.inits.push(TensorProto {
            dims,
            data_type: elem_type(self.dtype),
            name: name.into(),
            raw_data: float_bytes(self.dtype, values),
        });
    }

    fn float_const(&mut self, v: f64) -> String {
        let name = self.names.fresh("c");
        self.initializer(&name, vec![], &[v]);
        name
    }

    fn int_const(&mut self, values: &[i64], dims: Vec<i64>) -> String {
        let name = self.names.fresh("i");
        self.inits.push(TensorProto {
            dims,
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    fn value_info(&self, name: &str, shape: &Shape, g: &Graph) -> ValueInfoProto {
        let dim = shape
            .0
            .iter()
            .map(|d| match *d {
                Dim::Fixed(k) => DimensionProto {
                    dim_value: Some(k as i64),
                    dim_param: None,
                },
                Dim::Sym(s) => DimensionProto {
                    dim_value: None,
                    dim_param: Some(g.syms[s as usize].clone()),
                },
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: elem_type(self.dtype),
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
        }
    }

    fn input(&mut self, g: &Graph, i: u32) -> String {
        if let Some(n) = self.inputs.get(&i) {
            return n.clone();
        }
        let info = &g.inputs[i as usize];
        let mut vi = self.value_info(&info.name, &info.shape, g);
        // Whole-number inputs (class labels, tokens) arrive as int64, as a serving program
        // holds them, and are cast to the model's float type once.
        let value = if info.is_int {
            if let Some(t) = vi.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()) {
                t.elem_type = INT64;
            }
            self.graph_inputs.push(vi);
            self.cast_to_float(info.name.clone())
        } else {
            self.graph_inputs.push(vi);
            info.name.clone()
        };
        self.inputs.insert(i, value.clone());
        value
    }

    /// The size of a symbolic dimension as a 1-element int64 tensor, read from an input's shape.
    fn sym_size(&mut self, g: &Graph, s: u32) -> Option<String> {
        let (i, axis) = g.inputs.iter().enumerate().find_map(|(i, info)| {
            info.shape
                .0
                .iter()
                .position(|&d| d == Dim::Sym(s))
                .map(|a| (i as u32, a))
        })?;
        let x = self.input(g, i);
        let shape = self.op1("Shape", vec![x], vec![]);
        let at = self.int_const(&[axis as i64], vec![1]);
        Some(self.op1("Gather", vec![shape, at], vec![int_attr("axis", 0)]))
    }

    /// A shape as a 1-D int64 tensor, its symbolic sizes read from the inputs.
    fn shape_tensor(&mut self, g: &Graph, shape: &Shape) -> Option<String> {
        if let Some(dims) = shape.as_fixed() {
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            let n = dims.len() as i64;
            return Some(self.int_const(&dims, vec![n]));
        }
        let mut parts = vec![];
        for d in &shape.0 {
            parts.push(match *d {
                Dim::Fixed(k) => self.int_const(&[k as i64], vec![1]),
                Dim::Sym(s) => self.sym_size(g, s)?,
            });
        }
        Some(self.op1("Concat", parts, vec![int_attr("axis", 0)]))
    }

    fn cast_to_float(&mut self, x: String) -> String {
        let to = elem_type(self.dtype) as i64;
        self.op1("Cast", vec![x], vec![int_attr("to", to)])
    }

    /// The ONNX value of node `id`, emitting what it needs first; `None` after an error.
    fn value(
        &mut self,
        g: &Graph,
        id: NodeId,
        values: &mut HashMap<NodeId, String>,
    ) -> Option<String> {
        if let Some(v) = values.get(&id) {
            return Some(v.clone());
        }
        let mut args = vec![];
        for &i in &g.node(id).inputs {
            args.push(self.value(g, i, values)?);
        }
        let v = self.op(g, id, args)?;
        values.insert(id, v.clone());
        Some(v)
    }

    fn refuse(&mut self, g: &Graph, id: NodeId, why: &str) -> Option<String> {
        let what = format!("`{}`", g.op(id).name());
        let d = unsupported("ONNX", &what, g.span(id), why);
        self.errors.push(d);
        None
    }

    fn op(&mut self, g: &Graph, id: NodeId, a: Vec<String>) -> Option<String> {
        let simple = |e: &mut Self, t: &str, a: Vec<String>| Some(e.op1(t, a, vec![]));
        let training_only = "it is the adjoint of another op, built for gradients: the exported \
                             outputs and metrics do not need it";
        let node = g.node(id);
        let compare = |e: &mut Self, t: &str, a: Vec<String>| {
            let b = e.op1(t, a, vec![]);
            Some(e.cast_to_float(b))
        };
        match &node.op {
            Op::Input(i) => Some(self.input(g, *i)),
            Op::Param(i) => {
                let (i, p) = (*i as usize, &g.params[*i as usize]);
                if !self.params_written[i] {
                    let dims = p.shape.as_fixed().unwrap_or_default();
                    let dims = dims.iter().map(|&d| d as i64).collect();
                    self.initializer(&p.name, dims, &self.params[i]);
                    self.params_written[i] = true;
                }
                Some(p.name.clone())
            }
            Op::Const(bits) => Some(self.float_const(f64::from_bits(*bits))),
            Op::DimSize(s) => {
                let size = self.sym_size(g, *s)?;
                let scalar = self.int_const(&[], vec![0]);
                let size = self.op1("Reshape", vec![size, scalar], vec![]);
                Some(self.cast_to_float(size))
            }
            Op::Iota(d) => {
                let limit = match *d {
                    Dim::Fixed(k) => self.float_const(k as f64),
                    Dim::Sym(s) => {
                        let size = self.sym_size(g, s)?;
                        let scalar = self.int_const(&[], vec![0]);
                        let size = self.op1("Reshape", vec![size, scalar], vec![]);
                        self.cast_to_float(size)
                    }
                };
                let (start, delta) = (self.float_const(0.0), self.float_const(1.0));
                simple(self, "Range", vec![start, limit, delta])
            }
            Op::Literal(data) => {
                let name = self.names.fresh("literal");
                let dims = data.shape.as_fixed().unwrap_or_default();
                let values: Vec<f64> = data.values().collect();
                self.initializer(&name, dims.iter().map(|&d| d as i64).collect(), &values);
                Some(name)
            }
            Op::State(i) => {
                let (i, s) = (*i as usize, &g.states[*i as usize]);
                if !self.states_written[i] {
                    let dims = s.shape.as_fixed().unwrap_or_default();
                    let dims = dims.iter().map(|&d| d as i64).collect();
                    self.initializer(&s.name, dims, &self.states[i]);
                    self.states_written[i] = true;
                }
                Some(s.name.clone())
            }
            Op::DropMask { .. } => self.refuse(
                g,
                id,
                "a dropout mask belongs to training steps; the exported evaluation graph has none",
            ),
            Op::Neg => simple(self, "Neg", a),
            Op::Exp => simple(self, "Exp", a),
            Op::Log => simple(self, "Log", a),
            Op::Sqrt => simple(self, "Sqrt", a),
            Op::Tanh => simple(self, "Tanh", a),
            Op::Sigmoid => simple(self, "Sigmoid", a),
            Op::Relu => simple(self, "Relu", a),
            Op::Step => {
                let zero = self.float_const(0.0);
                compare(self, "Greater", vec![a[0].clone(), zero])
            }
            Op::Log1p | Op::Expm1 => self.refuse(
                g,
                id,
                "ONNX has no operator for it, and log(1 + x) or exp(x) − 1 loses the digits it keeps for small x",
            ),
            Op::Abs => simple(self, "Abs", a),
            Op::Sign => simple(self, "Sign", a),
            Op::Sin => simple(self, "Sin", a),
            Op::Cos => simple(self, "Cos", a),
            Op::Softplus => simple(self, "Softplus", a),
            Op::Erf => simple(self, "Erf", a),
            Op::Erfc => self.refuse(
                g,
                id,
                "ONNX has no operator for it, and 1 − Erf(x) loses every digit once erf(x) rounds to 1 (x above about 6)",
            ),
            Op::Add => simple(self, "Add", a),
            Op::Sub => simple(self, "Sub", a),
            Op::Mul => simple(self, "Mul", a),
            Op::Div => simple(self, "Div", a),
            Op::Pow => simple(self, "Pow", a),
            Op::Eq => compare(self, "Equal", a),
            Op::Ne => {
                let eq = self.op1("Equal", a, vec![]);
                compare(self, "Not", vec![eq])
            }
            Op::Lt => compare(self, "Less", a),
            Op::Le => compare(self, "LessOrEqual", a),
            Op::Gt => compare(self, "Greater", a),
            Op::Ge => compare(self, "GreaterOrEqual", a),
            // The first operand wins ties (and NaN).
            Op::Max | Op::Min => {
                let t = if node.op == Op::Max { "Greater" } else { "Less" };
                let c = self.op1(t, vec![a[1].clone(), a[0].clone()], vec![]);
                simple(self, "Where", vec![c, a[1].clone(), a[0].clone()])
            }
            Op::Select => {
                let zero = self.float_const(0.0);
                let eq = self.op1("Equal", vec![a[0].clone(), zero], vec![]);
                let c = self.op1("Not", vec![eq], vec![]);
                simple(self, "Where", vec![c, a[1].clone(), a[2].clone()])
            }
            Op::MatMul => simple(self, "MatMul", a),
            Op::Transpose { perm } => Some(self.op1(
                "Transpose",
                a,
                vec![ints_attr("perm", perm.iter().map(|&p| p as i64).collect())],
            )),
            Op::Sum { axis } => {
                let mut inputs = a;
                if let Some(ax) = axis {
                    inputs.push(self.int_const(&[*ax as i64], vec![1]));
                }
                Some(self.op1("ReduceSum", inputs, vec![int_attr("keepdims", 0)]))
            }
            Op::LogSumExp { axis } => Some(self.reduce("ReduceLogSumExp", a, *axis)),
            Op::ReduceMax { axis } => Some(self.reduce("ReduceMax", a, *axis)),
            Op::ReduceMin { axis } => Some(self.reduce("ReduceMin", a, *axis)),
            Op::ArgMax { axis } => {
                let i = self.op1(
                    "ArgMax",
                    a,
                    vec![int_attr("axis", *axis as i64), int_attr("keepdims", 0)],
                );
                Some(self.cast_to_float(i))
            }
            Op::Take { axis, index } => {
                let at = self.int_const(&[*index as i64], vec![]);
                Some(self.op1(
                    "Gather",
                    vec![a[0].clone(), at],
                    vec![int_attr("axis", *axis as i64)],
                ))
            }
            Op::Gather { axis } => {
                // Indices are whole numbers of the model's dtype: rounded, then integers.
                let r = self.op1("Round", vec![a[1].clone()], vec![]);
                let i = self.op1("Cast", vec![r], vec![int_attr("to", INT64 as i64)]);
                Some(self.op1(
                    "Gather",
                    vec![a[0].clone(), i],
                    vec![int_attr("axis", *axis as i64)],
                ))
            }
            Op::OneHot { classes } => {
                // x[..., None] == arange(classes): zeros for a value that is not a class.
                let k = *classes as usize;
                let range: Vec<f64> = (0..k).map(|c| c as f64).collect();
                let name = self.names.fresh("classes");
                self.initializer(&name, vec![k as i64], &range);
                let last = self.int_const(&[-1], vec![1]);
                let x = self.op1("Unsqueeze", vec![a[0].clone(), last], vec![]);
                compare(self, "Equal", vec![x, name])
            }
            Op::Expand(s) => {
                let shape = self.shape_tensor(g, s)?;
                simple(self, "Expand", vec![a[0].clone(), shape])
            }
            Op::Reshape(s) => {
                let shape = self.shape_tensor(g, s)?;
                simple(self, "Reshape", vec![a[0].clone(), shape])
            }
            Op::Slice {
                axis,
                start,
                step,
                len,
            } => {
                let end = *start as i64 + *len as i64 * step;
                // A backward slice to the axis's first element ends before it: i64::MIN.
                let end = if end < 0 { i64::MIN } else { end };
                let starts = self.int_const(&[*start as i64], vec![1]);
                let ends = self.int_const(&[end], vec![1]);
                let axes = self.int_const(&[*axis as i64], vec![1]);
                let steps = self.int_const(&[*step], vec![1]);
                simple(self, "Slice", vec![a[0].clone(), starts, ends, axes, steps])
            }
            // A convolution's or pooling's padding: zeros before and after one axis.
            Op::Unslice {
                axis,
                start,
                step: 1,
                size,
            } => {
                let x = g.node(id).inputs[0];
                let rank = node.shape.rank();
                let Dim::Fixed(len) = g.shape(x).0[*axis as usize] else {
                    unreachable!("an unslice's axis is fixed")
                };
                let mut pads = vec![0i64; 2 * rank];
                pads[*axis as usize] = *start as i64;
                pads[rank + *axis as usize] = (size - start - len) as i64;
                let pads = self.int_const(&pads, vec![2 * rank as i64]);
                simple(self, "Pad", vec![a[0].clone(), pads])
            }
            Op::Put { .. } | Op::ScatterAdd { .. } | Op::SumTo(_) | Op::Unslice { .. } => {
                self.refuse(g, id, training_only)
            }
            Op::Windows {
                kernel,
                stride,
                dilation,
            } => {
                let shape = self.shape_tensor(g, &node.shape)?;
                let x = g.node(id).inputs[0];
                Some(self.windows(g.shape(x), &a[0], kernel, stride, dilation, shape))
            }
            Op::Unwindows { .. } => self.refuse(g, id, training_only),
        }
    }

    /// The patches of `Op::Windows` as one strided `Slice` per place in the window, stacked
    /// along a new axis before the window axes and reshaped to `[..., K1..Kk, O1..Ok]`.
    fn windows(
        &mut self,
        from: &Shape,
        x: &str,
        kernel: &[u64],
        stride: &[u64],
        dilation: &[u64],
        shape: String,
    ) -> String {
        let k = kernel.len();
        let lead = from.rank() - k;
        let counts: Vec<u64> = (0..k)
            .map(|i| match from.0[lead + i] {
                Dim::Fixed(len) => (len - dilation[i] * (kernel[i] - 1) - 1) / stride[i] + 1,
                Dim::Sym(_) => unreachable!("windows need fixed axes"),
            })
            .collect();
        let axes: Vec<i64> = (lead..lead + k).map(|a| a as i64).collect();
        let steps: Vec<i64> = stride.iter().map(|&s| s as i64).collect();
        let axes = self.int_const(&axes, vec![k as i64]);
        let steps = self.int_const(&steps, vec![k as i64]);
        let new_axis = self.int_const(&[lead as i64], vec![1]);
        let mut parts = Vec::new();
        let mut place = vec![0u64; k];
        loop {
            let starts: Vec<i64> = (0..k).map(|i| (place[i] * dilation[i]) as i64).collect();
            let ends: Vec<i64> = (0..k)
                .map(|i| (place[i] * dilation[i] + stride[i] * (counts[i] - 1) + 1) as i64)
                .collect();
            let starts = self.int_const(&starts, vec![k as i64]);
            let ends = self.int_const(&ends, vec![k as i64]);
            let part = self.op1(
                "Slice",
                vec![x.to_string(), starts, ends, axes.clone(), steps.clone()],
                vec![],
            );
            parts.push(self.op1("Unsqueeze", vec![part, new_axis.clone()], vec![]));
            // The next place in row-major order, the last window axis fastest.
            let Some(i) = (0..k).rev().find(|&i| place[i] + 1 < kernel[i]) else {
                break;
            };
            place[i] += 1;
            place[i + 1..].iter_mut().for_each(|p| *p = 0);
        }
        let stacked = self.op1("Concat", parts, vec![int_attr("axis", lead as i64)]);
        self.op1("Reshape", vec![stacked, shape], vec![])
    }

    /// A reduction with opset 17's `axes` attribute (all axes when there is none).
    fn reduce(&mut self, op: &str, a: Vec<String>, axis: Option<u32>) -> String {
        let mut attrs = vec![int_attr("keepdims", 0)];
        if let Some(ax) = axis {
            attrs.push(ints_attr("axes", vec![ax as i64]));
        }
        self.op1(op, a, attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceFile;

    /// The element type of each graph input of `src`'s ONNX model, by name.
    fn input_types(src: &str) -> Vec<(String, i32)> {
        let file = SourceFile::new("m.dsl", src);
        let (model, _) = crate::compile::check_source(&file, &crate::limits::Limits::of_host())
            .expect("the model checks");
        let graphs = crate::compile::graphs(&model);
        let source = Source {
            model: &model,
            graphs: &graphs,
            file: &file,
        };
        let params: Vec<Vec<f64>> = model
            .graph()
            .params
            .iter()
            .map(|p| vec![0.5; p.shape.as_fixed().unwrap().iter().product()])
            .collect();
        let bytes = super::model(&source, &params, &[]).expect("the model exports");
        let decoded = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
        decoded
            .graph
            .unwrap()
            .input
            .into_iter()
            .map(|i| (i.name, i.r#type.unwrap().tensor_type.unwrap().elem_type))
            .collect()
    }

    #[test]
    fn tokens_and_labels_are_int64_inputs_and_values_floats() {
        let types = input_types(
            "input tok[n, 4]: int\ninput v[n]\ninput y[n]: int\nparam E[5, 3] ~ zeros\n\
             output o = sum(E[tok], axis=1) + v[:, None] + y[:, None]\nloss mean(o^2)\n",
        );
        assert_eq!(
            types,
            vec![
                ("tok".to_string(), INT64),
                ("v".to_string(), elem_type(DType::F32)),
                ("y".to_string(), INT64)
            ]
        );
    }
}
