//! Coding-error measurements: per-block error energy against the source PCM, SNR, and the
//! splice-quality comparison of a segmented encoding against the single-encoder reference.
//!
//! The quality bar for multi-core encoding: at the blocks around every join, the segmented
//! output must be indistinguishable from any other place in the file — mean excess error at
//! joins ≤ [`MAX_MEAN_JOIN_EXCESS_DB`] over the single encoder, and no join worse than the
//! 99th percentile of the same excess at non-join blocks.
//!
//! "The same excess" is meant literally: a join is judged by the worse of the two blocks that
//! touch it, so the places it is compared with are judged the same way (the worse block of
//! every adjacent pair away from joins). Two independent encodings differ block by block by a
//! spread of ±1–3 dB, and the worse of two draws sits about 0.6 spreads above the mean of one:
//! compared with single blocks, a perfect splice would score +1 dB and fail.
use serde::Serialize;

/// Samples per measurement block (one AAC frame).
pub const BLOCK: usize = 1024;
/// Allowed mean excess error at joins, in dB, over the single-encoder reference (beyond what
/// the same statistic shows away from joins); also the allowed mean excess of the segmented
/// encoding as a whole.
pub const MAX_MEAN_JOIN_EXCESS_DB: f64 = 0.5;
/// Blocks with source energy below this (dBFS per sample) are skipped: near-silence has
/// error energies dominated by the noise floor, where dB ratios mean nothing.
pub const SILENCE_DBFS: f64 = -60.0;

/// Error energy per block in dB (10·log10 of the mean squared error over all channels), and
/// the source energy per block in dBFS. Lengths are the shorter of the two inputs.
pub fn block_errors(source: &[Vec<f32>], decoded: &[Vec<f32>]) -> (Vec<f64>, Vec<f64>) {
    let n = source[0].len().min(decoded[0].len());
    let blocks = n / BLOCK;
    let mut err = Vec::with_capacity(blocks);
    let mut sig = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let (mut e, mut s) = (0f64, 0f64);
        for (src, dec) in source.iter().zip(decoded) {
            for k in b * BLOCK..(b + 1) * BLOCK {
                let d = (dec[k] - src[k]) as f64;
                e += d * d;
                s += (src[k] as f64) * (src[k] as f64);
            }
        }
        let count = (BLOCK * source.len()) as f64;
        err.push(10.0 * (e / count + 1e-20).log10());
        sig.push(10.0 * (s / count + 1e-20).log10());
    }
    (err, sig)
}

/// SNR per non-silent block (signal energy over error energy), in dB.
pub fn block_snr(source: &[Vec<f32>], decoded: &[Vec<f32>]) -> Vec<f64> {
    let (err, sig) = block_errors(source, decoded);
    err.iter()
        .zip(&sig)
        .filter(|(_, s)| **s > SILENCE_DBFS)
        .map(|(e, s)| s - e)
        .collect()
}

/// The result of comparing a segmented encoding with the single-encoder one.
#[derive(Debug, Clone, Serialize)]
pub struct SpliceReport {
    pub joins: usize,
    /// Joins whose blocks were all near-silent and so could not be judged.
    pub silent_joins: usize,
    /// Mean over joins of (segmented − single) error in dB at the worse of the two blocks that
    /// touch the join.
    pub mean_join_excess_db: f64,
    /// Mean of the excess over single non-join blocks (how much worse the segmented encoding
    /// is overall).
    pub mean_other_excess_db: f64,
    /// 99th percentile of the excess at single non-join blocks.
    pub p99_other_excess_db: f64,
    /// Mean of the excess at the worse block of every adjacent pair of non-join blocks: the
    /// same statistic as `mean_join_excess_db`, away from joins.
    pub mean_other_pair_excess_db: f64,
    /// 99th percentile of that pair statistic: what `worst_join_excess_db` is held against.
    pub p99_other_pair_excess_db: f64,
    /// The worst join's excess.
    pub worst_join_excess_db: f64,
    /// Median block SNR of the segmented and of the single encoding.
    pub median_snr_segmented_db: f64,
    pub median_snr_single_db: f64,
    pub passes: bool,
}

