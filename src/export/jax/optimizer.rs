//! `optimizer()`: the model's update rule, schedule, clipping and weight decay as an optax
//! transformation, and `load` for adjoint's checkpoints with their optimizer state.

use super::*;

/// The names of the per-step scalars other than constants, as the rule reads them.
pub(super) fn scalar_expr(s: StepScalar) -> Expr {
    match s {
        StepScalar::Lr => atom("lr"),
        StepScalar::Const(c) => literal(c),
        StepScalar::LrTimes(c) => infix(&atom("lr"), "*", &literal(c), MUL),
        StepScalar::InvBias1 => atom("inv_bias1"),
        StepScalar::InvBias2 => atom("inv_bias2"),
        StepScalar::KerasLr => atom("keras_lr"),
    }
}

pub(super) fn rule_expr(e: &E, scalars: &[StepScalar], state: &[&str]) -> Expr {
    let r = |x: &E| rule_expr(x, scalars, state);
    match e {
        E::P => atom("p"),
        E::G => atom("g"),
        E::S(i) => atom(state[*i]),
        E::K(i) => scalar_expr(scalars[*i]),
        E::Add(a, b) => infix(&r(a), "+", &r(b), ADD),
        E::Sub(a, b) => infix(&r(a), "-", &r(b), ADD),
        E::Mul(a, b) => infix(&r(a), "*", &r(b), MUL),
        E::Div(a, b) => infix(&r(a), "/", &r(b), MUL),
        E::Sqrt(a) => call("jnp.sqrt", &[r(a).text]),
    }
}

/// Which per-step scalars a rule reads.
pub(super) fn reads(e: &E, out: &mut Vec<usize>) {
    match e {
        E::P | E::G | E::S(_) => {}
        E::K(i) => out.push(*i),
        E::Add(a, b) | E::Sub(a, b) | E::Mul(a, b) | E::Div(a, b) => {
            reads(a, out);
            reads(b, out);
        }
        E::Sqrt(a) => reads(a, out),
    }
}

pub(super) fn schedule_lines(src: &Source, lines: &mut Vec<String>) {
    let model = src.model;
    let base = literal(model.optimizer.get("lr"));
    let lr = match model.schedule.schedule {
        Schedule::Constant => base.text.clone(),
        Schedule::Step { every, gamma } => format!(
            "{} * {} ** ((step - 1) // {every})",
            base.at(MUL),
            literal(gamma).at(POW + 1)
        ),
        Schedule::Exponential { gamma } => format!(
            "{} * {} ** (step - 1)",
            base.at(MUL),
            literal(gamma).at(POW + 1)
        ),
        Schedule::Cosine { min } => {
            lines.push("        frac = jnp.minimum((step - 1) / max(total_steps, 1), 1.0)".into());
            let m = literal(min);
            format!(
                "{} + ({} - {}) * 0.5 * (1 + jnp.cos(jnp.pi * frac))",
                m.text,
                base.text,
                m.at(MUL)
            )
        }
    };
    lines.push(format!("        lr = {lr}  # {}", model.schedule));
    if model.schedule.warmup > 0 {
        let w = model.schedule.warmup;
        lines.push(format!(
            "        lr = jnp.where(step <= {w}, lr * step / {w}, lr)  # linear warm-up"
        ));
    }
}

