//! A small PDF writer for text documents in any script (certificates in Chinese and English).
//!
//! Text is set in a chain of TrueType fonts (each character in the first font that has it, e.g.
//! DejaVu Sans for Latin, Droid Sans Fallback for Chinese), each embedded as a subset of the
//! glyphs the document uses ([`crate::subset`], FontFile2, deflate-compressed) as a Type0
//! CIDFontType2 font with Identity-H encoding: content streams
//! hold glyph ids, a ToUnicode map per font makes the text searchable and copyable. No layout
//! engine: callers place lines, and [`TextPdf::wrap`] breaks long values to a width using the
//! fonts' advances.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ttf_parser::{Face, GlyphId};

/// Why a PDF could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    /// The font file is not a font this writer can embed.
    #[error("the font cannot be read: {0}")]
    Font(String),
    /// A character of the text is not in the font.
    #[error("the font has no glyph for {0:?}")]
    MissingGlyph(char),
}

/// Something drawn on a page. Coordinates in points from the bottom left of an A4 page
/// (595 x 842).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A line of text starting at (x, y), its baseline.
    Text {
        /// Left edge, pt.
        x: f64,
        /// Baseline, pt.
        y: f64,
        /// Font size, pt.
        size: f64,
        /// The text.
        text: String,
    },
    /// A straight line from (x1, y1) to (x2, y2), pt.
    Line {
        /// Start, from the left, pt.
        x1: f64,
        /// Start, from the bottom, pt.
        y1: f64,
        /// End, from the left, pt.
        x2: f64,
        /// End, from the bottom, pt.
        y2: f64,
    },
}

/// A document being built.
pub struct TextPdf<'f> {
    faces: Vec<(Face<'f>, &'f [u8])>,
    /// What is drawn on each page so far.
    pub pages: Vec<Vec<Item>>,
}

/// The size of an A4 page, pt (width, height).
pub const A4: (f64, f64) = (595.0, 842.0);

