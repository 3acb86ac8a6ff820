//! A base-2 exponential histogram of non-negative values (OTLP `ExponentialHistogram`): it
//! starts at the finest scale and halves its resolution whenever the values seen no longer
//! fit in `max_size` buckets, as the OTel Collector's (go-expohisto) does.
//!
//! Bucket `i` at scale `s` holds values in `(2^(i / 2^s), 2^((i + 1) / 2^s)]`.

use sluice_pipeline::proto::metrics::v1::{
    ExponentialHistogramDataPoint, exponential_histogram_data_point::Buckets,
};

/// The finest scale OTLP allows a producer to start at.
const MAX_SCALE: i32 = 20;
/// The coarsest: every finite double fits in a few buckets.
const MIN_SCALE: i32 = -10;

#[derive(Clone, Debug)]
pub struct ExponentialHistogram {
    max_size: usize,
    scale: i32,
    /// Index of `counts[0]`.
    offset: i64,
    counts: Vec<u64>,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl ExponentialHistogram {
    pub fn new(max_size: usize) -> Self {
        ExponentialHistogram {
            max_size: max_size.max(2),
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records `value` `n` times. Negative and non-finite values (a duration is neither)
    /// count as zero.
    pub fn record(&mut self, value: f64, n: u64) {
        if n == 0 {
            return;
        }
        let value = if value.is_finite() && value > 0.0 {
            value
        } else {
            0.0
        };
        self.count += n;
        self.sum += value * n as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value == 0.0 {
            self.zero_count += n;
            return;
        }
        let mut index = index_of(value, self.scale);
        if !self.counts.is_empty() {
            let low = self.offset.min(index);
            let high = (self.offset + self.counts.len() as i64 - 1).max(index);
            let mut change = 0;
            while (high >> change) - (low >> change) + 1 > self.max_size as i64
                && self.scale - change > MIN_SCALE
            {
                change += 1;
            }
            if change > 0 {
                self.downscale(change);
                index = index_of(value, self.scale);
            }
        }
        self.add(index, n);
    }

    fn add(&mut self, index: i64, n: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
            return;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let at = (index - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Halves the resolution `change` times, merging buckets.
    fn downscale(&mut self, change: i32) {
        self.scale -= change;
        if self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> change;
        let mut merged: Vec<u64> = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            let at = (((self.offset + i as i64) >> change) - new_offset) as usize;
            if at >= merged.len() {
                merged.resize(at + 1, 0);
            }
            merged[at] += c;
        }
        self.offset = new_offset;
        self.counts = merged;
    }

    pub fn to_point(&self) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            count: self.count,
            sum: Some(self.sum),
            scale: self.scale,
            zero_count: self.zero_count,
            positive: Some(Buckets {
                offset: i32::try_from(self.offset).unwrap_or(0),
                bucket_counts: self.counts.clone(),
            }),
            negative: Some(Buckets::default()),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            ..Default::default()
        }
    }
}

/// The bucket of a positive finite value at `scale`.
fn index_of(value: f64, scale: i32) -> i64 {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = bits & ((1u64 << 52) - 1);
    if scale <= 0 {
        // value = 1.m * 2^e: bucket e at scale 0, or e - 1 when value is exactly 2^e (the
        // upper bound is inclusive); coarser scales group 2^-scale of those.
        let (exponent, exact) = if biased == 0 {
            // Subnormal: well below anything a duration measures.
            (-1023 - (mantissa.leading_zeros() as i64 - 12), false)
        } else {
            (biased - 1023, mantissa == 0)
        };
        let index = if exact { exponent - 1 } else { exponent };
        return index >> -scale;
    }
    if mantissa == 0 && biased != 0 {
        // Exact powers of two sit on a bucket boundary, which the logarithm may miss.
        return ((biased - 1023) << scale) - 1;
    }
    let factor = f64::powi(2.0, scale) / std::f64::consts::LN_2;
    (value.ln() * factor).ceil() as i64 - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lower and upper bound of bucket `i` at `scale`.
    fn bounds(i: i64, scale: i32) -> (f64, f64) {
        let base = 2f64.powf(2f64.powi(-scale));
        (base.powf(i as f64), base.powf(i as f64 + 1.0))
    }

    #[test]
    fn values_land_in_the_bucket_that_holds_them() {
        for scale in [-2, 0, 1, 3, 8, 20] {
            for v in [0.001, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 7.9, 100.0, 1234.5, 1e9] {
                let i = index_of(v, scale);
                let (lo, hi) = bounds(i, scale);
                let tolerance = 1e-9 * v;
                assert!(
                    lo < v + tolerance && v <= hi + tolerance,
                    "{v} at scale {scale}: bucket {i} = ({lo}, {hi}]"
                );
            }
        }
        // Powers of two are the upper bound of the bucket below.
        assert_eq!(index_of(1.0, 0), -1);
        assert_eq!(index_of(2.0, 0), 0);
        assert_eq!(index_of(4.0, 1), 3);
    }

    #[test]
    fn it_downscales_to_fit_max_size_and_keeps_every_count() {
        let mut h = ExponentialHistogram::new(4);
        for (v, n) in [(1.0, 1), (1000.0, 2), (0.0, 3), (3.0, 4)] {
            h.record(v, n);
        }
        let p = h.to_point();
        assert_eq!(p.count, 10);
        assert_eq!(p.zero_count, 3);
        let buckets = p.positive.unwrap();
        assert!(buckets.bucket_counts.len() <= 4, "{buckets:?}");
        assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 7);
        assert_eq!(p.sum, Some(1.0 + 2000.0 + 12.0));
        assert_eq!((p.min, p.max), (Some(0.0), Some(1000.0)));
        // Every value is still inside its bucket at the final scale.
        for v in [1.0, 1000.0, 3.0] {
            let i = index_of(v, p.scale);
            let at = (i - i64::from(buckets.offset)) as usize;
            assert!(buckets.bucket_counts[at] > 0, "{v}");
        }
        // One value alone stays at the finest scale.
        let mut one = ExponentialHistogram::new(160);
        one.record(5.0, 1);
        assert_eq!(one.to_point().scale, MAX_SCALE);
    }
}
