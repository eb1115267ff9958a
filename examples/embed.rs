//! Embedding adjoint in a Rust program: a model defined inline, trained on data made here.
//! Run with `cargo run --example embed`.

fn main() -> Result<(), adjoint::Error> {
    let model = adjoint::compile(
        "
        # Logistic regression on two features.
        input x[n, 2]
        input y[n]
        param w[2] ~ zeros
        param b = 0
        let z = x @ w + b
        loss bce_with_logits(z, y)
        metric accuracy = mean((z > 0) == y)
        output probability = sigmoid(z)
        optimizer adam(lr = 0.1)
        ",
    )?;
    for x in model.inputs() {
        println!("input {x}");
    }
    for p in model.params() {
        println!("param {p}");
    }

    // Two Gaussian blobs, labelled by which side of x0 + x1 = 0 they fall on.
    let n = 200;
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / n as f64 * std::f64::consts::TAU;
        let (a, b) = (t.cos() * 2.0, (3.0 * t).sin());
        x.extend([a, b]);
        y.push(if a + b > 0.0 { 1.0 } else { 0.0 });
    }

    // Hold out a fifth of the rows, as `adjoint train --validation 0.2 --seed 42` would.
    let (train_rows, held_rows) = adjoint::validation_rows(n, 0.2, 42);
    let pick = |rows: &[usize], width: usize, v: &[f64]| -> Vec<f64> {
        rows.iter()
            .flat_map(|&r| v[r * width..(r + 1) * width].iter().copied())
            .collect()
    };
    let (x_train, y_train) = (pick(&train_rows, 2, &x), pick(&train_rows, 1, &y));
    let (x_held, y_held) = (pick(&held_rows, 2, &x), pick(&held_rows, 1, &y));

    let mut session = model.session(42)?;
    session.set_input("x", &x_train, &[train_rows.len(), 2])?;
    session.set_input("y", &y_train, &[train_rows.len()])?;
    for epoch in 0..10 {
        let loss = session.steps(50)?;
        println!("step {:4}  loss {loss:.5}", (epoch + 1) * 50);
    }
    for (name, value) in session.evaluate()? {
        println!("training {name} = {value:.4}");
    }
    let held = session.evaluate_on(&[
        ("x", &x_held, &[held_rows.len(), 2]),
        ("y", &y_held, &[held_rows.len()]),
    ])?;
    for (name, value) in held {
        println!("held-out {name} = {value:.4}");
    }
    println!("w = {:?}", session.param("w")?.data);

    // New points need no labels: what `adjoint predict` writes for them.
    let new_points = [3.0, 1.0, -2.0, -0.5];
    for (name, values) in session.predict_on(&[("x", &new_points, &[2, 2])])? {
        println!("{name} = {:?}", values.data);
    }
    Ok(())
}
