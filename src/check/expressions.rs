//! Expressions: names, calls of user functions (inlined once per distinct argument nodes) and
//! the graph nodes they become; user function definitions.

use super::*;

impl Checker {
    pub(super) fn functions(&mut self, module: &ast::Module) {
        for item in &module.items {
            let Item::Fn { name, params, body } = item else {
                continue;
            };
            if let Some(first) = self.fns.get(&name.name) {
                let first = first.name.span;
                self.error(
                    Diagnostic::error(format!("function `{}` is defined twice", name.name))
                        .with_label(name.span, "redefined here")
                        .with_label(first, "first defined here"),
                );
                continue;
            }
            if builtins::is_builtin(&name.name) {
                self.error(
                    Diagnostic::error(format!("`{}` is a built-in function", name.name))
                        .with_label(name.span, "choose another name"),
                );
                continue;
            }
            for (i, p) in params.iter().enumerate() {
                if params[..i].iter().any(|q| q.name == p.name) {
                    self.error(
                        Diagnostic::error(format!("parameter `{}` appears twice", p.name))
                            .with_label(p.span, "repeated"),
                    );
                }
            }
            self.fns.insert(
                name.name.clone(),
                UserFn {
                    name: name.clone(),
                    params: params.clone(),
                    body: body.clone(),
                },
            );
        }
    }

    /// Lowers an expression; `None` when it has an error (already reported).
    pub(super) fn expr(&mut self, g: &mut Graph, e: &ast::Expr) -> Option<NodeId> {
        let id = match &e.kind {
            ExprKind::Number(v) if !v.is_finite() => {
                self.error(
                    Diagnostic::error("this number is too large for a floating-point value")
                        .with_label(e.span, "overflows to infinity"),
                );
                return None;
            }
            ExprKind::Number(v) => g.constant(*v),
            ExprKind::Name(name) => self.name(g, name, e.span)?,
            ExprKind::Neg(x) => {
                let x = self.expr(g, x)?;
                g.build(Op::Neg, &[x])
            }
            ExprKind::Binary(BinOp::Add, ..) if reroll::is_long_chain(e) => {
                return self.long_sum(g, e);
            }
            ExprKind::Binary(op, a, b) => {
                let (x, y) = (self.expr(g, a), self.expr(g, b));
                let (x, y) = (x?, y?);
                let prim = match op {
                    BinOp::Add => Op::Add,
                    BinOp::Sub => Op::Sub,
                    BinOp::Mul => Op::Mul,
                    BinOp::Div => Op::Div,
                    BinOp::Pow => Op::Pow,
                    BinOp::MatMul => Op::MatMul,
                    BinOp::Eq => Op::Eq,
                    BinOp::Ne => Op::Ne,
                    BinOp::Lt => Op::Lt,
                    BinOp::Le => Op::Le,
                    BinOp::Gt => Op::Gt,
                    BinOp::Ge => Op::Ge,
                };
                self.node(g, prim, &[x, y], &[a.span, b.span], op.symbol(), e.span)?
            }
            ExprKind::Call { func, args } => match self.fns.get(&func.name).cloned() {
                Some(f) => self.call_user(g, &f, func, args, e.span)?,
                None => builtins::call(self, g, func, args, e.span)?,
            },
            ExprKind::Index { base, indices } => self.index(g, base, indices, e.span)?,
            ExprKind::Str(_) => {
                self.error(
                    Diagnostic::error("a string is not a value")
                        .with_label(e.span, "a string here")
                        .with_note(
                            "strings are `einsum`'s specs, as in `einsum(\"ij,jk->ik\", a, b)`",
                        ),
                );
                return None;
            }
            ExprKind::List(_) => literal::array(self, g, e)?,
            ExprKind::Tuple(_) => {
                self.error(
                    Diagnostic::error("a tuple is not a value")
                        .with_label(e.span, "a tuple here")
                        .with_note("tuples name axes or shapes, as in `transpose(x, (0, 2, 1))` or `reshape(x, (4, -1))`"),
                );
                return None;
            }
            ExprKind::Error => return None,
        };
        g.set_span(id, e.span);
        Some(id)
    }

    pub(super) fn name(&mut self, g: &mut Graph, name: &str, span: Span) -> Option<NodeId> {
        if let Some(id) = self.frames.last().and_then(|f| f.get(name)) {
            return Some(*id);
        }
        match self.names.get(name) {
            Some((Binding::Input(i), _)) => Some(g.build(Op::Input(*i), &[])),
            Some((Binding::Param(i), _)) => Some(g.build(Op::Param(*i), &[])),
            Some((Binding::Value(id), _)) => Some(*id),
            Some((Binding::Failed, _)) => None,
            None => match name {
                // A symbolic dimension (`n` in `input X[n, 4]`) is its size: the number of rows.
                _ if self.syms.iter().any(|s| s == name) => {
                    let sym = self.sym(name);
                    Some(g.build(Op::DimSize(sym), &[]))
                }
                "pi" => Some(g.constant(std::f64::consts::PI)),
                "e" => Some(g.constant(std::f64::consts::E)),
                // For masks: `where(mask, scores, -inf)`.
                "inf" => Some(g.constant(f64::INFINITY)),
                _ => {
                    let mut d = Diagnostic::error(format!("unknown name `{name}`"))
                        .with_label(span, "not defined before this use");
                    if self.fns.contains_key(name) || builtins::is_builtin(name) {
                        d = d.with_note(format!("`{name}` is a function; call it with arguments"));
                    }
                    if let Some(note) = python_literal_note(name) {
                        d = d.with_note(note);
                    }
                    self.error(d);
                    None
                }
            },
        }
    }

