use super::*;
use crate::diagnostics::SourceFile;

fn gradient_of(src: &str) -> GraphFn {
    let file = SourceFile::new("t.dsl", src);
    let (model, _) =
        crate::compile::check_source(&file, &crate::limits::Limits::of_host()).expect("checks");
    crate::compile::graphs(&model).gradient
}

const MODEL: &str = "dtype f64\ninput A[n, 3]\ninput z[n]\nparam w[3] ~ zeros\n\
                         let r = A @ w - z\nloss mean(r^2)\n";

#[test]
fn a_lowered_plan_verifies() {
    let f = gradient_of(MODEL);
    assert_eq!(verify(&f, &super::super::plan(&f)), Ok(()));
}

/// Each broken invariant is found: a step moved before the step that writes what it
/// reads, a slot written twice, a view one element too long, an output never written.
#[test]
fn every_broken_invariant_is_found() {
    let f = gradient_of(MODEL);
    let good = super::super::plan(&f);

    let mut reversed = good.clone();
    reversed.steps.reverse();
    assert!(matches!(
        verify(&f, &reversed),
        Err(PlanError::ReadBeforeWrite { .. } | PlanError::RegisterBeforeScalar { .. })
    ));

    let mut twice = good.clone();
    let writer = twice
        .steps
        .iter()
        .position(|s| !matches!(s, Step::Scalar { .. }))
        .unwrap();
    let again = twice.steps[writer].clone();
    twice.steps.insert(writer + 1, again);
    assert!(matches!(
        verify(&f, &twice),
        Err(PlanError::WrittenTwice { .. })
    ));

    let mut long = good.clone();
    let a = f
        .graph
        .ids()
        .find(|&id| f.graph.node(id).op == crate::ir::Op::Input(0));
    long.values[a.unwrap().index()] = Some(Val::View {
        slot: 0,
        strides: vec![Stride::Prod(vec![Dim::Fixed(4)]), Stride::Prod(vec![])],
        offset: vec![],
    });
    assert!(matches!(
        verify(&f, &long),
        Err(PlanError::ViewOutOfBounds { .. })
    ));

    // A reversed view that starts at the slot's first element reads before it.
    let mut before = good.clone();
    before.values[a.unwrap().index()] = Some(Val::View {
        slot: 0,
        strides: vec![
            Stride::Scaled(-1, vec![Dim::Fixed(2)]),
            Stride::Prod(vec![]),
        ],
        offset: vec![],
    });
    assert!(matches!(
        verify(&f, &before),
        Err(PlanError::ViewOutOfBounds { offset, .. }) if offset < 0
    ));

    let mut unwritten = good.clone();
    unwritten.steps.clear();
    assert!(matches!(
        verify(&f, &unwritten),
        Err(PlanError::OutputNotWritten { .. })
    ));
}

/// A concat of two products is written part by part into one slot: the plan verifies; a
/// part dropped leaves the slot partly written (or read before it is whole), a part
/// written twice or shifted onto the other overlaps.
#[test]
fn the_parts_of_a_join_tile_its_slot_once() {
    let f = gradient_of(
        "dtype f64\ninput X[n, 4]\nparam U[4, 2] ~ zeros\nparam V[4, 3] ~ zeros\n\
             loss sum(tanh(concat([X @ U, X @ V], axis=1)))\n",
    );
    let good = super::super::plan(&f);
    assert_eq!(verify(&f, &good), Ok(()));
    let parts: Vec<usize> = good
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Compute { node, .. } if writes_a_view(&f.graph, &good, *node)))
            .map(|(i, _)| i)
            .collect();
    assert_eq!(parts.len(), 2, "{}", super::super::plan_text(&f, &good));

    let mut dropped = good.clone();
    dropped.steps.remove(parts[1]);
    assert!(matches!(
        verify(&f, &dropped),
        Err(PlanError::ReadBeforeWrite { .. } | PlanError::PartlyWritten { .. })
    ));

    let mut twice = good.clone();
    let again = twice.steps[parts[0]].clone();
    twice.steps.insert(parts[0] + 1, again);
    assert!(matches!(
        verify(&f, &twice),
        Err(PlanError::WrittenTwice { .. })
    ));

    // The second part moved onto the first: the right length, the wrong place.
    let mut shifted = good.clone();
    let Step::Compute { node, .. } = &shifted.steps[parts[1]] else {
        unreachable!()
    };
    if let Some(Val::View { offset, .. }) = &mut shifted.values[node.index()] {
        offset.clear();
    }
    assert!(matches!(
        verify(&f, &shifted),
        Err(PlanError::WrittenTwice { .. })
    ));
}

