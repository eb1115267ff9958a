//! Numbers as the command line prints them: a value with exactly the digits its dtype carries.

use crate::ir::shape::DType;

/// The shortest decimal that reads back as the same value of `dtype` (so an f32 parameter
/// prints `0.1`, not the `0.10000000149011612` of its f64 widening, 9.5e-7 stays 9.5e-7, and a
/// class index is `2`).
pub(super) fn shortest(v: f64, dtype: DType) -> String {
    let text = match dtype {
        DType::F32 => format!("{:?}", v as f32),
        DType::F64 => format!("{v:?}"),
    };
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

/// A loss or metric in scientific notation, with the digits of `dtype` that tell it apart from
/// its neighbours and no more (a mean over batches is rounded to the dtype first).
pub(super) fn scientific(v: f64, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("{:e}", v as f32),
        DType::F64 => format!("{v:e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_round_trips_in_the_dtype() {
        assert_eq!(shortest(0.1f32 as f64, DType::F32), "0.1");
        assert_eq!(shortest(9.5e-7, DType::F64), "9.5e-7");
        assert_eq!(shortest(1.7e289, DType::F64), "1.7e289");
        assert_eq!(shortest(-2.0, DType::F32), "-2");
        assert_eq!(shortest(-0.0, DType::F64), "-0");
        assert_eq!(shortest(1e16, DType::F64), "1e16");
        for v in [0.1f64, 1.0 / 3.0, 9.5e-7, 6.02e23, -1e-300, 5e-324] {
            assert_eq!(shortest(v, DType::F64).parse::<f64>().unwrap(), v);
            let f = v as f32 as f64;
            assert_eq!(shortest(f, DType::F32).parse::<f32>().unwrap() as f64, f);
        }
    }

    #[test]
    fn scientific_carries_the_dtypes_digits() {
        assert_eq!(scientific(1.0 / 3.0, DType::F64), "3.333333333333333e-1");
        assert_eq!(scientific(1.0 / 3.0, DType::F32), "3.3333334e-1");
        assert_eq!(scientific(0.5, DType::F32), "5e-1");
        assert_eq!(scientific(f64::NAN, DType::F32), "NaN");
    }
}