    /// Inlines a user function: its parameters are bound to the argument values.
    pub(super) fn call_user(
        &mut self,
        g: &mut Graph,
        f: &UserFn,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Option<NodeId> {
        if self.call_stack.contains(&f.name.name) {
            self.error(
                Diagnostic::error(format!("function `{}` calls itself", f.name.name))
                    .with_label(func.span, "recursive call")
                    .with_label(f.name.span, "defined here")
                    .with_note("functions are inlined, so recursion would never end"),
            );
            return None;
        }
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            self.error(
                Diagnostic::error(format!(
                    "`{}` takes its arguments by position, not by name",
                    f.name.name
                ))
                .with_label(named.span, "named argument")
                .with_label(f.name.span, "defined here"),
            );
            return None;
        }
        if args.len() != f.params.len() {
            self.error(
                Diagnostic::error(format!(
                    "`{}` takes {} argument(s), found {}",
                    f.name.name,
                    f.params.len(),
                    args.len()
                ))
                .with_label(span, "in this call")
                .with_label(f.name.span, "defined here"),
            );
            return None;
        }
        let values: Vec<Option<NodeId>> = args.iter().map(|a| self.expr(g, &a.value)).collect();
        let values: Vec<NodeId> = values.into_iter().collect::<Option<_>>()?;
        let key = (f.name.name.clone(), values);
        if let Some(&res) = self.inlined.get(&key) {
            return res;
        }
        // A function body sees its parameters and the model's global names, not the caller's
        // arguments.
        let frame = f
            .params
            .iter()
            .map(|p| p.name.clone())
            .zip(key.1.iter().copied())
            .collect();
        self.frames.push(frame);
        self.call_stack.push(f.name.name.clone());
        self.bodies_lowered += 1;
        let res = self.expr(g, &f.body);
        self.call_stack.pop();
        self.frames.pop();
        self.inlined.insert(key, res);
        res
    }

    /// Adds a node; a shape error becomes a diagnostic labelling each blamed operand.
    /// A chain of `+` of many terms (`reroll::is_long_chain`), its runs of like terms each
    /// checked as one sum over an array (`reroll`), its other terms one by one, added in the
    /// order written, without recursing down the chain.
    fn long_sum(&mut self, g: &mut Graph, e: &ast::Expr) -> Option<NodeId> {
        let terms = reroll::terms(e);
        let fns = &self.fns;
        let elementwise =
            |name: &str| !fns.contains_key(name) && builtins::is_elementwise_unary(name);
        let keys: Vec<Option<String>> =
            terms.iter().map(|t| reroll::key(t, &elementwise)).collect();
        let mut sum: Option<(NodeId, Span)> = None;
        let mut failed = false;
        for piece in reroll::pieces(&terms, &keys) {
            let part = &terms[piece];
            let span = reroll::span_of(part);
            let value = match part {
                [term] => self.expr(g, term),
                run => self.rerolled(g, run),
            };
            // After an error the later terms are still checked, for their own errors, but
            // not added (as a failed operand of `+` ends the recursive form's checks).
            let (Some(value), false) = (value, failed) else {
                failed = true;
                continue;
            };
            sum = match sum {
                None => Some((value, span)),
                Some((acc, acc_span)) => {
                    let whole = Span::new(e.span.start, span.end);
                    let spans = [acc_span, span];
                    let id = self.node(g, Op::Add, &[acc, value], &spans, "+", whole);
                    failed |= id.is_none();
                    id.map(|id| (id, whole))
                }
            };
        }
        let (id, _) = sum.filter(|_| !failed)?;
        g.set_span(id, e.span);
        Some(id)
    }

    /// A run of like terms as one sum over an array (`reroll::rerolled`), given the rank of
    /// its first term's value.
    fn rerolled(&mut self, g: &mut Graph, run: &[&ast::Expr]) -> Option<NodeId> {
        let first = self.expr(g, run[0])?;
        let rank = g.shape(first).rank();
        let sum = self.expr(g, &reroll::rerolled(run, rank))?;
        let record = crate::model::RerolledSum {
            span: reroll::span_of(run),
            terms: run.len(),
        };
        // A function's body is checked at each distinct call: its sums are recorded once.
        if !self.rerolled.contains(&record) {
            self.rerolled.push(record);
        }
        Some(sum)
    }

    pub(super) fn node(
        &mut self,
        g: &mut Graph,
        op: Op,
        args: &[NodeId],
        spans: &[Span],
        what: &str,
        span: Span,
    ) -> Option<NodeId> {
        match g.add(op, args) {
            Ok(id) => {
                g.set_span(id, span);
                Some(id)
            }
            Err(err) => {
                let shapes: Vec<String> = args.iter().map(|a| g.shape_text(g.shape(*a))).collect();
                let listed = shapes
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                let mut d = Diagnostic::error(format!("shape mismatch in `{what}`: {listed}"));
                for &k in &err.operands {
                    d = d.with_label(
                        spans[k.min(spans.len() - 1)],
                        format!("has shape {}", shapes[k]),
                    );
                }
                self.error(d.with_note(err.message));
                None
            }
        }
    }
}