/// Compares `segmented` and `single` decodings of the same `source` PCM; `join_samples` are the
/// timeline positions where segments meet. A join is judged by the worst of the two blocks
/// that touch it, and held against adjacent block pairs away from joins judged the same way.
///
/// Passes when the joins' mean excess is at most [`MAX_MEAN_JOIN_EXCESS_DB`] above the pairs'
/// mean, no join is worse than the pairs' 99th percentile, and the segmented encoding as a
/// whole is at most [`MAX_MEAN_JOIN_EXCESS_DB`] worse than the single one.
pub fn splice_report(
    source: &[Vec<f32>],
    single: &[Vec<f32>],
    segmented: &[Vec<f32>],
    join_samples: &[u64],
) -> SpliceReport {
    let (e_single, sig) = block_errors(source, single);
    let (e_seg, _) = block_errors(source, segmented);
    let n = e_single.len().min(e_seg.len());
    let excess: Vec<f64> = (0..n).map(|b| e_seg[b] - e_single[b]).collect();
    let mut is_join = vec![false; n];
    let mut join_values = Vec::new();
    let mut silent = 0;
    for &j in join_samples {
        let b = (j as usize) / BLOCK;
        let around: Vec<usize> = [b.wrapping_sub(1), b]
            .into_iter()
            .filter(|x| *x < n)
            .collect();
        for x in &around {
            is_join[*x] = true;
        }
        let audible: Vec<f64> = around
            .iter()
            .filter(|x| sig[**x] > SILENCE_DBFS)
            .map(|x| excess[*x])
            .collect();
        if audible.is_empty() {
            silent += 1;
        } else {
            join_values.push(audible.iter().cloned().fold(f64::MIN, f64::max));
        }
    }
    let mut others: Vec<f64> = (0..n)
        .filter(|b| !is_join[*b] && sig[*b] > SILENCE_DBFS)
        .map(|b| excess[b])
        .collect();
    others.sort_by(|a, b| a.total_cmp(b));
    let p99 = percentile(&others, 0.99);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    // Every adjacent pair away from joins, judged like a join: by its worse audible block.
    let mut pairs: Vec<f64> = (1..n)
        .filter(|b| !is_join[b - 1] && !is_join[*b])
        .filter_map(|b| {
            [b - 1, b]
                .into_iter()
                .filter(|x| sig[*x] > SILENCE_DBFS)
                .map(|x| excess[x])
                .reduce(f64::max)
        })
        .collect();
    pairs.sort_by(|a, b| a.total_cmp(b));
    let mean_pair = mean(&pairs);
    let p99_pair = percentile(&pairs, 0.99);
    let mean_join = mean(&join_values);
    let worst = join_values.iter().cloned().fold(f64::MIN, f64::max);
    let mut snr_seg = block_snr(source, segmented);
    let mut snr_single = block_snr(source, single);
    snr_seg.sort_by(|a, b| a.total_cmp(b));
    snr_single.sort_by(|a, b| a.total_cmp(b));
    SpliceReport {
        joins: join_samples.len(),
        silent_joins: silent,
        mean_join_excess_db: mean_join,
        mean_other_excess_db: mean(&others),
        p99_other_excess_db: p99,
        mean_other_pair_excess_db: mean_pair,
        p99_other_pair_excess_db: p99_pair,
        worst_join_excess_db: if join_values.is_empty() { 0.0 } else { worst },
        median_snr_segmented_db: percentile(&snr_seg, 0.5),
        median_snr_single_db: percentile(&snr_single, 0.5),
        passes: mean_join - mean_pair <= MAX_MEAN_JOIN_EXCESS_DB
            && (join_values.is_empty() || worst <= p99_pair)
            && mean(&others) <= MAX_MEAN_JOIN_EXCESS_DB,
    }
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_decodings_have_zero_excess() {
        let src = vec![(0..BLOCK * 50)
            .map(|i| ((i as f32) * 0.01).sin() * 0.5)
            .collect::<Vec<f32>>()];
        let dec = vec![src[0].iter().map(|x| x + 0.001).collect::<Vec<f32>>()];
        let r = splice_report(&src, &dec, &dec, &[BLOCK as u64 * 10, BLOCK as u64 * 30]);
        assert_eq!(r.joins, 2);
        assert!(r.mean_join_excess_db.abs() < 1e-9);
        assert!(r.passes);
    }

    /// Deterministic noise of a per-block level in ±`spread_db`, for encodings that differ
    /// everywhere alike (no join effect at all).
    fn noisy(src: &[f32], seed: u64, spread_db: f64) -> Vec<f32> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut out = Vec::with_capacity(src.len());
        for block in src.chunks(BLOCK) {
            let level = 1e-3 * 10f64.powf(spread_db * (2.0 * next() - 1.0) / 20.0);
            out.extend(
                block
                    .iter()
                    .map(|s| s + (level * (2.0 * next() - 1.0)) as f32),
            );
        }
        out
    }

    #[test]
    fn joins_no_worse_than_elsewhere_pass_although_encodings_differ() {
        let src: Vec<f32> = (0..BLOCK * 2000)
            .map(|i| ((i as f32) * 0.01).sin() * 0.5)
            .collect();
        let single = vec![noisy(&src, 1, 6.0)];
        let seg = vec![noisy(&src, 2, 6.0)];
        let joins: Vec<u64> = (1..40).map(|k| (k * 50 * BLOCK) as u64).collect();
        let r = splice_report(&[src], &single, &seg, &joins);
        // Judged by the worse of two blocks, joins sit above the single-block mean by chance
        // alone; the pair statistic absorbs exactly that.
        assert!(
            r.mean_join_excess_db > r.mean_other_excess_db + 0.5,
            "{r:?}"
        );
        assert!(r.passes, "{r:?}");
    }

    #[test]
    fn a_segmented_encoding_worse_everywhere_fails() {
        let src: Vec<f32> = (0..BLOCK * 500)
            .map(|i| ((i as f32) * 0.01).sin() * 0.5)
            .collect();
        let single = vec![noisy(&src, 1, 0.0)];
        // Twice the error amplitude everywhere: +6 dB at every block, joins included.
        let seg = vec![src
            .iter()
            .zip(&single[0])
            .map(|(s, d)| s + 2.0 * (d - s))
            .collect::<Vec<f32>>()];
        let r = splice_report(&[src], &single, &seg, &[BLOCK as u64 * 100]);
        assert!((r.mean_other_excess_db - 6.02).abs() < 0.1, "{r:?}");
        assert!(!r.passes, "{r:?}");
    }

    #[test]
    fn a_click_at_a_join_fails() {
        let src = vec![(0..BLOCK * 50)
            .map(|i| ((i as f32) * 0.01).sin() * 0.5)
            .collect::<Vec<f32>>()];
        let single: Vec<Vec<f32>> = vec![src[0]
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.001 * ((i % 7) as f32 - 3.0))
            .collect()];
        let mut seg = single.clone();
        seg[0][BLOCK * 20] += 0.5; // a click
        let r = splice_report(&src, &single, &seg, &[BLOCK as u64 * 20]);
        assert!(!r.passes, "{r:?}");
        assert!(r.worst_join_excess_db > 10.0);
    }
}
