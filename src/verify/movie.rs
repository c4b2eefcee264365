//! `moov` parsing: the movie timescale and each track's header, edit list, chapter
//! references and sample table, checked for consistency before any other reader sees them.
use crate::mp4box::{self, fourcc_str, BoxRef, Edit, FourCC, Malformed, SampleTable};

pub(super) struct Movie<'a> {
    pub(super) timescale: u32,
    pub(super) tracks: Vec<Track<'a>>,
}

pub(super) struct Track<'a> {
    pub(super) id: u32,
    pub(super) handler: FourCC,
    pub(super) timescale: u32,
    pub(super) duration: u64,
    pub(super) edits: Vec<Edit>,
    pub(super) chapter_refs: Vec<u32>,
    pub(super) table: SampleTable,
    /// Where the track's `stbl` box starts, for errors about its tables.
    pub(super) stbl_offset: u64,
    pub(super) entry: Option<BoxRef<'a>>,
}

/// `in_file`: the `stsz` tables the `moov` was read without ([`mp4box::read_moov_sparse`]);
/// their tracks' sizes are left for the caller to read.
pub(super) fn parse_movie<'a>(
    moov: &BoxRef<'a>,
    in_file: &[mp4box::SizesInFile],
) -> mp4box::Parse<Movie<'a>> {
    let mvhd = moov
        .child(b"mvhd")?
        .ok_or_else(|| Malformed::new(moov.offset, "'moov' has no 'mvhd'"))?;
    let (timescale, _) = mp4box::parse_timescale_duration(&mvhd)?;
    if timescale == 0 {
        return Err(Malformed::new(
            mvhd.offset,
            "the movie timescale (mvhd) is 0, so no time in the file can be read",
        ));
    }
    let mut tracks = Vec::new();
    for trak in moov.children() {
        let trak = trak?;
        if trak.kind != *b"trak" {
            continue;
        }
        let missing = |what: &str| Malformed::new(trak.offset, format!("'trak' has no '{what}'"));
        let tkhd = trak.child(b"tkhd")?.ok_or_else(|| missing("tkhd"))?;
        let mdia = trak.child(b"mdia")?.ok_or_else(|| missing("mdia"))?;
        let mdhd = mdia.child(b"mdhd")?.ok_or_else(|| missing("mdia/mdhd"))?;
        let hdlr = mdia.child(b"hdlr")?.ok_or_else(|| missing("mdia/hdlr"))?;
        let stbl = mdia
            .descend(&[b"minf", b"stbl"])?
            .ok_or_else(|| missing("mdia/minf/stbl"))?;
        let (media_ts, media_dur) = mp4box::parse_timescale_duration(&mdhd)?;
        if media_ts == 0 {
            return Err(Malformed::new(
                mdhd.offset,
                "a track's timescale (mdhd) is 0, so none of its times can be read",
            ));
        }
        let edits = match trak.descend(&[b"edts", b"elst"])? {
            Some(e) => mp4box::parse_elst(&e)?,
            None => Vec::new(),
        };
        let mut chapter_refs = Vec::new();
        if let Some(chap) = trak.descend(&[b"tref", b"chap"])? {
            let mut c = chap.cursor("tref/chap box");
            while c.remaining() >= 4 {
                chapter_refs.push(c.u32()?);
            }
        }
        let (table, entry) = mp4box::parse_stbl_with(&stbl, in_file)?;
        tracks.push(Track {
            stbl_offset: stbl.offset,
            id: mp4box::parse_tkhd_id(&tkhd)?,
            handler: mp4box::parse_hdlr(&hdlr)?,
            timescale: media_ts,
            duration: media_dur,
            edits,
            chapter_refs,
            table,
            entry,
        });
    }
    Ok(Movie { timescale, tracks })
}

/// Checks that every track's sample tables agree with each other and stay inside the file:
/// `stts` describes as many samples as `stsz` lists, and `stsc`/`stco` map exactly those
/// samples to chunks within the file.
pub(super) fn check_sample_tables(movie: &Movie<'_>, file_size: u64) -> mp4box::Parse<()> {
    for t in &movie.tracks {
        let listed = t.table.sizes.len() as u64;
        let described = t.table.stts_sample_count();
        let handler = fourcc_str(&t.handler);
        if described != listed {
            return Err(Malformed::new(
                t.stbl_offset,
                format!(
                    "the {handler} track's stts describes {described} samples but its stsz lists {listed}"
                ),
            ));
        }
        if let Err(e) = t.table.chunks(file_size) {
            return Err(Malformed::new(
                t.stbl_offset,
                format!("the {handler} track's sample table: {e}"),
            ));
        }
    }
    Ok(())
}
