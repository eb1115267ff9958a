//! The peers: each workload's JAX, PyTorch, numpy and C scripts, how they are run beside adjoint
//! in the same session, and which of adjoint's figures each is compared with.

use super::*;

/// A peer measurement: which script and framework, which figure it reports.
pub(super) struct Peer {
    pub(super) workload: &'static str,
    pub(super) script: &'static str,
    pub(super) fw: &'static str,
    pub(super) field: &'static str,
    /// Scale from the peer's unit to ours.
    pub(super) scale: f64,
    /// The script's arguments other than the framework and threads (`--repeats` when empty).
    pub(super) args: &'static [&'static str],
    /// Which of the workload's figures (those of its unit) the peer's is compared with.
    pub(super) figure: usize,
    /// The peer's figure on one thread in the benchmark definition's own run
    /// (`anchors/RESULTS.md`), in our unit: quoted, labelled as such, where the peer cannot run
    /// here.
    pub(super) quoted: Option<f64>,
}

pub(super) const PEERS: &[Peer] = &[
    Peer {
        workload: "W1",
        script: "w1_rosenbrock.py",
        fw: "c",
        field: "ns_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W1",
        script: "w1_rosenbrock.py",
        fw: "jax_fori",
        field: "ns_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W2",
        script: "w2_linreg.py",
        fw: "numpy",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W2",
        script: "w2_linreg.py",
        fw: "jax_fori",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W3",
        script: "w3_gmm.py",
        fw: "jax_fori",
        field: "eval_ms",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W3",
        script: "w3_gmm.py",
        fw: "jax_fori",
        field: "adam200_s",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W3",
        script: "w3_gmm.py",
        fw: "numpy",
        field: "eval_ms",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W3",
        script: "w3_gmm.py",
        fw: "numpy",
        field: "adam200_s",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W4",
        script: "w4_digits_mlp.py",
        fw: "jax_scan",
        field: "ms_per_step",
        scale: 1e3,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W5",
        script: "w5_wide_mlp.py",
        fw: "jax_step",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W6",
        script: "w6_compile.py",
        fw: "jax",
        field: "latency_s",
        scale: 1e3,
        args: &["--cache", "cold"],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W7",
        script: "w7_lenet.py",
        fw: "jax_step",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W7",
        script: "w7_lenet.py",
        fw: "torch",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W9",
        script: "w9_compile.py",
        fw: "jax",
        field: "latency_s",
        scale: 1e3,
        args: &["--cache", "cold", "--model", "w7"],
        figure: 0,
        quoted: None,
    },
    Peer {
        workload: "W8",
        script: "w8_transformer.py",
        fw: "jax_scan",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: Some(37.2),
    },
    Peer {
        workload: "W8",
        script: "w8_transformer.py",
        fw: "jax_step",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: Some(56.5),
    },
    Peer {
        workload: "W8",
        script: "w8_transformer.py",
        fw: "torch",
        field: "ms_per_step",
        scale: 1.0,
        args: &[],
        figure: 0,
        quoted: Some(45.4),
    },
    Peer {
        workload: "W9",
        script: "w9_compile.py",
        fw: "jax",
        field: "latency_s",
        scale: 1e3,
        args: &["--cache", "cold", "--model", "w8"],
        figure: 1,
        quoted: Some(1500.0),
    },
    Peer {
        workload: "W9",
        script: "w9_compile.py",
        fw: "torch_eager",
        field: "latency_s",
        scale: 1e3,
        args: &["--cache", "cold", "--model", "w8"],
        figure: 1,
        quoted: Some(13.3),
    },
];

/// Checks, before any workload runs, what the peers of `workloads` (all when empty) need: an
/// interpreter file at `python` and each peer's script in the directory `anchors`.
pub fn check_peers(python: &Path, anchors: &Path, workloads: &[String]) -> Result<(), String> {
    if !python.is_file() {
        return Err(format!("--peers {}: no such file", python.display()));
    }
    if !anchors.is_dir() {
        return Err(format!(
            "--anchors {}: no such directory",
            anchors.display()
        ));
    }
    match PEERS
        .iter()
        .find(|p| super::chosen(workloads, p.workload) && !anchors.join(p.script).is_file())
    {
        Some(p) => Err(format!(
            "--anchors {}: no {} (the script of {}'s peers)",
            anchors.display(),
            p.script,
            p.workload
        )),
        None => Ok(()),
    }
}

/// Runs one peer script with `python` from a writable copy of the anchor scripts; returns the
/// median of the requested field, scaled to adjoint's unit.
pub(super) fn run_peer(
    python: &Path,
    anchors: &Path,
    p: &Peer,
    repeats: usize,
    every_core: bool,
) -> Result<f64, String> {
    let threads = if every_core { "default" } else { "1" };
    let mut cmd = std::process::Command::new(python);
    cmd.current_dir(anchors).arg(p.script).args([
        "--fw",
        p.fw,
        "--threads",
        threads,
        "--tag",
        "adjoint-bench",
    ]);
    match p.args {
        [] => cmd.args(["--repeats", &repeats.to_string()]),
        args => cmd.args(args),
    };
    // Current numpy and OpenBLAS run fastest with their own kernel choice.
    cmd.env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            format!(
                "{} --fw {} printed no result: {}",
                p.script,
                p.fw,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )
        })?;
    let key = format!("\"{}\": ", p.field);
    let rest = &line[line
        .find(&key)
        .ok_or(format!("no `{}` in {line}", p.field))?
        + key.len()..];
    let value = match rest.strip_prefix("\"median=") {
        Some(m) => m.split([' ', '"']).next().unwrap_or(""),
        None => rest.split([',', '}']).next().unwrap_or(""),
    };
    value
        .trim()
        .parse::<f64>()
        .map(|v| v * p.scale)
        .map_err(|_| format!("cannot read `{}` from {line}", p.field))
}

/// The figure of ours that a peer's figure is compared with.
pub(super) fn counterpart<'f>(figures: &'f [Figure], p: &Peer) -> Option<&'f Figure> {
    figures
        .iter()
        .filter(|f| {
            f.workload == p.workload
                && (p.field != "adam200_s" || f.unit == "s/200 steps")
                && (p.field != "eval_ms" || f.unit == "ms/eval")
        })
        .nth(p.figure)
}

/// One peer's values, one per round, and adjoint's median in the same rounds.
pub(super) struct PeerRuns<'p> {
    pub(super) peer: &'p Peer,
    pub(super) rounds: Vec<Result<(f64, f64), String>>,
}
