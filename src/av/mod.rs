//! The only place FFmpeg appears: opening inputs safely, decoding, resampling, encoding, muxing.
//! Keeping it here keeps FFmpeg replaceable.
pub mod image_writer;
pub mod mp3_writer;