/// A weight's gradient summed over the batch in one product verifies; the verifier refuses
/// it when its operand stops continuing across the summed axis and when
/// another step reads the fused product.
#[test]
fn a_summed_product_is_read_by_its_sum_alone_and_folds() {
    let f = gradient_of(
        "dtype f64\ninput X[n, 12]\nparam W[3, 2] ~ zeros\n\
             loss sum(tanh(reshape(X, (n, 4, 3)) @ W))\n",
    );
    let good = super::super::plan(&f);
    assert_eq!(verify(&f, &good), Ok(()));
    let g = &f.graph;
    let sum = g
        .ids()
        .find(|&id| super::super::summed_product(g, &good.values, id).is_some())
        .expect("the gradient of W is summed in one product");
    let product = g.node(sum).inputs[0];
    let x = g.node(product).inputs[0];

    // X's rows read 6 apart instead of 12: inside the slot, but not continuing its rows.
    let mut gapped = good.clone();
    let Some(Val::View { strides, .. }) = &mut gapped.values[x.index()] else {
        panic!("the product reads a view of X")
    };
    strides[0] = Stride::Prod(vec![Dim::Fixed(6)]);
    assert!(matches!(
        verify(&f, &gapped),
        Err(PlanError::ProductNotFolded { .. })
    ));

    let mut read_elsewhere = good.clone();
    let reader = read_elsewhere
        .steps
        .iter()
        .position(|s| matches!(s, Step::Compute { node, .. } if *node == sum))
        .unwrap();
    read_elsewhere.steps.insert(
        reader,
        Step::Copy {
            src: Val::Inline(product),
            src_shape: g.shape(product).clone(),
            slot: 0,
        },
    );
    assert!(matches!(
        verify(&f, &read_elsewhere),
        Err(PlanError::ProductNotSummed { .. })
    ));
}

/// Two products of the same size whose results are both read by one loop: their slots are
/// live at once, so the assignment keeps them apart, and the verifier refuses a plan that
/// puts them in one buffer.
#[test]
fn slots_live_at_once_never_share_a_buffer() {
    let f = gradient_of(
        "dtype f64\ninput A[n, 3]\ninput z[n]\nparam w[3] ~ zeros\nparam v[3] ~ zeros\n\
             loss mean((A @ w) * (A @ v) - z)\n",
    );
    let good = super::super::plan(&f);
    assert_eq!(verify(&f, &good), Ok(()));
    let lives = super::super::storage::live_ranges(&f.graph, &good);
    let shared = &good.storage;
    let temps: Vec<u32> = (0..good.slots.len() as u32)
        .filter(|&s| good.slots[s as usize].kind == SlotKind::Temp)
        .filter(|&s| shared.of_slot[s as usize].is_some())
        .collect();
    let overlapping = temps
        .iter()
        .flat_map(|&a| temps.iter().map(move |&b| (a, b)));
    let (a, b) = overlapping
        .filter(|(a, b)| a < b)
        .filter(|(a, b)| good.slots[*a as usize].shape == good.slots[*b as usize].shape)
        .find(|(a, b)| {
            let (la, lb) = (lives[*a as usize].unwrap(), lives[*b as usize].unwrap());
            la.0 <= lb.1 && lb.0 <= la.1
        })
        .expect("two equal temporaries live at once");
    let (ba, bb) = (
        shared.of_slot[a as usize].unwrap(),
        shared.of_slot[b as usize].unwrap(),
    );
    assert_ne!(ba, bb, "the assignment shares live slots");

    let mut bad = good.clone();
    bad.storage.buffers[bb as usize].retain(|&s| s != b);
    bad.storage.buffers[ba as usize].push(b);
    bad.storage.of_slot[b as usize] = Some(ba);
    if bad.storage.buffers[bb as usize].is_empty() {
        bad.storage.buffers.remove(bb as usize);
        for s in bad.storage.of_slot.iter_mut().flatten() {
            if *s > bb {
                *s -= 1;
            }
        }
    }
    assert!(matches!(
        verify(&f, &bad),
        Err(PlanError::SharedWhileLive { .. })
    ));
}

/// Slots whose lifetimes do not overlap share a buffer: a two-layer network's gradient
/// needs fewer buffers than slots.
#[test]
fn slots_that_die_are_reused() {
    let f = gradient_of(
        "dtype f64\ninput X[n, 4]\ninput y[n]\nparam W1[4, 4] ~ zeros\n\
             param W2[4, 4] ~ zeros\nparam v[4] ~ zeros\n\
             let h = tanh(tanh(X @ W1) @ W2)\nloss mean((h @ v - y)^2)\n",
    );
    let plan = super::super::plan(&f);
    assert_eq!(verify(&f, &plan), Ok(()));
    let stored = plan.storage.of_slot.iter().flatten().count();
    assert!(plan.storage.buffers.len() < stored, "{:?}", plan.storage);

    // A slot of another size in a shared buffer is refused.
    let mut resized = plan.clone();
    let shared = resized
        .storage
        .buffers
        .iter()
        .find(|b| b.len() > 1)
        .unwrap();
    let slot = shared[1] as usize;
    resized.slots[slot].shape = Shape(vec![Dim::Fixed(1000)]);
    assert!(matches!(
        verify(&f, &resized),
        Err(PlanError::BufferSize { .. })
    ));
}

