//! Rendered diagnostics of every fixture in `tests/data/errors`, pinned by snapshots.

use adjoint::diagnostics::render_all;
use adjoint::{Limits, SourceFile, check_source};

/// The limits fixtures are checked against: fixed, so that their diagnostics are the same on
/// every host.
const FIXTURE_LIMITS: Limits = Limits {
    memory_budget: 16 << 30,
};

fn rendered(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!(
        "tests/data/errors/{}",
        path.file_name().unwrap().to_string_lossy()
    );
    let file = SourceFile::new(name, text);
    match check_source(&file, &FIXTURE_LIMITS) {
        Ok((_, warnings)) => {
            assert!(
                !warnings.is_empty(),
                "{}: an error fixture must produce a diagnostic",
                file.name
            );
            render_all(&warnings, &file)
        }
        Err(diags) => {
            assert!(diags.iter().any(|d| d.is_error()));
            render_all(&diags, &file)
        }
    }
}

#[test]
fn error_fixtures() {
    insta::glob!("../data/errors", "*.dsl", |path| {
        insta::assert_snapshot!(rendered(path));
    });
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let path = crate::support::repo().join("tests/data/errors/several_errors.dsl");
    let file = SourceFile::new("x.dsl", std::fs::read_to_string(path).unwrap());
    let diags = check_source(&file, &FIXTURE_LIMITS).unwrap_err();
    assert_eq!(diags.iter().filter(|d| d.is_error()).count(), 3);
}

#[test]
fn the_parser_recovers_from_several_syntax_errors() {
    let path = crate::support::repo().join("tests/data/errors/several_syntax_errors.dsl");
    let file = SourceFile::new("x.dsl", std::fs::read_to_string(path).unwrap());
    let diags = check_source(&file, &FIXTURE_LIMITS).unwrap_err();
    assert!(diags.len() >= 3, "{diags:#?}");
}

/// The checker reads its memory budget from its caller, never from the host: one model checked
/// against two budgets gives, under each, the same diagnostics wherever it runs, and counts
/// the model's own element size (a million f32 elements take 4 MB, not 8).
#[test]
fn the_size_check_follows_the_budget_it_is_given() {
    let source = "dtype f32\nparam W[1000, 1000] ~ zeros\nloss sum(W^2)\n";
    let file = SourceFile::new("budget.dsl", source);
    let check = |bytes: u64| {
        check_source(
            &file,
            &Limits {
                memory_budget: bytes,
            },
        )
        .map(|_| ())
        .map_err(|diags| render_all(&diags, &file))
    };
    assert_eq!(check(4_000_000), Ok(()));
    insta::assert_snapshot!(check(3_999_999).unwrap_err(), @r"
    error: parameter `W` would take 3.8 MiB, more than this machine's memory allows
     --> budget.dsl:2:7
      |
    2 | param W[1000, 1000] ~ zeros
      |       ^ too large

    error: could not compile `budget.dsl` due to 1 error
    ");
}