impl<'f> TextPdf<'f> {
    /// A document with a chain of fonts (TrueType bytes), first choice first.
    pub fn new(fonts: &[&'f [u8]]) -> Result<Self, PdfError> {
        let faces = fonts
            .iter()
            .map(|f| {
                Face::parse(f, 0)
                    .map(|face| (face, *f))
                    .map_err(|e| PdfError::Font(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TextPdf {
            faces,
            pages: vec![Vec::new()],
        })
    }

    /// The font (index) and glyph that set `c`.
    fn glyph(&self, c: char) -> Option<(usize, GlyphId)> {
        self.faces
            .iter()
            .enumerate()
            .find_map(|(i, (f, _))| f.glyph_index(c).filter(|g| g.0 != 0).map(|g| (i, g)))
    }

    fn advance(&self, c: char) -> f64 {
        match self.glyph(c) {
            Some((i, g)) => {
                let f = &self.faces[i].0;
                f64::from(f.glyph_hor_advance(g).unwrap_or(0)) / f64::from(f.units_per_em())
            }
            None => 0.5,
        }
    }

    /// Width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f64) -> f64 {
        text.chars().map(|c| self.advance(c)).sum::<f64>() * size
    }

    /// Breaks `text` into lines no wider than `max` points (at spaces when it can, anywhere
    /// otherwise: hashes and Chinese have no spaces).
    pub fn wrap(&self, text: &str, size: f64, max: f64) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_inclusive(' ') {
            if self.width(&format!("{line}{word}"), size) <= max {
                line.push_str(word);
                continue;
            }
            if !line.is_empty() {
                lines.push(line.trim_end().to_string());
                line.clear();
            }
            for c in word.chars() {
                if self.width(&format!("{line}{c}"), size) > max && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                line.push(c);
            }
        }
        if !line.trim().is_empty() {
            lines.push(line.trim_end().to_string());
        }
        lines
    }

    /// Adds an item to the last page.
    pub fn push(&mut self, item: Item) {
        self.pages.last_mut().expect("a page").push(item);
    }

    /// Starts a new, empty page; what is added next goes there.
    pub fn new_page(&mut self) {
        self.pages.push(Vec::new());
    }

    /// The PDF file.
    pub fn render(&self, title: &str) -> Result<Vec<u8>, PdfError> {
        let nf = self.faces.len();
        let mut used: Vec<BTreeMap<u16, char>> = vec![BTreeMap::new(); nf];
        let mut contents = Vec::new();
        for page in &self.pages {
            let mut s = String::new();
            for item in page {
                match item {
                    Item::Text { x, y, size, text } => {
                        // Runs of characters set in the same font.
                        let mut runs: Vec<(usize, String, f64)> = Vec::new();
                        for c in text.chars() {
                            let (fi, g) = self.glyph(c).ok_or(PdfError::MissingGlyph(c))?;
                            used[fi].entry(g.0).or_insert(c);
                            let w = self.advance(c) * size;
                            match runs.last_mut() {
                                Some((f, hex, width)) if *f == fi => {
                                    let _ = write!(hex, "{:04X}", g.0);
                                    *width += w;
                                }
                                _ => runs.push((fi, format!("{:04X}", g.0), w)),
                            }
                        }
                        let mut cx = *x;
                        for (fi, hex, width) in runs {
                            let _ = writeln!(
                                s,
                                "BT /F{} {size:.2} Tf {cx:.2} {y:.2} Td <{hex}> Tj ET",
                                fi + 1
                            );
                            cx += width;
                        }
                    }
                    Item::Line { x1, y1, x2, y2 } => {
                        let _ = writeln!(s, "0.5 w {x1:.2} {y1:.2} m {x2:.2} {y2:.2} l S");
                    }
                }
            }
            contents.push(s);
        }
        // Objects: 1 catalog, 2 pages, 3 info, then 5 per font (Type0, CIDFont, descriptor,
        // font file, ToUnicode), then per page its object and content stream.
        let font_base = 4;
        let page_base = font_base + 5 * nf;
        let n_pages = self.pages.len();
        let page_id = |i: usize| page_base + 2 * i;
        let mut objects: Vec<Vec<u8>> = Vec::new();
        let kids: Vec<String> = (0..n_pages)
            .map(|i| format!("{} 0 R", page_id(i)))
            .collect();
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        objects.push(
            format!(
                "<< /Type /Pages /Kids [{}] /Count {n_pages} >>",
                kids.join(" ")
            )
            .into_bytes(),
        );
        let title_utf16: String = std::iter::once(0xFEFFu16)
            .chain(title.encode_utf16())
            .map(|u| format!("{u:04X}"))
            .collect();
        objects.push(format!("<< /Title <{title_utf16}> /Producer (pedf) >>").into_bytes());
        for (fi, (face, bytes)) in self.faces.iter().enumerate() {
            let id = font_base + 5 * fi;
            // A subset's name starts with six capital letters and `+` (ISO 32000-1 §9.6.4).
            let name = format!("PEDFA{}+PedfFont{}", char::from(b'A' + fi as u8), fi + 1);
            let upem = f64::from(face.units_per_em());
            objects.push(format!("<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H /DescendantFonts [{} 0 R] /ToUnicode {} 0 R >>", id + 1, id + 4).into_bytes());
            let widths: Vec<String> = used[fi]
                .keys()
                .map(|g| {
                    format!(
                        "{g} [{}]",
                        (f64::from(face.glyph_hor_advance(GlyphId(*g)).unwrap_or(0)) * 1000.0
                            / upem)
                            .round()
                    )
                })
                .collect();
            objects.push(
                format!(
                    "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor {} 0 R /DW 1000 /W [{}] /CIDToGIDMap /Identity >>",
                    id + 2,
                    widths.join(" ")
                )
                .into_bytes(),
            );
            let bbox = face.global_bounding_box();
            let scale = |v: i16| (f64::from(v) * 1000.0 / upem).round();
            objects.push(
                format!(
                    "<< /Type /FontDescriptor /FontName /{name} /Flags 4 /FontBBox [{} {} {} {}] /ItalicAngle 0 /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 {} 0 R >>",
                    scale(bbox.x_min),
                    scale(bbox.y_min),
                    scale(bbox.x_max),
                    scale(bbox.y_max),
                    scale(face.ascender()),
                    scale(face.descender()),
                    scale(face.capital_height().unwrap_or(face.ascender())),
                    id + 3
                )
                .into_bytes(),
            );
            let glyphs: std::collections::BTreeSet<u16> = used[fi].keys().copied().collect();
            let font = crate::subset::subset(bytes, 0, &glyphs)
                .map_err(|e| PdfError::Font(e.to_string()))?;
            let packed = miniz_oxide::deflate::compress_to_vec_zlib(&font, 9);
            objects.push(stream(
                &format!("/Length1 {} /Filter /FlateDecode", font.len()),
                &packed,
            ));
            let mut cmap = String::from("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n");
            let entries: Vec<(&u16, &char)> = used[fi].iter().collect();
            for chunk in entries.chunks(100) {
                let _ = writeln!(cmap, "{} beginbfchar", chunk.len());
                for (g, c) in chunk {
                    let mut units = [0u16; 2];
                    let hex: String = c
                        .encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("{u:04X}"))
                        .collect();
                    let _ = writeln!(cmap, "<{g:04X}> <{hex}>");
                }
                cmap.push_str("endbfchar\n");
            }
            cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
            objects.push(stream("", cmap.as_bytes()));
        }
        let fonts: String = (0..nf)
            .map(|fi| format!("/F{} {} 0 R ", fi + 1, font_base + 5 * fi))
            .collect();
        for (i, c) in contents.iter().enumerate() {
            objects.push(format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Resources << /Font << {fonts}>> >> /Contents {} 0 R >>", A4.0, A4.1, page_id(i) + 1).into_bytes());
            objects.push(stream("", c.as_bytes()));
        }
        let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend(body);
            out.extend(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for o in offsets {
            out.extend(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R /Info 3 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        Ok(out)
    }
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("<< /Length {} {dict} >>\nstream\n", data.len()).into_bytes();
    v.extend(data);
    v.extend(b"\nendstream");
    v
}