/// A recorded decision that does not hold is found: a loop marked vectorized that computes
/// `tanh` in f64 or reads a transposed view, lanes of the wrong float type, a reason that
/// does not hold, a missing decision, a split with the wrong rule or a held slot it does
/// not store, a small group said to be split, an update decided wrongly or not at all.
#[test]
fn every_broken_decision_is_found() {
    use super::super::{Parts, Vector, Whole, vectorize::Scalar};
    let f = gradient_of(
        "dtype f64\ninput X[n, 4]\ninput y[n]\nparam v[4] ~ zeros\n\
             loss mean(tanh(X * v)) + sum(exp(transpose(X))) + sum(exp(y))\n",
    );
    let good = super::super::plan(&f);
    assert_eq!(verify(&f, &good), Ok(()));
    let find = |want: &dyn Fn(&Option<Vector>) -> bool| {
        good.decisions.iter().position(|d| want(&d.vector)).unwrap()
    };
    let vectorize = |k: usize, v: Vector| {
        let mut p = good.clone();
        p.decisions[k].vector = Some(v);
        verify(&f, &p)
    };
    let no_form = find(&|v| matches!(v, Some(Vector::Scalar(Scalar::NoFormForDtype(_)))));
    assert!(matches!(
        vectorize(no_form, Vector::Lanes(2)),
        Err(PlanError::Vectorization { .. })
    ));
    let strided = find(&|v| matches!(v, Some(Vector::Scalar(Scalar::StridedRead(_)))));
    assert!(matches!(
        vectorize(strided, Vector::Lanes(2)),
        Err(PlanError::Vectorization { .. })
    ));
    let vector = find(&|v| matches!(v, Some(Vector::Lanes(2))));
    assert!(matches!(
        vectorize(vector, Vector::Lanes(4)),
        Err(PlanError::Vectorization { .. })
    ));
    assert!(matches!(
        vectorize(vector, Vector::Scalar(Scalar::StridedRead(0))),
        Err(PlanError::Vectorization { .. })
    ));
    assert!(matches!(
        vectorize(no_form, Vector::Scalar(Scalar::NoAxis)),
        Err(PlanError::Vectorization { .. })
    ));

    let mut missing = good.clone();
    missing.decisions.pop();
    assert!(matches!(
        verify(&f, &missing),
        Err(PlanError::Decisions { .. })
    ));

    let split = good
        .decisions
        .iter()
        .position(|d| matches!(d.parts, Some(Parts::Split { .. })))
        .unwrap();
    let with_parts = |change: &dyn Fn(&mut Parts)| {
        let mut p = good.clone();
        change(p.decisions[split].parts.as_mut().unwrap());
        verify(&f, &p)
    };
    assert!(matches!(
        with_parts(&|p| if let Parts::Split { rule, .. } = p {
            rule.block = 3
        }),
        Err(PlanError::Parts { .. })
    ));
    assert!(matches!(
        with_parts(&|p| if let Parts::Split { held, .. } = p {
            held.push(0)
        }),
        Err(PlanError::Parts { .. })
    ));
    assert!(matches!(
        with_parts(&|p| *p = Parts::One(Whole::Small(4))),
        Err(PlanError::Parts { .. })
    ));
    assert!(matches!(
        with_parts(&|p| *p = Parts::One(Whole::NoOuterAxis)),
        Err(PlanError::Parts { .. })
    ));

    let mut unsplit = good.clone();
    unsplit.updates[0].parts = super::super::parts::update_parts(1 << 20);
    assert!(matches!(
        verify(&f, &unsplit),
        Err(PlanError::Update { .. })
    ));
    let mut undecided = good.clone();
    undecided.updates.clear();
    assert!(matches!(
        verify(&f, &undecided),
        Err(PlanError::Update { .. })
    ));
}

