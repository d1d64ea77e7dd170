//! TrueType subsetting for embedded PDF fonts: a font file that keeps only the glyphs a
//! document uses (and the components of composite glyphs), at their original glyph ids, so
//! the PDF's `CIDToGIDMap /Identity` and its glyph codes stay as they are. The other glyphs
//! become empty (zero-length in `glyf`, zero metrics in `hmtx`), which deflate packs to almost
//! nothing; tables a PDF viewer does not read for a CID-keyed TrueType font (cmap, name, post,
//! OS/2, layout and bitmap tables) are left out. A Chinese font of 4 MB becomes a few kB a
//! certificate.
//!
//! Tables kept (ISO 32000-1 §9.9, "FontFile2"): head, hhea, maxp, hmtx, loca, glyf, and the
//! hinting programs cvt, fpgm, prep when present.

use std::collections::BTreeSet;

/// Why a font could not be subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("font subsetting: {0}")]
pub struct SubsetError(String);

fn err<T>(what: &str) -> Result<T, SubsetError> {
    Err(SubsetError(what.to_string()))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, SubsetError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| SubsetError(format!("truncated at byte {at}")))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, SubsetError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| SubsetError(format!("truncated at byte {at}")))
}

/// A table: its tag and bytes.
type Table<'a> = ([u8; 4], &'a [u8]);

/// The tables of font `index` of a TrueType file or collection.
fn tables(data: &[u8], index: u32) -> Result<Vec<Table<'_>>, SubsetError> {
    let mut start = 0usize;
    if data.get(0..4) == Some(b"ttcf") {
        let n = u32_at(data, 8)?;
        if index >= n {
            return err("font index beyond the collection");
        }
        start = u32_at(data, 12 + 4 * index as usize)? as usize;
    }
    let n = usize::from(u16_at(data, start + 4)?);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let rec = start + 12 + 16 * i;
        let tag: [u8; 4] = data
            .get(rec..rec + 4)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| SubsetError("truncated table directory".into()))?;
        let off = u32_at(data, rec + 8)? as usize;
        let len = u32_at(data, rec + 12)? as usize;
        let body = data
            .get(off..off + len)
            .ok_or_else(|| SubsetError(format!("table {} out of the file", tag_text(&tag))))?;
        out.push((tag, body));
    }
    Ok(out)
}

fn tag_text(t: &[u8; 4]) -> String {
    String::from_utf8_lossy(t).into_owned()
}

/// Glyph `g`'s bytes in `glyf` per `loca`.
fn glyph<'a>(glyf: &'a [u8], loca: &[u8], long: bool, g: u16) -> Result<&'a [u8], SubsetError> {
    let g = usize::from(g);
    let (a, b) = if long {
        (
            u32_at(loca, 4 * g)? as usize,
            u32_at(loca, 4 * g + 4)? as usize,
        )
    } else {
        (
            2 * usize::from(u16_at(loca, 2 * g)?),
            2 * usize::from(u16_at(loca, 2 * g + 2)?),
        )
    };
    if a > b {
        return err("loca offsets go backwards");
    }
    glyf.get(a..b)
        .ok_or_else(|| SubsetError(format!("glyph {g} lies outside glyf")))
}

/// The glyphs a composite glyph is built from.
fn components(g: &[u8]) -> Result<Vec<u16>, SubsetError> {
    if g.len() < 10 || (u16_at(g, 0)? as i16) >= 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut at = 10;
    loop {
        let flags = u16_at(g, at)?;
        out.push(u16_at(g, at + 2)?);
        at += 4;
        at += if flags & 0x0001 != 0 { 4 } else { 2 };
        if flags & 0x0008 != 0 {
            at += 2;
        } else if flags & 0x0040 != 0 {
            at += 4;
        } else if flags & 0x0080 != 0 {
            at += 8;
        }
        if flags & 0x0020 == 0 {
            return Ok(out);
        }
    }
}

