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

/// Whether a view reads from its slot's first element with strides of products of dimensions
/// (no slice's offset or step), as the product kernels take them.
pub(super) fn is_plain_view(v: &Val) -> bool {
    match v {
        Val::View {
            strides, offset, ..
        } => offset.is_empty() && strides.iter().all(|s| !matches!(s, Stride::Scaled(..))),
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
            // Non-unit axes keep their strides in order; unit axes read with stride zero.
            let mut kept = from
                .0
                .iter()
                .zip(strides)
                .filter(|(d, _)| **d != Dim::Fixed(1))
                .map(|(_, s)| s.clone());
            to.0.iter()
                .map(|d| {
                    if *d == Dim::Fixed(1) {
                        Stride::Zero
                    } else {
                        kept.next().expect("same squeezed shape")
                    }
                })
                .collect()
        }
    }
}
