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
        optimizer adam(lr = 0.1)
        ",
    )?;
    for p in model.params() {
        println!("param {} {:?}", p.name, p.shape);
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

    let mut session = model.session(42);
    session.set_input("x", &x, &[n, 2])?;
    session.set_input("y", &y, &[n])?;
    for epoch in 0..10 {
        let loss = session.steps(50)?;
        println!("step {:4}  loss {loss:.5}", (epoch + 1) * 50);
    }
    for (name, value) in session.evaluate()? {
        println!("{name} = {value:.4}");
    }
    println!("w = {:?}", session.param("w")?.data);
    Ok(())
}
