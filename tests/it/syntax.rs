//! Precedence and associativity, read back through the fully parenthesised printer.

use adjoint::syntax::{
    ast::{Columns, Item},
    parse,
};

fn expr(src: &str) -> String {
    let (module, errors) = parse(&format!("loss {src}"));
    assert!(errors.is_empty(), "{errors:?}");
    match &module.items[0] {
        Item::Loss { value, .. } => value.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn precedence_follows_mathematics() {
    assert_eq!(expr("1 + 2 * 3"), "(1 + (2 * 3))");
    assert_eq!(expr("1 - 2 - 3"), "((1 - 2) - 3)");
    assert_eq!(expr("-x^2"), "(-(x ^ 2))");
    assert_eq!(expr("x^y^z"), "(x ^ (y ^ z))");
    assert_eq!(expr("x^-1"), "(x ^ (-1))");
    assert_eq!(expr("A @ w - z"), "((A @ w) - z)");
    assert_eq!(expr("a * b @ c"), "((a * b) @ c)");
    assert_eq!(expr("a + b == c"), "((a + b) == c)");
    assert_eq!(expr("mean(x, axis=1)"), "mean(x, axis=1)");
    assert_eq!(expr("2e-3 * .5"), "(0.002 * 0.5)");
}

#[test]
fn comments_and_layout_are_free() {
    let (module, errors) = parse("# a comment\nparam x = 1 # trailing\n\n  loss\n x^2");
    assert!(errors.is_empty());
    assert_eq!(module.items.len(), 2);
}

#[test]
fn empty_and_garbage_sources_give_errors_not_panics() {
    let (_, errors) = parse("");
    assert!(errors.is_empty());
    let (_, errors) = parse("\u{0}\u{1}ÿ€ param (((( ");
    assert!(!errors.is_empty());
}

#[test]
fn an_input_type_reads_before_or_after_its_columns() {
    let item = |src: &str| {
        let (module, errors) = parse(src);
        assert!(errors.is_empty(), "{src}: {errors:?}");
        match module.items.into_iter().next() {
            Some(Item::Input {
                is_int,
                columns: Some(Columns::List(names)),
                ..
            }) => (
                is_int,
                names.into_iter().map(|n| n.name).collect::<Vec<_>>(),
            ),
            other => panic!("{other:?}"),
        }
    };
    let before = item("input y[n]: int from label");
    assert!(before.0);
    assert_eq!(item("input y[n] from label: int"), before);
    assert_eq!(
        item("input y[n] from a, b: int").1,
        item("input y[n]: int from a, b").1
    );
}
