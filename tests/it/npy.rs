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
        .find_map(|l| l.strip_prefix("final, training rows (150): "))
        .and_then(|l| l.split(", accuracy = ").nth(1))
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

/// A file of a case: its name and bytes.
type CaseFile = (&'static str, Vec<u8>);

/// A `.npy` file's bytes with a header of its own text (which may lie about the data).
fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

fn f64_npy(shape: &str, values: &[f64]) -> Vec<u8> {
    let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}\n");
    npy_bytes(
        &header,
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn i64_npy(values: &[i64]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}\n",
        values.len()
    );
    npy_bytes(
        &header,
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// Runs each case in a folder of its own (so that messages name relative paths) and returns
/// the transcript: the command, its exit code and what it printed on stderr.
fn transcript(cases: &[(&str, Vec<CaseFile>, &[&str])]) -> String {
    let mut out = String::new();
    for (name, files, args) in cases {
        let dir = std::env::temp_dir().join(format!("adjoint-npy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (f, bytes) in files {
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
            .args(*args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        out += &format!(
            "## {name}\n$ adjoint {}\nexit {}\n{stderr}\n",
            args.join(" "),
            run.status.code().unwrap_or(-1)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    out
}

const REGRESSION: &str = "input x[n] from \"x.npy\"\ninput y[n] from \"y.npy\"\nparam w = 0\nloss mean((w * x - y)^2)\noutput p = w * x\n";
const CLASSES: &str = "input x[n, 1] from \"x.npy\"\ninput y[n]: int from \"y.npy\"\nparam W[1, 3] ~ zeros\nloss cross_entropy(x @ W, y)\n";

#[test]
fn npy_inputs_are_checked_like_csv_columns() {
    let overflow = npy_bytes(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693955,), }\n",
        &[0; 24],
    );
    let y3 = f64_npy("(3,)", &[1.0, 2.0, 3.0]);
    let mut cases: Vec<(&str, Vec<CaseFile>, &[&str])> = Vec::new();
    for args in [
        &["train", "m.dsl"][..],
        &["gradcheck", "m.dsl"],
        &["inspect", "m.dsl"],
        &["eval", "m.dsl", "--checkpoint", "m.safetensors"],
        &["predict", "m.dsl", "--checkpoint", "m.safetensors"],
    ] {
        cases.push((
            "a shape whose size overflows",
            vec![
                ("m.dsl", REGRESSION.into()),
                ("x.npy", overflow.clone()),
                ("y.npy", y3.clone()),
            ],
            args,
        ));
    }
    let x3 = f64_npy("(3, 1)", &[0.5, 1.0, 1.5]);
    for (name, labels) in [
        ("a label beyond the classes", i64_npy(&[0, 7, 2])),
        ("a label of 2^40", i64_npy(&[0, 1 << 40, 2])),
        ("a negative label", i64_npy(&[0, 1, -1])),
        (
            "a label that is not whole",
            f64_npy("(3,)", &[0.0, 1.5, 2.0]),
        ),
    ] {
        cases.push((
            name,
            vec![
                ("m.dsl", CLASSES.into()),
                ("x.npy", x3.clone()),
                ("y.npy", labels),
            ],
            &["train", "m.dsl"],
        ));
    }
    cases.push((
        "a non-finite value, counted from row 1",
        vec![
            ("m.dsl", REGRESSION.into()),
            ("x.npy", f64_npy("(3,)", &[0.5, 1.0, f64::NAN])),
            ("y.npy", y3.clone()),
        ],
        &["train", "m.dsl"],
    ));
    for args in [
        &["train", "m.dsl"][..],
        &["eval", "m.dsl", "--checkpoint", "m.safetensors"],
    ] {
        cases.push((
            "arrays with no rows",
            vec![
                ("m.dsl", REGRESSION.into()),
                ("x.npy", f64_npy("(0,)", &[])),
                ("y.npy", f64_npy("(0,)", &[])),
            ],
            args,
        ));
    }
    let text = transcript(&cases);
    insta::assert_snapshot!(text);
}

/// Data is read into the model's own element type: an f32 model's CSV columns and `.npy` arrays
/// are f32 buffers (no f64 copy), an f64 model's f64, with the values each dtype rounds to.
#[test]
fn data_is_read_into_the_models_dtype() {
    use adjoint::runtime::Buffer;
    let dir = std::env::temp_dir().join(format!("adjoint-typed-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.csv"), "a,label\n0.1,2\n-1e-3,0\n").unwrap();
    let k: Vec<u8> = [0.1f64, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&dir.join("k.npy"), "<f8", &[2], &k);
    for dtype in ["f32", "f64"] {
        let src = format!(
            "dtype {dtype}\ninput x[n] from a\ninput y[n]: int from label\ninput K[2] from \"k.npy\"\nparam w = 0\nloss mean((w * x - y)^2) + sum(K) * w^2\ndata \"t.csv\"\n"
        );
        let file = adjoint::SourceFile::new("typed.dsl", src.as_str());
        let (model, _) = adjoint::check_source(&file, &adjoint::Limits::of_host()).unwrap();
        let d = adjoint::data::load(&model, Some(&dir.join("t.csv")), &dir, &[]).unwrap();
        match dtype {
            "f32" => assert_eq!(
                d.inputs,
                [
                    Buffer::F32(vec![0.1, -1e-3]),
                    Buffer::F32(vec![2.0, 0.0]),
                    Buffer::F32(vec![0.1, 2.5])
                ]
            ),
            _ => assert_eq!(
                d.inputs,
                [
                    Buffer::F64(vec![0.1, -1e-3]),
                    Buffer::F64(vec![2.0, 0.0]),
                    Buffer::F64(vec![0.1, 2.5])
                ]
            ),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
