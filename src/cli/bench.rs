//! `adjoint bench`: the benchmark workloads, optionally beside their peers.

use super::*;

pub(super) fn bench(
    workloads: Vec<String>,
    repeats: usize,
    peers: Option<(PathBuf, PathBuf)>,
    threads: Option<usize>,
) -> Result<(), CliError> {
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
