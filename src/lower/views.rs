//! Views: the strides that make a broadcast, a transpose or a reshape free, and the test of
//! whether a reshape of a strided view can stay a view.

use super::*;

/// Whether a shape has exactly one element whatever the symbolic dimensions.
pub fn single_element(shape: &Shape) -> bool {
    shape.fixed_elements() == Some(1)
}

pub fn contiguous(shape: &Shape) -> Vec<Stride> {
    (0..shape.rank())
        .map(|i| Stride::Prod(shape.0[i + 1..].to_vec()))
        .collect()
}

/// Whether `strides` read `shape` in row-major order without gaps, as a kernel that takes a
/// plain pointer reads it; an axis of length 1 may have any stride.
pub(super) fn row_major(shape: &Shape, strides: &[Stride]) -> bool {
    // A product of dimensions as its fixed part and its symbols, whatever their order.
    let key = |dims: &[Dim]| {
        let mut fixed = 1u64;
        let mut syms = Vec::new();
        for d in dims {
            match *d {
                Dim::Fixed(k) => fixed = fixed.saturating_mul(k),
                Dim::Sym(s) => syms.push(s),
            }
        }
        syms.sort_unstable();
        (fixed, syms)
    };
    shape.0.iter().zip(strides).enumerate().all(|(i, (d, s))| {
        *d == Dim::Fixed(1) || matches!(s, Stride::Prod(p) if key(p) == key(&shape.0[i + 1..]))
    })
}

/// Strides that read a view of shape `from` broadcast to shape `to`: new leading axes and
/// stretched unit axes get stride zero.
pub fn broadcast_strides(from: &Shape, strides: &[Stride], to: &Shape) -> Vec<Stride> {
    let offset = to.rank() - from.rank();
    (0..to.rank())
        .map(|i| {
            if i < offset || (from.0[i - offset] == Dim::Fixed(1) && to.0[i] != Dim::Fixed(1)) {
                Stride::Zero
            } else {
                strides[i - offset].clone()
            }
        })
        .collect()
}

/// Whether a view has strides of products of dimensions (no slice's step), as the product
/// kernels take them; a slice's offset moves the operand's address.
pub(super) fn is_plain_view(v: &Val) -> bool {
    match v {
        Val::View { strides, .. } => strides.iter().all(|s| !matches!(s, Stride::Scaled(..))),
        _ => false,
    }
}

/// The strides of `Op::Windows`'s patches of a view with `strides`: the leading axes as they
/// are, each window axis `dilation` elements of its axis apart, each window `stride` apart.
pub(super) fn window_strides(
    strides: &[Stride],
    kernel: &[u64],
    stride: &[u64],
    dilation: &[u64],
) -> Vec<Stride> {
    let lead = strides.len() - kernel.len();
    let spatial = &strides[lead..];
    let mut out = strides[..lead].to_vec();
    out.extend(
        spatial
            .iter()
            .zip(dilation)
            .map(|(s, &d)| s.times(d as i64)),
    );
    out.extend(spatial.iter().zip(stride).map(|(s, &k)| s.times(k as i64)));
    out
}

