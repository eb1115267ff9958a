//! Gathers of rows by whole-number indices, and their adjoint, the scatter-add.
//!
//! An array is read as `outer × rows × inner` around the indexed axis: a gather copies, for
//! each outer index and each index `i`, the row `idx[i]` (`inner` contiguous elements) to the
//! output's place `i`; a scatter-add adds each place's row into the row its index names, in
//! index order, so repeated indices sum and the result does not depend on threads. Indices are
//! floats of the array's type, read as the nearest whole number ([`row_index`]); one outside
//! the axis gives a row of NaN (gather) or adds nothing (scatter-add): nothing is ever read or
//! written outside the arrays, whatever the indices hold.

/// A float type the kernels run on.
pub trait Element: Copy + Into<f64> + std::ops::AddAssign {
    const NAN: Self;
    const ZERO: Self;
}

impl Element for f32 {
    const NAN: f32 = f32::NAN;
    const ZERO: f32 = 0.0;
}

impl Element for f64 {
    const NAN: f64 = f64::NAN;
    const ZERO: f64 = 0.0;
}

/// The row an index names along an axis of `rows` rows: the nearest whole number (ties to
/// even), when it lies on the axis.
pub fn row_index(v: f64, rows: usize) -> Option<usize> {
    let r = v.round_ties_even();
    (r >= 0.0 && r < rows as f64).then_some(r as usize)
}

/// The extents of a gather or a scatter-add: `outer × rows × inner` for the array indexed,
/// `outer × count × inner` for the array with one row per index.
#[derive(Clone, Copy, Debug)]
pub struct Extents {
    pub outer: usize,
    pub rows: usize,
    pub count: usize,
    pub inner: usize,
}

impl Extents {
    fn indexed(self) -> usize {
        self.outer * self.rows * self.inner
    }

    fn per_index(self) -> usize {
        self.outer * self.count * self.inner
    }
}

/// `out[o, i, :] = table[o, idx[i], :]` (NaN for an index off the axis).
pub fn gather<T: Element>(table: &[T], idx: &[T], out: &mut [T], e: Extents) {
    assert!(table.len() == e.indexed() && idx.len() == e.count && out.len() == e.per_index());
    if e.inner == 0 {
        return;
    }
    let out_rows = out.chunks_exact_mut(e.inner);
    let places = (0..e.outer).flat_map(|o| idx.iter().map(move |&v| (o, v)));
    for (dst, (o, v)) in out_rows.zip(places) {
        match row_index(v.into(), e.rows) {
            Some(k) => dst.copy_from_slice(&table[(o * e.rows + k) * e.inner..][..e.inner]),
            None => dst.fill(T::NAN),
        }
    }
}

/// `out = 0; out[o, idx[i], :] += values[o, i, :]` in order of `o` then `i`.
pub fn scatter_add<T: Element>(values: &[T], idx: &[T], out: &mut [T], e: Extents) {
    assert!(values.len() == e.per_index() && idx.len() == e.count && out.len() == e.indexed());
    out.fill(T::ZERO);
    if e.inner == 0 {
        return;
    }
    let value_rows = values.chunks_exact(e.inner);
    let places = (0..e.outer).flat_map(|o| idx.iter().map(move |&v| (o, v)));
    for (src, (o, v)) in value_rows.zip(places) {
        if let Some(k) = row_index(v.into(), e.rows) {
            let dst = &mut out[(o * e.rows + k) * e.inner..][..e.inner];
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        }
    }
}

/// A slice over `len` elements at `p`, empty when `len` is 0 (where `p` may dangle).
///
/// # Safety
/// When `len` > 0, `p` points to `len` initialized elements, valid for `'a` and not written
/// through any other pointer meanwhile.
pub unsafe fn slice<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

/// As [`slice`], writable.
///
/// # Safety
/// When `len` > 0, `p` points to `len` elements, valid for `'a` and not read or written
/// through any other pointer meanwhile.
pub unsafe fn slice_mut<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 {
        &mut []
    } else {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_rounded_to_the_nearest_row_on_the_axis() {
        assert_eq!(row_index(2.0, 3), Some(2));
        assert_eq!(row_index(1.6, 3), Some(2));
        assert_eq!(row_index(0.5, 3), Some(0));
        assert_eq!(row_index(3.0, 3), None);
        assert_eq!(row_index(-1.0, 3), None);
        assert_eq!(row_index(f64::NAN, 3), None);
        assert_eq!(row_index(f64::INFINITY, 3), None);
    }

    #[test]
    fn a_gather_copies_rows_and_fills_bad_indices_with_nan() {
        // table 2 × 3 × 2 (outer, rows, inner), indices [2, 0, 7].
        let table: Vec<f64> = (0..12).map(f64::from).collect();
        let e = Extents {
            outer: 2,
            rows: 3,
            count: 3,
            inner: 2,
        };
        let mut out = vec![0.0; 12];
        gather(&table, &[2.0, 0.0, 7.0], &mut out, e);
        assert_eq!(&out[..4], &[4.0, 5.0, 0.0, 1.0]);
        assert!(out[4].is_nan() && out[5].is_nan());
        assert_eq!(&out[6..10], &[10.0, 11.0, 6.0, 7.0]);
    }

    #[test]
    fn a_scatter_add_sums_repeated_indices() {
        let e = Extents {
            outer: 1,
            rows: 3,
            count: 4,
            inner: 2,
        };
        let values = [1.0f32, 2.0, 10.0, 20.0, 100.0, 200.0, 5.0, 5.0];
        let mut out = vec![9.0f32; 6];
        scatter_add(&values, &[1.0, 1.0, 0.0, -1.0], &mut out, e);
        assert_eq!(out, [100.0, 200.0, 11.0, 22.0, 0.0, 0.0]);
    }
}