/// The facts recorded for maxima and minima, `unwindows`, scalar loops' walks, products'
/// sharing and updates' vectors are checked: a vectorized maximum over its last axis, a
/// maximum that keeps its last axis said to reduce it, a strided `unwindows` in vectors, a
/// walk row by row without an axis, a walk missing or where a loop runs in vectors, a
/// product shared by the wrong rule or not at all, sharing on a step with no product, and
/// updates in the wrong lanes, in vectors over one element, element by element over many.
#[test]
fn every_broken_back_end_fact_is_found() {
    use super::super::Vector;
    use super::super::sharing::Sharing;
    use super::super::vectorize::{ByElement, Scalar, Walk};
    use crate::ir::Op;
    let f = gradient_of(
        "dtype f64\ninput X[n, 4]\nparam x[2, 3, 7, 6] ~ normal(0, 1)\n\
             param w[4] ~ zeros\nparam W[4, 4] ~ zeros\nparam b = 0\n\
             loss sum(max_pool2d(x, 3, stride=2, padding=1)^2) + sum(max(X @ W, axis=1)) \
             + sum(X @ w) + b\n",
    );
    let good = super::super::plan(&f);
    assert_eq!(verify(&f, &good), Ok(()));
    let find = |want: &dyn Fn(&super::super::Decision) -> bool| {
        good.decisions
            .iter()
            .position(want)
            .expect("a step so decided")
    };
    let changed = |k: usize, change: &dyn Fn(&mut super::super::Decision)| {
        let mut p = good.clone();
        change(&mut p.decisions[k]);
        verify(&f, &p)
    };
    let vectorization =
        |r: Result<(), PlanError>| matches!(r, Err(PlanError::Vectorization { .. }));
    let walk = |r: Result<(), PlanError>| matches!(r, Err(PlanError::Walk { .. }));
    let sharing = |r: Result<(), PlanError>| matches!(r, Err(PlanError::Sharing { .. }));

    let reduced = find(&|d| d.vector == Some(Vector::Scalar(Scalar::LastAxisReduced)));
    assert!(vectorization(
        changed(reduced, &|d| d.vector = Some(Vector::Lanes(2)))
    ));
    let kept = good
        .steps
        .iter()
        .zip(&good.decisions)
        .position(|(s, d)| {
            let max = matches!(s, Step::Compute { node, .. }
                    if matches!(f.graph.op(*node), Op::ReduceMax { .. }));
            max && d.vector == Some(Vector::Lanes(2))
        })
        .expect("a pooling's maximum in vectors");
    let said_reduced = Some(Vector::Scalar(Scalar::LastAxisReduced));
    assert!(vectorization(
        changed(kept, &|d| d.vector = said_reduced.clone())
    ));
    let strided = find(&|d| d.vector == Some(Vector::Scalar(Scalar::StridedWrite)));
    assert!(vectorization(
        changed(strided, &|d| d.vector = Some(Vector::Lanes(2)))
    ));

    let rows = find(&|d| d.walk == Some(Walk::Rows));
    assert!(walk(changed(rows, &|d| d.walk = None)));
    let by_element = Some(Walk::Elements(ByElement::NoAxis));
    assert!(walk(changed(rows, &|d| d.walk = by_element.clone())));
    let no_axis = find(&|d| d.walk == Some(Walk::Elements(ByElement::NoAxis)));
    assert_eq!(
        changed(no_axis, &|d| d.walk = Some(Walk::Rows)),
        Err(PlanError::Walk {
            step: no_axis,
            why: "runs row by row without an axis to run along".into()
        })
    );
    let vectors = find(&|d| d.vector == Some(Vector::Lanes(2)) && d.walk.is_none());
    assert!(walk(changed(vectors, &|d| d.walk = Some(Walk::Rows))));

    let blocks = find(&|d| matches!(d.sharing, Some(Sharing::Blocks { .. })));
    assert!(sharing(
        changed(blocks, &|d| d.sharing = Some(Sharing::MatrixVector))
    ));
    assert!(sharing(changed(blocks, &|d| d.sharing = None)));
    let matvec = find(&|d| d.sharing == Some(Sharing::MatrixVector));
    let as_blocks = Some(Sharing::Blocks {
        size: crate::lower::sharing::ProductSize {
            rows: Vec::new(),
            inner: Vec::new(),
            columns: Dim::Fixed(1),
        },
    });
    assert!(sharing(changed(matvec, &|d| d.sharing = as_blocks.clone())));
    assert!(sharing(changed(vectors, &|d| d.sharing = as_blocks.clone())));

    let update = |param: usize, v: Vector| {
        let mut p = good.clone();
        p.updates[param].vector = v;
        matches!(verify(&f, &p), Err(PlanError::Update { param: q, .. }) if q == param)
    };
    let (x, big_w, b) = (0, 2, 3);
    assert_eq!(
        good.updates[b].vector,
        Vector::Scalar(Scalar::UnderOneVector(1))
    );
    assert_eq!(good.updates[big_w].vector, Vector::Lanes(2));
    assert!(update(big_w, Vector::Lanes(4)));
    assert!(update(b, Vector::Lanes(2)));
    assert!(update(x, Vector::Scalar(Scalar::UnderOneVector(252))));
    assert!(update(big_w, Vector::Scalar(Scalar::NoAxis)));
}