/// The strides that read a view of shape `from` (with `strides`) as shape `to`, where the
/// reshape can stay a view: each run of axes of `from` whose product is a run of axes of `to`
/// is contiguous within itself (each axis's stride is the next one's times its length), so it
/// splits or merges as one axis would. A slice of a row-major array reshaped along its
/// contiguous axis (`reshape(qkv[:, :, 128:256], (n, 64, 4, 32))`) stays a view; a transposed
/// view merged across its transposition does not (`None`, and the plan copies it).
pub(super) fn reshaped_view(from: &Shape, strides: &[Stride], to: &Shape) -> Option<Vec<Stride>> {
    // Unit axes carry no stride: out of the way on both sides, read with stride 0 in `to`.
    let (fdims, fstrides): (Vec<Dim>, Vec<&Stride>) = from
        .0
        .iter()
        .zip(strides)
        .filter(|(d, _)| **d != Dim::Fixed(1))
        .map(|(d, s)| (*d, s))
        .unzip();
    let tdims = to.squeezed();
    let mut kept = Vec::with_capacity(tdims.len());
    let (mut i, mut j) = (0, 0);
    while i < fdims.len() {
        let (i0, j0) = (i, j);
        let (df, dt) = (fdims[i], *tdims.get(j)?);
        (i, j) = (i + 1, j + 1);
        if matches!(df, Dim::Sym(_)) || matches!(dt, Dim::Sym(_)) {
            // A symbolic dimension is a run of its own, the same symbol on both sides.
            if df != dt {
                return None;
            }
        } else {
            let (mut pf, mut pt) = (fixed(df)?, fixed(dt)?);
            while pf != pt {
                if pf < pt {
                    pf = pf.checked_mul(fixed(*fdims.get(i)?)?)?;
                    i += 1;
                } else {
                    pt = pt.checked_mul(fixed(*tdims.get(j)?)?)?;
                    j += 1;
                }
            }
        }
        // The run i0..i of `from` must be one contiguous axis.
        for f in i0..i - 1 {
            if form(fstrides[f])? != times(form(fstrides[f + 1])?, fdims[f + 1]) {
                return None;
            }
        }
        // Split it into j0..j innermost first: each axis's stride is the run's innermost
        // stride times the lengths of the axes after it.
        let mut run: Vec<Stride> = Vec::with_capacity(j - j0);
        let mut stride = fstrides[i - 1].clone();
        for t in (j0..j).rev() {
            run.push(stride.clone());
            stride = scaled_by(&stride, tdims[t]);
        }
        kept.extend(run.into_iter().rev());
    }
    if j != tdims.len() {
        return None;
    }
    let strides = with_unit_axes(to, kept);
    // Row-major in other words is row-major: said as `contiguous` says it, so that the plan's
    // tests for a plain layout recognize it.
    let plain = contiguous(to);
    let row_major =
        to.0.iter()
            .zip(strides.iter().zip(&plain))
            .all(|(d, (s, p))| *d == Dim::Fixed(1) || form(s) == form(p));
    Some(if row_major { plain } else { strides })
}

/// A fixed dimension's length for growing a run of axes (`reshaped_view`): a symbolic
/// dimension ends the match, as does a zero-length axis.
fn fixed(d: Dim) -> Option<u64> {
    match d {
        Dim::Fixed(0) | Dim::Sym(_) => None,
        Dim::Fixed(k) => Some(k),
    }
}

/// A stride as a whole factor and its symbolic dimensions, sorted: two strides are equal under
/// every binding exactly when their forms are.
fn form(s: &Stride) -> Option<(i128, Vec<u32>)> {
    let (k, dims) = match s {
        Stride::Zero => return Some((0, Vec::new())),
        Stride::Prod(dims) => (1i128, dims),
        Stride::Scaled(k, dims) => (*k as i128, dims),
    };
    let mut coefficient = k;
    let mut syms = Vec::new();
    for d in dims {
        match *d {
            Dim::Fixed(n) => coefficient = coefficient.checked_mul(n as i128)?,
            Dim::Sym(x) => syms.push(x),
        }
    }
    syms.sort_unstable();
    Some((coefficient, syms))
}

fn times((k, mut syms): (i128, Vec<u32>), d: Dim) -> (i128, Vec<u32>) {
    match d {
        Dim::Fixed(n) => (k.saturating_mul(n as i128), syms),
        Dim::Sym(x) => {
            syms.push(x);
            syms.sort_unstable();
            (k, syms)
        }
    }
}

/// `s` times a dimension's length.
fn scaled_by(s: &Stride, d: Dim) -> Stride {
    match s {
        Stride::Zero => Stride::Zero,
        Stride::Prod(dims) => Stride::Prod([dims.as_slice(), &[d]].concat()),
        Stride::Scaled(k, dims) => Stride::Scaled(*k, [dims.as_slice(), &[d]].concat()),
    }
}

/// Whether a reshape only adds or removes unit axes, which any view can do by itself.
pub(super) fn reshapes_as_view(from: &Shape, to: &Shape) -> bool {
    from.squeezed() == to.squeezed()
}

/// Strides of a broadcast or unit-axis reshape of a view.
pub(super) fn reshape_strides(
    from: &Shape,
    strides: &[Stride],
    to: &Shape,
    op: &Op,
) -> Vec<Stride> {
    match op {
        Op::Expand(_) => broadcast_strides(from, strides, to),
        _ => {
            // Non-unit axes keep their strides in order.
            let kept = from
                .0
                .iter()
                .zip(strides)
                .filter(|(d, _)| **d != Dim::Fixed(1))
                .map(|(_, s)| s.clone());
            with_unit_axes(to, kept)
        }
    }
}