/// `optimizer()`: optax's own transformation where it computes adjoint's update exactly, else
/// adjoint's update program written out as an optax `GradientTransformation`.
pub(super) fn optimizer(src: &Source) -> Result<String, Diagnostic> {
    let model = src.model;
    let spec = &model.optimizer;
    if spec.kind == OptimizerKind::Newton {
        return Err(unsupported(
            "JAX",
            "the optimizer `newton`",
            model.optimizer_span,
            "Newton's method solves with the exact Hessian of adjoint's symbolic graph; \
             choose a first-order optimizer to export the model",
        ));
    }
    let mut out = String::new();
    let (wd, clip) = (spec.get("weight_decay"), spec.get("clip_norm"));
    let _ = writeln!(
        out,
        "\n\nclass OptState(NamedTuple):\n    \"\"\"adjoint's optimizer state: the step count, \
         β1ᵗ and β2ᵗ, and per-parameter arrays.\"\"\"\n\n    step: jax.Array\n    \
         pow1: jax.Array\n    pow2: jax.Array\n    slots: tuple"
    );
    let _ = writeln!(
        out,
        "\n\ndef _next_power(power, beta):\n    \"\"\"βᵗ⁺¹ from βᵗ, flushed to zero below the \
         normal range as adjoint does.\"\"\"\n    q = power * beta\n    return jnp.where(q < \
         jnp.finfo(q.dtype).tiny, 0.0, q)"
    );
    let _ = writeln!(
        out,
        "\n\ndef optimizer(total_steps=None):\n    \"\"\"{spec}, {} schedule: adjoint's update \
         rule.",
        model.schedule
    );
    let exact_optax =
        spec.kind == OptimizerKind::Sgd && model.schedule.is_constant() && wd == 0.0 && clip == 0.0;
    if exact_optax {
        out.push_str("\n    optax's sgd computes p − lr·g, adjoint's rule, exactly.\n    \"\"\"\n");
        let _ = writeln!(
            out,
            "    return optax.sgd({})",
            literal(spec.get("lr")).text
        );
        return Ok(out);
    }
    out.push_str(
        "\n    Written out rather than taken from optax: optax's transformations round differently\n    \
         (they divide by the bias corrections where adjoint multiplies by their reciprocals,\n    \
         and place ε, the weight decay and the clipping where each framework does), and this\n    \
         module computes what adjoint computes. `total_steps` is the schedule's horizon.\n    \"\"\"\n",
    );
    let state = spec.kind.state_names();
    let c = spec.constants();
    let scalars = spec.step_scalars(&c);
    let rule = spec.rule();
    let adam = matches!(spec.kind, OptimizerKind::Adam | OptimizerKind::AdamW);

    out.push_str("    if total_steps is None:\n        total_steps = _total_steps(None)\n\n");
    out.push_str("    def init_fn(params):\n");
    let _ = writeln!(
        out,
        "        slots = tuple(\n            {{name: jnp.full_like(p, {}) for name, p in \
         params.items()}}\n            for _ in range({})\n        )",
        literal(spec.initial_state()).text,
        state.len()
    );
    out.push_str(
        "        one = jnp.asarray(1.0, DTYPE)\n        return OptState(jnp.asarray(0), one, one, slots)\n\n",
    );
    out.push_str("    def update_fn(grads, state, params):\n        step = state.step + 1\n");
    let mut lines = vec![];
    if adam {
        lines.push(format!(
            "        pow1 = _next_power(state.pow1, {})",
            literal(c.beta1).text
        ));
        lines.push(format!(
            "        pow2 = _next_power(state.pow2, {})",
            literal(c.beta2).text
        ));
    } else {
        lines.push("        pow1, pow2 = state.pow1, state.pow2".into());
    }
    schedule_lines(src, &mut lines);
    if wd != 0.0 {
        lines.push(format!(
            "        grads = {{name: g + {} * params[name] for name, g in grads.items()}}  # L2 weight decay",
            literal(wd).at(MUL)
        ));
    }
    if clip != 0.0 {
        let cl = literal(clip);
        lines.push("        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads.values()))".into());
        lines.push(format!(
            "        scale = jnp.where(norm > {0}, {0} / norm, 1.0)  # clipped to a global norm of {0}",
            cl.text
        ));
        lines.push("        grads = {name: g * scale for name, g in grads.items()}".into());
    }
    let mut read = vec![];
    for (_, e) in &rule {
        reads(e, &mut read);
    }
    for (i, s) in scalars.iter().enumerate() {
        if !read.contains(&i) {
            continue;
        }
        match s {
            StepScalar::InvBias1 => lines.push("        inv_bias1 = 1 / (1 - pow1)".into()),
            StepScalar::InvBias2 => lines.push("        inv_bias2 = 1 / (1 - pow2)".into()),
            StepScalar::KerasLr => lines.push(
                "        keras_lr = lr * jnp.sqrt(1 - pow2) / (1 - pow1)  # both bias corrections in the step size"
                    .into(),
            ),
            StepScalar::Lr | StepScalar::Const(_) | StepScalar::LrTimes(_) => {}
        }
    }
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    let news: Vec<String> = state.iter().map(|s| format!("new_{s}")).collect();
    let mut targets = vec!["new_params".to_string()];
    targets.extend(news.iter().cloned());
    let _ = writeln!(
        out,
        "        {} = {}",
        targets.join(", "),
        vec!["{}"; targets.len()].join(", ")
    );
    out.push_str("        for name, p in params.items():\n            g = grads[name]\n");
    for (i, s) in state.iter().enumerate() {
        let _ = writeln!(out, "            {s} = state.slots[{i}][name]");
    }
    let dialect = if spec.dialect == Dialect::Lecture {
        String::new()
    } else {
        format!(" ({} dialect)", spec.dialect.name())
    };
    let _ = writeln!(out, "            # {} rule{dialect}", spec.kind.name());
    for (target, e) in &rule {
        let lhs = match target {
            Target::P => "p",
            Target::S(i) => state[*i],
        };
        let _ = writeln!(
            out,
            "            {lhs} = {}",
            rule_expr(e, &scalars, state).text
        );
    }
    out.push_str("            new_params[name] = p\n");
    for (s, n) in state.iter().zip(&news) {
        let _ = writeln!(out, "            {n}[name] = {s}");
    }
    let _ = writeln!(
        out,
        "        updates = {{name: new_params[name] - params[name] for name in params}}\n        \
         return updates, OptState(step, pow1, pow2, {})",
        tuple(&news)
    );
    out.push_str("\n    return optax.GradientTransformation(init_fn, update_fn)\n");
    Ok(out)
}

