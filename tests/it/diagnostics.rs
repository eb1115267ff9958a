//! Rendered diagnostics of every fixture in `tests/data/errors`, pinned by snapshots.

use adjoint::diagnostics::render_all;
use adjoint::{SourceFile, check_source};

fn rendered(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!(
        "tests/data/errors/{}",
        path.file_name().unwrap().to_string_lossy()
    );
    let file = SourceFile::new(name, text);
    match check_source(&file) {
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
    let diags = check_source(&file).unwrap_err();
    assert_eq!(diags.iter().filter(|d| d.is_error()).count(), 3);
}

#[test]
fn the_parser_recovers_from_several_syntax_errors() {
    let path = crate::support::repo().join("tests/data/errors/several_syntax_errors.dsl");
    let file = SourceFile::new("x.dsl", std::fs::read_to_string(path).unwrap());
    let diags = check_source(&file).unwrap_err();
    assert!(diags.len() >= 3, "{diags:#?}");
}
