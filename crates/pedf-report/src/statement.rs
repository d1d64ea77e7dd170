//! A bilingual statement as HTML and PDF: a title in Chinese and English, a heading, rows of
//! (Chinese label, English label, value) and closing lines. A certificate is one (its rows come
//! from pedf-carbon, which knows what it says; this module only lays them out).

use crate::pdf::{Item, PdfError, TextPdf, A4};

/// What a statement shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The title in Chinese.
    pub title_zh: String,
    /// The title in English.
    pub title_en: String,
    /// A line under the title (the serial, in bold in HTML).
    pub heading: String,
    /// (Chinese label, English label, value).
    pub rows: Vec<(String, String, String)>,
    /// Closing lines, small. A line starting with `$ ` is a command, shown as code.
    pub closing: Vec<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Statement {
    /// The statement as one HTML page (UTF-8, no outside resources).
    pub fn to_html(&self) -> String {
        let mut s = String::new();
        s.push_str("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\n");
        s.push_str(&format!(
            "<title>{} {} {}</title>\n",
            esc(&self.title_zh),
            esc(&self.title_en),
            esc(&self.heading)
        ));
        s.push_str("<style>body{font-family:sans-serif;max-width:52em;margin:2em auto}table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}th{width:40%;background:#f3f3f3}small{color:#555}td{word-break:break-all}code{word-break:break-all}</style></head><body>\n");
        s.push_str(&format!(
            "<h1>{}<br><small>{}</small></h1>\n<p><b>{}</b></p>\n<table>\n",
            esc(&self.title_zh),
            esc(&self.title_en),
            esc(&self.heading)
        ));
        for (zh, en, v) in &self.rows {
            s.push_str(&format!(
                "<tr><th>{}<br><small>{}</small></th><td>{}</td></tr>\n",
                esc(zh),
                esc(en),
                esc(v)
            ));
        }
        s.push_str("</table>\n<p><small>");
        let lines: Vec<String> = self
            .closing
            .iter()
            .map(|l| match l.strip_prefix("$ ") {
                Some(cmd) => format!("<code>{}</code>", esc(cmd)),
                None => esc(l),
            })
            .collect();
        s.push_str(&lines.join("<br>\n"));
        s.push_str("</small></p>\n</body></html>\n");
        s
    }

    /// The statement as an A4 PDF set in `fonts` (TrueType bytes, first choice first: e.g.
    /// DejaVu Sans, then a font with Chinese glyphs), subset to the glyphs used.
    pub fn to_pdf(&self, fonts: &[&[u8]]) -> Result<Vec<u8>, PdfError> {
        let mut doc = TextPdf::new(fonts)?;
        let (left, label_w, right) = (50.0, 170.0, A4.0 - 50.0);
        let value_x = left + label_w;
        let mut y = A4.1 - 60.0;
        doc.push(Item::Text {
            x: left,
            y,
            size: 20.0,
            text: self.title_zh.clone(),
        });
        y -= 22.0;
        doc.push(Item::Text {
            x: left,
            y,
            size: 13.0,
            text: self.title_en.clone(),
        });
        y -= 16.0;
        doc.push(Item::Text {
            x: left,
            y,
            size: 10.0,
            text: self.heading.clone(),
        });
        y -= 10.0;
        doc.push(Item::Line {
            x1: left,
            y1: y,
            x2: right,
            y2: y,
        });
        y -= 16.0;
        for (zh, en, value) in &self.rows {
            let lines = doc.wrap(value, 9.0, right - value_x);
            let height = (lines.len().max(2) as f64) * 11.5 + 6.0;
            if y - height < 50.0 {
                doc.new_page();
                y = A4.1 - 60.0;
            }
            doc.push(Item::Text {
                x: left,
                y,
                size: 9.0,
                text: zh.clone(),
            });
            doc.push(Item::Text {
                x: left,
                y: y - 11.0,
                size: 7.5,
                text: en.clone(),
            });
            for (i, l) in lines.iter().enumerate() {
                doc.push(Item::Text {
                    x: value_x,
                    y: y - 11.5 * i as f64,
                    size: 9.0,
                    text: l.clone(),
                });
            }
            y -= height;
            doc.push(Item::Line {
                x1: left,
                y1: y + 9.0,
                x2: right,
                y2: y + 9.0,
            });
        }
        y -= 10.0;
        let closing: Vec<String> = self
            .closing
            .iter()
            .flat_map(|l| {
                let text = l.strip_prefix("$ ").unwrap_or(l);
                doc.wrap(text, 8.0, right - left)
            })
            .collect();
        // The closing lines stay together above the bottom margin.
        if y - 11.0 * (closing.len() as f64) < 40.0 {
            doc.new_page();
            y = A4.1 - 60.0;
        }
        for l in closing {
            doc.push(Item::Text {
                x: left,
                y,
                size: 8.0,
                text: l,
            });
            y -= 11.0;
        }
        doc.render(&format!(
            "{} {} {}",
            self.title_zh, self.title_en, self.heading
        ))
    }
}

/// Fonts with Chinese glyphs, in order of preference (Debian: fonts-droid-fallback, which
/// scripts/setup installs; fonts-wqy-microhei; fonts-noto-cjk).
const CJK_FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// The system fonts a bilingual statement is set in: DejaVu Sans for Latin and a font with
/// Chinese glyphs, or why they are missing (with the package that has them).
pub fn system_fonts() -> Result<(Vec<u8>, Vec<u8>), String> {
    let cjk = CJK_FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no font with Chinese glyphs found (Debian package fonts-droid-fallback; scripts/setup installs it)")?;
    let latin = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVu Sans (fonts-dejavu-core): {e}"))?;
    Ok((latin, cjk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            title_zh: "碳减排自我声明".into(),
            title_en: "Self-declared statement".into(),
            heading: "P-1 <b>".into(),
            rows: vec![("园区".into(), "Park".into(), "A & B".into())],
            closing: vec![
                "核验 Verify:".into(),
                "$ pedf certificate verify P-1.json".into(),
            ],
        }
    }

    #[test]
    fn html_escapes_and_shows_commands_as_code() {
        let h = statement().to_html();
        assert!(h.contains("<p><b>P-1 &lt;b&gt;</b></p>"), "{h}");
        assert!(h.contains("<td>A &amp; B</td>"));
        assert!(h.contains("<code>pedf certificate verify P-1.json</code>"));
    }

    #[test]
    fn the_pdf_is_small_with_chinese_text() {
        let (latin, cjk) = system_fonts().unwrap();
        let pdf = statement().to_pdf(&[&latin, &cjk]).unwrap();
        assert!(
            pdf.starts_with(b"%PDF-1.7") && pdf.len() < 100_000,
            "{}",
            pdf.len()
        );
    }
}