pub(super) fn load_fn(src: &Source, modes: bool, out: &mut String) {
    let spec = &src.model.optimizer;
    let dtype = src.model.graph().dtype.name();
    let _ = writeln!(
        out,
        "\n\nOPTIMIZER_TEXT = {}\nCHECKPOINT_DTYPE = {}",
        quoted(&spec.to_string()),
        quoted(dtype)
    );
    out.push_str(&if modes {
        with_model_state(LOAD)
    } else {
        LOAD.to_string()
    });
    let exact_optax = spec.kind == OptimizerKind::Sgd
        && src.model.schedule.is_constant()
        && spec.get("weight_decay") == 0.0
        && spec.get("clip_norm") == 0.0;
    if exact_optax {
        let _ = writeln!(
            out,
            "    return params, optimizer().init(params){}",
            state_return(modes)
        );
    } else {
        let _ = writeln!(
            out,
            "    slots = tuple(\n        {{name: jnp.asarray(tensors[f\"state/{{name}}/{{k}}\"]) for name in PARAMS}}\n        for k in range({})\n    )\n    return params, OptState(jnp.asarray(step), jnp.asarray(pow1, DTYPE), jnp.asarray(pow2, DTYPE), slots){}",
            spec.kind.state_arrays(),
            state_return(modes)
        );
    }
}

pub(super) const LOAD: &str = r#"

def load(path):
    """Parameters and optimizer state from adjoint's checkpoint (`adjoint train --save`)."""
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("adjoint.dtype") != CHECKPOINT_DTYPE:
        raise ValueError(f"{path}: a checkpoint of {meta.get('adjoint.dtype')} values, this model computes in {CHECKPOINT_DTYPE}")
    if meta.get("adjoint.optimizer", OPTIMIZER_TEXT) != OPTIMIZER_TEXT:
        raise ValueError(f"{path}: its optimizer state is {meta['adjoint.optimizer']}'s, this model trains with {OPTIMIZER_TEXT}")
    missing = [name for name in PARAMS if f"param/{name}" not in tensors]
    if missing:
        raise ValueError(f"{path}: no parameter {', '.join(missing)}")
    params = {name: jnp.asarray(tensors[f"param/{name}"]) for name in PARAMS}
    step = int(meta.get("adjoint.step", "0"))
    powers = meta.get("adjoint.beta_powers", "3ff0000000000000 3ff0000000000000").split()
    pow1, pow2 = (struct.unpack(">d", bytes.fromhex(h))[0] for h in powers)
"#;