/// A TrueType font (font `index` of `data`) with only `used` glyphs (glyph 0, the missing
/// glyph, is always kept), glyph ids unchanged.
pub fn subset(data: &[u8], index: u32, used: &BTreeSet<u16>) -> Result<Vec<u8>, SubsetError> {
    let all = tables(data, index)?;
    let find = |tag: &[u8; 4]| all.iter().find(|(t, _)| t == tag).map(|(_, b)| *b);
    let (Some(head), Some(hhea), Some(maxp), Some(hmtx), Some(loca), Some(glyf)) = (
        find(b"head"),
        find(b"hhea"),
        find(b"maxp"),
        find(b"hmtx"),
        find(b"loca"),
        find(b"glyf"),
    ) else {
        return err("not a TrueType (glyf) font: head, hhea, maxp, hmtx, loca or glyf missing");
    };
    let long = u16_at(head, 50)? != 0;
    let num_glyphs = u16_at(maxp, 4)?;
    let num_metrics = u16_at(hhea, 34)?;
    // The glyphs kept: the used ones, glyph 0, and every component, transitively.
    let mut keep: BTreeSet<u16> = used.iter().copied().filter(|g| *g < num_glyphs).collect();
    keep.insert(0);
    let mut todo: Vec<u16> = keep.iter().copied().collect();
    while let Some(g) = todo.pop() {
        for c in components(glyph(glyf, loca, long, g)?)? {
            if c < num_glyphs && keep.insert(c) {
                todo.push(c);
            }
        }
    }
    // New glyf (each glyph padded to 4 bytes) and a long loca.
    let mut new_glyf = Vec::new();
    let mut new_loca = Vec::with_capacity(4 * (usize::from(num_glyphs) + 1));
    for g in 0..num_glyphs {
        new_loca.extend((new_glyf.len() as u32).to_be_bytes());
        if keep.contains(&g) {
            new_glyf.extend(glyph(glyf, loca, long, g)?);
            while new_glyf.len() % 4 != 0 {
                new_glyf.push(0);
            }
        }
    }
    new_loca.extend((new_glyf.len() as u32).to_be_bytes());
    // hmtx: the kept glyphs' metrics, zeros elsewhere (the PDF carries the widths in /W).
    let mut new_hmtx = vec![0u8; hmtx.len()];
    for &g in &keep {
        let g = usize::from(g);
        let range = if g < usize::from(num_metrics) {
            4 * g..4 * g + 4
        } else {
            let at = 4 * usize::from(num_metrics) + 2 * (g - usize::from(num_metrics));
            at..at + 2
        };
        if let Some(src) = hmtx.get(range.clone()) {
            new_hmtx[range].copy_from_slice(src);
        }
    }
    // The last long metric also gives the advance of every glyph after it: keep it.
    if num_metrics > 0 {
        let at = 4 * (usize::from(num_metrics) - 1);
        if let Some(src) = hmtx.get(at..at + 2) {
            new_hmtx[at..at + 2].copy_from_slice(src);
        }
    }
    let mut new_head = head.to_vec();
    if let Some(s) = new_head.get_mut(8..12) {
        s.fill(0); // checkSumAdjustment, set below
    }
    if let Some(s) = new_head.get_mut(50..52) {
        s.copy_from_slice(&1u16.to_be_bytes()); // indexToLocFormat: long
    }
    let mut out_tables: Vec<([u8; 4], Vec<u8>)> = vec![
        (*b"glyf", new_glyf),
        (*b"head", new_head),
        (*b"hhea", hhea.to_vec()),
        (*b"hmtx", new_hmtx),
        (*b"loca", new_loca),
        (*b"maxp", maxp.to_vec()),
    ];
    for tag in [b"cvt ", b"fpgm", b"prep"] {
        if let Some(b) = find(tag) {
            out_tables.push((*tag, b.to_vec()));
        }
    }
    out_tables.sort_by_key(|t| t.0);
    Ok(assemble(out_tables))
}

fn checksum(b: &[u8]) -> u32 {
    b.chunks(4).fold(0u32, |s, c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        s.wrapping_add(u32::from_be_bytes(w))
    })
}

/// An sfnt file of these tables (sorted by tag), with checksums and head's adjustment.
fn assemble(tables: Vec<([u8; 4], Vec<u8>)>) -> Vec<u8> {
    let n = tables.len() as u16;
    let pow = 1u16 << (15 - n.leading_zeros());
    let mut out = Vec::new();
    out.extend(0x0001_0000u32.to_be_bytes());
    out.extend(n.to_be_bytes());
    out.extend((pow * 16).to_be_bytes());
    out.extend((15 - n.leading_zeros() as u16).to_be_bytes());
    out.extend((n * 16 - pow * 16).to_be_bytes());
    let mut offset = 12 + 16 * tables.len();
    let mut head_at = None;
    for (tag, body) in &tables {
        out.extend(tag);
        out.extend(checksum(body).to_be_bytes());
        out.extend((offset as u32).to_be_bytes());
        out.extend((body.len() as u32).to_be_bytes());
        offset += body.len().div_ceil(4) * 4;
    }
    for (tag, body) in &tables {
        if tag == b"head" {
            head_at = Some(out.len());
        }
        out.extend(body);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    if let Some(at) = head_at {
        let adjust = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
        out[at + 8..at + 12].copy_from_slice(&adjust.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttf_parser::{Face, GlyphId};

    struct Bounds(Option<ttf_parser::Rect>);
    impl ttf_parser::OutlineBuilder for Bounds {
        fn move_to(&mut self, _: f32, _: f32) {}
        fn line_to(&mut self, _: f32, _: f32) {}
        fn quad_to(&mut self, _: f32, _: f32, _: f32, _: f32) {}
        fn curve_to(&mut self, _: f32, _: f32, _: f32, _: f32, _: f32, _: f32) {}
        fn close(&mut self) {}
    }

    #[test]
    fn a_subset_keeps_the_used_glyphs_as_they_were_and_drops_the_rest() {
        let path = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf";
        let data = std::fs::read(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (scripts/setup installs fonts-droid-fallback)")
        });
        let face = Face::parse(&data, 0).unwrap();
        let used: BTreeSet<u16> = "碳减排声明 Park 2026"
            .chars()
            .filter_map(|c| face.glyph_index(c))
            .map(|g| g.0)
            .collect();
        let small = subset(&data, 0, &used).unwrap();
        assert!(small.len() * 10 < data.len(), "{} bytes", small.len());
        let sub = Face::parse(&small, 0).unwrap();
        assert_eq!(sub.number_of_glyphs(), face.number_of_glyphs());
        for g in &used {
            let (g, mut a, mut b) = (GlyphId(*g), Bounds(None), Bounds(None));
            a.0 = face.outline_glyph(g, &mut a);
            b.0 = sub.outline_glyph(g, &mut b);
            assert_eq!(a.0, b.0, "glyph {g:?} outline");
            assert_eq!(face.glyph_hor_advance(g), sub.glyph_hor_advance(g));
        }
        let unused = GlyphId(face.glyph_index('龍').unwrap().0);
        assert!(sub.outline_glyph(unused, &mut Bounds(None)).is_none());
    }
}
