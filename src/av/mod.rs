//! The only place FFmpeg appears: opening inputs safely, decoding, resampling, encoding, muxing.
//! Keeping it here keeps FFmpeg replaceable.