/// Strides for `shape` from those of its non-unit axes, in order: its unit axes read with
/// stride zero.
fn with_unit_axes(shape: &Shape, kept: impl IntoIterator<Item = Stride>) -> Vec<Stride> {
    let mut kept = kept.into_iter();
    shape
        .0
        .iter()
        .map(|d| {
            if *d == Dim::Fixed(1) {
                Stride::Zero
            } else {
                kept.next().expect("one stride per non-unit axis")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod(dims: &[u64]) -> Stride {
        Stride::Prod(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    fn shape(dims: &[Dim]) -> Shape {
        Shape(dims.to_vec())
    }

    /// The elements a view reads, in row-major order of its shape, under `n`.
    fn read(shape: &Shape, strides: &[Stride], n: u64) -> Vec<i64> {
        let sizes: Vec<u64> = shape
            .0
            .iter()
            .map(|d| match *d {
                Dim::Fixed(k) => k,
                Dim::Sym(_) => n,
            })
            .collect();
        let steps: Vec<i64> = strides
            .iter()
            .map(|s| match s {
                Stride::Zero => 0,
                Stride::Prod(dims) | Stride::Scaled(_, dims) => {
                    let k = if let Stride::Scaled(k, _) = s { *k } else { 1 };
                    dims.iter()
                        .map(|d| match *d {
                            Dim::Fixed(k) => k as i64,
                            Dim::Sym(_) => n as i64,
                        })
                        .product::<i64>()
                        * k
                }
            })
            .collect();
        let total: u64 = sizes.iter().product();
        (0..total)
            .map(|mut flat| {
                let mut at = 0;
                for (size, step) in sizes.iter().zip(&steps).rev() {
                    at += (flat % size) as i64 * step;
                    flat /= size;
                }
                at
            })
            .collect()
    }

    #[test]
    fn a_column_range_splits_into_heads_without_a_copy() {
        // qkv[:, :, 128:256] of [n, 64, 384], reshaped to (n, 64, 4, 32).
        let n = Dim::Sym(0);
        let from = shape(&[n, Dim::Fixed(64), Dim::Fixed(128)]);
        let strides = [prod(&[64, 384]), prod(&[384]), prod(&[])];
        let to = shape(&[n, Dim::Fixed(64), Dim::Fixed(4), Dim::Fixed(32)]);
        let got = reshaped_view(&from, &strides, &to).expect("a view");
        assert_eq!(read(&to, &got, 3), read(&from, &strides, 3));
    }

    #[test]
    fn axes_contiguous_among_themselves_merge() {
        // Axes 1 and 2 of [2, 3, 5] read with strides (10, 2): 10 is 2 times 5, so they
        // merge into one axis of 15 with stride 2.
        let from = shape(&[Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(5)]);
        let strides = [prod(&[1]), prod(&[10]), prod(&[2])];
        let to = shape(&[Dim::Fixed(2), Dim::Fixed(15)]);
        let got = reshaped_view(&from, &strides, &to).expect("a view");
        assert_eq!(read(&to, &got, 1), read(&from, &strides, 1));
    }

    #[test]
    fn a_merge_across_a_transposition_is_refused() {
        let from = shape(&[Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(4)]);
        let strides = [prod(&[4]), prod(&[12]), prod(&[])];
        let to = shape(&[Dim::Fixed(6), Dim::Fixed(4)]);
        assert_eq!(reshaped_view(&from, &strides, &to), None);
    }

    #[test]
    fn unit_axes_and_symbols_keep_their_places() {
        let n = Dim::Sym(0);
        let from = shape(&[n, Dim::Fixed(1), Dim::Fixed(6)]);
        let strides = [prod(&[10]), Stride::Zero, prod(&[])];
        let to = shape(&[n, Dim::Fixed(2), Dim::Fixed(1), Dim::Fixed(3)]);
        let got = reshaped_view(&from, &strides, &to).expect("a view");
        assert_eq!(got[2], Stride::Zero);
        assert_eq!(read(&to, &got, 4), read(&from, &strides, 4));
        // A symbol cannot be split or merged with a fixed axis.
        let other = shape(&[Dim::Fixed(6), n]);
        assert_eq!(reshaped_view(&from, &strides, &other), None);
    }

    /// [2, n, 3] and [n, 2, 3] have as many elements under every binding, but row-major order
    /// puts them in other places: no strides read one as the other, for any layout of the
    /// first, contiguous or a column range.
    #[test]
    fn a_symbol_never_pairs_with_fixed_axes() {
        let n = Dim::Sym(0);
        let from = shape(&[Dim::Fixed(2), n, Dim::Fixed(3)]);
        let to = shape(&[n, Dim::Fixed(2), Dim::Fixed(3)]);
        let plain = contiguous(&from);
        assert_eq!(reshaped_view(&from, &plain, &to), None);
        let columns = [Stride::Prod(vec![n, Dim::Fixed(5)]), prod(&[5]), prod(&[])];
        assert_eq!(reshaped_view(&from, &columns, &to), None);
    }
}
