//! `adjoint bench`: the benchmark workloads, optionally beside their peers.

use super::*;

pub(super) fn bench(
    workloads: Vec<String>,
    repeats: usize,
    peers: Option<(PathBuf, PathBuf)>,
    threads: Option<usize>,
) -> Result<(), CliError> {
    // Checked before any workload runs: a long benchmark should not end in a typo.
    if let Some(w) = crate::bench::unknown_workload(&workloads) {
        return Err(CliError::BadInput(format!(
            "no workload `{w}`: the workloads are {}",
            crate::bench::WORKLOADS.join(", ")
        )));
    }
    if repeats == 0 {
        return Err(CliError::BadInput("--repeats must be at least 1".into()));
    }
    if let Some((python, anchors)) = &peers {
        crate::bench::check_peers(python, anchors, &workloads).map_err(CliError::BadInput)?;
    }
    let cfg = crate::bench::BenchConfig {
        workloads,
        repeats,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        peers,
        threads,
    };
    let report = crate::bench::run(&cfg, |w| eprintln!("running {w}")).map_err(failed)?;
    out::write(format_args!("{report}"));
    Ok(())
}
