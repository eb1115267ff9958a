//! The graph IR shared by the forward pass and its gradient.

pub mod dropout;
pub mod graph;
pub mod indices;
pub mod interp;
pub mod op;
pub mod pretty;
pub mod print;
pub mod rows;
pub mod shape;
pub mod verify;

pub use graph::{Graph, InputInfo, Node, NodeId, ParamInfo, StateInfo};
pub use interp::Tensor;
pub use op::{Class, LiteralData, Op};
pub use shape::{DType, Dim, Shape};
