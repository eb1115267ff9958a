//! Inputs read from NumPy `.npy` files.

use crate::support::*;

/// Writes a version-1 `.npy` file of little-endian values.
pub(crate) fn write_npy(path: &std::path::Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_model_trains_on_npy_inputs() {
    let dir = std::env::temp_dir().join(format!("adjoint-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo().join("examples/data/iris.csv")).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let x: Vec<u8> = rows
        .iter()
        .flat_map(|r| r[..4].iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let y: Vec<u8> = rows
        .iter()
        .flat_map(|r| (r[4] as i64).to_le_bytes())
        .collect();
    write_npy(&dir.join("x.npy"), "<f8", &[150, 4], &x);
    write_npy(&dir.join("y.npy"), "<i8", &[150], &y);
    let src = "input X[n, 4] from \"x.npy\"\ninput y[n]: int from \"y.npy\"\nparam W[4, 3] ~ zeros\nparam b[3] ~ log_prior(y)\nlet z = X @ W + b\nloss cross_entropy(z, y)\nmetric accuracy = mean(argmax(z, axis=1) == y)\noptimizer adam(lr = 0.05)\ntrain steps = 1000\n";
    std::fs::write(dir.join("npy.dsl"), src).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", dir.join("npy.dsl").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acc: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("final accuracy = "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc >= 0.95, "{stdout}");

    // Inputs that disagree on the row count, and a file that is not an array, are named.
    write_npy(&dir.join("y.npy"), "<i8", &[149], &y[..149 * 8]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", dir.join("npy.dsl").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("y.npy") && stderr.contains("149 rows") && stderr.contains("x.npy"),
        "{stderr}"
    );
    std::fs::write(dir.join("y.npy"), b"not numpy").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", dir.join("npy.dsl").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("y.npy: not a NumPy array file"));
}

#[test]
fn npy_element_types_and_orders_are_read() {
    let dir = std::env::temp_dir().join(format!("adjoint-npy-types-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("a.npy");
    write_npy(
        &p,
        "<f4",
        &[2, 3],
        &[1.5f32, 2.0, -3.0, 4.0, 5.0, 6.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(
        adjoint::data::load_npy(&p).unwrap(),
        (vec![2, 3], vec![1.5, 2.0, -3.0, 4.0, 5.0, 6.25])
    );
    write_npy(&p, "|u1", &[3], &[0, 7, 255]);
    assert_eq!(
        adjoint::data::load_npy(&p).unwrap().1,
        vec![0.0, 7.0, 255.0]
    );
    write_npy(
        &p,
        ">f8",
        &[2],
        &[1.0f64.to_be_bytes(), (-2.0f64).to_be_bytes()].concat(),
    );
    assert_eq!(adjoint::data::load_npy(&p).unwrap().1, vec![1.0, -2.0]);
    write_npy(&p, "<c16", &[1], &[0; 16]);
    assert!(
        adjoint::data::load_npy(&p)
            .unwrap_err()
            .to_string()
            .contains("`c16` is not supported")
    );
}
